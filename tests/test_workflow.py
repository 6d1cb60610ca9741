"""The Snakemake workflow end to end on the real text, its rerun rules, its config schema,
its failure on unreachable data, and the Apptainer command it builds.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO, TINY_RUN, copy_repo, snakemake, workflow_env

SECTIONS = [
    "# Implementation Report",
    "## Components Implemented",
    "## Quick Validation Results",
    "## Deviations from Plan",
    "## Known Issues",
]
QUICK_FIELDS = ["Epochs", "Final training loss", "Validation metrics", "Runtime", "GPU memory peak"]


def table_rows(markdown: str) -> list[list[str]]:
    """Cells of every GitHub-style table row, separator rows left out."""
    rows = []
    for line in markdown.splitlines():
        if line.startswith("|") and not re.fullmatch(r"\|[\s|:-]+\|", line):
            rows.append([cell.strip() for cell in re.split(r"(?<!\\)\|", line)[1:-1]])
    return rows


@pytest.mark.slow
def test_report_has_every_section_and_filled_tables(finished_workflow: Path) -> None:
    run = finished_workflow / "results" / "ci"
    report = (run / "ml_res.md").read_text(encoding="utf-8")
    positions = [report.index(section + "\n") for section in SECTIONS]
    assert positions == sorted(positions), "the seed's sections must appear in order"
    rows = table_rows(report)
    assert len(rows) > 30
    empty = [row for row in rows if any(cell == "" for cell in row)]
    assert not empty, f"table rows with empty cells: {empty}"
    fields = {row[0] for row in rows}
    assert set(QUICK_FIELDS) <= fields
    for plan_id in ("D1", "D5", "M4", "M8", "T3", "T7", "E1", "E4"):
        assert re.search(rf"\| [^|]*\b{plan_id}\b", report), f"{plan_id} not in components"
    assert "CPU preset" not in report or "## Deviations from Plan" in report
    for plot in ("loss.png", "gpu.png"):
        data = (run / "plots" / plot).read_bytes()
        assert data.startswith(b"\x89PNG") and len(data) > 5000


@pytest.mark.slow
def test_report_numbers_come_from_the_run(finished_workflow: Path) -> None:
    run = finished_workflow / "results" / "ci"
    metrics = json.loads((run / "metrics.json").read_text())
    summary = json.loads((run / "train_summary.json").read_text())
    report = (run / "ml_res.md").read_text(encoding="utf-8")
    assert f"{metrics['bits_per_char']:.4f} bits/char" in report
    assert f"{summary['final_train_loss']:.4f} nats" in report
    assert metrics["beats_unigram"] and summary["final_train_loss"] < summary["first_train_loss"]
    # Without a GPU the monitor says why, and the report carries the reason.
    monitor = json.loads((run / "monitor" / "train.json").read_text())
    if not monitor["gpu_available"]:
        assert monitor["reason"] and monitor["reason"] in report
    for stage in ("data", "train", "evaluate", "sample"):
        assert (run / "benchmarks" / f"{stage}.tsv").is_file()
        assert (run / "logs" / f"{stage}.log").is_file()


@pytest.mark.slow
def test_snakemake_html_report_bundles_report_plots_and_sample(finished_workflow: Path) -> None:
    html = finished_workflow / "results" / "report.html"
    snakemake(finished_workflow, *TINY_RUN, "--report", str(html))
    text = html.read_text(encoding="utf-8", errors="replace")
    for name in ("ml_res.md", "loss.png", "gpu.png", "samples.txt"):
        assert name in text


def planned_jobs(repo: Path, *args: str) -> set[str]:
    """The rules `snakemake -n` would run (its job-stats table)."""
    output = snakemake(repo, "-n", *TINY_RUN, *args).stdout
    if "Nothing to be done" in output:
        return set()
    block = output.split("Job stats:")[1].split("total")[0]
    return {line.split()[0] for line in block.splitlines()[3:] if line.strip()}


@pytest.fixture
def edited_copy(finished_workflow: Path, tmp_path: Path) -> Path:
    """A copy of the finished repository (results and .snakemake included, mtimes kept)."""
    copy = tmp_path / "repo"
    shutil.copytree(finished_workflow, copy, symlinks=True)
    assert planned_jobs(copy) == set(), "a finished workflow should have nothing to do"
    return copy


def touch_source(path: Path) -> None:
    path.write_text(path.read_text(encoding="utf-8") + "\n# edited\n", encoding="utf-8")


EVERYTHING = {"data", "train", "evaluate", "sample", "report", "all"}
DOWNSTREAM_OF_TRAIN = {"train", "evaluate", "sample", "report", "all"}


@pytest.mark.slow
@pytest.mark.parametrize(
    ("edited", "expected"),
    [
        ("project/model/attention.py", DOWNSTREAM_OF_TRAIN),
        ("project/training/optim.py", DOWNSTREAM_OF_TRAIN),
        ("project/testing/metrics.py", {"evaluate", "report", "all"}),
        ("project/data/loader.py", EVERYTHING),
        ("workflow/scripts/make_report.py", {"report", "all"}),
    ],
)
def test_source_edit_reruns_exactly_its_rules(
    edited_copy: Path, edited: str, expected: set[str]
) -> None:
    touch_source(edited_copy / edited)
    assert planned_jobs(edited_copy) == expected


@pytest.mark.slow
@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("sample.temperature", "1.0", {"sample", "report", "all"}),
        ("eval.stride", "8", {"train", "evaluate", "sample", "report", "all"}),
        ("train.lr", "0.002", DOWNSTREAM_OF_TRAIN),
    ],
)
def test_config_value_reruns_what_it_feeds(
    edited_copy: Path, key: str, value: str, expected: set[str]
) -> None:
    section, name = key.split(".")
    tiny = edited_copy / "tiny.yaml"
    text = tiny.read_text(encoding="utf-8")
    block = f"{section}:\n"
    text = (
        text.replace(block, f"{block}  {name}: {value}\n")
        if block in text
        else text + f"{block}  {name}: {value}\n"
    )
    tiny.write_text(text, encoding="utf-8")
    assert planned_jobs(edited_copy) == expected


@pytest.mark.slow
def test_epochs_in_workflow_config_reruns_training(edited_copy: Path) -> None:
    assert planned_jobs(edited_copy, "epochs=2") == DOWNSTREAM_OF_TRAIN


@pytest.mark.slow
def test_one_rule_reruns_on_request(edited_copy: Path) -> None:
    result = snakemake(edited_copy, "--cores", "2", *TINY_RUN, "--forcerun", "sample", "sample")
    assert "rule sample:" in result.stdout + result.stderr
    assert "rule train:" not in result.stdout + result.stderr


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ("epochs=0", "epochs"),
        ("device=gpu", "device"),
        ("run_name=a/b", "run_name"),
        ("monitor={'memory_interval_s': -1, 'slow_interval_s': 0.5}", "memory_interval_s"),
        ("overrides={'modle.n_layer': 2}", "modle.n_layer"),
        ("unknown_key=1", "unknown_key"),
        # Project config values are checked by the project's own checker, also before any job.
        ("overrides={'train.lr': 'fast'}", "train.lr"),
        ("overrides={'eval.stride': 100000}", "eval.stride"),
    ],
)
def test_schema_rejects_bad_config_before_any_job(
    tmp_path: Path, setting: str, message: str
) -> None:
    repo = copy_repo(tmp_path / "repo")
    result = snakemake(repo, "-n", "--config", setting, check=False)
    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert message in output
    assert "Job stats" not in output
    assert not (repo / "results").exists()


def test_unreachable_data_fails_the_data_rule_cleanly(tmp_path: Path) -> None:
    repo = copy_repo(tmp_path / "repo")
    empty = tmp_path / "empty"
    empty.mkdir()
    env = workflow_env(CHARGPT_DATA_MIRROR=str(empty), CHARGPT_DATA_CACHE=str(tmp_path / "c"))
    closed_port_url = "http://127.0.0.1:9/input.txt"  # the discard port: nothing listens
    result = snakemake(
        repo,
        "--cores",
        "1",
        "data",
        "--config",
        f"data_source={closed_port_url}",
        "overrides={'data.download_retries': 0, 'data.download_timeout_s': 2.0}",
        env=env,
        check=False,
    )
    assert result.returncode != 0
    log = (repo / "results" / "quick" / "logs" / "data.log").read_text(encoding="utf-8")
    assert "data.mirror_dir" in log and "CHARGPT_DATA_MIRROR" in log
    assert not list((repo / "results" / "quick").glob("data/*")), "no output may be left"


def test_lint_and_format() -> None:
    lint = snakemake(REPO, "--lint", check=False)
    assert lint.returncode == 0, lint.stdout + lint.stderr
    assert "Lints for" not in lint.stdout + lint.stderr
    snakefmt = shutil.which("snakefmt", path=str(Path(sys.executable).parent))
    assert snakefmt, "snakefmt is installed from requirements-dev.txt"
    files = ["Snakefile", *map(str, sorted((REPO / "workflow" / "rules").glob("*.smk")))]
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


def test_use_singularity_dry_run_uses_the_configured_image(
    tmp_path: Path, stub_apptainer: tuple[dict[str, str], Path]
) -> None:
    env, _ = stub_apptainer
    repo = copy_repo(tmp_path / "repo")
    result = snakemake(repo, "-n", "--use-singularity", env=env)
    image = "docker://ghcr.io/chargpt/chargpt-workflow"
    assert f"Singularity image {image}" in result.stdout + result.stderr


def test_use_singularity_passes_gpus_with_nv(
    tmp_path: Path, stub_apptainer: tuple[dict[str, str], Path]
) -> None:
    """A real `data` job through the STUB apptainer: the command Snakemake builds has --nv
    (from profiles/default) and the local .sif image, with no extra flag from the user.
    """
    env, log = stub_apptainer
    repo = copy_repo(tmp_path / "repo")
    image = tmp_path / "chargpt.sif"
    image.write_bytes(b"stub image, never run")
    snakemake(
        repo, "--cores", "1", "--use-singularity", "data", "--config", f"container={image}", env=env
    )
    calls = [line for line in log.read_text().splitlines() if " exec " in f" {line}"]
    assert calls, "Snakemake never called apptainer exec"
    assert "--nv" in calls[0].split() and str(image) in calls[0]
    assert (repo / "results" / "quick" / "data" / "manifest.json").is_file()
