"""A search's study in Optuna's storage, asked and pruned so that a search killed at any
moment and run again ends with the same trials as one that was never stopped.

Every decision depends on the stored history and the trial's number alone, never on a
sampler's or a pruner's state in memory, which a kill would lose:

- Trials are asked in batches of `parallel` numbers (batch_numbers); trial n's values are
  drawn by a fresh TPESampler(seed=sampler_seed + n) over a copy, in memory, of the trials
  of the earlier batches, which are all finished by then (draw_params).
- They reach the storage in one write, as a waiting trial with its values fixed (Optuna's
  enqueue_trial), before the trial starts (start_trial): a trial cut half-asked is
  resumed with the same values.
- The pruner (MedianPruner) judges a trial's value at a step against the same copy of the
  earlier batches (prune_here), not against whatever else has finished by then.

The study optimises the plan's objective in the plan's direction (SearchPlan), which the
storage keeps with the spec that made the study (spec_record): a search run again for
another objective or direction, or with another space, seed or batch size, is refused
rather than mixed into the study. Every decision reads the direction of the stored study.

The storage is opened with care (open_storage): an SQLite file is checked whole before
anything is written to it, and a lock that another process holds on it is waited for
SQLITE_WAIT_S (sqlite_store.py, which the MLflow store shares). A storage that fails, at its
opening or at any later call (storage_errors), is one line (SearchError) that names it
(without its password), says what is wrong with it (damaged, locked by another process, its
folder cannot be made, its driver missing, its server unreachable) and a fix that keeps
every finished trial (restore it from a copy, wait or close the other process, install the
driver): never removing it.
"""

from __future__ import annotations

import contextlib
import copy
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, InterfaceError, OperationalError, SQLAlchemyError

import sqlite_store
from search_spec import SearchError, SearchPlan, storage_url, trial_name, with_defaults
from sqlite_store import DAMAGED, DRIVERS, FULL, LOCKED, READ_ONLY, UNOPENABLE, causes

optuna.logging.set_verbosity(optuna.logging.WARNING)

SPEC_ATTR = "chargpt.spec"
RUN_ATTR = "run"
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)
# What a storage raises when it fails, at any call.
STORAGE_FAILURES = (optuna.exceptions.StorageInternalError, SQLAlchemyError, sqlite3.Error)


def spec_record(search: dict[str, Any], parallel: int, plan: SearchPlan) -> dict[str, Any]:
    """What decides the study's trials: the plan's objective and its direction, the space,
    the sampler and pruner, the batches.
    """
    spec = with_defaults(search)
    keys = ("space", "sampler_seed", "startup_trials", "pruning")
    return {
        "objective": plan.objective,
        "direction": plan.direction,
        **{key: spec[key] for key in keys},
        "parallel": parallel,
    }


def direction_of(study: optuna.Study) -> str:
    """The study's direction as the plan names it: "minimize" or "maximize"."""
    return study.direction.name.lower()


def open_study(search: dict[str, Any], parallel: int, plan: SearchPlan) -> optuna.Study:
    """The study (created on first use, in the plan's direction), refused when it was made
    by another spec or for another objective or direction, or when its storage fails.
    """
    spec = with_defaults(search)
    url = storage_url(search)
    shown = shown_url(url)
    with storage_errors(url):
        study = optuna.create_study(
            storage=open_storage(url),
            study_name=spec["study"],
            direction=plan.direction,  # a stored study keeps its own: checked below
            # Never draws: every value is fixed before its trial starts (start_trial).
            sampler=optuna.samplers.RandomSampler(seed=0),
            load_if_exists=True,
        )
        wanted = spec_record(search, parallel, plan)
        stored = study.user_attrs.get(SPEC_ATTR)
        if stored is None and study.trials:
            raise SearchError(
                f"search: the study {spec['study']!r} in {shown} was not made by this search; "
                "name another (search.study) or another storage"
            )
        # What made the study: its record (one written before the search read the plan's
        # objective lacks it: it was made for this one), in the direction that Optuna stores.
        made = {"objective": plan.objective, **(stored or wanted), "direction": direction_of(study)}
        if made != wanted:
            key = next(k for k in wanted if made.get(k) != wanted[k])
            raise SearchError(
                f"search: the study {spec['study']!r} in {shown} was made with {key} "
                f"{made.get(key)!r}, now {wanted[key]!r}; restore it, or name a new study "
                "(search.study) to search again"
            )
        if stored is None:
            study.set_user_attr(SPEC_ATTR, wanted)
    return study


# -- the storage ---------------------------------------------------------------------------


def sqlite_file(url: str) -> Path | None:
    """The file of an SQLite storage URL; None for another database or an in-memory one."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        return None
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return None
    return Path(parsed.database)


def shown_url(url: str) -> str:
    """The URL as messages show it: without its password."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return url


