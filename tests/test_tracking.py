"""MLflow tracking (`tracking: mlflow`, rule `track`, workflow/scripts/track.py): the parts
that read a run's files, its failures, and end to end: every (run, seed) of a tiny sweep as
one MLflow run in the local SQLite store, replaced on a rerun, and listed by `mlflow ui`
in headless Chromium.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from workflow_runs import snakemake, tiny_repo, workflow_env

import track
from make_report import read_json, read_jsonl
from sweep import sweep_runs

# A sweep of one point (the UI test looks for a run of a sweep), run with two seeds.
SWEEP = {"grid": {"sample.temperature": [1.0]}}
(RUN,) = sweep_runs(SWEEP)
SEEDS = [1, 2]
CHROMIUM = Path("/usr/bin/chromium")


# -- the parts that read a run's files -----------------------------------------------


def test_flatten_gives_dotted_keys_and_string_values() -> None:
    config = {"seed": 1, "model": {"n_layer": 2, "rope": {"base": 1e4}}, "eval": {"stride": None}}
    assert track.flatten(config) == {
        "seed": "1",
        "model.n_layer": "2",
        "model.rope.base": "10000.0",
        "eval.stride": "None",
    }


TRAIN_LOG = [
    {
        "kind": "train",
        "step": 1,
        "epoch": 0,
        "loss": 4.2,
        "grad_norm": 2.0,
        "lr": 1e-4,
        "chars_per_s": 900.0,
    },
    {
        "kind": "train",
        "step": 2,
        "epoch": 0,
        "loss": 3.9,
        "grad_norm": 1.5,
        "lr": 2e-4,
        "chars_per_s": 950.0,
    },
    {"kind": "val", "step": 2, "epoch": 1, "val_loss": 3.7, "bits_per_char": 5.3, "time": 1.7e9},
]


def test_step_series_of_a_train_log(tmp_path: Path) -> None:
    log = tmp_path / "train_log.jsonl"
    log.write_text("".join(json.dumps(record) + "\n" for record in TRAIN_LOG), encoding="utf-8")
    assert track.step_series(read_jsonl(log)) == {
        "train/loss": [(1, 4.2), (2, 3.9)],
        "train/lr": [(1, 1e-4), (2, 2e-4)],
        "val/loss": [(2, 3.7)],
    }


def test_final_metrics_take_figures_numeric_costs_and_the_gpu_peak_where_there_is_one() -> None:
    metrics = {"figures": [{"name": "bits_per_char", "value": 1.6}]}
    costs = [
        {
            "stage": "train",
            "device": "cpu",
            "wall_time_s": 9.5,
            "peak_host_rss_bytes": 10,
            "torch_max_memory_allocated_bytes": None,
        },
        {"stage": "sample", "device": "cpu", "wall_time_s": 1.0, "chars_per_s": 300.0},
    ]
    expected = {
        "eval/bits_per_char": 1.6,
        "cost/train/wall_time_s": 9.5,
        "cost/train/peak_host_rss_bytes": 10,
        "cost/sample/wall_time_s": 1.0,
        "cost/sample/chars_per_s": 300.0,
    }
    no_gpu = {"gpu_available": False, "reason": "no NVML", "peak_job_memory_bytes": None}
    assert track.final_metrics(metrics, costs, no_gpu) == expected
    gpu = {"gpu_available": True, "peak_job_memory_bytes": 2**30}
    peak = {"gpu/train_peak_job_memory_bytes": 2**30}
    assert track.final_metrics(metrics, costs, gpu) == expected | peak


# -- failures ------------------------------------------------------------------------


def fake_run(folder: Path) -> tuple[SimpleNamespace, SimpleNamespace, SimpleNamespace]:
    """The rule's inputs, outputs and params for a small made-up (run, seed) in `folder`."""
    files = {
        "resolved": {"config": {"seed": 1, "model": {"n_layer": 1}}},
        "metrics": {"figures": [{"name": "bits_per_char", "value": 3.2}]},
        "monitor": {"gpu_available": False, "reason": "no NVML"},
        "train_code": {"fingerprint": "f" * 64},
        "cost": {"stage": "train", "wall_time_s": 1.0},
    }
    paths = {name: folder / f"{name}.json" for name in files}
    for name, record in files.items():
        paths[name].write_text(json.dumps(record), encoding="utf-8")
    (folder / "train_log.jsonl").write_text(json.dumps(TRAIN_LOG[0]) + "\n", encoding="utf-8")
    (folder / "ml_res.md").write_text("# Implementation Report\n", encoding="utf-8")
    (folder / "samples.txt").write_text("ROMEO:\n", encoding="utf-8")
    (folder / "plots").mkdir()
    inputs = SimpleNamespace(
        **{name: str(path) for name, path in paths.items() if name != "cost"},
        costs=[str(paths["cost"])],
        train_log=str(folder / "train_log.jsonl"),
        report=str(folder / "ml_res.md"),
        shown=[str(folder / "samples.txt")],  # the outputs the plan shows (its Report)
        plots=str(folder / "plots"),
    )
    outputs = SimpleNamespace(tracking=str(folder / "tracking.json"))
    params = SimpleNamespace(
        run=RUN,
        seed="1",
        experiment="chargpt",
        store=str(folder / "results" / "mlflow.db"),
        artifacts=str(folder / "results" / "mlartifacts"),
        container="docker://example/chargpt:0",
        container_used=False,
    )
    return inputs, outputs, params


