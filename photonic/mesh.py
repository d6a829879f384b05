"""MZI meshes: topology layouts and fast batched propagation of fields.

A mesh is a sequence of K physical MZIs (see :mod:`photonic.mzi`); MZI ``k`` acts on modes
``(modes[k], modes[k] + 1)`` and sits in column ``columns[k]``. The sequence order is the order
in which light meets the devices along each mode, so the transfer matrix is

    T = diag(e^{i·out_phase}) · M_{K−1} ⋯ M_1 · M_0        (each M_k embedded on its modes).

A column is block-diagonal with 2×2 blocks, so applying it costs O(N) per field vector:
``x ← A ⊙ x + B ⊙ x[partner]`` (neurophox-style). Everything is batched over leading dimensions
of the phase tensors (many meshes / parameter perturbations at once) and over field columns.
Differentiable through torch; when no gradient is needed a numba kernel does the same work
in place (several times faster for large N). Explicit matrices without gradient come from a
light-cone kernel that propagates the identity, a chunk of input columns at a time, with
gauge-fixed MZI coefficients (12 instead of 16 multiply-adds per pair update), split over
torch's thread budget for large builds.
"""

from __future__ import annotations

import math
import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import cached_property, lru_cache

import numba
import numpy as np
import torch

from photonic.mzi import mzi_entries, unit_phasor
from photonic.textutil import did_you_mean

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
"""Registry of mesh topologies: name → function giving, for ``n`` modes, the top mode of every
MZI in light order (Clements et al. 2016: rectangular, balanced; Reck et al. 1994:
triangular). Unknown names are refused with the valid choices."""

# Topologies whose edge positions carry loss-matching dummies, so that every path crosses
# the same number of elements (Clements et al. 2016: balanced loss).
BALANCED_TOPOLOGIES = frozenset({"clements"})


