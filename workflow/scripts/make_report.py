"""Write the implementation report `ml_res.md` (and its plots) from a run's JSON outputs.

    python workflow/scripts/make_report.py --run-dir results/quick \
        [--container IMAGE] [--container-used] [--snakemake-version X]

Reads only files: the project's JSON outputs, Snakemake's benchmark files, the GPU
monitor's summaries and series, `project/deviations.yaml`, and the project's source
(parsed, never imported) for the component table.
"""

from __future__ import annotations

import argparse
import ast
import csv
import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml
from tabulate import tabulate

from report_plots import plot_gpu, plot_losses

REPO = Path(__file__).resolve().parents[2]
PROJECT = REPO / "project"
COMPONENT_DIRS = ("data", "model", "training", "testing", "utils")
PLAN_ID = re.compile(r"\b([DMTE][1-9])\b")
GPU_STAGES = ("train", "evaluate", "sample")
STAGES = ("data", *GPU_STAGES)
MIB = 1024**2


# -- reading -------------------------------------------------------------------------


def read_json(path: Path) -> dict[str, Any]:
    with path.open(encoding="utf-8") as handle:
        return json.load(handle)


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    with path.open(encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def read_benchmark(path: Path) -> dict[str, str]:
    """Snakemake's benchmark TSV (columns s, max_rss, ...; one row per repeat)."""
    if not path.is_file():
        return {}
    with path.open(encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle, delimiter="\t"))
    return rows[0] if rows else {}


