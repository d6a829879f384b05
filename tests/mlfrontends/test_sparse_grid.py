"""Smolyak Gauss–Hermite rule: exactness for monomials, node counts, symmetry."""

import itertools

import numpy as np
import pytest

from mlfrontends.pinn.sparse_grid import smolyak_gauss_hermite


def _normal_moment(k: int) -> float:
    """E[z^k] for z ~ N(0, 1): (k−1)!! for even k, 0 for odd k."""
    return 0.0 if k % 2 else float(np.prod(np.arange(k - 1, 0, -2))) if k else 1.0


def _monomial_error(grid, exponents: np.ndarray) -> float:
    values = np.prod(grid.nodes ** exponents[None, :], axis=1)
    exact = np.prod([_normal_moment(int(e)) for e in exponents])
    return abs(float(values @ grid.weights) - exact) / max(1.0, abs(exact))


def _all_exponents(dim: int, max_degree: int):
    for exps in itertools.product(range(max_degree + 1), repeat=dim):
        if sum(exps) <= max_degree:
            yield np.array(exps)


@pytest.mark.parametrize(("dim", "level"), [(2, 1), (2, 2), (2, 3), (2, 4), (3, 3), (4, 3)])
def test_exact_for_all_monomials_up_to_degree_2L_minus_1(dim, level):
    grid = smolyak_gauss_hermite(dim, level)
    worst = max(_monomial_error(grid, e) for e in _all_exponents(dim, 2 * level - 1))
    assert worst < 1e-11


@pytest.mark.parametrize("dim", [5, 8, 13, 20, 21])
def test_exact_for_representative_monomials_large_dim(dim):
    """All degree ≤ 5 monomials in up to 3 active coordinates at spread-out positions."""
    grid = smolyak_gauss_hermite(dim, 3)
    rng = np.random.default_rng(dim)
    worst = 0.0
    for _ in range(300):
        active = rng.choice(dim, size=3, replace=False)
        exps = np.zeros(dim, dtype=int)
        exps[active] = rng.multinomial(rng.integers(0, 6), np.ones(3) / 3)
        worst = max(worst, _monomial_error(grid, exps))
    # Include every pure and pairwise degree-4 moment explicitly (the hardest cases).
    for i, j in [(0, dim - 1), (dim // 2, dim - 1)]:
        for a, b in [(4, 0), (2, 2), (3, 1), (1, 4), (2, 3), (5, 0)]:
            exps = np.zeros(dim, dtype=int)
            exps[i], exps[j] = a, b
            worst = max(worst, _monomial_error(grid, exps))
    assert worst < 1e-10


def test_degree_2L_is_not_exact():
    """The rule is no better than claimed: E[z^6] = 15 is missed at level 3."""
    grid = smolyak_gauss_hermite(2, 3)
    assert _monomial_error(grid, np.array([6, 0])) > 1e-3


@pytest.mark.parametrize(("dim", "level", "count"), [(2, 3, 13), (21, 3, 925), (20, 3, 841)])
def test_node_counts(dim, level, count):
    grid = smolyak_gauss_hermite(dim, level)
    assert grid.num_nodes == count == 2 * dim**2 + 2 * dim + 1
    assert len(grid.half) == (count - 1) // 2


def test_symmetric_pairs_and_level3_nodes_2d():
    grid = smolyak_gauss_hermite(2, 3)
    values = set(np.round(np.abs(grid.nodes).ravel(), 12))
    assert values == {0.0, 1.0, round(np.sqrt(3.0), 12)}
    # Every nonzero node has its mirror image with the same weight.
    for node, w in zip(grid.half, grid.half_weights, strict=True):
        j = np.where(np.all(np.isclose(grid.nodes, -node), axis=1))[0]
        assert len(j) == 1 and np.isclose(grid.weights[j[0]], w)
    assert np.any(grid.weights < 0)  # Smolyak rules have negative weights
    assert np.isclose(grid.center_weight + 2 * grid.half_weights.sum(), 1.0)
