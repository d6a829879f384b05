"""Multi-seed runs: seed specs, headline statistics, a real fan-out of a tiny config over a
process pool with its summary, resume, failed seeds, and the PINN's per-seed curves."""

from __future__ import annotations

import json
import shutil
import statistics

import numpy as np
import pytest
import typer
import yaml
from typer.testing import CliRunner

from photonic.cli import app, find_config
from photonic.cli import run as cli_run
from photonic.multiseed import (
    SeedsInputError,
    _pinn_curves,
    headline_metrics,
    parse_seeds,
    run_seeds,
    seed_stats,
)

runner = CliRunner()
TINY = ["workload.rows=4", "workload.cols=4", "workload.tile=4", "workload.batch=8"]
TINY_ARGS = [a for s in TINY for a in ("--set", s)]
RULE = ("write N, LOW-HIGH (inclusive) or a comma-separated list of these, with integers ≥ 0, "
        "e.g. 3, 0-4 or 0,2,5")


# --------------------------------------------------------------------------- seed specs
@pytest.mark.parametrize("spec,seeds", [
    ("3", [3]), ("0-4", [0, 1, 2, 3, 4]), ("0,2,5", [0, 2, 5]), ("0-2, 7", [0, 1, 2, 7]),
    ("5,1", [5, 1]), ("4-4", [4]),
])
def test_seed_specs(spec, seeds):
    assert parse_seeds(spec) == seeds


@pytest.mark.parametrize("spec,message", [
    ("4-0", "--seeds '4-0': range 4-0 runs backwards; write LOW-HIGH with LOW ≤ HIGH, e.g. 0-4"),
    ("-1", f"--seeds '-1': '-1' is not a seed; {RULE}"),
    ("1.5", f"--seeds '1.5': '1.5' is not a seed; {RULE}"),
    ("0-", f"--seeds '0-': '0-' is not a seed; {RULE}"),
    ("0,,1", f"--seeds '0,,1': an empty item; {RULE}"),
    ("0-2,1", "--seeds '0-2,1': seed(s) [1] given more than once; each seed runs once"),
])
def test_bad_seed_specs_name_the_value_and_the_rule(spec, message):
    with pytest.raises(SeedsInputError) as e:
        parse_seeds(spec)
    assert str(e.value) == message


def test_bad_seed_spec_and_stray_workers_are_exit_2_before_any_work(tmp_path):
    res = runner.invoke(app, ["run", "mesh_demo", "--seeds", "3-1", "--out", str(tmp_path)])
    assert res.exit_code == 2
    assert "--seeds '3-1': range 3-1 runs backwards" in res.output
    res = runner.invoke(app, ["run", "mesh_demo", "--workers", "2", "--out", str(tmp_path)])
    assert res.exit_code == 2 and "give --seeds too" in res.output
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------- statistics
def test_headline_metrics_declared_and_by_the_default_rule():
    assert headline_metrics("pinn", {"rel_l2": 0.1, "wall_s": 3.0, "iterations": 4}) == {
        "rel_l2": "min", "wall_s": "min"}
    flat = {"arm.test_error": 0.1, "final_loss": 1.0, "chip.fidelity_mean": 0.9,
            "forget_accuracy": 0.5, "num_mzis": 28, "diverged": False, "name": "x",
            "model_utility": 0.4, "wall_s": 2.0}
    assert headline_metrics("not_declared", flat) == {
        "arm.test_error": "min", "final_loss": "min", "chip.fidelity_mean": "max",
        "model_utility": "max", "wall_s": "min"}


def test_worst_is_the_worse_end_for_the_direction():
    values = [0.1, 0.3, None, 0.2, "inf"]  # JSON null (NaN) and "inf" are not finite
    assert seed_stats(values, "min") == {"median": 0.2, "worst": 0.3, "best": 0.1,
                                         "spread": pytest.approx(0.2), "n": 3}
    assert seed_stats(values, "max")["worst"] == 0.1
    assert seed_stats(values, "max")["best"] == 0.3
    assert np.isnan(seed_stats([None], "min")["median"])


