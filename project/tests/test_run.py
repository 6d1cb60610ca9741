"""run.py end to end on the real text with a tiny model: outputs, quick validation, T4 guard,
T8 same-seed determinism and T7/T8 resume equivalence on the CPU.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from harness.inputs import file_record
from harness.io import read_json, read_jsonl, write_json
from harness.stage import work_folder

from project.data.loader import TrainBatches
from project.testing import evaluator
from project.tests import dispatch as run
from project.tests.dispatch import load
from project.tests.run_files import output, work_file
from project.training.checkpoint import LAST, save_checkpoint
from project.training.optim import learning_rate
from project.training.resume import LOG_FILE, log_until

PROJECT_DIR = Path(__file__).resolve().parents[1]
SHAKESPEARE_SHA256 = "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed"
Argv = Callable[..., list[str]]
CHECKPOINTS = ("best", "last")
# The reference run and the resumed run save last.pt every 5 steps and flush the log every
# 2 steps, so that a kill usually lands with logged steps past the newest checkpoint.
RESUME_SETTINGS = ("--set", "train.checkpoint_every_steps=5", "--set", "train.sync_every_steps=2")
RESUME_EPOCHS = ("--epochs", "2")
# An absurd peak rate (1e6) really drives the tiny model to NaN within a few steps; a
# checkpoint every step makes last.pt the newest state before the bad step.
DIVERGING = (
    *("--set", "train.lr=1e6"),
    *("--set", "train.min_lr=0"),
    *("--set", "train.checkpoint_every_steps=1"),
)


def train_records(out_dir: Path) -> list[dict[str, Any]]:
    return [r for r in read_jsonl(output(out_dir, "train_log")) if r["kind"] == "train"]


def logged_steps_so_far(log_path: Path) -> list[int]:
    """Train steps of a log that another process is appending to (a torn last line is skipped)."""
    if not log_path.is_file():
        return []
    return [r["step"] for r in log_until(log_path, sys.maxsize) if r["kind"] == "train"]


def loss_sequence(out_dir: Path) -> list[tuple[str, int, float]]:
    """Every train loss and validation loss of a run's log, in order."""
    return [
        (r["kind"], r["step"], r["loss"] if r["kind"] == "train" else r["val_loss"])
        for r in read_jsonl(output(out_dir, "train_log"))
    ]


def metric_bytes(out_dir: Path) -> bytes:
    """metrics.json as written: it holds no timings (those are in the stage's cost file)."""
    return output(out_dir, "metrics").read_bytes()


def steps_per_epoch(prepared: Path, block_size: int = 64, batch_size: int = 64) -> int:
    """D4 steps an epoch of the real training split (defaults: conftest's TINY_YAML)."""
    manifest = read_json(output(prepared, "manifest"))
    ids = torch.zeros(manifest["train_chars"], dtype=torch.long)
    return TrainBatches(ids, block_size, batch_size, seed=0).steps_per_epoch


# -- E2E: the quick validation, tiny ----------------------------------------------------------


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory: pytest.TempPathFactory, tiny_cli: Argv) -> Path:
    """`run.py all --epochs 2` (prepare, train, evaluate, sample) with the tiny model."""
    out = tmp_path_factory.mktemp("quick")
    assert run.main(tiny_cli("all", out, *RESUME_EPOCHS)) == 0  # 1 if quick validation fails
    return out


