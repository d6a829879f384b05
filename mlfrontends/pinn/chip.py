"""Networks whose layers run on the hub's photonic tensor cores (weight or phase domain).

``ChipMLP`` holds ``photonic.PhotonicLinear`` / ``photonic.TTPhotonicLinear`` layers. With
``fast=True`` each forward asks the hub for the matrix every layer realises *now* (for the
current — possibly P perturbed — phases or weights, rebuilt through the hub, batched,
with the chip's static non-idealities) and applies it with one GEMM. This is exact when
the optical path is linear in the input, i.e. when input quantisation, detector noise
and output quantisation are off: then the detected in-phase output is Re(T)·x per tile
times the electronic gain, which is what ``PhotonicMatrix.realised_matrix`` returns.
Otherwise (``fast=False``) every product goes through the hub's full optical chain.
Without autograd the fast path runs the realised matrices through ``fused_mlp_forward``
(row blocks, in-place activations, each distinct prefix of perturbed parameter sets once).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

import photonic

from .models import ACTIVATIONS, DenseLinear, batched_linear, fused_forward

__all__ = ["ChipMLP", "realised_weight"]


def realised_weight(layer: nn.Module) -> torch.Tensor:
    """The (P.., out, in) matrix a hub layer realises now."""
    if isinstance(layer, photonic.PhotonicLinear | photonic.TTPhotonicLinear):
        return layer.realised_matrix()
    if isinstance(layer, DenseLinear):  # an electronic layer (model.chip_layers = "tt")
        return layer.weight
    raise TypeError(f"not a photonic layer: {type(layer).__name__}")


class ChipMLP(nn.Module):
    """MLP of hub layers with an activation between them; output (..., out)."""

    def __init__(self, layers: Sequence[nn.Module], activation: str, *, fast: bool):
        super().__init__()
        self.layers = nn.ModuleList(layers)
        self.act = ACTIVATIONS[activation]()
        self.fast = fast
        self.fused = True  # with fast: fused_mlp_forward when no gradient is needed
        self.share_prefixes = True

    def forward(self, x):
        if self.fast and self.fused:
            # the hub builds its meshes in float64/complex128 whatever x is
            y = fused_forward(self, x, lambda layer: (realised_weight(layer).to(x.dtype),
                                                      layer.bias))
            if y is not None:
                return y
        last = len(self.layers) - 1
        for i, layer in enumerate(self.layers):
            if self.fast:  # the hub builds its meshes in float64/complex128 whatever x is
                x = batched_linear(x, realised_weight(layer).to(x.dtype), layer.bias)
            else:
                x = layer(x)
            if i < last:
                x = self.act(x)
        return x
