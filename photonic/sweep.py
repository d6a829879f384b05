"""Design-space sweeps: fidelity, MZI counts, area, energy and latency over many design points.

A :class:`DesignPoint` is one chip design: matrix size ``n``, mesh ``topology``, SVD
``tile`` size, device ``preset`` and a noise level (``noise_scale`` multiplies every random
spread of the preset; ``phase_noise_std_rad`` sets the dynamic phase noise outright). For
every point and seed :func:`evaluate_point` programs an n×n real matrix (Gaussian random, or
one the caller gives) on a :class:`photonic.TensorCore` and measures it; :func:`run_sweep`
does this for a whole list of points and returns one tidy table, one row per point × seed.

Reproducibility. Every random draw of a row comes from its ``seed`` alone (three independent
streams from ``numpy.random.SeedSequence(seed)``: matrix, chip errors and noise, input
vectors), and every evaluation runs single-threaded in torch and numba, so a row does not
depend on which executor, worker or order computed it: the in-process, process-pool and
Dask executors return identical tables.

Cache and resume. Each row is stored as ``<cache_dir>/<key>.json`` as soon as it arrives
(atomic: temporary file, then rename, :func:`photonic.runio.atomic_write_bytes`). The key is
a SHA-256 of everything that determines the row — the design point, the full device
parameters (not just the preset name), the noise switches, the seed, the input batch, the
given matrix's bytes and :data:`SCHEMA_VERSION` — so an interrupted sweep rerun with the same
``cache_dir`` evaluates only the rows it has not finished, and a changed preset value is
recomputed rather than served stale.

Executors (:mod:`photonic.executors`, re-exported here; registry :data:`EXECUTORS`):
``"inprocess"`` (default), ``"processes"`` (a local process pool) and ``"dask"``
(``dask.distributed``: a small ``LocalCluster`` by default, or the scheduler at
``address``). Workers only compute; the calling process writes the cache, so remote workers
need no shared file system.

The workload interface (``kind: sweep``; ``photonic-sim sweep CONFIG``) is :class:`Config`
and :func:`run`; it writes ``sweep.csv`` (and ``sweep.parquet`` when pyarrow is installed),
``summary.csv``, figures and ``report.md``.

Columns of the table (:data:`COLUMNS`):
design — ``n``, ``rows`` (M of the matrix), ``topology``, ``tile`` (k actually used),
``preset``, ``noise_scale``, ``phase_noise_std_rad`` (effective dynamic phase noise),
``matrix``, ``seed``, ``key``;
fidelity — ``fidelity`` (:func:`photonic.metrics.matrix_fidelity` of W and the realised
optical matrix), ``rel_frobenius_error``, ``output_rel_error`` (‖y − Wx‖/‖Wx‖ over ``batch``
random inputs through the whole DAC → optics → detector → ADC chain);
counts — ``num_tiles``, ``num_mzis``, ``num_phase_shifters``, ``mesh_depth`` (columns of one
k-mode mesh), ``path_mzis`` (MZIs on the longest optical path);
cost (:func:`photonic.cost.estimate_cost`, weight-stationary, one input vector) —
``area_um2``, ``energy_pj`` (per inference), ``latency_ns`` (DAC to ADC),
``worst_path_loss_db``, ``laser_optical_mw`` (channels and local oscillators) and
``feasible`` (the power budget's verdict, :mod:`photonic.power`: False where the laser power
exceeds the preset's per-laser or per-chip limit).
"""

from __future__ import annotations

import hashlib
import io
import itertools
import json
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
import pandas as pd
import torch
from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from photonic.core import TensorCore, tensor_core_memory_bytes
from photonic.cost import Stage, estimate_cost
from photonic.devices import DeviceParams
from photonic.executors import (
    EXECUTORS,
    DaskExecutor,
    Executor,
    InProcessExecutor,
    ProcessExecutor,
    limited_threads,
    make_executor,
)
from photonic.mesh import TOPOLOGIES
from photonic.metrics import matrix_fidelity, rel_frobenius_error
from photonic.noise import NoiseConfig, scaled_device
from photonic.runio import RunContext, WorkloadConfig, atomic_write_bytes, new_figure
from photonic.textutil import did_you_mean, markdown_table

