"""The comparison across runs and seeds, from FAKE JSON inputs (made-up numbers), and its
statistics against hand formulas and R's `t.test` on fixed numbers.
"""

from __future__ import annotations

import itertools
import json
import math
import re
import statistics
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from scipy import stats

import comparison
import summarize
from make_report import read_json

MIB = 1024**2
NO_NVML = "NVML Shared Library Not Found"
HEADERS = [
    "Run",
    "n",
    "Seeds",
    "validation bits per character (bits/char)",  # the figure's label and unit
    "Final train loss (nats)",
    "Train wall time (s)",
    "Steps/s",
    "Peak GPU memory (MiB)",
]


def write(path: Path, record: dict[str, Any]) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record), encoding="utf-8")
    return str(path)


def bits_figure(value: float) -> dict[str, Any]:
    """metrics.json's figure for validation bits per character, with a FAKE value."""
    return {
        "name": "bits_per_char",
        "label": "validation bits per character",
        "value": value,
        "unit": "bits/char",
        "format": ".4f",
        "summary": True,
        "baselines": {},
    }


def fake_pair(
    root: Path, run: str, seed: int, bits: float, loss: float, time_s: float, steps: int, peak: Any
) -> dict[str, str]:
    """FAKE outputs of one (run, seed); `peak` None: a monitor that found no GPU."""
    folder = root / run / f"seed{seed}"
    monitor = (
        {"gpu_available": False, "reason": NO_NVML, "peak_job_memory_bytes": None}
        if peak is None
        else {"gpu_available": True, "reason": None, "peak_job_memory_bytes": peak}
    )
    return {
        "metrics": write(folder / "metrics.json", {"figures": [bits_figure(bits)]}),
        "train": write(
            folder / "train_summary.json",
            {"final_train_loss": loss, "train_time_s": time_s, "steps": steps},
        ),
        "monitor": write(folder / "monitor" / "train.json", monitor),
    }


def summarize_pairs(
    tmp_path: Path, pairs: list[tuple[Any, ...]], baseline: str | None = None
) -> list[list[str]]:
    """Run the script's main on FAKE pairs; the first table's body rows, split into cells.
    `baseline` None: the first run, as the workflow's default.
    """
    files = [fake_pair(tmp_path / "results", *pair) for pair in pairs]
    inputs = SimpleNamespace(**{key: [f[key] for f in files] for key in files[0]})
    outputs = SimpleNamespace(
        table=str(tmp_path / "results" / "out" / "summary.md"),
        plot=str(tmp_path / "results" / "out" / "summary.png"),
    )
    runs = [p[0] for p in pairs]
    params = SimpleNamespace(
        runs=runs,
        seeds=[p[1] for p in pairs],
        baseline=baseline or runs[0],
        objective={"figure": "bits_per_char", "direction": "minimize"},
    )
    summarize.main(inputs, outputs, params)
    assert Path(outputs.plot).read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    assert not list(Path(outputs.table).parent.glob(".*.tmp")), "outputs are written atomically"
    text = Path(outputs.table).read_text(encoding="utf-8")
    header, *body = table_after(text, "# Summary across runs and seeds")
    assert header == HEADERS
    return body


def table_after(markdown: str, title: str) -> list[list[str]]:
    """The cells of the first table under the line `title`: its header, then its body rows."""
    lines = markdown.splitlines()
    below = lines.index(title)
    start = next(i for i, line in enumerate(lines) if i > below and line.startswith("|"))
    rows = itertools.takewhile(lambda line: line.startswith("|"), lines[start:])
    cells = [[c.strip() for c in line.strip("|").split("|")] for line in rows]
    return [cells[0], *cells[2:]]  # the separator row left out


def section(markdown: str, title: str) -> str:
    """The text of a `## title` section, up to the next section."""
    return markdown.split(f"## {title}\n", 1)[1].split("\n## ", 1)[0]


def summary_text(tmp_path: Path) -> str:
    return (tmp_path / "results" / "out" / "summary.md").read_text(encoding="utf-8")


def pm(values: list[float], digits: int) -> str:
    """The expected cell, computed here independently of the script."""
    return f"{statistics.mean(values):,.{digits}f} ± {statistics.stdev(values):,.{digits}f}"


