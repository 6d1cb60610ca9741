"""The project's own errors: each message says what is wrong and how to fix it, so run.py
prints it as one line and exits non-zero; any other exception is a bug and keeps its
traceback.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator


class ProjectError(Exception):
    """A failure the user can fix; `exit_code` 2 for settings and usage, 1 otherwise."""

    exit_code = 1


@contextlib.contextmanager
def one_line_errors() -> Iterator[None]:
    """Run the block; a ProjectError ends the process with its one line on stderr and its
    exit code (for the workflow's scripts, whose callers show stderr).
    """
    try:
        yield
    except ProjectError as error:
        print(f"error: {error}", file=sys.stderr)
        raise SystemExit(error.exit_code) from None
