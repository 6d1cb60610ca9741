"""T7/T8 resume: where a run is (saved in every checkpoint), what a checkpoint must match to
be continued, and the work folder's log up to it.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.config import changed_keys
from harness.errors import ProjectError

from ..utils.config import ConfigError, build

# The log inside the work folder, private to training: the outputs are named by the caller.
LOG_FILE = "train_log.jsonl"
# Settings a resumed run may change: how often it validates, saves and reads losses back,
# whether it compiles, when it stops early, on how many devices; not what it computes.
# They are left out of the fingerprint.
SAFE_ON_RESUME = (
    "train.eval_every_steps",
    "train.checkpoint_every_steps",
    "train.sync_every_steps",
    "train.compile",
    "train.compile_mode",
    "train.compile_scope",
    "train.target_val_loss",
    "train.devices",
)


class ResumeError(ProjectError, RuntimeError):
    """A checkpoint that may not be continued: made under other settings or data, or with a
    training config that cannot be read.
    """


@dataclass
class TrainState:
    """Where the run is; saved in every checkpoint so that `--resume` continues exactly."""

    step: int = 0  # optimiser steps done
    epoch: int = 0  # the epoch in progress
    step_in_epoch: int = 0  # batches of `epoch` already done
    best_val_loss: float = math.inf
    best_step: int = 0
    evals_without_improvement: int = 0
    val_history: list[dict[str, Any]] = field(default_factory=list)


def fingerprint(raw_config: dict[str, Any], data: dict[str, Any]) -> str:
    """SHA-256 of training's settings less SAFE_ON_RESUME and of what identifies its data,
    independent of key order: what a checkpoint must match to be resumed.
    """
    payload = json.loads(json.dumps({"config": raw_config, "data": data}))
    for key in SAFE_ON_RESUME:
        section, name = key.split(".")
        payload["config"].get(section, {}).pop(name, None)
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode("utf-8")).hexdigest()


def resumable_changes(
    checkpoint: dict[str, Any], raw_config: dict[str, Any], data: dict[str, Any]
) -> list[str]:
    """The keys (all SAFE_ON_RESUME) on which a run of `raw_config` on `data` differs from
    `checkpoint`, or a ResumeError that says why it may not continue it. The checkpoint's
    config is built first, so that a key it predates counts at its default (and a warning
    names it), and one it cannot hold makes it unreadable.
    """
    saved = checkpoint.get("config")
    try:
        if not isinstance(saved, dict):
            raise ConfigError(f"a {type(saved).__name__}, not a mapping of config sections")
        old = build(saved, tuple(raw_config)).to_dict()
    except ConfigError as error:
        raise ResumeError(f"its training config cannot be read ({error})") from None
    changed = changed_keys(old, raw_config)
    refused = [key for key in changed if key not in SAFE_ON_RESUME]
    if checkpoint.get("fingerprint") != fingerprint(saved, data):
        refused.append("the training data")
    if refused:
        raise ResumeError(f"it was made under other settings (changed: {', '.join(refused)})")
    return changed


def log_until(path: Path, step: int) -> list[dict[str, Any]]:
    """The log's records up to the checkpoint's `step`: later lines belong to the lost run,
    and so does a last line that a kill cut in the middle of its write.
    """
    records = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            break
        if record["step"] <= step:
            records.append(record)
    return records
