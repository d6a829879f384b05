"""Throughput of the BP-free PINN loss and seconds per training iteration of each config.

    python benchmarks/bench_pinn.py [--threads 1] [--repeats 3] [--skip-configs]
                                    [--only-reference]

Table 1: network evaluations per second of the batched Stein + ZO loss (Burgers TT network,
1,200 collocation points × 13 sparse-grid stencil points × P = 32 perturbed parameter sets,
one forward call) next to a plain batched forward of the same network on the same number of
inputs, in float64 and float32; ratio = loss / plain (targets: ≥ 5e5 evals/s in float64,
≥ 1e6 in float32, ratio ≥ 0.5). Evaluations count every (parameter set, input row) pair;
the fused forward (mlfrontends.pinn.models.fused_mlp_forward) computes the layers that a
set shares bitwise with another (per-tensor ZO perturbs one tensor per set) only once, so
the last column gives the loss throughput with that reuse switched off.
Table 2: seconds per training iteration of every shipped pinn config (median of a few steps
after one warm-up step), plus the phase-domain reference recipe (1,200 points, per-tensor
ZO; target ≤ 0.8 s, a tenth of the 8.4 s per iteration measured for the public
reference implementation)
in float64 and in float32 (the shipped pinn_burgers.yaml's precision); the precision
column says which. A config with an electronic finish gets a second row: its seconds per
finish step (891 parameter sets for pinn_burgers).
Timings depend on machine load: the load average is printed with the tables.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

import torch
import yaml
from torch.func import functional_call

from mlfrontends.pinn.derivatives import SparseGridStein
from mlfrontends.pinn.pdes import build_pde
from mlfrontends.pinn.train import _residuals
from mlfrontends.pinn.workload import Config, build_network, run
from mlfrontends.zo import ParamLayout, ZOStepper
from photonic.runio import RunContext

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def _timeit(fn, repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def throughput(dtype: torch.dtype, repeats: int, points: int = 1200, *,
               share_prefixes: bool = True, plain: bool = True) -> tuple[float, float]:
    """(loss, plain forward) network evaluations per second; ``share_prefixes=False``
    computes every parameter set's whole network (no reuse of the unperturbed layers)."""
    cfg = Config(model={"precision": str(dtype).split(".")[1]})
    net = build_network(cfg, RunContext(out="/tmp/bench_pinn", show_progress=False))
    net.share_prefixes = share_prefixes
    pde = build_pde("burgers", {"grid_x": 3, "grid_t": 2})
    est = SparseGridStein(sigma=1e-3)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    stepper = ZOStepper(net, opt, mu=0.01, generator=torch.Generator().manual_seed(0))
    g = torch.Generator().manual_seed(0)
    z = pde.sample(points, g, dtype=dtype)
    layout = ParamLayout(net)
    U, _ = stepper.directions(dtype)
    P = 2 * U.shape[0]
    flat = layout.flatten()[None] + 0.01 * torch.cat([U, -U])
    rows = P * points * est.evals_for_dim(2)
    residual = _residuals(pde, est, z, g, None)

    def zo_loss():
        with torch.no_grad():
            r = residual(stepper.layout.batched_forward(flat))
            (r * r).mean(-1)

    x = torch.rand(points * est.evals_for_dim(2), 2, dtype=dtype)
    params = layout.unflatten(flat)

    def plain_forward():
        with torch.no_grad():
            functional_call(net, params, (x,))

    loss_rate = rows / _timeit(zo_loss, repeats)
    return loss_rate, (rows / _timeit(plain_forward, repeats) if plain else float("nan"))


