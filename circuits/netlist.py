"""Netlist builder: a programmed hub mesh as a SAX circuit of library parts, and its S-matrix.

The circuit is flat and made of simphony's own coupler and waveguide models only
(:mod:`circuits.models`): per MZI two arm sections around an input coupler, two more around the
output coupler (:func:`circuits.models.mzi_netlist`); an idle mode of a column gets a section of
the same length (a loss-matching pad in a balanced mesh), and the output phase screen is one
section per mode. SAX solves the S-matrix; it never multiplies 2×2 blocks itself, so it is an
independent check of the hub's ``T = diag(e^{i out_phase}) · M_{K−1} ⋯ M_0``:
``S = common_path_factor · T``, where the common factor is the arms' own propagation over the
``2 · depth + 1`` sections every path crosses (:func:`mesh_path_factor`).

Mesh ports are ``in0 … in{N−1}`` and ``out0 … out{N−1}``; :func:`mesh_smatrix` returns the
hub's convention ``T[out, in]``, i.e. ``T[i, j] = S[(f"in{j}", f"out{i}")]``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from circuits.models import (  # sax is imported there with JAX's process-wide flags kept
    MODELS,
    WAVEGUIDE_PORTS,
    WAVELENGTH0_UM,
    ArmWaveguide,
    check_coupler_angles,
    common_path_factor,
    double_precision,
    mzi_netlist,
    sax,
    shifter_index_change,
)
from photonic.devices import DeviceParams
from photonic.mesh import BALANCED_TOPOLOGIES
from photonic.noise import MeshErrors, NoiseConfig
from photonic.textutil import did_you_mean

__all__ = [
    "BACKENDS",
    "hub_settings",
    "mesh_netlist",
    "mesh_path_factor",
    "mesh_sections",
    "mesh_smatrix",
    "sdict_to_transfer",
]

# SAX circuit solvers by name (klu: sparse LU, the SAX default; fg: Filipsson–Gunnar).
# SAX's "additive" backend is left out: it enumerates paths, exponential in a mesh's depth.
BACKENDS: dict[str, str] = {"klu": "klu", "fg": "filipsson_gunnar"}


# Hub noise switches the circuit's parts represent, and those that act after the mesh (on its
# inputs and detected outputs); any other switch acts on the phases.
_CIRCUIT_SWITCHES = ("coupler_error", "insertion_loss")
_DETECTION_SWITCHES = ("input_quantization", "detector_noise", "output_quantization")


def hub_settings(
    layout: Any,
    device: DeviceParams,
    *,
    noise: NoiseConfig | None = None,
    errors: MeshErrors | None = None,
    arm: ArmWaveguide | None = None,
) -> dict[str, Any]:
    """:func:`mesh_smatrix` keyword arguments that put a hub chip on the library circuit.

    ``device.design_wavelength_um`` → λ0 of every part; ``device.coupler.dispersion_per_um`` →
    the couplers' κ(λ); with ``noise.coupler_error`` the chip's ``errors.alpha_rad``/``beta_rad``
    → coupler errors; with ``noise.insertion_loss`` ``errors.loss_db`` (or the nominal
    ``device.mzi.insertion_loss_db``) → MZI losses, and in a balanced topology the nominal loss
    → every pad. ``arm`` defaults to sections of ``device.shifter.length_um``;
    ``noise.wavelength_um`` (if set) → ``wavelength_um``, which a sweep overrides.
    """
    noise = noise or NoiseConfig()
    others = [f for f, v in noise.model_dump().items()
              if v is True and f not in _CIRCUIT_SWITCHES + _DETECTION_SWITCHES]
    if others:
        raise ValueError(
            f"noise switches {others} act on the phases, not on circuit parts; pass the "
            "realised phases (photonic.noise.realise_phases) and switch them off here"
        )
    if noise.coupler_error and errors is None:
        raise ValueError("noise.coupler_error=True needs the chip's errors (errors=MeshErrors)")
    kw: dict[str, Any] = {
        "wavelength0_um": device.design_wavelength_um,
        "coupler_dispersion_per_um": device.coupler.dispersion_per_um,
        "arm": arm or ArmWaveguide(section_length_um=device.shifter.length_um),
    }
    if noise.wavelength_um is not None:
        kw["wavelength_um"] = noise.wavelength_um
    if noise.coupler_error:
        kw["alpha_rad"] = _as_numpy(errors.alpha_rad)
        kw["beta_rad"] = _as_numpy(errors.beta_rad)
    if noise.insertion_loss:
        nominal = device.mzi.insertion_loss_db
        kw["loss_db"] = _as_numpy(errors.loss_db) if errors is not None else nominal
        kw["pad_loss_db"] = nominal if layout.topology in BALANCED_TOPOLOGIES else 0.0
    return kw


def _per_mzi(value: Any, k: int, name: str) -> np.ndarray:
    arr = np.broadcast_to(np.asarray(value, dtype=np.float64), (k,))
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} must be finite; received {value!r}")
    return arr


def _as_numpy(x: Any) -> np.ndarray:
    return np.asarray(x.detach().cpu().numpy() if hasattr(x, "detach") else x, dtype=np.float64)


def mesh_sections(layout: Any) -> int:
    """Arm sections every path of a mesh crosses: two per column and the output screen."""
    return 2 * layout.depth + 1


class _Chain:
    """Flat netlist under construction: the last ``"instance,port"`` reached on each mode."""

    def __init__(self, n: int):
        self.instances: dict[str, dict] = {}
        self.connections: dict[str, str] = {}
        self.ports: dict[str, str] = {}
        self.head: list[str | None] = [None] * n

    def attach(self, mode: int, entry: str, exit_: str) -> None:
        if self.head[mode] is None:
            self.ports[f"in{mode}"] = entry
        else:
            self.connections[self.head[mode]] = entry
        self.head[mode] = exit_

    def section(self, mode: int, name: str, settings: dict) -> None:
        self.instances[name] = {"component": "waveguide", "settings": settings}
        self.attach(mode, f"{name},{WAVEGUIDE_PORTS['in0']}", f"{name},{WAVEGUIDE_PORTS['out0']}")

    def netlist(self) -> dict[str, dict]:
        for m, exit_ in enumerate(self.head):
            self.ports[f"out{m}"] = exit_
        return {"instances": self.instances, "connections": self.connections, "ports": self.ports}


def mesh_netlist(
    phases: Any,
    *,
    alpha_rad: Any = 0.0,
    beta_rad: Any = 0.0,
    loss_db: Any = 0.0,
    pad_loss_db: float = 0.0,
    arm: ArmWaveguide = ArmWaveguide(),
    wavelength0_um: float = WAVELENGTH0_UM,
) -> dict[str, dict]:
    """Flat SAX netlist of one programmed mesh, of library couplers and waveguides.

    ``phases`` is a hub ``MeshPhases`` of a single mesh (``.layout`` with ``.n``, ``.modes``,
    ``.columns``; ``.theta``, ``.phi`` (K,), ``.out_phase`` (N,), all in rad).
    ``alpha_rad``, ``beta_rad``, ``loss_db``: per-MZI input/output coupler errors and insertion
    loss, scalars or shape (K,) in light order. Every (mode, column) position without an MZI
    holds a section pair of length ``2 L`` carrying ``pad_loss_db``: the loss-matching pads of a
    balanced mesh (the hub pads Clements meshes with the nominal MZI loss,
    ``photonic.mesh.BALANCED_TOPOLOGIES``), and in any mesh the path-length match.
    """
    layout = phases.layout
    theta, phi = _as_numpy(phases.theta), _as_numpy(phases.phi)
    out_phase = _as_numpy(phases.out_phase)
    k, n = layout.num_mzis, layout.n
    if theta.shape != (k,) or phi.shape != (k,) or out_phase.shape != (n,):
        raise ValueError(
            "mesh_netlist takes one mesh: theta, phi of shape (K,) and out_phase of shape (N,) "
            f"with K={k}, N={n}; received {theta.shape}, {phi.shape}, {out_phase.shape}. "
            "Index a batch of meshes first."
        )
    if not (np.isfinite(pad_loss_db) and pad_loss_db >= 0):
        raise ValueError(f"pad_loss_db={pad_loss_db!r} must be finite and ≥ 0")
    alpha = _per_mzi(alpha_rad, k, "alpha_rad")
    beta = _per_mzi(beta_rad, k, "beta_rad")
    loss = _per_mzi(loss_db, k, "loss_db")
    modes, columns = np.asarray(layout.modes), np.asarray(layout.columns)
    chain = _Chain(n)
    pad = arm.settings(wavelength0_um=wavelength0_um, length_um=2 * arm.section_length_um,
                       extra_loss_db=pad_loss_db)
    order = np.argsort(columns, kind="stable")
    for col in range(layout.depth):
        in_column = order[columns[order] == col]
        covered = set(modes[in_column].tolist()) | set((modes[in_column] + 1).tolist())
        for m in sorted(set(range(n)) - covered):
            chain.section(m, f"pad_c{col}_m{m}", pad)
        for idx in in_column:
            inst, conn, mzi_ports = mzi_netlist(
                prefix=f"mzi{idx}_", theta_rad=theta[idx], phi_rad=phi[idx],
                alpha_rad=alpha[idx], beta_rad=beta[idx], loss_db=loss[idx], arm=arm,
                wavelength0_um=wavelength0_um,
            )
            chain.instances |= inst
            chain.connections |= conn
            m = int(modes[idx])
            chain.attach(m, mzi_ports["in0"], mzi_ports["out0"])
            chain.attach(m + 1, mzi_ports["in1"], mzi_ports["out1"])
    index = shifter_index_change(out_phase, wavelength0_um=wavelength0_um,
                                 length_um=arm.section_length_um)
    for m in range(n):
        settings = arm.settings(wavelength0_um=wavelength0_um, index_change=index[m])
        chain.section(m, f"screen{m}", settings)
    return chain.netlist()


def sdict_to_transfer(s: dict[tuple[str, str], Any], n: int) -> np.ndarray:
    """Hub-convention transfer matrix ``T[..., out, in]`` from a SAX SDict with mesh ports."""
    first = np.asarray(s[("in0", "out0")])
    t = np.empty(first.shape + (n, n), dtype=np.complex128)
    for i in range(n):
        for j in range(n):
            t[..., i, j] = np.asarray(s[(f"in{j}", f"out{i}")])
    return t


@double_precision
def mesh_smatrix(
    phases: Any,
    *,
    wavelength_um: float | np.ndarray = WAVELENGTH0_UM,
    wavelength0_um: float = WAVELENGTH0_UM,
    coupler_dispersion_per_um: float = 0.0,
    alpha_rad: Any = 0.0,
    beta_rad: Any = 0.0,
    loss_db: Any = 0.0,
    pad_loss_db: float = 0.0,
    arm: ArmWaveguide = ArmWaveguide(),
    backend: str = "klu",
) -> np.ndarray:
    """Circuit-simulated transfer matrix of a programmed mesh, ``T[..., out, in]``.

    Shape (N, N) for a scalar ``wavelength_um`` and (W, N, N) for a sweep of W wavelengths.
    This is the whole circuit, arms' propagation included: divide by :func:`mesh_path_factor`
    to compare with the hub's matrix. Device arguments as in :func:`mesh_netlist` and
    :mod:`circuits.models`; ``backend`` is a key of :data:`BACKENDS`.
    """
    if backend not in BACKENDS:
        raise ValueError(
            f"backend={backend!r} is not a SAX circuit backend; valid choices: "
            f"{sorted(BACKENDS)}{did_you_mean(backend, BACKENDS)}"
        )
    k = phases.layout.num_mzis
    check_coupler_angles(
        where="mesh_smatrix", wavelength_um=wavelength_um, wavelength0_um=wavelength0_um,
        coupler_dispersion_per_um=coupler_dispersion_per_um,
        alpha_rad=_per_mzi(alpha_rad, k, "alpha_rad"), beta_rad=_per_mzi(beta_rad, k, "beta_rad"),
    )
    netlist = mesh_netlist(
        phases, alpha_rad=alpha_rad, beta_rad=beta_rad, loss_db=loss_db,
        pad_loss_db=pad_loss_db, arm=arm, wavelength0_um=wavelength0_um,
    )
    circuit, _ = sax.circuit(netlist, models=MODELS, backend=BACKENDS[backend])
    s = circuit(
        wl=np.asarray(wavelength_um, dtype=np.float64),
        coupler_dispersion_per_um=float(coupler_dispersion_per_um),
    )
    return sdict_to_transfer(s, phases.layout.n)


def mesh_path_factor(
    layout: Any,
    *,
    wavelength_um: float | np.ndarray = WAVELENGTH0_UM,
    wavelength0_um: float = WAVELENGTH0_UM,
    arm: ArmWaveguide = ArmWaveguide(),
) -> np.ndarray:
    """The factor every entry of :func:`mesh_smatrix` shares: ``S = factor · T_hub``.

    The library waveguide over the :func:`mesh_sections` sections of a path; shape () or (W,).
    """
    return common_path_factor(sections=mesh_sections(layout), wavelength_um=wavelength_um,
                              wavelength0_um=wavelength0_um, arm=arm)
