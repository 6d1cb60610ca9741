"""Typed, validated configuration loaded from `configs/default.yaml` plus overrides.

`configs/default.yaml` holds every key with the plan's value. A config file given with
`--config` (or the CPU preset) and `--set key=value` pairs may only override keys that
exist there; unknown keys, wrong types and out-of-range values are rejected before any
work starts, with a message that names the key.

`resolve` decides a run's configuration once (plan, preset or the user's file, overrides,
and what `auto` means here); each stage then reads only its own sections
(`STAGE_SECTIONS`), so a change reruns exactly the stages that read it. This module needs
only PyYAML: the workflow calls it before any job, where importing torch would cost seconds.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import dataclasses
import functools
import importlib.util
import math
import os
import re
import sys
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

PROJECT_DIR = Path(__file__).resolve().parents[1]
REPO_DIR = PROJECT_DIR.parent
CONFIG_DIR = PROJECT_DIR / "configs"
DEFAULT_CONFIG = CONFIG_DIR / "default.yaml"
CPU_PRESET = CONFIG_DIR / "cpu.yaml"

# The config sections each stage reads, and so the sections whose change reruns it. The
# validation inside training (`eval`) picks best.pt, so it is part of training's config.
STAGE_SECTIONS: dict[str, tuple[str, ...]] = {
    "prepare": ("data",),
    "train": ("seed", "device", "model", "train", "eval"),
    "evaluate": ("device", "eval"),
    "sample": ("device", "sample"),
}
STAGES = tuple(STAGE_SECTIONS)
# What a run may change without being a deviation from the plan's design.
RUN_CHOICES = ("seed", "device", "train.epochs")
DEVICES = ("auto", "cpu", "cuda")  # `device`: auto picks CUDA where PyTorch sees it
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


class ConfigError(ValueError):
    """A configuration value is missing, unknown, of the wrong type or out of range."""


@dataclass(frozen=True)
class DataConfig:
    dataset: str
    filename: str
    url: str | None
    sha256: str | None  # null: any UTF-8 text, its digest recorded in the manifest
    local_file: str | None
    mirror_dir: str | None
    cache_dir: str
    train_fraction: float
    download_retries: int
    download_timeout_s: float

    def check(self) -> None:
        _require(
            self.sha256 is None or re.fullmatch(r"[0-9a-fA-F]{64}", self.sha256) is not None,
            "data.sha256",
            "must be a 64-character hex SHA-256, or null to accept any text",
        )
        _require(0.0 < self.train_fraction < 1.0, "data.train_fraction", "must be in (0, 1)")
        _require(self.download_retries >= 0, "data.download_retries", "must be >= 0")
        _require(self.download_timeout_s > 0, "data.download_timeout_s", "must be > 0")


@dataclass(frozen=True)
class ModelConfig:
    n_layer: int
    n_head: int
    d_model: int
    block_size: int
    dropout: float
    rope_base: float
    norm_eps: float
    init_std: float

    def check(self) -> None:
        for key in ("n_layer", "n_head", "d_model", "block_size"):
            _require(getattr(self, key) > 0, f"model.{key}", "must be > 0")
        _require(
            self.d_model % self.n_head == 0, "model.d_model", "must be divisible by model.n_head"
        )
        _require(
            (self.d_model // self.n_head) % 2 == 0,
            "model.d_model",
            "d_model / n_head must be even (RoPE rotates pairs of dimensions)",
        )
        _require(0.0 <= self.dropout < 1.0, "model.dropout", "must be in [0, 1)")
        _require(self.rope_base > 1.0, "model.rope_base", "must be > 1")
        _require(self.norm_eps > 0, "model.norm_eps", "must be > 0")
        _require(self.init_std > 0, "model.init_std", "must be > 0")


@dataclass(frozen=True)
class TrainConfig:
    epochs: int
    patience: int | None
    batch_size: int
    lr: float
    min_lr: float
    warmup_max_steps: int
    warmup_fraction: float
    beta1: float
    beta2: float
    adam_eps: float
    weight_decay: float
    grad_clip: float
    precision: str
    compile: bool
    compile_mode: str
    compile_scope: str
    cuda_graph: bool
    target_val_loss: float | None
    devices: int
    eval_every_steps: int
    checkpoint_every_steps: int
    sync_every_steps: int

    def check(self) -> None:
        _require(self.epochs >= 1, "train.epochs", "must be >= 1")
        _require(self.patience is None or self.patience >= 1, "train.patience", "must be >= 1")
        _require(self.batch_size >= 1, "train.batch_size", "must be >= 1")
        _require(0 < self.lr <= 1e6, "train.lr", "must be in (0, 1e6]")
        _require(0 <= self.min_lr <= self.lr, "train.min_lr", "must be in [0, train.lr]")
        _require(self.warmup_max_steps >= 0, "train.warmup_max_steps", "must be >= 0")
        _require(0.0 <= self.warmup_fraction < 1.0, "train.warmup_fraction", "must be in [0, 1)")
        _require(0.0 <= self.beta1 < 1.0, "train.beta1", "must be in [0, 1)")
        _require(0.0 <= self.beta2 < 1.0, "train.beta2", "must be in [0, 1)")
        _require(self.adam_eps > 0, "train.adam_eps", "must be > 0")
        _require(self.weight_decay >= 0, "train.weight_decay", "must be >= 0")
        _require(self.grad_clip > 0, "train.grad_clip", "must be > 0")
        _require_choice(self.precision, "train.precision", ("auto", "bf16", "fp32"))
        _require_choice(self.compile_mode, "train.compile_mode", tuple(COMPILE_MODES))
        _require_choice(self.compile_scope, "train.compile_scope", COMPILE_SCOPES)
        _require(
            not (self.cuda_graph and self.compile and COMPILE_MODES[self.compile_mode]),
            "train.compile_mode",
            f"{self.compile_mode} captures the model in CUDA graphs of its own, which cannot "
            "nest in train.cuda_graph's capture of the whole step: set train.cuda_graph=false "
            f"or a mode without them ({', '.join(m for m, g in COMPILE_MODES.items() if not g)})",
        )
        _require(self.devices >= 1, "train.devices", "must be >= 1")
        _require(
            self.batch_size % self.devices == 0,
            "train.batch_size",
            f"must split evenly over train.devices={self.devices} (each takes its share of "
            "every batch)",
        )
        _require(
            self.target_val_loss is None or self.target_val_loss > 0,
            "train.target_val_loss",
            "must be > 0 or null",
        )
        for key in ("eval_every_steps", "checkpoint_every_steps"):
            _require(getattr(self, key) >= 0, f"train.{key}", "must be >= 0 (0 = off)")
        _require(self.sync_every_steps >= 1, "train.sync_every_steps", "must be >= 1")


@dataclass(frozen=True)
class EvalConfig:
    stride: int | None
    batch_size: int

    def check(self) -> None:
        _require(self.stride is None or self.stride >= 1, "eval.stride", "must be >= 1 or null")
        _require(self.batch_size >= 1, "eval.batch_size", "must be >= 1")


@dataclass(frozen=True)
class SampleConfig:
    prompt: str
    num_chars: int
    temperature: float
    top_k: int | None
    seed: int

    def check(self) -> None:
        _require(len(self.prompt) > 0, "sample.prompt", "must not be empty")
        _require(self.num_chars >= 1, "sample.num_chars", "must be >= 1")
        _require(self.temperature > 0, "sample.temperature", "must be > 0")
        _require(self.top_k is None or self.top_k >= 1, "sample.top_k", "must be >= 1 or null")


@dataclass(frozen=True)
class Config:
    """A run's resolved configuration, or one stage's view of it: the sections that the
    stage does not read (STAGE_SECTIONS) are None there.
    """

    seed: int | None = None
    device: str | None = None
    data: DataConfig | None = None
    model: ModelConfig | None = None
    train: TrainConfig | None = None
    eval: EvalConfig | None = None
    sample: SampleConfig | None = None

    def check(self) -> None:
        if self.device is not None:
            _require_choice(self.device, "device", DEVICES)
        for section in (self.data, self.model, self.train, self.eval, self.sample):
            if section is not None:
                section.check()
        if self.model is not None and self.eval is not None:
            stride = self.eval.stride
            _require(
                stride is None or stride <= self.model.block_size,
                "eval.stride",
                f"must be <= model.block_size ({self.model.block_size}); got {stride}",
            )

    def to_dict(self) -> dict[str, Any]:
        return {key: value for key, value in dataclasses.asdict(self).items() if value is not None}


def _require(ok: bool, key: str, message: str) -> None:
    if not ok:
        raise ConfigError(f"config key '{key}' {message}")


def _require_choice(value: str, key: str, choices: tuple[str, ...]) -> None:
    _require(value in choices, key, f"must be one of {', '.join(choices)}; got {value!r}")


def read_yaml(path: Path) -> dict[str, Any]:
    """Read a YAML mapping; an empty file is an empty mapping."""
    return copy.deepcopy(_parse_yaml(path))


@functools.cache
def _parse_yaml(path: Path) -> dict[str, Any]:
    """Each file is parsed once a process: the workflow resolves many runs of the same files."""
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    with path.open("rb") as handle:  # bytes: PyYAML itself reports text that is not UTF-8
        try:
            loaded = yaml.safe_load(handle)
        except yaml.YAMLError as error:
            raise ConfigError(
                f"config file {path} is not valid YAML: {_yaml_problem(error)}"
            ) from error
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise ConfigError(f"config file {path} must hold a mapping of keys, not {type(loaded)}")
    return loaded


def _yaml_problem(error: yaml.YAMLError, column_offset: int = 0) -> str:
    """`line L, column C: problem` from PyYAML's error (1-based, as editors count);
    `column_offset` shifts columns on the first line (the key before a `--set` value).
    """
    if not isinstance(error, yaml.MarkedYAMLError) or error.problem_mark is None:
        return " ".join(str(error).split())  # e.g. a control character: PyYAML names no line
    mark = error.problem_mark
    column = mark.column + (column_offset if mark.line == 0 else 0)
    return f"line {mark.line + 1}, column {column + 1}: {error.problem}"


def merge(base: dict[str, Any], override: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Return `base` with `override` applied; a key that `base` lacks is an error."""
    merged = copy.deepcopy(base)
    for key, value in override.items():
        dotted = f"{prefix}{key}"
        if key not in base:
            known = ", ".join(f"{prefix}{k}" for k in base)
            raise ConfigError(f"unknown config key '{dotted}' (known keys here: {known})")
        if isinstance(base[key], dict):
            if not isinstance(value, dict):
                raise ConfigError(f"config key '{dotted}' must be a mapping of keys")
            merged[key] = merge(base[key], value, prefix=f"{dotted}.")
        else:
            merged[key] = value
    return merged


