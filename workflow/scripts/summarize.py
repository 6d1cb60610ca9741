"""Compare runs across seeds: `results/summary.md` (tables) and `results/summary.png`.

A Snakemake script (rule `summary`, `script:` directive). Its input lists hold the
`metrics.json`, `train_summary.json` and `monitor/train.json` of every (run, seed), its
params the run name and seed of each, all in the same order, and the baseline run. The first
table gives each run's mean ± sample standard deviation over its seeds: of every
metrics.json figure marked `summary` (a column each, named and formatted as the figure
says), then of the training figures. The next give each summary figure's 95 % interval of
the mean per run, then each run against the baseline: the difference, its 95 % interval and
a p-value (comparison.py), or why no claim can be made; a reading guide follows.

No `from __future__` import: Snakemake puts its preamble above the script's first line.
"""

import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only, no display (clusters, containers, CI)
import matplotlib.pyplot as plt
from harness.errors import one_line_errors
from harness.io import write_text

from comparison import FEW_SEEDS, MIN_SEEDS, Comparison, Estimate, compare, estimate
from make_report import read_json
from report_plots import MIB, save
from report_sections import formatted, heading, table

TRAINING_HEADERS = [
    "Final train loss (nats)",
    "Train wall time (s)",
    "Steps/s",
    "Peak GPU memory (MiB)",
]
INTERVAL_HEADERS = ["Run", "Figure", "n", "Mean", "sd", "95 % CI of the mean"]
COMPARISON_HEADERS = [
    "Run",
    "Figure",
    "n (run, baseline)",
    "Difference (run − baseline)",
    "95 % CI of the difference",
    "p",
    "Test",
]
NO_GPU = "n/a (no GPU)"
READING_GUIDE = f"""\
## Reading the comparison

- **95 % CI of the mean**: Student's t interval over the run's seeds (n − 1 degrees of
  freedom). Repeated with new seeds, 95 % of such intervals would cover the run's true
  mean (its mean over all seeds). It shows seed-to-seed variation only: the data, the
  split and the settings are fixed.
- **Difference**: the run's mean minus the baseline's, in the figure's unit (whether
  higher or lower is better depends on the figure). Its 95 % CI covers the true difference
  with 95 % confidence; when it excludes 0, p < 0.05.
- **p**: two-sided; how often a difference at least this large would arise by chance if
  the two runs had the same true mean. A large p says the seeds cannot tell the runs
  apart, not that they are equal. Each p holds for its own comparison (a row), with no
  multiple-comparison correction: of k rows where the runs do not differ, about 0.05·k
  still fall below 0.05 by chance (for a family-wise 5 %, compare each p with 0.05 / k).
- **Test**: the paired t-test on the per-seed differences when both runs have exactly the
  same seeds (a seed fixes the initialisation and the batch order), Welch's t-test
  (unequal variances) otherwise; then t and its degrees of freedom (df).
- **{FEW_SEEDS}**: below {MIN_SEEDS} seeds in a run (in either run, for a comparison) the
  standard deviation rests on at most one degree of freedom, too little for an interval
  or a test, so no number is given. Add seeds (`seeds:` in config/config.yaml) for one.
"""


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


def baseline_run(groups: dict[str, list[SeedResult]], baseline: str | None) -> str:
    """The run the others are compared with: `baseline`, or the first run when it is None."""
    if baseline is None:
        return next(iter(groups))
    if baseline not in groups:
        raise ValueError(f"baseline {baseline!r} is none of the runs: {', '.join(groups)}")
    return baseline


# -- the table of means --------------------------------------------------------------


def columns(results: list[SeedResult]) -> list[dict[str, Any]]:
    """The summary figures of metrics.json, in its order (every seed has the same ones)."""
    return list(results[0].figures.values())


def seed_values(results: list[SeedResult], name: str) -> list[float]:
    """A summary figure's value in each result."""
    return [r.figures[name]["value"] for r in results]


def by_seed(results: list[SeedResult], name: str) -> dict[str, float]:
    """A summary figure's value by seed."""
    return {r.seed: r.figures[name]["value"] for r in results}


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


# -- the intervals and the comparison ------------------------------------------------


