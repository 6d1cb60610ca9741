"""The plan's speed benchmark in one command: what training, evaluation and sampling cost
here.

    python project/benchmark.py OUT_DIR [--device D] [--config FILE] [--target-loss NATS]
        [--time-cap-s S] [--variant-timeout-s S]        (--help: what each means, defaults)

Writes OUT_DIR/bench.json and a readable OUT_DIR/bench.md, updated after each part; each
command's output goes to OUT_DIR/logs/. A SIGTERM stops the running command with it. On
CUDA it measures the plan's configuration; on the CPU the CPU preset, whose target runs
last one epoch (about 2 minutes in all on 2 cores); --config FILE measures that file's
settings over either (a model of your own sizes, a smaller one for a quick check). Every
figure comes from the project's own commands, each in a process of its own:

1. `run.py bench --variant V`, for every way to run the training step on this device: step
   time, characters a second, MFU, warm-up (compilation, graph capture), PyTorch's peak
   reserved memory, and a profile: the time each kernel takes a step.
2. Time to target: `run.py train` with `train.target_val_loss`, in the project's default
   variant (what a user's run trains in) and with an empty compile cache (as a first run),
   timed from just before its process starts to the end of the first full-split validation
   that reaches the target; stopped at --time-cap-s if it has not.
3. The same training wrapped in gpu_monitor.py: the monitor's cost, as the ratio of the two
   runs' training throughputs and as its sampling thread's CPU time, and NVML's peak memory
   beside PyTorch's.
4. `run.py evaluate` and `run.py sample` on the model of 2: the full-split evaluation time
   and the sampling speed, from their cost records; if 2 did not finish (stopped at the cap,
   or failed), each records why it did not run.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from harness.io import read_json, read_jsonl, write_text
from tabulate import tabulate

PLAN_DIR = Path(__file__).resolve().parent
REPO = PLAN_DIR.parent
RUN = [sys.executable, str(PLAN_DIR / "run.py")]
# The workflow's GPU monitor, whose own cost part 3 measures.
MONITOR = [sys.executable, str(REPO / "workflow" / "scripts" / "gpu_monitor.py")]
MIB = 1024 * 1024


def mib(value: float | None, missing: str) -> str:
    return missing if value is None else f"{value / MIB:,.1f} MiB"


def number(value: float | None, digits: int = 4, missing: str = "n/a") -> str:
    return missing if value is None or not math.isfinite(value) else f"{value:,.{digits}f}"


def table(rows: list[list[Any]], headers: list[str]) -> str:
    return tabulate(rows, headers=headers, tablefmt="github", disable_numparse=True)


class Command:
    """One command of the benchmark, run to its end or its time limit; output to a log."""

    def __init__(
        self,
        name: str,
        argv: list[str],
        logs: Path,
        timeout_s: float,
        env: dict[str, str] | None = None,
    ) -> None:
        self.log = logs / f"{name}.log"
        self.started = time.time()
        with self.log.open("w", encoding="utf-8") as log:
            process = subprocess.Popen(
                argv,
                cwd=REPO,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            try:
                self.code = process.wait(timeout=timeout_s)
                self.timed_out = False
            except subprocess.TimeoutExpired:
                self.code = stop_group(process)
                self.timed_out = True
            except BaseException:  # SIGTERM (see main) or Ctrl-C: the command stops too
                stop_group(process)
                raise
        self.wall_s = time.time() - self.started
        state = "stopped at its time limit" if self.timed_out else f"exit {self.code}"
        print(f"{name}: {state} after {self.wall_s:.1f} s (log: {self.log})", flush=True)

    @property
    def ok(self) -> bool:
        return self.code == 0 and not self.timed_out

    def failure(self) -> str:
        """Why it failed, with the log's last line."""
        lines = self.log.read_text(encoding="utf-8", errors="replace").strip().splitlines()
        what = "time limit" if self.timed_out else f"exit {self.code}"
        return f"{what}: {lines[-1].strip() if lines else '(no output)'}"


def stop_group(process: subprocess.Popen) -> int:
    """SIGTERM the command's process group (torch.compile's workers too), then SIGKILL."""
    os.killpg(process.pid, signal.SIGTERM)
    try:
        return process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        return process.wait()


# -- 1. the step variants ---------------------------------------------------------------


