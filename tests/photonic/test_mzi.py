import math

import numpy as np
import pytest
import torch

from photonic import mzi_matrix
from photonic.mzi import coupler_matrix


def test_convention_pinned_by_an_asymmetric_example():
    # M(θ, φ) = B · diag(e^{iθ}, 1) · B · diag(e^{iφ}, 1), T[out, in]; θ=π/3, φ=π/5.
    theta, phi = math.pi / 3, math.pi / 5
    b = np.array([[1, 1j], [1j, 1]]) / math.sqrt(2)
    ref = b @ np.diag([np.exp(1j * theta), 1]) @ b @ np.diag([np.exp(1j * phi), 1])
    m = mzi_matrix(theta, phi).numpy()
    np.testing.assert_allclose(m, ref, atol=1e-15)
    # light entering the top port (column 0) picks up the external phase; bottom does not
    assert abs(np.angle(m[0, 0]) - np.angle(ref[0, 0])) < 1e-15
    # cross-port power cos²(θ/2): input 0 → output 1
    assert abs(abs(m[1, 0]) ** 2 - math.cos(theta / 2) ** 2) < 1e-15
    assert abs(abs(m[0, 0]) ** 2 - math.sin(theta / 2) ** 2) < 1e-15


def test_closed_form_and_unitarity():
    th = torch.linspace(0, 2 * math.pi, 17, dtype=torch.float64)
    ph = torch.linspace(-1, 5, 17, dtype=torch.float64)
    m = mzi_matrix(th, ph)
    s, c = torch.sin(th / 2), torch.cos(th / 2)
    g = 1j * torch.polar(torch.ones_like(th), th / 2)
    ep = torch.polar(torch.ones_like(ph), ph)
    ref = torch.stack([torch.stack([g * ep * s, g * c], -1),
                       torch.stack([g * ep * c, -g * s], -1)], -2)
    assert torch.allclose(m, ref, atol=1e-15)
    eye = torch.eye(2, dtype=m.dtype)
    assert (m @ m.mH - eye).abs().max() < 1e-15


@pytest.mark.parametrize("alpha,beta", [(0.05, 0.02), (-0.04, 0.03), (0.1, -0.1)])
def test_coupler_errors_bound_the_cross_power(alpha, beta):
    # Hamerly et al.: cross power confined to [sin²(α−β), cos²(α+β)].
    th = torch.linspace(0, 2 * math.pi, 4001, dtype=torch.float64)
    cross = mzi_matrix(th, 0.0, alpha=alpha, beta=beta)[..., 1, 0].abs() ** 2
    assert abs(cross.min().item() - math.sin(alpha - beta) ** 2) < 1e-6
    assert abs(cross.max().item() - math.cos(alpha + beta) ** 2) < 1e-6


def test_loss_scales_the_matrix():
    m = mzi_matrix(0.7, 0.3, loss_db=0.5)
    p = (m.abs() ** 2).sum(0)  # power out for unit power in each port
    assert torch.allclose(p, torch.full((2,), 10 ** (-0.05), dtype=torch.float64), atol=1e-15)


def test_coupler_matrix_is_a_50_50_splitter():
    b = coupler_matrix()
    assert torch.allclose(b.abs() ** 2, torch.full((2, 2), 0.5, dtype=torch.float64))


@pytest.mark.parametrize("imbalance_db", [0.25, 0.8, -0.5])
def test_arm_imbalance_is_the_explicit_product_and_bounds_the_extinction_ratio(imbalance_db):
    # θ arm field ρ = 10^(−Δ/20) times the other arm's; the lossier arm carries the extra loss.
    theta, phi = 1.1, -0.4
    rho = 10 ** (-imbalance_db / 20)
    top, bot = (rho, 1.0) if imbalance_db > 0 else (1.0, 1 / rho)
    b = np.array([[1, 1j], [1j, 1]]) / math.sqrt(2)
    ref = b @ np.diag([top * np.exp(1j * theta), bot]) @ b @ np.diag([np.exp(1j * phi), 1])
    m = mzi_matrix(theta, phi, arm_imbalance_db=imbalance_db).numpy()
    np.testing.assert_allclose(m, ref, atol=1e-15)
    # extinction ratio of the cross port over θ: ((1 + ρ)/(1 − ρ))², ρ the arm field ratio
    th = torch.linspace(0, 2 * math.pi, 20001, dtype=torch.float64)
    cross = mzi_matrix(th, 0.0, arm_imbalance_db=imbalance_db)[..., 1, 0].abs() ** 2
    r = min(top, bot) / max(top, bot)
    expect_db = 20 * math.log10((1 + r) / (1 - r))
    got_db = 10 * math.log10(cross.max().item() / cross.min().item())
    assert abs(got_db - expect_db) < 1e-6
    # passive: no output carries more power than went in
    assert np.linalg.svd(m, compute_uv=False).max() <= 1 + 1e-15
    # with a cell loss (the θ arm's): the other arm loses Δ less, never below 0 dB
    lossy = mzi_matrix(theta, phi, loss_db=0.9, arm_imbalance_db=imbalance_db).numpy()
    a_theta, a_other = 10 ** (-0.9 / 20), 10 ** (-max(0.9 - imbalance_db, 0) / 20)
    ref = b @ np.diag([a_theta * np.exp(1j * theta), a_other]) @ b @ np.diag([np.exp(1j * phi),
                                                                               1])
    if imbalance_db < 0.9:
        np.testing.assert_allclose(lossy, ref, atol=1e-15)