def test_two_runs_two_seeds_give_mean_and_sample_sd(tmp_path: Path) -> None:
    pairs = [
        ("base", 1, 2.10, 1.40, 100.0, 500, None),
        ("lr-low", 1, 2.30, 1.60, 90.0, 500, 2000 * MIB),
        ("base", 2, 2.20, 1.50, 120.0, 500, None),
        ("lr-low", 2, 2.35, 1.70, 110.0, 500, 2100 * MIB),
    ]
    rows = summarize_pairs(tmp_path, pairs)
    assert [r[:3] for r in rows] == [["base", "2", "1, 2"], ["lr-low", "2", "1, 2"]]
    base, low = rows
    assert base[3:7] == [
        pm([2.10, 2.20], 4),
        pm([1.40, 1.50], 4),
        pm([100.0, 120.0], 1),
        pm([500 / 100.0, 500 / 120.0], 2),
    ]
    assert base[7] == "n/a (no GPU)"
    assert low[3] == pm([2.30, 2.35], 4)
    assert low[7] == pm([2000.0, 2100.0], 1) == "2,050.0 ± 70.7"


def test_one_seed_shows_the_mean_alone(tmp_path: Path) -> None:
    rows = summarize_pairs(tmp_path, [("base", 7, 2.125, 1.5, 80.0, 400, 1536 * MIB)])
    assert rows == [["base", "1", "7", "2.1250", "1.5000", "80.0", "5.00", "1,536.0"]]


def test_gpu_figure_missing_for_some_seeds_is_counted(tmp_path: Path) -> None:
    pairs = [("base", 1, 2.0, 1.0, 10.0, 10, 1024 * MIB), ("base", 2, 2.0, 1.0, 10.0, 10, None)]
    assert summarize_pairs(tmp_path, pairs)[0][7] == "1,024.0 (1 of 2 seeds)"


def test_footnote_names_the_sd_and_why_there_is_no_gpu(tmp_path: Path) -> None:
    summarize_pairs(tmp_path, [("base", 1, 2.0, 1.0, 10.0, 10, None)])
    text = summary_text(tmp_path)
    assert "sample standard deviation" in text and "lower bound" in text
    assert f"No GPU figure: {NO_NVML}." in text


def test_lists_of_different_lengths_are_an_error(tmp_path: Path) -> None:
    files = fake_pair(tmp_path, "base", 1, 2.0, 1.0, 10.0, 10, None)
    inputs = SimpleNamespace(**{key: [path] for key, path in files.items()})
    with pytest.raises(ValueError):
        summarize.load_results(inputs, SimpleNamespace(runs=["base", "base"], seeds=[1, 2]))


@pytest.mark.parametrize("damage", ["not json", "folder"])
def test_a_damaged_record_stops_the_scripts_with_one_line(tmp_path: Path, damage: str) -> None:
    """metrics.json edited into garbage, or replaced by a folder: one line, no traceback."""
    path = tmp_path / "metrics.json"
    if damage == "folder":
        path.mkdir()
    else:
        path.write_text("{ not json", encoding="utf-8")
    with pytest.raises(SystemExit) as stopped:
        read_json(path)
    message = str(stopped.value.code)
    assert message.startswith(f"error: {path} cannot be read")
    assert "run snakemake again" in message and "\n" not in message


# -- the statistics on fixed numbers ---------------------------------------------------

# R's `sleep` data: extra hours of sleep of 10 patients under two drugs (Student, 1908).
SLEEP_1 = [0.7, -1.6, -0.2, -1.2, -0.1, 3.4, 3.7, 0.8, 0.0, 2.0]
SLEEP_2 = [1.9, 0.8, 1.1, 0.1, -0.1, 4.4, 5.5, 1.6, 4.6, 3.4]
TIGHT = 1e-9  # relative: the numbers are fixed, only rounding differs


def t_975_df2() -> float:
    """The 97.5 % quantile of Student's t with 2 degrees of freedom, in closed form: its
    CDF is 1/2 + t / (2 sqrt(2 + t²)), so t = (2q − 1) / sqrt(2q(1 − q)).
    """
    q = 0.975
    return (2 * q - 1) / math.sqrt(2 * q * (1 - q))


def p_two_sided_df2(t: float) -> float:
    """The two-sided p of t with 2 degrees of freedom, from the same closed-form CDF."""
    return 1 - abs(t) / math.sqrt(2 + t * t)


def seeded(values: list[float], first: int = 1) -> dict[str, float]:
    return {str(seed): v for seed, v in enumerate(values, start=first)}


