"""A short BP-free PINN run killed with SIGKILL at random moments and resumed each time ends
with the metrics of the uninterrupted run, and leaves no partial or temporary file."""

import json
import multiprocessing
import os
import random
import signal
import threading
import time

import pytest
import torch
from typer.testing import CliRunner

from photonic.cli import app

# a tiny pinn_burgers: digital network, 4 collocation points, a checkpoint every iteration
SETS = ["workload.iterations=12", "workload.collocation_points=4",
        "workload.collocation.pool=64", "workload.pde_params={grid_x: 9, grid_t: 3}",
        "workload.model.execution=digital", "workload.optim.clamp_phases=false",
        "workload.finish=null", "workload.pretrain=null", "workload.time_limit_s=null",
        "workload.checkpoint_every=1",
        "workload.eval_every=4"]
ARGS = ["run", "pinn_burgers", "--quiet", *[a for s in SETS for a in ("--set", s)]]
WALL_CLOCK = ("wall_s", "s_per_iteration")


def _cli(args: list[str]) -> None:
    """The CLI in a child forked from a server that has imported it (it starts at once)."""
    res = CliRunner().invoke(app, args)
    os._exit(res.exit_code)


@pytest.fixture(scope="module")
def forkserver():
    """Children forked from a clean single-threaded server with the CLI and the PINN
    workload imported: a plain fork of the test process would copy the threads of
    whatever the suite imported before (JAX), which can deadlock the child."""
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(["photonic.cli", "mlfrontends.pinn.workload", __name__])
    # start the server (its imports take seconds) while the test runs the reference run
    warm = threading.Thread(target=lambda: ctx.Process(target=_noop).start(), daemon=True)
    warm.start()
    ctx.warm_up = warm
    return ctx


def _noop() -> None:
    pass


def _metrics(out):
    m = json.loads((out / "metrics.json").read_text())
    return {k: v for k, v in m.items() if k not in WALL_CLOCK}


def _writes(path, since: int) -> int:
    try:
        return int(path.stat().st_mtime_ns > since)
    except FileNotFoundError:
        return 0


def _kill_after_writes(mp, args, ckpt, writes: int, jitter_s: float, timeout_s: float = 90):
    """Start the CLI in a child; SIGKILL it ``jitter_s`` after its ``writes``-th new
    checkpoint write. Returns the child's exit code (-9 when killed)."""
    child = mp.Process(target=_cli, args=(args,))
    last = ckpt.stat().st_mtime_ns if ckpt.exists() else 0
    child.start()
    seen, deadline = 0, time.monotonic() + timeout_s
    while seen < writes and child.is_alive() and time.monotonic() < deadline:
        if _writes(ckpt, last):
            seen, last = seen + 1, ckpt.stat().st_mtime_ns
        time.sleep(0.002)
    time.sleep(jitter_s)
    if child.is_alive():
        os.kill(child.pid, signal.SIGKILL)
    child.join()
    return child.exitcode


@pytest.mark.slow
def test_sigkill_at_random_moments_then_resume_gives_the_uninterrupted_metrics(tmp_path,
                                                                                forkserver):
    full = tmp_path / "full"
    res = CliRunner().invoke(app, [*ARGS, "--out", str(full)])
    assert res.exit_code == 0, res.output

    forkserver.warm_up.join()
    cut = tmp_path / "cut"
    rng = random.Random(0)
    args = [*ARGS, "--out", str(cut), "--resume"]
    reached = []
    for _ in range(3):  # killed after 1–3 more checkpoints, 0–40 ms into the next iteration
        code = _kill_after_writes(forkserver, args, cut / "checkpoint.pt", rng.randint(1, 3),
                                  rng.uniform(0, 0.04))
        assert code == -signal.SIGKILL
        reached.append(torch.load(cut / "checkpoint.pt", weights_only=False)["state"]
                       ["iteration"])
    assert reached == sorted(reached) and reached[-1] < 12  # all three in mid-training
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    assert _metrics(cut) == _metrics(full)
    assert _metrics(cut)["iterations"] == 12
    assert sorted(p.name for p in cut.iterdir()) == sorted(p.name for p in full.iterdir())
    assert not [p for p in cut.iterdir() if p.name.startswith(".") or p.suffix == ".tmp"]
