"""The Snakemake workflow end to end on the real text: a sweep of runs × seeds, its summary
and reports, reruns derived from what each stage reads, its config checks, its failure on
unreachable data, and the Apptainer command it builds.
"""

from __future__ import annotations

import ast
import hashlib
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from workflow_runs import (
    CONSOLE,
    FAKE_GPUS,
    REPO,
    SHARED_DATA,
    SWEEP,
    configure,
    copy_repo,
    data_folder,
    run_and_kill_trainer,
    snakemake,
    tiny_repo,
    workflow_env,
)

SECTIONS = [
    "# Implementation Report",
    "## Components Implemented",
    "## Quick Validation Results",
    "## Deviations from Plan",
    "## Known Issues",
]
QUICK_FIELDS = ["Epochs", "Final training loss", "Validation metrics", "Runtime", "GPU memory peak"]
PAIRS = [(run, seed) for run in SWEEP["runs"] for seed in SWEEP["seeds"]]


def run_dir(repo: Path, run: str, seed: int) -> Path:
    return repo / "results" / run / f"seed{seed}"


def table_rows(markdown: str) -> list[list[str]]:
    """Cells of every GitHub-style table row, separator rows left out."""
    rows = []
    for line in markdown.splitlines():
        if line.startswith("|") and not re.fullmatch(r"\|[\s|:-]+\|", line):
            rows.append([cell.strip() for cell in re.split(r"(?<!\\)\|", line)[1:-1]])
    return rows


@pytest.mark.slow
@pytest.mark.parametrize(("run", "seed"), PAIRS)
def test_every_run_and_seed_has_a_full_report(finished_workflow: Path, run: str, seed: int) -> None:
    folder = run_dir(finished_workflow, run, seed)
    report = (folder / "ml_res.md").read_text(encoding="utf-8")
    positions = [report.index(section + "\n") for section in SECTIONS]
    assert positions == sorted(positions), "the seed's sections must appear in order"
    rows = table_rows(report)
    assert len(rows) > 30
    empty = [row for row in rows if any(cell == "" for cell in row)]
    assert not empty, f"table rows with empty cells: {empty}"
    assert set(QUICK_FIELDS) <= {row[0] for row in rows}
    for plan_id in ("D1", "D5", "M4", "M8", "T3", "T7", "E1", "E4", "E5"):
        assert re.search(rf"\| [^|]*\b{plan_id}\b", report), f"{plan_id} not in components"
    # The numbers come from this (run, seed), and the corpus is named with its digest.
    metrics = json.loads((folder / "metrics.json").read_text())
    summary = json.loads((folder / "train_summary.json").read_text())
    manifest = json.loads((data_folder(finished_workflow) / "data" / "manifest.json").read_text())
    assert f"Run `{run}/seed{seed}`" in report
    assert f"{metrics['bits_per_char']:.4f} bits/char" in report
    assert f"{summary['final_train_loss']:.4f} nats" in report
    assert (
        f"`tinyshakespeare` (1,115,394 characters, SHA-256 `{manifest['source_sha256']}`" in report
    )
    assert metrics["beats_unigram"] and summary["final_train_loss"] < summary["first_train_loss"]
    # How the steps ran (T5), as the train summary recorded it.
    assert re.search(r"\| Training step +\| fp32, eager, 1 process +\|", report)
    assert summary["world_size"] == 1 and not summary["cuda_graph"]
    assert summary["compile"] is None  # the CPU trains eagerly
    monitor = json.loads((folder / "monitor" / "train.json").read_text())
    if not monitor["gpu_available"]:
        assert monitor["reason"] and monitor["reason"] in report
    data = (folder / "plots" / "loss.png").read_bytes()
    assert data.startswith(b"\x89PNG") and len(data) > 5000
    # No GPU, nothing to draw: no blank GPU plot, and the report says why in one line.
    assert (folder / "plots" / "gpu.png").is_file() == monitor["gpu_available"]
    assert ("No GPU plot:" in report) != monitor["gpu_available"]
    for stage, where in [("prepare", data_folder(finished_workflow))] + [
        (stage, folder) for stage in ("train", "evaluate", "sample")
    ]:
        assert (where / "benchmarks" / f"{stage}.tsv").is_file()
        assert (where / "logs" / f"{stage}.log").is_file()


