"""What each stage of a plan reads, for the workflow: the plan's declaration, its stages'
code, config and data source, as files whose content changes only when what they stand for
changes.

Snakemake reruns a job when an input is newer than its outputs. So that it reruns exactly
the stages an edit touches, and never trusts an mtime that lies (`cp -p`, `tar x`), this
writes, before any job, each file only when its content changes:

- code/<stage>.json: the fingerprint of the source the stage runs (harness/fingerprint.py:
  the plan's run.py, the stage module's import closure in the plan and in the harness;
  comments and docstrings do not count);
- code/components.json: each plan module's summary and plan ids (the report's table);
- <run dir>/config/<stage>.json: the sections each stage reads, resolved.json the whole;
- data/<key>/config/<first stage>.json: one folder for every distinct data configuration,
  shared by the runs that have it (so a sweep prepares once);
- data/<key>/source.json, where the first stage will read its data, as the plan locates it,
  and data/<key>/content.json, the data's identity alone (its SHA-256): the first stage
  reruns when the bytes change, never because the same bytes were found by another path
  (another mirror, a container's bind), so only content.json is its input.

    python -m harness.planner PLAN_DIR < spec.json

reads `{"results": DIR, "runs": [{"dir": DIR, "config": FILE|null, "data_source":
PATH|URL|null, "epochs": N|null, "overrides": [{dotted key: value}...]}]}` and prints
`{"plan": the declaration (harness/plan.py: Plan.record), "stages": {name: {sections,
inputs, outputs, gpu, trains}}, "code": {stage: file}, "components": file, "runs": {DIR:
{"configs": {stage: file}, "data_folder": DIR}}, "data_folders": {DIR: {"config": file,
"source": file, "content": file}}}`.
A bad value in any run stops it before anything is written (exit 2, the run's folder in the
message).
"""

from __future__ import annotations

import ast
import hashlib
import inspect
import json
import re
import sys
from pathlib import Path
from typing import Any

import harness
from harness.cli import stage_records
from harness.config import Resolved, cuda_present, nested
from harness.config import resolve as resolve_config
from harness.errors import ProjectError
from harness.fingerprint import Roots, closure, code_record
from harness.io import write_text_if_changed
from harness.plan import Plan, load_plan
from harness.sections import ConfigError, build_config
from harness.stage import Stage, write_stage_configs

HARNESS_ROOT = Path(harness.__file__).resolve().parents[1]  # the folder that holds harness/
PLAN_ID = re.compile(r"\b[DMTE]\d+\b")
DATA_KEY_CHARS = 12  # of the SHA-256 of a data configuration: its folder's name


def roots(plan: Plan) -> Roots:
    """Where a stage's code lives: the plan's package and the harness's."""
    return (plan.folder.parent, HARNESS_ROOT)


def stage_sources(plan: Plan, stage: Stage) -> set[Path]:
    """What runs the stage: the plan's run.py and the dispatcher it reaches, the plan's
    declaration (plan.py, without the other stages it names), and every module that the
    stage's module reaches.
    """
    module = Path(inspect.getfile(stage.run)).resolve()
    run_py = closure(plan.folder / "run.py", roots(plan))
    return {*run_py, plan.folder / "plan.py", *closure(module, roots(plan))}


def plan_modules(plan: Plan) -> list[Path]:
    """Every module of the plan (its tests left out), run.py and plan.py first."""
    packages = sorted(p.parent for p in plan.folder.glob("*/__init__.py"))
    inside = [m for package in packages if package.name != "tests" for m in package.glob("*.py")]
    return [plan.folder / "run.py", plan.folder / "plan.py", *sorted(inside)]


def components(plan: Plan) -> dict[str, Any]:
    """Each module (packages' __init__ left out): its docstring's first line, and the plan
    ids its docstrings name, in the plan's order.
    """
    rows = []
    for path in plan_modules(plan):
        if path.name == "__init__.py":
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        documented = [
            tree,
            *(n for n in ast.walk(tree) if isinstance(n, ast.ClassDef | ast.FunctionDef)),
        ]
        docs = [ast.get_docstring(node) or "" for node in documented]
        ids = sorted(set(PLAN_ID.findall(" ".join(docs))), key=lambda i: ("DMTE".index(i[0]), i))
        first = docs[0].strip().splitlines()[0] if docs[0].strip() else path.stem
        rows.append(
            {"path": path.relative_to(plan.folder).as_posix(), "doc": first, "plan_ids": ids}
        )
    return {"modules": rows}


