"""PDE registry: exact references against published values, residuals, hard constraints."""

import math

import numpy as np
import pytest
import torch

from mlfrontends.pinn.jet import Jet
from mlfrontends.pinn.pdes import (
    PDE_REGISTRY,
    black_scholes_call,
    build_pde,
    burgers_exact,
    darcy_coefficient_cells,
    solve_darcy_fv,
)


def test_registry_names_and_did_you_mean():
    assert set(PDE_REGISTRY) == {"burgers", "blackscholes", "hjb", "darcy"}
    with pytest.raises(ValueError, match=r"unknown PDE 'burger'; did you mean 'burgers'\?"):
        build_pde("burger")
    with pytest.raises(Exception, match="grid_q"):
        build_pde("burgers", {"grid_q": 3})


def test_burgers_exact_published_values():
    # Raissi et al. 2019 / Basdevant et al. 1986 reference: u(−0.5, 0.5) ≈ 0.5928 (4 digits).
    assert abs(burgers_exact(-0.5, 0.5) - 0.5928) < 1e-4
    # Basdevant et al. (1986), Table: max |u_x| = 152.00516 at x = 0, t = 1.6037/π.
    t, h = 1.6037 / math.pi, 1e-6
    slope = (burgers_exact(h, t) - burgers_exact(-h, t)) / (2 * h)
    assert abs(slope + 152.00516) < 1e-4
    # Initial condition and oddness in x.
    x = np.linspace(-1, 1, 9)
    assert np.allclose(burgers_exact(x, 0.0), -np.sin(np.pi * x), atol=1e-14)
    assert np.allclose(burgers_exact(x, 0.7), -burgers_exact(-x, 0.7), atol=1e-12)


def test_burgers_quadrature_converged():
    x = np.linspace(-1, 1, 41)[:, None]
    t = np.linspace(0, 1, 11)[None, :]
    diff = burgers_exact(x, t, num_nodes=200) - burgers_exact(x, t, num_nodes=800)
    assert np.abs(diff).max() < 1e-12


def test_burgers_exact_satisfies_pde():
    pde = build_pde("burgers")
    x, t, h = np.array([-0.7, -0.3, 0.2, 0.6]), np.array([0.3, 0.5, 0.8, 0.95]), 1e-4
    u = burgers_exact(x, t)
    ux = (burgers_exact(x + h, t) - burgers_exact(x - h, t)) / (2 * h)
    uxx = (burgers_exact(x + h, t) - 2 * u + burgers_exact(x - h, t)) / h**2
    ut = (burgers_exact(x, t + h) - burgers_exact(x, t - h)) / (2 * h)
    jet = Jet(torch.tensor(u), torch.tensor(np.stack([ux, ut], 1)),
              torch.tensor(np.stack([uxx, 0 * u], 1)))
    res = pde.residual(torch.tensor(np.stack([x, t], 1)), jet)
    assert res.abs().max() < 1e-5
    # A wrong viscosity leaves a residual of order ν·u_xx.
    wrong = build_pde("burgers", {"nu": 0.02 / math.pi})
    assert wrong.residual(torch.tensor(np.stack([x, t], 1)), jet).abs().max() > 1e-3


def test_black_scholes_closed_form():
    # Hull, Options, Futures and Other Derivatives: S = K = 100, r = 5 %, σ = 20 %, T = 1.
    assert abs(black_scholes_call(100.0, 1.0, strike=100, rate=0.05, vol=0.2)[0] - 10.4506) < 1e-4
    pde = build_pde("blackscholes")
    s, t, h = np.array([0.3, 0.5, 0.7]), np.array([0.2, 0.5, 0.9]), 1e-4

    def v(s_, t_):
        return black_scholes_call(200 * s_, 1 - t_, strike=100, rate=0.05, vol=0.2) / 200

    u = v(s, t)
    jet = Jet(
        torch.tensor(u),
        torch.tensor(np.stack([(v(s + h, t) - v(s - h, t)) / (2 * h),
                               (v(s, t + h) - v(s, t - h)) / (2 * h)], 1)),
        torch.tensor(np.stack([(v(s + h, t) - 2 * u + v(s - h, t)) / h**2, 0 * u], 1)),
    )
    assert pde.residual(torch.tensor(np.stack([s, t], 1)), jet).abs().max() < 1e-6


