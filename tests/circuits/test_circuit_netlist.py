"""Circuit cross-check: SAX S-matrix of a programmed hub mesh vs the hub's transfer matrix."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.stats import unitary_group

from circuits import mesh_netlist, mesh_smatrix, waveguide
from photonic import DeviceParams, NoiseConfig, decompose, transfer_matrix
from photonic.devices import CouplerParams, MziParams
from photonic.mesh import BALANCED_TOPOLOGIES
from photonic.noise import MeshErrors, realise_mesh

N = 8
SWEEP_UM = np.linspace(1.53, 1.57, 9)  # ±20 nm around 1.55 µm
CENTRE = 4  # index of the design wavelength in SWEEP_UM
DEVICE = DeviceParams(
    design_wavelength_um=1.55,
    coupler=CouplerParams(split_error_std_rad=0.05, dispersion_per_um=0.3),
    mzi=MziParams(insertion_loss_db=0.3, loss_std_db=0.1),
)


@pytest.fixture(scope="module", params=["clements", "reck"])
def programmed(request):
    u = unitary_group.rvs(N, random_state=7)
    phases = decompose(torch.as_tensor(u), topology=request.param)
    k = phases.layout.num_mzis
    g = torch.Generator().manual_seed(11)
    errors = MeshErrors(
        gamma_rel=torch.zeros(2 * k + N, dtype=torch.float64),
        phase_offset_rad=torch.zeros(2 * k + N, dtype=torch.float64),
        alpha_rad=0.05 * torch.randn(k, generator=g, dtype=torch.float64),
        beta_rad=0.05 * torch.randn(k, generator=g, dtype=torch.float64),
        loss_db=0.3 + 0.1 * torch.rand(k, generator=g, dtype=torch.float64),
    )
    s_ideal = mesh_smatrix(phases)
    s_sweep = _circuit(
        phases,
        errors,
        wavelength_um=SWEEP_UM,
        wavelength0_um=DEVICE.design_wavelength_um,
        coupler_dispersion_per_um=DEVICE.coupler.dispersion_per_um,
    )
    return u, phases, errors, s_ideal, s_sweep


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().numpy()


def _circuit(phases, errors, **kw):
    """Circuit with the chip's errors; balanced meshes get the hub's loss-matching pads."""
    balanced = phases.layout.topology in BALANCED_TOPOLOGIES
    return mesh_smatrix(
        phases,
        alpha_rad=_np(errors.alpha_rad),
        beta_rad=_np(errors.beta_rad),
        loss_db=_np(errors.loss_db),
        pad_loss_db=DEVICE.mzi.insertion_loss_db if balanced else 0.0,
        **kw,
    )


def test_ideal_mesh_smatrix_equals_hub_transfer_matrix(programmed):
    u, phases, _, s_ideal, _ = programmed
    assert s_ideal.shape == (N, N)
    assert np.abs(s_ideal - _np(phases.matrix())).max() < 1e-9
    assert np.abs(s_ideal - u).max() < 1e-9


def test_mesh_with_coupler_errors_and_loss_equals_hub(programmed):
    _, phases, errors, s_ideal, s_sweep = programmed
    noise = NoiseConfig(coupler_error=True, insertion_loss=True)
    hub = _np(realise_mesh(phases, device=DEVICE, noise=noise, errors=errors))
    assert SWEEP_UM[CENTRE] == DEVICE.design_wavelength_um
    assert np.abs(s_sweep[CENTRE] - hub).max() < 1e-9
    # the injected errors matter: the error-free circuit is far from the hub's erroneous matrix
    assert np.abs(s_ideal - hub).max() > 1e-2


def test_wavelength_sweep_agrees_with_hub_wavelength_model(programmed):
    _, phases, errors, _, s_sweep = programmed
    assert s_sweep.shape == (SWEEP_UM.size, N, N)
    hub = np.stack(
        [
            _np(
                realise_mesh(
                    phases,
                    device=DEVICE,
                    noise=NoiseConfig(coupler_error=True, insertion_loss=True, wavelength_um=wl),
                    errors=errors,
                )
            )
            for wl in SWEEP_UM
        ]
    )
    assert np.abs(s_sweep - hub).max() < 1e-6
    # the sweep is not flat: ±20 nm moves the matrix by far more than the tolerance
    assert np.abs(s_sweep[0] - s_sweep[CENTRE]).max() > 1e-2


def test_routing_waveguides_add_only_a_common_factor():
    """Every path crosses `depth` column waveguides, even in the unbalanced Reck mesh."""
    phases = decompose(torch.as_tensor(unitary_group.rvs(4, random_state=3)), topology="reck")
    wl = SWEEP_UM
    s = mesh_smatrix(
        phases,
        wavelength_um=wl,
        routing_length_um=80.0,
        routing_loss_db_per_cm=2.0,
        backend="fg",  # the other registered solver; klu is checked by the tests above
    )
    common = np.asarray(
        waveguide(wavelength_um=wl, length_um=80.0, loss_db_per_cm=2.0)[("in0", "out0")]
    )
    scale = torch.as_tensor(1.55 / wl)[:, None]
    hub = _np(
        transfer_matrix(
            phases.layout, phases.theta * scale, phases.phi * scale, phases.out_phase * scale
        )
    )
    expected = common[:, None, None] ** phases.layout.depth * hub
    assert np.abs(s - expected).max() < 1e-9
    path_loss_db = 2.0 * 80.0e-4 * phases.layout.depth  # dB/cm × cm × columns = 0.08 dB
    assert abs(common[0]) ** (2 * phases.layout.depth) == pytest.approx(10 ** (-path_loss_db / 10))


def test_netlist_structure_counts_instances_and_ports(programmed):
    _, phases, *_ = programmed
    lay = phases.layout
    net = mesh_netlist(phases, routing_length_um=10.0, pad_loss_db=0.2)
    pads = lay.depth * N - 2 * lay.num_mzis  # idle (mode, column) positions
    assert pads == {"clements": N, "reck": N * (N - 2)}[lay.topology]  # N/2 odd columns × 2 edges
    assert len(net["instances"]) == 4 * lay.num_mzis + N + lay.depth * N + pads
    assert sorted(net["ports"]) == sorted(
        [f"in{m}" for m in range(N)] + [f"out{m}" for m in range(N)]
    )
    # every internal port is used once: 2 per 2-port device, 4 per coupler, minus 2N mesh ports
    two_ports = 2 * lay.num_mzis + N + lay.depth * N + pads
    assert 2 * len(net["connections"]) == 2 * two_ports + 4 * 2 * lay.num_mzis - 2 * N


def test_errors_name_valid_choices_and_shapes(programmed):
    _, phases, *_ = programmed
    with pytest.raises(ValueError, match=r"valid choices: \['fg', 'klu'\]; did you mean 'klu'\?"):
        mesh_smatrix(phases, backend="kluu")
    batched = type(phases)(
        layout=phases.layout,
        theta=phases.theta[None].repeat(2, 1),
        phi=phases.phi[None].repeat(2, 1),
        out_phase=phases.out_phase[None].repeat(2, 1),
    )
    with pytest.raises(ValueError, match="takes one mesh"):
        mesh_netlist(batched)
