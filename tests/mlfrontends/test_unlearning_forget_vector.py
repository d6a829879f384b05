"""Forget vectors on the digits classifier (mlfrontends.unlearning.forget_vector)."""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path

import pytest
import torch
import yaml
from pydantic import ValidationError

import photonic
from mlfrontends.unlearning import forget_vector as fv
from photonic.runio import RunContext, flatten_metrics

torch.set_num_threads(1)
CONFIG = Path(__file__).resolve().parents[2] / "configs" / "forget_vector.yaml"


@pytest.fixture(scope="module")
def digits():
    data = fv.load_digits_split(test_fraction=0.3, seed=0)
    model = fv.train_classifier(data, hidden=32, steps=300, lr=0.01, seed=0)
    return data, model


def test_loss_matches_hand_computation():
    logits_r = torch.tensor([[2.0, 0.0, 0.0]], dtype=torch.float64)
    logits_f = torch.tensor([[1.0, 3.0, 0.0], [5.0, 1.0, 2.0]], dtype=torch.float64)
    delta = torch.tensor([3.0, 4.0], dtype=torch.float64)
    loss = fv.forget_vector_loss(logits_r, torch.tensor([0]), logits_f, torch.tensor([0, 0]),
                                 delta, alpha=2.0, beta=0.5, tau=1.0, lam=0.1)
    ce = -math.log(math.exp(2) / (math.exp(2) + 2))
    margin = (max(1 - 3, -1.0) + max(5 - 2, -1.0)) / 2  # (−1 + 3) / 2
    assert float(loss) == pytest.approx(2 * ce + 0.5 * margin + 0.1 * 5.0, rel=1e-12)


def test_shifts_follow_the_batched_parameter_convention():
    lib = torch.randn(10, 64, dtype=torch.float64)
    shift = fv.ArithmeticShift(lib)
    w = torch.randn(3, 10, dtype=torch.float64)
    x = torch.randn(5, 64, dtype=torch.float64)
    out = torch.func.functional_call(shift, {"w": w}, (x,))
    assert out.shape == (3, 5, 64)
    torch.testing.assert_close(out[2], x + w[2] @ lib)
    plain = fv.InputShift()
    d = torch.randn(4, 64, dtype=torch.float64)
    torch.testing.assert_close(torch.func.functional_call(plain, {"delta": d}, (x,))[1],
                               x + d[1])


def test_mia_threshold_attacker():
    members = torch.tensor([0.9, 0.95, 0.99, 0.8])
    nonmembers = torch.tensor([0.3, 0.5, 0.6, 0.85])
    # best balanced threshold is 0.8 (tpr 1, tnr 3/4); forget confidences below it count
    forget = torch.tensor([0.1, 0.79, 0.8, 0.97])
    assert fv.mia_efficacy(members, nonmembers, forget) == 0.5


def test_zo_forget_vector_forgets_on_the_chip(digits):
    data, model = digits
    dev = photonic.DeviceParams(dac=photonic.ConverterParams(bits=8),
                                adc=photonic.ConverterParams(bits=8))
    noise = photonic.NoiseConfig(input_quantization=True, output_quantization=True)
    chip = photonic.convert_linear(copy.deepcopy(model), tile=16, device=dev, noise=noise)
    chip.requires_grad_(False)
    zero = torch.zeros(64, dtype=torch.float64)
    before = fv.evaluate(chip, data, (3,), zero)
    assert before["unlearning_accuracy"] < 0.1 and before["retain_accuracy"] > 0.9
    cfg = fv.Config(kind="forget_vector", zo_steps=60, batch_retain=32, batch_forget=32,
                    zo={"q": 4, "lr": 0.02})
    shift = fv.InputShift()
    used = fv.optimise(chip, shift, data, (3,), cfg, method="zo", budget=cfg.budget, seed=0)
    assert used == cfg.budget == 60 * 8 * 64
    after = fv.evaluate(chip, data, (3,), shift.shift().detach())
    assert after["unlearning_accuracy"] > 0.9
    assert after["retain_accuracy"] > 0.85
    assert after["forget_test_accuracy"] < 0.2
    assert after["mia_efficacy"] > 0.9


def test_config_errors_and_shipped_config_validates():
    raw = yaml.safe_load(CONFIG.read_text())
    cfg = fv.Config(**raw["workload"])
    assert cfg.budget == cfg.zo_steps * 2 * cfg.zo.q * (cfg.batch_retain + cfg.batch_forget)
    with pytest.raises(ValidationError, match="need two distinct digits"):
        fv.Config(kind="forget_vector", pair_classes=(2, 2))
    with pytest.raises(ValidationError, match="extra_forbidden|Extra inputs"):
        fv.Config(kind="forget_vector", zo={"qq": 3})


def test_run_writes_the_contract_files(tmp_path):
    cfg = fv.Config(kind="forget_vector", n_seeds=2, pretrain_steps=150, zo_steps=2,
                    library_steps=5, batch_retain=16, batch_forget=16, zo={"q": 2})
    ctx = RunContext(out=tmp_path, seed=3, show_progress=False)
    metrics = flatten_metrics(fv.run(cfg, ctx))
    for arm in (*fv.ARMS_CLASS, *fv.ARMS_PAIR):
        assert f"{arm}.unlearning_accuracy" in metrics and f"{arm}.mia_efficacy_std" in metrics
    assert metrics["zo_vector.forward_queries"] == cfg.budget
    assert metrics["fo_vector.forward_queries"] <= cfg.budget
    assert metrics["original.forward_queries"] == 0
    assert metrics["seeds.seed4.zo_vector.delta_norm"] > 0
    d = [metrics[f"seeds.seed{s}.zo_vector.unlearning_accuracy"]
         - metrics[f"seeds.seed{s}.fo_vector.unlearning_accuracy"] for s in (3, 4)]
    key = "comparisons.zo_vector_vs_fo_vector.unlearning_accuracy"
    assert metrics[f"{key}.mean_diff"] == pytest.approx(sum(d) / 2)
    lo, hi = metrics[f"{key}.ci95_low"], metrics[f"{key}.ci95_high"]
    assert min(d) - 1e-12 <= lo <= hi <= max(d) + 1e-12
    report = (tmp_path / "report.md").read_text()
    assert "forget digit 3" in report and (tmp_path / "deltas.png").exists()
    json.dumps(metrics)
