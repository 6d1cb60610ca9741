"""The plan's configuration: every key, its type, its check, and as its default the plan's
value (../shared/plan-digits.md). The model section is the model package's own
(model/config.py); harness.sections builds and checks a mapping into these classes. Needs
no torch: the workflow builds configs before any job.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from harness.sections import DEVICES, require, require_choice, require_seed

from ..model.config import ModelConfig


@dataclass(frozen=True)
class DataConfig:
    """D1, D4: where the digits come from, and whether training images are shifted."""

    local_file: str | None = None
    """D1: an explicit copy of digits.csv, the preferred source; not empty; null: none."""
    mirror_dir: str | None = "../shared/data"
    """D1: a mirror laid out <mirror>/digits/digits.csv, relative to the repository root; the
    environment variable DIGITS_DATA_MIRROR overrides it; not empty; null: none."""
    augment: bool = True
    """D4: shift each training image by a random (dy, dx) ∈ {−1, 0, 1}²."""

    def check(self) -> None:
        for key in ("local_file", "mirror_dir"):
            value = getattr(self, key)
            require(value is None or value.strip() != "", f"data.{key}", "must not be empty")


@dataclass(frozen=True)
class TrainConfig:
    """T2-T6: optimisation and the run's length."""

    epochs: int = 40
    """T6: the full run's epochs (the quick validation: 2); >= 1."""
    batch_size: int = 32
    """D4: B, images a batch, the last smaller batch kept; >= 1."""
    lr: float = 2e-3
    """T2: the peak learning rate; in (0, 10]."""
    final_lr_fraction: float = 0.01
    """T3: the last step's learning rate, as a share of lr; in [0, 1]."""
    warmup_fraction: float = 0.05
    """T3: the warm-up's share of the optimiser steps (at least one step); in [0, 1)."""
    beta1: float = 0.9
    """T2: AdamW's β1; in [0, 1)."""
    beta2: float = 0.999
    """T2: AdamW's β2; in [0, 1)."""
    adam_eps: float = 1e-8
    """T2: AdamW's ε; > 0."""
    weight_decay: float = 5e-4
    """T2: AdamW's weight decay, on convolution and linear weights only; >= 0."""
    grad_clip: float = 5.0
    """T4: the ceiling of the global gradient norm; > 0."""

    def check(self) -> None:
        require(self.epochs >= 1, "train.epochs", "must be >= 1")
        require(self.batch_size >= 1, "train.batch_size", "must be >= 1")
        require(0 < self.lr <= 10, "train.lr", "must be in (0, 10]")
        require(0 <= self.final_lr_fraction <= 1, "train.final_lr_fraction", "must be in [0, 1]")
        require(0 <= self.warmup_fraction < 1, "train.warmup_fraction", "must be in [0, 1)")
        require(0 <= self.beta1 < 1, "train.beta1", "must be in [0, 1)")
        require(0 <= self.beta2 < 1, "train.beta2", "must be in [0, 1)")
        require(self.adam_eps > 0, "train.adam_eps", "must be > 0")
        require(self.weight_decay >= 0, "train.weight_decay", "must be >= 0")
        require(self.grad_clip > 0, "train.grad_clip", "must be > 0")


@dataclass(frozen=True)
class EvalConfig:
    """E5: the hardest test images drawn."""

    hardest: int = 16
    """E5: how many of the hardest test images are drawn, 4 a row; in [1, 64]."""

    def check(self) -> None:
        require(1 <= self.hardest <= 64, "eval.hardest", "must be in [1, 64]")


@dataclass(frozen=True)
class Config:
    """A run's configuration (by default the plan), or one stage's view of it: the sections
    that the stage does not read are None there.
    """

    seed: int | None = 1337
    """T8: one seed for Python, NumPy and PyTorch; in [0, 2**32 - 1]."""
    device: str | None = "auto"
    """One of DEVICES: auto (CUDA where PyTorch sees it, else the CPU), cpu or cuda; T5: fp32
    on every device."""
    data: DataConfig | None = dataclasses.field(default_factory=DataConfig)
    """D1, D4: where the digits come from, and whether training images are shifted."""
    model: ModelConfig | None = dataclasses.field(default_factory=ModelConfig)
    """M2/M3: the plan's model (model/config.py)."""
    train: TrainConfig | None = dataclasses.field(default_factory=TrainConfig)
    """T2-T6: optimisation and the run's length."""
    eval: EvalConfig | None = dataclasses.field(default_factory=EvalConfig)
    """E5: the hardest test images drawn."""

    def check(self) -> None:
        if self.seed is not None:
            require_seed(self.seed, "seed")
        if self.device is not None:
            require_choice(self.device, "device", DEVICES)
        for section in (self.data, self.model, self.train, self.eval):
            if section is not None:
                section.check()
