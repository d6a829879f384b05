"""Virtual chip, characterisation, error-aware programming, export and the workload."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.linalg  # noqa: F401  (load LAPACK before limiting its threads)
import torch
from scipy.stats import unitary_group
from threadpoolctl import threadpool_limits

import calibration
from calibration.characterise import MeshCharacterizer, sweep_codes
from calibration.chip import (
    VirtualChip,
    drive_phase_rad,
    fabricate,
    readout_noise_std,
)
from calibration.program import ErrorAwareProgrammer, naive_codes
from calibration.twin import gauss_newton_normal, mesh_jacobian, twin_matrix
from photonic.mesh import mesh_layout, transfer_matrix
from photonic.metrics import rel_frobenius_error
from photonic.power import Q_E

threadpool_limits(1)


def _device(offset_std=0.3):
    """The same-plane chip the progressive characteriser models exactly: the fabricated
    preset with the study's nearest-neighbour crosstalk and lossless, balanced MZIs."""
    from photonic import MziParams

    d = calibration.load_preset("bpfree_pinn_fab")
    return d.model_copy(update={
        "variation": d.variation.model_copy(update={"phase_offset_std_rad": offset_std}),
        "crosstalk": calibration.load_preset("bpfree_pinn_sim").crosstalk,
        "mzi": MziParams(insertion_loss_db=0.0)})


@pytest.fixture(scope="module")
def fitted():
    chip, truth = fabricate(6, _device(), seed=3, shots=100)
    return chip, truth, MeshCharacterizer().fit(chip)


# ------------------------------------------------------------------ the chip
class _Spy:
    """Records which attributes of the chip a calibration routine touches."""

    def __init__(self, chip):
        object.__setattr__(self, "_chip", chip)
        object.__setattr__(self, "seen", set())

    def __getattr__(self, name):
        self.seen.add(name)
        return getattr(self._chip, name)


def test_characterisation_only_uses_the_lab_interface():
    chip, _ = fabricate(4, _device(), seed=0)
    spy = _Spy(chip)
    MeshCharacterizer().fit(spy)
    assert spy.seen <= {"n", "layout", "design", "num_shifters", "measure", "stage",
                        "measurements"}
    # the data sheet carries no hidden figures
    assert chip.design.coupler.split_error_std_rad == 0.0
    assert chip.design.variation.gamma_std == 0.0
    assert chip.design.crosstalk.model == "none"
    assert not any(isinstance(v, torch.Tensor) for v in vars(chip).values())


def test_measurements_are_counted_per_stage():
    chip, _ = fabricate(4, _device(), seed=0)
    codes = torch.zeros((3, chip.num_shifters), dtype=torch.int64)
    with chip.stage("a"):
        chip.measure(codes, torch.eye(4, dtype=torch.complex128)[:, :2])
    chip.measure(codes[:1], torch.eye(4, dtype=torch.complex128))
    assert chip.measurements == {"a": 6, "unlabelled": 4}
    assert chip.total_measurements == 10
    with pytest.raises(ValueError, match=r"DAC codes must lie in \[0, 255\]"):
        chip.measure(codes + 256, torch.eye(4, dtype=torch.complex128))


def test_readout_noise_matches_shot_plus_thermal_formula():
    d = calibration.load_preset("bpfree_pinn_fab")
    det = d.detector
    b = det.bandwidth_ghz * 1e9
    var = (2 * Q_E * b * (det.responsivity_a_per_w * 1e-3 + 2 * det.dark_current_na * 1e-9)
           + 4 * 1.380649e-23 * det.temperature_k * b / det.load_resistance_ohm)
    expected = math.sqrt(var) / (2 * det.responsivity_a_per_w * 1e-3) / math.sqrt(100)
    got = float(readout_noise_std(d, lo_power_mw=1.0, channel_power_mw=1.0, shots=100))
    assert got == pytest.approx(expected, rel=1e-12)
    # sample statistics of the chip's receivers (dark outputs: no signal shot noise)
    chip, truth = fabricate(4, d, seed=1, shots=100)
    codes = torch.zeros((2000, chip.num_shifters), dtype=torch.int64)
    x = torch.zeros((4, 1), dtype=torch.complex128)
    y = chip.measure(codes, x)
    assert y.real.std().item() == pytest.approx(expected, rel=0.03)
    assert y.imag.std().item() == pytest.approx(expected, rel=0.03)