def measure_variants(args: argparse.Namespace, work: Path, logs: Path) -> dict[str, Any]:
    """Each variant in its own process; the first (eager) says which ones this device runs."""
    results: dict[str, Any] = {}
    failed: dict[str, str] = {}
    machine: dict[str, Any] = {}
    queue = ["eager"]
    while queue:
        name = queue.pop(0)
        target = work / f"bench-{name}.json"
        argv = [*RUN, "bench", *config_option(args), "--device", args.device]
        argv += ["--out-dir", str(work)]
        command = Command(
            f"bench-{name}",
            [*argv, "--variant", name, "--bench", str(target)],
            logs,
            args.variant_timeout_s,
        )
        if not command.ok:
            failed[name] = command.failure()
            continue
        report = read_json(target)
        results.update(report.pop("variants"))
        if not machine:
            machine = report
            queue = [v for v in report["variants_here"] if v != name]
    return {"machine": machine, "variants": results, "failed": failed}


# -- 2-4. training to the target, under the monitor, then evaluation and sampling ---------


def config_option(args: argparse.Namespace) -> list[str]:
    """run.py's --config FILE, where one was given (else the plan's, or the CPU preset)."""
    return [] if args.config is None else ["--config", str(args.config.resolve())]


def stage_options(args: argparse.Namespace, folder: Path, on_cuda: bool) -> list[str]:
    # The CPU preset would take hours to reach the plan's target: one epoch there.
    epochs = [] if on_cuda else ["--epochs", "1"]
    return [*config_option(args), "--device", args.device, "--out-dir", str(folder), *epochs]


def cold_compile(folder: Path) -> dict[str, str]:
    """The environment of a run that compiles from nothing, as a user's first run does: an
    empty Inductor cache of its own (Triton's kernels are kept inside it), not the one the
    step timings filled.
    """
    env = {key: value for key, value in os.environ.items() if key != "TRITON_CACHE_DIR"}
    return {**env, "TORCHINDUCTOR_CACHE_DIR": str(folder / "compile-cache")}


def train_to_target(
    args: argparse.Namespace,
    settings: dict[str, Any],
    folder: Path,
    logs: Path,
    on_cuda: bool,
    monitored: bool,
) -> dict[str, Any]:
    options = stage_options(args, folder, on_cuda)
    prepare = Command(f"{folder.name}-prepare", [*RUN, "prepare", *options], logs, 300)
    if not prepare.ok:
        return {"error": prepare.failure()}
    sets = [f"train.{key}={value}" for key, value in settings.items()]
    sets.append(f"train.target_val_loss={args.target_loss}")
    argv = [*RUN, "train", *options, *(arg for item in sets for arg in ("--set", item))]
    prefix = folder / "monitor" / "train"
    if monitored:
        argv = [*MONITOR, "--out-prefix", str(prefix), "--", *argv]
    command = Command(f"{folder.name}-train", argv, logs, args.time_cap_s, cold_compile(folder))
    log_file = folder / "train_log.jsonl"
    if not log_file.is_file():  # stopped before the end: the log is still in the work folder
        log_file = folder / "train.resume" / "train_log.jsonl"
    records = read_jsonl(log_file) if log_file.is_file() else []
    vals = [r for r in records if r["kind"] == "val"]
    reached = next((r for r in vals if r["val_loss"] <= args.target_loss), None)
    throughputs = [r["chars_per_s"] for r in records if r["kind"] == "train"]
    result: dict[str, Any] = {
        "finished": command.ok,
        "stopped_at_cap": command.timed_out,
        "process_wall_s": command.wall_s,
        "reached": reached is not None,
        "time_to_target_s": reached["time"] - command.started if reached else None,
        "steps_to_target": reached["step"] if reached else None,
        "val_loss_at_target": reached["val_loss"] if reached else None,
        "best_val_loss": min((r["val_loss"] for r in vals), default=None),
        "steps_run": max((r["step"] for r in records), default=0),
        "validations": len(vals),
        # Each train record holds its interval's throughput; the median leaves out warm-up.
        "chars_per_s": statistics.median(throughputs) if throughputs else None,
    }
    if not command.ok and not command.timed_out:
        result["error"] = command.failure()
    if command.ok:
        cost = read_json(folder / "cost" / "train.json")
        result["torch_max_memory_reserved_bytes"] = cost["torch_max_memory_reserved_bytes"]
    if monitored and prefix.with_suffix(".json").is_file():
        nvml = read_json(prefix.with_suffix(".json"))
        result["nvml"] = {
            key: nvml.get(key)
            for key in (
                "gpu_available",
                "reason",
                "peak_job_memory_bytes",
                "peak_device_used_bytes",
                "sampling_cpu_s",
                "sampling_cpu_share",
            )
        }
    return result


