"""PINN workload: config validation, shipped configs at reduced size, resume, hub layers."""

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from pydantic import ValidationError

import photonic
from mlfrontends.pinn.config import ZOOptim
from mlfrontends.pinn.models import TTLinear
from mlfrontends.pinn.pdes import build_pde
from mlfrontends.pinn.workload import Config, build_network, lr_at, run
from photonic.runio import RunContext

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
SHIPPED = ["pinn_burgers", "pinn_burgers_long", "pinn_burgers_fo", "pinn_blackscholes",
           "pinn_hjb", "pinn_darcy"]
SMALL_GRIDS = {
    "burgers": {"grid_x": 17, "grid_t": 5},
    "blackscholes": {"grid_s": 9, "grid_t": 5},
    "hjb": {"num_test_points": 50},
    "darcy": {"num_cells": 4, "reference_cells": 32, "eval_stride": 4},
}


def _ctx(tmp_path, **kw):
    return RunContext(out=tmp_path, show_progress=False, **kw)


def test_config_errors_name_field_value_and_rule():
    with pytest.raises(ValidationError, match="did you mean 'burgers'"):
        Config(pde="burger")
    with pytest.raises(ValidationError, match="needs back-propagation"):
        Config(estimator={"kind": "autograd"})
    with pytest.raises(ValidationError, match="optim.lr_schedul: unknown key for method "
                       "'zo' .*; did you mean 'lr_schedule'"):
        Config(optim={"lr_schedul": "cosine"})
    with pytest.raises(ValidationError, match="grid_q"):
        Config(pde_params={"grid_q": 1})


def test_lr_schedules_are_pure_functions():
    o = ZOOptim(lr=1e-2, lr_schedule="cosine", lr_final=1e-4, warmup_iters=10)
    assert lr_at(0, o, 110) == pytest.approx(1e-3)
    assert lr_at(10, o, 110) == pytest.approx(1e-2)
    assert lr_at(60, o, 110) == pytest.approx(0.5 * (1e-2 + 1e-4))
    e = ZOOptim(lr=1e-2, lr_schedule="exponential", lr_final=1e-4)
    assert lr_at(50, e, 100) == pytest.approx(1e-3)


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_configs_run_at_reduced_size(name, tmp_path):
    raw = yaml.safe_load((CONFIGS / f"{name}.yaml").read_text())
    w = dict(raw["workload"])
    w.update(iterations=2, collocation_points=2, eval_every=1, checkpoint_every=1,
             pde_params={**w.get("pde_params", {}), **SMALL_GRIDS[w["pde"]]})
    rad = w.get("collocation", {}).get("sampling") == "rad"
    if rad:  # a small scoring pool, refreshed once in the two iterations
        w["collocation"] = {**w["collocation"], "pool": 16, "refresh_every": 50}
    select = w.get("select") == "min_residual"
    if select:  # a small validation set, scored at each of the 3 evaluations
        w["validation_points"] = 8
    finish = w.get("finish") is not None
    if finish:  # one finish step, evaluated
        w["finish"] = {**w["finish"], "iterations": 1, "eval_every": 1}
    if w.get("pretrain") is not None:  # two digital Adam steps on two points
        w["pretrain"] = {**w["pretrain"], "iterations": 2, "collocation_points": 2,
                         "eval_every": 1}
    if w["pde"] == "hjb":  # 512-wide layers: shrink, keeping the TT structure
        w["model"] = {**w["model"], "widths": [21, 64, 64, 1],
                      "tt_layers": {0: [[1, 3, 7], [4, 4, 4]], 1: [[4, 4, 4], [4, 4, 4]]}}
    cfg = Config(**w)
    import calibration

    noise = photonic.NoiseConfig.from_spec(raw["chip"]["noise"])
    metrics = run(cfg, _ctx(tmp_path, device=calibration.load_preset(raw["chip"]["preset"]),
                            noise=noise))
    assert metrics["iterations"] == 2 + finish and math.isfinite(metrics["rel_l2"])
    for f in ("report.md", "curves.png", "prediction.npz", "checkpoint.pt"):
        assert (tmp_path / f).exists()
    pred = np.load(tmp_path / "prediction.npz")
    assert pred["u_pred"].shape == pred["u_exact"].shape
    rel = np.linalg.norm(pred["u_pred"] - pred["u_exact"]) / np.linalg.norm(pred["u_exact"])
    assert rel == pytest.approx(metrics["rel_l2"])
    sets = metrics["parameter_sets_per_step_mean"] * 2  # 2 iterations
    assert sets == int(sets) and metrics["parameter_sets_per_step"] >= sets / 2
    causal = w.get("causal") is not None  # one unperturbed pass over the 2 points per step
    scoring = (16 if rad else 0) + (3 * 8 if select else 0) + (2 * 2 if causal else 0)
    if finish:  # its sets and its causal pass over the 2 points (a finish selects the last)
        f = metrics["finish"]
        assert f["iterations"] == 1 and f["parameter_sets_per_step_mean"] >= 2 * f["params"]
        scoring += int(f["parameter_sets_per_step_mean"]) * 2 + 2 * causal
    assert metrics["forward_evals"] == (int(sets) * 2 + scoring) * metrics["evals_per_point"]


