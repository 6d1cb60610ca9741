"""The project's own errors: each message says what is wrong and how to fix it, so run.py
prints it as one line and exits non-zero; any other exception is a bug and keeps its
traceback.
"""


class ProjectError(Exception):
    """A failure the user can fix; `exit_code` 2 for settings and usage, 1 otherwise."""

    exit_code = 1
