"""Config schema of the ``pinn`` workload (pydantic; unknown and removed keys refused).

The optimiser section is a tagged union, one type per ``method``: ``zo`` and ``coordinate``
(ZO gradient estimates into Adam), ``subspace_lm`` (forward-only subspace
Levenberg–Marquardt) and ``first_order`` (back-propagation into Adam, the reference).
Options that were measured and did not lower the error are removed; a config that names
one is refused with the reason (``RETIRED`` of each section).
"""

from __future__ import annotations

import math
from typing import Annotated, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, model_validator

from photonic.runio import WorkloadConfig
from photonic.textutil import did_you_mean

from .pdes import PDE_REGISTRY, build_pde

__all__ = [
    "DEFAULT_NETWORKS", "OPTIMISERS", "CausalConfig", "CollocationConfig", "Config",
    "CoordinateOptim", "EstimatorConfig", "FinishConfig", "FirstOrderOptim", "ModelConfig",
    "OptimConfig", "PretrainConfig", "SubspaceLMOptim", "ZOOptim", "cosine", "lr_at",
    "net_spec",
]

# Networks of Zhao et al., arXiv 2502.12384, §5: widths, activation, TT layers
# {layer index: (input modes, output modes)}, Stein σ.
DEFAULT_NETWORKS: dict[str, dict[str, Any]] = {
    "burgers": dict(widths=[2, 100, 100, 100, 100, 1], activation="tanh",
                    tt_layers={i: ([4, 5, 5], [5, 5, 4]) for i in (1, 2, 3)}, sigma=1e-3),
    "darcy": dict(widths=[2, 100, 100, 100, 100, 3], activation="tanh",  # u, q_x, q_y
                  tt_layers={i: ([4, 5, 5], [5, 5, 4]) for i in (1, 2, 3)}, sigma=1e-3),
    "blackscholes": dict(widths=[2, 128, 128, 1], activation="tanh",
                         tt_layers={1: ([4, 4, 8], [8, 4, 4])}, sigma=1e-3),
    "hjb": dict(widths=[21, 512, 512, 1], activation="sin",
                tt_layers={0: ([1, 1, 3, 7], [8, 4, 4, 4]), 1: ([4, 4, 4, 8], [8, 4, 4, 4])},
                sigma=0.1),
}

_SEE = " (measured figures: the Results page of the documentation)"


class _Section(BaseModel):
    """A config section; ``RETIRED`` {key: why it was removed} names removed options."""

    model_config = ConfigDict(extra="forbid")
    PATH: ClassVar[str] = "workload"
    RETIRED: ClassVar[dict[str, str]] = {}

    @model_validator(mode="before")
    @classmethod
    def _refuse_retired(cls, data: Any) -> Any:
        if isinstance(data, dict):
            for key in data:
                if key in cls.RETIRED:
                    raise ValueError(f"{cls.PATH}.{key} was removed: {cls.RETIRED[key]}{_SEE}")
        return data


class ModelConfig(_Section):
    PATH: ClassVar[str] = "workload.model"
    arch: Literal["tt", "dense"] = "tt"
    widths: list[int] | None = Field(None, description="layer widths; default: the PDE's "
                                     "network in DEFAULT_NETWORKS")
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
    PATH: ClassVar[str] = "workload.estimator"
    kind: Literal["sg_stein", "mc_stein", "fd", "autograd"] = "sg_stein"
    sigma: float | None = Field(None, gt=0, description="Stein smoothing; default per PDE")
    level: int = Field(3, ge=1, description="Smolyak level (sg_stein)")
    num_samples: int = Field(2048, ge=1, description="Gaussian samples (mc_stein)")
    step: float = Field(1e-3, gt=0, description="finite-difference step (fd)")


# ------------------------------------------------------------------------------- optimisers
_OPTIM_RETIRED = {
    "fresh_check": "judging each candidate step on a second batch stalled training",
    "on_grid": "keeping the phases on the DAC code grid did not lower the error",
    "direction_density": "sparse random directions stalled training",
    "memory": "adding the last accepted steps to the subspace did not lower the error",
    "average": "averaging the iterates did not lower the error",
}


