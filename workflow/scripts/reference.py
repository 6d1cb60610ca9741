"""The configuration's reference, config/README.md, made from the one source of each key:
the workflow's keys from its schema (workflow/schemas/config.schema.yaml: each key's
description, type and default, else config/config.yaml's value), each plan's keys from its
config dataclasses (harness/reference.py: each field's docstring and default), one section a
plan:

    python workflow/scripts/reference.py PLAN_DIR... > config/README.md

A key without a description (the schema) or docstring (a plan) stops it, naming the key.
A plan's tables come from `python -m harness.reference PLAN_DIR` in a subprocess: the
workflow imports no plan code.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from harness.errors import ProjectError, one_line_errors
from harness.reference import cell, code, paragraph, table, value_text

REPO = Path(__file__).resolve().parents[2]
SCHEMA = "workflow/schemas/config.schema.yaml"
CONFIG = "config/config.yaml"
OUTPUT = "config/README.md"
HEADER = ("Key", "Default", "Type", "What it does")


class ReferenceProblem(ProjectError):
    """A schema key without a description, or a plan whose reference cannot be made."""

    exit_code = 2


@dataclass(frozen=True)
class Row:
    key: str  # dotted; <run_name> and the like stand for any name
    type: str
    default: str  # as the cell shows it
    description: str


# -- the schema -----------------------------------------------------------------------------


def resolved(node: dict[str, Any], root: dict[str, Any]) -> dict[str, Any]:
    """`node` with its $ref (within the schema) filled in; its own keys win."""
    if "$ref" not in node:
        return node
    target: Any = root
    for part in node["$ref"].removeprefix("#/").split("/"):
        target = target[part]
    own = {key: value for key, value in node.items() if key != "$ref"}
    return {**resolved(target, root), **own}


def type_text(node: dict[str, Any], root: dict[str, Any]) -> str:
    kinds = node.get("type")
    if kinds is None:  # oneOf / anyOf: the alternatives' types
        alternatives = [resolved(a, root) for a in node.get("oneOf", []) + node.get("anyOf", [])]
        kinds = sorted({a["type"] for a in alternatives if isinstance(a.get("type"), str)})
    kinds = [kinds] if isinstance(kinds, str) else kinds
    return " or ".join(kinds)


def placeholder(node: dict[str, Any]) -> str:
    """What stands for any key of a mapping: its key schema's name (`<run_name>`)."""
    ref = node.get("propertyNames", {}).get("$ref", "#/key")
    return f"<{ref.rsplit('/', 1)[-1]}>"


def configured(config: dict[str, Any], key: str) -> tuple[bool, Any]:
    """Whether config/config.yaml sets the dotted `key`, and its value."""
    value: Any = config
    for part in key.split("."):
        if not isinstance(value, dict) or part not in value:
            return False, None
        value = value[part]
    return True, value


def schema_rows(
    node: dict[str, Any],
    key: str,
    required: bool,
    root: dict[str, Any],
    config: dict[str, Any],
) -> list[Row]:
    """The row of `key` and of every key below it (properties, a mapping's any key, the
    keys of each alternative).
    """
    node = resolved(node, root)
    description = node.get("description")
    if not description:
        raise ReferenceProblem(
            f"{SCHEMA}: key {key} has no description: give it one (what it does, its range), "
            "as the other keys have"
        )
    found, value = configured(config, key)
    if "default" in node:
        default = code(value_text(node["default"]))
    elif found:
        default = code(value_text(value))
    else:
        default = "required" if required else ""
    rows = [Row(key, type_text(node, root), default, " ".join(description.split()))]
    below: list[tuple[dict[str, Any], str, bool]] = []
    for shape in [node, *(resolved(a, root) for a in node.get("oneOf", []))]:
        wanted = shape.get("required", [])
        below += [(child, f"{key}.{name}", name in wanted) for name, child in props(shape)]
    extra = node.get("additionalProperties")
    if isinstance(extra, dict):
        below.append((extra, f"{key}.{placeholder(node)}", False))
    for child, name, needed in below:
        rows += schema_rows(child, name, needed, root, config)
    return rows


