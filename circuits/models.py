"""Library component models of an MZI mesh and the mapping of the hub's devices onto them.

The components are simphony's own (simphony 0.7.3, ``simphony.libraries.ideal``, SAX models):

- ``coupler(coupling, loss, phi)``: ports ``o0`` (bottom left), ``o1`` (bottom right), ``o2``
  (top left), ``o3`` (top right); bar ``√(1 − coupling)``, cross ``√coupling · e^{i phi}``,
  both times ``10^(−loss/20)`` (``loss`` in dB);
- ``waveguide(wl, wl0, neff, ng, length, loss)``: first-order dispersion
  ``n(λ) = neff − (λ − λ0)(ng − neff)/λ0``, phase ``2π n(λ) L / λ``, ``loss`` in dB/cm.

Mapping of the hub's devices (``photonic.mzi``, ``photonic.noise``) onto their parameters:

- coupler angle κ of ``B(κ) = [[cos κ, i sin κ], [i sin κ, cos κ]]`` → ``coupling = sin²κ``
  with the library's default ``phi = π/2`` (cross amplitude ``i sin κ``); exact for
  0 ≤ κ ≤ π/2. The hub's angle law ``κ(λ) = (π/4 + error)(1 + D (λ − λ0))`` is evaluated at
  each wavelength and handed to the library coupler, which is itself wavelength-flat: over a
  sweep the coupler's dispersion is the hub's law by construction, the rest (the S-matrix of
  each coupler, the phases and dispersion of the arms, the composition) is the library's.
- MZI insertion loss ``loss_db`` → ``loss = loss_db / 2`` on each of its two couplers: a
  mode-independent factor ``10^(−loss_db/20)``, as the hub applies it.
- phase shifter φ → a waveguide section of length L on *both* arms (library ``neff``, ``ng``);
  on the shifted arm the index is raised by ``Δn = φ λ0 / (2π L)``, and ``ng`` by the same Δn
  (a non-dispersive index change, dΔn/dλ = 0, since ``ng = n − λ dn/dλ``). The arm difference
  is then ``2π Δn L / λ = φ λ0 / λ``, the hub's phase model, exactly, while each arm carries
  the full waveguide dispersion. The hub's phases are used as they are: a negative φ is an
  index decrease.
- Every path through a mesh crosses the same number of sections (two per column, one in the
  output screen; idle modes get a section pair of the same length), so the arms' own
  propagation ``2π n(λ) L_path / λ`` and loss are a factor common to all entries of the
  circuit's S-matrix (:func:`common_path_factor`), which the hub's ``T`` leaves out.

Double precision: the cross-check is to 1e-9 and JAX's default float32 would limit it to
~1e-7, so every entry point here runs inside a scoped ``jax.enable_x64(True)``. Importing this
module leaves JAX's process-wide settings as they were, although importing SAX's sparse solver
(klujax) would switch them (see :func:`_jax_flags_kept`).
"""

from __future__ import annotations

import contextlib
import functools
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np


@contextlib.contextmanager
def _jax_flags_kept(*names: str) -> Iterator[None]:
    """Restore process-wide JAX flags that an import sets as a side effect."""
    saved = {name: jax.config.values[name] for name in names}
    try:
        yield
    finally:
        for name, value in saved.items():
            jax.config.update(name, value)


# klujax, SAX's default sparse solver, switches JAX to float64 and to the CPU platform for the
# whole process when imported; the flags are put back, and double precision is scoped instead.
with _jax_flags_kept("jax_enable_x64", "jax_platform_name"):
    import sax
    from simphony.libraries import ideal

__all__ = [
    "COUPLER_PORTS",
    "MODELS",
    "WAVEGUIDE_PORTS",
    "ArmWaveguide",
    "check_coupler_angles",
    "common_path_factor",
    "coupler",
    "coupler_angle_rad",
    "coupling_from_angle",
    "double_precision",
    "mzi",
    "mzi_netlist",
    "shifter_index_change",
]

WAVELENGTH0_UM = 1.55  # design wavelength of the hub's wavelength model (C band)

# Hub port (index 0 = top mode m of an MZI on (m, m + 1)) → simphony port of the library part.
COUPLER_PORTS: dict[str, str] = {"in0": "o2", "in1": "o0", "out0": "o3", "out1": "o1"}
WAVEGUIDE_PORTS: dict[str, str] = {"in0": "o0", "out0": "o1"}


