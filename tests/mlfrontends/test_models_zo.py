"""Models (parameter counts, batched-parameter convention) and ZO estimators."""

import math

import pytest
import torch
from torch.func import functional_call

from mlfrontends.pinn.models import TTLinear, build_mlp, count_parameters
from mlfrontends.zo import (
    FirstOrderStepper,
    ParamLayout,
    SubspaceLMStepper,
    ZOStepper,
    block_directions,
    coordinate_directions,
    rademacher_directions,
    zo_gradient,
)

BURGERS_TT = {i: ([4, 5, 5], [5, 5, 4]) for i in (1, 2, 3)}
NETS = {
    "burgers": ([2, 100, 100, 100, 100, 1], "tanh", BURGERS_TT, 1241, 30701),
    "blackscholes": ([2, 128, 128, 1], "tanh", {1: ([4, 4, 8], [8, 4, 4])}, 833, 17025),
    "hjb": ([21, 512, 512, 1], "sin",
            {0: ([1, 1, 3, 7], [8, 4, 4, 4]), 1: ([4, 4, 4, 8], [8, 4, 4, 4])}, 1929, 274433),
}


@pytest.mark.parametrize("name", list(NETS))
def test_parameter_counts_match_the_published_networks(name):
    widths, act, tt, n_tt, n_dense = NETS[name]
    assert count_parameters(build_mlp(widths, activation=act, tt_layers=tt)) == n_tt
    assert count_parameters(build_mlp(widths, activation=act)) == n_dense


def test_tt_layer_matches_its_materialised_matrix_and_tensor_order():
    layer = TTLinear([2, 3], [3, 2], ranks=[2], generator=torch.Generator().manual_seed(0))
    G1, G2 = layer.cores[0].detach(), layer.cores[1].detach()
    # W[(i1,i2),(j1,j2)] = G1[0,i1,j1,:] · G2[:,i2,j2,0], row-major multi-indices.
    W = torch.einsum("aijb,bklc->ikjl", G1, G2).reshape(6, 6)
    assert torch.allclose(layer.weight(), W)
    x = torch.randn(5, 6, dtype=torch.float64)
    assert torch.allclose(layer(x), x @ W.T + layer.bias)


def test_tt_random_init_variance_and_ttsvd_init():
    g = torch.Generator().manual_seed(1)
    layers = [TTLinear([4, 5, 5], [5, 5, 4], generator=g) for _ in range(40)]
    var = torch.stack([lay.weight().detach().var() for lay in layers]).mean()
    assert abs(var.item() * 100 - 1.0) < 0.15  # Var(W) = 1/N, N = 100
    lay = TTLinear([4, 5, 5], [5, 5, 4], init="ttsvd", generator=torch.Generator().manual_seed(2))
    # Rescaled TT-SVD of a U(−1/√N, 1/√N) matrix keeps its Frobenius norm √(M·N/(3N)).
    assert abs(lay.weight().norm().item() - math.sqrt(100 * 100 / 300)) < 0.6
    with pytest.raises(ValueError, match="tt init"):
        TTLinear([4, 5, 5], [5, 5, 4], init="svd")


@pytest.mark.parametrize("tt", [True, False])
def test_batched_parameter_convention(tt):
    widths = [2, 100, 100, 1]
    net = build_mlp(widths, tt_layers={1: ([4, 5, 5], [5, 5, 4])} if tt else None, seed=3)
    P = 4
    g = torch.Generator().manual_seed(0)
    params = {
        k: torch.stack([v.detach() + 0.1 * torch.randn(v.shape, generator=g,
                                                       dtype=v.dtype) for _ in range(P)])
        for k, v in net.named_parameters()
    }
    x = torch.rand(7, 2, dtype=torch.float64)
    xb = torch.rand(P, 7, 2, dtype=torch.float64)
    y = functional_call(net, params, (x,))
    yb = functional_call(net, params, (xb,))
    assert y.shape == yb.shape == (P, 7, 1)
    for i in range(P):
        single = {k: v[i] for k, v in params.items()}
        assert torch.allclose(y[i], functional_call(net, single, (x,)), atol=1e-13)
        assert torch.allclose(yb[i], functional_call(net, single, (xb[i],)), atol=1e-13)


