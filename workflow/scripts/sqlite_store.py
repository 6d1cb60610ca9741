"""What the workflow's two stores share: the MLflow store (track.py) and the Optuna storage
(search_study.py), each an SQLite file by default or a database server.

How long a call waits for a lock that another process holds on an SQLite file, which pip
package brings a database driver, the chain of errors behind a failure, and SQLite's own
error codes sorted by what the user can do about them. Each store words its messages itself
(what it is called, how to run it again, what to restore); the sorting is done here, once.
"""

from __future__ import annotations

import sqlite3

# How long a call waits for a lock that another process holds on an SQLite store (its busy
# timeout) before the job or the search stops with one line.
SQLITE_WAIT_S = 60.0
# The pip package of a database driver, where its module is named otherwise.
DRIVERS = {"psycopg2": "psycopg2-binary", "pymysql": "PyMySQL", "MySQLdb": "mysqlclient"}

# SQLite's result codes (sqlite3.Error.sqlite_errorname, extended codes included: they
# begin with their primary code's name), by what is wrong with the store.
DAMAGED, LOCKED, UNOPENABLE = "damaged", "locked", "unopenable"
READ_ONLY, FULL = "read-only", "full"
KINDS = {
    DAMAGED: ("SQLITE_CORRUPT", "SQLITE_NOTADB"),
    LOCKED: ("SQLITE_BUSY", "SQLITE_LOCKED"),
    UNOPENABLE: ("SQLITE_CANTOPEN",),
    READ_ONLY: ("SQLITE_READONLY", "SQLITE_PERM"),
    FULL: ("SQLITE_FULL",),
}


def kind_of(error: sqlite3.Error) -> str | None:
    """What is wrong with a store that raised `error` (one of KINDS); None: something else."""
    code = getattr(error, "sqlite_errorname", "") or ""
    return next((kind for kind, codes in KINDS.items() if code.startswith(codes)), None)


def causes(error: BaseException) -> list[BaseException]:
    """The error and what it was raised from, outermost first (a database driver's own
    error, which SQLAlchemy keeps as `orig`, included).
    """
    chain: list[BaseException] = []
    current: BaseException | None = error
    while current is not None and not any(current is seen for seen in chain):
        chain.append(current)
        orig = getattr(current, "orig", None)
        if isinstance(orig, BaseException):
            current = orig
        else:
            current = current.__cause__ or current.__context__
    return chain


def sqlite_cause(error: BaseException) -> sqlite3.Error | None:
    """The SQLite error behind `error`, if there is one."""
    return next((e for e in causes(error) if isinstance(e, sqlite3.Error)), None)