@pytest.mark.slow
def test_runs_differ_only_in_their_settings(finished_workflow: Path) -> None:
    """Each (run, seed) trained with its own seed and overrides, and says so."""
    configs = {
        pair: json.loads((run_dir(finished_workflow, *pair) / "config" / "train.json").read_text())
        for pair in PAIRS
    }
    assert {pair: c["seed"] for pair, c in configs.items()} == {p: p[1] for p in PAIRS}
    assert {c["train"]["lr"] for pair, c in configs.items() if pair[0] == "hot"} == {0.002}
    assert {c["train"]["lr"] for pair, c in configs.items() if pair[0] == "base"} == {0.001}
    losses = {
        json.loads((run_dir(finished_workflow, *p) / "metrics.json").read_text())["val_loss_nats"]
        for p in PAIRS
    }
    assert len(losses) == len(PAIRS), "different seeds and settings give different models"
    hot = (run_dir(finished_workflow, "hot", 1) / "ml_res.md").read_text(encoding="utf-8")
    assert "config sample.temperature = 1.2 (plan: 0.8)" in hot


@pytest.mark.slow
def test_training_progress_shows_on_the_console(finished_workflow: Path) -> None:
    """While a training job runs, its progress reaches the terminal (labelled with its
    run and seed) as well as its log file.
    """
    console = (finished_workflow / CONSOLE).read_text(encoding="utf-8")
    for run, seed in PAIRS:
        label = f"[{run}/seed{seed} train] "
        lines = [line for line in console.splitlines() if line.startswith(label)]
        assert any("validation loss" in line for line in lines), label
        log = (run_dir(finished_workflow, run, seed) / "logs" / "train.log").read_text()
        assert [line.removeprefix(label) for line in lines] == log.splitlines()


@pytest.mark.slow
def test_the_same_text_found_by_another_path_reruns_nothing(tmp_path: Path) -> None:
    """The data's identity is its content: the same bytes in another mirror (an exported
    CHARGPT_DATA_MIRROR, a container's /mirror) plan no job, and source.json says where
    the text is found now; other bytes there are refused before any job.
    """
    repo = tiny_repo(tmp_path / "repo")
    snakemake(repo, "--cores", "1", "--until", "prepare")
    mirror = tmp_path / "mirror"
    shutil.copytree(SHARED_DATA / "tinyshakespeare", mirror / "tinyshakespeare")
    text = mirror / "tinyshakespeare" / "input.txt"
    moved = workflow_env(CHARGPT_DATA_MIRROR=str(mirror))
    dry_run = snakemake(repo, "-n", "--until", "prepare", env=moved)
    assert re.search(r"^total\s+0$", dry_run.stdout, re.MULTILINE), dry_run.stdout
    assert json.loads((data_folder(repo) / "source.json").read_text())["path"] == str(text)
    with text.open("a") as edit:
        edit.write("More lines.\n")
    edited = snakemake(repo, "-n", "--until", "prepare", env=moved, check=False)
    assert edited.returncode != 0
    said = edited.stdout + edited.stderr
    assert str(text) in said and "SHA-256" in said, said


@pytest.mark.slow
def test_summary_compares_runs_with_mean_and_sd(finished_workflow: Path) -> None:
    text = (finished_workflow / "results" / "summary.md").read_text(encoding="utf-8")
    means = text.split("\n## ")[0]  # the table of means; the intervals and comparison follow
    rows = {row[0]: row for row in table_rows(means)[1:]}
    assert set(rows) == set(SWEEP["runs"])
    for run in SWEEP["runs"]:
        bpc = [
            json.loads((run_dir(finished_workflow, run, s) / "metrics.json").read_text())[
                "bits_per_char"
            ]
            for s in SWEEP["seeds"]
        ]
        expected = f"{statistics.mean(bpc):.4f} ± {statistics.stdev(bpc):.4f}"
        assert rows[run][1] == "2" and expected in rows[run]
        assert rows[run][-1] == "n/a (no GPU)"
    assert "No claim is possible" in text, "two seeds a run are too few to compare"
    assert (finished_workflow / "results" / "summary.png").read_bytes().startswith(b"\x89PNG")