def _check_topology(topology: str) -> None:
    if topology not in TOPOLOGIES:
        raise ValueError(
            f"topology={topology!r} is not known; valid choices: {sorted(TOPOLOGIES)}"
            f"{did_you_mean(topology, TOPOLOGIES)}"
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
    def _pair_slots(self) -> np.ndarray:
        """(depth, n // 2) index of the MZI on the pair with top mode j (slot j // 2), or −1."""
        slots = np.full((self.depth, self.n // 2), -1, dtype=np.int64)
        slots[self.columns, self.modes // 2] = np.arange(self.num_mzis)
        return slots

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
    arm_ratio: torch.Tensor | float = 1.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-column diagonal and partner coefficients ``A, B`` of shape (..., depth, n).

    ``theta``, ``phi`` (and optionally ``alpha``, ``beta``, ``amplitude``, ``arm_ratio``, see
    :func:`photonic.mzi.mzi_entries`) have shape (..., K).
    Column ℓ maps fields as ``y = A[ℓ] ⊙ x + B[ℓ] ⊙ x[partner[ℓ % 2]]``. Positions without
    an MZI transmit ``pad_amplitude`` (a loss-matching dummy in balanced Clements meshes).
    """
    m00, m01, m10, m11 = mzi_entries(theta, phi, alpha=alpha, beta=beta, amplitude=amplitude,
                                     arm_ratio=arm_ratio)
    m00, m01, m10, m11 = torch.broadcast_tensors(m00, m01, m10, m11)
    batch = m00.shape[:-1]
    size = layout.depth * layout.n
    top = layout._top_index
    bot = top + 1
    pad = torch.as_tensor(pad_amplitude, dtype=m00.real.dtype)
    a = torch.empty(batch + (size,), dtype=m00.dtype)
    a.copy_(pad[..., None])  # broadcasts over batch + (size,)
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


# Field columns (inputs) per light-cone job. A compile-time constant, so the inner loops over a
# job's columns have a fixed trip count and LLVM vectorises them (with 8 it stays scalar).
_CHUNK = 32

# sin/cos for the phases: numba calls libm per element (~20 ns); this loop vectorises (~1.5 ns).
# Cody–Waite reduction by π/2 in three parts (exact n·part for |n| < 2^20) and fdlibm's
# minimax kernels on [−π/4, π/4]; absolute error ≤ 2.3e-16. Larger |x| falls back to libm.
_TWO_OVER_PI = 2 / math.pi
_PIO2 = (1.57079632673412561417e00, 6.07710050630396597660e-11, 2.02226624879595063154e-21)
_SIN = (-1.66666666666666324348e-01, 8.33333333332248946124e-03, -1.98412698298579493134e-04,
        2.75573137070700676789e-06, -2.50507602534068634195e-08, 1.58969099521155010221e-10)
_COS = (4.16666666666666019037e-02, -1.38888888888741095749e-03, 2.48015872894767294178e-05,
        -2.75573143513906633035e-07, 2.08757232129817482790e-09, -1.13596475577881948265e-11)
_SINCOS_RANGE = 1e5


@numba.njit(cache=True, nogil=True, fastmath={"contract"})
def _sincos(x, c, s):  # pragma: no cover - compiled
    """``c[i], s[i] = cos(x[i]), sin(x[i])`` for 1-D float64 arrays."""
    p1, p2, p3 = _PIO2
    s1, s2, s3, s4, s5, s6 = _SIN
    c1, c2, c3, c4, c5, c6 = _COS
    big = 0.0
    for i in range(x.size):
        big = max(big, abs(x[i]))
    if big > _SINCOS_RANGE:
        for i in range(x.size):
            c[i] = math.cos(x[i])
            s[i] = math.sin(x[i])
        return
    for i in range(x.size):
        v = x[i]
        nf = math.floor(v * _TWO_OVER_PI + 0.5)
        r = ((v - nf * p1) - nf * p2) - nf * p3
        z = r * r
        sr = r + r * z * (s1 + z * (s2 + z * (s3 + z * (s4 + z * (s5 + z * s6)))))
        cr = 1.0 - 0.5 * z + z * z * (c1 + z * (c2 + z * (c3 + z * (c4 + z * (c5 + z * c6)))))
        q = np.int64(nf) & 3
        sv = cr if q & 1 else sr
        cv = sr if q & 1 else cr
        s[i] = -sv if q & 2 else sv
        c[i] = -cv if (q + 1) & 2 else cv


def _cos_sin(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    c, s = np.empty_like(x), np.empty_like(x)
    _sincos(x.reshape(-1), c.reshape(-1), s.reshape(-1))
    return c, s


@numba.njit(cache=True, nogil=True)
def _mzi_coefficients(  # pragma: no cover - compiled
    ct, st, cp, sp, cpl, modes, out_cos, out_sin, coef
):
    """Gauge-fixed MZI coefficients for :func:`_cone_kernel`, ``coef`` (nmesh, K, 6).

    ``ct, st, cp, sp`` are cos/sin of θ and φ, float64 (nmesh, K); ``cpl`` (1 or nmesh,
    1 or K, 4) the coupler products amp·(cos α cos β, sin α sin β, sin α cos β, cos α sin β)
    with α, β the coupler angles π/4 + error; entries as :func:`photonic.mzi.mzi_entries`.
    Each MZI ``M = [[a0, b0], [b1, a1]]`` (after the phases passed on by earlier MZIs on its
    modes) is written as ``diag(u0, u1) · [[r0, c0], [r1, c1]]`` with ``r0 = |a0|`` and
    ``r1 = |b1|`` real and ``|u| = 1``; the phases ``u`` move on to the next MZI of each mode
    and finally into the output phase screen ``out_cos + i out_sin`` (updated in place).
    A pair update then costs 12 real multiply-adds instead of 16. Pads are real and commute.
    ``coef[m, k] = (r0, re c0, im c0, r1, re c1, im c1)``.
    """
    nmesh, nk = ct.shape
    n = out_cos.shape[1]
    pr = np.empty(n)  # phase passed on along each mode (real, imaginary part)
    pi = np.empty(n)
    for m in range(nmesh):
        pr[:] = 1.0
        pi[:] = 0.0
        mc = m if cpl.shape[0] > 1 else 0
        for k in range(nk):
            g = cpl[mc, k if cpl.shape[1] > 1 else 0]
            cc, ss, sc, cs = g[0], g[1], g[2], g[3]
            etr, eti, epr, epi = ct[m, k], st[m, k], cp[m, k], sp[m, k]
            # entries (as mzi_entries): m00 = ep·(et·cc − ss), m01 = i·(et·sc + cs),
            # m10 = i·ep·(et·cs + sc), m11 = cc − et·ss
            vr, vi = etr * cc - ss, eti * cc
            m00r, m00i = epr * vr - epi * vi, epr * vi + epi * vr
            m01r, m01i = -eti * sc, etr * sc + cs
            vr, vi = -eti * cs, etr * cs + sc  # i·(et·cs + sc)
            m10r, m10i = epr * vr - epi * vi, epr * vi + epi * vr
            m11r, m11i = cc - etr * ss, -eti * ss
            j = modes[k]
            p0r, p0i, p1r, p1i = pr[j], pi[j], pr[j + 1], pi[j + 1]
            a0r, a0i = m00r * p0r - m00i * p0i, m00r * p0i + m00i * p0r
            b0r, b0i = m01r * p1r - m01i * p1i, m01r * p1i + m01i * p1r
            b1r, b1i = m10r * p0r - m10i * p0i, m10r * p0i + m10i * p0r
            a1r, a1i = m11r * p1r - m11i * p1i, m11r * p1i + m11i * p1r
            r0 = math.sqrt(a0r * a0r + a0i * a0i)
            r1 = math.sqrt(b1r * b1r + b1i * b1i)
            u0r, u0i, u1r, u1i = 1.0, 0.0, 1.0, 0.0
            if r0 > 0:
                inv = 1.0 / r0
                u0r, u0i = a0r * inv, a0i * inv
            if r1 > 0:
                inv = 1.0 / r1
                u1r, u1i = b1r * inv, b1i * inv
            q = coef[m, k]
            q[0] = r0
            q[1], q[2] = b0r * u0r + b0i * u0i, b0i * u0r - b0r * u0i  # c0 = b0·conj(u0)
            q[3] = r1
            q[4], q[5] = a1r * u1r + a1i * u1i, a1i * u1r - a1r * u1i  # c1 = a1·conj(u1)
            pr[j], pi[j], pr[j + 1], pi[j + 1] = u0r, u0i, u1r, u1i
        for j in range(n):
            er, ei = out_cos[m, j], out_sin[m, j]
            out_cos[m, j] = er * pr[j] - ei * pi[j]
            out_sin[m, j] = er * pi[j] + ei * pr[j]


@numba.njit(cache=True, nogil=True, fastmath={"contract"})
def _cone_kernel(  # pragma: no cover - compiled
    coef, slots, pad, out_cos, out_sin, job0, job1, out
):
    """Transfer matrices by propagating the identity, ``_CHUNK`` input columns per job.

    Job ``m · nchunk + c`` propagates inputs ``[c·_CHUNK, (c+1)·_CHUNK)`` of mesh ``m`` through
    all columns in a small buffer (rows: modes; real and imaginary planes side by side, so
    the pair updates are contiguous fixed-length loops that vectorise and stay in cache).
    Only the light cone is touched: after t columns, input k is non-zero only on modes
    [k − t, k + t]. Runs jobs ``job0 … job1 − 1`` (threads take such blocks in turn);
    writes ``out[m, :, cols] = diag(out_cos[m] + i out_sin[m]) · (product of the columns)``.
    """
    nmesh = coef.shape[0]
    depth = slots.shape[0]
    n = out.shape[1]
    w = 2 * _CHUNK
    nchunk = (n + _CHUNK - 1) // _CHUNK
    x = np.empty(n * w)
    for job in range(job0, min(job1, nmesh * nchunk)):
        m = job // nchunk
        k0 = (job % nchunk) * _CHUNK
        kc = min(_CHUNK, n - k0)
        x[:] = 0.0
        for c in range(kc):
            x[(k0 + c) * w + c] = 1.0
        pd = pad[m]
        for col in range(depth):
            par = col % 2
            lo = max(0, k0 - col)
            hi = min(n - 1, k0 + _CHUNK - 1 + col)
            if pd != 1.0:  # unpaired edge modes: loss-matching dummies
                if par == 1 and lo == 0:
                    edge = x[0:w]
                    for c in range(w):
                        edge[c] *= pd
                if (n - par) % 2 == 1 and hi == n - 1:
                    edge = x[(n - 1) * w:n * w]
                    for c in range(w):
                        edge[c] *= pd
            j0 = max(par, lo - 1)
            j0 += (j0 - par) % 2
            for j in range(j0, min(n - 2, hi) + 1, 2):
                kk = slots[col, j // 2]
                blk = x[j * w:(j + 2) * w]  # one view: constant offsets prove no aliasing
                if kk < 0:  # no MZI here: the pair transmits pad
                    if pd != 1.0:
                        for c in range(2 * w):
                            blk[c] *= pd
                    continue
                q = coef[m, kk]
                r0, c0r, c0i, r1, c1r, c1i = q[0], q[1], q[2], q[3], q[4], q[5]
                for c in range(_CHUNK):
                    x0r = blk[c]
                    x0i = blk[_CHUNK + c]
                    x1r = blk[w + c]
                    x1i = blk[w + _CHUNK + c]
                    blk[c] = r0 * x0r + c0r * x1r - c0i * x1i
                    blk[_CHUNK + c] = r0 * x0i + c0r * x1i + c0i * x1r
                    blk[w + c] = r1 * x0r + c1r * x1r - c1i * x1i
                    blk[w + _CHUNK + c] = r1 * x0i + c1r * x1i + c1i * x1r
        for j in range(n):
            er = out_cos[m, j]
            ei = out_sin[m, j]
            row = x[j * w:(j + 1) * w]
            for c in range(kc):
                vr = row[c]
                vi = row[_CHUNK + c]
                out[m, j, k0 + c] = complex(er * vr - ei * vi, er * vi + ei * vr)


# Python threads running the nogil kernel split the jobs of large builds. No numba thread
# pool: alternating numba's pool with torch's OpenMP threads on a small CPU makes both spin
# against each other (measured 10–50× slowdowns on 2 cores); these threads only run while
# no torch op does. The thread budget is torch's (torch.set_num_threads(1) keeps it serial).
_POOL: tuple[int, ThreadPoolExecutor] | None = None  # (pid, pool): a forked child makes its own
_POOL_LOCK = threading.Lock()
_PARALLEL_WORK = 250_000  # pair-element updates per extra thread (a thread hand-off ~ 30 µs)


_WORKSPACE = threading.local()


def _workspace(name: str, shape: tuple[int, ...]) -> np.ndarray:
    """A float64 buffer reused across calls of this thread (fresh large allocations
    page-fault, which costs as much as filling them)."""
    buf = getattr(_WORKSPACE, name, None)
    if buf is None or buf.shape != shape:
        buf = np.empty(shape)
        setattr(_WORKSPACE, name, buf)
    return buf


def _run_jobs(kernel: Callable[[int, int], None], njobs: int, nthreads: int) -> None:
    """Run ``kernel(job0, job1)`` over ``range(njobs)`` on ``nthreads`` threads.

    Threads take blocks of jobs in turn (about four blocks per thread), so a thread whose core
    is busy with another process takes fewer blocks instead of holding up the others.
    """
    global _POOL
    if nthreads <= 1:
        kernel(0, njobs)
        return
    with _POOL_LOCK:
        if _POOL is None or _POOL[0] != os.getpid() or _POOL[1]._max_workers < nthreads - 1:
            if _POOL is not None and _POOL[0] == os.getpid():
                _POOL[1].shutdown(wait=False)
            _POOL = (os.getpid(), ThreadPoolExecutor(nthreads - 1, "photonic-mesh"))
        pool = _POOL[1]
    block = -(-njobs // (4 * nthreads))
    starts = iter(range(0, njobs, block))
    lock = threading.Lock()

    def worker() -> None:
        while True:
            with lock:
                job0 = next(starts, None)
            if job0 is None:
                return
            kernel(job0, job0 + block)

    futures = [pool.submit(worker) for _ in range(nthreads - 1)]
    worker()
    for f in futures:
        f.result()


def _as_rows(value: torch.Tensor | float, batch: torch.Size, size: int) -> np.ndarray:
    """float64 C-contiguous (prod(batch), size) array of a value broadcast to batch + (size,)."""
    arr = torch.as_tensor(value, dtype=torch.float64).detach().numpy()
    arr = np.broadcast_to(arr, tuple(batch) + (size,))
    return np.ascontiguousarray(arr.reshape(-1, size))


def _fast_transfer(
    layout: MeshLayout,
    theta: torch.Tensor,
    phi: torch.Tensor,
    out_phase: torch.Tensor,
    alpha: torch.Tensor | float,
    beta: torch.Tensor | float,
    amplitude: torch.Tensor | float,
    pad_amplitude: torch.Tensor | float,
    arm_ratio: torch.Tensor | float = 1.0,
) -> torch.Tensor | None:
    """No-grad CPU transfer matrices through the numba kernels; None when not applicable."""
    values = (theta, phi, out_phase, alpha, beta, amplitude, pad_amplitude, arm_ratio)
    tensors = [v for v in values if isinstance(v, torch.Tensor)]
    if any(t.device.type != "cpu" or t.dtype not in (torch.float32, torch.float64)
           for t in tensors):
        return None
    if torch.is_grad_enabled() and any(t.requires_grad for t in tensors):
        return None
    real = torch.promote_types(theta.dtype, phi.dtype)
    real = torch.promote_types(real, out_phase.dtype)
    k, n = layout.num_mzis, layout.n
    shapes = [theta.shape[:-1], phi.shape[:-1], out_phase.shape[:-1]]
    shapes += [torch.as_tensor(v).shape[:-1] for v in (alpha, beta, amplitude, arm_ratio)]
    pad_t = torch.as_tensor(pad_amplitude, dtype=torch.float64)
    batch = torch.broadcast_shapes(*shapes, pad_t.shape)
    th, ph, outp = (_as_rows(v, batch, size) for v, size in ((theta, k), (phi, k), (out_phase, n)))
    pad = _as_rows(pad_t[..., None], batch, 1)[:, 0].copy()
    nmesh = th.shape[0]
    coupler = [torch.as_tensor(v, dtype=torch.float64) for v in (alpha, beta, amplitude)]
    if all(v.numel() == 1 for v in coupler):
        al, be, am = (float(v) for v in coupler)
        ca, sa = math.cos(math.pi / 4 + al), math.sin(math.pi / 4 + al)
        cb, sb = math.cos(math.pi / 4 + be), math.sin(math.pi / 4 + be)
        cpl = np.array([[[am * (ca * cb), am * (sa * sb), am * (sa * cb), am * (ca * sb)]]])
    else:
        al, be, am = (_as_rows(v, batch, k) for v in coupler)
        ca, sa = _cos_sin(math.pi / 4 + al)
        cb, sb = _cos_sin(math.pi / 4 + be)
        cpl = np.stack([am * (ca * cb), am * (sa * sb), am * (sa * cb), am * (ca * sb)], -1)
    oc, os_ = _cos_sin(outp)
    ct, st = _cos_sin(th)
    if not (isinstance(arm_ratio, float | int) and arm_ratio == 1):
        # the θ arm's relative transmission scales e^{iθ} (photonic.mzi.mzi_entries)
        rho = _as_rows(arm_ratio, batch, k)
        ct, st = ct * rho, st * rho
    coef = _workspace("coef", (nmesh, k, 6))
    _mzi_coefficients(ct, st, *_cos_sin(ph), cpl, layout.modes, oc, os_, coef)
    out = np.empty((nmesh, n, n), dtype=np.complex128)
    jobs = nmesh * -(-n // _CHUNK)
    work = nmesh * layout.depth * n * n // 2
    nthreads = max(1, min(torch.get_num_threads(), jobs, -(-work // _PARALLEL_WORK)))
    slots = layout._pair_slots
    _run_jobs(lambda job0, job1: _cone_kernel(coef, slots, pad, oc, os_, job0, job1, out),
              jobs, nthreads)
    cdtype = torch.complex128 if real == torch.float64 else torch.complex64
    return torch.from_numpy(out).to(cdtype).reshape(tuple(batch) + (n, n))


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
    arm_ratio: torch.Tensor | float = 1.0,
) -> torch.Tensor:
    """Transfer matrix (..., n, n), T[out, in], of meshes with the given physical phases.

    ``alpha``, ``beta``, ``amplitude`` and ``arm_ratio`` (..., K) are the per-MZI coupler
    errors, field transmission and θ-arm relative transmission of
    :func:`photonic.mzi.mzi_entries`; ``pad_amplitude`` the transmission of empty positions.
    """
    fast = _fast_transfer(layout, theta, phi, out_phase, alpha, beta, amplitude, pad_amplitude,
                          arm_ratio)
    if fast is not None:
        return fast
    a, b = column_coefficients(layout, theta, phi, alpha=alpha, beta=beta, amplitude=amplitude,
                               pad_amplitude=pad_amplitude, arm_ratio=arm_ratio)
    t = propagate_columns(layout, a, b, torch.eye(layout.n, dtype=a.dtype))
    return unit_phasor(out_phase)[..., :, None] * t
