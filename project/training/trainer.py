"""The training loop: T4 stability, T5 precision and speed, T6 batching, T7 checkpoints and
selection, T8 reproducibility (resume continues bit for bit on the CPU).

While it runs, training keeps its log and checkpoints in a work folder of its own, which
survives a killed job (Snakemake deletes a failed job's outputs, never this folder), so the
next try resumes from its newest checkpoint. At the end `publish` moves them to the files
the caller names, and the work folder goes.
"""

from __future__ import annotations

import functools
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
from harness.device import autocast
from harness.distributed import Ranks
from harness.errors import ProjectError
from harness.io import append_jsonl, write_jsonl
from harness.seed import rng_state, seed_rank, set_rng_state
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from ..data.loader import TrainBatches
from ..model.interface import LanguageModel
from ..training.checkpoint import BEST, LAST, CheckpointError, load_checkpoint, save_checkpoint
from ..training.loss import next_char_loss
from ..training.optim import build_optimizer, build_schedule, learning_rate
from ..training.progress import Progress
from ..training.resume import (
    LOG_FILE,
    SAFE_ON_RESUME,
    ResumeError,
    TrainState,
    fingerprint,
    log_until,
    resumable_changes,
)
from ..training.step import GraphedStep
from ..utils.config import Config

logger = logging.getLogger(__name__)

# Losses averaged for "first" and "final" training loss: single steps are noisy.
LOSS_WINDOW = 10


class NonFiniteError(ProjectError, RuntimeError):
    """T4: a loss or gradient norm became NaN or Inf."""


@dataclass
class PendingStep:
    """A step whose loss and gradient norm are still on the device."""

    step: int
    epoch: int
    lr: float
    values: torch.Tensor  # [loss, grad_norm]


