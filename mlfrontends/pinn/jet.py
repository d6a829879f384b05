"""Derivative bundles ("jets") that estimators produce and PDE residuals consume."""

from __future__ import annotations

from dataclasses import dataclass

import torch

__all__ = ["Jet", "affine_ansatz"]


@dataclass(frozen=True)
class Jet:
    """A scalar field and its derivatives at N points, with optional leading batch dims.

    value: (..., N); grad: (..., N, d) = ∂u/∂z_i; hess_diag: (..., N, d) = ∂²u/∂z_i²
    (mixed second derivatives are never needed by the benchmarks).
    """

    value: torch.Tensor
    grad: torch.Tensor
    hess_diag: torch.Tensor


def affine_ansatz(g: Jet, h: Jet, nn: Jet) -> Jet:
    """Jet of the hard-constraint ansatz u = g + h · NN by the product rule.

    g and h are known analytically (shapes (N,), (N, d)), so only the network's own
    derivatives come from an estimator; the constraint terms add no estimator noise.
    """
    hv = h.value.unsqueeze(-1)
    nv = nn.value.unsqueeze(-1)
    return Jet(
        value=g.value + h.value * nn.value,
        grad=g.grad + h.grad * nv + hv * nn.grad,
        hess_diag=g.hess_diag + h.hess_diag * nv + 2.0 * h.grad * nn.grad + hv * nn.hess_diag,
    )
