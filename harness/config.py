"""A run's configuration: a plan (the defaults of its config dataclass) plus overrides.

A config file given with `--config` (or the plan's CPU preset) and `--set key=value` pairs
may only override keys that the plan has; unknown keys, wrong types and out-of-range values
are rejected before any work starts, with a message that names the key.

`resolve` decides a run's configuration once (plan, preset or the user's file, overrides,
and what `auto` means here); each stage then reads only the sections its declaration names
(harness/stage.py), so a change reruns exactly the stages that read it. This module needs
only PyYAML: the workflow calls it before any job, where importing torch would cost seconds.
"""

from __future__ import annotations

import argparse
import copy
import functools
import importlib.util
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from harness.sections import DEVICES, ConfigError, as_mapping, build_config, reject_unknown

if TYPE_CHECKING:
    from harness.plan import Plan

CONFIGS = "configs"  # a plan's folder of config files (its CPU preset among them)


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
    reject_unknown(override, base, prefix)
    merged = dict(base)  # a new mapping at every level that the override reaches
    for key, value in override.items():
        dotted = f"{prefix}{key}"
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


def load(
    plan: Plan, config_file: Path | None = None, overrides: list[dict[str, Any]] | tuple = ()
) -> tuple[Any, dict[str, Any]]:
    """Load the plan, then `config_file`, then each override mapping in order. Returns the
    checked config and the merged raw mapping.
    """
    raw = merged(plan, config_file, overrides)
    return build_config(plan.config, raw), copy.deepcopy(raw)


def merged(
    plan: Plan, config_file: Path | None = None, overrides: list[dict[str, Any]] | tuple = ()
) -> dict[str, Any]:
    """The plan, then `config_file`, then each override, as one mapping (which shares what
    no override changed with plan_mapping(): read it, don't change it).
    """
    raw = plan_mapping(plan.config)
    if config_file is not None:
        raw = merge(raw, read_yaml(config_file))
    for override in overrides:
        raw = merge(raw, override)
    return raw


@functools.cache
def plan_mapping(config: type) -> dict[str, Any]:
    """The plan (its config class's defaults) as a mapping; shared: merge copies what it
    changes.
    """
    return as_mapping(config())


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

    plan: Plan
    config: Any  # the plan's config dataclass, built and checked
    raw: dict[str, Any]  # config as a mapping of checked values
    source: str  # "default" (the plan), "cpu-preset" or the user's file

    def view(self, sections: tuple[str, ...]) -> dict[str, Any]:
        """The sections a stage reads (its declaration's `sections`), as a raw mapping."""
        return {key: copy.deepcopy(self.raw[key]) for key in sections}

    def deviations(self) -> list[str]:
        """What this run does differently from the plan, as the report lists it."""
        notes = []
        if self.source == "cpu-preset":
            notes.append(
                f"CPU preset ({CONFIGS}/{self.plan.cpu_preset}) instead of the plan's full "
                "configuration: no CUDA device and no explicit config file"
            )
        if self.config.device == "cpu" and self.plan.cpu_deviation:
            notes.append(self.plan.cpu_deviation)
        run_choices = ("seed", "device", self.plan.epochs_key)
        for row in _diff(self.raw, plan_mapping(self.plan.config), prefix=""):
            if row["key"] not in run_choices:
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
    plan: Plan,
    config_file: Path | None = None,
    overrides: list[dict[str, Any]] | tuple = (),
    cuda: bool | None = None,
) -> Resolved:
    """Decide a run's configuration: the plan, then `config_file`, then the overrides.

    Without a config file, a run on the CPU uses the plan's CPU preset (if it has one)
    instead of the plan's sizes. `device: auto` becomes cpu or cuda here (`cuda`: whether
    CUDA is there; default: ask `cuda_present`), so every stage reads the same decision.
    """
    # The device first, from the merged values (checked below, with the rest): the preset
    # that it may bring in comes before the overrides, which are checked against it.
    device = merged(plan, config_file, overrides).get("device")
    if device == "auto":
        cuda = cuda_present() if cuda is None else cuda
        device = "cuda" if cuda else "cpu"
        overrides = [*overrides, {"device": device}]
    source = "default" if config_file is None else str(config_file)
    if config_file is None and device == "cpu" and plan.cpu_preset:
        config_file = plan.folder / CONFIGS / plan.cpu_preset
        source = "cpu-preset"
    config = build_config(plan.config, merged(plan, config_file, overrides))
    # The checked values (3e-4, not the string "3e-4"), so that equal settings are equal.
    return Resolved(plan, config, as_mapping(config), source)


def nested(key: str, value: Any) -> dict[str, Any]:
    """`("train.lr", 3e-4)` → {"train": {"lr": 3e-4}}: a dotted key as an override mapping."""
    *parents, last = key.split(".")
    override: dict[str, Any] = {last: value}
    for parent in reversed(parents):
        override = {parent: override}
    return override


def add_arguments(parser: argparse.ArgumentParser, plan: Plan) -> None:
    """The options that choose a run's configuration (every command of run.py)."""
    preset = (
        f"; without it, a run on the CPU uses {CONFIGS}/{plan.cpu_preset} ({CONFIGS}/plan.yaml, "
        "which holds no keys, insists on the plan)"
        if plan.cpu_preset
        else ""
    )
    parser.add_argument(
        "--config", type=Path, help=f"YAML file whose keys override the plan{preset}"
    )
    parser.add_argument(
        "--set",
        dest="assignments",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override one config key, e.g. --set seed=7 (repeatable)",
    )
    parser.add_argument("--epochs", type=int, help=f"training epochs ({plan.epochs_key})")
    parser.add_argument(
        "--device",
        choices=DEVICES,
        help="where to run; auto = CUDA if available, else the CPU (config key: device)",
    )
    parser.add_argument("--seed", type=int, help="the one seed of Python, NumPy, PyTorch")
    parser.add_argument(
        "--data-source",
        help="where the data comes from: a file, a mirror folder or an http(s) URL "
        "(the plan's data section says how)",
    )


def resolve_arguments(plan: Plan, args: argparse.Namespace) -> Resolved:
    """The configuration that `add_arguments`' options choose."""
    overrides = [parse_assignment(text) for text in args.assignments]
    if args.epochs is not None:
        overrides.append(nested(plan.epochs_key, args.epochs))
    if args.seed is not None:
        overrides.append({"seed": args.seed})
    if args.device is not None:
        overrides.append({"device": args.device})
    if args.data_source is not None:
        overrides.append(plan.data_source(args.data_source))
    return resolve(plan, args.config, overrides)
