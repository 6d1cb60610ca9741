"""T7 Checkpoints: written atomically, read with the safe loader."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import torch
from harness.inputs import require
from harness.io import write_bytes
from harness.sections import build_config
from torch import nn

from ..model.interface import build_model
from ..utils.config import Config


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """T7: a kill mid-save keeps the previous file whole (harness.io writes atomically)."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    write_bytes(path, buffer.getvalue())


def load_checkpoint(path: Path, device: torch.device | str = "cpu") -> dict[str, Any]:
    """T7: tensors and plain data only (weights_only): no pickled code runs."""
    require([path], "train")
    return torch.load(path, map_location=device, weights_only=True)


def load_best_model(path: Path, device: torch.device) -> tuple[nn.Module, dict[str, Any]]:
    """The best checkpoint's model, built from the config it was trained with, and the
    checkpoint itself.
    """
    checkpoint = load_checkpoint(path, device)
    trained = checkpoint["identity"]["config"]
    model = build_model(build_config(Config, trained, tuple(trained)).model).to(device)
    model.load_state_dict(checkpoint["model"])
    return model, checkpoint
