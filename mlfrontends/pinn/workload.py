"""``pinn`` workload: train a physics-informed network, forward-only (BP-free) or first-order.

Loss: mean squared PDE residual on fresh uniform collocation points each iteration, the
network's derivatives from a derivative estimator (sparse-grid Stein by default), the hard
constraint of the PDE (``pdes.py``) applied analytically. Update: ZO gradient estimate
(``mlfrontends.zo``) fed to Adam — every perturbed parameter set of a step and every
Stein stencil point of every collocation point in ONE batched forward call — or autograd
for the first-order reference. The network runs digitally or on the photonic core
(``model.execution``: weight domain or phase domain, with the chip preset's noise).

metrics.json keys: ``rel_l2`` (‖u_pred − u‖/‖u‖ on the PDE's fixed test grid, final),
``rel_l2_best``, ``iterations``, ``forward_evals`` (network evaluations, i.e. input rows
through the whole network, summed over all parameter sets), ``wall_s`` (training wall time,
cumulative over resumes), ``params`` (trainable), ``params_dense`` (the dense network of the
same widths), ``final_loss``, ``diverged``; with ``chip.*`` the cost estimate of the training
on the photonic core (per step and total). ``prediction.npz``: the test-grid coordinates,
``u_pred`` and ``u_exact``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Literal

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field, model_validator

from photonic.runio import RunContext, WorkloadConfig

from ..zo import FirstOrderStepper, ParamLayout, SubspaceLMStepper, ZOStepper
from .chip import ChipMLP
from .derivatives import Autograd, build_estimator
from .models import DenseLinear, TTLinear, build_mlp, count_parameters
from .pdes import PDE, PDE_REGISTRY, build_pde

__all__ = ["Config", "run", "lr_at", "build_network", "DEFAULT_NETWORKS"]

# Networks of the brief (Zhao et al., arXiv 2502.12384, §5): widths, activation, TT layers
# {layer index: (input modes, output modes)}, Stein σ.
DEFAULT_NETWORKS: dict[str, dict[str, Any]] = {
    "burgers": dict(widths=[2, 100, 100, 100, 100, 1], activation="tanh",
                    tt_layers={i: ([4, 5, 5], [5, 5, 4]) for i in (1, 2, 3)}, sigma=1e-3),
    "darcy": dict(widths=[2, 100, 100, 100, 100, 1], activation="tanh",
                  tt_layers={i: ([4, 5, 5], [5, 5, 4]) for i in (1, 2, 3)}, sigma=1e-3),
    "blackscholes": dict(widths=[2, 128, 128, 1], activation="tanh",
                         tt_layers={1: ([4, 4, 8], [8, 4, 4])}, sigma=1e-3),
    "hjb": dict(widths=[21, 512, 512, 1], activation="sin",
                tt_layers={0: ([1, 1, 3, 7], [8, 4, 4, 4]), 1: ([4, 4, 4, 8], [8, 4, 4, 4])},
                sigma=0.1),
}


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ModelConfig(_Section):
    arch: Literal["tt", "dense"] = "tt"
    widths: list[int] | None = Field(None, description="layer widths; default: the brief's")
    activation: Literal["tanh", "sin"] | None = None
    tt_layers: dict[int, tuple[list[int], list[int]]] | None = None
    tt_rank: int = Field(2, ge=1)
    tt_init: Literal["random", "ttsvd"] = "random"
    execution: Literal["digital", "weight", "phase"] = "digital"
    tile: int = Field(8, ge=2, description="k of the k×k photonic SVD tiles")
    chip_layers: Literal["all", "all_but_readout", "tt"] = Field(
        "all", description="with execution weight/phase: 'all' layers on the photonic core; "
        "'all_but_readout': the read-out (last) layer in electronics, as in the published "
        "TONN (its last layer is a digital nn.Linear); 'tt': only the TT layers on meshes, "
        "the dense input and read-out layers in electronics (digital weights)")
    precision: Literal["float64", "float32"] = "float64"


class EstimatorConfig(_Section):
    kind: Literal["sg_stein", "mc_stein", "fd", "autograd"] = "sg_stein"
    sigma: float | None = Field(None, gt=0, description="Stein smoothing; default per PDE")
    level: int = Field(3, ge=1, description="Smolyak level (sg_stein)")
    num_samples: int = Field(2048, ge=1, description="Gaussian samples (mc_stein)")
    step: float = Field(1e-3, gt=0, description="finite-difference step (fd)")


class OptimConfig(_Section):
    method: Literal["zo", "coordinate", "subspace_lm", "first_order"] = "zo"
    lr: float = Field(1e-3, gt=0, description="Adam's step size; for subspace_lm the trust "
                      "radius: the largest change of any parameter in one step")
    lr_schedule: Literal["constant", "cosine", "exponential"] = "constant"
    lr_final: float = Field(1e-4, gt=0, description="end of cosine/exponential schedules")
    warmup_iters: int = Field(0, ge=0)
    mu: float = Field(0.01, gt=0, description="ZO perturbation size (parameter units)")
    num_queries: int = Field(1, ge=1, description="q directions (per tensor when per_tensor)")
    distribution: Literal["rademacher", "gaussian"] = "rademacher"
    two_sided: bool = True
    per_tensor: bool = True
    clip_norm: float | None = Field(None, gt=0, description="clip ‖ĝ‖ before Adam")
    block_size: int | None = Field(None, ge=1, description="per-tensor blocks cut into "
                                   "chunks of at most this many parameters (per_tensor)")
    local_readout: bool = Field(False, description="train an electronic read-out layer with "
                                "its exact local gradient (zo only)")
    betas: tuple[float, float] = (0.9, 0.999)
    damping: float = Field(1e-3, gt=0, description="initial Levenberg–Marquardt λ "
                           "(subspace_lm)")
    lm_tries: int = Field(4, ge=1, description="candidate steps per iteration (subspace_lm)")
    realised_directions: bool = Field(
        True, description="subspace_lm: use the perturbation the chip really applied (phases "
        "on the DAC grid) as the direction, not the drawn one")
    clamp_phases: bool = Field(
        False, description="subspace_lm: keep every trainable phase in [0, 2π) (perturbations "
        "and steps clamped), so the controller never wraps a phase across 2π — with gamma "
        "error and crosstalk a wrap makes the realised phase jump by 2π·δγ (and 2π·c in its "
        "neighbours)")
    memory: int = Field(0, ge=0, description="subspace_lm: also search along the last "
                        "this many accepted steps (2 more parameter sets per step each)")
    direction_density: float = Field(
        1.0, gt=0, le=1, description="subspace_lm: fraction of its block's coordinates each "
        "random direction moves (the rest stay); with on_grid the smallest step moves "
        "every coordinate of one direction by one code, so sparser directions refine it")
    on_grid: bool = Field(
        False, description="subspace_lm on quantised phases: keep every programmed phase "
        "on the phase-DAC's code grid, perturb by whole codes and round each step to whole "
        "codes, so the Gauss–Newton model predicts the step the DAC really makes (needs "
        "phase quantisation with phase_dac.grid 'phase', a uniform code grid)")
    fresh_check: bool = Field(
        False, description="subspace_lm: judge each candidate step on a second, "
        "independently drawn batch of collocation_points points (accept if it lowers the "
        "loss there) instead of on the points that built the Gauss–Newton model (STORM-"
        "style ratio test); one unperturbed pass over the second batch per step gives its "
        "reference loss and causal weights")
    average: float | None = Field(
        None, gt=0, lt=1, description="exponential moving average of the parameters with "
        "this decay per step (0.99: a window of ~100 steps); the average is what is "
        "evaluated, selected and delivered, the optimiser keeps stepping from its own "
        "iterate (Polyak–Ruppert averaging)")
    readout_block_size: int | None = Field(
        None, ge=1, description="subspace_lm: block size for the parameters of an electronic "
        "read-out layer (1: one direction per weight); default block_size")


class CollocationConfig(_Section):
    """How the collocation points of each iteration are drawn.

    ``uniform``: fresh i.i.d. uniform points. ``rad``: residual-based adaptive distribution
    (Wu, Zhu, Tan, Kartha & Lu 2023, "A comprehensive study of non-adaptive and
    residual-based adaptive sampling for physics-informed neural networks", CMAME 403,
    115671): every ``refresh_every`` iterations a fresh uniform pool of ``pool`` points is
    drawn and the current network's residual evaluated there (forward only, counted in
    ``forward_evals``); each iteration then draws its points from the pool without
    replacement with probability ∝ |r|^k / mean|r|^k + c.
    """

    sampling: Literal["uniform", "rad"] = "uniform"
    pool: int = Field(4096, ge=1, description="candidate points per refresh (rad)")
    refresh_every: int = Field(50, ge=1, description="iterations between refreshes (rad)")
    k: float = Field(1.0, ge=0, description="residual exponent (rad)")
    c: float = Field(1.0, ge=0, description="uniform floor of the density (rad)")


class CausalConfig(_Section):
    """Causal residual weights (Wang, Sankaran & Perdikaris 2024, "Respecting causality for
    training physics-informed neural networks", CMAME 421, 116813): the time axis is cut
    into ``bins`` equal slabs, ordered from the initial (or terminal) condition; slab i
    weighs w_i = exp(−eps · Σ_{j<i} L_j) with L_j the current network's mean squared
    residual in slab j, so a later slab counts only once the earlier ones are solved. The
    weights come from one forward pass of the unperturbed network per iteration (counted
    in forward_evals) and are constants of that iteration's step."""

    eps: float = Field(1.0, gt=0, description="causality strength ε")
    eps_final: float | None = Field(
        None, ge=0, description="ε at the last iteration, reached by a cosine over the "
        "run (0: the final steps weigh every slab equally, so late times the weights "
        "discounted are fitted too); None: ε throughout")
    bins: int = Field(16, ge=2, description="time slabs")
    min_weight: float = Field(0.0, ge=0, le=1, description="floor of every slab's weight "
                              "(keeps late times in view while earlier ones are unsolved)")
    unbiased: bool = Field(
        False, description="with RAD collocation, estimate each slab's loss L_j for the "
        "uniform measure (self-normalised importance weights 1/density of the drawn "
        "points) instead of as the plain mean over the residual-biased points, which "
        "overstates the slabs holding the largest residuals and so discounts every later "
        "slab")

    def eps_at(self, it: int, total: int) -> float:
        """ε at iteration ``it`` (0-based) of ``total``."""
        if self.eps_final is None:
            return self.eps
        return _cosine(self.eps, self.eps_final, min(it / max(total - 1, 1), 1.0))


class FinishConfig(_Section):
    """Electronic finish: after the phase stage, ``iterations`` more forward-only
    Levenberg–Marquardt steps on the continuous electronic parameters alone (every tile's
    gain and every bias; SubspaceLMStepper with ``exclude`` = the phases), the MZI phases
    held at the DAC codes the phase stage left. With 8-bit phase DACs a phase moves only in
    whole codes (0.0246 rad), so the phase stage ends on a lattice it cannot refine; the
    gains and biases are set digitally after detection, continuously, and with one
    direction per parameter (``block_size`` 1) each step is a damped Gauss–Newton step
    with the full Jacobian of the residuals in them (2 × #parameters + 1 parameter sets
    with central differences)."""

    iterations: int = Field(..., ge=1, description="finish steps after the phase stage")
    time_limit_s: float | None = Field(None, gt=0, description="stop the finish after this "
                                       "much training time (the phase stage has its own)")
    lr: float = Field(0.05, gt=0, description="trust radius: the largest change of a gain "
                      "or bias in one step")
    lr_final: float | None = Field(None, gt=0, description="trust radius at the last finish "
                                   "step, reached by a cosine; None: lr throughout")
    mu: float = Field(0.03, gt=0, description="perturbation of a gain or bias (estimate: "
                      "in float32 the Stein residual's ~3e-4 rounding noise, differenced over "
                      "2μ, is ~0.2 of Jacobian noise at μ = 1e-3 and ~0.007 at 0.03)")
    block_size: int = Field(1, ge=1, description="parameters per random direction "
                            "(1: one direction per parameter, the full Jacobian)")
    two_sided: bool = Field(True, description="central differences (2k + 1 parameter sets "
                            "per step); false: forward differences (k + 1)")
    eval_every: int = Field(10, ge=1, description="finish steps between evaluations "
                            "(and checkpoints)")


class Config(WorkloadConfig):
    kind: Literal["pinn"] = "pinn"
    pde: str = "burgers"
    pde_params: dict[str, Any] = Field(default_factory=dict)
    model: ModelConfig = ModelConfig()
    estimator: EstimatorConfig = EstimatorConfig()
    optim: OptimConfig = OptimConfig()
    iterations: int = Field(1000, ge=1)
    time_limit_s: float | None = Field(None, gt=0, description="stop training after this")
    collocation_points: int = Field(1200, ge=1)
    collocation: CollocationConfig = CollocationConfig()
    causal: CausalConfig | None = Field(None, description="causal residual weights "
                                        "(time-dependent PDEs); None: all points weigh 1")
    finish: FinishConfig | None = Field(
        None, description="electronic finish after the phase stage (model.execution "
        "'phase', a forward-only method); None: none")
    symmetric: bool = Field(
        False, description="build the PDE's declared symmetry into the network: NN_s(z) = "
        "½(NN(z) ± NN(Rz)) with R the reflection and ± its parity, so u has the exact "
        "solution's parity whatever the parameters (each point costs two network "
        "evaluations per stencil node, counted in forward_evals)")
    eval_every: int = Field(50, ge=1)
    select: Literal["last", "min_residual"] = Field(
        "last", description="which parameters the run delivers: the last iterate, or "
        "(min_residual) those with the lowest mean squared PDE residual on a fixed set of "
        "validation_points uniform points, scored at every evaluation (forward only, "
        "counted in forward_evals; the reference solution is never used to choose)")
    validation_points: int = Field(4096, ge=1, description="points of the fixed validation "
                                   "set (select = min_residual)")
    checkpoint_every: int = Field(100, ge=1)
    threads: int | None = Field(None, ge=1, description="torch CPU threads (None: default)")

    @model_validator(mode="after")
    def _check(self):
        if self.pde not in PDE_REGISTRY:
            build_pde(self.pde)  # raises the did-you-mean error
        PDE_REGISTRY[self.pde].Params(**self.pde_params)
        if self.optim.method != "first_order" and self.estimator.kind == "autograd":
            raise ValueError(
                "estimator.kind = 'autograd' needs back-propagation; with optim.method = "
                f"{self.optim.method!r} use sg_stein, mc_stein or fd"
            )
        if self.causal is not None:
            if build_pde(self.pde, self.pde_params).causal_axis is None:
                raise ValueError(f"causal: pde {self.pde!r} has no time axis; remove "
                                 "'causal' (it weights residuals by time slab)")
        if self.symmetric and PDE_REGISTRY[self.pde].symmetry is None:
            raise ValueError(f"symmetric = true: pde {self.pde!r} declares no symmetry "
                             "(PDE.symmetry); set symmetric: false")
        c = self.collocation
        if c.sampling == "rad" and c.pool < self.collocation_points:
            raise ValueError(f"collocation.pool = {c.pool} must be ≥ collocation_points = "
                             f"{self.collocation_points} (points are drawn without "
                             "replacement from the pool)")
        if c.sampling == "rad" and c.k == 0 and c.c == 0:
            raise ValueError("collocation: k = 0 and c = 0 give an all-zero density")
        if self.optim.method == "subspace_lm" and self.optim.local_readout:
            raise ValueError("optim.local_readout = true is for method 'zo'; subspace_lm "
                             "already solves for every parameter in its subspace")
        if self.optim.local_readout:
            if self.optim.method == "first_order":
                raise ValueError("optim.local_readout = true is for ZO training; "
                                 "first_order already has every gradient")
            if self.model.execution != "digital" and self.model.chip_layers == "all":
                raise ValueError(
                    "optim.local_readout = true needs an electronic read-out layer: set "
                    "model.chip_layers = 'all_but_readout' or 'tt' (got 'all': the read-out "
                    "is photonic and its "
                    "gradient would need back-propagation through the meshes)")
        if self.optim.clamp_phases and (self.optim.method != "subspace_lm"
                                        or self.model.execution != "phase"):
            raise ValueError("optim.clamp_phases is for method 'subspace_lm' with "
                             "model.execution 'phase' (got "
                             f"{self.optim.method!r}, {self.model.execution!r})")
        if self.optim.on_grid and (self.optim.method != "subspace_lm"
                                   or self.model.execution != "phase"
                                   or self.optim.distribution != "rademacher"
                                   or self.optim.memory):
            raise ValueError("optim.on_grid = true is for method 'subspace_lm' with "
                             "model.execution 'phase', distribution 'rademacher' and memory "
                             f"0 (got {self.optim.method!r}, {self.model.execution!r}, "
                             f"{self.optim.distribution!r}, memory {self.optim.memory})")
        if self.optim.direction_density < 1 and self.optim.method != "subspace_lm":
            raise ValueError(f"optim.direction_density = {self.optim.direction_density} is "
                             f"for method 'subspace_lm' (got {self.optim.method!r})")
        if self.optim.fresh_check and self.optim.method != "subspace_lm":
            raise ValueError("optim.fresh_check = true is for method 'subspace_lm' (got "
                             f"{self.optim.method!r})")
        if self.optim.memory and self.optim.method != "subspace_lm":
            raise ValueError(f"optim.memory = {self.optim.memory} is for method 'subspace_lm' "
                             f"(got {self.optim.method!r})")
        if self.optim.readout_block_size is not None:
            if self.optim.method != "subspace_lm":
                raise ValueError("optim.readout_block_size is for method 'subspace_lm' (got "
                                 f"{self.optim.method!r})")
            if self.model.execution != "digital" and self.model.chip_layers == "all":
                raise ValueError(
                    "optim.readout_block_size needs an electronic read-out layer: set "
                    "model.chip_layers = 'all_but_readout' or 'tt' (got 'all')")
        if self.finish is not None and (self.model.execution != "phase"
                                        or self.optim.method == "first_order"):
            raise ValueError("finish is for forward-only training in the phase domain "
                             "(model.execution 'phase', optim.method zo, coordinate or "
                             f"subspace_lm; got {self.model.execution!r}, "
                             f"{self.optim.method!r})")
        if self.finish is not None and self.optim.average is not None:
            raise ValueError("optim.average with a finish: the run delivers the finish's "
                             "last iterate, not an average of the phase stage's iterates; "
                             "remove optim.average")
        if self.finish is not None and self.select != "last":
            raise ValueError(
                f"select = {self.select!r} with a finish: use 'last' (the run delivers the "
                "finish's last iterate; in a measured finish the uniform validation residual "
                "rose while the test error fell, so it cannot be trusted to choose)")
        if self.optim.method == "first_order" and self.model.execution == "phase":
            raise ValueError("optim.method = 'first_order' with model.execution = 'phase' is "
                             "not a BP-free recipe; use zo or coordinate")
        return self


# ------------------------------------------------------------------------------ schedules
def _cosine(start: float, end: float, frac: float) -> float:
    """Cosine from ``start`` (frac 0) to ``end`` (frac 1)."""
    return end + 0.5 * (start - end) * (1 + math.cos(math.pi * frac))


def lr_at(it: int, o: OptimConfig, total: int) -> float:
    """Learning rate at iteration ``it`` (0-based): linear warm-up, then the schedule."""
    if it < o.warmup_iters:
        return o.lr * (it + 1) / o.warmup_iters
    frac = (it - o.warmup_iters) / max(1, total - o.warmup_iters)
    if o.lr_schedule == "constant":
        return o.lr
    if o.lr_schedule == "cosine":
        return _cosine(o.lr, o.lr_final, frac)
    return o.lr * (o.lr_final / o.lr) ** frac


# -------------------------------------------------------------------------------- building
def _net_spec(cfg: Config) -> dict[str, Any]:
    spec = dict(DEFAULT_NETWORKS[cfg.pde])
    m = cfg.model
    if m.widths is not None:
        spec["widths"] = m.widths
        spec["tt_layers"] = m.tt_layers or {}
    if m.tt_layers is not None:
        spec["tt_layers"] = m.tt_layers
    if m.activation is not None:
        spec["activation"] = m.activation
    if cfg.estimator.sigma is not None:
        spec["sigma"] = cfg.estimator.sigma
    return spec


def _electronic(cfg: Config, i: int, last: int, is_tt: bool) -> bool:
    """Whether layer ``i`` (of 0..``last``) runs in electronics under model.chip_layers."""
    if cfg.model.execution == "digital":
        return True
    if cfg.model.chip_layers == "tt":
        return not is_tt
    return cfg.model.chip_layers == "all_but_readout" and i == last and not is_tt


def build_network(cfg: Config, ctx: RunContext) -> torch.nn.Module:
    """The configured MLP, digital or with its layers on the photonic core."""
    spec = _net_spec(cfg)
    dtype = getattr(torch, cfg.model.precision)
    net = build_mlp(
        spec["widths"], activation=spec["activation"],
        tt_layers=spec["tt_layers"] if cfg.model.arch == "tt" else None,
        tt_rank=cfg.model.tt_rank, tt_init=cfg.model.tt_init, dtype=dtype, seed=ctx.seed,
    )
    if cfg.model.execution == "digital":
        return net
    import photonic

    layers = []
    last = len(net.layers) - 1
    for i, layer in enumerate(net.layers):
        if _electronic(cfg, i, last, isinstance(layer, TTLinear)):
            layers.append(layer)  # electronic dense layer
            continue
        kw = dict(mode=cfg.model.execution, tile=cfg.model.tile, device=ctx.device,
                  noise=ctx.noise, seed=ctx.seed + 1000 * (i + 1), dtype=dtype)
        if isinstance(layer, TTLinear):
            new = photonic.TTPhotonicLinear(
                list(layer.in_shape), list(layer.out_shape), list(layer.ranks[1:-1]),
                cores=[c.detach() for c in layer.cores], **kw)
        else:
            new = photonic.PhotonicLinear(layer.weight.shape[1], layer.weight.shape[0],
                                          weight=layer.weight.detach(), **kw)
        new.bias.data.copy_(layer.bias.detach())
        layers.append(new)
    return ChipMLP(layers, spec["activation"], fast=ctx.noise.linear_detection)


def _readout_names(net: torch.nn.Module) -> tuple[str, ...]:
    """Parameter names of the network's last (read-out) layer."""
    last = len(net.layers) - 1
    return tuple(f"layers.{last}.{n}" for n, _ in net.layers[last].named_parameters())


def _is_phase(name: str) -> bool:
    """Whether a parameter name is a photonic mesh's MZI phases (PhotonicMatrix.phases);
    every other trainable parameter (gains, biases, electronic weights) is continuous."""
    return name.endswith("phases")


def _phase_bounds(net: torch.nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    """Bounds over the trainable parameters: [0, 2π) for every phase (just below 2π, which
    the DAC wraps to 0), none for gains, biases and electronic weights. A phase that starts
    at or above the upper bound is set to 0, which the DAC realises identically."""
    layout = ParamLayout(net)
    lo = torch.full((layout.dim,), -math.inf, dtype=torch.float64)
    hi = torch.full((layout.dim,), math.inf, dtype=torch.float64)
    for name, p, sl in zip(layout.names, layout.params, layout.slices, strict=True):
        if _is_phase(name):
            lo[sl], hi[sl] = 0.0, 2 * math.pi * (1 - 1e-6)
            with torch.no_grad():
                p.masked_fill_(p >= hi[sl].reshape(p.shape).to(p.dtype), 0.0)
    if not bool(torch.isfinite(lo).any()):
        raise ValueError("optim.clamp_phases: the network has no trainable phases "
                         "(model.execution must be 'phase')")
    return lo, hi


def _phase_grid(net: torch.nn.Module, ctx: RunContext, on: bool) -> dict[str, float]:
    """optim.on_grid: the phase-DAC code spacing for every trainable phase tensor."""
    if not on:
        return {}
    dac = ctx.device.phase_dac
    if not ctx.noise.phase_quantization or dac.grid != "phase":
        raise ValueError(
            "optim.on_grid = true needs quantised phases on a uniform code grid: "
            f"chip.noise.phase_quantization = {ctx.noise.phase_quantization}, "
            f"phase_dac.grid = {dac.grid!r} (need true and 'phase')")
    step = 2 * math.pi / (2**dac.bits - 1)
    return {n: step for n, _ in net.named_parameters() if _is_phase(n)}


def _readout_blocks(net: torch.nn.Module, size: int | None) -> dict[str, int]:
    """optim.readout_block_size for the parameters of an electronic read-out layer."""
    if size is None:
        return {}
    last = net.layers[len(net.layers) - 1]
    if not isinstance(last, DenseLinear):
        raise ValueError("optim.readout_block_size: the read-out layer is "
                         f"{type(last).__name__}, not an electronic dense layer")
    return dict.fromkeys(_readout_names(net), size)


def _generators(module: torch.nn.Module) -> list[torch.Generator]:
    """Noise generators of the photonic layers (their state is part of a checkpoint)."""
    return [m._gen for m in module.modules() if isinstance(getattr(m, "_gen", None),
                                                           torch.Generator)]


def _symmetrised(pde: PDE, fwd, on: bool = True):
    """``x -> ½(fwd(x) ± fwd(Rx))`` for the PDE's reflection R and parity ± (one batched
    call on the stacked inputs); ``fwd`` itself when ``on`` is false. ``fwd`` maps inputs
    (..., M, d) to outputs (..., M, 1), with or without leading parameter-set dims."""
    if not on:
        return fwd
    axis, centre, parity = pde.symmetry

    def symmetric(x: torch.Tensor) -> torch.Tensor:
        sign = torch.ones(x.shape[-1], dtype=x.dtype)
        sign[axis] = -1.0
        shift = torch.zeros(x.shape[-1], dtype=x.dtype)
        shift[axis] = 2.0 * centre
        m = x.shape[-2]
        y = fwd(torch.cat([x, x * sign + shift], -2))
        return 0.5 * (y[..., :m, :] + parity * y[..., m:, :])

    return symmetric


def _residuals(pde: PDE, estimator, z: torch.Tensor, gen: torch.Generator,
               symmetric: bool = False):
    """``fwd -> r``: the PDE residual at every collocation point, (N,) or (P, N)."""
    def residual(fwd) -> torch.Tensor:
        f = _symmetrised(pde, fwd, symmetric)
        jet = estimator.estimate(lambda x: f(x).squeeze(-1), z, generator=gen)
        return pde.residual(z, pde.constrain(z, jet))

    return residual


def _causal_weights(pde: PDE, z: torch.Tensor, r: torch.Tensor, c: CausalConfig,
                    eps: float | None = None,
                    density: torch.Tensor | None = None) -> torch.Tensor:
    """√w per point (N,) for the residuals r (N,) of the unperturbed network (CausalConfig;
    ``eps`` overrides ``c.eps``, e.g. with its schedule). ``density`` (N,): the sampling
    density of each point relative to uniform; the slab losses are then the
    importance-weighted means Σ r²/d / Σ 1/d (the uniform-measure loss of the slab)."""
    axis, direction = pde.causal_axis
    lo, hi = pde.bounds[axis]
    s = (z[:, axis].double() - lo) / (hi - lo)
    if direction < 0:
        s = 1.0 - s
    slab = (s * c.bins).long().clamp(0, c.bins - 1)
    iw = torch.ones_like(r, dtype=torch.float64) if density is None else 1.0 / density.double()
    total = torch.zeros(c.bins, dtype=torch.float64).index_add_(0, slab, r.double() ** 2 * iw)
    count = torch.zeros(c.bins, dtype=torch.float64).index_add_(0, slab, iw)
    mean = torch.where(count > 0, total / torch.where(count > 0, count, 1.0), 0.0)
    before = torch.cumsum(mean, 0) - mean  # Σ_{j<i} L_j
    w = torch.exp(-(c.eps if eps is None else eps) * before).clamp_min(c.min_weight)
    return w[slab].sqrt()


def _weighted(residual, scale: torch.Tensor | None):
    """``fwd -> r·scale`` (scale None: r unchanged)."""
    if scale is None:
        return residual

    def weighted(fwd) -> torch.Tensor:
        r = residual(fwd)
        return r * scale.to(r.dtype)

    return weighted


def _residual_loss(pde: PDE, estimator, z: torch.Tensor, gen: torch.Generator,
                   scale: torch.Tensor | None = None, symmetric: bool = False):
    residual = _weighted(_residuals(pde, estimator, z, gen, symmetric), scale)

    def loss(fwd) -> torch.Tensor:
        r = residual(fwd)
        return (r * r).mean(-1)

    return loss


def _dac_realise(net: torch.nn.Module, layout, ctx: RunContext):
    """(P, D) programmed parameter vectors → what the chip sets: every ``phases`` entry on
    the phase-DAC grid (photonic.quantize_phase), expressed within ±π of the programmed
    value; electronic gains and biases unchanged. None when phases are not quantised."""
    if not ctx.noise.phase_quantization or not any(map(_is_phase, layout.names)):
        return None
    from photonic import quantize_phase

    mask = torch.zeros(layout.dim, dtype=torch.bool)
    for name, sl in zip(layout.names, layout.slices, strict=True):
        if _is_phase(name):
            mask[sl] = True
    shifter, dac = ctx.device.shifter, ctx.device.phase_dac

    def realise(flat: torch.Tensor) -> torch.Tensor:
        q = quantize_phase(flat.detach(), shifter, dac.bits, dac.grid)
        near = flat + torch.remainder(q - flat + math.pi, 2 * math.pi) - math.pi
        return torch.where(mask, near, flat)

    return realise


@contextmanager
def _loaded(layout: ParamLayout, flat: torch.Tensor | None) -> Iterator[None]:
    """Temporarily give the module the parameter vector ``flat`` (None: leave it)."""
    if flat is None:
        yield
        return
    saved = layout.flatten()
    layout.assign(flat)
    try:
        yield
    finally:
        layout.assign(saved)


class _Collocation:
    """Draws each iteration's collocation points (uniform, or RAD from a scored pool)."""

    def __init__(self, cfg: Config, pde: PDE, generator: torch.Generator, dtype):
        self.c, self.n, self.pde, self.gen, self.dtype = (cfg.collocation,
                                                          cfg.collocation_points, pde,
                                                          generator, dtype)
        self.pool: torch.Tensor | None = None
        self.prob: torch.Tensor | None = None

    def draw(self, it: int, residual, refresh: bool = True
             ) -> tuple[torch.Tensor, int, torch.Tensor | None]:
        """Points for iteration ``it``, the network evaluations spent on scoring
        (``residual(z) -> (N,)`` evaluates the current, unperturbed network) and the
        points' sampling density relative to uniform (None: uniform);
        ``refresh = False``: another draw of the same iteration, from the current pool."""
        if self.c.sampling == "uniform":
            return self.pde.sample(self.n, self.gen, dtype=self.dtype), 0, None
        spent = 0
        if self.pool is None or (refresh and it % self.c.refresh_every == 0):
            self.pool = self.pde.sample(self.c.pool, self.gen, dtype=self.dtype)
            r = residual(self.pool).abs().double() ** self.c.k
            prob = r / r.mean().clamp_min(1e-300) + self.c.c
            if not bool(torch.isfinite(prob).all()):  # a diverged net: fall back to uniform
                prob = torch.ones_like(prob)
            self.prob = prob
            spent = self.c.pool
        idx = torch.multinomial(self.prob, self.n, replacement=False, generator=self.gen)
        return self.pool[idx], spent, self.prob[idx] / self.prob.mean()

    def state(self) -> dict[str, Any]:
        return {"pool": self.pool, "prob": self.prob}

    def load(self, st: dict[str, Any]) -> None:
        self.pool, self.prob = st["pool"], st["prob"]


def _predict(pde: PDE, model, dtype) -> np.ndarray:
    """u on the PDE's test grid; ``model``: the network, or its symmetrised call."""
    grid = pde.evaluation_grid()
    z = torch.as_tensor(grid.points, dtype=dtype)
    with torch.no_grad():
        u = pde.constrain_value(z, model(z).squeeze(-1))
    return u.double().numpy()


def _rel_l2(u_pred: np.ndarray, u_exact: np.ndarray) -> float:
    return float(np.linalg.norm(u_pred - u_exact) / np.linalg.norm(u_exact))


# ------------------------------------------------------------------------------------ run
def run(cfg: Config, ctx: RunContext) -> dict[str, Any]:
    if cfg.threads is not None:
        torch.set_num_threads(cfg.threads)
    dtype = getattr(torch, cfg.model.precision)
    pde = build_pde(cfg.pde, cfg.pde_params)
    spec = _net_spec(cfg)
    net = build_network(cfg, ctx)
    e = cfg.estimator
    if e.kind == "autograd":
        estimator = Autograd(hess_dims=pde.hess_dims)
    else:
        kw = {"sg_stein": dict(sigma=spec["sigma"], level=e.level),
              "mc_stein": dict(sigma=spec["sigma"], num_samples=e.num_samples),
              "fd": dict(step=e.step)}[e.kind]
        estimator = build_estimator(e.kind, **kw)
    evals_per_point = estimator.evals_for_dim(pde.dim) * (2 if cfg.symmetric else 1)
    o = cfg.optim
    opt = torch.optim.Adam(net.parameters(), lr=o.lr, betas=o.betas)
    gen_points = torch.Generator().manual_seed(ctx.seed + 1)
    gen_zo = torch.Generator().manual_seed(ctx.seed + 2)
    gen_mc = torch.Generator().manual_seed(ctx.seed + 3)
    if o.method == "first_order":
        stepper = FirstOrderStepper(net, opt, clip_norm=o.clip_norm)
    elif o.method == "subspace_lm":
        bounds = _phase_bounds(net) if o.clamp_phases else None
        stepper = SubspaceLMStepper(
            net, mu=o.mu, num_queries=o.num_queries, distribution=o.distribution,
            block_size=o.block_size, damping=o.damping, max_step=o.lr,
            tries=o.lm_tries, generator=gen_zo,
            block_sizes=_readout_blocks(net, o.readout_block_size), bounds=bounds,
            memory=o.memory, two_sided=o.two_sided, grid=_phase_grid(net, ctx, o.on_grid),
            density=o.direction_density)
        if o.realised_directions:
            stepper.realise = _dac_realise(net, stepper.layout, ctx)
    else:
        stepper = ZOStepper(
            net, opt, mu=o.mu, estimator="random" if o.method == "zo" else "coordinate",
            num_queries=o.num_queries, distribution=o.distribution, two_sided=o.two_sided,
            per_tensor=o.per_tensor, clip_norm=o.clip_norm, block_size=o.block_size,
            local=_readout_names(net) if o.local_readout else (), generator=gen_zo,
        )
    f = cfg.finish
    finisher = None
    if f is not None:  # built now, so a network without electronic parameters fails early
        phases = [n for n, _ in net.named_parameters() if _is_phase(n)]
        try:
            finisher = SubspaceLMStepper(
                net, mu=f.mu, block_size=f.block_size, damping=o.damping, max_step=f.lr,
                tries=o.lm_tries, two_sided=f.two_sided, generator=gen_zo, exclude=phases)
        except ValueError as err:
            raise ValueError(f"finish: the network has no electronic parameters to tune "
                             f"({err})") from None
    grid = pde.evaluation_grid()
    gens = {"points": gen_points, "zo": gen_zo, "mc": gen_mc}
    sampler = _Collocation(cfg, pde, gen_points, dtype)

    model = _symmetrised(pde, net, cfg.symmetric)  # every unperturbed evaluation

    def pointwise_residual(z: torch.Tensor) -> torch.Tensor:
        with torch.set_grad_enabled(isinstance(estimator, Autograd)):  # autograd: d/dz
            jet = estimator.estimate(lambda x: model(x).squeeze(-1), z, generator=gen_mc)
            return pde.residual(z, pde.constrain(z, jet)).detach()
    # sets_total: the phase stage's parameter sets (a finish counts its own in state["finish"])
    state: dict[str, Any] = {"iteration": 0, "forward_evals": 0, "wall_s": 0.0, "sets_total": 0,
                             "history": [], "evals": [], "diverged": False}
    ckpt = ctx.load_checkpoint()
    if ckpt is not None:
        net.load_state_dict(ckpt["model"])
        opt.load_state_dict(ckpt["optimizer"])
        for k, g in gens.items():
            g.set_state(ckpt["generators"][k])
        for g, s in zip(_generators(net), ckpt["noise_generators"], strict=True):
            g.set_state(s)
        state = ckpt["state"]
        sampler.load(ckpt["sampler"])
        if hasattr(stepper, "load_state_dict"):
            stepper.load_state_dict(ckpt["stepper"])
        if finisher is not None and ckpt.get("finisher") is not None:
            finisher.load_state_dict(ckpt["finisher"])
    # Polyak averaging: the average of the iterates is the model that is evaluated and
    # delivered (float64, so a decay near 1 loses nothing to rounding)
    layout = ParamLayout(net)
    if o.average is not None and state.get("average") is None:
        state["average"] = layout.flatten().to(torch.float64)
    average = state.get("average") if o.average is not None else None

    def save():
        ctx.save_checkpoint({
            "model": net.state_dict(), "optimizer": opt.state_dict(),
            "generators": {k: g.get_state() for k, g in gens.items()},
            "noise_generators": [g.get_state() for g in _generators(net)],
            "state": state, "config": cfg.model_dump(mode="json"),
            "sampler": sampler.state(),
            "stepper": stepper.state_dict() if hasattr(stepper, "state_dict") else None,
            "finisher": finisher.state_dict() if finisher is not None else None,
        })

    val_z = None
    if cfg.select == "min_residual":
        val_z = pde.sample(cfg.validation_points, torch.Generator().manual_seed(ctx.seed + 4),
                           dtype)
        state.setdefault("selected", None)

    def evaluate():
        if average is not None:  # the iterate itself, for the record
            state.setdefault("evals_iterate", []).append(
                (state["iteration"],
                 _rel_l2(_predict(pde, model, dtype), grid.u_exact)))
        with _loaded(layout, average):
            if val_z is not None:  # score the fixed validation set before the test grid
                r = pointwise_residual(val_z).double()
                loss = float((r * r).mean())
                state["forward_evals"] += cfg.validation_points * evals_per_point
                state.setdefault("validation", []).append((state["iteration"], loss))
                best = state["selected"]
                if math.isfinite(loss) and (best is None or loss < best["loss"]):
                    state["selected"] = {"iteration": state["iteration"], "loss": loss,
                                         "model": {k: v.detach().clone()
                                                   for k, v in net.state_dict().items()}}
            u = _predict(pde, model, dtype)
        state["evals"].append((state["iteration"], state["forward_evals"], state["wall_s"],
                               _rel_l2(u, grid.u_exact)))
        return u

    def causal_scale(z: torch.Tensor, density, it: int, r: torch.Tensor | None = None):
        """√w of the points z drawn with ``density`` (None without causal weights); one
        unperturbed pass over z unless its residuals r are given."""
        if cfg.causal is None:
            return None
        return _causal_weights(pde, z, pointwise_residual(z) if r is None else r,
                               cfg.causal, cfg.causal.eps_at(it, cfg.iterations),
                               density if cfg.causal.unbiased else None)

    if not state["evals"]:
        evaluate()
    bar = ctx.progress(cfg.iterations + (f.iterations if f else 0),
                       f"pinn {cfg.pde} ({o.method})", initial=state["iteration"])
    while not state["diverged"]:
        it = state["iteration"]
        if state.get("finish") is None and (it >= cfg.iterations or (
                cfg.time_limit_s is not None and state["wall_s"] >= cfg.time_limit_s)):
            if f is None:
                break
            if state["evals"][-1][0] != it:  # the phase stage's last iterate, on record
                evaluate()
            state["finish"] = {"start": it, "iterations": 0, "wall_s": 0.0, "sets": 0}
        fin = state.get("finish")
        if fin is not None and (fin["iterations"] >= f.iterations or (
                f.time_limit_s is not None and fin["wall_s"] >= f.time_limit_s)):
            break
        t0 = time.perf_counter()
        if fin is None:
            lr = lr_at(it, o, cfg.iterations)
            for group in opt.param_groups:
                group["lr"] = lr
            if o.method == "subspace_lm":
                stepper.max_step = lr  # the trust radius follows the schedule
        else:  # the finish's trust radius: its own cosine over its steps
            finisher.max_step = f.lr if f.lr_final is None else _cosine(
                f.lr, f.lr_final, fin["iterations"] / max(f.iterations - 1, 1))
        z, scored, density = sampler.draw(it, pointwise_residual)
        scale = causal_scale(z, density, it)
        scored += z.shape[0] if scale is not None else 0
        check, check_loss0 = None, None
        if o.fresh_check and fin is None:  # an independent batch on which each candidate
            # is judged; the unperturbed pass over it gives its causal weights and the
            # reference loss
            zc, spent, density_c = sampler.draw(it, pointwise_residual, refresh=False)
            rc = pointwise_residual(zc)
            scale_c = causal_scale(zc, density_c, it, rc)
            scored += spent + zc.shape[0]
            check = _weighted(_residuals(pde, estimator, zc, gen_mc, cfg.symmetric), scale_c)
            rcw = rc.double() * (1.0 if scale_c is None else scale_c)
            check_loss0 = float((rcw * rcw).mean())
        if fin is not None:
            info = finisher.step(_weighted(_residuals(pde, estimator, z, gen_mc,
                                                      cfg.symmetric), scale))
        elif o.method == "subspace_lm":
            info = stepper.step(_weighted(_residuals(pde, estimator, z, gen_mc, cfg.symmetric),
                                          scale), check, check_loss0)
        else:
            info = stepper.step(_residual_loss(pde, estimator, z, gen_mc, scale,
                                               cfg.symmetric))
        if average is not None:
            average.mul_(o.average).add_(layout.flatten().to(torch.float64),
                                         alpha=1 - o.average)
        dt = time.perf_counter() - t0
        state["wall_s"] += dt
        state["iteration"] = it + 1
        if fin is None:
            state["sets_total"] += info.num_sets
        else:
            fin["iterations"] += 1
            fin["wall_s"] += dt
            fin["sets"] += info.num_sets
        state["forward_evals"] += (info.num_sets * cfg.collocation_points + scored) * \
            evals_per_point
        state["history"].append((it + 1, info.loss, state["forward_evals"], state["wall_s"]))
        if not math.isfinite(info.loss):
            state["diverged"] = True
        # the finish is evaluated and checkpointed every f.eval_every of its own steps
        count, every = ((fin["iterations"], f.eval_every) if fin is not None else
                        (state["iteration"], cfg.eval_every))
        if count % every == 0:
            evaluate()
            bar.set_postfix(loss=f"{info.loss:.3g}", rel_l2=f"{state['evals'][-1][3]:.3g}")
        if count % (f.eval_every if fin is not None else cfg.checkpoint_every) == 0:
            save()
        bar.update(1)
    bar.close()
    if state["evals"][-1][0] != state["iteration"]:
        evaluate()
    save()
    if average is not None:  # the checkpoint keeps the iterate; the average is delivered
        layout.assign(average)
    u_pred = _predict(pde, model, dtype)
    last_rel = None
    if val_z is not None and state["selected"] is not None:
        last_rel = _rel_l2(u_pred, grid.u_exact)
        net.load_state_dict(state["selected"]["model"])  # the checkpoint keeps the last
        u_pred = _predict(pde, model, dtype)
    return _report(cfg, ctx, pde, net, spec, state, u_pred, evals_per_point, last_rel)


# --------------------------------------------------------------------------------- report
def _chip_cost(cfg: Config, ctx: RunContext, spec, sets_per_step: int, rows_per_set: int,
               iterations: int) -> dict[str, float]:
    """Cost estimate of the training on the TONN chip (photonic.estimate_cost)."""
    from photonic.cost import TrainingStep, estimate_cost
    from photonic.tonn import DenseLayer, TTLayer, network_stages

    layers = []
    electronic_macs = 0
    w = spec["widths"]
    for i in range(len(w) - 1):
        if cfg.model.arch == "tt" and i in spec["tt_layers"]:
            n, m = spec["tt_layers"][i]
            layers.append(TTLayer(tuple(n), tuple(m), (cfg.model.tt_rank,) * (len(n) - 1)))
        elif cfg.model.execution != "digital" and _electronic(cfg, i, len(w) - 2, False):
            electronic_macs += w[i] * w[i + 1]
        else:
            layers.append(DenseLayer(w[i + 1], w[i]))
    stages = network_stages(layers, mapping="tt", tile=cfg.model.tile,
                            core_tile=cfg.model.tile)
    rep = estimate_cost(device=ctx.device, stages=stages, batch=rows_per_set,
                        training=TrainingStep(queries=sets_per_step,
                                              inferences_per_query=rows_per_set))
    out = {
        "area_um2": rep.area_um2,
        "num_mzis": rep.num_mzis,
        "energy_pj_per_step": rep.energy_pj_per_step,
        "latency_ns_per_step": rep.latency_ns_per_step,
        "energy_pj_total": (rep.energy_pj_per_step or 0.0) * iterations,
        "latency_ns_total": (rep.latency_ns_per_step or 0.0) * iterations,
        "energy_pj_per_inference": rep.energy_pj,
        "electronic_macs_per_evaluation": electronic_macs,
    }
    return out


def _optim_text(o: OptimConfig) -> str:
    """The optimiser settings a report states."""
    common = (f"μ = {o.mu}, q = {o.num_queries}, {o.distribution}"
              + (f", blocks ≤ {o.block_size}" if o.block_size else ""))
    if o.method == "subspace_lm":
        return (f"forward-only subspace Levenberg–Marquardt: {common}, per tensor, "
                f"{'two' if o.two_sided else 'one'}-sided, initial λ {o.damping}, trust "
                f"radius (largest change of a parameter per step) {o.lr} {o.lr_schedule} → "
                f"{o.lr_final}, ≤ {o.lm_tries} "
                f"candidates per step, {'realised' if o.realised_directions else 'drawn'} "
                "directions"
                + (f", plus the last {o.memory} accepted steps" if o.memory else "")
                + (", candidates judged on an independent batch" if o.fresh_check else "")
                + (", phases kept on the DAC code grid (whole-code perturbations and steps)"
                   if o.on_grid else "")
                + (f", directions keep {o.direction_density:g} of their block's coordinates"
                   if o.direction_density < 1 else ""))
    return (f"lr {o.lr} {o.lr_schedule} → {o.lr_final}, {common}, "
            f"{'two' if o.two_sided else 'one'}-sided, "
            f"{'per tensor' if o.per_tensor else 'whole vector'}, clip {o.clip_norm}"
            + (", exact local gradient of the electronic read-out" if o.local_readout
               else ""))


def _report(cfg, ctx, pde, net, spec, state, u_pred, evals_per_point, last_rel=None):
    """Figures, prediction.npz, report.md and the metrics; ``last_rel``: the last iterate's
    error when the delivered parameters were selected (select = min_residual)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    grid = pde.evaluation_grid()
    rel = _rel_l2(u_pred, grid.u_exact)
    evals = np.array(state["evals"], dtype=float)
    hist = np.array(state["history"], dtype=float).reshape(-1, 4)
    dense = build_mlp(spec["widths"], activation=spec["activation"])
    tt = build_mlp(spec["widths"], activation=spec["activation"], tt_layers=spec["tt_layers"])
    # parameter sets per step as the stepper reported them: constant for zo / first order,
    # varying for subspace_lm (candidate retries); the chip estimate counts whole phase
    # settings per step, so the mean rounded up
    fin = state.get("finish")
    phase_its = fin["start"] if fin is not None else state["iteration"]
    phase_wall = state["wall_s"] - (fin["wall_s"] if fin is not None else 0.0)
    mean_sets = state["sets_total"] / max(1, phase_its)
    num_sets = math.ceil(mean_sets)
    rows = cfg.collocation_points * evals_per_point
    metrics: dict[str, Any] = {
        "rel_l2": rel,
        "rel_l2_best": float(evals[:, 3].min()),
        "iterations": int(state["iteration"]),
        "forward_evals": int(state["forward_evals"]),
        "wall_s": float(state["wall_s"]),
        "params": count_parameters(net),
        "params_tt": count_parameters(tt),
        "params_dense": count_parameters(dense),
        "final_loss": float(hist[-1, 1]) if len(hist) else float("nan"),
        "diverged": bool(state["diverged"]),
        "parameter_sets_per_step": num_sets,
        "parameter_sets_per_step_mean": mean_sets,
        "evals_per_point": evals_per_point,
        "s_per_iteration": float(phase_wall / max(1, phase_its)),
    }
    if fin is not None:  # the electronic finish (FinishConfig)
        metrics["finish"] = {
            "iterations": int(fin["iterations"]),
            "start_iteration": int(fin["start"]),
            "wall_s": float(fin["wall_s"]),
            "s_per_iteration": float(fin["wall_s"] / max(1, fin["iterations"])),
            "parameter_sets_per_step_mean": fin["sets"] / max(1, fin["iterations"]),
            "params": sum(p.numel() for n, p in net.named_parameters()
                          if p.requires_grad and not _is_phase(n)),
            # the stage transition evaluates, so the phase stage's last iterate is on record
            "rel_l2_start": next(float(e[3]) for e in state["evals"] if e[0] == fin["start"]),
        }
    selected = state.get("selected")
    if last_rel is not None:
        metrics.update(rel_l2_last=last_rel,
                       selected_iteration=int(selected["iteration"]),
                       selected_validation_loss=float(selected["loss"]))
    iterate = np.array(state.get("evals_iterate", []), dtype=float).reshape(-1, 2)
    if len(iterate):  # optim.average: the evaluations above are of the average
        metrics["rel_l2_iterate_last"] = float(iterate[-1, 1])
    try:
        metrics["chip"] = _chip_cost(cfg, ctx, spec, num_sets, rows, phase_its)
        if fin is not None and fin["iterations"]:
            c = _chip_cost(cfg, ctx, spec, math.ceil(metrics["finish"][
                "parameter_sets_per_step_mean"]), rows, fin["iterations"])
            metrics["chip"].update(
                finish_energy_pj_per_step=c["energy_pj_per_step"],
                finish_latency_ns_per_step=c["latency_ns_per_step"],
                energy_pj_total=metrics["chip"]["energy_pj_total"] + c["energy_pj_total"],
                latency_ns_total=metrics["chip"]["latency_ns_total"] + c["latency_ns_total"])
    except Exception as err:  # the estimate is an add-on; report why it is missing
        metrics["chip_cost_error"] = f"{type(err).__name__}: {err}"

    axes = {k: v for k, v in grid.axes.items()}
    if len(grid.shape) == 2:
        ctx.savez("prediction.npz", **axes, u_pred=u_pred.reshape(grid.shape),
                  u_exact=grid.u_exact.reshape(grid.shape))
    else:
        ctx.savez("prediction.npz", **axes, u_pred=u_pred, u_exact=grid.u_exact)

    fig, ax = plt.subplots(1, 3, figsize=(16, 4.2), constrained_layout=True)
    if len(hist):
        ax[0].semilogy(hist[:, 0], np.abs(hist[:, 1]), lw=0.6, label="loss")
        ax[1].semilogy(hist[:, 2], np.abs(hist[:, 1]), lw=0.6, label="loss")
    val = np.array(state.get("validation", []), dtype=float).reshape(-1, 2)
    if len(val) == len(evals):  # select = min_residual: the validation loss per evaluation
        for a, col in ((ax[0], 0), (ax[1], 1)):
            a.semilogy(evals[:, col], val[:, 1], "s", ms=2, alpha=0.7,
                       label="validation loss (uniform points, unweighted)")
    for a, col in ((ax[0], 0), (ax[1], 1), (ax[2], 2)):
        a.semilogy(evals[:, col], evals[:, 3], "o-", ms=3,
                   label="rel. L2 error" + (" (parameter average)" if len(iterate) else ""))
        if len(iterate) == len(evals):
            a.semilogy(evals[:, col], iterate[:, 1], ".", ms=2, alpha=0.6,
                       label="rel. L2 error of the iterate")
        a.grid(True, which="both", alpha=0.3)
    if fin is not None:  # where the phase stage ends and the electronic finish begins
        ax[0].axvline(fin["start"], color="k", ls=":", lw=0.8, label="electronic finish")
    for a in ax:
        a.legend()
    ax[0].set_xlabel("iteration")
    ax[1].set_xlabel("forward evaluations (network inputs)")
    ax[2].set_xlabel("training wall time [s]")
    fig.suptitle(f"{cfg.pde}: {cfg.optim.method}, {cfg.model.arch}, {cfg.model.execution}")
    ctx.savefig(fig, "curves.png")

    figs = ["curves.png"]
    if len(grid.shape) == 2:
        names = list(grid.axes)
        a0, a1 = grid.axes[names[0]], grid.axes[names[1]]
        fig, ax = plt.subplots(1, 3, figsize=(16, 4.2), constrained_layout=True)
        err = u_pred - grid.u_exact
        for a, data, title in zip(ax, (u_pred, grid.u_exact, err),
                                  ("prediction", "reference", "error"), strict=True):
            im = a.pcolormesh(a1, a0, data.reshape(grid.shape), shading="auto",
                              cmap="RdBu_r" if title == "error" else "viridis")
            a.set_xlabel(names[1])
            a.set_ylabel(names[0])
            a.set_title(title)
            fig.colorbar(im, ax=a)
        ctx.savefig(fig, "heatmaps.png")
        figs.append("heatmaps.png")
    else:
        fig, a = plt.subplots(figsize=(5, 5))
        a.plot(grid.u_exact, u_pred, ".", ms=2)
        lim = [grid.u_exact.min(), grid.u_exact.max()]
        a.plot(lim, lim, "k--", lw=0.8)
        a.set_xlabel("exact u")
        a.set_ylabel("predicted u")
        ctx.savefig(fig, "parity.png")
        figs.append("parity.png")

    lines = [
        f"# PINN: {cfg.pde}, {cfg.optim.method} training ({cfg.model.arch} network, "
        f"{cfg.model.execution} execution, {cfg.model.precision})",
        "",
        f"Relative L2 error against the reference on the fixed test grid "
        f"({grid.points.shape[0]} points): **{rel:.4g}** (best during training "
        f"{metrics['rel_l2_best']:.4g}).",
        *([f"Delivered: the parameters of iteration {metrics['selected_iteration']}, the "
           f"lowest mean squared PDE residual ({metrics['selected_validation_loss']:.4g}) on "
           f"{cfg.validation_points} fixed uniform validation points among the "
           f"{len(evals)} evaluations; the last iterate's error is "
           f"{metrics['rel_l2_last']:.4g}. The choice uses residuals only, never the "
           "reference solution."] if "selected_iteration" in metrics else []),
        *([f"The evaluated and delivered parameters are the exponential moving average of "
           f"the iterates (decay {cfg.optim.average} per step); the last iterate itself "
           f"has error {metrics['rel_l2_iterate_last']:.4g}."]
          if "rel_l2_iterate_last" in metrics else []),
        *([f"Electronic finish: {metrics['finish']['iterations']} Levenberg–Marquardt steps "
           f"on the {metrics['finish']['params']} electronic gains and biases (phases held) "
           f"after iteration {metrics['finish']['start_iteration']}, whose error was "
           f"{metrics['finish']['rel_l2_start']:.4g}; {metrics['finish']['wall_s']:.1f} s, "
           f"{metrics['finish']['s_per_iteration']:.3f} s and "
           f"{metrics['finish']['parameter_sets_per_step_mean']:.1f} parameter sets per "
           "step (iterations, time and forward evaluations below include it; s per "
           "iteration and parameter sets per step are the phase stage's)."]
          if "finish" in metrics else []),
        "",
        "| quantity | value |", "|---|---|",
        f"| iterations | {metrics['iterations']} |",
        f"| training wall time [s] | {metrics['wall_s']:.1f} |",
        f"| s per iteration | {metrics['s_per_iteration']:.3f} |",
        f"| forward evaluations | {metrics['forward_evals']:.4g} |",
        f"| parameter sets per step | {num_sets} |",
        f"| network evaluations per collocation point | {evals_per_point} |",
        f"| trainable parameters | {metrics['params']} |",
        f"| TT / dense parameters of this architecture | {metrics['params_tt']} / "
        f"{metrics['params_dense']} |",
        f"| final loss | {metrics['final_loss']:.4g} |",
        f"| diverged | {metrics['diverged']} |",
    ]
    if "chip" in metrics:
        c = metrics["chip"]
        lines += [
            "", "## Chip cost of the training (photonic.estimate_cost, TT cores on "
            f"{cfg.model.tile}×{cfg.model.tile} tiles)", "",
            "| quantity | value |", "|---|---|",
            f"| area [mm²] | {c['area_um2'] / 1e6:.4g} |",
            f"| MZIs | {c['num_mzis']} |",
            f"| energy per step [µJ] | {(c['energy_pj_per_step'] or 0) / 1e6:.4g} |",
            f"| latency per step [ms] | {(c['latency_ns_per_step'] or 0) / 1e6:.4g} |",
            *([f"| energy per finish step [µJ] | "
               f"{(c['finish_energy_pj_per_step'] or 0) / 1e6:.4g} |",
               f"| latency per finish step [ms] | "
               f"{(c['finish_latency_ns_per_step'] or 0) / 1e6:.4g} |"]
              if "finish_energy_pj_per_step" in c else []),
            f"| energy, whole training [J] | {c['energy_pj_total'] / 1e12:.4g} |",
            f"| latency, whole training [s] | {c['latency_ns_total'] / 1e9:.4g} |",
        ]
        if "finish_energy_pj_per_step" in c:
            lines += ["", "A finish step is costed as a phase-stage step with its parameter "
                      "sets; it changes only electronic gains and biases between sets, so "
                      "the phase-reprogramming share of its energy and latency is an upper "
                      "bound."]
        if c["electronic_macs_per_evaluation"]:
            lines += ["", f"The dense input and read-out layers run in electronics "
                      f"({c['electronic_macs_per_evaluation']} MACs per network evaluation, "
                      "not in the photonic estimate above)."]
    elif "chip_cost_error" in metrics:
        lines += ["", f"Chip cost estimate unavailable: {metrics['chip_cost_error']}"]
    lines += [
        "", "## Recipe", "",
        f"PDE `{cfg.pde}` {cfg.pde_params or ''}; estimator `{cfg.estimator.kind}` "
        f"(σ = {spec['sigma']}); optimiser `{cfg.optim.method}` ({_optim_text(cfg.optim)}"
        + (f"; mean {metrics['parameter_sets_per_step_mean']:.1f} parameter sets per step"
           if cfg.optim.method == "subspace_lm" else "")
        + f"); {cfg.collocation_points} collocation points per iteration, "
        + ("uniform" if cfg.collocation.sampling == "uniform" else
           f"RAD-sampled from a {cfg.collocation.pool}-point pool rescored every "
           f"{cfg.collocation.refresh_every} iterations (k = {cfg.collocation.k}, "
           f"c = {cfg.collocation.c})")
        + (f"; causal residual weights (ε = {cfg.causal.eps}"
           + (f" → {cfg.causal.eps_final} by a cosine" if cfg.causal.eps_final is not None
              else "")
           + f", {cfg.causal.bins} time slabs"
           + (f", weights ≥ {cfg.causal.min_weight}" if cfg.causal.min_weight else "")
           + (", slab losses importance-weighted to the uniform measure"
              if cfg.causal.unbiased else "")
           + "; "
           "the loss curve is the weighted loss)" if cfg.causal is not None else "")
        + ("; the network is symmetrised to the solution's parity under the reflection of "
           f"{pde.coord_names[pde.symmetry[0]]} about {pde.symmetry[1]:g} "
           f"(NN_s(z) = ½(NN(z) {'+' if pde.symmetry[2] > 0 else '−'} NN(Rz)), two network "
           "evaluations per stencil node)" if cfg.symmetric else "")
        + ({"tt": ". Photonic core: TT layers only; dense layers electronic.",
            "all_but_readout": ". Photonic core: every layer but the read-out, which is "
            "electronic (as in the published TONN)."}.get(cfg.model.chip_layers, ".")
           if cfg.model.execution != "digital" else ".")
        + (f" Electronic finish: up to {cfg.finish.iterations} forward-only "
           f"Levenberg–Marquardt steps on the gains and biases (μ = {cfg.finish.mu}, "
           + ("one direction per parameter" if cfg.finish.block_size == 1
              else f"blocks ≤ {cfg.finish.block_size}")
           + ("" if cfg.finish.two_sided else ", forward differences")
           + f", trust radius {cfg.finish.lr}"
           + (f" → {cfg.finish.lr_final} by a cosine" if cfg.finish.lr_final else "")
           + (f", ≤ {cfg.finish.time_limit_s:g} s" if cfg.finish.time_limit_s else "")
           + "), the phases held at their codes." if cfg.finish is not None else ""),
        "", "Forward evaluations count every input row through the whole network "
        "(parameter sets × collocation points × stencil points); the reference solution "
        "and its provenance are described in mlfrontends/pinn/pdes.py. "
        "`prediction.npz` holds the test grid, u_pred and u_exact.",
        "",
    ]
    lines += [f"![{f}]({f})" for f in figs]
    ctx.write_text("report.md", "\n".join(lines) + "\n")
    return metrics
