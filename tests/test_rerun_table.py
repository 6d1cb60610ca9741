"""README's "What reruns after an edit" table against what the project derives: each
stage's code inputs (utils/reads.py, an import walk from run.py) and config sections
(STAGE_SECTIONS), carried downstream along the workflow's rule graph. The table is
written once, by hand, and this test keeps it true.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from workflow_runs import REPO, snakemake

from utils.config import STAGE_SECTIONS
from utils.reads import project_modules, stage_sources

# The report parses every project module (its component table): any edit rewrites it.
READS_EVERY_MODULE = "report"
TARGET = "all"


def readme_table() -> list[tuple[list[str], set[str]]]:
    """(backticked items of "You edit", rules of "Reruns") for each row of the table."""
    text = (REPO / "README.md").read_text(encoding="utf-8")
    section = text.split("### What reruns after an edit")[1].split("\n#")[0]
    rows = []
    for line in section.splitlines():
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        if line.startswith("|") and len(cells) == 2 and cells[0].startswith("`"):
            rows.append((re.findall(r"`([^`]+)`", cells[0]), set(re.findall(r"\w+", cells[1]))))
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
    return set().union(*(downstream[rule] for rule in direct))


def test_every_module_row_matches_the_derived_code_inputs(
    downstream: dict[str, set[str]],
) -> None:
    code = {stage: set(stage_sources(stage)) for stage in STAGE_SECTIONS}
    listed: dict[Path, set[str]] = {}
    for items, expected in readme_table():
        files = [path for item in items for path in sorted(REPO.glob(item)) if "/" in item]
        for path in files:
            listed[path] = expected
    for module in project_modules():
        assert module in listed, f"{module.relative_to(REPO)} is missing from the README table"
        direct = {stage for stage, files in code.items() if module in files}
        derived = reruns(direct | {READS_EVERY_MODULE}, downstream)
        assert listed[module] == derived, module.relative_to(REPO)


def test_every_config_row_matches_the_sections_each_stage_reads(
    downstream: dict[str, set[str]],
) -> None:
    checked = 0
    for items, expected in readme_table():
        for key in (item for item in items if "/" not in item):
            section = key.split(".")[0]
            direct = {stage for stage, sections in STAGE_SECTIONS.items() if section in sections}
            assert reruns(direct, downstream) == expected, key
            checked += 1
    assert checked >= len({s for sections in STAGE_SECTIONS.values() for s in sections})