class _KilledAfter(RunContext):
    """A run killed right after its n-th checkpoint write (as by Ctrl-C or SIGKILL), or
    (``stop_after``) whose user asks it to stop from its n-th write on."""

    def __init__(self, *args, kill_after: int = 0, stop_after: int = 0, **kw):
        super().__init__(*args, **kw)
        self.kill_after, self.stop_after, self.writes = kill_after, stop_after, 0

    def save_checkpoint(self, state, name="checkpoint.pt"):
        path = super().save_checkpoint(state, name)
        self.writes += 1
        if self.writes == self.kill_after:
            raise KeyboardInterrupt
        self.stop_requested = 0 < self.stop_after <= self.writes
        return path


@pytest.mark.parametrize("sampling,method,extra", [
    ("uniform", "zo", {}), ("rad", "zo", {}), ("rad", "subspace_lm", {"lm_tries": 2})])
def test_resume_gives_identical_metrics(tmp_path, sampling, method, extra):
    cfg = Config(iterations=6, collocation_points=4, eval_every=2, checkpoint_every=1,
                 pde_params=SMALL_GRIDS["burgers"],
                 optim={"lr": 1e-2, "lr_schedule": "cosine", "method": method, **extra},
                 collocation={"sampling": sampling, "pool": 16, "refresh_every": 2})
    full = run(cfg, _ctx(tmp_path / "full"))
    with pytest.raises(KeyboardInterrupt):
        run(cfg, _KilledAfter(tmp_path / "cut", show_progress=False, kill_after=3))
    resumed = run(cfg, _ctx(tmp_path / "cut", resume=True))
    for key in ("rel_l2", "rel_l2_best", "iterations", "forward_evals", "params", "final_loss"):
        assert resumed[key] == full[key], key
    a = np.load(tmp_path / "full" / "prediction.npz")["u_pred"]
    b = np.load(tmp_path / "cut" / "prediction.npz")["u_pred"]
    assert np.array_equal(a, b)


def test_select_min_residual_delivers_the_lowest_validation_residual(tmp_path):
    """select = min_residual: the delivered parameters are those of the evaluation with the
    lowest validation residual, so the delivered error is the test error logged at that
    iteration; the validation forwards are counted; a killed and resumed run agrees."""
    kw = dict(iterations=12, collocation_points=4, eval_every=2, checkpoint_every=1,
              pde_params=SMALL_GRIDS["burgers"], optim={"lr": 3e-2, "method": "zo"})
    plain = run(Config(**kw), _ctx(tmp_path / "plain"))
    cfg = Config(select="min_residual", validation_points=64, **kw)
    m = run(cfg, _ctx(tmp_path / "sel"))
    state = torch.load(tmp_path / "sel" / "checkpoint.pt", weights_only=False)["state"]
    logged = {it: err for it, _, _, err in state["evals"]}
    assert m["selected_iteration"] == state["selected"]["iteration"]
    val = dict(state["validation"])  # every evaluation's validation loss, logged
    assert sorted(val) == sorted(logged) and len(val) == 7
    assert min(val, key=val.get) == m["selected_iteration"]
    assert val[m["selected_iteration"]] == m["selected_validation_loss"]
    assert m["rel_l2"] == pytest.approx(logged[m["selected_iteration"]], rel=1e-12)
    assert m["rel_l2_last"] == pytest.approx(plain["rel_l2"], rel=1e-12)  # same trajectory
    assert m["forward_evals"] - plain["forward_evals"] == 7 * 64 * m["evals_per_point"]
    assert "lowest mean squared PDE residual" in (tmp_path / "sel" / "report.md").read_text()
    with pytest.raises(KeyboardInterrupt):
        run(cfg, _KilledAfter(tmp_path / "cut", show_progress=False, kill_after=5))
    resumed = run(cfg, _ctx(tmp_path / "cut", resume=True))
    for key in ("rel_l2", "rel_l2_last", "selected_iteration", "forward_evals"):
        assert resumed[key] == m[key], key