def test_batched_linear_shape_rule():
    """photonic.core.batched_linear: x is per set only when it has as many dims as the
    weight (or more) and leads with its batch dims; otherwise it is shared by every set."""
    from photonic.core import batched_linear

    g = torch.Generator().manual_seed(0)
    W = torch.randn(3, 4, 5, dtype=torch.float64, generator=g)
    b = torch.randn(3, 4, dtype=torch.float64, generator=g)
    x = torch.randn(2, 6, 5, dtype=torch.float64, generator=g)  # leading 2 ≠ P: shared
    y = batched_linear(x, W, b)
    assert y.shape == (3, 2, 6, 4)
    assert torch.allclose(y[1, 0], x[0] @ W[1].T + b[1], rtol=0, atol=1e-13)
    rows = torch.randn(3, 5, dtype=torch.float64, generator=g)  # (P, in): P shared rows
    y = batched_linear(rows, W, b)
    assert y.shape == (3, 3, 4)
    assert torch.allclose(y[2, 0], rows[0] @ W[2].T + b[2], rtol=0, atol=1e-13)
    y = batched_linear(rows[:, None], W, b[0])  # (P, 1, in): one row per set, shared bias
    assert y.shape == (3, 1, 4)
    assert torch.allclose(y[2, 0], rows[2] @ W[2].T + b[0], rtol=0, atol=1e-13)
    W2 = torch.randn(2, 3, 4, 5, dtype=torch.float64, generator=g)  # batch dims (2, 3)
    x2 = torch.randn(2, 3, 7, 5, dtype=torch.float64, generator=g)
    y = batched_linear(x2, W2)
    assert y.shape == (2, 3, 7, 4)
    assert torch.allclose(y[1, 2], x2[1, 2] @ W2[1, 2].T, rtol=0, atol=1e-13)
    assert torch.equal(batched_linear(x, W[0], b[0]),
                       torch.nn.functional.linear(x, W[0], b[0]))


# ---------------------------------------------------------------------------------- ZO
def _quadratic(theta_batch, A, c):
    d = theta_batch - c
    return 0.5 * torch.einsum("pi,ij,pj->p", d, A, d)


def test_two_sided_zo_is_exact_for_quadratics_along_directions():
    g = torch.Generator().manual_seed(0)
    D = 6
    M = torch.randn(D, D, generator=g, dtype=torch.float64)
    A, c = M @ M.T, torch.randn(D, dtype=torch.float64, generator=g)
    theta = torch.randn(D, dtype=torch.float64, generator=g)
    true = A @ (theta - c)
    U = coordinate_directions(range(D), D)
    est = zo_gradient(lambda t: _quadratic(t, A, c), theta, U, mu=0.1, scale=1.0)
    assert torch.allclose(est.grad, true, atol=1e-12) and est.num_sets == 2 * D
    # One-sided has an O(μ) bias of exactly μ/2·A_ii.
    one = zo_gradient(lambda t: _quadratic(t, A, c), theta, U, mu=0.1, two_sided=False,
                      scale=1.0)
    assert torch.allclose(one.grad - true, 0.05 * torch.diagonal(A), atol=1e-12)
    assert one.num_sets == D + 1
    assert abs(one.loss - float(_quadratic(theta[None], A, c))) < 1e-12