def open_storage(url: str) -> optuna.storages.RDBStorage:
    """Optuna's storage at `url`. An SQLite file gets its folder made, is checked whole
    before Optuna writes to it (it creates its tables), and waits SQLITE_WAIT_S at each call
    for a lock that another process holds.
    """
    path = sqlite_file(url)
    engine_kwargs: dict[str, Any] = {}
    if path is not None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise SearchError(
                f"the Optuna storage {shown_url(url)} cannot be made: its folder {path.parent} "
                f"cannot be created ({error.strerror}); set search.storage to a file in a "
                "folder that you can write"
            ) from None
        if path.exists():
            check_whole(url, path)
        engine_kwargs = {"connect_args": {"timeout": sqlite_store.SQLITE_WAIT_S}}
    try:
        return optuna.storages.RDBStorage(url, engine_kwargs=engine_kwargs)
    except ImportError as error:
        raise missing_driver(url, error) from None
    except (ValueError, RuntimeError) as error:  # a URL Optuna refuses; another schema
        raise SearchError(
            f"the Optuna storage {shown_url(url)} cannot be used: {first_line(error)}"
        ) from None


def check_whole(url: str, path: Path) -> None:
    """SQLite's integrity check of the file, which reads every page and writes none."""
    wait_s = sqlite_store.SQLITE_WAIT_S
    with contextlib.closing(sqlite3.connect(path, timeout=wait_s)) as connection:
        problems = [row[0] for row in connection.execute("PRAGMA integrity_check")]
    if problems != ["ok"]:
        raise damaged(url, f"integrity check: {problems[0]}")


@contextlib.contextmanager
def storage_errors(url: str) -> Iterator[None]:
    """Turn a failure of the storage at `url`, at any call within, into one line."""
    try:
        yield
    except STORAGE_FAILURES as error:
        raise storage_failure(url, error) from None


def first_line(error: BaseException) -> str:
    return (str(error).strip().splitlines() or [type(error).__name__])[0]


def damaged(url: str, detail: str) -> SearchError:
    return SearchError(
        f"the Optuna storage {shown_url(url)} is damaged ({detail}): restore the file from a "
        "copy, then run the search again; or search anew under another search.study (and "
        "search.storage, if set)"
    )


def missing_driver(url: str, error: BaseException) -> SearchError:
    missing = next((e for e in causes(error) if isinstance(e, ImportError) and e.name), None)
    if missing is None:
        return SearchError(f"the Optuna storage {shown_url(url)}: {first_line(error)}")
    module = (missing.name or "").split(".")[0]
    return SearchError(
        f"the Optuna storage {shown_url(url)} needs the database driver {module}, which is "
        f"not installed: pip install {DRIVERS.get(module, module)}, or use an sqlite:/// "
        "storage"
    )


def storage_failure(url: str, error: BaseException) -> SearchError:
    """One line for a failure of the storage at `url`: what is wrong with it, and the fix."""
    chain = causes(error)
    shown = shown_url(url)
    if any(isinstance(e, ImportError) for e in chain):
        return missing_driver(url, error)
    if any(isinstance(e, ArgumentError) for e in chain):  # also an unknown database's name
        return SearchError(
            f"search.storage: {shown} is not a database URL ({first_line(chain[-1])}): give "
            "sqlite:///<file> or another SQLAlchemy URL"
        )
    driver = next((e for e in chain if isinstance(e, sqlite3.Error)), None)
    detail = first_line(chain[-1])
    if driver is None:  # another database: its server
        if any(isinstance(e, (OperationalError, InterfaceError)) for e in chain):
            return SearchError(
                f"the Optuna storage {shown} cannot be reached ({detail}): start its "
                "database server, or correct search.storage"
            )
        return SearchError(f"the Optuna storage {shown} failed ({detail}); run the search again")
    kind = sqlite_store.kind_of(driver)
    detail = first_line(driver)
    path = sqlite_file(url)
    if kind == DAMAGED:
        return damaged(url, detail)
    if kind == LOCKED:
        return SearchError(
            f"the Optuna storage {shown} is locked by another process ({detail}, after "
            f"{sqlite_store.SQLITE_WAIT_S:g} s): let that process finish, or close it (a notebook, "
            "optuna-dashboard, another search of this storage), then run the search again"
        )
    if kind == UNOPENABLE:
        return SearchError(
            f"the Optuna storage {shown} cannot be opened ({detail}): {path} must be a "
            "file (or absent) in a folder that you can read and write; or set search.storage"
        )
    if kind == READ_ONLY:
        return SearchError(
            f"the Optuna storage {shown} cannot be written ({detail}): make {path} and its "
            "folder writable, then run the search again"
        )
    if kind == FULL:
        return SearchError(
            f"the Optuna storage {shown} cannot be written ({detail}): free space on its "
            "disk, then run the search again"
        )
    return SearchError(
        f"the Optuna storage {shown} failed ({detail}): run the search again; if it fails "
        "again, restore the file from a copy"
    )