class _Optim(_Section):
    """What every method shares: the step size and its schedule."""

    PATH: ClassVar[str] = "workload.optim"
    RETIRED: ClassVar[dict[str, str]] = _OPTIM_RETIRED
    lr: float = Field(1e-3, gt=0, description="Adam's step size; for subspace_lm the trust "
                      "radius: the largest change of any parameter in one step")
    lr_schedule: Literal["constant", "cosine", "exponential"] = "constant"
    lr_final: float = Field(1e-4, gt=0, description="end of cosine/exponential schedules")
    warmup_iters: int = Field(0, ge=0)

    @model_validator(mode="before")
    @classmethod
    def _unknown_keys(cls, data: Any) -> Any:
        """An unknown key is named with the methods that take it, or with this method's
        keys and the closest one."""
        if not isinstance(data, dict):
            return data
        method = data.get("method", "zo")
        for key in data:
            if key in cls.model_fields or key in cls.RETIRED:
                continue
            owners = [m for m, c in OPTIMISERS.items() if key in c.model_fields]
            if owners:
                raise ValueError(f"{cls.PATH}.{key} is for method {' or '.join(owners)}, "
                                 f"not {method!r}")
            raise ValueError(f"{cls.PATH}.{key}: unknown key for method {method!r} (valid: "
                             f"{', '.join(cls.model_fields)}){did_you_mean(key, cls.model_fields)}")
        return data


class _AdamOptim(_Optim):
    betas: tuple[float, float] = (0.9, 0.999)
    clip_norm: float | None = Field(None, gt=0, description="clip ‖ĝ‖ before Adam")


class _ZOBase(_AdamOptim):
    mu: float = Field(0.01, gt=0, description="ZO perturbation size (parameter units)")
    num_queries: int = Field(1, ge=1, description="directions (zo: per tensor when "
                             "per_tensor) or coordinates (coordinate) per step")
    two_sided: bool = Field(True, description="central differences (2q sets); false: "
                            "forward differences (q + 1)")
    local_readout: bool = Field(False, description="train an electronic read-out layer with "
                                "its exact local gradient")


class ZOOptim(_ZOBase):
    """Random-direction ZO gradient estimate into Adam (Zhao et al. 2025)."""

    method: Literal["zo"] = "zo"
    distribution: Literal["rademacher", "gaussian"] = "rademacher"
    per_tensor: bool = True
    block_size: int | None = Field(None, ge=1, description="per-tensor blocks cut into "
                                   "chunks of at most this many parameters (per_tensor)")


class CoordinateOptim(_ZOBase):
    """Coordinate-wise ZO gradient estimate into Adam (DeepZero)."""

    method: Literal["coordinate"] = "coordinate"


class FirstOrderOptim(_AdamOptim):
    """Back-propagated gradients into Adam (the reference; not realisable on the chip)."""

    method: Literal["first_order"] = "first_order"


class SubspaceLMOptim(_Optim):
    """Forward-only subspace Levenberg–Marquardt (mlfrontends.zo.SubspaceLMStepper)."""

    RETIRED: ClassVar[dict[str, str]] = {
        **_OPTIM_RETIRED,
        "two_sided": "forward differences did not lower the error; subspace_lm always takes "
                     "central differences"}
    method: Literal["subspace_lm"] = "subspace_lm"
    mu: float = Field(0.01, gt=0, description="perturbation size (parameter units)")
    num_queries: int = Field(1, ge=1, description="directions per block")
    distribution: Literal["rademacher", "gaussian"] = "rademacher"
    block_size: int | None = Field(None, ge=1, description="per-tensor blocks cut into "
                                   "chunks of at most this many parameters")
    damping: float = Field(1e-3, gt=0, description="initial Levenberg–Marquardt λ")
    lm_tries: int = Field(4, ge=1, description="candidate steps per iteration")
    realised_directions: bool = Field(
        True, description="use the perturbation the chip really applied (phases on the DAC "
        "grid) as the direction, not the drawn one")
    clamp_phases: bool = Field(
        False, description="keep every trainable phase in [0, 2π) (perturbations and steps "
        "clamped), so the controller never wraps a phase across 2π — with gamma error and "
        "crosstalk a wrap makes the realised phase jump by 2π·δγ (and 2π·c in its "
        "neighbours)")
    readout_block_size: int | None = Field(
        None, ge=1, description="block size for the parameters of an electronic read-out "
        "layer (1: one direction per weight); default block_size")


