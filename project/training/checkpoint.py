"""T7 Checkpoints: `best.pt` (lowest validation loss) and `last.pt` (newest)."""

from __future__ import annotations

import io
import pickle
from pathlib import Path
from typing import Any

import torch
from harness.errors import ProjectError
from harness.inputs import require
from harness.io import remove_stale_temp_files, write_bytes

from ..model.build import build_model
from ..model.interface import LanguageModel
from ..utils.config import Config, build

BEST = "best.pt"
LAST = "last.pt"

_REBUILD = "delete it and rebuild it with `snakemake --forcerun train` (or `python run.py train`)"


class CheckpointError(ProjectError, ValueError):
    """A file that is not a checkpoint this project wrote, or a damaged (truncated) one."""


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """T7: write a checkpoint atomically: a kill mid-save keeps the previous file intact.

    The temporary files of saves that were killed go first: a checkpoint's folder (the
    trainer's work folder) is written by one process only.
    """
    buffer = io.BytesIO()
    torch.save(state, buffer)
    remove_stale_temp_files(path.parent)
    write_bytes(path, buffer.getvalue())


def load_checkpoint(path: Path, device: torch.device | str = "cpu") -> dict[str, Any]:
    """T7: load with weights_only=True (no arbitrary pickled code)."""
    require([path], "train")
    try:
        return torch.load(path, map_location=device, weights_only=True)
    except pickle.UnpicklingError:
        # Not `from error`: torch's message advises turning the safe loader off.
        raise CheckpointError(
            f"{path} is not a checkpoint this project wrote, or it is damaged: the safe "
            f"loader refuses what it holds (only tensors and plain data load); {_REBUILD}"
        ) from None
    except (EOFError, RuntimeError) as error:
        if isinstance(error, RuntimeError) and "PytorchStreamReader" not in str(error):
            raise
        raise CheckpointError(
            f"{path} is damaged or truncated (an interrupted copy?): it is not a whole "
            f"checkpoint; {_REBUILD}"
        ) from error


def load_best_model(
    path: Path, device: torch.device
) -> tuple[LanguageModel, dict[str, Any], Config]:
    """The best checkpoint's model, its training state and the config it was trained with."""
    checkpoint = load_checkpoint(path, device)
    trained = build(checkpoint["config"], tuple(checkpoint["config"]))
    model = build_model(trained.model, checkpoint["vocab_size"]).to(device)
    model.load_state_dict(checkpoint["model"])
    return model, checkpoint["state"], trained
