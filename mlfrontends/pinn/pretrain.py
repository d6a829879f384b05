"""Electronic pre-training (``PretrainConfig``): the run's network trained digitally,
first-order, before it is programmed onto the meshes and the chip trains it in situ.

The pre-training is a ``pinn`` run of its own — the same PDE, network, collocation sampler
and seed, with ``model.execution = digital`` (float64), autograd derivatives and Adam — and
keeps its own checkpoint (``pretrain_checkpoint.pt`` in the run folder), so an interrupted
pre-training resumes where it stopped and a finished one is not repeated on ``--resume``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from photonic.runio import RunContext

from .config import Config, FirstOrderOptim
from .train import build, train

__all__ = ["CHECKPOINT", "Pretrained", "digital_config", "pretrain"]

CHECKPOINT = "pretrain_checkpoint.pt"


@dataclass
class Pretrained:
    """The pre-trained digital network and what its training did."""

    net: torch.nn.Module
    metrics: dict[str, Any]


def digital_config(cfg: Config) -> Config:
    """The pre-training run of ``cfg``: its PDE, network and collocation, digital, float64,
    autograd derivatives, first-order Adam on a cosine schedule; no causal weights, no
    finish."""
    p = cfg.pretrain
    model = cfg.model.model_copy(update={"execution": "digital", "precision": "float64"})
    optim = FirstOrderOptim(lr=p.lr, lr_schedule="cosine", lr_final=p.lr_final)
    return Config.model_validate({
        **cfg.model_dump(exclude={"pretrain", "finish", "causal", "optim", "model",
                                  "estimator"}),
        "model": model.model_dump(), "optim": optim.model_dump(),
        "estimator": {"kind": "autograd"}, "iterations": p.iterations,
        "time_limit_s": p.time_limit_s, "collocation_points": p.collocation_points,
        "eval_every": p.eval_every, "checkpoint_every": p.eval_every, "select": "last"})


class _StageContext:
    """The run's context with the pre-training's own checkpoint file; everything else
    (output folder, seed, progress bars, the stop flag the signal handler sets) is the
    run's."""

    def __init__(self, ctx: RunContext):
        self._ctx = ctx

    def __getattr__(self, name: str):
        return getattr(self._ctx, name)

    def save_checkpoint(self, state: dict[str, Any]):
        return self._ctx.save_checkpoint(state, CHECKPOINT)

    def load_checkpoint(self):
        return self._ctx.load_checkpoint(CHECKPOINT)


def pretrain(cfg: Config, ctx: RunContext) -> Pretrained:
    """Train (or, on ``--resume``, restore) the digital network of ``cfg.pretrain``."""
    dcfg = digital_config(cfg)
    t = build(dcfg, _StageContext(ctx))
    st = train(t)  # its last evaluation is of the last iterate: no second test-grid pass
    return Pretrained(t.net, {
        "method": "first_order", "rel_l2": float(st.evals[-1].rel_l2),
        "iterations": int(st.iteration), "wall_s": float(st.wall_s),
        "collocation_points": dcfg.collocation_points})
