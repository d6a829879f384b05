"""The electronic finish (FinishConfig): after the phase stage, forward-only
Levenberg–Marquardt on the continuous gains and biases alone, the MZI phases held at the
DAC codes the phase stage left."""

from __future__ import annotations

import torch

from ..zo import SubspaceLMStepper
from .config import Config, FinishConfig
from .network import is_phase
from .state import FinishState, TrainState

__all__ = ["build_finisher", "phase_stage_over", "finish_over"]


def build_finisher(f: FinishConfig, net: torch.nn.Module,
                   generator: torch.Generator) -> SubspaceLMStepper:
    """A SubspaceLMStepper over every trainable parameter but the phases (built before
    training, so a network without electronic parameters fails early)."""
    phases = [n for n, _ in net.named_parameters() if is_phase(n)]
    try:
        return SubspaceLMStepper(net, mu=f.mu, block_size=f.block_size, damping=f.damping,
                                 max_step=f.lr, tries=f.lm_tries, generator=generator,
                                 exclude=phases)
    except ValueError as err:
        raise ValueError(f"finish: the network has no electronic parameters to tune "
                         f"({err})") from None


def phase_stage_over(cfg: Config, st: TrainState) -> bool:
    """Whether the phase stage has used its iterations or its time."""
    return st.finish is None and (st.iteration >= cfg.iterations or (
        cfg.time_limit_s is not None and st.wall_s >= cfg.time_limit_s))


def finish_over(f: FinishConfig, fin: FinishState | None) -> bool:
    """Whether the finish (if it has started) has used its steps or its time."""
    return fin is not None and (fin.iterations >= f.iterations or (
        f.time_limit_s is not None and fin.wall_s >= f.time_limit_s))
