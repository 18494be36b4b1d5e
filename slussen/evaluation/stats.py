"""Paired baseline vs six-month statistics (domain facts §2.1–2.5, facts 12–15).

The tests and intervals come from `scipy.stats`; nothing here re-derives a distribution. A
difference is six-month minus baseline, so a negative difference is an improvement on a
lower-is-better instrument. Callers decide whether there are enough persons (suppression); these
functions only refuse what cannot be computed at all.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from scipy import stats

from slussen.evaluation.definitions import Reliability

#: |RCI| above this is reliable change at the 95 % level (Jacobson & Truax 1991).
RCI_CRITICAL = 1.96
#: Differences are rounded before comparing with zero, so 0.1 + 0.2 - 0.3 counts as unchanged
#: (scipy's documentation warns about round-off in x - y).
ROUNDING = 10
#: Wilcoxon signed-rank: exact null distribution up to this many non-zero differences without ties.
EXACT_MAX = 50
#: With ties, scipy's exhaustive sign-flip permutation (exact conditional test) up to this many.
PERMUTATION_MAX = 13

Floats = NDArray[np.float64]


def differences(baseline: Floats, six_month: Floats) -> Floats:
    result: Floats = np.round(six_month - baseline, ROUNDING)
    return result


def classify(diffs: Floats, *, lower_better: bool) -> tuple[int, int, int]:
    """(improved, unchanged, worse) in the instrument's own direction."""
    falls = int(np.count_nonzero(diffs < 0))
    rises = int(np.count_nonzero(diffs > 0))
    unchanged = len(diffs) - falls - rises
    return (falls, unchanged, rises) if lower_better else (rises, unchanged, falls)


def reliable_change(
    diffs: Floats, reliability: Reliability, *, lower_better: bool
) -> tuple[int, int, int]:
    """(reliably improved, no reliable change, reliably worse): RCI = d / (s1·√2·√(1−rxx)),
    reliable when |RCI| > 1.96 (Jacobson & Truax 1991; the Christensen & Mendoza S_diff)."""
    rci = diffs / s_diff(reliability)
    falls = int(np.count_nonzero(rci < -RCI_CRITICAL))
    rises = int(np.count_nonzero(rci > RCI_CRITICAL))
    neither = len(diffs) - falls - rises
    return (falls, neither, rises) if lower_better else (rises, neither, falls)


def s_diff(reliability: Reliability) -> float:
    return reliability.sd * math.sqrt(2.0) * math.sqrt(1.0 - reliability.rxx)


@dataclass(frozen=True)
class Wilcoxon:
    statistic: float
    p: float
    #: "exact", "permutation" (exhaustive, exact given the ties) or "normal".
    method: str
    n_nonzero: int


def wilcoxon(diffs: Floats) -> Wilcoxon | None:
    """Wilcoxon signed-rank test, zero differences dropped (zero_method "wilcox"); None when every
    difference is zero. Exact when there are at most 50 non-zero differences and no ties; with
    ties, scipy's exhaustive permutation up to 13, else the normal approximation with the tie
    correction."""
    nonzero = diffs[diffs != 0]
    n = len(nonzero)
    if n == 0:
        return None
    ties = len(np.unique(np.abs(nonzero))) < n
    if not ties and n <= EXACT_MAX:
        method, used = "exact", "exact"
    elif n <= PERMUTATION_MAX:
        method, used = "auto", "permutation"
    else:
        method, used = "asymptotic", "normal"
    result = stats.wilcoxon(nonzero, zero_method="wilcox", method=method)
    return Wilcoxon(float(result.statistic), float(result.pvalue), used, n)


@dataclass(frozen=True)
class Paired:
    """The paired comparison of one score on n persons (complete pairs, or BOCF)."""

    n: int
    mean_baseline: float
    sd_baseline: float
    mean_six_month: float
    sd_six_month: float
    mean_diff: float
    sd_diff: float
    ci_low: float
    ci_high: float
    t: float | None
    df: int
    p_t: float | None
    wilcoxon: Wilcoxon | None
    #: Cohen's d_z = mean(d) / SD(d); None when every difference is the same.
    d_z: float | None


def paired(baseline: Floats, six_month: Floats, *, with_wilcoxon: bool = True) -> Paired:
    """Mean (SD) per occasion, mean difference with its 95 % CI from the t distribution
    (df = n − 1), the paired t-test (scipy.stats.ttest_rel), Wilcoxon (unless left out: the
    permutation test is slow and the group tables do not show it) and d_z.
    Refuses (ValueError) fewer than two pairs."""
    n = len(baseline)
    if n < 2 or len(six_month) != n:
        raise ValueError("a paired comparison needs at least two pairs")
    diffs = differences(baseline, six_month)
    mean_d = float(diffs.mean())
    sd_d = float(diffs.std(ddof=1))
    if sd_d > 0:
        result = stats.ttest_rel(six_month, baseline)
        interval = result.confidence_interval(0.95)
        t: float | None = float(result.statistic)
        p: float | None = float(result.pvalue)
        low, high = float(interval.low), float(interval.high)
        d_z: float | None = mean_d / sd_d
    else:
        # Every difference is the same: no spread, no test (scipy would divide by zero).
        t = p = d_z = None
        low = high = mean_d
    return Paired(
        n=n,
        mean_baseline=float(baseline.mean()),
        sd_baseline=float(baseline.std(ddof=1)),
        mean_six_month=float(six_month.mean()),
        sd_six_month=float(six_month.std(ddof=1)),
        mean_diff=mean_d,
        sd_diff=sd_d,
        ci_low=low,
        ci_high=high,
        t=t,
        df=n - 1,
        p_t=p,
        wilcoxon=wilcoxon(diffs) if with_wilcoxon else None,
        d_z=d_z,
    )


@dataclass(frozen=True)
class Quartiles:
    q1: float
    median: float
    q3: float


def quartiles(values: Floats) -> Quartiles:
    """Median and interquartile range (numpy's default linear interpolation, Hyndman–Fan 7)."""
    q1, median, q3 = np.percentile(values, [25, 50, 75])
    return Quartiles(float(q1), float(median), float(q3))


@dataclass(frozen=True)
class Change:
    """Mean change with its 95 % CI (t distribution, df = n − 1) and d_z, for one group."""

    n: int
    mean_diff: float
    ci_low: float
    ci_high: float
    d_z: float | None


def changes_by_group(diffs: Floats, codes: NDArray[np.intp], groups: int) -> list[Change | None]:
    """Mean change, 95 % CI and d_z per group code 0 … groups−1 in one vectorised pass (the same
    numbers scipy.stats.ttest_rel gives per group; the t quantile comes from scipy.stats.t).
    None for a group with fewer than two persons."""
    n = np.bincount(codes, minlength=groups).astype(np.float64)
    total = np.bincount(codes, weights=diffs, minlength=groups)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = total / n
        squares = np.bincount(codes, weights=(diffs - mean[codes]) ** 2, minlength=groups)
        sd = np.sqrt(squares / (n - 1))
        half = stats.t.ppf(0.975, np.maximum(n - 1, 1)) * sd / np.sqrt(n)
    result: list[Change | None] = []
    for g in range(groups):
        if n[g] < 2:
            result.append(None)
            continue
        spread = float(sd[g])
        has_spread = spread > 1e-12
        result.append(
            Change(
                n=int(n[g]),
                mean_diff=float(mean[g]),
                ci_low=float(mean[g] - half[g]) if has_spread else float(mean[g]),
                ci_high=float(mean[g] + half[g]) if has_spread else float(mean[g]),
                d_z=float(mean[g] / spread) if has_spread else None,
            )
        )
    return result