def test_rad_sampling_follows_the_residual_density():
    """RAD draws ∝ |r|/mean|r| + 1: a residual of 10 on 10 % of the domain (0 elsewhere)
    gives density 11 there vs 1 outside, i.e. 1.1 / 2.0 = 55 % of the points (uniform: 10 %);
    the pool is scored once per refresh and its cost reported."""
    from mlfrontends.pinn.pdes import build_pde
    from mlfrontends.pinn.sampling import Collocation

    cfg = Config(collocation_points=400, collocation={"sampling": "rad", "pool": 8000,
                                                      "refresh_every": 3})
    pde = build_pde("burgers", SMALL_GRIDS["burgers"])
    s = Collocation(cfg.collocation, cfg.collocation_points, pde,
                    torch.Generator().manual_seed(0), torch.float64)
    calls = []

    def residual(z):
        calls.append(len(z))
        return 10.0 * (z[:, 0].abs() < 0.1).double()

    fracs, spent = [], []
    for it in range(4):
        z, cost = s.draw(it, residual)
        assert z.shape == (400, 2) and len(torch.unique(z, dim=0)) == 400
        fracs.append(float((z[:, 0].abs() < 0.1).double().mean()))
        spent.append(cost)
    assert spent == [8000, 0, 0, 8000] and calls == [8000, 8000]
    assert 0.48 < np.mean(fracs) < 0.62
    with pytest.raises(ValidationError, match="collocation.pool"):
        Config(collocation_points=100, collocation={"sampling": "rad", "pool": 50})


def test_tt_only_chip_keeps_dense_layers_electronic(tmp_path):
    from mlfrontends.pinn.models import DenseLinear

    with pytest.raises(ValidationError, match="needs an electronic read-out"):
        Config(model={"execution": "phase"}, optim={"local_readout": True})
    cfg = Config(iterations=2, collocation_points=3, pde_params=SMALL_GRIDS["burgers"],
                 model={"execution": "phase", "chip_layers": "tt"},
                 optim={"local_readout": True, "mu": 0.025})
    ctx = _ctx(tmp_path, noise=photonic.NoiseConfig.ideal())
    net = build_network(cfg, ctx)
    kinds = [type(layer).__name__ for layer in net.layers]
    assert kinds == ["DenseLinear", "TTPhotonicLinear", "TTPhotonicLinear",
                     "TTPhotonicLinear", "DenseLinear"]
    assert isinstance(net.layers[0], DenseLinear)
    m = run(cfg, ctx)
    # ZO over every tensor but the read-out's two (±), plus one local forward
    tensors = len(list(net.parameters())) - 2
    assert m["parameter_sets_per_step"] == 2 * tensors + 1
    assert m["chip"]["electronic_macs_per_evaluation"] == 2 * 100 + 100 * 1


def test_all_but_readout_chip_and_readout_block_size(tmp_path):
    """The published TONN's split: input and TT layers on meshes, the read-out electronic;
    subspace_lm then gives each read-out weight its own direction (readout_block_size 1)."""
    with pytest.raises(ValidationError, match="readout_block_size needs an electronic"):
        Config(model={"execution": "phase"},
               optim={"method": "subspace_lm", "readout_block_size": 1})
    with pytest.raises(ValidationError, match="readout_block_size is for method"):
        Config(optim={"method": "zo", "readout_block_size": 1})
    cfg = Config(iterations=2, collocation_points=3, pde_params=SMALL_GRIDS["burgers"],
                 model={"execution": "phase", "chip_layers": "all_but_readout"},
                 optim={"method": "subspace_lm", "mu": 0.025, "block_size": 10**6,
                        "readout_block_size": 1, "lm_tries": 1})
    ctx = _ctx(tmp_path, noise=photonic.NoiseConfig.ideal())
    net = build_network(cfg, ctx)
    assert [type(layer).__name__ for layer in net.layers] == [
        "PhotonicLinear", "TTPhotonicLinear", "TTPhotonicLinear", "TTPhotonicLinear",
        "DenseLinear"]
    m = run(cfg, ctx)
    # one direction per tensor but the read-out's 100 weights and 1 bias: ± each, the
    # centre and one candidate per step
    tensors = len(list(net.parameters())) - 2
    assert m["parameter_sets_per_step"] == 2 * (tensors + 101) + 2
    assert m["chip"]["electronic_macs_per_evaluation"] == 100 * 1
    assert "every layer but the read-out" in (tmp_path / "report.md").read_text()


