"""Cost estimators: phase-dependent shifter power, capacitive updates, laser budget, counts,
dataflow latency, training steps, and the TONN MZI counts of the 20-D HJB network."""

import math

import pytest
import torch

import calibration
import photonic
from photonic.cost import (
    C_UM_PER_NS,
    CostParams,
    Stage,
    TrainingStep,
    estimate_cost,
    svd_mzis,
)
from photonic.devices import DetectorParams, DeviceParams
from photonic.power import adc_snr_db, detector_sensitivity_mw
from photonic.tonn import DenseLayer, TTLayer, count_mzis, network_stages, tt_core_shapes


@pytest.fixture(scope="module")
def thermal():
    return calibration.load_preset("soi_thermal")


@pytest.fixture(scope="module")
def moscap():
    return calibration.load_preset("iii_v_moscap")


@pytest.fixture(scope="module")
def core16(thermal):
    w = torch.randn(16, 16, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    return photonic.TensorCore.from_matrix(w, tile=8, device=thermal)


def test_public_api_exports_estimate_cost():
    assert photonic.estimate_cost is estimate_cost
    assert "CostReport" in photonic.__all__


def test_thermal_energy_follows_programmed_phases(thermal, core16):
    """Hold power is P_π·φ/π per shifter: zero phases burn nothing, the programmed phases
    burn P_π·mean(φ mod 2π)/π per shifter, for the whole inference time."""
    ph = core16.program.phase_vector()
    n_sh = core16.counts.num_phase_shifters
    rep = estimate_cost(device=thermal, counts=core16.counts, phases=ph)
    rep0 = estimate_cost(device=thermal, counts=core16.counts, phases=torch.zeros_like(ph))
    rep_shift = estimate_cost(device=thermal, counts=core16.counts, phases=ph + math.pi)
    mean = float(torch.remainder(ph, 2 * math.pi).mean()) / math.pi
    expected_mw = thermal.shifter.p_pi_mw * mean * n_sh
    assert rep.static_power_mw["shifter_hold"] == pytest.approx(expected_mw, rel=1e-12)
    assert rep.energy_breakdown_pj["shifter_hold"] == pytest.approx(
        expected_mw * rep.latency_ns, rel=1e-12)
    assert rep0.energy_breakdown_pj["shifter_hold"] == 0.0
    # shifting every phase by π changes the mean phase, hence the energy
    assert rep_shift.energy_pj != pytest.approx(rep.energy_pj, rel=1e-3)
    assert rep.energy_pj - rep0.energy_pj == pytest.approx(
        rep.energy_breakdown_pj["shifter_hold"], rel=1e-12)


def test_moscap_has_no_static_power_and_half_cv2_per_update(moscap):
    st = Stage(name="tile", mesh_rows=8, mesh_cols=8, tiles=1,
               phases=torch.full((10,), math.pi))
    params = CostParams()
    rep = estimate_cost(device=moscap, stages=[st], params=params,
                        training=TrainingStep(queries=3, inferences_per_query=5))
    assert rep.static_power_mw["shifter_hold"] == 0.0
    assert rep.energy_breakdown_pj["shifter_hold"] == 0.0
    # φ = π on a linear shifter needs V = V_π: ½ C V_π² per write
    half_cv2 = 0.5 * moscap.shifter.capacitance_ff * 1e-15 * moscap.shifter.v_pi_v**2 * 1e12
    per_write = (half_cv2 + moscap.phase_dac.energy_pj_per_conversion
                 + moscap.phase_dac.bits * params.sram_energy_pj_per_bit)
    n_sh = st.num_phase_shifters
    assert n_sh == 2 * (2 * 28 + 8) + 2 * 8
    assert rep.step_energy_breakdown_pj["reprogramming"] == pytest.approx(3 * n_sh * per_write)


def test_thermal_preset_has_static_power_moscap_not(thermal, moscap):
    st = [Stage(name="tile", mesh_rows=8, mesh_cols=8, tiles=1)]
    assert estimate_cost(device=thermal, stages=st).static_power_mw["shifter_hold"] == \
        pytest.approx(thermal.shifter.p_pi_mw * st[0].num_phase_shifters)  # E[φ/π] = 1
    assert estimate_cost(device=moscap, stages=st).static_power_mw["shifter_hold"] == 0.0


def test_adc_snr_and_shot_noise_limited_sensitivity():
    """6.02 b + 1.76 dB; with a strong LO and no thermal / dark noise the homodyne receiver
    is shot-noise limited: SNR = 2R²P_LO P / (2qB R (P_LO + P)) → R P / (qB) as P_LO → ∞."""
    assert adc_snr_db(8) == pytest.approx(49.92)
    det = DetectorParams(responsivity_a_per_w=1.0, dark_current_na=0.0,
                         load_resistance_ohm=1e30, bandwidth_ghz=10.0, lo_power_mw=1e9)
    snr = 10 ** (adc_snr_db(8) / 10)
    q, b = 1.602176634e-19, 10e9
    assert detector_sensitivity_mw(det, snr_db=adc_snr_db(8)) == pytest.approx(
        snr * q * b * 1e3, rel=1e-6)
    # a 10 dB higher SNR needs 10× the signal (shot-noise limit is linear in P)
    assert detector_sensitivity_mw(det, snr_db=adc_snr_db(8) + 10) == pytest.approx(
        10 * detector_sensitivity_mw(det, snr_db=adc_snr_db(8)), rel=1e-6)
    # an LO too weak for the SNR: no signal power reaches it
    weak = det.model_copy(update={"lo_power_mw": 1e-6})
    assert math.isinf(detector_sensitivity_mw(weak, snr_db=adc_snr_db(8)))


def test_laser_budget_uses_longest_path_and_costs_the_lo(thermal):
    st = Stage(name="tile", mesh_rows=8, mesh_cols=8, tiles=2)
    assert st.path_mzis == 8 + 1 + 8
    rep = estimate_cost(device=thermal, stages=[st])
    mesh_loss = 17 * thermal.mzi.insertion_loss_db
    assert rep.worst_path_loss_db == pytest.approx(thermal.modulator.insertion_loss_db
                                                   + mesh_loss)
    sens = detector_sensitivity_mw(thermal.detector, snr_db=6.02 * 8 + 1.76)
    signal = 16 * sens * 10 ** ((mesh_loss + thermal.modulator.insertion_loss_db) / 10)
    lo = 16 * thermal.detector.lo_power_mw
    assert rep.power.signal_optical_mw == pytest.approx(signal)
    assert rep.power.lo_optical_mw == pytest.approx(lo)
    assert rep.laser_optical_mw == pytest.approx(signal + lo)
    assert rep.static_power_mw["laser_electrical"] == pytest.approx(
        (signal + lo) / thermal.laser.wall_plug_efficiency)
    reck = Stage(name="tile", mesh_rows=8, mesh_cols=8, tiles=1, topology="reck")
    assert reck.path_mzis == 2 * (2 * 8 - 3) + 1


def _core(n):
    return [Stage(name=f"core{n}", mesh_rows=n, mesh_cols=n, tiles=1)]


def test_n64_soi_thermal_is_flagged_infeasible_and_n4_is_not(thermal):
    big = estimate_cost(device=thermal, stages=_core(64))
    assert not big.feasible
    assert any("max_power_per_laser_mw" in r for r in big.infeasible_reasons)
    assert any("max_power_per_chip_mw" in r for r in big.infeasible_reasons)
    assert big.laser_optical_mw > thermal.laser.max_power_per_chip_mw
    small = estimate_cost(device=thermal, stages=_core(4))
    assert small.feasible and small.infeasible_reasons == ()
    assert small.laser_optical_mw < thermal.laser.max_power_per_laser_mw
    d = big.as_dict()
    assert d["feasible"] is False and "exceeds" in d["infeasible_reasons"]
    assert d["power.laser_optical_mw"] == big.laser_optical_mw


def test_a_fixed_launch_power_below_the_sensitivity_is_flagged(thermal):
    dev = thermal.model_copy(update={"laser": thermal.laser.model_copy(
        update={"power_per_channel_mw": 0.01})})
    rep = estimate_cost(device=dev, stages=_core(4))
    assert not rep.feasible and "below the" in rep.infeasible_reasons[0]
    assert rep.power.signal_optical_mw == pytest.approx(
        4 * 0.01 * 10 ** (dev.modulator.insertion_loss_db / 10))


def test_mzi_loss_is_derived_from_the_parts_and_a_disagreeing_one_is_refused(moscap):
    cell_cm = moscap.mzi_cell_length_um * 1e-4
    expected = (2 * moscap.coupler.insertion_loss_db + moscap.shifter.insertion_loss_db
                + moscap.waveguide.loss_db_per_cm * cell_cm)
    assert moscap.mzi.insertion_loss_db == pytest.approx(expected) and expected > 0.66
    # path loss grows with the depth: 9, 17, 33 MZIs on the longest path
    losses = [estimate_cost(device=moscap, stages=_core(n)).worst_path_loss_db
              for n in (4, 8, 16)]
    assert losses[0] > moscap.modulator.insertion_loss_db
    assert losses[1] - losses[0] == pytest.approx(8 * expected)
    assert losses[2] - losses[1] == pytest.approx(16 * expected)
    data = moscap.model_dump()
    assert DeviceParams.model_validate(data) == moscap  # round trip derives the same value
    # a dump with a changed part (as chip.overrides make) derives the loss afresh
    longer = {**data, "shifter": {**data["shifter"], "length_um": 1000.0, "v_pi_v": 1.2,
                                  "v_max_v": 2.4}}
    assert DeviceParams.model_validate(longer).mzi.insertion_loss_db == pytest.approx(
        expected + moscap.waveguide.loss_db_per_cm * 2 * 500.0 * 1e-4)
    data["mzi"]["insertion_loss_db"] = 0.1
    with pytest.raises(ValueError, match="disagrees with the"):
        DeviceParams.model_validate(data)
    assert DeviceParams(mzi={"insertion_loss_db": 0.3}).mzi.insertion_loss_db == 0.3


def test_counts_of_a_tensor_core_match_the_svd_rule(core16):
    st = Stage.from_counts(core16.counts)
    assert st.tiles == 4 and st.mesh_rows == 8
    assert st.num_mzis == 4 * svd_mzis(8, 8) == 4 * 64
    assert st.num_phase_shifters == core16.counts.num_phase_shifters
    assert Stage(name="x", mesh_rows=8, mesh_cols=8, tiles=4).num_phase_shifters == \
        core16.counts.num_phase_shifters


def test_isometry_count_is_m_times_n():
    for m, n in [(512, 21), (1, 512), (8, 2), (8, 8)]:
        assert svd_mzis(m, n, isometry=True) == m * n
    assert svd_mzis(1, 512) == 512 * 511 // 2 + 1


def test_latency_of_one_vector(thermal):
    st = Stage(name="tile", mesh_rows=8, mesh_cols=8, tiles=1)
    rep = estimate_cost(device=thermal, stages=[st])
    t_opt = (17 * thermal.mzi_cell_length_um + thermal.modulator.length_um) * 4.2 / C_UM_PER_NS
    expected = 1 / thermal.dac.sample_rate_gsps + t_opt + 1 / thermal.adc.sample_rate_gsps
    assert rep.latency_ns == pytest.approx(expected)
    assert rep.latency_breakdown_ns["streaming"] == 0.0


def test_time_multiplexed_pays_reprogramming_per_tile(thermal):
    st = Stage(name="layer", mesh_rows=8, mesh_cols=8, tiles=6)
    ws = estimate_cost(device=thermal, stages=[st])
    tm = estimate_cost(device=thermal, stages=[st], dataflow="time_multiplexed")
    t_write = 1 / thermal.phase_dac.sample_rate_gsps + thermal.shifter.settling_time_ns
    assert tm.latency_breakdown_ns["reprogramming"] == pytest.approx(6 * t_write)
    assert tm.latency_ns == pytest.approx(6 * ws.latency_ns + 6 * t_write)
    assert tm.num_mzis == 64 and ws.num_mzis == 6 * 64
    assert tm.area_breakdown_um2["meshes"] == pytest.approx(ws.area_breakdown_um2["meshes"] / 6)
    # memory for the phases of all 6 tiles (8-bit)
    bits_phases = 8 * st.num_phase_shifters
    assert tm.area_breakdown_um2["memory"] - ws.area_breakdown_um2["memory"] == pytest.approx(
        bits_phases * CostParams().sram_area_um2_per_bit)


def test_mesh_area_is_depth_cells_by_the_mode_span(thermal):
    """Cell = 2 shifters + 2 couplers + 2 S-bends + 2 arm bends + 2 contacts (SimPhony
    100 µm heater, 31 µm coupler; 40, 20, 16 µm routing) = 414 µm; mesh = depth × cell ×
    (N − 1) pitches."""
    assert thermal.mzi_cell_length_um == pytest.approx(2 * (100 + 31 + 40 + 20 + 16))
    st = Stage(name="tile", mesh_rows=8, mesh_cols=8, tiles=1)
    a = estimate_cost(device=thermal, stages=[st]).area_breakdown_um2
    grid = 8 * 414.0 * 7 * thermal.layout.mode_pitch_um
    assert a["meshes"] == pytest.approx(2 * grid)
    assert a["sigma_attenuators"] == pytest.approx(8 * 414.0 * 2 * thermal.layout.mode_pitch_um)


def test_training_step_is_queries_times_program_plus_batch(thermal):
    st = [Stage(name="tile", mesh_rows=8, mesh_cols=8, tiles=2)]
    step = TrainingStep(queries=4, inferences_per_query=50)
    rep = estimate_cost(device=thermal, stages=st, training=step)
    batch = estimate_cost(device=thermal, stages=st, batch=50)
    t_write = 1 / thermal.phase_dac.sample_rate_gsps + thermal.shifter.settling_time_ns
    assert rep.latency_ns_per_step == pytest.approx(4 * (t_write + batch.latency_ns))
    prog = rep.step_energy_breakdown_pj["reprogramming"]
    hold_prog = rep.static_power_mw["shifter_hold"] * t_write
    assert rep.energy_pj_per_step == pytest.approx(
        4 * 50 * batch.energy_pj + prog + 4 * hold_prog)
    assert prog > 0


def test_errors_name_the_rule(thermal):
    st = [Stage(name="tile", mesh_rows=4, mesh_cols=4, tiles=1)]
    with pytest.raises(ValueError, match="dataflow='pipelined' is not known"):
        estimate_cost(device=thermal, stages=st, dataflow="pipelined")
    with pytest.raises(ValueError, match="exactly one of counts"):
        estimate_cost(device=thermal)
    with pytest.raises(ValueError, match="give each Stage its phases"):
        estimate_cost(device=thermal, stages=st, phases=torch.zeros(3))


# ---------------------------------------------------------------------------- TONN / HJB
HJB = [TTLayer((1, 1, 3, 7), (8, 4, 4, 4), (2, 2, 2)),
       TTLayer((4, 4, 4, 8), (8, 4, 4, 4), (2, 2, 2)),
       DenseLayer(1, 512)]


def test_tt_core_shapes_of_the_hjb_network():
    assert tt_core_shapes(HJB[0]) == [(8, 2), (8, 2), (8, 6), (8, 7)]
    assert tt_core_shapes(HJB[1]) == [(8, 8)] * 4
    assert HJB[0].shape == (512, 21) and HJB[1].shape == (512, 512)
    vec = [s.vectors_per_inference for s in network_stages(HJB, mapping="tt")]
    assert vec == [64, 16, 4, 3, 64, 64, 64, 64, 1]
    # MACs of the TT contraction: Σ_k rows·cols·vectors
    macs = sum(r * c * v for (r, c), v in zip(
        tt_core_shapes(HJB[1]), vec[4:8], strict=True))
    assert macs == 4 * 64 * 64


def test_hjb_mzi_ratio_dense_vs_tt():
    dense = count_mzis(HJB, mapping="dense")
    tt = count_mzis(HJB, mapping="tt")
    # dense: 512×21 → 130816 + 210 + 21; 512×512 → 512²; 1×512 → 0 + 130816 + 1
    assert dense == 131047 + 262144 + 130817 == 524008
    # TT cores: 31 + 31 + 49 + 56 + 4·64, plus the dense output layer
    assert tt == 167 + 256 + 130817
    assert dense / tt == pytest.approx(3.9927, rel=1e-4)
    # The count that reproduces the published 1.17e3: TT cores as two 8×8 unitaries
    # (8·7 MZIs), output layer not counted on the TT side.
    assert dense / (8 * 8 * 7) == pytest.approx(1.17e3, rel=1e-3)


def test_noise_model_runs_at_the_budget_power_and_meets_the_adc_snr(thermal):
    """One budget: optical_matmul launches the channel power of photonic.power, so light
    that crosses the worst path of a 4×4 tile reaches its detector with exactly the SNR of
    the 8-bit ADC (6.02·8 + 1.76 dB, full-scale sine convention)."""
    from photonic.core import optical_matmul
    from photonic.noise import NoiseConfig
    from photonic.power import channel_power_mw, svd_path_loss_db

    loss_db = svd_path_loss_db(thermal, 4, 4)
    assert channel_power_mw(thermal, mesh_path_loss_db=loss_db) == pytest.approx(
        detector_sensitivity_mw(thermal.detector, snr_db=adc_snr_db(8)) * 10 ** (loss_db / 10))
    a = 10 ** (-loss_db / 20)  # field amplitude left after the worst path
    tiles = (a * torch.eye(4, dtype=torch.complex128)).reshape(1, 1, 4, 4)
    x = torch.full((40_000, 4), 0.5, dtype=torch.float64)
    y = optical_matmul(tiles, torch.ones(1, 1, dtype=torch.float64), x, (4, 4), device=thermal,
                       noise=NoiseConfig(detector_noise=True),
                       generator=torch.Generator().manual_seed(5))
    snr = (0.5 * a) ** 2 / 2 / (y - 0.5 * a).var().item()
    assert 10 * math.log10(snr) == pytest.approx(adc_snr_db(8), abs=0.1)


def test_sweep_rows_carry_the_feasibility_and_show_where_it_ends(thermal):
    from photonic.noise import NoiseConfig
    from photonic.sweep import _feasibility_lines, grid, plot_costs, run_sweep, summarize

    pts = grid(n=[4, 8], topology=["clements"], preset="soi_thermal")
    df = run_sweep(pts, devices={"soi_thermal": thermal}, seeds=[0], noise=NoiseConfig.ideal(),
                   batch=4)
    assert df["feasible"].tolist() == [True, False]
    assert df["laser_optical_mw"].iloc[1] > thermal.laser.max_power_per_laser_mw
    assert df["laser_optical_mw"].iloc[0] == pytest.approx(
        estimate_cost(device=thermal, stages=_core(4)).laser_optical_mw)
    summary = summarize(df)
    assert summary["feasible"].tolist() == [True, False]
    lines = _feasibility_lines(summary)
    assert lines[2].startswith("- `soi_thermal`, clements: feasible up to N = 4; infeasible "
                               "from N = 8 (tile 8, laser ")
    fig = plot_costs(df)
    assert fig.axes[3].get_ylabel() == "laser_optical_mw"