@pytest.mark.slow
def test_gpu_jobs_took_their_own_fake_gpu_slot(finished_workflow: Path) -> None:
    """With `--resources gpu=2` and a FAKE list of two GPUs, every GPU job ran with one of
    them as its CUDA_VISIBLE_DEVICES (the slot test of tests/test_gpu_monitor.py shows
    that two jobs at once never share one).
    """
    slots = [
        json.loads(path.read_text())["gpu_slot"]
        for path in (finished_workflow / "results").glob("*/seed*/monitor/*.json")
    ]
    assert len(slots) == 3 * len(PAIRS)
    assert {slot["device"] for slot in slots} <= {"0", "1"}
    assert {slot["source"] for slot in slots} == {"fake (CHARGPT_FAKE_GPUS)"}


@pytest.mark.slow
def test_snakemake_html_report_bundles_reports_plots_samples_and_summary(
    finished_workflow: Path,
) -> None:
    html = finished_workflow / "results" / "report.html"
    snakemake(finished_workflow, "--report", str(html))
    text = html.read_text(encoding="utf-8", errors="replace")
    for name in ("ml_res.md", "loss.png", "samples.txt", "summary.md", "summary.png"):
        assert name in text


# -- what reruns ------------------------------------------------------------------------


def planned(repo: Path, *args: str) -> set[tuple[str, str]]:
    """(rule, "run/seed") of every job `snakemake -n` would run ("" for rules without)."""
    output = snakemake(repo, "-n", *args).stdout
    jobs = set()
    for block in re.split(r"\n(?=(?:local)?rule \w+:)", output):
        match = re.match(r"(?:local)?rule (\w+):", block)
        if match:
            wildcards = re.search(r"wildcards: run=([\w-]+), seed=(\d+)", block)
            jobs.add((match[1], f"{wildcards[1]}/{wildcards[2]}" if wildcards else ""))
    return jobs


def planned_rules(repo: Path, *args: str) -> set[str]:
    return {rule for rule, _ in planned(repo, *args)}


@pytest.fixture
def edited_copy(finished_workflow: Path, tmp_path: Path) -> Path:
    """A copy of the finished repository (results and .snakemake included, mtimes kept)."""
    copy = tmp_path / "repo"
    shutil.copytree(finished_workflow, copy, symlinks=True)
    assert planned(copy) == set(), "a finished workflow should have nothing to do"
    return copy


def add_comment(path: Path) -> None:
    path.write_text(path.read_text(encoding="utf-8") + "\n# edited\n", encoding="utf-8")


def edit_docstring(path: Path) -> None:
    """One more word in the first function docstring that closes on a line of its own."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef) and ast.get_docstring(node):
            end = node.body[0].end_lineno - 1
            if lines[end].rstrip().endswith('"""'):
                text, quotes, rest = lines[end].rpartition('"""')
                lines[end] = f"{text} Edited.{quotes}{rest}"
                path.write_text("".join(lines), encoding="utf-8")
                return
    raise AssertionError(f"{path} has no docstring to edit")


def add_helper(path: Path) -> None:
    """A logic edit: one more function in the module."""
    helper = "\n\ndef edited_helper(x: int) -> int:\n    return x + 1\n"
    path.write_text(path.read_text(encoding="utf-8") + helper, encoding="utf-8")


EVERYTHING = {"prepare", "train", "evaluate", "sample", "report", "summary", "all"}
DOWNSTREAM_OF_TRAIN = EVERYTHING - {"prepare"}
NOTHING: set[str] = set()


@pytest.mark.slow
@pytest.mark.parametrize(
    ("edited", "edit", "expected"),
    [
        # Comments, docstrings and formatting are not code: nothing reruns.
        ("project/run.py", add_comment, NOTHING),
        ("project/utils/config.py", add_comment, NOTHING),
        ("project/testing/metrics.py", add_comment, NOTHING),
        ("project/model/attention.py", edit_docstring, NOTHING),
        ("project/training/trainer.py", edit_docstring, NOTHING),
        # A logic edit reruns the stages that reach the module, and what follows them.
        ("project/model/attention.py", add_helper, DOWNSTREAM_OF_TRAIN),
        # Top-k accuracy is evaluation's alone: training validates by the loss only.
        ("project/testing/metrics.py", add_helper, {"evaluate", "report", "summary", "all"}),
        ("project/testing/sampler.py", add_helper, {"sample", "report", "all"}),
        ("project/data/download.py", add_helper, EVERYTHING),
        # The summary imports make_report's helpers: both rerun.
        ("workflow/scripts/make_report.py", add_comment, {"report", "summary", "all"}),
        ("workflow/scripts/summarize.py", add_comment, {"summary", "all"}),
    ],
)
def test_source_edit_reruns_exactly_its_rules(
    edited_copy: Path, edited: str, edit: Callable[[Path], None], expected: set[str]
) -> None:
    edit(edited_copy / edited)
    assert planned_rules(edited_copy) == expected