@pytest.mark.parametrize("per_tensor", [False, True])
def test_rademacher_estimate_unbiased_with_correct_variance(per_tensor):
    """E[ĝ] = ∇L, and for Rademacher u: Var(ĝ_i) = (|g|² − g_i²)/q (whole vector) or the
    same within each block (per tensor)."""
    D, q, reps = 8, 4, 4000
    g = torch.Generator().manual_seed(1)
    w = torch.randn(D, dtype=torch.float64, generator=g)
    blocks = [slice(0, 3), slice(3, 8)]

    def loss(t):  # linear loss: the two-sided difference is exact
        return t @ w

    grads = []
    for _ in range(reps):
        if per_tensor:
            U = block_directions(q, blocks, D, distribution="rademacher", generator=g)
        else:
            U = rademacher_directions(q, D, generator=g)
        grads.append(zo_gradient(loss, torch.zeros(D, dtype=torch.float64), U, mu=0.01,
                                 scale=1 / q).grad)
    G = torch.stack(grads)
    assert torch.allclose(G.mean(0), w, atol=5 * G.std(0).max() / math.sqrt(reps))
    if per_tensor:
        theory = torch.cat([(w[b] @ w[b] - w[b] ** 2) / q for b in blocks])
    else:
        theory = (w @ w - w**2) / q
    assert torch.allclose(G.var(0), theory, rtol=0.1)


def test_zo_stepper_one_batched_call_and_descends():
    torch.manual_seed(0)
    net = build_mlp([2, 16, 1], seed=0)
    x = torch.rand(32, 2, dtype=torch.float64)
    target = torch.sin(3 * x[:, :1])
    calls = []

    def loss(fwd):
        out = fwd(x)
        calls.append(out.shape)
        return ((out - target) ** 2).mean(dim=(-1, -2))

    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    stepper = ZOStepper(net, opt, mu=1e-3, num_queries=2, per_tensor=True,
                        generator=torch.Generator().manual_seed(0))
    first = stepper.step(loss)
    assert calls == [(2 * 2 * 4, 32, 1)] and first.num_sets == 16  # 4 tensors, q=2, ±
    for _ in range(300):
        last = stepper.step(loss)
    assert last.loss < 0.5 * first.loss


def test_split_blocks_and_stepper_block_size():
    from mlfrontends.zo import split_blocks

    assert split_blocks([slice(0, 5), slice(5, 6)], 2) == [
        slice(0, 2), slice(2, 4), slice(4, 5), slice(5, 6)]
    assert split_blocks([slice(0, 5)], None) == [slice(0, 5)]
    net = build_mlp([2, 16, 1], seed=0)  # tensors of 32, 16, 16, 1 parameters
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    st = ZOStepper(net, opt, mu=1e-3, block_size=10, generator=torch.Generator().manual_seed(0))
    U, scale = st.directions(torch.float64)
    # 32 → 4 chunks, 16 → 2, 16 → 2, 1 → 1: one direction per chunk, disjoint supports
    assert U.shape == (9, 65) and scale == 1.0
    support = U != 0
    assert torch.equal(support.sum(0), torch.ones(65, dtype=torch.long))
    assert support.sum(1).tolist() == [10, 10, 10, 2, 10, 6, 10, 6, 1]
    with pytest.raises(ValueError, match="block_size"):
        ZOStepper(net, opt, mu=1e-3, block_size=0, generator=torch.Generator())


def test_local_readout_gradient_is_exact_and_excluded_from_zo():
    net = build_mlp([2, 8, 8, 1], seed=2)
    x = torch.rand(16, 2, dtype=torch.float64)

    def loss(fwd):
        return (torch.sin(fwd(x)) ** 2).mean(dim=(-1, -2))

    ref = torch.autograd.grad(loss(net), [net.layers[2].weight, net.layers[2].bias])
    opt = torch.optim.SGD(net.parameters(), lr=0.0)
    st = ZOStepper(net, opt, mu=1e-3, local=("layers.2.weight", "layers.2.bias"),
                   generator=torch.Generator().manual_seed(0))
    assert st.layout.names == ["layers.0.weight", "layers.0.bias", "layers.1.weight",
                               "layers.1.bias"]
    info = st.step(loss)
    assert info.num_sets == 2 * 4 + 1
    assert torch.allclose(net.layers[2].weight.grad, ref[0], atol=1e-14)
    assert torch.allclose(net.layers[2].bias.grad, ref[1], atol=1e-14)
    assert all(p.requires_grad for p in net.parameters())
    with pytest.raises(ValueError, match="did you mean 'layers.2.bias'"):
        ZOStepper(net, opt, mu=1e-3, local=("layers.2.bais",), generator=torch.Generator())


