"""Training's progress on the console: tqdm bars on a terminal, plain lines elsewhere."""

from __future__ import annotations

import logging
import math
import sys
import time

from tqdm import tqdm

from ..training.resume import TrainState

logger = logging.getLogger(__name__)


class Progress:
    """tqdm bars for epochs and steps on a terminal; otherwise (a log file, the workflow's
    console) a plain line every `LOG_EVERY_S` seconds, besides each validation's line.
    """

    LOG_EVERY_S = 5.0

    def __init__(self, epochs: int, steps_per_epoch: int, state: TrainState) -> None:
        self.epochs = epochs
        self.steps_per_epoch = steps_per_epoch
        self.last_logged = -math.inf
        self.interactive = sys.stderr.isatty()
        self.epoch_bar = self.step_bar = None
        if self.interactive:
            self.epoch_bar = tqdm(total=epochs, initial=state.epoch, desc="epochs", position=0)
            self.step_bar = tqdm(
                total=steps_per_epoch,
                initial=state.step_in_epoch,
                desc="steps",
                position=1,
                leave=False,
            )

    def update(self, state: TrainState, loss: float, lr: float) -> None:
        if self.step_bar is not None:
            self.step_bar.n = state.step_in_epoch
            self.step_bar.set_postfix(loss=f"{loss:.4f}", lr=f"{lr:.2e}")
        elif time.monotonic() - self.last_logged >= self.LOG_EVERY_S:
            self.last_logged = time.monotonic()
            logger.info(
                "epoch %d/%d step %d/%d (total %d): loss %.4f lr %.2e",
                state.epoch + 1,
                self.epochs,
                state.step_in_epoch,
                self.steps_per_epoch,
                state.step,
                loss,
                lr,
            )

    def end_epoch(self) -> None:
        if self.epoch_bar is not None and self.step_bar is not None:
            self.epoch_bar.update(1)
            self.step_bar.reset()

    def close(self) -> None:
        for bar in (self.step_bar, self.epoch_bar):
            if bar is not None:
                bar.close()
