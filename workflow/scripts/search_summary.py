"""The result of a search: results/search/<study>/summary.md and search.png.

The summary names the best trial (in the plan's direction), its settings and its objective
with the spread over the seeds, then lists every trial with its state (complete, pruned,
failed and why, or still running when the search was stopped). The plot draws the
objective against the trial number and against each searched key: complete trials as dots,
pruned ones hollow at their last validation value. The objective is shown as Shown says:
the label and unit of the plan's figure, as a complete trial's metrics.json has them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from harness.io import write_text
from matplotlib.ticker import MaxNLocator, NullFormatter
from optuna.trial import FrozenTrial, TrialState

from report_plots import plt, save
from report_sections import table
from search_spec import SearchPlan, Shown, with_defaults
from search_study import RUN_ATTR
from summarize import mean_sd

SEEDS_ATTR = "seed_objectives"  # each seed's objective, by seed (as text)
PRUNED_ATTR = "pruned_at_step"
REASON_ATTR = "fail_reason"
PLOT = "search.png"
STATES = {
    TrialState.COMPLETE: "complete",
    TrialState.PRUNED: "pruned",
    TrialState.FAIL: "failed",
    TrialState.RUNNING: "running",
    TrialState.WAITING: "waiting",
}


def value_text(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def objective_text(trial: FrozenTrial, shown: Shown) -> str:
    """mean ± sd over the seeds of a complete trial; a pruned one's last value."""
    if trial.state == TrialState.COMPLETE:
        return mean_sd(list(trial.user_attrs[SEEDS_ATTR].values()), shown.format)
    if trial.state == TrialState.PRUNED and trial.value is not None:
        return f"({trial.value:{shown.format}} at step {trial.user_attrs[PRUNED_ATTR]})"
    return ""


def note(trial: FrozenTrial) -> str:
    if trial.state == TrialState.PRUNED:
        return f"pruned at step {trial.user_attrs[PRUNED_ATTR]} (median rule)"
    if trial.state == TrialState.FAIL:
        return trial.user_attrs.get(REASON_ATTR, "")
    if trial.state == TrialState.RUNNING:
        return "the search stopped before it finished: run the search again"
    return ""


def best_section(best: FrozenTrial, keys: list[str], shown: Shown) -> str:
    seeds = best.user_attrs[SEEDS_ATTR]
    per_seed = ", ".join(f"{value:{shown.format}} (seed {seed})" for seed, value in seeds.items())
    run = best.user_attrs[RUN_ATTR]
    spread = f"mean ± sd over {len(seeds)} seeds" if len(seeds) > 1 else "one seed"
    rows = [[key, value_text(best.params[key])] for key in keys]
    return (
        f"## Best trial\n\nTrial {best.number}, run `{run}` (`results/{run}/`): "
        f"**{objective_text(best, shown)} {shown.suffix}** ({spread}: {per_seed}).\n\n"
        f"{table(rows, ['Key', 'Value'])}\n"
    )


def objective_sentence(plan: SearchPlan, shown: Shown) -> str:
    """What the objective is: the plan's figure, how it is averaged, its direction."""
    where = f"`{plan.objective}` of each seed's {Path(plan.metrics).name}"
    what = where if shown.label == plan.objective else f"{shown.label} ({where})"
    aim = "maximised" if plan.maximize else "minimised"
    return f"Objective: {what}, the mean over the trial's seeds, {aim}."


