"""Helpers shared by the unlearning workloads: settings base, seed statistics, tables."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
from pydantic import BaseModel, ConfigDict


class Settings(BaseModel):
    """Base of nested config sections: unknown keys are rejected, like the workload's."""

    model_config = ConfigDict(extra="forbid")


__all__ = ["Settings", "bootstrap_ci", "aggregate", "markdown_table"]


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


def markdown_table(rows: Mapping[str, Mapping[str, float]], columns: Sequence[str]) -> str:
    """Rows = arms, columns = metrics, cells 'mean ± std' when a ``<col>_std`` exists."""
    head = "| arm | " + " | ".join(columns) + " |"
    sep = "|---" * (len(columns) + 1) + "|"
    lines = [head, sep]
    for arm, m in rows.items():
        cells = []
        for c in columns:
            if c not in m or (isinstance(m[c], float) and math.isnan(m[c])):
                cells.append("–")
                continue
            s = _fmt(m[c])
            if f"{c}_std" in m and m[f"{c}_std"] > 0:
                s += f" ± {_fmt(m[f'{c}_std'])}"
            cells.append(s)
        lines.append(f"| {arm} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