def parse_assignment(text: str) -> dict[str, Any]:
    """Turn `a.b=value` (from `--set`) into the nested mapping {'a': {'b': value}}."""
    key, sep, raw = text.partition("=")
    if not sep or not key:
        raise ConfigError(f"--set expects key=value (for example train.lr=3e-4), got {text!r}")
    try:
        value = yaml.safe_load(raw) if raw else None
    except yaml.YAMLError as error:
        problem = _yaml_problem(error, column_offset=len(key) + 1)
        raise ConfigError(f"--set {text!r} is not valid YAML: {problem}") from error
    return nested(key, value)


def build(raw: dict[str, Any], sections: tuple[str, ...] | None = None) -> Config:
    """Turn a mapping into a checked Config; types follow the dataclass hints.

    `sections` None: every section must be there. Otherwise exactly those (a stage's view).
    """
    wanted = sections or tuple(field.name for field in dataclasses.fields(Config))
    unexpected = sorted(set(raw) - set(wanted))
    if sections is not None and unexpected:
        raise ConfigError(f"config keys {unexpected} are not read here (only {list(wanted)})")
    config = _to_dataclass(Config, {key: raw[key] for key in raw if key in wanted}, "", wanted)
    config.check()
    return config


def _to_dataclass(
    cls: type, raw: dict[str, Any], prefix: str, wanted: tuple[str, ...] | None = None
) -> Any:
    hints = typing.get_type_hints(cls)
    values = {}
    for field in dataclasses.fields(cls):
        dotted = f"{prefix}{field.name}"
        if wanted is not None and field.name not in wanted:
            continue
        if field.name not in raw:
            raise ConfigError(f"config key '{dotted}' is missing")
        hint = _present(hints[field.name]) if cls is Config else hints[field.name]
        value = raw[field.name]
        if dataclasses.is_dataclass(hint):
            if not isinstance(value, dict):
                raise ConfigError(f"config key '{dotted}' must be a mapping of keys")
            values[field.name] = _to_dataclass(hint, value, prefix=f"{dotted}.")
        else:
            values[field.name] = _coerce(value, hint, dotted)
    return cls(**values)


