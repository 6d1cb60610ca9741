"""Log one (run, seed) to MLflow: its resolved configuration as params, its training curves
as step series, its final metrics, stage costs and NVML peak, tags that say where it came
from, and its report, plots and sample as artefacts.

A Snakemake script (rule `track`, on with `tracking: mlflow` in config/config.yaml). It
reads the files its rule gives it in `snakemake.input` and writes, last,
`snakemake.output.tracking`: the MLflow run id, its experiment's name and id, the tracking
URI. The store is the SQLite file `params.store` with artefacts in `params.artifacts`,
unless MLFLOW_TRACKING_URI names another (a team server). Each MLflow run carries the tag
KEY_TAG, "<run>/seed<seed>": a rerun of a (run, seed) logs a new MLflow run, then deletes
the older ones with its key.

An SQLite store is checked before MLflow touches it (check_sqlite_store): its folder made,
a lock that another process holds on it waited for SQLITE_WAIT_S (sqlite_store.py, which
the search's storage shares), then the file checked whole; it is only read. A store that
fails, then or while logging, is one line that names it, says what is wrong with it
(locked, damaged, cannot be made or opened or written, its server unreachable, its driver
missing) and the fix, which never removes a logged run.

mlflow is imported here alone (requirements-tracking.txt): the rest of the workflow runs
without it.

No `from __future__` import: Snakemake puts its preamble above the script's first line.
"""

import contextlib
import fcntl
import json
import logging
import os
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.io import write_text

import sqlite_store
from make_report import read_json, read_jsonl
from report_sections import container_image, git_state
from sqlite_store import DAMAGED, DRIVERS, FULL, LOCKED, READ_ONLY, UNOPENABLE

KEY_TAG = "chargpt.key"
# (kind, field) of a train_log.jsonl record -> the MLflow metric that follows it by step.
SERIES = {
    ("train", "loss"): "train/loss",
    ("train", "lr"): "train/lr",
    ("val", "val_loss"): "val/loss",
}
# MLflow's defaults, unless the environment sets them: no telemetry, no INFO lines, and an
# unreachable server fails the job in seconds (2 retries), not minutes (7).
MLFLOW_ENV = {
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "DO_NOT_TRACK": "true",
    "MLFLOW_LOGGING_LEVEL": "WARNING",
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
}
SQLITE = "sqlite:///"
UNTOUCHED = "the training results are untouched"


# -- what is logged ------------------------------------------------------------------


def flatten(config: dict[str, Any], prefix: str = "") -> dict[str, str]:
    """Nested sections as dotted keys ({"net": {"width": 2}} -> {"net.width": "2"})."""
    flat = {}
    for key, value in config.items():
        if isinstance(value, dict):
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = str(value)
    return flat


def step_series(log: list[dict[str, Any]]) -> dict[str, list[tuple[int, float]]]:
    """The SERIES of a training log: (step, value) pairs, in the log's order."""
    series: dict[str, list[tuple[int, float]]] = {name: [] for name in SERIES.values()}
    for record in log:
        for (kind, field), name in SERIES.items():
            if record["kind"] == kind:
                series[name].append((record["step"], record[field]))
    return series


def is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def final_metrics(
    metrics: dict[str, Any], costs: list[dict[str, Any]], monitor: dict[str, Any]
) -> dict[str, float]:
    """metrics.json's figures (`eval/<name>`), each stage's numeric cost figures
    (`cost/<stage>/<field>`) and, where NVML saw a GPU, training's peak job memory.
    """
    final = {f"eval/{figure['name']}": figure["value"] for figure in metrics["figures"]}
    for cost in costs:
        final.update({f"cost/{cost['stage']}/{k}": v for k, v in cost.items() if is_number(v)})
    peak = monitor.get("peak_job_memory_bytes")
    if monitor.get("gpu_available") and peak is not None:
        final["gpu/train_peak_job_memory_bytes"] = peak
    return final


def run_tags(params: Any, train_code: dict[str, Any]) -> dict[str, str]:
    """Where the run came from: its key, the commit and whether the tree had changes, the
    image, the training code's fingerprint.
    """
    commit, dirty = git_state()
    return {
        KEY_TAG: f"{params.run}/seed{params.seed}",
        "chargpt.run": params.run,
        "chargpt.seed": str(params.seed),
        "chargpt.git_commit": commit,
        "chargpt.git_uncommitted_changes": dirty,
        "chargpt.container": params.container,
        "chargpt.ran_in": container_image(params),
        "chargpt.train_code": train_code["fingerprint"],
    }


@dataclass(frozen=True)
class Record:
    """What one (run, seed) logs, read from its files before MLflow is touched."""

    tags: dict[str, str]
    params: dict[str, str]
    metrics: list[tuple[str, float, int]]  # (name, value, step)