__all__ = [
    "SCHEMA_VERSION",
    "AXES",
    "COLUMNS",
    "DesignPoint",
    "grid",
    "scaled_device",
    "point_key",
    "evaluate_point",
    "run_sweep",
    "summarize",
    "plot_metric",
    "plot_costs",
    "Executor",
    "InProcessExecutor",
    "ProcessExecutor",
    "DaskExecutor",
    "EXECUTORS",
    "make_executor",
    "Config",
    "run",
]

# Bump whenever evaluate_point's rows change meaning: old cache entries then miss.
SCHEMA_VERSION = 4  # 2: devices carry phase_dac.grid; 3: one power budget, feasible;
# 4: arm imbalance, static errors in every preset

# Design axes of a row (what summarize groups by), in table order.
AXES = ("n", "rows", "topology", "tile", "preset", "noise_scale", "phase_noise_std_rad",
        "matrix")
COLUMNS = AXES + (
    "seed", "key",
    "fidelity", "rel_frobenius_error", "output_rel_error",
    "num_tiles", "num_mzis", "num_phase_shifters", "mesh_depth", "path_mzis",
    "area_um2", "energy_pj", "latency_ns", "worst_path_loss_db", "laser_optical_mw",
    "feasible",
)


# --------------------------------------------------------------------------- design points
class DesignPoint(BaseModel):
    """One chip design of a sweep (hashable, immutable).

    ``tile``: k of the k×k SVD tiles (None: one tile of k = n). ``noise_scale`` multiplies
    every random spread of the preset (see :func:`scaled_device`); ``phase_noise_std_rad``
    (None: the preset's, scaled) sets the dynamic phase noise per shifter and call.
    ``matrix``: ``"random"`` (Gaussian N(0, 1) entries from the row's seed) or the name of a
    matrix passed to :func:`run_sweep` in ``matrices=``.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    n: int = Field(..., ge=2, description="N: input dimension of the matrix (modes of V†)")
    topology: str = "clements"
    tile: int | None = Field(None, ge=2)
    preset: str = "ideal"
    noise_scale: float = Field(1.0, ge=0)
    phase_noise_std_rad: float | None = Field(None, ge=0)
    matrix: str = "random"

    @field_validator("topology")
    @classmethod
    def _known_topology(cls, v: str) -> str:
        if v not in TOPOLOGIES:
            raise ValueError(f"topology {v!r} is not known; valid choices: "
                             f"{sorted(TOPOLOGIES)}{did_you_mean(v, TOPOLOGIES)}")
        return v


def _as_tuple(v: Any) -> tuple:
    if isinstance(v, str) or not isinstance(v, Iterable):
        return (v,)
    return tuple(v)


def grid(
    *,
    n: int | Iterable[int],
    topology: str | Iterable[str] = "clements",
    tile: int | None | Iterable[int | None] = None,
    preset: str | Iterable[str] = "ideal",
    noise_scale: float | Iterable[float] = 1.0,
    phase_noise_std_rad: float | None | Iterable[float | None] = None,
    matrix: str | Iterable[str] = "random",
) -> list[DesignPoint]:
    """Cartesian product of the axes (each a value or a list), as design points.

    Order: the last axis varies fastest (``itertools.product`` over the arguments in the
    order of this signature), so a table built from it reads naturally.
    """
    axes = [_as_tuple(a) for a in (n, topology, tile, preset, noise_scale,
                                   phase_noise_std_rad, matrix)]
    names = ("n", "topology", "tile", "preset", "noise_scale", "phase_noise_std_rad", "matrix")
    return [DesignPoint(**dict(zip(names, combo, strict=True)))
            for combo in itertools.product(*axes)]


def _matrix_digest(matrix: np.ndarray | None) -> str | None:
    if matrix is None:
        return None
    a = np.ascontiguousarray(np.asarray(matrix, dtype=np.float64))
    h = hashlib.sha256(repr(a.shape).encode())
    h.update(a.tobytes())
    return h.hexdigest()


def point_key(
    point: DesignPoint,
    *,
    device: DeviceParams,
    noise: NoiseConfig,
    seed: int,
    batch: int,
    matrix: np.ndarray | None = None,
) -> str:
    """Cache key of one row: SHA-256 (hex, 32 digits) of a canonical JSON of its inputs.

    Canonical: sorted keys, no whitespace, floats as Python's shortest repr — so the key is
    the same in every process, session and platform (no ``hash()``, which is salted).
    """
    payload = {
        "schema": SCHEMA_VERSION,
        "point": point.model_dump(mode="json"),
        "device": device.model_dump(mode="json"),
        "noise": noise.model_dump(mode="json"),
        "seed": int(seed),
        "batch": int(batch),
        "matrix_sha256": _matrix_digest(matrix),
    }
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


# --------------------------------------------------------------------------- evaluation
def _streams(seed: int) -> tuple[torch.Generator, int, torch.Generator]:
    """Independent generators for (matrix, chip errors + noise, input vectors) of a seed."""
    m, c, x = (int(s) for s in np.random.SeedSequence(int(seed)).generate_state(3))
    return torch.Generator().manual_seed(m), c, torch.Generator().manual_seed(x)


def evaluate_point(
    point: DesignPoint,
    *,
    device: DeviceParams,
    noise: NoiseConfig,
    seed: int,
    batch: int = 64,
    matrix: np.ndarray | torch.Tensor | None = None,
) -> dict[str, Any]:
    """One row: program the point's matrix on a tensor core and measure it (see module doc).

    ``device`` is the preset's DeviceParams before noise scaling; ``matrix`` (M, n) real is
    required when ``point.matrix != "random"``.
    """
    dev = scaled_device(device, noise_scale=point.noise_scale,
                        phase_noise_std_rad=point.phase_noise_std_rad)
    g_matrix, chip_seed, g_input = _streams(seed)
    if point.matrix == "random":
        w = torch.randn(point.n, point.n, generator=g_matrix, dtype=torch.float64)
    else:
        if matrix is None:
            raise ValueError(f"point.matrix={point.matrix!r} needs the matrix itself "
                             f"(run_sweep(..., matrices={{{point.matrix!r}: W}}))")
        w = torch.as_tensor(np.asarray(matrix, dtype=np.float64))
        if w.ndim != 2 or w.shape[1] != point.n:
            raise ValueError(f"matrix {point.matrix!r} has shape {tuple(w.shape)}; the point "
                             f"has n={point.n}, so it must be (M, {point.n})")
    tile = point.tile or max(w.shape)
    core = TensorCore.from_matrix(w, tile=tile, topology=point.topology, device=dev,
                                  noise=noise, seed=chip_seed)
    realised = core.matrix()
    x = torch.randn(batch, point.n, generator=g_input, dtype=torch.float64)
    y = core(x)
    ref = x @ w.T
    # Cost of one input vector through the programmed core (batch=1): latency is then the
    # DAC → optics → ADC time of a single inference, not a streamed batch.
    cost = estimate_cost(device=dev, counts=core.counts, phases=core.program.phase_vector(),
                         topology=point.topology)
    stage = Stage.from_counts(core.counts, topology=point.topology)
    return {
        "n": point.n,
        "rows": int(w.shape[0]),
        "topology": point.topology,
        "tile": int(tile),
        "preset": point.preset,
        "noise_scale": float(point.noise_scale),
        "phase_noise_std_rad": float(dev.variation.phase_noise_std_rad),
        "matrix": point.matrix,
        "seed": int(seed),
        "fidelity": float(matrix_fidelity(w, realised)),
        "rel_frobenius_error": float(rel_frobenius_error(w, realised)),
        "output_rel_error": float(torch.linalg.norm(y - ref) / torch.linalg.norm(ref)),
        "num_tiles": core.counts.num_tiles,
        "num_mzis": core.counts.num_mzis,
        "num_phase_shifters": core.counts.num_phase_shifters,
        "mesh_depth": core.program.v.layout.depth,
        "path_mzis": stage.path_mzis,
        "area_um2": float(cost.area_um2),
        "energy_pj": float(cost.energy_pj),
        "latency_ns": float(cost.latency_ns),
        "worst_path_loss_db": float(cost.worst_path_loss_db),
        "laser_optical_mw": float(cost.laser_optical_mw),
        "feasible": bool(cost.feasible),
    }


@dataclass(frozen=True)
class _Task:
    key: str
    point: DesignPoint
    device: DeviceParams
    noise: NoiseConfig
    seed: int
    batch: int
    matrix: np.ndarray | None


def _evaluate_chunk(chunk: Sequence[_Task]) -> list[tuple[str, dict[str, Any]]]:
    """Worker entry point (module level, so process pools and Dask can pickle it)."""
    out = []
    with limited_threads(1):
        for t in chunk:
            row = evaluate_point(t.point, device=t.device, noise=t.noise, seed=t.seed,
                                 batch=t.batch, matrix=t.matrix)
            out.append((t.key, row))
    return out


# --------------------------------------------------------------------------- the sweep
def _read_cached(path: Path) -> dict[str, Any] | None:
    try:
        row = json.loads(path.read_text())
    except (OSError, ValueError):
        return None  # absent, or not ours: recompute and overwrite
    return row if isinstance(row, dict) and set(COLUMNS) <= set(row) else None


def run_sweep(
    points: Sequence[DesignPoint],
    *,
    devices: Mapping[str, DeviceParams],
    seeds: Iterable[int] = (0,),
    noise: NoiseConfig | None = None,
    batch: int = 64,
    matrices: Mapping[str, np.ndarray | torch.Tensor] | None = None,
    executor: str | Executor = "inprocess",
    workers: int = 2,
    address: str | None = None,
    chunk_size: int | None = None,
    cache_dir: str | Path | None = None,
    resume: bool = True,
    progress: Callable[[int, int], Any] | None = None,
) -> pd.DataFrame:
    """Evaluate every point for every seed; a DataFrame with one row per point × seed.

    ``devices``: preset name → DeviceParams (each point's ``preset`` must be a key);
    ``noise``: the non-idealities switched on (default :meth:`NoiseConfig.all`);
    ``executor``: a name in :data:`EXECUTORS` (with ``workers``; ``address`` of an existing
    Dask scheduler) or an :class:`Executor` instance — one already started (``with ex:``)
    stays open for further sweeps, otherwise it is started and closed here;
    ``chunk_size``: rows per task sent to a worker (default: 1 in-process; remote, about 8
    chunks per worker, at most 16 rows each);
    ``cache_dir``: where rows are stored by key; with ``resume`` (default) rows already
    there are read, not recomputed; ``progress(total, initial)``: returns a bar with
    ``update(k)`` (e.g. a tqdm), updated once per finished row.

    Rows are in the order of ``points`` then ``seeds``, whatever order they finish in.
    ``df.attrs["evaluated"]`` / ``df.attrs["cached"]`` count the rows computed now / read
    from the cache.
    """
    points = list(points)
    seeds = [int(s) for s in seeds]
    if not points or not seeds:
        raise ValueError(f"nothing to sweep: {len(points)} points × {len(seeds)} seeds")
    if batch < 1:
        raise ValueError(f"batch={batch}: need at least one input vector")
    noise = noise if noise is not None else NoiseConfig.all()
    tasks = _tasks(points, seeds, devices=devices, noise=noise, batch=batch, matrices=matrices)
    cache = Path(cache_dir) if cache_dir is not None else None
    rows = _read_cache(tasks, cache) if (cache is not None and resume) else {}
    if cache is not None:
        cache.mkdir(parents=True, exist_ok=True)
    cached = len(rows)
    pending = list({t.key: t for t in tasks if t.key not in rows}.values())
    ex = executor if isinstance(executor, Executor) else make_executor(
        executor, workers=workers, address=address)
    bar = progress(len(rows) + len(pending), cached) if progress is not None else None
    try:
        evaluated = _evaluate(pending, ex, chunk_size=chunk_size, cache=cache, rows=rows,
                              bar=bar)
    finally:
        if bar is not None and hasattr(bar, "close"):
            bar.close()
    df = pd.DataFrame([rows[t.key] for t in tasks], columns=list(COLUMNS))
    df.attrs["evaluated"] = evaluated
    df.attrs["cached"] = cached
    return df


def _tasks(points: list[DesignPoint], seeds: list[int], *, devices, noise, batch,
           matrices) -> list[_Task]:
    """One task per point × seed, keyed by everything its row depends on."""
    matrices = {k: np.asarray(torch.as_tensor(v).detach().cpu().numpy(), dtype=np.float64)
                for k, v in (matrices or {}).items()}
    if "random" in matrices:
        raise ValueError("matrices: the name 'random' is reserved for Gaussian matrices")
    tasks: list[_Task] = []
    for p in points:
        if p.preset not in devices:
            raise ValueError(f"point {p.model_dump()} uses preset {p.preset!r}, which is not "
                             f"in devices (given: {sorted(devices)})"
                             f"{did_you_mean(p.preset, devices)}")
        if p.matrix != "random" and p.matrix not in matrices:
            raise ValueError(f"point {p.model_dump()} uses matrix {p.matrix!r}, which is not "
                             f"in matrices (given: {sorted(matrices)})"
                             f"{did_you_mean(p.matrix, matrices)}")
        m = matrices.get(p.matrix)
        for s in seeds:
            key = point_key(p, device=devices[p.preset], noise=noise, seed=s, batch=batch,
                            matrix=m)
            tasks.append(_Task(key, p, devices[p.preset], noise, s, batch, m))
    return tasks


def _read_cache(tasks: list[_Task], cache: Path) -> dict[str, dict[str, Any]]:
    """The rows of ``tasks`` already in ``cache`` (key → row)."""
    rows: dict[str, dict[str, Any]] = {}
    for t in tasks:
        if t.key not in rows:
            row = _read_cached(cache / f"{t.key}.json")
            if row is not None:
                rows[t.key] = row
    return rows


def _evaluate(pending: list[_Task], ex: Executor, *, chunk_size: int | None,
              cache: Path | None, rows: dict[str, dict[str, Any]], bar) -> int:
    """Evaluate ``pending`` on ``ex`` in chunks, caching and collecting each row into
    ``rows`` as it arrives; returns how many were evaluated. A started executor stays open."""
    if not pending:
        return 0
    evaluated = 0
    with ExitStack() as stack:
        if not ex.started:  # ours to start and close; a started one stays open
            stack.enter_context(ex)
        size = chunk_size or (
            max(1, min(16, math.ceil(len(pending) / (8 * ex.workers)))) if ex.remote else 1)
        chunks = [pending[i : i + size] for i in range(0, len(pending), size)]
        for result in ex.imap_unordered(_evaluate_chunk, chunks):
            for key, row in result:
                row["key"] = key
                if cache is not None:
                    atomic_write_bytes(cache / f"{key}.json",
                                       json.dumps(row, sort_keys=True).encode())
                rows[key] = row
                evaluated += 1
                if bar is not None:
                    bar.update(1)
    return evaluated


def summarize(df: pd.DataFrame) -> pd.DataFrame:
    """Mean (and std over seeds of the fidelity) per design point, one row each;
    ``feasible`` is True where every seed's design is."""
    means = ["fidelity", "rel_frobenius_error", "output_rel_error", "num_mzis",
             "num_phase_shifters", "path_mzis", "area_um2", "energy_pj", "latency_ns",
             "worst_path_loss_db", "laser_optical_mw"]
    g = df.groupby(list(AXES), sort=False, dropna=False)
    out = g[means].mean()
    out["feasible"] = g["feasible"].all()
    out.insert(1, "fidelity_std", g["fidelity"].std(ddof=1))
    out.insert(0, "seeds", g.size())
    return out.reset_index()


# --------------------------------------------------------------------------- figures
def plot_metric(
    df: pd.DataFrame,
    *,
    x: str = "n",
    y: str = "fidelity",
    by: Sequence[str] = ("topology", "preset"),
    ax=None,
    logy: bool = False,
    logx: bool = False,
):
    """Mean of ``y`` over seeds against ``x``, one line per combination of ``by``, with a
    ±1 std band over seeds; returns the Axes."""
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(5.5, 3.8))
    by = [b for b in by if b in df and b != x]
    groups = df.groupby(by, sort=True) if by else [((), df)]
    for label, sub in groups:
        stats = sub.groupby(x, sort=True)[y].agg(["mean", "std"]).fillna({"std": 0.0})
        name = ", ".join(str(v) for v in (label if isinstance(label, tuple) else (label,)))
        ax.plot(stats.index, stats["mean"], marker="o", ms=3, label=name or y)
        ax.fill_between(stats.index, stats["mean"] - stats["std"],
                        stats["mean"] + stats["std"], alpha=0.2)
    ax.set_xlabel(x)
    ax.set_ylabel(y)
    if logy:
        ax.set_yscale("log")
    if logx:
        ax.set_xscale("log", base=2 if x in ("n", "tile") else 10)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7)
    return ax


