"""A plan's configuration as checked dataclasses: the generic part.

A plan declares its configuration as a frozen dataclass (`Plan.config`) whose fields are the
top-level keys (`seed`, `device`, ...) and its sections (each a frozen dataclass with the
plan's values as defaults and a `check()` that raises ConfigError). Every field has a
docstring, a string on the line below it that says what it does and its range
(harness/reference.py makes the parameter reference of them). `build_config` turns a
mapping into that dataclass, field by field: types follow the hints, unknown keys and wrong
types are errors that name the key. A key the mapping lacks, as in a config or checkpoint
written before the key existed, takes its default, and a warning says so. Needs only the
standard library: the workflow builds configs before any job.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import logging
import math
import types
import typing
from collections.abc import Collection
from typing import Any

from harness.errors import ProjectError

logger = logging.getLogger(__name__)

DEVICES = ("auto", "cpu", "cuda")  # `device`: auto picks CUDA where PyTorch sees it
SEED_MAX = 2**32 - 1  # NumPy's seeds are 32-bit


class ConfigError(ProjectError, ValueError):
    """A configuration value is unknown, of the wrong type or out of range."""

    exit_code = 2


def require(ok: bool, key: str, message: str) -> None:
    """ConfigError `config key '<key>' <message>` unless `ok`."""
    if not ok:
        raise ConfigError(f"config key '{key}' {message}")


def require_seed(seed: int, key: str) -> None:
    require(0 <= seed <= SEED_MAX, key, f"must be in [0, 2**32 - 1] (NumPy's range); got {seed}")


def require_choice(value: str, key: str, choices: tuple[str, ...]) -> None:
    require(value in choices, key, f"must be one of {', '.join(choices)}; got {value!r}")


def as_mapping(config: Any) -> dict[str, Any]:
    """A built config as raw config: the sections a stage does not read (None) left out."""
    return {key: value for key, value in dataclasses.asdict(config).items() if value is not None}


def reject_unknown(raw: dict[str, Any], known: Collection[str], prefix: str = "") -> None:
    """A key of `raw` that is not in `known` is an error that names it and the known keys."""
    for key in raw:
        if key not in known:
            names = ", ".join(f"{prefix}{name}" for name in known)
            raise ConfigError(f"unknown config key '{prefix}{key}' (known keys here: {names})")


def section_names(root: type) -> tuple[str, ...]:
    """The top-level keys of a plan's config class, in declaration order."""
    return tuple(field.name for field in dataclasses.fields(root))


def build_config(root: type, raw: dict[str, Any], sections: tuple[str, ...] | None = None) -> Any:
    """Turn a mapping into a checked `root` (a plan's config class).

    `sections` None: every section. Otherwise exactly those (a stage's view; the others are
    None). A key the mapping lacks takes its default, with a warning; an unknown key is an
    error.
    """
    wanted = sections or section_names(root)
    unexpected = sorted(set(raw) - set(wanted))
    if sections is not None and unexpected:
        raise ConfigError(f"config keys {unexpected} are not read here (only {list(wanted)})")
    config = _to_dataclass(root, raw, "", wanted)
    config.check()
    return config


@functools.cache
def type_hints(cls: type) -> dict[str, Any]:
    """typing.get_type_hints, once for each class (it evaluates every annotation)."""
    return typing.get_type_hints(cls)


def _to_dataclass(
    cls: type, raw: dict[str, Any], prefix: str, wanted: tuple[str, ...] | None = None
) -> Any:
    fields = dataclasses.fields(cls)
    reject_unknown(raw, [field.name for field in fields], prefix)
    hints = type_hints(cls)
    values = {}
    for field in fields:
        dotted = f"{prefix}{field.name}"
        if wanted is not None and field.name not in wanted:
            values[field.name] = None  # a section this stage does not read
            continue
        if field.name in raw:
            value = raw[field.name]
        else:
            value = _default(field)
            logger.warning(
                "config key '%s' is missing (written before it existed?): using its default %r",
                dotted,
                value,
            )
        # At the top level a field's type is `X | None` (None: a section a stage does not read).
        hint = _present(hints[field.name]) if wanted is not None else hints[field.name]
        if dataclasses.is_dataclass(hint):
            if not isinstance(value, dict):
                raise ConfigError(f"config key '{dotted}' must be a mapping of keys")
            values[field.name] = _to_dataclass(hint, value, prefix=f"{dotted}.")
        else:
            values[field.name] = _coerce(value, hint, dotted)
    return cls(**values)


def _default(field: dataclasses.Field) -> Any:
    """A field's default (the plan's value) as raw config: a section as its mapping."""
    if field.default_factory is not dataclasses.MISSING:
        return dataclasses.asdict(field.default_factory())
    return field.default


def _present(hint: Any) -> Any:
    """A top-level field's type when the key is there: `ModelConfig | None` → ModelConfig."""
    (present,) = [arg for arg in typing.get_args(hint) if arg is not type(None)] or [hint]
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
