"""Black–Scholes and 20-D HJB PINNs on the chip: the smooth Black–Scholes ansatz and the
phase-domain configs."""

import math
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from scipy.special import ndtr

import calibration
import photonic
from mlfrontends.pinn.pdes import build_pde
from mlfrontends.pinn.workload import Config, run
from photonic.runio import RunContext

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def _bs_points():
    s = torch.tensor([0.1, 0.3, 0.48, 0.5, 0.52, 0.7, 0.95], dtype=torch.float64)
    t = torch.tensor([0.0, 0.2, 0.5, 0.9, 0.97, 0.6, 0.99], dtype=torch.float64)
    return torch.stack([s, t], 1)


def test_blackscholes_ansatz_jet_matches_finite_differences():
    pde = build_pde("blackscholes")
    z = _bs_points()
    g, _ = pde.ansatz_terms(z)
    h = 1e-5
    for i in range(2):
        e = torch.zeros(2, dtype=torch.float64)
        e[i] = h
        gp, _ = pde.ansatz_terms(z + e)
        gm, _ = pde.ansatz_terms(z - e)
        assert torch.allclose((gp.value - gm.value) / (2 * h), g.grad[:, i], atol=1e-7)
        assert torch.allclose((gp.value + gm.value - 2 * g.value) / h**2, g.hess_diag[:, i],
                              rtol=1e-4, atol=1e-3)


def test_blackscholes_ansatz_is_the_normal_model_call_not_the_reference():
    pde = build_pde("blackscholes")
    grid = pde.evaluation_grid()
    s = grid.points[:, 0]
    k, r, tau = 0.5, 0.05, 1 - grid.points[:, 1]
    sn = 0.2 * k  # normal volatility matched at the strike

    def bachelier(x):  # undiscounted normal-model call, τ > 0
        w = sn * np.sqrt(np.maximum(tau, 1e-300))
        d = (x - k) / w
        live = tau > 0
        return np.where(live, (x - k) * ndtr(d) + w * np.exp(-0.5 * d * d) / math.sqrt(2 * math.pi),
                        np.maximum(x - k, 0))

    with np.errstate(over="ignore", invalid="ignore"):
        expect = (bachelier(s) - (1 - s) * bachelier(0 * s)
                  + s * (1 - k * np.exp(-r * tau) - bachelier(0 * s + 1)))
    g, _ = pde.ansatz_terms(torch.tensor(grid.points))
    assert np.allclose(g.value.numpy(), expect, atol=1e-12)
    err = np.linalg.norm(expect - grid.u_exact) / np.linalg.norm(grid.u_exact)
    assert 0.01 < err < 0.02  # an approximation the network must correct
    # smooth before maturity: the residual of g alone is bounded near the strike, where the
    # pay-off's kink would put a delta that collocation cannot see
    z = torch.tensor([[0.5, 1 - 1e-6], [0.5 + 1e-4, 1 - 1e-6], [0.3, 0.5]], dtype=torch.float64)
    gz, _ = pde.ansatz_terms(z)
    assert pde.residual(z, gz).abs().max() < 0.1


@pytest.mark.parametrize("name", ["pinn_blackscholes", "pinn_hjb"])
def test_configs_train_in_the_phase_domain_with_chip_cost(name, tmp_path):
    raw = yaml.safe_load((CONFIGS / f"{name}.yaml").read_text())
    w = dict(raw["workload"])
    assert w["model"]["execution"] == "phase" and w["optim"]["method"] == "subspace_lm"
    small = {"blackscholes": {"grid_s": 9, "grid_t": 5}, "hjb": {"num_test_points": 50}}
    w.update(iterations=2, collocation_points=2, eval_every=1, checkpoint_every=1,
             pde_params=small[w["pde"]])
    if w["pde"] == "hjb":  # 512-wide layers: shrink, keeping the TT structure
        w["model"] = {**w["model"], "widths": [21, 64, 64, 1],
                      "tt_layers": {0: [[1, 3, 7], [4, 4, 4]], 1: [[4, 4, 4], [4, 4, 4]]}}
    ctx = RunContext(out=tmp_path, show_progress=False,
                     device=calibration.load_preset(raw["chip"]["preset"]),
                     noise=photonic.NoiseConfig.from_spec(raw["chip"]["noise"]))
    m = run(Config(**w), ctx)
    assert m["iterations"] == 2 and math.isfinite(m["rel_l2"])
    c = m["chip"]
    assert c["num_mzis"] > 0 and c["area_um2"] > 0
    assert c["energy_pj_total"] == pytest.approx(2 * c["energy_pj_per_step"])
    assert c["latency_ns_total"] == pytest.approx(2 * c["latency_ns_per_step"])
    # one step runs every parameter set through the network at every stencil point
    assert c["energy_pj_per_step"] > m["parameter_sets_per_step"] * c["energy_pj_per_inference"]