def test_an_unreachable_server_fails_the_job_in_one_line_and_writes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in track.MLFLOW_ENV.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    server = "http://127.0.0.1:9"  # the discard port: nothing listens
    monkeypatch.setenv("MLFLOW_TRACKING_URI", server)
    inputs, outputs, params = fake_run(tmp_path)
    with pytest.raises(SystemExit) as stopped:
        track.main(inputs, outputs, params)
    message = str(stopped.value)
    assert message.startswith(f"error: MLflow tracking at {server} failed")
    assert "MLFLOW_TRACKING_URI" in message and "\n" not in message
    assert not Path(outputs.tracking).exists()


def test_without_mlflow_the_error_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "mlflow", None)  # `import mlflow` raises ImportError
    with pytest.raises(SystemExit, match=r"pip install -r requirements-tracking\.txt"):
        track.import_mlflow()


def test_a_server_without_its_database_driver_says_what_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in track.MLFLOW_ENV.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setitem(sys.modules, "psycopg2", None)  # `import psycopg2` raises ImportError
    server = "postgresql://mlflow@127.0.0.1:9/mlflow"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", server)
    inputs, outputs, params = fake_run(tmp_path)
    with pytest.raises(SystemExit) as stopped:
        track.main(inputs, outputs, params)
    assert str(stopped.value) == (
        f"error: MLflow tracking at {server} needs the module psycopg2, which is not installed: "
        "pip install psycopg2-binary, then run snakemake again; the training results are "
        "untouched"
    )
    assert not Path(outputs.tracking).exists()


# -- the local store's failures, each in a job of its own as Snakemake runs it -------------

# main() in a process of its own (SQLite's locks are a process's), waiting `wait_s` for a lock.
JOB = """
import json, sys, types
import sqlite_store, track
sqlite_store.SQLITE_WAIT_S = float(sys.argv[1])
track.main(*(types.SimpleNamespace(**fields) for fields in json.loads(sys.argv[2])))
"""
# A process that holds a lock on the SQLite file argv[1] until its stdin closes: a writer's
# (exclusive), or a reader's (shared: a read in a transaction left open, as a notebook does).
HOLD = """
import sqlite3, sys
connection = sqlite3.connect(sys.argv[1], isolation_level=None)
connection.execute("BEGIN EXCLUSIVE" if sys.argv[2] == "writer" else "BEGIN")
connection.execute("SELECT count(*) FROM sqlite_master").fetchall()
print("held", flush=True)
sys.stdin.read()
connection.rollback()
"""


