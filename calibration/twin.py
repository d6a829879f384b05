"""The digital twin of a fabricated mesh: the hub's phase chain with per-device parameters.

For nominal drive phases d (from DAC codes, :func:`calibration.chip.drive_phase_rad`) the
realised shifter phases are

    y = (1 + gain_rel) ⊙ d,       p = y + Σ_pairs c_ij · y_j (into i) + offset,

i.e. the chain of :mod:`photonic.noise` (gamma error, crosstalk Γ = I + C, static offset),
and the transfer matrix is the hub's physical mesh with coupler errors α, β, per-MZI field
transmission and θ-arm ratio (arm imbalance). Crosstalk is parameterised on the directed
pairs (i ← j) the characterisation chose, so the twin never assumes the hidden crosstalk law.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from photonic.mesh import MeshLayout, transfer_matrix

__all__ = ["TwinParams", "realised_phases", "twin_matrix", "gain_matched_error"]


_DENSE_LEAK_MAX = 2048  # shifters up to which the crosstalk leak is a dense matmul


@dataclass
class TwinParams:
    """Per-device parameters of the twin (float64 tensors; may require grad)."""

    offset_rad: torch.Tensor  # (S,)
    gain_rel: torch.Tensor  # (S,) coefficient error: φ ∝ (1 + gain_rel)
    alpha_rad: torch.Tensor  # (K,)
    beta_rad: torch.Tensor  # (K,)
    crosstalk: torch.Tensor  # (Q,) coefficient of each measured pair
    pairs: torch.Tensor  # (2, Q) int64, fixed
    arm_ratio: torch.Tensor | float = 1.0  # (K,) θ arm field / other arm field
    amplitude: torch.Tensor | float = 1.0  # (K,) field transmission of the other arm
    pad_amplitude: float = 1.0  # transmission of the loss-matching dummies


def realised_phases(drive_rad: torch.Tensor, p: TwinParams) -> torch.Tensor:
    """Realised phases (..., S) for nominal drive phases (..., S)."""
    y = drive_rad * (1.0 + p.gain_rel)
    rows, cols = p.pairs
    s = y.shape[-1]
    if s <= _DENSE_LEAK_MAX:
        # Γ − I as a dense matrix: one matmul for any number of pairs and settings
        c = torch.zeros((s, s), dtype=y.dtype).index_put((rows, cols), p.crosstalk.to(y.dtype),
                                                         accumulate=True)
        leak = y @ c.T
    else:
        leak = torch.zeros_like(y).index_add(-1, rows, y[..., cols] * p.crosstalk)
    return y + leak + p.offset_rad


def twin_matrix(layout: MeshLayout, drive_rad: torch.Tensor, p: TwinParams) -> torch.Tensor:
    """Predicted transfer matrix (..., N, N) for nominal drive phases (..., S)."""
    ph = realised_phases(drive_rad, p)
    k = layout.num_mzis
    return transfer_matrix(layout, ph[..., :k], ph[..., k:2 * k], ph[..., 2 * k:],
                           alpha=p.alpha_rad, beta=p.beta_rad, amplitude=p.amplitude,
                           arm_ratio=p.arm_ratio, pad_amplitude=p.pad_amplitude)


def gain_matched_error(target: torch.Tensor, realised: torch.Tensor, *,
                       output_phases: bool = False) -> torch.Tensor:
    """min over a real gain g ≥ 0 of ‖g·T − U‖_F/‖U‖_F over the last two dims.

    The electronic gain after the receivers undoes a common loss, so a uniform attenuation
    is no error. ``output_phases``: also minimised over a phase per output (a power detector
    cannot see the output phase screen, so intensity-only programming is judged up to it).
    """
    u = torch.as_tensor(target).to(torch.complex128)
    t = torch.as_tensor(realised).to(torch.complex128)
    rows = (t.conj() * u).sum(-1)  # (..., N) row overlaps ⟨T_i, U_i⟩
    if output_phases:
        t = t * torch.where(rows.abs() > 0, rows / rows.abs(), torch.ones_like(rows))[..., None]
        overlap = rows.abs().sum(-1)
    else:
        overlap = rows.sum(-1).real
    gain = (overlap / (t.abs() ** 2).sum((-2, -1))).clamp_min(0.0)
    err = torch.linalg.matrix_norm(gain[..., None, None] * t - u)
    return err / torch.linalg.matrix_norm(u)


def _planes(layout: MeshLayout, amplitude: np.ndarray | None = None, pad: float = 1.0):
    """Light-order planes: ("phase", shifter indices, modes), ("coupler_in"/"coupler_out",
    MZI indices, modes) and, with ``amplitude`` (K,), ("scale", per-mode factors, None)
    for each column's MZI transmissions and its pads."""
    k = layout.num_mzis
    ops = []
    for col in range(layout.depth):
        ks = np.nonzero(layout.columns == col)[0]
        m = layout.modes[ks]
        ops += [("phase", k + ks, m), ("coupler_in", ks, m), ("phase", ks, m),
                ("coupler_out", ks, m)]
        if amplitude is not None:
            f = np.full(layout.n, pad)
            f[m], f[m + 1] = amplitude[ks], amplitude[ks]
            if np.any(f != 1.0):
                ops.append(("scale", f, None))
    ops.append(("phase", 2 * k + np.arange(layout.n), np.arange(layout.n)))
    return ops


