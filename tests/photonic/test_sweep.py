"""Design-space sweeps: physics of the rows, executors agree exactly, cache and resume, the
workload and its shipped config, and the designer notebook (executed with nbclient)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from pydantic import ValidationError
from typer.testing import CliRunner

import photonic.sweep as sw
from photonic import DeviceParams, NoiseConfig, TensorCore, estimate_cost
from photonic.sweep import DesignPoint, grid, point_key, run_sweep, scaled_device

REPO = Path(__file__).resolve().parents[2]


def _noisy() -> DeviceParams:
    """A chip with every random spread and a lossy MZI (values picked for the tests)."""
    return DeviceParams.model_validate({
        "name": "noisy",
        "variation": {"gamma_std": 0.01, "phase_offset_std_rad": 0.02,
                      "phase_noise_std_rad": 0.01},
        "coupler": {"split_error_std_rad": 0.01},
        "mzi": {"insertion_loss_db": 0.5, "loss_std_db": 0.05},
    })


DEVICES = {"ideal": DeviceParams(), "noisy": _noisy()}


# --------------------------------------------------------------------------- physics of rows
def test_ideal_chip_realises_the_matrix_exactly_and_counts_follow_the_svd_formula():
    pts = grid(n=[4, 6, 8], topology=["clements", "reck"], tile=[None, 4])
    df = run_sweep(pts, devices=DEVICES, seeds=[0, 1], noise=NoiseConfig.ideal())
    assert len(df) == 24 and df.attrs == {"evaluated": 24, "cached": 0}
    assert (1 - df["fidelity"]).abs().max() < 1e-12
    assert df["rel_frobenius_error"].max() < 1e-12
    k = df["tile"]
    tiles = np.ceil(df["n"] / k) ** 2
    assert df["tile"].tolist() == [p.tile or p.n for p in pts for _ in (0, 1)]
    assert (df["num_tiles"] == tiles).all()
    # U and V† meshes k(k−1)/2 MZIs each + k Σ attenuators per tile (Shen et al. 2017)
    assert (df["num_mzis"] == tiles * k * k).all()
    depth = np.where(df["topology"] == "clements", k, 2 * k - 3)  # Clements 2016, Reck 1994
    assert (df["mesh_depth"] == depth).all()
    assert (df["path_mzis"] == 2 * depth + 1).all()


def test_fidelity_loss_scales_as_phase_noise_squared():
    """Small dynamic phase noise δ = σ z (z fixed by the seed): 1 − F = c(z) σ² + O(σ⁴), so
    doubling σ multiplies the infidelity by 4 for every seed (log-log slope 2)."""
    pts = grid(n=[4, 8], topology=["clements", "reck"], phase_noise_std_rad=[1e-3, 2e-3])
    df = run_sweep(pts, devices=DEVICES, seeds=[0, 1, 2], noise=NoiseConfig(phase_noise=True))
    inf = df.assign(inf=1 - df["fidelity"]).pivot_table(
        index=["n", "topology", "seed"], columns="phase_noise_std_rad", values="inf")
    slope = np.log2(inf[2e-3] / inf[1e-3])
    assert len(slope) == 12
    assert np.allclose(slope, 2.0, atol=0.01), slope.to_dict()
    assert (inf[1e-3] > 1e-7).all()  # the noise really acted


def test_loss_is_balanced_in_clements_but_not_in_reck():
    """Uniform MZI loss: every Clements path crosses the same number of elements (with its
    loss-matching dummies), so W is realised up to a scale (F = 1); Reck's paths differ in
    length, which distorts W (Clements et al., Optica 3, 1460 (2016))."""
    dev = {"lossy": DeviceParams.model_validate({"mzi": {"insertion_loss_db": 0.91}})}
    pts = grid(n=[4, 8], topology=["clements", "reck"], preset="lossy")
    df = run_sweep(pts, devices=dev, seeds=[0, 1], noise=NoiseConfig(insertion_loss=True))
    clem, reck = df[df["topology"] == "clements"], df[df["topology"] == "reck"]
    assert (1 - clem["fidelity"]).max() < 1e-12
    assert reck["fidelity"].max() < 0.995
    # longer unequal paths at N = 8 than at N = 4
    assert reck[reck["n"] == 8]["fidelity"].mean() < reck[reck["n"] == 4]["fidelity"].mean()


def test_noise_scale_scales_every_random_spread_and_the_override_wins():
    dev = _noisy()
    s = scaled_device(dev, noise_scale=3.0)
    assert s.variation.gamma_std == pytest.approx(0.03)
    assert s.variation.phase_offset_std_rad == pytest.approx(0.06)
    assert s.variation.phase_noise_std_rad == pytest.approx(0.03)
    assert s.coupler.split_error_std_rad == pytest.approx(0.03)
    assert s.mzi.loss_std_db == pytest.approx(0.15)
    assert s.mzi.insertion_loss_db == 0.5  # the design's mean loss is not noise
    assert scaled_device(dev, noise_scale=0.0, phase_noise_std_rad=0.2) \
        .variation.phase_noise_std_rad == 0.2
    df = run_sweep(grid(n=6, preset="noisy", noise_scale=[0.0, 1.0]), devices=DEVICES,
                   seeds=[3])
    assert df["phase_noise_std_rad"].tolist() == [0.0, 0.01]
    assert df["fidelity"].iloc[0] > df["fidelity"].iloc[1]


def test_cost_columns_are_the_estimator_on_the_scaled_device():
    p = DesignPoint(n=8, topology="reck", preset="noisy", noise_scale=2.0)
    row = sw.evaluate_point(p, device=DEVICES["noisy"], noise=NoiseConfig.all(), seed=5)
    g, chip_seed, _ = sw._streams(5)
    w = torch.randn(8, 8, generator=g, dtype=torch.float64)
    dev = scaled_device(DEVICES["noisy"], noise_scale=2.0)
    core = TensorCore.from_matrix(w, tile=8, topology="reck", device=dev, seed=chip_seed)
    ref = estimate_cost(device=dev, counts=core.counts, phases=core.program.phase_vector(),
                        topology="reck")
    assert row["area_um2"] == ref.area_um2
    assert row["energy_pj"] == pytest.approx(ref.energy_pj, rel=1e-12)
    assert row["latency_ns"] == ref.latency_ns
    assert row["worst_path_loss_db"] == pytest.approx(0.5 * (2 * 13 + 1))  # 13 = 2·8 − 3


def test_given_matrix_is_programmed_and_keyed_by_content():
    w = torch.tensor([[1.0, 2.0, 0.0], [0.5, -1.0, 3.0]], dtype=torch.float64)
    pts = [DesignPoint(n=3, matrix="mine")]
    df = run_sweep(pts, devices=DEVICES, seeds=[0], noise=NoiseConfig.ideal(),
                   matrices={"mine": w})
    assert df.loc[0, "rows"] == 2 and df.loc[0, "tile"] == 3
    assert 1 - df.loc[0, "fidelity"] < 1e-12
    k1 = point_key(pts[0], device=DeviceParams(), noise=NoiseConfig.ideal(), seed=0, batch=64,
                   matrix=w.numpy())
    k2 = point_key(pts[0], device=DeviceParams(), noise=NoiseConfig.ideal(), seed=0, batch=64,
                   matrix=(w * 1.0001).numpy())
    assert df.loc[0, "key"] == k1 != k2
    with pytest.raises(ValueError, match=r"matrix 'mine' has shape \(2, 3\); the point has "
                                         r"n=4, so it must be \(M, 4\)"):
        run_sweep([DesignPoint(n=4, matrix="mine")], devices=DEVICES, matrices={"mine": w})


# --------------------------------------------------------------------------- cache keys
def test_cache_key_is_pinned_and_changes_with_every_input():
    p = DesignPoint(n=8, topology="reck", tile=4, preset="noisy", noise_scale=0.5,
                    phase_noise_std_rad=0.02)
    base = dict(device=_noisy(), noise=NoiseConfig.all(), seed=3, batch=64)
    key = point_key(p, **base)
    # Pinned: the same inputs give this key in every process, session and platform. If you
    # change what a row means, bump SCHEMA_VERSION (and this literal), never silently.
    assert key == "a62b9d9ac624319ee164f9c2259fbfb9"
    assert point_key(DesignPoint(**p.model_dump()), **dict(base, device=_noisy())) == key
    variants = [
        point_key(p.model_copy(update={"n": 9}), **base),
        point_key(p.model_copy(update={"topology": "clements"}), **base),
        point_key(p.model_copy(update={"tile": None}), **base),
        point_key(p.model_copy(update={"preset": "other"}), **base),
        point_key(p.model_copy(update={"noise_scale": 0.5000001}), **base),
        point_key(p.model_copy(update={"phase_noise_std_rad": None}), **base),
        point_key(p, **dict(base, device=scaled_device(_noisy(), noise_scale=1.01))),
        point_key(p, **dict(base, noise=NoiseConfig(phase_noise=True))),
        point_key(p, **dict(base, seed=4)),
        point_key(p, **dict(base, batch=65)),
        point_key(p, **base, matrix=np.eye(8)),
    ]
    assert len({key, *variants}) == len(variants) + 1


# --------------------------------------------------------------------------- resume
class _InterruptAfter:
    """A progress bar that raises KeyboardInterrupt (as Ctrl-C would) after ``k`` rows."""

    def __init__(self, k: int):
        self.k, self.seen = k, 0

    def __call__(self, total: int, initial: int):
        self.total, self.initial = total, initial
        return self

    def update(self, n: int) -> None:
        self.seen += n
        if self.seen >= self.k:
            raise KeyboardInterrupt


def test_interrupted_sweep_resumes_without_recomputing_finished_rows(tmp_path, monkeypatch):
    pts = grid(n=[4, 6], topology=["clements", "reck"], preset=["ideal", "noisy"],
               phase_noise_std_rad=[None, 0.05])
    seeds = [0, 1]
    total = len(pts) * len(seeds)  # 32
    fresh = run_sweep(pts, devices=DEVICES, seeds=seeds)

    calls = []
    real = sw.evaluate_point
    monkeypatch.setattr(sw, "evaluate_point", lambda *a, **k: calls.append(1) or real(*a, **k))
    cache = tmp_path / "cache"
    stop = _InterruptAfter(11)
    with pytest.raises(KeyboardInterrupt):
        run_sweep(pts, devices=DEVICES, seeds=seeds, cache_dir=cache, progress=stop)
    assert len(list(cache.glob("*.json"))) == 11 == len(calls)
    assert not list(cache.glob(".*tmp"))  # no half-written files left behind

    calls.clear()
    bar = _InterruptAfter(10**9)
    resumed = run_sweep(pts, devices=DEVICES, seeds=seeds, cache_dir=cache, progress=bar)
    assert len(calls) == total - 11
    assert resumed.attrs == {"evaluated": total - 11, "cached": 11}
    assert (bar.total, bar.initial, bar.seen) == (total, 11, total - 11)
    pd.testing.assert_frame_equal(resumed, fresh, check_exact=True)

    calls.clear()
    again = run_sweep(pts, devices=DEVICES, seeds=seeds, cache_dir=cache)
    assert calls == [] and again.attrs == {"evaluated": 0, "cached": total}
    pd.testing.assert_frame_equal(again, fresh, check_exact=True)

    # a changed preset value is a different design: recomputed, not served stale
    calls.clear()
    changed = dict(DEVICES, noisy=scaled_device(_noisy(), noise_scale=1.5))
    run_sweep(pts, devices=changed, seeds=seeds, cache_dir=cache)
    assert len(calls) == total // 2  # the "noisy" half
    calls.clear()
    run_sweep(pts, devices=DEVICES, seeds=seeds, cache_dir=cache, resume=False)
    assert len(calls) == total


# --------------------------------------------------------------------------- executors
def test_200_points_on_a_two_worker_dask_cluster_equal_the_in_process_table():
    pts = grid(n=[4, 5, 6, 7, 8], topology=["clements", "reck"], tile=[None, 4],
               preset=["ideal", "noisy"], phase_noise_std_rad=[None, 0.01, 0.02, 0.05, 0.1])
    assert len(pts) == 200
    local = run_sweep(pts, devices=DEVICES, seeds=[11])
    with sw.DaskExecutor(workers=2) as ex:
        assert sorted(ex._client.nthreads().values()) == [1, 1]  # 2 workers, 1 thread each
        dist = run_sweep(pts, devices=DEVICES, seeds=[11], executor=ex)
        assert ex.started  # a started executor stays open for the next sweep
        # the same cluster reached as an existing scheduler, by its address
        by_address = run_sweep(pts[::40], devices=DEVICES, seeds=[11], executor="dask",
                               address=ex._cluster.scheduler_address)
        assert ex.started  # connecting a client by address does not close the cluster
    assert not ex.started and ex._cluster is None  # closed by the with block
    assert dist.attrs == {"evaluated": 200, "cached": 0}
    pd.testing.assert_frame_equal(dist, local, check_exact=True)
    pd.testing.assert_frame_equal(by_address, local.iloc[::40].reset_index(drop=True),
                                  check_exact=True)
    # the table is not trivially equal: noise acted, and every distinct noisy design (tile None
    # and tile = n are one design; so are the noisy preset's own 0.01 rad and None) differs
    design = ["n", "topology", "tile", "preset", "phase_noise_std_rad"]
    noisy = local[(local["preset"] == "noisy") | (local["phase_noise_std_rad"] > 0)]
    assert noisy["fidelity"].nunique() == noisy.groupby(design).ngroups == 144
    assert local["fidelity"].min() < 0.99


def test_process_pool_equals_in_process():
    pts = grid(n=[4, 6], topology=["clements", "reck"], preset="noisy")
    local = run_sweep(pts, devices=DEVICES, seeds=[0, 1])
    # one spawned worker is enough to prove the rows do not depend on the process
    procs = run_sweep(pts, devices=DEVICES, seeds=[0, 1], executor="processes", workers=1,
                      chunk_size=3)
    pd.testing.assert_frame_equal(procs, local, check_exact=True)


def test_bad_inputs_name_the_rule_and_the_choices():
    with pytest.raises(ValidationError, match=r"topology 'clement' is not known; valid "
                                              r"choices: \['clements', 'reck'\]; did you mean "
                                              r"'clements'\?"):
        DesignPoint(n=4, topology="clement")
    with pytest.raises(ValueError, match=r"executor='dask_' is not known; valid choices: "
                                         r"\['dask', 'inprocess', 'processes'\]; did you "
                                         r"mean 'dask'\?"):
        run_sweep(grid(n=4), devices=DEVICES, executor="dask_")
    with pytest.raises(ValueError, match=r"address='tcp://h:8786' is a Dask scheduler "
                                         r"address; it needs executor='dask'"):
        run_sweep(grid(n=4), devices=DEVICES, address="tcp://h:8786")
    with pytest.raises(ValueError, match=r"uses preset 'noisi', which is not in devices "
                                         r"\(given: \['ideal', 'noisy'\]\); did you mean "
                                         r"'noisy'\?"):
        run_sweep(grid(n=4, preset="noisi"), devices=DEVICES)
    with pytest.raises(ValidationError, match="scheduler_address='tcp://h:1' needs executor: "
                                              "dask"):
        sw.Config(presets=["ideal"], scheduler_address="tcp://h:1")


# --------------------------------------------------------------------------- workload + CLI
def test_shipped_config_runs_at_reduced_size_and_resumes(tmp_path):
    from photonic.cli import app

    out = tmp_path / "run"
    args = ["sweep", "sweep_mesh", "--out", str(out), "--quiet",
            "--set", "workload.n=[4, 6]", "--set", "workload.seeds=1",
            "--set", "workload.phase_noise_std_rad=[null, 0.05]"]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    # 2 presets × 2 n × 2 topologies × 2 noise levels = 16 points, × 1 seed
    metrics = json.loads((out / "metrics.json").read_text())
    assert (metrics["points"], metrics["rows"], metrics["evaluated"], metrics["cached"]) == \
        (16, 16, 16, 0)
    table = pd.read_csv(out / "sweep.csv")
    assert list(table.columns) == list(sw.COLUMNS) and len(table) == 16
    assert sorted(table["preset"].unique()) == ["bpfree_pinn_sim", "soi_thermal_harris2014"]
    assert metrics["fidelity_mean"] == pytest.approx(table["fidelity"].mean(), rel=1e-12)
    for name in ("report.md", "summary.csv", "fidelity_vs_n.png",
                 "fidelity_vs_phase_noise.png", "cost_vs_n.png", "config.resolved.yaml"):
        assert (out / name).stat().st_size > 0, name
    assert "![Fidelity vs N](fidelity_vs_n.png)" in (out / "report.md").read_text()
    assert len(pd.read_csv(out / "summary.csv")) == 16

    res = CliRunner().invoke(app, args)  # `sweep` resumes: nothing is recomputed
    assert res.exit_code == 0, res.output
    again = json.loads((out / "metrics.json").read_text())
    assert (again["evaluated"], again["cached"]) == (0, 16)
    pd.testing.assert_frame_equal(pd.read_csv(out / "sweep.csv"), table, check_exact=True)


def test_bad_sweep_config_fails_before_work_with_a_did_you_mean(tmp_path):
    from photonic.cli import app

    res = CliRunner().invoke(app, ["sweep", "sweep_mesh", "--out", str(tmp_path / "x"),
                                   "--set", "workload.topology=[clements, rek]"])
    assert res.exit_code == 2
    assert "workload.topology" in res.output and "did you mean 'reck'?" in res.output
    assert not (tmp_path / "x").exists()


# --------------------------------------------------------------------------- notebook
def test_designer_notebook_executes_at_reduced_size(tmp_path, monkeypatch):
    """notebooks/mesh_size_sweep.ipynb, headless (nbclient), shrunk by PHOTONIC_NB_QUICK."""
    import nbformat
    from nbclient import NotebookClient

    monkeypatch.setenv("PHOTONIC_NB_QUICK", "1")
    monkeypatch.setenv("PHOTONIC_NB_OUT", str(tmp_path))
    nb = nbformat.read(REPO / "notebooks" / "mesh_size_sweep.ipynb", as_version=4)
    NotebookClient(nb, timeout=110, kernel_name="python3",
                   resources={"metadata": {"path": str(REPO / "notebooks")}}).execute()
    images = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
              if "image/png" in o.get("data", {})]
    assert len(images) >= 4
    for name in ("fidelity_vs_n.png", "fidelity_vs_phase_noise.png", "cost_vs_n.png",
                 "mesh_layout.png", "mesh_size_sweep.csv"):
        assert (tmp_path / name).stat().st_size > 0, name
    gds = list(tmp_path.glob("*.gds"))
    assert len(gds) == 1 and gds[0].stat().st_size > 1000
    table = pd.read_csv(tmp_path / "mesh_size_sweep.csv")
    assert len(table) == 2 * 2 * 2 * 2  # N ∈ {4, 8} × 2 topologies × 2 presets × 2 seeds
    # the notebook's claim: lossy MZIs hurt the unbalanced Reck mesh, more at larger N
    mean = table.groupby(["topology", "n"])["fidelity"].mean()
    assert mean["clements", 8] > mean["reck", 8] + 0.02
    assert mean["reck", 8] < mean["reck", 4]