OPTIMISERS: dict[str, type[_Optim]] = {
    "zo": ZOOptim, "coordinate": CoordinateOptim, "subspace_lm": SubspaceLMOptim,
    "first_order": FirstOrderOptim,
}


def _method_of(v: Any) -> str | None:
    """The union member's tag; None (refused by pydantic as a missing tag) for an input that
    is neither a mapping nor an optimiser config (e.g. an empty ``optim:``)."""
    if isinstance(v, dict):
        return v.get("method", "zo")
    return getattr(v, "method", None)


OptimConfig = Annotated[
    Annotated[ZOOptim, Tag("zo")] | Annotated[CoordinateOptim, Tag("coordinate")]
    | Annotated[SubspaceLMOptim, Tag("subspace_lm")]
    | Annotated[FirstOrderOptim, Tag("first_order")],
    Discriminator(_method_of, custom_error_type="optim_method",
                  custom_error_message="optim must be a mapping naming its method (one of "
                  "zo, subspace_lm, coordinate, first_order; default zo)"),
]
"""One optimiser config per method, chosen by its ``method`` field (default ``zo``)."""


# ------------------------------------------------------------------- collocation and causal
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

    PATH: ClassVar[str] = "workload.collocation"
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

    PATH: ClassVar[str] = "workload.causal"
    RETIRED: ClassVar[dict[str, str]] = {
        "unbiased": "importance-weighted slab losses lowered the error on one seed and "
                    "raised it on two",
        "eps_final": "a cosine schedule of ε helped one seed and ruined another",
        "min_weight": "a floor under the slab weights raised the error on both seeds tried",
    }
    eps: float = Field(1.0, gt=0, description="causality strength ε")
    bins: int = Field(16, ge=2, description="time slabs")


class FinishConfig(_Section):
    """Electronic finish: after the phase stage, ``iterations`` more forward-only
    Levenberg–Marquardt steps on the continuous electronic parameters alone (every tile's
    gain and every bias; SubspaceLMStepper with ``exclude`` = the phases), the MZI phases
    held at the DAC codes the phase stage left. With 8-bit phase DACs a phase moves only in
    whole codes (0.0246 rad), so the phase stage ends on a lattice it cannot refine; the
    gains and biases are set digitally after detection, continuously, and with one
    direction per parameter (``block_size`` 1) each step is a damped Gauss–Newton step
    with the full Jacobian of the residuals in them (2 × #parameters + 1 parameter sets,
    central differences)."""

    PATH: ClassVar[str] = "workload.finish"
    RETIRED: ClassVar[dict[str, str]] = {
        "two_sided": "forward differences did not lower the error; the finish always takes "
                     "central differences"}
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
    damping: float = Field(1e-3, gt=0, description="initial Levenberg–Marquardt λ")
    lm_tries: int = Field(4, ge=1, description="candidate steps per finish step")
    eval_every: int = Field(10, ge=1, description="finish steps between evaluations "
                            "(and checkpoints)")

    def trust_radius(self, step: int) -> float:
        """The trust radius of finish step ``step`` (0-based)."""
        if self.lr_final is None:
            return self.lr
        return cosine(self.lr, self.lr_final, step / max(self.iterations - 1, 1))


