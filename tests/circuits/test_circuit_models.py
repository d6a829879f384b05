"""SAX device models: port convention, physics of each model, the composed MZI."""

from __future__ import annotations

import importlib
import math
import pkgutil

import numpy as np
import pytest
import torch

import circuits
from circuits.models import (
    MODELS,
    coupler_angle_rad,
    directional_coupler,
    mzi,
    phase_shifter,
    waveguide,
)
from photonic import mzi_matrix

LAMBDA0_UM = 1.55


def _t2(s) -> np.ndarray:
    """2×2 T[out, in] from a two-port-pair SDict (ports in0, in1, out0, out1)."""
    return np.array(
        [
            [s[("in0", "out0")], s[("in1", "out0")]],
            [s[("in0", "out1")], s[("in1", "out1")]],
        ],
        dtype=np.complex128,
    )


def test_every_circuits_module_imports():
    names = [m.name for m in pkgutil.iter_modules(circuits.__path__, "circuits.")]
    assert {"circuits.models", "circuits.netlist", "circuits.layout"} <= set(names)
    for name in names:
        importlib.import_module(name)
    for name in circuits.__all__:  # every lazy re-export resolves
        assert getattr(circuits, name) is not None


def test_mzi_port_convention_pinned_by_an_asymmetric_example():
    """φ sits on the top input (in0) only; the SAX S-dict maps to the hub's T[out, in]."""
    theta, phi = 0.9, 2.1
    t = _t2(mzi(theta_rad=theta, phi_rad=phi))
    g = 1j * np.exp(1j * theta / 2)
    s, c = math.sin(theta / 2), math.cos(theta / 2)
    closed_form = g * np.array([[np.exp(1j * phi) * s, c], [np.exp(1j * phi) * c, -s]])
    np.testing.assert_allclose(t, closed_form, atol=1e-14)
    # in1 → out1 carries no φ; in0 → out0 does: swapping the ports would fail this.
    assert abs(np.angle(t[1, 1] / (-g * s))) < 1e-12
    assert abs(np.angle(t[0, 0] / (g * s)) - phi) < 1e-12


def test_composed_mzi_equals_hub_mzi_with_coupler_errors_and_loss():
    theta, phi, alpha, beta, loss_db = 0.7, 1.9, 0.031, -0.047, 0.37
    t = _t2(mzi(theta_rad=theta, phi_rad=phi, alpha_rad=alpha, beta_rad=beta, loss_db=loss_db))
    hub = mzi_matrix(theta, phi, alpha=alpha, beta=beta, loss_db=loss_db).numpy()
    np.testing.assert_allclose(t, hub, atol=1e-14)
    power_out = np.sum(np.abs(t) ** 2, axis=0)
    np.testing.assert_allclose(power_out, 10 ** (-loss_db / 10), rtol=1e-12)


@pytest.mark.parametrize(("theta", "bound"), [(0.0, "cos2_sum"), (math.pi, "sin2_diff")])
def test_mzi_cross_power_extremes_with_coupler_errors(theta, bound):
    """Cross power is confined to [sin²(α−β), cos²(α+β)] (Hamerly et al. 2109.05367)."""
    alpha, beta = 0.06, -0.02
    t = _t2(mzi(theta_rad=theta, alpha_rad=alpha, beta_rad=beta))
    expected = {"cos2_sum": math.cos(alpha + beta) ** 2, "sin2_diff": math.sin(alpha - beta) ** 2}
    assert abs(t[1, 0]) ** 2 == pytest.approx(expected[bound], abs=1e-14)


def test_directional_coupler_dispersion_and_excess_loss():
    wl = np.array([1.53, 1.55, 1.57])
    s = directional_coupler(
        wavelength_um=wl, error_rad=0.02, coupler_dispersion_per_um=0.4, loss_db=0.5
    )
    kappa = (math.pi / 4 + 0.02) * (1 + 0.4 * (wl - LAMBDA0_UM))
    amp = 10 ** (-0.5 / 20)
    np.testing.assert_allclose(s[("in0", "out1")], 1j * amp * np.sin(kappa), atol=1e-15)
    np.testing.assert_allclose(s[("in1", "out1")], amp * np.cos(kappa), atol=1e-15)
    np.testing.assert_allclose(
        coupler_angle_rad(wavelength_um=wl, error_rad=0.02, coupler_dispersion_per_um=0.4),
        kappa,
        atol=1e-15,
    )


def test_phase_shifter_phase_scales_as_inverse_wavelength():
    wl = np.linspace(1.53, 1.57, 5)
    s = phase_shifter(wavelength_um=wl, phase_rad=2.5, loss_db=0.25)
    np.testing.assert_allclose(np.angle(s[("in0", "out0")]), 2.5 * LAMBDA0_UM / wl, atol=1e-14)
    np.testing.assert_allclose(np.abs(s[("in0", "out0")]), 10 ** (-0.25 / 20), rtol=1e-14)


def test_waveguide_group_index_and_propagation_loss():
    """dφ/dλ = −2π n_g L / λ² at λ0 (definition of the group index); loss in dB/cm."""
    length_um, ng = 250.0, 4.2
    h = 1e-6
    wl = np.array([LAMBDA0_UM - h, LAMBDA0_UM + h])
    t = waveguide(wavelength_um=wl, length_um=length_um, neff=2.4, ng=ng, loss_db_per_cm=3.0)
    t = np.asarray(t[("in0", "out0")])
    dphi_dwl = np.angle(t[1] / t[0]) / (2 * h)
    assert dphi_dwl == pytest.approx(-2 * math.pi * ng * length_um / LAMBDA0_UM**2, rel=1e-6)
    loss_db = -20 * np.log10(np.abs(t))
    np.testing.assert_allclose(loss_db, 3.0 * length_um * 1e-4, rtol=1e-12)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_every_model_is_reciprocal_and_passive(name):
    s = MODELS[name](wavelength_um=np.array([1.53, 1.57]))
    ports = sorted({p for pair in s for p in pair})
    dense = np.zeros((2, len(ports), len(ports)), dtype=np.complex128)
    for (a, b), v in s.items():
        dense[:, ports.index(b), ports.index(a)] = v
    np.testing.assert_allclose(dense, np.swapaxes(dense, 1, 2), atol=0)
    assert np.linalg.norm(dense, ord=2, axis=(1, 2)).max() <= 1 + 1e-12


def test_jax_runs_in_double_precision():
    s = phase_shifter(phase_rad=1.0)
    assert np.asarray(s[("in0", "out0")]).dtype == np.complex128
    assert torch.get_default_dtype() == torch.float32  # we do not touch torch's default
