"""Write the implementation report `ml_res.md` (and its plots) from one run's outputs.

A Snakemake script (rule `report`): it reads exactly the files its rule names, in
`snakemake.input` (each job's cost record, Snakemake's edges) and `snakemake.params` (the
rest of those jobs' files): the plan's JSON outputs (harness/contract.py), the stages'
cost records, Snakemake's benchmark files, the GPU monitor's summaries and series, the
resolved configuration, the plan's `deviations.yaml` and its component list
(`components`: each module's path, first docstring line and plan ids), and the texts and
pictures the plan shows; it writes `snakemake.output`. The sections themselves are built
in report_sections.py.
"""

import csv
import hashlib
import json
import os
from collections.abc import Callable, Iterable
from pathlib import Path
from types import SimpleNamespace
from typing import IO, Any

import yaml
from harness.errors import one_line_errors
from harness.io import write_text

from config_checks import yaml_problem
from report_plots import plot_gpu, plot_losses
from report_sections import (
    baselines,
    bullet_list,
    components,
    environment,
    quick_validation,
    stage_costs,
    table,
)

# -- reading -------------------------------------------------------------------------


def read_json(path: str | Path) -> dict[str, Any]:
    """A JSON record; a damaged one (not JSON, a folder) stops the script with one line."""
    return readable(path, json.load)


def read_jsonl(path: str | Path) -> list[dict[str, Any]]:
    return readable(path, lambda handle: [json.loads(line) for line in handle if line.strip()])


def readable(path: str | Path, read: Callable[[IO[str]], Any]) -> Any:
    """`read` applied to the open file; OSError (a folder in its place, no permission) and
    ValueError (not JSON, not UTF-8) become one line that says how to rebuild it.
    """
    try:
        with Path(path).open(encoding="utf-8") as handle:
            return read(handle)
    except (OSError, ValueError) as error:
        raise SystemExit(
            f"error: {path} cannot be read ({error}); delete it and run snakemake again to "
            "rebuild it"
        ) from None


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


# -- the report ----------------------------------------------------------------------


def build_report(inputs: Any, outputs: Any, params: Any) -> str:
    """The report's Markdown; draws its plots on the way. `inputs` are all the files it
    reads, by name; `params` the rule's other settings.
    """
    summary = read_json(inputs.summary)
    metrics = read_json(inputs.metrics)
    manifest = read_json(inputs.manifest)
    resolved = read_json(inputs.resolved)
    costs = {stage: read_json(path) for stage, path in by_stage(inputs.costs, ".json").items()}
    monitors = {s: read_json(path) for s, path in by_stage(inputs.monitors, ".json").items()}
    series = {s: read_series(path) for s, path in by_stage(inputs.monitors, ".csv").items()}
    benchmarks = {
        s: read_benchmark(path) for s, path in by_stage(inputs.benchmarks, ".tsv").items()
    }
    benchmarks = {s: b for s, b in benchmarks.items() if b}
    if problem := yaml_problem(inputs.deviations):  # a YAML error: its line and column
        raise SystemExit(f"error: {inputs.deviations} {problem}; fix it and run snakemake again")
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
    plan, trainer = params.plan, params.trainer
    return "\n".join(
        [
            "# Implementation Report",
            "",
            f"Run `{run_label(outputs.report)}`: {plan['title']} (`{plan['document']}`), on "
            f"{corpus(manifest)}, generated by `workflow/scripts/make_report.py`.",
            "",
            "## Components Implemented",
            "",
            components(summary, read_json(inputs.components)["modules"]),
            "",
            "## Quick Validation Results",
            "",
            quick_validation(summary, costs[trainer], metrics, monitors.get(trainer), benchmarks),
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
            stage_costs(costs, monitors, benchmarks),
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
            *shown_outputs(
                dict(zip(params.shown["texts"], inputs.texts, strict=True)),
                dict(zip(params.shown["pictures"], inputs.pictures, strict=True)),
                report_dir,
            ),
        ]
    )


def shown_outputs(texts: dict[str, str], pictures: dict[str, str], report_dir: Path) -> list[str]:
    """What the plan shows of its outputs besides the figures: each text in a fence (a
    sample), each picture as an image, under a heading of its own.
    """
    fence = "~~~~"
    lines = []
    for name, path in texts.items():
        text = Path(path).read_text(encoding="utf-8").rstrip("\n")
        lines += [f"## {title(name)}", "", fence, text, fence, ""]
    for name, path in pictures.items():
        lines += [f"## {title(name)}", "", f"![{name}]({relative(Path(path), report_dir)})", ""]
    return lines


def title(name: str) -> str:
    """An output's name as a heading: `hardest_images` → "Hardest images"."""
    return name.replace("_", " ").capitalize()


def run_label(report: str) -> str:
    """`results/<run>/seed<seed>/ml_res.md` → "<run>/seed<seed>"."""
    return Path(report).parent.relative_to(Path(report).parents[2]).as_posix()


def corpus(manifest: dict[str, Any]) -> str:
    """The data the run used (harness/contract.py: MANIFEST): its name, size and digest,
    and whether the digest was checked.
    """
    check = (
        "verified against the configured digest"
        if manifest["verified"]
        else "not checked: no digest was configured"
    )
    digest = manifest["source_sha256"]
    return f"`{manifest['dataset']}` ({manifest['size']}, SHA-256 `{digest}`, {check})"


def relative(path: Path, start: Path) -> str:
    return Path(os.path.relpath(path, start)).as_posix()


def main(smk: Any) -> None:
    out = Path(smk.output.report)
    reads = SimpleNamespace(**dict(smk.input.items()), **dict(smk.params.items()))
    write_text(out, build_report(reads, smk.output, smk.params))
    write_text(Path(smk.log[0]), f"wrote {out}\n")


if "snakemake" in globals():
    with one_line_errors():  # a full disk, say: one line
        main(snakemake)  # noqa: F821 (set by Snakemake's script directive)