def evaluate_and_sample(
    args: argparse.Namespace, folder: Path, logs: Path, on_cuda: bool, trained: dict[str, Any]
) -> dict[str, Any]:
    """Evaluation and sampling of the model that the target run `trained` wrote in `folder`."""
    figures = {"evaluate": ("evaluation_s",), "sample": ("sampling_s", "chars_per_s")}
    if not trained.get("finished"):
        ended = "stopped at its time cap" if trained.get("stopped_at_cap") else "failed"
        return {stage: {"error": f"not run: the target run {ended}"} for stage in figures}
    options = stage_options(args, folder, on_cuda)
    result: dict[str, Any] = {}
    for stage, names in figures.items():
        command = Command(f"{folder.name}-{stage}", [*RUN, stage, *options], logs, 300)
        if command.ok:
            cost = read_json(folder / "cost" / f"{stage}.json")
            result[stage] = {name: cost[name] for name in names}
        else:
            result[stage] = {"error": command.failure()}
    if "error" not in result["evaluate"]:
        metrics = read_json(folder / "metrics.json")
        result["evaluate"]["scored_chars"] = metrics["scored_chars"]
    return result


def fastest(variants: dict[str, Any]) -> str:
    return min(variants, key=lambda v: variants[v]["median_step_ms"])


def shipped_variant(bench: dict[str, Any]) -> str:
    """The variant the project's defaults train in, or the fastest if that one failed."""
    default = bench["machine"]["default_variant"]
    return default if default in bench["variants"] else fastest(bench["variants"])


# -- bench.md ---------------------------------------------------------------------------

NAME_WIDTH = 72  # kernel names are long (Triton's name every fused operation)


def percent(share: float | None, digits: int) -> str:
    return "n/a" if share is None else f"{share:.{digits}%}"


def profile_section(variants: dict[str, Any], default: str | None) -> list[str]:
    """The default variant's profile; if the profiler saw none of its kernels (a CUDA graph's
    replay may hide them), the fastest variant's whose kernels it saw.
    """
    seen = sorted(
        (name for name, r in variants.items() if r["profile"]["top"]),
        key=lambda name: (name != default, variants[name]["median_step_ms"]),
    )
    if not seen:
        return []
    name = seen[0]
    figures = variants[name]
    profile = figures["profile"]
    busy = profile["busy_ms_per_step"]
    unit = profile["unit"]
    rows = [
        [
            f"`{r['name'][:NAME_WIDTH]}`",
            number(r["ms_per_step"], 3),
            percent(r["ms_per_step"] / busy, 1),
            number(r["calls_per_step"], 0),
        ]
        for r in profile["top"]
    ]
    return [
        "",
        "## Where the step's time goes",
        "",
        f"Variant `{name}`, {profile['steps']} steps under the PyTorch profiler: its {unit}s "
        f"keep the device busy {number(busy, 2)} ms a step, against a measured step of "
        f"{number(figures['median_step_ms'], 2)} ms; the {len(rows)} longest {unit}s:",
        "",
        table(rows, [unit, "ms a step", "of busy time", "calls a step"]),
    ]


