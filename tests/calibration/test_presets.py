"""Device presets: every preset loads, every number has a source, extends works, errors exact."""

from __future__ import annotations

import math
import re

import pytest
import yaml

import calibration
from calibration import presets as P
from photonic import DeviceParams

REQUIRED = {"ideal", "soi_thermal", "iii_v_moscap", "mems", "bpfree_pinn_sim"}


def test_required_presets_are_shipped():
    assert REQUIRED <= set(calibration.list_presets())


@pytest.mark.parametrize("name", P.list_presets())
def test_every_preset_loads_and_is_named(name):
    dev = calibration.load_preset(name)
    assert isinstance(dev, DeviceParams)
    assert dev.name == name
    assert dev.shifter.max_phase_rad >= 2 * math.pi - 1e-9
    assert calibration.preset_description(name)


def _numbers_without_source(node, path=""):
    """Dotted paths of bare numbers in a params tree (a {value, source} leaf is fine)."""
    if isinstance(node, dict):
        if "value" in node and "source" in node:
            return []
        return [p for k, v in node.items() for p in _numbers_without_source(v, f"{path}.{k}")]
    if isinstance(node, bool):
        return []
    return [path] if isinstance(node, int | float) else []


@pytest.mark.parametrize("name", P.list_presets())
def test_every_number_in_every_file_has_a_source(name):
    raw = yaml.safe_load(P.preset_file(name).read_text())
    assert _numbers_without_source(raw.get("params") or {}) == []
    sources = calibration.preset_sources(name)
    dev = calibration.load_preset(name).model_dump()
    # provenance covers every leaf field of DeviceParams, each a non-empty string
    flat = {}

    def walk(d, prefix=""):
        for k, v in d.items():
            if isinstance(v, dict):
                walk(v, f"{prefix}{k}.")
            else:
                flat[f"{prefix}{k}"] = v

    walk(dev)
    assert set(sources) == set(flat)
    assert all(isinstance(s, str) and s for s in sources.values())
    # a number that differs from the DeviceParams default must come from a preset file
    default = DeviceParams().model_dump()
    walk_default = {}

    def walk2(d, prefix=""):
        for k, v in d.items():
            if isinstance(v, dict):
                walk2(v, f"{prefix}{k}.")
            else:
                walk_default[f"{prefix}{k}"] = v

    walk2(default)
    for key, value in flat.items():
        if key != "name" and value != walk_default[key]:
            assert sources[key] != P.DEFAULT_SOURCE, key


def test_derived_and_assumed_values_say_so():
    src = calibration.preset_sources("soi_common")
    assert src["mzi.insertion_loss_db"].startswith("derived: 2 × coupler.insertion_loss_db")
    assert src["laser.max_power_per_laser_mw"].startswith("assumption:")
    assert src["layout.mode_pitch_um"].startswith("derived:")
    assert src["design_wavelength_um"].startswith("assumption:")


def test_bpfree_pinn_sim_reproduces_the_study():
    d = calibration.load_preset("bpfree_pinn_sim")
    assert d.phase_dac.bits == 8
    assert d.shifter.v_pi_v == 4.36 and d.shifter.v_max_v == 10.8
    assert d.shifter.law == "quadratic"
    # the study's simulator: uniform phase-space quantisation, γ̃ = γ + 0.002·N(0, 1)
    assert d.phase_dac.grid == "phase"
    assert d.variation.gamma_std == pytest.approx(0.002 / (math.pi / 4.36**2), abs=1e-4)
    assert d.crosstalk.model == "nearest" and d.crosstalk.coefficient == 0.005
    fab = calibration.load_preset("bpfree_pinn_fab")  # programmed in voltage-DAC codes
    assert fab.phase_dac.grid == "voltage" and fab.phase_dac.bits == 8
    src = calibration.preset_sources("bpfree_pinn_sim")
    assert "torchonn PhaseQuantizer" in src["phase_dac.grid"]
    assert src["crosstalk.coefficient"].startswith("BP-free PINN study")
    # the 8-bit DAC reaches π·(10.8/4.36)² = 19.28 rad, three full turns
    assert d.shifter.max_phase_rad == pytest.approx(math.pi * (10.8 / 4.36) ** 2)


def test_platform_physics():
    thermal = calibration.load_preset("soi_thermal")
    moscap = calibration.load_preset("iii_v_moscap")
    mems = calibration.load_preset("mems")
    assert thermal.shifter.p_pi_mw == 30.0 and thermal.crosstalk.model == "exponential"
    assert moscap.shifter.p_pi_mw == 0.0 and moscap.shifter.capacitance_ff > 0
    assert moscap.crosstalk.model == "none"
    # V_π = V_π·L / L = 0.12 V·cm / 0.05 cm
    assert moscap.shifter.v_pi_v == pytest.approx(0.12 / (moscap.shifter.length_um * 1e-4))
    assert mems.shifter.p_pi_mw < 1e-3 and mems.shifter.settling_time_ns == 2000.0
    ideal = calibration.load_preset("ideal")
    assert ideal == DeviceParams(name="ideal")
    # every insertion loss is read: MOSCAP MZIs lose their couplers' 2 × 0.33 dB and the
    # waveguide over the 1214 µm cell; the ideal chip stays lossless
    assert moscap.mzi_cell_length_um == pytest.approx(2 * (500 + 31 + 40 + 20 + 16))
    assert moscap.mzi.insertion_loss_db == pytest.approx(0.66 + 2.0 * 0.1214)
    assert thermal.mzi.insertion_loss_db == pytest.approx(0.66 + 0.25 + 2.0 * 0.0414)
    assert ideal.mzi.insertion_loss_db == 0.0