@pytest.mark.slow
@pytest.mark.parametrize(
    ("removed", "producer"),
    [
        ("results/base/seed1/metrics.json", "evaluate"),
        ("results/base/seed1/samples.txt", "sample"),
        ("results/base/seed1/checkpoints/last.pt", "train"),
        ("results/base/seed1/monitor/evaluate.csv", "evaluate"),
        # Read by the report through its params, not its inputs (a job's other files).
        ("results/base/seed1/train_log.jsonl", "train"),
        ("results/base/seed1/benchmarks/sample.tsv", "sample"),
        ("data/manifest.json", "prepare"),  # in the run's data folder
    ],
)
def test_a_missing_result_is_rebuilt(edited_copy: Path, removed: str, producer: str) -> None:
    """Every result is a target of the default run: a plain `snakemake` remakes it."""
    folder = data_folder(edited_copy) if removed.startswith("data/") else edited_copy
    (folder / removed).unlink()
    assert producer in planned_rules(edited_copy)


@pytest.mark.slow
def test_the_html_report_refuses_results_that_are_not_current(edited_copy: Path) -> None:
    """After a setting change (or a killed retrain), the HTML report would show the old
    results as current: it refuses and names what is still to run.
    """
    configure(edited_copy, runs={**SWEEP["runs"], "base": {"overrides": {"train.lr": 0.0005}}})
    (edited_copy / "results" / "report.html").unlink(missing_ok=True)  # another test's
    result = snakemake(edited_copy, "--report", "results/report.html", check=False)
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "not current" in output and "train run=base, seed=1" in output
    assert "hot" not in output.split("Still to run:")[1].split("\n  summary")[0]
    assert not (edited_copy / "results" / "report.html").exists()


@pytest.mark.slow
def test_an_edit_with_an_old_mtime_still_retrains(edited_copy: Path) -> None:
    """`cp -p`, `rsync -t`, `tar x` or a skewed clock: the content decides, not the mtime."""
    path = edited_copy / "project/model/attention.py"
    before = path.stat()
    add_helper(path)
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns - 10**12))
    assert planned_rules(edited_copy) == DOWNSTREAM_OF_TRAIN


@pytest.mark.slow
@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("sample.temperature", 1.0, {"sample", "report", "all"}),
        ("eval.stride", 8, DOWNSTREAM_OF_TRAIN),
        ("train.lr", 0.0005, DOWNSTREAM_OF_TRAIN),
        ("data.train_fraction", 0.8, EVERYTHING),
    ],
)
def test_one_runs_override_reruns_only_that_runs_jobs(
    edited_copy: Path, key: str, value: float, expected: set[str]
) -> None:
    configure(edited_copy, runs={**SWEEP["runs"], "base": {"overrides": {key: value}}})
    jobs = planned(edited_copy)
    assert {rule for rule, _ in jobs} == expected
    assert {pair for _, pair in jobs} - {""} == {f"base/{seed}" for seed in SWEEP["seeds"]}


@pytest.mark.slow
def test_workflow_default_epochs_reruns_training_everywhere(edited_copy: Path) -> None:
    jobs = planned(edited_copy, "--config", "epochs=2")
    assert {rule for rule, _ in jobs} == DOWNSTREAM_OF_TRAIN
    assert {pair for _, pair in jobs} - {""} == {f"{r}/{s}" for r, s in PAIRS}


@pytest.mark.slow
def test_one_stage_reruns_on_request(edited_copy: Path) -> None:
    samples = "results/base/seed1/samples.txt"
    result = snakemake(edited_copy, "--cores", "2", "--forcerun", "sample", "--until", samples)
    assert "rule sample:" in result.stdout + result.stderr
    assert "rule train:" not in result.stdout + result.stderr
    assert planned(edited_copy) == {("report", "base/1"), ("all", "")}


@pytest.mark.slow
def test_a_killed_rerun_after_a_setting_change_is_never_up_to_date(edited_copy: Path) -> None:
    """Change a run's learning rate, start the workflow, SIGKILL its training: the next
    `snakemake` still reruns that run's training and everything after it.
    """
    configure(
        edited_copy,
        runs={**SWEEP["runs"], "base": {"overrides": {"train.lr": 0.0005}}},
        train_retries=0,
    )
    assert run_and_kill_trainer(edited_copy, lambda: True) != 0
    jobs = planned(edited_copy)
    assert {rule for rule, _ in jobs} == DOWNSTREAM_OF_TRAIN
    assert {pair for _, pair in jobs} - {""} == {f"base/{seed}" for seed in SWEEP["seeds"]}


