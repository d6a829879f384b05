"""Derivative estimators: network values and derivatives at collocation points.

A *network* here is any callable mapping inputs (M, d) to outputs (..., M); leading dims
(e.g. P perturbed parameter sets) pass through unchanged. Every estimator returns a ``Jet``
of the network at the points z (N, d); ``estimate_channels`` does the same for a network
with C outputs (..., M, C) from the same network call, the channel first in the jet.

Stencil estimators (finite differences, Monte-Carlo Stein, sparse-grid Stein) evaluate the
network at x and x ± δ_k for H directions δ_k — 1 + 2H evaluations per point, all points
and directions stacked into ONE network call — and combine them as

    u       = w_0 f(x) + Σ_k w_k (f(x+δ_k) + f(x−δ_k))
    ∂_i u   = Σ_k c_k δ_{k,i} (f(x+δ_k) − f(x−δ_k))
    ∂_i² u  = Σ_k e_{k,i} (f(x+δ_k) + f(x−δ_k) − 2 f(x)).

For the Gaussian smoothing u(x) = E_{δ~N(0,σ²I)} f(x+δ) the Stein identities (He et al.
2022, "Learning physics-informed neural networks without stacked back-propagation",
arXiv 2202.09340, eqs. 6–8) give ∇u = E[δ f(x+δ)]/σ², ∂_i²u = E[(δ_i²−σ²) f(x+δ)]/σ⁴;
antithetic pairing and the control variate −2f(x) (zero-mean since E[δ_i²−σ²] = 0) yield,
with δ_k = σζ_k and a symmetric rule (ζ_k, w_k) for N(0, I) summed over one of each ± pair,
c_k = w_k/σ², e_{k,i} = w_k (ζ_{k,i}² − 1)/σ². The sparse grid is the Smolyak rule
(symmetric, so f(x−δ_k) is shared by the node −ζ_k); Monte Carlo uses N fresh samples
ζ_s ~ N(0, I) with w = 1/(2N) per antithetic pair.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from typing import ClassVar, NamedTuple

import torch

from photonic.textutil import did_you_mean

from .jet import Jet
from .sparse_grid import smolyak_gauss_hermite

__all__ = [
    "ESTIMATORS",
    "Autograd",
    "DerivativeEstimator",
    "FiniteDifference",
    "MonteCarloStein",
    "SparseGridStein",
    "Stencil",
    "StencilEstimator",
    "build_estimator",
    "network_jet",
]

Network = Callable[[torch.Tensor], torch.Tensor]


class DerivativeEstimator(ABC):
    """Computes the jet (value, gradient, diagonal Hessian) of a network at points z."""

    name: ClassVar[str]

    @abstractmethod
    def evals_for_dim(self, dim: int) -> int:
        """Network evaluations (input rows) spent per collocation point in dimension dim."""

    @abstractmethod
    def estimate(
        self, net: Network, z: torch.Tensor, *, generator: torch.Generator | None = None
    ) -> Jet: ...

    @abstractmethod
    def estimate_channels(
        self, net: Network, z: torch.Tensor, *, generator: torch.Generator | None = None
    ) -> Jet:
        """Jet of a network with C outputs, net(x): (..., M, C); the jet's fields carry the
        channel as their first dim: value (C, ..., N), grad and hess_diag (C, ..., N, d)."""


class Stencil(NamedTuple):
    """δ (H, d) directions; w0 () centre weight; v (H,) value weights of f(x+δ)+f(x−δ);
    c (H,) gradient weights; e (H, d) second-derivative weights (module docstring)."""

    delta: torch.Tensor
    w0: torch.Tensor
    v: torch.Tensor
    c: torch.Tensor
    e: torch.Tensor


class StencilEstimator(DerivativeEstimator):
    """f at x and x ± δ_k in one network call; subclasses define the stencil."""

    @abstractmethod
    def stencil(self, dim: int, dtype: torch.dtype, generator: torch.Generator | None) -> Stencil:
        ...

    def evals_for_dim(self, dim: int) -> int:
        return 1 + 2 * self.num_directions(dim)

    @abstractmethod
    def num_directions(self, dim: int) -> int: ...

    @staticmethod
    def inputs(z: torch.Tensor, delta: torch.Tensor) -> torch.Tensor:
        """Stacked inputs (N·(1+2H), d): rows [x, x+δ_1..x+δ_H, x−δ_1..x−δ_H] per point."""
        offsets = torch.cat([torch.zeros_like(delta[:1]), delta, -delta])
        return (z[:, None, :] + offsets[None]).reshape(-1, z.shape[-1])

    @staticmethod
    def combine(f: torch.Tensor, n: int, st: Stencil) -> Jet:
        """Jet (..., n) from network values f (..., n·(1+2H)) laid out as ``inputs``."""
        H = st.delta.shape[0]
        f = f.reshape(*f.shape[:-1], n, 1 + 2 * H)
        f0, fp, fm = f[..., 0], f[..., 1 : 1 + H], f[..., 1 + H :]
        even = fp + fm
        return Jet(
            value=st.w0 * f0 + even @ st.v,
            grad=((fp - fm) * st.c) @ st.delta,
            hess_diag=(even - 2.0 * f0[..., None]) @ st.e,
        )

    def estimate(self, net, z, *, generator=None):
        st = self.stencil(z.shape[-1], z.dtype, generator)
        return self.combine(net(self.inputs(z, st.delta)), z.shape[0], st)

    def estimate_channels(self, net, z, *, generator=None):
        st = self.stencil(z.shape[-1], z.dtype, generator)  # one call for all channels
        return self.combine(net(self.inputs(z, st.delta)).movedim(-1, 0), z.shape[0], st)


class _RuleStein(StencilEstimator):
    """Stein estimator on a symmetric rule (half nodes ζ (H, d), weights w (H,), w_0)."""

    sigma: float

    def _from_rule(self, zeta: torch.Tensor, w: torch.Tensor, w0: float) -> Stencil:
        s2 = self.sigma**2
        return Stencil(
            delta=self.sigma * zeta,
            w0=torch.as_tensor(w0, dtype=zeta.dtype),
            v=w,
            c=w / s2,
            e=w[:, None] * (zeta * zeta - 1.0) / s2,
        )


class SparseGridStein(_RuleStein):
    """Stein estimator on the level-``level`` Smolyak Gauss–Hermite rule. The rule is exact to
    degree q = 2·level − 1, so the smoothed value is exact for f of degree ≤ q, the gradient
    for degree ≤ q − 1 and the second derivatives for degree ≤ q − 2; otherwise the error is
    O(σ^{q−1}) relative to the leading Taylor terms."""

    name = "sg_stein"

    def __init__(self, *, sigma: float, level: int = 3):
        if sigma <= 0:
            raise ValueError(f"sigma must be > 0, got {sigma}")
        self.sigma, self.level = sigma, level

    def num_directions(self, dim):
        return len(smolyak_gauss_hermite(dim, self.level).half)

    def stencil(self, dim, dtype, generator):
        rule = smolyak_gauss_hermite(dim, self.level)
        return self._from_rule(
            torch.as_tensor(rule.half, dtype=dtype),
            torch.as_tensor(rule.half_weights, dtype=dtype),
            rule.center_weight,
        )


class MonteCarloStein(_RuleStein):
    """Stein estimator with ``num_samples`` fresh antithetic Gaussian samples per call,
    shared by all points (and by all parameter sets of one batched call)."""

    name = "mc_stein"

    def __init__(self, *, sigma: float, num_samples: int = 2048):
        if sigma <= 0 or num_samples < 1:
            raise ValueError(f"need sigma > 0 and num_samples >= 1, got {sigma}, {num_samples}")
        self.sigma, self.num_samples = sigma, num_samples

    def num_directions(self, dim):
        return self.num_samples

    def stencil(self, dim, dtype, generator):
        zeta = torch.randn(self.num_samples, dim, generator=generator, dtype=dtype)
        w = torch.full((self.num_samples,), 0.5 / self.num_samples, dtype=dtype)
        return self._from_rule(zeta, w, 0.0)


class FiniteDifference(StencilEstimator):
    """Central differences with step h along each axis: O(h²) accurate."""

    name = "fd"

    def __init__(self, *, step: float = 1e-3):
        if step <= 0:
            raise ValueError(f"step must be > 0, got {step}")
        self.step = step

    def num_directions(self, dim):
        return dim

    def stencil(self, dim, dtype, generator):
        h = self.step
        eye = torch.eye(dim, dtype=dtype)
        return Stencil(
            delta=eye * h,
            w0=torch.as_tensor(1.0, dtype=dtype),
            v=torch.zeros(dim, dtype=dtype),
            c=torch.full((dim,), 0.5 / h**2, dtype=dtype),  # c·δ_i = 1/(2h)
            e=eye / h**2,
        )


class Autograd(DerivativeEstimator):
    """Exact derivatives by automatic differentiation (first-order reference only: needs
    back-propagation). ``hess_dims`` lists the coordinates whose ∂² are needed."""

    name = "autograd"

    def __init__(self, *, hess_dims: Sequence[int] | None = None, create_graph: bool = True):
        self.hess_dims = None if hess_dims is None else tuple(hess_dims)
        self.create_graph = create_graph

    def evals_for_dim(self, dim):
        return 1

    def _jet(self, f: torch.Tensor, zr: torch.Tensor) -> Jet:
        """Value, gradient and the needed ∂² of the scalar field f (..., M) of inputs zr."""
        (grad,) = torch.autograd.grad(f.sum(), zr, create_graph=True, retain_graph=True)
        hess = torch.zeros_like(grad)
        dims = range(zr.shape[-1]) if self.hess_dims is None else self.hess_dims
        cols = []
        for i in dims:  # one backward per needed coordinate (d ≤ 21 here)
            (gi,) = torch.autograd.grad(
                grad[..., i].sum(), zr, create_graph=self.create_graph, retain_graph=True
            )
            cols.append((i, gi[..., i]))
        if cols:
            idx = [i for i, _ in cols]
            hess = hess.index_copy(-1, torch.tensor(idx), torch.stack([g for _, g in cols], -1))
        if not self.create_graph:
            return Jet(f.detach(), grad.detach(), hess.detach())
        return Jet(f, grad, hess)

    @staticmethod
    def _leaf(net, z, point_dims: int):
        """z as a leaf and f = net(z); with leading parameter-set dims in f (beyond its
        ``point_dims`` trailing ones) each set gets its own input copy."""
        zr = z.detach().requires_grad_(True)
        f = net(zr)
        if f.dim() > point_dims:
            zr = z.detach().expand(*f.shape[:-point_dims], *z.shape).clone().requires_grad_(True)
            f = net(zr)
        return zr, f

    def estimate(self, net, z, *, generator=None):
        zr, f = self._leaf(net, z, 1)
        return self._jet(f, zr)

    def estimate_channels(self, net, z, *, generator=None):
        zr, f = self._leaf(net, z, 2)
        jets = [self._jet(f[..., c], zr) for c in range(f.shape[-1])]
        return Jet(*(torch.stack([getattr(j, k) for j in jets])
                     for k in ("value", "grad", "hess_diag")))


ESTIMATORS: dict[str, type[DerivativeEstimator]] = {
    cls.name: cls for cls in (Autograd, FiniteDifference, MonteCarloStein, SparseGridStein)
}


def build_estimator(name: str, **kwargs) -> DerivativeEstimator:
    """Look up an estimator by its config name."""
    if name not in ESTIMATORS:
        raise ValueError(
            f"estimator: unknown derivative estimator {name!r}"
            f"{did_you_mean(name, ESTIMATORS)} "
            f"Valid choices: {sorted(ESTIMATORS)}"
        )
    return ESTIMATORS[name](**kwargs)


def network_jet(estimator: DerivativeEstimator, net: Network, z: torch.Tensor, outputs: int,
                generator: torch.Generator | None = None) -> Jet:
    """Jet of a network with ``outputs`` outputs at z: fields (..., N) for one output (net's
    trailing output dim of size 1 dropped), channel first (C, ..., N) for more."""
    if outputs == 1:
        return estimator.estimate(lambda x: net(x).squeeze(-1), z, generator=generator)
    return estimator.estimate_channels(net, z, generator=generator)