def double_precision(fn: Callable) -> Callable:
    """Run ``fn`` with JAX in float64 / complex128, restoring the caller's setting after."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with jax.enable_x64(True):
            return fn(*args, **kwargs)

    return wrapper


@dataclass(frozen=True)
class ArmWaveguide:
    """The waveguide of every phase-shifter section (both arms of every shifter position).

    Defaults: simphony's ideal waveguide (``neff`` 2.34, ``ng`` 3.4 at 1.55 µm) and the hub's
    default shifter length (``photonic.devices.PhaseShifterParams.length_um`` = 100 µm).
    """

    section_length_um: float = 100.0
    neff: float = 2.34
    ng: float = 3.4
    loss_db_per_cm: float = 0.0

    def __post_init__(self) -> None:
        rules = {
            "section_length_um": self.section_length_um > 0,
            "neff": self.neff > 0,
            "ng": self.ng > 0,
            "loss_db_per_cm": self.loss_db_per_cm >= 0,
        }
        for name, ok in rules.items():
            value = getattr(self, name)
            if not (math.isfinite(value) and ok):
                rule = "≥ 0" if name == "loss_db_per_cm" else "> 0"
                raise ValueError(f"ArmWaveguide.{name}={value!r} must be finite and {rule}")

    def settings(self, *, wavelength0_um: float, index_change: float = 0.0,
                 length_um: float | None = None, extra_loss_db: float = 0.0) -> dict:
        """Library ``waveguide`` settings of one section, raised in index by ``index_change``
        and with ``extra_loss_db`` (dB over the section) on top of the propagation loss."""
        length = self.section_length_um if length_um is None else float(length_um)
        return {
            "wl0": float(wavelength0_um),
            "length": length,
            "neff": self.neff + float(index_change),
            "ng": self.ng + float(index_change),
            "loss": self.loss_db_per_cm + float(extra_loss_db) / (length * 1e-4),
        }


def coupler_angle_rad(
    *,
    wavelength_um: float | np.ndarray = WAVELENGTH0_UM,
    wavelength0_um: float = WAVELENGTH0_UM,
    error_rad: float | np.ndarray = 0.0,
    coupler_dispersion_per_um: float = 0.0,
):
    """The hub's coupler angle κ(λ) = (π/4 + error) · (1 + D · (λ − λ0)); NumPy or JAX in, out."""
    scale = 1.0 + coupler_dispersion_per_um * (wavelength_um - wavelength0_um)
    return (math.pi / 4 + error_rad) * scale


def coupling_from_angle(kappa_rad):
    """Library coupler power coupling of the hub's angle: ``coupling = sin²κ``."""
    return jnp.sin(kappa_rad) ** 2


def check_coupler_angles(
    *,
    where: str,
    wavelength_um: float | np.ndarray,
    wavelength0_um: float,
    coupler_dispersion_per_um: float,
    **errors_rad: float | np.ndarray,
) -> None:
    """Every angle κ(λ) of these coupler errors over the sweep must lie in [0, π/2], where a
    library coupler (``coupling = sin²κ``) represents the hub's B(κ)."""
    wl = np.asarray(wavelength_um, dtype=np.float64)[..., None]
    for name, err in errors_rad.items():
        kappa = coupler_angle_rad(wavelength_um=wl, wavelength0_um=wavelength0_um,
                                  error_rad=np.asarray(err, dtype=np.float64),
                                  coupler_dispersion_per_um=coupler_dispersion_per_um)
        bad = ~((kappa >= 0) & (kappa <= math.pi / 2))
        if bad.any():
            raise ValueError(
                f"{where}: {name} gives a coupler angle κ={float(kappa[bad].flat[0])!r} rad "
                f"with coupler_dispersion_per_um={coupler_dispersion_per_um!r}, outside "
                "[0, π/2] where a library coupler (coupling = sin²κ) represents B(κ); reduce "
                "the coupler error or the dispersion over the sweep"
            )


@double_precision
def coupler(
    *,
    wl: float | np.ndarray = WAVELENGTH0_UM,
    wl0: float = WAVELENGTH0_UM,
    error_rad: float = 0.0,
    coupler_dispersion_per_um: float = 0.0,
    loss_db: float = 0.0,
) -> sax.SDict:
    """simphony's ideal coupler at the hub's angle κ(λ) (ports as :data:`COUPLER_PORTS`).

    ``wl``/``wl0`` are named as the library's waveguide names them, so one global wavelength
    setting of a SAX circuit reaches couplers and waveguides alike.
    """
    kappa = coupler_angle_rad(
        wavelength_um=wl,
        wavelength0_um=wl0,
        error_rad=error_rad,
        coupler_dispersion_per_um=coupler_dispersion_per_um,
    )
    return ideal.coupler(coupling=coupling_from_angle(kappa), loss=loss_db)


MODELS: dict[str, Callable[..., sax.SDict]] = {
    "coupler": coupler,
    "waveguide": ideal.waveguide,
}


def shifter_index_change(phase_rad, *, wavelength0_um: float, length_um: float):
    """Index change Δn of a section of ``length_um`` that shifts by ``phase_rad`` at λ0."""
    return np.asarray(phase_rad, dtype=np.float64) * wavelength0_um / (2 * math.pi * length_um)