# -- config checked before any job --------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ("epochs=0", "epochs"),
        ("device=gpu", "device"),
        ("runs={'a/b': {}}", "a/b"),
        ("runs={'..': {}}", ".."),
        ("monitor={'memory_interval_s': -1, 'slow_interval_s': 0.5}", "memory_interval_s"),
        ("overrides={'modle.n_layer': 2}", "unknown config key 'modle'"),
        ("unknown_key=1", "unknown_key"),
        # A setting that the workflow would otherwise overrule: the seed comes from `seeds`.
        ("overrides={'seed': 7}", "list seeds under `seeds:`"),
        # Project config values are checked by the project's own checker, also before any job.
        ("overrides={'train.lr': 'fast'}", "train.lr"),
        ("overrides={'eval.stride': 100000}", "eval.stride"),
        # Checks across sections: the stride of evaluation fits the model's context.
        ("overrides={'model.block_size': 64, 'eval.stride': 100}", "must be <= model.block_size"),
        ("seeds=[-5]", "seeds"),
    ],
)
def test_bad_config_stops_before_any_job(tmp_path: Path, setting: str, message: str) -> None:
    repo = copy_repo(tmp_path / "repo")
    result = snakemake(repo, "-n", "--config", setting, check=False)
    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert message in output
    assert "Job stats" not in output
    assert not (repo / "results").exists()


@pytest.mark.slow
def test_a_seed_numpy_cannot_take_stops_before_any_job(tmp_path: Path) -> None:
    """NumPy seeds only 32-bit values: caught when the runs are resolved, not by numpy in
    the train job.
    """
    repo = copy_repo(tmp_path / "repo")
    configure(repo, seeds=[99999999999])
    result = snakemake(repo, "-n", check=False)
    assert result.returncode != 0
    assert "'seed' must be in [0, 2**32 - 1]" in result.stdout + result.stderr


@pytest.mark.slow
def test_a_run_with_nothing_after_its_name_runs_the_defaults(tmp_path: Path) -> None:
    """`runs: {base: }` in YAML is `base: null`: a run of the shared settings."""
    repo = copy_repo(tmp_path / "repo")
    configure(repo, runs={"base": None})
    assert job_counts(repo)["train"] == 1


