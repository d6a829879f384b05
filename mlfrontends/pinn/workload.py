"""``pinn`` workload: train a physics-informed network, forward-only (BP-free) or first-order.

Loss: mean squared PDE residual on fresh collocation points each iteration (``sampling``),
the network's derivatives from a derivative estimator (sparse-grid Stein by default), the
hard constraint of the PDE (``pdes.py``) applied analytically. Update (``train``): ZO
gradient estimate (``mlfrontends.zo``) fed to Adam — every perturbed parameter set of a
step and every Stein stencil point of every collocation point in ONE batched forward call
— forward-only subspace Levenberg–Marquardt, or autograd for the first-order reference;
optionally an electronic finish (``finish``). The network runs digitally or on the photonic
core (``model.execution``: weight domain or phase domain, with the chip preset's noise).
Config schema: ``config``; evaluation and report: ``report``.

metrics.json keys: ``rel_l2`` (‖u_pred − u‖/‖u‖ on the PDE's fixed test grid, final),
``rel_l2_best``, ``iterations``, ``forward_evals`` (network evaluations, i.e. input rows
through the whole network, summed over all parameter sets), ``wall_s`` (training wall time,
cumulative over resumes), ``params`` (trainable), ``params_dense`` (the dense network of the
same widths), ``final_loss``, ``diverged``; ``chip.*`` the cost estimate of the training
on the photonic core (per step and total). ``prediction.npz``: the test-grid coordinates,
``u_pred`` and ``u_exact``.
"""

from __future__ import annotations

from typing import Any

import torch

from photonic.runio import RunContext

from .config import DEFAULT_NETWORKS, Config, lr_at
from .network import build_network
from .pdes import PDE_REGISTRY
from .pretrain import pretrain
from .report import predict, rel_l2, report
from .train import build, train

__all__ = ["Config", "run", "lr_at", "build_network", "DEFAULT_NETWORKS", "HEADLINE_METRICS",
           "RESUME_SAFE_FIELDS", "section_model"]

# Printed at the end of `photonic-sim run` (the CLI's protocol for workload modules).
HEADLINE_METRICS = ("rel_l2", "rel_l2_best", "iterations", "wall_s")
# Workload keys a --resume may change: they set when the run evaluates and checkpoints, and
# neither draws random numbers (the test grid and the validation set are fixed), so the
# trajectory is the same.
RESUME_SAFE_FIELDS = frozenset({"eval_every", "checkpoint_every"})


def section_model(path: tuple, workload: dict[str, Any]):
    """The pydantic model of a free-form dict of the config: ``pde_params`` is checked against
    its PDE's ``Params`` (so an unknown key there is reported with the PDE's valid keys)."""
    if tuple(path) == ("pde_params",):
        pde = PDE_REGISTRY.get(str(workload.get("pde", "burgers")))
        return None if pde is None else pde.Params
    return None


def run(cfg: Config, ctx: RunContext) -> dict[str, Any]:
    """Train (or resume) the configured network and write its report; returns the metrics.
    torch's thread count is restored when the run returns or raises."""
    threads = torch.get_num_threads()
    try:
        if cfg.threads is not None:
            torch.set_num_threads(cfg.threads)
        pre = None if cfg.pretrain is None else pretrain(cfg, ctx)
        t = build(cfg, ctx, init=None if pre is None else pre.net)
        st = train(t)
        u_pred = predict(t.pde, t.net, t.dtype)
        last_rel = None
        if st.selected is not None:  # select = min_residual; the checkpoint keeps the last
            last_rel = rel_l2(u_pred, t.pde.evaluation_grid().u_exact)
            t.net.load_state_dict(st.selected.model)
            u_pred = predict(t.pde, t.net, t.dtype)
        return report(cfg, ctx, t.pde, t.net, st, u_pred, t.evals_per_point, last_rel,
                      pretrained=None if pre is None else pre.metrics)
    finally:
        torch.set_num_threads(threads)