def test_a_seed_runs_on_one_thread_and_the_caller_keeps_its_own(tmp_path):
    import torch

    from photonic.executors import limited_threads

    before = torch.get_num_threads()
    seen = []
    torch.set_num_threads(2)
    try:
        run_seeds(lambda config, **kw: seen.append(torch.get_num_threads()), config="x.yaml",
                  seeds="0", kind="mesh_demo", out=tmp_path, executor="inprocess",
                  show_progress=False)
        assert seen == [1] and torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
    with pytest.raises(ValueError, match="threads=0: need at least one thread"):
        with limited_threads(0):
            pass


# --------------------------------------------------------------------------- real runs
@pytest.fixture(scope="module")
def three_seeds(tmp_path_factory):
    """mesh_demo at 4×4 over seeds 0-2 in a spawned worker process (one: the pool is the
    sweep's, whose parallel runs its own tests cover; each worker costs an import)."""
    out = tmp_path_factory.mktemp("multiseed") / "mesh"
    res = runner.invoke(app, ["run", "mesh_demo", "--seeds", "0-2", "--workers", "1",
                              "--out", str(out), "--quiet", *TINY_ARGS])
    return out, res


def _metrics(out, seed):
    return json.loads((out / f"seed_{seed}" / "metrics.json").read_text())


def test_seeds_run_on_a_process_pool_into_complete_run_folders(three_seeds, tmp_path):
    out, res = three_seeds
    assert res.exit_code == 0, res.output
    for s in (0, 1, 2):
        d = out / f"seed_{s}"
        for f in ("config.resolved.yaml", "metrics.json", "report.md", "run.log"):
            assert (d / f).is_file(), f"seed {s}: {f}"
        resolved = yaml.safe_load((d / "config.resolved.yaml").read_text())
        assert resolved["seed"] == s and resolved["workload"]["rows"] == 4
        assert resolved["resolved"]["overrides"] == [*TINY, f"seed={s}"]
    fidelity = [_metrics(out, s)["fidelity"] for s in (0, 1, 2)]
    assert len(set(fidelity)) == 3 and all(0.9 < f < 1 for f in fidelity)  # noisy chips
    # a seed's folder is what a single run with that seed gives, bit for bit
    single = runner.invoke(app, ["run", "mesh_demo", "--set", "seed=1", "--out", str(tmp_path),
                                 "--quiet", *TINY_ARGS])
    assert single.exit_code == 0, single.output
    assert json.loads((tmp_path / "metrics.json").read_text())["fidelity"] == fidelity[1]


def test_summary_statistics_equal_those_of_the_per_seed_metrics(three_seeds):
    out, _ = three_seeds
    summary = json.loads((out / "summary.json").read_text())
    fidelity = [_metrics(out, s)["fidelity"] for s in (0, 1, 2)]
    error = [_metrics(out, s)["output_rel_error"] for s in (0, 1, 2)]
    assert summary["fidelity.median"] == statistics.median(fidelity)
    assert summary["fidelity.worst"] == min(fidelity)  # higher is better
    assert summary["fidelity.spread"] == max(fidelity) - min(fidelity)
    assert summary["output_rel_error.worst"] == max(error)  # lower is better
    assert summary["output_rel_error.median"] == statistics.median(error)
    assert [summary[f"fidelity.seed_{s}"] for s in (0, 1, 2)] == fidelity
    assert summary["seeds"] == "0,1,2" and summary["seeds_finished"] == 3
    md = (out / "summary.md").read_text()
    assert f"| **worst** | {min(fidelity):.4g} |" in md
    assert "| [2](seed_2/report.md) |" in md
    assert "Reproduce: `photonic-sim run mesh_demo --seeds 0-2 --set workload.rows=4 " in md
    assert (out / "seed_curves.png").stat().st_size > 1000


