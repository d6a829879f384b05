"""ZO LLM unlearning (mlfrontends.unlearning.methods / workload) at reduced size."""

from __future__ import annotations

import math

import pytest
import torch
import yaml
from pydantic import ValidationError
from torch import nn

import photonic
from mlfrontends.lm.chip import realised_model
from mlfrontends.lm.model import CausalLM, LMConfig
from mlfrontends.unlearning import methods as um
from mlfrontends.unlearning import workload as uw
from mlfrontends.zo import ParamLayout
from photonic.runio import RunContext, flatten_metrics

torch.set_num_threads(1)
TINY = {"lm_overrides": {"d_model": 16, "n_layers": 2, "n_heads": 2, "d_ff": 32,
                         "d_expert": 16},
        "train_overrides": {"epochs": 2, "partial_epochs": 1, "warmup_steps": 5}}


def test_objectives_match_their_formulas():
    nll = torch.tensor([[1.0, 2.0], [3.0, 0.5]])
    ref = torch.tensor([1.0, 1.0])
    beta = 0.5
    want = [-(2 / beta) * math.log(1 / (1 + math.exp(-beta * (a - 1.0)))) for a in (1.0, 2.0)]
    assert float(um.npo_forget(nll, ref, beta=beta)[0]) == pytest.approx(sum(want) / 2)
    # r = 0 gives (2/β) log 2; the term falls as the forget NLL rises
    assert float(um.npo_forget(ref[None], ref, beta=beta)[0]) == pytest.approx(4 * math.log(2))
    assert float(um.npo_forget(ref[None] + 1, ref, beta=beta)[0]) < 4 * math.log(2)
    torch.testing.assert_close(um.graddiff_forget(nll), torch.tensor([-1.5, -1.75]))


def test_wagle_scores_and_masks():
    theta = torch.tensor([1.0, -2.0, 0.5, 0.0])
    gf = torch.tensor([1.0, 1.0, -4.0, 3.0])
    gr = torch.tensor([0.0, 1e-6, 0.0, -1e-6])
    s = um.wagle_scores(theta, gf, gr, mu=1e-6)
    torch.testing.assert_close(s, torch.tensor([1.0, 3.0, 2.0, 3.0]))
    assert um.top_fraction_mask(torch.tensor([1.0, 3.0, 2.0, 0.5]), 0.5).tolist() == [
        False, True, True, False]
    m = um.random_mask(10, 4, generator=torch.Generator().manual_seed(0))
    assert int(m.sum()) == 4


class _Vec(nn.Module):
    def __init__(self, d):
        super().__init__()
        self.a = nn.Parameter(torch.zeros(d, dtype=torch.float64))
        self.b = nn.Parameter(torch.zeros(d, dtype=torch.float64))


@pytest.mark.parametrize("order", ["zo", "fo"])
@pytest.mark.parametrize("extra", [{}, {"sam_rho": 0.01}, {"rs_sigma": 0.01},
                                   {"wa_every": 1}])
def test_unlearn_loop_descends_a_quadratic_within_budget(order, extra):
    target = torch.arange(1.0, 7.0, dtype=torch.float64)
    mod = _Vec(3)
    layout = ParamLayout(mod)

    def loss(params, part, P):
        th = torch.cat([params["a"], params["b"]], -1)
        if part == "retain":
            return th.sum(-1) * 0.0
        return ((th - target) ** 2).sum(-1)

    s = um.UpdateSettings(order=order, objective="npo", budget=20000, lr=0.3, q=8, mu=1e-3,
                          **extra)
    out = um.unlearn_loop(layout, loss, lambda: (4, 4), s,
                          generator=torch.Generator().manual_seed(0))
    per_step = (2 * 8 * 2 if order == "zo" else 1) * (
        4 * (2 if extra.get("sam_rho") else 1) + 4)
    used, steps = out["forward_queries"], out["steps"]
    assert used == steps * per_step <= 20000 < (steps + 1) * per_step
    final = torch.cat([mod.a.detach(), mod.b.detach()])
    assert ((final - target) ** 2).sum() < 0.25 * (target ** 2).sum()


def test_mask_freezes_unselected_coordinates():
    mod = _Vec(2)
    layout = ParamLayout(mod)
    mask = torch.tensor([True, False, False, True])
    s = um.UpdateSettings(order="zo", objective="npo", budget=2000, lr=0.1, q=4)
    um.unlearn_loop(layout, lambda p, part, P: ((torch.cat([p["a"], p["b"]], -1) - 1) ** 2)
                    .sum(-1), lambda: (1, 1), s, generator=torch.Generator().manual_seed(1),
                    mask=mask)
    assert mod.a[1] == 0 and mod.b[0] == 0 and mod.a[0] > 0.3 and mod.b[1] > 0.3


