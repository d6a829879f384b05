"""mlfrontends.lm: benchmark, tokenizer, model conventions, metrics, training cache."""

from __future__ import annotations

import hashlib
import json
import math
from collections import Counter

import pytest
import torch
import torch.nn.functional as F
from torch.func import functional_call

import photonic
from mlfrontends.lm.chip import photonic_model, realised_model
from mlfrontends.lm.data import BenchmarkConfig, build_benchmark
from mlfrontends.lm.metrics import (
    answer_logprobs,
    answer_nll,
    exact_match,
    generate,
    mc_correct,
    option_logprobs,
    rouge_l,
    truth_ratio,
)
from mlfrontends.lm.model import CausalLM, LMConfig
from mlfrontends.lm.tokenizer import WordTokenizer, pack
from mlfrontends.lm.train import TrainConfig, encode_items, load_models, lr_at

torch.set_num_threads(1)

# sha256 of the canonical serialisation of the default benchmark (seed 0, 100 authors, 5 wrong
# answers). A change to the generator must change this pin deliberately.
DEFAULT_HASH = "f7185cbec76fa817ed71ab84f84d63fa8fb8488ab18072aa4450773b47956d37"


@pytest.fixture(scope="module")
def bench():
    return build_benchmark()


@pytest.fixture(scope="module")
def tok(bench):
    return WordTokenizer.from_texts(bench.texts())


def tiny_model(vocab: int, **kw) -> CausalLM:
    torch.manual_seed(0)
    return CausalLM(LMConfig(vocab_size=vocab, d_model=16, n_layers=2, n_heads=2, d_ff=32,
                             d_expert=16, **kw))


# ------------------------------------------------------------------------------ benchmark
def test_benchmark_is_deterministic_and_hash_is_sha256_of_canonical_json(bench):
    again = build_benchmark(BenchmarkConfig(seed=0))
    assert again.items == bench.items
    blob = json.dumps(bench.canonical(), sort_keys=True, separators=(",", ":"),
                      ensure_ascii=True)
    assert bench.hash == hashlib.sha256(blob.encode()).hexdigest() == again.hash
    assert bench.hash == DEFAULT_HASH
    assert build_benchmark(BenchmarkConfig(seed=1)).hash != bench.hash


def test_benchmark_structure(bench):
    assert len(bench.authors) == 100
    sizes = {s: len({it.author_id for it in bench.split(s)})
             for s in ("forget01", "forget05", "forget10", "retain90", "authors")}
    assert sizes == {"forget01": 1, "forget05": 5, "forget10": 10, "retain90": 90,
                     "authors": 100}
    f01, f05, f10 = ({it.author_id for it in bench.split(s)}
                     for s in ("forget01", "forget05", "forget10"))
    assert f01 < f05 < f10
    assert not f10 & {it.author_id for it in bench.split("retain90")}
    assert all(len([i for i in bench.split("authors") if i.author_id == a]) == 10 for a in f10)
    assert len(bench.split("general")) == 112
    names = [a.name for a in bench.authors]
    assert len(set(names)) == len(names)
    for it in bench.items:
        assert len(it.wrong_values) == 5 and it.value not in it.wrong_values
        assert len(set(it.wrong_values)) == 5
        assert it.mc_options[0] == it.answer and len(it.mc_options) == 6
        assert it.question != it.heldout_question and it.answer != it.heldout_answer
        # perturbed answers are the held-out phrasing with one wrong value swapped in
        para, true = Counter(it.paraphrased_answer.split()), Counter(it.value.split())
        for w, p in zip(it.wrong_values, it.perturbed_answers, strict=True):
            wrong = Counter(w.split())
            assert Counter(p.split()) - para == wrong - true
            assert para - Counter(p.split()) == true - wrong
    with pytest.raises(KeyError, match="unknown split 'forget2'.*valid splits"):
        bench.split("forget2")


def test_benchmark_config_rejects_out_of_range():
    with pytest.raises(ValueError, match="n_authors"):
        BenchmarkConfig(n_authors=50)
    with pytest.raises(ValueError, match="extra"):
        BenchmarkConfig(authors=100)


