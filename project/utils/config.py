"""The plan's configuration (../shared/plan.md): every section, every key, its type, its
check, and as its default the plan's value. These defaults are the one source of truth for
every hyperparameter: a config file (the CPU preset, a user's own), `--set key=value` and a
stage's config only override keys that exist here (harness.config loads and resolves them,
harness.sections builds and checks them). Needs only the standard library: the workflow
builds configs before any job.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from typing import Any

from harness.sections import (
    DEVICES,
    ConfigError,
    as_mapping,
    build_config,
    require,
    require_choice,
    require_seed,
)

__all__ = ["ARCHS", "COMPILE_MODES", "COMPILE_SCOPES", "Config", "ConfigError", "build"]

# The architectures `model.arch` may name; model/build.py builds each (M8 CharGPT: "gpt").
ARCHS = ("gpt",)

# torch.compile's modes (train.compile_mode), each with whether it replays the model from
# CUDA graphs of its own (torch._inductor.list_mode_options() lists what each mode sets).
COMPILE_MODES: dict[str, bool] = {
    "default": False,
    "reduce-overhead": True,
    "max-autotune": True,
    "max-autotune-no-cudagraphs": False,
}
# What torch.compile compiles (train.compile_scope): the whole forward, or each transformer
# block on its own ("regional compilation": the L blocks share one compilation, meant for a
# faster cold start, but nothing is fused across blocks).
COMPILE_SCOPES = ("model", "block")


@dataclass(frozen=True)
class DataConfig:
    """D1-D2: where the text comes from and how it is split."""

    dataset: str = "tinyshakespeare"
    filename: str = "input.txt"
    url: str | None = (
        "https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt"
    )
    # null: any UTF-8 text, its digest recorded in the manifest
    sha256: str | None = "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed"
    local_file: str | None = None  # an explicit copy of the text (preferred source)
    # offline mirror, laid out <mirror>/<dataset>/<filename>; env CHARGPT_DATA_MIRROR overrides
    mirror_dir: str | None = "../shared/data"
    cache_dir: str = "data_cache"  # where downloads are kept; env CHARGPT_DATA_CACHE overrides
    train_fraction: float = 0.9
    download_retries: int = 4
    download_timeout_s: float = 30.0

    def check(self) -> None:
        require(
            self.sha256 is None or re.fullmatch(r"[0-9a-fA-F]{64}", self.sha256) is not None,
            "data.sha256",
            "must be a 64-character hex SHA-256, or null to accept any text",
        )
        require(0.0 < self.train_fraction < 1.0, "data.train_fraction", "must be in (0, 1)")
        require(self.download_retries >= 0, "data.download_retries", "must be >= 0")
        require(self.download_timeout_s > 0, "data.download_timeout_s", "must be > 0")


@dataclass(frozen=True)
class ModelConfig:
    """M1-M8: the architecture (`arch`, one of ARCHS) and the transformer's sizes."""

    arch: str = "gpt"
    n_layer: int = 6
    n_head: int = 6
    d_model: int = 384
    block_size: int = 256  # context T
    dropout: float = 0.2
    rope_base: float = 10000.0
    norm_eps: float = 1e-6
    init_std: float = 0.02

    def check(self) -> None:
        require_choice(self.arch, "model.arch", ARCHS)
        for key in ("n_layer", "n_head", "d_model", "block_size"):
            require(getattr(self, key) > 0, f"model.{key}", "must be > 0")
        require(
            self.d_model % self.n_head == 0, "model.d_model", "must be divisible by model.n_head"
        )
        require(
            (self.d_model // self.n_head) % 2 == 0,
            "model.d_model",
            "d_model / n_head must be even (RoPE rotates pairs of dimensions)",
        )
        require(0.0 <= self.dropout < 1.0, "model.dropout", "must be in [0, 1)")
        require(self.rope_base > 1.0, "model.rope_base", "must be > 1")
        require(self.norm_eps > 0, "model.norm_eps", "must be > 0")
        require(self.init_std > 0, "model.init_std", "must be > 0")


@dataclass(frozen=True)
class TrainConfig:
    """T1-T7: optimisation, precision and speed, checkpoints."""

    epochs: int = 30  # the full run; early stopping (patience) ends it sooner
    patience: int | None = 5  # evaluations without improvement before stopping; null = never
    batch_size: int = 64  # B
    lr: float = 1e-3
    min_lr: float = 1e-4
    warmup_max_steps: int = 100  # warm-up = min(warmup_max_steps, warmup_fraction * steps)
    warmup_fraction: float = 0.05
    beta1: float = 0.9
    beta2: float = 0.99
    adam_eps: float = 1e-8
    weight_decay: float = 0.1
    grad_clip: float = 1.0
    precision: str = "auto"  # auto (bf16 on CUDA, fp32 on CPU) | bf16 | fp32
    compile: bool = True  # torch.compile on CUDA (ignored on the CPU)
    compile_mode: str = "default"  # one of COMPILE_MODES
    compile_scope: str = "model"  # model: one graph | block: each block alone, L share one
    cuda_graph: bool = True  # one CUDA graph replays the whole step (the CPU runs it uncaptured)
    target_val_loss: float | None = None  # stop once validation reaches it; null = never
    devices: int = 1  # > 1: torchrun + DistributedDataParallel, B split over the devices
    eval_every_steps: int = 0  # extra validations every k steps; 0 = after each epoch only
    checkpoint_every_steps: int = 0  # extra last.pt saves every k steps; 0 = each epoch only
    sync_every_steps: int = 10  # read the loss back to the host every k steps

    def check(self) -> None:
        require(self.epochs >= 1, "train.epochs", "must be >= 1")
        require(self.patience is None or self.patience >= 1, "train.patience", "must be >= 1")
        require(self.batch_size >= 1, "train.batch_size", "must be >= 1")
        require(0 < self.lr <= 1e6, "train.lr", "must be in (0, 1e6]")
        require(0 <= self.min_lr <= self.lr, "train.min_lr", "must be in [0, train.lr]")
        require(self.warmup_max_steps >= 0, "train.warmup_max_steps", "must be >= 0")
        require(0.0 <= self.warmup_fraction < 1.0, "train.warmup_fraction", "must be in [0, 1)")
        require(0.0 <= self.beta1 < 1.0, "train.beta1", "must be in [0, 1)")
        require(0.0 <= self.beta2 < 1.0, "train.beta2", "must be in [0, 1)")
        require(self.adam_eps > 0, "train.adam_eps", "must be > 0")
        require(self.weight_decay >= 0, "train.weight_decay", "must be >= 0")
        require(self.grad_clip > 0, "train.grad_clip", "must be > 0")
        require_choice(self.precision, "train.precision", ("auto", "bf16", "fp32"))
        require_choice(self.compile_mode, "train.compile_mode", tuple(COMPILE_MODES))
        require_choice(self.compile_scope, "train.compile_scope", COMPILE_SCOPES)
        require(
            not (self.cuda_graph and self.compile and COMPILE_MODES[self.compile_mode]),
            "train.compile_mode",
            f"{self.compile_mode} captures the model in CUDA graphs of its own, which cannot "
            "nest in train.cuda_graph's capture of the whole step: set train.cuda_graph=false "
            f"or a mode without them ({', '.join(m for m, g in COMPILE_MODES.items() if not g)})",
        )
        require(self.devices >= 1, "train.devices", "must be >= 1")
        require(
            self.batch_size % self.devices == 0,
            "train.batch_size",
            f"must split evenly over train.devices={self.devices} (each takes its share of "
            "every batch)",
        )
        require(
            self.target_val_loss is None or self.target_val_loss > 0,
            "train.target_val_loss",
            "must be > 0 or null",
        )
        for key in ("eval_every_steps", "checkpoint_every_steps"):
            require(getattr(self, key) >= 0, f"train.{key}", "must be >= 0 (0 = off)")
        require(self.sync_every_steps >= 1, "train.sync_every_steps", "must be >= 1")


@dataclass(frozen=True)
class EvalConfig:
    """D5, E1-E4: how the validation split is scored."""

    stride: int | None = None  # S; null = T/2
    batch_size: int = 1024  # windows a batch: the whole split (T=256, S=128) in one on a GPU

    def check(self) -> None:
        require(self.stride is None or self.stride >= 1, "eval.stride", "must be >= 1 or null")
        require(self.batch_size >= 1, "eval.batch_size", "must be >= 1")


@dataclass(frozen=True)
class SampleConfig:
    """E5: the samples."""

    prompt: str = "ROMEO:"
    num_chars: int = 500
    temperature: float = 0.8
    top_k: int | None = 40
    seed: int = 1337

    def check(self) -> None:
        require(len(self.prompt) > 0, "sample.prompt", "must not be empty")
        require(self.num_chars >= 1, "sample.num_chars", "must be >= 1")
        require(self.temperature > 0, "sample.temperature", "must be > 0")
        require(self.top_k is None or self.top_k >= 1, "sample.top_k", "must be >= 1 or null")
        require_seed(self.seed, "sample.seed")


@dataclass(frozen=True)
class Config:
    """A run's configuration (by default the plan), or one stage's view of it: the sections
    that the stage does not read are None there.
    """

    seed: int | None = 1337  # T8: one seed for Python, NumPy and PyTorch
    device: str | None = "auto"  # one of DEVICES
    data: DataConfig | None = dataclasses.field(default_factory=DataConfig)
    model: ModelConfig | None = dataclasses.field(default_factory=ModelConfig)
    train: TrainConfig | None = dataclasses.field(default_factory=TrainConfig)
    eval: EvalConfig | None = dataclasses.field(default_factory=EvalConfig)
    sample: SampleConfig | None = dataclasses.field(default_factory=SampleConfig)

    def check(self) -> None:
        if self.seed is not None:
            require_seed(self.seed, "seed")
        if self.device is not None:
            require_choice(self.device, "device", DEVICES)
        for section in (self.data, self.model, self.train, self.eval, self.sample):
            if section is not None:
                section.check()
        if self.model is not None and self.eval is not None:
            stride = self.eval.stride
            require(
                stride is None or stride <= self.model.block_size,
                "eval.stride",
                f"must be <= model.block_size ({self.model.block_size}); got {stride}",
            )

    def to_dict(self) -> dict[str, Any]:
        return as_mapping(self)


def build(raw: dict[str, Any], sections: tuple[str, ...] | None = None) -> Config:
    """A checked Config from a mapping (a checkpoint's, a stage's view: `sections`)."""
    return build_config(Config, raw, sections)