def _apply_coupler(x: np.ndarray, modes: np.ndarray, kappa: np.ndarray, *, left: bool):
    """x ← B x (left) or x ← x B (right) for couplers B(κ) on (m, m+1), in place."""
    c, s = np.cos(kappa), 1j * np.sin(kappa)
    if left:
        top, bot = x[modes, :].copy(), x[modes + 1, :].copy()
        x[modes, :] = c[:, None] * top + s[:, None] * bot
        x[modes + 1, :] = s[:, None] * top + c[:, None] * bot
    else:
        top, bot = x[:, modes].copy(), x[:, modes + 1].copy()
        x[:, modes] = top * c[None, :] + bot * s[None, :]
        x[:, modes + 1] = top * s[None, :] + bot * c[None, :]


def mesh_jacobian(layout: MeshLayout, phases: np.ndarray, alpha: np.ndarray,
                  beta: np.ndarray, *, arm_ratio: np.ndarray | float = 1.0,
                  amplitude: np.ndarray | float = 1.0, pad_amplitude: float = 1.0,
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """T and its phase derivatives in factored form: ∂T/∂p_s = i · a_s b_sᵀ.

    Returns ``T`` (N, N), ``a`` (N, S) and ``b`` (S, N) for realised phases ``phases`` (S,),
    coupler errors α, β, θ-arm ratios and field transmissions (K,) (as
    :func:`photonic.mesh.transfer_matrix`). With a phase plane splitting T = A·D·B, a_s is
    A's column and b_s the row of D·B on the shifter's mode. Cost O(depth · N²).
    """
    n, s_all, k = layout.n, phases.shape[0], layout.num_mzis
    ops = _planes(layout, np.broadcast_to(np.asarray(amplitude, dtype=float), (k,)),
                  pad_amplitude)
    # θ-plane factor ρ·e^{iθ}; the other arm, the MZI's transmission and the pads are real
    # scalings that commute with the phase planes of their modes
    factor = np.exp(1j * phases).astype(np.complex128)
    factor[:k] *= np.broadcast_to(np.asarray(arm_ratio, dtype=float), (k,))
    a = np.zeros((n, s_all), dtype=np.complex128)
    b = np.zeros((s_all, n), dtype=np.complex128)
    x = np.eye(n, dtype=np.complex128)
    quarter = np.pi / 4
    for kind, idx, modes in ops:
        if kind == "phase":
            x[modes, :] *= factor[idx][:, None]
            b[idx] = x[modes, :]
        elif kind == "scale":
            x[:] *= idx[:, None]
        else:
            err = alpha[idx] if kind == "coupler_in" else beta[idx]
            _apply_coupler(x, modes, quarter + err, left=True)
    t = x
    y = np.eye(n, dtype=np.complex128)
    for kind, idx, modes in reversed(ops):
        if kind == "phase":
            a[:, idx] = y[:, modes]
            y[:, modes] *= factor[idx][None, :]
        elif kind == "scale":
            y[:] *= idx[None, :]
        else:
            err = alpha[idx] if kind == "coupler_in" else beta[idx]
            _apply_coupler(y, modes, quarter + err, left=False)
    return t, a, b


def gauss_newton_normal(a: np.ndarray, b: np.ndarray, residual: np.ndarray):
    """(H, g) of f(p) = ‖T(p) − U‖_F²/2 from :func:`mesh_jacobian` factors: the Gauss–Newton
    matrix H_st = Re[(a_sᴴ a_t)(b_sᴴ b_t)] and the gradient g_s = Re[−i a_sᴴ r b̄_s]."""
    h = np.real((a.conj().T @ a) * (b.conj() @ b.T))
    y = a.conj().T @ residual  # (S, N)
    g = np.real(-1j * np.sum(y * b.conj(), axis=1))
    return h, g
