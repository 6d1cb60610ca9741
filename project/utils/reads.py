"""What each stage reads: its config sections and its source files, for the workflow.

Snakemake reruns a job when one of its inputs changed. So that it reruns exactly the
stages that an edit touches, the project tells it, per run, what every stage reads:

- config: one small JSON file per stage with the sections it reads (STAGE_SECTIONS),
  rewritten only when its content changes, so its mtime moves only with a real change;
- code: the modules that the stage's function in run.py uses, followed through their
  imports (an `ast` walk: nothing is imported), callbacks included (the validation loss
  that training uses to pick best.pt is a name in `run_train`).

    python project/utils/reads.py < runs.json

reads `{"runs": [{"dir": DIR, "config": FILE|null, "data_source": PATH|URL|null,
"overrides": [{dotted key: value}...]}]}` (the data source first, then the overrides in
order), writes DIR/<stage>.json and DIR/resolved.json for each run,
and prints `{"code": {stage: [file...]}, "modules": [every project module],
"configs": {DIR: {stage: file}}}`. A bad value in
any run stops it before anything is written (exit 2, the run's directory in the message).
Needs only PyYAML.
"""

from __future__ import annotations

import ast
import json
import sys
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make `utils` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from utils.config import (
    PROJECT_DIR,
    REPO_DIR,
    STAGES,
    ConfigError,
    Resolved,
    data_source_override,
    nested,
    resolve,
)
from utils.io import write_text_if_changed

RUN_PY = PROJECT_DIR / "run.py"
RESOLVED = "resolved"


# -- code ---------------------------------------------------------------------------------


def stage_sources(stage: str) -> list[Path]:
    """run.py and every project module that `run_<stage>` in run.py reaches."""
    tree = ast.parse(RUN_PY.read_text(encoding="utf-8"))
    functions = {node.name: node for node in tree.body if isinstance(node, ast.FunctionDef)}
    imported = imported_names(tree)
    modules: set[Path] = set()
    seen: set[str] = set()
    todo = [f"run_{stage}"]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        for node in ast.walk(functions[name]):
            if isinstance(node, ast.Name) and node.id in functions:
                todo.append(node.id)
            elif isinstance(node, ast.Name) and node.id in imported:
                modules.add(imported[node.id])
    return [RUN_PY, *sorted(module_closure(modules))]


def project_modules() -> list[Path]:
    """run.py and every module of the project's packages (tests left out)."""
    packages = sorted(
        p.parent for p in PROJECT_DIR.glob("*/__init__.py") if p.parent.name != "tests"
    )
    return [RUN_PY, *(module for package in packages for module in sorted(package.glob("*.py")))]


def imported_names(tree: ast.Module) -> dict[str, Path]:
    """Name bound by a top-level `from <project module> import name` → that module's file."""
    names = {}
    for node in tree.body:
        if isinstance(node, ast.ImportFrom) and node.module:
            module = module_file(node.module)
            for alias in node.names:
                if module is not None:
                    names[alias.asname or alias.name] = module
    return names


def module_file(dotted: str) -> Path | None:
    """`data.dataset` → project/data/dataset.py (a package: its __init__.py); None outside."""
    base = PROJECT_DIR.joinpath(*dotted.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def module_closure(modules: set[Path]) -> set[Path]:
    """The modules and everything they import from the project, with their packages."""
    done: set[Path] = set()
    todo = list(modules)
    while todo:
        path = todo.pop()
        if path in done:
            continue
        done.add(path)
        package = path.parent / "__init__.py"
        if package.is_file() and path.parent != PROJECT_DIR:
            todo.append(package)
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module:
                targets = [node.module, *(f"{node.module}.{a.name}" for a in node.names)]
            elif isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            else:
                continue
            todo.extend(file for file in map(module_file, targets) if file is not None)
    return done


# -- config -------------------------------------------------------------------------------


def write_stage_configs(directory: Path, resolved: Resolved) -> dict[str, Path]:
    """<directory>/<stage>.json (the sections it reads) and resolved.json (the whole
    configuration, its source and the deviations from the plan), each rewritten only when
    its content changes.
    """
    records = {stage: resolved.view(stage) for stage in STAGES}
    records[RESOLVED] = resolved.record()
    paths = {}
    for name, record in records.items():
        paths[name] = directory / f"{name}.json"
        write_text_if_changed(paths[name], json.dumps(record, indent=2) + "\n")
    return paths


def resolve_runs(spec: dict[str, Any]) -> dict[str, Any]:
    """Resolve every run of the workflow's spec; then write their stage config files."""
    resolved = {}
    for run in spec["runs"]:
        try:
            overrides = [data_source_override(run["data_source"])] if run["data_source"] else []
            for item in run["overrides"]:
                overrides += [nested(key, value) for key, value in item.items()]
            config_file = Path(run["config"]) if run["config"] else None
            resolved[run["dir"]] = resolve(config_file, overrides)
        except ConfigError as error:
            raise ConfigError(f"{run['dir']}: {error}") from None
    configs = {}
    for directory, result in resolved.items():
        paths = write_stage_configs(Path(directory), result)
        configs[directory] = {name: str(path) for name, path in paths.items()}
    code = {
        stage: [path.relative_to(REPO_DIR).as_posix() for path in stage_sources(stage)]
        for stage in STAGES
    }
    modules = [path.relative_to(REPO_DIR).as_posix() for path in project_modules()]
    return {"code": code, "modules": modules, "configs": configs}


def main() -> int:
    try:
        result = resolve_runs(json.load(sys.stdin))
    except ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    json.dump(result, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
