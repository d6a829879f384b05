"""Dense and tensor-train (TT) MLPs obeying the batched-parameter convention.

Convention (project-wide): a layer whose parameters carry one extra leading dim P (swapped in
with ``torch.func.functional_call``) treats it as P independent parameter sets; its input is
(P, ..., in) or broadcastable (..., in) and its output is (P, ..., out). An input is taken as
already batched when it has at least as many dims as the weight and its leading dim equals P
(``photonic.core.batched_linear``).

TT-matrix format (Oseledets 2011; Novikov et al. 2015, "Tensorizing neural networks"):
W ∈ R^{M×N}, M = ∏m_k, N = ∏n_k, W[(i_1..i_d), (j_1..j_d)] = G_1[:, i_1, j_1, :] ⋯ G_d[:, i_d,
j_d, :], cores G_k ∈ R^{r_{k−1}×m_k×n_k×r_k}, r_0 = r_d = 1; multi-indices are row-major.

Without autograd, ``MLP`` runs ``fused_mlp_forward`` (the same products, fewer of them and
cache-sized; see there); with it, the layer-by-layer reference path.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import torch
from torch import nn

from photonic import equal_rows
from photonic.core import batched_linear

__all__ = [
    "ACTIVATIONS",
    "DenseLinear",
    "MLP",
    "TTLinear",
    "build_mlp",
    "count_parameters",
    "fused_mlp_forward",
]


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
_INPLACE = {nn.Tanh: torch.Tensor.tanh_, Sine: torch.Tensor.sin_}

FUSED_CHUNK_BYTES = 8192
"""Row-block size of the fused forward, as ``FUSED_CHUNK_BYTES / itemsize`` rows (1,024 in
float64, 2,048 in float32): one block's activations on the current path of the parameter-set
tree stay in cache (measured here: 256–2,048 rows within 10 %)."""


@contextmanager
def _intraop_threads(n: int) -> Iterator[None]:
    prev = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(prev)


def _set_groups(per_set: list[torch.Tensor], P: int) -> list:
    """Group key per parameter set: sets whose parameters (the rows of every (P, D) tensor
    of ``per_set``) are bitwise equal share a key; each tensor is grouped on its own, so
    a weight and its bias are never copied into one matrix."""
    if not per_set or P == 1:
        return [0] * P
    return list(zip(*(equal_rows(t)[1].tolist() for t in per_set), strict=True))


def _param_batch(x: torch.Tensor, layers) -> int | None:
    """P of the layers' batched parameters: 1 when none is batched, None when the shapes
    or dtypes are not supported by ``fused_mlp_forward``."""
    P = None
    for W, b in layers:
        for t, nd in ((W, 2), (b, 1)):
            if t is None or t.dim() == nd:
                continue
            if t.dim() != nd + 1 or (P is not None and t.shape[0] != P):
                return None
            P = t.shape[0]
            if t.dtype != x.dtype:
                return None
        if W.dtype != x.dtype or (b is not None and b.dtype != x.dtype):
            return None
    return P or 1


class _PrefixTree:
    """The distinct prefixes of P parameter sets, layer by layer: ``nodes[l]`` holds
    (representative set, parent node) per distinct prefix of layers 0..l; ``children``,
    the sets of each leaf and the root nodes of each input row group."""

    def __init__(self, Ws, bs, parent: list[int], P: int, n_inputs: int, share: bool):
        self.nodes: list[list[tuple[int, int]]] = []
        for W, b in zip(Ws, bs, strict=True):
            if share:
                per_set = ([W.reshape(P, -1)] if W.dim() == 3 else []) + (
                    [b] if b is not None and b.dim() == 2 else [])
                ids = _set_groups(per_set, P)
            else:
                ids = list(range(P))
            keys: dict[tuple[int, int], int] = {}
            nodes: list[tuple[int, int]] = []
            node_of = []
            for p in range(P):
                k = (parent[p], ids[p])
                if k not in keys:
                    keys[k] = len(nodes)
                    nodes.append((p, parent[p]))
                node_of.append(keys[k])
            self.nodes.append(nodes)
            parent = node_of
        self.children = [[[] for _ in nodes] for nodes in self.nodes]
        for depth in range(1, len(self.nodes)):
            for i, (_, par) in enumerate(self.nodes[depth]):
                self.children[depth - 1][par].append(i)
        self.leaf_sets: list[list[int]] = [[] for _ in self.nodes[-1]]
        for p, leaf in enumerate(parent):
            self.leaf_sets[leaf].append(p)
        self.roots: list[list[int]] = [[] for _ in range(n_inputs)]
        for i, (_, par) in enumerate(self.nodes[0]):
            self.roots[par].append(i)


def _walk_blocks(tree: _PrefixTree, xs, Ws, bs, act_, out, chunk: int,
                 workers: int | None) -> None:
    """Fill ``out`` (P, rows, out) block by block of ``chunk`` rows, depth first over the
    prefix tree, on ``workers`` threads taking blocks from a shared queue."""
    Wt = [W.transpose(-1, -2) for W in Ws]
    last, rows = len(Ws) - 1, xs.shape[1]

    def visit(depth, node, inp, s, e, bufs) -> None:
        p = tree.nodes[depth][node][0]
        if depth == last:
            sets = tree.leaf_sets[node]
            dst = out[sets[0], s:e]
        else:
            dst = bufs[depth][: e - s]
        if bs[depth] is None:
            torch.mm(inp, Wt[depth][p], out=dst)
        else:
            torch.addmm(bs[depth][p], inp, Wt[depth][p], out=dst)
        if depth == last:
            for q in sets[1:]:
                out[q, s:e] = dst
            return
        act_(dst)
        for c in tree.children[depth][node]:
            visit(depth + 1, c, dst, s, e, bufs)

    blocks = iter(range(0, rows, chunk))
    lock = threading.Lock()

    def worker() -> None:
        bufs = [torch.empty(chunk, W.shape[-2], dtype=out.dtype) for W in Ws[:-1]]
        with torch.no_grad():  # grad mode is per thread
            while True:
                with lock:
                    s = next(blocks, None)
                if s is None:
                    return
                e = min(s + chunk, rows)
                for src, nodes in enumerate(tree.roots):
                    for node in nodes:
                        visit(0, node, xs[src, s:e], s, e, bufs)

    workers = min(torch.get_num_threads() if workers is None else workers, -(-rows // chunk))
    if workers <= 1:
        worker()
    else:
        with _intraop_threads(1), ThreadPoolExecutor(workers) as pool:
            for f in [pool.submit(worker) for _ in range(workers)]:
                f.result()


def fused_mlp_forward(
    x: torch.Tensor,
    layers: Sequence[tuple[torch.Tensor, torch.Tensor | None]],
    act: nn.Module,
    *,
    chunk: int | None = None,
    share_prefixes: bool = True,
    workers: int | None = None,
) -> torch.Tensor | None:
    """The MLP ``act(... act(x W_1ᵀ + b_1) ...) W_Lᵀ + b_L`` for P parameter sets at once,
    without autograd (in-place activations); ``None`` when the shapes are not supported
    (then the caller runs the layer-by-layer reference path).

    ``layers``: (W (out, in) or (P, out, in), b (out,) / (P, out) / None) per layer, the
    batched-parameter convention for x (module docstring). Three exact savings:
    - rows are processed in blocks of ``chunk`` through all layers, so activations stay in
      cache and no (P, rows, width) temporaries are allocated (GEMMs write in place with
      ``out=``, the activation runs in place);
    - ``share_prefixes``: parameter sets whose layers 1..l are bitwise identical (and whose
      inputs are shared) have identical activations after layer l, so each distinct prefix
      is computed once — per-tensor ZO perturbs one tensor per set, so the layers before it
      are shared by all sets perturbing later tensors. Sets are grouped by comparing the
      parameters bit for bit; nothing is approximated;
    - the tree of distinct prefixes is walked depth first per row block.
    Parallelism: ``workers`` (default ``torch.get_num_threads()``) threads take row blocks
    from a shared queue, each running its kernels single-threaded (the intra-op thread
    count is set to 1 for the duration of the call). One synchronisation per call instead
    of one per kernel: on a shared 2-core machine a busy core no longer stalls every GEMM
    and activation at a barrier, and an idle one is used.
    """
    act_ = _INPLACE.get(type(act))
    if act_ is None or not layers:
        return None
    P = _param_batch(x, layers)
    n_in = layers[0][0].shape[-1]
    if P is None or x.shape[-1] != n_in:
        return None
    batched = any(W.dim() == 3 or (b is not None and b.dim() == 2) for W, b in layers)
    if batched and x.dim() >= 3 and x.shape[0] == P:  # batched_linear's shape rule
        lead, xs, parent = x.shape[1:-1], x.reshape(P, -1, n_in), list(range(P))
    else:
        lead, xs, parent = x.shape[:-1], x.reshape(1, -1, n_in), [0] * P
    Ws = [W if W.dim() == 3 else W.expand(P, -1, -1) for W, _ in layers]
    bs = [None if b is None else b if b.dim() == 2 else b.expand(P, -1) for _, b in layers]
    tree = _PrefixTree(Ws, bs, parent, P, xs.shape[0], share_prefixes)
    n_out = layers[-1][0].shape[-2]
    out = torch.empty(P, xs.shape[1], n_out, dtype=x.dtype)
    _walk_blocks(tree, xs, Ws, bs, act_, out,
                 chunk or max(1, FUSED_CHUNK_BYTES // x.element_size()), workers)
    out = out.reshape((P,) + tuple(lead) + (n_out,))
    return out if batched else out[0]


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
        self.fused = True  # fused_mlp_forward when no gradient is needed (same numbers)
        self.share_prefixes = True

    def dense_form(self, layer: nn.Module, x: torch.Tensor):
        """(W, b) of ``layer`` for the fused forward, or None (then no fusing)."""
        return _dense_parameters(layer)

    def apply_layer(self, layer: nn.Module, x: torch.Tensor) -> torch.Tensor:
        return layer(x)

    def forward(self, x):
        if self.fused:
            y = fused_forward(self, x, lambda layer: self.dense_form(layer, x))
            if y is not None:
                return y
        for layer in self.layers[:-1]:
            x = self.act(self.apply_layer(layer, x))
        return self.apply_layer(self.layers[-1], x)


def _dense_parameters(layer: nn.Module):
    if isinstance(layer, DenseLinear):
        return layer.weight, layer.bias
    if isinstance(layer, TTLinear):
        return layer.weight(), layer.bias
    return None


def fused_forward(net: nn.Module, x: torch.Tensor, dense) -> torch.Tensor | None:
    """``fused_mlp_forward`` of ``net`` (``.layers``, ``.act``, ``.share_prefixes``) with
    ``dense(layer) -> (W, b) | None``; None where it does not apply: when autograd must
    record the forward, or a layer has no dense form."""
    if torch.is_grad_enabled() and (x.requires_grad or any(p.requires_grad
                                                          for p in net.parameters())):
        return None
    pairs = []
    for layer in net.layers:
        wb = dense(layer)
        if wb is None:
            return None
        pairs.append(wb)
    if torch.is_grad_enabled() and any(t is not None and t.requires_grad
                                       for wb in pairs for t in wb):
        return None
    with torch.no_grad():
        return fused_mlp_forward(x, pairs, net.act,
                                 share_prefixes=getattr(net, "share_prefixes", True))


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