def _present(hint: Any) -> Any:
    """A Config field's type when the section is there: `ModelConfig | None` → ModelConfig
    (None only means that a stage does not read it).
    """
    (present,) = [arg for arg in typing.get_args(hint) if arg is not type(None)]
    return present


def _coerce(value: Any, hint: Any, key: str) -> Any:
    """Check `value` against a simple type hint (int, float, str, bool, or X | None)."""
    if isinstance(hint, types.UnionType):
        if value is None:
            return None
        (hint,) = [arg for arg in typing.get_args(hint) if arg is not type(None)]
    if hint in (int, float) and isinstance(value, str):
        # YAML 1.1 reads "1e-3" (no dot) as a string, and Snakemake's --config may hand
        # numbers over as strings; read a string that is exactly such a number as one.
        with contextlib.suppress(ValueError):
            value = hint(value)
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if hint is float and isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"config key '{key}' must be a finite number, got {value!r}")
    if isinstance(value, hint) and not (hint is int and isinstance(value, bool)):
        return value
    raise ConfigError(
        f"config key '{key}' must be of type {hint.__name__}, got {value!r} "
        f"({type(value).__name__})"
    )


def load(
    config_file: Path | None = None, overrides: list[dict[str, Any]] | tuple = ()
) -> tuple[Config, dict[str, Any]]:
    """Load the defaults, then `config_file`, then each override mapping in order.

    Returns the checked Config and the merged raw mapping (saved in checkpoints).
    """
    raw = read_yaml(DEFAULT_CONFIG)
    if config_file is not None:
        raw = merge(raw, read_yaml(config_file))
    for override in overrides:
        raw = merge(raw, override)
    return build(raw), raw