def plot_costs(df: pd.DataFrame, *, x: str = "n", by: Sequence[str] = ("topology", "preset"),
               fig=None):
    """Area, energy, latency and laser power against ``x`` (log scales), one panel each;
    infeasible designs (power budget over a laser limit) are crossed out in red. Draws into
    ``fig`` (default: a new pyplot figure, shown in a notebook); returns the Figure."""
    if fig is None:
        import matplotlib.pyplot as plt

        fig = plt.figure(figsize=(20, 3.8))
    axes = fig.subplots(1, 4)
    ys = ("area_um2", "energy_pj", "latency_ns", "laser_optical_mw")
    for ax, y in zip(axes, ys, strict=True):
        plot_metric(df, x=x, y=y, by=by, ax=ax, logy=True, logx=True)
        bad = df[~df["feasible"].astype(bool)].groupby(list(by) + [x], sort=True)[y].mean()
        if len(bad):
            ax.scatter(bad.index.get_level_values(x), bad.values, marker="x", color="red",
                       zorder=3, label="infeasible (laser limit)")
            ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


# --------------------------------------------------------------------------- workload
class Config(WorkloadConfig):
    """``kind: sweep`` — the grid of design points; every list is one axis of the product.

    ``presets``: device presets to compare (resolved by the CLI into ``ctx.presets``; empty:
    the run's ``chip.preset``). Noise switches come from the run's ``chip.noise``.
    """

    kind: Literal["sweep"] = "sweep"
    presets: list[str] = Field(default_factory=list)
    # the bounds of DesignPoint, checked here so that a bad axis fails before any point runs
    n: list[Annotated[int, Field(ge=2)]] = Field(default_factory=lambda: [4, 8, 16],
                                                 min_length=1)
    topology: list[str] = Field(default_factory=lambda: ["clements", "reck"], min_length=1)
    tile: list[Annotated[int, Field(ge=2)] | None] = Field(default_factory=lambda: [None],
                                                           min_length=1)
    noise_scale: list[Annotated[float, Field(ge=0)]] = Field(default_factory=lambda: [1.0],
                                                             min_length=1)
    phase_noise_std_rad: list[Annotated[float, Field(ge=0)] | None] = Field(
        default_factory=lambda: [None], min_length=1)
    seeds: int = Field(3, ge=1, description="rows per point: seeds seed, seed+1, …")
    batch: int = Field(64, ge=1, description="random input vectors for output_rel_error")
    executor: str = "inprocess"
    workers: int = Field(2, ge=1)
    scheduler_address: str | None = Field(None, description="existing Dask scheduler")
    chunk_size: int | None = Field(None, ge=1)
    cache_dir: str | None = Field(None, description="default: <out>/cache")

    @field_validator("topology")
    @classmethod
    def _known_topologies(cls, v: list[str]) -> list[str]:
        for t in v:
            DesignPoint._known_topology(t)
        return v

    @field_validator("executor")
    @classmethod
    def _known_executor(cls, v: str) -> str:
        if v not in EXECUTORS:
            raise ValueError(f"executor {v!r} is not known; valid choices: "
                             f"{sorted(EXECUTORS)}{did_you_mean(v, EXECUTORS)}")
        return v

    @field_validator("scheduler_address")
    @classmethod
    def _address_needs_dask(cls, v: str | None, info: ValidationInfo) -> str | None:
        executor = info.data.get("executor")
        if v is not None and executor != "dask":
            raise ValueError(f"scheduler_address={v!r} needs executor: dask (got {executor!r})")
        return v