class PretrainConfig(_Section):
    """Electronic pre-training: before the chip trains, the same network is trained on the
    electronic controller (a digital copy in float64, exact autograd derivatives, Adam on
    RAD collocation points) and then programmed onto the meshes: every weight matrix
    decomposed exactly (SVD + Clements) and every phase set on its DAC code, as a real
    photonic chip is programmed. The forward-only stages on the chip then train in situ
    from there and correct what programming loses (phase codes, coefficient error,
    crosstalk). The pre-training is first-order and digital: a run with it is not
    BP-free end to end, and its report says so."""

    PATH: ClassVar[str] = "workload.pretrain"
    iterations: int = Field(..., ge=1, description="Adam steps of the digital network")
    time_limit_s: float | None = Field(None, gt=0, description="stop the pre-training after "
                                       "this much training time (the chip stages have "
                                       "their own limits)")
    collocation_points: int = Field(600, ge=1, description="RAD points per step (drawn "
                                    "from workload.collocation's pool)")
    lr: float = Field(3e-3, gt=0, description="Adam's initial step size")
    lr_final: float = Field(1e-5, gt=0, description="Adam's step size at the last step "
                            "(cosine)")
    eval_every: int = Field(500, ge=1, description="steps between evaluations and "
                            "checkpoints")


