"""config/README.md, the parameter reference: it is what workflow/scripts/reference.py makes
of the workflow's schema and each plan's config dataclasses (stale: this fails, with the
command that remakes it), it lists every key of both with its default, and a plan's own
`run.py config --keys` prints the same tables. Nothing trains.
"""

from __future__ import annotations

import dataclasses
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from harness.plan import Plan, load_plan
from harness.reference import value_text

import reference
import search_spec
from sweep import sweep_runs

REPO = Path(__file__).resolve().parents[1]
README = REPO / "config" / "README.md"
PLANS = ["project", "plans/digits"]
REGENERATE = "python workflow/scripts/reference.py project plans/digits > config/README.md"
SCHEMA = yaml.safe_load((REPO / reference.SCHEMA).read_text(encoding="utf-8"))
CONFIG = yaml.safe_load((REPO / reference.CONFIG).read_text(encoding="utf-8"))
ROW = re.compile(r"^\| `(?P<key>[^`]+)` \| (?P<default>[^|]*?) \|")


def generate(*folders: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "workflow/scripts/reference.py", *folders],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def readme_rows(text: str) -> dict[str, list[str]]:
    """Each key's Default cells (a key in the workflow's and a plan's tables has several)."""
    rows: dict[str, list[str]] = {}
    for line in text.splitlines():
        if found := ROW.match(line):
            rows.setdefault(found["key"], []).append(found["default"])
    return rows


@pytest.fixture(scope="module")
def readme() -> str:
    return README.read_text(encoding="utf-8")


def test_the_reference_is_current(readme: str) -> None:
    made = generate(*PLANS)
    assert made.returncode == 0, made.stderr
    assert readme == made.stdout, (
        f"config/README.md is stale: run `{REGENERATE}` (from the repository's root) "
        "after changing the schema, config/config.yaml or a plan's config"
    )
    assert REGENERATE in readme, "the file says how it is made"


def schema_paths(node: dict[str, Any], key: str, root: dict[str, Any]) -> dict[str, Any]:
    """Every dotted key of the schema below `key`, with its schema (refs filled in)."""
    node = reference.resolved(node, root)
    found = {key: node} if key else {}
    shapes = [node, *(reference.resolved(a, root) for a in node.get("oneOf", []))]
    for shape in shapes:
        for name, child in shape.get("properties", {}).items():
            found |= schema_paths(child, f"{key}.{name}" if key else name, root)
    if isinstance(node.get("additionalProperties"), dict):
        below = f"{key}.{reference.placeholder(node)}"
        found |= schema_paths(node["additionalProperties"], below, root)
    return found


def test_every_workflow_key_is_listed_with_its_default(readme: str) -> None:
    rows = readme_rows(readme.split("\n## Plan ")[0])
    paths = schema_paths(SCHEMA, "", SCHEMA)
    names = {part for key in paths for part in key.split(".")}
    assert {"memory_interval_s", "slow_interval_s", "startup_trials", "low", "choices"} <= names
    assert sorted(rows) == sorted(paths), "each schema key has one row"
    assert set(CONFIG) <= set(paths)
    for key, node in paths.items():
        found, value = reference.configured(CONFIG, key)
        if "default" in node:  # an optional key: the schema's default
            assert rows[key] == [f"`{value_text(node['default'])}`"], key
        elif found:  # else config/config.yaml's value
            assert rows[key] == [f"`{value_text(value)}`"], key


def test_every_schema_key_has_a_description() -> None:
    paths = schema_paths(SCHEMA, "", SCHEMA)
    assert all(node.get("description") for node in paths.values())


def test_a_schema_key_without_a_description_stops_the_reference() -> None:
    node = {"type": "object", "description": "a section", "properties": {"x": {"type": "number"}}}
    with pytest.raises(reference.ReferenceProblem, match=r"key section\.x has no description"):
        reference.schema_rows(node, "section", False, SCHEMA, {})


def plan_keys(plan: Plan) -> dict[str, Any]:
    """Every key of the plan's config, dotted, with its default."""
    keys = {}
    for name, value in dataclasses.asdict(plan.config()).items():
        if isinstance(value, dict):
            keys |= {f"{name}.{inner}": setting for inner, setting in value.items()}
        else:
            keys[name] = value
    return keys


@pytest.mark.parametrize("folder", PLANS)
def test_every_plan_key_is_listed_with_its_default(readme: str, folder: str) -> None:
    plan = load_plan(REPO / folder)
    section = readme.split(f"## Plan `{folder}` ")[1].split("\n## ")[0]
    rows = readme_rows(section)
    keys = plan_keys(plan)
    assert len(keys) > 15
    assert sorted(rows) == sorted(keys)
    for key, default in keys.items():
        assert rows[key] == [f"`{value_text(default)}`"], key


def test_the_schema_defaults_are_the_ones_the_workflow_uses() -> None:
    """The search's and sweep's optional keys: the schema's defaults (in the reference)
    are what search_spec.py and sweep.py fill in.
    """
    search = SCHEMA["properties"]["search"]["properties"]
    assert {key: search[key]["default"] for key in search_spec.DEFAULTS} == search_spec.DEFAULTS
    prefix = SCHEMA["properties"]["sweep"]["properties"]["prefix"]["default"]
    (name,) = sweep_runs({"grid": {"section.key": [1]}})
    assert name.startswith(f"{prefix}_")


def test_a_plans_config_keys_command_prints_its_part_of_the_reference(readme: str) -> None:
    """`run.py config --keys`, run from the repository's root, prints the plan's section of
    config/README.md as it stands there.
    """
    shown = subprocess.run(
        [sys.executable, "plans/digits/run.py", "config", "--keys"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.startswith("## Plan `plans/digits` (digits): ")
    assert shown.stdout in readme


def test_the_generator_names_a_plan_it_cannot_read(tmp_path: Path) -> None:
    made = generate(str(tmp_path))
    assert made.returncode == 2
    (line,) = made.stderr.splitlines()
    assert line.startswith("error: ") and "not a plan folder" in line, line