def read_series(path: Path) -> list[dict[str, str]]:
    if not path.is_file():
        return []
    with path.open(encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def read_monitors(run: Path) -> dict[str, dict[str, Any]]:
    return {
        stage: read_json(run / "monitor" / f"{stage}.json")
        for stage in GPU_STAGES
        if (run / "monitor" / f"{stage}.json").is_file()
    }


# -- formatting ----------------------------------------------------------------------


def mib(value: float | None, missing: str) -> str:
    return missing if value is None else f"{value / MIB:,.1f} MiB"


def number(value: float | None, digits: int = 4, missing: str = "n/a") -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return missing
    return f"{value:,.{digits}f}"


def table(rows: list[list[Any]], headers: list[str]) -> str:
    return tabulate(rows, headers=headers, tablefmt="github", disable_numparse=True)


# -- sections ------------------------------------------------------------------------


def components(summary: dict[str, Any]) -> str:
    """Each project module: its first docstring line, its plan ids, its parameters."""
    counts = summary.get("parameters_by_module", {})
    rows = []
    files = [PROJECT / "run.py"]
    for folder in COMPONENT_DIRS:
        files += sorted(p for p in (PROJECT / folder).glob("*.py") if p.name != "__init__.py")
    for path in files:
        relative = path.relative_to(PROJECT).as_posix()
        doc, ids = describe_module(path)
        params = counts.get(relative)
        rows.append(
            [
                f"`{relative}`",
                ", ".join(ids) or "—",
                doc,
                f"{params:,}" if params else "no parameters",
            ]
        )
    total = summary.get("parameters")
    note = f"\n\nTotal trainable parameters: {total:,}." if total else ""
    return table(rows, ["Module", "Plan ids", "Description", "Parameters"]) + note


def describe_module(path: Path) -> tuple[str, list[str]]:
    """First line of the module docstring and the plan ids named in any docstring."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    docs = [ast.get_docstring(tree) or ""]
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            docs.append(ast.get_docstring(node) or "")
    ids = sorted(set(PLAN_ID.findall(" ".join(docs))), key=lambda i: ("DMTE".index(i[0]), i))
    first = docs[0].strip().splitlines()[0] if docs[0].strip() else path.stem
    return first.replace("|", "\\|"), ids


def quick_validation(
    summary: dict[str, Any],
    metrics: dict[str, Any],
    monitors: dict[str, dict[str, Any]],
    benchmarks: dict[str, dict[str, str]],
) -> str:
    unigram = metrics["baselines"]["unigram"]["bits_per_char"]
    runtime = sum(float(b["s"]) for b in benchmarks.values() if b.get("s"))
    per_stage = ", ".join(
        f"{stage} {float(b['s']):.1f} s" for stage, b in benchmarks.items() if b.get("s")
    )
    rows = [
        [
            "Epochs",
            f"{summary['epochs_run']} ({summary['steps']} steps, "
            f"{summary['steps_per_epoch']} a epoch)",
        ],
        [
            "Final training loss",
            f"{summary['final_train_loss']:.4f} nats (mean of the last "
            f"{summary['loss_window_steps']} steps; the first "
            f"{summary['loss_window_steps']}: "
            f"{summary['first_train_loss']:.4f})",
        ],
        [
            "Validation metrics",
            f"loss {metrics['val_loss_nats']:.4f} nats, "
            f"{metrics['bits_per_char']:.4f} bits/char (unigram {unigram:.4f}),"
            f" perplexity {metrics['perplexity']:.3f}, top-1 "
            f"{metrics['top1_accuracy']:.3f}, top-5 "
            f"{metrics['top5_accuracy']:.3f}",
        ],
        ["Runtime", f"{runtime:.1f} s ({per_stage})" if per_stage else "n/a (no benchmarks)"],
        ["GPU memory peak", gpu_peak(summary, monitors.get("train"))],
    ]
    return table(rows, ["Field", "Value"])


def gpu_peak(summary: dict[str, Any], monitor: dict[str, Any] | None) -> str:
    reserved = summary["cost"].get("torch_max_memory_reserved_bytes")
    if monitor and monitor.get("gpu_available"):
        return (
            f"{mib(monitor['peak_job_memory_bytes'], 'n/a')} by NVML during training "
            f"({monitor['job_memory_source']}), {mib(reserved, 'n/a')} reserved by PyTorch"
        )
    reason = monitor.get("reason") if monitor else "no GPU monitor output"
    return f"n/a: no GPU ({reason}); training ran on {summary['environment']['device']}"


def bullet_list(items: list[str]) -> str:
    return "\n".join(f"- {item}" for item in items) if items else "- None."


def baselines(metrics: dict[str, Any]) -> str:
    rows = [
        [
            "CharGPT (best checkpoint)",
            number(metrics["val_loss_nats"]),
            number(metrics["bits_per_char"]),
            number(metrics["perplexity"], 3),
            number(metrics["top1_accuracy"], 3),
            number(metrics["top5_accuracy"], 3),
        ]
    ]
    for name, label in (("unigram", "Unigram (train split, add-one)"), ("uniform", "Uniform")):
        b = metrics["baselines"][name]
        rows.append(
            [
                label,
                number(b["loss_nats"]),
                number(b["bits_per_char"]),
                number(b["perplexity"], 3),
                "not computed (E4 defines loss only)",
                "not computed (E4 defines loss only)",
            ]
        )
    headers = ["Model", "Loss (nats/char)", "Bits/char", "Perplexity", "Top-1", "Top-5"]
    return (
        table(rows, headers) + f"\n\nScored characters: {metrics['scored_chars']:,} "
        f"(context {metrics['context']}, stride {metrics['stride']})."
    )


def stage_costs(
    stage_json: dict[str, dict[str, Any]],
    monitors: dict[str, dict[str, Any]],
    benchmarks: dict[str, dict[str, str]],
) -> str:
    rows = []
    for stage in STAGES:
        bench = benchmarks.get(stage, {})
        cost = stage_json[stage]["cost"]
        monitor = monitors.get(stage)
        nvml, difference = nvml_cells(monitor, cost)
        on_cuda = cost["torch_max_memory_reserved_bytes"] is not None
        torch_missing = "n/a (CPU run)" if not on_cuda else "n/a"
        rows.append(
            [
                stage,
                f"{float(bench['s']):.1f}" if bench.get("s") else f"{cost['wall_time_s']:.1f}",
                f"{float(bench['max_rss']):,.0f} MiB"
                if bench.get("max_rss", "NA") != "NA"
                else mib(cost["peak_host_rss_bytes"], "n/a"),
                nvml,
                mib(cost["torch_max_memory_reserved_bytes"], torch_missing),
                mib(cost["torch_max_memory_allocated_bytes"], torch_missing),
                difference,
                throughput(stage, stage_json[stage]),
            ]
        )
    headers = [
        "Stage",
        "Wall time (s)",
        "Peak host memory",
        "GPU peak (NVML, job)",
        "PyTorch reserved",
        "PyTorch allocated",
        "NVML − reserved",
        "Throughput",
    ]
    return table(rows, headers) + (
        "\n\nWall time and host memory come from Snakemake's benchmark files (the whole job, "
        "monitor included). NVML peaks are sampled every "
        f"{sampling_interval(monitors)}, so they are lower bounds; NVML − reserved is the CUDA "
        "context and any memory outside PyTorch's allocator."
    )


def nvml_cells(monitor: dict[str, Any] | None, cost: dict[str, Any]) -> tuple[str, str]:
    if monitor is None:
        return "not monitored (CPU-only stage)", "n/a (not monitored)"
    if not monitor.get("gpu_available"):
        missing = f"n/a (no GPU: {monitor.get('reason')})"
        return missing, missing
    peak = monitor["peak_job_memory_bytes"]
    reserved = cost["torch_max_memory_reserved_bytes"]
    difference = mib(peak - reserved, "n/a") if peak is not None and reserved else "n/a"
    return mib(peak, "n/a"), difference


def sampling_interval(monitors: dict[str, dict[str, Any]]) -> str:
    achieved = [m.get("achieved_memory_interval_s") for m in monitors.values()]
    achieved = [a for a in achieved if a]
    if achieved:
        return f"{max(achieved) * 1000:.0f} ms (achieved)"
    requested = [m.get("memory_interval_s") for m in monitors.values() if m]
    return f"{requested[0] * 1000:.0f} ms (requested)" if requested else "n/a"


def throughput(stage: str, record: dict[str, Any]) -> str:
    seconds = record["cost"]["wall_time_s"]
    if stage == "data":
        return f"{record['n_chars'] / seconds:,.0f} chars/s prepared"
    if stage == "train":
        rate = record.get("chars_per_s")
        return f"{rate:,.0f} chars/s trained" if rate else "n/a (too few steps)"
    if stage == "evaluate":
        return f"{record['scored_chars'] / seconds:,.0f} chars/s scored"
    return f"{record['num_chars'] / seconds:,.1f} chars/s generated"


def environment(
    summary: dict[str, Any], monitors: dict[str, dict[str, Any]], args: argparse.Namespace
) -> str:
    env = summary["environment"]
    device = next((m["device"] for m in monitors.values() if m.get("gpu_available")), None)
    no_gpu = "n/a (no GPU)"
    commit, dirty = git_state()
    rows = [
        ["Git commit", commit],
        ["Uncommitted changes", dirty],
        ["Python", env["python"]],
        ["PyTorch", env["torch"]],
        ["CUDA (PyTorch build)", env["torch_cuda"] or "none (CPU build)"],
        ["GPU", (device or {}).get("name") or env.get("gpu_name") or "none"],
        ["NVIDIA driver", (device or {}).get("driver_version") or no_gpu],
        ["Snakemake", args.snakemake_version],
        ["Container image", container_image(args)],
        ["Project config", summary["config_source"]],
        ["Device", env["device"]],
        ["CPU threads", str(env["cpu_threads"])],
    ]
    return table(rows, ["Item", "Value"])


def container_image(args: argparse.Namespace) -> str:
    """Which image the jobs ran in: Apptainer mode, our image under Compose, or none."""
    inside = os.environ.get("CHARGPT_IMAGE_VERSION")  # set by docker/Dockerfile
    if args.container_used:
        return f"{args.container} (snakemake --use-singularity)"
    if inside:
        revision = os.environ.get("CHARGPT_IMAGE_REVISION", "unknown")
        return f"chargpt-workflow {inside}, revision {revision} (Docker/Compose)"
    return f"not used (native run; configured: {args.container})"


def git_state() -> tuple[str, str]:
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True, check=True
        ).stdout.strip()
        status = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=REPO,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        return "unknown (no git repository or git not installed)", "unknown"
    return commit, "yes" if status.strip() else "no"


# -- the report ----------------------------------------------------------------------


def build_report(run: Path, args: argparse.Namespace) -> str:
    summary = read_json(run / "train_summary.json")
    metrics = read_json(run / "metrics.json")
    log = read_jsonl(run / "train_log.jsonl")
    stage_json = {
        "data": read_json(run / "data" / "manifest.json"),
        "train": summary,
        "evaluate": metrics,
        "sample": read_json(run / "samples.json"),
    }
    monitors = read_monitors(run)
    benchmarks = {s: read_benchmark(run / "benchmarks" / f"{s}.tsv") for s in STAGES}
    benchmarks = {s: b for s, b in benchmarks.items() if b}
    notes = yaml.safe_load(args.deviations.read_text(encoding="utf-8"))
    passed = read_json(run / "quick_validation.json")["checks"]
    known = list(notes["known_issues"])
    known += [f"Quick-validation check failed: {name}." for name, ok in passed.items() if not ok]
    if not any(m.get("gpu_available") for m in monitors.values()):
        reason = next((m.get("reason") for m in monitors.values()), "no monitor output")
        known.append(f"No GPU figures in this run: {reason}.")
    plot_losses(log, run / "plots" / "loss.png")
    plot_gpu(
        {s: read_series(run / "monitor" / f"{s}.csv") for s in GPU_STAGES},
        monitors,
        run / "plots" / "gpu.png",
    )
    samples = (run / "samples.txt").read_text(encoding="utf-8").rstrip("\n")
    fence = "~~~~"
    return "\n".join(
        [
            "# Implementation Report",
            "",
            f"Run `{run.name}`: a character-level GPT on Tiny Shakespeare "
            "(`../shared/plan.md`), generated by `workflow/scripts/make_report.py`.",
            "",
            "## Components Implemented",
            "",
            components(summary),
            "",
            "## Quick Validation Results",
            "",
            quick_validation(summary, metrics, monitors, benchmarks),
            "",
            table(
                [[name, "passed" if ok else "FAILED"] for name, ok in passed.items()],
                ["Check", "Result"],
            ),
            "",
            "## Deviations from Plan",
            "",
            bullet_list(list(notes["deviations"]) + summary["deviations"]),
            "",
            "## Known Issues",
            "",
            bullet_list(known),
            "",
            "## Metrics against Baselines",
            "",
            baselines(metrics),
            "",
            "## Cost per Stage",
            "",
            stage_costs(stage_json, monitors, benchmarks),
            "",
            "## Environment",
            "",
            environment(summary, monitors, args),
            "",
            "## Plots",
            "",
            "![Training and validation loss](plots/loss.png)",
            "",
            "![GPU memory and utilisation](plots/gpu.png)",
            "",
            "## Sample",
            "",
            fence,
            samples,
            fence,
            "",
        ]
    )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run-dir", type=Path, required=True, help="results/<run name>")
    parser.add_argument("--deviations", type=Path, default=PROJECT / "deviations.yaml")
    parser.add_argument("--container", default="none", help="the configured image")
    parser.add_argument(
        "--container-used",
        action="store_true",
        help="the jobs ran inside the image (--use-singularity)",
    )
    parser.add_argument("--snakemake-version", default="not run by Snakemake")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        text = build_report(args.run_dir, args)
    except FileNotFoundError as error:
        print(
            f"error: {error.filename} is missing; run the stages first (snakemake --cores all)",
            file=sys.stderr,
        )
        return 1
    out = args.run_dir / "ml_res.md"
    tmp = out.with_suffix(".md.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, out)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