def test_causal_weights_follow_the_slab_losses_before_each_slab():
    """w_i = exp(−ε Σ_{j<i} L_j) per time slab, counted from t = 0 for Burgers and from
    t = T for Black–Scholes (terminal condition); residuals scale by √w."""
    from mlfrontends.pinn.config import CausalConfig
    from mlfrontends.pinn.sampling import causal_weights

    c = CausalConfig(eps=0.5, bins=4)
    z = torch.tensor([[0.0, 0.1], [0.0, 0.3], [0.0, 0.6], [0.0, 0.9], [0.5, 0.95]])
    r = torch.tensor([1.0, 2.0, 3.0, 4.0, 0.0])  # slab losses 1, 4, 9, (16 + 0)/2 = 8
    w = causal_weights(build_pde("burgers", SMALL_GRIDS["burgers"]), z, r, c) ** 2
    expect = torch.exp(-0.5 * torch.tensor([0.0, 1.0, 5.0, 14.0, 14.0], dtype=torch.float64))
    assert torch.allclose(w, expect, rtol=1e-12)
    w = causal_weights(build_pde("blackscholes", SMALL_GRIDS["blackscholes"]), z, r, c) ** 2
    expect = torch.exp(-0.5 * torch.tensor([21.0, 17.0, 8.0, 0.0, 0.0], dtype=torch.float64))
    assert torch.allclose(w, expect, rtol=1e-12)
    with pytest.raises(ValidationError, match="causal: pde 'darcy' has no time axis"):
        Config(pde="darcy", causal={"eps": 1.0})


def test_clamp_phases_keeps_trained_phases_in_one_turn(tmp_path):
    import math

    with pytest.raises(ValidationError, match="clamp_phases is for method subspace_lm"):
        Config(model={"execution": "phase"}, optim={"method": "zo", "clamp_phases": True})
    with pytest.raises(ValidationError, match="clamp_phases is for model.execution 'phase'"):
        Config(optim={"method": "subspace_lm", "clamp_phases": True})
    cfg = Config(iterations=4, collocation_points=3, pde_params=SMALL_GRIDS["burgers"],
                 model={"execution": "phase", "widths": [2, 8, 1], "tt_layers": {}},
                 optim={"method": "subspace_lm", "mu": 0.5, "lr": 3.0, "damping": 1e-9,
                        "clamp_phases": True})
    ctx = _ctx(tmp_path, noise=photonic.NoiseConfig.ideal())
    start = torch.cat([p.detach().reshape(-1) for k, p in
                       build_network(cfg, ctx).named_parameters() if k.endswith("phases")])
    run(cfg, ctx)
    model = torch.load(tmp_path / "checkpoint.pt", weights_only=False)["model"]
    phases = torch.cat([v.reshape(-1) for k, v in model.items() if k.endswith("phases")])
    assert float(phases.min()) >= 0.0 and float(phases.max()) < 2 * math.pi
    moved = torch.remainder(phases - start + math.pi, 2 * math.pi) - math.pi  # mod 2π: the
    assert float(moved.abs().max()) > 0.5  # 2π → 0 start fix-up is no move; the steps are
    # without the clamp the same large steps leave the turn
    run(cfg.model_copy(update={"optim": cfg.optim.model_copy(update={"clamp_phases": False})}),
        _ctx(tmp_path / "free", noise=photonic.NoiseConfig.ideal()))
    model = torch.load(tmp_path / "free" / "checkpoint.pt", weights_only=False)["model"]
    phases = torch.cat([v.reshape(-1) for k, v in model.items() if k.endswith("phases")])
    assert float(phases.min()) < 0.0 or float(phases.max()) >= 2 * math.pi


def test_first_order_reference_learns(tmp_path):
    cfg = Config(iterations=40, collocation_points=64, eval_every=40,
                 pde_params=SMALL_GRIDS["burgers"], estimator={"kind": "autograd"},
                 optim={"method": "first_order", "lr": 3e-3},
                 model={"widths": [2, 20, 20, 1], "tt_layers": {}})
    m = run(cfg, _ctx(tmp_path))
    state = torch.load(tmp_path / "checkpoint.pt", weights_only=False)["state"]
    assert state["history"][-1][1] < 0.5 * state["history"][0][1]
    assert m["rel_l2"] < 0.9 * state["evals"][0][3]


