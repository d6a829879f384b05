import json
import os

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


# --------------------------------------------------------------------------- bad input
def _config(tmp_path, text: str | bytes, name="c.yaml"):
    p = tmp_path / name
    (p.write_bytes if isinstance(text, bytes) else p.write_text)(text)
    return str(p)


MESH = "name: m\nseed: 0\nchip: {preset: ideal, noise: ideal}\nworkload:\n  kind: mesh_demo\n" \
    "  rows: 4\n  cols: 4\n  tile: 4\n  batch: 8\n"


def _refused(res, *parts, out=None):
    """Exit 2, one line per problem naming it, no traceback, nothing written."""
    assert res.exit_code == 2, res.output
    assert "Traceback" not in res.output
    for p in parts:
        assert p in res.output, res.output
    if out is not None:
        assert not out.exists() or not any(out.iterdir())


@pytest.mark.parametrize("content,message", [
    (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "is a binary file (NUL byte at offset 8)"),
    ("name: caf\u00e9\n".encode("latin-1"), "is not UTF-8 text (byte 0xe9 at offset 9)"),
    (MESH + "  rows: 8\n", "line 10, column 3: key 'rows' appears twice (first at line 6)"),
    (MESH.replace("rows: 4", "rows: true"), "workload.rows: a boolean (true/false) where a "
                                            "number is expected"),
    (MESH.replace("seed: 0", "seed: true"), "seed: a boolean (true/false) where a number"),
    (MESH.replace("batch: 8", "batch: [8"), "not valid YAML (line 10, column 1:"),
    ("- just\n- a list\n", "the top level must be a mapping with name, chip, workload "
                           "(got list)"),
])
def test_unreadable_or_ambiguous_config_files_are_refused(tmp_path, content, message):
    path = _config(tmp_path, content)
    for cmd in (["validate", path], ["run", path, "--out", str(tmp_path / "o")]):
        _refused(_run(*cmd), message, out=tmp_path / "o")


