"""Circuit cross-check: a programmed hub mesh built from simphony's library parts and solved by
SAX, against the hub's ``Mesh.matrix()``, ideal and over a wavelength sweep with dispersion."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.stats import unitary_group

from circuits import ArmWaveguide, hub_settings, mesh_netlist, mesh_path_factor, mesh_smatrix
from photonic import DeviceParams, Mesh, NoiseConfig, decompose
from photonic.devices import CouplerParams, MziParams
from photonic.noise import MeshErrors, sample_mesh_errors

SWEEP_UM = np.linspace(1.53, 1.57, 5)  # ±20 nm around 1.55 µm
CENTRE = 2  # index of the design wavelength in SWEEP_UM
ARM = ArmWaveguide(section_length_um=100.0, neff=2.4, ng=4.2)  # dispersive arms: ng ≠ neff
DEVICE = DeviceParams(
    design_wavelength_um=1.55,
    coupler=CouplerParams(split_error_std_rad=0.05, dispersion_per_um=0.3),
    mzi=MziParams(insertion_loss_db=0.3, loss_std_db=0.1),
)
CHIP = NoiseConfig(coupler_error=True, insertion_loss=True)
CASES = [
    pytest.param((n, t), id=f"{t}-{n}", marks=[pytest.mark.slow] if n == 16 else [])
    for n in (4, 8, 16)
    for t in ("clements", "reck")
]


def _hub(phases, noise: NoiseConfig, errors: MeshErrors | None) -> np.ndarray:
    """The hub's Mesh.matrix() at every wavelength of the sweep (dispersion on)."""
    return np.stack([
        Mesh(phases, device=DEVICE, errors=errors,
             noise=noise.model_copy(update={"wavelength_um": float(wl)})).matrix().numpy()
        for wl in SWEEP_UM
    ])


@pytest.fixture(scope="module", params=CASES)
def solved(request):
    """One mesh per case, solved ideal and with chip errors over the sweep (one structure, so
    SAX's analysis of the second solve is cached)."""
    n, topology = request.param
    u = unitary_group.rvs(n, random_state=7)
    phases = decompose(torch.as_tensor(u), topology=topology)
    errors = sample_mesh_errors(phases.layout, DEVICE, generator=torch.Generator().manual_seed(11))
    common = mesh_path_factor(phases.layout, wavelength_um=SWEEP_UM,
                              wavelength0_um=DEVICE.design_wavelength_um, arm=ARM)[:, None, None]
    ideal = mesh_smatrix(phases, wavelength_um=SWEEP_UM,
                         **hub_settings(phases.layout, DEVICE, arm=ARM)) / common
    chip = hub_settings(phases.layout, DEVICE, noise=CHIP, errors=errors, arm=ARM)
    real = mesh_smatrix(phases, wavelength_um=SWEEP_UM, **chip) / common
    return u, phases, errors, ideal, real


def test_ideal_circuit_equals_hub_mesh_matrix_at_the_design_wavelength(solved):
    u, phases, _, ideal, _ = solved
    assert SWEEP_UM[CENTRE] == DEVICE.design_wavelength_um
    assert np.abs(ideal[CENTRE] - Mesh(phases).matrix().numpy()).max() < 1e-9
    assert np.abs(ideal[CENTRE] - u).max() < 1e-9


def test_ideal_circuit_equals_hub_over_the_sweep_with_dispersion(solved):
    _, phases, _, ideal, _ = solved
    assert np.abs(ideal - _hub(phases, NoiseConfig(), None)).max() < 1e-9
    # the sweep is not flat: ±20 nm moves the matrix by far more than the tolerance
    assert np.abs(ideal[0] - ideal[CENTRE]).max() > 1e-2


def test_circuit_with_chip_errors_equals_hub_over_the_sweep(solved):
    _, phases, errors, ideal, real = solved
    assert np.abs(real - _hub(phases, CHIP, errors)).max() < 1e-9
    # the injected errors matter: the error-free circuit is far from the erroneous one
    assert np.abs(ideal - real).max() > 1e-2


def test_arm_propagation_is_a_common_factor_with_its_loss_and_the_fg_solver_agrees():
    """Every path crosses 2·depth + 1 sections, even in the unbalanced Reck mesh."""
    phases = decompose(torch.as_tensor(unitary_group.rvs(3, random_state=3)), topology="reck")
    arm = ArmWaveguide(section_length_um=80.0, loss_db_per_cm=2.0)
    klu = mesh_smatrix(phases, wavelength_um=SWEEP_UM, arm=arm)
    fg = mesh_smatrix(phases, wavelength_um=SWEEP_UM, arm=arm, backend="fg")
    assert np.abs(klu - fg).max() < 1e-12
    path_loss_db = 2.0 * 80.0e-4 * (2 * phases.layout.depth + 1)  # dB/cm × cm = 0.112 dB
    power = np.sum(np.abs(klu) ** 2, axis=-2)  # per input, every wavelength
    np.testing.assert_allclose(power, 10 ** (-path_loss_db / 10), rtol=1e-12)


def test_netlist_structure_counts_instances_and_ports():
    n = 6
    for topology, idle in (("clements", n), ("reck", n * (n - 2))):
        phases = decompose(torch.as_tensor(unitary_group.rvs(n, random_state=1)), topology)
        lay = phases.layout
        net = mesh_netlist(phases)
        pads = lay.depth * n - 2 * lay.num_mzis  # idle (mode, column) positions
        assert pads == idle
        assert len(net["instances"]) == 6 * lay.num_mzis + pads + n
        assert sorted(net["ports"]) == sorted([f"in{m}" for m in range(n)]
                                              + [f"out{m}" for m in range(n)])
        # every internal port is used once: 2 per waveguide, 4 per coupler, minus 2N mesh ports
        ports = 2 * (4 * lay.num_mzis + pads + n) + 4 * 2 * lay.num_mzis
        assert 2 * len(net["connections"]) == ports - 2 * n


def test_errors_name_valid_choices_shapes_and_coupler_range():
    phases = decompose(torch.as_tensor(unitary_group.rvs(4, random_state=5)), "clements")
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
    assert hub_settings(phases.layout, DEVICE)["arm"].section_length_um == 100.0  # shifter
    assert hub_settings(phases.layout, DEVICE, noise=NoiseConfig(insertion_loss=True)) == {
        **hub_settings(phases.layout, DEVICE), "loss_db": 0.3, "pad_loss_db": 0.3}
    with pytest.raises(ValueError, match=r"noise switches \['crosstalk'\] act on the phases"):
        hub_settings(phases.layout, DEVICE, noise=NoiseConfig(crosstalk=True, coupler_error=True))
    with pytest.raises(ValueError, match=r"coupler_error=True needs the chip's errors"):
        hub_settings(phases.layout, DEVICE, noise=CHIP)
    with pytest.raises(ValueError, match=r"pad_loss_db=-0.1 must be finite and ≥ 0"):
        mesh_netlist(phases, pad_loss_db=-0.1)
    with pytest.raises(ValueError, match=r"mesh_smatrix: alpha_rad gives .* "
                                         r"coupler_dispersion_per_um=60.0, outside"):
        mesh_smatrix(phases, wavelength_um=SWEEP_UM, coupler_dispersion_per_um=60.0)