@pytest.mark.slow
def test_all_stages_on_the_real_text(quick_run: Path, tiny_config_file: Path) -> None:
    out = quick_run
    # D1-D3: prepared data and its manifest
    manifest = read_json(output(out, "manifest"))
    assert manifest["source_sha256"] == SHAKESPEARE_SHA256
    assert manifest["vocab_size"] == 65
    assert (manifest["train_chars"], manifest["val_chars"]) == (1_003_854, 111_540)
    for name in run.DATA:
        assert output(out, name).is_file()

    # T1-T8: the training log
    records = read_jsonl(output(out, "train_log"))
    train = [r for r in records if r["kind"] == "train"]
    val = [r for r in records if r["kind"] == "val"]
    per_epoch = steps_per_epoch(out)
    assert [r["step"] for r in train] == list(range(1, 2 * per_epoch + 1))
    assert [r["step"] for r in val] == [per_epoch, 2 * per_epoch]
    assert all(math.isfinite(r["loss"]) and math.isfinite(r["grad_norm"]) for r in train)
    assert all(math.isfinite(r["val_loss"]) for r in val)
    first = sum(r["loss"] for r in train[:10]) / 10
    last = sum(r["loss"] for r in train[-10:]) / 10
    assert last < first - 0.5, (first, last)
    config, _ = load(tiny_config_file, [{"train": {"epochs": 2}}])
    total = 2 * per_epoch
    for r in train:  # T3: the logged rate is the schedule's rate of that step
        assert r["lr"] == pytest.approx(learning_rate(r["step"] - 1, total, config.train), rel=1e-9)

    summary = read_json(output(out, "summary"))
    assert summary["steps"] == total and summary["epochs_run"] == 2
    assert summary["first_train_loss"] == pytest.approx(first)
    assert summary["final_train_loss"] == pytest.approx(last)
    assert summary["best_val_loss"] == min(r["val_loss"] for r in val)

    # T7: checkpoints load without unpickling code and hold what a resume needs
    for name in CHECKPOINTS:
        checkpoint = torch.load(output(out, name), weights_only=True)
        assert {"model", "optimizer", "schedule", "state", "rng"} <= checkpoint.keys()
        assert all(torch.isfinite(t).all() for t in checkpoint["model"].values())
    best = torch.load(output(out, "best"), weights_only=True)
    assert best["state"]["best_step"] == summary["best_step"]
    assert torch.load(output(out, "last"), weights_only=True)["state"]["step"] == total

    # E1-E4
    metrics = read_json(output(out, "metrics"))
    assert metrics["scored_chars"] == 111_540 - 1
    assert metrics["val_loss_nats"] == pytest.approx(summary["best_val_loss"], rel=1e-9)
    assert metrics["bits_per_char"] == pytest.approx(metrics["val_loss_nats"] / math.log(2))
    assert metrics["baselines"]["uniform"]["bits_per_char"] == pytest.approx(math.log2(65))
    assert metrics["bits_per_char"] < metrics["baselines"]["unigram"]["bits_per_char"]
    assert metrics["beats_unigram"] and metrics["beats_uniform"]

    # E5
    sample = output(out, "samples").read_text(encoding="utf-8")
    assert sample.startswith("ROMEO:") and sample.endswith("\n")
    assert len(sample[:-1]) == len("ROMEO:") + 500
    vocab = set(json.loads((output(out, "vocab")).read_text(encoding="utf-8"))["chars"])
    assert set(sample) <= vocab

    quick = read_json(output(out, "checks"))
    assert quick["passed"] is True
    assert all(quick["checks"].values())


# -- T4: a non-finite loss stops the run ------------------------------------------------------


def test_non_finite_loss_stops_the_run_and_keeps_a_finite_checkpoint(
    tmp_path: Path,
    tiny_cli: Argv,
    with_prepared_data: Callable[[Path], Path],
    capsys: pytest.CaptureFixture[str],
) -> None:
    out = with_prepared_data(tmp_path / "nan")
    code = run.main(tiny_cli("train", out, *DIVERGING))
    error = capsys.readouterr().err
    assert code != 0
    records = [r for r in read_jsonl(work_file(out, LOG_FILE)) if r["kind"] == "train"]
    bad = [r for r in records if not (math.isfinite(r["loss"]) and math.isfinite(r["grad_norm"]))]
    assert bad, "the run was expected to go non-finite"
    bad_step = bad[0]["step"]
    assert records[-1]["step"] == bad_step  # stopped at once
    assert f"step {bad_step}:" in error and "non-finite" in error
    assert not output(out, "summary").exists()
    checkpoint = torch.load(work_file(out, LAST), weights_only=True)
    assert checkpoint["state"]["step"] == bad_step - 1
    assert all(torch.isfinite(t).all() for t in checkpoint["model"].values())


# -- T8: same seed, same losses ---------------------------------------------------------------


