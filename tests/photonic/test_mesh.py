import math

import numpy as np
import pytest
import torch
from scipy.stats import unitary_group

from photonic import decompose, mesh_layout, transfer_matrix
from photonic.mesh import column_coefficients, propagate_columns
from photonic.mzi import unit_phasor


def _random_phases(lay, batch=(), seed=0):
    g = torch.Generator().manual_seed(seed)
    k = lay.num_mzis
    th = torch.rand(batch + (k,), generator=g, dtype=torch.float64) * math.pi
    ph = torch.rand(batch + (k,), generator=g, dtype=torch.float64) * 2 * math.pi
    out = torch.rand(batch + (lay.n,), generator=g, dtype=torch.float64) * 2 * math.pi
    return th, ph, out


@pytest.mark.parametrize("topology", ["clements", "reck"])
@pytest.mark.parametrize("n", [2, 5, 16, 64])
def test_lossless_mesh_is_unitary(topology, n):
    lay = mesh_layout(n, topology)
    t = transfer_matrix(lay, *_random_phases(lay, seed=n))
    assert (t @ t.mH - torch.eye(n, dtype=t.dtype)).abs().max() < 1e-12


def test_clements_loss_is_balanced():
    n, il_db = 12, 0.3
    lay = mesh_layout(n, "clements")
    amp = 10 ** (-il_db / 20)
    t = transfer_matrix(lay, *_random_phases(lay, seed=1), amplitude=amp, pad_amplitude=amp)
    # every path crosses N elements (MZIs or edge loss-matching dummies):
    # output power = input power × 10^(−N·IL/10), for any input
    gram = t.mH @ t
    expect = 10 ** (-n * il_db / 10)
    assert (gram - expect * torch.eye(n, dtype=t.dtype)).abs().max() < 1e-12


def test_reck_loss_is_path_dependent():
    n, il_db = 8, 0.25
    lay = mesh_layout(n, "reck")
    g = np.random.default_rng(0)
    cross = g.random(lay.num_mzis) < 0.5
    theta = torch.tensor(np.where(cross, 0.0, math.pi))  # θ=0 → cross, θ=π → bar
    t = transfer_matrix(lay, theta, torch.zeros(lay.num_mzis, dtype=torch.float64),
                        torch.zeros(n, dtype=torch.float64), amplitude=10 ** (-il_db / 20))
    out, hops = lay.route(cross)
    assert len(set(hops.tolist())) > 1  # unbalanced
    power = t.abs() ** 2
    for j in range(n):
        col = power[:, j]
        assert torch.argmax(col).item() == out[j]
        assert abs(col.sum().item() - 10 ** (-hops[j] * il_db / 10)) < 1e-12


def test_numba_and_torch_paths_agree_and_batches():
    lay = mesh_layout(8, "clements")
    th, ph, out = _random_phases(lay, batch=(1024,), seed=2)
    fast = transfer_matrix(lay, th, ph, out, amplitude=0.97, pad_amplitude=0.9)
    a, b = column_coefficients(lay, th.requires_grad_(), ph, amplitude=0.97, pad_amplitude=0.9)
    slow = propagate_columns(lay, a, b, torch.eye(8, dtype=a.dtype))
    slow = torch.polar(torch.ones_like(out), out)[..., :, None] * slow
    assert fast.shape == (1024, 8, 8)
    assert (fast - slow.detach()).abs().max() < 1e-13
    single = transfer_matrix(lay, th[17].detach(), ph[17], out[17], amplitude=0.97,
                             pad_amplitude=0.9)
    assert (single - fast[17]).abs().max() < 1e-14


def _torch_path(lay, th, ph, out, **kw):
    a, b = column_coefficients(lay, th, ph, **kw)
    t = propagate_columns(lay, a.requires_grad_(), b, torch.eye(lay.n, dtype=a.dtype)).detach()
    return unit_phasor(out)[..., :, None] * t