# ------------------------------------------------------------------ characterisation
def test_learned_values_match_hidden_truth_within_noise_tolerance(fitted):
    """Tolerances from the receiver noise σ (per quadrature, averaged over ``shots``):
    a realised phase change read on the diagonal of U·T0ᴴT·Uᴴ has std ≈ √2·σ; the coefficient
    is its LS slope over the sweep drives d, std ≈ √2σ/‖d‖; offsets and coupler angles come
    from eigenvectors propagated through the characterised upstream columns, whose errors add
    up over the mesh depth, std ≲ √2σ·√depth. Allow 6 standard deviations (max over ≤ 50
    devices of a Gaussian)."""
    chip, truth, ch = fitted
    sigma = float(readout_noise_std(chip.design, lo_power_mw=1.0, channel_power_mw=1.0,
                                    shots=chip.shots, field_power=1.0))
    assert ch.noise_std_ == pytest.approx(sigma, rel=0.3)
    drives = drive_phase_rad(torch.as_tensor(sweep_codes(chip.design, 2)), chip.design).numpy()
    e = truth.errors
    tol_phase = 6 * math.sqrt(2) * sigma * math.sqrt(chip.layout.depth)
    tol_gain = 6 * math.sqrt(2) * sigma / np.linalg.norm(drives)
    d_off = np.angle(np.exp(1j * (ch.phase_offset_rad_ - e.phase_offset_rad.numpy())))
    assert np.abs(d_off).max() < tol_phase
    assert np.abs(ch.gain_rel_ - e.gamma_rel.numpy()).max() < tol_gain
    assert np.abs(ch.alpha_rad_ - e.alpha_rad.numpy()).max() < tol_phase
    assert np.abs(ch.beta_rad_ - e.beta_rad.numpy()).max() < tol_phase
    # the hidden errors are far larger than the tolerances, so this is not trivially true
    assert e.phase_offset_rad.abs().max() > 50 * tol_phase
    assert e.alpha_rad.abs().max() > 10 * tol_phase


def test_crosstalk_matrix_is_learned(fitted):
    """Γ_ij is the slope of the neighbour's phase change (std √2σ) over g·d: tolerance
    6·√2σ/‖d‖, as for the coefficients."""
    chip, truth, ch = fitted
    from photonic.noise import crosstalk_coupling

    sigma = float(readout_noise_std(chip.design, lo_power_mw=1.0, channel_power_mw=1.0,
                                    shots=chip.shots, field_power=1.0))
    drives = drive_phase_rad(torch.as_tensor(sweep_codes(chip.design, 2)), chip.design).numpy()
    tol = 6 * math.sqrt(2) * sigma / np.linalg.norm(drives)

    rows, cols, vals = crosstalk_coupling(truth.layout, truth.device)
    true = {(int(i), int(j)): float(v) for i, j, v in zip(rows, cols, vals, strict=True)}
    got = {(int(i), int(j)): float(v)
           for (i, j), v in zip(ch.crosstalk_pairs_.T, ch.crosstalk_, strict=True)}
    assert set(true) <= set(got)  # every real coupling is among the measured pairs
    for pair, value in got.items():
        assert value == pytest.approx(true.get(pair, 0.0), abs=tol)
    assert sum(v > 0.004 for v in got.values()) == len(true) > 0


def test_accuracy_is_noise_limited():
    """Ten times more shots (σ/√10) must shrink the offset error by ≈ √10: no model bias."""
    errs = []
    for shots in (100, 10000):
        chip, truth = fabricate(6, _device(), seed=5, shots=shots)
        ch = MeshCharacterizer().fit(chip)
        d = np.angle(np.exp(1j * (ch.phase_offset_rad_ - truth.errors.phase_offset_rad.numpy())))
        errs.append(np.sqrt((d**2).mean()))
    assert 4 < errs[0] / errs[1] < 25


def test_twin_predicts_the_chip(fitted):
    chip, truth, ch = fitted
    g = torch.Generator().manual_seed(0)
    codes = torch.randint(0, 256, (4, chip.num_shifters), generator=g)
    pred = twin_matrix(chip.layout, drive_phase_rad(codes, chip.design), ch.twin_params())
    assert rel_frobenius_error(truth.matrix(codes), pred).max() < 2e-3


