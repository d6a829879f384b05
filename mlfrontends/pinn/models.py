"""Dense and tensor-train (TT) MLPs obeying the batched-parameter convention.

Convention (project-wide): a layer whose parameters carry one extra leading dim P (swapped in
with ``torch.func.functional_call``) treats it as P independent parameter sets; its input is
(P, ..., in) or broadcastable (..., in) and its output is (P, ..., out). An input is taken as
already batched when it has ≥ 3 dims and its leading dim equals P.

TT-matrix format (Oseledets 2011; Novikov et al. 2015, "Tensorizing neural networks"):
W ∈ R^{M×N}, M = ∏m_k, N = ∏n_k, W[(i_1..i_d), (j_1..j_d)] = G_1[:, i_1, j_1, :] ⋯ G_d[:, i_d,
j_d, :], cores G_k ∈ R^{r_{k−1}×m_k×n_k×r_k}, r_0 = r_d = 1; multi-indices are row-major.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "ACTIVATIONS",
    "DenseLinear",
    "MLP",
    "TTLinear",
    "batched_linear",
    "build_mlp",
    "count_parameters",
]


def batched_linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None):
    """y = x Wᵀ + b for weight (out, in) or a parameter batch (P, out, in)."""
    if weight.dim() == 2:
        return F.linear(x, weight, bias)
    P, n_out, n_in = weight.shape
    if x.dim() >= 3 and x.shape[0] == P:
        lead = x.shape[1:-1]
        x2 = x.reshape(P, -1, n_in)
    else:
        lead = x.shape[:-1]
        x2 = x.reshape(1, -1, n_in).expand(P, -1, -1)
    wt = weight.transpose(1, 2)
    y = torch.bmm(x2, wt) if bias is None else torch.baddbmm(bias[:, None, :], x2, wt)
    return y.reshape(P, *lead, n_out)


class DenseLinear(nn.Module):
    """Dense layer (``torch.nn.Linear`` initialisation) obeying the batched convention."""

    def __init__(self, n_in: int, n_out: int, *, dtype=torch.float64, generator=None):
        super().__init__()
        bound = 1.0 / math.sqrt(n_in)
        self.weight = nn.Parameter(_uniform((n_out, n_in), bound, dtype, generator))
        self.bias = nn.Parameter(_uniform((n_out,), bound, dtype, generator))

    def forward(self, x):
        return batched_linear(x, self.weight, self.bias)


def _uniform(shape, bound, dtype, generator):
    return (2 * torch.rand(shape, generator=generator, dtype=dtype) - 1) * bound


class TTLinear(nn.Module):
    """TT-matrix layer: in_shape (n_k), out_shape (m_k), ranks (r_1..r_{d−1}).

    init="random": cores N(0, s²) with s chosen so Var(W_ij) = 1/N (as a dense layer with
    variance-preserving init); init="ttsvd": TT-SVD (tensorly) of a dense
    ``torch.nn.Linear``-initialised weight, rescaled to that weight's Frobenius norm (a rank-2
    TT-SVD keeps only a small fraction of a random matrix's energy).
    The forward pass materialises W from the cores (r²·M·N multiply-adds per parameter set,
    negligible next to the thousands of inputs per call) and runs one dense GEMM: measured
    here, core-by-core contraction (and a two-block split) with their thin GEMMs and
    transposes were slower than the dense GEMM even for the 512×512 HJB layer.
    """

    def __init__(
        self,
        in_shape: Sequence[int],
        out_shape: Sequence[int],
        ranks: Sequence[int] | int = 2,
        *,
        init: str = "random",
        dtype=torch.float64,
        generator=None,
    ):
        super().__init__()
        d = len(in_shape)
        if len(out_shape) != d:
            raise ValueError(
                f"tt shapes: in_shape {list(in_shape)} and out_shape {list(out_shape)} "
                f"must have the same number of factors"
            )
        if isinstance(ranks, int):
            ranks = [ranks] * (d - 1)
        if len(ranks) != d - 1:
            raise ValueError(f"tt ranks: need {d - 1} internal ranks, got {list(ranks)}")
        self.in_shape, self.out_shape = tuple(in_shape), tuple(out_shape)
        self.ranks = (1, *ranks, 1)
        self.n_in, self.n_out = math.prod(in_shape), math.prod(out_shape)
        shapes = [
            (self.ranks[k], self.out_shape[k], self.in_shape[k], self.ranks[k + 1])
            for k in range(d)
        ]
        bound = 1.0 / math.sqrt(self.n_in)
        if init == "random":
            # Var(W_ij) = (∏ r_k) ∏ s_k² = 1/N with equal s_k.
            s = (1.0 / self.n_in / math.prod(self.ranks)) ** (1.0 / (2 * d))
            cores = [torch.randn(sh, generator=generator, dtype=dtype) * s for sh in shapes]
        elif init == "ttsvd":
            cores = self._ttsvd(_uniform((self.n_out, self.n_in), bound, dtype, generator))
        else:
            raise ValueError(f"tt init: must be 'random' or 'ttsvd', got {init!r}")
        self.cores = nn.ParameterList([nn.Parameter(c) for c in cores])
        self.bias = nn.Parameter(_uniform((self.n_out,), bound, dtype, generator))

    def _ttsvd(self, W: torch.Tensor) -> list[torch.Tensor]:
        import tensorly as tl
        from tensorly.decomposition import tensor_train_matrix

        tensor = W.reshape(*self.out_shape, *self.in_shape).numpy()
        tt = tensor_train_matrix(tl.tensor(tensor), rank=list(self.ranks))
        cores = [torch.as_tensor(c, dtype=W.dtype) for c in tt]
        approx = self._materialise_from(cores)
        factor = (W.norm() / approx.norm()) ** (1.0 / len(cores))
        return [c * factor for c in cores]

    @staticmethod
    def _materialise_from(cores: Sequence[torch.Tensor]) -> torch.Tensor:
        """W (..., M, N) from cores (..., r, m, n, s) (leading parameter-batch dims allowed)."""
        T = cores[0][..., 0, :, :, :]  # (..., m1, n1, r1)
        for G in cores[1:]:
            T = torch.einsum("...MNr,...rmns->...MmNns", T, G)
            T = T.reshape(*T.shape[:-5], T.shape[-5] * T.shape[-4], T.shape[-3] * T.shape[-2],
                          T.shape[-1])
        return T[..., 0]

    def weight(self) -> torch.Tensor:
        return self._materialise_from(list(self.cores))

    def forward(self, x):
        return batched_linear(x, self._materialise_from(list(self.cores)), self.bias)


class Sine(nn.Module):
    def forward(self, x):
        return torch.sin(x)


ACTIVATIONS = {"tanh": nn.Tanh, "sin": Sine}


class MLP(nn.Module):
    """Layers with an activation between them (none after the last); output (..., out)."""

    def __init__(self, layers: Sequence[nn.Module], activation: str):
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ValueError(
                f"activation: unknown {activation!r}; valid choices: {sorted(ACTIVATIONS)}"
            )
        self.layers = nn.ModuleList(layers)
        self.act = ACTIVATIONS[activation]()

    def forward(self, x):
        for layer in self.layers[:-1]:
            x = self.act(layer(x))
        return self.layers[-1](x)


def build_mlp(
    widths: Sequence[int],
    *,
    activation: str = "tanh",
    tt_layers: dict[int, tuple[Sequence[int], Sequence[int]]] | None = None,
    tt_rank: int = 2,
    tt_init: str = "random",
    dtype=torch.float64,
    seed: int = 0,
) -> MLP:
    """MLP widths[0] → … → widths[-1]; layer i (0-based) is TT with (in_shape, out_shape)
    when i is in ``tt_layers``, else dense."""
    g = torch.Generator().manual_seed(seed)
    tt_layers = tt_layers or {}
    layers: list[nn.Module] = []
    for i in range(len(widths) - 1):
        if i in tt_layers:
            in_shape, out_shape = tt_layers[i]
            if math.prod(in_shape) != widths[i] or math.prod(out_shape) != widths[i + 1]:
                raise ValueError(
                    f"tt_layers[{i}]: shapes {list(in_shape)} → {list(out_shape)} must "
                    f"multiply to the widths {widths[i]} → {widths[i + 1]}"
                )
            layers.append(TTLinear(in_shape, out_shape, tt_rank, init=tt_init, dtype=dtype,
                                   generator=g))
        else:
            layers.append(DenseLinear(widths[i], widths[i + 1], dtype=dtype, generator=g))
    return MLP(layers, activation)


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad)
