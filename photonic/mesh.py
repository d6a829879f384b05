"""MZI meshes: topology layouts and fast batched propagation of fields.

A mesh is a sequence of K physical MZIs (see :mod:`photonic.mzi`); MZI ``k`` acts on modes
``(modes[k], modes[k] + 1)`` and sits in column ``columns[k]``. The sequence order is the order
in which light meets the devices along each mode, so the transfer matrix is

    T = diag(e^{i·out_phase}) · M_{K−1} ⋯ M_1 · M_0        (each M_k embedded on its modes).

A column is block-diagonal with 2×2 blocks, so applying it costs O(N) per field vector:
``x ← A ⊙ x + B ⊙ x[partner]`` (neurophox-style). Everything is batched over leading dimensions
of the phase tensors (many meshes / parameter perturbations at once) and over field columns.
Differentiable through torch; when no gradient is needed a numba kernel does the same work
in place (several times faster for large N).
"""

from __future__ import annotations

import difflib
import threading
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property, lru_cache

import numba
import numpy as np
import torch

from photonic.mzi import mzi_entries, unit_phasor

__all__ = [
    "MeshLayout",
    "TOPOLOGIES",
    "mesh_layout",
    "column_coefficients",
    "propagate_columns",
    "transfer_matrix",
]


def _clements_sequence(n: int) -> list[int]:
    """Top modes of the Clements MZIs in light order.

    Mirrors the nulling order of :func:`photonic.decompose.decompose` (Clements et al.,
    Optica 3, 1460 (2016)): right-nulling elements in nulling order, then left-nulling
    elements in reverse order (they are commuted through the diagonal last-first).
    """
    right, left = [], []
    for i in range(n - 1):
        for j in range(i + 1):
            if i % 2 == 0:
                right.append(i - j)
            else:
                left.append(n - 1 - i + j - 1)
    return right + left[::-1]


def _reck_sequence(n: int) -> list[int]:
    """Top modes of the Reck MZIs in light order (Reck et al., PRL 73, 58 (1994))."""
    return [c for r in range(n - 1, 0, -1) for c in range(r)]


TOPOLOGIES: dict[str, Callable[[int], list[int]]] = {
    "clements": _clements_sequence,
    "reck": _reck_sequence,
}

# Topologies whose edge positions carry loss-matching dummies, so that every path crosses
# the same number of elements (Clements et al. 2016: balanced loss).
BALANCED_TOPOLOGIES = frozenset({"clements"})