def batch_numbers(start: int, parallel: int, trials: int) -> range:
    """The trial numbers of the batch that begins at `start`."""
    return range(start, min(start + parallel, trials))


def earlier_batches(study: optuna.Study, start: int) -> list[FrozenTrial]:
    """The trials before `start`, all finished (the search finishes a batch before the
    next begins).
    """
    trials = study.get_trials(deepcopy=False)[:start]
    unfinished = [t.number for t in trials if t.state not in FINISHED]
    assert not unfinished, f"trials {unfinished} of an earlier batch are not finished"
    return trials


def memory_copy(
    trials: list[FrozenTrial],
    direction: str,
    sampler: optuna.samplers.BaseSampler | None = None,
) -> optuna.Study:
    """A study in memory holding `trials`, in `direction`: what a decision may look at."""
    study = optuna.create_study(direction=direction, sampler=sampler)
    study.add_trials(trials)
    return study


def suggest(trial: optuna.Trial, key: str, space: dict[str, Any]) -> Any:
    """One key of the space suggested to `trial`: its fixed value, else a new draw."""
    if "choices" in space:
        return trial.suggest_categorical(key, space["choices"])
    if space.get("int"):
        low, high = int(space["low"]), int(space["high"])
        return trial.suggest_int(key, low, high, log=space.get("log", False))
    return trial.suggest_float(key, space["low"], space["high"], log=space.get("log", False))


def suggest_all(trial: optuna.Trial, search: dict[str, Any]) -> dict[str, Any]:
    """Every key of the space, in sorted order: the draws do not depend on the spec's."""
    return {key: suggest(trial, key, search["space"][key]) for key in sorted(search["space"])}


def draw_params(
    search: dict[str, Any], history: list[FrozenTrial], number: int, direction: str
) -> dict:
    """Trial `number`'s values: TPE, seeded by the trial's number, over `history`, whose
    better values are those of `direction` (the study's).
    """
    spec = with_defaults(search)
    sampler = optuna.samplers.TPESampler(
        seed=spec["sampler_seed"] + number, n_startup_trials=spec["startup_trials"]
    )
    return suggest_all(memory_copy(history, direction, sampler).ask(), search)


def live(study: optuna.Study, trial: FrozenTrial) -> optuna.Trial:
    """The running `trial` as an object to report to and to suggest to. Optuna hands such
    an object only to the process that asked the trial (study.ask); one that resumes the
    search builds it from the trial's storage id, which FrozenTrial keeps as `_trial_id`
    (optuna is pinned: requirements-search.txt).
    """
    return optuna.Trial(study, trial._trial_id)


def start_trial(
    study: optuna.Study, search: dict[str, Any], number: int, start: int
) -> FrozenTrial:
    """Trial `number` of the batch beginning at `start`, asked if it does not exist yet
    (the next number), started if it waits, and with all its values if a kill cut its
    start short. A finished trial is returned as it is.
    """
    trials = study.get_trials(deepcopy=False)
    if number == len(trials):
        params = draw_params(search, earlier_batches(study, start), number, direction_of(study))
        name = trial_name(with_defaults(search)["study"], number)
        study.enqueue_trial(params, user_attrs={RUN_ATTR: name})
        trials = study.get_trials(deepcopy=False)
    assert number < len(trials), f"trial {number} is asked before trial {len(trials)}"
    trial = trials[number]
    if trial.state == TrialState.WAITING:
        study.ask()  # takes the oldest waiting trial: this one
    if trial.state in (TrialState.WAITING, TrialState.RUNNING):
        suggest_all(live(study, trial), search)
    return study.get_trials(deepcopy=False)[number]


def prune_here(
    study: optuna.Study, search: dict[str, Any], trial: FrozenTrial, step: int, start: int
) -> bool:
    """Whether MedianPruner prunes `trial` at `step`, given its values up to that step and
    the trials of the earlier batches, in the study's direction: the trial's best value so
    far worse than the median of theirs at that step.
    """
    spec = with_defaults(search)
    pruner = optuna.pruners.MedianPruner(n_startup_trials=spec["startup_trials"])
    upto = copy.copy(trial)
    upto.intermediate_values = {s: v for s, v in trial.intermediate_values.items() if s <= step}
    return pruner.prune(memory_copy(earlier_batches(study, start), direction_of(study)), upto)
