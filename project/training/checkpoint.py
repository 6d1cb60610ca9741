"""T7 Checkpoints: `best.pt` (lowest validation loss) and `last.pt` (newest)."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import torch

from utils.io import write_bytes

BEST = "best.pt"
LAST = "last.pt"


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """T7: write a checkpoint atomically: a kill mid-save keeps the previous file intact."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    write_bytes(path, buffer.getvalue())


def load_checkpoint(path: Path, device: torch.device | str = "cpu") -> dict[str, Any]:
    """T7: load with weights_only=True (no arbitrary pickled code)."""
    if not path.is_file():
        raise FileNotFoundError(
            f"checkpoint {path} not found; run `python run.py train` with the same --out-dir"
        )
    return torch.load(path, map_location=device, weights_only=True)