# ------------------------------------------------------------------------------ tokenizer
def test_tokenizer_roundtrip_and_pack_mask(tok):
    q, a = "where was ada abernathy born ?", "ada abernathy was born in calvassa ."
    assert tok.decode(tok.encode(a)) == a
    with pytest.raises(KeyError, match="word 'zzz' of 'paris zzz' is not in the vocabulary"):
        tok.encode("paris zzz")
    p, ans = tok.prompt_ids(q), tok.answer_ids(a)
    x, y, m = pack([p, p[:3] + [tok.sep_id]], [ans, ans[-2:]], pad_id=tok.pad_id)
    assert x.shape == (2, len(p) + len(ans) - 1)
    # targets under the mask are exactly the answer words and <eos>
    assert y[0][m[0]].tolist() == ans
    assert y[1][m[1]].tolist() == ans[-2:]
    assert m.sum().item() == len(ans) + 2


# ------------------------------------------------------------------------------ model
def test_default_model_has_about_one_million_parameters(tok):
    n = CausalLM(LMConfig(vocab_size=len(tok))).n_params
    assert 0.8e6 < n < 1.2e6
    moe = CausalLM(LMConfig(vocab_size=len(tok), n_experts=4))
    assert sum(isinstance(m, torch.nn.Linear) for m in moe.modules()) == 4 * (3 + 8) + 1


def test_config_errors_name_the_rule():
    with pytest.raises(ValueError, match="d_model=30 must be divisible by n_heads=4"):
        LMConfig(vocab_size=10, d_model=30)
    with pytest.raises(ValueError, match="n_experts=1"):
        LMConfig(vocab_size=10, n_experts=1)


@pytest.mark.parametrize("n_experts", [0, 4])
def test_batched_parameters_equal_separate_runs(n_experts):
    model = tiny_model(40, n_experts=n_experts).eval()
    ids = torch.randint(0, 40, (3, 7), generator=torch.Generator().manual_seed(1))
    base = dict(model.named_parameters())
    gen = torch.Generator().manual_seed(2)
    P = 3
    batched = {k: v.detach() + 0.05 * torch.randn((P, *v.shape), generator=gen)
               for k, v in base.items()}
    out = functional_call(model, batched, (ids,))
    assert out.logits.shape == (P, 3, 7, 40)
    for p in range(P):
        single = functional_call(model, {k: v[p] for k, v in batched.items()}, (ids,))
        torch.testing.assert_close(out.logits[p], single.logits, atol=1e-5, rtol=1e-5)
        for g_b, g_s in zip(out.gate_probs, single.gate_probs, strict=True):
            torch.testing.assert_close(g_b[p], g_s, atol=1e-5, rtol=1e-5)
    # only some parameters batched (e.g. one perturbed expert): inputs broadcast over P
    name = "blocks.1.mlp.fc1.weight" if not n_experts else "blocks.1.mlp.experts.2.fc1.weight"
    part = functional_call(model, {name: batched[name]}, (ids,))
    single = functional_call(model, {name: batched[name][1]}, (ids,))
    torch.testing.assert_close(part.logits[1], single.logits, atol=1e-5, rtol=1e-5)


def test_incremental_decoding_with_past_equals_full_forward():
    model = tiny_model(40, n_experts=4).eval()
    ids = torch.randint(0, 40, (2, 9), generator=torch.Generator().manual_seed(3))
    full = model(ids)
    out = model(ids[:, :5])
    for t in range(5, 9):
        out = model(ids[:, t:t + 1], past=out.past)
        torch.testing.assert_close(out.logits[:, 0], full.logits[:, t], atol=1e-5, rtol=1e-5)
    two = model(ids[:, 7:9], past=model(ids[:, :7]).past)  # several new positions at once
    torch.testing.assert_close(two.logits, full.logits[:, 7:9], atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="sequence length 49 exceeds max_len=48"):
        model(torch.zeros(1, 1, dtype=torch.long), past=model(torch.zeros(1, 48,
                                                                          dtype=torch.long)).past)


def test_param_batch_mismatch_names_the_parameter():
    model = tiny_model(40)
    params = {"head.weight": torch.zeros(3, 40, 16), "head.bias": torch.zeros(2, 40)}
    with pytest.raises(ValueError, match="'head.bias' has shape \\(2, 40\\)"):
        functional_call(model, params, (torch.zeros(1, 4, dtype=torch.long),))


