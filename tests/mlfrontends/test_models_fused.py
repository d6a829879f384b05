"""The fused forward (row blocks, in-place activations, shared parameter-set prefixes, block
workers) gives the numbers of the layer-by-layer reference path."""

import pytest
import torch
from torch import nn
from torch.func import functional_call

import photonic
from mlfrontends.pinn import models
from mlfrontends.pinn.derivatives import SparseGridStein
from mlfrontends.pinn.models import build_mlp, fused_mlp_forward
from mlfrontends.pinn.pdes import build_pde
from mlfrontends.pinn.train import _residuals
from mlfrontends.pinn.workload import Config, build_network
from mlfrontends.zo import ParamLayout, ZOStepper
from photonic.runio import RunContext

BURGERS_TT = {i: ([4, 5, 5], [5, 5, 4]) for i in (1, 2, 3)}


def _per_tensor_sets(net, mu, dtype=torch.float64, seed=0):
    """Two-sided per-tensor ZO parameter sets (one perturbed tensor per set), as training."""
    layout = ParamLayout(net)
    opt = torch.optim.Adam(net.parameters())
    stepper = ZOStepper(net, opt, mu=mu, generator=torch.Generator().manual_seed(seed))
    U, _ = stepper.directions(dtype)
    flat = layout.flatten()[None] + mu * torch.cat([U, -U])
    return layout.unflatten(flat), flat.shape[0]


def _both(net, params, x):
    with torch.no_grad():
        net.fused = True
        fused = functional_call(net, params, (x,))
        net.fused = False
        ref = functional_call(net, params, (x,))
        net.fused = True
    return fused, ref


@pytest.mark.parametrize("tt", [True, False])
@pytest.mark.parametrize("activation", ["tanh", "sin"])
def test_fused_equals_layer_by_layer(tt, activation):
    net = build_mlp([2, 100, 100, 100, 1], activation=activation,
                    tt_layers={1: BURGERS_TT[1], 2: BURGERS_TT[2]} if tt else None, seed=1)
    params, P = _per_tensor_sets(net, 0.01)
    g = torch.Generator().manual_seed(0)
    x = torch.rand(3000, 2, dtype=torch.float64, generator=g)  # > one row block
    fused, ref = _both(net, params, x)
    assert fused.shape == ref.shape == (P, 3000, 1)
    torch.testing.assert_close(fused, ref, rtol=1e-12, atol=1e-13)
    xb = torch.rand(P, 5, 7, 2, dtype=torch.float64, generator=g)  # per-set inputs
    fused, ref = _both(net, params, xb)
    assert fused.shape == (P, 5, 7, 1)
    torch.testing.assert_close(fused, ref, rtol=1e-12, atol=1e-13)
    single = {k: v[3] for k, v in params.items()}  # unbatched parameters
    fused, ref = _both(net, single, x[:11])
    assert fused.shape == (11, 1)
    torch.testing.assert_close(fused, ref, rtol=1e-12, atol=1e-13)