def mzi_netlist(
    *,
    prefix: str = "",
    theta_rad: float = 0.0,
    phi_rad: float = 0.0,
    alpha_rad: float = 0.0,
    beta_rad: float = 0.0,
    loss_db: float = 0.0,
    arm: ArmWaveguide = ArmWaveguide(),
    wavelength0_um: float = WAVELENGTH0_UM,
) -> tuple[dict[str, dict], dict[str, str], dict[str, str]]:
    """Instances, connections and ports of one physical MZI of library components.

    Light order: external section (φ on the top arm), input coupler (error α), internal
    section (θ on the top arm), output coupler (error β). Returns ``(instances, connections,
    ports)``, ``ports`` mapping ``in0, in1, out0, out1`` to ``"instance,port"``; instance names
    start with ``prefix`` so that a mesh holds many MZIs in one flat netlist.
    """
    p, wg, dc = prefix, WAVEGUIDE_PORTS, COUPLER_PORTS
    shift = functools.partial(
        shifter_index_change, wavelength0_um=wavelength0_um, length_um=arm.section_length_um
    )
    bare = {"component": "waveguide", "settings": arm.settings(wavelength0_um=wavelength0_um)}

    def shifted(phase: float) -> dict:
        settings = arm.settings(wavelength0_um=wavelength0_um, index_change=shift(phase))
        return {"component": "waveguide", "settings": settings}

    def coupler_instance(error: float) -> dict:
        settings = {"wl0": float(wavelength0_um), "error_rad": float(error),
                    "loss_db": float(loss_db) / 2.0}
        return {"component": "coupler", "settings": settings}

    instances = {
        f"{p}ext_top": shifted(phi_rad),
        f"{p}ext_bot": bare,
        f"{p}dc_in": coupler_instance(alpha_rad),
        f"{p}int_top": shifted(theta_rad),
        f"{p}int_bot": bare,
        f"{p}dc_out": coupler_instance(beta_rad),
    }
    connections = {
        f"{p}ext_top,{wg['out0']}": f"{p}dc_in,{dc['in0']}",
        f"{p}ext_bot,{wg['out0']}": f"{p}dc_in,{dc['in1']}",
        f"{p}dc_in,{dc['out0']}": f"{p}int_top,{wg['in0']}",
        f"{p}dc_in,{dc['out1']}": f"{p}int_bot,{wg['in0']}",
        f"{p}int_top,{wg['out0']}": f"{p}dc_out,{dc['in0']}",
        f"{p}int_bot,{wg['out0']}": f"{p}dc_out,{dc['in1']}",
    }
    ports = {
        "in0": f"{p}ext_top,{wg['in0']}",
        "in1": f"{p}ext_bot,{wg['in0']}",
        "out0": f"{p}dc_out,{dc['out0']}",
        "out1": f"{p}dc_out,{dc['out1']}",
    }
    return instances, connections, ports


@double_precision
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
    arm: ArmWaveguide = ArmWaveguide(),
) -> sax.SDict:
    """One MZI solved by SAX from library parts (:func:`mzi_netlist`); ports in0 … out1.

    Equals ``common_path_factor(sections=2) · 10^(−loss_db/20) · B(β) diag(e^{iθ'}, 1) B(α)
    diag(e^{iφ'}, 1)`` with θ' = θ λ0/λ, φ' = φ λ0/λ and κ(λ) of :func:`coupler_angle_rad`.
    """
    check_coupler_angles(where="mzi", wavelength_um=wavelength_um, wavelength0_um=wavelength0_um,
                         coupler_dispersion_per_um=coupler_dispersion_per_um,
                         alpha_rad=alpha_rad, beta_rad=beta_rad)
    instances, connections, ports = mzi_netlist(
        theta_rad=theta_rad, phi_rad=phi_rad, alpha_rad=alpha_rad, beta_rad=beta_rad,
        loss_db=loss_db, arm=arm, wavelength0_um=wavelength0_um,
    )
    circuit, _ = sax.circuit(
        {"instances": instances, "connections": connections, "ports": ports}, models=MODELS
    )
    return circuit(wl=jnp.asarray(wavelength_um, dtype=jnp.float64),
                   coupler_dispersion_per_um=coupler_dispersion_per_um)


@double_precision
def common_path_factor(
    *,
    sections: int,
    wavelength_um: float | np.ndarray = WAVELENGTH0_UM,
    wavelength0_um: float = WAVELENGTH0_UM,
    arm: ArmWaveguide = ArmWaveguide(),
) -> np.ndarray:
    """Field factor every path shares: the library waveguide over ``sections`` × L."""
    s = ideal.waveguide(
        wl=jnp.asarray(wavelength_um, dtype=jnp.float64),
        wl0=wavelength0_um,
        neff=arm.neff,
        ng=arm.ng,
        length=sections * arm.section_length_um,
        loss=arm.loss_db_per_cm,
    )
    return np.asarray(s[(WAVEGUIDE_PORTS["in0"], WAVEGUIDE_PORTS["out0"])], dtype=np.complex128)