def markdown(bench: dict[str, Any]) -> str:
    machine, variants = bench["machine"], bench["variants"]
    lines = [
        "# Benchmark",
        "",
        f"Device: {machine.get('gpu_name') or machine.get('device', 'unknown')}; torch "
        f"{machine.get('torch')} (CUDA {machine.get('torch_cuda')}), {machine.get('precision')}; "
        f"B={machine.get('batch_size')} T={machine.get('block_size')} "
        f"L={machine.get('n_layer')} d={machine.get('d_model')}.",
        "",
        "## Training step",
        "",
        f"{machine.get('warmup_steps')} warm-up steps, then {machine.get('measured_steps')} "
        "timed; MFU against a peak of "
        f"{number(machine.get('peak_tflops'), 0)} TFLOP/s.",
        "",
        table(
            [
                [
                    name,
                    number(r["median_step_ms"], 2),
                    number(r["chars_per_s"], 0),
                    number(r["achieved_tflops"], 1),
                    percent(r["mfu"], 1),
                    number(r["warmup_s"], 1),
                    mib(r["max_memory_reserved_bytes"], "n/a"),
                ]
                for name, r in variants.items()
            ],
            ["variant", "step ms", "chars/s", "TFLOP/s", "MFU", "warm-up s", "torch reserved"],
        ),
        "",
    ]
    lines += [f"- {name} failed: {why}" for name, why in bench["failed"].items()]
    lines += [
        f"- {name}: no profile ({r['profile']['error']})"
        for name, r in variants.items()
        if "error" in r["profile"]
    ]
    if variants:
        default = machine["default_variant"]
        lines += [
            f"- Fastest: `{fastest(variants)}`; the default configuration runs `{default}`.",
            *profile_section(variants, default),
        ]
    target = bench.get("target")
    if target:
        plain, watched = target["plain"], target["monitored"]
        reserved = mib(plain.get("torch_max_memory_reserved_bytes"), "n/a")
        nvml = watched.get("nvml") or {}
        nvml_peak = mib(nvml.get("peak_job_memory_bytes"), "n/a")
        lines += [
            "",
            f"## Time to validation loss {bench['target_loss']} nats",
            "",
            f"The default configuration, variant `{target['variant']}`, compiling from an "
            "empty cache as a first run does; from before the process started to the end of "
            "the first full-split validation at or below the target.",
            "",
            table(
                [
                    [
                        label,
                        "yes" if r.get("reached") else "no",
                        number(r.get("time_to_target_s"), 1, "-"),
                        r.get("steps_to_target") or "-",
                        number(r.get("best_val_loss"), 4),
                        r.get("steps_run", "-"),
                        number(r.get("process_wall_s"), 1),
                        number(r.get("chars_per_s"), 0),
                        r.get("error", "capped" if r.get("stopped_at_cap") else ""),
                    ]
                    for label, r in (("without monitor", plain), ("with gpu_monitor.py", watched))
                ],
                [
                    "run",
                    "reached",
                    "s to target",
                    "step",
                    "best val loss",
                    "steps",
                    "process s",
                    "chars/s",
                    "note",
                ],
            ),
            "",
            f"- Monitor overhead: throughput ratio without/with the monitor "
            f"{number(target.get('monitor_ratio'), 4)}; its sampling thread's CPU time: "
            + (
                "none (no GPU to sample)"
                if nvml.get("sampling_cpu_s") is None
                else f"{nvml['sampling_cpu_s']:.2f} s, {nvml['sampling_cpu_share']:.2%} of one core"
            )
            + ".",
            f"- Peak memory: PyTorch reserved {reserved}; NVML job peak {nvml_peak}.",
        ]
        stages = target.get("stages", {})
        evaluate, sample = stages.get("evaluate", {}), stages.get("sample", {})
        lines += [
            f"- Full-split evaluation: {number(evaluate.get('evaluation_s'), 3)} s for "
            f"{evaluate.get('scored_chars', 'n/a')} characters"
            + (f" ({evaluate['error']})" if "error" in evaluate else ""),
            f"- Sampling: {number(sample.get('chars_per_s'), 0)} characters a second "
            f"({number(sample.get('sampling_s'), 2)} s)"
            + (f" ({sample['error']})" if "error" in sample else ""),
        ]
    return "\n".join(lines) + "\n"


def save(out_dir: Path, bench: dict[str, Any]) -> None:
    """bench.json and bench.md as far as measured: kept if a later part runs out of time."""
    write_text(out_dir / "bench.json", json.dumps(bench, indent=2) + "\n")
    write_text(out_dir / "bench.md", markdown(bench))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("out_dir", type=Path, help="where bench.json, bench.md and logs/ go")
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    parser.add_argument(
        "--config",
        type=Path,
        help="a YAML file of the plan's keys that every command runs with (run.py --config)",
    )
    parser.add_argument(
        "--target-loss", type=float, default=1.47, help="validation loss to reach, in nats"
    )
    parser.add_argument(
        "--time-cap-s", type=float, default=240.0, help="time limit of each target run"
    )
    parser.add_argument(
        "--variant-timeout-s", type=float, default=150.0, help="time limit of each step variant"
    )
    args = parser.parse_args(argv)
    # `timeout`, a scheduler: the command running then stops too (Command), not only this one.
    signal.signal(signal.SIGTERM, lambda signum, _frame: sys.exit(128 + signum))
    work, logs = args.out_dir / "work", args.out_dir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    bench: dict[str, Any] = {"target_loss": args.target_loss, **measure_variants(args, work, logs)}
    save(args.out_dir, bench)
    if bench["variants"]:
        on_cuda = bench["machine"]["device"].startswith("cuda")
        variants = bench["variants"]
        name = shipped_variant(bench)
        target: dict[str, Any] = {"variant": name, "plain": {}, "monitored": {}}
        bench["target"] = target
        for label, monitored in (("plain", False), ("monitored", True)):
            folder = work / label
            target[label] = train_to_target(
                args, variants[name]["settings"], folder, logs, on_cuda, monitored
            )
            save(args.out_dir, bench)
        plain, watched = target["plain"].get("chars_per_s"), target["monitored"].get("chars_per_s")
        target["monitor_ratio"] = plain / watched if plain and watched else None
        target["stages"] = evaluate_and_sample(args, work / "plain", logs, on_cuda, target["plain"])
        save(args.out_dir, bench)
    print((args.out_dir / "bench.md").read_text(encoding="utf-8"))
    return 0 if bench["variants"] and not bench["failed"] else 1


if __name__ == "__main__":
    sys.exit(main())
