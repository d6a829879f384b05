"""Torch modules whose matrix products run on simulated photonic tensor cores.

Execution modes
- "digital": exact ``x @ W.T`` (the reference; no hardware).
- "weight":  the trainable parameters are weights; every forward maps them onto SVD tiles
  (decomposition into MZI phases) and runs them through the chip with its non-idealities.
  Gradients (if any are taken) pass straight through as if the chip were ideal.
- "phase":   the trainable parameters are the programmed MZI phases of every tile (and the
  electronic gains) — in-situ / TONN training; gradients flow through the mesh physics.

Batched-parameter convention (project-wide): a module whose parameters carry one extra
leading dim P (swapped in with ``torch.func.functional_call``) treats it as P independent
parameter sets; its input is (P, ..., in) or broadcastable (..., in) and its output is
(P, ..., out). Zeroth-order estimators use it to evaluate all P perturbations in one call;
in phase mode each perturbed mesh is rebuilt through the hub, batched.
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np
import torch
from torch import nn

from photonic.core import (
    TileErrors,
    TileProgram,
    _pad_tiles,
    assemble_tiles,
    batched_linear,
    equal_rows,
    optical_matmul,
    program_tiles,
    realised_gain,
    require_int,
    sample_tile_errors,
    sigma_layout,
    tile_matrices,
)
from photonic.devices import DeviceParams
from photonic.noise import NoiseConfig, num_shifters, precompensate_crosstalk

__all__ = ["PhotonicMatrix", "PhotonicLinear", "TTPhotonicLinear", "convert_linear", "MODES"]

MODES = ("digital", "weight", "phase")
"""Execution modes of the torch layers: exact ``digital``, trainable ``weight`` s mapped onto
SVD tiles at every forward, or trainable ``phase`` s (and electronic gains) of the tiles."""
Mode = Literal["digital", "weight", "phase"]

_MESH_FLAGS = (
    "phase_quantization", "gamma_error", "phase_offset", "phase_noise", "crosstalk",
    "coupler_error", "insertion_loss",
)


def _check_mode(mode: str) -> None:
    if mode not in MODES:
        raise ValueError(f"mode={mode!r} is not known; valid choices: {list(MODES)}")


class PhotonicMatrix(nn.Module):
    """y = A x for an (M, N) matrix A realised on photonic SVD tiles (no bias)."""

    def __init__(
        self,
        init: torch.Tensor,
        *,
        mode: Mode = "weight",
        tile: int = 8,
        topology: str = "clements",
        device: DeviceParams | None = None,
        noise: NoiseConfig | None = None,
        seed: int = 0,
    ):
        super().__init__()
        _check_mode(mode)
        init = torch.as_tensor(init)
        if init.ndim != 2:
            raise ValueError(f"init must be an (M, N) matrix; got shape {tuple(init.shape)}")
        self.mode = mode
        self.tile = int(tile)
        self.topology = topology
        self.device_params = device or DeviceParams()
        self.noise = noise or NoiseConfig()
        self.shape = tuple(init.shape)
        self._gen = torch.Generator().manual_seed(int(seed))
        grid = (-(-self.shape[0] // self.tile), -(-self.shape[1] // self.tile))
        self.errors: TileErrors = sample_tile_errors(
            self.device_params, grid, self.tile, topology, self._gen
        )
        if mode == "phase":
            prog = program_tiles(init, tile=self.tile, topology=topology)
            self._template = prog
            self.phases = nn.Parameter(prog.phase_vector().to(init.dtype))
            self.gain = nn.Parameter(prog.gain.to(init.dtype))
        else:
            self.weight = nn.Parameter(init.clone())

    @property
    def param_batch_shape(self) -> tuple[int, ...]:
        """Leading P dims carried by the parameters (batched-parameter convention)."""
        if self.mode == "phase":
            return tuple(self.phases.shape[:-3])
        return tuple(self.weight.shape[:-2])

    @property
    def _mesh_noise(self) -> bool:
        return any(getattr(self.noise, f) for f in _MESH_FLAGS) or (
            self.noise.wavelength_um is not None
        )

    def _tiles(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Realised optical tiles (P.., R, C, k, k) and gains (P.., R, C)."""
        kw = dict(device=self.device_params, noise=self.noise, errors=self.errors,
                  generator=self._gen)
        if self.mode == "phase":
            return self._phase_tiles(kw), realised_gain(self.gain, self.tile, self.topology,
                                                        self.device_params, self.noise)
        w = self.weight.detach()
        if not self._mesh_noise:
            # Exact programming: the realised tile equals W_tile / σ_max (no decomposition
            # needed to know it; skipping it changes no number).
            tiles = _pad_tiles(w, self.tile)
            gain = torch.linalg.matrix_norm(tiles, ord=2).clamp_min(torch.finfo(w.dtype).tiny)
            return (tiles / gain[..., None, None]).to(torch.complex128), gain
        prog: TileProgram = program_tiles(w, tile=self.tile, topology=self.topology)
        return tile_matrices(prog, **kw), realised_gain(prog.gain, self.tile, self.topology,
                                                        self.device_params, self.noise)

    def _phase_tiles(self, kw) -> torch.Tensor:
        """Tiles for the programmed phases (P.., R, C, S). Parameter sets whose phases are
        bitwise equal (a zeroth-order step perturbs one block of one tensor, so every other
        matrix repeats the unperturbed one) are built once and shared: the same device
        state gives the same matrix when the chip has no dynamic noise. With phase noise,
        or when autograd needs the phases, every set is built."""
        ph = self.phases
        lead = ph.shape[:-3]
        if (not lead or self.noise.phase_noise
                or (torch.is_grad_enabled() and ph.requires_grad)):
            return tile_matrices(self._template, phases=ph, **kw)
        first, inverse = equal_rows(ph.reshape(-1, ph.shape[-3:].numel()))
        if first.numel() == inverse.numel():
            return tile_matrices(self._template, phases=ph, **kw)
        tiles = tile_matrices(self._template, phases=ph.reshape(-1, *ph.shape[-3:])[first],
                              **kw)
        return tiles[inverse].reshape(*lead, *tiles.shape[1:])

    @torch.no_grad()
    def compensate_crosstalk(self) -> None:
        """Re-program the phases (phase mode) so that the design's thermal crosstalk leaves
        the current ones on the waveguides (:func:`photonic.noise.precompensate_crosstalk`),
        for programming a trained matrix. On the V and U meshes every shifter is solved for;
        in the Σ column the θ of each attenuator is (its output phase follows θ and enters
        the in-phase read-out only at second order)."""
        if self.mode != "phase":
            raise ValueError(f"compensate_crosstalk needs mode='phase' (this matrix is in "
                             f"mode {self.mode!r})")
        lay = self._template.v.layout
        s = num_shifters(lay)
        ph = self.phases
        dev, noise = self.device_params, self.noise
        parts = [precompensate_crosstalk(ph[..., i * s:(i + 1) * s], lay, dev, noise)
                 for i in (0, 1)]
        theta = ph[..., 2 * s:]
        k = theta.shape[-1]
        sigma = torch.cat([theta, -theta / 2 - math.pi / 2, torch.zeros_like(theta),
                           torch.zeros_like(theta)], -1)
        sig = precompensate_crosstalk(sigma, sigma_layout(k), dev, noise, wrap=False)
        parts.append(sig[..., :k])
        ph.copy_(torch.cat(parts, -1))

    def realised_matrix(self) -> torch.Tensor:
        """The real (M, N) matrix the chip realises now (in-phase part), P.. leading."""
        if self.mode == "digital":
            return self.weight
        tiles, gain = self._tiles()
        full = assemble_tiles(tiles.real * gain[..., None, None])
        return full[..., : self.shape[0], : self.shape[1]]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] != self.shape[1]:
            raise ValueError(f"input has {x.shape[-1]} features; the matrix expects "
                             f"{self.shape[1]}")
        if self.mode == "digital":
            return batched_linear(x, self.weight)
        tiles, gain = self._tiles()
        y = optical_matmul(tiles, gain, x, self.shape, device=self.device_params,
                           noise=self.noise, generator=self._gen, topology=self.topology)
        if self.mode == "weight" and torch.is_grad_enabled() and self.weight.requires_grad:
            exact = batched_linear(x, self.weight)
            y = y.detach() + exact - exact.detach()
        return y


