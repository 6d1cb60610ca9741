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
    """D1: the text's name: its folder in a mirror and in the download cache."""
    filename: str = "input.txt"
    """D1: the text's file name in that folder (<mirror>/<dataset>/<filename>)."""
    url: str | None = (
        "https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt"
    )
    """D1: where the text is downloaded from when no local copy holds it; null: no download."""
    sha256: str | None = "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed"
    """D1: the text's SHA-256 (64 hex characters), checked on every copy; null: any UTF-8
    text, its digest recorded in the manifest."""
    local_file: str | None = None
    """D1: an explicit copy of the text, the preferred source (`--data-source FILE`)."""
    mirror_dir: str | None = "../shared/data"
    """D1: an offline mirror laid out <mirror>/<dataset>/<filename>, relative to the repository
    root; the environment variable CHARGPT_DATA_MIRROR overrides it; null: none."""
    cache_dir: str = "data_cache"
    """D1: where downloads are kept; the environment variable CHARGPT_DATA_CACHE overrides it."""
    train_fraction: float = 0.9
    """D2: the share of the text, from its start, that trains (the rest validates); in (0, 1)."""
    download_retries: int = 4
    """D1: further download attempts after a transient failure; >= 0."""
    download_timeout_s: float = 30.0
    """D1: seconds a download waits for the server before it fails; > 0."""

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
    """M8: the architecture that model/build.py builds; one of ARCHS: gpt."""
    n_layer: int = 6
    """M8: L, the number of transformer blocks (M6); >= 1."""
    n_head: int = 6
    """M4: H, attention heads a block; >= 1, and d_model / n_head must be even."""
    d_model: int = 384
    """M1: d, the embedding width; >= 1, divisible by n_head."""
    block_size: int = 256
    """D4, M2: T, the context in characters (training windows, RoPE tables); >= 1."""
    dropout: float = 0.2
    """M4, M5, M8: p, dropout on attention weights, block outputs and embeddings; in [0, 1)."""
    rope_base: float = 10000.0
    """M2: RoPE's base of the rotation angles; > 1."""
    norm_eps: float = 1e-6
    """M3: RMSNorm's ε; > 0."""
    init_std: float = 0.02
    """M7: the standard deviation of the initial weights (residual outputs: / sqrt(2L)); > 0."""

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

    epochs: int = 30
    """T7: the full run's epochs; early stopping (patience) ends it sooner; >= 1."""
    patience: int | None = 5
    """T7: validations without improvement before stopping; >= 1; null: never stop early."""
    batch_size: int = 64
    """T6: B, windows a step (over all devices); >= 1, divisible by devices."""
    lr: float = 1e-3
    """T3: the peak learning rate; in (0, 1e6]."""
    min_lr: float = 1e-4
    """T3: the learning rate at the last step, after the cosine decay; in [0, lr]."""
    warmup_max_steps: int = 100
    """T3: warm-up = min(warmup_max_steps, warmup_fraction × steps) steps; >= 0."""
    warmup_fraction: float = 0.05
    """T3: the warm-up's share of the run's optimiser steps (capped above); in [0, 1)."""
    beta1: float = 0.9
    """T2: AdamW's β1; in [0, 1)."""
    beta2: float = 0.99
    """T2: AdamW's β2; in [0, 1)."""
    adam_eps: float = 1e-8
    """T2: AdamW's ε; > 0."""
    weight_decay: float = 0.1
    """T2: AdamW's weight decay, on parameters of two or more dimensions only; >= 0."""
    grad_clip: float = 1.0
    """T4: the ceiling of the global gradient norm; > 0."""
    precision: str = "auto"
    """T5: auto (bf16 on CUDA, fp32 on the CPU), bf16 or fp32."""
    compile: bool = True
    """T5: torch.compile the model on CUDA (ignored on the CPU)."""
    compile_mode: str = "default"
    """T5: torch.compile's mode, one of COMPILE_MODES: default, reduce-overhead, max-autotune,
    max-autotune-no-cudagraphs (the two with CUDA graphs of their own need cuda_graph false)."""
    compile_scope: str = "model"
    """T5: what torch.compile compiles: model (the whole forward, one graph) or block (each
    block alone, the L blocks sharing one compilation)."""
    cuda_graph: bool = True
    """T5: one CUDA graph replays the whole step on CUDA (the CPU runs it uncaptured)."""
    target_val_loss: float | None = None
    """T7: stop once the validation loss reaches it; > 0; null: never."""
    devices: int = 1
    """GPUs a training uses; >= 1; > 1: torchrun and DistributedDataParallel, B split over them."""
    eval_every_steps: int = 0
    """T7: an extra validation every k steps; >= 0; 0: after each epoch only."""
    checkpoint_every_steps: int = 0
    """T7: an extra last.pt save every k steps; >= 0; 0: after each epoch only."""
    sync_every_steps: int = 10
    """T5: read the losses back to the host (progress, log) every k steps; >= 1."""

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

    stride: int | None = None
    """D5: S, the step between validation windows; in [1, model.block_size]; null: T/2."""
    batch_size: int = 1024
    """E1: windows a batch (1024: the whole split, T=256 and S=128, at once on a GPU); >= 1."""

    def check(self) -> None:
        require(self.stride is None or self.stride >= 1, "eval.stride", "must be >= 1 or null")
        require(self.batch_size >= 1, "eval.batch_size", "must be >= 1")


@dataclass(frozen=True)
class SampleConfig:
    """E5: the samples."""

    prompt: str = "ROMEO:"
    """E5: the text the samples continue; not empty."""
    num_chars: int = 500
    """E5: characters generated; >= 1."""
    temperature: float = 0.8
    """E5: the logits are divided by it before sampling; > 0."""
    top_k: int | None = 40
    """E5: sample among the k likeliest characters only; >= 1; null: among all."""
    seed: int = 1337
    """E5: the sampling's own seed; in [0, 2**32 - 1]."""

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

    seed: int | None = 1337
    """T8: one seed for Python, NumPy and PyTorch; in [0, 2**32 - 1]."""
    device: str | None = "auto"
    """T5: one of DEVICES: auto (CUDA where PyTorch sees it, else the CPU), cpu or cuda."""
    data: DataConfig | None = dataclasses.field(default_factory=DataConfig)
    """D1-D2: where the text comes from and how it is split."""
    model: ModelConfig | None = dataclasses.field(default_factory=ModelConfig)
    """M1-M8: the architecture and the transformer's sizes."""
    train: TrainConfig | None = dataclasses.field(default_factory=TrainConfig)
    """T1-T7: optimisation, precision and speed, checkpoints."""
    eval: EvalConfig | None = dataclasses.field(default_factory=EvalConfig)
    """D5, E1-E4: how the validation split is scored."""
    sample: SampleConfig | None = dataclasses.field(default_factory=SampleConfig)
    """E5: the samples."""

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
