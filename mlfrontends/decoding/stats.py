"""Paired comparisons of a decoding rule against greedy decoding, item by item within seeds.

The unit is a (seed, item) pair: the same question asked of the same model on the same chip
under both rules, each scored 0/1 (correct or not), so the paired difference d ∈ {−1, 0, 1}.

- ``sign_test``: exact two-sided sign (binomial) test on the discordant pairs (d ≠ 0) pooled
  over seeds. With n discordant pairs the smallest attainable p is 2 · 2^−n (all of one sign);
  it is reported beside p, so no p-value is claimed below what the sample supports.
- ``cluster_bootstrap``: percentile interval of the mean paired difference by a two-stage
  bootstrap (resample seeds, then items within each drawn seed), so that the spread between
  seeds (model, data split and chip draw) enters the interval, not only item noise.
- ``holm``: Holm's step-down adjustment of a family of p-values (Holm 1979, Scand. J. Stat.
  6(2)); the matching simultaneous intervals use the Bonferroni level 1 − α/m.
- ``seed_summary``: median, worst (minimum) and spread (max − min) of per-seed values.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats


@dataclass(frozen=True)
class SignTest:
    """``p`` two-sided exact p; ``p_min`` the smallest p attainable with ``n_discordant``."""

    n_better: int
    n_worse: int
    p: float
    p_min: float

    @property
    def n_discordant(self) -> int:
        return self.n_better + self.n_worse


def sign_test(diff: np.ndarray) -> SignTest:
    """Exact sign test of paired differences (any shape; zeros are ties and dropped)."""
    d = np.asarray(diff).ravel()
    better, worse = int((d > 0).sum()), int((d < 0).sum())
    n = better + worse
    if n == 0:
        return SignTest(0, 0, 1.0, 1.0)
    p = float(stats.binomtest(better, n, 0.5, alternative="two-sided").pvalue)
    return SignTest(better, worse, p, min(1.0, 2.0 * 0.5 ** n))


def cluster_bootstrap(diff: np.ndarray, *, level: float, n_boot: int,
                      seed: int) -> tuple[float, float]:
    """Percentile interval (two-sided, coverage ``level``) of the mean of ``diff`` (S, N):
    S seeds × N items, resampling seeds and then items within each drawn seed."""
    d = np.asarray(diff, dtype=float)
    if d.ndim != 2 or d.shape[0] < 1 or d.shape[1] < 1:
        raise ValueError(f"diff must be (seeds, items) with both ≥ 1; got shape {d.shape}")
    if not 0 < level < 1:
        raise ValueError(f"level = {level}: must lie in (0, 1)")
    S, N = d.shape
    rng = np.random.default_rng(seed)
    seeds = rng.integers(0, S, size=(n_boot, S))
    items = rng.integers(0, N, size=(n_boot, S, N))
    means = d[seeds[..., None], items].mean(axis=(1, 2))
    tail = (1 - level) / 2
    lo, hi = np.quantile(means, [tail, 1 - tail])
    return float(lo), float(hi)


def holm(pvalues: list[float]) -> list[float]:
    """Holm-adjusted p-values (same order as given): p_(i) · (m − i + 1), made monotone."""
    p = np.asarray(pvalues, dtype=float)
    m = len(p)
    order = np.argsort(p, kind="stable")
    adj = np.minimum(1.0, np.maximum.accumulate(p[order] * (m - np.arange(m))))
    out = np.empty(m)
    out[order] = adj
    return out.tolist()


def seed_summary(values: list[float] | np.ndarray) -> dict[str, float]:
    """Median, worst (minimum) and spread (max − min) over seeds."""
    a = np.asarray(values, dtype=float)
    return {"median": float(np.median(a)), "worst": float(a.min()),
            "spread": float(a.max() - a.min())}