@pytest.mark.parametrize("n_experts", [0, 4])
def test_tail_reproduces_the_full_forward(n_experts):
    torch.manual_seed(0)
    model = CausalLM(LMConfig(vocab_size=30, d_model=16, n_layers=3, n_heads=2, d_ff=32,
                              n_experts=n_experts, d_expert=16)).eval()
    ids = torch.randint(0, 30, (5, 9))
    for layer in range(3):
        logits, probs = uw.Tail(model, layer)(uw.hidden_mid(model, ids, layer))
        torch.testing.assert_close(logits, model(ids).logits)
        if n_experts:
            torch.testing.assert_close(probs, model(ids).gate_probs[layer])


def test_chip_view_reproduces_the_realised_model():
    torch.manual_seed(0)
    model = CausalLM(LMConfig(vocab_size=30, d_model=16, n_layers=2, n_heads=2, d_ff=32))
    dev = photonic.DeviceParams(variation=photonic.VariationParams(gamma_std=0.01))
    real = realised_model(model, device=dev, noise=photonic.NoiseConfig(gamma_error=True),
                          tile=8, seed=3)
    err = uw.chip_errors(model, real)
    assert len(err) == 2 * 4 + 1 and all(e.abs().max() > 0 for e in err.values())
    ids = torch.randint(0, 30, (4, 7))
    with torch.no_grad():
        torch.testing.assert_close(uw.with_errors(model, err)(ids).logits, real(ids).logits)


def _cfg(**kw):
    base = dict(kind="unlearn", n_seeds=1, budget=1500, tile=8, n_retain_eval=5,
                n_general_eval=5, batch_forget=4, batch_retain=4, relearn={"steps": 2}, **TINY)
    return uw.Config(**(base | kw))


def test_config_errors():
    with pytest.raises(ValidationError, match="compare: unknown arm 'nope'"):
        _cfg(arms=[{"name": "a"}], compare=[("a", "nope")])
    with pytest.raises(ValidationError, match="needs arch='moe'"):
        _cfg(arms=[{"name": "a", "target": "uoe"}])
    with pytest.raises(ValidationError, match="names must be unique"):
        _cfg(arms=[{"name": "a"}, {"name": "a", "order": "fo"}])
    with pytest.raises(ValidationError, match="zo.directions: unknown support 'whol'; "
                                              "did you mean 'whole'"):
        _cfg(arms=[{"name": "a"}], zo={"directions": "whol"})


@pytest.mark.parametrize("name", ["unlearn_npo_sam", "unlearn_wagle", "unlearn_uoe"])
def test_shipped_configs_validate(name):
    from pathlib import Path

    raw = yaml.safe_load((Path(__file__).resolve().parents[2] / "configs" / f"{name}.yaml")
                         .read_text())
    cfg = uw.Config(**raw["workload"])
    assert cfg.budget > 0 and len(cfg.arms) >= 2
    assert cfg.n_seeds >= (5 if name == "unlearn_npo_sam" else 3)


@pytest.fixture
def cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("PHOTONIC_SIM_CACHE", str(tmp_path_factory.getbasetemp() / "lmcache"))


def test_seed_setup_holds_out_utility_and_attack_items(tmp_path, cache):
    cfg = _cfg(arms=[{"name": "a"}], relearn={"k": 7, "steps": 1})
    ctx = RunContext(out=tmp_path, show_progress=False)
    st = uw.prepare_seed(cfg, ctx, 0)
    train_q = {tuple(r) for r in st.data["retain"][0].tolist()}
    eval_q = {tuple(r) for r in uw._packed(st.tok, st.retain_eval)[0].tolist()}
    assert len(st.retain_eval) == 5 and not train_q & eval_q
    assert len(st.data["retain"][0]) == 900 - 5
    uids = [it.uid for it in st.forget]
    assert len(st.attack) == 7 and len(st.forget_unseen) == len(uids) - 7
    assert sorted(it.uid for it in st.attack + st.forget_unseen) == sorted(uids)
    with pytest.raises(ValueError, match="relearn.k = 100: must be below the 100 items"):
        uw.prepare_seed(_cfg(arms=[{"name": "a"}], relearn={"k": 100}), ctx, 0)


def test_run_dense_smoke(tmp_path, cache):
    cfg = _cfg(arms=[{"name": "zo_npo"}, {"name": "fo_gd", "order": "fo",
                                          "objective": "graddiff"},
                     {"name": "zo_wagle", "mask": "wagle"}],
               compare=[("zo_wagle", "zo_npo")])
    m = flatten_metrics(uw.run(cfg, RunContext(out=tmp_path, show_progress=False)))
    for arm in ("zo_npo", "fo_gd", "zo_wagle"):
        for k in uw.METRICS:
            assert f"{arm}.{k}" in m
        assert 0 < m[f"{arm}.forward_queries"] <= 1500
        assert 0 <= m[f"{arm}.forget_quality"] <= 1
        assert m[f"{arm}.utility_loss"] == pytest.approx(
            m["target.model_utility"] - m[f"{arm}.model_utility"])
    assert m["zo_wagle.masked_params"] == math.ceil(0.05 * m["zo_wagle.updated_params"])
    # the WAGLE gradient over 100 forget + 895 retain-train sequences is charged to the budget
    assert m["zo_wagle.attribution_queries"] == 995
    assert m["zo_wagle.forward_queries"] - 995 <= 1500 - 995
    assert m["zo_npo.attribution_queries"] == 0
    assert "comparisons.zo_wagle_vs_zo_npo.forget_accuracy_relearned.ci95_low" in m
    assert m["target.mc_chance"] == pytest.approx(1 / 6)
    assert "acceptance.zo_npo.forget_gap_worst" in m
    assert (tmp_path / "report.md").exists() and (tmp_path / "relearning.png").exists()