def test_photonic_layers_match_digital_tt(tmp_path):
    """The hub's TTPhotonicLinear in digital mode, built from our cores, is our layer."""
    ours = TTLinear([4, 5, 5], [5, 5, 4], generator=torch.Generator().manual_seed(0))
    hub = photonic.TTPhotonicLinear([4, 5, 5], [5, 5, 4], 2, mode="digital",
                                    cores=[c.detach() for c in ours.cores])
    hub.bias.data.copy_(ours.bias.detach())
    x = torch.randn(6, 100, dtype=torch.float64)
    assert torch.allclose(hub(x), ours(x), atol=1e-13)
    cfg = Config(model={"execution": "weight"}, pde_params=SMALL_GRIDS["burgers"])
    chip = build_network(cfg, _ctx(tmp_path))
    digital = build_network(Config(pde_params=SMALL_GRIDS["burgers"]), _ctx(tmp_path))
    z = torch.rand(5, 2, dtype=torch.float64)
    # Ideal chip (default NoiseConfig): the weight-domain network equals the digital one.
    assert torch.allclose(chip(z), digital(z), atol=1e-10)


@pytest.mark.parametrize("mode", ["phase", "weight"])
def test_fast_chip_path_equals_full_optical_chain(mode, tmp_path):
    """With static non-idealities only, GEMMs with the realised matrices (rebuilt through the
    hub for every perturbed parameter set) reproduce the hub's optical chain exactly."""
    from torch.func import functional_call

    import calibration
    from mlfrontends.zo import ParamLayout

    noise = photonic.NoiseConfig(phase_quantization=True, gamma_error=True, crosstalk=True)
    ctx = _ctx(tmp_path, device=calibration.load_preset("bpfree_pinn_sim"), noise=noise)
    net = build_network(Config(model={"execution": mode, "widths": [2, 20, 20, 1],
                                      "tt_layers": {1: [[4, 5], [5, 4]]}},
                               pde_params=SMALL_GRIDS["burgers"]), ctx)
    assert net.fast
    layout = ParamLayout(net)
    g = torch.Generator().manual_seed(0)
    flat = layout.flatten() + 0.02 * torch.randn(3, layout.dim, generator=g,
                                                 dtype=torch.float64)
    x = torch.rand(9, 2, dtype=torch.float64, generator=g)
    with torch.no_grad():
        fast = functional_call(net, layout.unflatten(flat), (x,))
        net.fast = False
        full = functional_call(net, layout.unflatten(flat), (x,))
    assert fast.shape == (3, 9, 1)
    assert torch.allclose(fast, full, atol=1e-12)
    assert (fast[0] - fast[1]).abs().max() > 1e-4  # the perturbed meshes differ


def test_metrics_json_keys_via_cli(tmp_path):
    from typer.testing import CliRunner

    from photonic.cli import app

    res = CliRunner().invoke(app, [
        "run", "pinn_burgers", "--quiet", "--out", str(tmp_path),
        "--set", "workload.iterations=1", "--set", "workload.collocation_points=2",
        "--set", "workload.pde_params={grid_x: 9, grid_t: 3}",
        "--set", "workload.model.execution=digital",
        "--set", "workload.optim.clamp_phases=false",  # a digital net has no phases
        "--set", "workload.finish=null",  # (nor an electronic finish)
        "--set", "workload.pretrain=null",  # (nor a pre-training to program onto meshes)
    ])
    assert res.exit_code == 0, res.output
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    for key in ("rel_l2", "iterations", "forward_evals", "wall_s", "params"):
        assert key in metrics
    bad = CliRunner().invoke(app, ["run", "pinn_burgers", "--set", "workload.pde=burger"])
    assert bad.exit_code == 2


