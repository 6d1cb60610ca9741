"""Compare runs across seeds: `results/summary.md` (a table) and `results/summary.png`.

A Snakemake script (rule `summary`, `script:` directive). Its input lists hold the
`metrics.json`, `train_summary.json` and `monitor/train.json` of every (run, seed), its
params the run name and seed of each, all in the same order. Each run's row gives the
mean ± sample standard deviation over its seeds: of every metrics.json figure marked
`summary` (a column each, named and formatted as the figure says), then of the training
figures.

No `from __future__` import: Snakemake puts its preamble above the script's first line.
"""

import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only, no display (clusters, containers, CI)
import matplotlib.pyplot as plt

from make_report import read_json, write_text
from report_plots import MIB, save
from report_sections import formatted, heading, table

TRAINING_HEADERS = [
    "Final train loss (nats)",
    "Train wall time (s)",
    "Steps/s",
    "Peak GPU memory (MiB)",
]
NO_GPU = "n/a (no GPU)"


@dataclass(frozen=True)
class SeedResult:
    """The figures of one (run, seed) pair."""

    run: str
    seed: str
    figures: dict[str, dict[str, Any]]  # metrics.json's summary figures, by name
    final_train_loss: float
    train_time_s: float
    steps_per_s: float
    peak_gpu_mib: float | None  # None: no GPU figure
    no_gpu_reason: str | None  # why the monitor had no GPU; None when it had one


# -- reading -------------------------------------------------------------------------


def seed_result(
    run: str, seed: object, metrics: dict[str, Any], train: dict[str, Any], monitor: dict[str, Any]
) -> SeedResult:
    gpu = bool(monitor.get("gpu_available"))
    peak = monitor.get("peak_job_memory_bytes") if gpu else None
    return SeedResult(
        run=run,
        seed=str(seed),
        figures={f["name"]: f for f in metrics["figures"] if f["summary"]},
        final_train_loss=train["final_train_loss"],
        train_time_s=train["train_time_s"],
        steps_per_s=train["steps"] / train["train_time_s"],
        peak_gpu_mib=None if peak is None else peak / MIB,
        no_gpu_reason=None if gpu else str(monitor.get("reason")),
    )


def load_results(inputs: Any, params: Any) -> list[SeedResult]:
    """One result per (run, seed), in the order of the rule's lists."""
    pairs = zip(
        params.runs, params.seeds, inputs.metrics, inputs.train, inputs.monitor, strict=True
    )
    return [
        seed_result(run, seed, read_json(metrics), read_json(train), read_json(monitor))
        for run, seed, metrics, train, monitor in pairs
    ]


def group_by_run(results: list[SeedResult]) -> dict[str, list[SeedResult]]:
    """Results by run name; runs in the order they first appear."""
    groups: dict[str, list[SeedResult]] = {}
    for result in results:
        groups.setdefault(result.run, []).append(result)
    return groups


# -- the table -----------------------------------------------------------------------


def columns(results: list[SeedResult]) -> list[dict[str, Any]]:
    """The summary figures of metrics.json, in its order (every seed has the same ones)."""
    return list(results[0].figures.values())


def seed_values(results: list[SeedResult], name: str) -> list[float]:
    """A summary figure's value in each result."""
    return [r.figures[name]["value"] for r in results]


def mean_sd(values: list[float], spec: str) -> str:
    """`mean ± sd` (sample standard deviation) in a format spec (",.4f"); the mean alone for
    a single value.
    """
    mean = formatted(statistics.mean(values), spec)
    if len(values) == 1:
        return mean
    return f"{mean} ± {formatted(statistics.stdev(values), spec)}"


def gpu_cell(results: list[SeedResult]) -> str:
    peaks = [r.peak_gpu_mib for r in results if r.peak_gpu_mib is not None]
    if not peaks:
        return NO_GPU
    if len(peaks) < len(results):
        return f"{mean_sd(peaks, ',.1f')} ({len(peaks)} of {len(results)} seeds)"
    return mean_sd(peaks, ",.1f")


def summary_row(run: str, results: list[SeedResult], figures: list[dict[str, Any]]) -> list[str]:
    return [
        run,
        str(len(results)),
        ", ".join(r.seed for r in results),
        *(mean_sd(seed_values(results, f["name"]), f["format"]) for f in figures),
        mean_sd([r.final_train_loss for r in results], ",.4f"),
        mean_sd([r.train_time_s for r in results], ",.1f"),
        mean_sd([r.steps_per_s for r in results], ",.2f"),
        gpu_cell(results),
    ]


def footnote(results: list[SeedResult]) -> str:
    note = (
        "Each cell is mean ± sd over the run's seeds (sd: sample standard deviation; the mean "
        "alone for one seed). Final train loss is the mean of the last training steps, "
        "steps/s is steps over train wall time; peak GPU memory is the job's memory sampled "
        "by NVML during training, a lower bound."
    )
    reasons = sorted({r.no_gpu_reason for r in results if r.no_gpu_reason is not None})
    return note + (f" No GPU figure: {'; '.join(reasons)}." if reasons else "")


def summary_markdown(results: list[SeedResult]) -> str:
    figures = columns(results)
    rows = [summary_row(run, group, figures) for run, group in group_by_run(results).items()]
    headers = ["Run", "n", "Seeds", *(heading(f) for f in figures), *TRAINING_HEADERS]
    return f"# Summary across runs and seeds\n\n{table(rows, headers)}\n\n{footnote(results)}\n"


# -- the plot ------------------------------------------------------------------------


def plot_summary(results: list[SeedResult], path: Path) -> None:
    """Each summary figure per run, a panel each: mean ± sd as an error bar, each seed as a
    point.
    """
    groups = group_by_run(results)
    figures = columns(results)
    width = max(4.0, 1.2 * len(groups) + 2)
    figure, panels = plt.subplots(
        1, len(figures), squeeze=False, figsize=(width * len(figures), 4.5)
    )
    for axes, shown in zip(panels[0], figures, strict=True):
        draw_panel(axes, groups, shown)
    save(figure, path)


def draw_panel(axes: Any, groups: dict[str, list[SeedResult]], shown: dict[str, Any]) -> None:
    for x, group in enumerate(groups.values()):
        points = seed_values(group, shown["name"])
        sd = statistics.stdev(points) if len(points) > 1 else None  # no bar for one seed
        first = x == 0  # label once, so the legend has one entry of each
        axes.errorbar(
            x,
            statistics.mean(points),
            yerr=sd,
            fmt="s",
            color="C0",
            capsize=6,
            label="mean ± sd over seeds" if first else None,
        )
        axes.plot(
            [x + 0.15] * len(points),
            points,
            "o",
            color="C3",
            mfc="none",
            label="one seed" if first else None,
        )
    axes.set_xticks(range(len(groups)), list(groups))
    axes.set_xlim(-0.6, len(groups) - 0.4)
    axes.set_xlabel("run")
    axes.set_ylabel(heading(shown))
    axes.set_title(f"{shown['label']} across seeds")
    axes.grid(axis="y", alpha=0.3)
    axes.legend()


# -- writing -------------------------------------------------------------------------


def main(inputs: Any, outputs: Any, params: Any) -> None:
    results = load_results(inputs, params)
    write_text(Path(outputs.table), summary_markdown(results))
    plot_summary(results, Path(outputs.plot))


if "snakemake" in globals():
    main(snakemake.input, snakemake.output, snakemake.params)  # noqa: F821
    write_text(Path(snakemake.log[0]), f"wrote {snakemake.output.table}\n")  # noqa: F821
