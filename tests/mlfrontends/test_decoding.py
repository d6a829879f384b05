"""mlfrontends.decoding: END / DoLa scores against hand computations, END(α=0) ≡ greedy,
and a reduced smoke run of the ``decode`` workload."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
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
from mlfrontends.decoding.stats import SignTest, cluster_bootstrap, holm, sign_test
from mlfrontends.decoding.workload import Config, compare, contains_words, run
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


def test_sign_test_exact_and_its_floor():
    # 9 better, 1 worse, ties dropped: p = 2 · P(X ≤ 1 | n = 10) = 2 · 11 / 1024
    d = np.array([1] * 9 + [-1] + [0] * 40)
    st = sign_test(d)
    assert (st.n_better, st.n_worse, st.n_discordant) == (9, 1, 10)
    assert st.p == pytest.approx(22 / 1024)
    assert st.p_min == pytest.approx(2 / 1024)
    # all of one sign: p equals the floor 2 · 2^−n
    assert sign_test(np.array([1, 1, 1, 0])).p == pytest.approx(0.25)
    assert sign_test(np.zeros(5)) == SignTest(0, 0, 1.0, 1.0)


def test_holm_step_down():
    # sorted 0.01·3 = 0.03, 0.03·2 = 0.06, 0.04·1 = 0.04 → monotone 0.06
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])


def test_cluster_bootstrap_resamples_seeds():
    # Seed 0 gains on every item, seed 1 loses on every item: resampling seeds gives means
    # −1, 0, 1 with probabilities 1/4, 1/2, 1/4, so a 95 % interval spans [−1, 1]; an
    # item-only bootstrap would report exactly 0.
    d = np.stack([np.ones(50), -np.ones(50)])
    assert cluster_bootstrap(d, level=0.95, n_boot=2000, seed=0) == (-1.0, 1.0)
    lo, hi = cluster_bootstrap(np.full((3, 40), 0.25), level=0.99, n_boot=500, seed=0)
    assert lo == hi == 0.25
    with pytest.raises(ValueError, match=r"level = 1.5: must lie in \(0, 1\)"):
        cluster_bootstrap(d, level=1.5, n_boot=10, seed=0)


def test_compare_planted_gain_and_null():
    rng = np.random.default_rng(0)
    greedy = (rng.random((5, 200)) < 0.5).astype(float)
    better = greedy.copy()
    better[:, :30] = 1.0  # the rule fixes items 0..29 of every seed, never hurts
    outcomes = {("digital", "target", "facts", "greedy", "exact_match"): greedy,
                ("digital", "target", "facts", "end_a3", "exact_match"): better,
                ("digital", "target", "facts", "dola", "exact_match"): greedy.copy()}
    rows = compare(outcomes, family_alpha=0.05, n_bootstrap=2000)
    by_rule = {r["rule"]: r for r in rows}
    gain, null = by_rule["end_a3"], by_rule["dola"]
    n = int((1 - greedy[:, :30]).sum())
    assert (gain["n_better"], gain["n_worse"]) == (n, 0)
    assert gain["delta"] == pytest.approx(n / 1000)
    assert gain["sign_p"] == pytest.approx(2 * 0.5 ** n) == gain["sign_p_min"]
    assert gain["sign_p_holm"] == pytest.approx(min(1.0, 2 * gain["sign_p"]))
    assert gain["significant"] and gain["delta_ci_low"] > 0
    assert gain["ci_level"] == pytest.approx(1 - 0.05 / 2)
    assert null["delta"] == 0.0 and null["sign_p"] == 1.0 and not null["significant"]


def test_contains_words():
    assert contains_words([5, 1, 2, 3], [2, 3]) and not contains_words([5, 2, 1, 3], [2, 3])
    assert not contains_words([2], [2, 3])


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
        **shipped, "seeds": [0, 1], "digital": True, "models": ["partial", "target"],
        "n_author_items": 12, "n_general_items": 8,
        "max_new_tokens": 10, "end": {**shipped["end"], "layers": [1], "alphas": [0.0, 3.0]},
        "dola": {**shipped["dola"], "premature_layers": [0, 1]},
        "train": {"epochs": 2, "partial_epochs": 1, "warmup_steps": 5},
        "lm": {"d_model": 16, "n_layers": 2, "n_heads": 2, "d_ff": 16},
        "cache_dir": str(tmp_path / "cache")})
    ctx = RunContext(out=tmp_path / "out", device=photonic.DeviceParams(),
                     noise=photonic.NoiseConfig.ideal(), provenance={"preset": "ideal"},
                     show_progress=False)
    metrics = flatten_metrics(run(cfg, ctx))
    assert metrics["n_comparisons"] == 2 * 2 * 2 * 3 * 3  # chips × models × sets × measures × rules
    assert metrics["train.seed1.benchmark_seed"] == 1
    assert metrics["train.seed0.dataset_hash"] == build_benchmark().hash
    assert metrics["train.seed1.dataset_hash"] != metrics["train.seed0.dataset_hash"]
    for chip in ("digital", "ideal"):
        for role in ("partial", "target"):
            for set_name in ("facts", "general"):
                for m in ("value_match", "exact_match", "mc_accuracy"):
                    base = f"{chip}.{role}.{set_name}"
                    g = metrics[f"{base}.greedy.{m}.mean"]
                    assert 0.0 <= g <= 1.0
                    # END with α = 0 is greedy: identical on every item of every seed
                    assert metrics[f"{base}.end_a0.{m}.mean"] == g
                    assert metrics[f"{base}.end_a0.{m}.n_better"] == 0
                    assert metrics[f"{base}.end_a0.{m}.n_worse"] == 0
                    assert metrics[f"{base}.end_a0.{m}.sign_p"] == 1.0
                    d = metrics[f"{base}.dola.{m}.delta"]
                    assert (metrics[f"{base}.dola.{m}.delta_ci_low"] <= d
                            <= metrics[f"{base}.dola.{m}.delta_ci_high"])
                    assert metrics[f"{base}.dola.{m}.sign_p_holm"] >= \
                        metrics[f"{base}.dola.{m}.sign_p"]
                    # exact match implies the value is in the answer
                    assert metrics[f"{base}.greedy.value_match.mean"] >= \
                        metrics[f"{base}.greedy.exact_match.mean"]
    # an ideal chip realises the weights exactly: same outcomes as digital
    for key, v in metrics.items():
        if key.startswith("ideal.") and key.endswith((".mean", ".n_better", ".n_worse")):
            assert v == metrics["digital." + key.removeprefix("ideal.")], key
    # energy per token grows with the extra vocabulary projections
    e = {lab: metrics[f"ideal.target.cost.{lab}.energy_pj_per_token"]
         for lab in ("greedy", "dola")}
    assert e["dola"] > e["greedy"] > 0
    assert metrics["ideal.target.cost.dola.extra_projections_per_token"] == 2
    assert "digital.target.cost.greedy.energy_pj_per_token" not in metrics
    report = (tmp_path / "out" / "report.md").read_text()
    assert "## Factual QA" in report and "## General knowledge (trained phrasing)" in report
    assert "| ideal | target | end_a3 | 1 |" in report
    assert (tmp_path / "out" / "decode_deltas.png").stat().st_size > 0
    json.dumps(metrics)
