"""Where the residual is evaluated and how much each point counts: the collocation points of
each iteration (uniform, or residual-based adaptive sampling from a scored pool) and the
causal weights of the points by time slab (CollocationConfig, CausalConfig)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from .config import CausalConfig, CollocationConfig
from .pdes import PDE

__all__ = ["Collocation", "causal_weights"]

PointResidual = Callable[[torch.Tensor], torch.Tensor]
"""``z (N, d) -> r (N,)`` or ``(k·N,)`` (k stacked components of a first-order system): the
PDE residual of the current, unperturbed network."""


class Collocation:
    """Draws each iteration's ``n`` collocation points (uniform, or RAD from a scored pool)."""

    def __init__(self, c: CollocationConfig, n: int, pde: PDE, generator: torch.Generator,
                 dtype: torch.dtype):
        self.c, self.n, self.pde, self.gen, self.dtype = c, n, pde, generator, dtype
        self.pool: torch.Tensor | None = None
        self.prob: torch.Tensor | None = None

    def draw(self, it: int, residual: PointResidual) -> tuple[torch.Tensor, int]:
        """Points (n, d) for iteration ``it`` and the network evaluations spent on scoring
        the pool (RAD rescores it every ``refresh_every`` iterations)."""
        if self.c.sampling == "uniform":
            return self.pde.sample(self.n, self.gen, dtype=self.dtype), 0
        spent = 0
        if self.pool is None or it % self.c.refresh_every == 0:
            self.pool = self.pde.sample(self.c.pool, self.gen, dtype=self.dtype)
            r = residual(self.pool).double().reshape(-1, self.c.pool).norm(dim=0) ** self.c.k
            prob = r / r.mean().clamp_min(1e-300) + self.c.c
            if not bool(torch.isfinite(prob).all()):  # a diverged net: fall back to uniform
                prob = torch.ones_like(prob)
            self.prob = prob
            spent = self.c.pool
        idx = torch.multinomial(self.prob, self.n, replacement=False, generator=self.gen)
        return self.pool[idx], spent

    def state_dict(self) -> dict[str, Any]:
        return {"pool": self.pool, "prob": self.prob}

    def load_state_dict(self, st: dict[str, Any]) -> None:
        self.pool, self.prob = st["pool"], st["prob"]


def causal_weights(pde: PDE, z: torch.Tensor, r: torch.Tensor,
                   c: CausalConfig) -> torch.Tensor:
    """√w per point (N,) for the residuals r (N,) of the unperturbed network at z (N, d):
    slab i of the PDE's time axis, counted from its initial (or terminal) condition, weighs
    w_i = exp(−ε Σ_{j<i} L_j) with L_j the mean of r² over the points in slab j."""
    axis, direction = pde.causal_axis
    lo, hi = pde.bounds[axis]
    s = (z[:, axis].double() - lo) / (hi - lo)
    if direction < 0:
        s = 1.0 - s
    slab = (s * c.bins).long().clamp(0, c.bins - 1)
    total = torch.zeros(c.bins, dtype=torch.float64).index_add_(0, slab, r.double() ** 2)
    count = torch.zeros(c.bins, dtype=torch.float64).index_add_(
        0, slab, torch.ones_like(r, dtype=torch.float64))
    mean = torch.where(count > 0, total / torch.where(count > 0, count, 1.0), 0.0)
    before = torch.cumsum(mean, 0) - mean  # Σ_{j<i} L_j
    return torch.exp(-c.eps * before)[slab].sqrt()
