"""The physical Mach–Zehnder interferometer as a complex 2×2 transfer matrix.

Convention (docs/concepts.md, pinned by tests): ``T[out, in]`` and

    M(θ, φ) = B(β) · diag(e^{iθ}, 1) · B(α) · diag(e^{iφ}, 1),
    B(κ)    = [[cos κ, i sin κ], [i sin κ, cos κ]],  κ = π/4 + coupler error,

with θ the internal phase (top arm, between the couplers), φ the external phase (top input),
α the input coupler's and β the output coupler's splitting-angle error. Ideally
M = i e^{iθ/2} [[e^{iφ} sin(θ/2), cos(θ/2)], [e^{iφ} cos(θ/2), −sin(θ/2)]]; the cross-port
power is cos²(θ/2). With two erroneous couplers the cross power is confined to
[sin²(α−β), cos²(α+β)] (Hamerly et al., arXiv 2109.05367).

Arm imbalance: the two arms between the couplers transmit different fields (e.g. the heater
sits on the θ arm only and adds its insertion loss there). With the θ arm's field
transmission ρ times the other arm's, the θ term of every entry is scaled by ρ; with ideal
couplers the cross power then swings between (1 − ρ)²/4 and (1 + ρ)²/4 (relative to the
other arm), so the extinction ratio is ((1 + ρ)/(1 − ρ))² instead of infinite.
"""

from __future__ import annotations

import math

import torch

__all__ = ["mzi_entries", "mzi_matrix", "coupler_matrix", "unit_phasor", "arm_transmission"]


def unit_phasor(phase_rad: torch.Tensor) -> torch.Tensor:
    """e^{iφ} (complex(cos, sin) is ~4× faster than torch.polar on CPU; differentiable)."""
    return torch.complex(torch.cos(phase_rad), torch.sin(phase_rad))


def coupler_matrix(*, error_rad: torch.Tensor | float = 0.0) -> torch.Tensor:
    """Directional coupler B(π/4 + error) as a complex128 2×2 matrix (T[out, in])."""
    kappa = torch.as_tensor(math.pi / 4 + torch.as_tensor(error_rad, dtype=torch.float64))
    c, s = torch.cos(kappa), torch.sin(kappa)
    return torch.stack([torch.stack([c + 0j, 1j * s]), torch.stack([1j * s, c + 0j])])


def arm_transmission(
    imbalance_db: torch.Tensor | float, loss_db: torch.Tensor | float = 0.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(ratio, other)`` field factors of an MZI whose θ arm (the one with the shifter) loses
    ``loss_db`` and the other arm ``imbalance_db`` less, never below 0 dB.

    ``ratio = 10^(−Δ/20)`` is the θ arm's field relative to the other arm (it alone sets the
    extinction ratio), ``other = 10^(−max(loss − Δ, 0)/20)`` the other arm's field; a
    negative Δ makes the other arm the lossier one. The cell stays passive.
    """
    delta = torch.as_tensor(imbalance_db, dtype=torch.float64)
    loss = torch.as_tensor(loss_db, dtype=torch.float64)
    ratio = 10.0 ** (-delta / 20.0)
    other = 10.0 ** (-(loss - delta).clamp_min(0.0) / 20.0)
    return ratio, other


def mzi_entries(
    theta: torch.Tensor,
    phi: torch.Tensor,
    *,
    alpha: torch.Tensor | float = 0.0,
    beta: torch.Tensor | float = 0.0,
    amplitude: torch.Tensor | float = 1.0,
    arm_ratio: torch.Tensor | float = 1.0,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Entries (m00, m01, m10, m11) of ``amplitude · M(θ, φ)`` with coupler errors α, β.

    All arguments broadcast together; the result is complex with the precision of ``theta``.
    ``alpha`` and ``beta`` are the coupler angle errors in rad (κ = π/4 + error),
    ``amplitude`` is the field transmission 10^(−loss_db/20) and ``arm_ratio`` the θ arm's
    field transmission relative to the other arm (module doc). Differentiable in every
    argument.
    """
    real = theta.dtype
    alpha = torch.as_tensor(alpha, dtype=real)
    beta = torch.as_tensor(beta, dtype=real)
    ka, kb = math.pi / 4 + alpha, math.pi / 4 + beta
    ca, sa, cb, sb = torch.cos(ka), torch.sin(ka), torch.cos(kb), torch.sin(kb)
    e_t = unit_phasor(theta)
    if not (isinstance(arm_ratio, float | int) and arm_ratio == 1):
        e_t = e_t * torch.as_tensor(arm_ratio, dtype=real)
    e_p = unit_phasor(phi)
    amp = torch.as_tensor(amplitude, dtype=real)
    m00 = amp * e_p * (e_t * (ca * cb) - sa * sb)
    m01 = amp * 1j * (e_t * (sa * cb) + ca * sb)
    m10 = amp * 1j * e_p * (e_t * (ca * sb) + sa * cb)
    m11 = amp * ((ca * cb) - e_t * (sa * sb))
    return m00, m01, m10, m11


def mzi_matrix(
    theta: torch.Tensor | float,
    phi: torch.Tensor | float,
    *,
    alpha: torch.Tensor | float = 0.0,
    beta: torch.Tensor | float = 0.0,
    loss_db: torch.Tensor | float = 0.0,
    arm_imbalance_db: torch.Tensor | float = 0.0,
) -> torch.Tensor:
    """Physical MZI transfer matrix, shape (..., 2, 2), T[out, in]; ``loss_db`` ≥ 0 is the
    loss through the θ arm, ``arm_imbalance_db`` how much more it loses than the other arm
    (:func:`arm_transmission`)."""
    theta = torch.as_tensor(theta, dtype=torch.float64)
    phi = torch.as_tensor(phi, dtype=theta.dtype)
    if isinstance(arm_imbalance_db, float | int) and arm_imbalance_db == 0:
        ratio, amp = 1.0, 10.0 ** (-torch.as_tensor(loss_db, dtype=theta.dtype) / 20.0)
    else:
        ratio, amp = arm_transmission(arm_imbalance_db, loss_db)
    m00, m01, m10, m11 = mzi_entries(theta, phi, alpha=alpha, beta=beta, amplitude=amp,
                                     arm_ratio=ratio)
    m00, m01, m10, m11 = torch.broadcast_tensors(m00, m01, m10, m11)
    return torch.stack([torch.stack([m00, m01], -1), torch.stack([m10, m11], -1)], -2)
