"""Sweeps: runs from a compact `sweep:` spec (workflow/scripts/sweep.py), checked before any
job, and a 2 × 2 grid with 3 seeds end to end on the real text, compared with its baseline.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml
from workflow_runs import REPO, SHARED_DATA, configure, copy_repo, snakemake, tiny_repo

from sweep import SweepError, sweep_runs

SCHEMA = yaml.safe_load((REPO / "workflow/schemas/config.schema.yaml").read_text())
RUN_NAME = re.compile(SCHEMA["$defs"]["run_name"]["pattern"])
GRID = {"train.lr": [1.0e-3, 5.0e-4], "model.n_layer": [1, 2]}
SAMPLE = {
    "size": 5,
    "seed": 7,
    "space": {
        "train.weight_decay": {"low": 1.0e-4, "high": 1.0e-1, "log": True},
        "model.dropout": {"low": 0.0, "high": 0.3},
        "model.n_head": {"low": 1, "high": 4, "int": True},
    },
}


def test_a_grid_gives_every_combination_with_readable_names() -> None:
    runs = sweep_runs({"grid": GRID})
    assert runs == {
        "sweep_n_layer-1_lr-0p001": {"overrides": {"train.lr": 1e-3, "model.n_layer": 1}},
        "sweep_n_layer-2_lr-0p001": {"overrides": {"train.lr": 1e-3, "model.n_layer": 2}},
        "sweep_n_layer-1_lr-0p0005": {"overrides": {"train.lr": 5e-4, "model.n_layer": 1}},
        "sweep_n_layer-2_lr-0p0005": {"overrides": {"train.lr": 5e-4, "model.n_layer": 2}},
    }


def test_the_same_point_gets_the_same_name_whatever_the_specs_order() -> None:
    reordered = {"model.n_layer": [2, 1], "train.lr": [5.0e-4, 1.0e-3]}
    assert set(sweep_runs({"grid": reordered})) == set(sweep_runs({"grid": GRID}))
    space = dict(reversed(SAMPLE["space"].items()))
    assert sweep_runs({"sample": {**SAMPLE, "space": space}}) == sweep_runs({"sample": SAMPLE})


def test_a_sample_is_seeded_in_its_ranges_and_named_within_the_pattern() -> None:
    runs = sweep_runs({"sample": SAMPLE, "grid": {"train.lr": [1.0e-3, 5.0e-4]}})
    assert len(runs) == 2 * SAMPLE["size"]
    for name, run in runs.items():
        assert RUN_NAME.fullmatch(name), name
        point = run["overrides"]
        assert 1e-4 <= point["train.weight_decay"] <= 1e-1
        assert 0.0 <= point["model.dropout"] <= 0.3
        assert point["model.n_head"] in {1, 2, 3, 4}
    other = sweep_runs({"sample": {**SAMPLE, "seed": 8}, "grid": {"train.lr": [1.0e-3, 5.0e-4]}})
    assert set(other) != set(runs), "another seed draws other points"


def test_sampled_values_keep_three_significant_digits() -> None:
    for run in sweep_runs({"sample": SAMPLE}).values():
        decay = run["overrides"]["train.weight_decay"]
        assert float(f"{decay:.3g}") == decay


def test_a_sweep_carries_its_own_overrides_seeds_and_prefix() -> None:
    runs = sweep_runs(
        {
            "grid": {"train.lr": [1.0e-3]},
            "overrides": {"train.lr": 2e-3, "train.epochs": 3},
            "seeds": [4, 5],
            "prefix": "lr",
        }
    )
    assert runs == {
        "lr_lr-0p001": {"overrides": {"train.lr": 1e-3, "train.epochs": 3}, "seeds": [4, 5]}
    }


def test_a_number_written_as_text_is_named_as_the_number() -> None:
    """PyYAML reads `1e-3` (no dot) as a string: the point keeps its name all the same."""
    as_text = yaml.safe_load("grid: {train.lr: [1e-3], model.n_layer: ['2']}")
    assert set(sweep_runs(as_text)) == set(
        sweep_runs({"grid": {"train.lr": [1.0e-3], "model.n_layer": [2]}})
    )


def test_keys_that_share_their_last_part_are_named_in_full() -> None:
    names = set(sweep_runs({"grid": {"train.batch_size": [8], "eval.batch_size": [16]}}))
    assert names == {"sweep_eval-batch_size-16_train-batch_size-8"}


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (
            {
                "grid": {"train.lr": [1e-3]},
                "sample": {
                    "size": 1,
                    "seed": 0,
                    "space": {"train.lr": {"low": 1e-4, "high": 1e-3}},
                },
            },
            "in both grid and sample",
        ),
        ({"grid": {"sample.prompt": ["a b", "a.b"]}}, "both named sweep_prompt-a-b"),
        (
            {
                "sample": {
                    "size": 3,
                    "seed": 0,
                    "space": {"model.n_head": {"low": 1, "high": 2, "int": True}},
                }
            },
            "fewer than 3 distinct points",
        ),
        (
            {
                "sample": {
                    "size": 1,
                    "seed": 0,
                    "space": {"train.lr": {"low": 0.0, "high": 1e-3, "log": True}},
                }
            },
            "a log range needs low > 0",
        ),
    ],
)
def test_a_sweep_that_cannot_give_distinct_runs_is_refused(spec: dict, message: str) -> None:
    with pytest.raises(SweepError, match=re.escape(message)):
        sweep_runs(spec)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"sweep": {"grid": {"train.lr": []}}}, "[] should be non-empty"),
        ({"sweep": {"grid": {"train.lrr": [1e-3]}}}, "unknown config key 'train.lrr'"),
        ({"sweep": {"grid": {"training.lr": [1e-3]}}}, "unknown config key 'training'"),
        ({"sweep": {"grid": {"train.lr": [1e-3]}}, "baseline": "nope"}, "baseline: nope"),
        (
            {
                "sweep": {"grid": {"train.lr": [1e-3]}, "prefix": "quick"},
                "runs": {"quick_lr-0p001": {}},
            },
            "is listed and swept",
        ),
    ],
)
def test_a_bad_sweep_stops_before_any_job(tmp_path: Path, settings: dict, message: str) -> None:
    repo = tiny_repo(tmp_path / "repo", **settings)
    result = snakemake(repo, "-n", check=False)
    assert result.returncode != 0
    assert message in result.stdout + result.stderr
    assert not list((repo / "results").glob("*/seed*/train_summary.json"))


# The end-to-end sweep: 2 × 2 points, 3 seeds each (12 trainings of the tiny model).
E2E_GRID = {"train.lr": [2.0e-3, 5.0e-4], "model.n_head": [1, 2]}
BASELINE = "sweep_n_head-2_lr-0p002"


@pytest.fixture(scope="module")
def finished_sweep(tmp_path_factory: pytest.TempPathFactory) -> Path:
    repo = tiny_repo(
        tmp_path_factory.mktemp("sweep") / "repo",
        runs={},
        # Batches of 512: the same text in a quarter of the tiny model's steps.
        sweep={"grid": E2E_GRID, "overrides": {"train.batch_size": 512}},
        seeds=[1, 2, 3],
        baseline=BASELINE,
    )
    # The summary and what it reads (training, evaluation), not each seed's samples and
    # report: the comparison is what these tests look at.
    snakemake(repo, "--cores", "2", "results/summary.md")
    return repo


def comparison_rows(summary: str) -> dict[str, list[str]]:
    """The rows of the comparison with the baseline, by run, for the validation bits/char."""
    section = summary.split("## Each run against the baseline")[1].split("\n## ")[0]
    rows = {}
    for line in section.splitlines():
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        if line.startswith("|") and cells[1].startswith("validation bits per character"):
            rows[cells[0]] = cells
    return rows


def mean_bits_per_char(repo: Path, run: str, seeds: list[int]) -> float:
    values = [
        json.loads((repo / "results" / run / f"seed{seed}" / "metrics.json").read_text())[
            "bits_per_char"
        ]
        for seed in seeds
    ]
    return sum(values) / len(values)


@pytest.mark.slow
def test_a_two_by_two_sweep_with_three_seeds_compares_each_run_with_the_baseline(
    finished_sweep: Path,
) -> None:
    runs = set(sweep_runs({"grid": E2E_GRID}))
    evaluated = list((finished_sweep / "results").glob("*/seed*/metrics.json"))
    assert len(evaluated) == 12 and {path.parent.parent.name for path in evaluated} == runs
    summary = (finished_sweep / "results" / "summary.md").read_text(encoding="utf-8")
    rows = comparison_rows(summary)
    assert set(rows) == runs - {BASELINE}
    baseline = mean_bits_per_char(finished_sweep, BASELINE, [1, 2, 3])
    for run, (_, _, counts, difference, interval, p_value, test) in rows.items():
        assert counts == "3, 3"
        expected = mean_bits_per_char(finished_sweep, run, [1, 2, 3]) - baseline
        assert float(difference) == pytest.approx(expected, abs=5e-5)
        low, high = (float(x) for x in re.fullmatch(r"\[(\S+), (\S+)\]", interval).groups())
        assert low <= float(difference) <= high
        assert p_value == "< 0.001" or 0 <= float(p_value) <= 1
        assert test.startswith("paired t"), "the runs share their seeds: paired by seed"


@pytest.mark.slow
def test_with_one_seed_per_run_no_claim_is_made(finished_sweep: Path) -> None:
    """The same sweep with one seed (after the test above: only the summary runs again)."""
    configure(finished_sweep, seeds=[1])
    snakemake(finished_sweep, "--cores", "2", "results/summary.md")
    summary = (finished_sweep / "results" / "summary.md").read_text(encoding="utf-8")
    assert "No claim is possible" in summary
    assert not comparison_rows(summary)


def test_the_dry_run_benchmark_sweep_has_a_thousand_points() -> None:
    """tests/sweep_1000.yaml, the dry-run figure of docs/runs-and-sweeps.md: 1,000 × 3."""
    spec = yaml.safe_load((REPO / "tests" / "sweep_1000.yaml").read_text(encoding="utf-8"))
    assert len(sweep_runs(spec["sweep"])) == 1000 and len(spec["seeds"]) == 3


# The second plan through the same workflow: its architectures × 3 seeds, 3 epochs each.
DIGITS_BASELINE = "sweep_arch-cnn"


@pytest.mark.slow
def test_a_sweep_of_the_digits_plan_compares_its_architectures_over_three_seeds(
    tmp_path: Path,
) -> None:
    """plans/digits runs through the workflow as it is: the sweep over model.arch, the
    summary's comparison with the CNN, and the objective (validation accuracy) maximised.
    """
    if not (SHARED_DATA / "digits" / "digits.csv").is_file():
        pytest.skip(f"the verified digits file is not at {SHARED_DATA}")
    repo = copy_repo(tmp_path / "repo")
    configure(
        repo,
        plan="plans/digits",
        runs={},
        sweep={"grid": {"model.arch": ["cnn", "linear"]}},
        seeds=[1, 2, 3],
        epochs=3,
        baseline=DIGITS_BASELINE,
    )
    snakemake(repo, "--cores", "2")
    results = repo / "results"
    for run in ("sweep_arch-cnn", "sweep_arch-linear"):
        for seed in (1, 2, 3):
            folder = results / run / f"seed{seed}"
            report = (folder / "ml_res.md").read_text(encoding="utf-8")
            assert "DigitCNN" in report if run.endswith("cnn") else "LinearClassifier" in report
            assert "![confusion](confusion.png)" in report and "![hardest](hardest.png)" in report
    summary = (results / "summary.md").read_text(encoding="utf-8")
    accuracy = {
        run: [
            json.loads((results / run / f"seed{seed}" / "metrics.json").read_text())["val_accuracy"]
            for seed in (1, 2, 3)
        ]
        for run in ("sweep_arch-cnn", "sweep_arch-linear")
    }
    best = max(accuracy, key=lambda run: sum(accuracy[run]))
    assert f"to maximize: the best run by its mean is `{best}`" in summary
    section = summary.split("## Each run against the baseline")[1].split("\n## ")[0]
    rows = [line for line in section.splitlines() if "validation accuracy" in line]
    assert rows and all(line.strip("| ").startswith("sweep_arch-linear") for line in rows)
