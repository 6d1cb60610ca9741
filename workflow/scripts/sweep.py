"""Runs from the `sweep:` section of config/config.yaml: a cartesian grid of project keys,
a seeded random sample from ranges, or both crossed (every grid point with every sampled
one). Each point becomes a run beside the listed ones, named from its values alone:

    sweep:
      grid: {opt.lr: [1.0e-3, 5.0e-4], net.width: [2, 4]}
      sample: {size: 4, seed: 0, space: {net.dropout: {low: 0.0, high: 0.3}}}

(keys of the plan's config) gives runs such as `sweep_dropout-0p17_width-2_lr-0p001`: the
prefix, then each key (its last part, or the whole key where two keys share it) and value,
the keys sorted. The
same point always gets the same name, whatever the order of the spec. Sampled values keep
SAMPLE_DIGITS significant digits, so that names stay short and a value can be typed back.

Imported by workflow/rules/common.smk (and by the tests); the schema checks the spec's
shape, this module the rest (clashing names, keys in both grid and sample).
"""

import contextlib
import itertools
import math
import random
import re
from typing import Any

SAMPLE_DIGITS = 3
MAX_DRAWS_PER_POINT = 100  # a sample draws at most this many times its size
UNSAFE = re.compile(r"[^A-Za-z0-9_-]+")


class SweepError(ValueError):
    """A sweep spec that cannot give distinct, valid runs; the message says why."""


def value_text(value: Any) -> str:
    """A value as it appears in a run name: no dots, no plus signs, negatives with `m`. A
    number written as text names the run as the number does (PyYAML reads `1e-3`, with no
    dot, as a string; the project converts it).
    """
    if isinstance(value, str):
        value = as_number(value)
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int | float):
        sign = "m" if value < 0 else ""
        return sign + repr(abs(value)).replace(".", "p").replace("+", "")
    return UNSAFE.sub("-", str(value)).strip("-") or "empty"


def as_number(text: str) -> Any:
    """`text` as an int or a float where it spells one, else `text` itself."""
    for kind in (int, float):
        with contextlib.suppress(ValueError):
            return kind(text)
    return text


def short_names(keys: list[str]) -> dict[str, str]:
    """Each key's last part, or the whole key (dots as dashes) where two share it."""
    last = [key.rsplit(".", 1)[-1] for key in keys]
    return {
        key: part if last.count(part) == 1 else key.replace(".", "-")
        for key, part in zip(keys, last, strict=True)
    }


def run_name(prefix: str, point: dict[str, Any], names: dict[str, str]) -> str:
    return "_".join([prefix, *(f"{names[key]}-{value_text(point[key])}" for key in sorted(point))])


def grid_points(grid: dict[str, list[Any]]) -> list[dict[str, Any]]:
    """Every combination of the grid's values, the first key varying slowest."""
    keys = list(grid)
    return [dict(zip(keys, values, strict=True)) for values in itertools.product(*grid.values())]


def rounded(value: float, digits: int = SAMPLE_DIGITS) -> float:
    if value == 0:
        return 0.0
    return round(value, digits - 1 - math.floor(math.log10(abs(value))))


def draw(rng: random.Random, space: dict[str, Any]) -> float | int:
    """One value from a range: uniform, log-uniform (`log: true`), integer (`int: true`)."""
    low, high = space["low"], space["high"]
    if space.get("int"):
        if space.get("log"):
            return round(math.exp(rng.uniform(math.log(low), math.log(high))))
        return rng.randint(low, high)
    if space.get("log"):
        return rounded(math.exp(rng.uniform(math.log(low), math.log(high))))
    return rounded(rng.uniform(low, high))


def check_range(where: str, space: dict[str, Any]) -> None:
    """A range (`low`, `high`, `log`, `int`) that can be drawn from; `where` names it."""
    if not space["low"] < space["high"]:
        raise SweepError(f"{where}: low must be below high")
    if space.get("log") and space["low"] <= 0:
        raise SweepError(f"{where}: a log range needs low > 0")
    if space.get("int") and not all(float(space[end]).is_integer() for end in ("low", "high")):
        raise SweepError(f"{where}: an int range needs whole-number low and high")


def sample_points(sample: dict[str, Any]) -> list[dict[str, Any]]:
    """`size` distinct points drawn from the ranges by a generator seeded with `seed`."""
    rng = random.Random(sample["seed"])
    keys = sorted(sample["space"])  # the draws do not depend on the spec's order
    for key in keys:
        check_range(f"sweep.sample.space.{key}", sample["space"][key])
    points: list[dict[str, Any]] = []
    for _ in range(MAX_DRAWS_PER_POINT * sample["size"]):
        point = {key: draw(rng, sample["space"][key]) for key in keys}
        if point not in points:
            points.append(point)
        if len(points) == sample["size"]:
            return points
    raise SweepError(
        f"sweep.sample: the ranges give fewer than {sample['size']} distinct points at "
        f"{SAMPLE_DIGITS} significant digits; widen them or lower `size`"
    )


def sweep_runs(sweep: dict[str, Any] | None) -> dict[str, dict[str, Any]]:
    """The runs of a sweep spec (already checked against the schema), by name, each with
    the overrides of its point on top of the sweep's own overrides, and the sweep's seeds
    and project config where it sets them.
    """
    if not sweep:
        return {}
    grid, sample = sweep.get("grid", {}), sweep.get("sample")
    both = sorted(set(grid) & set(sample["space"] if sample else ()))
    if both:
        raise SweepError(f"sweep: {', '.join(both)} in both grid and sample; keep each in one")
    sampled = sample_points(sample) if sample else [{}]
    points = [{**g, **s} for g in grid_points(grid) for s in sampled]
    names = short_names(sorted(points[0]))
    shared = {key: sweep[key] for key in ("seeds", "project_config") if key in sweep}
    runs: dict[str, dict[str, Any]] = {}
    named: dict[str, dict[str, Any]] = {}
    for point in points:
        name = run_name(sweep.get("prefix", "sweep"), point, names)
        if name in named:
            raise SweepError(
                f"sweep: two points are both named {name} ({named[name]} and {point}); "
                "give values that differ in their text"
            )
        named[name] = point
        runs[name] = {"overrides": {**sweep.get("overrides", {}), **point}, **shared}
    return runs
