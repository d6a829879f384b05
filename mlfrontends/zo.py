"""Zeroth-order (forward-only) gradient estimators and the steppers that feed them to Adam.

Two layers:

1. Flat-vector estimator math (no torch.nn): perturbation directions for a parameter vector
   θ ∈ R^D and ``zo_gradient``, which evaluates a *batched* loss callable
   ``loss(Θ: (P, D)) -> (P,)`` once on all P perturbed vectors and combines the results.
   A calibration routine can use these directly on a vector of phases.
2. Module steppers: ``ZOStepper`` flattens a module's trainable parameters, builds the P
   perturbed parameter sets and evaluates them in ONE batched forward call through
   ``torch.func.functional_call`` with parameters carrying a leading dim P (the project's
   batched-parameter convention: such a layer treats dim 0 as P independent parameter sets,
   takes input (P, ..., in) or broadcastable (..., in) and returns (P, ..., out)); the
   estimate is written to ``.grad`` and a torch optimiser (Adam) steps.
   ``FirstOrderStepper`` is the back-propagation baseline with the same interface.
3. ``SubspaceLMStepper``: for least-squares losses L = mean(r²) (a PINN's residuals), a
   forward-only Levenberg–Marquardt step in a random subspace. The same two-sided
   perturbations give the directional derivatives of every residual, J v_s; the step solves
   the k × k damped Gauss–Newton system in span{v_s} (subspace Gauss–Newton for
   derivative-free least squares: Cartis & Roberts 2023, "Scalable subspace methods for
   derivative-free nonlinear least-squares optimization", Math. Program. 199, 461–524;
   Levenberg–Marquardt damping with a gain-ratio update, Nielsen 1999 / Madsen, Nielsen &
   Tingleff 2004, "Methods for non-linear least squares problems", §3.2).

Estimator (Nesterov & Spokoiny 2017; Liu et al. 2020, "A primer on zeroth-order
optimization", IEEE SPM 37(5), eqs. 3–5): with directions u_s (E[u uᵀ] = I),
  two-sided  ĝ = (1/q) Σ_s [L(θ+μu_s) − L(θ−μu_s)] / (2μ) · u_s      (P = 2q)
  one-sided  ĝ = (1/q) Σ_s [L(θ+μu_s) − L(θ)] / μ · u_s              (P = q + 1).
Per-tensor ("layer-wise") estimation draws q directions supported on each parameter tensor
separately, so the variance grows with the tensor's size rather than with D (Zhao et al.
2025, arXiv 2502.12384, §3.2); it is the same formula with block-supported directions.
Coordinate-wise estimation (DeepZero, Chen et al. 2024, arXiv 2310.02025) uses unit vectors
e_i and ĝ_i = [L(θ+μe_i) − L(θ−μe_i)] / (2μ).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import nn
from torch.func import functional_call

from photonic.textutil import did_you_mean

__all__ = [
    "DIRECTIONS",
    "FirstOrderStepper",
    "ParamLayout",
    "StepInfo",
    "SubspaceLMStepper",
    "ZOEstimate",
    "ZOStepper",
    "block_directions",
    "coordinate_directions",
    "split_blocks",
    "gaussian_directions",
    "rademacher_directions",
    "zo_gradient",
]

BatchedLoss = Callable[[torch.Tensor], torch.Tensor]


# ----------------------------------------------------------------- flat-vector estimator math
def gaussian_directions(
    num: int, dim: int, *, generator: torch.Generator, dtype=torch.float64
) -> torch.Tensor:
    """(num, dim) i.i.d. N(0, 1) directions."""
    return torch.randn(num, dim, generator=generator, dtype=dtype)


def rademacher_directions(
    num: int, dim: int, *, generator: torch.Generator, dtype=torch.float64
) -> torch.Tensor:
    """(num, dim) i.i.d. ±1 directions (minimum-variance choice with E[u uᵀ] = I)."""
    bits = torch.randint(0, 2, (num, dim), generator=generator)
    return (2 * bits - 1).to(dtype)


DIRECTIONS: dict[str, Callable[..., torch.Tensor]] = {
    "gaussian": gaussian_directions,
    "rademacher": rademacher_directions,
}


def block_directions(
    num_per_block: int,
    blocks: Sequence[slice],
    dim: int,
    *,
    distribution: str,
    generator: torch.Generator,
    dtype=torch.float64,
) -> torch.Tensor:
    """(num_per_block · len(blocks), dim) directions, each supported on one block (one
    parameter tensor): rows [block 0 × num_per_block, block 1 × num_per_block, ...]."""
    draw = _lookup_distribution(distribution)
    full = draw(num_per_block * len(blocks), dim, generator=generator, dtype=dtype)
    mask = torch.zeros(len(blocks), dim, dtype=dtype)
    for b, sl in enumerate(blocks):  # one row per tensor, not per element
        mask[b, sl] = 1.0
    return full * mask.repeat_interleave(num_per_block, dim=0)


def split_blocks(slices: Sequence[slice], block_size: int | None,
                 sizes: Sequence[int | None] | None = None) -> list[slice]:
    """Per-tensor blocks, each cut into contiguous chunks of at most ``block_size``
    elements (e.g. one chunk per photonic tile of a layer's phase tensor); None: as is.
    ``sizes`` (one per slice) overrides ``block_size`` tensor by tensor."""
    sizes = [block_size] * len(slices) if sizes is None else list(sizes)
    if len(sizes) != len(slices):
        raise ValueError(f"sizes: need one per tensor ({len(slices)}), got {len(sizes)}")
    out = []
    for sl, size in zip(slices, sizes, strict=True):
        if size is None:
            out.append(sl)
            continue
        for a in range(sl.start, sl.stop, size):
            out.append(slice(a, min(a + size, sl.stop)))
    return out


def coordinate_directions(
    coords: torch.Tensor | Sequence[int], dim: int, *, dtype=torch.float64
) -> torch.Tensor:
    """(len(coords), dim) unit vectors e_i for the given coordinates."""
    idx = torch.as_tensor(coords, dtype=torch.long)
    out = torch.zeros(len(idx), dim, dtype=dtype)
    out[torch.arange(len(idx)), idx] = 1.0
    return out


@dataclass(frozen=True)
class ZOEstimate:
    """grad (D,); loss: L(θ) if evaluated, else the mean of the pair averages (≈ L(θ) +
    O(μ²)); num_sets: parameter sets evaluated (P)."""

    grad: torch.Tensor
    loss: float
    num_sets: int


def zo_gradient(
    loss: BatchedLoss,
    theta: torch.Tensor,
    directions: torch.Tensor,
    *,
    mu: float,
    two_sided: bool = True,
    scale: float | None = None,
) -> ZOEstimate:
    """Finite-difference gradient estimate along ``directions`` (Q, D), all P perturbed
    vectors evaluated by ONE call of ``loss`` on a (P, D) batch.

    The estimate is ``scale · Σ_k diff_k u_k`` with diff_k the directional difference
    quotient; ``scale`` defaults to 1/q where q = Q / (number of distinct supports), i.e.
    1/Q for whole-vector directions; pass 1.0 for coordinate directions.
    """
    if mu <= 0:
        raise ValueError(f"mu must be > 0, got {mu}")
    Q = directions.shape[0]
    if two_sided:
        batch = torch.cat([theta + mu * directions, theta - mu * directions])
        values = loss(batch)
        diff = (values[:Q] - values[Q:]) / (2 * mu)
        center = float(0.5 * (values[:Q] + values[Q:]).mean())
    else:
        batch = torch.cat([theta[None], theta + mu * directions])
        values = loss(batch)
        diff = (values[1:] - values[0]) / mu
        center = float(values[0])
    if scale is None:
        scale = 1.0 / Q
    grad = scale * (diff.to(directions.dtype) @ directions)
    return ZOEstimate(grad=grad, loss=center, num_sets=batch.shape[0])


def _lookup_distribution(name: str):
    if name not in DIRECTIONS:
        raise ValueError(
            f"distribution: unknown direction distribution {name!r}"
            f"{did_you_mean(name, DIRECTIONS)} "
            f"Valid choices: {sorted(DIRECTIONS)}"
        )
    return DIRECTIONS[name]


# ----------------------------------------------------------------------------- module level
class ParamLayout:
    """Maps a module's trainable parameters to a flat vector and back (in named order)."""

    def __init__(self, module: nn.Module, exclude: Sequence[str] = ()):
        self.module = module
        self.names: list[str] = []
        self.shapes: list[torch.Size] = []
        self.slices: list[slice] = []
        self.params: list[nn.Parameter] = []
        start = 0
        for name, p in module.named_parameters():
            if not p.requires_grad or name in exclude:
                continue
            self.names.append(name)
            self.shapes.append(p.shape)
            self.slices.append(slice(start, start + p.numel()))
            self.params.append(p)
            start += p.numel()
        self.dim = start

    def flatten(self) -> torch.Tensor:
        return torch.cat([p.detach().reshape(-1) for p in self.params])

    def unflatten(self, flat: torch.Tensor) -> dict[str, torch.Tensor]:
        """(D,) → {name: shape}; (P, D) → {name: (P, *shape)} (views, no copies)."""
        lead = flat.shape[:-1]
        return {
            n: flat[..., sl].reshape(*lead, *shape)
            for n, shape, sl in zip(self.names, self.shapes, self.slices, strict=True)
        }

    def assign(self, flat: torch.Tensor) -> None:
        """Copy the (D,) vector ``flat`` into the parameters (in place, no autograd)."""
        with torch.no_grad():
            for p, sl in zip(self.params, self.slices, strict=True):
                p.copy_(flat[sl].reshape(p.shape))

    def batched_forward(self, flat: torch.Tensor) -> Callable[..., torch.Tensor]:
        """Forward of the module with the (P, D) parameter sets ``flat`` (one batched call;
        parameters not in the layout keep their values)."""
        params = self.unflatten(flat)
        return lambda *args: functional_call(self.module, params, args)

    def set_grad(self, flat_grad: torch.Tensor) -> None:
        for p, sl in zip(self.params, self.slices, strict=True):
            p.grad = flat_grad[sl].reshape(p.shape).to(p.dtype).clone()


@dataclass(frozen=True)
class StepInfo:
    """loss (at or near the current parameters); num_sets: parameter sets run in forward."""

    loss: float
    num_sets: int


ModuleLoss = Callable[[Callable[..., torch.Tensor]], torch.Tensor]
"""A loss given a forward function ``fwd(*inputs) -> outputs`` of the model; returns (P,)
for batched parameters (or () for the unbatched first-order baseline)."""


def _clip_(grad: torch.Tensor, clip_norm: float | None) -> torch.Tensor:
    if clip_norm is None:
        return grad
    norm = grad.norm()
    return grad * torch.clamp(clip_norm / (norm + 1e-30), max=1.0)


class ZOStepper:
    """Forward-only training step: ZO gradient estimate of all trainable parameters of
    ``module`` (one batched forward call per step), written to ``.grad``, then
    ``optimizer.step()``.

    estimator: "random" (directions from ``distribution``; whole vector or per tensor) or
    "coordinate" (``num_queries`` random coordinates per step, or all if None).
    local: names of parameters trained with their exact *local* gradient instead — for an
    electronic read-out layer whose inputs (the detected hidden activations) the controller
    sees: the derivative runs only through that layer and the loss, never through another
    layer, so no back-propagation through the network (one extra unperturbed forward).
    """

    def __init__(
        self,
        module: nn.Module,
        optimizer: torch.optim.Optimizer,
        *,
        mu: float,
        estimator: Literal["random", "coordinate"] = "random",
        num_queries: int | None = 1,
        distribution: str = "rademacher",
        two_sided: bool = True,
        per_tensor: bool = True,
        clip_norm: float | None = None,
        block_size: int | None = None,
        local: Sequence[str] = (),
        generator: torch.Generator,
    ):
        if estimator not in ("random", "coordinate"):
            raise ValueError(
                f"estimator: must be 'random' or 'coordinate', got {estimator!r}"
            )
        _lookup_distribution(distribution)
        self.module, self.optimizer = module, optimizer
        named = dict(module.named_parameters())
        unknown = [n for n in local if n not in named]
        if unknown:
            raise ValueError(f"local: no parameter named {unknown[0]!r}"
                             f"{did_you_mean(unknown[0], named)}")
        self.local = [named[n] for n in local]
        self.layout = ParamLayout(module, exclude=local)
        self.mu, self.estimator, self.num_queries = mu, estimator, num_queries
        self.distribution, self.two_sided, self.per_tensor = distribution, two_sided, per_tensor
        self.clip_norm, self.generator = clip_norm, generator
        if block_size is not None and block_size < 1:
            raise ValueError(f"block_size: must be ≥ 1 or None, got {block_size}")
        self.blocks = split_blocks(self.layout.slices, block_size)

    def directions(self, dtype) -> tuple[torch.Tensor, float]:
        D = self.layout.dim
        if self.estimator == "coordinate":
            if self.num_queries is None or self.num_queries >= D:
                coords = torch.arange(D)
            else:
                coords = torch.randperm(D, generator=self.generator)[: self.num_queries]
            return coordinate_directions(coords, D, dtype=dtype), 1.0
        q = self.num_queries or 1
        if self.per_tensor:
            U = block_directions(
                q, self.blocks, D, distribution=self.distribution,
                generator=self.generator, dtype=dtype,
            )
        else:
            U = DIRECTIONS[self.distribution](q, D, generator=self.generator, dtype=dtype)
        return U, 1.0 / q

    def step(self, loss: ModuleLoss) -> StepInfo:
        theta = self.layout.flatten()
        U, scale = self.directions(theta.dtype)
        with torch.no_grad():
            est = zo_gradient(
                lambda batch: loss(self.layout.batched_forward(batch)),
                theta, U, mu=self.mu, two_sided=self.two_sided, scale=scale,
            )
        self.optimizer.zero_grad(set_to_none=True)
        self.layout.set_grad(_clip_(est.grad, self.clip_norm))
        num_sets = est.num_sets
        if self.local:
            self._local_gradients(loss)
            num_sets += 1
        self.optimizer.step()
        return StepInfo(loss=est.loss, num_sets=num_sets)

    def _local_gradients(self, loss: ModuleLoss) -> None:
        """Exact gradients of the ``local`` parameters from one unperturbed forward: every
        other parameter is frozen, so the derivative never passes through them — only
        through the layer that owns the local parameters and the loss arithmetic."""
        frozen = [p for p in self.layout.params if p.requires_grad]
        for p in frozen:
            p.requires_grad_(False)
        try:
            value = loss(lambda *args: self.module(*args))
            grads = torch.autograd.grad(value, self.local)
        finally:
            for p in frozen:
                p.requires_grad_(True)
        for p, g in zip(self.local, grads, strict=True):
            p.grad = g.detach().clone()


class FirstOrderStepper:
    """Back-propagation baseline with the ZOStepper interface (``loss`` returns a scalar)."""

    def __init__(self, module: nn.Module, optimizer: torch.optim.Optimizer, *,
                 clip_norm: float | None = None):
        self.module, self.optimizer, self.clip_norm = module, optimizer, clip_norm

    def step(self, loss: ModuleLoss) -> StepInfo:
        self.optimizer.zero_grad(set_to_none=True)
        value = loss(self.module)
        value.backward()
        if self.clip_norm is not None:
            torch.nn.utils.clip_grad_norm_(self.module.parameters(), self.clip_norm)
        self.optimizer.step()
        return StepInfo(loss=float(value.detach()), num_sets=1)


ModuleResidual = Callable[[Callable[..., torch.Tensor]], torch.Tensor]
"""Residuals given a forward function of the model: (P, N) for P batched parameter sets."""

Realise = Callable[[torch.Tensor], torch.Tensor]
"""(P, D) programmed parameter vectors → the values the hardware actually sets (e.g. phases
on the DAC grid), expressed near the programmed ones (no 2π jumps)."""


class SubspaceLMStepper:
    """Forward-only Levenberg–Marquardt step for L(θ) = mean_n r_n(θ)² in a random subspace.

    Each step draws k directions u_s (per-tensor blocks, as ``ZOStepper``), evaluates the
    residual vector at θ and θ ± μu_s in ONE batched forward call (P = 2k + 1 sets) and
    forms the directional derivatives J v_s = [r(θ+μu_s) − r(θ−μu_s)] / (2μ). With
    ``realise`` the directions are the perturbations the hardware really applied,
    v_s = [realise(θ+μu_s) − realise(θ−μu_s)] / (2μ) (a quantised phase moves by whole DAC
    steps, not by μ); without it v_s = u_s. The step Δθ = Σ_s α_s v_s minimises the damped
    Gauss–Newton model in that subspace,
        (G + λ diag G) α = −g,   G = (J V)(J V)ᵀ / N,   g = (J V) r / N,
    clipped to max |Δθ_i| ≤ ``max_step``. The candidate θ + Δθ is evaluated on the same
    points (one more set); it is accepted if it lowers the loss, and λ follows the gain
    ratio ρ = actual / predicted decrease (λ ÷ 3 if ρ > 0.25, × 4 if ρ < 0.05, Nielsen's
    rule simplified). Up to ``tries`` candidates per step with growing λ. ``block_sizes``
    overrides ``block_size`` per parameter name (e.g. 1 for an electronic read-out layer:
    one direction per weight, i.e. its exact Jacobian columns when the residual is at most
    quadratic in it). ``bounds`` (lo, hi) keeps θ inside a box: perturbations and steps
    are clamped, and the directions are the clamped moves.

    ``exclude`` names parameters the stepper leaves alone (held at their values, e.g. the
    phases of a chip whose electronic gains and biases alone are being tuned).

    Every quantity is a forward evaluation or a k × k solve in the controller: no
    back-propagation.
    """

    LAM_MIN, LAM_MAX = 1e-12, 1e4

    def __init__(
        self,
        module: nn.Module,
        *,
        mu: float,
        num_queries: int = 1,
        distribution: str = "rademacher",
        block_size: int | None = None,
        damping: float = 1e-3,
        max_step: float = 0.2,
        tries: int = 4,
        realise: Realise | None = None,
        block_sizes: Mapping[str, int] | None = None,
        bounds: tuple[torch.Tensor, torch.Tensor] | None = None,
        exclude: Sequence[str] = (),
        generator: torch.Generator,
    ):
        names = {n for n, p in module.named_parameters() if p.requires_grad}
        missing = sorted(set(exclude) - names)
        if missing:
            raise ValueError(f"exclude: no trainable parameter named {missing[0]!r}")
        for name, value in (("mu", mu), ("damping", damping), ("max_step", max_step)):
            if not value > 0:
                raise ValueError(f"{name} must be > 0, got {value}")
        for name, value in (("tries", tries), ("num_queries", num_queries)):
            if value < 1:
                raise ValueError(f"{name} must be ≥ 1, got {value}")
        _lookup_distribution(distribution)
        self.layout = ParamLayout(module, exclude=tuple(exclude))
        if self.layout.dim == 0:
            raise ValueError("exclude: no trainable parameter is left to step")
        self.mu, self.num_queries, self.distribution = mu, num_queries, distribution
        self.max_step, self.tries = max_step, tries
        self.realise, self.generator = realise, generator
        block_sizes = dict(block_sizes or {})
        unknown = sorted(set(block_sizes) - set(self.layout.names))
        if unknown:
            raise ValueError(f"block_sizes: no trainable parameter named {unknown[0]!r}")
        if any(v < 1 for v in block_sizes.values()):
            raise ValueError(f"block_sizes: every size must be ≥ 1, got {block_sizes}")
        self.blocks = split_blocks(self.layout.slices, block_size,
                                   [block_sizes.get(n, block_size) for n in self.layout.names])
        self.lam = damping
        if bounds is not None:
            lo, hi = bounds
            if lo.shape != (self.layout.dim,) or hi.shape != (self.layout.dim,):
                raise ValueError(f"bounds: need two ({self.layout.dim},) vectors, got "
                                 f"{tuple(lo.shape)} and {tuple(hi.shape)}")
            if bool((lo > hi).any()):
                raise ValueError("bounds: every lower bound must be ≤ its upper bound")
        self.bounds = bounds

    def _clamp(self, flat: torch.Tensor) -> torch.Tensor:
        """``flat`` inside the bounds (unchanged without them)."""
        if self.bounds is None:
            return flat
        lo, hi = self.bounds
        return torch.clamp(flat, lo.to(flat.dtype), hi.to(flat.dtype))

    def state_dict(self) -> dict[str, Any]:
        return {"lam": self.lam}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        if state.get("past"):
            raise ValueError("stepper state holds remembered steps (the removed 'memory' "
                             "option); it cannot be continued")
        self.lam = float(state["lam"])

    def directions(self, theta: torch.Tensor) -> torch.Tensor:
        """(k, D) drawn directions u_s (per-tensor blocks)."""
        return block_directions(self.num_queries, self.blocks, self.layout.dim,
                                distribution=self.distribution, generator=self.generator,
                                dtype=theta.dtype)

    def _moves(self, U: torch.Tensor, plus: torch.Tensor, minus: torch.Tensor,
               span: torch.Tensor) -> torch.Tensor:
        """The directions v_s the evaluated points really moved along (module docstring)."""
        if self.realise is not None:
            return (self.realise(plus) - self.realise(minus)) / span.to(U.dtype)
        if self.bounds is None:
            return U
        return (plus - minus) / span.to(U.dtype)

    def step(self, residual: ModuleResidual) -> StepInfo:
        theta = self.layout.flatten()
        dtype, wide = theta.dtype, torch.float64
        U = self.directions(theta)
        k = U.shape[0]
        mu64 = torch.full((k, 1), self.mu, dtype=wide)
        span = 2 * mu64
        plus = self._clamp(theta + mu64.to(dtype) * U)
        minus = self._clamp(theta - mu64.to(dtype) * U)
        with torch.no_grad():
            R = residual(self.layout.batched_forward(
                torch.cat([theta[None], plus, minus]))).to(wide)
            V = self._moves(U, plus, minus, span).to(wide)
            r0 = R[0]
            JV = (R[1:k + 1] - R[k + 1:]) / span
            n = r0.numel()
            G, g = JV @ JV.T / n, JV @ r0 / n
            loss0 = float(r0 @ r0 / n)
            tried = self._damped_step(residual, theta, G, g, V, loss0)
        return StepInfo(loss=loss0, num_sets=2 * k + 1 + tried)

    def _damped_step(self, residual: ModuleResidual, theta: torch.Tensor, G: torch.Tensor,
                     g: torch.Tensor, V: torch.Tensor, loss0: float) -> int:
        """Try up to ``tries`` candidates θ + Δθ with growing λ, keep the first that lowers
        the loss; returns the number of candidates evaluated (one parameter set each)."""
        wide, k = torch.float64, G.shape[0]
        diag = torch.diag(G).clamp_min(1e-30)
        jitter = 1e-14 * float(diag.mean()) * torch.eye(k, dtype=wide)
        for tried in range(1, self.tries + 1):
            # solve, not lstsq: LAPACK's gelsy is not bit-reproducible run to run
            alpha = -torch.linalg.solve(G + self.lam * torch.diag(diag) + jitter, g)
            delta = alpha @ V
            top = float(delta.abs().max())
            if top > self.max_step:
                alpha, delta = alpha * (self.max_step / top), delta * (self.max_step / top)
            predicted = float(-(2 * alpha @ g + alpha @ G @ alpha))
            cand = self._clamp(theta + delta.to(theta.dtype))  # the step the bounds allow
            rc = residual(self.layout.batched_forward(cand[None])).to(wide)[0]
            loss_c = float(rc @ rc / rc.numel())
            rho = (loss0 - loss_c) / predicted if predicted > 0 else -1.0
            if rho > 0.25:
                self.lam = max(self.lam / 3, self.LAM_MIN)
            elif rho < 0.05:
                self.lam = min(self.lam * 4, self.LAM_MAX)
            if loss_c < loss0:
                self.layout.assign(cand)
                return tried
        return self.tries
