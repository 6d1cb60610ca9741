"""The training loop: T4 stability, T6 epochs, T7 validation, selection and checkpoints,
T8 reproducibility (a resumed run continues bit for bit on the CPU). T5: fp32 throughout
(the train stage runs it under training/precision.py's strict_fp32), no compilation.

While it runs, training keeps its log and checkpoints in a work folder of its own, which
outlives a killed job, so that the next try can resume from its newest checkpoint (`last`,
written after every epoch's validation). `publish` then moves them to their files.
"""

from __future__ import annotations

import logging
import math
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from harness.config import changed_keys
from harness.errors import ProjectError
from harness.io import append_jsonl, write_jsonl
from harness.seed import rng_state, set_rng_state
from torch import nn

from ..data.batches import TrainBatches
from ..utils.config import TrainConfig
from .checkpoint import load_checkpoint, save_checkpoint
from .loss import classification_loss
from .optim import build_optimizer, build_schedule, learning_rate

logger = logging.getLogger(__name__)

LOG, BEST, LAST = "train_log.jsonl", "best.pt", "last.pt"  # in the work folder
LOSS_WINDOW = 10  # steps averaged for the first and final training loss


class NonFiniteError(ProjectError, RuntimeError):
    """T4: a loss or gradient norm became NaN or Inf."""


class ResumeError(ProjectError, RuntimeError):
    """A checkpoint that may not be continued: made under other settings or data."""


@dataclass(frozen=True)
class Validation:
    """T7: one validation (D5) of the whole validation split."""

    loss: float  # mean cross-entropy, nats
    accuracy: float


@dataclass
class TrainState:
    """Where the run is; saved in every checkpoint, so that a resumed run continues."""

    step: int = 0  # optimiser steps done
    epoch: int = 0  # epochs done
    best_val_accuracy: float = -math.inf
    best_val_loss: float = math.inf
    best_epoch: int = 0
    best_step: int = 0

    def improves(self, val: Validation) -> bool:
        """T7 selection: a higher validation accuracy, or an equal one and a lower loss."""
        return val.accuracy > self.best_val_accuracy or (
            val.accuracy == self.best_val_accuracy and val.loss < self.best_val_loss
        )


