"""Darcy flow as a first-order system: coefficient, residuals on the reference and on
manufactured fields, multi-output derivative estimates, config checks."""

from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from pydantic import ValidationError

from mlfrontends.pinn.config import CollocationConfig, Config, net_spec
from mlfrontends.pinn.derivatives import Autograd, SparseGridStein, network_jet
from mlfrontends.pinn.jet import Jet
from mlfrontends.pinn.pdes import build_pde, solve_darcy_fv
from mlfrontends.pinn.sampling import Collocation


def _fields(z: torch.Tensor) -> torch.Tensor:
    """Three analytic outputs (..., M, 3) of inputs (..., M, 2)."""
    x, y = z[..., 0], z[..., 1]
    return torch.stack([torch.sin(x) * torch.cos(y), x * x * y, torch.exp(0.5 * x - y)], -1)


def test_coefficient_is_the_cell_value_at_cell_centres():
    pde = build_pde("darcy", {"num_cells": 4, "seed": 3, "smoothing": 0.01,
                              "reference_cells": 32})
    centres = torch.tensor([[0.125, 0.125], [0.375, 0.625], [0.875, 0.875]], dtype=torch.float64)
    a = pde.coefficient(centres)
    assert np.allclose(a.numpy(), [pde.cells[0, 0], pde.cells[1, 2], pde.cells[3, 3]],
                       atol=1e-12)
    grid = pde.evaluation_grid()
    assert grid.u_exact.min() > 0 and grid.points.shape == (64, 2)


def _reference_jet(pde, M: int, u_factor: float = 1.0, q_factor: float = 1.0):
    """Points and the channel-first jet of (u, q = −a∇u) from the FV reference, derivatives
    by central differences on the cell centres two cells in from the wall."""
    c = (np.arange(M) + 0.5) / M
    X, Y = np.meshgrid(c, c, indexing="ij")
    a = pde.coefficient(torch.as_tensor(np.stack([X.ravel(), Y.ravel()], 1))).numpy()
    u = solve_darcy_fv(a.reshape(M, M), np.ones((M, M)))
    h, i = 1 / M, slice(2, -2)  # np.gradient is one-sided at the edges
    gu = np.gradient(u, h)
    q = [-a.reshape(M, M) * g for g in gu]
    dq = [np.gradient(q[0], h, axis=0), np.gradient(q[1], h, axis=1)]
    z = torch.as_tensor(np.stack([X[i, i].ravel(), Y[i, i].ravel()], 1))

    def t(f):
        return torch.as_tensor(f[i, i].ravel())

    zero = torch.zeros(z.shape[0], dtype=torch.float64)
    value = torch.stack([u_factor * t(u), q_factor * t(q[0]), q_factor * t(q[1])])
    grad = torch.stack([
        torch.stack([u_factor * t(gu[0]), u_factor * t(gu[1])], -1),
        torch.stack([q_factor * t(dq[0]), zero], -1),  # only ∂q_x/∂x and ∂q_y/∂y enter
        torch.stack([zero, q_factor * t(dq[1])], -1),
    ])
    return z, Jet(value, grad, torch.zeros_like(grad))


def test_reference_zeroes_the_first_order_residuals():
    """The FV reference with its flux −a∇u zeroes ∇·q − 1 (up to the differencing error at
    the interfaces); doubling the flux leaves ∇·q − 1 ≈ 1, doubling u alone breaks q + a∇u."""
    pde = build_pde("darcy", {"reference_cells": 128})
    z, jet = _reference_jet(pde, 128)
    n = z.shape[0]
    r = pde.residual(z, jet).numpy()
    assert r.shape == (3 * n,)
    div = np.abs(r[2 * n:])
    assert np.median(div) < 5e-3 and np.quantile(div, 0.9) < 0.05
    r2 = pde.residual(z, _reference_jet(pde, 128, q_factor=2.0)[1]).numpy()
    assert np.median(np.abs(r2[2 * n:])) > 0.9
    r3 = pde.residual(z, _reference_jet(pde, 128, u_factor=2.0)[1]).numpy()
    flux = np.hypot(r3[:n], r3[n:2 * n])  # = √a |∇u| when u is doubled
    assert np.median(flux) > 0.05 and np.abs(r[:2 * n]).max() < 1e-12


