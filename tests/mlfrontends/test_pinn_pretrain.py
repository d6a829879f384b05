"""Electronic pre-training (workload.pretrain): a digital first-order run programmed onto
the chip before the chip's forward-only training; its validation, exactness and resume."""

import pytest
from pydantic import ValidationError

import photonic
from mlfrontends.pinn.pretrain import CHECKPOINT, digital_config
from mlfrontends.pinn.workload import Config, run
from photonic.runio import Interrupted, RunContext

BURGERS_SMALL = {"grid_x": 17, "grid_t": 5}


class _StopAfter(RunContext):
    """A run whose user asks it to stop from its n-th checkpoint write on."""

    def __init__(self, *args, stop_after: int, **kw):
        super().__init__(*args, **kw)
        self.stop_after, self.writes = stop_after, 0

    def save_checkpoint(self, state, name="checkpoint.pt"):
        path = super().save_checkpoint(state, name)
        self.writes += 1
        self.stop_requested = self.writes >= self.stop_after
        return path


def _cfg(**kw) -> Config:
    base = dict(iterations=2, collocation_points=4, eval_every=1, checkpoint_every=1,
                threads=1, pde_params=BURGERS_SMALL,
                model={"widths": [2, 8, 8, 1], "tt_layers": {}, "execution": "phase",
                       "tile": 4, "precision": "float64"},
                optim={"method": "subspace_lm", "lr": 1e-2, "lm_tries": 2},
                collocation={"sampling": "rad", "pool": 16, "refresh_every": 2},
                pretrain={"iterations": 6, "collocation_points": 8, "eval_every": 2,
                          "lr": 1e-2})
    return Config(**{**base, **kw})


def _ctx(path, noise="ideal", cls=RunContext, **kw):
    return cls(path, show_progress=False, noise=photonic.NoiseConfig.from_spec(noise), **kw)


def test_the_pretraining_run_is_digital_first_order_and_keeps_the_problem():
    cfg = _cfg(causal={"eps": 1.0, "bins": 4})
    d = digital_config(cfg)
    assert (d.model.execution, d.model.precision, d.estimator.kind, d.optim.method) == (
        "digital", "float64", "autograd", "first_order")
    assert d.causal is None and d.finish is None and d.pretrain is None
    assert (d.iterations, d.collocation_points, d.optim.lr) == (6, 8, 1e-2)
    assert d.model.widths == [2, 8, 8, 1] and d.collocation == cfg.collocation


def test_pretrain_is_refused_where_it_means_nothing():
    with pytest.raises(ValidationError, match="pretrain is for forward-only training on the "
                       "chip .*got 'digital'"):
        _cfg(model={"execution": "digital"})
    with pytest.raises(ValidationError, match="pretrain.collocation_points = 32 must be ≤ "
                       "collocation.pool = 16"):
        _cfg(pretrain={"iterations": 2, "collocation_points": 32})


def test_programming_is_exact_on_an_ideal_chip_and_costs_accuracy_on_a_quantised_one(
        tmp_path):
    """On an ideal chip the programmed meshes realise the pre-trained weights exactly (the
    chip's first evaluation equals the digital error); with 4-bit phase DACs they do not."""
    m = run(_cfg(), _ctx(tmp_path / "ideal"))
    p = m["pretrain"]
    assert p["iterations"] == 6 and p["method"] == "first_order"
    assert p["rel_l2_programmed"] == pytest.approx(p["rel_l2"], rel=1e-9)
    assert m["wall_s"] > p["wall_s"] > 0
    d = photonic.DeviceParams()
    coarse = d.model_copy(update={"phase_dac": d.phase_dac.model_copy(update={"bits": 4})})
    q = run(_cfg(), _ctx(tmp_path / "q4", noise={"phase_quantization": True}, device=coarse))
    assert q["pretrain"]["rel_l2"] == pytest.approx(p["rel_l2"], rel=1e-12)
    assert abs(q["pretrain"]["rel_l2_programmed"] - p["rel_l2"]) > 1e-3
    # strong thermal crosstalk (0.05 to each neighbour): programmed around it, the chip
    # again realises the pre-trained network (uncompensated it is off by far more)
    hot = d.model_copy(update={"crosstalk": photonic.CrosstalkParams(model="nearest",
                                                                     coefficient=0.05)})
    x = run(_cfg(), _ctx(tmp_path / "xt", noise={"crosstalk": True}, device=hot))
    assert x["pretrain"]["rel_l2_programmed"] == pytest.approx(p["rel_l2"], rel=1e-2)


def test_an_interrupted_pretraining_resumes_to_the_uninterrupted_run(tmp_path):
    full = run(_cfg(), _ctx(tmp_path / "full"))
    ctx = _ctx(tmp_path / "cut", cls=_StopAfter, stop_after=1)
    with pytest.raises(Interrupted, match="iteration 2"):
        run(_cfg(), ctx)
    assert (tmp_path / "cut" / CHECKPOINT).exists()
    assert not (tmp_path / "cut" / "checkpoint.pt").exists()
    resumed = run(_cfg(), _ctx(tmp_path / "cut", resume=True))
    for key in ("rel_l2", "iterations", "forward_evals", "final_loss"):
        assert resumed[key] == full[key], key
    assert resumed["pretrain"]["rel_l2"] == full["pretrain"]["rel_l2"]
    # a finished run resumed: the pre-training is restored, not repeated
    again = run(_cfg(), _ctx(tmp_path / "cut", resume=True))
    assert again["pretrain"]["wall_s"] == resumed["pretrain"]["wall_s"]
    assert again["rel_l2"] == resumed["rel_l2"]