def test_reck_is_rejected_with_the_rule():
    chip, _ = fabricate(4, _device(), topology="reck", seed=0)
    with pytest.raises(ValueError, match="MeshCharacterizer handles Clements meshes; got "
                                         "topology='reck'"):
        MeshCharacterizer().fit(chip)


def test_export_round_trips_through_load_preset(fitted, tmp_path):
    chip, _, ch = fitted
    path = ch.export_preset(tmp_path, "chip3", base="bpfree_pinn_fab", chip_label="seed 3")
    assert path.name == "chip3.yaml" and (tmp_path / "chip3.npz").is_file()
    dev = calibration.load_preset("chip3", directory=tmp_path)
    vals = ch.preset_values()
    assert dev.variation.gamma_std == vals["variation.gamma_std"] == ch.gain_rel_.std()
    assert dev.coupler.split_error_std_rad == vals["coupler.split_error_std_rad"]
    assert dev.crosstalk.model == "nearest"
    assert dev.crosstalk.coefficient == pytest.approx(0.005, abs=2e-5)
    assert dev.shifter == calibration.load_preset("bpfree_pinn_fab").shifter
    src = calibration.preset_sources("chip3", directory=tmp_path)
    assert src["variation.gamma_std"].startswith("measured: MeshCharacterizer on seed 3")
    assert src["shifter.v_pi_v"].startswith("BP-free PINN study")
    saved = np.load(tmp_path / "chip3.npz")
    np.testing.assert_array_equal(saved["phase_offset_rad"], ch.phase_offset_rad_)


# ------------------------------------------------------------------ programming
def test_factored_jacobian_matches_autograd():
    lay = mesh_layout(5)
    k = lay.num_mzis
    g = torch.Generator().manual_seed(0)
    p = torch.rand(2 * k + 5, generator=g, dtype=torch.float64) * 6
    al = torch.randn(k, generator=g, dtype=torch.float64) * 0.05
    be = torch.randn(k, generator=g, dtype=torch.float64) * 0.05

    def f(v):
        return torch.view_as_real(transfer_matrix(lay, v[:k], v[k:2 * k], v[2 * k:],
                                                  alpha=al, beta=be))

    jac = torch.autograd.functional.jacobian(f, p).numpy()
    t, a, b = mesh_jacobian(lay, p.numpy(), al.numpy(), be.numpy())
    np.testing.assert_allclose(t, f(p).numpy()[..., 0] + 1j * f(p).numpy()[..., 1], atol=1e-14)
    np.testing.assert_allclose(jac[..., 0, :] + 1j * jac[..., 1, :],
                               1j * np.einsum("is,sj->ijs", a, b), atol=1e-13)
    r = np.eye(5) - t
    h, grad = gauss_newton_normal(a, b, r)
    jr = jac.reshape(-1, len(p))
    np.testing.assert_allclose(h, jr.T @ jr, atol=1e-12)
    np.testing.assert_allclose(grad, jr.T @ np.stack([r.real, r.imag], -1).reshape(-1),
                               atol=1e-12)


def test_error_aware_programming_beats_naive():
    chip, truth = fabricate(8, _device(), seed=11, shots=1000)
    ch = MeshCharacterizer().fit(chip)
    prog = ErrorAwareProgrammer(ch.twin_params(), chip.layout, chip.design)
    naive, chain, full = [], [], []
    for u in range(3):
        U = torch.as_tensor(unitary_group.rvs(8, random_state=u))
        naive.append(rel_frobenius_error(U, truth.matrix(naive_codes(U, chip.layout,
                                                                     chip.design))).item())
        target = prog.target_phases(U)
        # continuous phases on the true couplers: the coupler correction itself is exact
        k = chip.layout.num_mzis
        tp = torch.as_tensor(target)
        cont = transfer_matrix(chip.layout, tp[:k], tp[k:2 * k], tp[2 * k:],
                               alpha=truth.errors.alpha_rad, beta=truth.errors.beta_rad)
        assert rel_frobenius_error(U, cont).item() < 1e-3
        chain.append(rel_frobenius_error(U, truth.matrix(torch.as_tensor(
            prog.codes_for_phases(target)))).item())
        full.append(rel_frobenius_error(U, truth.matrix(prog.program(U))).item())
    assert np.mean(full) < np.mean(chain) < np.mean(naive)
    assert np.mean(naive) / np.mean(full) > 4
    assert np.mean(full) < 0.035