def _check_topology(topology: str) -> None:
    if topology not in TOPOLOGIES:
        close = difflib.get_close_matches(topology, TOPOLOGIES, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ValueError(
            f"topology={topology!r} is not known; valid choices: {sorted(TOPOLOGIES)}{hint}"
        )


@dataclass(frozen=True, eq=False)
class MeshLayout:
    """Static structure of an N-mode mesh: which modes each MZI couples and its column."""

    n: int
    topology: str
    modes: np.ndarray  # (K,) top mode of each MZI, light order
    columns: np.ndarray  # (K,) column of each MZI

    @property
    def num_mzis(self) -> int:
        return int(self.modes.size)

    @property
    def depth(self) -> int:
        return int(self.columns.max()) + 1 if self.modes.size else 0

    @cached_property
    def _top_index(self) -> torch.Tensor:
        return torch.from_numpy(self.columns * self.n + self.modes)

    @cached_property
    def partner(self) -> torch.Tensor:
        """(2, n) mode partner for even / odd columns (itself where a mode is unpaired)."""
        idx = np.arange(self.n)
        out = np.empty((2, self.n), dtype=np.int64)
        for parity in (0, 1):
            p = np.where((idx - parity) % 2 == 0, idx + 1, idx - 1)
            p[(p < 0) | (p >= self.n)] = idx[(p < 0) | (p >= self.n)]
            out[parity] = p
        return torch.from_numpy(out)

    def route(self, cross: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Follow each input through a mesh of bar/cross switches.

        ``cross[k]`` is True when MZI k is in the cross state. Returns ``(out_mode, hops)``:
        for every input mode, the output it reaches and the number of MZIs it crossed.
        """
        pos = np.arange(self.n)
        hops = np.zeros(self.n, dtype=np.int64)
        where = {int(m): i for i, m in enumerate(pos)}
        for k in np.argsort(self.columns, kind="stable"):
            m = int(self.modes[k])
            a, b = where.pop(m, None), where.pop(m + 1, None)
            for src, top in ((a, True), (b, False)):
                if src is None:
                    continue
                hops[src] += 1
                dest = (m + 1 if top else m) if cross[k] else (m if top else m + 1)
                where[dest] = src
        out = np.empty(self.n, dtype=np.int64)
        for mode, src in where.items():
            out[src] = mode
        return out, hops



@lru_cache(maxsize=256)
def mesh_layout(n: int, topology: str = "clements") -> MeshLayout:
    """Layout of an ``n``-mode mesh of the given topology ("clements" or "reck").

    Columns are assigned greedily (each MZI in the first column after its predecessors on
    both of its modes, with column parity equal to its top mode's parity); this gives the
    rectangular Clements mesh of depth N and the triangular Reck mesh of depth 2N − 3.
    """
    _check_topology(topology)
    if not isinstance(n, int | np.integer) or n < 2:
        raise ValueError(f"n={n!r}: a mesh needs an integer number of modes ≥ 2")
    modes = np.asarray(TOPOLOGIES[topology](int(n)), dtype=np.int64)
    last = np.full(n, -1, dtype=np.int64)
    columns = np.empty_like(modes)
    for k, m in enumerate(modes):
        col = max(last[m], last[m + 1]) + 1
        if col % 2 != m % 2:
            col += 1
        columns[k] = col
        last[m] = last[m + 1] = col
    return MeshLayout(n=int(n), topology=topology, modes=modes, columns=columns)


def column_coefficients(
    layout: MeshLayout,
    theta: torch.Tensor,
    phi: torch.Tensor,
    *,
    alpha: torch.Tensor | float = 0.0,
    beta: torch.Tensor | float = 0.0,
    amplitude: torch.Tensor | float = 1.0,
    pad_amplitude: torch.Tensor | float = 1.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-column diagonal and partner coefficients ``A, B`` of shape (..., depth, n).

    ``theta``, ``phi`` (and optionally ``alpha``, ``beta``, ``amplitude``) have shape (..., K).
    Column ℓ maps fields as ``y = A[ℓ] ⊙ x + B[ℓ] ⊙ x[partner[ℓ % 2]]``. Positions without
    an MZI transmit ``pad_amplitude`` (a loss-matching dummy in balanced Clements meshes).
    """
    m00, m01, m10, m11 = mzi_entries(theta, phi, alpha=alpha, beta=beta, amplitude=amplitude)
    m00, m01, m10, m11 = torch.broadcast_tensors(m00, m01, m10, m11)
    batch = m00.shape[:-1]
    size = layout.depth * layout.n
    top = layout._top_index
    bot = top + 1
    pad = torch.as_tensor(pad_amplitude, dtype=m00.real.dtype)
    a = torch.empty(batch + (size,), dtype=m00.dtype)
    a.copy_(pad[..., None].expand(batch + (size,)) if pad.ndim else pad.expand(a.shape))
    b = torch.zeros(batch + (size,), dtype=m00.dtype)
    if torch.is_grad_enabled() and any(m.requires_grad for m in (m00, m01, m10, m11)):
        a = a.index_copy(-1, top, m00).index_copy(-1, bot, m11)
        b = b.index_copy(-1, top, m01).index_copy(-1, bot, m10)
    else:
        a[..., top] = m00
        a[..., bot] = m11
        b[..., top] = m01
        b[..., bot] = m10
    shape = batch + (layout.depth, layout.n)
    return a.reshape(shape), b.reshape(shape)


@numba.njit(cache=True, inline="always")
def _unpaired(j, parity, n):  # pragma: no cover - compiled
    """Mode j has no partner in a column of this parity (an edge mode)."""
    if (j - parity) % 2 == 0:
        return j + 1 >= n
    return j - 1 < 0


@numba.njit(cache=True)
def _propagate_inplace(a, b, x, chunk):  # pragma: no cover - compiled
    nmesh, depth, n = a.shape
    ncol = x.shape[2]
    nchunk = (ncol + chunk - 1) // chunk
    for job in range(nmesh * nchunk):
        m = job // nchunk
        k0 = (job % nchunk) * chunk
        k1 = min(k0 + chunk, ncol)
        for col in range(depth):
            for j in range(n):
                if _unpaired(j, col % 2, n) and a[m, col, j] != 1:
                    for k in range(k0, k1):
                        x[m, j, k] *= a[m, col, j]
            for j in range(col % 2, n - 1, 2):
                a0 = a[m, col, j]
                b0 = b[m, col, j]
                b1 = b[m, col, j + 1]
                a1 = a[m, col, j + 1]
                if b0 == 0 and b1 == 0 and a0 == 1 and a1 == 1:
                    continue
                for k in range(k0, k1):
                    x0 = x[m, j, k]
                    x1 = x[m, j + 1, k]
                    x[m, j, k] = a0 * x0 + b0 * x1
                    x[m, j + 1, k] = b1 * x0 + a1 * x1


def propagate_columns(
    layout: MeshLayout, a: torch.Tensor, b: torch.Tensor, fields: torch.Tensor
) -> torch.Tensor:
    """Apply all columns to ``fields`` of shape (..., n, B) (field vectors as columns).

    Batch dimensions of ``a``/``b`` (..., depth, n) and ``fields`` broadcast. Uses the numba
    kernel when no gradient is required, torch ops otherwise.
    """
    batch = torch.broadcast_shapes(a.shape[:-2], fields.shape[:-2])
    dtype = torch.promote_types(a.dtype, fields.dtype)
    needs_grad = torch.is_grad_enabled() and (
        a.requires_grad or b.requires_grad or fields.requires_grad
    )
    if not needs_grad and dtype in (torch.complex128, torch.complex64):
        x = fields.to(dtype).expand(batch + fields.shape[-2:]).reshape((-1,) + fields.shape[-2:])
        x = np.array(x.numpy(), copy=True)
        aa = a.to(dtype).expand(batch + a.shape[-2:]).reshape((-1,) + a.shape[-2:]).numpy()
        bb = b.to(dtype).expand(batch + b.shape[-2:]).reshape((-1,) + b.shape[-2:]).numpy()
        _propagate_inplace(np.ascontiguousarray(aa), np.ascontiguousarray(bb), x, 64)
        return torch.from_numpy(x).reshape(batch + fields.shape[-2:])
    partner = layout.partner
    x = fields.to(dtype)
    for col in range(layout.depth):
        p = partner[col % 2]
        x = a[..., col, :, None] * x + b[..., col, :, None] * x[..., p, :]
    return x


@numba.njit(cache=True, fastmath=True)
def _segment_kernel(ar, ai, br, bi, seg_len, outr, outi):  # pragma: no cover - compiled
    """Transfer matrix of each run of ``seg_len`` columns, propagated from the identity.

    Real and imaginary parts are kept in separate float arrays (the inner loop then
    vectorises). Only the light cone is touched: before local column t, field column k is
    non-zero only on rows [k − t, k + t], so a segment of s columns costs ≈ s² N / 2 pair
    updates. Writes into ``outr``/``outi`` (nmesh, nseg, n, n), zero-initialised (the real
    and imaginary views of one complex array).
    """
    nmesh, depth, n = ar.shape
    nseg = (depth + seg_len - 1) // seg_len
    for job in range(nmesh * nseg):
        m = job // nseg
        g = job % nseg
        xr = outr[m, g]
        xi = outi[m, g]
        for i in range(n):
            xr[i, i] = 1.0
        c0 = g * seg_len
        for t in range(min(seg_len, depth - c0)):
            col = c0 + t
            for j in range(n):
                if _unpaired(j, col % 2, n) and (ar[m, col, j] != 1 or ai[m, col, j] != 0):
                    pr = ar[m, col, j]
                    pi = ai[m, col, j]
                    for k in range(n):
                        vr = xr[j, k]
                        vi = xi[j, k]
                        xr[j, k] = pr * vr - pi * vi
                        xi[j, k] = pr * vi + pi * vr
            for j in range(col % 2, n - 1, 2):
                a0r = ar[m, col, j]
                a0i = ai[m, col, j]
                a1r = ar[m, col, j + 1]
                a1i = ai[m, col, j + 1]
                b0r = br[m, col, j]
                b0i = bi[m, col, j]
                b1r = br[m, col, j + 1]
                b1i = bi[m, col, j + 1]
                if (b0r == 0 and b0i == 0 and b1r == 0 and b1i == 0 and a0r == 1 and a0i == 0
                        and a1r == 1 and a1i == 0):
                    continue
                r0 = xr[j]
                i0 = xi[j]
                r1 = xr[j + 1]
                i1 = xi[j + 1]
                for k in range(max(0, j - t), min(n, j + t + 2)):
                    x0r = r0[k]
                    x0i = i0[k]
                    x1r = r1[k]
                    x1i = i1[k]
                    r0[k] = a0r * x0r - a0i * x0i + b0r * x1r - b0i * x1i
                    i0[k] = a0r * x0i + a0i * x0r + b0r * x1i + b0i * x1r
                    r1[k] = b1r * x0r - b1i * x0i + a1r * x1r - a1i * x1i
                    i1[k] = b1r * x0i + b1i * x0r + a1r * x1i + a1i * x1r


# The kernels run single-threaded on purpose: alternating numba's thread pool with torch's
# OpenMP threads on a small CPU makes both spin against each other (measured 10–50× slowdowns
# on 2 cores); torch keeps its threads for the GEMMs.
_WORKSPACE = threading.local()


def _workspace(shape: tuple[int, ...]) -> np.ndarray:
    """A zeroed complex buffer reused across calls (fresh large allocations page-fault)."""
    buf = getattr(_WORKSPACE, "segments", None)
    if buf is None or buf.shape != shape:
        buf = np.zeros(shape, dtype=np.complex128)
        _WORKSPACE.segments = buf
    else:
        buf.fill(0)
    return buf


def _segment_matrices(a: np.ndarray, b: np.ndarray, seg_len: int) -> np.ndarray:
    """Complex (nmesh, nseg, n, n) segment matrices of complex (nmesh, depth, n) coefficients."""
    parts = [np.ascontiguousarray(v, dtype=np.float64) for v in (a.real, a.imag, b.real, b.imag)]
    nseg = -(-a.shape[1] // seg_len)
    out = _workspace((a.shape[0], nseg, a.shape[2], a.shape[2]))
    _segment_kernel(*parts, seg_len, out.real, out.imag)
    return out


# Columns per segment of a large no-grad matrix build: segments are built by the light-cone
# kernel above and chained with BLAS matmuls; 64 balances the two costs on a 2-core CPU
# (benchmarks/bench_mesh.py).
_SEGMENT_COLUMNS = 64


def _build_matrix(layout: MeshLayout, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Column product of (..., depth, n) coefficients as (..., n, n) matrices."""
    needs_grad = torch.is_grad_enabled() and (a.requires_grad or b.requires_grad)
    if needs_grad or a.dtype not in (torch.complex128, torch.complex64):
        return propagate_columns(layout, a, b, torch.eye(layout.n, dtype=a.dtype))
    batch = a.shape[:-2]
    aa = np.ascontiguousarray(a.reshape((-1,) + a.shape[-2:]).numpy())
    bb = np.ascontiguousarray(b.reshape((-1,) + b.shape[-2:]).numpy())
    segs = torch.from_numpy(_segment_matrices(aa, bb, _SEGMENT_COLUMNS))
    t = segs[:, 0].clone()
    if segs.shape[1] > 1:
        spare = torch.empty_like(t)
        for g in range(1, segs.shape[1]):
            torch.matmul(segs[:, g], t, out=spare)
            t, spare = spare, t
    return t.to(a.dtype).reshape(batch + (layout.n, layout.n))


def transfer_matrix(
    layout: MeshLayout,
    theta: torch.Tensor,
    phi: torch.Tensor,
    out_phase: torch.Tensor,
    *,
    alpha: torch.Tensor | float = 0.0,
    beta: torch.Tensor | float = 0.0,
    amplitude: torch.Tensor | float = 1.0,
    pad_amplitude: torch.Tensor | float = 1.0,
) -> torch.Tensor:
    """Transfer matrix (..., n, n), T[out, in], of meshes with the given physical phases."""
    a, b = column_coefficients(layout, theta, phi, alpha=alpha, beta=beta, amplitude=amplitude,
                               pad_amplitude=pad_amplitude)
    t = _build_matrix(layout, a, b)
    return unit_phasor(out_phase)[..., :, None] * t
