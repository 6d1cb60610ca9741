"""The seam between the workflow and the plans: the workflow names no plan's config
sections or keys, figures or model classes; it learns them from each plan's declaration
(harness/plan.py), so that any plan that declares itself runs through it.
"""

from __future__ import annotations

import ast
import dataclasses
import re
from pathlib import Path

import pytest
import yaml
from harness.plan import Plan, load_plan
from harness.sections import section_names

REPO = Path(__file__).resolve().parents[1]
PLANS = [REPO / "project", REPO / "plans" / "digits"]
WORKFLOW = [REPO / "Snakefile", *sorted(p for p in (REPO / "workflow").rglob("*") if p.is_file())]
# Keys that every plan has and the workflow sets on purpose (harness/config.py).
GENERIC = {"seed", "device"}


def schema_keys(node: object) -> set[str]:
    """Every key that the workflow's own schema defines, at any depth (`sample` of a sweep)."""
    if isinstance(node, dict):
        found = set(node.get("properties", {}))
        return found.union(*(schema_keys(value) for value in node.values()))
    if isinstance(node, list):
        return set().union(*(schema_keys(value) for value in node))
    return set()


# A word that is also a key of the workflow's own config is looked for as a plan key only.
WORKFLOW_KEYS = schema_keys(
    yaml.safe_load((REPO / "workflow" / "schemas" / "config.schema.yaml").read_text())
)


def dotted_keys(plan: Plan) -> set[str]:
    """Every `section.key` of the plan's config."""
    keys = set()
    for field in dataclasses.fields(plan.config):
        section = plan.config().__getattribute__(field.name)
        if dataclasses.is_dataclass(section):
            keys |= {f"{field.name}.{inner.name}" for inner in dataclasses.fields(section)}
    return keys


def model_classes(plan: Plan) -> set[str]:
    """The classes that the plan's model package defines."""
    names = set()
    for path in (plan.folder / "model").glob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        names |= {node.name for node in tree.body if isinstance(node, ast.ClassDef)}
    return names


def figure_names(plan: Plan) -> set[str]:
    """The objective, and every figure named by a literal in the plan's `Figure(...)`s."""
    names = {plan.objective.figure}
    for path in plan.folder.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "Figure":
                first = node.args[0] if node.args else None
                if isinstance(first, ast.Constant) and isinstance(first.value, str):
                    names.add(first.value)
    return names


def plan_words(plan: Plan) -> dict[str, re.Pattern[str]]:
    """What naming the plan looks like: each word, and how it would be written."""
    words: dict[str, re.Pattern[str]] = {}
    for key in dotted_keys(plan):
        words[key] = re.compile(rf"\b{re.escape(key)}\b")
    for section in set(section_names(plan.config)) - GENERIC - WORKFLOW_KEYS:
        # A section read by name: config["train"], .get('model'), "model": {...}
        words[f'"{section}"'] = re.compile(rf"""(\[\s*|\.get\(\s*|^\s*)["']{section}["']""")
    for name in figure_names(plan) | model_classes(plan):
        words[name] = re.compile(rf"\b{re.escape(name)}\b")
    return words


@pytest.mark.parametrize("folder", PLANS, ids=lambda folder: folder.name)
def test_the_workflow_names_nothing_of_the_plan(folder: Path) -> None:
    plan = load_plan(folder)
    words = plan_words(plan)
    assert len(words) > 20, "the scan has too few words to look for"
    found = []
    for path in WORKFLOW:
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            found += [
                f"{path.relative_to(REPO)}:{number}: {word}"
                for word, pattern in words.items()
                if pattern.search(line)
            ]
    assert not found, "the workflow names the plan:\n" + "\n".join(found)


def test_the_scan_finds_what_it_looks_for() -> None:
    """The patterns catch the ways a plan's names were written in the workflow before."""
    words = plan_words(load_plan(REPO / "project"))
    lines = [
        'devices = json.load(handle)["train"]["devices"]',
        '{"train.epochs": config["epochs"]}',
        'headers = ["Figure", "CharGPT (best checkpoint)"]',
        'values[step] = record["bits_per_char"]',
    ]
    for line in lines:
        assert any(pattern.search(line) for pattern in words.values()), line


def test_two_plans_load_in_one_process_without_shadowing() -> None:
    plans = [load_plan(folder) for folder in PLANS]
    assert [plan.name for plan in plans] == ["chargpt", "digits"]
    modules = [plan.training.run.__module__ for plan in plans]
    assert modules == ["project.stages.train", "digits.stages.train"]
    assert [plan.objective.direction for plan in plans] == ["minimize", "maximize"]
