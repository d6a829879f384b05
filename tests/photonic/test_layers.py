import math

import pytest
import torch
from torch import nn
from torch.func import functional_call

from photonic import (
    DeviceParams,
    NoiseConfig,
    PhotonicLinear,
    PhotonicMatrix,
    TTPhotonicLinear,
    convert_linear,
)


def _batched(module, p=3, scale=0.01, seed=0):
    g = torch.Generator().manual_seed(seed)
    return {k: v.detach() + scale * torch.randn((p,) + v.shape, generator=g, dtype=v.dtype)
            for k, v in module.named_parameters()}


def test_weight_mode_matches_linear_and_batches_parameters():
    lin = PhotonicLinear(21, 13, tile=4, mode="weight")
    x = torch.randn(5, 21, dtype=torch.float64)
    ref = x @ lin.core.weight.T + lin.bias
    assert (lin(x) - ref).abs().max() < 1e-12
    params = _batched(lin)
    yb = functional_call(lin, params, (x,))
    assert yb.shape == (3, 5, 13)
    for p in range(3):
        single = {k: v[p] for k, v in params.items()}
        assert (yb[p] - functional_call(lin, single, (x,))).abs().max() < 1e-12


def test_phase_mode_perturbed_meshes_are_rebuilt_and_grads_flow():
    dev = DeviceParams()
    lin = PhotonicLinear(8, 6, tile=4, mode="phase", device=dev, noise=NoiseConfig())
    x = torch.randn(4, 8, dtype=torch.float64)
    y0 = lin(x)
    params = _batched(lin, p=2, scale=0.05)
    yb = functional_call(lin, params, (x,))
    assert yb.shape == (2, 4, 6)
    assert (yb[0] - y0).abs().max() > 1e-4  # perturbed phases change the product
    lin.zero_grad()
    lin(x).pow(2).sum().backward()
    assert torch.isfinite(lin.core.phases.grad).all() and lin.core.phases.grad.abs().sum() > 0


def test_phase_mode_gradcheck():
    lin = PhotonicLinear(3, 2, tile=2, mode="phase", bias=False)
    x = torch.randn(2, 3, dtype=torch.float64)
    phases = lin.core.phases.detach().clone().requires_grad_(True)

    def f(ph):
        return functional_call(lin, {"core.phases": ph, "core.gain": lin.core.gain}, (x,))

    assert torch.autograd.gradcheck(f, (phases,))


def test_tt_layer_equals_its_dense_contraction_and_counts():
    tt = TTPhotonicLinear([4, 5, 5], [5, 5, 4], ranks=2, mode="digital")
    g = [c.weight.detach().reshape(tt.ranks[k], tt.out_shape[k], tt.in_shape[k], tt.ranks[k + 1])
         for k, c in enumerate(tt.cores)]
    dense = torch.einsum("aijb,bklc,cmnd->ikmjln", *g).reshape(100, 100)
    assert (dense - tt.realised_matrix()).abs().max() < 1e-14
    assert sum(p.numel() for p in tt.parameters()) == 280  # 40 + 100 + 40 cores + 100 bias
    x = torch.randn(3, 100, dtype=torch.float64)
    assert (tt(x) - (x @ dense.T + tt.bias)).abs().max() < 1e-13


def test_tt_weight_and_phase_modes_batch():
    for mode in ("weight", "phase"):
        tt = TTPhotonicLinear([2, 3], [3, 2], ranks=2, mode=mode, tile=4)
        x = torch.randn(5, 6, dtype=torch.float64)
        params = _batched(tt, p=2, scale=0.0)
        yb = functional_call(tt, params, (x,))
        assert yb.shape == (2, 5, 6)
        assert (yb[1] - tt(x)).abs().max() < 1e-12


def test_convert_linear_keeps_function_on_an_ideal_chip():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 9), nn.Tanh(), nn.Linear(9, 2)).double()
    x = torch.randn(4, 6, dtype=torch.float64)
    ref = model(x)
    convert_linear(model, tile=4, mode="weight")
    assert isinstance(model[0], PhotonicLinear) and isinstance(model[2], PhotonicLinear)
    assert (model(x) - ref).abs().max() < 1e-12


