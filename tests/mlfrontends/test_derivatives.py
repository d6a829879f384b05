"""Derivative estimators against the analytic derivatives of the Gaussian smoothing."""

import math

import numpy as np
import pytest
import torch
from numpy.polynomial import Polynomial

from mlfrontends.pinn.derivatives import (
    Autograd,
    FiniteDifference,
    MonteCarloStein,
    SparseGridStein,
    build_estimator,
)

A = torch.tensor([1.3, -0.7], dtype=torch.float64)
Z = torch.tensor([[0.2, 0.5], [-0.6, 0.1], [0.9, 0.8]], dtype=torch.float64)


def sine(x):
    return torch.sin(x @ A)


def smoothed_sine(z, sigma):
    """E sin(a·(z+δ)), δ ~ N(0, σ²I) = e^{−σ²|a|²/2} sin(a·z), and its derivatives."""
    damp = math.exp(-0.5 * sigma**2 * float(A @ A))
    s, c = torch.sin(z @ A), torch.cos(z @ A)
    return damp * s, damp * c[:, None] * A, -damp * s[:, None] * A**2


def test_sparse_grid_matches_smoothed_sine_to_1e6():
    sigma = 1e-3
    jet = SparseGridStein(sigma=sigma).estimate(sine, Z)
    u, g, h = smoothed_sine(Z, sigma)
    assert (jet.value - u).abs().max() < 1e-6
    assert (jet.grad - g).abs().max() < 1e-6
    assert (jet.hess_diag - h).abs().max() < 1e-6


def _poly(coefs):
    return Polynomial(coefs)


P1, P2 = _poly([0.3, -1.0, 0.5, 2.0]), _poly([1.0, 0.7, -0.3])  # degrees 3, 2


def _smooth_1d(p: Polynomial, sigma: float) -> Polynomial:
    """E p(x + σζ) = Σ_j σ^j E[ζ^j] p^{(j)}(x) / j!  (moments 1, 0, 1, 0, 3, 0, 15)."""
    moments = [1, 0, 1, 0, 3, 0, 15]
    out = Polynomial([0.0])
    for j in range(p.degree() + 1):
        out = out + sigma**j * moments[j] / math.factorial(j) * p.deriv(j)
    return out


def test_sparse_grid_exact_for_polynomials_with_large_sigma():
    """Level 3 is exact to degree 5, so the value (integrand f), gradient (ζ·f) and second
    derivatives ((ζ²−1)·f) are exact for f of total degree 3; a large σ (where smoothing
    visibly changes the derivatives) must still match to 1e-10."""
    sigma = 0.5

    def f(x):
        x0, x1 = x[..., 0].numpy(), x[..., 1].numpy()
        return torch.as_tensor(P1(x0) + P2(x1) * x0)

    # f = P1(x) + x·P2(y): total degree 3.
    jet = SparseGridStein(sigma=sigma).estimate(f, Z)
    x, y = Z[:, 0].numpy(), Z[:, 1].numpy()
    cube = Polynomial([0, 1.0])
    S1, S2, Sc = _smooth_1d(P1, sigma), _smooth_1d(P2, sigma), _smooth_1d(cube, sigma)
    u = S1(x) + Sc(x) * S2(y)
    ux = S1.deriv()(x) + Sc.deriv()(x) * S2(y)
    uy = Sc(x) * S2.deriv()(y)
    uxx = S1.deriv(2)(x) + Sc.deriv(2)(x) * S2(y)
    uyy = Sc(x) * S2.deriv(2)(y)
    assert np.abs(jet.value.numpy() - u).max() < 1e-10
    assert np.abs(jet.grad.numpy() - np.stack([ux, uy], 1)).max() < 1e-10
    assert np.abs(jet.hess_diag.numpy() - np.stack([uxx, uyy], 1)).max() < 1e-10
    # The smoothing matters at this σ: the raw second derivative differs noticeably.
    assert np.abs(P1.deriv(1)(x) + P2(y) - ux).max() > 0.1


def test_monte_carlo_within_statistical_error():
    sigma, reps = 0.3, 400
    est = MonteCarloStein(sigma=sigma, num_samples=64)
    g = torch.Generator().manual_seed(0)
    jets = [est.estimate(sine, Z, generator=g) for _ in range(reps)]
    truth = smoothed_sine(Z, sigma)
    for field, exact in zip(("value", "grad", "hess_diag"), truth, strict=True):
        samples = torch.stack([getattr(j, field) for j in jets])
        mean, se = samples.mean(0), samples.std(0) / math.sqrt(reps)
        assert torch.all((mean - exact).abs() < 5 * se + 1e-12), field
        assert torch.all(se > 0)


def test_sparse_grid_uses_the_symmetric_half_and_one_call():
    calls = []

    def f(x):
        calls.append(x.shape)
        return sine(x)

    est = SparseGridStein(sigma=1e-3)
    est.estimate(f, Z)
    assert calls == [(3 * 13, 2)] and est.evals_for_dim(2) == 13
    assert est.evals_for_dim(21) == 925


def test_batched_network_output_keeps_leading_dims():
    scales = torch.tensor([1.0, 2.0, -0.5], dtype=torch.float64)

    def f(x):  # three "parameter sets": (3, M)
        return scales[:, None] * sine(x)[None]

    jet = SparseGridStein(sigma=1e-3).estimate(f, Z)
    ref = SparseGridStein(sigma=1e-3).estimate(sine, Z)
    assert jet.value.shape == (3, 3) and jet.grad.shape == (3, 3, 2)
    assert torch.allclose(jet.hess_diag, scales[:, None, None] * ref.hess_diag)


@pytest.mark.parametrize("est", [FiniteDifference(step=1e-4), Autograd()])
def test_fd_and_autograd_match_raw_derivatives(est):
    jet = est.estimate(sine, Z)
    u, g, h = smoothed_sine(Z, 0.0)
    tol = 1e-7 if isinstance(est, FiniteDifference) else 1e-14
    assert (jet.value - u).abs().max() < 1e-14
    assert (jet.grad - g).abs().max() < tol
    assert (jet.hess_diag - h).abs().max() < tol


def test_autograd_with_parameter_batch_and_hess_dims():
    scales = torch.tensor([1.0, 3.0], dtype=torch.float64)

    def f(x):
        return scales[:, None] * sine(x)  # (2, N) whether x is (N, 2) or (2, N, 2)

    jet = Autograd(hess_dims=[0]).estimate(f, Z)
    _, g, h = smoothed_sine(Z, 0.0)
    assert torch.allclose(jet.grad, scales[:, None, None] * g)
    assert torch.allclose(jet.hess_diag[..., 0], scales[:, None] * h[:, 0])
    assert torch.all(jet.hess_diag[..., 1] == 0)


def test_unknown_estimator_message():
    with pytest.raises(ValueError, match="did you mean 'sg_stein'"):
        build_estimator("sg_stien", sigma=1e-3)
