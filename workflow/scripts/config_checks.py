"""How the Snakefile reads the workflow's configuration, before any job: a config file that
Snakemake cannot read is named with its line and column; values given with --config get the
types that a config file would give them; the first value that the schema does not take
stops the workflow in one line (its key, the problem, what the schema says of it).

Each check returns its one line, or None; the Snakefile raises it as a WorkflowError.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from typing import Any

import jsonschema
import yaml
from snakemake.common.configfile import load_configfile
from snakemake.exceptions import WorkflowError

# JSON Schema's types, as Python's (a bool is no integer or number there).
JSON_TYPES: dict[str, type | tuple[type, ...]] = {
    "null": type(None),
    "boolean": bool,
    "integer": int,
    "number": (int, float),
    "string": str,
    "array": list,
    "object": dict,
}
SHOWN = 40  # characters of a long value shown in a message


# -- config files ---------------------------------------------------------------------------


def file_problem(path: str) -> str | None:
    """Why Snakemake cannot read the config file `path` (JSON, or YAML through yte), with
    the line and column of a YAML error, which Snakemake's own message lacks; None where it
    reads (or where there is no file: Snakemake says so, or a --configfile stands in).
    """
    if not os.path.exists(path):
        return None
    try:
        load_configfile(path)
    except (WorkflowError, UnicodeDecodeError) as error:
        return f"config file {path} {yaml_problem(path) or f'cannot be read: {error}'}"
    return None


def yaml_problem(path: str) -> str | None:
    """Why `path` holds no YAML mapping, a syntax error as "line L, column C: ..." (1-based,
    as editors count; PyYAML's parser, as Snakemake's yte reads the file); else None.
    """
    try:
        with open(path, "rb") as handle:  # bytes: PyYAML reports text that is not UTF-8
            loaded = yaml.safe_load(handle)
    except yaml.MarkedYAMLError as error:
        where = position(error.problem_mark)
        problem = f"{where}: {error.problem}" if where else str(error.problem)
        if error.context and error.context_mark:  # where the unfinished part began
            problem += f" ({error.context} at {position(error.context_mark)})"
        return f"is not valid YAML: {problem}"
    except yaml.reader.ReaderError as error:  # a byte or a character that YAML takes nowhere
        return f"is not valid YAML: {reader_problem(path, error)}"
    if loaded is None:
        return "is empty: it must hold a mapping of keys (runs:, seeds:, ...)"
    if not isinstance(loaded, dict):
        kind = "a list" if isinstance(loaded, list) else "a single value"
        return f"must hold a mapping of keys (runs:, seeds:, ...), not {kind}"
    return None


def position(mark: yaml.Mark | None) -> str:
    return f"line {mark.line + 1}, column {mark.column + 1}" if mark else ""


def reader_problem(path: str, error: yaml.reader.ReaderError) -> str:
    """PyYAML's ReaderError, at a character's offset (a control character) or a byte's (text
    that is not UTF-8), as "line L, column C: ...".
    """
    with open(path, "rb") as handle:
        data = handle.read()
    if error.encoding == "unicode":
        before = data.decode("utf-8")[: error.position]
        what = f"{error.reason} (#x{error.character:04x})"
    else:
        before = data[: error.position].decode("utf-8", "replace")
        what = f"not {error.encoding}: {error.reason} (byte #x{error.character:02x})"
    line, column = before.count("\n") + 1, len(before) - before.rfind("\n")
    return f"line {line}, column {column}: {what}"


# -- values given with --config -------------------------------------------------------------


def read_schema(path: str) -> dict[str, Any]:
    with open(path, encoding="utf-8") as handle:
        return yaml.safe_load(handle)


def branches(schema: dict[str, Any], root: dict[str, Any]) -> list[dict[str, Any]]:
    """`schema` and every schema that it stands for ($ref within `root`, anyOf, oneOf,
    allOf).
    """
    found = [schema]
    if "$ref" in schema:
        target = root
        for part in schema["$ref"].removeprefix("#/").split("/"):
            target = target[part]
        found += branches(target, root)
    for combined in ("anyOf", "oneOf", "allOf"):
        for branch in schema.get(combined, ()):
            found += branches(branch, root)
    return found


def children(schemas: list[dict[str, Any]], key: str | int, root: dict[str, Any]) -> list:
    """The schemas of item `key` (a name, or a list index) of a value of `schemas`."""
    found = []
    for schema in schemas:
        if isinstance(key, int):
            child = schema.get("items")
        else:
            child = schema.get("properties", {}).get(key, schema.get("additionalProperties"))
        found += branches(child, root) if isinstance(child, dict) else []
    return found


def is_type(value: Any, name: str) -> bool:
    wrong_bool = isinstance(value, bool) and name in ("integer", "number")
    return isinstance(value, JSON_TYPES[name]) and not wrong_bool


def as_in_a_file(value: Any, schemas: list[dict[str, Any]], root: dict[str, Any]) -> Any:
    """A --config value as a config file gives it: Snakemake hands list and mapping items
    over as strings (`seeds=[1,2]` is ['1', '2']). A string is read as YAML where the schema
    takes no string (a seed), or takes the YAML value as well (null, for a string or null);
    where the schema takes a string alone, or says nothing of its type, it stays a string.
    """
    if isinstance(value, dict):
        return {
            key: as_in_a_file(item, children(schemas, key, root), root)
            for key, item in value.items()
        }
    if isinstance(value, list):
        return [as_in_a_file(item, children(schemas, 0, root), root) for item in value]
    types: set[str] = set()
    for schema in schemas:
        kind = schema.get("type", [])
        types.update([kind] if isinstance(kind, str) else kind)
    others = types - {"string"}
    if not isinstance(value, str) or not others:
        return value
    try:
        parsed = yaml.safe_load(value)
    except yaml.YAMLError:
        return value
    if "string" not in types or any(is_type(parsed, kind) for kind in others):
        return parsed
    return value


def retype_command_line(config: dict[str, Any], given: Mapping[str, Any], schema: dict) -> None:
    """Give the values of --config (`given`, as Snakemake parsed them, merged into `config`)
    the types that a config file would give them, in place; the config files' own values
    are left as they are.
    """
    retype(config, given, [schema], schema)


def retype(config: dict, given: Mapping[str, Any], schemas: list, root: dict) -> None:
    for key, value in given.items():
        inner = children(schemas, key, root)
        if isinstance(value, Mapping) and isinstance(config.get(key), dict):
            retype(config[key], value, inner, root)
        elif key in config:
            config[key] = as_in_a_file(config[key], inner, root)


# -- the schema -----------------------------------------------------------------------------


def config_problem(config: dict[str, Any], schema: dict[str, Any], command_line: Any) -> str | None:
    """The first value of `config` that `schema` does not take, as one line: its key, the
    problem, what the schema says of that value; for a string that came through --config
    where the schema takes none, the same in a --configfile. `command_line` is Snakemake's
    ConfigSettings: `.config` what --config gave, `.config_args` its text (KEY=VALUE each).
    None where the schema takes every value.
    """
    given = command_line.config
    validator = jsonschema.validators.validator_for(schema)(schema)
    error = jsonschema.exceptions.best_match(validator.iter_errors(config))
    if error is None:
        return None
    path = list(error.absolute_path)
    where = "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in path)
    problem = error.message
    if error.validator == "maxLength":
        text = str(error.instance)
        shown = text if len(text) <= SHOWN else f"{text[:SHOWN]}..."
        problem = f"{shown!r} is {len(text)} characters long, more than {error.validator_value}"
    line = f"{where.lstrip('.') or 'config'}: {problem}"
    described = isinstance(error.schema, dict) and error.schema is not schema
    if described and error.schema.get("description"):
        line += f"; {error.schema['description']}"
    from_command_line = bool(path) and path[0] in given
    if error.validator == "type" and isinstance(error.instance, str) and from_command_line:
        line += (
            "; it came through --config as a string (Snakemake passes list and mapping items "
            f"on as strings): put `{file_form(path[0], command_line)}` in a YAML file "
            "and give it with --configfile"
        )
    return line


def file_form(key: str, command_line: Any) -> str:
    """`key: VALUE` as --config gave it: what a --configfile holds for it."""
    for arg in command_line.config_args or ():
        name, _, text = str(arg).partition("=")
        if name == key:
            return f"{key}: {text}"
    value = command_line.config[key]
    return yaml.safe_dump({key: value}, default_flow_style=True).strip().strip("{}")


def main(paths: list[str]) -> int:
    """`python workflow/scripts/config_checks.py FILE...`: each file's problem with its line
    and column (for a --configfile, which Snakemake reads before the workflow can check it).
    """
    problems = [problem for path in paths if (problem := file_problem(path))]
    for problem in problems:
        print(f"error: {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
