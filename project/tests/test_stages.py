"""The plan's stage declarations (plan.py, stages/), and what the planner derives from them
for the workflow: each stage's code and config records. The fingerprints themselves
(harness/fingerprint.py) are tested with the harness (harness/tests/test_fingerprint.py).
"""

from __future__ import annotations

import ast
import json
import shutil
import time
from pathlib import Path

import pytest
from harness.cli import stage_records
from harness.fingerprint import code_record, module_digest, record_of
from harness.planner import plan_modules, roots, stage_sources
from harness.stage import write_stage_configs

from project.tests import dispatch as run
from project.tests.dispatch import PLAN, PROJECT_DIR
from project.tests.dispatch import resolve_config as resolve
from project.utils.config import ConfigError, build

SECTIONS = ("seed", "device", "data", "model", "train", "eval", "sample")


def stage_code(stage_name: str) -> set[Path]:
    return stage_sources(PLAN, PLAN.stage(stage_name))


def test_the_plan_declares_each_stage_once_with_its_role() -> None:
    assert [stage.name for stage in PLAN.stages] == ["prepare", "train", "evaluate", "sample"]
    assert PLAN.training.name == "train" and PLAN.record()["stages"]["train"]["trains"]
    assert {s.name for s in PLAN.stages if s.gpu} == {"train", "evaluate", "sample"}


def test_every_input_is_an_output_of_an_earlier_stage() -> None:
    written: set[str] = set()
    for stage in run.CHAIN:
        assert set(stage.inputs) <= written, stage.name
        assert not set(stage.outputs) & written, f"{stage.name} rewrites a file"
        written |= set(stage.outputs)
    assert set(run.FILES) == written | set(run.STAGES["bench"].outputs)


def test_each_stage_sees_only_the_sections_it_reads() -> None:
    resolved = resolve(None, [], cuda=False)
    for stage in run.STAGES.values():
        config = build(resolved.view(stage.sections), stage.sections)
        unread = [name for name in SECTIONS if name not in stage.sections]
        assert all(getattr(config, name) is None for name in unread), stage.name
    with pytest.raises(ConfigError, match="not read here"):
        build(resolved.view(run.STAGES["train"].sections), run.STAGES["sample"].sections)


def test_a_stage_offers_its_own_files_and_options_only(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit):
        run.parse_args(["bench", "--help"])
    text = capsys.readouterr().out
    assert "--variant" in text and "--manifest" in text
    assert "--best" not in text and "--metrics" not in text and "--resume" not in text
    with pytest.raises(SystemExit) as refused:
        run.parse_args(["sample", "--metrics", "m.json"])
    assert refused.value.code == 2


def test_stage_config_files_change_only_when_their_content_does(tmp_path: Path) -> None:
    paths = write_stage_configs(tmp_path, stage_records(resolve(None, [], cuda=False), PLAN))
    assert set(paths) == {stage.name for stage in run.CHAIN[1:]} | {"resolved"}
    before = {name: path.stat().st_mtime_ns for name, path in paths.items()}
    time.sleep(0.01)
    changed_run = resolve(None, [{"sample": {"temperature": 1.0}}], cuda=False)
    write_stage_configs(tmp_path, stage_records(changed_run, PLAN))
    changed = {name for name, path in paths.items() if path.stat().st_mtime_ns != before[name]}
    assert changed == {"sample", "resolved"}
    assert json.loads(paths["sample"].read_text())["sample"]["temperature"] == 1.0


def test_code_inputs_follow_every_import_of_the_stage_module() -> None:
    code = {
        stage.name: {
            p.relative_to(PROJECT_DIR).as_posix()
            for p in stage_code(stage.name)
            if p.is_relative_to(PROJECT_DIR)
        }
        for stage in PLAN.stages
    }
    assert all("run.py" in files for files in code.values())
    # The stages import the plan's modules, never another stage's.
    for name, files in code.items():
        assert not {f"stages/{o.name}.py" for o in PLAN.stages if o.name != name} & files
    # Training validates through the loss-only path: evaluation's own code is not its input.
    assert "testing/validation.py" in code["train"]
    assert not {"testing/metrics.py", "testing/evaluator.py"} & code["train"]
    assert {"testing/sampler.py", "model/gpt.py"} <= code["sample"]
    assert "testing/evaluator.py" not in code["sample"]
    assert not any(path.startswith(("model/", "training/")) for path in code["prepare"])
    # Transitive: evaluate imports evaluator, which imports metrics and the data loader.
    assert {"testing/metrics.py", "data/loader.py"} <= code["evaluate"]
    assert "training/trainer.py" not in code["evaluate"]


def changed_constant(source: str) -> str | None:
    """`source` with its first numeric literal changed (None: it has none)."""
    numbers = [
        node
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.Constant) and type(node.value) in (int, float)
    ]
    if not numbers:
        return None
    node = min(numbers, key=lambda n: (n.lineno, n.col_offset))
    lines = source.splitlines(keepends=True)
    line = lines[node.lineno - 1]
    start, end = node.col_offset, node.end_col_offset
    lines[node.lineno - 1] = f"{line[:start]}({line[start:end]} + 1){line[end:]}"
    return "".join(lines)


def test_no_behaviour_change_in_any_project_module_is_missed(tmp_path: Path) -> None:
    """In a copy of the project, each module in turn gets a changed constant, a new
    default argument, a decorator and an `__all__`: the fingerprint of every stage that
    reaches the module changes, and that of every other stage stays.
    """
    copy = tmp_path / "project"
    shutil.copytree(PROJECT_DIR, copy, ignore=shutil.ignore_patterns("tests", "__pycache__"))
    stages = {
        stage.name: {
            copy / p.relative_to(PROJECT_DIR)
            for p in stage_code(stage.name)
            if p.is_relative_to(PROJECT_DIR)
        }
        for stage in PLAN.stages
    }
    digests = {path: module_digest(path) for files in stages.values() for path in files}

    def fingerprint_of(name: str, changed: dict[Path, str]) -> object:
        files = stages[name]
        record = {p.relative_to(copy).as_posix(): changed.get(p, digests[p]) for p in files}
        return record_of(record)["fingerprint"]

    fingerprint = {name: fingerprint_of(name, {}) for name in stages}
    assert fingerprint == {n: code_record(f, (copy,))["fingerprint"] for n, f in stages.items()}
    edits = [
        changed_constant,
        lambda source: source + "\n\ndef probe(a=2):\n    return a\n",
        lambda source: source + "\n\n@staticmethod\ndef probe():\n    return 0\n",
        lambda source: source + '\n__all__ = ["probe"]\n',
    ]
    assert roots(PLAN)[0] == PROJECT_DIR.parent
    for module in plan_modules(PLAN):
        path = copy / module.relative_to(PROJECT_DIR)
        original = path.read_text(encoding="utf-8")
        for edit in edits:
            edited = edit(original)
            if edited is None:
                continue
            path.write_text(edited, encoding="utf-8")
            changed = {path: module_digest(path)}
            for name, files in stages.items():
                now = fingerprint_of(name, changed)
                assert (now != fingerprint[name]) == (path in files), (module.name, name)
        path.write_text(original, encoding="utf-8")
