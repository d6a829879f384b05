"""Evaluation and report of a ``pinn`` run: the prediction on the PDE's test grid, its
relative L2 error, metrics.json's entries, the chip-cost estimate of the training,
``prediction.npz``, ``curves.png``, ``heatmaps.png`` (2-D grids) or ``parity.png``, and
``report.md``."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from photonic.runio import RunContext, new_figure
from photonic.textutil import markdown_table

from .config import Config, net_spec
from .models import build_mlp, count_parameters
from .pdes import PDE
from .state import TrainState

__all__ = ["predict", "rel_l2", "chip_cost", "metrics_of", "report"]


def predict(pde: PDE, net: torch.nn.Module, dtype: torch.dtype) -> np.ndarray:
    """u on the PDE's test grid."""
    z = torch.as_tensor(pde.evaluation_grid().points, dtype=dtype)
    with torch.no_grad():
        u = pde.constrain_value(z, net(z).squeeze(-1))
    return u.double().numpy()


def rel_l2(u_pred: np.ndarray, u_exact: np.ndarray) -> float:
    """‖u_pred − u‖ / ‖u‖."""
    return float(np.linalg.norm(u_pred - u_exact) / np.linalg.norm(u_exact))


def chip_cost(cfg: Config, ctx: RunContext, sets_per_step: int, rows_per_set: int,
              iterations: int) -> dict[str, float]:
    """Cost estimate of the training on the TONN chip (photonic.estimate_cost): every step
    runs ``sets_per_step`` parameter sets of ``rows_per_set`` network inputs each."""
    from photonic.cost import TrainingStep, estimate_cost
    from photonic.tonn import DenseLayer, TTLayer, network_stages

    from .network import is_electronic

    spec = net_spec(cfg)
    layers, electronic_macs, w = [], 0, spec["widths"]
    for i in range(len(w) - 1):
        if cfg.model.arch == "tt" and i in spec["tt_layers"]:
            n, m = spec["tt_layers"][i]
            layers.append(TTLayer(tuple(n), tuple(m), (cfg.model.tt_rank,) * (len(n) - 1)))
        elif cfg.model.execution != "digital" and is_electronic(cfg, i, len(w) - 2, False):
            electronic_macs += w[i] * w[i + 1]
        else:
            layers.append(DenseLayer(w[i + 1], w[i]))
    stages = network_stages(layers, mapping="tt", tile=cfg.model.tile,
                            core_tile=cfg.model.tile)
    rep = estimate_cost(device=ctx.device, stages=stages, batch=rows_per_set,
                        training=TrainingStep(queries=sets_per_step,
                                              inferences_per_query=rows_per_set))
    return {
        "area_um2": rep.area_um2,
        "num_mzis": rep.num_mzis,
        "energy_pj_per_step": rep.energy_pj_per_step,
        "latency_ns_per_step": rep.latency_ns_per_step,
        "energy_pj_total": (rep.energy_pj_per_step or 0.0) * iterations,
        "latency_ns_total": (rep.latency_ns_per_step or 0.0) * iterations,
        "energy_pj_per_inference": rep.energy_pj,
        "electronic_macs_per_evaluation": electronic_macs,
    }


def _finish_metrics(net: torch.nn.Module, st: TrainState) -> dict[str, Any]:
    from .network import is_phase

    fin = st.finish
    return {
        "iterations": int(fin.iterations),
        "start_iteration": int(fin.start),
        "wall_s": float(fin.wall_s),
        "s_per_iteration": float(fin.wall_s / max(1, fin.iterations)),
        "parameter_sets_per_step_mean": fin.sets / max(1, fin.iterations),
        "params": sum(p.numel() for n, p in net.named_parameters()
                      if p.requires_grad and not is_phase(n)),
        # the stage transition evaluates, so the phase stage's last iterate is on record
        "rel_l2_start": next(e.rel_l2 for e in st.evals if e.iteration == fin.start),
    }