def props(node: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    return list(node.get("properties", {}).items())


def workflow_section(schema: dict[str, Any], config: dict[str, Any]) -> str:
    """The workflow's keys: a table of the top-level keys that hold no keys, then one for
    each that does (runs, sweep, ...), its own row first.
    """
    wanted = schema.get("required", [])
    plain: list[Row] = []
    nested: list[list[Row]] = []
    for name, node in props(schema):
        rows = schema_rows(node, name, name in wanted, schema, config)
        if len(rows) == 1:
            plain += rows
        else:
            nested.append(rows)
    lines = [
        "## Workflow keys",
        "",
        paragraph(
            f"The keys of `{CONFIG}`, as `{SCHEMA}` defines them. The default is "
            f"`{CONFIG}`'s value (or the schema's default, for an optional key that the file "
            "leaves out); `required` marks a key that must be given once its section is. "
            "`<run_name>` stands for any run's name, `<override_key>` for any key of the "
            "plan's config (dotted, `<section>.<key>`)."
        ),
        "### Top-level keys",
        "",
        table(HEADER, [row_cells(row) for row in plain]),
    ]
    for rows in nested:
        lines += [f"### `{rows[0].key}`", "", table(HEADER, [row_cells(row) for row in rows])]
    return "\n".join(lines)


def row_cells(row: Row) -> tuple[str, ...]:
    return (code(row.key), row.default, cell(row.type), cell(row.description))


# -- the plans -------------------------------------------------------------------------------


def plan_section(folder: str) -> str:
    """The plan's tables, as `python -m harness.reference` prints them (run from the
    repository's root, so that the plan is named as `plan:` names it).
    """
    result = subprocess.run(
        [sys.executable, "-m", "harness.reference", folder],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        lines = result.stderr.strip().splitlines() or [f"exit code {result.returncode}"]
        raise ReferenceProblem(f"{folder}: {lines[-1].removeprefix('error: ')}")
    return result.stdout


def intro(command: str) -> str:
    generated = "\n".join(
        [
            "<!-- Generated, not to be edited: made by",
            "",
            f"    {command}",
            "",
            paragraph(
                f"from {SCHEMA}, {CONFIG} and each plan's config dataclasses (each field's "
                "docstring): edit those and run the command again. "
                "tests/test_config_reference.py fails while this file is stale. -->"
            ),
        ]
    )
    return "\n".join(
        [
            generated,
            "# Configuration",
            "",
            paragraph(
                f"The workflow reads `{CONFIG}`. Before any job, every value is checked "
                f"against `{SCHEMA}`: the first one it refuses stops `snakemake` with one line "
                "that names the key and what it takes. On the command line, `--configfile "
                f"FILE` merges a YAML file of the same keys over `{CONFIG}` (`config/digits.yaml`"
                " is one), and `--config KEY=VALUE ...` sets top-level keys (`snakemake --cores "
                "all --config epochs=5 device=cpu`); lists and `null` given there read as a "
                "file would give them, and nested keys are easiest in a file."
            ),
            paragraph(
                "The hyperparameters live in the plan folder (`plan:`), as the defaults of its "
                f"config dataclasses: `{CONFIG}` only chooses among them. A run's configuration "
                "is, in order: the plan; its `project_config` (`auto`: the plan on CUDA, its "
                "CPU preset on the CPU; or a YAML file of overrides, nested by section); the "
                "keys that `data_source`, `epochs` and `device` set; the shared `overrides`; "
                "the run's own `overrides` (`runs: {<run_name>: {overrides: {<section>.<key>: "
                "<value>}}}`, a sweep's point, a search's trial); and the seed, which comes "
                "from `seeds` alone (`seed` as an override is an error). The plan checks every "
                "run's keys before any job, naming the run and the key; each stage reruns only "
                "when a key that it reads changes."
            ),
            paragraph(
                "`python <plan>/run.py config --keys` prints a plan's tables below, and "
                "`python <plan>/run.py config --set KEY=VALUE` a resolved configuration, "
                "without running anything."
            ),
        ]
    )


def main(argv: list[str] | None = None) -> int:
    """Print config/README.md for the plan folders given."""
    args = sys.argv[1:] if argv is None else argv
    if not args or any(arg.startswith("-") for arg in args):
        print(
            f"usage: python workflow/scripts/reference.py PLAN_DIR... > {OUTPUT}", file=sys.stderr
        )
        return 2
    folders = [Path(os.path.relpath(Path(arg).resolve(), REPO)).as_posix() for arg in args]
    command = f"python workflow/scripts/reference.py {' '.join(folders)} > {OUTPUT}"
    with one_line_errors():
        schema = yaml.safe_load((REPO / SCHEMA).read_text(encoding="utf-8"))
        config = yaml.safe_load((REPO / CONFIG).read_text(encoding="utf-8"))
        parts = [intro(command), workflow_section(schema, config)]
        parts += [plan_section(folder) for folder in folders]
    print("\n".join(parts), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