def interval(low: float | None, high: float | None, spec: str) -> str:
    """`[low, high]` in a format spec; FEW_SEEDS where there is no interval."""
    if low is None or high is None:
        return FEW_SEEDS
    return f"[{formatted(low, spec)}, {formatted(high, spec)}]"


def run_label(run: str, baseline: str) -> str:
    return f"{run} (baseline)" if run == baseline else run


def interval_rows(
    groups: dict[str, list[SeedResult]], figures: list[dict[str, Any]], baseline: str
) -> list[list[str]]:
    """A row per summary figure and run: n, mean, sd and the 95 % interval of the mean."""
    rows = []
    for figure in figures:
        for run, group in groups.items():
            shown = estimate(seed_values(group, figure["name"]))
            spec = figure["format"]
            rows.append(
                [
                    run_label(run, baseline),
                    heading(figure),
                    str(shown.n),
                    formatted(shown.mean, spec),
                    "n/a (one seed)" if shown.sd is None else formatted(shown.sd, spec),
                    interval(shown.low, shown.high, spec),
                ]
            )
    return rows


def comparison_cells(result: Comparison, spec: str) -> list[str]:
    """Difference, its interval, p and the test, or the reason for no claim in their place."""
    if result.reason is not None:
        return [result.reason, result.reason, result.reason, f"{result.test}: not run"]
    return [
        formatted(result.difference, spec),
        interval(result.low, result.high, spec),
        p_value(result.p),
        f"{result.test}, t = {result.t:.2f}, df = {result.df:.3g}",
    ]


def p_value(p: float | None) -> str:
    return formatted(p, ".3f") if p is None or p >= 0.001 else "< 0.001"


def comparison_rows(
    groups: dict[str, list[SeedResult]], figures: list[dict[str, Any]], baseline: str
) -> list[list[str]]:
    """A row per summary figure and run other than the baseline."""
    rows = []
    for figure in figures:
        reference = by_seed(groups[baseline], figure["name"])
        for run, group in groups.items():
            if run == baseline:
                continue
            result = compare(by_seed(group, figure["name"]), reference)
            rows.append(
                [
                    run,
                    heading(figure),
                    f"{result.n_run}, {result.n_baseline}",
                    *comparison_cells(result, figure["format"]),
                ]
            )
    return rows


def comparison_section(
    groups: dict[str, list[SeedResult]], figures: list[dict[str, Any]], baseline: str
) -> str:
    """The table of every run against the baseline, or one sentence where none can be made."""
    title = f"## Each run against the baseline, {baseline}\n\n"
    if len(groups) == 1:
        return f"{title}Only one run: nothing to compare it with."
    counts = {run: len(group) for run, group in groups.items()}
    others = [n for run, n in counts.items() if run != baseline]
    if counts[baseline] < MIN_SEEDS or max(others) < MIN_SEEDS:
        seeds = ", ".join(f"{run} {n}" for run, n in counts.items())
        return (
            f"{title}No claim is possible: a comparison needs at least {MIN_SEEDS} seeds in "
            f"both runs (seeds per run: {seeds})."
        )
    return title + table(comparison_rows(groups, figures, baseline), COMPARISON_HEADERS)


def best_run(
    groups: dict[str, list[SeedResult]],
    figures: list[dict[str, Any]],
    objective: dict[str, str] | None,
) -> str:
    """The run that the plan's objective (its figure and direction) ranks first by its mean
    over the seeds, as a sentence; "" without an objective.
    """
    if objective is None:
        return ""
    named = [f for f in figures if f["name"] == objective["figure"]]
    if not named:
        return f"The plan's objective, `{objective['figure']}`, is no summary figure.\n\n"
    (figure,) = named
    means = {
        run: statistics.mean(seed_values(group, figure["name"])) for run, group in groups.items()
    }
    choose = max if objective["direction"] == "maximize" else min
    best = choose(means, key=lambda run: means[run])
    return (
        f"The plan's objective is {heading(figure)}, to {objective['direction']}: the best run "
        f"by its mean is `{best}` ({formatted(means[best], figure['format'])}).\n\n"
    )