class Trainer:
    """Trains a model (T1-T8) on D4's batches; `validate(model)` scores the validation
    split (passed in by the train stage, so that training does not depend on testing).
    `identity`, the training config and what identifies the data, is what a checkpoint
    must match to be resumed.
    """

    def __init__(
        self,
        model: nn.Module,
        batches: TrainBatches,
        config: TrainConfig,
        validate: Callable[[nn.Module], Validation],
        work_dir: Path,
        identity: dict[str, Any],
    ) -> None:
        self.model = model
        self.batches = batches
        self.config = config
        self.validate = validate
        self.work_dir = work_dir
        self.identity = identity
        self.total_steps = config.epochs * batches.steps_per_epoch  # T6
        self.optimizer = build_optimizer(model, config)  # T2
        self.schedule = build_schedule(self.optimizer, self.total_steps, config)  # T3
        self.state = TrainState()
        self.log: list[dict[str, Any]] = []  # every record of the training log so far
        self.pending: list[dict[str, Any]] = []  # the epoch in progress's records
        self.train_time_s = 0.0  # this process's time in optimiser steps
        self.images_trained = 0  # this process's training images

    # -- one epoch ----------------------------------------------------------------------

    def step(self, images: torch.Tensor, labels: torch.Tensor) -> None:
        """One optimiser step: forward, T1 loss, backward, T4 clipping, T2 update at T3's
        learning rate. T4: a non-finite loss or gradient norm stops the run at once, before
        its update, with the epoch's records so far (its own the last) in the log.
        """
        lr = learning_rate(self.state.step, self.total_steps, self.config)
        self.optimizer.zero_grad(set_to_none=True)
        loss = classification_loss(self.model(images), labels)  # logits (b, 10)
        loss.backward()
        grad_norm = nn.utils.clip_grad_norm_(self.model.parameters(), self.config.grad_clip)
        self.state.step += 1
        record = {
            "kind": "train",
            "step": self.state.step,
            "epoch": self.state.epoch + 1,
            "loss": loss.item(),
            "grad_norm": grad_norm.item(),
            "lr": lr,
        }
        self.pending.append(record)
        if not (math.isfinite(record["loss"]) and math.isfinite(record["grad_norm"])):
            self._flush()
            raise NonFiniteError(self._non_finite_message(record))
        self.optimizer.step()
        self.schedule.step()

    def epoch(self) -> None:
        """T6: one pass over D4's batches, then T7: validate, keep `best` if it improves
        on it, and `last`.
        """
        self.model.train()
        started = time.perf_counter()
        for images, labels in self.batches.epoch(self.state.epoch):
            self.step(images, labels)
        self.train_time_s += time.perf_counter() - started
        self.images_trained += len(self.batches.labels)
        self.state.epoch += 1
        train_loss = self.pending[-1]["loss"]
        val = self.validate(self.model)
        self.pending.append(
            {
                "kind": "val",
                "step": self.state.step,
                "epoch": self.state.epoch,
                "val_loss": val.loss,
                "val_accuracy": val.accuracy,
            }
        )
        self._flush()
        if self.state.improves(val):
            self.state.best_val_accuracy, self.state.best_val_loss = val.accuracy, val.loss
            self.state.best_epoch, self.state.best_step = self.state.epoch, self.state.step
            self._save(BEST)
        self._save(LAST)
        logger.info(
            "epoch %d/%d: last train loss %.4f, validation loss %.4f, accuracy %.4f",
            self.state.epoch,
            self.config.epochs,
            train_loss,
            val.loss,
            val.accuracy,
        )

    def _flush(self) -> None:
        """The epoch's records into the log (the work folder's file and `self.log`)."""
        append_jsonl(self.work_dir / LOG, self.pending)
        self.log.extend(self.pending)
        self.pending = []

    def _non_finite_message(self, record: dict[str, Any]) -> str:
        last = self.work_dir / LAST
        kept = (
            f"the last good checkpoint, {last}, is from epoch {self.state.epoch} "
            f"(step {self.state.epoch * self.batches.steps_per_epoch})"
            if last.is_file()
            else "no checkpoint was written before it"
        )
        return (
            f"non-finite training value at step {record['step']} (epoch {record['epoch']}): "
            f"loss={record['loss']}, grad_norm={record['grad_norm']}; training stopped and "
            f"{kept} (try a lower train.lr, or --detect-anomaly to find the operation)"
        )

    def _save(self, name: str) -> None:
        """T7: everything a resumed run needs: model, optimiser, schedule, state, RNG."""
        save_checkpoint(
            self.work_dir / name,
            {
                "model": self.model.state_dict(),
                "optimizer": self.optimizer.state_dict(),
                "schedule": self.schedule.state_dict(),
                "state": asdict(self.state),
                "rng": rng_state(),
                "identity": self.identity,
                "log": self.log,
            },
        )

    # -- resume ---------------------------------------------------------------------------

    def _start(self, resume: str) -> int | None:
        """Continue from the work folder's `last`, or start afresh in an emptied work
        folder; returns the step resumed from. `resume`: "off" ignores the checkpoint,
        "strict" continues it and refuses one made under other settings or data,
        "restart-on-change" (what the workflow passes) starts over from such a one.
        """
        last = self.work_dir / LAST
        if resume != "off" and last.is_file():
            checkpoint = load_checkpoint(last)
            changed = changed_keys(checkpoint["identity"], self.identity)
            if not changed:
                self._restore(checkpoint)
                logger.info("resumed from %s at epoch %d", last, self.state.epoch)
                return self.state.step
            why = f"{last} was made under other settings or data (changed: {', '.join(changed)})"
            if resume == "strict":
                raise ResumeError(f"cannot resume: {why}; run without --resume to start over")
            logger.warning("not resuming: %s; starting from step 0", why)
        elif last.is_file():
            logger.warning("starting from step 0 discards %s (to continue it: --resume)", last)
        self.work_dir.mkdir(parents=True, exist_ok=True)
        for name in (BEST, LAST):
            (self.work_dir / name).unlink(missing_ok=True)
        write_jsonl(self.work_dir / LOG, [])
        return None

    def _restore(self, checkpoint: dict[str, Any]) -> None:
        """T7/T8: the model, optimiser, schedule, state, log and every RNG as saved."""
        self.model.load_state_dict(checkpoint["model"])
        self.optimizer.load_state_dict(checkpoint["optimizer"])
        self.schedule.load_state_dict(checkpoint["schedule"])
        self.state = TrainState(**checkpoint["state"])
        self.log = checkpoint["log"]
        write_jsonl(self.work_dir / LOG, self.log)  # a lost epoch's lines go
        set_rng_state(checkpoint["rng"])

    def publish(self, log: Path, best: Path, last: Path) -> None:
        """Move the finished log and checkpoints to their files; the work folder goes."""
        moves = ((LOG, log), (BEST, best), (LAST, last))
        for name, target in moves:
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(self.work_dir / name, target)
        shutil.rmtree(self.work_dir)

    # -- the run ------------------------------------------------------------------------

    def train(self, resume: str = "off") -> dict[str, Any]:
        """T6: run (or continue) every epoch; returns train_summary.json's figures."""
        resumed_from = self._start(resume)
        while self.state.epoch < self.config.epochs:
            self.epoch()
        losses = [r["loss"] for r in self.log if r["kind"] == "train"]
        window = min(LOSS_WINDOW, len(losses))
        state = self.state
        return {
            "plan_ids": ["T1", "T2", "T3", "T4", "T5", "T6", "T7", "T8"],
            "epochs_planned": self.config.epochs,
            "epochs_run": state.epoch,
            "steps": state.step,
            "steps_per_epoch": self.batches.steps_per_epoch,
            "first_train_loss": sum(losses[:window]) / window,
            "final_train_loss": sum(losses[-window:]) / window,
            "loss_window_steps": window,
            "best_epoch": state.best_epoch,
            "best_step": state.best_step,
            "best_val_accuracy": state.best_val_accuracy,
            "best_val_loss": state.best_val_loss,
            "val_history": [r for r in self.log if r["kind"] == "val"],
            "resumed_from_step": resumed_from,
            # this process's optimiser steps (a resumed run's earlier epochs left out)
            "train_time_s": self.train_time_s,
            "images_per_s": self.images_trained / self.train_time_s,
            "precision": "fp32",
        }