def test_the_closed_form_t_quantile_is_the_known_one() -> None:
    assert t_975_df2() == pytest.approx(4.302653, abs=5e-7)  # R: qt(0.975, 2); tables 4.303


def test_interval_of_a_mean_of_three_seeds_by_hand() -> None:
    values = [2.13, 2.07, 2.16]
    mean, sd = sum(values) / 3, math.sqrt(sum((v - sum(values) / 3) ** 2 for v in values) / 2)
    half = t_975_df2() * sd / math.sqrt(3)
    shown = comparison.estimate(values)
    assert shown.n == 3
    assert (shown.mean, shown.sd) == pytest.approx((mean, sd), rel=TIGHT)
    assert shown.low == pytest.approx(mean - half, rel=TIGHT)
    assert shown.high == pytest.approx(mean + half, rel=TIGHT)
    library = stats.t.interval(0.95, 2, loc=mean, scale=sd / math.sqrt(3))
    assert (shown.low, shown.high) == pytest.approx(library, rel=TIGHT)


def test_interval_of_a_mean_matches_r() -> None:
    """R: `t.test(sleep$extra[1:10])`: 95 percent confidence interval -0.5297804 2.0297804."""
    shown = comparison.estimate(SLEEP_1)
    assert shown.mean == pytest.approx(0.75, rel=TIGHT)
    assert (shown.low, shown.high) == pytest.approx((-0.5297804, 2.0297804), abs=5e-8)


def test_paired_test_of_three_seeds_by_hand() -> None:
    run, base = [2.05, 2.11, 2.02], [2.10, 2.13, 2.09]
    d = [a - b for a, b in zip(run, base, strict=True)]
    mean = sum(d) / 3
    se = math.sqrt(sum((x - mean) ** 2 for x in d) / 2) / math.sqrt(3)
    t = mean / se
    result = comparison.compare(seeded(run), seeded(base))
    assert result.test == comparison.PAIRED and result.reason is None
    assert (result.n_run, result.n_baseline, result.df) == (3, 3, 2)
    assert result.difference == pytest.approx(mean, rel=TIGHT)
    assert result.t == pytest.approx(t, rel=TIGHT)
    assert result.p == pytest.approx(p_two_sided_df2(t), rel=TIGHT)
    assert result.low == pytest.approx(mean - t_975_df2() * se, rel=TIGHT)
    assert result.high == pytest.approx(mean + t_975_df2() * se, rel=TIGHT)
    library = stats.ttest_rel(run, base)
    assert (result.t, result.p) == pytest.approx((library.statistic, library.pvalue), rel=TIGHT)


def test_welch_test_by_hand() -> None:
    """Welch's t and the Welch–Satterthwaite degrees of freedom; the t distribution alone
    comes from SciPy.
    """
    run, base = [2.01, 2.05, 1.98, 2.04], [2.10, 2.19, 2.07]
    m1, m2 = statistics.fmean(run), statistics.fmean(base)
    a, b = statistics.variance(run) / 4, statistics.variance(base) / 3
    t = (m1 - m2) / math.sqrt(a + b)
    df = (a + b) ** 2 / (a**2 / 3 + b**2 / 2)
    half = stats.t.ppf(0.975, df) * math.sqrt(a + b)
    result = comparison.compare(seeded(run), seeded(base, first=11))
    assert result.test == comparison.WELCH and (result.n_run, result.n_baseline) == (4, 3)
    assert result.t == pytest.approx(t, rel=TIGHT)
    assert result.df == pytest.approx(df, rel=TIGHT)
    assert result.p == pytest.approx(2 * stats.t.sf(abs(t), df), rel=TIGHT)
    assert result.difference == pytest.approx(m1 - m2, rel=TIGHT)
    assert (result.low, result.high) == pytest.approx((m1 - m2 - half, m1 - m2 + half), rel=TIGHT)


