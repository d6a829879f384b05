"""The training loop of the ``pinn`` workload and the parts it drives.

``build`` makes every part of a run (network, derivative estimator, stepper, finisher,
collocation sampler, generators, state) from the config, restoring a checkpoint when
resuming; ``train`` is the loop, top to bottom: schedule, collocation points, causal
weights, one forward-only (or first-order) step, bookkeeping, evaluation, checkpoint.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from photonic.runio import Interrupted, RunContext

from ..zo import FirstOrderStepper, StepInfo, SubspaceLMStepper, ZOStepper
from .config import Config, lr_at
from .derivatives import Autograd, DerivativeEstimator, network_jet
from .finish import build_finisher, finish_over, phase_stage_over
from .network import (
    build_network,
    dac_realise,
    make_estimator,
    noise_generators,
    phase_bounds,
    readout_blocks,
    readout_names,
)
from .pdes import PDE, build_pde
from .report import predict, rel_l2
from .sampling import Collocation, causal_weights
from .state import (
    EvalRecord,
    FinishState,
    Selected,
    StepRecord,
    TrainState,
    ValidationRecord,
    check_resumable,
)

__all__ = ["Trainer", "build", "train", "STEPPERS"]

Stepper = ZOStepper | SubspaceLMStepper | FirstOrderStepper


# -------------------------------------------------------------------------------- steppers
def _adam(cfg: Config, net: torch.nn.Module) -> torch.optim.Adam:
    return torch.optim.Adam(net.parameters(), lr=cfg.optim.lr, betas=cfg.optim.betas)


def _zo(cfg, net, ctx, gen):
    o, opt = cfg.optim, _adam(cfg, net)
    random = o.method == "zo"
    return ZOStepper(
        net, opt, mu=o.mu, estimator="random" if random else "coordinate",
        num_queries=o.num_queries, two_sided=o.two_sided,
        distribution=o.distribution if random else "rademacher",
        per_tensor=o.per_tensor if random else True, clip_norm=o.clip_norm,
        block_size=o.block_size if random else None,
        local=readout_names(net) if o.local_readout else (), generator=gen), opt


def _subspace_lm(cfg, net, ctx, gen):
    o = cfg.optim
    stepper = SubspaceLMStepper(
        net, mu=o.mu, num_queries=o.num_queries, distribution=o.distribution,
        block_size=o.block_size, damping=o.damping, max_step=o.lr, tries=o.lm_tries,
        generator=gen, block_sizes=readout_blocks(net, o.readout_block_size),
        bounds=phase_bounds(net) if o.clamp_phases else None)
    if o.realised_directions:
        stepper.realise = dac_realise(net, stepper.layout, ctx)
    return stepper, None


def _first_order(cfg, net, ctx, gen):
    opt = _adam(cfg, net)
    return FirstOrderStepper(net, opt, clip_norm=cfg.optim.clip_norm), opt


STEPPERS: dict[str, Callable[..., tuple[Stepper, torch.optim.Optimizer | None]]] = {
    "zo": _zo, "coordinate": _zo, "subspace_lm": _subspace_lm, "first_order": _first_order}
"""optim.method → ``(cfg, net, ctx, generator) -> (stepper, Adam or None)``."""


# ------------------------------------------------------------------------------- objective
def _residuals(pde: PDE, estimator: DerivativeEstimator, z: torch.Tensor,
               gen: torch.Generator, scale: torch.Tensor | None):
    """``fwd -> r·scale``: the (weighted) PDE residual at every collocation point, (N,) or
    (P, N) for P batched parameter sets; scale None: unweighted."""
    def residual(fwd) -> torch.Tensor:
        jet = network_jet(estimator, fwd, z, pde.outputs, gen)
        r = pde.residual(z, pde.constrain(z, jet))
        return r if scale is None else r * scale.to(r.dtype)

    return residual


def _objective(stepper: Stepper, residual):
    """What the stepper consumes: the residuals (least squares) or their mean square."""
    if isinstance(stepper, SubspaceLMStepper):
        return residual

    def loss(fwd) -> torch.Tensor:
        r = residual(fwd)
        return (r * r).mean(-1)

    return loss


# ---------------------------------------------------------------------------------- parts
@dataclass
class Trainer:
    """Every part of a run; ``state`` is what the loop advances and a checkpoint keeps."""

    cfg: Config
    ctx: RunContext
    pde: PDE
    net: torch.nn.Module
    estimator: DerivativeEstimator
    evals_per_point: int
    stepper: Stepper
    optimizer: torch.optim.Optimizer | None
    finisher: SubspaceLMStepper | None
    sampler: Collocation
    generators: dict[str, torch.Generator]
    state: TrainState
    validation_z: torch.Tensor | None
    dtype: torch.dtype

    def point_residual(self, z: torch.Tensor) -> torch.Tensor:
        """r (N,) of the unperturbed network at z (N, d)."""
        with torch.set_grad_enabled(isinstance(self.estimator, Autograd)):  # autograd: d/dz
            jet = network_jet(self.estimator, self.net, z, self.pde.outputs,
                              self.generators["mc"])
            return self.pde.residual(z, self.pde.constrain(z, jet)).detach()

    def causal_scale(self, z: torch.Tensor) -> torch.Tensor | None:
        """√w of the points z (one unperturbed pass); None without causal weights."""
        if self.cfg.causal is None:
            return None
        return causal_weights(self.pde, z, self.point_residual(z), self.cfg.causal)

    def set_rate(self, rate: float) -> None:
        """The step size of this iteration: Adam's lr or the trust radius."""
        if self.optimizer is not None:
            for group in self.optimizer.param_groups:
                group["lr"] = rate
        if isinstance(self.stepper, SubspaceLMStepper):
            self.stepper.max_step = rate

    def evaluate(self) -> None:
        """Score the validation points (select = min_residual), then the test grid."""
        st = self.state
        if self.validation_z is not None:
            r = self.point_residual(self.validation_z).double()
            loss = float((r * r).mean())
            st.forward_evals += self.cfg.validation_points * self.evals_per_point
            st.validation.append(ValidationRecord(st.iteration, loss))
            if math.isfinite(loss) and (st.selected is None or loss < st.selected.loss):
                st.selected = Selected(st.iteration, loss, {
                    k: v.detach().clone() for k, v in self.net.state_dict().items()})
        u = predict(self.pde, self.net, self.dtype)
        st.evals.append(EvalRecord(st.iteration, st.forward_evals, st.wall_s,
                                   rel_l2(u, self.pde.evaluation_grid().u_exact)))

    def checkpoint(self) -> dict[str, Any]:
        """Everything a resumed run needs to continue bit for bit, and the config."""
        return {
            "model": self.net.state_dict(),
            "optimizer": None if self.optimizer is None else self.optimizer.state_dict(),
            "generators": {k: g.get_state() for k, g in self.generators.items()},
            "noise_generators": [g.get_state() for g in noise_generators(self.net)],
            "state": self.state.to_dict(), "config": self.cfg.model_dump(mode="json"),
            "sampler": self.sampler.state_dict(),
            "stepper": getattr(self.stepper, "state_dict", lambda: None)(),
            "finisher": None if self.finisher is None else self.finisher.state_dict(),
        }

    def save(self) -> None:
        self.ctx.save_checkpoint(self.checkpoint())

    def restore(self, ck: dict[str, Any]) -> None:
        """Continue from checkpoint ``ck`` (refused if it used a removed option)."""
        check_resumable(ck.get("config") or {})
        self.net.load_state_dict(ck["model"])
        if self.optimizer is not None:
            self.optimizer.load_state_dict(ck["optimizer"])
        for k, g in self.generators.items():
            g.set_state(ck["generators"][k])
        for g, s in zip(noise_generators(self.net), ck["noise_generators"], strict=True):
            g.set_state(s)
        self.state = TrainState.from_dict(ck["state"])
        self.sampler.load_state_dict(ck["sampler"])
        if isinstance(self.stepper, SubspaceLMStepper):
            self.stepper.load_state_dict(ck["stepper"])
        if self.finisher is not None and ck.get("finisher") is not None:
            self.finisher.load_state_dict(ck["finisher"])