def test_ideal_chip_programs_exactly_up_to_quantisation():
    """No fabrication errors: the calibrated codes' error is pure 8-bit quantisation."""
    d = calibration.load_preset("bpfree_pinn_fab").model_copy(update={
        "coupler": calibration.load_preset("ideal").coupler,
        "variation": calibration.load_preset("ideal").variation,
        "crosstalk": calibration.load_preset("ideal").crosstalk,
        "mzi": calibration.load_preset("ideal").mzi})
    chip, truth = fabricate(4, d, seed=0, shots=1000)
    ch = MeshCharacterizer().fit(chip)
    assert np.abs(ch.crosstalk_).max() < 1e-5 and np.abs(ch.gain_rel_).max() < 1e-5
    prog = ErrorAwareProgrammer(ch.twin_params(), chip.layout, chip.design)
    U = torch.as_tensor(unitary_group.rvs(4, random_state=1))
    err = rel_frobenius_error(U, truth.matrix(prog.program(U))).item()
    naive = rel_frobenius_error(U, truth.matrix(naive_codes(U, chip.layout, chip.design))).item()
    assert err < naive < 0.1


# ------------------------------------------------------------------ workload
def test_workload_smoke(tmp_path):
    from calibration import workload
    from photonic.noise import NoiseConfig
    from photonic.runio import RunContext

    cfg = workload.Config(kind="calibrate_mesh", reference_n=4, reference_chips=1,
                          reference_unitaries=2, sizes=[4], size_chips=[1],
                          size_unitaries=[1], error_levels=[0.5, 1.0], level_n=4,
                          level_chips=1, level_unitaries=1, intensity_n=4, intensity_chips=1,
                          intensity_unitaries=1, refine_iterations=40, random_settings=16,
                          intensity_iterations=20)
    ctx = RunContext(out=tmp_path, seed=0, device=calibration.load_preset("bpfree_pinn_fab"),
                     noise=NoiseConfig.all(), show_progress=False)
    m = workload.run(cfg, ctx)
    for key in ("naive_rel_error", "calibrated_rel_error", "error_reduction", "measurements"):
        assert key in m
    assert m["error_reduction"] > 1  # calibration must actually help on this chip
    assert m["intensity"]["cases"] == 1  # its accuracy: test_intensity_only_calibration_helps
    # 4×4 Clements: (8 baseline repeats + 1 sweep level × S shifters + 16 random settings)
    # × 4 inputs
    s = 2 * 6 + 4
    assert m["measurements"] == 4 * (8 + s + 16)
    assert m["calibrated_rel_error_worst"] >= m["calibrated_rel_error"]
    assert sum(m["measurements_by_stage"].values()) == m["measurements"]
    for name in ("report.md", "residual_vs_n.png", "residual_vs_error_level.png",
                 "reference_ablation.png", "characterised_chip.yaml", "characterised_chip.npz"):
        assert (tmp_path / name).is_file(), name
    dev = calibration.load_preset("characterised_chip", directory=tmp_path)
    # vertically adjacent heaters (100 µm) couple 0.005 under the preset's distance law; a
    # 40-evaluation fit of a 4×4 chip gets it to ~10 % (the exact check of the crosstalk
    # reading is test_crosstalk_matrix_is_learned)
    assert dev.crosstalk.coefficient == pytest.approx(0.005, abs=1e-3)


def test_config_rejects_mismatched_sweeps():
    from calibration import workload

    with pytest.raises(ValueError, match="sizes, size_chips and size_unitaries must have equal "
                                         "lengths; got 2, 1, 2"):
        workload.Config(kind="calibrate_mesh", sizes=[4, 8], size_chips=[1],
                        size_unitaries=[1, 1])