def test_prefix_sharing_workers_and_block_size_change_no_bit(monkeypatch):
    net = build_mlp([2, 100, 100, 100, 1], tt_layers={1: BURGERS_TT[1]}, seed=2)
    params, P = _per_tensor_sets(net, 0.01)
    x = torch.rand(2500, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    calls = []
    addmm = torch.addmm

    def counting(*a, **k):
        calls.append(1)
        return addmm(*a, **k)

    monkeypatch.setattr(torch, "addmm", counting)
    outs = {}
    for share, workers, chunk in [(False, 1, 500), (True, 1, 500), (True, 2, 500),
                                  (True, 1, 2500)]:
        calls.clear()
        outs[share, workers, chunk] = _fused_with(net, params, x, share=share,
                                                  workers=workers, chunk=chunk)
        if (workers, chunk) == (1, 500):
            outs[share, "calls"] = len(calls)
    ref = outs[False, 1, 500]
    for key, out in outs.items():
        if "calls" not in key:
            assert torch.equal(out, ref), key
    # Per-tensor sets: the sets perturbing layer l share layers < l; 4 layers, tensors
    # (dense 2 + TT 4 + dense 2 + dense 2) → nodes 1+4, 5+8, 13+4, 17+4 per block, not 4·20.
    assert P == 20
    blocks = 5
    assert outs[False, "calls"] == 4 * P * blocks
    assert outs[True, "calls"] == (5 + 13 + 17 + 20) * blocks


def _fused_with(net, params, x, *, share, workers, chunk):
    class Probe(nn.Module):
        def __init__(self):
            super().__init__()
            self.net = net

        def forward(self, x):
            pairs = [models._dense_parameters(lay) for lay in self.net.layers]
            return fused_mlp_forward(x, pairs, self.net.act, chunk=chunk,
                                     share_prefixes=share, workers=workers)

    with torch.no_grad():
        return functional_call(Probe(), {f"net.{k}": v for k, v in params.items()}, (x,))


def test_block_workers_with_trainable_parameters_under_no_grad():
    """Worker threads do not inherit the caller's no_grad: the fused path must not trip
    over parameters that require grad (the unbatched evaluation forward of training)."""
    net = build_mlp([2, 100, 100, 1], tt_layers={1: BURGERS_TT[1]}, seed=4)
    x = torch.rand(5000, 2, dtype=torch.float64)
    prev = torch.get_num_threads()
    with torch.no_grad():
        one = fused_mlp_forward(x, [models._dense_parameters(lay) for lay in net.layers],
                                net.act, workers=1, chunk=1000)
        two = fused_mlp_forward(x, [models._dense_parameters(lay) for lay in net.layers],
                                net.act, workers=2, chunk=1000)
        torch.set_num_threads(2)
        try:
            auto = net(x)
        finally:
            torch.set_num_threads(prev)
    assert torch.equal(one, two)
    torch.testing.assert_close(auto, one, rtol=1e-12, atol=1e-13)


def test_fused_mlp_forward_shapes_and_fallbacks():
    g = torch.Generator().manual_seed(0)
    W1 = torch.randn(4, 6, 3, dtype=torch.float64, generator=g)
    W2 = torch.randn(5, 6, dtype=torch.float64, generator=g)  # shared by all sets
    b1 = torch.randn(6, dtype=torch.float64, generator=g)
    x = torch.randn(10, 3, dtype=torch.float64, generator=g)
    y = fused_mlp_forward(x, [(W1, b1), (W2, None)], nn.Tanh(), chunk=3)
    ref = torch.tanh(x @ W1.transpose(1, 2) + b1) @ W2.T
    torch.testing.assert_close(y, ref, rtol=1e-13, atol=1e-14)
    # not supported → None (the caller runs the reference path)
    assert fused_mlp_forward(x, [(W1[None], b1)], nn.Tanh()) is None  # two batch dims
    assert fused_mlp_forward(x.float(), [(W1, b1)], nn.Tanh()) is None  # dtype mismatch
    assert fused_mlp_forward(x, [(W1, b1)], nn.ReLU()) is None  # no in-place activation
    assert fused_mlp_forward(x, [(W1, b1), (W2[None].expand(3, -1, -1), None)],
                             nn.Tanh()) is None  # P = 4 vs 3


def test_autograd_uses_the_reference_path():
    net = build_mlp([2, 100, 100, 1], tt_layers={1: BURGERS_TT[1]}, seed=3)
    x = torch.rand(20, 2, dtype=torch.float64)
    y = net(x)  # parameters require grad: the recorded reference path
    y.sum().backward()
    assert all(p.grad is not None for p in net.parameters())
    with torch.no_grad():
        torch.testing.assert_close(net(x), y.detach(), rtol=1e-12, atol=1e-13)
    xr = x.clone().requires_grad_(True)  # autograd derivatives w.r.t. the input
    (gx,) = torch.autograd.grad(net(xr).sum(), xr)
    assert gx.shape == x.shape


@pytest.mark.parametrize("precision", ["float64", "float32"])
def test_stein_zo_loss_equals_reference(precision, tmp_path):
    dtype = getattr(torch, precision)
    cfg = Config(model={"precision": precision})
    net = build_network(cfg, RunContext(out=tmp_path, show_progress=False))
    params, P = _per_tensor_sets(net, 0.01, dtype)
    pde = build_pde("burgers", {"grid_x": 3, "grid_t": 2})
    est = SparseGridStein(sigma=1e-3)
    z = pde.sample(200, torch.Generator().manual_seed(0), dtype=dtype)
    residual = _residuals(pde, est, z, torch.Generator().manual_seed(0), None)
    values = []
    for fused in (True, False):
        net.fused = fused
        with torch.no_grad():
            r = residual(lambda x: functional_call(net, params, (x,)))
            values.append((r * r).mean(-1))
    # f64: the Stein second difference amplifies rounding by 1/σ² = 1e6
    torch.testing.assert_close(values[0], values[1],
                               rtol=1e-9 if precision == "float64" else 1e-2, atol=0)


@pytest.mark.parametrize("mode", ["phase", "weight"])
def test_chip_fused_equals_layer_by_layer_and_optical_chain(mode, tmp_path):
    import calibration

    noise = photonic.NoiseConfig(phase_quantization=True, gamma_error=True, crosstalk=True)
    ctx = RunContext(out=tmp_path, show_progress=False,
                     device=calibration.load_preset("bpfree_pinn_sim"), noise=noise)
    net = build_network(Config(model={"execution": mode, "widths": [2, 20, 20, 20, 1],
                                      "tt_layers": {1: [[4, 5], [5, 4]], 2: [[4, 5], [5, 4]]}},
                               pde_params={"grid_x": 3, "grid_t": 2}), ctx)
    assert net.fast
    params, P = _per_tensor_sets(net, 0.025)
    x = torch.rand(1500, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    fused, ref = _both(net, params, x)
    assert fused.shape == (P, 1500, 1)
    torch.testing.assert_close(fused, ref, rtol=1e-12, atol=1e-13)
    with torch.no_grad():
        net.fast = False
        chain = functional_call(net, params, (x[:50],))
    torch.testing.assert_close(fused[:, :50], chain, rtol=1e-10, atol=1e-12)
    assert (fused[0] - fused[1]).abs().max() > 1e-5  # the perturbed meshes differ