def _chip_metrics(cfg: Config, ctx: RunContext, metrics: dict[str, Any],
                  st: TrainState, rows: int) -> dict[str, Any]:
    """The chip cost of the phase stage and, costed the same way, of the finish."""
    chip = chip_cost(cfg, ctx, metrics["parameter_sets_per_step"], rows, st.phase_iterations)
    if st.finish is not None and st.finish.iterations:
        c = chip_cost(cfg, ctx, math.ceil(metrics["finish"]["parameter_sets_per_step_mean"]),
                      rows, st.finish.iterations)
        chip.update(finish_energy_pj_per_step=c["energy_pj_per_step"],
                    finish_latency_ns_per_step=c["latency_ns_per_step"],
                    energy_pj_total=chip["energy_pj_total"] + c["energy_pj_total"],
                    latency_ns_total=chip["latency_ns_total"] + c["latency_ns_total"])
    return chip


def metrics_of(cfg: Config, ctx: RunContext, pde: PDE, net: torch.nn.Module,
               st: TrainState, u_pred: np.ndarray, evals_per_point: int,
               last_rel: float | None, pretrained: dict[str, Any] | None = None
               ) -> dict[str, Any]:
    """metrics.json's entries (workload module docstring); ``pretrained``: the electronic
    pre-training's metrics (``pretrain.pretrain``), whose time counts in ``wall_s``."""
    spec = net_spec(cfg)
    dense = build_mlp(spec["widths"], activation=spec["activation"])
    tt = build_mlp(spec["widths"], activation=spec["activation"], tt_layers=spec["tt_layers"])
    # parameter sets per step as the stepper reported them: constant for zo / first order,
    # varying for subspace_lm (candidate retries); the chip estimate counts whole phase
    # settings per step, so the mean rounded up
    phase_its = st.phase_iterations
    phase_wall = st.wall_s - (st.finish.wall_s if st.finish is not None else 0.0)
    mean_sets = st.sets_total / max(1, phase_its)
    metrics: dict[str, Any] = {
        "rel_l2": rel_l2(u_pred, pde.evaluation_grid().u_exact),
        "rel_l2_best": float(min(e.rel_l2 for e in st.evals)),
        "iterations": int(st.iteration),
        "forward_evals": int(st.forward_evals),
        "wall_s": float(st.wall_s),
        "params": count_parameters(net),
        "params_tt": count_parameters(tt),
        "params_dense": count_parameters(dense),
        "final_loss": float(st.history[-1].loss) if st.history else float("nan"),
        "diverged": bool(st.diverged),
        "parameter_sets_per_step": math.ceil(mean_sets),
        "parameter_sets_per_step_mean": mean_sets,
        "evals_per_point": evals_per_point,
        "s_per_iteration": float(phase_wall / max(1, phase_its)),
    }
    if st.finish is not None:  # the electronic finish (FinishConfig)
        metrics["finish"] = _finish_metrics(net, st)
    if pretrained is not None:  # the chip network's first evaluation: just programmed
        metrics["pretrain"] = {**pretrained, "rel_l2_programmed": float(st.evals[0].rel_l2)}
        metrics["wall_s"] += pretrained["wall_s"]
    if last_rel is not None:
        metrics.update(rel_l2_last=last_rel, selected_iteration=int(st.selected.iteration),
                       selected_validation_loss=float(st.selected.loss))
    metrics["chip"] = _chip_metrics(cfg, ctx, metrics, st,
                                    cfg.collocation_points * evals_per_point)
    return metrics


# --------------------------------------------------------------------------------- figures
def _curves(cfg: Config, ctx: RunContext, st: TrainState) -> None:
    """Loss and test error against iterations, forward evaluations and training time."""
    hist = np.array(st.history, dtype=float).reshape(-1, 4)
    evals = np.array(st.evals, dtype=float).reshape(-1, 4)
    val = np.array(st.validation, dtype=float).reshape(-1, 2)
    fig = new_figure(figsize=(16, 4.2), constrained_layout=True)
    ax = fig.subplots(1, 3)
    for a, col, xlabel in ((ax[0], 0, "iteration"),
                           (ax[1], 1, "forward evaluations (network inputs)"),
                           (ax[2], 2, "training wall time [s]")):
        if len(hist) and col < 2:
            a.semilogy(hist[:, 2 * col], np.abs(hist[:, 1]), lw=0.6,
                       label="loss (mean squared residual" +
                       (", causal-weighted)" if cfg.causal is not None else ")"))
        if len(val) == len(evals) and col < 2:  # select = min_residual
            a.semilogy(evals[:, col], val[:, 1], "s", ms=2, alpha=0.7,
                       label="validation loss (uniform points, unweighted)")
        a.semilogy(evals[:, col], evals[:, 3], "o-", ms=3, label="rel. L2 error (test grid)")
        a.grid(True, which="both", alpha=0.3)
        a.set_xlabel(xlabel)
        a.set_ylabel("loss, rel. L2 error (dimensionless)" if col < 2
                     else "rel. L2 error (dimensionless)")
    if st.finish is not None:  # where the phase stage ends and the electronic finish begins
        ax[0].axvline(st.finish.start, color="k", ls=":", lw=0.8, label="electronic finish")
    for a in ax:
        a.legend()
    fig.suptitle(f"{cfg.pde}: {cfg.optim.method}, {cfg.model.arch}, {cfg.model.execution}")
    ctx.savefig(fig, "curves.png")