def test_dac_realise_puts_phases_on_the_dac_grid_and_leaves_gains(tmp_path):
    """The subspace_lm directions use what the chip sets: phases on the 8-bit DAC grid
    of the preset (within ±π of the programmed value), gains and biases as
    programmed; without phase quantisation there is nothing to realise."""
    import calibration
    from mlfrontends.pinn.network import dac_realise
    from mlfrontends.zo import ParamLayout
    from photonic.noise import dac_code_phase, phase_dac_code

    cfg = Config(model={"execution": "phase", "widths": [2, 8, 1], "tt_layers": {}})
    device = calibration.load_preset("bpfree_pinn_sim")
    ctx = _ctx(tmp_path, device=device,
               noise=photonic.NoiseConfig.from_spec({"phase_quantization": True}))
    net = build_network(cfg, ctx)
    layout = ParamLayout(net)
    realise = dac_realise(net, layout, ctx)
    flat = layout.flatten()[None] + 0.3 * torch.randn(3, layout.dim, dtype=torch.float64,
                                                      generator=torch.Generator().manual_seed(0))
    out = realise(flat)
    is_phase = torch.zeros(layout.dim, dtype=torch.bool)
    for name, sl in zip(layout.names, layout.slices, strict=True):
        is_phase[sl] = name.endswith("phases")
    assert torch.equal(out[:, ~is_phase], flat[:, ~is_phase])
    moved = out[:, is_phase] - flat[:, is_phase]
    assert moved.abs().max() <= math.pi and moved.abs().max() < 0.05  # ≤ half an LSB
    bits, sh, grid = device.phase_dac.bits, device.shifter, device.phase_dac.grid
    q = photonic.quantize_phase(flat[:, is_phase], sh, bits, grid)  # the hub's DAC model
    assert torch.allclose(dac_code_phase(phase_dac_code(q, sh, bits, grid), sh, bits, grid),
                          q, rtol=0, atol=1e-12)  # on the grid
    same = torch.remainder(out[:, is_phase] - q + 1, 2 * math.pi) - 1  # out ≡ q (mod 2π)
    assert same.abs().max() < 1e-12
    assert dac_realise(net, layout, _ctx(tmp_path, noise=photonic.NoiseConfig.ideal())) is None


def test_finish_tunes_only_the_electronic_parameters_and_resumes(tmp_path):
    """workload.finish: after the phase stage the phases stay exactly where the phase stage
    left them (the same run without a finish ends there), the gains and biases move, each
    finish step costs 2·#electronic + 1 sets plus its candidates, and a run killed in the
    finish resumes to the same metrics."""
    with pytest.raises(ValidationError, match="finish is for forward-only training in the "
                       "phase domain"):
        Config(finish={"iterations": 2})
    with pytest.raises(ValidationError, match="select = 'min_residual' with a finish"):
        Config(model={"execution": "phase"}, optim={"method": "subspace_lm"},
               finish={"iterations": 2}, select="min_residual")
    base = dict(iterations=3, collocation_points=3, pde_params=SMALL_GRIDS["burgers"],
                eval_every=1, checkpoint_every=1,
                model={"execution": "phase", "widths": [2, 8, 1], "tt_layers": {}},
                optim={"method": "subspace_lm", "mu": 0.05, "lr": 0.2, "clamp_phases": True},
                collocation={"sampling": "rad", "pool": 16, "refresh_every": 2})
    fin = {"iterations": 4, "eval_every": 2, "lr": 0.05, "lr_final": 0.01}
    plain = run(Config(**base), _ctx(tmp_path / "plain"))
    full = run(Config(**base, finish=fin), _ctx(tmp_path / "full"))
    a = torch.load(tmp_path / "plain" / "checkpoint.pt", weights_only=False)["model"]
    b = torch.load(tmp_path / "full" / "checkpoint.pt", weights_only=False)["model"]
    phases = [k for k in a if k.endswith("phases")]
    electronic = [k for k in a if k.endswith(("gain", "bias"))]
    assert phases and electronic
    assert all(torch.equal(a[k], b[k]) for k in phases)
    assert all(not torch.equal(a[k], b[k]) for k in electronic)
    n = sum(a[k].numel() for k in electronic)
    f = full["finish"]
    assert (f["iterations"], f["start_iteration"], full["iterations"]) == (4, 3, 7)
    assert f["params"] == n and f["rel_l2_start"] == plain["rel_l2"]
    assert 2 * n + 2 <= f["parameter_sets_per_step_mean"] <= 2 * n + 1 + 4
    # exactly the finish's sets on 3 points each, plus two RAD rescorings of the 16-point
    # pool (finish iterations 4 and 6), at 13 stencil evaluations per point
    sets = round(f["parameter_sets_per_step_mean"] * 4)
    assert full["forward_evals"] == plain["forward_evals"] + (sets * 3 + 2 * 16) * 13
    with pytest.raises(KeyboardInterrupt):  # killed after the finish's first checkpoint
        run(Config(**base, finish=fin),
            _KilledAfter(tmp_path / "cut", show_progress=False, kill_after=4))
    resumed = run(Config(**base, finish=fin), _ctx(tmp_path / "cut", resume=True))
    for key in ("rel_l2", "iterations", "forward_evals", "final_loss"):
        assert resumed[key] == full[key], key
    assert resumed["finish"]["iterations"] == 4


