"""Write the implementation report `ml_res.md` (and its plots) from one run's outputs.

A Snakemake script (rule `report`): it reads exactly the files its rule gives it in
`snakemake.input`: the project's JSON outputs, the stages' cost records, Snakemake's
benchmark files, the GPU monitor's summaries and series, the resolved configuration,
`project/deviations.yaml`, and the project's modules (parsed, never imported) for the
component table; it writes `snakemake.output`.
"""

import ast
import csv
import hashlib
import json
import math
import os
import re
import subprocess
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml
from tabulate import tabulate

from report_plots import MIB, plot_gpu, plot_losses

PLAN_ID = re.compile(r"\b([DMTE][1-9])\b")


# -- reading -------------------------------------------------------------------------


def read_json(path: str | Path) -> dict[str, Any]:
    with Path(path).open(encoding="utf-8") as handle:
        return json.load(handle)


def read_jsonl(path: str | Path) -> list[dict[str, Any]]:
    with Path(path).open(encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def read_benchmark(path: Path) -> dict[str, str]:
    """Snakemake's benchmark TSV (columns s, max_rss, ...; one row per repeat)."""
    with path.open(encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle, delimiter="\t"))
    return rows[0] if rows else {}


def read_series(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def recorded(path: str, summary: dict[str, Any]) -> str:
    """`path` (the training log), checked against the SHA-256 the train stage recorded."""
    expected = summary["files"]["train_log"]["sha256"]
    if hashlib.sha256(Path(path).read_bytes()).hexdigest() != expected:
        raise SystemExit(
            f"error: {path} is not the log the train stage wrote (its SHA-256 differs from "
            "train_summary.json's record); rebuild it: snakemake --forcerun train"
        )
    return path


def by_stage(paths: Iterable[str], suffix: str) -> dict[str, Path]:
    """The files of one kind, keyed by stage (`cost/train.json` → "train"), in order."""
    return {Path(path).stem: Path(path) for path in paths if path.endswith(suffix)}


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


def components(summary: dict[str, Any], modules: list[str]) -> str:
    """Each project module: its first docstring line, its plan ids, its parameters."""
    counts = summary.get("parameters_by_module", {})
    rows = []
    for path in (Path(module) for module in modules if not module.endswith("__init__.py")):
        relative = path.relative_to("project").as_posix()
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
    train_cost: dict[str, Any],
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
            f"{summary['steps_per_epoch']} an epoch)",
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
        ["GPU memory peak", gpu_peak(summary, train_cost, monitors.get("train"))],
    ]
    return table(rows, ["Field", "Value"])


def gpu_peak(
    summary: dict[str, Any], train_cost: dict[str, Any], monitor: dict[str, Any] | None
) -> str:
    reserved = train_cost["torch_max_memory_reserved_bytes"]
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
    records: dict[str, dict[str, Any]],
    costs: dict[str, dict[str, Any]],
    monitors: dict[str, dict[str, Any]],
    benchmarks: dict[str, dict[str, str]],
) -> str:
    rows = []
    for stage, cost in costs.items():
        bench = benchmarks.get(stage, {})
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
                throughput(stage, records[stage], cost["wall_time_s"]),
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


def throughput(stage: str, record: dict[str, Any], seconds: float) -> str:
    if stage == "prepare":
        return f"{record['n_chars'] / seconds:,.0f} chars/s prepared"
    if stage == "train":
        rate = record.get("chars_per_s")
        return f"{rate:,.0f} chars/s trained" if rate else "n/a (too few steps)"
    if stage == "evaluate":
        return f"{record['scored_chars'] / seconds:,.0f} chars/s scored"
    return f"{record['num_chars'] / seconds:,.1f} chars/s generated"


def environment(
    summary: dict[str, Any],
    source: str,
    monitors: dict[str, dict[str, Any]],
    params: Any,
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
        ["Snakemake", params.snakemake_version],
        ["Container image", container_image(params)],
        ["Project config", source],
        ["Device", env["device"]],
        ["Training step", training_step(summary)],
        ["CPU threads", str(env["cpu_threads"])],
    ]
    return table(rows, ["Item", "Value"])


def training_step(summary: dict[str, Any]) -> str:
    """How the steps ran (T5): precision, compiled or eager, one CUDA graph a step or not,
    and on how many processes (the world size).
    """
    compiled = summary["compile"]
    parts = [
        summary["precision"],
        "eager"
        if compiled is None
        else f"torch.compile ({compiled['mode']} mode, compile scope {compiled['scope']})",
    ]
    if summary["cuda_graph"]:
        parts.append("the whole step replayed from one CUDA graph (train.cuda_graph)")
    world = summary["world_size"]
    parts.append(f"{world} processes (torchrun, DDP)" if world > 1 else "1 process")
    return ", ".join(parts)


