import math

import numpy as np
import pytest
import torch

from photonic import (
    CrosstalkParams,
    DetectorParams,
    DeviceParams,
    LaserParams,
    NoiseConfig,
    PhaseShifterParams,
    mesh_layout,
)
from photonic.core import optical_matmul
from photonic.devices import ConverterParams
from photonic.noise import crosstalk_coupling, quantize_phase, realise_phases, shifter_positions_um


def _uniform_phases(n, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, generator=g, dtype=torch.float64) * 2 * math.pi * (1 - 1e-9)


def test_linear_law_quantisation_variance_is_step_squared_over_12():
    sh = PhaseShifterParams(law="linear", v_pi_v=1.0, v_max_v=2.0)
    phi = _uniform_phases(400_000)
    err = quantize_phase(phi, sh, 8) - phi
    step = math.pi * (2.0 / 255)  # Δφ = π ΔV / V_π
    assert abs(err.var().item() / (step**2 / 12) - 1) < 0.02
    assert err.abs().max() <= step / 2 + 1e-12


def test_quadratic_law_quantisation_variance_matches_first_order_theory():
    # φ = γV², e_φ ≈ 2γV e_V  ⇒  Var = E[(2γV)²] ΔV²/12 = 4γ E[φ] ΔV²/12 with E[φ] = π.
    sh = PhaseShifterParams(kind="thermal", law="quadratic", v_pi_v=4.36, v_max_v=10.8)
    phi = _uniform_phases(400_000, seed=1)
    err = quantize_phase(phi, sh, 8) - phi
    gamma, dv = math.pi / 4.36**2, 10.8 / 255
    theory = 4 * gamma * math.pi * dv**2 / 12
    assert abs(err.var().item() / theory - 1) < 0.03


def test_phase_grid_quantisation_is_uniform_over_one_turn():
    """grid "phase": 2^b − 1 steps of 2π/(2^b − 1) over [0, 2π] whatever the shifter law
    (the BP-free PINN study's quantiser): error variance step²/12, at most half a step;
    the voltage grid of the same 8-bit thermal DAC is ~2.5× coarser (rms)."""
    from photonic.noise import dac_code_phase, phase_dac_code

    sh = PhaseShifterParams(kind="thermal", law="quadratic", v_pi_v=4.36, v_max_v=10.8)
    phi = _uniform_phases(400_000, seed=2)
    err = quantize_phase(phi, sh, 8, "phase") - phi
    step = 2 * math.pi / 255
    assert abs(err.var().item() / (step**2 / 12) - 1) < 0.02
    assert err.abs().max() <= step / 2 + 1e-12
    volt = quantize_phase(phi, sh, 8) - phi
    assert 2.3 < volt.std().item() / err.std().item() < 2.7
    codes = phase_dac_code(phi, sh, 8, "phase")
    assert codes.min() == 0 and codes.max() == 255
    ends = dac_code_phase(torch.tensor([0.0, 255.0], dtype=torch.float64), sh, 8, "phase")
    assert torch.allclose(ends, torch.tensor([0.0, 2 * math.pi], dtype=torch.float64))
    with pytest.raises(ValueError, match="phase_dac.grid: must be 'voltage' or 'phase'"):
        quantize_phase(phi, sh, 8, "current")
    # a plain converter (as before the grid existed) is a voltage-grid phase DAC
    dev = DeviceParams(phase_dac=ConverterParams(bits=6, area_um2=5.0))
    assert dev.phase_dac.grid == "voltage" and dev.phase_dac.bits == 6


def test_quantisation_passes_gradients_straight_through():
    sh = PhaseShifterParams(law="linear", v_pi_v=1.0, v_max_v=2.0)
    phi = torch.tensor([0.3, 1.7], dtype=torch.float64, requires_grad=True)
    quantize_phase(phi, sh, 4).sum().backward()
    assert torch.equal(phi.grad, torch.ones(2, dtype=torch.float64))


def test_nearest_neighbour_crosstalk_matrix():
    lay = mesh_layout(6, "clements")
    dev = DeviceParams(crosstalk=CrosstalkParams(model="nearest", coefficient=0.005))
    k = lay.num_mzis
    s = 2 * k + lay.n
    phi = _uniform_phases(s, seed=2)
    got = realise_phases(phi, lay, dev, NoiseConfig(crosstalk=True), None)
    # independent construction: same column, top modes two apart, same kind of shifter
    expect = phi.clone()
    for i in range(k):
        for j in range(k):
            if lay.columns[i] == lay.columns[j] and abs(lay.modes[i] - lay.modes[j]) == 2:
                expect[i] += 0.005 * phi[j]
                expect[k + i] += 0.005 * phi[k + j]
    assert torch.allclose(got, expect, atol=1e-15)
    assert not torch.allclose(got, phi)