# ----------------------------------------------------------------------------------- config
class Config(WorkloadConfig):
    PATH: ClassVar[str] = "workload"
    RETIRED: ClassVar[dict[str, str]] = {
        "symmetric": "building the solution's parity into the network did not lower the error"}
    kind: Literal["pinn"] = "pinn"
    pde: str = "burgers"
    pde_params: dict[str, Any] = Field(default_factory=dict)
    model: ModelConfig = ModelConfig()
    estimator: EstimatorConfig = EstimatorConfig()
    optim: OptimConfig = ZOOptim()
    iterations: int = Field(1000, ge=1)
    time_limit_s: float | None = Field(None, gt=0, description="stop training after this")
    collocation_points: int = Field(1200, ge=1)
    collocation: CollocationConfig = CollocationConfig()
    causal: CausalConfig | None = Field(None, description="causal residual weights "
                                        "(time-dependent PDEs); None: all points weigh 1")
    finish: FinishConfig | None = Field(
        None, description="electronic finish after the phase stage (model.execution "
        "'phase', a forward-only method); None: none")
    pretrain: PretrainConfig | None = Field(
        None, description="electronic (first-order, digital) pre-training, programmed onto "
        "the meshes before the chip trains (model.execution 'weight' or 'phase', a "
        "forward-only method); None: the chip trains from a random network")
    eval_every: int = Field(50, ge=1)
    select: Literal["last", "min_residual"] = Field(
        "last", description="which parameters the run delivers: the last iterate, or "
        "(min_residual) those with the lowest mean squared PDE residual on a fixed set of "
        "validation_points uniform points, scored at every evaluation (forward only, "
        "counted in forward_evals; the reference solution is never used to choose)")
    validation_points: int = Field(4096, ge=1, description="points of the fixed validation "
                                   "set (select = min_residual)")
    checkpoint_every: int = Field(100, ge=1)
    threads: int | None = Field(None, ge=1, description="torch CPU threads (None: default); "
                                "restored when the run returns")

    @model_validator(mode="before")
    @classmethod
    def _refuse_retired_and_unknown_method(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        for key in data:
            if key in cls.RETIRED:
                raise ValueError(f"{cls.PATH}.{key} was removed: {cls.RETIRED[key]}{_SEE}")
        optim = data.get("optim")
        if isinstance(optim, dict) and optim.get("method", "zo") not in OPTIMISERS:
            m = optim["method"]
            raise ValueError(f"workload.optim.method = {m!r}: unknown method (valid: "
                             f"{', '.join(OPTIMISERS)}){did_you_mean(m, OPTIMISERS)}")
        return data

    @model_validator(mode="after")
    def _check_problem(self):
        if self.pde not in PDE_REGISTRY:
            build_pde(self.pde)  # raises the did-you-mean error
        PDE_REGISTRY[self.pde].Params(**self.pde_params)
        if self.optim.method != "first_order" and self.estimator.kind == "autograd":
            raise ValueError(
                "estimator.kind = 'autograd' needs back-propagation; with optim.method = "
                f"{self.optim.method!r} use sg_stein, mc_stein or fd")
        if self.causal is not None and build_pde(self.pde, self.pde_params).causal_axis is None:
            raise ValueError(f"causal: pde {self.pde!r} has no time axis; remove 'causal' "
                             "(it weights residuals by time slab)")
        c = self.collocation
        if c.sampling == "rad" and c.pool < self.collocation_points:
            raise ValueError(f"collocation.pool = {c.pool} must be ≥ collocation_points = "
                             f"{self.collocation_points} (points are drawn without "
                             "replacement from the pool)")
        if c.sampling == "rad" and c.k == 0 and c.c == 0:
            raise ValueError("collocation: k = 0 and c = 0 give an all-zero density")
        return self

    @model_validator(mode="after")
    def _check_training(self):
        o, m = self.optim, self.model
        photonic_readout = m.execution != "digital" and m.chip_layers == "all"
        if getattr(o, "local_readout", False) and photonic_readout:
            raise ValueError(
                "optim.local_readout = true needs an electronic read-out layer: set "
                "model.chip_layers = 'all_but_readout' or 'tt' (got 'all': the read-out is "
                "photonic and its gradient would need back-propagation through the meshes)")
        if getattr(o, "readout_block_size", None) is not None and photonic_readout:
            raise ValueError("optim.readout_block_size needs an electronic read-out layer: "
                             "set model.chip_layers = 'all_but_readout' or 'tt' (got 'all')")
        if getattr(o, "clamp_phases", False) and m.execution != "phase":
            raise ValueError("optim.clamp_phases is for model.execution 'phase' (got "
                             f"{m.execution!r})")
        if o.method == "first_order" and m.execution == "phase":
            raise ValueError("optim.method = 'first_order' with model.execution = 'phase' is "
                             "not a BP-free recipe; use zo, coordinate or subspace_lm")
        if self.finish is not None and (m.execution != "phase" or o.method == "first_order"):
            raise ValueError("finish is for forward-only training in the phase domain "
                             "(model.execution 'phase', optim.method zo, coordinate or "
                             f"subspace_lm; got {m.execution!r}, {o.method!r})")
        if self.pretrain is not None and (m.execution == "digital"
                                          or o.method == "first_order"):
            raise ValueError("pretrain is for forward-only training on the chip "
                             "(model.execution 'weight' or 'phase', optim.method zo, "
                             f"coordinate or subspace_lm; got {m.execution!r}, {o.method!r})")
        if (self.pretrain is not None and self.collocation.sampling == "rad"
                and self.collocation.pool < self.pretrain.collocation_points):
            raise ValueError(f"pretrain.collocation_points = "
                             f"{self.pretrain.collocation_points} must be ≤ collocation.pool "
                             f"= {self.collocation.pool}")
        if self.finish is not None and self.select != "last":
            raise ValueError(
                f"select = {self.select!r} with a finish: use 'last' (the run delivers the "
                "finish's last iterate; in a measured finish the uniform validation residual "
                "rose while the test error fell, so it cannot be trusted to choose)")
        return self


# -------------------------------------------------------------------------------- schedules
def cosine(start: float, end: float, frac: float) -> float:
    """Cosine from ``start`` (frac 0) to ``end`` (frac 1)."""
    return end + 0.5 * (start - end) * (1 + math.cos(math.pi * frac))


def lr_at(it: int, o: _Optim, total: int) -> float:
    """Learning rate at iteration ``it`` (0-based): linear warm-up, then the schedule."""
    if it < o.warmup_iters:
        return o.lr * (it + 1) / o.warmup_iters
    frac = (it - o.warmup_iters) / max(1, total - o.warmup_iters)
    if o.lr_schedule == "constant":
        return o.lr
    if o.lr_schedule == "cosine":
        return cosine(o.lr, o.lr_final, frac)
    return o.lr * (o.lr_final / o.lr) ** frac


def net_spec(cfg: Config) -> dict[str, Any]:
    """The network of the run: DEFAULT_NETWORKS of its PDE with the model's overrides."""
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
    outputs = PDE_REGISTRY[cfg.pde].outputs
    if spec["widths"][-1] != outputs:
        raise ValueError(f"model.widths = {spec['widths']}: pde {cfg.pde!r} needs a last width "
                         f"of {outputs} (its network outputs)")
    return spec