def _solution_figure(ctx: RunContext, pde: PDE, u_pred: np.ndarray) -> str:
    """heatmaps.png on a 2-D grid (error map centred at zero), else parity.png."""
    grid = pde.evaluation_grid()
    if len(grid.shape) != 2:
        fig = new_figure(figsize=(5, 5))
        a = fig.subplots()
        a.plot(grid.u_exact, u_pred, ".", ms=2)
        lim = [grid.u_exact.min(), grid.u_exact.max()]
        a.plot(lim, lim, "k--", lw=0.8)
        a.set_xlabel(f"exact {pde.label('u')}")
        a.set_ylabel(f"predicted {pde.label('u')}")
        ctx.savefig(fig, "parity.png")
        return "parity.png"
    names = list(grid.axes)
    a0, a1 = grid.axes[names[0]], grid.axes[names[1]]
    err = u_pred - grid.u_exact
    bound = max(float(np.abs(err).max()), np.finfo(float).tiny)
    fig = new_figure(figsize=(16, 4.2), constrained_layout=True)
    panels = ((u_pred, "prediction", "viridis", None, pde.label("u")),
              (grid.u_exact, "reference", "viridis", None, pde.label("u")),
              (err, "error", "RdBu_r", bound, "u_pred − u_exact (dimensionless)"))
    for a, (data, title, cmap, v, unit) in zip(fig.subplots(1, 3), panels, strict=True):
        lim = {} if v is None else {"vmin": -v, "vmax": v}  # zero error sits at white
        im = a.pcolormesh(a1, a0, data.reshape(grid.shape), shading="auto", cmap=cmap, **lim)
        a.set_xlabel(pde.label(names[1]))
        a.set_ylabel(pde.label(names[0]))
        a.set_title(title)
        fig.colorbar(im, ax=a, label=unit)
    ctx.savefig(fig, "heatmaps.png")
    return "heatmaps.png"


# ----------------------------------------------------------------------------- report.md
def _adam_text(o) -> str:
    return f"lr {o.lr} {o.lr_schedule} → {o.lr_final}, clip {o.clip_norm}"


def _zo_text(o) -> str:
    what = (f"{o.distribution} directions, {'per tensor' if o.per_tensor else 'whole vector'}"
            + (f", blocks ≤ {o.block_size}" if o.block_size else "")
            if o.method == "zo" else "coordinates")
    return (f"{_adam_text(o)}, μ = {o.mu}, q = {o.num_queries} {what}, "
            f"{'central' if o.two_sided else 'forward'} differences"
            + (", exact local gradient of the electronic read-out" if o.local_readout else ""))


def _subspace_lm_text(o) -> str:
    return (f"forward-only subspace Levenberg–Marquardt: μ = {o.mu}, q = {o.num_queries}, "
            f"{o.distribution}" + (f", blocks ≤ {o.block_size}" if o.block_size else "")
            + f", per tensor, central differences, initial λ {o.damping}, trust radius "
            f"(largest change of a parameter per step) {o.lr} {o.lr_schedule} → {o.lr_final}, "
            f"≤ {o.lm_tries} candidates per step, "
            f"{'realised' if o.realised_directions else 'drawn'} directions"
            + (", phases kept in [0, 2π)" if o.clamp_phases else ""))


