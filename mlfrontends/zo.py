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

import difflib
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import nn
from torch.func import functional_call

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
        close = difflib.get_close_matches(name, DIRECTIONS, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ValueError(
            f"distribution: unknown direction distribution {name!r}{hint} "
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
            close = difflib.get_close_matches(unknown[0], list(named), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise ValueError(f"local: no parameter named {unknown[0]!r}{hint}")
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
    are clamped, and the directions are the clamped moves. ``memory`` = m adds the last m
    accepted steps (each scaled to unit rms) to the drawn directions, so the subspace keeps
    the directions along which the loss has been falling (a subspace method with memory,
    as the previous-step direction in conjugate-gradient and L-BFGS): 2m more sets per
    step. ``two_sided = False`` uses forward differences J v_s = [r(θ+μu_s) − r(θ)] / μ
    (v_s = [realise(θ+μu_s) − realise(θ)] / μ): k + 1 sets instead of 2k + 1, at an O(μ)
    curvature bias in each directional derivative instead of O(μ²). ``step(residual,
    check)`` with a second residual function ``check`` on independently drawn points judges
    each candidate there instead (accepted if it lowers the loss on those points; ρ from
    that decrease), as stochastic trust-region methods do (STORM, Chen, Menickelly &
    Scheinberg 2018): on the points that built the model the decrease is biased upward,
    so steps that only fit those points' noise pass. One more set per step (θ on the check
    points), or none when the caller already has that loss (``check_loss0``).

    ``grid`` {name: q} puts those tensors on a lattice of spacing q (e.g. the phase codes of
    an 8-bit DAC): θ is snapped onto it, each perturbation is a whole number of steps
    (μ rounded to a multiple of q, at least one), and each step coefficient α_s is rounded
    to a multiple of q, so with Rademacher directions every evaluated point and every step
    lies on the lattice and the Gauss–Newton model predicts the step the hardware really
    takes. Without it a step smaller than q moves each coordinate either not at all or by a
    whole q, at random according to where θ sits between codes, which the model does not
    see. If rounding leaves no move, the largest |α_s| moves by one step.

    ``density`` < 1 makes each drawn direction sparse: every coordinate of its block is
    kept with that probability (a direction that would keep none keeps its whole block).
    On a lattice the smallest move is one step on every coordinate of a direction, so
    sparser directions give a finer smallest move at the same number of directions.

    ``exclude`` names parameters the stepper leaves alone (held at their values, e.g. the
    phases of a chip whose electronic gains and biases alone are being tuned).

    Every quantity is a forward evaluation or a k × k solve in the controller: no
    back-propagation.
    """

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
        memory: int = 0,
        two_sided: bool = True,
        grid: Mapping[str, float] | None = None,
        density: float = 1.0,
        exclude: Sequence[str] = (),
        generator: torch.Generator,
    ):
        names = {n for n, p in module.named_parameters() if p.requires_grad}
        missing = sorted(set(exclude) - names)
        if missing:
            raise ValueError(f"exclude: no trainable parameter named {missing[0]!r}")
        if not 0 < density <= 1:
            raise ValueError(f"density must be in (0, 1], got {density}")
        self.density = float(density)
        if memory < 0:
            raise ValueError(f"memory must be ≥ 0, got {memory}")
        if mu <= 0:
            raise ValueError(f"mu must be > 0, got {mu}")
        if damping <= 0:
            raise ValueError(f"damping must be > 0, got {damping}")
        if max_step <= 0:
            raise ValueError(f"max_step must be > 0, got {max_step}")
        if tries < 1:
            raise ValueError(f"tries must be ≥ 1, got {tries}")
        if num_queries < 1:
            raise ValueError(f"num_queries must be ≥ 1, got {num_queries}")
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
        self.memory = int(memory)
        self.two_sided = bool(two_sided)
        grid = dict(grid or {})
        unknown = sorted(set(grid) - set(self.layout.names))
        if unknown:
            raise ValueError(f"grid: no trainable parameter named {unknown[0]!r}")
        if grid and (memory or distribution != "rademacher"):
            raise ValueError("grid: needs distribution 'rademacher' and memory 0 (every "
                             "direction must move each coordinate by ±1 lattice step)")
        if any(not v > 0 for v in grid.values()):
            raise ValueError(f"grid: every spacing must be > 0, got {grid}")
        # spacing per coordinate (0: continuous) and per direction (block order, as drawn)
        self._q = torch.zeros(self.layout.dim, dtype=torch.float64)
        for name, sl in zip(self.layout.names, self.layout.slices, strict=True):
            self._q[sl] = grid.get(name, 0.0)
        self._q_dir = torch.stack([self._q[b.start] for b in self.blocks]).repeat_interleave(
            num_queries) if self.blocks else torch.zeros(0, dtype=torch.float64)
        self._lattice = bool((self._q > 0).any())
        if self._lattice and self.bounds is not None:  # bounds onto the lattice, inside
            lo, hi = self.bounds
            on, q = self._q > 0, torch.where(self._q > 0, self._q, 1.0)
            lo = torch.where(on & torch.isfinite(lo), torch.ceil(lo / q) * q, lo)
            hi = torch.where(on & torch.isfinite(hi), torch.floor(hi / q) * q, hi)
            self.bounds = (lo, hi)
        self._past: list[torch.Tensor] = []  # last accepted steps, unit rms, float64

    LAM_MIN, LAM_MAX = 1e-12, 1e4

    def _clamp(self, flat: torch.Tensor) -> torch.Tensor:
        """Lattice coordinates snapped to their grid, then everything into the bounds
        (whose lattice coordinates are lattice points, so the result stays on it)."""
        if self._lattice:
            flat = self._snap(flat)
        if self.bounds is None:
            return flat
        lo, hi = self.bounds
        return torch.clamp(flat, lo.to(flat.dtype), hi.to(flat.dtype))

    def state_dict(self) -> dict[str, Any]:
        return {"lam": self.lam, "past": [t.clone() for t in self._past]}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.lam = float(state["lam"])
        self._past = [t.clone() for t in state.get("past", [])]

    def directions(self, theta: torch.Tensor) -> torch.Tensor:
        """(k, D) directions: the drawn u_s (per-tensor blocks), then the remembered steps."""
        U = block_directions(self.num_queries, self.blocks, self.layout.dim,
                             distribution=self.distribution, generator=self.generator,
                             dtype=theta.dtype)
        if self.density < 1:
            keep = torch.rand(U.shape, generator=self.generator, dtype=torch.float64) \
                < self.density
            sparse = U * keep.to(U.dtype)
            empty = ~(sparse != 0).any(dim=1)
            U = torch.where(empty[:, None], U, sparse)
        if not self._past:
            return U
        return torch.cat([U, torch.stack(self._past).to(theta.dtype)])

    def _remember(self, step: torch.Tensor) -> None:
        rms = float(step.pow(2).mean().sqrt())
        if self.memory == 0 or not math.isfinite(rms) or rms == 0.0:
            return
        self._past = [*self._past, step / rms][-self.memory:]

    def _snap(self, flat: torch.Tensor) -> torch.Tensor:
        """Lattice coordinates rounded to their grid (the others unchanged)."""
        q = self._q.to(flat.dtype)
        return torch.where(q > 0, torch.round(flat / torch.where(q > 0, q, 1.0)) * q, flat)

    def step(self, residual: ModuleResidual, check: ModuleResidual | None = None,
             check_loss0: float | None = None) -> StepInfo:
        theta = self.layout.flatten()
        lattice = self._lattice
        if lattice:  # programmed = realised codes (the realised network does not change)
            theta = self._clamp(theta)
            self.layout.assign(theta)
        dtype = theta.dtype
        wide = torch.float64
        U = self.directions(theta)
        k = U.shape[0]
        qd = torch.zeros(k, dtype=wide)  # remembered steps (memory) are continuous
        qd[:len(self._q_dir)] = self._q_dir
        # μ per direction: a whole number (≥ 1) of lattice steps on a lattice tensor
        mu64 = torch.where(qd > 0, qd * torch.clamp(torch.round(self.mu / torch.where(
            qd > 0, qd, 1.0)), min=1.0), torch.full_like(qd, self.mu))[:, None]
        mu = mu64.to(dtype)
        plus = self._clamp(theta + mu * U)
        # forward differences: the base point θ takes the place of θ − μu_s
        minus = self._clamp(theta - mu * U) if self.two_sided else theta[None]
        span = 2 * mu64 if self.two_sided else mu64
        with torch.no_grad():
            fwd = self.layout.batched_forward(
                torch.cat([theta[None], plus, minus if self.two_sided else minus[:0]]))
            R = residual(fwd).to(wide)
            if self.realise is not None:
                V = (self.realise(plus) - self.realise(minus)) / span.to(dtype)
            else:
                V = U if (self.bounds is None and not lattice) else \
                    (plus - minus) / span.to(dtype)
            V = V.to(wide)
            r0 = R[0]
            JV = (R[1:k + 1] - (R[k + 1:] if self.two_sided else r0)) / span
            n = r0.numel()
            G, g = JV @ JV.T / n, JV @ r0 / n
            loss0 = float(r0 @ r0 / n)
            judge, ref = residual, loss0
            if check is not None:
                judge = check
                if check_loss0 is None:
                    rq = check(self.layout.batched_forward(theta[None])).to(wide)[0]
                    ref = float(rq @ rq / rq.numel())
                else:
                    ref = float(check_loss0)
            diag = torch.diag(G).clamp_min(1e-30)
            jitter = 1e-14 * float(diag.mean()) * torch.eye(k, dtype=wide)
            sets, accepted = (2 * k + 1 if self.two_sided else k + 1), None
            sets += check is not None and check_loss0 is None
            for _ in range(self.tries):
                # solve, not lstsq: LAPACK's gelsy is not bit-reproducible run to run
                alpha = -torch.linalg.solve(G + self.lam * torch.diag(diag) + jitter, g)
                delta = alpha @ V
                top = float(delta.abs().max())
                if top > self.max_step:
                    alpha, delta = alpha * (self.max_step / top), delta * (self.max_step / top)
                if lattice:  # whole lattice steps; at least one move
                    on = qd > 0
                    units = alpha / torch.where(on, qd, 1.0)
                    steps = torch.round(units)
                    if not bool((steps[on] != 0).any()) and bool(on.any()):
                        best = torch.argmax(torch.where(on, units.abs(), -1.0))
                        steps[best] = torch.sign(alpha[best])
                    alpha = torch.where(on, steps * qd, alpha)
                    delta = alpha @ V
                predicted = float(-(2 * alpha @ g + alpha @ G @ alpha))
                cand = self._clamp(theta + delta.to(dtype))  # the step the bounds allow
                rc = judge(self.layout.batched_forward(cand[None]))
                rc = rc.to(wide)[0]
                sets += 1
                loss_c = float(rc @ rc / rc.numel())
                rho = (ref - loss_c) / predicted if predicted > 0 else -1.0
                if rho > 0.25:
                    self.lam = max(self.lam / 3, self.LAM_MIN)
                elif rho < 0.05:
                    self.lam = min(self.lam * 4, self.LAM_MAX)
                if loss_c < ref:
                    accepted = cand
                    break
            if accepted is not None:
                self._remember(accepted.to(wide) - theta.to(wide))
                self.layout.assign(accepted)
        return StepInfo(loss=loss0, num_sets=sets)