def track_job(
    inputs: SimpleNamespace, outputs: SimpleNamespace, params: SimpleNamespace, wait_s: float = 1
) -> subprocess.CompletedProcess[str]:
    """The track job of a fake_run, into its local store, as the rule runs it."""
    env = {**os.environ, "PYTHONPATH": str(Path(track.__file__).parent)}
    env.pop("MLFLOW_TRACKING_URI", None)
    fields = json.dumps([vars(inputs), vars(outputs), vars(params)])
    command = [sys.executable, "-c", JOB, str(wait_s), fields]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)


@contextlib.contextmanager
def lock_held(store: Path, kind: str) -> Iterator[None]:
    """Another process holding a `kind` ("writer" or "reader") lock on `store` in the block."""
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(store), kind],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdin and holder.stdout
    try:
        assert holder.stdout.readline() == "held\n"
        yield
    finally:
        holder.stdin.close()  # the holder rolls back and ends
        holder.wait(timeout=60)
    assert holder.returncode == 0


def runs_by_key(store: Path) -> dict[str, list[Any]]:
    """Every MLflow run in `store`, deleted ones too, by key."""
    mlflow = track.import_mlflow()
    client = mlflow.MlflowClient(f"sqlite:///{store}")
    experiment = client.get_experiment_by_name("chargpt").experiment_id
    everything = mlflow.entities.ViewType.ALL
    by_key: dict[str, list[Any]] = {}
    for run in client.search_runs([experiment], run_view_type=everything):
        by_key.setdefault(run.data.tags[track.KEY_TAG], []).append(run)
    return by_key


def the_error(job: subprocess.CompletedProcess[str]) -> str:
    """The job's one line on stderr, after it failed."""
    assert job.returncode == 1, job.stderr
    (line,) = job.stderr.splitlines()  # no MLflow log lines, no traceback
    return line


def seed_of(
    inputs: SimpleNamespace, outputs: SimpleNamespace, params: SimpleNamespace, seed: int
) -> tuple[SimpleNamespace, SimpleNamespace, SimpleNamespace]:
    """The same fake run as another seed: its own key and tracking.json."""
    tracking = Path(outputs.tracking).with_name(f"tracking{seed}.json")
    return (
        inputs,
        SimpleNamespace(tracking=str(tracking)),
        SimpleNamespace(**{**vars(params), "seed": str(seed)}),
    )


@pytest.mark.parametrize("holder", ["writer", "reader"])
def test_a_store_locked_by_another_process_stops_the_job_in_one_line_then_resumes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, holder: str
) -> None:
    """Another process holds a lock on the store (a writer's, or a reader's left open): the
    job waits its bounded time, then stops with one line and leaves the store as it was;
    with the lock gone the same job logs its run, and the store holds each run once.
    """
    job = fake_run(tmp_path)
    other = seed_of(*job, seed=2)  # a run tracked before
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    track.main(*other)
    store = Path(job[2].store)
    before = store.read_bytes()
    with lock_held(store, holder):
        locked = track_job(*job)
    assert the_error(locked) == (
        f"error: the MLflow store {store} is locked by another process (database is locked; "
        "waited 1 s): let that process finish, or close it (an sqlite3 shell, a notebook, "
        "mlflow ui), then run snakemake again; the training results are untouched"
    )
    assert store.read_bytes() == before and not Path(job[1].tracking).exists()
    track.main(*job)  # the same job, the lock gone
    runs = runs_by_key(store)
    assert sorted(runs) == [f"{RUN}/seed1", f"{RUN}/seed2"]
    assert all(len(logged) == 1 for logged in runs.values())  # none left over or deleted
    (seed1,) = runs[f"{RUN}/seed1"]
    assert seed1.info.run_id == read_json(Path(job[1].tracking))["run_id"]
    assert seed1.info.status == "FINISHED" and seed1.data.metrics["eval/bits_per_char"] == 3.2
    (seed2,) = runs[f"{RUN}/seed2"]
    assert seed2.info.run_id == read_json(Path(other[1].tracking))["run_id"]


