"""Figures of merit for realised matrices (one definition, used everywhere)."""

from __future__ import annotations

import torch

__all__ = ["matrix_fidelity", "rel_frobenius_error"]


def matrix_fidelity(target: torch.Tensor, realised: torch.Tensor) -> torch.Tensor:
    """Normalised overlap |⟨A, B⟩|² / (‖A‖²‖B‖²) ∈ [0, 1] over the last two dims.

    Insensitive to a global scale and phase (a uniform loss or a common phase does not
    count as infidelity); 1 iff the matrices are proportional. For unitaries this is the
    standard |Tr(U†V)|²/N² fidelity.
    """
    a = torch.as_tensor(target).to(torch.complex128)
    b = torch.as_tensor(realised).to(torch.complex128)
    inner = (a.conj() * b).sum((-2, -1))
    na = (a.abs() ** 2).sum((-2, -1))
    nb = (b.abs() ** 2).sum((-2, -1))
    return (inner.abs() ** 2 / (na * nb)).real


def rel_frobenius_error(target: torch.Tensor, realised: torch.Tensor) -> torch.Tensor:
    """‖B − A‖_F / ‖A‖_F over the last two dims (B may be complex, A real or complex)."""
    a = torch.as_tensor(target).to(torch.complex128)
    b = torch.as_tensor(realised).to(torch.complex128)
    return torch.linalg.matrix_norm(b - a) / torch.linalg.matrix_norm(a)