def _add_bias(y: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    if bias is None:
        return y
    if bias.ndim == 1:
        return y + bias
    extra = y.ndim - bias.ndim
    return y + bias.reshape(bias.shape[:-1] + (1,) * extra + bias.shape[-1:])


class PhotonicLinear(nn.Module):
    """Drop-in for ``nn.Linear`` (``y = x @ W.T + b``) running on a photonic tensor core."""

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = True,
        *,
        mode: Mode = "weight",
        tile: int = 8,
        topology: str = "clements",
        device: DeviceParams | None = None,
        noise: NoiseConfig | None = None,
        seed: int = 0,
        dtype: torch.dtype = torch.float64,
        weight: torch.Tensor | None = None,
    ):
        super().__init__()
        in_features = require_int("in_features", in_features, minimum=1)
        out_features = require_int("out_features", out_features, minimum=1)
        self.in_features, self.out_features = in_features, out_features
        if weight is None:
            g = torch.Generator().manual_seed(int(seed))
            bound = 1 / math.sqrt(in_features)  # nn.Linear's default (Kaiming uniform, a=√5)
            weight = (torch.rand(out_features, in_features, generator=g, dtype=dtype) * 2 - 1)
            weight = weight * bound
        self.core = PhotonicMatrix(weight.to(dtype), mode=mode, tile=tile, topology=topology,
                                   device=device, noise=noise, seed=seed)
        if bias:
            g = torch.Generator().manual_seed(int(seed) + 1)
            b = (torch.rand(out_features, generator=g, dtype=dtype) * 2 - 1) / math.sqrt(
                in_features)
            self.bias = nn.Parameter(b)
        else:
            self.register_parameter("bias", None)

    @property
    def mode(self) -> str:
        return self.core.mode

    def realised_matrix(self) -> torch.Tensor:
        """The (P.., out, in) matrix the chip realises now (see PhotonicMatrix)."""
        return self.core.realised_matrix()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _add_bias(self.core(x), self.bias)

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"mode={self.mode}, tile={self.core.tile}")


