"""mlfrontends.decoding: END / DoLa scores against hand computations, END(α=0) ≡ greedy,
and a reduced smoke run of the ``decode`` workload."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
import yaml

import photonic
from mlfrontends.decoding.methods import (
    END,
    DoLa,
    Greedy,
    cross_layer_entropy,
    dola_scores,
    early_exit_logits,
    end_scores,
    js_divergence,
)
from mlfrontends.decoding.workload import Config, mean_ci, run
from mlfrontends.lm.data import build_benchmark
from mlfrontends.lm.metrics import generate
from mlfrontends.lm.model import CausalLM, LMConfig
from mlfrontends.lm.tokenizer import WordTokenizer
from photonic.runio import RunContext, flatten_metrics

torch.set_num_threads(1)
ROOT = Path(__file__).resolve().parents[2]


def test_end_scores_hand_example():
    # Two layers in L (an upper layer, then the final one), three candidate tokens.
    z = torch.tensor([[0.0, 0.0, 0.0], [2.0, 1.0, 0.0]])
    # p_0 = (1/3, 1/3, 1/3); p_N = softmax(2, 1, 0) = (0.665241, 0.244728, 0.090031).
    # q(x) = (p_0(x), p_N(x)) / (p_0(x) + p_N(x)); H = −Σ q ln q:
    # token 0: q = (0.333809, 0.666191), H = 0.636844
    # token 1: q = (0.576640, 0.423360), H = 0.681353
    # token 2: q = (0.787345, 0.212655), H = 0.517454
    # (an entropy over the raw logits would give 0.365334, 0.582203, ln 2 instead)
    H = torch.tensor([0.636844, 0.681353, 0.517454])
    torch.testing.assert_close(cross_layer_entropy(z), H, atol=1e-6, rtol=0)
    logp_final = torch.log(torch.tensor([0.665241, 0.244728, 0.090031]))
    torch.testing.assert_close(end_scores(z, alpha=1.0, r=0.0), logp_final - H,
                               atol=1e-5, rtol=0)
    # r = 0.5: only token 0 (p_N ≥ 0.332620) is in the head set; the others keep log p_N
    torch.testing.assert_close(end_scores(z, alpha=1.0, r=0.5),
                               torch.stack([logp_final[0] - H[0], *logp_final[1:]]),
                               atol=1e-5, rtol=0)


def test_end_entropy_is_over_per_layer_probabilities():
    # Adding a constant to one layer's logits leaves its next-token distribution, and so END,
    # unchanged; an entropy over raw logits would move (here by far more than the tolerance).
    z = torch.tensor([[0.3, -1.0, 2.0, 0.5], [1.0, 0.0, -0.5, 2.5], [2.0, 1.5, -1.0, 0.0]])
    shifted = z + torch.tensor([[7.0], [-3.0], [0.0]])
    torch.testing.assert_close(cross_layer_entropy(shifted), cross_layer_entropy(z))
    torch.testing.assert_close(end_scores(shifted, alpha=3.0, r=0.0),
                               end_scores(z, alpha=3.0, r=0.0))
    # H is bounded by ln |L| (uniform over layers: the token's probability never changed)
    same = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
    torch.testing.assert_close(cross_layer_entropy(same), torch.full((2,), math.log(2)))
    # A token whose probability rose late (low H) overtakes one that was high all along:
    # p_0 = softmax(2, 0, 0), p_N = softmax(2.2, 2, 0).
    z2 = torch.tensor([[2.0, 0.0, 0.0], [2.2, 2.0, 0.0]])
    p0 = [math.exp(2) / (math.exp(2) + 2), 1 / (math.exp(2) + 2)]
    pn = [math.exp(2.2) / (math.exp(2.2) + math.exp(2) + 1),
          math.exp(2) / (math.exp(2.2) + math.exp(2) + 1)]

    def h(a: float, b: float) -> float:
        qa, qb = a / (a + b), b / (a + b)
        return -(qa * math.log(qa) + qb * math.log(qb))

    s = end_scores(z2, alpha=3.0, r=0.0)
    expect = [math.log(pn[0]) - 3 * h(p0[0], pn[0]), math.log(pn[1]) - 3 * h(p0[1], pn[1])]
    torch.testing.assert_close(s[:2], torch.tensor(expect), atol=1e-6, rtol=0)
    assert s.argmax() == 1 and z2[-1].argmax() == 0


def test_dola_scores_hand_example():
    zN = torch.tensor([math.log(3.0), 0.0])  # p_N = (3/4, 1/4)
    zJ = torch.tensor([[0.0, 0.0],  # p = (1/2, 1/2)
                       [math.log(3.0), 0.0]])  # identical to the final layer: JSD 0
    # m = (5/8, 3/8): KL(p_N‖m) = 0.035375, KL(p_0‖m) = 0.032269, JSD = 0.033822
    torch.testing.assert_close(js_divergence(zN, zJ), torch.tensor([0.033822, 0.0]),
                               atol=1e-6, rtol=0)
    s, m = dola_scores(zN, zJ, r=0.1)
    assert m.item() == 0
    torch.testing.assert_close(s, torch.tensor([math.log(1.5), math.log(0.5)]))
    s, _ = dola_scores(zN, zJ, r=0.5)  # head set p ≥ 0.375: token 1 is excluded
    assert s[0] == pytest.approx(math.log(1.5)) and s[1] == float("-inf")
    # the premature layer is chosen per position
    zN2 = torch.tensor([[math.log(3.0), 0.0], [0.0, 0.0]])
    zJ2 = torch.stack([torch.zeros(2, 2), torch.tensor([[math.log(3.0), 0.0], [2.0, 0.0]])])
    s2, m2 = dola_scores(zN2, zJ2, r=0.0)
    assert m2.tolist() == [0, 1]
    # position 1: p_N = (1/2, 1/2), p_M = softmax(2, 0) = (0.880797, 0.119203)
    torch.testing.assert_close(s2[1], torch.tensor([math.log(0.5 / 0.880797),
                                                    math.log(0.5 / 0.119203)]))


@pytest.fixture(scope="module")
def small():
    bench = build_benchmark()
    tok = WordTokenizer.from_texts(bench.texts())
    torch.manual_seed(0)
    model = CausalLM(LMConfig(vocab_size=len(tok), d_model=32, n_layers=3, n_heads=2, d_ff=64))
    # Larger random weights make the layers disagree, so END's entropy term matters.
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(8.0)
    return bench, tok, model.eval()


def test_end_with_alpha_zero_reproduces_greedy_token_for_token(small):
    bench, tok, model = small
    qs = [it.heldout_question for it in bench.items[::20]]
    greedy = generate(model, tok, qs, scorer=Greedy(), max_new_tokens=12)
    assert greedy == generate(model, tok, qs, max_new_tokens=12)
    for r in (0.0, 0.01):
        assert generate(model, tok, qs, scorer=END((1, 2), 0.0, r), max_new_tokens=12) == greedy
    # not vacuous: a large α changes some generations, and DoLa differs too
    assert generate(model, tok, qs, scorer=END((0, 1, 2), 50.0, 0.0),
                    max_new_tokens=12) != greedy
    assert generate(model, tok, qs, scorer=DoLa((0, 1), 0.0), max_new_tokens=12) != greedy


def test_rules_on_model_hidden_states(small):
    _, tok, model = small
    ids = torch.randint(0, len(tok), (2, 6), generator=torch.Generator().manual_seed(0))
    hidden = model(ids).hidden_states
    z = early_exit_logits(model, hidden, (1, 3))
    torch.testing.assert_close(z[-1], model(ids).logits)
    torch.testing.assert_close(END((1,), 0.7, 0.0)(model, hidden),
                               end_scores(z, alpha=0.7, r=0.0))
    with pytest.raises(ValueError, match=r"layers \[4\] out of range: valid early-exit layers "
                                         r"are 0..3"):
        early_exit_logits(model, hidden, (4,))
    assert END((1, 2, 3), 1.0, 0.0).extra_projections_per_token(3) == 2
    assert DoLa((0, 1, 2), 0.1).extra_projections_per_token(3) == 3
    assert Greedy().extra_projections_per_token(3) == 0


def test_mean_ci():
    m, lo, hi = mean_ci([0.1, 0.2, 0.3])
    # t_{0.975, 2} = 4.302653; s = 0.1; half width = 4.302653 · 0.1 / √3
    assert m == pytest.approx(0.2)
    assert hi - m == pytest.approx(4.302653 * 0.1 / math.sqrt(3), rel=1e-6)
    assert m - lo == pytest.approx(hi - m)
    assert mean_ci([0.5]) == (0.5, None, None)


def test_config_rejects_layers_out_of_range():
    with pytest.raises(ValueError, match=r"dola.premature_layers = \[0, 4\]: layers \[4\] out of "
                                         r"range; the model has 4 layers, so valid values are "
                                         r"0..3"):
        Config(kind="decode", dola={"premature_layers": [0, 4]})
    with pytest.raises(ValueError, match="extra"):
        Config(kind="decode", alpha=1.0)
    with pytest.raises(ValueError, match=r"seeds = \[0, 1, 0\]: values must be distinct"):
        Config(kind="decode", seeds=[0, 1, 0])


def test_decode_workload_smoke(tmp_path):
    """The shipped decode_end.yaml at reduced size (2 seeds, tiny model, few questions)."""
    shipped = yaml.safe_load((ROOT / "configs" / "decode_end.yaml").read_text())["workload"]
    cfg = Config.model_validate(shipped)
    assert len(cfg.seeds) >= 5
    cfg = Config.model_validate({
        **shipped, "seeds": [0, 1], "n_author_items": 12, "n_general_items": 8,
        "max_new_tokens": 10, "end": {**shipped["end"], "layers": [1], "alphas": [0.0, 3.0]},
        "dola": {**shipped["dola"], "premature_layers": [0, 1]},
        "train": {"epochs": 2, "partial_epochs": 1, "warmup_steps": 5},
        "lm": {"d_model": 16, "n_layers": 2, "n_heads": 2, "d_ff": 16},
        "cache_dir": str(tmp_path / "cache")})
    ctx = RunContext(out=tmp_path / "out", device=photonic.DeviceParams(),
                     noise=photonic.NoiseConfig.ideal(), provenance={"preset": "ideal"},
                     show_progress=False)
    metrics = flatten_metrics(run(cfg, ctx))
    assert metrics["dataset_hash"] == build_benchmark().hash
    for chip in ("digital", "ideal"):
        for role in ("partial", "target"):
            for label, extra in (("greedy", 0), ("dola", 2), ("end_a0", 1), ("end_a3", 1)):
                key = f"{chip}.{role}.{label}"
                assert metrics[f"{key}.extra_projections_per_token"] == extra
                for m in ("mc_accuracy", "exact_match", "general_mc_accuracy",
                          "general_exact_match"):
                    assert 0.0 <= metrics[f"{key}.{m}"] <= 1.0
                    lo, hi = metrics[f"{key}.{m}_ci95_low"], metrics[f"{key}.{m}_ci95_high"]
                    assert lo <= metrics[f"{key}.{m}"] <= hi
                # END with α = 0 is greedy: identical on every seed
                if label == "end_a0":
                    assert metrics[f"{key}.exact_match_delta_vs_greedy"] == 0.0
                    assert metrics[f"{key}.mc_accuracy_delta_vs_greedy"] == 0.0
    # an ideal chip realises the weights exactly: same accuracies as digital
    for role in ("partial", "target"):
        for m in ("mc_accuracy", "exact_match"):
            assert metrics[f"ideal.{role}.dola.{m}"] == metrics[f"digital.{role}.dola.{m}"]
    # energy per token grows with the extra vocabulary projections
    e = {lab: metrics[f"ideal.target.{lab}.energy_pj_per_token"] for lab in ("greedy", "dola")}
    assert e["dola"] > e["greedy"] > 0
    assert "digital.target.greedy.energy_pj_per_token" not in metrics
    report = (tmp_path / "out" / "report.md").read_text()
    assert "| ideal | target | end_a3 | 1 |" in report
    assert (tmp_path / "out" / "decode_accuracy.png").stat().st_size > 0
    json.dumps(metrics)