def test_welch_and_paired_match_r_on_the_sleep_data() -> None:
    """R: `t.test(extra ~ group, data = sleep)`: t = -1.8608, df = 17.776, p-value = 0.07939,
    95 percent confidence interval -3.3654832 0.2054832; with `paired = TRUE` (on the two
    groups' vectors): t = -4.0621, df = 9, p-value = 0.002833, -2.4598858 -0.7001142.
    """
    welch = comparison.compare(seeded(SLEEP_1), seeded(SLEEP_2, first=11))
    assert welch.test == comparison.WELCH
    assert (welch.t, welch.df) == (
        pytest.approx(-1.8608, abs=5e-5),
        pytest.approx(17.776, abs=5e-4),
    )
    assert welch.p == pytest.approx(0.07939, abs=5e-6)
    assert (welch.low, welch.high) == pytest.approx((-3.3654832, 0.2054832), abs=5e-8)
    paired = comparison.compare(seeded(SLEEP_1), seeded(SLEEP_2))
    assert paired.test == comparison.PAIRED and paired.df == 9
    assert paired.t == pytest.approx(-4.0621, abs=5e-5)
    assert paired.p == pytest.approx(0.002833, abs=5e-7)
    assert paired.difference == pytest.approx(-1.58, rel=TIGHT)
    assert (paired.low, paired.high) == pytest.approx((-2.4598858, -0.7001142), abs=5e-8)


def test_paired_only_on_exactly_the_same_seeds_and_pairs_by_seed() -> None:
    run = {"3": 2.02, "1": 2.05, "2": 2.11}  # another order than the baseline's
    base = {"1": 2.10, "2": 2.13, "3": 2.09}
    result = comparison.compare(run, base)
    library = stats.ttest_rel([2.05, 2.11, 2.02], [2.10, 2.13, 2.09])
    assert result.test == comparison.PAIRED
    assert (result.t, result.p) == pytest.approx((library.statistic, library.pvalue), rel=TIGHT)
    for other in ({"1": 2.05, "2": 2.11, "4": 2.02}, {**run, "4": 2.00}):  # overlap, superset
        result = comparison.compare(other, base)
        library = stats.ttest_ind(list(other.values()), list(base.values()), equal_var=False)
        assert result.test == comparison.WELCH
        assert (result.t, result.p) == pytest.approx((library.statistic, library.pvalue), rel=TIGHT)


@pytest.mark.parametrize(("n_run", "n_base"), [(2, 3), (3, 2), (1, 1), (2, 2)])
def test_below_three_seeds_no_interval_and_no_test(n_run: int, n_base: int) -> None:
    run, base = seeded([2.0, 2.1, 2.2][:n_run]), seeded([2.3, 2.4, 2.6][:n_base])
    result = comparison.compare(run, base)
    assert result.reason == comparison.FEW_SEEDS == "n < 3: no claim"
    assert (result.difference, result.low, result.high, result.p) == (None, None, None, None)
    values = list((run if n_run < 3 else base).values())
    few = comparison.estimate(values)
    assert (few.n, few.low, few.high) == (len(values), None, None)
    assert few.mean == pytest.approx(statistics.fmean(values), rel=TIGHT)


def test_no_spread_across_seeds_makes_no_claim() -> None:
    result = comparison.compare(seeded([2.0, 2.1, 2.2]), seeded([2.5, 2.6, 2.7]))  # d constant
    assert result.test == comparison.PAIRED and result.reason == comparison.NO_SPREAD
    assert result.p is None
    result = comparison.compare(seeded([2.0, 2.0, 2.0]), seeded([2.5, 2.5, 2.5], first=4))
    assert result.test == comparison.WELCH and result.reason == comparison.NO_SPREAD


# -- the comparison in summary.md ------------------------------------------------------

GRID = {"base": 2.10, "lr-low": 2.16, "layers-4": 2.00, "both": 2.05}  # a 2 × 2 grid
SHIFTS = [0.013, -0.021, 0.008]  # per seed, shared by the runs: pairing removes them


def grid_pairs(seeds: dict[str, list[int]] | None = None) -> list[tuple[Any, ...]]:
    """FAKE (run, seed) pairs of the 2 × 2 grid, 3 seeds each unless `seeds` says other."""
    pairs = []
    for i, (run, bits) in enumerate(GRID.items()):
        for seed in (seeds or {}).get(run, [1, 2, 3]):
            noise = SHIFTS[(seed - 1) % 3] + 0.004 * ((seed * (i + 2)) % 3)
            pairs.append((run, seed, bits + noise, 1.4, 100.0, 500, None))
    return pairs


def bits_by_seed(pairs: list[tuple[Any, ...]], run: str) -> dict[str, float]:
    return {str(p[1]): p[2] for p in pairs if p[0] == run}