def seconds_per_iteration(name: str, overrides: dict, steps: int
                          ) -> tuple[float, float | None]:
    """Median seconds per phase-stage step and per electronic-finish step (None: the
    config has no finish)."""
    raw = yaml.safe_load((CONFIGS / f"{name}.yaml").read_text()) if name else {}
    w = dict(raw.get("workload", {"kind": "pinn"}))
    w.update(overrides)
    # the chip's stages are timed; an electronic pre-training is the first-order digital
    # step the pinn_burgers_fo row times, so it is left out
    w.update(iterations=steps + 1, eval_every=10**6, checkpoint_every=10**6,
             time_limit_s=None, pretrain=None)
    if w.get("finish") is not None:
        w["finish"] = {**w["finish"], "iterations": steps + 1, "eval_every": 10**6,
                       "time_limit_s": None}
    import calibration
    import photonic

    chip = raw.get("chip", {"preset": "bpfree_pinn_sim",
                            "noise": {"phase_quantization": True, "gamma_error": True,
                                      "crosstalk": True}})
    noise = photonic.NoiseConfig.from_spec(chip.get("noise", "all"))
    ctx = RunContext(out=f"/tmp/bench_pinn/{name or 'ref'}", show_progress=False,
                     device=calibration.load_preset(chip["preset"]), noise=noise)
    state = {}

    def runner():
        state["m"] = run(Config(**w), ctx)

    runner()
    ckpt = torch.load(ctx.out / "checkpoint.pt", weights_only=False)["state"]["history"]
    walls = [b[3] - a[3] for a, b in zip(ckpt[:-1], ckpt[1:], strict=True)]
    n = steps + 1  # walls[:n - 1]: the phase stage's steps 2…n; walls[n:]: finish steps 2…
    return (statistics.median(walls[:n - 1]),
            statistics.median(walls[n:]) if w.get("finish") is not None else None)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads (the fused forward's row-block workers); default 1: "
                         "the second core of the 2-core dev machine runs other jobs, and 2 "
                         "threads measured slower there in the same run")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--steps", type=int, default=3, help="timed steps per config")
    ap.add_argument("--skip-configs", action="store_true")
    ap.add_argument("--only-reference", action="store_true",
                    help="table 2: only the phase-domain reference recipe rows")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    print(f"threads={torch.get_num_threads()}  load average={os.getloadavg()}")
    print(f"{'dtype':8s} {'Stein+ZO loss evals/s':>22s} {'plain forward evals/s':>22s} "
          f"{'ratio':>6s} {'loss, no prefix sharing':>24s}")
    for dtype in (torch.float64, torch.float32):
        loss_rate, plain_rate = throughput(dtype, args.repeats)
        unshared, _ = throughput(dtype, args.repeats, share_prefixes=False, plain=False)
        print(f"{str(dtype).split('.')[1]:8s} {loss_rate:22.4g} {plain_rate:22.4g} "
              f"{loss_rate / plain_rate:6.2f} {unshared:24.4g}", flush=True)
    if args.skip_configs:
        return
    print(f"\n{'config':52s} {'precision':>9s} {'s/iteration':>12s}")
    rows = [] if args.only_reference else [
        (n, {}) for n in ("pinn_burgers", "pinn_burgers_fo", "pinn_blackscholes", "pinn_hjb",
                          "pinn_darcy")]
    for precision in ("float64", "float32"):
        # the recipe is not a shipped config: it runs with this benchmark's --threads
        rows.append(("pinn_burgers", {"collocation_points": 1200, "threads": args.threads,
                                      "collocation": {"sampling": "uniform"},
                                      "optim": {"method": "zo", "mu": 0.025, "lr": 1e-3,
                                                "num_queries": 1, "per_tensor": True},
                                      "model": {"execution": "phase", "precision": precision},
                                      "finish": None}))
    print("(shipped configs run with their own `threads`; the reference recipe with "
          f"--threads {args.threads})")
    for name, over in rows:
        label = name + (" [phase, 1200 pts: reference recipe]" if over else "")
        precision = over.get("model", {}).get("precision") or _config_precision(name)
        step, finish = seconds_per_iteration(name, over, args.steps)
        print(f"{label:52s} {precision:>9s} {step:12.3f}", flush=True)
        if finish is not None:
            print(f"{name + ' [electronic finish step]':52s} {precision:>9s} {finish:12.3f}",
                  flush=True)
    print(f"load average={os.getloadavg()}")


def _config_precision(name: str) -> str:
    raw = yaml.safe_load((CONFIGS / f"{name}.yaml").read_text())
    return raw.get("workload", {}).get("model", {}).get("precision", "float64")


if __name__ == "__main__":
    main()