def read_record(inputs: Any, params: Any) -> Record:
    """The record of the rule's input files (the final metrics at step 0)."""
    series = step_series(read_jsonl(inputs.train_log))
    finals = final_metrics(
        read_json(inputs.metrics),
        [read_json(path) for path in inputs.costs],
        read_json(inputs.monitor),
    )
    return Record(
        tags=run_tags(params, read_json(inputs.train_code)),
        params=flatten(read_json(inputs.resolved)["config"]),
        metrics=[(name, value, step) for name, points in series.items() for step, value in points]
        + [(name, value, 0) for name, value in finals.items()],
    )


def store_location(params: Any) -> tuple[str, str | None]:
    """The tracking URI, and where a new experiment keeps its artefacts: MLFLOW_TRACKING_URI
    and the server's own choice (None), else the SQLite file `params.store` and the folder
    `params.artifacts` (absolute URIs).
    """
    server = os.environ.get("MLFLOW_TRACKING_URI")
    if server:
        return server, None
    local = Path(params.store).resolve()
    return f"sqlite:///{local}", Path(params.artifacts).resolve().as_uri()


# -- the store -----------------------------------------------------------------------


def sqlite_file(uri: str) -> Path | None:
    """The file of an SQLite tracking URI (sqlite:///<path>); None for a server."""
    if not uri.startswith(SQLITE):
        return None
    path = uri.removeprefix(SQLITE).split("?")[0]
    return None if path in ("", ":memory:") else Path(path)


