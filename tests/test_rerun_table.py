"""The "What reruns after an edit" table (docs/workflow.md) against what the plan derives:
each stage's code (harness/planner.py: run.py and the import closure of the stage's module) and
config sections (the stage's declaration), carried downstream along the workflow's rule
graph. The table is written once, by hand, and this test keeps it true.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from harness.plan import load_plan
from harness.planner import plan_modules, stage_sources
from workflow_runs import REPO, snakemake

TARGET = "all"
NOTHING = "nothing"  # the table's word for a module that no stage runs

PLAN = load_plan(REPO / "project")


def rerun_table() -> list[tuple[list[str], set[str]]]:
    """(backticked items of "You edit", rules of "Reruns") for each row of the table."""
    text = (REPO / "docs" / "workflow.md").read_text(encoding="utf-8")
    section = text.split("## What reruns after an edit")[1].split("\n#")[0]
    rows = []
    for line in section.splitlines():
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        if line.startswith("|") and len(cells) == 2 and cells[0].startswith("`"):
            rerun = set(re.findall(r"\w+", cells[1])) - {NOTHING}
            rows.append((re.findall(r"`([^`]+)`", cells[0]), rerun))
    return rows


@pytest.fixture(scope="module")
def downstream() -> dict[str, set[str]]:
    """Each rule and every rule after it in the workflow's rule graph (`all` left out)."""
    dot = snakemake(REPO, "--rulegraph").stdout
    names = dict(re.findall(r"(\d+)\[label = \"(\w+)\"", dot))
    edges = [(names[a], names[b]) for a, b in re.findall(r"(\d+) -> (\d+)", dot)]
    after = {rule: {rule} for rule in names.values()}
    changed = True
    while changed:
        changed = False
        for before, later in edges:
            if not after[later] <= after[before]:
                after[before] |= after[later]
                changed = True
    return {rule: rules - {TARGET} for rule, rules in after.items()}


def reruns(direct: set[str], downstream: dict[str, set[str]]) -> set[str]:
    return set().union(set(), *(downstream[rule] for rule in direct))


@pytest.mark.slow
def test_every_module_row_matches_the_derived_code_inputs(
    downstream: dict[str, set[str]],
) -> None:
    code = {stage.name: stage_sources(PLAN, stage) for stage in PLAN.stages}
    listed: dict[Path, set[str]] = {}
    for items, expected in rerun_table():
        files = [path for item in items for path in sorted(REPO.glob(item)) if "/" in item]
        for path in files:
            listed[path] = expected
    for module in plan_modules(PLAN):
        assert module in listed, f"{module.relative_to(REPO)} is missing from docs/workflow.md"
        direct = {stage for stage, files in code.items() if module in files}
        assert listed[module] == reruns(direct, downstream), module.relative_to(REPO)


@pytest.mark.slow
def test_every_config_row_matches_the_sections_each_stage_reads(
    downstream: dict[str, set[str]],
) -> None:
    sections = {stage.name: stage.sections for stage in PLAN.stages}
    checked = 0
    for items, expected in rerun_table():
        for key in (item for item in items if "/" not in item):
            section = key.split(".")[0]
            direct = {stage for stage, read in sections.items() if section in read}
            assert reruns(direct, downstream) == expected, key
            checked += 1
    assert checked >= len({s for read in sections.values() for s in read})
