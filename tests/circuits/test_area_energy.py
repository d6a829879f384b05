"""area_energy workload: layout-true vs analytic mesh area, MZI-count rules, and a smoke run
of the shipped config at reduced size."""

import json

import pytest

from circuits.area_energy import HJB_PUBLISHED_RATIO, layout_vs_analytic, mzi_count_rules
from photonic.tonn import DenseLayer, TTLayer

HJB = [TTLayer((1, 1, 3, 7), (8, 4, 4, 4), (2, 2, 2)),
       TTLayer((4, 4, 4, 8), (8, 4, 4, 4), (2, 2, 2)),
       DenseLayer(1, 512)]


def test_analytic_mesh_area_matches_the_layout_within_5_percent_for_every_preset():
    """The hub's analytic area (from the preset's parts) against the gdsfactory mesh built
    from the preset's settings, N = 8, 16, 32 (Clements)."""
    import calibration

    devices = {name: calibration.load_preset(name) for name in calibration.list_presets()}
    rows = layout_vs_analytic(devices, [8, 16, 32], topologies=("clements",))
    assert len(rows) == 3 * len(devices)
    bad = [(r["preset"], r["n"], round(r["gap"], 4)) for r in rows if abs(r["gap"]) >= 0.05]
    assert not bad, bad
    # the MOSCAP cell is ~3× the thermal one: a formula blind to the shifter would miss it
    moscap = next(r for r in rows if r["preset"] == "iii_v_moscap" and r["n"] == 8)
    thermal = next(r for r in rows if r["preset"] == "soi_thermal" and r["n"] == 8)
    assert moscap["layout_um2"] / thermal["layout_um2"] > 2.5
    assert moscap["analytic_um2"] / thermal["analytic_um2"] > 2.5


def test_mzi_count_rules_for_the_hjb_network():
    rules = {r["rule"]: r for r in mzi_count_rules(HJB)}
    assert (rules["A"]["dense_mzis"], rules["A"]["tt_mzis"]) == (524008, 131240)
    assert rules["B"]["dense_mzis"] == 21 * 512 + 512 * 512 + 512  # M·N per block
    assert rules["D"]["tt_mzis"] == 167 + 256
    assert rules["E"]["tt_mzis"] == 8 * 64
    assert rules["F"]["ratio"] == pytest.approx(HJB_PUBLISHED_RATIO, rel=1e-3)


def test_shipped_config_runs_at_reduced_size(tmp_path):
    from photonic.cli import load_run
    from photonic.runio import RunContext

    _, run, wcfg, module, extra = load_run(
        "area_energy", ["workload.scaling_n=[4,8]", "workload.layout_n=4",
                        "workload.training.inferences_per_query=10"])
    assert sorted(extra["presets"]) == ["iii_v_moscap", "mems", "soi_thermal"]
    import calibration

    sources = {name: calibration.preset_sources(name) for name in extra["presets"]}
    ctx = RunContext(out=tmp_path, device=extra["device"], noise=extra["noise"],
                     presets=extra["presets"],
                     provenance={"preset": run.chip.preset, "presets": sources},
                     show_progress=False)
    metrics = module.run(wcfg, ctx)
    json.dumps(metrics)  # flat and serialisable
    for name in ("report.md", "tensor_core.gds", "layout_core.png", "scaling.png",
                 "breakdown_area.png", "breakdown_energy.png", "breakdown_latency.png"):
        assert (tmp_path / name).stat().st_size > 0, name
    for design in ("dense_8x8", "tonn1", "tonn2"):
        for preset in ("soi_thermal", "iii_v_moscap", "mems"):
            for key in ("area_um2", "energy_pj_per_inference", "latency_ns_per_inference",
                        "num_mzis", "energy_pj_per_step"):
                assert metrics[f"{design}.{preset}.{key}"] > 0, (design, preset, key)
    # dense on 8×8 tiles: 64·3 + 64·64 + 64 tiles of 64 MZIs; TONN-1: cores + output tiles
    assert metrics["dense_8x8.soi_thermal.num_mzis"] == (192 + 4096 + 64) * 64
    assert metrics["tonn1.soi_thermal.num_mzis"] == 167 + 256 + 64 * 64
    assert metrics["tonn2.soi_thermal.num_mzis"] == 64
    # MOSCAP holds its phases for free; thermal does not
    assert metrics["tonn1.iii_v_moscap.static.shifter_hold_mw"] == 0.0
    assert metrics["tonn1.soi_thermal.static.shifter_hold_mw"] > 1e3
    # time multiplexing trades area for latency
    assert metrics["tonn2.soi_thermal.area_um2"] < metrics["tonn1.soi_thermal.area_um2"]
    assert metrics["tonn2.soi_thermal.latency_ns_per_inference"] > \
        metrics["tonn1.soi_thermal.latency_ns_per_inference"]
    text = (tmp_path / "report.md").read_text()
    assert "1.17e+03" in text and "| soi_thermal | 8 |" in text
    # the power budget: laser power and feasibility per design, in the report and metrics
    assert isinstance(metrics["dense_8x8.soi_thermal.feasible"], bool)
    assert metrics["scaling.soi_thermal.n4.feasible"] is True
    assert metrics["scaling.soi_thermal.n8.laser_optical_mw"] > \
        metrics["scaling.soi_thermal.n4.laser_optical_mw"]
    assert "| laser power (optical) | feasible |" in text
    # assumptions list preset values with their sources
    assert "| shifter.p_pi_mw | 30.0 | SimPhony device library: typical SOI thermal shifter " \
        "P_π 30 mW |" in text
    assert "Xiao et al., APL Photonics 6, 126107 (2021): capacitive, ≈ 0 static power" in text
