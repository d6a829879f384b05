"""A large model's linear layers on a fixed budget of physical photonic tiles.

A chip has ``physical_tiles`` identical k×k SVD tiles (U Σ V† on MZI meshes,
:mod:`photonic.core`). A weight matrix W (M, N) is cut into R × C logical k×k tiles,
R = ⌈M/k⌉, C = ⌈N/k⌉; the logical tiles of the whole model are numbered layer by layer, row by
row, and logical tile ℓ runs on physical tile ℓ mod ``physical_tiles`` (time-multiplexed,
round-robin). Each time a layer runs, its tiles are programmed anew (the weights are
reprogrammed per layer): the phases come from the SVD / Clements decomposition of the tile,
the physical tile's static errors (fabrication offsets, gamma error, coupler splitting
error, insertion-loss spread) are those sampled once for that physical tile, and dynamic
phase noise is drawn per programming. Inputs then stream through the programmed tiles with
the DAC, coherent detection with shot / thermal noise and the ADC of
:func:`photonic.optical_matmul`; the noise flags of the run's :class:`photonic.NoiseConfig`
say which of these are simulated.

Attention score products (Q Kᵀ, softmax, · V) multiply two activations, not a stored weight;
they, the norms, the rotary embedding and the embedding look-up stay electronic (digital)
and are not costed.

The cost model (:func:`chip_cost`) maps the same tiles onto :func:`photonic.estimate_cost`'s
``time_multiplexed`` dataflow: one stage per linear layer, one input vector per token.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterator, Sequence

import torch
import torch.nn.functional as F
from torch import nn

import photonic
from photonic.core import TileErrors, realised_gain, sample_tile_errors, tile_matrices

__all__ = ["TiledLinear", "TilePool", "tiled_layers", "attach_chip", "detach_chip",
           "logical_tiles", "total_logical_tiles", "model_stages"]


def logical_tiles(shape: tuple[int, int], tile: int) -> tuple[int, int]:
    """(R, C): the grid of k×k logical tiles of an (M, N) matrix."""
    return -(-shape[0] // tile), -(-shape[1] // tile)


def _take(errors: TileErrors, index: torch.Tensor) -> TileErrors:
    """The physical tiles' errors (batch (P,)) gathered for logical tiles ``index`` (R, C)."""
    def gather(mesh):  # fields a preset leaves unset (None) stay unset
        return dataclasses.replace(mesh, **{
            f.name: getattr(mesh, f.name)[index] for f in dataclasses.fields(mesh)
            if getattr(mesh, f.name) is not None})

    return TileErrors(v=gather(errors.v), u=gather(errors.u), sigma=gather(errors.sigma))


