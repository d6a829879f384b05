"""Helpers shared by the unlearning workloads: settings base, seed statistics, tables."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
from pydantic import BaseModel, ConfigDict

from photonic.textutil import markdown_table


class Settings(BaseModel):
    """Base of nested config sections: unknown keys are rejected, like the workload's."""

    model_config = ConfigDict(extra="forbid")


__all__ = ["Settings", "aggregate", "bootstrap_ci", "comparison_table", "paired_differences",
           "seed_table"]


def bootstrap_ci(values: Sequence[float], *, n_boot: int = 10_000, level: float = 0.95,
                 seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap CI of the mean (Efron & Tibshirani 1993, ch. 13).

    With a single value the interval collapses to that value."""
    x = np.asarray(values, dtype=float)
    if x.size == 0:
        raise ValueError("bootstrap_ci needs at least one value")
    rng = np.random.default_rng(seed)
    means = x[rng.integers(0, x.size, size=(n_boot, x.size))].mean(axis=1)
    lo, hi = np.quantile(means, [(1 - level) / 2, (1 + level) / 2])
    return float(lo), float(hi)


def aggregate(per_seed: Sequence[Mapping[str, float]]) -> dict[str, float]:
    """Mean over seeds of every key, plus ``<key>_std`` (sample std, 0 for one seed)."""
    keys = list(per_seed[0])
    out: dict[str, float] = {}
    for k in keys:
        vals = np.array([float(r[k]) for r in per_seed])
        out[k] = float(vals.mean())
        out[f"{k}_std"] = float(vals.std(ddof=1)) if vals.size > 1 else 0.0
    return out


def _fmt(v: float) -> str:
    if isinstance(v, (int, np.integer)) or (isinstance(v, float) and v.is_integer()
                                            and abs(v) >= 1000):
        return f"{int(v):,}"
    if v != 0 and (abs(v) < 1e-3 or abs(v) >= 1e5):
        return f"{v:.2e}"
    return f"{v:.3f}"


def seed_table(rows: Mapping[str, Mapping[str, float]], columns: Sequence[str]) -> str:
    """Markdown table, rows = arms, columns = metrics, cells 'mean ± std' when a
    ``<col>_std`` exists (``photonic.textutil.markdown_table`` lines, joined)."""
    body = []
    for arm, m in rows.items():
        cells = [arm]
        for c in columns:
            if c not in m or (isinstance(m[c], float) and math.isnan(m[c])):
                cells.append("–")
                continue
            s = _fmt(m[c])
            if f"{c}_std" in m and m[f"{c}_std"] > 0:
                s += f" ± {_fmt(m[f'{c}_std'])}"
            cells.append(s)
        body.append(cells)
    return "\n".join(markdown_table(["arm", *columns], body))


def paired_differences(a: Sequence[Mapping[str, float]], b: Sequence[Mapping[str, float]],
                       keys: Sequence[str]) -> dict[str, dict[str, float]]:
    """Per key: mean of the per-seed differences a − b and its percentile bootstrap 95 % CI
    (the seeds pair the two arms: same models, split and chip draw)."""
    out: dict[str, dict[str, float]] = {}
    for key in keys:
        diffs = [x[key] - y[key] for x, y in zip(a, b, strict=True)]
        lo, hi = bootstrap_ci(diffs, seed=0)
        out[key] = {"mean_diff": float(np.mean(diffs)), "ci95_low": lo, "ci95_high": hi,
                    "n_seeds": len(diffs)}
    return out


def comparison_table(comparisons: Mapping[str, Mapping[str, float]]) -> str:
    """Markdown table of ``paired_differences`` results keyed 'a_vs_b.metric'."""
    rows = [[k, f"{v['mean_diff']:+.4g}", f"[{v['ci95_low']:+.4g}, {v['ci95_high']:+.4g}]",
             v["n_seeds"]] for k, v in comparisons.items()]
    return "\n".join(markdown_table(["comparison", "mean diff", "95 % CI", "seeds"], rows))