OPTIM_TEXT = {"zo": _zo_text, "coordinate": _zo_text, "subspace_lm": _subspace_lm_text,
              "first_order": _adam_text}
"""optim.method → the sentence of the report that states its settings."""


def _summary_lines(cfg: Config, m: dict[str, Any], n_test: int, n_evals: int) -> list[str]:
    lines = [
        f"# PINN: {cfg.pde}, {cfg.optim.method} training ({cfg.model.arch} network, "
        f"{cfg.model.execution} execution, {cfg.model.precision})", "",
        f"Relative L2 error against the reference on the fixed test grid ({n_test} points): "
        f"**{m['rel_l2']:.4g}** (best during training {m['rel_l2_best']:.4g}).",
    ]
    if "selected_iteration" in m:
        lines.append(
            f"Delivered: the parameters of iteration {m['selected_iteration']}, the lowest "
            f"mean squared PDE residual ({m['selected_validation_loss']:.4g}) on "
            f"{cfg.validation_points} fixed uniform validation points among the {n_evals} "
            f"evaluations; the last iterate's error is {m['rel_l2_last']:.4g}. The choice "
            "uses residuals only, never the reference solution.")
    if "pretrain" in m:
        p = m["pretrain"]
        lines.append(
            f"Electronic pre-training (first-order, digital: this run is not BP-free end to "
            f"end): {p['iterations']} Adam steps with autograd derivatives on "
            f"{p['collocation_points']} RAD points each, {p['wall_s']:.1f} s, error "
            f"{p['rel_l2']:.4g}; programmed onto the chip (exact decomposition, phases set "
            f"around the design's thermal crosstalk, every phase on its DAC code, the "
            f"preset's static errors) the network's error was "
            f"{p['rel_l2_programmed']:.4g}, which the chip's forward-only training started "
            "from (iterations and forward evaluations below are the chip's; the training "
            "wall time includes the pre-training).")
    if "finish" in m:
        f = m["finish"]
        lines.append(
            f"Electronic finish: {f['iterations']} Levenberg–Marquardt steps on the "
            f"{f['params']} electronic gains and biases (phases held) after iteration "
            f"{f['start_iteration']}, whose error was {f['rel_l2_start']:.4g}; "
            f"{f['wall_s']:.1f} s, {f['s_per_iteration']:.3f} s and "
            f"{f['parameter_sets_per_step_mean']:.1f} parameter sets per step (iterations, "
            "time and forward evaluations below include it; s per iteration and parameter "
            "sets per step are the phase stage's).")
    rows = [("iterations", m["iterations"]), ("training wall time [s]", f"{m['wall_s']:.1f}"),
            ("s per iteration", f"{m['s_per_iteration']:.3f}"),
            ("forward evaluations", f"{m['forward_evals']:.4g}"),
            ("parameter sets per step", m["parameter_sets_per_step"]),
            ("network evaluations per collocation point", m["evals_per_point"]),
            ("trainable parameters", m["params"]),
            ("TT / dense parameters of this architecture",
             f"{m['params_tt']} / {m['params_dense']}"),
            ("final loss", f"{m['final_loss']:.4g}"), ("diverged", m["diverged"])]
    return lines + ["", *markdown_table(["quantity", "value"], rows)]


def _chip_lines(cfg: Config, c: dict[str, Any]) -> list[str]:
    rows = [("area [mm²]", f"{c['area_um2'] / 1e6:.4g}"), ("MZIs", c["num_mzis"]),
            ("energy per step [µJ]", f"{(c['energy_pj_per_step'] or 0) / 1e6:.4g}"),
            ("latency per step [ms]", f"{(c['latency_ns_per_step'] or 0) / 1e6:.4g}")]
    if "finish_energy_pj_per_step" in c:
        rows += [("energy per finish step [µJ]",
                  f"{(c['finish_energy_pj_per_step'] or 0) / 1e6:.4g}"),
                 ("latency per finish step [ms]",
                  f"{(c['finish_latency_ns_per_step'] or 0) / 1e6:.4g}")]
    rows += [("energy, whole training [J]", f"{c['energy_pj_total'] / 1e12:.4g}"),
             ("latency, whole training [s]", f"{c['latency_ns_total'] / 1e9:.4g}")]
    lines = ["", "## Chip cost of the training (photonic.estimate_cost, TT cores on "
             f"{cfg.model.tile}×{cfg.model.tile} tiles)", "",
             *markdown_table(["quantity", "value"], rows)]
    if "finish_energy_pj_per_step" in c:
        lines += ["", "A finish step is costed as a phase-stage step with its parameter "
                  "sets; it changes only electronic gains and biases between sets, so the "
                  "phase-reprogramming share of its energy and latency is an upper bound."]
    if c["electronic_macs_per_evaluation"]:
        lines += ["", f"The dense input and read-out layers run in electronics "
                  f"({c['electronic_macs_per_evaluation']} MACs per network evaluation, not "
                  "in the photonic estimate above)."]
    return lines