def test_zo_gradient_matches_autograd_in_expectation():
    net = build_mlp([2, 8, 1], seed=1)
    x = torch.rand(16, 2, dtype=torch.float64)
    layout = ParamLayout(net)
    loss_val = (net(x) ** 2).mean()
    true = torch.cat([p.reshape(-1) for p in torch.autograd.grad(loss_val, net.parameters())])
    g = torch.Generator().manual_seed(3)
    U = rademacher_directions(20000, layout.dim, generator=g)
    est = zo_gradient(
        lambda b: (functional_call(net, layout.unflatten(b), (x,)) ** 2).mean((-1, -2)),
        layout.flatten(), U, mu=1e-4,
    )
    # E‖ĝ − g‖² ≈ (D − 1)‖g‖²/q for Rademacher: relative error ≈ √(33/20000) = 0.04.
    assert (est.grad - true).norm() / true.norm() < 0.12
    assert torch.nn.functional.cosine_similarity(est.grad, true, dim=0) > 0.95


def test_first_order_stepper_and_errors():
    net = build_mlp([2, 8, 1], seed=1)
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    x = torch.rand(16, 2, dtype=torch.float64)
    info = FirstOrderStepper(net, opt).step(lambda m: (m(x) ** 2).mean())
    assert info.num_sets == 1 and info.loss > 0
    with pytest.raises(ValueError, match="did you mean 'rademacher'"):
        ZOStepper(net, opt, mu=0.01, distribution="rademaher", generator=torch.Generator())


class _Affine(torch.nn.Module):
    """Residual r = A θ − b with θ a parameter; batched θ (P, D) gives (P, N)."""

    def __init__(self, A, b, theta, grid=None):
        super().__init__()
        self.A, self.b, self.grid = A, b, grid
        self.theta = torch.nn.Parameter(theta.clone())

    def forward(self, _x):
        t = self.theta if self.grid is None else torch.round(self.theta / self.grid) * self.grid
        return t @ self.A.T - self.b


def _recording(shapes: list):
    """The residual of a batched forward, recording each call's (P, N) shape."""
    def residual(fwd):
        r = fwd(None)
        shapes.append(tuple(r.shape))
        return r

    return residual


def test_subspace_lm_solves_linear_least_squares_in_one_step_when_the_subspace_is_full():
    """Blocks of one coordinate give k = D directions that span R^D: a Gauss–Newton step on
    affine residuals is then the least-squares solution, exact up to the damping."""
    g = torch.Generator().manual_seed(0)
    A = torch.randn(40, 6, generator=g, dtype=torch.float64)
    b = torch.randn(40, generator=g, dtype=torch.float64)
    net = _Affine(A, b, torch.zeros(6, dtype=torch.float64))
    calls = []
    residual = _recording(calls)
    st = SubspaceLMStepper(net, mu=1e-2, block_size=1, damping=1e-9, max_step=100.0,
                           generator=torch.Generator().manual_seed(1))
    info = st.step(residual)
    best = torch.linalg.lstsq(A, b[:, None]).solution[:, 0]
    assert calls[0] == (2 * 6 + 1, 40) and info.num_sets == 2 * 6 + 2  # one candidate
    assert info.loss == pytest.approx(float((b * b).mean()))
    assert torch.allclose(net.theta.detach(), best, atol=1e-7)
    assert st.lam == pytest.approx(1e-9 / 3)  # the model predicted the decrease: λ ÷ 3