HEADLINE_METRICS = ("points", "rows", "fidelity_mean", "fidelity_min")


def estimate_memory_bytes(cfg: Config, ctx_like) -> int:
    """Peak memory of the sweep: its largest point, times the points evaluated at once
    (one per worker process, except in-process or on a remote Dask cluster)."""
    largest = max(tensor_core_memory_bytes(n, n, tile=t or n, batch=cfg.batch)
                  for n in cfg.n for t in cfg.tile)
    local_workers = cfg.executor != "inprocess" and cfg.scheduler_address is None
    return largest * (cfg.workers if local_workers else 1)


def _feasibility_lines(summary: pd.DataFrame) -> list[str]:
    """Where designs become infeasible, per preset and topology: the largest feasible N and
    the smallest infeasible one (the power budget grows with the path loss, hence with N)."""
    lines = ["## Where designs become infeasible", ""]
    for (preset, topology), sub in summary.groupby(["preset", "topology"], sort=True):
        ok = sub[sub["feasible"].astype(bool)]
        bad = sub[~sub["feasible"].astype(bool)].sort_values("n")
        up_to = f"feasible up to N = {ok['n'].max()}" if len(ok) else "no feasible N"
        if bad.empty:
            lines.append(f"- `{preset}`, {topology}: {up_to}; every N swept is within the "
                         "laser limits.")
            continue
        row = bad.iloc[0]
        lines.append(f"- `{preset}`, {topology}: {up_to}; infeasible from N = {row['n']} "
                     f"(tile {row['tile']}, laser {row['laser_optical_mw']:.4g} mW optical).")
    return lines + [""]