class TilePool:
    """``physical_tiles`` k×k SVD tiles, on one chip per seed in ``seeds``.

    Each chip (one seed) has its own static errors of its physical tiles and its own noise
    source. All chips run in one pass: a layer is decomposed into phases once (the
    programming is the same on every chip; what the chips realise differs), and an input
    with a leading chip dim (S, ..., N), S = ``len(seeds)``, gives (S, ..., M).

    ``max_tiles_per_pass`` bounds how many logical tiles are programmed and held in memory at
    once (a simulation memory bound; it changes no number, since the output rows of
    different tile rows are independent).
    """

    def __init__(self, *, tile: int, physical_tiles: int, device: photonic.DeviceParams,
                 noise: photonic.NoiseConfig, seeds: Sequence[int], topology: str = "clements",
                 max_tiles_per_pass: int = 1024):
        if tile < 2:
            raise ValueError(f"tile={tile}: a tile needs at least 2 modes")
        if physical_tiles < 1:
            raise ValueError(f"physical_tiles={physical_tiles} must be ≥ 1")
        if not seeds:
            raise ValueError("seeds is empty: the pool needs at least one chip")
        self.tile, self.physical_tiles = int(tile), int(physical_tiles)
        self.device, self.noise, self.topology = device, noise, topology
        self.seeds = [int(s) for s in seeds]
        self.max_tiles_per_pass = int(max_tiles_per_pass)
        self.generators = [torch.Generator().manual_seed(s) for s in self.seeds]
        self.errors = [sample_tile_errors(device, (self.physical_tiles,), self.tile, topology, g)
                       for g in self.generators]
        self.programmings = 0  # logical tiles programmed so far

    @property
    def num_chips(self) -> int:
        return len(self.seeds)

    def matmul(self, x: torch.Tensor, weight: torch.Tensor, first_tile: int) -> torch.Tensor:
        """``x @ weight.T`` on every chip; ``first_tile``: the layer's first logical tile.

        x (S, ..., N) float32 or float64, S = ``num_chips`` → (S, ..., M), same dtype.
        """
        if x.shape[0] != self.num_chips:
            raise ValueError(f"input has {x.shape[0]} rows in its leading chip dim; the pool "
                             f"has {self.num_chips} chips")
        k = self.tile
        m, n = weight.shape
        rows, cols = logical_tiles((m, n), k)
        rows_per_pass = max(1, self.max_tiles_per_pass // cols)
        out = []
        for r0 in range(0, rows, rows_per_pass):
            r1 = min(rows, r0 + rows_per_pass)
            prog = photonic.program_tiles(weight[r0 * k: min(m, r1 * k)].detach(), tile=k,
                                          topology=self.topology)
            ell = first_tile + r0 * cols + torch.arange((r1 - r0) * cols)
            index = (ell % self.physical_tiles).reshape(r1 - r0, cols)
            gain = realised_gain(prog.gain, k, self.topology, self.device, self.noise)
            out.append(torch.stack([self._run(prog, gain, index, s, x[s])
                                    for s in range(self.num_chips)]))
            self.programmings += (r1 - r0) * cols
        return torch.cat(out, -1)

    def _run(self, prog, gain: torch.Tensor, index: torch.Tensor, chip: int,
             x: torch.Tensor) -> torch.Tensor:
        """Chip ``chip`` realises ``prog`` on physical tiles ``index`` and applies it to x."""
        gen = self.generators[chip]
        tiles = tile_matrices(prog, device=self.device, noise=self.noise,
                              errors=_take(self.errors[chip], index), generator=gen)
        return photonic.optical_matmul(tiles, gain, x, prog.shape, device=self.device,
                                       noise=self.noise, generator=gen)


class TiledLinear(nn.Module):
    """``y = x @ W.T`` (no bias) — digital, or on a :class:`TilePool` once attached.

    ``weight`` may be shared with another module (a tied LM head and token embedding).
    """

    def __init__(self, weight: torch.Tensor):
        super().__init__()
        if weight.ndim != 2:
            raise ValueError(f"weight must be (out, in); got shape {tuple(weight.shape)}")
        self.weight = weight if isinstance(weight, nn.Parameter) else nn.Parameter(weight)
        self.pool: TilePool | None = None
        self.first_tile = 0

    @property
    def shape(self) -> tuple[int, int]:
        return tuple(self.weight.shape)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.pool is None:
            return F.linear(x, self.weight)
        return self.pool.matmul(x, self.weight, self.first_tile)

    def extra_repr(self) -> str:
        where = "digital" if self.pool is None else f"chip, first tile {self.first_tile}"
        return f"in_features={self.shape[1]}, out_features={self.shape[0]}, {where}"


def tiled_layers(model: nn.Module) -> Iterator[tuple[str, TiledLinear]]:
    """The model's ``TiledLinear`` layers in execution order (module registration order)."""
    for name, mod in model.named_modules():
        if isinstance(mod, TiledLinear):
            yield name, mod


def attach_chip(model: nn.Module, pool: TilePool) -> nn.Module:
    """Run every ``TiledLinear`` of ``model`` on ``pool`` (in place), numbering the logical
    tiles layer by layer; returns the model."""
    first = 0
    for _, layer in tiled_layers(model):
        layer.pool, layer.first_tile = pool, first
        r, c = logical_tiles(layer.shape, pool.tile)
        first += r * c
    return model


def detach_chip(model: nn.Module) -> nn.Module:
    """Back to digital execution (in place)."""
    for _, layer in tiled_layers(model):
        layer.pool = None
    return model


def model_stages(model: nn.Module, *, tile: int,
                 topology: str = "clements") -> list[photonic.Stage]:
    """One :class:`photonic.Stage` per linear layer (R·C logical k×k tiles, one input vector
    per token), for :func:`photonic.estimate_cost` with ``vectors_per_inference`` = 1."""
    stages = []
    for name, layer in tiled_layers(model):
        r, c = logical_tiles(layer.shape, tile)
        stages.append(photonic.Stage(name=name, mesh_rows=tile, mesh_cols=tile, tiles=r * c,
                                     topology=topology))
    return stages


def total_logical_tiles(model: nn.Module, tile: int) -> int:
    """Logical k×k tiles of all the model's linear layers (one programming each per run)."""
    return sum(math.prod(logical_tiles(layer.shape, tile)) for _, layer in tiled_layers(model))