def test_tt_one_gemm_shortcut_equals_the_per_core_optical_chain():
    # With mesh errors on but linear detection, the layer contracts its realised cores into
    # one matrix; with the input DAC on it must run core by core. At 32 bits the DAC is
    # (numerically) transparent, so both paths must agree.
    from photonic import ConverterParams, CrosstalkParams, PhaseShifterParams

    dev = DeviceParams(shifter=PhaseShifterParams(kind="thermal", law="quadratic", v_pi_v=4.36,
                                                  v_max_v=10.8),
                       phase_dac=ConverterParams(bits=8), dac=ConverterParams(bits=32),
                       crosstalk=CrosstalkParams(model="nearest", coefficient=0.005))
    static = {"phase_quantization": True, "crosstalk": True}
    x = torch.randn(6, 100, dtype=torch.float64)
    for mode in ("weight", "phase"):
        fast = TTPhotonicLinear([4, 5, 5], [5, 5, 4], mode=mode, tile=8, device=dev,
                                noise=NoiseConfig(**static), seed=3)
        chain = TTPhotonicLinear([4, 5, 5], [5, 5, 4], mode=mode, tile=8, device=dev,
                                 noise=NoiseConfig(**static, input_quantization=True), seed=3)
        chain.load_state_dict(fast.state_dict())
        params = _batched(fast, p=2, scale=0.01)
        yf = functional_call(fast, params, (x,))
        yc = functional_call(chain, params, (x,))
        assert yf.shape == (2, 6, 100)
        assert (yf - yc).abs().max() < 1e-7


def test_equal_rows_groups_bitwise_equal_rows_only(monkeypatch):
    import photonic.core as core
    from photonic import equal_rows

    a, b = torch.randn(2, 7, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    near = a.clone()
    near[0] = torch.nextafter(a[0], torch.tensor(math.inf, dtype=torch.float64))  # one ulp
    first, inverse = equal_rows(torch.stack([a, b, a, near, b, a]))
    assert first[inverse].tolist() == [0, 1, 0, 3, 1, 0]
    # a projection blind to every column but the first: rows that differ elsewhere collide
    e0 = torch.zeros(7, dtype=torch.float64)
    e0[0] = 1.0
    monkeypatch.setattr(core, "_projection", lambda n: e0)
    other = a.clone()
    other[3] += 1.0
    first, inverse = equal_rows(torch.stack([a, other, a]))
    assert first[inverse].tolist() == [0, 1, 0]


def test_phase_mode_shares_the_build_of_equal_parameter_sets():
    """P sets of which most repeat the unperturbed phases give bitwise the same matrices as
    building every set (the chip has no dynamic noise), and only the distinct sets are
    built."""
    import photonic.layers as layers

    noise = NoiseConfig(phase_quantization=True, gamma_error=True, crosstalk=True)
    lin = PhotonicLinear(12, 10, tile=4, mode="phase", noise=noise)
    base = {k: v.detach() for k, v in lin.named_parameters()}
    sets = {k: v.expand((6,) + v.shape).clone() for k, v in base.items()}
    sets["core.phases"][2, 0, 1, :5] += 0.3
    sets["core.phases"][4, 2, 0, 3:] -= 0.2
    built = []
    orig = layers.tile_matrices

    def counting(prog, **kw):
        built.append(kw["phases"].reshape(-1, *kw["phases"].shape[-3:]).shape[0])
        return orig(prog, **kw)

    layers.tile_matrices = counting
    try:
        with torch.no_grad():
            with torch.nn.utils.stateless._reparametrize_module(lin, sets):
                shared = lin.core.realised_matrix()
    finally:
        layers.tile_matrices = orig
    assert built == [3]
    with torch.no_grad():
        for p in range(6):
            with torch.nn.utils.stateless._reparametrize_module(
                    lin, {k: v[p] for k, v in sets.items()}):
                assert torch.equal(shared[p], lin.core.realised_matrix())
    assert not torch.equal(shared[2], shared[0]) and torch.equal(shared[1], shared[0])


def test_compensate_crosstalk_programs_a_matrix_closer_on_a_quantised_chip():
    from photonic import CrosstalkParams, PhaseShifterParams
    from photonic.devices import PhaseDacParams

    dev = DeviceParams(shifter=PhaseShifterParams(kind="thermal", law="quadratic", v_pi_v=4.36,
                                                  v_max_v=10.8),
                       phase_dac=PhaseDacParams(bits=8, grid="phase"),
                       crosstalk=CrosstalkParams(model="nearest", coefficient=0.005))
    w = torch.randn(16, 16, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    err = {}
    for noise in (NoiseConfig(crosstalk=True),
                  NoiseConfig(crosstalk=True, phase_quantization=True)):
        for comp in (False, True):
            m = PhotonicMatrix(w, mode="phase", tile=8, device=dev, noise=noise)
            if comp:
                m.compensate_crosstalk()
            err[noise.phase_quantization, comp] = float(
                torch.linalg.matrix_norm(m.realised_matrix().detach() - w) /
                torch.linalg.matrix_norm(w))
    # crosstalk alone 0.036 → 1e-4 (a Σ attenuator at θ = 0 cannot go below its leak)
    assert err[False, False] > 0.02
    assert err[False, True] < 0.01 * err[False, False]
    # with the 8-bit codes 0.050 → 0.014, the quantisation error's size
    assert err[True, True] < 0.5 * err[True, False]
    with pytest.raises(ValueError, match="mode='phase'"):
        PhotonicMatrix(w, mode="weight", tile=8, device=dev).compensate_crosstalk()
