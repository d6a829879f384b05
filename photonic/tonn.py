"""Mapping networks onto photonic tensor cores: dense SVD meshes vs tensor-train (TONN).

A TT-matrix layer W ∈ R^{M×N}, M = ∏ m_k, N = ∏ n_k, with cores
G_k ∈ R^{r_{k−1} × m_k × n_k × r_k} (r_0 = r_d = 1) is applied as d small matrix products:
core k, unfolded to a (r_{k−1} m_k) × (n_k r_k) matrix, multiplies
∏_{j<k} n_j · ∏_{j>k} m_j vectors per input (contracting from the last core to the first;
Novikov et al., NeurIPS 2015; TONN: Xiao et al., APL Photonics 6, 126107 (2021)). Each core
sits on its own SVD MZI mesh (TONN-1, space multiplexed) or one k×k photonic core is reused
for all of them (TONN-2, time multiplexed) — Zhao et al., arXiv 2401.00413.

MZI counting rule (:func:`photonic.cost.svd_mzis`): an R×C block W = U Σ V† takes
R(R−1)/2 + C(C−1)/2 + min(R, C) MZIs.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from photonic.cost import Stage

__all__ = [
    "DenseLayer",
    "TTLayer",
    "Layer",
    "MAPPINGS",
    "tt_core_shapes",
    "tt_core_vectors",
    "network_stages",
    "count_mzis",
]

MAPPINGS = ("dense", "tt")


@dataclass(frozen=True)
class DenseLayer:
    """y = W x with W of shape (out_features, in_features)."""

    out_features: int
    in_features: int

    @property
    def shape(self) -> tuple[int, int]:
        return (self.out_features, self.in_features)


@dataclass(frozen=True)
class TTLayer:
    """TT-matrix layer: input modes n_k (∏ = in_features), output modes m_k, ranks r_1…r_{d−1}
    (r_0 = r_d = 1 are implied). Written "TT [n_1, …, n_d] → [m_1, …, m_d]" in the notation
    of Zhao et al. (arXiv 2502.12384)."""

    in_modes: tuple[int, ...]
    out_modes: tuple[int, ...]
    ranks: tuple[int, ...]

    def __post_init__(self):
        d = len(self.in_modes)
        if len(self.out_modes) != d or len(self.ranks) != d - 1:
            raise ValueError(
                f"TTLayer needs len(in_modes) == len(out_modes) == len(ranks) + 1; got "
                f"{len(self.in_modes)}, {len(self.out_modes)}, {len(self.ranks)} (ranks are the "
                "inner ranks r_1 … r_{d−1})"
            )

    @property
    def shape(self) -> tuple[int, int]:
        return (math.prod(self.out_modes), math.prod(self.in_modes))

    @property
    def full_ranks(self) -> tuple[int, ...]:
        return (1, *self.ranks, 1)


Layer = DenseLayer | TTLayer


def tt_core_shapes(layer: TTLayer) -> list[tuple[int, int]]:
    """(rows, cols) = (r_{k−1} m_k, n_k r_k) of every core's unfolding (TONN: Zhao et al.,
    arXiv 2401.00413)."""
    r = layer.full_ranks
    return [(r[k] * m, n * r[k + 1])
            for k, (m, n) in enumerate(zip(layer.out_modes, layer.in_modes, strict=True))]


def tt_core_vectors(layer: TTLayer) -> list[int]:
    """Vectors core k multiplies per input: ∏_{j<k} n_j · ∏_{j>k} m_j (right-to-left
    contraction: cores after k have already turned their n_j into m_j)."""
    n, m = layer.in_modes, layer.out_modes
    return [math.prod(n[:k]) * math.prod(m[k + 1:]) for k in range(len(n))]


def _dense_stage(name: str, rows: int, cols: int, tile: int | None, topology: str) -> Stage:
    if tile is None:
        return Stage(name=name, mesh_rows=rows, mesh_cols=cols, tiles=1, topology=topology)
    tiles = math.ceil(rows / tile) * math.ceil(cols / tile)
    return Stage(name=name, mesh_rows=tile, mesh_cols=tile, tiles=tiles, topology=topology)


def network_stages(
    layers: Sequence[Layer],
    *,
    mapping: Literal["dense", "tt"] = "dense",
    tile: int | None = None,
    core_tile: int | None = None,
    topology: str = "clements",
) -> list[Stage]:
    """Stages of a network for :func:`photonic.estimate_cost`.

    ``mapping="dense"``: every layer (TT layers at their full M×N) on SVD blocks;
    ``mapping="tt"``: TT layers as one stage per core, dense layers as they are.
    ``tile``: for dense matrices, None = one SVD block of the matrix's own size (U: M modes,
    V†: N modes), k = zero-padded k×k tiles (the hub's TensorCore); ``core_tile``: the same
    for TT-cores (None: each core on its own-size mesh, as in TONN-1).
    """
    if mapping not in MAPPINGS:
        raise ValueError(f"mapping={mapping!r} is not known; valid choices: {list(MAPPINGS)}")
    stages: list[Stage] = []
    for i, layer in enumerate(layers):
        if isinstance(layer, TTLayer) and mapping == "tt":
            for k, ((rows, cols), vec) in enumerate(
                zip(tt_core_shapes(layer), tt_core_vectors(layer), strict=True)
            ):
                st = _dense_stage(f"layer{i}.core{k}", rows, cols, core_tile, topology)
                stages.append(Stage(name=st.name, mesh_rows=st.mesh_rows,
                                    mesh_cols=st.mesh_cols, tiles=st.tiles,
                                    vectors_per_inference=vec, topology=topology))
        else:
            rows, cols = layer.shape
            stages.append(_dense_stage(f"layer{i}", rows, cols, tile, topology))
    return stages


def count_mzis(layers: Sequence[Layer], *, mapping: Literal["dense", "tt"] = "dense",
               tile: int | None = None, core_tile: int | None = None,
               topology: str = "clements") -> int:
    """MZIs of a network mapped with ``mapping`` (every stage on chip at once)."""
    stages = network_stages(layers, mapping=mapping, tile=tile, core_tile=core_tile,
                            topology=topology)
    return sum(s.num_mzis for s in stages)

