import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import unitary_group

from photonic import decompose, mesh_layout, reconstruct


@settings(max_examples=25, deadline=None)
@given(n=st.integers(2, 128), topology=st.sampled_from(["clements", "reck"]),
       seed=st.integers(0, 2**31 - 1))
def test_round_trip_is_exact(n, topology, seed):
    u = unitary_group.rvs(n, random_state=seed) if n > 1 else np.eye(1)
    phases = decompose(u, topology)
    err = np.abs(reconstruct(phases).numpy() - u).max()
    assert err <= 1e-10


@pytest.mark.parametrize("topology", ["clements", "reck"])
def test_round_trip_n256(topology):
    u = unitary_group.rvs(256, random_state=3)
    err = np.abs(reconstruct(decompose(u, topology)).numpy() - u).max()
    assert err <= 1e-8


@pytest.mark.parametrize("topology,depth",
                         [("clements", lambda n: n), ("reck", lambda n: 2 * n - 3)])
@pytest.mark.parametrize("n", [3, 4, 7, 8, 16])
def test_layout_counts(topology, depth, n):
    lay = mesh_layout(n, topology)
    assert lay.num_mzis == n * (n - 1) // 2
    assert lay.depth == depth(n)
    # every column holds disjoint pairs of the column's parity
    for col in range(lay.depth):
        modes = lay.modes[lay.columns == col]
        assert np.all(modes % 2 == col % 2)
        assert len(set(modes)) == len(modes)


def test_phases_are_hardware_ranges_and_batch_matches_single():
    us = unitary_group.rvs(8, size=6, random_state=1)
    p = decompose(us.reshape(2, 3, 8, 8))
    assert p.theta.shape == (2, 3, 28) and p.out_phase.shape == (2, 3, 8)
    assert p.theta.min() >= 0 and p.theta.max() <= math.pi
    assert p.phi.min() >= 0 and p.phi.max() < 2 * math.pi
    single = decompose(us[4])
    assert torch.allclose(p.theta.reshape(6, 28)[4], single.theta)
    assert np.abs(p.matrix().numpy().reshape(6, 8, 8) - us).max() < 1e-12


def test_rejects_non_unitary_and_bad_shapes():
    with pytest.raises(ValueError, match=r"U is not unitary: max \|U U† − I\|"):
        decompose(np.ones((4, 4)))
    with pytest.raises(ValueError, match=r"shape \(\.\.\., N, N\); got \(3, 4\)"):
        decompose(np.ones((3, 4)))
    with pytest.raises(ValueError, match="did you mean 'clements'"):
        decompose(np.eye(4), "clement")