def write_json(path: Path, record: Any) -> str:
    write_text_if_changed(path, json.dumps(record, indent=2) + "\n")
    return path.as_posix()


def resolve_run(plan: Plan, run: dict[str, Any], cuda: bool) -> Resolved:
    """One run of the spec, as the plan resolves it (its data source and epochs first)."""
    try:
        overrides = [plan.data_source(run["data_source"])] if run["data_source"] else []
        if run.get("epochs") is not None:
            overrides.append(nested(plan.epochs_key, run["epochs"]))
        for item in run["overrides"]:
            overrides += [nested(key, value) for key, value in item.items()]
        config = Path(run["config"]) if run["config"] else None
        return resolve_config(plan, config, overrides, cuda=cuda)
    except ConfigError as error:
        raise ConfigError(f"{run['dir']}: {error}") from None


def data_folders(results: Path, runs: dict[str, Resolved], sections: tuple[str, ...]) -> dict:
    """Each run's data folder, results/data/<key>, keyed by its data configuration."""
    folders = {}
    for directory, run in runs.items():
        view = run.view(sections)
        key = hashlib.sha256(json.dumps(view, sort_keys=True).encode()).hexdigest()
        folders[directory] = (results / "data" / key[:DATA_KEY_CHARS], view)
    return folders


def content_of(source: dict[str, Any]) -> dict[str, Any]:
    """The data's identity in a source record: its "sha256"; a record without one stands for
    itself whole (any change of it reruns the first stage).
    """
    return {"sha256": source["sha256"]} if "sha256" in source else source


def write_records(
    plan: Plan,
    results: Path,
    runs: dict[str, Resolved],
    folders: dict[str, tuple[Path, dict[str, Any]]],
    sources: dict[Path, tuple[dict[str, Any], dict[str, Any]]],
) -> dict[str, Any]:
    """Write every record (each only where its content changed) and say where they are."""
    first = plan.stages[0]
    data = {}
    for folder, (view, source) in sources.items():
        data[folder.as_posix()] = {
            "config": write_json(folder / "config" / f"{first.name}.json", view),
            "source": write_json(folder / "source.json", source),
            "content": write_json(folder / "content.json", content_of(source)),
        }
    configs = {}
    for directory, run in runs.items():
        paths = write_stage_configs(Path(directory), stage_records(run, plan))
        configs[directory] = {
            "configs": {name: path.as_posix() for name, path in paths.items()},
            "data_folder": folders[directory][0].as_posix(),
        }
    code = {
        stage.name: write_json(
            results / "code" / f"{stage.name}.json",
            code_record(stage_sources(plan, stage), roots(plan)),
        )
        for stage in plan.stages
    }
    return {
        "code": code,
        "components": write_json(results / "code" / "components.json", components(plan)),
        "runs": configs,
        "data_folders": data,
    }


def main(argv: list[str] | None = None) -> int:
    (folder,) = sys.argv[1:] if argv is None else argv
    spec = json.load(sys.stdin)
    results = Path(spec["results"])
    try:
        plan = load_plan(Path(folder))
        first = plan.stages[0]
        cuda = cuda_present()  # once: every run that says `device: auto` gets this answer
        runs = {run["dir"]: resolve_run(plan, run, cuda) for run in spec["runs"]}
        folders = data_folders(results, runs, first.sections)
        views = dict(folders.values())  # each distinct data configuration once
        sources = {
            folder: (view, plan.source_record(build_config(plan.config, view, first.sections)))
            for folder, view in views.items()
        }
    except ProjectError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    try:
        written = write_records(plan, results, runs, folders, sources)
    except OSError as error:
        print(
            f"error: cannot write {error.filename} ({error.strerror}): the results folder "
            "must be writable by you; fix its owner or permissions, or run from a checkout "
            "you can write",
            file=sys.stderr,
        )
        return 2
    record = plan.record()
    json.dump({"plan": record, "stages": record["stages"], **written}, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