class TTPhotonicLinear(nn.Module):
    """Tensor-train matrix layer; each TT-core runs on its own photonic SVD mesh (TONN).

    W ∈ R^{M×N}, M = ∏m_k, N = ∏n_k, cores G_k ∈ R^{r_{k−1}×m_k×n_k×r_k}, r_0 = r_d = 1.
    Core k is the (r_{k−1}m_k)×(n_k r_k) matrix ``G_k.reshape(r_{k−1}m_k, n_k r_k)``; the
    layer is a sequence of these small products with reshapes (Zhao et al., arXiv 2502.12384).
    Row-major multi-indices: output index (m_1, …, m_d), input index (n_1, …, n_d).
    """

    def __init__(
        self,
        in_shape: list[int],
        out_shape: list[int],
        ranks: int | list[int] = 2,
        bias: bool = True,
        *,
        mode: Mode = "weight",
        tile: int = 8,
        topology: str = "clements",
        device: DeviceParams | None = None,
        noise: NoiseConfig | None = None,
        seed: int = 0,
        dtype: torch.dtype = torch.float64,
        cores: list[torch.Tensor] | None = None,
    ):
        super().__init__()
        if len(in_shape) != len(out_shape):
            raise ValueError(f"in_shape {in_shape} and out_shape {out_shape} need equal length")
        for name, shape in (("in_shape", in_shape), ("out_shape", out_shape)):
            for i, v in enumerate(shape):
                require_int(f"{name}[{i}]", v, minimum=1)
        d = len(in_shape)
        r = [ranks] * (d - 1) if isinstance(ranks, int) else list(ranks)
        if len(r) != d - 1:
            raise ValueError(f"ranks={ranks}: need {d - 1} internal ranks for {d} cores")
        self.ranks = [1, *r, 1]
        self.in_shape, self.out_shape = list(in_shape), list(out_shape)
        self.in_features, self.out_features = int(np.prod(in_shape)), int(np.prod(out_shape))
        g = torch.Generator().manual_seed(int(seed))
        if cores is None:
            # Var(W_ij) = Π σ_k² · Π r_k = 1/(3N): matches nn.Linear's uniform init variance.
            target = 1.0 / (3 * self.in_features)
            std = (target / float(np.prod(r))) ** (1 / (2 * d))
            cores = [torch.randn(self.ranks[k], out_shape[k], in_shape[k], self.ranks[k + 1],
                                 generator=g, dtype=dtype) * std for k in range(d)]
        self.cores = nn.ModuleList()
        for k, gk in enumerate(cores):
            want = (self.ranks[k], out_shape[k], in_shape[k], self.ranks[k + 1])
            if tuple(gk.shape) != want:
                raise ValueError(f"cores[{k}] has shape {tuple(gk.shape)}; expected {want}")
            mat = gk.reshape(want[0] * want[1], want[2] * want[3]).to(dtype)
            self.cores.append(PhotonicMatrix(mat, mode=mode, tile=tile, topology=topology,
                                             device=device, noise=noise, seed=int(seed) + 7 * k))
        if bias:
            b = (torch.rand(self.out_features, generator=g, dtype=dtype) * 2 - 1)
            self.bias = nn.Parameter(b / math.sqrt(self.in_features))
        else:
            self.register_parameter("bias", None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] != self.in_features:
            raise ValueError(f"input has {x.shape[-1]} features; the layer expects "
                             f"{self.in_features}")
        if self.cores[0].noise.linear_detection:
            # The optical path is linear: the realised cores contract into one (P.., M, N)
            # matrix and a single GEMM gives exactly what the per-core chain would.
            w = self.realised_matrix().to(x.dtype)
            return _add_bias(batched_linear(x, w), self.bias)
        p = self.cores[0].param_batch_shape
        if p and tuple(x.shape[: len(p)]) != p:
            x = x.expand(p + x.shape)
        lead = x.shape[len(p) : -1]
        t = x.reshape(p + (-1, self.in_features, 1, 1))  # (P.., B, N_left, M_right, r)
        for k in range(len(self.in_shape) - 1, -1, -1):
            nk, mk = self.in_shape[k], self.out_shape[k]
            rk, rk1 = self.ranks[k + 1], self.ranks[k]
            b, nl, mr = t.shape[-4], t.shape[-3] // nk, t.shape[-2]
            t = t.reshape(p + (b, nl, nk, mr, rk)).transpose(-3, -2)
            y = self.cores[k](t.reshape(p + (b * nl * mr, nk * rk)))
            y = y.reshape(p + (b, nl, mr, rk1, mk))
            t = y.permute(*range(len(p)), -5, -4, -1, -3, -2).reshape(p + (b, nl, mk * mr, rk1))
        return _add_bias(t.reshape(p + lead + (self.out_features,)), self.bias)

    def realised_matrix(self) -> torch.Tensor:
        """The (P.., M, N) matrix the realised cores represent (TT contraction)."""
        t = None
        for k, core in enumerate(self.cores):
            mat = core.realised_matrix()
            g = mat.reshape(mat.shape[:-2] + (self.ranks[k], self.out_shape[k], self.in_shape[k],
                                              self.ranks[k + 1]))
            if t is None:
                t = g[..., 0, :, :, :]  # (P.., m1, n1, r1)
                continue
            t = torch.einsum("...MNr,...rmns->...MmNns", t, g)
            t = t.reshape(t.shape[:-5] + (t.shape[-5] * t.shape[-4], t.shape[-3] * t.shape[-2],
                                          t.shape[-1]))
        return t[..., 0]


def convert_linear(
    model: nn.Module,
    *,
    mode: Mode = "weight",
    tile: int = 8,
    topology: str = "clements",
    device: DeviceParams | None = None,
    noise: NoiseConfig | None = None,
    seed: int = 0,
) -> nn.Module:
    """Replace every ``nn.Linear`` of ``model`` (in place) by a PhotonicLinear with its weights."""
    counter = [0]

    def swap(parent: nn.Module) -> None:
        for name, child in parent.named_children():
            if isinstance(child, nn.Linear):
                w = child.weight.detach().to(torch.float64)
                new = PhotonicLinear(child.in_features, child.out_features,
                                     bias=child.bias is not None, mode=mode, tile=tile,
                                     topology=topology, device=device, noise=noise,
                                     seed=seed + counter[0], dtype=w.dtype, weight=w)
                if child.bias is not None:
                    new.bias.data.copy_(child.bias.detach().to(w.dtype))
                counter[0] += 1
                setattr(parent, name, new)
            else:
                swap(child)

    swap(model)
    return model