@pytest.mark.parametrize("topology", ["clements", "reck"])
@pytest.mark.parametrize("n", [3, 33])
def test_fast_build_with_device_errors_agrees_with_torch_path(topology, n):
    lay = mesh_layout(n, topology)
    k = lay.num_mzis
    g = torch.Generator().manual_seed(n)
    th, ph, out = _random_phases(lay, batch=(2,), seed=n)
    ph = ph * 40 - 40  # phases beyond one turn
    kw = dict(alpha=0.05 * torch.randn(k, generator=g, dtype=torch.float64),
              beta=0.05 * torch.randn(2, k, generator=g, dtype=torch.float64),
              amplitude=0.9 + 0.1 * torch.rand(k, generator=g, dtype=torch.float64),
              pad_amplitude=torch.tensor([0.93, 1.0], dtype=torch.float64))
    fast = transfer_matrix(lay, th, ph, out[0], **kw)
    assert fast.shape == (2, n, n)
    assert (fast - _torch_path(lay, th, ph, out[0], **kw)).abs().max() < 1e-13
    scalars = dict(alpha=0.02, beta=-0.01, amplitude=0.99, pad_amplitude=0.95)
    fast = transfer_matrix(lay, th, ph, out, **scalars)
    assert (fast - _torch_path(lay, th, ph, out, **scalars)).abs().max() < 1e-13
    big = th + 3e5  # outside the vectorised sin/cos range: libm fallback
    assert (transfer_matrix(lay, big, ph, out) - _torch_path(lay, big, ph, out)).abs().max() < 1e-12
    single = transfer_matrix(lay, th.float(), ph.float(), out.float())
    assert single.dtype == torch.complex64


def test_large_build_agrees_with_torch_path():
    u = unitary_group.rvs(160, random_state=5)
    p = decompose(u)
    assert np.abs(p.matrix().numpy() - u).max() < 1e-11
    lay = p.layout
    a, b = column_coefficients(lay, p.theta, p.phi, amplitude=0.99, pad_amplitude=0.95)
    ref = propagate_columns(lay, a.requires_grad_(), b, torch.eye(160, dtype=a.dtype)).detach()
    fast = transfer_matrix(lay, p.theta, p.phi, torch.zeros(160, dtype=torch.float64),
                           amplitude=0.99, pad_amplitude=0.95)
    assert (fast - ref).abs().max() < 1e-12


def test_gradcheck_wrt_phases():
    lay = mesh_layout(4, "clements")
    th, ph, out = _random_phases(lay, seed=3)
    th.requires_grad_(True)
    ph.requires_grad_(True)
    x = torch.randn(4, 2, dtype=torch.complex128)

    def f(theta, phi):
        t = transfer_matrix(lay, theta, phi, out)
        return (t @ x).abs() ** 2

    assert torch.autograd.gradcheck(f, (th, ph))


def test_arm_ratio_fast_and_autograd_paths_agree_with_the_embedded_product():
    from photonic.mzi import arm_transmission, mzi_matrix

    lay = mesh_layout(5, "clements")
    g = torch.Generator().manual_seed(4)
    th, ph, out = (torch.rand(s, generator=g, dtype=torch.float64) * 6.2
                   for s in (lay.num_mzis, lay.num_mzis, lay.n))
    imb = torch.rand(lay.num_mzis, generator=g, dtype=torch.float64) - 0.3
    ratio, other = arm_transmission(imb, 0.4)
    fast = transfer_matrix(lay, th, ph, out, amplitude=other, arm_ratio=ratio)
    a, b = column_coefficients(lay, th.requires_grad_(), ph, amplitude=other, arm_ratio=ratio)
    slow = unit_phasor(out)[:, None] * propagate_columns(lay, a, b, torch.eye(5,
                                                         dtype=torch.complex128))
    ref = torch.eye(5, dtype=torch.complex128)
    for k in range(lay.num_mzis):  # light order
        m = int(lay.modes[k])
        e = torch.eye(5, dtype=torch.complex128)
        e[m:m + 2, m:m + 2] = mzi_matrix(th[k].detach(), ph[k], loss_db=0.4,
                                             arm_imbalance_db=imb[k])
        ref = e @ ref
    ref = torch.diag(unit_phasor(out)) @ ref
    assert (fast - ref).abs().max() < 1e-13
    assert (slow.detach() - ref).abs().max() < 1e-13