def test_extends_inherits_and_overrides():
    base = calibration.load_preset("soi_thermal")
    var = calibration.load_preset("soi_thermal_harris2014")
    assert var.shifter.p_pi_mw == 24.77 and base.shifter.p_pi_mw == 30.0
    assert var.coupler == base.coupler and var.crosstalk == base.crosstalk
    # inherited provenance keeps the base's source; the override carries its own
    s = calibration.preset_sources("soi_thermal_harris2014")
    assert s["shifter.p_pi_mw"].startswith("Harris et al.")
    assert s["coupler.length_um"] == calibration.preset_sources("soi_common")["coupler.length_um"]


# ------------------------------------------------------------------ errors (exact messages)
def test_unknown_name_did_you_mean():
    with pytest.raises(calibration.PresetError) as e:
        calibration.load_preset("soi_thermall")
    msg = str(e.value)
    assert msg.startswith(
        "unknown preset 'soi_thermall'; did you mean 'soi_thermal'? Valid presets: ")
    assert ", ".join(P.list_presets()) in msg


def _write(tmp_path, name, text):
    (tmp_path / f"{name}.yaml").write_text(text)
    return tmp_path / f"{name}.yaml"


def test_field_error_names_file_field_value_and_rule(tmp_path):
    bad = _write(tmp_path, "bad_loss", "description: x\nextends: soi_thermal\nparams:\n"
                 "  coupler:\n    insertion_loss_db: {value: -0.3, source: typo}\n")
    with pytest.raises(calibration.PresetError) as e:
        calibration.load_preset("bad_loss", directory=tmp_path)
    assert str(e.value) == (f"{bad.resolve()}: params.coupler.insertion_loss_db = -0.3: "
                            "Input should be greater than or equal to 0")


def test_model_rule_error_names_the_file_of_the_section(tmp_path):
    bad = _write(tmp_path, "short", "description: x\nextends: soi_thermal\nparams:\n"
                 "  shifter:\n    v_max_v: {value: 5.0, source: typo}\n")
    with pytest.raises(calibration.PresetError) as e:
        calibration.load_preset("short", directory=tmp_path)
    msg = str(e.value)
    assert msg.startswith(f"{bad.resolve()}: params.shifter = ")
    assert msg.endswith("v_max_v=5.0 reaches only 4.132 rad with v_pi_v=4.36 and "
                        "law='quadratic'; a shifter must reach 2π")


def test_bare_number_is_rejected(tmp_path):
    bad = _write(tmp_path, "bare", "description: x\nparams:\n  coupler:\n    length_um: 12\n")
    with pytest.raises(calibration.PresetError) as e:
        calibration.load_preset("bare", directory=tmp_path)
    assert str(e.value) == (f"{bad.resolve()}: params.coupler.length_um = 12: every number needs "
                            "a source; write {value: 12, source: \"...\"}")


def test_unknown_field_did_you_mean(tmp_path):
    bad = _write(tmp_path, "typo", "description: x\nparams:\n  shifter:\n"
                 "    v_pi: {value: 1.0, source: s}\n")
    with pytest.raises(calibration.PresetError) as e:
        calibration.load_preset("typo", directory=tmp_path)
    assert re.match(re.escape(f"{bad.resolve()}: params.shifter.v_pi: unknown field; did you "
                              "mean 'v_pi_v'? (valid: kind, law, v_pi_v"), str(e.value))


def test_empty_source_and_extends_cycle(tmp_path):
    _write(tmp_path, "nosrc", "description: x\nparams:\n  coupler:\n"
           "    length_um: {value: 1.0, source: ''}\n")
    with pytest.raises(calibration.PresetError, match=r"params\.coupler\.length_um\.source = '': "
                       "a source must be a non-empty string"):
        calibration.load_preset("nosrc", directory=tmp_path)
    _write(tmp_path, "a", "description: x\nextends: b\nparams: {}\n")
    _write(tmp_path, "b", "description: x\nextends: a\nparams: {}\n")
    with pytest.raises(calibration.PresetError, match=r"extends cycle: a -> b -> a"):
        calibration.load_preset("a", directory=tmp_path)


def test_unknown_base_and_top_key(tmp_path):
    _write(tmp_path, "orphan", "description: x\nextends: idael\nparams: {}\n")
    with pytest.raises(calibration.PresetError, match=r"extends = 'idael': unknown preset "
                       r"'idael'; did you mean 'ideal'\?"):
        calibration.load_preset("orphan", directory=tmp_path)
    _write(tmp_path, "top", "description: x\nparam: {}\n")
    with pytest.raises(calibration.PresetError, match=r"unknown top-level key 'param'; did you "
                       r"mean 'params'\?"):
        calibration.load_preset("top", directory=tmp_path)


def test_user_directory_shadows_nothing_it_does_not_define(tmp_path):
    _write(tmp_path, "mine", "description: x\nextends: bpfree_pinn_sim\nparams:\n"
           "  coupler:\n    split_error_std_rad: {value: 0.02, source: measured}\n")
    assert "mine" in calibration.list_presets(directory=tmp_path)
    assert "mine" not in calibration.list_presets()
    d = calibration.load_preset("mine", directory=tmp_path)
    assert d.coupler.split_error_std_rad == 0.02 and d.variation.gamma_std == 0.0121
    assert calibration.preset_sources("mine", directory=tmp_path)[
        "coupler.split_error_std_rad"] == "measured"