def differences(config: Config, reference: Config) -> list[dict[str, Any]]:
    """List the keys where `config` differs from `reference` (dotted key, plan, used)."""
    return _diff(config.to_dict(), reference.to_dict(), prefix="")


def changed_keys(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """Dotted keys whose values differ between two raw mappings of the same sections."""
    return [row["key"] for row in _diff(new, old, prefix="")]


def _diff(used: dict[str, Any], plan: dict[str, Any], prefix: str) -> list[dict[str, Any]]:
    rows = []
    for key, value in used.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict):
            rows.extend(_diff(value, plan[key], prefix=f"{dotted}."))
        elif value != plan[key]:
            rows.append({"key": dotted, "plan": plan[key], "used": value})
    return rows


# -- resolving a run's configuration ----------------------------------------------------


@dataclass(frozen=True)
class Resolved:
    """A run's configuration, decided once: every key, `device` concrete (cpu or cuda)."""

    config: Config
    raw: dict[str, Any]  # config as a mapping of checked values
    source: str  # "default" (the plan), "cpu-preset" or the user's file

    def view(self, stage: str) -> dict[str, Any]:
        """The sections `stage` reads (STAGE_SECTIONS), as a raw mapping."""
        return {key: copy.deepcopy(self.raw[key]) for key in STAGE_SECTIONS[stage]}

    def deviations(self) -> list[str]:
        """What this run does differently from the plan, as the report lists it."""
        notes = []
        if self.source == "cpu-preset":
            notes.append(
                f"CPU preset ({CPU_PRESET.relative_to(PROJECT_DIR)}) instead of the plan's "
                "full configuration: no CUDA device and no explicit config file"
            )
        if self.config.device == "cpu":
            notes.append("no GPU: trained on the CPU in fp32 (T5 plans bf16 on CUDA)")
        plan, _ = load()
        for row in differences(self.config, plan):
            if row["key"] not in RUN_CHOICES:
                notes.append(f"config {row['key']} = {row['used']!r} (plan: {row['plan']!r})")
        return notes

    def record(self) -> dict[str, Any]:
        """What the report shows of the configuration (`resolved.json`)."""
        return {"source": self.source, "deviations": self.deviations(), "config": self.raw}


def cuda_present() -> bool:
    """Whether `device: auto` means CUDA here: the same answer as torch.cuda.is_available()
    for a working install (a CUDA build of PyTorch, and a GPU that the NVIDIA driver exposes
    and CUDA_VISIBLE_DEVICES does not hide), found without importing torch (1.5 s), because
    the workflow asks before any job. A stage that gets `cuda` where PyTorch disagrees
    stops with a DeviceError.
    """
    spec = importlib.util.find_spec("torch")
    if spec is None or not spec.submodule_search_locations:
        return False
    version = Path(spec.submodule_search_locations[0]) / "version.py"
    built_for_cuda = version.is_file() and re.search(
        r"^cuda\b[^=\n]*=\s*['\"]", version.read_text(encoding="utf-8"), re.MULTILINE
    )
    hidden = os.environ.get("CUDA_VISIBLE_DEVICES", "unset").strip() in ("", "-1", "NoDevFiles")
    gpus = Path("/proc/driver/nvidia/gpus")
    return bool(built_for_cuda) and not hidden and gpus.is_dir() and any(gpus.iterdir())