def _figures(df: pd.DataFrame, presets: list[str], ctx: RunContext) -> list[tuple[str, str]]:
    """The sweep's figures, written through ``ctx``; (title, file name) of each."""
    figures = []
    fig = new_figure(figsize=(6, 4))
    ax = fig.subplots()
    plot_metric(df, x="n", y="fidelity", ax=ax, logx=True)
    ax.set_title("Fidelity vs N (mean ± std over seeds)")
    ctx.savefig(fig, "fidelity_vs_n.png")
    figures.append(("Fidelity vs N", "fidelity_vs_n.png"))
    if df["phase_noise_std_rad"].nunique() > 1:
        fig = new_figure(figsize=(5.5 * len(presets), 4))
        axes = fig.subplots(1, len(presets), squeeze=False)
        for ax, name in zip(axes[0], presets, strict=True):
            plot_metric(df[df["preset"] == name], x="phase_noise_std_rad", y="fidelity",
                        by=("topology", "n"), ax=ax)
            ax.set_title(f"Fidelity vs phase-noise std — {name}")
        fig.tight_layout()
        ctx.savefig(fig, "fidelity_vs_phase_noise.png")
        figures.append(("Fidelity vs phase noise", "fidelity_vs_phase_noise.png"))
    ctx.savefig(plot_costs(df, fig=new_figure(figsize=(20, 3.8))), "cost_vs_n.png")
    figures.append(("Area, energy, latency vs N", "cost_vs_n.png"))

    return figures