def make_store_folder(path: Path) -> None:
    """The folder of the SQLite store `path`, made if it is missing."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        in_the_way = next((p for p in path.parents if p.exists() and not p.is_dir()), None)
        reason = error.strerror
        if in_the_way is not None:
            reason = "it is a file" if in_the_way == path.parent else f"{in_the_way} is a file"
        raise SystemExit(
            f"error: the MLflow store {path} cannot be made: its folder {path.parent} cannot "
            f"be created ({reason}); make it a folder that you can write, or set "
            f"MLFLOW_TRACKING_URI to another store, then run snakemake again; {UNTOUCHED}"
        ) from None


def check_sqlite_store(path: Path) -> None:
    """Before MLflow writes to the SQLite store `path`: wait up to SQLITE_WAIT_S for every
    other process to let go of it (an exclusive lock), then check it whole (SQLite's quick
    check reads every page). Nothing is written; a missing file is a new store, made by
    MLflow.
    """
    if not path.exists():
        return
    wait_s = sqlite_store.SQLITE_WAIT_S
    try:
        with contextlib.closing(
            sqlite3.connect(
                f"{path.resolve().as_uri()}?mode=rw",  # never creates the file
                uri=True,
                timeout=wait_s,
                isolation_level=None,  # transactions as written below
            )
        ) as connection:
            connection.execute("BEGIN EXCLUSIVE")  # closing the connection rolls it back
            problems = [row[0] for row in connection.execute("PRAGMA quick_check")]
    except sqlite3.Error as error:
        raise sqlite_failure(path, error, f"{error}; waited {wait_s:g} s") from None
    if problems != ["ok"]:  # the first problem, after its "*** in database main ***" line
        raise damaged(path, f"quick check: {one_line(problems[0].split('***')[-1])}")


def damaged(path: Path, detail: str) -> SystemExit:
    return SystemExit(
        f"error: the MLflow store {path} is damaged ({detail}): restore the file from a copy "
        f"and run snakemake again, or move it aside (mv {path} {path}.damaged) and run "
        f"snakemake --forcerun track to log every run into a new store; {UNTOUCHED}"
    )


def sqlite_failure(path: Path, error: sqlite3.Error, locked_detail: str = "") -> SystemExit:
    """One line for the SQLite error `error` of the store `path`: what is wrong, the fix."""
    kind = sqlite_store.kind_of(error)
    detail = one_line(error)
    store = f"error: the MLflow store {path}"
    if kind == DAMAGED:
        return damaged(path, detail)
    if kind == LOCKED:
        return SystemExit(
            f"{store} is locked by another process ({locked_detail or detail}): let that "
            "process finish, or close it (an sqlite3 shell, a notebook, mlflow ui), then run "
            f"snakemake again; {UNTOUCHED}"
        )
    if kind == UNOPENABLE:
        return SystemExit(
            f"{store} cannot be opened ({detail}): it must be an SQLite file, or absent, in a "
            f"folder that you can write; fix that, then run snakemake again; {UNTOUCHED}"
        )
    if kind == READ_ONLY:
        return SystemExit(
            f"{store} cannot be written ({detail}): make it and its folder writable, then run "
            f"snakemake again; {UNTOUCHED}"
        )
    if kind == FULL:
        return SystemExit(
            f"{store} cannot be written ({detail}): free space on its disk, then run "
            f"snakemake again; {UNTOUCHED}"
        )
    return SystemExit(
        f"{store} failed ({detail}): run snakemake again; if it fails again, check the file "
        f"(sqlite3 {path} 'PRAGMA integrity_check'); {UNTOUCHED}"
    )


def one_line(what: BaseException | str) -> str:
    """`what` on one line: its words, each run of white space one space."""
    return " ".join(str(what).split()) or repr(what)


def store_failure(uri: str, error: BaseException) -> SystemExit:
    """One line for a failure of the store at `uri` while MLflow logs to it."""
    path = sqlite_file(uri)
    if isinstance(error, ImportError) and error.name:
        module = error.name.split(".")[0]
        return SystemExit(
            f"error: MLflow tracking at {uri} needs the module {module}, which is not "
            f"installed: pip install {DRIVERS.get(module, module)}, then run snakemake "
            f"again; {UNTOUCHED}"
        )
    if path is None:
        return SystemExit(
            f"error: MLflow tracking at {uri} failed: {one_line(error)}; {UNTOUCHED}; set "
            "MLFLOW_TRACKING_URI to a reachable server, or unset it for the local store, and "
            "run snakemake again"
        )
    cause = sqlite_store.sqlite_cause(error)
    if cause is not None:
        return sqlite_failure(path, cause)
    return SystemExit(
        f"error: MLflow tracking into the store {path} failed ({one_line(error)}): run "
        f"snakemake again; {UNTOUCHED}"
    )


# -- MLflow --------------------------------------------------------------------------


def import_mlflow() -> Any:
    """The mlflow package, configured by MLFLOW_ENV; without it, one line on what to install."""
    for name, value in MLFLOW_ENV.items():
        os.environ.setdefault(name, value)
    try:
        import mlflow
    except ImportError:
        raise SystemExit(
            "error: `tracking: mlflow` needs the mlflow package: "
            "pip install -r requirements-tracking.txt"
        ) from None
    # Its ERROR line and traceback on each failed database call, and its warnings while it
    # retries: the failure reaches main(), which says it in one line.
    logging.getLogger("mlflow.store.db.utils").setLevel(logging.CRITICAL)
    return mlflow


def store_failures() -> tuple[type[BaseException], ...]:
    """What a store raises when it fails (SQLAlchemy comes with mlflow)."""
    from mlflow.exceptions import MlflowException
    from sqlalchemy.exc import SQLAlchemyError

    return (MlflowException, SQLAlchemyError, sqlite3.Error, OSError, ImportError)


@contextlib.contextmanager
def one_job_at_a_time(lock: Path) -> Iterator[None]:
    """Hold an exclusive lock on `lock`: SQLite takes one writer at a time, and the first
    job creates the store's tables and the experiment.
    """
    lock.parent.mkdir(parents=True, exist_ok=True)
    with lock.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def experiment_id(client: Any, name: str, artifacts: str | None) -> str:
    """The experiment `name`, created (artefacts under `artifacts`) if it is new."""
    found = client.get_experiment_by_name(name)
    if found is not None:
        return found.experiment_id
    return client.create_experiment(name, artifact_location=artifacts)


def log_run(mlflow: Any, client: Any, experiment: str, record: Record, inputs: Any) -> str:
    """A new MLflow run with the record and the artefacts; then the older runs of its key
    go. If logging fails, the new run goes instead and the store is as it was.
    """
    key = record.tags[KEY_TAG]
    older = client.search_runs([experiment], f"tags.`{KEY_TAG}` = '{key}'")
    run_id = client.create_run(experiment, run_name=key, tags=record.tags).info.run_id
    now = int(time.time() * 1000)
    try:
        client.log_batch(
            run_id,
            metrics=[
                mlflow.entities.Metric(name, value, now, step)
                for name, value, step in record.metrics
            ],
            params=[mlflow.entities.Param(k, v) for k, v in record.params.items()],
        )
        client.log_artifact(run_id, inputs.report)
        for shown in inputs.shown:  # the texts and pictures the plan shows
            client.log_artifact(run_id, shown)
        for plot in sorted(Path(inputs.plots).glob("*.png")):  # not Snakemake's marker
            client.log_artifact(run_id, str(plot), "plots")
    except (mlflow.exceptions.MlflowException, OSError):
        client.delete_run(run_id)
        raise
    client.set_terminated(run_id)
    for run in older:
        client.delete_run(run.info.run_id)
    return run_id


def main(inputs: Any, outputs: Any, params: Any) -> dict[str, str]:
    """Log the (run, seed), then write outputs.tracking; returns what it wrote."""
    mlflow = import_mlflow()
    record = read_record(inputs, params)
    uri, artifacts = store_location(params)
    local = sqlite_file(uri)
    if local is not None:
        make_store_folder(local)
    try:
        with one_job_at_a_time(Path(params.store).with_suffix(".lock")):
            if local is not None:
                check_sqlite_store(local)
            client = mlflow.MlflowClient(uri)
            experiment = experiment_id(client, params.experiment, artifacts)
            run_id = log_run(mlflow, client, experiment, record, inputs)
    except store_failures() as error:
        raise store_failure(uri, error) from None
    tracked = {
        "run_id": run_id,
        "experiment": params.experiment,
        "experiment_id": experiment,
        "tracking_uri": uri,
    }
    write_text(Path(outputs.tracking), json.dumps(tracked, indent=2) + "\n")
    return tracked


if "snakemake" in globals():
    tracked = main(snakemake.input, snakemake.output, snakemake.params)  # noqa: F821
    write_text(Path(snakemake.log[0]), f"logged MLflow run {tracked['run_id']}\n")  # noqa: F821