def resolve(
    config_file: Path | None = None,
    overrides: list[dict[str, Any]] | tuple = (),
    cuda: bool | None = None,
) -> Resolved:
    """Decide a run's configuration: the plan, then `config_file`, then the overrides.

    Without a config file, a run on the CPU uses the CPU preset (configs/cpu.yaml) instead
    of the plan's sizes. `device: auto` becomes cpu or cuda here (`cuda`: whether CUDA is
    there; default: ask `cuda_present`), so every stage reads the same decision.
    """
    config, _ = load(config_file, overrides)
    if config.device == "auto":
        cuda = cuda_present() if cuda is None else cuda
        overrides = [*overrides, {"device": "cuda" if cuda else "cpu"}]
        config, _ = load(config_file, overrides)
    source = "default" if config_file is None else str(config_file)
    if config_file is None and config.device == "cpu":
        config, _ = load(CPU_PRESET, overrides)
        source = "cpu-preset"
    # The checked values (3e-4, not the string "3e-4"), so that equal settings are equal.
    return Resolved(config, config.to_dict(), source)


def nested(key: str, value: Any) -> dict[str, Any]:
    """`("train.lr", 3e-4)` → {"train": {"lr": 3e-4}}: a dotted key as an override mapping."""
    *parents, last = key.split(".")
    override: dict[str, Any] = {last: value}
    for parent in reversed(parents):
        override = {parent: override}
    return override


def data_source_override(source: str) -> dict[str, Any]:
    """`--data-source`: a file (data.local_file), a mirror folder (data.mirror_dir) or a URL."""
    if source.startswith(("http://", "https://")):
        return {"data": {"url": source}}
    path = Path(source).expanduser().resolve()
    if path.is_dir():
        return {"data": {"mirror_dir": str(path)}}
    if path.is_file():
        return {"data": {"local_file": str(path)}}
    raise ConfigError(f"--data-source {source}: no such file or folder (nor an http(s) URL)")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options that choose a run's configuration (run.py and this module's CLI)."""
    parser.add_argument(
        "--config",
        type=Path,
        help="YAML file whose keys override configs/default.yaml (the plan); without it, "
        "a run on the CPU uses configs/cpu.yaml",
    )
    parser.add_argument(
        "--set",
        dest="assignments",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override one config key, e.g. --set train.lr=3e-4 (repeatable)",
    )
    parser.add_argument("--epochs", type=int, help="training epochs (train.epochs)")
    parser.add_argument(
        "--device",
        choices=DEVICES,
        help="where to run; auto = CUDA if available, else the CPU (config key: device)",
    )
    parser.add_argument("--seed", type=int, help="the one seed of Python, NumPy, PyTorch (T8)")
    parser.add_argument(
        "--data-source",
        help="where the text comes from: a file (data.local_file), a mirror folder laid out "
        "<dir>/<dataset>/<file> (data.mirror_dir) or an http(s) URL (data.url)",
    )


def resolve_arguments(args: argparse.Namespace) -> Resolved:
    """The configuration that `add_arguments`' options choose."""
    overrides = [parse_assignment(text) for text in args.assignments]
    if args.epochs is not None:
        overrides.append(nested("train.epochs", args.epochs))
    if args.seed is not None:
        overrides.append({"seed": args.seed})
    if args.device is not None:
        overrides.append({"device": args.device})
    if args.data_source is not None:
        overrides.append(data_source_override(args.data_source))
    return resolve(args.config, overrides)


def main(argv: list[str] | None = None) -> int:
    """`python project/utils/config.py [--config FILE] [--set KEY=VALUE ...]`: check a
    configuration and print it as a run would use it, without running anything.
    """
    parser = argparse.ArgumentParser(description=main.__doc__)
    add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        resolved = resolve_arguments(args)
    except ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"# source: {resolved.source}")
    print(yaml.safe_dump(resolved.raw, sort_keys=False, allow_unicode=True), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