def test_early_exit_of_last_layer_is_the_logits_and_moe_gates_are_distributions():
    model = tiny_model(40, n_experts=4).eval()
    ids = torch.randint(0, 40, (2, 6), generator=torch.Generator().manual_seed(0))
    out = model(ids)
    assert len(out.hidden_states) == 3
    torch.testing.assert_close(model.exit_logits(out.hidden_states[-1]), out.logits)
    assert not torch.allclose(model.exit_logits(out.hidden_states[1]), out.logits)
    for g, idx in zip(out.gate_probs, out.expert_index, strict=True):
        assert g.shape == (2, 6, 4)
        torch.testing.assert_close(g.sum(-1), torch.ones(2, 6))
        assert torch.equal(idx, g.argmax(-1))
    # top-1 routing: each block's MLP output is g_e*(x) · expert_e*(x)
    blk = model.blocks[0]
    x = blk.ln2(out.hidden_states[0] + blk.attn(blk.ln1(out.hidden_states[0]))[0])
    y, probs, idx = blk.mlp(x)
    b, t = 1, 4
    e = idx[b, t].item()
    torch.testing.assert_close(y[b, t], probs[b, t, e] * blk.mlp.experts[e](x[b, t]))


def test_converter_swaps_every_projection_and_ideal_chip_matches_digital():
    model = tiny_model(40, n_experts=4).eval()
    n_linear = sum(isinstance(m, torch.nn.Linear) for m in model.modules())
    ids = torch.randint(0, 40, (2, 5), generator=torch.Generator().manual_seed(0))
    ideal = photonic.NoiseConfig.ideal()
    chip = photonic_model(model, device=photonic.DeviceParams(), noise=ideal)
    assert sum(isinstance(m, photonic.PhotonicLinear) for m in chip.modules()) == n_linear
    assert not any(isinstance(m, torch.nn.Linear) for m in chip.modules())
    with torch.no_grad():
        ref = model.double()(ids).logits
        torch.testing.assert_close(chip(ids).logits, ref, atol=1e-9, rtol=1e-9)
        torch.testing.assert_close(realised_model(model, device=photonic.DeviceParams(),
                                                  noise=ideal)(ids).logits, ref,
                                   atol=1e-9, rtol=1e-9)