def test_exponential_crosstalk_follows_distance_law():
    lay = mesh_layout(4, "clements")
    xt = CrosstalkParams(model="exponential", coefficient=0.2167, decay_per_um=0.1275,
                         min_distance_um=23.0, cutoff_um=60.0)
    dev = DeviceParams(crosstalk=xt)
    rows, cols, vals = crosstalk_coupling(lay, dev)
    pos = shifter_positions_um(lay, dev.layout)
    d = np.linalg.norm(pos[rows.numpy()] - pos[cols.numpy()], axis=1)
    assert len(d) > 0 and d.min() >= 23.0 and d.max() <= 60.0
    np.testing.assert_allclose(vals.numpy(), 0.2167 * np.exp(-0.1275 * d), rtol=1e-12)


def _detected_noise_var(power_mw, load_ohm, seed=0):
    dev = DeviceParams(
        detector=DetectorParams(responsivity_a_per_w=1.0, dark_current_na=0.0,
                                load_resistance_ohm=load_ohm, bandwidth_ghz=20.0,
                                lo_power_mw=power_mw),  # LO scaled with the signal
        laser=LaserParams(power_per_channel_mw=power_mw),
    )
    tiles = torch.eye(4, dtype=torch.complex128).reshape(1, 1, 4, 4)
    x = torch.full((20_000, 4), 0.5, dtype=torch.float64)
    g = torch.Generator().manual_seed(seed)
    y = optical_matmul(tiles, torch.ones(1, 1, dtype=torch.float64), x, (4, 4), device=dev,
                       noise=NoiseConfig(detector_noise=True), generator=g)
    return (y - x).var().item()


def test_shot_noise_slope_and_thermal_noise_slope():
    powers = np.array([0.01, 0.1, 1.0])
    shot = [_detected_noise_var(p, 1e15) for p in powers]  # R_L → ∞ kills thermal noise
    slope_shot = np.polyfit(np.log10(powers), np.log10(shot), 1)[0]
    assert abs(slope_shot - (-1.0)) < 0.05  # SNR ∝ P when shot-noise limited
    thermal = [_detected_noise_var(p, 1.0) for p in powers]  # tiny R_L: thermal dominated
    slope_th = np.polyfit(np.log10(powers), np.log10(thermal), 1)[0]
    assert abs(slope_th - (-2.0)) < 0.05  # thermal noise is power-independent
    # absolute level: inputs 0.5 are scaled to the DAC full scale (x_n = 1, |E|² = P_ch),
    # Var(i) = 2qB·R(P_LO + P_ch), i = 2R√(P_LO P_ch)·x_n, y = 0.5·x_n  (R = 1 A/W)
    q, b = 1.602176634e-19, 20e9
    p = 1e-3
    expect = 0.25 * 2 * q * b * (2 * p) / (4 * p * p)
    assert abs(_detected_noise_var(1.0, 1e15, seed=3) / expect - 1) < 0.05


def test_adc_and_dac_quantisation_levels():
    dev = DeviceParams(dac=ConverterParams(bits=3), adc=ConverterParams(bits=12))
    tiles = torch.eye(2, dtype=torch.complex128).reshape(1, 1, 2, 2)
    x = torch.tensor([[1.0, 0.4]], dtype=torch.float64)
    y = optical_matmul(tiles, torch.ones(1, 1, dtype=torch.float64), x, (2, 2), device=dev,
                       noise=NoiseConfig(input_quantization=True))
    # 3-bit signed DAC: levels k/3; 0.4 → 1/3
    assert torch.allclose(y, torch.tensor([[1.0, 1 / 3]], dtype=torch.float64), atol=1e-15)


def test_phase_noise_requires_a_generator():
    lay = mesh_layout(3, "clements")
    dev = DeviceParams(variation={"phase_noise_std_rad": 0.01})
    with pytest.raises(ValueError, match="needs a torch.Generator"):
        realise_phases(torch.zeros(9, dtype=torch.float64), lay, dev,
                       NoiseConfig(phase_noise=True), None)


def test_wavelength_model_scales_phases_and_coupler_angles():
    from photonic import CouplerParams, decompose, mzi_matrix, reconstruct

    u = torch.tensor([[0.6, 0.8j], [0.8j, 0.6]], dtype=torch.complex128)
    p = decompose(u)
    dev = DeviceParams(design_wavelength_um=1.55,
                       coupler=CouplerParams(dispersion_per_um=2.0))
    lam = 1.57
    t = reconstruct(p, device=dev, noise=NoiseConfig(wavelength_um=lam))
    s = 1.55 / lam
    kappa = (math.pi / 4) * (1 + 2.0 * (lam - 1.55))
    m = mzi_matrix(p.theta[0] * s, p.phi[0] * s, alpha=kappa - math.pi / 4,
                   beta=kappa - math.pi / 4)
    expect = torch.diag(torch.polar(torch.ones(2, dtype=torch.float64), p.out_phase * s)) @ m
    assert (t - expect).abs().max() < 1e-14
    assert (t - u).abs().max() > 1e-3  # detuning matters
    t0 = reconstruct(p, device=dev, noise=NoiseConfig(wavelength_um=1.55))
    assert (t0 - u).abs().max() < 1e-14


