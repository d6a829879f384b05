"""The run contract's edge: output folder, atomic writes, checkpoints, progress bars.

This is the only hub module that touches files (besides the CLI). Workloads receive a
:class:`RunContext` from ``photonic-sim run`` and write everything through it, so nothing
half-written is ever left behind: every file is written to a temporary sibling and renamed.
"""

from __future__ import annotations

import io
import json
import math
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict

from photonic.devices import DeviceParams
from photonic.noise import NoiseConfig

__all__ = [
    "WorkloadConfig", "RunContext", "Interrupted", "atomic_write_bytes", "flatten_metrics",
    "new_figure",
]


class Interrupted(Exception):
    """Raised by a workload that stopped at a safe point because a stop was requested.

    The workload has written its checkpoint before raising; ``args[0]`` says where it stopped
    (e.g. ``"iteration 120"``). The CLI turns it into exit code 130 and a resume hint.
    """


class WorkloadConfig(BaseModel):
    """Base of every workload's config: unknown keys are rejected."""

    model_config = ConfigDict(extra="forbid")

    kind: str


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temporary file in the same folder and a rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def new_figure(**kwargs):
    """A matplotlib ``Figure`` not registered with pyplot (no GUI backend is ever selected).

    Every report figure is made here and written with :meth:`RunContext.savefig`, so no
    module needs ``matplotlib.use("Agg")``; ``kwargs`` go to ``Figure`` (e.g. ``figsize``),
    and axes come from ``fig.subplots(...)``.
    """
    from matplotlib.figure import Figure

    return Figure(**kwargs)


def _jsonable(v: Any) -> Any:
    if isinstance(v, torch.Tensor):
        v = v.detach().cpu().numpy()
    if isinstance(v, np.ndarray):
        return v.tolist() if v.ndim else v.item()
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, float) and not math.isfinite(v):
        return None if math.isnan(v) else ("inf" if v > 0 else "-inf")
    if isinstance(v, Mapping):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [_jsonable(x) for x in v]
    return v


def flatten_metrics(metrics: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested dicts become dotted keys (``{"arm": {"x": 1}}`` → ``{"arm.x": 1}``)."""
    flat: dict[str, Any] = {}
    for k, v in metrics.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping):
            flat.update(flatten_metrics(v, key + "."))
        else:
            flat[key] = _jsonable(v)
    return flat


@dataclass
class RunContext:
    """What a workload gets from the run: where to write, seed, chip, resume flag."""

    out: Path
    seed: int = 0
    device: DeviceParams = field(default_factory=DeviceParams)
    noise: NoiseConfig = field(default_factory=NoiseConfig)
    resume: bool = False
    provenance: dict[str, Any] = field(default_factory=dict)
    presets: dict[str, DeviceParams] = field(default_factory=dict)
    show_progress: bool = True
    # Set (by the CLI's SIGINT/SIGTERM handler) when the user asks the run to stop. Training
    # loops check it at iteration boundaries, save their checkpoint and raise Interrupted.
    stop_requested: bool = False

    def __post_init__(self) -> None:
        self.out = Path(self.out)
        self.out.mkdir(parents=True, exist_ok=True)

    def path(self, name: str) -> Path:
        return self.out / name

    def progress(self, total: int | None, desc: str, initial: int = 0):
        """A tqdm bar with rate and ETA (to stderr; silent when ``show_progress`` is off)."""
        from tqdm.auto import tqdm

        return tqdm(total=total, desc=desc, initial=initial, disable=not self.show_progress,
                    dynamic_ncols=True, smoothing=0.1)

    def write_text(self, name: str, text: str) -> Path:
        atomic_write_bytes(self.path(name), text.encode())
        return self.path(name)

    def write_json(self, name: str, obj: Any) -> Path:
        return self.write_text(name, json.dumps(_jsonable(obj), indent=2, sort_keys=True) + "\n")

    def savefig(self, fig, name: str, dpi: int = 120) -> Path:
        import matplotlib.pyplot as plt

        buf = io.BytesIO()
        fig.savefig(buf, format=Path(name).suffix.lstrip(".") or "png", dpi=dpi,
                    bbox_inches="tight")
        plt.close(fig)
        atomic_write_bytes(self.path(name), buf.getvalue())
        return self.path(name)

    def savez(self, name: str, **arrays) -> Path:
        buf = io.BytesIO()
        np.savez_compressed(buf, **{k: np.asarray(_to_np(v)) for k, v in arrays.items()})
        atomic_write_bytes(self.path(name), buf.getvalue())
        return self.path(name)

    def save_checkpoint(self, state: dict[str, Any], name: str = "checkpoint.pt") -> Path:
        buf = io.BytesIO()
        torch.save(state, buf)
        atomic_write_bytes(self.path(name), buf.getvalue())
        return self.path(name)

    def load_checkpoint(self, name: str = "checkpoint.pt") -> dict[str, Any] | None:
        """The saved state when resuming and a checkpoint exists, else None."""
        p = self.path(name)
        if not (self.resume and p.exists()):
            return None
        return torch.load(p, map_location="cpu", weights_only=False)


def _to_np(v):
    return v.detach().cpu().numpy() if isinstance(v, torch.Tensor) else v