def build(cfg: Config, ctx: RunContext, init: torch.nn.Module | None = None) -> Trainer:
    """Every part of the run from its config (and the checkpoint when resuming); ``init``:
    the pre-trained digital network to program onto the chip (``build_network``)."""
    dtype = getattr(torch, cfg.model.precision)
    pde = build_pde(cfg.pde, cfg.pde_params)
    net = build_network(cfg, ctx, init)
    estimator = make_estimator(cfg, pde)
    gens = {k: torch.Generator().manual_seed(ctx.seed + i)
            for i, k in enumerate(("points", "zo", "mc"), start=1)}
    stepper, optimizer = STEPPERS[cfg.optim.method](cfg, net, ctx, gens["zo"])
    finisher = None if cfg.finish is None else build_finisher(cfg.finish, net, gens["zo"])
    val_z = None
    if cfg.select == "min_residual":
        val_z = pde.sample(cfg.validation_points, torch.Generator().manual_seed(ctx.seed + 4),
                           dtype)
    sampler = Collocation(cfg.collocation, cfg.collocation_points, pde, gens["points"], dtype)
    t = Trainer(cfg=cfg, ctx=ctx, pde=pde, net=net, estimator=estimator,
                evals_per_point=estimator.evals_for_dim(pde.dim), stepper=stepper,
                optimizer=optimizer, finisher=finisher, sampler=sampler, generators=gens,
                state=TrainState(), validation_z=val_z, dtype=dtype)
    ck = ctx.load_checkpoint()
    if ck is not None:
        t.restore(ck)
    return t


