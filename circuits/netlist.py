"""Netlist builder: a programmed hub mesh as a SAX (simphony) circuit, and its S-matrix.

The circuit is flat and made of primitives only (:mod:`circuits.models`): per MZI an external
phase shifter, an input coupler, an internal phase shifter and an output coupler
(:func:`circuits.models.mzi_netlist`), then the output phase screen. The S-matrix solved by
SAX is an independent cross-check of the hub's transfer matrix
``T = diag(e^{i out_phase}) · M_{K−1} ⋯ M_0``: it never multiplies 2×2 blocks itself.

Mesh ports are ``in0 … in{N−1}`` and ``out0 … out{N−1}``; :func:`mesh_smatrix` returns the
hub's convention ``T[out, in]``, i.e. ``T[i, j] = S[(f"in{j}", f"out{i}")]``.
"""

from __future__ import annotations

import difflib
from typing import Any

import numpy as np
import sax

from circuits.models import MODELS, WAVELENGTH0_UM, mzi_netlist

__all__ = ["BACKENDS", "mesh_netlist", "mesh_smatrix", "sdict_to_transfer"]

# SAX circuit solvers by name (klu: sparse LU, the SAX default; fg: Filipsson–Gunnar).
# SAX's "additive" backend is left out: it enumerates paths, exponential in a mesh's depth.
BACKENDS: dict[str, str] = {"klu": "klu", "fg": "filipsson_gunnar"}


def _per_mzi(value: Any, k: int, name: str) -> np.ndarray:
    arr = np.broadcast_to(np.asarray(value, dtype=np.float64), (k,))
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} must be finite; received {value!r}")
    return arr


def _as_numpy(x: Any) -> np.ndarray:
    return np.asarray(x.detach().cpu().numpy() if hasattr(x, "detach") else x, dtype=np.float64)


def mesh_netlist(
    phases: Any,
    *,
    alpha_rad: Any = 0.0,
    beta_rad: Any = 0.0,
    loss_db: Any = 0.0,
    pad_loss_db: float = 0.0,
    routing_length_um: float = 0.0,
    routing_loss_db_per_cm: float = 0.0,
) -> dict[str, dict]:
    """Flat SAX netlist of one programmed mesh.

    ``phases`` is a hub ``MeshPhases`` of a single mesh (``.layout`` with ``.n``, ``.modes``,
    ``.columns``; ``.theta``, ``.phi`` (K,), ``.out_phase`` (N,), all in rad).
    ``alpha_rad``, ``beta_rad``, ``loss_db``: per-MZI input/output coupler errors and insertion
    loss, scalars or shape (K,) in light order. ``pad_loss_db`` > 0 puts a lossy dummy (a
    phase shifter at zero phase) on every (mode, column) position without an MZI: the
    loss-matching pads of a balanced mesh (the hub pads Clements meshes with the nominal MZI
    loss, ``photonic.mesh.BALANCED_TOPOLOGIES``). ``routing_length_um`` > 0 adds, in every column,
    a waveguide on every mode (the column's physical length), which for any topology adds
    only the common factor of ``depth`` waveguides to every path.
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
    alpha = _per_mzi(alpha_rad, k, "alpha_rad")
    beta = _per_mzi(beta_rad, k, "beta_rad")
    loss = _per_mzi(loss_db, k, "loss_db")
    modes = np.asarray(layout.modes)
    columns = np.asarray(layout.columns)

    instances: dict[str, dict] = {}
    connections: dict[str, str] = {}
    ports: dict[str, str] = {}
    head: list[str | None] = [None] * n  # last "instance,port" reached on each mode

    def attach(mode: int, entry: str, exit_: str) -> None:
        if head[mode] is None:
            ports[f"in{mode}"] = entry
        else:
            connections[head[mode]] = entry
        head[mode] = exit_

    order = np.argsort(columns, kind="stable")
    for col in range(layout.depth):
        if routing_length_um > 0:
            for m in range(n):
                name = f"wg_c{col}_m{m}"
                instances[name] = {
                    "component": "waveguide",
                    "settings": {
                        "length_um": float(routing_length_um),
                        "loss_db_per_cm": float(routing_loss_db_per_cm),
                    },
                }
                attach(m, f"{name},in0", f"{name},out0")
        in_column = order[columns[order] == col]
        if pad_loss_db > 0:
            covered = set(modes[in_column].tolist()) | set((modes[in_column] + 1).tolist())
            for m in sorted(set(range(n)) - covered):
                name = f"pad_c{col}_m{m}"
                instances[name] = {
                    "component": "phase_shifter",
                    "settings": {"phase_rad": 0.0, "loss_db": float(pad_loss_db)},
                }
                attach(m, f"{name},in0", f"{name},out0")
        for idx in in_column:
            m = int(modes[idx])
            inst, conn, mzi_ports = mzi_netlist(
                prefix=f"mzi{idx}_",
                theta_rad=theta[idx],
                phi_rad=phi[idx],
                alpha_rad=alpha[idx],
                beta_rad=beta[idx],
                loss_db=loss[idx],
            )
            instances |= inst
            connections |= conn
            attach(m, mzi_ports["in0"], mzi_ports["out0"])
            attach(m + 1, mzi_ports["in1"], mzi_ports["out1"])
    for m in range(n):
        name = f"screen{m}"
        instances[name] = {"component": "phase_shifter", "settings": {"phase_rad": out_phase[m]}}
        attach(m, f"{name},in0", f"{name},out0")
        ports[f"out{m}"] = head[m]
    return {"instances": instances, "connections": connections, "ports": ports}


def sdict_to_transfer(s: dict[tuple[str, str], Any], n: int) -> np.ndarray:
    """Hub-convention transfer matrix ``T[..., out, in]`` from a SAX SDict with mesh ports."""
    first = np.asarray(s[("in0", "out0")])
    t = np.empty(first.shape + (n, n), dtype=np.complex128)
    for i in range(n):
        for j in range(n):
            t[..., i, j] = np.asarray(s[(f"in{j}", f"out{i}")])
    return t


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
    routing_length_um: float = 0.0,
    routing_loss_db_per_cm: float = 0.0,
    backend: str = "klu",
) -> np.ndarray:
    """Circuit-simulated transfer matrix of a programmed mesh, ``T[..., out, in]``.

    Shape (N, N) for a scalar ``wavelength_um`` and (W, N, N) for a sweep of W wavelengths.
    Device arguments as in :func:`mesh_netlist` and :mod:`circuits.models`; ``backend`` is a
    key of :data:`BACKENDS`.
    """
    if backend not in BACKENDS:
        close = difflib.get_close_matches(backend, BACKENDS, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ValueError(
            f"backend={backend!r} is not a SAX circuit backend; valid choices: "
            f"{sorted(BACKENDS)}{hint}"
        )
    netlist = mesh_netlist(
        phases,
        alpha_rad=alpha_rad,
        beta_rad=beta_rad,
        loss_db=loss_db,
        pad_loss_db=pad_loss_db,
        routing_length_um=routing_length_um,
        routing_loss_db_per_cm=routing_loss_db_per_cm,
    )
    circuit, _ = sax.circuit(netlist, models=MODELS, backend=BACKENDS[backend])
    s = circuit(
        wavelength_um=np.asarray(wavelength_um, dtype=np.float64),
        wavelength0_um=wavelength0_um,
        coupler_dispersion_per_um=coupler_dispersion_per_um,
    )
    return sdict_to_transfer(s, phases.layout.n)