def test_resume_skips_finished_seeds_and_runs_the_others(three_seeds, tmp_path):
    src, _ = three_seeds
    out = tmp_path / "mesh"
    shutil.copytree(src, out)
    seed1 = _metrics(out, 1)
    (out / "seed_1" / "metrics.json").unlink()  # seed 1 "killed" before it finished
    stamps = {s: (out / f"seed_{s}" / "metrics.json").stat().st_mtime_ns for s in (0, 2)}
    calls = []

    def failing(config, **kw):
        calls.append(kw["set_"][-1])
        raise typer.Exit(3)

    kw = dict(config=str(find_config("mesh_demo")), sets=TINY, seeds="0-2", kind="mesh_demo",
              out=out, resume=True, executor="inprocess", show_progress=False)
    res = run_seeds(failing, **kw)
    assert calls == ["seed=1"] and res.skipped == [0, 2] and res.failed == {1: (3, "Exit: 3")}
    assert json.loads((out / "summary.json").read_text())["seeds_finished"] == 2
    assert "Failed seeds (not in the statistics): 1 (exit 3" in (out / "summary.md").read_text()

    def counted(config, **kw):
        calls.append(kw["set_"][-1])
        cli_run(config, **kw)

    calls.clear()
    res = run_seeds(counted, **kw)
    assert calls == ["seed=1"] and res.ran == [1] and res.failed == {}
    assert _metrics(out, 1) | {"wall_s": 0} == seed1 | {"wall_s": 0}
    assert {s: (out / f"seed_{s}" / "metrics.json").stat().st_mtime_ns for s in (0, 2)} == stamps
    # everything finished: the CLI's --resume runs nothing
    again = runner.invoke(app, ["run", "mesh_demo", "--seeds", "0-2", "--resume", "--quiet",
                                "--out", str(out), *TINY_ARGS])
    assert again.exit_code == 0, again.output
    assert "seeds run [], finished before [0, 1, 2]" in again.output
    # resuming with other overrides would mix two experiments: refused
    other = runner.invoke(app, ["run", "mesh_demo", "--seeds", "0-2", "--resume",
                                "--out", str(out), "--set", "workload.rows=5"])
    assert other.exit_code == 2 and "Resume with the same config and --set values" in other.output


def test_pinn_seeds_overlay_their_curves_from_the_checkpoints(tmp_path):
    """A tiny digital PINN over seeds 3 and 5: the summary's curves are the runs' own."""
    sets = ["workload.iterations=4", "workload.finish=null", "workload.pretrain=null",
            "workload.collocation_points=16",
            "workload.eval_every=2", "workload.collocation.pool=256",
            "workload.model={arch: dense, widths: [2, 8, 8, 1], execution: digital}",
            "workload.optim.clamp_phases=false", "workload.optim.realised_directions=false"]
    res = run_seeds(cli_run, config=str(find_config("pinn_burgers")), sets=sets, seeds="3,5",
                    kind="pinn", out=tmp_path, executor="inprocess", show_progress=False)
    assert res.ran == [3, 5] and res.failed == {}
    rel = {s: _metrics(tmp_path, s)["rel_l2"] for s in (3, 5)}
    assert rel[3] != rel[5]
    assert res.summary["rel_l2.median"] == statistics.median(rel.values())
    assert res.summary["rel_l2.worst"] == max(rel.values())
    for s in (3, 5):
        curves = {c.name: c for c in _pinn_curves(tmp_path / f"seed_{s}")}
        test = curves["test error"]
        assert test.x.tolist() == [0, 2, 4] and test.y[-1] == rel[s]  # select: last
        assert curves["training loss"].x.tolist() == [1, 2, 3, 4]
        assert curves["training loss"].y[-1] == _metrics(tmp_path, s)["final_loss"]
    assert (tmp_path / "seed_curves.png").stat().st_size > 1000