RETIRED = [
    ({"symmetric": True}, "workload.symmetric was removed"),
    ({"optim": {"method": "subspace_lm", "fresh_check": True}},
     "workload.optim.fresh_check was removed"),
    ({"optim": {"method": "subspace_lm", "on_grid": True}}, "workload.optim.on_grid was removed"),
    ({"optim": {"method": "subspace_lm", "direction_density": 0.25}},
     "workload.optim.direction_density was removed"),
    ({"optim": {"method": "subspace_lm", "memory": 2}}, "workload.optim.memory was removed"),
    ({"optim": {"average": 0.99}}, "workload.optim.average was removed"),
    ({"optim": {"method": "subspace_lm", "two_sided": False}},
     "workload.optim.two_sided was removed"),
    ({"causal": {"unbiased": True}}, "workload.causal.unbiased was removed"),
    ({"causal": {"eps_final": 0.0}}, "workload.causal.eps_final was removed"),
    ({"causal": {"min_weight": 0.1}}, "workload.causal.min_weight was removed"),
    ({"model": {"execution": "phase"}, "optim": {"method": "subspace_lm"},
      "finish": {"iterations": 2, "two_sided": False}}, "workload.finish.two_sided was removed"),
]


@pytest.mark.parametrize("fields,message", RETIRED)
def test_removed_options_are_refused_with_the_reason(fields, message):
    with pytest.raises(ValidationError, match=message + ": .* did not lower the error|"
                       + message + ": .*(stalled|raised|ruined)"):
        Config(**fields)


def test_optimiser_config_is_one_type_per_method():
    from mlfrontends.pinn.config import FirstOrderOptim, SubspaceLMOptim

    assert type(Config().optim) is ZOOptim
    assert type(Config(optim={"method": "subspace_lm"}).optim) is SubspaceLMOptim
    assert type(Config(estimator={"kind": "autograd"},
                       optim={"method": "first_order"}).optim) is FirstOrderOptim
    with pytest.raises(ValidationError, match="did you mean 'subspace_lm'"):
        Config(optim={"method": "subspace"})
    with pytest.raises(ValidationError, match="optim.damping is for method subspace_lm, "
                       "not 'zo'"):
        Config(optim={"damping": 1e-2})


def test_stop_request_checkpoints_then_resume_gives_identical_metrics(tmp_path):
    """ctx.stop_requested set after iteration 3: the loop saves at the next iteration
    boundary and raises Interrupted naming it; the resumed run ends where an uninterrupted
    one does. torch's thread count is restored after the raise and after the return."""
    from photonic.runio import Interrupted

    cfg = Config(iterations=6, collocation_points=4, eval_every=2, checkpoint_every=1,
                 threads=1, pde_params=SMALL_GRIDS["burgers"],
                 model={"widths": [2, 16, 16, 1], "tt_layers": {}},
                 optim={"method": "subspace_lm", "lr": 1e-2, "lm_tries": 2},
                 collocation={"sampling": "rad", "pool": 16, "refresh_every": 2})
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        full = run(cfg, _ctx(tmp_path / "full"))
        assert torch.get_num_threads() == 2
        ctx = _KilledAfter(tmp_path / "cut", show_progress=False, stop_after=3)
        with pytest.raises(Interrupted, match="iteration 3"):
            run(cfg, ctx)
        assert torch.get_num_threads() == 2 and ctx.writes == 4  # 3 + the one on stopping
    finally:
        torch.set_num_threads(threads)
    saved = torch.load(tmp_path / "cut" / "checkpoint.pt", weights_only=False)["state"]
    assert saved["iteration"] == 3 and len(saved["history"]) == 3
    resumed = run(cfg, _ctx(tmp_path / "cut", resume=True))
    for key in ("rel_l2", "rel_l2_best", "iterations", "forward_evals", "final_loss"):
        assert resumed[key] == full[key], key


# the purely BP-free Burgers recipe as overrides of the shipped pinn_burgers (the Results
# page's "BP-free end to end" row): a random start, a 4,000-iteration phase stage with the
# trust radius from 0.1 and causal weights, then the electronic finish
BPFREE_BURGERS = {"pretrain": None, "iterations": 4000, "time_limit_s": 650,
                  "optim": {**yaml.safe_load((CONFIGS / "pinn_burgers.yaml").read_text())[
                      "workload"]["optim"], "lr": 0.1},
                  "causal": {"eps": 1.0, "bins": 16}}