def test_virtual_chip_is_the_type_returned():
    chip, truth = fabricate(3, _device(), seed=0)
    assert isinstance(chip, VirtualChip)
    assert chip.num_shifters == 2 * 3 + 3
    c = torch.zeros((1, chip.num_shifters), dtype=torch.int64)
    # at zero drive the realised phases are the hidden offsets exactly
    torch.testing.assert_close(truth.realised_phases(c)[0], truth.errors.phase_offset_rad)


def test_shipped_config_runs_through_the_cli_at_reduced_size(tmp_path):
    import json

    from typer.testing import CliRunner

    from photonic.cli import app

    sets = ["workload.reference_n=4", "workload.reference_chips=1",
            "workload.reference_unitaries=1", "workload.sizes=[4]", "workload.size_chips=[1]",
            "workload.size_unitaries=[1]", "workload.error_levels=[1.0]", "workload.level_n=4",
            "workload.level_unitaries=1", "workload.intensity_n=4",
            "workload.intensity_chips=1", "workload.intensity_unitaries=1",
            "workload.refine_iterations=30", "workload.random_settings=16",
            "workload.intensity_iterations=20"]
    args = ["run", "calibrate_mesh", "--out", str(tmp_path), "--quiet"]
    for s in sets:
        args += ["--set", s]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    m = json.loads((tmp_path / "metrics.json").read_text())
    assert m["naive_rel_error"] > m["calibrated_rel_error"] > 0
    assert m["measurements"] == 4 * (8 + 16 + 16)
    bad = CliRunner().invoke(app, ["run", "calibrate_mesh", "--out", str(tmp_path),
                                   "--set", "workload.size_chips=[1]"])
    assert bad.exit_code == 2
    assert "sizes, size_chips and size_unitaries must have equal lengths" in bad.output


def test_arbitrary_fabrication_offsets_are_calibrated_out():
    """Offsets with std 3 rad (effectively uniform over 2π, as for unbalanced arms): the
    sweep/eigenvector method needs no starting guess, so it finds them all the same."""
    chip, truth = fabricate(6, _device(offset_std=3.0), seed=2, shots=1000)
    ch = MeshCharacterizer().fit(chip)
    d = np.angle(np.exp(1j * (ch.phase_offset_rad_ - truth.errors.phase_offset_rad.numpy())))
    assert np.abs(d).max() < 1e-3
    prog = ErrorAwareProgrammer(ch.twin_params(), chip.layout, chip.design)
    U = torch.as_tensor(unitary_group.rvs(6, random_state=0))
    naive = rel_frobenius_error(U, truth.matrix(naive_codes(U, chip.layout, chip.design)))
    calibrated = rel_frobenius_error(U, truth.matrix(prog.program(U)))
    assert naive > 0.5 and calibrated < 0.04


# ------------------------------------------------------------------ the fabricated chip
def test_hidden_crosstalk_couples_across_planes_which_the_progressive_reading_ignores():
    """bpfree_pinn_fab's crosstalk is distance-based over every heater: θ–φ of one MZI and
    neighbouring output-screen heaters couple, not only same-plane vertical neighbours."""
    from photonic.noise import crosstalk_coupling

    d = calibration.load_preset("bpfree_pinn_fab")
    lay = mesh_layout(6)
    rows, cols, vals = crosstalk_coupling(lay, d)
    k = lay.num_mzis
    plane = np.where(rows.numpy() < k, 0, np.where(rows.numpy() < 2 * k, 1, 2))
    src = np.where(cols.numpy() < k, 0, np.where(cols.numpy() < 2 * k, 1, 2))
    cross = vals.numpy()[plane != src]
    # θ–φ of one MZI, 90 µm apart: 0.0369·exp(−0.02·90) = 0.0061
    assert cross.max() == pytest.approx(0.0369 * math.exp(-1.8), rel=1e-9)
    assert (cross > 0.004).sum() >= k


