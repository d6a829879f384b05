"""Library component models: the mapping of the hub's devices onto simphony's parts, the
port convention, the composed MZI, and JAX's process-wide settings left alone."""

from __future__ import annotations

import importlib
import math
import pkgutil
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from simphony.libraries import ideal

import circuits
from circuits.models import (
    COUPLER_PORTS,
    MODELS,
    ArmWaveguide,
    common_path_factor,
    coupler,
    double_precision,
    mzi,
)
from photonic import mzi_matrix

LAMBDA0_UM = 1.55
SWEEP_UM = np.linspace(1.53, 1.57, 5)
waveguide = double_precision(ideal.waveguide)  # the library part, evaluated in float64


def _t2(s) -> np.ndarray:
    """T[..., out, in] of a two-port-pair SDict with hub ports in0, in1, out0, out1."""
    t = [[s[("in0", "out0")], s[("in1", "out0")]], [s[("in0", "out1")], s[("in1", "out1")]]]
    return np.moveaxis(np.asarray(t, dtype=np.complex128), (0, 1), (-2, -1))


def test_every_circuits_module_imports():
    names = [m.name for m in pkgutil.iter_modules(circuits.__path__, "circuits.")]
    assert {"circuits.models", "circuits.netlist", "circuits.layout"} <= set(names)
    for name in names:
        importlib.import_module(name)
    for name in circuits.__all__:  # every lazy re-export resolves
        assert getattr(circuits, name) is not None


def test_importing_and_using_circuits_leaves_jax_process_settings_alone():
    """klujax (SAX's solver) sets x64 and the CPU platform on import; circuits puts them back
    and runs its own solves in a scoped float64 context."""
    script = textwrap.dedent(
        """
        import jax
        before = {k: jax.config.values[k] for k in ("jax_enable_x64", "jax_platform_name")}
        import circuits, circuits.models
        imported = {k: jax.config.values[k] for k in before}
        s = circuits.mzi(theta_rad=0.4)[("in0", "out0")]
        used = {k: jax.config.values[k] for k in before}
        import jax.numpy as jnp
        print(before == imported == used, before["jax_enable_x64"], s.dtype,
              jnp.asarray(1.0).dtype)
        """
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         check=True).stdout.split()
    assert out == ["True", "False", "complex128", "float32"]


def test_library_coupler_is_the_hub_coupler_at_the_mapped_angle():
    """coupling = sin²κ, phi = π/2: B(κ) = [[cos κ, i sin κ], [i sin κ, cos κ]] · 10^(−IL/20),
    κ(λ) = (π/4 + error)(1 + D (λ − λ0)); ports in0/out0 = o2/o3 (top), in1/out1 = o0/o1."""
    error, disp, loss_db = 0.02, 0.4, 0.5
    s = coupler(wl=SWEEP_UM, error_rad=error, coupler_dispersion_per_um=disp, loss_db=loss_db)
    p = COUPLER_PORTS
    t = np.array([[s[(p[f"in{j}"], p[f"out{i}"])] for j in range(2)] for i in range(2)])
    kappa = (math.pi / 4 + error) * (1 + disp * (SWEEP_UM - LAMBDA0_UM))
    amp = 10 ** (-loss_db / 20)
    expected = amp * np.array([[np.cos(kappa), 1j * np.sin(kappa)],
                               [1j * np.sin(kappa), np.cos(kappa)]])
    np.testing.assert_allclose(t, expected, atol=1e-15)
    assert abs(t[0, 0, 0] - t[0, 0, -1]) > 5e-3  # the sweep moves κ: not a flat coupler


def test_mzi_port_convention_pinned_by_an_asymmetric_example():
    """φ sits on the top input (in0) only; the SAX S-dict maps to the hub's T[out, in]."""
    theta, phi = 0.9, 2.1
    t = _t2(mzi(theta_rad=theta, phi_rad=phi)) / common_path_factor(sections=2)
    g = 1j * np.exp(1j * theta / 2)
    s, c = math.sin(theta / 2), math.cos(theta / 2)
    closed_form = g * np.array([[np.exp(1j * phi) * s, c], [np.exp(1j * phi) * c, -s]])
    np.testing.assert_allclose(t, closed_form, atol=1e-12)
    # in1 → out1 carries no φ; in0 → out0 does: swapping the ports would fail this.
    assert abs(np.angle(t[1, 1] / (-g * s))) < 1e-12
    assert abs(np.angle(t[0, 0] / (g * s)) - phi) < 1e-12


