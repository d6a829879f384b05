"""SAX (simphony) S-parameter models of the devices of an MZI mesh.

Each model is a small pure function with keyword-only arguments, physical defaults and units
in the names, returning a reciprocal SAX ``SDict``. Port names: ``in0, in1`` on the left and
``out0, out1`` on the right, index 0 being the *top* mode m of an MZI acting on (m, m + 1), so
that ``S[(f"in{j}", f"out{i}")] == T[i, j]`` of the hub's ``T[out, in]`` convention.

Device physics is exactly the hub's (``photonic.mzi``, CONTRIBUTING.md):

- coupler ``B(κ) = [[cos κ, i sin κ], [i sin κ, cos κ]]`` with
  ``κ(λ) = (π/4 + error) · (1 + coupler_dispersion_per_um · (λ − λ0))``;
- phase shifter ``e^{i φ λ0/λ}`` (fixed optical path difference, phase ∝ 1/λ);
- MZI ``M(θ, φ) = B(β) · diag(e^{iθ}, 1) · B(α) · diag(e^{iφ}, 1)`` times
  ``10^(−loss_db/20)``; the insertion loss is put half in each coupler as symmetric excess
  loss, which keeps it mode-independent as the hub assumes.

Double precision: the cross-check against the hub is to 1e-9, so JAX runs in float64 once
this package is imported (JAX's default float32 would limit agreement to ~1e-7).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable

import jax

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import sax  # noqa: E402

__all__ = [
    "MODELS",
    "directional_coupler",
    "phase_shifter",
    "waveguide",
    "mzi",
    "mzi_netlist",
    "coupler_angle_rad",
]

WAVELENGTH0_UM = 1.55  # design wavelength of the hub's wavelength model (C band)


def coupler_angle_rad(
    *,
    wavelength_um: float | np.ndarray = WAVELENGTH0_UM,
    wavelength0_um: float = WAVELENGTH0_UM,
    error_rad: float = 0.0,
    coupler_dispersion_per_um: float = 0.0,
):
    """Coupler angle κ(λ) = (π/4 + error) · (1 + coupler_dispersion_per_um · (λ − λ0))."""
    wl = jnp.asarray(wavelength_um, dtype=jnp.float64)
    return (math.pi / 4 + error_rad) * (1.0 + coupler_dispersion_per_um * (wl - wavelength0_um))


def directional_coupler(
    *,
    wavelength_um: float | np.ndarray = WAVELENGTH0_UM,
    wavelength0_um: float = WAVELENGTH0_UM,
    error_rad: float = 0.0,
    coupler_dispersion_per_um: float = 0.0,
    loss_db: float = 0.0,
) -> sax.SDict:
    """2×2 directional coupler B(κ(λ)) with splitting-angle error and excess loss.

    ``error_rad`` is the splitting-angle error (κ = π/4 + error; Hamerly et al.,
    arXiv 2109.05367); ``loss_db`` the symmetric excess loss of the coupler.
    """
    kappa = coupler_angle_rad(
        wavelength_um=wavelength_um,
        wavelength0_um=wavelength0_um,
        error_rad=error_rad,
        coupler_dispersion_per_um=coupler_dispersion_per_um,
    )
    amp = 10.0 ** (-loss_db / 20.0)
    bar = amp * jnp.cos(kappa) + 0j
    cross = 1j * amp * jnp.sin(kappa)
    return sax.reciprocal(
        {
            ("in0", "out0"): bar,
            ("in1", "out1"): bar,
            ("in0", "out1"): cross,
            ("in1", "out0"): cross,
        }
    )


def phase_shifter(
    *,
    wavelength_um: float | np.ndarray = WAVELENGTH0_UM,
    wavelength0_um: float = WAVELENGTH0_UM,
    phase_rad: float = 0.0,
    loss_db: float = 0.0,
) -> sax.SDict:
    """Single-mode phase shifter ``10^(−loss_db/20) · e^{i phase_rad · λ0/λ}``.

    ``phase_rad`` is the phase at the design wavelength ``wavelength0_um``; a fixed optical
    path difference gives a phase ∝ 1/λ.
    """
    wl = jnp.asarray(wavelength_um, dtype=jnp.float64)
    amp = 10.0 ** (-loss_db / 20.0)
    return sax.reciprocal({("in0", "out0"): amp * jnp.exp(1j * phase_rad * wavelength0_um / wl)})


def waveguide(
    *,
    wavelength_um: float | np.ndarray = WAVELENGTH0_UM,
    wavelength0_um: float = WAVELENGTH0_UM,
    length_um: float = 10.0,
    neff: float = 2.34,
    ng: float = 3.4,
    loss_db_per_cm: float = 0.0,
) -> sax.SDict:
    """Straight waveguide with first-order dispersion and propagation loss.

    ``n_eff(λ) = neff − (λ − λ0)(ng − neff)/λ0`` (ng = neff − λ dn/dλ), phase
    ``2π n_eff(λ) L / λ``, field amplitude ``10^(−loss_db_per_cm · L[cm] / 20)``. Defaults are
    those of simphony's ideal waveguide (220 nm SOI strip at 1550 nm).
    """
    wl = jnp.asarray(wavelength_um, dtype=jnp.float64)
    n_eff = neff - (wl - wavelength0_um) * (ng - neff) / wavelength0_um
    amp = 10.0 ** (-loss_db_per_cm * length_um * 1e-4 / 20.0)
    return sax.reciprocal({("in0", "out0"): amp * jnp.exp(2j * jnp.pi * n_eff * length_um / wl)})


MODELS: dict[str, Callable[..., sax.SDict]] = {
    "directional_coupler": directional_coupler,
    "phase_shifter": phase_shifter,
    "waveguide": waveguide,
}


def mzi_netlist(
    *,
    prefix: str = "",
    theta_rad: float = 0.0,
    phi_rad: float = 0.0,
    alpha_rad: float = 0.0,
    beta_rad: float = 0.0,
    loss_db: float = 0.0,
) -> tuple[dict[str, dict], dict[str, str], dict[str, str]]:
    """Instances, internal connections and ports of one physical MZI built from primitives.

    Light order: external shifter φ on the top input, input coupler (error α), internal
    shifter θ on the top arm, output coupler (error β). Returns ``(instances, connections,
    ports)`` where ``ports`` maps ``in0, in1, out0, out1`` to ``"instance,port"``; instance
    names start with ``prefix`` so that a mesh can hold many MZIs in one flat netlist.
    """
    p = prefix
    half_db = float(loss_db) / 2.0
    instances = {
        f"{p}ext": {"component": "phase_shifter", "settings": {"phase_rad": float(phi_rad)}},
        f"{p}dc_in": {
            "component": "directional_coupler",
            "settings": {"error_rad": float(alpha_rad), "loss_db": half_db},
        },
        f"{p}int": {"component": "phase_shifter", "settings": {"phase_rad": float(theta_rad)}},
        f"{p}dc_out": {
            "component": "directional_coupler",
            "settings": {"error_rad": float(beta_rad), "loss_db": half_db},
        },
    }
    connections = {
        f"{p}ext,out0": f"{p}dc_in,in0",
        f"{p}dc_in,out0": f"{p}int,in0",
        f"{p}int,out0": f"{p}dc_out,in0",
        f"{p}dc_in,out1": f"{p}dc_out,in1",
    }
    ports = {
        "in0": f"{p}ext,in0",
        "in1": f"{p}dc_in,in1",
        "out0": f"{p}dc_out,out0",
        "out1": f"{p}dc_out,out1",
    }
    return instances, connections, ports


def mzi(
    *,
    wavelength_um: float | np.ndarray = WAVELENGTH0_UM,
    wavelength0_um: float = WAVELENGTH0_UM,
    theta_rad: float = 0.0,
    phi_rad: float = 0.0,
    alpha_rad: float = 0.0,
    beta_rad: float = 0.0,
    loss_db: float = 0.0,
    coupler_dispersion_per_um: float = 0.0,
) -> sax.SDict:
    """Physical MZI ``10^(−loss_db/20) · B(β) diag(e^{iθ}, 1) B(α) diag(e^{iφ}, 1)``.

    Solved as a SAX circuit of :func:`phase_shifter` and :func:`directional_coupler`
    instances (see :func:`mzi_netlist`), so it tests the composition, not a closed form.
    """
    half_db = float(loss_db) / 2.0
    return _mzi_circuit()(
        wavelength_um=wavelength_um,
        wavelength0_um=wavelength0_um,
        coupler_dispersion_per_um=coupler_dispersion_per_um,
        ext={"phase_rad": phi_rad},
        dc_in={"error_rad": alpha_rad, "loss_db": half_db},
        int={"phase_rad": theta_rad},
        dc_out={"error_rad": beta_rad, "loss_db": half_db},
    )


@functools.cache
def _mzi_circuit() -> Callable[..., sax.SDict]:
    """The MZI netlist analysed once; :func:`mzi` passes per-instance settings at call time."""
    instances, connections, ports = mzi_netlist()
    circuit, _ = sax.circuit(
        {"instances": instances, "connections": connections, "ports": ports}, models=MODELS
    )
    return circuit