def test_calibration_cuts_the_error_tenfold_on_the_fabricated_chip():
    """Reduced acceptance: 6×6, 2 chips × 2 unitaries of bpfree_pinn_fab (cross-plane
    crosstalk, offsets, coupler spread, loss spread, arm imbalance), homodyne receivers."""
    from calibration.twin import gain_matched_error

    d = calibration.load_preset("bpfree_pinn_fab")
    naive, calibrated = [], []
    for seed in (0, 1):
        chip, truth = fabricate(6, d, seed=seed, shots=1000)
        ch = MeshCharacterizer(sweep_points=1, refine=True, refine_iterations=100,
                               random_settings=16, seed=seed).fit(chip)
        prog = ErrorAwareProgrammer(ch.twin_params(), chip.layout, chip.design)
        for u in range(2):
            U = torch.as_tensor(unitary_group.rvs(6, random_state=10 + u))
            naive.append(float(gain_matched_error(
                U, truth.matrix(naive_codes(U, chip.layout, chip.design)))))
            calibrated.append(float(gain_matched_error(U, truth.matrix(prog.program(U)))))
    assert np.median(naive) > 10 * np.median(calibrated)
    assert max(calibrated) < 0.1


def test_intensity_only_calibration_helps():
    """Power meters only (4×4): the twin fitted to powers programs better than the data sheet,
    judged up to the output phases power meters cannot see."""
    from calibration.characterise import IntensityCharacterizer
    from calibration.twin import gain_matched_error

    chip, truth = fabricate(4, calibration.load_preset("bpfree_pinn_fab"), seed=2, shots=1000)
    ch = IntensityCharacterizer(iterations=150).fit(chip)
    # 8 baselines + S sweeps, each read with the 3N − 2 interference inputs
    assert ch.total_measurements_ == (8 + chip.num_shifters) * (3 * 4 - 2)
    prog = ErrorAwareProgrammer(ch.twin_params(), chip.layout, chip.design, output_phases=True)
    errs = []
    for u in range(2):
        U = torch.as_tensor(unitary_group.rvs(4, random_state=u))
        errs.append([float(gain_matched_error(U, truth.matrix(c), output_phases=True))
                     for c in (naive_codes(U, chip.layout, chip.design), prog.program(U))])
    naive, cal = np.array(errs).T
    assert cal.mean() < naive.mean() / 2


def test_gain_matched_error_ignores_a_common_loss_and_with_power_meters_the_output_phases():
    from calibration.twin import gain_matched_error

    U = torch.as_tensor(unitary_group.rvs(5, random_state=3))
    assert float(gain_matched_error(U, 0.37 * U)) < 1e-14
    phases = torch.diag(torch.exp(1j * torch.arange(5, dtype=torch.float64)))
    assert float(gain_matched_error(U, phases @ U, output_phases=True)) < 1e-14
    assert float(gain_matched_error(U, phases @ U)) > 0.5
    # a real mismatch: T = U + E with E ⟂ U gives exactly ‖E‖/‖U‖ scaled by the best gain
    e = 0.1 * torch.as_tensor(unitary_group.rvs(5, random_state=4))
    e = e - (torch.vdot(U.flatten(), e.flatten()) / 5) * U  # remove the part along U
    g = 1 / (1 + float(torch.linalg.matrix_norm(e)) ** 2 / 5)
    expect = math.sqrt(((1 - g) ** 2 * 5 + g**2 * float(torch.linalg.matrix_norm(e)) ** 2) / 5)
    assert float(gain_matched_error(U, U + e)) == pytest.approx(expect, rel=1e-12)


def test_power_receiver_noise_matches_the_shot_plus_thermal_formula():
    from calibration.chip import power_noise_std

    d = calibration.load_preset("bpfree_pinn_fab")
    det = d.detector
    b = det.bandwidth_ghz * 1e9
    var = (2 * Q_E * b * (det.responsivity_a_per_w * 1e-3 * 0.5 + det.dark_current_na * 1e-9)
           + 4 * 1.380649e-23 * det.temperature_k * b / det.load_resistance_ohm)
    expected = math.sqrt(var) / (det.responsivity_a_per_w * 1e-3) / math.sqrt(100)
    got = float(power_noise_std(d, channel_power_mw=1.0, shots=100, power=0.5))
    assert got == pytest.approx(expected, rel=1e-12)
    chip, truth = fabricate(4, d, seed=1, shots=100)
    codes = torch.zeros((3000, chip.num_shifters), dtype=torch.int64)
    x = torch.zeros((4, 1), dtype=torch.complex128)
    dark = chip.measure_power(codes, x)
    assert dark.std().item() == pytest.approx(
        float(power_noise_std(d, channel_power_mw=1.0, shots=100)), rel=0.03)