def test_out_must_be_a_writable_folder(tmp_path):
    cfg = _config(tmp_path, MESH)
    afile = tmp_path / "afile"
    afile.write_text("x")
    _refused(_run("run", cfg, "--out", str(afile)), f"--out {afile}: is a file, not a folder")
    _refused(_run("run", cfg, "--out", str(afile / "sub")),
             f"{afile} is a file, so no folder can be made under it")
    _refused(_run("run", cfg, "--out", "/proc/photonic-sim-out"), "/proc is not writable")
    assert afile.read_text() == "x"


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_out_in_a_read_only_folder_is_refused(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir(mode=0o555)
    _refused(_run("run", _config(tmp_path, MESH), "--out", str(ro / "o")),
             f"{ro} is not writable")


def test_sizes_that_cannot_fit_in_memory_are_refused_by_validate_and_run(tmp_path):
    sets = ["--set", "workload.rows=100000", "--set", "workload.cols=100000"]
    res = _run("validate", "mesh_demo", *sets)
    _refused(res, "the run needs about", "of memory (workload 'mesh_demo' at these sizes) but")
    need = float(res.output.split("needs about ")[1].split(" GiB")[0].replace(",", ""))
    # 6250² tiles of 16×16: 160 MiB + 16 B × (16·6250²·256 + 5·256·6250²·16) = 1.54e13 B
    assert "needs about 14,305 GiB of memory" in res.output
    assert need == pytest.approx(
        (160 * 2**20 + 16 * (16 * 6250**2 * 256 + 5 * 256 * 6250**2 * 16)) / 2**30, rel=1e-3)
    _refused(_run("run", "mesh_demo", *sets, "--out", str(tmp_path / "o")),
             "the run needs about", out=tmp_path / "o")
    sweep = ["--set", "workload.n=[4, 100000]"]
    _refused(_run("validate", "sweep_mesh", *sweep), "the run needs about")
    ok = _run("validate", "mesh_demo")
    assert ok.exit_code == 0 and "needs about 160 MiB of" in ok.output  # + 16 B·(4096 + 20480)


@pytest.mark.parametrize("config,sets,message,absent", [
    ("pinn_burgers", ["workload.optim.lr=.inf"],
     "workload.optim.lr = inf: not a finite number; give a finite value", None),
    ("pinn_burgers", ["workload.causal.eps=.nan"], "workload.causal.eps = nan: not a finite",
     "less than"),
    ("sweep_mesh", ["workload.n=[1, 4]"],
     "workload.n[0] = 1: Input should be greater than or equal to 2", None),
    ("pinn_burgers", ["workload.pde=burgerz"],
     "workload: pde: unknown PDE 'burgerz'; did you mean 'burgers'?", "'kind': 'pinn'"),
    ("mesh_demo", ["workload.topology=clement"], "workload: topology='clement'", None),
    ("mesh_demo", ["workload={rows: 2, rows: 3}"], "key 'rows' appears twice", None),
    ("mesh_demo", ["workload.rows.x=3"], "workload.rows is a value, not a section", None),
    ("mesh_demo", ["chip.noise=some"], "chip.noise = 'some': Input should be 'all' or "
     "'ideal'; or input should be a valid dictionary", "dict[str"),
    ("mesh_demo", ["chip.overrides={1: 2}"],
     "chip.overrides[1] (key) = 1: Input should be a valid string", None),
    ("mesh_demo", ["chip.overrides.phase_dac.bits=true"],
     "chip.overrides.phase_dac.bits: a boolean (true/false) where a number", None),
])
def test_bad_values_name_the_field_and_rule(config, sets, message, absent):
    args = [a for s in sets for a in ("--set", s)]
    res = _run("validate", config, *args)
    _refused(res, message)
    assert absent is None or absent not in res.output
    assert len(res.output.strip().splitlines()) == 1


def test_missing_files_and_wrong_commands(tmp_path):
    res = _run("validate", str(tmp_path / "configs" / "area.yaml"))
    _refused(res, "config file", "not found; check the path")
    assert "did you mean" not in res.output
    _refused(_run("validate", str(tmp_path)), "is a folder")
    _refused(_run("sweep", "mesh_demo", "--out", str(tmp_path / "o")),
             "`photonic-sim sweep` runs sweep configs (kind: sweep); run this one with: "
             "photonic-sim run mesh_demo", out=tmp_path / "o")


def test_unreachable_dask_scheduler_is_refused_with_its_address(tmp_path, monkeypatch):
    import photonic.executors as ex

    monkeypatch.setattr(ex, "DASK_CONNECT_TIMEOUT_S", 1)
    out = tmp_path / "o"
    res = _run("run", "sweep_mesh", "--out", str(out), "--quiet", "--set", "workload.n=[4]",
               "--set", "workload.executor=dask",
               "--set", "workload.scheduler_address=tcp://127.0.0.1:9")
    _refused(res, "scheduler_address='tcp://127.0.0.1:9': no Dask scheduler answered within "
                  "1 s", out=out)
    assert not out.exists()


def test_hub_entry_points_refuse_bad_arguments():
    import torch

    import photonic

    with pytest.raises(ValueError, match=r"in_features=0: must be an integer ≥ 1"):
        photonic.PhotonicLinear(0, 20)
    with pytest.raises(ValueError, match=r"out_features=2.0: must be an integer"):
        photonic.PhotonicLinear(3, 2.0)
    with pytest.raises(ValueError, match=r"tile=2.5: must be an integer ≥ 2"):
        photonic.TensorCore.from_matrix(torch.eye(4), tile=2.5)
    with pytest.raises(ValueError, match=r"tile=True: must be an integer"):
        photonic.TensorCore.from_matrix(torch.eye(4), tile=True)
    with pytest.raises(ValueError, match="W has non-finite entries"):
        photonic.TensorCore.from_matrix(torch.tensor([[1.0, float("inf")], [0, 1]]), tile=2)
    u = torch.eye(3, dtype=torch.complex128)
    u[1, 2] = float("nan")
    with pytest.raises(ValueError, match=r"U has a non-finite entry \(\(nan\+0j\) at index "
                                         r"\(0, 1, 2\)"):
        photonic.decompose(u)


# --------------------------------------------------------------------------- conventions
def test_version_help_and_the_end_of_a_run(tmp_path):
    from photonic import __version__

    res = _run("--version")
    assert res.exit_code == 0 and res.output.strip() == f"photonic-sim {__version__}"
    res = _run("--debug", "validate", "no_such_config")
    assert res.exit_code == 2 and "Traceback" in res.output  # --debug shows it
    assert "error: config 'no_such_config' not found" in res.output
    for flag in ("-h", "--help"):
        res = _run("run", flag)
        assert res.exit_code == 0
        assert "Config path or bare name of a shipped config" in res.output  # argument help
        assert "workload.rows=32" in res.output and "--dry-run" in res.output
    out = tmp_path / "o"
    res = _run("run", _config(tmp_path, MESH), "--out", str(out), "--quiet")
    assert res.exit_code == 0, res.output
    m = json.loads((out / "metrics.json").read_text())
    assert f"m: fidelity = {m['fidelity']:.6g}, rel_frobenius_error = " in res.output
    assert f"wrote {out}/: config.resolved.yaml, metrics.json, report.md" in res.output
    assert {p.name for p in out.iterdir()} == {"config.resolved.yaml", "metrics.json",
                                               "report.md"}


def test_dry_run_checks_and_writes_nothing(tmp_path):
    out = tmp_path / "o"
    res = _run("run", _config(tmp_path, MESH), "--out", str(out), "--dry-run")
    assert res.exit_code == 0 and "dry run, nothing written" in res.output
    assert not out.exists()


# --------------------------------------------------------------------------- output folder
def test_an_output_folder_holds_one_run(tmp_path):
    cfg, out = _config(tmp_path, MESH), tmp_path / "o"
    old_umask = os.umask(0o022)
    try:
        assert _run("run", cfg, "--out", str(out), "--quiet").exit_code == 0
    finally:
        os.umask(old_umask)
    for p in out.iterdir():
        assert p.stat().st_mode & 0o777 == 0o644, p
    (out / "old_figure.png").write_bytes(b"png")
    _refused(_run("run", cfg, "--out", str(out)), "the folder holds another run "
             "(config.resolved.yaml, metrics.json, report.md); add --resume to continue it, "
             "--force to replace it")
    res = _run("run", cfg, "--out", str(out), "--force", "--quiet", "--set", "workload.rows=8")
    assert res.exit_code == 0, res.output
    assert not (out / "old_figure.png").exists()
    assert "rows: 8" in (out / "config.resolved.yaml").read_text()
    _refused(_run("run", cfg, "--out", str(out), "--force", "--resume"),
             "--resume and --force exclude each other")
    other = tmp_path / "notes"
    other.mkdir()
    (other / "thesis.tex").write_text("keep me")
    _refused(_run("run", cfg, "--out", str(other), "--force"),
             "holds files that are not a photonic-sim run's (thesis.tex)")
    assert (other / "thesis.tex").read_text() == "keep me"


def test_a_failed_run_leaves_no_resolved_config(tmp_path, fake_workload):
    out = tmp_path / "o"
    res = _run("run", _config(tmp_path, FAKE + "  fail_at: 2\n"), "--out", str(out), "--quiet")
    assert res.exit_code == 1 and "internal failure while running 'fake'" in res.output
    assert sorted(p.name for p in out.iterdir()) == ["checkpoint.pt"]


# --------------------------------------------------------------------------- resume, Ctrl-C
FAKE = "name: f\nseed: 0\nchip: {preset: bpfree_pinn_sim, noise: all}\nworkload:\n" \
    "  kind: fake\n  steps: 4\n  size: 3\n  eval_every: 1\n"


@pytest.fixture
def fake_workload(monkeypatch):
    """A 'fake' workload: ``steps`` steps of x ← 2x + seed, a checkpoint after each; it
    checks ctx.stop_requested like a training loop, and can send itself SIGINT (when not
    resuming) or fail."""
    import signal
    import sys
    import types

    from photonic.cli import WORKLOADS
    from photonic.runio import Interrupted, WorkloadConfig

    mod = types.ModuleType("fake_workload")

    class Config(WorkloadConfig):
        kind: str = "fake"
        steps: int = 4
        size: int = 3
        eval_every: int = 1
        sigint_at: int | None = None
        fail_at: int | None = None

    def run(cfg, ctx):
        state = ctx.load_checkpoint() or {"step": 0, "x": float(cfg.size)}
        while state["step"] < cfg.steps:
            if cfg.sigint_at == state["step"] and not ctx.resume:
                os.kill(os.getpid(), signal.SIGINT)
            if ctx.stop_requested:
                ctx.save_checkpoint(state)
                raise Interrupted(f"step {state['step']}")
            if cfg.fail_at == state["step"]:
                raise RuntimeError("boom")
            state = {"step": state["step"] + 1, "x": 2 * state["x"] + ctx.seed}
            ctx.save_checkpoint(state)
        ctx.write_text("report.md", f"x = {state['x']}\n")
        return {"x": state["x"], "steps": state["step"]}

    mod.Config, mod.run = Config, run
    monkeypatch.setitem(sys.modules, "fake_workload", mod)
    monkeypatch.setitem(WORKLOADS, "fake", "fake_workload")
    return mod


def test_ctrl_c_writes_a_checkpoint_and_resume_finishes(tmp_path, fake_workload):
    cfg, out = _config(tmp_path, FAKE + "  sigint_at: 2\n"), tmp_path / "o"
    res = _run("run", cfg, "--out", str(out), "--quiet")
    assert res.exit_code == 130
    assert f"stopped at step 2; checkpoint written; resume with: photonic-sim run {cfg} " \
           f"--out {out} --resume" in res.output
    import torch

    assert torch.load(out / "checkpoint.pt", weights_only=False)["step"] == 2
    assert not (out / "config.resolved.yaml").exists()
    res = _run("run", cfg, "--out", str(out), "--resume", "--quiet")
    assert res.exit_code == 0, res.output
    m = json.loads((out / "metrics.json").read_text())
    assert (m["steps"], m["x"]) == (4, 48.0)  # 3 → 6 → 12 → 24 → 48 (seed 0)


def test_resume_refuses_another_config_and_allows_safe_fields(tmp_path, fake_workload):
    cfg, out = _config(tmp_path, FAKE + "  fail_at: 2\n"), tmp_path / "o"
    assert _run("run", cfg, "--out", str(out), "--quiet").exit_code == 1  # checkpoint: step 2
    _refused(_run("run", cfg, "--out", str(out), "--resume", "--set", "workload.size=5"),
             "checkpoint.pt was written with another config (workload.size: 3 → 5)")
    res = _run("run", cfg, "--out", str(out), "--resume", "--set", "seed=7",
               "--set", "chip.preset=ideal", "--set", "chip.noise=ideal")
    _refused(res, "checkpoint.pt was written with another config (", "seed: 0 → 7",
             "chip.preset: 'bpfree_pinn_sim' → 'ideal'")
    res = _run("run", cfg, "--out", str(out), "--resume", "--quiet",
               "--set", "workload.fail_at=null", "--set", "workload.eval_every=5")
    _refused(res, "workload.fail_at: 2 → None")
    good = _config(tmp_path, FAKE + "  fail_at: null\n", "g.yaml")
    res = _run("run", good, "--out", str(tmp_path / "g"), "--quiet", "--set", "workload.fail_at=3")
    assert res.exit_code == 1
    res = _run("run", good, "--out", str(tmp_path / "g"), "--resume", "--quiet",
               "--set", "workload.fail_at=3", "--set", "workload.eval_every=5")
    assert res.exit_code == 1  # resumed (fails again at step 3)
    assert "resuming although workload.eval_every differ from the checkpoint's config" \
        in res.output


def test_a_stage_checkpoint_marks_a_run_and_is_checked_on_resume(tmp_path, fake_workload):
    """A folder holding only a stage's checkpoint (e.g. pretrain_checkpoint.pt, a run
    stopped during its pre-training) is a run: refused without --resume/--force, and a
    --resume with another config is refused naming that checkpoint."""
    cfg, out = _config(tmp_path, FAKE + "  fail_at: 2\n"), tmp_path / "o"
    assert _run("run", cfg, "--out", str(out), "--quiet").exit_code == 1
    (out / "checkpoint.pt").rename(out / "pretrain_checkpoint.pt")
    _refused(_run("run", cfg, "--out", str(out)), "the folder holds another run")
    _refused(_run("run", cfg, "--out", str(out), "--resume", "--set", "workload.size=5"),
             "pretrain_checkpoint.pt was written with another config (workload.size: 3 → 5)")


def test_a_checkpoint_without_a_config_record_resumes_with_a_warning(tmp_path, fake_workload):
    import torch

    out = tmp_path / "o"
    out.mkdir()
    torch.save({"step": 3, "x": 10.0}, out / "checkpoint.pt")
    res = _run("run", _config(tmp_path, FAKE), "--out", str(out), "--resume", "--quiet")
    assert res.exit_code == 0, res.output
    assert "records no config (written by an older version); resuming without checking" \
        in res.output
    assert json.loads((out / "metrics.json").read_text())["x"] == 20.0


def test_pde_params_typo_lists_the_pdes_valid_keys():
    _refused(_run("validate", "pinn_burgers", "--set", "workload.pde_params.nuu=0.1"),
             "workload.pde_params.nuu: unknown key (valid keys: grid_t, grid_x, nu); "
             "did you mean 'nu'?")
    _refused(_run("validate", "pinn_darcy", "--set", "workload.pde_params.nu=0.1"),
             "workload.pde_params.nu: unknown key (valid keys: ")


def test_empty_optimiser_section_is_refused_with_the_methods():
    _refused(_run("validate", "pinn_burgers", "--set", "workload.optim=null"),
             "workload.optim = None: optim must be a mapping naming its method (one of zo, "
             "subspace_lm, coordinate, first_order; default zo)")


def test_a_value_inside_the_optimiser_union_is_named_by_its_yaml_path():
    res = _run("validate", "pinn_burgers", "--set", "workload.optim.lr=-1")
    _refused(res, "workload.optim.lr = -1: Input should be greater than 0")
    assert "subspace_lm.lr" not in res.output