@pytest.mark.parametrize("name", ["burgers", "blackscholes", "hjb", "darcy"])
def test_hard_constraints_hold_for_any_network(name):
    pde = build_pde(name, {"num_cells": 4, "reference_cells": 16} if name == "darcy" else None)
    g = torch.Generator().manual_seed(0)
    z = pde.sample(64, g)
    lo, hi = torch.tensor(pde.bounds[:, 0]), torch.tensor(pde.bounds[:, 1])
    nn = torch.randn(64, generator=g)
    if name == "burgers":
        z[:16, 1] = 0.0
        z[16:32, 0] = torch.where(torch.arange(16) % 2 == 0, -1.0, 1.0).double()
        u = pde.constrain_value(z, nn)
        assert torch.allclose(u[:16], -torch.sin(math.pi * z[:16, 0]), atol=1e-14)
        assert u[16:32].abs().max() < 1e-14
    elif name == "blackscholes":
        z[:16, 1], z[16:24, 0], z[24:32, 0] = 1.0, 0.0, 1.0
        u = pde.constrain_value(z, nn)
        assert torch.allclose(u[:16], torch.clamp(z[:16, 0] - 0.5, min=0), atol=1e-14)
        assert u[16:24].abs().max() < 1e-14
        assert torch.allclose(u[24:32], 1 - 0.5 * torch.exp(-0.05 * (1 - z[24:32, 1])))
    elif name == "hjb":
        z[:, -1] = 1.0
        u = pde.constrain_value(z, nn)
        assert torch.allclose(u, z[:, :-1].sum(1))
    else:
        z[:16, 0], z[16:32, 1] = 0.0, 1.0
        nn3 = torch.randn(64, 3, generator=g, dtype=torch.float64)  # (NN_u, q_x, q_y)
        assert pde.constrain_value(z, nn3)[:32].abs().max() < 1e-14
    assert torch.all(pde.sample(100, g) >= lo) and torch.all(pde.sample(100, g) <= hi)


def test_hjb_exact_solution_zero_residual_and_ansatz_recovers_it():
    pde = build_pde("hjb")
    z = pde.sample(32, torch.Generator().manual_seed(1))
    nn = Jet(torch.ones(32, dtype=torch.float64), torch.zeros(32, 21, dtype=torch.float64),
             torch.zeros(32, 21, dtype=torch.float64))
    u = pde.constrain(z, nn)
    assert torch.allclose(u.value, z[:, :20].sum(1) + 1 - z[:, 20])
    assert pde.residual(z, u).abs().max() < 1e-12
    with pytest.raises(ValueError, match="coef"):
        build_pde("hjb", {"space_dim": 10})


def test_darcy_fv_second_order_on_manufactured_solution():
    errs, sizes = [], [16, 32, 64]
    for M in sizes:
        c = (np.arange(M) + 0.5) / M
        X, Y = np.meshgrid(c, c, indexing="ij")
        pi = np.pi
        a = 2 + X * Y
        u = np.sin(pi * X) * np.sin(pi * Y)
        f = -(a * (-2 * pi**2 * u) + Y * pi * np.cos(pi * X) * np.sin(pi * Y)
              + X * pi * np.sin(pi * X) * np.cos(pi * Y))
        errs.append(np.abs(solve_darcy_fv(a, f) - u).max())
    order = -np.polyfit(np.log(sizes), np.log(errs), 1)[0]
    assert 1.9 < order < 2.1
    assert errs[-1] < 1e-3


def test_darcy_fv_converges_for_piecewise_constant_field():
    cells = darcy_coefficient_cells(num_cells=4, seed=3)
    assert set(np.unique(cells)) == {3.0, 12.0}

    def solve(M):
        a = np.kron(cells, np.ones((M // 4, M // 4)))
        u = solve_darcy_fv(a, np.ones((M, M)))
        return u.reshape(16, M // 16, 16, M // 16).mean((1, 3))  # 16×16 block means

    u32, u64, u128 = solve(32), solve(64), solve(128)
    d1, d2 = np.abs(u32 - u64).max(), np.abs(u64 - u128).max()
    assert d2 < 0.5 * d1 and d2 < 1e-3 * np.abs(u128).max() * 10
