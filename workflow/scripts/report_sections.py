"""The sections of the implementation report `ml_res.md` (make_report.py assembles them),
and the formatting helpers that the report, the summary and the benchmark share.

Each section builder takes records already read (JSON as dicts) and returns Markdown.
"""

import math
import os
import subprocess
from typing import Any

from tabulate import tabulate

from report_plots import MIB

NOT_COMPUTED = "not computed"


# -- formatting ----------------------------------------------------------------------


def mib(value: float | None, missing: str) -> str:
    return missing if value is None else f"{value / MIB:,.1f} MiB"


def number(value: float | None, digits: int = 4, missing: str = "n/a") -> str:
    return formatted(value, f",.{digits}f", missing)


def formatted(value: float | None, spec: str, missing: str = "n/a") -> str:
    """`value` in a format spec (".4f"); `missing` for None or a value that is not finite."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return missing
    return format(value, spec)


def heading(figure: dict[str, Any]) -> str:
    """A metrics.json figure's label, and its unit in brackets if it has one."""
    return f"{figure['label']} ({figure['unit']})" if figure["unit"] else figure["label"]


def table(rows: list[list[Any]], headers: list[str]) -> str:
    return tabulate(rows, headers=headers, tablefmt="github", disable_numparse=True)


# -- sections ------------------------------------------------------------------------


def components(summary: dict[str, Any], modules: list[dict[str, Any]]) -> str:
    """Each project module (the project's component list): the first line of its docstring,
    its plan ids, its parameters.
    """
    counts = summary.get("parameters_by_module", {})
    rows = [
        [
            f"`{module['path']}`",
            ", ".join(module["plan_ids"]) or "—",
            module["doc"].replace("|", "\\|"),
            f"{counts[module['path']]:,}" if counts.get(module["path"]) else "no parameters",
        ]
        for module in modules
    ]
    total = summary.get("parameters")
    note = f"\n\nTotal trainable parameters: {total:,}." if total else ""
    return table(rows, ["Module", "Plan ids", "Description", "Parameters"]) + note


def quick_validation(
    summary: dict[str, Any],
    train_cost: dict[str, Any],
    metrics: dict[str, Any],
    train_monitor: dict[str, Any] | None,
    benchmarks: dict[str, dict[str, str]],
) -> str:
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
        ["Validation metrics", validation_metrics(metrics)],
        ["Runtime", f"{runtime:.1f} s ({per_stage})" if per_stage else "n/a (no benchmarks)"],
        ["GPU memory peak", gpu_peak(summary, train_cost, train_monitor)],
    ]
    return table(rows, ["Field", "Value"])


def validation_metrics(metrics: dict[str, Any]) -> str:
    """Every figure of metrics.json: its label, its value in its format, its unit."""
    return ", ".join(
        f"{f['label']} {formatted(f['value'], f['format'])} {f['unit']}".rstrip()
        for f in metrics["figures"]
    )


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
    """Every figure of the model beside the plan's reference models (metrics.json's
    `references`, by key), where they have one; the plan's note below.
    """
    references = metrics["references"]
    rows = [
        [
            heading(figure),
            formatted(figure["value"], figure["format"]),
            *(
                formatted(figure["baselines"].get(name), figure["format"], NOT_COMPUTED)
                for name in references
            ),
        ]
        for figure in metrics["figures"]
    ]
    headers = ["Figure", f"{metrics['model_name']} (best checkpoint)", *references.values()]
    note = f"\n\n{metrics['note']}" if metrics.get("note") else ""
    return table(rows, headers) + note


def stage_costs(
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
                throughput(cost.get("throughput")),
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


def throughput(rate: dict[str, Any] | None) -> str:
    """A cost record's `throughput` (harness/cost.py): "1,234 characters/s trained"."""
    if rate is None:
        return "n/a (not measured)"
    if rate["per_s"] is None:
        return f"n/a (too few steps to time; {rate['unit']} {rate['verb']})"
    digits = 1 if rate["per_s"] < 100 else 0
    return f"{rate['per_s']:,.{digits}f} {rate['unit']}/s {rate['verb']}"


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
    compiled = summary.get("compile")
    parts = [
        summary["precision"],
        "eager"
        if compiled is None
        else f"torch.compile ({compiled['mode']} mode, compile scope {compiled['scope']})",
    ]
    if summary.get("cuda_graph"):
        parts.append("the whole step replayed from one CUDA graph")
    world = summary.get("world_size", 1)
    parts.append(f"{world} processes (torchrun, DDP)" if world > 1 else "1 process")
    return ", ".join(parts)


def container_image(params: Any) -> str:
    """Which image the jobs ran in: Apptainer mode, our image under Compose, or none."""
    inside = os.environ.get("CHARGPT_IMAGE_VERSION")  # set by docker/Dockerfile
    if params.container_used:
        return f"{params.container} (snakemake --sdm apptainer)"
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