class Trainer:
    """Trains a model (model/interface.py) on device-resident training ids (T1-T8).

    `validate(model) -> loss in nats` is passed in by run.py (it is the E1 evaluator), so
    that training does not depend on the testing package. `raw_config` (training's view of
    the configuration) and `data` (what identifies the training ids) make the fingerprint
    that a checkpoint must match to be resumed. Under DDP (`ranks`), each process trains
    its share of every batch, rank 0 validates and alone writes the log and checkpoints.
    """

    def __init__(
        self,
        model: LanguageModel,
        train_ids: torch.Tensor,
        config: Config,
        raw_config: dict[str, Any],
        work_dir: Path,
        precision: str,
        validate: Callable[[LanguageModel], float],
        data: dict[str, Any] | None = None,
        ranks: Ranks | None = None,
    ) -> None:
        self.model = model
        self.ranks = ranks or Ranks()
        self.config = config
        self.raw_config = raw_config
        self.data = data or {}
        self.fingerprint = fingerprint(raw_config, self.data)
        self.train_config = config.train
        self.device = train_ids.device
        self.precision = precision
        self.validate = validate
        self.work_dir = work_dir
        self.log_path = work_dir / LOG_FILE
        self.batches = TrainBatches(  # T6 Batching
            train_ids,
            model.block_size,
            config.train.batch_size,
            config.seed,
            self.ranks.rank,
            self.ranks.world_size,
        )
        self.total_steps = config.train.epochs * self.batches.steps_per_epoch
        self.optimizer = build_optimizer(model, config.train, self.device)  # T2
        self.schedule = build_schedule(self.optimizer, self.total_steps, config.train)  # T3
        self.forward = self._compiled_forward()
        # One CUDA graph a step on one device; under DDP the gradient exchange happens
        # inside backward, so the step runs uncaptured.
        capture = self.device.type == "cuda" and not self.ranks.distributed
        self.run_step = (
            GraphedStep(self._step, self.batches.batch_shape, self.device, capture)
            if config.train.cuda_graph
            else self._step
        )
        self.captured = config.train.cuda_graph and capture
        self.state = TrainState()
        self.losses: list[float] = []
        self.chars_per_step = config.train.batch_size * model.block_size

    # -- T5 precision and speed ------------------------------------------------------

    @property
    def compiled(self) -> bool:
        return self.train_config.compile and self.device.type == "cuda"

    def _compiled_forward(self) -> Callable[[torch.Tensor], torch.Tensor]:
        """T5: torch.compile on CUDA when configured, of the whole forward or of each block
        (train.compile_scope); plain eager elsewhere. Under DDP the forward goes through
        DistributedDataParallel, whose backward averages the gradients.
        """
        forward: nn.Module = self.model
        if self.ranks.distributed:
            local = [self.device.index] if self.device.type == "cuda" else None
            forward = DistributedDataParallel(self.model, device_ids=local)
        if not self.compiled:
            return forward
        mode = self.train_config.compile_mode
        if self.train_config.compile_scope == "block":
            return functools.partial(forward, blocks=compiled_blocks(self.model, mode=mode))
        return torch.compile(forward, mode=mode)

    # -- one optimiser step --------------------------------------------------------------

    def train_step(self, inputs: torch.Tensor, targets: torch.Tensor) -> PendingStep:
        """One optimiser step at the T3 schedule's learning rate, then the schedule moves on
        (it fills AdamW's learning-rate tensor, which a CUDA graph reads at its next replay).
        """
        lr = learning_rate(self.state.step, self.total_steps, self.train_config)
        values = self.run_step(inputs, targets)
        self.schedule.step()
        self.state.step += 1
        self.state.step_in_epoch += 1
        return PendingStep(self.state.step, self.state.epoch, lr, values)

    def _step(self, inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Forward, T1 loss, backward, T4 clipping, T2 update, with no host sync; returns
        [loss, grad_norm] on the device.
        """
        self.optimizer.zero_grad(set_to_none=True)
        with autocast(self.device, self.precision):
            logits = self.forward(inputs)
        loss = next_char_loss(logits, targets)  # T1
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(  # T4 clipping
            self.model.parameters(), self.train_config.grad_clip
        )
        self.optimizer.step()
        return torch.stack((loss.detach(), grad_norm))

    def _flush(self, pending: list[PendingStep], interval_start: float) -> float:
        """Read losses back (one host sync for k steps), check them (T4), log them; returns
        the seconds since `interval_start`, up to when the device finished these steps.
        """
        if not pending:
            return 0.0
        values = self.ranks.mean(torch.stack([p.values for p in pending]).float()).cpu().tolist()
        elapsed_s = time.perf_counter() - interval_start  # after the sync: device time
        chars_per_s = len(pending) * self.chars_per_step / max(elapsed_s, 1e-9)
        records = [
            {
                "kind": "train",
                "step": p.step,
                "epoch": p.epoch + 1,
                "loss": loss,
                "grad_norm": norm,
                "lr": p.lr,
                "chars_per_s": chars_per_s,
            }
            for p, (loss, norm) in zip(pending, values, strict=True)
        ]
        if self.ranks.main:
            append_jsonl(self.log_path, records)
        for record in records:
            if not (math.isfinite(record["loss"]) and math.isfinite(record["grad_norm"])):
                raise NonFiniteError(
                    f"non-finite training value at step {record['step']}: "
                    f"loss={record['loss']}, grad_norm={record['grad_norm']}; training stopped. "
                    f"{self._last_good_checkpoint()} (try a lower train.lr, or "
                    "--detect-anomaly to find the operation)"
                )
        self.losses.extend(record["loss"] for record in records)
        pending.clear()
        return elapsed_s

    # -- T7 validation, selection and checkpoints -----------------------------------------

    def _last_good_checkpoint(self) -> str:
        last = self.work_dir / LAST
        if not last.is_file():
            return "No checkpoint was written before it."
        step = load_checkpoint(last)["state"]["step"]
        return f"The last good checkpoint, {last}, is from step {step}."

    def _evaluate(self) -> None:
        val_loss = self.ranks.from_main(
            self.validate(self.model) if self.ranks.main else math.nan, self.device
        )
        state = self.state
        record = {
            "kind": "val",
            "step": state.step,
            "epoch": state.epoch + (state.step_in_epoch > 0),
            "val_loss": val_loss,
            "bits_per_char": val_loss / math.log(2),
            "time": time.time(),  # when it finished (Unix time): the benchmark's time to target
        }
        if self.ranks.main:
            append_jsonl(self.log_path, [record])
        state.val_history.append(record)
        if val_loss < state.best_val_loss:
            state.best_val_loss = val_loss
            state.best_step = state.step
            state.evals_without_improvement = 0
            self._save(BEST)
        else:
            state.evals_without_improvement += 1
        logger.info(
            "step %d: validation loss %.4f nats (%.4f bpc)",
            state.step,
            val_loss,
            record["bits_per_char"],
        )

    def _save(self, name: str) -> None:
        if not self.ranks.main:
            return
        save_checkpoint(
            self.work_dir / name,
            {
                "model": self.model.state_dict(),
                "optimizer": self.optimizer.state_dict(),
                "schedule": self.schedule.state_dict(),
                "state": asdict(self.state),
                "rng": rng_state(),
                "config": self.raw_config,
                "fingerprint": self.fingerprint,
                "vocab_size": self.model.vocab_size,
            },
        )

    def _stop_reason(self) -> str | None:
        """Why training stops before its last epoch: the validation loss reached
        train.target_val_loss ("target"), or T7's patience ran out ("patience").
        """
        config, state = self.train_config, self.state
        if config.target_val_loss is not None and state.best_val_loss <= config.target_val_loss:
            return "target"
        if config.patience is not None and state.evals_without_improvement >= config.patience:
            return "patience"
        return None

    # -- resume -------------------------------------------------------------------------

    def _start(self, resume: str) -> int | None:
        """Fresh start, or continue from the work folder's last.pt when it was made under
        the same settings (SAFE_ON_RESUME aside) and data; returns the step resumed from.
        """
        resumed_from = self._restore(resume)
        # The log up to the checkpoint: a lost run's lines go.
        kept = [] if resumed_from is None else log_until(self.log_path, resumed_from)
        self.losses = [r["loss"] for r in kept if r["kind"] == "train"]
        # Every process has read the work folder before rank 0 changes it.
        self.ranks.barrier()
        if self.ranks.main and resumed_from is None:
            self.work_dir.mkdir(parents=True, exist_ok=True)
            for name in (BEST, LAST):
                (self.work_dir / name).unlink(missing_ok=True)
        if self.ranks.main:
            write_jsonl(self.log_path, kept)
        if self.ranks.distributed:
            seed_rank(self.config.seed, self.state.step, self.ranks.rank)
        return resumed_from

    def _restore(self, resume: str) -> int | None:
        """Load the work folder's last.pt where it may be resumed; the step, or None."""
        last = self.work_dir / LAST
        if resume == "off":
            if last.is_file() and self.ranks.main:
                self._warn_discarded(last)
            return None
        if not last.is_file():
            logger.info("no checkpoint in %s yet: starting from step 0", self.work_dir)
            return None
        checkpoint = self._load_last(resume)
        if checkpoint is None:
            return None
        try:
            applied = resumable_changes(checkpoint, self.raw_config, self.data)
        except ResumeError as error:
            if resume == "strict":
                raise ResumeError(
                    f"cannot resume from {last}: {error}. Settings safe to change on resume: "
                    f"{', '.join(SAFE_ON_RESUME)}; run without --resume to start over"
                ) from None
            logger.warning("not resuming from %s: %s; starting from step 0", last, error)
            return None
        self.model.load_state_dict(checkpoint["model"])
        self.optimizer.load_state_dict(checkpoint["optimizer"])
        self.schedule.load_state_dict(checkpoint["schedule"])
        self.state = TrainState(**checkpoint["state"])
        set_rng_state(checkpoint["rng"])
        logger.info(
            "resumed from %s at step %d%s",
            last,
            self.state.step,
            f" (changed on resume: {', '.join(applied)})" if applied else "",
        )
        return self.state.step

    def _warn_discarded(self, last: Path) -> None:
        """Say what a fresh start throws away: the newest checkpoint of an unfinished run."""
        try:
            step = load_checkpoint(last)["state"]["step"]
        except CheckpointError:
            return  # a damaged one: nothing that could be resumed
        logger.warning(
            "starting from step 0 discards %s, the checkpoint of an unfinished run at step %d; "
            "to continue from it instead, run with --resume",
            last,
            step,
        )

    def _load_last(self, resume: str) -> dict[str, Any] | None:
        """The work folder's last.pt; a damaged one stops a strict resume, else is dropped."""
        try:
            return load_checkpoint(self.work_dir / LAST, self.device)
        except CheckpointError as error:
            if resume == "strict":
                raise
            logger.warning("not resuming: %s; starting from step 0", error)
            return None

    def publish(self, log: Path, best: Path, last: Path) -> None:
        """Move the finished log and checkpoints to their files; the work folder goes."""
        if not self.ranks.main:
            return
        moves = ((self.log_path, log), (self.work_dir / BEST, best), (self.work_dir / LAST, last))
        for source, target in moves:
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(source, target)
        shutil.rmtree(self.work_dir)

    # -- the loop -----------------------------------------------------------------------

    def train(self, resume: str = "off") -> dict[str, Any]:
        """Run (or continue: harness/stage.py, RESUME_MODES) training; returns
        train_summary.json's figures.
        """
        resumed_from = self._start(resume)
        config = self.train_config
        progress = Progress(config.epochs, self.batches.steps_per_epoch, self.state)
        started = time.perf_counter()
        steady_chars, steady_time = 0, 0.0
        stop = self._stop_reason()
        while self.state.epoch < config.epochs and stop is None:
            pending: list[PendingStep] = []
            interval_start = time.perf_counter()
            batches = self.batches.epoch(self.state.epoch, skip=self.state.step_in_epoch)
            for inputs, targets in batches:
                pending.append(self.train_step(inputs, targets))
                step = self.state.step
                at_eval = config.eval_every_steps and step % config.eval_every_steps == 0
                at_save = (
                    config.checkpoint_every_steps and step % config.checkpoint_every_steps == 0
                )
                if len(pending) == config.sync_every_steps or at_eval or at_save:
                    count, lr = len(pending), pending[-1].lr
                    elapsed = self._flush(pending, interval_start)
                    if step > config.sync_every_steps:  # the first interval holds warm-up
                        steady_chars += count * self.chars_per_step
                        steady_time += elapsed
                    progress.update(self.state, self.losses[-1], lr)
                    if at_eval:
                        self._evaluate()
                    at_target = at_eval and self._stop_reason() == "target"
                    if at_save or at_target:
                        self._save(LAST)
                    if at_target:
                        break
                    interval_start = time.perf_counter()
            else:  # the epoch ran to its end
                self._flush(pending, interval_start)
                self.state.epoch += 1
                self.state.step_in_epoch = 0
                self._evaluate()
                self._save(LAST)
                progress.end_epoch()
            stop = self._stop_reason()
        progress.close()
        return self._summary(
            time.perf_counter() - started, steady_chars, steady_time, resumed_from, stop
        )

    def _summary(
        self,
        wall_time_s: float,
        steady_chars: int,
        steady_time: float,
        resumed_from: int | None,
        stop: str | None,
    ) -> dict[str, Any]:
        window = min(LOSS_WINDOW, len(self.losses))
        state = self.state
        return {
            "plan_ids": ["T1", "T2", "T3", "T4", "T5", "T6", "T7", "T8"],
            "epochs_planned": self.train_config.epochs,
            "epochs_run": state.epoch,
            "steps": state.step,
            "steps_per_epoch": self.batches.steps_per_epoch,
            "chars_per_step": self.chars_per_step,
            "first_train_loss": sum(self.losses[:window]) / window,
            "final_train_loss": sum(self.losses[-window:]) / window,
            "last_step_loss": self.losses[-1],
            "loss_window_steps": window,
            "best_val_loss": state.best_val_loss,
            "best_val_bits_per_char": state.best_val_loss / math.log(2),
            "best_step": state.best_step,
            "val_history": state.val_history,
            "stopped_early": stop is not None and state.step < self.total_steps,
            "stop_reason": stop,
            "resumed_from_step": resumed_from,
            "train_time_s": wall_time_s,
            "chars_per_s": steady_chars / steady_time if steady_time else None,
            "precision": self.precision,
            "compile": (
                {"mode": self.train_config.compile_mode, "scope": self.train_config.compile_scope}
                if self.compiled
                else None
            ),
            "cuda_graph": self.captured,
            "world_size": self.ranks.world_size,
        }


def compiled_blocks(model: LanguageModel, **options: Any) -> list[Callable[..., torch.Tensor]]:
    """T5 regional compilation: torch.compile(**options) of each of the model's blocks
    (`model.blocks`: CharGPT's L transformer blocks) on its own. The blocks run the same
    code on the same shapes, so the first compilation serves all L (Dynamo inlines the
    modules: their weights are inputs, not constants).
    """
    return [torch.compile(block, **options) for block in model.blocks]
