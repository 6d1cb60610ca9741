"""harness/reference.py: a plan's parameter reference, made from its config dataclasses (each
field's default, type and docstring); a field without a docstring stops it, naming the
field, in-process, through `python -m harness.reference` and through `run.py config --keys`.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from harness.plan import load_plan
from harness.reference import UndocumentedError, cell, field_docs, render, value_text

if TYPE_CHECKING:
    from conftest import MakePlan, RunPlan

# The synthetic plan's configuration (conftest.py's CONFIG_PY), every field documented.
DOCUMENTED_CONFIG = '''\
"""The synthetic plan's configuration: two sections besides seed and device."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from harness.sections import DEVICES, require, require_choice, require_seed


@dataclass(frozen=True)
class DataConfig:
    size: int = 4
    """D1: how many numbers the first stage gathers; in [1, 1000]."""
    source: str | None = None
    """D1: where they come from (--data-source); null: generated."""

    def check(self) -> None:
        require(1 <= self.size <= 1000, "data.size", "must be in [1, 1000]")


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 3
    """T1: epochs of decay; >= 1."""
    lr: float = 0.5
    """T1: the share | of the loss lost each epoch; in (0, 1]."""
    # MOMENTUM

    def check(self) -> None:
        require(self.epochs >= 1, "train.epochs", "must be >= 1")
        require(0 < self.lr <= 1, "train.lr", "must be in (0, 1]")


@dataclass(frozen=True)
class Config:
    seed: int | None = 7
    """T8: the one seed."""
    device: str | None = "auto"
    """auto, cpu or cuda."""
    data: DataConfig | None = dataclasses.field(default_factory=DataConfig)
    """D1: the numbers, as <first>..<last>."""
    train: TrainConfig | None = dataclasses.field(default_factory=TrainConfig)
    """T1: the decay."""

    def check(self) -> None:
        if self.seed is not None:
            require_seed(self.seed, "seed")
        if self.device is not None:
            require_choice(self.device, "device", DEVICES)
        for section in (self.data, self.train):
            if section is not None:
                section.check()
'''

UNDOCUMENTED_KEY = DOCUMENTED_CONFIG.replace(
    "    # MOMENTUM\n", "    momentum: float = 0.9  # a comment is no docstring\n"
)


def test_the_reference_lists_every_key_with_its_default_type_and_docstring(
    make_plan: MakePlan, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # the plan is named relative to the current folder
    plan = load_plan(make_plan(files={"utils/config.py": DOCUMENTED_CONFIG}))
    text = render(plan)
    rows = [line for line in text.splitlines() if line.startswith("| `")]
    # The plan's CPU preset (configs/cpu.yaml: data.size 2) in a column of its own.
    assert rows == [
        "| `seed` | `7` |  | int | T8: the one seed. |",
        "| `device` | `auto` |  | str | auto, cpu or cuda. |",
        "| `data.size` | `4` | `2` | int | D1: how many numbers the first stage gathers; "
        "in [1, 1000]. |",
        "| `data.source` | `null` |  | str or null | D1: where they come from (--data-source); "
        "null: generated. |",
        "| `train.epochs` | `3` |  | int | T1: epochs of decay; >= 1. |",
        "| `train.lr` | `0.5` |  | float | T1: the share \\| of the loss lost each epoch; "
        "in (0, 1]. |",
    ]
    headings = [line for line in text.splitlines() if line.startswith("#")]
    assert headings == [
        "## Plan `toy_plan` (toy_plan): a synthetic plan",
        "### Top-level keys",
        "### `data`",
        "### `train`",
    ]
    # A section's docstring and the stages that read it; `<` is no HTML tag.
    assert "D1: the numbers, as \\<first>..\\<last>. Read by: `gather`.\n" in text
    assert "T1: the decay. Read by: `fit`.\n" in text
    # How keys are set, with a real key of the plan.
    words = " ".join(text.split())  # the paragraphs' lines joined
    assert "`--set train.lr=0.5`" in words and "`epochs:` sets `train.epochs`" in words


def test_a_field_without_a_docstring_stops_the_reference_naming_it(
    make_plan: MakePlan,
) -> None:
    plan = load_plan(make_plan(files={"utils/config.py": UNDOCUMENTED_KEY}))
    with pytest.raises(UndocumentedError) as caught:
        render(plan)
    message = str(caught.value)
    assert "TrainConfig.momentum (config key train.momentum) has no docstring" in message
    assert "toy_plan/utils/config.py: " in message, "it names the file"


def test_a_plan_whose_fields_have_only_comments_is_refused_at_its_first_field(
    make_plan: MakePlan,
) -> None:
    """conftest.py's synthetic config documents its fields by comments alone."""
    with pytest.raises(UndocumentedError, match=r"Config\.seed \(config key seed\)"):
        render(load_plan(make_plan()))


def test_the_commands_print_the_reference_or_one_line_naming_the_field(
    make_plan: MakePlan, run_plan: RunPlan, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # where run_plan runs: the plan is named relative to it
    good = make_plan("good_plan", files={"utils/config.py": DOCUMENTED_CONFIG})
    bad = make_plan("bad_plan", files={"utils/config.py": UNDOCUMENTED_KEY})
    shown = run_plan(good, "config", "--keys")
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout == render(load_plan(good))

    def module(folder: Path) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "harness.reference", folder.name]
        return subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, check=False)

    printed = module(good)
    assert printed.returncode == 0 and printed.stdout == shown.stdout
    for failed in (run_plan(bad, "config", "--keys"), module(bad)):
        assert failed.returncode == 2
        (line,) = failed.stderr.splitlines()
        assert line.startswith("error: ") and "TrainConfig.momentum" in line, line
    refused = run_plan(good, "config", "--keys", "--set", "train.lr=0.1")
    assert refused.returncode == 2 and "--keys" in refused.stderr and "--set" in refused.stderr


def test_the_docstring_under_each_field_is_read_from_the_source(
    make_plan: MakePlan,
) -> None:
    plan = load_plan(make_plan(files={"utils/config.py": DOCUMENTED_CONFIG}))
    data = type(plan.config().data)
    assert field_docs(data) == {
        "size": "D1: how many numbers the first stage gathers; in [1, 1000].",
        "source": "D1: where they come from (--data-source); null: generated.",
    }


@pytest.mark.parametrize(
    ("value", "text"),
    [(None, "null"), (True, "true"), (1e-3, "0.001"), ([1, 2], "[1, 2]"), ({}, "{}")],
)
def test_values_read_as_yaml(value: object, text: str) -> None:
    assert value_text(value) == text


def test_cells_escape_pipes_and_angle_brackets_outside_code() -> None:
    assert cell("a | b <run> `<x>`") == "a \\| b \\<run> `<x>`"