@pytest.mark.parametrize("estimator", [Autograd(hess_dims=()), SparseGridStein(sigma=1e-3)])
def test_residual_of_manufactured_fields_through_the_estimators(estimator):
    """One cell: a ≡ 12. Network (NN_u, q_x, q_y) = (c, x − ½, 0): u = c·x y (x−1)(y−1),
    ∇·q − 1 = 0 and q_x + a u_x = x − ½ + 12 c (2x − 1) y (y − 1)."""
    pde = build_pde("darcy", {"num_cells": 1, "reference_cells": 8})
    c = 0.3

    def net(z):
        x = z[..., 0]
        return torch.stack([torch.full_like(x, c), x - 0.5, torch.zeros_like(x)], -1)

    z = pde.sample(40, torch.Generator().manual_seed(2))
    r = pde.residual(z, pde.constrain(z, network_jet(estimator, net, z, pde.outputs)))
    x, y = z[:, 0], z[:, 1]
    want_x = (x - 0.5 + 12 * c * (2 * x - 1) * y * (y - 1)) / 12**0.5
    want_y = 12 * c * x * (x - 1) * (2 * y - 1) / 12**0.5
    tol = 1e-10 if isinstance(estimator, Autograd) else 1e-6
    assert torch.allclose(r, torch.cat([want_x, want_y, torch.zeros_like(x)]), atol=tol)


def test_channel_estimates_match_the_analytic_derivatives():
    z = torch.rand(16, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    x, y = z[:, 0], z[:, 1]
    e = torch.exp(0.5 * x - y)
    grad = torch.stack([
        torch.stack([torch.cos(x) * torch.cos(y), -torch.sin(x) * torch.sin(y)], -1),
        torch.stack([2 * x * y, x * x], -1),
        torch.stack([0.5 * e, -e], -1),
    ])
    for est, tol in ((Autograd(), 1e-12), (SparseGridStein(sigma=1e-3), 1e-6)):
        jet = network_jet(est, _fields, z, 3)
        assert jet.value.shape == (3, 16) and jet.grad.shape == (3, 16, 2)
        assert torch.allclose(jet.grad, grad, atol=tol)
        assert torch.allclose(jet.hess_diag[2], torch.stack([0.25 * e, e], -1), atol=1e-4)
    # two parameter sets (leading dim) pass through: the second doubles the outputs
    jet = network_jet(SparseGridStein(sigma=1e-3),
                      lambda q: torch.stack([_fields(q), 2 * _fields(q)]), z, 3)
    assert jet.grad.shape == (3, 2, 16, 2)
    assert torch.allclose(jet.grad[:, 1], 2 * grad, atol=1e-5)


def test_shipped_config_and_refused_inputs():
    raw = yaml.safe_load((Path(__file__).resolve().parents[2] / "configs" /
                          "pinn_darcy.yaml").read_text())
    cfg = Config(**raw["workload"])
    assert cfg.model.execution == "phase" and cfg.optim.method == "subspace_lm"
    assert net_spec(cfg)["widths"][-1] == 3
    with pytest.raises(ValidationError, match="smoothing"):
        Config(pde="darcy", pde_params={"smoothing": 0.0})
    with pytest.raises(ValidationError, match="num_cells"):
        Config(pde="darcy", pde_params={"num_cells": 0})
    with pytest.raises(ValueError, match=r"model.widths = \[2, 8, 1\]: pde 'darcy' needs a "
                       "last width of 3"):
        net_spec(Config(pde="darcy", model={"widths": [2, 8, 1]}))


def test_rad_scores_a_point_by_the_norm_of_its_stacked_residuals():
    pde = build_pde("darcy", {"num_cells": 2, "reference_cells": 8})
    cfg = CollocationConfig(sampling="rad", pool=64, k=2.0, c=0.0)
    sampler = Collocation(cfg, 4, pde, torch.Generator().manual_seed(0), torch.float64)

    def residual(z):  # only ∇·q − 1 (third block) is non-zero, at the pool's first 4 points
        r = torch.zeros(3, z.shape[0], dtype=z.dtype)
        r[2, :4] = 1.0
        return r.reshape(-1)

    z, spent = sampler.draw(0, residual)
    assert spent == 64
    assert sorted(map(tuple, z.tolist())) == sorted(map(tuple, sampler.pool[:4].tolist()))
