"""Exact decomposition of unitaries into physical MZI phases (Clements and Reck).

The nulling is done directly with the physical MZI M(θ, φ) of :mod:`photonic.mzi`, so the
returned phases are hardware-ready (internal θ ∈ [0, π], external φ ∈ [0, 2π), output phase
screen). With M = i e^{iθ/2} [[e^{iφ} s, c], [e^{iφ} c, −s]], s = sin θ/2, c = cos θ/2:

- null U[r, c] from the right with columns (c, c+1):  U ← U M^†  needs
  tan(θ/2) = |U[r,c+1]| / |U[r,c]|,  φ = arg U[r,c] − arg U[r,c+1] − π;
- null U[r, c] from the left with rows (r−1, r):       U ← M U  needs
  tan(θ/2) = |U[r−1,c]| / |U[r,c]|,  φ = arg U[r,c] − arg U[r−1,c];
- a left factor is moved through the final diagonal D = diag(.., d1, d2, ..) by
  M(θ, φ)^† D = D' M(θ, φ') with φ' = arg d1 − arg d2, d1' = −e^{−i(θ+φ)} d2, d2' = −e^{−iθ} d2.

Orders follow Clements et al., Optica 3, 1460 (2016) and Reck et al., PRL 73, 58 (1994).
Cost O(N³) per matrix, compiled with numba and parallel over a batch of matrices.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numba
import numpy as np
import torch

from photonic.mesh import MeshLayout, _check_topology, mesh_layout, transfer_matrix

__all__ = ["MeshPhases", "decompose", "reconstruct"]


@dataclass(frozen=True, eq=False)
class MeshPhases:
    """Programmed phases of one mesh or a batch of meshes.

    ``theta``/``phi``: (..., K) internal / external phases in rad, in light order of
    ``layout``; ``out_phase``: (..., N) output phase screen in rad.
    """

    layout: MeshLayout
    theta: torch.Tensor
    phi: torch.Tensor
    out_phase: torch.Tensor

    @property
    def batch_shape(self) -> torch.Size:
        return self.theta.shape[:-1]

    def matrix(self) -> torch.Tensor:
        """Ideal transfer matrix (..., N, N) of these phases (no device errors)."""
        return transfer_matrix(self.layout, self.theta, self.phi, self.out_phase)


@numba.njit(cache=True, inline="always")
def _entries(theta, phi):  # pragma: no cover - compiled
    s = math.sin(theta / 2)
    c = math.cos(theta / 2)
    g = 1j * complex(math.cos(theta / 2), math.sin(theta / 2))
    ep = complex(math.cos(phi), math.sin(phi))
    return g * ep * s, g * c, g * ep * c, -g * s


@numba.njit(cache=True)
def _null_right(u, r, c, out_t, out_p, k):  # pragma: no cover - compiled
    u1 = u[r, c]
    u2 = u[r, c + 1]
    theta = 2.0 * math.atan2(abs(u2), abs(u1))
    phi = 0.0
    if abs(u1) > 0 and abs(u2) > 0:
        phi = math.atan2(u1.imag, u1.real) - math.atan2(u2.imag, u2.real) - math.pi
    m00, m01, m10, m11 = _entries(theta, phi)
    c00, c01, c10, c11 = m00.conjugate(), m01.conjugate(), m10.conjugate(), m11.conjugate()
    for row in range(u.shape[0]):
        a = u[row, c]
        b = u[row, c + 1]
        u[row, c] = a * c00 + b * c01
        u[row, c + 1] = a * c10 + b * c11
    out_t[k] = theta
    out_p[k] = phi


@numba.njit(cache=True)
def _null_left(u, r, c, out_t, out_p, k):  # pragma: no cover - compiled
    v1 = u[r - 1, c]
    v2 = u[r, c]
    theta = 2.0 * math.atan2(abs(v1), abs(v2))
    phi = 0.0
    if abs(v1) > 0 and abs(v2) > 0:
        phi = math.atan2(v2.imag, v2.real) - math.atan2(v1.imag, v1.real)
    m00, m01, m10, m11 = _entries(theta, phi)
    for col in range(u.shape[1]):
        a = u[r - 1, col]
        b = u[r, col]
        u[r - 1, col] = m00 * a + m01 * b
        u[r, col] = m10 * a + m11 * b
    out_t[k] = theta
    out_p[k] = phi


@numba.njit(cache=True)
def _clements_one(u, theta, phi, out_phase):  # pragma: no cover - compiled
    n = u.shape[0]
    n_left = 0
    for i in range(1, n - 1, 2):
        n_left += i + 1
    n_right = n * (n - 1) // 2 - n_left
    lt = np.empty(n_left)
    lp = np.empty(n_left)
    lm = np.empty(n_left, dtype=np.int64)
    kr = 0
    kl = 0
    for i in range(n - 1):
        for j in range(i + 1):
            if i % 2 == 0:
                _null_right(u, n - 1 - j, i - j, theta, phi, kr)
                kr += 1
            else:
                r = n - 1 - i + j
                _null_left(u, r, j, lt, lp, kl)
                lm[kl] = r - 1
                kl += 1
    d = np.empty(n, dtype=np.complex128)
    for m in range(n):
        d[m] = u[m, m]
    k = n_right
    for q in range(n_left - 1, -1, -1):
        m = lm[q]
        t = lt[q]
        p = lp[q]
        d1 = d[m]
        d2 = d[m + 1]
        phi_new = math.atan2(d1.imag, d1.real) - math.atan2(d2.imag, d2.real)
        d[m] = -complex(math.cos(t + p), -math.sin(t + p)) * d2
        d[m + 1] = -complex(math.cos(t), -math.sin(t)) * d2
        theta[k] = t
        phi[k] = phi_new
        k += 1
    for m in range(n):
        out_phase[m] = math.atan2(d[m].imag, d[m].real)


@numba.njit(cache=True)
def _reck_one(u, theta, phi, out_phase):  # pragma: no cover - compiled
    n = u.shape[0]
    k = 0
    for r in range(n - 1, 0, -1):
        for c in range(r):
            _null_right(u, r, c, theta, phi, k)
            k += 1
    for m in range(n):
        out_phase[m] = math.atan2(u[m, m].imag, u[m, m].real)


@numba.njit(cache=True)
def _decompose_batch(us, clements, theta, phi, out_phase):  # pragma: no cover - compiled
    for b in range(us.shape[0]):
        if clements:
            _clements_one(us[b], theta[b], phi[b], out_phase[b])
        else:
            _reck_one(us[b], theta[b], phi[b], out_phase[b])


def decompose(
    U: torch.Tensor | np.ndarray, topology: str = "clements", *, check_unitary_atol: float = 1e-8
) -> MeshPhases:
    """Decompose unitary matrices ``U`` (..., N, N) into physical MZI mesh phases.

    Exact: ``reconstruct(decompose(U))`` equals ``U`` to rounding (≈1e-13 at N = 128).
    Phases are wrapped to θ ∈ [0, π], φ ∈ [0, 2π), out_phase ∈ [0, 2π).
    Raises ValueError if ``U`` is not square or not unitary within ``check_unitary_atol``.
    """
    _check_topology(topology)
    u = torch.as_tensor(U).detach().to(torch.complex128).cpu().numpy()
    if u.ndim < 2 or u.shape[-1] != u.shape[-2]:
        raise ValueError(f"U must have shape (..., N, N); got {tuple(u.shape)}")
    n = u.shape[-1]
    batch = u.shape[:-2]
    flat = np.array(u.reshape((-1, n, n)), copy=True)
    if not np.isfinite(flat).all():  # NaN would pass the unitarity test below (NaN > atol)
        bad = np.argwhere(~np.isfinite(flat))[0]
        raise ValueError(f"U has a non-finite entry ({flat[tuple(bad)]} at index "
                         f"{tuple(int(i) for i in bad)} of the flattened batch); decompose "
                         "a finite unitary")
    if check_unitary_atol is not None and flat.size:
        err = np.abs(flat @ np.conj(np.swapaxes(flat, -1, -2)) - np.eye(n)).max()
        if err > check_unitary_atol:
            raise ValueError(
                f"U is not unitary: max |U U† − I| = {err:.3g} > check_unitary_atol="
                f"{check_unitary_atol:g}; decompose a unitary (e.g. the U or V of an SVD)"
            )
    layout = mesh_layout(n, topology)
    k = layout.num_mzis
    theta = np.zeros((flat.shape[0], k))
    phi = np.zeros((flat.shape[0], k))
    out = np.zeros((flat.shape[0], n))
    _decompose_batch(flat, topology == "clements", theta, phi, out)
    two_pi = 2 * math.pi
    return MeshPhases(
        layout=layout,
        theta=torch.from_numpy(theta.reshape(batch + (k,))),
        phi=torch.from_numpy(np.mod(phi, two_pi).reshape(batch + (k,))),
        out_phase=torch.from_numpy(np.mod(out, two_pi).reshape(batch + (n,))),
    )


def reconstruct(phases: MeshPhases, device=None, noise=None, *, generator=None) -> torch.Tensor:
    """Transfer matrix realised by programming ``phases`` on hardware.

    With ``device=None`` and ``noise=None`` this is the ideal matrix; otherwise the phases go
    through the device's non-idealities selected by ``noise`` (see :mod:`photonic.noise`).
    """
    if device is None and noise is None:
        return phases.matrix()
    from photonic.noise import realise_mesh

    return realise_mesh(phases, device=device, noise=noise, generator=generator)