# ------------------------------------------------------------------------------------ loop
def train(t: Trainer) -> TrainState:
    """Run the phase stage and then the electronic finish (if configured) to their
    iteration or time limits; checkpoints every ``checkpoint_every`` steps (the finish:
    every ``finish.eval_every``) and, when ``ctx.stop_requested`` is set, at the next
    iteration boundary before raising ``Interrupted``."""
    cfg, f, st = t.cfg, t.cfg.finish, t.state
    if not st.evals:
        t.evaluate()
    bar = t.ctx.progress(cfg.iterations + (f.iterations if f else 0),
                         f"pinn {cfg.pde} ({cfg.optim.method})", initial=st.iteration)
    while not st.diverged:
        it = st.iteration
        if phase_stage_over(cfg, st):
            if f is None:
                break
            if st.evals[-1].iteration != it:  # the phase stage's last iterate, on record
                t.evaluate()
            st.finish = FinishState(start=it)
        fin = st.finish
        if f is not None and finish_over(f, fin):
            break
        if t.ctx.stop_requested:
            t.save()
            bar.close()
            raise Interrupted(f"iteration {it}")
        t0 = time.perf_counter()
        if fin is None:
            t.set_rate(lr_at(it, cfg.optim, cfg.iterations))
        else:
            t.finisher.max_step = f.trust_radius(fin.iterations)
        z, scored = t.sampler.draw(it, t.point_residual)
        scale = t.causal_scale(z)
        scored += z.shape[0] if scale is not None else 0
        residual = _residuals(t.pde, t.estimator, z, t.generators["mc"], scale)
        stepper = t.stepper if fin is None else t.finisher
        info: StepInfo = stepper.step(_objective(stepper, residual))
        dt = time.perf_counter() - t0
        st.wall_s += dt
        st.iteration = it + 1
        if fin is None:
            st.sets_total += info.num_sets
        else:
            fin.iterations, fin.wall_s, fin.sets = (fin.iterations + 1, fin.wall_s + dt,
                                                    fin.sets + info.num_sets)
        st.forward_evals += (info.num_sets * cfg.collocation_points + scored) * \
            t.evals_per_point
        st.history.append(StepRecord(it + 1, info.loss, st.forward_evals, st.wall_s))
        st.diverged = not math.isfinite(info.loss)
        # the finish is evaluated and checkpointed every f.eval_every of its own steps
        count, every, save_every = (
            (fin.iterations, f.eval_every, f.eval_every) if fin is not None
            else (st.iteration, cfg.eval_every, cfg.checkpoint_every))
        if count % every == 0:
            t.evaluate()
            bar.set_postfix(loss=f"{info.loss:.3g}", rel_l2=f"{st.evals[-1].rel_l2:.3g}")
        if count % save_every == 0:
            t.save()
        bar.update(1)
    bar.close()
    if st.evals[-1].iteration != st.iteration:
        t.evaluate()
    t.save()
    return st
