"""Programmed meshes and the photonic tensor core (SVD tiles: U Σ V† on MZI meshes).

A real M×N matrix W is cut into k×k tiles (zero padded). Each tile W_rc = U Σ V† runs
optically as: input modulators (DAC) → mesh V† → one attenuating MZI per mode realising
σ_i/σ_max (cross-port amplitude cos(θ/2)) → mesh U → coherent (homodyne) detection of the
in-phase quadrature → TIA → ADC; the electronic gain σ_max and the sum over tile columns are
digital. Per-tile MZIs: k(k−1) for U and V plus k for Σ; optical path ≈ 2k + 1 MZIs.

Detection model (balanced homodyne, local oscillator of power P_LO per output):
signal current i = 2R·√P_LO·Re(E), noise variance
σ_i² = 2qB(R(P_LO + |E|²) + 2I_d) + 4k_BTB/R_L (shot + thermal;
photontorch / standard photodetector theory). The ADC spans the largest possible signal
2R√(P_LO·P_ch·k) with 2^b levels (signed).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch

from photonic.decompose import MeshPhases, decompose
from photonic.devices import DeviceParams
from photonic.mesh import BALANCED_TOPOLOGIES, mesh_layout
from photonic.mzi import mzi_entries
from photonic.noise import (
    MeshErrors,
    NoiseConfig,
    coupler_angles,
    mzi_transmission,
    num_shifters,
    realise_mesh,
    realise_phases,
    sample_mesh_errors,
)
from photonic.power import (
    channel_power_mw,
    receiver_current_variance,
    svd_path_loss_db,
)

__all__ = [
    "Mesh",
    "CoreCounts",
    "TensorCore",
    "TileProgram",
    "program_tiles",
    "tile_matrices",
    "optical_matmul",
    "quantize_signed",
    "equal_rows",
    "batched_linear",
]



_INT_VIEW = {torch.float64: torch.int64, torch.float32: torch.int32,
             torch.float16: torch.int16, torch.bfloat16: torch.int16}


@lru_cache(maxsize=32)
def _projection(n: int) -> torch.Tensor:
    return torch.randn(n, generator=torch.Generator().manual_seed(n), dtype=torch.float64)


def equal_rows(flat: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Groups of bitwise-equal rows of a (P, D) float tensor: ``(first, inverse)`` with
    ``first[g]`` the lowest row index of group g and ``inverse[p]`` the group of row p.

    Rows are keyed by a fixed random projection (a sort of P numbers, not of P whole rows)
    and equal keys are confirmed bitwise; if a key collision joined different rows, the
    rows themselves are sorted instead (slower, same result).
    """
    P = flat.shape[0]
    every = torch.arange(P)
    bits = _INT_VIEW.get(flat.dtype)
    if P == 1 or bits is None:
        return every, every
    flat = flat.detach().contiguous()
    ints = flat.view(bits)
    key = _row_keys(flat)
    _, inverse = torch.unique(key, return_inverse=True)
    first = _first_of(inverse)
    rep = first[inverse]
    # each row that joined an earlier one, compared bitwise in place with its representative
    if not all(torch.equal(ints[p], ints[r]) for p, r in zip(
            every.tolist(), rep.tolist(), strict=True) if p != r):
        _, inverse = torch.unique(ints, dim=0, return_inverse=True)
        first = _first_of(inverse)
    return first, inverse


#: columns per float64 slice of the row keys: a (P, 2,048) slice stays in cache, where one
#: float64 copy of a (115, 262,144) realised 512×512 layer is 240 MB
_KEY_COLUMNS = 2048


def _row_keys(flat: torch.Tensor) -> torch.Tensor:
    """Projection key of every row, in float64, summed over column slices (no whole-matrix
    float64 copy); rows holding NaN or ±inf are keyed on ``nan_to_num`` of their values.
    Each slice is an elementwise product summed along the row — the same reduction for
    every row, so equal rows get equal keys (a matrix-vector product rounds rows
    differently by their position in its blocking, and splits equal rows)."""
    proj = _projection(flat.shape[1])
    key = torch.zeros(flat.shape[0], dtype=torch.float64)
    for c in range(0, flat.shape[1], _KEY_COLUMNS):
        key += (flat[:, c:c + _KEY_COLUMNS].to(torch.float64) * proj[c:c + _KEY_COLUMNS]).sum(-1)
    if not bool(torch.isfinite(key).all()):
        key = (torch.nan_to_num(flat.to(torch.float64)) * proj).sum(-1)
    return key