def test_composed_mzi_equals_hub_mzi_over_a_sweep_with_errors_loss_and_dispersion():
    """Library parts, dispersive arms (ng ≠ neff): the hub's MZI at θλ0/λ, φλ0/λ, κ(λ)."""
    theta, phi, alpha, beta, loss_db, disp = 0.7, 1.9, 0.031, -0.047, 0.37, 0.3
    arm = ArmWaveguide(section_length_um=150.0, neff=2.4, ng=4.2)
    s = mzi(wavelength_um=SWEEP_UM, theta_rad=theta, phi_rad=phi, alpha_rad=alpha,
            beta_rad=beta, loss_db=loss_db, coupler_dispersion_per_um=disp, arm=arm)
    t = _t2(s) / common_path_factor(sections=2, wavelength_um=SWEEP_UM, arm=arm)[:, None, None]
    scale = torch.as_tensor(LAMBDA0_UM / SWEEP_UM)
    kappa_scale = torch.as_tensor(1 + disp * (SWEEP_UM - LAMBDA0_UM))
    hub = mzi_matrix(theta * scale, phi * scale, alpha=(math.pi / 4 + alpha) * kappa_scale
                     - math.pi / 4, beta=(math.pi / 4 + beta) * kappa_scale - math.pi / 4,
                     loss_db=loss_db).numpy()
    np.testing.assert_allclose(t, hub, atol=1e-12)
    power_out = np.sum(np.abs(t) ** 2, axis=-2)
    np.testing.assert_allclose(power_out, 10 ** (-loss_db / 10), rtol=1e-12)


def test_shifted_arm_differs_from_bare_arm_by_the_hubs_phase_law_while_both_disperse():
    """Δn non-dispersive on a dispersive waveguide: arm difference φ λ0/λ exactly, each arm's
    group delay dφ/dλ = −2π n_g L / λ² (definition of the group index)."""
    arm = ArmWaveguide(section_length_um=120.0, neff=2.4, ng=4.2)
    phase = 2.5
    net, _, _ = circuits.mzi_netlist(phi_rad=phase, arm=arm)
    top = waveguide(wl=SWEEP_UM, **net["ext_top"]["settings"])[("o0", "o1")]
    bare = waveguide(wl=SWEEP_UM, **net["ext_bot"]["settings"])[("o0", "o1")]
    np.testing.assert_allclose(np.angle(top / bare), phase * LAMBDA0_UM / SWEEP_UM, atol=1e-12)
    h = 1e-6
    pair = waveguide(wl=np.array([LAMBDA0_UM - h, LAMBDA0_UM + h]),
                           **net["ext_bot"]["settings"])[("o0", "o1")]
    dphi_dwl = np.angle(pair[1] / pair[0]) / (2 * h)
    assert dphi_dwl == pytest.approx(-2 * math.pi * 4.2 * 120.0 / LAMBDA0_UM**2, rel=1e-6)


def test_arm_loss_is_in_db_per_cm_and_pad_loss_in_db_over_the_section():
    """1 cm at 3 dB/cm loses 3 dB; a pad section carries its extra dB on top (library units)."""
    long_arm = ArmWaveguide(section_length_um=1e4, loss_db_per_cm=3.0)
    t = common_path_factor(sections=1, arm=long_arm)
    assert -20 * math.log10(abs(t)) == pytest.approx(3.0, rel=1e-12)
    arm = ArmWaveguide(loss_db_per_cm=2.0)
    pad = arm.settings(wavelength0_um=LAMBDA0_UM, length_um=200.0, extra_loss_db=0.3)
    t = waveguide(wl=LAMBDA0_UM, **pad)[("o0", "o1")]
    assert -20 * math.log10(abs(t)) == pytest.approx(0.3 + 2.0 * 200e-4, rel=1e-12)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_every_model_is_reciprocal_and_passive(name):
    s = double_precision(MODELS[name])(wl=SWEEP_UM[[0, -1]])
    ports = sorted({p for pair in s for p in pair})
    dense = np.zeros((2, len(ports), len(ports)), dtype=np.complex128)
    for (a, b), v in s.items():
        dense[:, ports.index(b), ports.index(a)] = v
    np.testing.assert_allclose(dense, np.swapaxes(dense, 1, 2), atol=0)
    assert np.linalg.norm(dense, ord=2, axis=(1, 2)).max() <= 1 + 1e-12


def test_bad_parameters_name_the_field_value_and_rule():
    with pytest.raises(ValueError, match=r"ArmWaveguide.ng=-1.0 must be finite and > 0"):
        ArmWaveguide(ng=-1.0)
    with pytest.raises(ValueError, match=r"ArmWaveguide.loss_db_per_cm=nan must be finite"):
        ArmWaveguide(loss_db_per_cm=float("nan"))
    with pytest.raises(ValueError, match=r"mzi: alpha_rad gives a coupler angle κ=1.785.* "
                                         r"outside \[0, π/2\]"):
        mzi(alpha_rad=1.0)
