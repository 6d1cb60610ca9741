"""harness/fingerprint.py: a stage's code is every module it reaches through imports of any
form, and a module's digest follows what it does, not how it is written.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from harness.fingerprint import closure, code_record, module_digest, record_of


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def test_every_import_form_counts(tmp_path: Path) -> None:
    """`import a.b`, `from a import b`, `from . import b`, `from .b import x`, and imports
    inside functions each bring their module (and its package) into the closure.
    """
    root = tmp_path / "project"
    for name in ("__init__", "b", "c", "d", "e", "f"):
        write(root / "pkg" / f"{name}.py", "X = 1\n")
    write(root / "other" / "__init__.py", "")
    write(root / "other" / "g.py", "Y = 2\n")
    start = write(
        root / "pkg" / "a.py",
        "import pkg.b\nfrom pkg import c\nfrom . import d\nfrom .e import X\n"
        "import os\n\n\ndef late():\n    from pkg.f import X\n    import other.g\n",
    )
    found = {path.relative_to(root).as_posix() for path in closure(start, (root,))}
    expected = {f"pkg/{n}.py" for n in ("__init__", "a", "b", "c", "d", "e", "f")}
    assert found == expected | {"other/__init__.py", "other/g.py"}


def test_the_closure_spans_roots_and_reaches_up_relative_imports(tmp_path: Path) -> None:
    """A plan's package (`from ..utils import x` two levels down) and a second root (the
    harness's) in one closure; a module outside every root, or one nothing imports, does
    not count.
    """
    plan, library = tmp_path / "plans", tmp_path / "lib"
    write(plan / "toy" / "__init__.py", "")
    write(plan / "toy" / "stages" / "__init__.py", "")
    write(plan / "toy" / "utils" / "__init__.py", "")
    write(plan / "toy" / "utils" / "decay.py", "import json\nfrom tool.io import save\n")
    write(plan / "toy" / "utils" / "unused.py", "Z = 0\n")
    write(library / "tool" / "__init__.py", "")
    write(library / "tool" / "io.py", "def save():\n    return 1\n")
    start = write(plan / "toy" / "stages" / "fit.py", "from ..utils.decay import decayed\n")
    record = code_record(closure(start, (plan, library)), (plan, library))
    modules = set(record["modules"])
    assert {
        "toy/stages/__init__.py",
        "toy/stages/fit.py",
        "toy/utils/__init__.py",
        "toy/utils/decay.py",
        "tool/__init__.py",
        "tool/io.py",
    } <= modules
    assert "toy/utils/unused.py" not in modules
    assert all(name.startswith(("toy/", "tool/")) for name in modules)
    assert record["modules"]["tool/io.py"] == module_digest(library / "tool" / "io.py")


def test_every_enclosing_package_of_a_reached_module_counts(tmp_path: Path) -> None:
    root = tmp_path / "project"
    write(root / "a" / "__init__.py", "SETTING = 1\n")
    write(root / "a" / "b" / "__init__.py", "")
    write(root / "a" / "b" / "c.py", "X = 1\n")
    start = write(root / "main.py", "from a.b.c import X\n")
    found = {path.relative_to(root).as_posix() for path in closure(start, (root,))}
    assert found == {"main.py", "a/b/c.py", "a/b/__init__.py", "a/__init__.py"}


def test_the_fingerprint_covers_every_module_and_not_their_order() -> None:
    digests = {"a.py": "1" * 64, "b.py": "2" * 64}
    record = record_of(digests)
    assert record == record_of(dict(reversed(digests.items())))
    assert list(record["modules"]) == ["a.py", "b.py"]
    for changed in (
        {**digests, "b.py": "3" * 64},
        {**digests, "c.py": "1" * 64},
        {"a.py": "1" * 64},
    ):
        assert record_of(changed)["fingerprint"] != record["fingerprint"]
    renamed = {"a.py": "1" * 64, "z.py": "2" * 64}  # the same code under another path
    assert record_of(renamed)["fingerprint"] != record["fingerprint"]


BEFORE = 'def helper(a=1):\n    """Add one."""\n    return a + 1\n'
SAME = [
    BEFORE + "# a comment\n",
    BEFORE.replace('"""Add one."""', '"""Add one, a docstring\n    of two lines."""'),
    "def helper(a = 1):  # formatted otherwise\n    '''Add one.'''\n\n    return (a +\n"
    "            1)\n",
]
CHANGED = [
    BEFORE.replace("a + 1", "a + 2"),  # a constant
    BEFORE.replace("a=1", "a=2"),  # a default argument
    "import functools\n\n\n@functools.cache\n" + BEFORE,  # a decorator (and an import)
    BEFORE + '__all__ = ["helper"]\n',  # __all__
]


@pytest.mark.parametrize("text", SAME)
def test_comments_docstrings_and_formatting_leave_the_digest(tmp_path: Path, text: str) -> None:
    before = module_digest(write(tmp_path / "before.py", BEFORE))
    assert module_digest(write(tmp_path / "after.py", text)) == before


FIELDS = "class Config:\n    lr: float = 1e-3  # the peak learning rate\n    epochs: int = 2\n"
DOCUMENTED_FIELDS = (
    'class Config:\n    """The run."""\n\n    lr: float = 1e-3\n    """The peak learning rate."""\n'
    '    epochs: int = 2\n    """The full run."""\n'
)


def test_attribute_docstrings_leave_the_digest_and_the_fields_do_not(tmp_path: Path) -> None:
    """A config field's docstring (a string alone below it) is a docstring too; a field's
    default is code.
    """
    before = module_digest(write(tmp_path / "before.py", FIELDS))
    assert module_digest(write(tmp_path / "after.py", DOCUMENTED_FIELDS)) == before
    changed = DOCUMENTED_FIELDS.replace("epochs: int = 2", "epochs: int = 3")
    assert module_digest(write(tmp_path / "changed.py", changed)) != before


@pytest.mark.parametrize("text", CHANGED)
def test_a_behaviour_change_changes_the_digest(tmp_path: Path, text: str) -> None:
    before = module_digest(write(tmp_path / "before.py", BEFORE))
    assert module_digest(write(tmp_path / "after.py", text)) != before