def test_run_moe_smoke(tmp_path, cache):
    cfg = _cfg(arch="moe", arms=[{"name": "uoe", "target": "uoe", "anchor_alpha": 1.0},
                                 {"name": "layer", "target": "moe_layer"}])
    m = flatten_metrics(uw.run(cfg, RunContext(out=tmp_path, show_progress=False)))
    d, e = 16, 16
    expert = (d * e + e) + (e * d + d)
    assert m["uoe.updated_params"] == expert + (d * 4 + 4)
    assert m["layer.updated_params"] == 4 * expert + (d * 4 + 4)
    assert 0 <= m["uoe.routing_to_target"] <= 1 and 0 <= m["target.routing_to_target"] <= 1
    assert m["target.uoe_layer"] in (0, 1) and m["target.uoe_expert"] in range(4)


def test_npo_reference_is_the_chip_target():
    """At θ = θ_0 the NPO ratio r is 0, so the forget term is exactly (2/β) log 2: θ_ref's
    NLL must be taken with the chip error E on the updated weights too."""
    torch.manual_seed(0)
    model = CausalLM(LMConfig(vocab_size=30, d_model=16, n_layers=2, n_heads=2, d_ff=32))
    model = model.eval().requires_grad_(False)
    dev = photonic.DeviceParams(variation=photonic.VariationParams(gamma_std=0.05))
    err = uw.chip_errors(model, realised_model(
        model, device=dev, noise=photonic.NoiseConfig(gamma_error=True), tile=8, seed=3))
    x, y = torch.randint(0, 30, (6, 7)), torch.randint(0, 30, (6, 7))
    m = torch.zeros(6, 7, dtype=torch.bool)
    m[:, 3:] = True
    cfg = uw.Config(kind="unlearn", batch_forget=6, batch_retain=6, beta=0.5, budget=10,
                    arms=[{"name": "a"}])
    data = {"forget": (x, y, m), "retain": (x, y, m), "forget_loss_mask": m}
    cache: dict = {}
    for _ in range(2):  # the second problem reads θ_ref's NLL from the shared cache
        pb = uw.arm_problem(cfg.arms[0], cfg, model, err, data, None, cache)
        layout = ParamLayout(pb.tail)
        loss, next_batch = uw.arm_loss(cfg.arms[0], cfg, pb, data, torch.Generator())
        next_batch()
        value = float(loss(layout.unflatten(layout.flatten()), "forget", 0))
        assert value == pytest.approx(2 / 0.5 * math.log(2), abs=1e-6)
    assert ("hidden", 1) in cache


@pytest.mark.parametrize(("directions", "n_supports"), [("per_tensor", 1), ("whole", 1)])
def test_supports_skip_tensors_the_mask_excludes(directions, n_supports):
    """A mask confined to tensor ``a``: per-tensor directions must not spend queries on ``b``
    (all-zero directions), so a step costs 2q · 1 · (B_f + B_r) either way."""
    mod = _Vec(3)
    layout = ParamLayout(mod)
    mask = torch.tensor([True, True, False, False, False, False])
    s = um.UpdateSettings(order="zo", objective="npo", budget=1000, lr=0.1, q=2,
                          directions=directions)
    out = um.unlearn_loop(layout, lambda p, part, P: ((p["a"] - 1) ** 2).sum(-1),
                          lambda: (3, 2), s, generator=torch.Generator().manual_seed(0),
                          mask=mask)
    per_step = 2 * 2 * n_supports * (3 + 2)
    assert out["forward_queries"] == out["steps"] * per_step
    assert out["steps"] == 1000 // per_step
    a, b = mod.a.detach(), mod.b.detach()
    assert a[2] == 0 and bool((b == 0).all()) and float(a[0]) > 0.3


def test_value_mask_marks_the_fact_words():
    from mlfrontends.lm.data import BenchmarkConfig, build_benchmark
    from mlfrontends.lm.tokenizer import WordTokenizer

    bench = build_benchmark(BenchmarkConfig())
    tok = WordTokenizer.from_texts(bench.texts())
    items = [it for it in bench.split("forget10")
             if it.attribute in ("award", "birth_city")][:6]
    x, y, m = uw._packed(tok, items)
    vm = uw.value_mask(tok, items)
    assert bool((vm <= m).all())  # value words are answer tokens
    for b, it in enumerate(items):
        assert tok.decode(y[b][vm[b]].tolist()) == it.value