def summary_markdown(
    results: list[SeedResult],
    baseline: str | None = None,
    objective: dict[str, str] | None = None,
) -> str:
    """The whole summary.md; `baseline` None: the first run; `objective`: the plan's
    (harness/plan.py: Objective), which names the best run.
    """
    groups = group_by_run(results)
    base = baseline_run(groups, baseline)
    figures = columns(results)
    rows = [summary_row(run, group, figures) for run, group in groups.items()]
    headers = ["Run", "n", "Seeds", *(heading(f) for f in figures), *TRAINING_HEADERS]
    intervals = table(interval_rows(groups, figures, base), INTERVAL_HEADERS)
    return (
        f"# Summary across runs and seeds\n\n{table(rows, headers)}\n\n{footnote(results)}\n\n"
        f"{best_run(groups, figures, objective)}"
        f"## 95 % interval of each run's mean\n\n{intervals}\n\n"
        f"{comparison_section(groups, figures, base)}\n\n{READING_GUIDE}"
    )


# -- the plot ------------------------------------------------------------------------


def plot_summary(results: list[SeedResult], path: Path, baseline: str | None = None) -> None:
    """Each summary figure per run, a panel each: the mean with its 95 % interval as an error
    bar (none below MIN_SEEDS seeds), each seed as a point, the baseline's interval (or its
    mean) across the panel.
    """
    groups = group_by_run(results)
    base = baseline_run(groups, baseline)
    figures = columns(results)
    width = max(4.0, 1.2 * len(groups) + 2)
    figure, panels = plt.subplots(
        1, len(figures), squeeze=False, figsize=(width * len(figures), 4.5)
    )
    for axes, shown in zip(panels[0], figures, strict=True):
        draw_panel(axes, groups, shown, base)
    save(figure, path)


def draw_panel(
    axes: Any, groups: dict[str, list[SeedResult]], shown: dict[str, Any], baseline: str
) -> None:
    draw_baseline(axes, estimate(seed_values(groups[baseline], shown["name"])))
    for x, group in enumerate(groups.values()):
        draw_run(axes, x, seed_values(group, shown["name"]))
    # Slanted: a sweep's run names are long.
    labels = [run_label(run, baseline) for run in groups]
    axes.set_xticks(range(len(groups)), labels, rotation=25, ha="right")
    axes.set_xlim(-0.6, len(groups) - 0.4)
    axes.set_xlabel("run")
    axes.set_ylabel(heading(shown))
    axes.set_title(f"{shown['label']} across seeds")
    axes.grid(axis="y", alpha=0.3)
    handles, labels = axes.get_legend_handles_labels()
    unique = dict(zip(labels, handles, strict=True))  # one legend entry of each
    axes.legend(unique.values(), unique.keys(), fontsize="small")


def draw_baseline(axes: Any, base: Estimate) -> None:
    """The baseline's 95 % interval as a band across the panel, its mean as a dashed line."""
    if base.low is not None:
        axes.axhspan(base.low, base.high, color="C0", alpha=0.12, label="baseline's 95 % CI")
    axes.axhline(base.mean, color="C0", lw=0.8, ls="--", label="baseline's mean")


def draw_run(axes: Any, x: int, points: list[float]) -> None:
    shown = estimate(points)
    if shown.low is None:  # too few seeds for an interval: a hollow mean, no bar
        axes.plot(
            x, shown.mean, "s", color="C0", mfc="none", label=f"mean, no interval (n < {MIN_SEEDS})"
        )
    else:
        below, above = shown.mean - shown.low, shown.high - shown.mean
        axes.errorbar(
            x,
            shown.mean,
            yerr=[[below], [above]],
            fmt="s",
            color="C0",
            capsize=6,
            label="mean, 95 % CI (Student t)",
        )
    axes.plot([x + 0.15] * len(points), points, "o", color="C3", mfc="none", label="one seed")


# -- writing -------------------------------------------------------------------------


def main(inputs: Any, outputs: Any, params: Any) -> None:
    results = load_results(inputs, params)
    write_text(Path(outputs.table), summary_markdown(results, params.baseline, params.objective))
    plot_summary(results, Path(outputs.plot), params.baseline)


if "snakemake" in globals():
    with one_line_errors():  # a full disk, say: one line
        main(snakemake.input, snakemake.output, snakemake.params)  # noqa: F821
        write_text(Path(snakemake.log[0]), f"wrote {snakemake.output.table}\n")  # noqa: F821
