import math

import pytest
import torch
from scipy.stats import unitary_group

from photonic import DeviceParams, Mesh, MziParams, NoiseConfig, TensorCore, decompose
from photonic.metrics import matrix_fidelity, rel_frobenius_error


@pytest.mark.parametrize("shape,tile,topology", [((13, 21), 4, "clements"), ((30, 7), 8, "reck"),
                                                  ((16, 16), 16, "clements")])
def test_ideal_core_reproduces_w_x(shape, tile, topology):
    g = torch.Generator().manual_seed(0)
    w = torch.randn(*shape, generator=g, dtype=torch.float64)
    x = torch.randn(9, shape[1], generator=g, dtype=torch.float64)
    core = TensorCore.from_matrix(w, tile=tile, topology=topology)
    y = core(x)
    assert (torch.linalg.norm(y - x @ w.T) / torch.linalg.norm(x @ w.T)) < 1e-10
    assert (core.matrix() - w).abs().max() < 1e-12


def test_counts():
    core = TensorCore.from_matrix(torch.ones(10, 20, dtype=torch.float64), tile=8)
    r, c, k = 2, 3, 8
    assert core.counts.num_tiles == r * c
    assert core.counts.num_mzis == r * c * (k * (k - 1) + k)
    assert core.counts.num_phase_shifters == r * c * (2 * (k * (k - 1) + k) + 2 * k)
    core(torch.ones(5, 20, dtype=torch.float64))
    assert core.counts.inferences == 5
    assert core.counts.dac_conversions == 5 * r * c * k
    assert core.counts.reprogram_events == 1


def test_balanced_loss_is_calibrated_out_exactly_but_not_for_reck():
    g = torch.Generator().manual_seed(1)
    w = torch.randn(8, 8, generator=g, dtype=torch.float64)
    dev = DeviceParams(mzi=MziParams(insertion_loss_db=0.3))
    noise = NoiseConfig(insertion_loss=True)
    clem = TensorCore.from_matrix(w, tile=8, device=dev, noise=noise)
    assert (clem.matrix() - w).abs().max() < 1e-12
    reck = TensorCore.from_matrix(w, tile=8, topology="reck", device=dev, noise=noise)
    assert rel_frobenius_error(w, reck.matrix()) > 1e-3


def test_mesh_object_and_metrics():
    u = torch.from_numpy(unitary_group.rvs(6, random_state=2))
    mesh = Mesh(decompose(u))
    assert mesh.num_mzis == 15 and mesh.depth == 6 and mesh.num_phase_shifters == 36
    x = torch.randn(3, 6, dtype=torch.complex128)
    assert (mesh(x) - x @ u.T).abs().max() < 1e-13
    assert abs(matrix_fidelity(u, mesh.matrix()).item() - 1) < 1e-12
    assert abs(matrix_fidelity(u, 0.5 * math.e * mesh.matrix()).item() - 1) < 1e-12
    with pytest.raises(ValueError, match="fields.shape\\[-1\\]=5 but the mesh has 6 modes"):
        mesh(torch.zeros(5))


def test_static_errors_are_seeded_and_dynamic_noise_varies():
    u = torch.from_numpy(unitary_group.rvs(6, random_state=3))
    dev = DeviceParams(variation={"phase_offset_std_rad": 0.05, "phase_noise_std_rad": 0.01})
    a = Mesh(decompose(u), device=dev, noise=NoiseConfig(phase_offset=True), seed=5)
    b = Mesh(decompose(u), device=dev, noise=NoiseConfig(phase_offset=True), seed=5)
    assert torch.equal(a.matrix(), b.matrix())
    c = Mesh(decompose(u), device=dev, noise=NoiseConfig(phase_noise=True), seed=5)
    assert not torch.equal(c.matrix(), c.matrix())


def test_bad_matrix_is_rejected():
    with pytest.raises(ValueError, match="W must be a real 2-D matrix"):
        TensorCore.from_matrix(torch.ones(3, dtype=torch.float64))


def test_sigma_attenuators_honour_coupler_dispersion_and_arm_imbalance():
    from photonic import CouplerParams, mzi_matrix
    from photonic.core import _sigma_amplitudes

    dev = DeviceParams(coupler=CouplerParams(dispersion_per_um=2.0),
                       mzi=MziParams(arm_imbalance_db=0.4))
    theta = torch.tensor([0.3, 1.2, 2.9], dtype=torch.float64)
    lam = 1.58
    noise = NoiseConfig(wavelength_um=lam, arm_imbalance=True)
    got = _sigma_amplitudes(theta, dev, noise, None, None)
    s = 1.55 / lam
    kappa_err = (math.pi / 4) * (1 + 2.0 * (lam - 1.55)) - math.pi / 4
    ref = mzi_matrix(theta * s, (-theta / 2 - math.pi / 2) * s, alpha=kappa_err, beta=kappa_err,
                     arm_imbalance_db=0.4)[..., 1, 0]
    assert (got - ref).abs().max() < 1e-15
    at_design = _sigma_amplitudes(theta, dev, NoiseConfig(), None, None)
    assert (got - at_design).abs().max() > 1e-2  # detuning moves the attenuation