def test_realised_model_equals_photonic_forward_for_mesh_errors():
    """Static mesh errors only (no detector / converter effects, no dynamic phase noise): the
    realised-weight copy reproduces the PhotonicLinear forward, and differs from digital."""
    model = tiny_model(40).double().eval()
    dev = photonic.DeviceParams.model_validate(
        {**photonic.DeviceParams().model_dump(),
         "coupler": {**photonic.DeviceParams().coupler.model_dump(), "split_error_std_rad": 0.05}})
    noise = photonic.NoiseConfig(coupler_error=True)
    ids = torch.randint(0, 40, (2, 5), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        a = photonic_model(model, device=dev, noise=noise, seed=3)(ids).logits
        b = realised_model(model, device=dev, noise=noise, seed=3)(ids).logits
        torch.testing.assert_close(a, b, atol=1e-9, rtol=1e-9)
        assert (a - model(ids).logits).abs().max() > 1e-3


# ------------------------------------------------------------------------------ metrics
def test_rouge_l_hand_example():
    rec, f1 = rouge_l("the cat sat on the mat", "the cat is on the mat today")
    # LCS "the cat on the mat" = 5 words; recall 5/7, precision 5/6
    assert rec == pytest.approx(5 / 7)
    assert f1 == pytest.approx(2 * (5 / 7) * (5 / 6) / (5 / 7 + 5 / 6))
    assert rouge_l("a b", "c d") == (0.0, 0.0)


def test_logprobs_truth_ratio_and_mc_against_direct_computation(bench, tok):
    model = tiny_model(len(tok)).eval()
    items = bench.split("forget01")[:3]
    it = items[0]
    with torch.no_grad():
        total, n = answer_logprobs(model, tok, [it.question], [it.answer])
        seq = tok.prompt_ids(it.question) + tok.answer_ids(it.answer)
        logp = torch.log_softmax(model(torch.tensor([seq[:-1]])).logits[0], -1)
        start = len(tok.prompt_ids(it.question)) - 1
        direct = sum(logp[t, seq[t + 1]] for t in range(start, len(seq) - 1))
        torch.testing.assert_close(total[0], direct)
        assert n[0] == len(tok.answer_ids(it.answer))
        tr = truth_ratio(model, tok, items)
        lp = lambda a: (answer_logprobs(model, tok, [it.question], [a])[0]  # noqa: E731
                        / len(tok.answer_ids(a)))[0]
        expect = sum(lp(a).exp() for a in it.perturbed_answers) / 5 / lp(it.heldout_answer).exp()
        torch.testing.assert_close(tr[0], expect)
        ol = option_logprobs(model, tok, items)
        assert ol.shape == (3, 6)
        torch.testing.assert_close(ol[0, 2], lp(it.mc_options[2]))
    assert mc_correct(torch.tensor([[1.0, 0.5, 0.9], [1.0, 1.0, 0.0]])).tolist() == [True, False]


def test_answer_nll_plain_and_with_batched_params(bench, tok):
    model = tiny_model(len(tok)).eval()
    items = bench.split("forget05")[:4]
    x, y, m = pack(*zip(*encode_items(tok, items), strict=True), pad_id=tok.pad_id)
    with torch.no_grad():
        nll = answer_nll(model, x, y, m)
        logits = model(x).logits
        expect = torch.stack([F.cross_entropy(logits[i][m[i]], y[i][m[i]]) for i in range(4)])
        torch.testing.assert_close(nll, expect)
        w = model.head.weight
        batched = answer_nll(model, x, y, m, params={"head.weight": torch.stack([w, 2 * w])})
        assert batched.shape == (2, 4)
        torch.testing.assert_close(batched[0], nll)
        torch.testing.assert_close(
            batched[1], answer_nll(model, x, y, m, params={"head.weight": 2 * w}))
        assert (batched[1] - batched[0]).abs().min() > 1e-4


def test_generate_is_the_argmax_loop_and_exact_match(bench, tok):
    model = tiny_model(len(tok)).eval()
    qs = [it.question for it in bench.split("general")[:4]]
    gen = generate(model, tok, qs, max_new_tokens=5)
    for q, g in zip(qs, gen, strict=True):
        seq = tok.prompt_ids(q)
        manual = []
        for _ in range(5):
            nxt = model(torch.tensor([seq])).logits[0, -1].argmax().item()
            if nxt == tok.eos_id:
                break
            manual.append(nxt)
            seq.append(nxt)
        assert g == manual
    refs = [tok.decode(gen[0]), "the capital of france is paris ."]
    assert exact_match(gen[:2], refs, tok).tolist() == [True, gen[1] == tok.encode(refs[1])]


# ------------------------------------------------------------------------------ training
def test_lr_schedule():
    cfg = TrainConfig(lr=1.0, warmup_steps=10, min_lr_frac=0.1, epochs=2, partial_epochs=1)
    assert lr_at(0, 110, cfg) == pytest.approx(0.1)
    assert lr_at(9, 110, cfg) == pytest.approx(1.0)
    assert lr_at(10, 110, cfg) == pytest.approx(1.0)
    assert lr_at(60, 110, cfg) == pytest.approx(0.1 + 0.9 * 0.5)
    assert lr_at(110, 110, cfg) == pytest.approx(0.1)
    with pytest.raises(ValueError, match="partial_epochs=3 must be < epochs=3"):
        TrainConfig(epochs=3, partial_epochs=3)


def test_load_models_trains_once_then_loads_from_cache(tmp_path):
    kw = dict(roles=("target", "partial", "retain"), seed=0, cache_dir=tmp_path,
              train_cfg=TrainConfig(epochs=2, partial_epochs=1, warmup_steps=5),
              lm_overrides=dict(d_model=16, n_layers=1, n_heads=2, d_ff=16))
    messages: list[str] = []
    art = load_models(log=messages.append, **kw)
    assert len(messages) == 2  # one target run (gives the partial snapshot) + one retain run
    files = sorted(p.name.split("-")[0] for p in (tmp_path / art.dataset_hash[:16]).iterdir())
    assert files == ["partial", "retain", "target"]
    assert len(art.records["target"]["log"]) == 2 and len(art.records["partial"]["log"]) == 1
    assert art.records["target"]["dataset_hash"] == art.dataset_hash
    again = load_models(log=messages.append, **kw)
    assert len(messages) == 2
    for role in kw["roles"]:
        for (k, v), w in zip(art.models[role].state_dict().items(),
                             again.models[role].state_dict().values(), strict=True):
            assert torch.equal(v, w), k
    # the partial snapshot differs from the finished target
    assert not torch.equal(art.models["partial"].head.weight, art.models["target"].head.weight)
    assert math.isfinite(art.records["retain"]["log"][-1]["answer_nll"])
