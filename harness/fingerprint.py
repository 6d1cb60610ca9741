"""Fingerprints of the source a stage runs, so that reruns follow what an edit means.

A module's fingerprint is the SHA-256 of its syntax tree with the docstrings taken out
(those of attributes too: a string alone under a class's field, as config fields document
themselves): comments, docstrings, blank lines and formatting leave it unchanged; any edit
that can change behaviour (a statement, a constant, a default argument, a decorator,
`__all__`, an import) changes it. A stage's code is its module and every project module
that it reaches through imports of any form (`import a.b`, `from a import b`, `from . import
b`, inside functions too), with the packages on the way. Nothing is imported or run.
"""

from __future__ import annotations

import ast
import functools
import hashlib
from pathlib import Path

Roots = tuple[Path, ...]  # folders whose packages count as the stage's code
DOCUMENTED = (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)


def without_docstrings(tree: ast.Module) -> ast.Module:
    """The tree with the docstring of the module and of every class and function removed,
    and in a class every other statement that is a string alone (an attribute's docstring).
    """
    for node in ast.walk(tree):
        if isinstance(node, DOCUMENTED) and ast.get_docstring(node, clean=False) is not None:
            node.body = node.body[1:] or [ast.Pass()]
        if isinstance(node, ast.ClassDef):
            node.body = [s for s in node.body if not is_string(s)] or [ast.Pass()]
    return tree


def is_string(statement: ast.stmt) -> bool:
    """Whether a statement is a string alone, which does nothing when it runs."""
    return (
        isinstance(statement, ast.Expr)
        and isinstance(statement.value, ast.Constant)
        and isinstance(statement.value.value, str)
    )


def module_digest(path: Path) -> str:
    """SHA-256 of the module's behaviour-bearing syntax (ast.dump leaves positions out)."""
    return source_digest(path.read_text(encoding="utf-8"))


# A planner fingerprints every stage, and the stages share most of their modules: each text
# is parsed once (this cache and import_targets' are keyed by the text itself, so that an
# edited file is parsed again).
@functools.cache
def source_digest(source: str) -> str:
    """SHA-256 of a module's text without its docstrings and formatting."""
    tree = without_docstrings(ast.parse(source))
    return hashlib.sha256(ast.dump(tree).encode()).hexdigest()


def module_file(dotted: str, roots: Roots) -> Path | None:
    """`pkg.data.dataset` → <root>/pkg/data/dataset.py (a package: its __init__.py) under
    the first of `roots` that has it; None outside them.
    """
    for root in roots:
        base = root.joinpath(*dotted.split("."))
        for candidate in (base.with_suffix(".py"), base / "__init__.py"):
            if candidate.is_file():
                return candidate
    return None


def root_of(path: Path, roots: Roots) -> Path:
    """The one of `roots` that `path` lies under."""
    return next(root for root in roots if path.is_relative_to(root))


def imported(path: Path, roots: Roots) -> set[Path]:
    """The modules under `roots` that `path` imports, in any form and anywhere in the file."""
    targets = import_targets(path.read_text(encoding="utf-8"), path, root_of(path, roots))
    return {file for file in (module_file(t, roots) for t in targets if t) if file is not None}


@functools.cache  # once a text, as source_digest
def import_targets(source: str, path: Path, root: Path) -> tuple[str, ...]:
    """Every module name that the text `source` of `path` (under `root`) imports."""
    targets: list[str] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                parts = alias.name.split(".")  # `import a.b` imports a, then a.b
                targets += [".".join(parts[: i + 1]) for i in range(len(parts))]
        elif isinstance(node, ast.ImportFrom):
            base = absolute(node, path, root)
            targets += [base, *(f"{base}.{alias.name}" for alias in node.names)]
    return tuple(targets)


def absolute(node: ast.ImportFrom, path: Path, root: Path) -> str:
    """The module a `from ... import` names, with a relative one (`from . import x`) made
    absolute.
    """
    if not node.level:
        return node.module or ""
    package = path.relative_to(root).parent.parts
    base = package[: len(package) - node.level + 1]
    return ".".join([*base, *([node.module] if node.module else [])])


def closure(start: Path, roots: Roots) -> set[Path]:
    """`start` and every module under `roots` it reaches, with the packages on the way."""
    done: set[Path] = set()
    todo = [start]
    while todo:
        path = todo.pop()
        if path in done:
            continue
        done.add(path)
        # The package that holds it (for a package, the one around it): Python runs each.
        folder = path.parent.parent if path.name == "__init__.py" else path.parent
        package = folder / "__init__.py"
        if package.is_file():
            todo.append(package)
        todo.extend(imported(path, roots))
    return done


def code_record(modules: set[Path], roots: Roots) -> dict[str, object]:
    """The stage's fingerprint over its modules, and each module's own digest (by the
    module's path under its root: `project/model/gpt.py`, `harness/io.py`).
    """
    return record_of(
        {path.relative_to(root_of(path, roots)).as_posix(): module_digest(path) for path in modules}
    )


def record_of(digests: dict[str, str]) -> dict[str, object]:
    """One fingerprint over the modules' digests (by path), and the digests themselves."""
    listed = dict(sorted(digests.items()))
    whole = hashlib.sha256("\n".join(f"{k} {v}" for k, v in listed.items()).encode())
    return {"fingerprint": whole.hexdigest(), "modules": listed}
