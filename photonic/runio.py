"""The run contract's edge: output folder, atomic writes, checkpoints, progress bars.

This is the only hub module that touches files (besides the CLI). Workloads receive a
:class:`RunContext` from ``photonic-sim run`` and write everything through it, so nothing
half-written is ever left behind: every file is written to a temporary sibling and renamed.
"""

from __future__ import annotations

import hashlib
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
    "WorkloadConfig", "RunContext", "Interrupted", "BadInput", "atomic_write_bytes",
    "flatten_metrics", "new_figure", "config_hash", "available_memory_bytes",
    "remove_stale_temp_files",
]

# atomic_write_bytes writes ``.<name>.<random>.tmp`` siblings; a process killed mid-write
# leaves one behind, which the next run into the folder removes.
TEMP_PREFIX, TEMP_SUFFIX = ".", ".tmp"


class Interrupted(Exception):
    """Raised by a workload that stopped at a safe point because a stop was requested.

    The workload has written its checkpoint before raising; ``args[0]`` says where it stopped
    (e.g. ``"iteration 120"``). The CLI turns it into exit code 130 and a resume hint.
    """


class BadInput(ValueError):
    """A user error found once a run has started (e.g. an unreachable Dask scheduler):
    the CLI prints its message in one line and exits with code 2, without a traceback."""


class WorkloadConfig(BaseModel):
    """Base of every workload's config: unknown keys are rejected."""

    model_config = ConfigDict(extra="forbid")

    kind: str


def _umask() -> int:
    """The process umask, read without changing it where Linux reports it."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    old = os.umask(0o022)  # elsewhere: set and restore (not thread-safe, hence the fallback)
    os.umask(old)
    return old


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temporary file in the same folder and a rename.

    The file gets the mode an ordinary ``open(path, "w")`` would give (0o666 less the
    umask), not ``mkstemp``'s private 0o600.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f"{TEMP_PREFIX}{path.name}.",
                               suffix=TEMP_SUFFIX)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fchmod(f.fileno(), 0o666 & ~_umask())
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def remove_stale_temp_files(folder: Path) -> list[Path]:
    """Delete the temporary files that killed writers left in ``folder``; returns them."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    stale = [p for p in folder.iterdir() if p.is_file() and p.name.startswith(TEMP_PREFIX)
             and p.name.endswith(TEMP_SUFFIX)]
    for p in stale:
        p.unlink(missing_ok=True)
    return stale


def config_hash(config: Mapping[str, Any]) -> str:
    """SHA-256 of the canonical JSON of a resolved config (key order does not matter)."""
    text = json.dumps(_jsonable(config), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def available_memory_bytes() -> int:
    """Memory a new run can use: psutil's ``available`` (else /proc/meminfo MemAvailable),
    capped by a cgroup-v2 limit (``memory.max`` − ``memory.current``) where one is set."""
    try:
        import psutil

        avail = int(psutil.virtual_memory().available)
    except ImportError:
        avail = _meminfo_available()
    cgroup = Path("/sys/fs/cgroup")
    try:
        limit = (cgroup / "memory.max").read_text().strip()
        if limit != "max":
            used = int((cgroup / "memory.current").read_text())
            avail = min(avail, max(int(limit) - used, 0))
    except (OSError, ValueError):
        pass
    return avail


def _meminfo_available() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) * 1024  # the value is in kB
    raise OSError("/proc/meminfo has no MemAvailable line")


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
    # The resolved config of the run (seed, chip, workload) and its config_hash; every
    # checkpoint records both, so that a resume can refuse a different config.
    run_config: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        self.out = Path(self.out)
        self.out.mkdir(parents=True, exist_ok=True)
        remove_stale_temp_files(self.out)

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
        """Write ``state`` atomically, with the run's config and its hash under
        ``"run_config"`` and ``"run_config_hash"`` (when the context has a run config)."""
        if self.run_config is not None:
            state = {**state, "run_config": self.run_config,
                     "run_config_hash": config_hash(self.run_config)}
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