def container_image(params: Any) -> str:
    """Which image the jobs ran in: Apptainer mode, our image under Compose, or none."""
    inside = os.environ.get("CHARGPT_IMAGE_VERSION")  # set by docker/Dockerfile
    if params.container_used:
        return f"{params.container} (snakemake --use-singularity)"
    if inside:
        revision = os.environ.get("CHARGPT_IMAGE_REVISION", "unknown")
        return f"chargpt-workflow {inside}, revision {revision} (Docker/Compose)"
    return f"not used (native run; configured: {params.container})"


def git_state() -> tuple[str, str]:
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
        status = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        return "unknown (no git repository or git not installed)", "unknown"
    return commit, "yes" if status.strip() else "no"


# -- the report ----------------------------------------------------------------------


def build_report(inputs: Any, outputs: Any, params: Any) -> str:
    """The report's Markdown; draws its plots on the way."""
    summary = read_json(inputs.summary)
    metrics = read_json(inputs.metrics)
    manifest = read_json(inputs.manifest)
    resolved = read_json(inputs.resolved)
    records = {
        "prepare": manifest,
        "train": summary,
        "evaluate": metrics,
        "sample": read_json(inputs.samples_meta),
    }
    costs = {stage: read_json(path) for stage, path in by_stage(inputs.costs, ".json").items()}
    monitors = {s: read_json(path) for s, path in by_stage(inputs.monitors, ".json").items()}
    series = {s: read_series(path) for s, path in by_stage(inputs.monitors, ".csv").items()}
    benchmarks = {
        s: read_benchmark(path) for s, path in by_stage(inputs.benchmarks, ".tsv").items()
    }
    benchmarks = {s: b for s, b in benchmarks.items() if b}
    notes = yaml.safe_load(Path(inputs.deviations).read_text(encoding="utf-8"))
    passed = read_json(inputs.checks)["checks"]
    known = list(notes["known_issues"])
    known += [f"Quick-validation check failed: {name}." for name, ok in passed.items() if not ok]
    if not any(m.get("gpu_available") for m in monitors.values()):
        reason = next((m.get("reason") for m in monitors.values()), "no monitor output")
        known.append(f"No GPU figures in this run: {reason}.")
    report_dir = Path(outputs.report).parent
    plots = Path(outputs.plots)
    plot_losses(read_jsonl(recorded(inputs.train_log, summary)), plots / "loss.png")
    if any(series.values()):
        plot_gpu(series, monitors, plots / "gpu.png")
        gpu_figure = f"![GPU memory and utilisation]({relative(plots / 'gpu.png', report_dir)})"
    else:
        gpu_figure = "No GPU plot: no GPU job has NVML samples to draw (see Known Issues)."
    samples = Path(inputs.samples).read_text(encoding="utf-8").rstrip("\n")
    fence = "~~~~"
    return "\n".join(
        [
            "# Implementation Report",
            "",
            f"Run `{run_label(outputs.report)}`: a character-level GPT (`../shared/plan.md`) "
            f"on {corpus(manifest)}, generated by `workflow/scripts/make_report.py`.",
            "",
            "## Components Implemented",
            "",
            components(summary, list(inputs.modules)),
            "",
            "## Quick Validation Results",
            "",
            quick_validation(summary, costs["train"], metrics, monitors, benchmarks),
            "",
            table(
                [[name, "passed" if ok else "FAILED"] for name, ok in passed.items()],
                ["Check", "Result"],
            ),
            "",
            "## Deviations from Plan",
            "",
            bullet_list(list(notes["deviations"]) + resolved["deviations"]),
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
            stage_costs(records, costs, monitors, benchmarks),
            "",
            "## Environment",
            "",
            environment(summary, resolved["source"], monitors, params),
            "",
            "## Plots",
            "",
            f"![Training and validation loss]({relative(plots / 'loss.png', report_dir)})",
            "",
            gpu_figure,
            "",
            "## Sample",
            "",
            fence,
            samples,
            fence,
            "",
        ]
    )


def run_label(report: str) -> str:
    """`results/<run>/seed<seed>/ml_res.md` → "<run>/seed<seed>"."""
    return Path(report).parent.relative_to(Path(report).parents[2]).as_posix()


def corpus(manifest: dict[str, Any]) -> str:
    """The text the run used: its name and digest, and whether the digest was checked."""
    check = (
        "verified against the configured digest"
        if manifest["verified"]
        else "not checked: data.sha256 is null"
    )
    return (
        f"`{manifest['dataset']}` ({manifest['n_chars']:,} characters, "
        f"SHA-256 `{manifest['source_sha256']}`, {check})"
    )


def relative(path: Path, start: Path) -> str:
    return Path(os.path.relpath(path, start)).as_posix()


def write_text(path: Path, text: str) -> None:
    """Write atomically, so an interrupted job leaves no half-written file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def main(smk: Any) -> None:
    out = Path(smk.output.report)
    write_text(out, build_report(smk.input, smk.output, smk.params))
    Path(smk.log[0]).write_text(f"wrote {out}\n", encoding="utf-8")


if "snakemake" in globals():
    main(snakemake)  # noqa: F821 (set by Snakemake's script directive)
