"""The benchmark command end to end on the CPU (the tiny model of the workflow tests on the
real text, `--config`): every part measured, and the figures consistent with the runs they
come from.
Speeds are only printed (bench.md), never asserted: they depend on what else the machine runs.
"""

from __future__ import annotations

import argparse
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
from project import benchmark
from workflow_runs import REPO, SHARED_DATA, TINY_CONFIG, workflow_env

from make_report import read_json

# Time limits that the benchmark's runs never reach, even on a busy machine (with the CPU preset,
# one CPU epoch, takes about 2 minutes on 2 idle cores; one other CPU-heavy process made the
# test suite 3 times slower): the runs always finish. A run the cap stops has its own test.
NEVER_REACHED = ("--time-cap-s", "3600", "--variant-timeout-s", "1800")


@pytest.fixture(scope="module")
def bench(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("bench")
    tiny = out.parent / "tiny.yaml"
    tiny.write_text(TINY_CONFIG, encoding="utf-8")
    command = [sys.executable, "project/benchmark.py", str(out), "--device", "cpu"]
    command += ["--config", str(tiny)]
    result = subprocess.run(
        [*command, *NEVER_REACHED],
        cwd=REPO,
        env=workflow_env(),
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return out, json.loads((out / "bench.json").read_text(encoding="utf-8"))


@pytest.mark.slow
def test_every_step_variant_of_the_device_is_measured(bench: tuple[Path, dict]) -> None:
    _, report = bench
    machine, variants = report["machine"], report["variants"]
    assert report["failed"] == {}
    assert list(variants) == machine["variants_here"]
    chars_per_step = machine["batch_size"] * machine["block_size"]
    for figures in variants.values():
        assert figures["median_step_ms"] > 0
        step_s = figures["median_step_ms"] / 1e3
        assert figures["chars_per_s"] == pytest.approx(chars_per_step / step_s)
        assert figures["warmup_s"] > 0


@pytest.mark.slow
def test_each_variant_profile_accounts_for_its_step(bench: tuple[Path, dict]) -> None:
    out, report = bench
    for figures in report["variants"].values():
        profile = figures["profile"]
        times = [row["ms_per_step"] for row in profile["top"]]
        assert times and times == sorted(times, reverse=True)
        # The longest operators are a part of the busy time, which sums them all.
        assert 0 < sum(times) <= profile["busy_ms_per_step"]
    default = report["machine"]["default_variant"]
    text = (out / "bench.md").read_text(encoding="utf-8")
    assert f"## Where the step's time goes\n\nVariant `{default}`" in text
    assert report["variants"][default]["profile"]["top"][0]["name"] in text


@pytest.mark.slow
def test_target_runs_train_one_cpu_epoch_with_and_without_the_monitor(
    bench: tuple[Path, dict],
) -> None:
    out, report = bench
    target = report["target"]
    assert target["variant"] == report["machine"]["default_variant"]
    for label in ("plain", "monitored"):
        run, folder = target[label], out / "work" / label
        summary = read_json(folder / "train_summary.json")
        assert run["finished"] and not run["stopped_at_cap"]
        assert run["steps_run"] == summary["steps"] == summary["steps_per_epoch"]
        # The CPU preset does not reach the plan's target in one epoch.
        assert not run["reached"] and run["time_to_target_s"] is None
        assert run["best_val_loss"] == summary["best_val_loss"] > report["target_loss"]
        assert run["chars_per_s"] > 0
    nvml = target["monitored"]["nvml"]
    assert nvml["gpu_available"] is False and nvml["sampling_cpu_share"] is None
    ratio = target["plain"]["chars_per_s"] / target["monitored"]["chars_per_s"]
    assert target["monitor_ratio"] == pytest.approx(ratio)


@pytest.mark.slow
def test_evaluation_and_sampling_speed_come_from_the_stages(bench: tuple[Path, dict]) -> None:
    out, report = bench
    stages, folder = report["target"]["stages"], out / "work" / "plain"
    manifest = read_json(folder / "data" / "manifest.json")
    assert stages["evaluate"]["scored_chars"] == manifest["val_chars"] - 1
    assert stages["evaluate"]["evaluation_s"] > 0
    sample = read_json(folder / "samples.json")
    assert stages["sample"]["chars_per_s"] == pytest.approx(
        sample["num_chars"] / stages["sample"]["sampling_s"]
    )
    text = (out / "bench.md").read_text(encoding="utf-8")
    for heading in ("## Training step", f"## Time to validation loss {report['target_loss']} nats"):
        assert heading in text
    assert "Full-split evaluation:" in text and "Sampling:" in text


def test_a_target_run_stopped_at_its_cap_is_recorded_and_skips_the_stages(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The record of a target run that the time cap stops (1 s: it is still starting up):
    no error, nothing reached, and evaluation and sampling not run, each saying why.
    """
    monkeypatch.setenv("CHARGPT_DATA_MIRROR", str(SHARED_DATA))
    args = argparse.Namespace(device="cpu", config=None, target_loss=1.47, time_cap_s=1.0)
    folder, logs = tmp_path / "plain", tmp_path / "logs"
    logs.mkdir()
    run = benchmark.train_to_target(args, {}, folder, logs, on_cuda=False, monitored=False)
    assert run["stopped_at_cap"] and not run["finished"] and "error" not in run
    assert not run["reached"] and run["time_to_target_s"] is None
    stages = benchmark.evaluate_and_sample(args, folder, logs, False, run)
    why = "not run: the target run stopped at its time cap"
    assert stages == {"evaluate": {"error": why}, "sample": {"error": why}}
    target = {"variant": "graph", "plain": run, "monitored": run, "stages": stages}
    text = benchmark.markdown(
        {"target_loss": 1.47, "machine": {}, "variants": {}, "failed": {}, "target": target}
    )
    assert "| capped |" in text and f"({why})" in text


def test_sigterm_stops_the_benchmark_and_the_command_it_runs(tmp_path: Path) -> None:
    # As `timeout` or a scheduler ends it: the command it started (in a session of its own,
    # so no terminal signal reaches it) must not go on running.
    command = [sys.executable, "project/benchmark.py", str(tmp_path), "--device", "cpu"]
    benchmark = subprocess.Popen(command, cwd=REPO, env=workflow_env(), stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    children: list[psutil.Process] = []
    while not children:
        assert time.monotonic() < deadline, "the benchmark started no command"
        children = psutil.Process(benchmark.pid).children(recursive=True)
        time.sleep(0.1)
    benchmark.send_signal(signal.SIGTERM)
    assert benchmark.wait(timeout=40) == 128 + signal.SIGTERM
    gone, alive = psutil.wait_procs(children, timeout=5)
    assert not alive, f"still running after the benchmark stopped: {alive}"
    assert gone
