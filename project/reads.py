"""What each stage reads, for the workflow: the stages' declarations, their code, config
and text, as files whose content changes only when what they stand for changes.

Snakemake reruns a job when an input is newer than its outputs. So that it reruns exactly
the stages an edit touches, and never trusts an mtime that lies (`cp -p`, `tar x`), this
writes, before any job, each file only when its content changes:

- code/<stage>.json: the fingerprint of the source the stage runs (utils/fingerprint.py:
  run.py and the stage module's import closure; comments and docstrings do not count);
- code/components.json: each project module's summary and plan ids (the report's table);
- <run dir>/config/<stage>.json: the sections each stage reads, resolved.json the whole;
- data/<key>/config/prepare.json and data/<key>/source.json: one folder for every distinct
  data configuration, shared by the runs that have it (so a sweep prepares once), and the
  text it reads, located as the prepare stage would (a file, a mirror, the cache, or a
  planned download) with its SHA-256, so that an edit of the text reruns prepare.

    python project/reads.py < spec.json

reads `{"results": DIR, "runs": [{"dir": DIR, "config": FILE|null, "data_source":
PATH|URL|null, "overrides": [{dotted key: value}...]}]}` and prints `{"stages": {name:
{sections, inputs, outputs}}, "code": {stage: file}, "components": file, "runs": {DIR:
{"configs": {stage: file}, "data": DIR}}, "data": {DIR: {"config": file, "source": file}}}`.
A bad value in any run stops it before anything is written (exit 2, the run's folder in the
message). Needs only PyYAML: nothing here imports torch.
"""

from __future__ import annotations

import ast
import hashlib
import json
import re
import sys
from pathlib import Path
from typing import Any

from data.download import SourceFile, locate_source, source_record
from utils.config import (
    ConfigError,
    Resolved,
    build,
    cuda_present,
    data_source_override,
    nested,
)
from utils.config import resolve as resolve_config
from utils.errors import ProjectError
from utils.fingerprint import closure, code_record, module_file
from utils.io import write_text_if_changed
from utils.stage import DECLARED, PIPELINE, declared, write_stage_configs

PROJECT_DIR = Path(__file__).resolve().parent
RUN_PY = PROJECT_DIR / "run.py"
PLAN_ID = re.compile(r"\b[DMTE]\d+\b")
DATA_KEY_CHARS = 12  # of the SHA-256 of a data configuration: its folder's name


def stage_module(dotted: str) -> Path:
    path = module_file(dotted, PROJECT_DIR)
    assert path is not None, f"utils/stage.py names {dotted}, which does not exist"
    return path


def stage_sources(dotted: str) -> set[Path]:
    """run.py and every project module the stage's module reaches."""
    return {RUN_PY, *closure(stage_module(dotted), PROJECT_DIR)}


def project_modules() -> list[Path]:
    """Every module of the project (its tests left out), entry points first."""
    packages = sorted(p.parent for p in PROJECT_DIR.glob("*/__init__.py"))
    inside = [m for package in packages if package.name != "tests" for m in package.glob("*.py")]
    return [RUN_PY, Path(__file__).resolve(), *sorted(inside)]


def components() -> dict[str, Any]:
    """Each module (packages' __init__ left out): its docstring's first line, and the plan
    ids its docstrings name, in the plan's order.
    """
    rows = []
    for path in project_modules():
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
            {"path": path.relative_to(PROJECT_DIR).as_posix(), "doc": first, "plan_ids": ids}
        )
    return {"modules": rows}


def write_json(path: Path, record: Any) -> str:
    write_text_if_changed(path, json.dumps(record, indent=2) + "\n")
    return path.as_posix()


def resolve_run(run: dict[str, Any], cuda: bool) -> Resolved:
    """One run of the spec, as the project resolves it (the data source first)."""
    try:
        overrides = [data_source_override(run["data_source"])] if run["data_source"] else []
        for item in run["overrides"]:
            overrides += [nested(key, value) for key, value in item.items()]
        config = Path(run["config"]) if run["config"] else None
        return resolve_config(config, overrides, cuda=cuda)
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


def write_records(
    results: Path,
    stages: dict[str, dict[str, Any]],
    runs: dict[str, Resolved],
    folders: dict[str, tuple[Path, dict[str, Any]]],
    sources: dict[Path, tuple[dict[str, Any], SourceFile]],
) -> dict[str, Any]:
    """Write every record (each only where its content changed) and say where they are."""
    prepare, *later = stages.values()
    data = {}
    for folder, (view, source) in sources.items():
        data[folder.as_posix()] = {
            "config": write_json(folder / "config" / f"{prepare['name']}.json", view),
            "source": write_json(folder / "source.json", source_record(source)),
        }
    configs = {}
    for directory, run in runs.items():
        paths = write_stage_configs(Path(directory), run, {s["name"]: s["sections"] for s in later})
        configs[directory] = {
            "configs": {name: path.as_posix() for name, path in paths.items()},
            "data": folders[directory][0].as_posix(),
        }
    code = {
        stage["name"]: write_json(
            results / "code" / f"{stage['name']}.json",
            code_record(stage_sources(module), PROJECT_DIR),
        )
        for module, stage in stages.items()
    }
    return {
        "code": code,
        "components": write_json(results / "code" / "components.json", components()),
        "runs": configs,
        "data": data,
    }


def main() -> int:
    spec = json.load(sys.stdin)
    results = Path(spec["results"])
    stages = {module: declared(stage_module(module)) for module in PIPELINE}
    prepare = next(iter(stages.values()))
    try:
        cuda = cuda_present()  # once: every run that says `device: auto` gets this answer
        runs = {run["dir"]: resolve_run(run, cuda) for run in spec["runs"]}
        folders = data_folders(results, runs, prepare["sections"])
        views = dict(folders.values())  # each distinct data configuration once
        sources = {
            folder: (view, locate_source(build(view, prepare["sections"]).data, download=False))
            for folder, view in views.items()
        }
    except ProjectError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    try:
        written = write_records(results, stages, runs, folders, sources)
    except OSError as error:
        print(
            f"error: cannot write {error.filename} ({error.strerror}): the results folder "
            "must be writable by you; fix its owner or permissions, or run from a checkout "
            "you can write",
            file=sys.stderr,
        )
        return 2
    declarations = {s["name"]: {key: s[key] for key in DECLARED[1:]} for s in stages.values()}
    json.dump({"stages": declarations, **written}, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