def test_grid_of_three_seeds_compares_each_run_with_the_baseline(tmp_path: Path) -> None:
    pairs = grid_pairs()
    summarize_pairs(tmp_path, pairs, baseline="lr-low")  # not the first run
    text = summary_text(tmp_path)
    header, *rows = table_after(text, "## Each run against the baseline, lr-low")
    assert header == summarize.COMPARISON_HEADERS
    assert [r[0] for r in rows] == ["base", "layers-4", "both"]
    base = list(bits_by_seed(pairs, "lr-low").values())
    for row in rows:
        run = list(bits_by_seed(pairs, row[0]).values())
        library = stats.ttest_rel(run, base)
        low, high = library.confidence_interval(0.95)
        assert row[1:] == [
            "validation bits per character (bits/char)",
            "3, 3",
            f"{statistics.fmean(run) - statistics.fmean(base):.4f}",
            f"[{low:.4f}, {high:.4f}]",
            f"{library.pvalue:.3f}" if library.pvalue >= 0.001 else "< 0.001",
            f"paired t, t = {library.statistic:.2f}, df = 2",
        ]
    header, *rows = table_after(text, "## 95 % interval of each run's mean")
    assert header == ["Run", "Figure", "n", "Mean", "sd", "95 % CI of the mean"]
    assert [r[0] for r in rows] == ["base", "lr-low (baseline)", "layers-4", "both"]
    for row in rows:
        values = list(bits_by_seed(pairs, row[0].removesuffix(" (baseline)")).values())
        low, high = stats.ttest_1samp(values, 0.0).confidence_interval(0.95)
        assert row[2:] == [
            "3",
            f"{statistics.fmean(values):.4f}",
            f"{statistics.stdev(values):.4f}",
            f"[{low:.4f}, {high:.4f}]",
        ]
    guide = " ".join(section(text, "Reading the comparison").split())
    assert "no multiple-comparison correction" in guide and "Welch" in guide
    assert "n < 3: no claim" in guide


def test_different_seeds_are_compared_by_welch(tmp_path: Path) -> None:
    pairs = grid_pairs({"both": [4, 5, 6, 7]})
    summarize_pairs(tmp_path, pairs)
    rows = table_after(summary_text(tmp_path), "## Each run against the baseline, base")[1:]
    tests = {row[0]: row[6] for row in rows}
    assert tests["lr-low"].startswith("paired t, ") and tests["layers-4"].startswith("paired t, ")
    welch = stats.ttest_ind(
        list(bits_by_seed(pairs, "both").values()),
        list(bits_by_seed(pairs, "base").values()),
        equal_var=False,
    )
    assert tests["both"] == f"Welch t, t = {welch.statistic:.2f}, df = {welch.df:.3g}"


def test_a_run_with_two_seeds_gets_no_number(tmp_path: Path) -> None:
    pairs = grid_pairs({"both": [1, 2]})
    summarize_pairs(tmp_path, pairs)
    text = summary_text(tmp_path)
    both = next(
        r for r in table_after(text, "## Each run against the baseline, base") if r[0] == "both"
    )
    # No number in the difference, its interval or p; Welch, as the seed sets differ.
    assert both[2:] == ["2, 3", *["n < 3: no claim"] * 3, "Welch t: not run"]
    interval = next(
        r for r in table_after(text, "## 95 % interval of each run's mean") if r[0] == "both"
    )
    assert interval[2] == "2" and interval[5] == "n < 3: no claim"


def test_one_seed_per_run_says_no_claim_is_possible(tmp_path: Path) -> None:
    pairs = [("base", 1, 2.10, 1.4, 100.0, 500, None), ("lr-low", 1, 2.20, 1.4, 90.0, 500, None)]
    summarize_pairs(tmp_path, pairs)
    text = summary_text(tmp_path)
    against = section(text, "Each run against the baseline, base")
    assert against.strip() == (
        "No claim is possible: a comparison needs at least 3 seeds in both runs "
        "(seeds per run: base 1, lr-low 1)."
    )
    assert not re.search(r"\d\.\d", against), "no number"
    rows = table_after(text, "## 95 % interval of each run's mean")[1:]
    assert [r[4:] for r in rows] == [["n/a (one seed)", "n < 3: no claim"]] * 2


def test_a_single_run_has_nothing_to_compare(tmp_path: Path) -> None:
    summarize_pairs(tmp_path, grid_pairs()[:3])
    against = section(summary_text(tmp_path), "Each run against the baseline, base")
    assert against.strip() == "Only one run: nothing to compare it with."


def test_a_baseline_that_is_no_run_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="baseline 'nope' is none of the runs"):
        summarize_pairs(tmp_path, grid_pairs(), baseline="nope")