def _first_of(inverse: torch.Tensor) -> torch.Tensor:
    first = torch.full((int(inverse.max()) + 1,), inverse.numel(), dtype=torch.long)
    return first.scatter_reduce(0, inverse, torch.arange(inverse.numel()), "amin")


def _generator(seed: int | torch.Generator | None) -> torch.Generator:
    if isinstance(seed, torch.Generator):
        return seed
    g = torch.Generator()
    g.manual_seed(0 if seed is None else int(seed))
    return g


class Mesh:
    """A programmed mesh on a (possibly non-ideal) chip.

    Static fabrication errors are drawn once from ``seed`` when the mesh is made; dynamic
    phase noise is drawn anew at every :meth:`matrix` / call.
    """

    def __init__(
        self,
        phases: MeshPhases,
        *,
        device: DeviceParams | None = None,
        noise: NoiseConfig | None = None,
        seed: int | torch.Generator | None = 0,
        errors: MeshErrors | None = None,
    ):
        self.phases = phases
        self.device = device or DeviceParams()
        self.noise = noise or NoiseConfig()
        self._gen = _generator(seed)
        self.errors = errors or sample_mesh_errors(
            phases.layout, self.device, generator=self._gen, batch_shape=tuple(phases.batch_shape)
        )

    @classmethod
    def from_unitary(cls, U, topology: str = "clements", **kwargs) -> Mesh:
        return cls(decompose(U, topology), **kwargs)

    @property
    def n(self) -> int:
        return self.phases.layout.n

    @property
    def num_mzis(self) -> int:
        return self.phases.layout.num_mzis

    @property
    def depth(self) -> int:
        return self.phases.layout.depth

    @property
    def num_phase_shifters(self) -> int:
        return num_shifters(self.phases.layout)

    def matrix(self) -> torch.Tensor:
        """Realised transfer matrix (..., N, N), T[out, in]."""
        return realise_mesh(
            self.phases, device=self.device, noise=self.noise, errors=self.errors,
            generator=self._gen,
        )

    def __call__(self, fields: torch.Tensor) -> torch.Tensor:
        """Output fields for input fields (..., N) (vectors in the last dim): ``x @ T.T``."""
        fields = torch.as_tensor(fields)
        if fields.shape[-1] != self.n:
            raise ValueError(f"fields.shape[-1]={fields.shape[-1]} but the mesh has {self.n} modes")
        return fields.to(torch.complex128) @ self.matrix().transpose(-1, -2)


@dataclass
class CoreCounts:
    """What a tensor core used; read by :func:`photonic.estimate_cost`."""

    num_tiles: int = 0
    tile: int = 0
    num_mzis: int = 0
    num_phase_shifters: int = 0
    num_modulators: int = 0
    num_detectors: int = 0
    inferences: int = 0  # input vectors processed
    dac_conversions: int = 0
    adc_conversions: int = 0
    reprogram_events: int = 0  # times the whole core was (re)programmed
    shifter_writes: int = 0  # phase-shifter values written

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


@dataclass(frozen=True, eq=False)
class TileProgram:
    """Programmed phases of an R×C grid of k×k SVD tiles (leading dims allowed).

    ``v``/``u``: MeshPhases with batch (..., R, C); ``sigma_theta``: (..., R, C, k) internal
    phases of the Σ attenuators; ``gain``: (..., R, C) electronic gain σ_max.
    """

    v: MeshPhases
    u: MeshPhases
    sigma_theta: torch.Tensor
    gain: torch.Tensor
    shape: tuple[int, int]  # (M, N) of the represented matrix
    tile: int

    @property
    def grid(self) -> tuple[int, int]:
        return tuple(self.gain.shape[-2:])

    def phase_vector(self) -> torch.Tensor:
        """All programmed shifter phases, (..., R, C, S_tile): V, U, then Σ (θ only)."""
        return torch.cat(
            [self.v.theta, self.v.phi, self.v.out_phase, self.u.theta, self.u.phi,
             self.u.out_phase, self.sigma_theta], -1,
        )