def run(cfg: Config, ctx: RunContext) -> dict[str, object]:
    """Run the sweep, write ``sweep.csv`` (+ parquet), ``summary.csv``, figures, report.

    Rows are cached in ``cfg.cache_dir`` (default ``<out>/cache``). ``photonic-sim sweep``
    runs with ``ctx.resume`` on and reads finished rows from there; ``photonic-sim run``
    recomputes every row (and refreshes the cache).

    metrics.json keys: ``points``, ``rows``, ``evaluated``, ``cached``, ``fidelity_mean``,
    ``fidelity_min``, ``infeasible_points`` and ``by_topology.<name>.fidelity_mean``.
    """
    import importlib.util

    chip_name = str(ctx.provenance.get("preset", ctx.device.name))
    devices = dict(ctx.presets) if cfg.presets else {chip_name: ctx.device}
    missing = [p for p in cfg.presets if p not in devices]
    if missing:
        raise ValueError(f"presets {missing} were not resolved into ctx.presets "
                         f"(have {sorted(devices)}); run through photonic-sim")
    points = grid(n=cfg.n, topology=cfg.topology, tile=cfg.tile, preset=list(devices),
                  noise_scale=cfg.noise_scale, phase_noise_std_rad=cfg.phase_noise_std_rad)
    seeds = [ctx.seed + i for i in range(cfg.seeds)]
    df = run_sweep(
        points, devices=devices, seeds=seeds, noise=ctx.noise, batch=cfg.batch,
        executor=cfg.executor, workers=cfg.workers, address=cfg.scheduler_address,
        chunk_size=cfg.chunk_size,
        cache_dir=Path(cfg.cache_dir) if cfg.cache_dir else ctx.path("cache"),
        resume=ctx.resume,
        progress=lambda total, initial: ctx.progress(total, "sweep", initial=initial),
    )
    ctx.write_text("sweep.csv", df.to_csv(index=False))
    files = ["sweep.csv"]
    if importlib.util.find_spec("pyarrow") is not None:
        buf = io.BytesIO()
        df.to_parquet(buf, index=False)
        atomic_write_bytes(ctx.path("sweep.parquet"), buf.getvalue())
        files.append("sweep.parquet")
    summary = summarize(df)
    ctx.write_text("summary.csv", summary.to_csv(index=False))

    figures = _figures(df, list(devices), ctx)

    noise_on = ", ".join(k for k, v in ctx.noise.model_dump().items() if v is True) or "none"
    lines = [
        f"# Design-space sweep: {len(points)} points × {len(seeds)} seeds",
        "",
        f"Presets: {', '.join(f'`{p}`' for p in devices)}; noise switched on: {noise_on}; "
        f"executor `{cfg.executor}`. Rows computed now: {df.attrs['evaluated']}, "
        f"read from the cache: {df.attrs['cached']}.",
        "",
        f"Files: {', '.join(f'`{f}`' for f in files)} (one row per point × seed), "
        "`summary.csv` (per point).",
        "",
    ]
    for title, name in figures:
        lines += [f"## {title}", "", f"![{title}]({name})", ""]
    cols = ["n", "topology", "tile", "preset", "noise_scale", "phase_noise_std_rad", "seeds",
            "fidelity", "fidelity_std", "num_mzis", "area_um2", "energy_pj", "latency_ns",
            "laser_optical_mw", "feasible"]
    lines += ["## Per design point (means over seeds)", "",
              "\n".join(markdown_table(cols, summary[cols].itertuples(index=False))), "",
              "fidelity = |⟨W, Ŵ⟩|²/(‖W‖²‖Ŵ‖²) of the realised optical matrix Ŵ; costs from "
              "`photonic.cost.estimate_cost` (weight-stationary, one input vector); "
              "laser_optical_mw and feasible from its power budget (`photonic.power`).", ""]
    lines += _feasibility_lines(summary)
    ctx.write_text("report.md", "\n".join(lines) + "\n")

    return {
        "points": len(points),
        "rows": len(df),
        "evaluated": df.attrs["evaluated"],
        "cached": df.attrs["cached"],
        "fidelity_mean": float(df["fidelity"].mean()),
        "fidelity_min": float(df["fidelity"].min()),
        "infeasible_points": int((~summary["feasible"].astype(bool)).sum()),
        "by_topology": {t: {"fidelity_mean": float(s["fidelity"].mean())}
                        for t, s in df.groupby("topology", sort=True)},
    }