@pytest.mark.slow
def test_a_home_that_does_not_exist_is_no_obstacle(tmp_path: Path) -> None:
    """An arbitrary UID in a container often has no HOME: Snakemake's source cache lives in
    .snakemake/ (the default profile), so the workflow runs all the same.
    """
    repo = tiny_repo(tmp_path / "repo", seeds=[1])
    env = workflow_env(HOME="/proc/no-such-home")  # cannot be created, even by root
    result = snakemake(repo, "--cores", "1", "--until", "prepare", env=env, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert (data_folder(repo) / "data" / "manifest.json").is_file()


@pytest.mark.slow
def test_an_unwritable_results_folder_is_one_line(tmp_path: Path) -> None:
    repo = copy_repo(tmp_path / "repo")
    results = repo / "results"
    results.mkdir()
    mount = ["mount", "-t", "tmpfs", "-o", "ro,size=64k", "tmpfs", str(results)]
    if subprocess.run(mount, capture_output=True, check=False).returncode != 0:
        pytest.skip("cannot mount a read-only tmpfs (needs root)")
    try:
        result = snakemake(repo, "-n", check=False)
    finally:
        subprocess.run(["umount", str(results)], check=True)
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "cannot write results/" in output and "must be writable by you" in output
    assert "Traceback" not in output


@pytest.mark.slow
def test_workflow_settings_are_honoured_not_overruled(tmp_path: Path) -> None:
    """A run's own train.epochs and device win over the workflow's defaults."""
    repo = copy_repo(tmp_path / "repo")
    configure(repo, runs={"long": {"overrides": {"train.epochs": 5, "device": "cpu"}}})
    snakemake(repo, "-n", "--config", "epochs=2")
    config = json.loads((repo / "results/long/seed1337/config/train.json").read_text())
    assert (config["train"]["epochs"], config["device"]) == (5, "cpu")


def job_counts(repo: Path) -> dict[str, int]:
    """How many jobs of each rule `snakemake -n` plans ("total" too)."""
    output = snakemake(repo, "-n").stdout
    stats = output.split("Job stats:")[1]
    return {rule: int(n) for rule, n in re.findall(r"^(\w+)\s+(\d+)$", stats, re.MULTILINE)}


@pytest.mark.slow
def test_dry_run_of_many_runs_plans_every_job(tmp_path: Path) -> None:
    """20 runs × 3 seeds: 4 jobs each (train to report), one prepare for the data they
    share, the summary and `all`.
    """
    repo = copy_repo(tmp_path / "repo")
    runs = {f"lr{i}": {"overrides": {"train.lr": 1e-4 * (i + 1)}} for i in range(20)}
    configure(repo, runs=runs, seeds=[1, 2, 3])
    counts = job_counts(repo)
    assert counts["total"] == 60 * 4 + 3
    assert counts["train"] == counts["report"] == 60
    assert counts["prepare"] == 1


@pytest.mark.slow
def test_runs_with_the_same_data_settings_share_one_prepare(tmp_path: Path) -> None:
    repo = copy_repo(tmp_path / "repo")
    configure(repo, **SWEEP)  # 2 runs × 2 seeds, one data configuration
    assert job_counts(repo)["prepare"] == 1
    split = {"overrides": {"data.train_fraction": 0.8}}
    configure(repo, runs={**SWEEP["runs"], "split": split})
    assert job_counts(repo)["prepare"] == 2


@pytest.mark.slow
def test_a_rule_that_disagrees_with_its_stage_stops_the_workflow(tmp_path: Path) -> None:
    repo = copy_repo(tmp_path / "repo")
    rules = repo / "workflow" / "rules" / "stages.smk"
    declared = "        **stage_outputs(TRAINER, RUN, **shown_in_report(TRAINER)),\n"
    assert declared in rules.read_text(encoding="utf-8")
    extra = declared + '        extra=f"{RUN}/extra.json",\n'
    rules.write_text(rules.read_text(encoding="utf-8").replace(declared, extra), encoding="utf-8")
    result = snakemake(repo, "-n", check=False)
    assert result.returncode != 0
    assert "the train rule's named inputs" in result.stdout + result.stderr
    assert "differ from the stage's declaration" in result.stdout + result.stderr


@pytest.mark.slow
def test_an_edit_of_the_users_own_text_reruns_prepare(tmp_path: Path) -> None:
    """`data_source: my.txt` with `data.sha256: null`: a one-word edit, even one whose mtime
    is older than the prepared data, reruns prepare (and so everything after it).
    """
    text = tmp_path / "my.txt"
    text.write_text((SHARED_DATA / "tinyshakespeare" / "input.txt").read_text()[:200_000])
    repo = tiny_repo(
        tmp_path / "repo", data_source=str(text), overrides={"data.sha256": None}, seeds=[1]
    )
    snakemake(repo, "--cores", "2", "--until", "prepare")
    assert planned_rules(repo, "--until", "prepare") == NOTHING
    before = text.stat()
    text.write_text(text.read_text().replace("Citizen", "Burgher", 1))
    os.utime(text, ns=(before.st_atime_ns, before.st_mtime_ns - 10**12))
    assert planned_rules(repo, "--until", "prepare") == {"prepare"}
    assert {"prepare", "train", "report"} <= planned_rules(repo)
    snakemake(repo, "--cores", "2", "--until", "prepare")
    manifest = json.loads((data_folder(repo) / "data" / "manifest.json").read_text())
    assert manifest["source_sha256"] == hashlib.sha256(text.read_bytes()).hexdigest()


@pytest.mark.slow
def test_unreachable_data_fails_the_prepare_rule_cleanly(tmp_path: Path) -> None:
    repo = copy_repo(tmp_path / "repo")
    # No mirror at all (the plan's default one is absent beside the copy): the download.
    env = workflow_env(CHARGPT_DATA_CACHE=str(tmp_path / "c"))
    del env["CHARGPT_DATA_MIRROR"]
    closed_port_url = "http://127.0.0.1:9/input.txt"  # the discard port: nothing listens
    result = snakemake(
        repo,
        "--cores",
        "1",
        "--until",
        "prepare",
        "--config",
        f"data_source={closed_port_url}",
        "overrides={'data.download_retries': 0, 'data.download_timeout_s': 2.0}",
        env=env,
        check=False,
    )
    assert result.returncode != 0
    folder = data_folder(repo)
    log = (folder / "logs" / "prepare.log").read_text(encoding="utf-8")
    assert "data.mirror_dir" in log and "CHARGPT_DATA_MIRROR" in log
    assert not list(folder.glob("data/*")), "no output may be left"


@pytest.mark.slow
def test_lint_and_format() -> None:
    lint = snakemake(REPO, "--lint", check=False)
    assert lint.returncode == 0, lint.stdout + lint.stderr
    assert "Lints for" not in lint.stdout + lint.stderr
    snakefmt = shutil.which("snakefmt", path=str(Path(sys.executable).parent))
    assert snakefmt, "snakefmt is installed from requirements-dev.txt"
    rules = sorted((REPO / "workflow" / "rules").glob("*.smk"))
    files = ["Snakefile", "workflow/Snakefile", *map(str, rules)]
    result = subprocess.run([snakefmt, "--check", *files], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.fixture
def stub_apptainer(tmp_path: Path) -> tuple[dict[str, str], Path]:
    """PATH with the STUB `apptainer` of tests/stubs first: not a container, it records
    each call and runs the job's command on the host.
    """
    log = tmp_path / "apptainer-calls.log"
    env = workflow_env(APPTAINER_STUB_LOG=str(log), APPTAINER_STUB_RUN="1")
    env["PATH"] = f"{REPO / 'tests' / 'stubs'}{os.pathsep}{env['PATH']}"
    return env, log


# `--sdm apptainer` is the documented form (docs/snakemake-module.md); Snakemake 9 still takes
# `--use-singularity` (and `--use-apptainer`) for it.
@pytest.mark.slow
@pytest.mark.parametrize("flag", [["--sdm", "apptainer"], ["--use-singularity"]])
def test_apptainer_dry_run_uses_the_configured_image(
    tmp_path: Path, stub_apptainer: tuple[dict[str, str], Path], flag: list[str]
) -> None:
    env, _ = stub_apptainer
    repo = copy_repo(tmp_path / "repo")
    result = snakemake(repo, *flag, "-n", env=env)
    image = "docker://ghcr.io/chargpt/chargpt-workflow"
    assert f"Singularity image {image}" in result.stdout + result.stderr


@pytest.mark.slow
def test_sdm_apptainer_passes_gpus_with_nv(
    tmp_path: Path, stub_apptainer: tuple[dict[str, str], Path]
) -> None:
    """A real `prepare` job through the STUB apptainer: the command Snakemake builds has
    --nv (from profiles/default) and the local .sif image, with no extra flag from the user.
    """
    env, log = stub_apptainer
    repo = copy_repo(tmp_path / "repo")
    image = tmp_path / "chargpt.sif"
    image.write_bytes(b"stub image, never run")
    snakemake(
        repo,
        "--cores",
        "1",
        "--sdm",
        "apptainer",
        "--until",
        "prepare",
        "--config",
        f"container={image}",
        env=env,
    )
    calls = [line for line in log.read_text().splitlines() if " exec " in f" {line}"]
    assert calls, "Snakemake never called apptainer exec"
    assert "--nv" in calls[0].split() and str(image) in calls[0]
    assert (data_folder(repo) / "data" / "manifest.json").is_file()


@pytest.mark.slow
def test_two_device_run_asks_for_two_gpus_and_trains_under_torchrun(tmp_path: Path) -> None:
    """train.devices: 2 on the FAKE two-GPU list: the train job takes both slots and trains
    with 2 gloo processes (this machine's torch has no CUDA), the report says so.
    """
    runs = {"ddp": {"overrides": {"train.devices": 2}}}
    repo = tiny_repo(tmp_path / "repo", runs=runs, seeds=[1])
    result = snakemake(
        repo,
        "--cores",
        "2",
        "--resources",
        "gpu=2",
        "--until",
        "train",
        env=workflow_env(**FAKE_GPUS),
    )
    folder = repo / "results" / "ddp" / "seed1"
    assert (
        json.loads((folder / "monitor" / "train.json").read_text())["gpu_slot"]["device"] == "0,1"
    )
    assert json.loads((folder / "train_summary.json").read_text())["world_size"] == 2
    assert "training on 2 devices: starting torchrun" in result.stdout + result.stderr