def require_int(name: str, value, *, minimum: int) -> int:
    """``value`` as an int ≥ ``minimum``; ValueError naming ``name`` otherwise (a bool, a
    float such as 2.5 or a too small count is refused before any tensor is allocated)."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum:
        raise ValueError(f"{name}={value!r}: must be an integer ≥ {minimum}")
    return int(value)


def tensor_core_memory_bytes(rows: int, cols: int, *, tile: int, batch: int) -> int:
    """Peak working memory [bytes] of programming a rows×cols matrix on tile×tile SVD tiles
    (``TensorCore.from_matrix``), realising it (``matrix()``) and one call on ``batch``
    input vectors, in complex128 (16 B per entry):
    160 MiB + 16 B × (16 · R·C·k² + 5 · batch·R·C·k), R×C the tile grid. The 160 MiB
    (allocator pools and one-time buffers) and the factors 16 and 5 are a fit to measured
    peak RSS with 10–30 % margin (``python benchmarks/bench_memory.py``)."""
    r, c = -(-rows // tile), -(-cols // tile)
    return 160 * 2**20 + 16 * (16 * r * c * tile * tile + 5 * batch * r * c * tile)


def _pad_tiles(w: torch.Tensor, k: int) -> torch.Tensor:
    """(..., M, N) → (..., R, C, k, k) zero-padded tiles."""
    m, n = w.shape[-2:]
    r, c = -(-m // k), -(-n // k)
    wp = torch.nn.functional.pad(w, (0, c * k - n, 0, r * k - m))
    return wp.reshape(w.shape[:-2] + (r, k, c, k)).transpose(-3, -2)


def program_tiles(w: torch.Tensor, *, tile: int, topology: str = "clements") -> TileProgram:
    """Decompose real matrices (..., M, N) into SVD tiles of MZI phases."""
    w = torch.as_tensor(w, dtype=torch.float64).detach()
    if w.ndim < 2:
        raise ValueError(f"W must have shape (..., M, N); got {tuple(w.shape)}")
    if tile < 2:
        raise ValueError(f"tile={tile}: a tile needs at least 2 modes")
    tiles = _pad_tiles(w, tile)
    u, s, vh = torch.linalg.svd(tiles)
    smax = s[..., :1].clamp_min(torch.finfo(torch.float64).tiny)
    ratio = (s / smax).clamp(0.0, 1.0)
    sigma_theta = 2 * torch.acos(ratio)
    return TileProgram(
        v=decompose(vh.to(torch.complex128), topology),
        u=decompose(u.to(torch.complex128), topology),
        sigma_theta=sigma_theta,
        gain=s[..., 0],
        shape=tuple(w.shape[-2:]),
        tile=tile,
    )


@dataclass(frozen=True, eq=False)
class TileErrors:
    v: MeshErrors
    u: MeshErrors
    sigma: MeshErrors  # of the Σ MZIs seen as a 1-column "mesh" of k MZIs


def sample_tile_errors(
    device: DeviceParams, grid: tuple[int, int], tile: int, topology: str, generator
) -> TileErrors:
    layout = mesh_layout(tile, topology)
    sig_layout = sigma_layout(tile)
    return TileErrors(
        v=sample_mesh_errors(layout, device, generator=generator, batch_shape=grid),
        u=sample_mesh_errors(layout, device, generator=generator, batch_shape=grid),
        sigma=sample_mesh_errors(sig_layout, device, generator=generator, batch_shape=grid),
    )


@lru_cache(maxsize=64)
def sigma_layout(k: int):
    """The Σ column as a layout of k independent MZIs (one per mode, to a dump port)."""
    from photonic.mesh import MeshLayout

    return MeshLayout(
        n=2 * k, topology="sigma", modes=np.arange(0, 2 * k, 2), columns=np.zeros(k, np.int64)
    )


def _sigma_amplitudes(theta, device, noise, errors: MeshErrors | None, generator):
    """Cross-port field of each Σ MZI, made real-positive by its external phase φ = −θ/2 − π/2.

    Non-idealities act on both phases as on any shifter; returns (..., k) complex.
    """
    k = theta.shape[-1]
    layout = sigma_layout(k)
    phi = -theta / 2 - math.pi / 2
    prog = torch.cat([theta, phi, torch.zeros(theta.shape[:-1] + (2 * k,), dtype=theta.dtype)], -1)
    real = realise_phases(prog, layout, device, noise, errors, generator=generator)
    alpha, beta = coupler_angles(device, noise, errors, dtype=real.dtype)
    amp, arm_ratio = mzi_transmission(device, noise, errors, dtype=real.dtype)
    _, _, m10, _ = mzi_entries(real[..., :k], real[..., k : 2 * k], alpha=alpha, beta=beta,
                               amplitude=amp, arm_ratio=arm_ratio)
    return m10


def tile_matrices(
    prog: TileProgram,
    *,
    device: DeviceParams,
    noise: NoiseConfig,
    errors: TileErrors | None,
    generator: torch.Generator | None,
    phases: torch.Tensor | None = None,
) -> torch.Tensor:
    """Realised optical tile matrices (..., R, C, k, k) (complex, without the gain σ_max).

    ``phases`` may override ``prog.phase_vector()`` (phase-domain training: leading dims of
    ``phases`` are extra batches, e.g. P perturbations).
    """
    lay = prog.v.layout
    s_mesh = num_shifters(lay)
    if phases is None:
        phases = prog.phase_vector()
    pv, pu, ps = phases[..., :s_mesh], phases[..., s_mesh : 2 * s_mesh], phases[..., 2 * s_mesh :]
    ev = eu = es = None
    if errors is not None:
        ev, eu, es = errors.v, errors.u, errors.sigma
    tv = realise_mesh(prog.v, device=device, noise=noise, errors=ev, generator=generator,
                      programmed=pv)
    tu = realise_mesh(prog.u, device=device, noise=noise, errors=eu, generator=generator,
                      programmed=pu)
    sig = _sigma_amplitudes(ps, device, noise, es, generator)
    return (tu * sig[..., None, :]) @ tv


def nominal_path_mzis(tile: int, topology: str) -> float:
    """Elements on a light path through one SVD tile (V mesh, Σ MZI, U mesh).

    Balanced meshes (Clements with edge dummies): depth each; others (Reck): the mean over
    inputs, 2K/N per mesh.
    """
    lay = mesh_layout(tile, topology)
    per_mesh = lay.depth if topology in BALANCED_TOPOLOGIES else 2 * lay.num_mzis / tile
    return 2 * per_mesh + 1


def realised_gain(gain: torch.Tensor, tile: int, topology: str, device: DeviceParams,
                  noise: NoiseConfig) -> torch.Tensor:
    """Electronic gain after calibrating out the nominal path insertion loss.

    A designer knows the nominal loss per MZI and sets the TIA / digital gain to undo it;
    device-to-device loss spread and every other error remain.
    """
    if not noise.insertion_loss or device.mzi.insertion_loss_db == 0:
        return gain
    path_db = device.mzi.insertion_loss_db * nominal_path_mzis(tile, topology)
    return gain * 10.0 ** (path_db / 20.0)


def assemble_tiles(t: torch.Tensor) -> torch.Tensor:
    """(..., R, C, k, k) tiles → (..., R·k, C·k) matrix."""
    r, c, k = t.shape[-4], t.shape[-3], t.shape[-1]
    return t.transpose(-3, -2).reshape(t.shape[:-4] + (r * k, c * k))


def batched_linear(x: torch.Tensor, weight: torch.Tensor,
                   bias: torch.Tensor | None = None) -> torch.Tensor:
    """``y = x Wᵀ + b`` for one weight or a batch of parameter sets.

    ``weight`` is (out, in) or (P.., out, in) with batch dims P.. (e.g. P perturbed
    parameter sets); ``bias`` is None, (out,) or (P.., out).

    Shape rule: ``x`` is *per set* when it has at least as many dims as ``weight`` and its
    leading dims equal P..: x (P.., ..., in) → y (P.., ..., out), set p's rows through set
    p's weight. Any other x (..., in) is *shared* by every set: y (P.., ..., out). So a
    (P, in) input to a (P, out, in) weight is P shared rows, y (P, P, out); one row per set
    is written (P, 1, in).
    """
    if weight.ndim == 2:
        return torch.nn.functional.linear(x, weight, bias)
    p = weight.shape[:-2]
    out_f, in_f = weight.shape[-2:]
    per_set = x.ndim >= weight.ndim and tuple(x.shape[: len(p)]) == tuple(p)
    lead = x.shape[len(p):-1] if per_set else x.shape[:-1]
    sets = math.prod(p)
    rows = x.reshape(sets, -1, in_f) if per_set else \
        x.reshape(1, -1, in_f).expand(sets, -1, -1)
    w_t = weight.reshape(sets, out_f, in_f).transpose(1, 2)
    if bias is None:
        y = torch.bmm(rows, w_t)
    else:
        b = bias.reshape(-1, 1, out_f) if bias.ndim > 1 else bias.reshape(1, 1, out_f)
        y = torch.baddbmm(b.expand(sets, 1, out_f), rows, w_t)
    return y.reshape(*p, *lead, out_f)


def quantize_signed(x: torch.Tensor, bits: int | None, full_scale: torch.Tensor | float):
    """Uniform signed quantiser with 2^(b−1) − 1 levels per side over ±full_scale (clipped)."""
    if bits is None:
        return x
    levels = 2 ** (bits - 1) - 1
    fs = torch.as_tensor(full_scale, dtype=x.dtype)
    q = torch.round((x / fs).clamp(-1, 1) * levels) / levels * fs
    return x + (q - x).detach()


def optical_matmul(
    tiles: torch.Tensor,
    gain: torch.Tensor,
    x: torch.Tensor,
    shape: tuple[int, int],
    *,
    device: DeviceParams,
    noise: NoiseConfig,
    generator: torch.Generator | None = None,
    topology: str = "clements",
) -> torch.Tensor:
    """y = W x for rows of ``x`` (..., N) through realised optical tiles (..., R, C, k, k)
    with electronic gains (..., R, C) → (..., M).

    Inputs are scaled per vector to the DAC's full scale, quantised, sent as fields of
    P_ch per mode (:func:`photonic.power.channel_power_mw` for a k×k tile of ``topology``),
    detected coherently with noise, digitised per tile (ADC range: the tile's largest possible
    output, max_i Σ_j |T_ij|), scaled by the gain and summed digitally.
    Batch dims of ``tiles`` (e.g. P parameter perturbations) lead the output's.
    """
    m, n = shape
    r, c, k = tiles.shape[-4], tiles.shape[-3], tiles.shape[-1]
    if x.shape[-1] != n:
        raise ValueError(f"x.shape[-1]={x.shape[-1]} but the core's matrix has N={n} columns")
    real = x.dtype if x.dtype in (torch.float32, torch.float64) else torch.float64
    scale = x.abs().amax(-1, keepdim=True).clamp_min(torch.finfo(real).tiny)
    xn = x / scale
    if noise.input_quantization:
        xn = quantize_signed(xn, device.dac.bits, 1.0)
    if not (noise.detector_noise or noise.output_quantization):
        # Ideal detection is linear: Re(T x) = Re(T) x for real x, so the tiles collapse into
        # one real matrix and a single (batched) GEMM does the work.
        w = assemble_tiles(tiles.real.to(real) * gain.to(real)[..., None, None])[..., :m, :n]
        return batched_linear(xn, w) * scale
    xp = torch.nn.functional.pad(xn, (0, c * k - n)).reshape(x.shape[:-1] + (c, k))
    # (..., B, C, k) x (.., R, C, k, k): out[..., B, R, C, k] = Σ_j T[R,C,i,j] x[B,C,j]
    t = tiles.to(torch.complex128 if real == torch.float64 else torch.complex64)
    if not noise.detector_noise:
        t = t.real  # only the in-phase quadrature is needed
    batch_t = tuple(tiles.shape[:-4])
    nb = len(batch_t)
    if nb and tuple(xp.shape[:nb]) != batch_t:
        xp = xp.expand(batch_t + xp.shape)
        scale = scale.expand(batch_t + scale.shape)
    lead = tuple(xp.shape[nb:-2])
    xb = xp.to(t.dtype).reshape(batch_t + (-1, c, k))
    # one batched GEMM per tile (batch R·C), not B·R·C tiny products
    fields = torch.einsum("...rcij,...bcj->...brci", t, xb)  # (..., B, R, C, k), unit: √P_ch
    out = fields.real
    det = device.detector
    # One power budget with the cost model (photonic.power): P_ch per input mode is what
    # the longest path of a k×k tile needs for the ADC's SNR (or the design's fixed power).
    p_ch = channel_power_mw(device, mesh_path_loss_db=svd_path_loss_db(device, k, k, topology))
    p_ch *= 1e-3
    p_lo = det.lo_power_mw * 1e-3
    gain_i = 2 * det.responsivity_a_per_w * math.sqrt(p_lo * p_ch)  # A per unit field
    current = out * gain_i
    if noise.detector_noise:
        if generator is None:
            raise ValueError("noise.detector_noise=True needs a torch.Generator")
        var = receiver_current_variance(det, signal_w=fields.abs() ** 2 * p_ch, lo_w=p_lo)
        current = current + var.sqrt() * torch.randn(current.shape, generator=generator,
                                                     dtype=current.dtype)
    if noise.output_quantization:
        bound = t.abs().sum(-1).amax(-1)[..., None, :, :, None]  # (..., 1, R, C, 1)
        current = quantize_signed(current, device.adc.bits, gain_i * bound)
    out = current / gain_i
    out = out * gain.to(out.dtype)[..., None, :, :, None]
    y = out.sum(-2).reshape(out.shape[:-3] + (r * k,))[..., :m]
    return (y.reshape(batch_t + lead + (m,)) * scale).to(real)


class TensorCore:
    """A real matrix programmed onto photonic SVD tiles; callable on input rows (..., N)."""

    def __init__(
        self,
        program: TileProgram,
        *,
        topology: str = "clements",
        device: DeviceParams | None = None,
        noise: NoiseConfig | None = None,
        seed: int | torch.Generator | None = 0,
    ):
        self.program = program
        self.topology = topology
        self.device = device or DeviceParams()
        self.noise = noise or NoiseConfig()
        self._gen = _generator(seed)
        self.errors = sample_tile_errors(
            self.device, program.grid, program.tile, topology, self._gen
        )
        k = program.tile
        r, c = program.grid
        lay = mesh_layout(k, topology)
        self.counts = CoreCounts(
            num_tiles=r * c,
            tile=k,
            num_mzis=r * c * (2 * lay.num_mzis + k),
            num_phase_shifters=r * c * (2 * num_shifters(lay) + 2 * k),
            num_modulators=r * c * k,
            num_detectors=r * c * k,
        )
        self._program_event()

    def _program_event(self) -> None:
        self.counts.reprogram_events += 1
        self.counts.shifter_writes += self.counts.num_phase_shifters

    @classmethod
    def from_matrix(
        cls,
        W,
        *,
        tile: int = 8,
        topology: str = "clements",
        device: DeviceParams | None = None,
        noise: NoiseConfig | None = None,
        seed: int | torch.Generator | None = 0,
    ) -> TensorCore:
        """Program the real matrix ``W`` (M, N) onto ``tile``×``tile`` SVD tiles."""
        tile = require_int("tile", tile, minimum=2)
        w = torch.as_tensor(W)
        if w.ndim != 2 or w.is_complex():
            raise ValueError(f"W must be a real 2-D matrix; got shape {tuple(w.shape)}, "
                             f"dtype {w.dtype}")
        if not torch.isfinite(w).all():
            raise ValueError("W has non-finite entries (NaN or inf); program a finite matrix")
        return cls(program_tiles(w, tile=tile, topology=topology), topology=topology,
                   device=device, noise=noise, seed=seed)

    @property
    def shape(self) -> tuple[int, int]:
        return self.program.shape

    def tiles(self) -> torch.Tensor:
        """Realised optical tile matrices (R, C, k, k), complex, without the gain."""
        return tile_matrices(self.program, device=self.device, noise=self.noise,
                             errors=self.errors, generator=self._gen)

    def gain(self) -> torch.Tensor:
        """Electronic gains (R, C): σ_max, with the nominal path loss calibrated out."""
        return realised_gain(self.program.gain, self.program.tile, self.topology, self.device,
                             self.noise)

    def matrix(self) -> torch.Tensor:
        """Realised (complex) M×N matrix, without detection effects."""
        full = assemble_tiles(self.tiles() * self.gain()[..., None, None])
        return full[: self.shape[0], : self.shape[1]]

    def __call__(self, x) -> torch.Tensor:
        """y = W x for rows of ``x`` (..., N); counts conversions."""
        x = torch.as_tensor(x)
        y = optical_matmul(self.tiles(), self.gain(), x, self.shape, device=self.device,
                           noise=self.noise, generator=self._gen, topology=self.topology)
        vectors = int(np.prod(x.shape[:-1])) if x.ndim > 1 else 1
        r, c = self.program.grid
        k = self.program.tile
        self.counts.inferences += vectors
        self.counts.dac_conversions += vectors * r * c * k
        self.counts.adc_conversions += vectors * r * c * k
        return y