def test_scaled_device_is_one_noise_level_for_every_spread():
    from photonic import CouplerParams, MziParams
    from photonic.noise import sample_mesh_errors, scaled_device

    dev = DeviceParams(
        variation={"gamma_std": 0.01, "phase_offset_std_rad": 0.2, "phase_noise_std_rad": 0.003},
        coupler=CouplerParams(split_error_std_rad=0.02, dispersion_per_um=1.5),
        mzi=MziParams(insertion_loss_db=0.9, loss_std_db=0.05, arm_imbalance_db=0.25,
                      arm_imbalance_std_db=0.1),
        crosstalk=CrosstalkParams(model="nearest", coefficient=0.005),
    )
    s = scaled_device(dev, noise_scale=2.5)
    assert (s.variation.gamma_std, s.variation.phase_offset_std_rad,
            s.variation.phase_noise_std_rad) == pytest.approx((0.025, 0.5, 0.0075))
    assert (s.coupler.split_error_std_rad, s.mzi.loss_std_db,
            s.mzi.arm_imbalance_std_db) == pytest.approx((0.05, 0.125, 0.25))
    # design figures are not noise
    assert (s.mzi.insertion_loss_db, s.mzi.arm_imbalance_db, s.coupler.dispersion_per_um,
            s.crosstalk) == (0.9, 0.25, 1.5, dev.crosstalk)
    # level 0: a chip drawn from it has no spread at all (every error is the mean)
    zero = sample_mesh_errors(mesh_layout(6), scaled_device(dev, noise_scale=0.0),
                              generator=torch.Generator().manual_seed(1))
    assert zero.gamma_rel.abs().max() == 0 and zero.alpha_rad.abs().max() == 0
    assert zero.phase_offset_rad.abs().max() == 0
    assert (zero.loss_db == 0.9).all() and zero.arm_imbalance_db is None
    # the spread of a drawn chip follows the scaled std
    big = sample_mesh_errors(mesh_layout(64), s, generator=torch.Generator().manual_seed(2))
    assert abs(big.arm_imbalance_db.std().item() / 0.25 - 1) < 0.05
    assert abs(big.arm_imbalance_db.mean().item() - 0.25) < 0.02
    with pytest.raises(ValueError, match="noise_scale=-1.0: a noise level must be ≥ 0"):
        scaled_device(dev, noise_scale=-1.0)


def test_arm_imbalance_in_a_mesh_uses_the_chip_s_drawn_values():
    from scipy.stats import unitary_group

    from photonic import MziParams, decompose
    from photonic.mesh import transfer_matrix
    from photonic.mzi import arm_transmission
    from photonic.noise import realise_mesh, sample_mesh_errors

    u = torch.from_numpy(unitary_group.rvs(6, random_state=1))
    p = decompose(u)
    dev = DeviceParams(mzi=MziParams(arm_imbalance_db=0.3, arm_imbalance_std_db=0.2))
    err = sample_mesh_errors(p.layout, dev, generator=torch.Generator().manual_seed(3))
    t = realise_mesh(p, device=dev, noise=NoiseConfig(arm_imbalance=True), errors=err)
    ratio, other = arm_transmission(err.arm_imbalance_db)
    ref = transfer_matrix(p.layout, p.theta, p.phi, p.out_phase, amplitude=other,
                          arm_ratio=ratio)
    assert (t - ref).abs().max() < 1e-14
    assert (t - u).abs().max() > 1e-3  # it acts
    assert NoiseConfig.all().arm_imbalance


def test_precompensated_phases_realise_the_target_through_crosstalk():
    from photonic.noise import precompensate_crosstalk

    lay = mesh_layout(8, "clements")
    dev = DeviceParams(crosstalk=CrosstalkParams(model="nearest", coefficient=0.005))
    noise = NoiseConfig(crosstalk=True)
    target = _uniform_phases(2 * lay.num_mzis + lay.n, seed=5)
    y = precompensate_crosstalk(target, lay, dev, noise)
    got = torch.remainder(realise_phases(y, lay, dev, noise, None), 2 * math.pi)
    miss = torch.remainder(got - target + math.pi, 2 * math.pi) - math.pi
    plain = torch.remainder(realise_phases(target, lay, dev, noise, None) - target + math.pi,
                            2 * math.pi) - math.pi
    assert plain.abs().max() > 0.01  # the leak the programming has to undo
    assert miss.abs().max() < 1e-12
    assert bool(((y >= 0) & (y < 2 * math.pi)).all())  # heaters only add phase
    # no crosstalk switched on: the target itself
    assert precompensate_crosstalk(target, lay, dev, NoiseConfig()) is target
