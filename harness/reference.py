"""A plan's configuration as a parameter reference: every key of its config dataclasses, with
its default (the plan's value), its type and what it does, as Markdown tables, one for the
top-level keys and one for each section.

What a key does is the docstring written under its field, where it is declared (a string
alone on the line below, as config fields document themselves):

    lr: float = 1e-3
    \"\"\"T3: the peak learning rate; in (0, 1e6].\"\"\"

so the reference cannot drift from the code. A field without one is an error that names
it. Nothing is run but the plan's declaration (no torch):

    python -m harness.reference PLAN_DIR

prints a plan's reference; `run.py config --keys` prints the same, and the workflow's
`python workflow/scripts/reference.py PLAN_DIR...` puts it into config/README.md.
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import math
import os
import sys
import textwrap
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from harness.config import CONFIGS, merge, plan_mapping, read_yaml
from harness.errors import ProjectError
from harness.fingerprint import is_string
from harness.plan import Plan, load_plan
from harness.sections import type_hints

HEADER = ("Key", "Default", "Type", "What it does")
PRESET_HEADER = ("Key", "Default", "CPU preset", "Type", "What it does")
WIDTH = 92  # of a paragraph's lines


class UndocumentedError(ProjectError, ValueError):
    """A config field without a docstring, or one whose source cannot be read."""

    exit_code = 2


@dataclass(frozen=True)
class Key:
    """One row of the reference."""

    key: str  # dotted: `train.lr`
    default: Any  # the plan's value, as raw config
    type: str
    doc: str


@dataclass(frozen=True)
class Group:
    """A table of the reference: the top-level keys (name None), or one section."""

    name: str | None
    doc: str  # the section field's docstring; "" for the top-level keys
    keys: tuple[Key, ...]


# -- reading the dataclasses ---------------------------------------------------------------


def field_docs(cls: type) -> dict[str, str]:
    """The docstring under each field of the dataclass `cls` (and of the dataclasses it
    derives from), by field name, from its source.
    """
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if not dataclasses.is_dataclass(klass):
            continue
        try:
            source = textwrap.dedent(inspect.getsource(klass))
        except (OSError, TypeError) as error:
            raise UndocumentedError(
                f"{klass.__qualname__}: its source cannot be read for its fields' docstrings "
                f"({error})"
            ) from None
        (node,) = [n for n in ast.parse(source).body if isinstance(n, ast.ClassDef)]
        for statement, following in zip(node.body, node.body[1:], strict=False):
            if (
                isinstance(statement, ast.AnnAssign)
                and isinstance(statement.target, ast.Name)
                and is_string(following)
            ):
                text = typing.cast(ast.Constant, typing.cast(ast.Expr, following).value).value
                docs[statement.target.id] = " ".join(inspect.cleandoc(text).split())
    return docs


def documented(cls: type, prefix: str) -> dict[str, str]:
    """`field_docs(cls)`, with an UndocumentedError naming the first field that has none."""
    docs = field_docs(cls)
    for field in dataclasses.fields(cls):
        if not docs.get(field.name):
            raise UndocumentedError(
                f"{where(cls)}: field {cls.__qualname__}.{field.name} (config key "
                f"{prefix}{field.name}) has no docstring: write one as a string on the line "
                "below it (what it does, its range or choices), as the other fields have"
            )
    return docs


def where(cls: type) -> str:
    """The file that defines `cls`, relative to the current folder where it lies below it."""
    try:
        path = Path(inspect.getfile(cls)).resolve()
    except TypeError:
        return cls.__module__
    return os.path.relpath(path) if path.is_relative_to(Path.cwd()) else str(path)


def type_name(hint: Any) -> str:
    """`int | None` → "int or null"; a type by its name."""
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        return " or ".join(type_name(arg) for arg in typing.get_args(hint))
    if hint is type(None):
        return "null"
    return getattr(hint, "__name__", str(hint))


def present(hint: Any) -> Any:
    """A top-level field's type when the key is given (None there: a section a stage does
    not read, never a value): `int | None` → int.
    """
    args = [arg for arg in typing.get_args(hint) if arg is not type(None)]
    return args[0] if len(args) == 1 else hint


def default_of(field: dataclasses.Field) -> Any:
    if field.default_factory is not dataclasses.MISSING:
        return field.default_factory()
    return field.default


def groups(config: type) -> list[Group]:
    """The plan's keys: the top-level ones first, then each section's, in declaration order."""
    docs = documented(config, "")
    hints = type_hints(config)
    top: list[Key] = []
    sections: list[Group] = []
    for field in dataclasses.fields(config):
        hint = present(hints[field.name])
        if dataclasses.is_dataclass(hint):
            sections.append(Group(field.name, docs[field.name], section_keys(hint, field.name)))
        else:
            top.append(Key(field.name, default_of(field), type_name(hint), docs[field.name]))
    return ([Group(None, "", tuple(top))] if top else []) + sections


def section_keys(cls: type, section: str) -> tuple[Key, ...]:
    docs = documented(cls, f"{section}.")
    hints = type_hints(cls)
    return tuple(
        Key(f"{section}.{f.name}", default_of(f), type_name(hints[f.name]), docs[f.name])
        for f in dataclasses.fields(cls)
    )


# -- Markdown ------------------------------------------------------------------------------


def value_text(value: Any) -> str:
    """A value as YAML writes it in a flow (`null`, `true`, `0.001`, `[1, 2]`, `{a: 1}`)."""
    text = yaml.safe_dump([value], default_flow_style=True, width=math.inf, allow_unicode=True)
    return text.strip()[1:-1]


def cell(text: str) -> str:
    """Text for a table cell: `|` escaped, and `<` outside `code` (so that `<run>` is not
    taken for an HTML tag).
    """
    parts = text.replace("|", "\\|").split("`")
    return "`".join(part if i % 2 else part.replace("<", "\\<") for i, part in enumerate(parts))


def code(text: str) -> str:
    """Text as inline code in a table cell (a `|` escaped even there)."""
    escaped = text.replace("|", "\\|")
    return f"`{escaped}`"


def table(header: tuple[str, ...], rows: list[tuple[str, ...]]) -> str:
    lines = [header, tuple("---" for _ in header), *rows]
    return "\n".join(f"| {' | '.join(line)} |" for line in lines) + "\n"


def lookup(mapping: dict[str, Any], dotted: str) -> Any:
    value: Any = mapping
    for part in dotted.split("."):
        value = value[part]
    return value


def readers(plan: Plan, section: str) -> list[str]:
    return [s.name for s in (*plan.stages, *plan.tools) if section in s.sections]


def folder_label(folder: Path) -> str:
    """How a plan folder is named to the user: relative to the current folder (`project`,
    `plans/digits`), its own name when that is the current folder, else its full path.
    """
    relative = os.path.relpath(folder)
    if relative == ".":
        return folder.name
    return str(folder) if relative.startswith("..") else relative


def render(plan: Plan) -> str:
    """The plan's reference in Markdown: a heading, how its keys are set, then a table for
    its top-level keys and one for each section (key, default, CPU preset where the plan
    has one, type, what it does).
    """
    found = groups(plan.config)
    plan_values = plan_mapping(plan.config)
    preset = None
    if plan.cpu_preset:
        preset = merge(plan_values, read_yaml(plan.folder / CONFIGS / plan.cpu_preset))
    folder = folder_label(plan.folder)
    example = example_key(plan, found)
    value = value_text(lookup(plan_values, example))
    lines = [
        f"## Plan `{folder}` ({plan.name}): {plan.title}",
        "",
        paragraph(
            f"Declared in `{folder}/plan.py`; its research plan: `{plan.document}` (relative "
            "to the plan folder). Each key's default is the plan's value, written once, as the "
            "default of its config dataclass field; what it does is that field's docstring. "
            f"A key is set by its dotted name: `--set {example}={value}` on the plan's "
            f"`run.py`, or `{example}: {value}` in the workflow's `overrides:` (shared, or a "
            "run's own), a sweep's grid or a search's space; a YAML file of overrides "
            "(`run.py --config FILE`, the workflow's `project_config`) nests them by section. "
            f"The workflow's `epochs:` sets `{plan.epochs_key}`, its `seeds:` set `seed`, its "
            "`device:` sets `device`, and its `data_source:` the keys that say where the data "
            "comes from."
        ),
    ]
    if preset is not None:
        lines.append(
            paragraph(
                f"The CPU preset column: what `{CONFIGS}/{plan.cpu_preset}` sets instead. It "
                "stands in for the plan where a run resolves to the CPU with no config file of "
                "its own (`run.py` without `--config`, the workflow's `project_config: auto`); "
                f"`{CONFIGS}/plan.yaml`, which holds no keys, insists on the plan."
            )
        )
    for group in found:
        if group.name is None:
            lines += ["### Top-level keys", ""]
        else:
            stages = ", ".join(f"`{name}`" for name in readers(plan, group.name))
            lines += [
                f"### `{group.name}`",
                "",
                paragraph(f"{cell(group.doc)} Read by: {stages}."),
            ]
        rows = []
        for key in group.keys:
            row = [code(key.key), code(value_text(key.default))]
            if preset is not None:
                used = lookup(preset, key.key)
                row.append(code(value_text(used)) if used != key.default else "")
            rows.append((*row, cell(key.type), cell(key.doc)))
        lines.append(table(PRESET_HEADER if preset is not None else HEADER, rows))
    return "\n".join(lines)


def example_key(plan: Plan, found: list[Group]) -> str:
    """A key to show how keys are set: the first float of the epochs key's section (the
    learning rate, say); else the epochs key.
    """
    section = plan.epochs_key.partition(".")[0]
    for group in found:
        if group.name == section:
            for key in group.keys:
                if key.type == "float":
                    return key.key
    return plan.epochs_key


def paragraph(text: str) -> str:
    """Text wrapped to lines of at most WIDTH characters, and the blank line after it."""
    return textwrap.fill(text, WIDTH, break_long_words=False, break_on_hyphens=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    """`python -m harness.reference PLAN_DIR`: the plan's reference on stdout."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1 or args[0].startswith("-"):
        print("usage: python -m harness.reference PLAN_DIR", file=sys.stderr)
        return 2
    try:
        print(render(load_plan(Path(args[0]))), end="")
    except ProjectError as error:
        print(f"error: {error}", file=sys.stderr)
        return error.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())
