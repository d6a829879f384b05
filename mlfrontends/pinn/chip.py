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

from .models import MLP, DenseLinear, batched_linear

__all__ = ["ChipMLP", "realised_weight"]


def realised_weight(layer: nn.Module) -> torch.Tensor:
    """The (P.., out, in) matrix a hub layer realises now."""
    if isinstance(layer, photonic.PhotonicLinear | photonic.TTPhotonicLinear):
        return layer.realised_matrix()
    if isinstance(layer, DenseLinear):  # an electronic layer (model.chip_layers = "tt")
        return layer.weight
    raise TypeError(f"not a photonic layer: {type(layer).__name__}")


class ChipMLP(MLP):
    """MLP of hub layers with an activation between them; output (..., out)."""

    def __init__(self, layers: Sequence[nn.Module], activation: str, *, fast: bool):
        super().__init__(layers, activation)
        self.fast = fast

    def dense_form(self, layer, x):
        if not self.fast:  # every product through the optical chain: nothing to fuse
            return None
        # the hub builds its meshes in float64/complex128 whatever x is
        return realised_weight(layer).to(x.dtype), layer.bias

    def apply_layer(self, layer, x):
        if self.fast:
            return batched_linear(x, *self.dense_form(layer, x))
        return layer(x)
