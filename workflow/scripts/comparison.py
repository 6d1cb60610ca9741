"""Whether a difference between two runs is real: a run's mean over its seeds with its 95 %
interval, and a run against the baseline (the difference, its 95 % interval, a p-value), all
computed by SciPy.

The test is the paired t-test on the per-seed differences when both runs have exactly the
same seeds (a seed fixes the initialisation and the batch order, so a pair shares them), and
Welch's t-test otherwise. Below MIN_SEEDS seeds in either run there is no interval and no
test: the result carries the reason instead of numbers.
"""

import statistics
from dataclasses import dataclass

from scipy import stats

CONFIDENCE = 0.95
MIN_SEEDS = 3
FEW_SEEDS = f"n < {MIN_SEEDS}: no claim"
NO_SPREAD = "no spread across seeds: no claim"
PAIRED = "paired t"
WELCH = "Welch t"


@dataclass(frozen=True)
class Estimate:
    """One figure of one run over its seeds: the mean, the sample standard deviation (None
    for one seed) and the 95 % interval of the mean (Student t, n − 1 degrees of freedom;
    None below MIN_SEEDS seeds).
    """

    n: int
    mean: float
    sd: float | None
    low: float | None = None
    high: float | None = None


@dataclass(frozen=True)
class Comparison:
    """A run against the baseline on one figure: the difference of the means (run −
    baseline), its 95 % interval and the two-sided p-value of `test`, with the test's t and
    degrees of freedom. Where no claim can be made the numbers are None and `reason` says why.
    """

    test: str  # PAIRED or WELCH
    n_run: int
    n_baseline: int
    reason: str | None = None  # FEW_SEEDS or NO_SPREAD; None when the numbers stand
    difference: float | None = None
    low: float | None = None
    high: float | None = None
    p: float | None = None
    t: float | None = None
    df: float | None = None


def estimate(values: list[float]) -> Estimate:
    """The mean of `values` (one per seed) and its 95 % interval, by `ttest_1samp`."""
    n = len(values)
    mean = statistics.fmean(values)
    sd = statistics.stdev(values) if n > 1 else None
    if n < MIN_SEEDS:
        return Estimate(n, mean, sd)
    interval = stats.ttest_1samp(values, 0.0).confidence_interval(CONFIDENCE)
    return Estimate(n, mean, sd, float(interval.low), float(interval.high))


def compare(run: dict[str, float], baseline: dict[str, float]) -> Comparison:
    """`run` against `baseline`, each a figure's value by seed: paired on the seeds when both
    have the same ones, Welch otherwise.
    """
    paired = run.keys() == baseline.keys()
    test = PAIRED if paired else WELCH
    counts = (len(run), len(baseline))
    if min(counts) < MIN_SEEDS:
        return Comparison(test, *counts, reason=FEW_SEEDS)
    if paired:
        seeds = sorted(run)
        ours, theirs = [run[s] for s in seeds], [baseline[s] for s in seeds]
    else:
        ours, theirs = list(run.values()), list(baseline.values())
    if constant(ours, theirs, paired):
        return Comparison(test, *counts, reason=NO_SPREAD)
    if paired:
        result = stats.ttest_rel(ours, theirs)
    else:
        result = stats.ttest_ind(ours, theirs, equal_var=False)
    interval = result.confidence_interval(CONFIDENCE)
    return Comparison(
        test,
        *counts,
        difference=statistics.fmean(ours) - statistics.fmean(theirs),
        low=float(interval.low),
        high=float(interval.high),
        p=float(result.pvalue),
        t=float(result.statistic),
        df=float(result.df),
    )


def constant(ours: list[float], theirs: list[float], paired: bool) -> bool:
    """Whether the test has no spread to go on, up to rounding (its t would be ±inf or 0/0):
    constant per-seed differences where paired, two constant samples otherwise.
    """
    rounding = 1e-12 * max(map(abs, ours + theirs))
    if paired:
        return statistics.stdev([a - b for a, b in zip(ours, theirs, strict=True)]) <= rounding
    return max(statistics.stdev(ours), statistics.stdev(theirs)) <= rounding