def _recipe_lines(cfg: Config, m: dict[str, Any]) -> list[str]:
    o, c, f = cfg.optim, cfg.collocation, cfg.finish
    text = (f"PDE `{cfg.pde}` {cfg.pde_params or ''}; estimator `{cfg.estimator.kind}` "
            f"(σ = {net_spec(cfg)['sigma']}); optimiser `{o.method}` ({OPTIM_TEXT[o.method](o)}"
            + (f"; mean {m['parameter_sets_per_step_mean']:.1f} parameter sets per step"
               if o.method == "subspace_lm" else "")
            + f"); {cfg.collocation_points} collocation points per iteration, "
            + ("uniform" if c.sampling == "uniform" else
               f"RAD-sampled from a {c.pool}-point pool rescored every {c.refresh_every} "
               f"iterations (k = {c.k}, c = {c.c})"))
    if cfg.causal is not None:
        text += (f"; causal residual weights (ε = {cfg.causal.eps}, {cfg.causal.bins} time "
                 "slabs; the loss curve is the weighted loss)")
    text += ({"tt": ". Photonic core: TT layers only; dense layers electronic.",
              "all_but_readout": ". Photonic core: every layer but the read-out, which is "
              "electronic (as in the published TONN)."}.get(cfg.model.chip_layers, ".")
             if cfg.model.execution != "digital" else ".")
    if f is not None:
        text += (f" Electronic finish: up to {f.iterations} forward-only Levenberg–Marquardt "
                 f"steps on the gains and biases (μ = {f.mu}, "
                 + ("one direction per parameter" if f.block_size == 1
                    else f"blocks ≤ {f.block_size}")
                 + f", trust radius {f.lr}"
                 + (f" → {f.lr_final} by a cosine" if f.lr_final else "")
                 + (f", ≤ {f.time_limit_s:g} s" if f.time_limit_s else "")
                 + "), the phases held at their codes.")
    return ["", "## Recipe", "", text, "",
            "Forward evaluations count every input row through the whole network (parameter "
            "sets × collocation points × stencil points); the reference solution and its "
            "provenance are described in mlfrontends/pinn/pdes.py. `prediction.npz` holds the "
            "test grid, u_pred and u_exact.", ""]


def report(cfg: Config, ctx: RunContext, pde: PDE, net: torch.nn.Module, st: TrainState,
           u_pred: np.ndarray, evals_per_point: int,
           last_rel: float | None = None, pretrained: dict[str, Any] | None = None
           ) -> dict[str, Any]:
    """Write prediction.npz, the figures and report.md; return the metrics. ``last_rel``:
    the last iterate's error when the delivered parameters were selected; ``pretrained``:
    the electronic pre-training's metrics."""
    m = metrics_of(cfg, ctx, pde, net, st, u_pred, evals_per_point, last_rel, pretrained)
    grid = pde.evaluation_grid()
    shape = grid.shape if len(grid.shape) == 2 else u_pred.shape
    ctx.savez("prediction.npz", **grid.axes, u_pred=u_pred.reshape(shape),
              u_exact=grid.u_exact.reshape(shape))
    _curves(cfg, ctx, st)
    figs = ["curves.png", _solution_figure(ctx, pde, u_pred)]
    lines = (_summary_lines(cfg, m, grid.points.shape[0], len(st.evals))
             + _chip_lines(cfg, m["chip"]) + _recipe_lines(cfg, m)
             + [f"![{f}]({f})" for f in figs])
    ctx.write_text("report.md", "\n".join(lines) + "\n")
    return m