def test_subspace_lm_central_differences_have_no_curvature_bias():
    """r(θ) = θ² (one coordinate): the central difference along u = ±1 gives J = 2θ
    exactly (a forward difference would give 2θ + μu), so from θ = 1 the Gauss–Newton step
    lands at 0.5 even with the large μ = 0.5."""
    class _Square(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.theta = torch.nn.Parameter(torch.ones(1, dtype=torch.float64))

        def forward(self, _x):
            return self.theta**2

    net = _Square()
    st = SubspaceLMStepper(net, mu=0.5, block_size=1, damping=1e-12, max_step=10.0,
                           generator=torch.Generator().manual_seed(0))
    st.step(lambda fwd: fwd(None))
    assert float(net.theta.detach()) == pytest.approx(0.5, rel=1e-9)


def test_subspace_lm_random_subspace_descends_and_clips_the_step():
    g = torch.Generator().manual_seed(0)
    A = torch.randn(60, 30, generator=g, dtype=torch.float64)
    b = torch.randn(60, generator=g, dtype=torch.float64)
    net = _Affine(A, b, torch.zeros(30, dtype=torch.float64))
    st = SubspaceLMStepper(net, mu=1e-3, block_size=10, max_step=0.05,
                           generator=torch.Generator().manual_seed(1))
    before = net.theta.detach().clone()
    first = st.step(lambda fwd: fwd(None))
    assert (net.theta.detach() - before).abs().max() <= 0.05 + 1e-15
    for _ in range(200):
        last = st.step(lambda fwd: fwd(None))
    optimum = float(((A @ torch.linalg.lstsq(A, b[:, None]).solution[:, 0] - b) ** 2).mean())
    assert last.loss < optimum + 0.05 * (first.loss - optimum)


def test_subspace_lm_realised_directions_follow_a_quantised_parameter():
    """θ = 0.04 on a 0.1 grid with μ = 0.03: θ ± μ land on 0.1 and 0.0, a realised move of
    0.1 where 0.06 was drawn. With the realised direction the Gauss–Newton model is the
    grid's own and one step lands on the target 0.3; with the drawn one the model's slope
    is 0.1/0.06 per unit of θ and the step falls short (θ 0.22 → 0.2)."""
    one = torch.ones(1, 1, dtype=torch.float64)
    target = torch.tensor([0.3], dtype=torch.float64)

    def final_value(realise):
        net = _Affine(one, target, torch.tensor([0.04], dtype=torch.float64), grid=0.1)
        st = SubspaceLMStepper(net, mu=0.03, block_size=1, damping=1e-12, max_step=1.0,
                               tries=1, realise=realise,
                               generator=torch.Generator().manual_seed(0))
        st.step(lambda fwd: fwd(None))
        return float(torch.round(net.theta.detach() / 0.1) * 0.1)

    assert final_value(lambda t: torch.round(t / 0.1) * 0.1) == pytest.approx(0.3)
    assert final_value(None) == pytest.approx(0.2)


def test_subspace_lm_rejects_a_worse_candidate_and_raises_damping():
    """Residual r = θ² − 1 near θ = 0 is badly modelled by its linearisation far away:
    a rejected candidate leaves θ unchanged and multiplies λ by 4."""

    class Square(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.theta = torch.nn.Parameter(torch.tensor([0.01], dtype=torch.float64))

        def forward(self, _x):
            return self.theta**2 - 1.0

    net = Square()
    st = SubspaceLMStepper(net, mu=1e-4, block_size=1, damping=1e-12, max_step=10.0,
                           tries=1, generator=torch.Generator().manual_seed(0))
    st.step(lambda fwd: fwd(None))  # GN step 1/(2·0.01) = 50 → loss (2500 − 1)² ≫ 1
    assert float(net.theta.detach()) == pytest.approx(0.01) and st.lam == pytest.approx(4e-12)
    with pytest.raises(ValueError, match="max_step"):
        SubspaceLMStepper(net, mu=1e-3, max_step=0, generator=torch.Generator())


def test_subspace_lm_block_sizes_per_tensor():
    """``block_sizes`` overrides the block size of named tensors: the read-out weight of a
    2 → 16 → 1 MLP (16 entries) gets one direction per entry, the rest one per tensor."""
    from mlfrontends.zo import split_blocks

    assert split_blocks([slice(0, 5), slice(5, 8)], None, [2, None]) == [
        slice(0, 2), slice(2, 4), slice(4, 5), slice(5, 8)]
    with pytest.raises(ValueError, match="one per tensor"):
        split_blocks([slice(0, 5)], None, [1, 1])
    net = build_mlp([2, 16, 1], seed=0)  # tensors of 32, 16, 16, 1 parameters
    st = SubspaceLMStepper(net, mu=1e-3, block_sizes={"layers.1.weight": 1},
                           generator=torch.Generator().manual_seed(0))
    U = st.directions(torch.zeros(65, dtype=torch.float64))
    assert U.shape == (3 + 16, 65)
    assert (U != 0).sum(1).tolist() == [32, 16] + [1] * 16 + [1]
    with pytest.raises(ValueError, match="no trainable parameter named 'layers.9.weight'"):
        SubspaceLMStepper(net, mu=1e-3, block_sizes={"layers.9.weight": 1},
                          generator=torch.Generator())
    with pytest.raises(ValueError, match="≥ 1"):
        SubspaceLMStepper(net, mu=1e-3, block_sizes={"layers.1.weight": 0},
                          generator=torch.Generator())


def test_subspace_lm_bounds_keep_every_evaluated_point_in_the_box():
    """r = θ − (5, −5) with θ in [0, 1]²: every perturbed and candidate point the stepper
    evaluates lies in the box, and the iterate ends on the corner nearest the optimum."""
    seen = []

    class Recorder(_Affine):
        def forward(self, x):
            seen.append(self.theta.detach().reshape(-1, 2).clone())
            return super().forward(x)

    eye = torch.eye(2, dtype=torch.float64)
    net = Recorder(eye, torch.tensor([5.0, -5.0], dtype=torch.float64),
                   torch.tensor([0.5, 0.5], dtype=torch.float64))
    lo, hi = torch.zeros(2, dtype=torch.float64), torch.ones(2, dtype=torch.float64)
    st = SubspaceLMStepper(net, mu=0.3, block_size=1, damping=1e-9, max_step=10.0,
                           bounds=(lo, hi), generator=torch.Generator().manual_seed(0))
    for _ in range(3):
        st.step(lambda fwd: fwd(None))
    pts = torch.cat(seen)
    assert float(pts.min()) >= 0.0 and float(pts.max()) <= 1.0
    assert torch.equal(net.theta.detach(), torch.tensor([1.0, 0.0], dtype=torch.float64))
    with pytest.raises(ValueError, match="bounds: need two"):
        SubspaceLMStepper(net, mu=0.1, bounds=(lo[:1], hi), generator=torch.Generator())


def test_subspace_lm_exclude_holds_the_named_parameters():
    """r = Aθ + Bc − b with c excluded: the directions span θ only (2·6 + 1 sets), the step is
    the least-squares θ for the held c, and c does not move."""
    g = torch.Generator().manual_seed(3)
    A = torch.randn(30, 6, generator=g, dtype=torch.float64)
    B = torch.randn(30, 2, generator=g, dtype=torch.float64)
    b = torch.randn(30, generator=g, dtype=torch.float64)

    class Held(_Affine):
        def __init__(self):
            super().__init__(A, b, torch.zeros(6, dtype=torch.float64))
            self.c = torch.nn.Parameter(torch.tensor([0.7, -1.3], dtype=torch.float64))

        def forward(self, _x):
            return super().forward(_x) + self.c @ B.T

    net = Held()
    shapes = []
    st = SubspaceLMStepper(net, mu=1e-2, block_size=1, damping=1e-9, max_step=100.0,
                           exclude=["c"], generator=torch.Generator().manual_seed(0))
    st.step(_recording(shapes))
    c = torch.tensor([0.7, -1.3], dtype=torch.float64)
    best = torch.linalg.lstsq(A, (b - B @ c)[:, None]).solution[:, 0]
    assert shapes[0] == (2 * 6 + 1, 30)
    assert torch.equal(net.c.detach(), c)
    assert torch.allclose(net.theta.detach(), best, atol=1e-7)
    with pytest.raises(ValueError, match="exclude: no trainable parameter named 'd'"):
        SubspaceLMStepper(net, mu=1e-2, exclude=["d"], generator=torch.Generator())
    with pytest.raises(ValueError, match="no trainable parameter is left"):
        SubspaceLMStepper(net, mu=1e-2, exclude=["theta", "c"], generator=torch.Generator())