@pytest.fixture(scope="module")
def reference_run(
    tmp_path_factory: pytest.TempPathFactory, tiny_cli: Argv, prepared_run_dir: Path
) -> Path:
    """An uninterrupted 2-epoch training run, evaluated (run A of the resume test)."""
    out = tmp_path_factory.mktemp("reference")
    for name in run.DATA:
        output(out, name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(output(prepared_run_dir, name), output(out, name))
    assert run.main(tiny_cli("train", out, *RESUME_EPOCHS, *RESUME_SETTINGS)) == 0
    assert run.main(tiny_cli("evaluate", out)) == 0
    return out


@pytest.mark.slow
def test_same_seed_gives_identical_losses_and_metrics(quick_run: Path, reference_run: Path) -> None:
    """Two independent runs with the same seed and config: `all` (checkpoints once an epoch)
    and `train` + `evaluate` (checkpoints every 5 steps, which must not perturb anything).
    """
    sequence = loss_sequence(quick_run)
    assert len(sequence) == 2 * steps_per_epoch(quick_run) + 2  # every step, both validations
    assert sequence == loss_sequence(reference_run)  # exact float equality
    assert metric_bytes(quick_run) == metric_bytes(reference_run)
    last = [
        torch.load(output(out, "last"), weights_only=True)["model"]
        for out in (quick_run, reference_run)
    ]
    assert all(torch.equal(last[0][k], last[1][k]) for k in last[0])


# -- T7/T8: a killed and resumed run equals an uninterrupted one ------------------------------


@pytest.mark.slow
def test_resume_after_sigkill_continues_bit_for_bit(
    tmp_path: Path,
    tiny_cli: Argv,
    with_prepared_data: Callable[[Path], Path],
    reference_run: Path,
) -> None:
    out = with_prepared_data(tmp_path / "resumed")
    argv = tiny_cli("train", out, *RESUME_EPOCHS, *RESUME_SETTINGS)
    per_epoch = steps_per_epoch(out)
    log_path, last_path = work_file(out, LOG_FILE), work_file(out, LAST)
    # Kill in the second epoch, at a logged step that is not a checkpoint step.
    with (tmp_path / "killed.log").open("w") as console:
        process = subprocess.Popen(
            [sys.executable, str(PROJECT_DIR / "run.py"), *argv],
            cwd=PROJECT_DIR,
            stdout=console,
            stderr=subprocess.STDOUT,
            # The same thread count as this process (conftest pins 1): CPU kernels reduce
            # in a thread-count-dependent order, and the comparison is bit for bit.
            env={**os.environ, "OMP_NUM_THREADS": str(torch.get_num_threads())},
        )
        try:
            deadline = time.monotonic() + 240
            while True:
                assert process.poll() is None, "the run ended before it could be killed"
                assert time.monotonic() < deadline, "the run did not get far enough in time"
                steps = logged_steps_so_far(log_path)
                if steps and steps[-1] >= per_epoch + 20 and steps[-1] % 5 and last_path.is_file():
                    process.send_signal(signal.SIGKILL)
                    break
                time.sleep(0.02)
        finally:
            process.kill()
            process.wait()
    killed_at = logged_steps_so_far(log_path)[-1]
    checkpoint_step = torch.load(last_path, weights_only=True)["state"]["step"]
    assert per_epoch < checkpoint_step < killed_at < 2 * per_epoch  # lines past it are redone

    assert run.main([*argv, "--resume"]) == 0
    assert run.main(tiny_cli("evaluate", out)) == 0
    assert read_json(output(out, "summary"))["resumed_from_step"] == checkpoint_step
    assert loss_sequence(out) == loss_sequence(reference_run)  # bit for bit, no duplicates
    assert metric_bytes(out) == metric_bytes(reference_run)
    ours = torch.load(output(out, "best"), weights_only=True)["model"]
    theirs = torch.load(output(reference_run, "best"), weights_only=True)["model"]
    assert all(torch.equal(ours[k], theirs[k]) for k in theirs)


@pytest.fixture
def stopped_run(
    tmp_path: Path, tiny_cli: Argv, with_prepared_data: Callable[[Path], Path]
) -> tuple[Path, list[str]]:
    """A run that stopped at a non-finite loss: its work folder (and last.pt) stay behind.
    Returns the folder and its --set options.
    """
    out = with_prepared_data(tmp_path / "stopped")
    assert run.main(tiny_cli("train", out, *DIVERGING)) != 0
    assert work_file(out, LAST).is_file()
    return out, list(DIVERGING)


def test_strict_resume_under_other_settings_refuses_and_lists_them(
    stopped_run: tuple[Path, list[str]], tiny_cli: Argv, capsys: pytest.CaptureFixture[str]
) -> None:
    out, options = stopped_run
    before = work_file(out, LAST).read_bytes()
    capsys.readouterr()
    code = run.main(tiny_cli("train", out, "--resume", *options, "--set", "model.d_model=64"))
    error = capsys.readouterr().err
    assert code == 1 and "cannot resume" in error and "changed: model.d_model" in error
    assert "Traceback" not in error
    assert work_file(out, LAST).read_bytes() == before, "the checkpoint is kept as it was"


def test_resume_applies_settings_that_are_safe_to_change(
    stopped_run: tuple[Path, list[str]], tiny_cli: Argv, caplog: pytest.LogCaptureFixture
) -> None:
    out, options = stopped_run
    safe = ["--set", "train.checkpoint_every_steps=2", "--set", "train.sync_every_steps=5"]
    with caplog.at_level("INFO"):
        run.main(tiny_cli("train", out, "--resume", *options, *safe))
    assert re.search(
        r"resumed from \S+ at step \d+ \(changed on resume: "
        r"train.checkpoint_every_steps, train.sync_every_steps\)",
        caplog.text,
    )


@pytest.mark.slow
def test_workflow_resume_under_another_config_starts_fresh_and_says_why(
    stopped_run: tuple[Path, list[str]], tiny_cli: Argv, caplog: pytest.LogCaptureFixture
) -> None:
    out, _ = stopped_run
    # What the workflow passes: a changed learning rate would mix two runs, so start over.
    with caplog.at_level("WARNING"):
        argv = tiny_cli("train", out, "--resume", "restart-on-change", "--set", "train.lr=2e-3")
        assert run.main(argv) == 0
    assert "changed: train.lr, train.min_lr)" in caplog.text
    assert read_json(output(out, "summary"))["resumed_from_step"] is None
    assert not (out / work_folder("train")).exists(), "a finished run drops its work folder"


def test_a_second_trainer_on_the_same_folder_stops_at_once(
    tmp_path: Path,
    tiny_cli: Argv,
    with_prepared_data: Callable[[Path], Path],
    capsys: pytest.CaptureFixture[str],
) -> None:
    out = with_prepared_data(tmp_path / "busy")
    argv = tiny_cli("train", out, *RESUME_EPOCHS)
    first = subprocess.Popen(
        [sys.executable, str(PROJECT_DIR / "run.py"), *argv],
        cwd=PROJECT_DIR,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 120
        while not logged_steps_so_far(work_file(out, LOG_FILE)):
            assert first.poll() is None and time.monotonic() < deadline
            time.sleep(0.05)
        assert run.main(argv) == 1
        error = capsys.readouterr().err
        assert f"process {first.pid}" in error and "is in use" in error
        # Refused while the first still trains: it did not wait for the folder to be free.
        assert first.poll() is None, "the first run goes on"
    finally:
        first.kill()
        first.wait()


@pytest.mark.slow
def test_stages_refuse_inputs_that_differ_from_their_record(
    quick_run: Path, tmp_path: Path, tiny_cli: Argv, capsys: pytest.CaptureFixture[str]
) -> None:
    """An edited vocabulary, or a training log cut at a line boundary: evaluate names the
    file and how to rebuild it, instead of scoring with the wrong data.
    """
    for name, producer in (("vocab", "prepare"), ("train_log", "train")):
        out = tmp_path / name
        shutil.copytree(quick_run, out)
        damaged = output(out, name)
        lines = damaged.read_text(encoding="utf-8").splitlines(keepends=True)
        damaged.write_text("".join(lines[:-1]), encoding="utf-8")
        capsys.readouterr()
        assert run.main(tiny_cli("evaluate", out)) == 1
        error = capsys.readouterr().err
        assert str(damaged) in error and f"--forcerun {producer}" in error


@pytest.mark.slow
def test_evaluate_reads_a_checkpoint_from_before_a_key_existed(
    quick_run: Path, tmp_path: Path, tiny_cli: Argv, caplog: pytest.LogCaptureFixture
) -> None:
    """best.pt as a version of the code without model.norm_eps wrote it (and recorded it in
    its summary): the model is built at the key's default, and the log says so.
    """
    out = tmp_path / "old"
    shutil.copytree(quick_run, out)
    best = output(out, "best")
    checkpoint = torch.load(best, weights_only=True)
    del checkpoint["config"]["model"]["norm_eps"]
    save_checkpoint(best, checkpoint)
    summary = read_json(output(out, "summary"))
    summary["files"]["best"] = file_record(best)
    write_json(output(out, "summary"), summary)
    with caplog.at_level("WARNING"):
        assert run.main(tiny_cli("evaluate", out)) == 0
    assert "config key 'model.norm_eps' is missing" in caplog.text
    assert metric_bytes(out) == metric_bytes(quick_run)


def test_own_text_without_a_digest_is_named_and_recorded(
    tmp_path: Path, tiny_cli: Argv, capsys: pytest.CaptureFixture[str]
) -> None:
    """Any UTF-8 text trains with `data.sha256: null`; the manifest names it by its file
    and records its digest (a small made-up text: this checks the bookkeeping, no result).
    """
    text = tmp_path / "sonnets.txt"
    text.write_text("Shall I compare thee to a summer's day?\n" * 50, encoding="utf-8")
    out = tmp_path / "own"
    argv = tiny_cli("prepare", out, "--data-source", str(text), "--set", "data.sha256=null")
    assert run.main(argv) == 0
    manifest = read_json(output(out, "manifest"))
    assert manifest["dataset"] == "sonnets.txt" and manifest["verified"] is False
    assert manifest["source_sha256"] == hashlib.sha256(text.read_bytes()).hexdigest()
    # Without the null digest the same file is refused, and the message says how to allow it.
    assert run.main(tiny_cli("prepare", tmp_path / "refused", "--data-source", str(text))) != 0
    assert "data.sha256: null" in capsys.readouterr().err


@pytest.mark.slow
def test_sample_prompt_outside_the_vocabulary_names_the_characters(
    quick_run: Path, tiny_cli: Argv, capsys: pytest.CaptureFixture[str]
) -> None:
    before = output(quick_run, "samples").read_bytes()
    assert run.main(tiny_cli("sample", quick_run, "--set", "sample.prompt=JULIETé€")) == 2
    error = capsys.readouterr().err
    assert "sample.prompt" in error and "U+00E9" in error and "U+20AC" in error
    assert output(quick_run, "samples").read_bytes() == before


@pytest.mark.slow
def test_only_the_projects_own_errors_become_one_line_messages(
    prepared_run_dir: Path, tiny_cli: Argv, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A bug (here: PyTorch's ValueError for a shape mismatch, planted in the evaluator)
    keeps its traceback; it must not pass for a problem of the user's settings.
    """
    out = tmp_path / "bug"
    shutil.copytree(prepared_run_dir, out)

    def broken(*_args: object) -> None:
        raise ValueError("Expected input batch_size (64) to match target batch_size (32).")

    monkeypatch.setattr(evaluator, "evaluate", broken)  # the evaluate stage's, when it runs
    assert run.main(tiny_cli("train", out)) == 0
    with pytest.raises(ValueError, match="batch_size"):
        run.main(tiny_cli("evaluate", out))


def test_a_full_disk_gives_one_line_and_no_partial_data(
    small_tmpfs: Path, tiny_cli: Argv, capsys: pytest.CaptureFixture[str]
) -> None:
    """The prepared splits (2 MB) do not fit a real 64 KiB filesystem."""
    out = small_tmpfs / "out"
    assert run.main(tiny_cli("prepare", out)) == 1
    error = capsys.readouterr().err
    assert "no space left" in error and str(output(out, "train_ids")) in error
    assert "Traceback" not in error
    assert not output(out, "manifest").exists()
    assert not [p for p in out.rglob("*") if p.is_file()], "nothing half-written is left"
