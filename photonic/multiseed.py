"""Multi-seed runs: one run per seed, fanned out over the sweep's executors, and a summary.

``photonic-sim run CONFIG --seeds 0-4`` runs the config once per seed, in parallel, each seed
through exactly the function that runs a single ``photonic-sim run`` (the *runner*, given by
the CLI; this module never reads configs). Layout of the output folder ``out``::

    out/seed_<n>/       a complete run folder (run contract), ``seed: n`` in its resolved config,
                        plus ``run.log``: what the seed's run printed
    out/multiseed.json  the config and overrides the seeds were run with (checked on resume)
    out/summary.md      per-seed table of the headline metrics with median, worst and spread
    out/summary.json    the same numbers, flat (``<metric>.median`` ...)
    out/seed_curves.png the per-seed curves overlaid (or the per-seed headline values)

Seeds (:func:`parse_seeds`): ``"3"``, ``"0-4"`` (inclusive), ``"0,2,5"`` or a mix
(``"0-2,7"``); no duplicates, no negatives.

Headline metrics and direction (:func:`headline_metrics`): declared per workload kind in
:data:`HEADLINES` (``"min"``: lower is better, ``"max"``: higher is better). For a kind not
declared there, the rule :data:`DEFAULT_RULE` applies to every numeric metric by the last
part of its dotted name: lower is better when it contains ``error``, ``loss``, ``rel_l2`` or
``residual`` or is ``wall_s``; higher is better when it contains ``fidelity``, ``utility``
or ``quality``; other metrics (counts, accuracies whose direction depends on the set, e.g.
forgetting) are not headline. Statistics over the seeds whose value is finite: ``median``;
``worst`` (the largest value of a "min" metric, the smallest of a "max" metric); ``best``;
``spread`` = max − min; ``n`` (seeds with a finite value).

Curves (:data:`CURVES`): per workload kind, a reader of a finished seed folder. ``pinn``:
the test-grid rel. L2 error and the training loss against the iteration, from the run's
``checkpoint.pt`` (``state.evals`` and ``state.history``). Without a reader (or a curve in
every seed) the figure shows the per-seed headline values.

Resume: with ``resume``, a seed whose folder holds ``metrics.json`` (written last by a run)
is skipped; the others run with resume on, so a training workload continues from its
``checkpoint.pt``. Every seed that is run has its old ``metrics.json`` removed first, so a
killed rerun is never taken for finished.

Executors (:mod:`photonic.executors`): ``"processes"`` (default; a local pool) or ``"dask"``
(``address``: an existing scheduler). Each seed runs with ``threads`` torch/numba threads
(default 1). The seed runs write their folders themselves: with a Dask scheduler, ``out``
and the config must be reachable under the same paths on every worker (a shared file
system; a relative config path is read from each worker's working directory); a seed whose
``metrics.json`` is not visible here afterwards is an error.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import os
import re
import shlex
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from photonic.executors import make_executor
from photonic.runio import RunContext, atomic_write_bytes
from photonic.textutil import markdown_table

__all__ = [
    "SeedsInputError",
    "parse_seeds",
    "HEADLINES",
    "DEFAULT_RULE",
    "headline_metrics",
    "Curve",
    "CURVES",
    "seed_stats",
    "SeedsResult",
    "run_seeds",
]

Direction = Literal["min", "max"]
SUMMARY_FIGURE = "seed_curves.png"
MANIFEST = "multiseed.json"


class SeedsInputError(ValueError):
    """Bad input to a multi-seed run (a seed spec, a mismatched resume): exit code 2."""


# --------------------------------------------------------------------------- seed specs
_RULE = ("write N, LOW-HIGH (inclusive) or a comma-separated list of these, with integers "
         "≥ 0, e.g. 3, 0-4 or 0,2,5")
_ITEM = re.compile(r"(\d+)(?:-(\d+))?")


def parse_seeds(spec: str) -> list[int]:
    """``"0-4"`` → [0, 1, 2, 3, 4]; ``"0,2,5"`` → [0, 2, 5]; ``"3"`` → [3]; in the given order.

    Raises :class:`SeedsInputError` naming the value and the rule for an empty item, an
    item that is not an integer ≥ 0 or a range of them, a range running backwards, or a
    seed given twice.
    """
    seeds: list[int] = []
    for item in str(spec).split(","):
        m = _ITEM.fullmatch(item.strip())
        if m is None:
            what = "an empty item" if not item.strip() else f"{item.strip()!r} is not a seed"
            raise SeedsInputError(f"--seeds {spec!r}: {what}; {_RULE}")
        lo = int(m[1])
        hi = int(m[2]) if m[2] is not None else lo
        if hi < lo:
            raise SeedsInputError(f"--seeds {spec!r}: range {lo}-{hi} runs backwards; "
                                  f"write LOW-HIGH with LOW ≤ HIGH, e.g. {hi}-{lo}")
        seeds.extend(range(lo, hi + 1))
    repeated = sorted({s for s in seeds if seeds.count(s) > 1})
    if repeated:
        raise SeedsInputError(f"--seeds {spec!r}: seed(s) {repeated} given more than once; "
                              "each seed runs once")
    return seeds


# --------------------------------------------------------------------------- headline metrics
# kind → {metric: direction}; "min": lower is better. Keys as in each workload's metrics.json.
HEADLINES: dict[str, dict[str, Direction]] = {
    # finish.rel_l2_start: the error the phase stage delivered to the electronic finish
    "pinn": {"rel_l2": "min", "finish.rel_l2_start": "min", "rel_l2_best": "min",
             "final_loss": "min", "wall_s": "min"},
    "mesh_demo": {"fidelity": "max", "rel_frobenius_error": "min", "output_rel_error": "min"},
    "calibrate_mesh": {"calibrated_rel_error": "min", "calibrated_fidelity": "max",
                       "error_reduction": "max"},
    "sweep": {"fidelity_mean": "max", "fidelity_min": "max"},
}

# The rule for kinds without a declaration: (direction, substrings of the metric's last
# dotted part, exact names), tried in order.
DEFAULT_RULE: tuple[tuple[Direction, tuple[str, ...], tuple[str, ...]], ...] = (
    ("min", ("error", "loss", "rel_l2", "residual"), ("wall_s",)),
    ("max", ("fidelity", "utility", "quality"), ()),
)


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def _finite(v: Any) -> float:
    """A metrics.json value as a float: NaN unless a finite number (JSON null, "inf")."""
    return float(v) if _is_number(v) and math.isfinite(v) else math.nan


def headline_metrics(kind: str, metrics: Mapping[str, Any]) -> dict[str, Direction]:
    """The headline metrics of a workload ``kind`` present in ``metrics`` (a flat
    metrics.json), with their directions, in declaration (or metrics) order."""
    declared = HEADLINES.get(kind)
    if declared is not None:
        return {k: d for k, d in declared.items() if k in metrics}
    out: dict[str, Direction] = {}
    for key, value in metrics.items():
        if value is not None and not _is_number(value):
            continue
        last = key.rsplit(".", 1)[-1]
        for direction, parts, exact in DEFAULT_RULE:
            if last in exact or any(p in last for p in parts):
                out[key] = direction
                break
    return out


def seed_stats(values: Sequence[Any], direction: Direction) -> dict[str, float | int]:
    """median, worst, best, spread (max − min) and n over the finite values (module doc);
    NaN statistics when none is finite."""
    finite = np.array([_finite(v) for v in values])
    finite = finite[np.isfinite(finite)]
    if finite.size == 0:
        return {"median": math.nan, "worst": math.nan, "best": math.nan, "spread": math.nan,
                "n": 0}
    lo, hi = float(finite.min()), float(finite.max())
    return {"median": float(np.median(finite)),
            "worst": hi if direction == "min" else lo,
            "best": lo if direction == "min" else hi,
            "spread": hi - lo, "n": int(finite.size)}


# --------------------------------------------------------------------------- curves
@dataclass(frozen=True)
class Curve:
    """One curve of one seed: ``y`` against ``x``; curves of the same ``name`` share a panel."""

    name: str
    x_label: str
    y_label: str
    x: np.ndarray
    y: np.ndarray
    log_y: bool = False


def _pinn_curves(run_dir: Path) -> list[Curve]:
    """Test rel. L2 and training loss per iteration from a pinn run's checkpoint.pt
    (``state.evals`` rows: iteration, forward evals, wall s, rel. L2; ``state.history`` rows:
    iteration, loss, forward evals, wall s)."""
    import torch

    path = run_dir / "checkpoint.pt"
    if not path.is_file():
        return []
    state = torch.load(path, map_location="cpu", weights_only=False).get("state", {})
    curves = []
    evals = np.array(state.get("evals", []), dtype=float).reshape(-1, 4)
    if len(evals):
        curves.append(Curve("test error", "iteration", "rel. L2 error on the test grid",
                            evals[:, 0], evals[:, 3], log_y=True))
    hist = np.array(state.get("history", []), dtype=float).reshape(-1, 4)
    if len(hist):
        curves.append(Curve("training loss", "iteration",
                            "training loss (weighted mean squared PDE residual)",
                            hist[:, 0], np.abs(hist[:, 1]), log_y=True))
    return curves


# kind → reader of a finished seed folder's curves (an empty list: none available)
CURVES: dict[str, Callable[[Path], list[Curve]]] = {"pinn": _pinn_curves}


# --------------------------------------------------------------------------- one seed
@dataclass(frozen=True)
class _SeedTask:
    runner: Callable[..., Any]
    config: str
    sets: tuple[str, ...]
    seed: int
    out: Path
    resume: bool
    force: bool
    threads: int


def _run_seed(task: _SeedTask) -> tuple[int, int, str]:
    """Worker entry point: one seed's run through the runner, its output captured in
    ``run.log``; returns (seed, exit code, the log's last lines)."""
    from photonic.executors import limited_threads

    buf = io.StringIO()
    code = 0
    with contextlib.redirect_stdout(buf), contextlib.redirect_stderr(buf):
        try:
            with limited_threads(task.threads):
                task.runner(task.config, set_=[*task.sets, f"seed={task.seed}"],
                            out=task.out, resume=task.resume, force=task.force, quiet=True)
        except (Exception, SystemExit) as e:  # typer.Exit carries exit_code, SystemExit code
            code = getattr(e, "exit_code", getattr(e, "code", 1))
            code = code if isinstance(code, int) else 1
            if code and not buf.getvalue().strip():
                buf.write(f"{type(e).__name__}: {e}\n")
    text = buf.getvalue()
    atomic_write_bytes(task.out / "run.log", text.encode())
    return task.seed, code, "\n".join(text.splitlines()[-5:])


# --------------------------------------------------------------------------- the fan-out
@dataclass
class SeedsResult:
    """What a multi-seed run did: ``summary`` (the flat summary.json), the seeds ``ran`` now
    and ``skipped`` (finished before), ``failed``: seed → (exit code, last log lines)."""

    out: Path
    seeds: list[int]
    summary: dict[str, Any]
    ran: list[int] = field(default_factory=list)
    skipped: list[int] = field(default_factory=list)
    failed: dict[int, tuple[int, str]] = field(default_factory=dict)


def _seed_dir(out: Path, seed: int) -> Path:
    return out / f"seed_{seed}"


def _check_manifest(out: Path, manifest: dict[str, Any], resume: bool) -> None:
    """With ``resume``, refuse an ``out`` whose seeds ran with another config or overrides."""
    path = out / MANIFEST
    if not (resume and path.is_file()):
        return
    old = json.loads(path.read_text())
    same_config = Path(old.get("config", "")).resolve() == Path(manifest["config"]).resolve()
    if not same_config or old.get("overrides") != manifest["overrides"]:
        raise SeedsInputError(
            f"--resume: {out} holds seeds run with config {old.get('config')!r} and "
            f"overrides {old.get('overrides')}; this run has config {manifest['config']!r} "
            f"and overrides {manifest['overrides']}. Resume with the same config and --set "
            "values, or choose another --out")


def _fan_out(tasks: list[_SeedTask], *, executor: str, workers: int | None,
             address: str | None, ctx: RunContext, result: SeedsResult) -> None:
    if not tasks:
        return
    k = workers or min(len(tasks), os.cpu_count() or 1)
    bar = ctx.progress(len(result.seeds), "seeds", initial=len(result.skipped))
    try:
        with make_executor(executor, workers=k, address=address) as ex:
            for seed, code, tail in ex.imap_unordered(_run_seed, tasks):
                if code:
                    result.failed[seed] = (code, tail)
                else:
                    result.ran.append(seed)
                bar.update(1)
    finally:
        bar.close()


def run_seeds(
    runner: Callable[..., Any],
    *,
    config: str,
    label: str | None = None,
    sets: Sequence[str] = (),
    seeds: str | Sequence[int],
    kind: str,
    out: str | Path,
    resume: bool = False,
    force: bool = False,
    executor: str = "processes",
    workers: int | None = None,
    address: str | None = None,
    threads: int = 1,
    show_progress: bool = True,
) -> SeedsResult:
    """Run ``config`` once per seed on an executor and write the summary (module doc).

    ``runner(config, *, set_, out, resume, force, quiet)`` is the single-run function (the CLI's
    ``run``): it returns on success and raises an exception carrying ``exit_code`` (or
    ``SystemExit``) otherwise; it must be module-level, to pickle. ``config``: the config
    file the seeds run (``label``: as the user wrote it, for the summary's reproduce
    command; default ``config``). ``sets``: its ``--set``
    overrides (``seed=<n>`` is appended per seed); ``seeds``: a spec for
    :func:`parse_seeds` or a list; ``kind``: the workload kind (headline metrics, curves);
    ``workers``: default one per seed, at most the CPU count. Failed seeds are in
    ``result.failed``; the summary covers the seeds that finished.
    """
    spec = seeds if isinstance(seeds, str) else ",".join(str(s) for s in seeds)
    seed_list = parse_seeds(spec)
    if threads < 1:
        raise SeedsInputError(f"threads={threads}: each seed needs at least one thread")
    out = Path(out)
    manifest = {"config": str(config), "overrides": list(sets), "kind": kind}
    _check_manifest(out, manifest, resume)
    ctx = RunContext(out=out, show_progress=show_progress)
    ctx.write_json(MANIFEST, manifest)
    result = SeedsResult(out=out, seeds=seed_list, summary={})
    tasks = []
    for s in seed_list:
        metrics = _seed_dir(out, s) / "metrics.json"
        if resume and metrics.is_file():
            result.skipped.append(s)
            continue
        metrics.unlink(missing_ok=True)
        tasks.append(_SeedTask(runner, str(config), tuple(sets), s, _seed_dir(out, s),
                               resume, force, threads))
    _fan_out(tasks, executor=executor, workers=workers, address=address, ctx=ctx,
             result=result)
    for s in result.ran:
        if not (_seed_dir(out, s) / "metrics.json").is_file():
            result.failed[s] = (1, f"{_seed_dir(out, s)}/metrics.json is not visible here: "
                                "with a Dask scheduler, --out must be on a file system the "
                                "workers share")
    result.ran = sorted(s for s in result.ran if s not in result.failed)
    command = " ".join(["photonic-sim run", shlex.quote(label or str(config)), "--seeds", spec,
                        *(f"--set {shlex.quote(s)}" for s in sets)])
    result.summary = _write_summary(ctx, kind=kind, seeds=seed_list, command=command,
                                    failed=result.failed)
    return result


# --------------------------------------------------------------------------- the summary
def _write_summary(ctx: RunContext, *, kind: str, seeds: list[int], command: str,
                   failed: Mapping[int, tuple[int, str]]) -> dict[str, Any]:
    """summary.json, the figure and summary.md over the seeds with a metrics.json."""
    per_seed = {s: json.loads((_seed_dir(ctx.out, s) / "metrics.json").read_text())
                for s in seeds if (_seed_dir(ctx.out, s) / "metrics.json").is_file()}
    heads: dict[str, Direction] = {}
    for m in per_seed.values():
        for k, d in headline_metrics(kind, m).items():
            heads.setdefault(k, d)
    stats = {k: seed_stats([per_seed[s].get(k) for s in per_seed], d) for k, d in heads.items()}
    summary: dict[str, Any] = {"kind": kind, "command": command,
                               "seeds": ",".join(str(s) for s in seeds),
                               "seeds_finished": len(per_seed), "seeds_failed": len(failed)}
    for k, d in heads.items():
        summary[f"{k}.direction"] = d
        summary.update({f"{k}.{name}": v for name, v in stats[k].items()})
        summary.update({f"{k}.seed_{s}": per_seed[s].get(k) for s in per_seed})
    ctx.write_json("summary.json", summary)
    _plot(ctx, kind, per_seed, heads, stats)
    ctx.write_text("summary.md", "\n".join(
        _summary_lines(kind, seeds, command, per_seed, heads, stats, failed)) + "\n")
    return summary


def _cell(v: Any) -> str:
    return "—" if v is None else (f"{v:.4g}" if _is_number(v) else str(v))


def _summary_lines(kind, seeds, command, per_seed, heads, stats, failed) -> list[str]:
    arrow = {"min": "↓", "max": "↑"}
    lines = [f"# {len(seeds)} seeds of a `{kind}` run", "", f"Reproduce: `{command}`", "",
             "Each seed's run is a complete run folder `seed_<n>/` (its `report.md`, "
             "`metrics.json`, `config.resolved.yaml`, `run.log`).", ""]
    if failed:
        lines += ["Failed seeds (not in the statistics): "
                  + ", ".join(f"{s} (exit {c}, see `seed_{s}/run.log`)"
                              for s, (c, _) in sorted(failed.items())), ""]
    if not heads:
        lines += [f"No headline metrics for workload `{kind}` in the seeds' metrics.json.", ""]
        return lines + [f"![per-seed values]({SUMMARY_FIGURE})"]
    headers = ["seed", *(f"{k} {arrow[d]}" for k, d in heads.items())]
    rows = [[f"[{s}](seed_{s}/report.md)", *(_cell(per_seed[s].get(k)) for k in heads)]
            for s in per_seed]
    for name, label in (("median", "median"), ("worst", "worst"), ("spread", "spread")):
        rows.append([f"**{label}**", *(_cell(stats[k][name]) for k in heads)])
    lines += markdown_table(headers, rows)
    lines += ["", "↓ lower is better, ↑ higher is better. Worst: the worse end over the "
              "seeds (largest ↓, smallest ↑); spread: max − min; statistics over the seeds "
              "with a finite value.", "", f"![per-seed curves]({SUMMARY_FIGURE})"]
    return lines


def _plot(ctx: RunContext, kind: str, per_seed: Mapping[int, dict], heads, stats) -> None:
    """Per-seed curves overlaid (the kind's reader), else the per-seed headline values."""
    reader = CURVES.get(kind)
    curves = {s: reader(_seed_dir(ctx.out, s)) for s in per_seed} if reader else {}
    if curves and all(curves.values()):
        fig = _curves_figure(curves)
    else:
        fig = _values_figure(per_seed, heads, stats)
    ctx.savefig(fig, SUMMARY_FIGURE)


def _curves_figure(curves: Mapping[int, list[Curve]]):
    from photonic.runio import new_figure

    names = list(dict.fromkeys(c.name for cs in curves.values() for c in cs))
    fig = new_figure(figsize=(5.5 * len(names), 4), constrained_layout=True)
    axes = np.atleast_1d(fig.subplots(1, len(names)))
    for ax, name in zip(axes, names, strict=True):
        for s, cs in curves.items():
            for c in (c for c in cs if c.name == name):
                ax.plot(c.x, c.y, lw=0.8, label=f"seed {s}")
                ax.set(xlabel=c.x_label, ylabel=c.y_label, title=f"{name}, per seed",
                       yscale="log" if c.log_y else "linear")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7)
    return fig


def _values_figure(per_seed: Mapping[int, dict], heads, stats):
    from photonic.runio import new_figure

    better = {"min": "lower is better", "max": "higher is better"}
    keys = list(heads) or ["(no headline metric)"]
    seeds = list(per_seed)
    fig = new_figure(figsize=(3.6 * len(keys), 3.6), constrained_layout=True)
    axes = np.atleast_1d(fig.subplots(1, len(keys)))
    for ax, k in zip(axes, keys, strict=True):
        ax.set(xlabel="seed", ylabel=k,
               title=f"{k} per seed" + (f" ({better[heads[k]]})" if k in heads else ""))
        if k in stats:
            ax.plot(seeds, [_finite(per_seed[s].get(k)) for s in seeds], "o", label="seed")
            ax.axhline(stats[k]["median"], color="k", lw=0.8, ls="--", label="median")
            ax.legend(fontsize=7)
        ax.set_xticks(seeds)
        ax.grid(True, alpha=0.3)
    return fig