def overwrite_page(store: Path, page: int) -> None:
    """SQLite page `page` (from 1) of `store`, every byte 0xff."""
    size = 4096  # MLflow's stores: SQLite's default page size
    with store.open("r+b") as file:
        file.seek((page - 1) * size)
        file.write(b"\xff" * size)


@pytest.mark.parametrize("damage", ["not a database", "a page overwritten"])
def test_a_damaged_store_stops_the_job_in_one_line_and_is_left_as_it_was(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, damage: str
) -> None:
    job = fake_run(tmp_path)
    store = Path(job[2].store)
    if damage == "not a database":
        store.parent.mkdir()
        store.write_bytes(b"\x00garbage\xff" * 1000)
    else:  # a store with a run, then one of its pages
        monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
        track.main(*seed_of(*job, seed=2))
        overwrite_page(store, 2)
    before = store.read_bytes()
    line = the_error(track_job(*job))
    assert line.startswith(f"error: the MLflow store {store} is damaged (")
    assert line.endswith(
        f"): restore the file from a copy and run snakemake again, or move it aside (mv {store} "
        f"{store}.damaged) and run snakemake --forcerun track to log every run into a new "
        "store; the training results are untouched"
    )
    assert store.read_bytes() == before and not Path(job[1].tracking).exists()


def test_a_store_whose_folder_cannot_be_made_stops_the_job_in_one_line(tmp_path: Path) -> None:
    job = fake_run(tmp_path)
    in_the_way = tmp_path / "results"
    in_the_way.write_text("a file where the store's folder goes\n", encoding="utf-8")
    store = Path(job[2].store)
    assert the_error(track_job(*job)) == (
        f"error: the MLflow store {store} cannot be made: its folder {in_the_way} cannot be "
        "created (it is a file); make it a folder that you can write, or set "
        "MLFLOW_TRACKING_URI to another store, then run snakemake again; the training "
        "results are untouched"
    )
    assert in_the_way.read_text(encoding="utf-8") == "a file where the store's folder goes\n"


def test_an_empty_store_file_is_a_new_store(tmp_path: Path) -> None:
    job = fake_run(tmp_path)
    store = Path(job[2].store)
    store.parent.mkdir()
    store.touch()
    assert track_job(*job).returncode == 0
    (only,) = runs_by_key(store)[f"{RUN}/seed1"]
    assert only.info.run_id == read_json(Path(job[1].tracking))["run_id"]


# -- end to end ----------------------------------------------------------------------


def local_store_env() -> dict[str, str]:
    """A workflow environment that logs to the copy's own store, whatever this shell's
    MLFLOW_TRACKING_URI says.
    """
    env = workflow_env()
    env.pop("MLFLOW_TRACKING_URI", None)
    return env