def _burgers_20_2(tmp_path, name, stop_after=None):
    """The purely BP-free pinn_burgers recipe, 20 phase iterations and 2 finish steps, resuming in
    tmp_path / name from tests/data/pinn_burgers_it10_checkpoint.pt (iteration 10)."""
    import calibration

    raw = yaml.safe_load((CONFIGS / "pinn_burgers.yaml").read_text())
    w = {**raw["workload"], **BPFREE_BURGERS}
    cfg = Config(**{**w, "iterations": 20, "checkpoint_every": 1,
                    "finish": {**w["finish"], "iterations": 2}})
    out = tmp_path / name
    out.mkdir()
    (out / "checkpoint.pt").write_bytes(
        (Path(__file__).resolve().parents[1] / "data" / "pinn_burgers_it10_checkpoint.pt")
        .read_bytes())
    kw = dict(resume=True, show_progress=False,
              device=calibration.load_preset(raw["chip"]["preset"]),
              noise=photonic.NoiseConfig.from_spec(raw["chip"]["noise"]))
    ctx = RunContext(out, **kw) if stop_after is None else _KilledAfter(
        out, stop_after=stop_after, **kw)
    return cfg, ctx


def test_a_shipped_checkpoint_with_the_full_option_set_resumes_to_the_same_numbers(tmp_path):
    """tests/data/pinn_burgers_it10_checkpoint.pt: the purely BP-free Burgers recipe
    (BPFREE_BURGERS) with 20 phase iterations and 2 finish steps at iteration 10, in the layout
    that keeps an Adam state for subspace_lm and every removed option at its off value in
    its config. Resumed for two more steps (then stopped), it logs the losses and forward
    evaluations of that run's iterations 11 and 12 (printed there to 16 digits)."""
    from photonic.runio import Interrupted

    cfg, ctx = _burgers_20_2(tmp_path, "ok", stop_after=2)
    with pytest.raises(Interrupted, match="iteration 12"):
        run(cfg, ctx)
    state = torch.load(ctx.path("checkpoint.pt"), weights_only=False)["state"]
    assert [h[0] for h in state["history"][10:]] == [11, 12]
    # to 1e-3: numpy / scipy builds within constraints.txt differ in the last bits, which the
    # LM steps amplify to ~1e-4 by iteration 12; a wrong restore moves the loss by far more
    assert [h[1] for h in state["history"][10:]] == pytest.approx(
        [0.11897172483782076, 0.09605108441518423], rel=1e-3)
    assert [h[2] for h in state["history"][10:]] == [1773824, 1928576]


def test_a_checkpoint_that_used_a_removed_option_is_refused(tmp_path):
    cfg, ctx = _burgers_20_2(tmp_path, "memory")
    ck = torch.load(ctx.path("checkpoint.pt"), weights_only=False)
    ck["config"]["optim"]["memory"] = 2
    ctx.save_checkpoint(ck)
    with pytest.raises(ValueError, match=r"written with workload.optim.memory = 2, which was "
                       "removed"):
        run(cfg, ctx)


def test_error_map_is_centred_at_zero_and_every_panel_is_labelled(tmp_path):
    from mlfrontends.pinn.report import _solution_figure

    class _Capture(RunContext):
        figs: dict = {}

        def savefig(self, fig, name, dpi=120):
            self.figs[name] = fig
            return super().savefig(fig, name, dpi)

    pde = build_pde("burgers", SMALL_GRIDS["burgers"])
    u = pde.evaluation_grid().u_exact + 0.3  # the error is +0.3 everywhere
    ctx = _Capture(tmp_path, show_progress=False)
    assert _solution_figure(ctx, pde, u) == "heatmaps.png"
    fig = ctx.figs["heatmaps.png"]
    panels = [a for a in fig.axes if a.get_title()]
    assert [a.get_title() for a in panels] == ["prediction", "reference", "error"]
    assert all(a.get_xlabel() == "t (dimensionless)" and a.get_ylabel() == "x (dimensionless)"
               for a in panels)
    norm = panels[2].collections[0].norm
    assert (norm.vmin, norm.vmax) == pytest.approx((-0.3, 0.3))  # white is zero error
    bars = [a for a in fig.axes if not a.get_title()]
    assert [b.get_ylabel() for b in bars] == ["u (dimensionless)", "u (dimensionless)",
                                              "u_pred − u_exact (dimensionless)"]
