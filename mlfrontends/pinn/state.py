"""The training state of a ``pinn`` run (typed records) and its checkpoint layout.

A checkpoint holds plain tuples and dicts (``TrainState.to_dict``), so a checkpoint does
not depend on where these classes live; ``TrainState.from_dict`` reads it back, and
``check_resumable`` refuses a checkpoint written with an option that has been removed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, NamedTuple

import torch

from photonic.runio import BadInput

__all__ = ["StepRecord", "EvalRecord", "ValidationRecord", "FinishState", "Selected",
           "TrainState", "check_resumable"]


class StepRecord(NamedTuple):
    """One training step: its number (1-based), loss, forward evaluations and training
    time so far."""

    iteration: int
    loss: float
    forward_evals: int
    wall_s: float


class EvalRecord(NamedTuple):
    """One evaluation on the PDE's test grid, after ``iteration`` steps."""

    iteration: int
    forward_evals: int
    wall_s: float
    rel_l2: float


class ValidationRecord(NamedTuple):
    """Mean squared residual on the fixed validation points (select = min_residual)."""

    iteration: int
    loss: float


@dataclass
class FinishState:
    """The electronic finish: the iteration it started after, its steps, their time and
    parameter sets."""

    start: int
    iterations: int = 0
    wall_s: float = 0.0
    sets: int = 0


@dataclass
class Selected:
    """The parameters with the lowest validation residual so far (select = min_residual)."""

    iteration: int
    loss: float
    model: dict[str, torch.Tensor]


@dataclass
class TrainState:
    """Counters and records of a run; ``sets_total`` counts the phase stage's parameter
    sets (the finish counts its own)."""

    iteration: int = 0
    forward_evals: int = 0
    wall_s: float = 0.0
    sets_total: int = 0
    diverged: bool = False
    history: list[StepRecord] = field(default_factory=list)
    evals: list[EvalRecord] = field(default_factory=list)
    validation: list[ValidationRecord] = field(default_factory=list)
    finish: FinishState | None = None
    selected: Selected | None = None

    @property
    def phase_iterations(self) -> int:
        """Steps of the phase stage (all steps when there is no finish)."""
        return self.finish.start if self.finish is not None else self.iteration

    def to_dict(self) -> dict[str, Any]:
        """The checkpoint layout: plain tuples and dicts."""
        return {
            "iteration": self.iteration, "forward_evals": self.forward_evals,
            "wall_s": self.wall_s, "sets_total": self.sets_total, "diverged": self.diverged,
            "history": [tuple(h) for h in self.history],
            "evals": [tuple(e) for e in self.evals],
            "validation": [tuple(v) for v in self.validation],
            "finish": None if self.finish is None else vars(self.finish).copy(),
            "selected": None if self.selected is None else vars(self.selected).copy(),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainState:
        """Read ``to_dict``'s layout back (also that of checkpoints without a
        ``validation`` or ``selected`` entry)."""
        fin, sel = d.get("finish"), d.get("selected")
        return cls(
            iteration=int(d["iteration"]), forward_evals=int(d["forward_evals"]),
            wall_s=float(d["wall_s"]), sets_total=int(d["sets_total"]),
            diverged=bool(d["diverged"]),
            history=[StepRecord(*h) for h in d["history"]],
            evals=[EvalRecord(*e) for e in d["evals"]],
            validation=[ValidationRecord(*v) for v in d.get("validation", [])],
            finish=None if fin is None else FinishState(**fin),
            selected=None if sel is None else Selected(**sel),
        )


# options that have been removed, with the value that meant "off": a checkpoint written
# with any other value trained a recipe this version cannot continue
_REMOVED: dict[tuple[str, ...], Any] = {
    ("symmetric",): False, ("optim", "fresh_check"): False, ("optim", "on_grid"): False,
    ("optim", "direction_density"): 1.0, ("optim", "memory"): 0, ("optim", "average"): None,
    ("causal", "unbiased"): False, ("causal", "eps_final"): None, ("causal", "min_weight"): 0.0,
    ("finish", "two_sided"): True,
}


def check_resumable(saved: dict[str, Any]) -> None:
    """Refuse a checkpoint whose saved workload config (``checkpoint["config"]``) used a
    removed option; one written with the option off resumes as before."""
    two_sided = (saved.get("optim") or {}).get("two_sided", True)
    if (saved.get("optim") or {}).get("method") == "subspace_lm" and two_sided is False:
        raise BadInput("checkpoint.pt was written with workload.optim.two_sided = false "
                         "(subspace_lm), which was removed: subspace_lm always takes central "
                         "differences; start a new run (without --resume)")
    for path, off in _REMOVED.items():
        node: Any = saved
        for key in path:
            node = node.get(key) if isinstance(node, dict) else None
        if node is not None and node != off:
            raise BadInput(f"checkpoint.pt was written with workload.{'.'.join(path)} = "
                             f"{node!r}, which was removed; this version cannot continue that "
                             "run: start a new run (without --resume)")