@pytest.fixture(scope="module")
def tracked_workflow(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A repository copy in which the workflow has run a one-point sweep × 2 seeds of the
    tiny model with `tracking: mlflow`. The tests below hold before and after the rerun one
    of them makes, so their order does not matter.
    """
    destination = tmp_path_factory.mktemp("tracking") / "repo"
    repo = tiny_repo(destination, runs={}, sweep=SWEEP, seeds=SEEDS, tracking="mlflow")
    snakemake(repo, "--cores", "2", env=local_store_env())
    return repo


def run_dir(repo: Path, seed: int) -> Path:
    return repo / "results" / RUN / f"seed{seed}"


def tracked(repo: Path, seed: int) -> dict[str, str]:
    """What the seed's track job wrote: its MLflow run id, experiment and tracking URI."""
    return read_json(run_dir(repo, seed) / "tracking.json")


def store_uri(repo: Path) -> str:
    return f"sqlite:///{(repo / 'results' / 'mlflow.db').resolve()}"


@pytest.fixture(scope="module")
def client(tracked_workflow: Path) -> Any:
    """An MlflowClient of the copy's store (imported here: collecting this module needs
    no mlflow).
    """
    mlflow = track.import_mlflow()
    return mlflow.MlflowClient(store_uri(tracked_workflow))


def active_runs(client: Any, experiment: str, key: str) -> list[Any]:
    return client.search_runs([experiment], f"tags.`{track.KEY_TAG}` = '{key}'")


def history(client: Any, run_id: str, name: str) -> list[tuple[int, float]]:
    return sorted((m.step, m.value) for m in client.get_metric_history(run_id, name))


@pytest.mark.slow
@pytest.mark.parametrize("seed", SEEDS)
def test_every_run_and_seed_is_one_mlflow_run_with_its_records(
    tracked_workflow: Path, client: Any, seed: int, tmp_path: Path
) -> None:
    repo, folder = tracked_workflow, run_dir(tracked_workflow, seed)
    record = tracked(repo, seed)
    assert record["experiment"] == "chargpt" and record["tracking_uri"] == store_uri(repo)
    key = f"{RUN}/seed{seed}"
    (only,) = active_runs(client, record["experiment_id"], key)
    assert only.info.run_id == record["run_id"]
    run = client.get_run(record["run_id"])
    assert run.info.run_name == key and run.info.status == "FINISHED"
    # The resolved configuration, every key, dotted.
    resolved = read_json(folder / "config" / "resolved.json")["config"]
    assert run.data.params == track.flatten(resolved)
    assert run.data.params["seed"] == str(seed) and run.data.params["model.d_model"] == "32"
    # The training log as step series.
    log = read_jsonl(folder / "train_log.jsonl")
    train = [r for r in log if r["kind"] == "train"]
    assert len(train) > 100
    assert history(client, run.info.run_id, "train/loss") == [(r["step"], r["loss"]) for r in train]
    assert history(client, run.info.run_id, "train/lr") == [(r["step"], r["lr"]) for r in train]
    val = [(r["step"], r["val_loss"]) for r in log if r["kind"] == "val"]
    assert val and history(client, run.info.run_id, "val/loss") == val
    # The final figures, each stage's cost, no GPU peak without a GPU.
    metrics = run.data.metrics
    for figure in read_json(folder / "metrics.json")["figures"]:
        assert metrics[f"eval/{figure['name']}"] == figure["value"]
    for stage in ("train", "evaluate", "sample"):
        cost = read_json(folder / "cost" / f"{stage}.json")
        assert metrics[f"cost/{stage}/wall_time_s"] == cost["wall_time_s"]
    assert "cost/prepare/wall_time_s" in metrics
    monitor = read_json(folder / "monitor" / "train.json")
    assert ("gpu/train_peak_job_memory_bytes" in metrics) == monitor["gpu_available"]
    # Where it came from: the copy is no git checkout, and ran natively.
    tags = run.data.tags
    fingerprint = read_json(repo / "results" / "code" / "train.json")["fingerprint"]
    assert {tags[name] for name in ("chargpt.run", "chargpt.seed")} == {RUN, str(seed)}
    assert tags["chargpt.train_code"] == fingerprint
    assert tags["chargpt.git_commit"].startswith("unknown")
    assert tags["chargpt.git_uncommitted_changes"] == "unknown"
    assert tags["chargpt.container"].startswith("docker://")
    assert tags["chargpt.ran_in"].startswith("not used (native run")
    # The report, the plots, the sample: the report's own bytes.
    assert {a.path for a in client.list_artifacts(run.info.run_id)} == {
        "ml_res.md",
        "plots",
        "samples.txt",
    }
    plots = [a.path for a in client.list_artifacts(run.info.run_id, "plots")]
    assert plots == [f"plots/{png.name}" for png in sorted((folder / "plots").glob("*.png"))]
    copy = Path(client.download_artifacts(run.info.run_id, "ml_res.md", str(tmp_path)))
    assert copy.read_bytes() == (folder / "ml_res.md").read_bytes()


@pytest.mark.slow
def test_a_rerun_replaces_its_mlflow_run(tracked_workflow: Path, client: Any) -> None:
    """Forcing seed 2's report again reruns its track job: a new MLflow run replaces the
    old one (deleted), and seed 1's stays as it was.
    """
    repo = tracked_workflow
    before = {seed: tracked(repo, seed)["run_id"] for seed in SEEDS}
    report = run_dir(repo, 2) / "ml_res.md"
    snakemake(
        repo, "--cores", "2", "--forcerun", str(report.relative_to(repo)), env=local_store_env()
    )
    after = {seed: tracked(repo, seed)["run_id"] for seed in SEEDS}
    assert after[1] == before[1] and after[2] != before[2]
    experiment = tracked(repo, 2)["experiment_id"]
    for seed in SEEDS:
        (only,) = active_runs(client, experiment, f"{RUN}/seed{seed}")
        assert only.info.run_id == after[seed]
    assert client.get_run(before[2]).info.lifecycle_stage == "deleted"
    assert len(client.search_runs([experiment])) == len(SEEDS)


# -- the MLflow UI ---------------------------------------------------------------------


def chromium() -> Path:
    """Headless Chromium; outside CI its absence skips the test, in CI it fails it."""
    if not CHROMIUM.is_file():
        if os.environ.get("CI") == "true":
            pytest.fail(f"{CHROMIUM} is missing: .ci/run installs it (apt-get install chromium)")
        pytest.skip(f"{CHROMIUM} is missing (apt-get install chromium) to open the MLflow UI")
    return CHROMIUM


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def answers(url: str) -> bool:
    """Whether `url` answers 200 OK."""
    try:
        with urllib.request.urlopen(url, timeout=2) as answer:
            return answer.status == 200
    except OSError:
        return False


@contextlib.contextmanager
def mlflow_ui(uri: str, log: Path) -> Iterator[str]:
    """`mlflow ui` on the store `uri` and a free local port, until it answers; its address.
    Stopped, with every process it started, on the way out.
    """
    port = free_port()
    command = shutil.which("mlflow", path=str(Path(sys.executable).parent))
    assert command, "mlflow is installed from requirements-tracking.txt"
    # One worker and no background job runners: light on a 2-core machine.
    env = {**os.environ, **track.MLFLOW_ENV, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    args = ["--backend-store-uri", uri, "--host", "127.0.0.1", "--port", str(port)]
    with log.open("w") as out:
        server = subprocess.Popen(
            [command, "ui", *args, "--workers", "1"],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
    address = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while not answers(f"{address}/health"):
            assert server.poll() is None, f"mlflow ui ended:\n{log.read_text()}"
            assert time.monotonic() < deadline, f"mlflow ui did not answer:\n{log.read_text()}"
            time.sleep(0.5)
        yield address
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            server.wait(timeout=20)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(server.pid, signal.SIGKILL)  # whatever outlived it
        server.wait()


def rendered(browser: Path, url: str, profile: Path) -> str:
    """The DOM of `url` after its scripts ran, from headless Chromium (no network beyond
    the page).
    """
    result = subprocess.run(
        [
            str(browser),
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={profile}",
            "--virtual-time-budget=20000",
            "--dump-dom",
            url,
        ],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.mark.slow
def test_mlflow_ui_lists_the_runs_and_shows_their_metrics(
    tracked_workflow: Path, tmp_path: Path
) -> None:
    browser = chromium()
    record = tracked(tracked_workflow, SEEDS[0])
    runs = f"#/experiments/{record['experiment_id']}/runs"
    bits = next(
        figure["value"]
        for figure in read_json(run_dir(tracked_workflow, SEEDS[0]) / "metrics.json")["figures"]
        if figure["name"] == "bits_per_char"
    )
    with mlflow_ui(record["tracking_uri"], tmp_path / "mlflow-ui.log") as address:
        listed = rendered(browser, f"{address}/{runs}", tmp_path / "profile")
        one = rendered(browser, f"{address}/{runs}/{record['run_id']}", tmp_path / "profile")
    for seed in SEEDS:
        assert f"{RUN}/seed{seed}" in listed, "the runs page lists every (run, seed)"
    assert f"{RUN}/seed{SEEDS[0]}" in one
    assert "eval/bits_per_char" in one and repr(bits) in one
