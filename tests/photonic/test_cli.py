import json

import pytest
from typer.testing import CliRunner

from photonic.cli import app

runner = CliRunner()


def _run(*args):
    return runner.invoke(app, list(args))


def test_mesh_demo_run_writes_the_contract_files(tmp_path):
    res = _run("run", "mesh_demo", "--set", "chip.preset=ideal", "--out", str(tmp_path),
               "--quiet")
    assert res.exit_code == 0, res.output
    for f in ("config.resolved.yaml", "metrics.json", "report.md"):
        assert (tmp_path / f).is_file()
    m = json.loads((tmp_path / "metrics.json").read_text())
    assert abs(m["fidelity"] - 1) < 1e-12 and m["rel_frobenius_error"] < 1e-10
    assert m["num_mzis"] == 256 and m["num_phase_shifters"] == 544
    assert "package_version" in (tmp_path / "config.resolved.yaml").read_text()


def test_noisy_preset_lowers_fidelity(tmp_path):
    res = _run("run", "mesh_demo", "--out", str(tmp_path), "--quiet")
    assert res.exit_code == 0, res.output
    m = json.loads((tmp_path / "metrics.json").read_text())
    assert 0.5 < m["fidelity"] < 0.999


@pytest.mark.parametrize("args,message", [
    (["--set", "chip.preset=bpfre"],
     "chip.preset = 'bpfre': unknown preset (valid: "),
    (["--set", "workload.tiles=3"],
     "workload.tiles: unknown key (valid keys: batch, cols, kind, rows, tile, topology); "
     "did you mean 'tile'?"),
    (["--set", "workload.tile=1"],
     "workload.tile = 1: Input should be greater than or equal to 2"),
    (["--set", "workload.kind=mesh_dem"], "did you mean 'mesh_demo'?"),
    (["--set", "chip.noise=some"], "chip.noise"),
    (["--set", "novalue"], "expected KEY=VALUE"),
])
def test_bad_input_fails_before_work_with_exit_2(tmp_path, args, message):
    res = _run("run", "mesh_demo", *args, "--out", str(tmp_path / "o"))
    assert res.exit_code == 2
    assert message in res.output
    assert not (tmp_path / "o").exists()  # nothing written


def test_unknown_config_and_preset_commands():
    res = _run("validate", "mesh_dem")
    assert res.exit_code == 2 and "did you mean 'mesh_demo.yaml'?" in res.output
    res = _run("presets", "list")
    assert res.exit_code == 0 and "bpfree_pinn_sim" in res.output
    res = _run("presets", "show", "bpfree_pinn_sim")
    assert res.exit_code == 0 and "BP-free PINN study: V_π 4.36 V" in res.output
    res = _run("presets", "show", "mem")
    assert res.exit_code == 2 and "did you mean 'mems'?" in res.output


def test_nested_chip_overrides_merge_field_by_field():
    """``--set chip.overrides.phase_dac.bits=12`` changes that one field of the preset's
    DAC and keeps the others (a nested override merges; it does not replace the section)."""
    import calibration
    from photonic.cli import load_run

    base = calibration.load_preset("bpfree_pinn_sim")
    _, _, _, _, extra = load_run("pinn_burgers", ["chip.overrides.phase_dac.bits=12"])
    dev = extra["device"]
    assert dev.phase_dac.bits == 12 and base.phase_dac.bits == 8
    assert dev.phase_dac.model_dump(exclude={"bits"}) == base.phase_dac.model_dump(
        exclude={"bits"})
    assert dev.shifter == base.shifter
    res = _run("run", "pinn_burgers", "--set", "chip.overrides.phase_dac.bitz=12",
               "--out", "/nonexistent/never")
    assert res.exit_code == 2 and "chip.overrides.phase_dac.bitz" in res.output
    assert "did you mean 'bits'" in res.output