def summary_markdown(
    trials: list[FrozenTrial],
    search: dict[str, Any],
    storage: str,
    parallel: int,
    plan: SearchPlan,
    shown: Shown,
) -> str:
    spec = with_defaults(search)
    keys = sorted(spec["space"])
    counts = ", ".join(
        f"{sum(t.state == state for t in trials)} {name}"
        for state, name in STATES.items()
        if any(t.state == state for t in trials)
    )
    pruning = "on (median rule)" if spec["pruning"] else "off"
    lines = [
        f"# Search `{spec['study']}`\n",
        f"Optuna study `{spec['study']}` in `{storage}`: {len(trials)} of {spec['trials']} "
        f"trials ({counts or 'none yet'}), {parallel} at a time; TPE seeded by "
        f"sampler_seed {spec['sampler_seed']} plus the trial number, at random for the first "
        f"{spec['startup_trials']} complete trials; pruning {pruning}. "
        f"{objective_sentence(plan, shown)}\n",
    ]
    finished = [t for t in trials if t.state == TrialState.COMPLETE]
    if finished:
        lines.append(best_section(plan.best(finished), keys, shown))
    rows = [
        [
            str(t.number),
            t.user_attrs.get(RUN_ATTR, ""),
            STATES[t.state],
            objective_text(t, shown),
            *(value_text(t.params[key]) if key in t.params else "" for key in keys),
            note(t),
        ]
        for t in trials
    ]
    headers = ["Trial", "Run", "State", f"Objective ({shown.suffix})", *keys, "Note"]
    lines.append(f"## Trials\n\n{table(rows, headers)}\n")
    lines.append(
        "Objective: mean ± sd over the seeds (the mean alone for one seed); a pruned trial "
        "shows its last validation value in brackets. Complete trials are runs of the "
        "workflow: `snakemake` puts them in `results/summary.md`.\n"
    )
    lines.append(f"![objective against trial number and each key]({PLOT})\n")
    return "\n".join(lines)


def scatter(axes: Any, trials: list[FrozenTrial], x: Any) -> None:
    """Complete trials as dots, pruned ones hollow, at x(trial)."""
    for state, style in ((TrialState.COMPLETE, {}), (TrialState.PRUNED, {"mfc": "none"})):
        shown = [t for t in trials if t.state == state and t.value is not None]
        if shown:
            axes.plot(
                [x(t) for t in shown], [t.value for t in shown], "o", label=STATES[state], **style
            )


def plot_search(
    trials: list[FrozenTrial], search: dict[str, Any], path: Path, plan: SearchPlan, shown: Shown
) -> None:
    keys = sorted(search["space"])
    columns = 1 + len(keys)
    figure, panels = plt.subplots(1, columns, figsize=(4 * columns, 3.5), squeeze=False)
    first, *rest = panels[0]
    scatter(first, trials, lambda t: t.number)
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    if complete:
        best = [plan.best([t for t in complete if t.number <= n.number]).value for n in complete]
        first.step([t.number for t in complete], best, where="post", label="best so far")
    failed = [t.number for t in trials if t.state == TrialState.FAIL]
    if failed:  # at the bottom edge: no value
        transform = first.get_xaxis_transform()
        first.plot(
            failed, [0.02] * len(failed), "x", color="C3", label="failed", transform=transform
        )
    first.xaxis.set_major_locator(MaxNLocator(integer=True))
    first.set_xlabel("trial")
    first.set_ylabel(f"{shown.label} ({shown.unit})" if shown.unit else shown.label)
    first.legend(fontsize="small")
    for axes, key in zip(rest, keys, strict=True):
        space = search["space"][key]
        if "choices" in space:
            labels = [str(choice) for choice in space["choices"]]
            scatter(
                axes, trials, lambda t, key=key, labels=labels: labels.index(str(t.params[key]))
            )
            axes.set_xticks(range(len(labels)), labels)
        else:
            scatter(axes, trials, lambda t, key=key: t.params[key])
            if space.get("log"):
                axes.set_xscale("log")
                axes.xaxis.set_minor_formatter(NullFormatter())
            if space.get("int"):
                axes.xaxis.set_major_locator(MaxNLocator(integer=True))
        axes.set_xlabel(key)
    for axes in panels[0]:
        axes.grid(alpha=0.3)
    better = "higher" if plan.maximize else "lower"
    figure.suptitle(f"Search {with_defaults(search)['study']}: objective ({better} is better)")
    save(figure, path)


def write_summary(
    folder: Path,
    trials: list[FrozenTrial],
    search: dict[str, Any],
    storage: str,
    parallel: int,
    plan: SearchPlan,
    shown: Shown,
) -> None:
    """summary.md and the plot of the study's `trials`; `shown`: how to show the plan's
    objective (a complete trial's Shown, else the figure's name alone).
    """
    summary = summary_markdown(trials, search, storage, parallel, plan, shown)
    write_text(folder / "summary.md", summary)
    plot_search(trials, search, folder / PLOT, plan, shown)
