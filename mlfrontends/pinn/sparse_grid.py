"""Smolyak sparse-grid quadrature for the standard normal distribution N(0, I_d).

The level-L rule combines one-dimensional Gauss–Hermite rules U^i (i points, probabilists'
weight exp(-x²/2)/√(2π), exact to degree 2i−1) with the combination technique
(Smolyak 1963; Gerstner & Griebel 1998, eq. 3):

    A(L, d) = Σ_{L ≤ |i| ≤ L+d−1} (−1)^{L+d−1−|i|} C(d−1, L+d−1−|i|) U^{i_1} ⊗ … ⊗ U^{i_d},

which is exact for every polynomial of total degree ≤ 2L − 1. Duplicate nodes of the
tensor grids are merged and their weights summed; nodes whose weights cancel are dropped.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from functools import lru_cache
from math import comb

import numpy as np

__all__ = ["SparseGrid", "gauss_hermite_1d", "smolyak_gauss_hermite"]


@dataclass(frozen=True)
class SparseGrid:
    """A symmetric quadrature rule for E[g(ζ)], ζ ~ N(0, I_d).

    nodes: (K, d); weights: (K,). ``half`` holds one representative of each ± pair of
    nonzero nodes, ``half_weights`` its weight (equal for ζ and −ζ by symmetry), and
    ``center_weight`` the weight of the origin (0 if the origin is not a node).
    """

    nodes: np.ndarray
    weights: np.ndarray
    half: np.ndarray
    half_weights: np.ndarray
    center_weight: float

    @property
    def dim(self) -> int:
        return int(self.nodes.shape[1])

    @property
    def num_nodes(self) -> int:
        return int(self.nodes.shape[0])


@lru_cache(maxsize=32)
def gauss_hermite_1d(num_points: int) -> tuple[np.ndarray, np.ndarray]:
    """Gauss–Hermite rule for N(0, 1): nodes and weights summing to 1 (probabilists')."""
    if num_points < 1:
        raise ValueError(f"num_points must be >= 1, got {num_points}")
    x, w = np.polynomial.hermite_e.hermegauss(num_points)
    w = w / np.sqrt(2.0 * np.pi)
    # Symmetrise exactly so that merged nodes of different tensor grids coincide bit for bit.
    x = 0.5 * (x - x[::-1])
    w = 0.5 * (w + w[::-1])
    return x, w


def _compositions(total: int, parts: int) -> list[tuple[int, ...]]:
    """All tuples of ``parts`` positive integers summing to ``total``."""
    out = []
    for cuts in itertools.combinations(range(1, total), parts - 1):
        edges = (0, *cuts, total)
        out.append(tuple(edges[j + 1] - edges[j] for j in range(parts)))
    return out


@lru_cache(maxsize=64)
def smolyak_gauss_hermite(dim: int, level: int, *, rtol: float = 1e-12) -> SparseGrid:
    """Level-``level`` Smolyak rule in ``dim`` dimensions (exact to total degree 2·level−1).

    Examples: (dim=2, level=3) has 13 nodes; (dim=21, level=3) has 2·21² + 2·21 + 1 = 925.
    """
    if dim < 1:
        raise ValueError(f"dim must be >= 1, got {dim}")
    if level < 1:
        raise ValueError(f"level must be >= 1, got {level}")
    node_blocks, weight_blocks = [], []
    for norm in range(max(dim, level), level + dim):
        k = level + dim - 1 - norm
        coef = (-1) ** k * comb(dim - 1, k)
        for idx in _compositions(norm, dim):
            rules = [gauss_hermite_1d(i) for i in idx]
            grids = np.meshgrid(*[r[0] for r in rules], indexing="ij")
            wgrid = np.ones_like(grids[0])
            for axis, r in enumerate(rules):
                shape = [1] * dim
                shape[axis] = -1
                wgrid = wgrid * r[1].reshape(shape)
            node_blocks.append(np.stack([g.ravel() for g in grids], axis=1))
            weight_blocks.append(coef * wgrid.ravel())
    nodes = np.concatenate(node_blocks)
    weights = np.concatenate(weight_blocks)
    # Merge duplicates: keys rounded well above float noise, far below node spacing.
    keys = np.round(nodes, 12) + 0.0
    uniq, inverse = np.unique(keys, axis=0, return_inverse=True)
    merged = np.zeros(len(uniq))
    np.add.at(merged, inverse.ravel(), weights)
    keep = np.abs(merged) > rtol * np.abs(merged).max()
    nodes, weights = uniq[keep], merged[keep]

    is_center = np.all(nodes == 0.0, axis=1)
    center_weight = float(weights[is_center].sum())
    # A nonzero node is the representative of its ± pair if its first nonzero entry is > 0.
    first_nz = np.argmax(nodes != 0.0, axis=1)
    positive = nodes[np.arange(len(nodes)), first_nz] > 0.0
    rep = positive & ~is_center
    return SparseGrid(
        nodes=nodes,
        weights=weights,
        half=nodes[rep],
        half_weights=weights[rep],
        center_weight=center_weight,
    )
