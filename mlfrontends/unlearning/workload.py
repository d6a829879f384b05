"""The ``unlearn`` workload: forward-only (ZO) LLM unlearning on the photonic chip.

Chip model. The LM's linear layers are programmed once on ``tile``×``tile`` SVD meshes of the
run's device with its mesh non-idealities (``mlfrontends.lm.chip.realised_model``: phase
quantisation, gamma error, offsets, crosstalk, coupler error, insertion loss). Their static
programming error E = W_realised − W is kept per layer, and the chip computes with W + E for
every weight the run touches: the frozen layers, the parameters being unlearned (each
perturbed ZO copy is "reprogrammed" as θ + E; the change of E with the programmed matrix is
second order in the update and neglected), the retain and the relearned models (the retain
model gets its own programming). Per-inference detector noise and DAC/ADC quantisation are
not simulated for the LM: the hub's per-inference ``optical_matmul`` costs tens of seconds
per perturbed MLP call here, so every number below comes from the static-error chip.

Updated parameters. ZO in ~10^5 dims is slow, so each arm unlearns one block's MLP
(``target: mlp``, block ``layer``), or, on the MoE model, one expert plus that layer's router
(``target: uoe``) or that layer's router and all experts (``target: moe_layer``). The frozen
part before it is evaluated once per data set (hidden states cached), so a perturbed forward
runs only the tail of the network, for all P perturbations in one batched call.

Budget. ``forward_queries`` = sequence inferences spent by the updates (P × batch per
evaluation); every arm gets the same ``budget``. Evaluation and WAGLE's one-off first-order
scoring are not counted (reported separately as ``attribution_queries``).

Metrics (TOFU, Maini et al. 2024): ``forget_quality`` = KS two-sample p-value between the
truth ratios on the forget set of the model and of the retain model (both on the chip);
``model_utility`` = harmonic mean of answer probability P(a|q)^{1/|a|}, ROUGE-L recall of the
greedy answer and truth-ratio score max(0, 1 − R), on a retain subset and on the
general-knowledge set (6 numbers); ``forget_accuracy`` = multiple-choice accuracy on the
forget set (true answer vs 5 wrong values; chance 1/6); the same after a relearning attack
(first-order Adam on ``relearn.k`` forget samples, all weights, digital; suffix
``_relearned``); MoE: ``routing_to_target`` = share of forget answer tokens routed to e*.
"""

from __future__ import annotations

import copy
import math
from typing import Literal

import numpy as np
import torch
from pydantic import Field, model_validator
from scipy.stats import ks_2samp
from torch import nn
from torch.func import functional_call

from mlfrontends.lm.chip import realised_model
from mlfrontends.lm.data import BenchmarkConfig
from mlfrontends.lm.metrics import (
    answer_nll,
    generate,
    mc_correct,
    normalised_logprobs,
    option_logprobs,
    rouge_l,
    scores_logprobs,
    truth_ratio,
)
from mlfrontends.lm.model import CausalLM
from mlfrontends.lm.tokenizer import pack
from mlfrontends.lm.train import TrainConfig, encode_items, load_models
from mlfrontends.unlearning.common import Settings, aggregate, bootstrap_ci, markdown_table
from mlfrontends.unlearning.methods import (
    FORGET_TERMS,
    UpdateSettings,
    random_mask,
    top_fraction_mask,
    unlearn_loop,
    wagle_scores,
)
from mlfrontends.zo import ParamLayout
from photonic.runio import RunContext, WorkloadConfig

__all__ = ["Config", "ArmConfig", "run"]

METRICS = ("forget_quality", "model_utility", "forget_accuracy", "forget_quality_relearned",
           "model_utility_relearned", "forget_accuracy_relearned", "forward_queries")


class ArmConfig(Settings):
    name: str
    order: Literal["zo", "fo"] = "zo"
    objective: Literal["graddiff", "npo"] = "npo"
    target: Literal["mlp", "uoe", "moe_layer"] = "mlp"
    sam_rho: float = Field(0.0, ge=0, description="SAM radius ρ (0: off)")
    rs_sigma: float = Field(0.0, ge=0, description="randomised-smoothing σ (0: off)")
    wa_every: int = Field(0, ge=0, description="weight averaging period in steps (0: off)")
    mask: Literal["none", "wagle", "random"] = "none"
    anchor_alpha: float = Field(0.0, ge=0, description="UOE router anchor weight α")
    lr: float | None = Field(None, gt=0, description="default: zo.lr or fo_lr")


class ZOSettings(Settings):
    q: int = Field(2, ge=1, description="directions per parameter tensor per estimate")
    mu: float = Field(1e-3, gt=0)
    lr: float = Field(2e-3, gt=0)


class RelearnSettings(Settings):
    k: int = Field(10, ge=1, description="forget samples the attacker fine-tunes on")
    steps: int = Field(20, ge=0)
    lr: float = Field(1e-3, gt=0)


class Config(WorkloadConfig):
    kind: Literal["unlearn"]
    arch: Literal["dense", "moe"] = "dense"
    n_authors: int = Field(100, ge=100, le=200)
    forget_split: Literal["forget01", "forget05", "forget10"] = "forget10"
    lm_seed: int = Field(0, ge=0, description="pre-training seed of the cached models")
    lm_overrides: dict = Field(default_factory=dict, description="LMConfig fields (tests)")
    train_overrides: dict = Field(default_factory=dict, description="TrainConfig fields")
    tile: int = Field(16, ge=2)
    layer: int = Field(-1, description="block whose MLP is unlearned (dense; -1 = last)")
    n_seeds: int = Field(3, ge=1)
    budget: int = Field(200_000, ge=1, description="forward queries per arm")
    batch_forget: int = Field(16, ge=1)
    batch_retain: int = Field(16, ge=1)
    gamma: float = Field(1.0, ge=0)
    beta: float = Field(0.1, gt=0, description="NPO inverse temperature β")
    zo: ZOSettings = ZOSettings()
    fo_lr: float = Field(1e-3, gt=0)
    mask_ratio: float = Field(0.05, gt=0, le=1)
    wagle_mu: float = Field(1e-6, gt=0)
    relearn: RelearnSettings = RelearnSettings()
    n_retain_eval: int = Field(100, ge=1, description="retain questions in model utility")
    n_general_eval: int = Field(112, ge=1, description="general questions in model utility")
    arms: list[ArmConfig] = Field(min_length=1)
    compare: list[tuple[str, str]] = Field(
        default_factory=list, description="(arm, baseline) pairs for paired bootstrap CIs")

    @model_validator(mode="after")
    def _check(self) -> Config:
        names = [a.name for a in self.arms]
        if len(set(names)) != len(names):
            raise ValueError(f"arms: names must be unique, got {names}")
        for a, b in self.compare:
            for n in (a, b):
                if n not in names:
                    raise ValueError(f"compare: unknown arm {n!r}; arms are {names}")
        for arm in self.arms:
            if arm.target != "mlp" and self.arch != "moe":
                raise ValueError(f"arms[{arm.name}].target={arm.target!r} needs arch='moe'")
        return self


# ------------------------------------------------------------------------------ chip view
def chip_errors(model: CausalLM, realised: CausalLM) -> dict[str, torch.Tensor]:
    """E = W_realised − W for every linear weight (the static programming error)."""
    w, r = model.state_dict(), realised.state_dict()
    return {n: (r[n] - w[n]).detach() for n, m in model.named_modules()
            if isinstance(m, nn.Linear) for n in [f"{n}.weight"]}


def with_errors(model: CausalLM, errors: dict[str, torch.Tensor]) -> CausalLM:
    """A copy of ``model`` computing with W + E (the chip view)."""
    out = copy.deepcopy(model)
    state = out.state_dict()
    for n, e in errors.items():
        state[n] = state[n] + e
    out.load_state_dict(state)
    return out.eval()


class Tail(nn.Module):
    """Block ``l`` from its second LayerNorm on, the later blocks, final norm and head.

    ``forward(h_mid)`` with h_mid = x + attn(ln1(x)) at block l returns (logits, gate probs
    of block l or None); parameters may carry a leading P (batched-parameter convention)."""

    def __init__(self, model: CausalLM, layer: int):
        super().__init__()
        blk = model.blocks[layer]
        self.ln2, self.mlp = blk.ln2, blk.mlp
        self.rest = nn.ModuleList(model.blocks[layer + 1:])
        self.ln_f, self.head = model.ln_f, model.head

    def forward(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        y = self.mlp(self.ln2(h))
        probs = None
        if isinstance(y, tuple):
            y, probs, _ = y
        h = h + y
        for blk in self.rest:
            h = blk(h)[0]
        return self.head(self.ln_f(h)), probs


@torch.no_grad()
def hidden_mid(model: CausalLM, ids: torch.Tensor, layer: int) -> torch.Tensor:
    """x + attn(ln1(x)) at block ``layer`` (the input of the tail)."""
    x = model(ids).hidden_states[layer]
    blk = model.blocks[layer]
    return x + blk.attn(blk.ln1(x))[0]  # attn returns (output, key/value cache)


def _seq_nll(logits: torch.Tensor, y: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    """Mean answer-token NLL per sequence from the tail's logits (as ``answer_nll``)."""
    return -scores_logprobs(logits, y, m) / m.sum(-1)


# ----------------------------------------------------------------------------- evaluation
@torch.no_grad()
def evaluate(model: CausalLM, tok, forget_items, retain_items, general_items,
             tr_reference: torch.Tensor) -> dict[str, float]:
    """Forget quality, model utility and forget accuracy of a chip-view model."""
    tr_f = truth_ratio(model, tok, forget_items)
    fq = float(ks_2samp(tr_f.numpy(), tr_reference.numpy()).pvalue)
    acc = float(mc_correct(option_logprobs(model, tok, forget_items)).float().mean())
    parts = []
    for items in (retain_items, general_items):
        qs, ans = [it.question for it in items], [it.answer for it in items]
        parts.append(float(normalised_logprobs(model, tok, qs, ans).exp().mean()))
        gen = generate(model, tok, qs)
        parts.append(float(np.mean([rouge_l(tok.decode(g), a)[0]
                                    for g, a in zip(gen, ans, strict=True)])))
        parts.append(float((1 - truth_ratio(model, tok, items)).clamp_min(0).mean()))
    mu = len(parts) / sum(1 / max(p, 1e-12) for p in parts)
    return {"forget_quality": fq, "model_utility": mu, "forget_accuracy": acc,
            "truth_ratio_forget_median": float(tr_f.median())}


def _packed(tok, items) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Teacher-forcing batch (inputs, targets, answer mask) of QA items."""
    return pack(*zip(*encode_items(tok, items), strict=True), pad_id=tok.pad_id)


def relearn(model: CausalLM, tok, items, s: RelearnSettings, *, seed: int) -> CausalLM:
    """The attacker: first-order Adam on ``s.k`` forget samples, all weights, digital."""
    out = copy.deepcopy(model).train().requires_grad_(True)
    g = torch.Generator().manual_seed(seed)
    pick = [items[i] for i in torch.randperm(len(items), generator=g)[: s.k].tolist()]
    x, y, m = _packed(tok, pick)
    opt = torch.optim.Adam(out.parameters(), lr=s.lr)
    for _ in range(s.steps):
        opt.zero_grad(set_to_none=True)
        answer_nll(out, x, y, m).mean().backward()
        opt.step()
    return out.eval()


@torch.no_grad()
def routing_share(model: CausalLM, x: torch.Tensor, m: torch.Tensor, layer: int,
                  expert: int) -> float:
    """Share of answer positions routed (top-1) to ``expert`` at ``layer``."""
    idx = model(x).expert_index[layer]
    return float((idx[m] == expert).float().mean())


@torch.no_grad()
def expert_attribution(model: CausalLM, x: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    """a_{l,e}: mean gate probability per layer and expert over answer positions (L, E)."""
    return torch.stack([p[m].mean(0) for p in model(x).gate_probs])


# ---------------------------------------------------------------------------- one arm
def _updated_names(tail: Tail, target: str, expert: int | None) -> list[str]:
    if target in ("mlp", "moe_layer"):
        return [n for n, _ in tail.named_parameters() if n.startswith("mlp.")]
    return [n for n, _ in tail.named_parameters()
            if n.startswith((f"mlp.experts.{expert}.", "mlp.router."))]


def run_arm(arm: ArmConfig, cfg: Config, *, target: CausalLM, errors, data, tok, items,
            tr_reference, seed: int, moe_target: tuple[int, int] | None,
            progress=None, cache: dict | None = None) -> dict[str, float]:
    """One arm for one seed. ``cache``: a dict shared by the run's arms and seeds, holding
    what depends only on the target, E and the updated block (hidden states, θ_ref's NLL,
    WAGLE scores), so it is computed once per run rather than once per arm and seed."""
    cache = {} if cache is None else cache
    layer = (moe_target[0] if arm.target != "mlp" else cfg.layer) if moe_target else cfg.layer
    layer = layer % target.cfg.n_layers
    expert = moe_target[1] if moe_target else None
    digital = copy.deepcopy(target)
    view = with_errors(digital, errors)  # frozen chip view; updated params swapped in below
    tail = Tail(view, layer)
    names = _updated_names(tail, arm.target, expert)
    prefix = f"blocks.{layer}."
    (xf, yf, mf), (xr, yr, mr) = data["forget"], data["retain"]
    if ("hidden", layer) not in cache:
        hf, hr = hidden_mid(view, xf, layer), hidden_mid(view, xr, layer)
        with torch.no_grad():  # θ_ref = the target on the chip: W + E, before the swap below
            cache["hidden", layer] = hf, hr, _seq_nll(tail(hf)[0], yf, mf)
    hf, hr, nll_ref = cache["hidden", layer]
    digital_state = digital.state_dict()
    for n, p in tail.named_parameters():
        p.requires_grad_(n in names)
        if n in names:  # the module holds digital θ; E is added in every forward
            with torch.no_grad():
                p.copy_(digital_state[prefix + n])
    err = {n: errors.get(prefix + n) for n in names}
    layout = ParamLayout(tail)
    gen = torch.Generator().manual_seed(seed)
    batch = {"f": None, "r": None}

    def next_batch():
        batch["f"] = torch.randint(len(xf), (cfg.batch_forget,), generator=gen)
        batch["r"] = torch.randint(len(xr), (cfg.batch_retain,), generator=gen)
        return cfg.batch_forget, cfg.batch_retain

    forget_term = FORGET_TERMS[arm.objective]

    def loss(params, part, P):
        full = {n: v + err[n] if err[n] is not None else v for n, v in params.items()}
        i = batch["f"] if part == "forget" else batch["r"]
        h, y, m = (hf, yf, mf) if part == "forget" else (hr, yr, mr)
        hi = h[i] if P == 0 else h[i].expand(P, *h[i].shape)  # explicit P: B may equal P
        logits, probs = functional_call(tail, full, (hi,))
        nll = _seq_nll(logits, y[i], m[i])
        if part == "retain":
            return nll.mean(-1)
        value = forget_term(nll, nll_ref[i], beta=cfg.beta)
        if arm.anchor_alpha > 0 and probs is not None:
            lg = torch.log(probs[..., expert].clamp_min(1e-12))
            mi = m[i].to(lg.dtype)
            value = value + arm.anchor_alpha * (-(lg * mi).sum((-2, -1)) / mi.sum())
        return value

    mask, attribution_queries = None, 0
    if arm.mask != "none":
        if ("wagle", layer, tuple(names)) not in cache:
            theta = layout.flatten().requires_grad_(True)
            grads = []
            for h, y, m in ((hf, yf, mf), (hr, yr, mr)):
                full = {n: v + err[n] if err[n] is not None else v
                        for n, v in layout.unflatten(theta).items()}
                (g,) = torch.autograd.grad(
                    _seq_nll(functional_call(tail, full, (h,))[0], y, m).sum(), theta)
                grads.append(g)
            cache["wagle", layer, tuple(names)] = wagle_scores(
                theta.detach(), grads[0], grads[1], mu=cfg.wagle_mu)
        mask = top_fraction_mask(cache["wagle", layer, tuple(names)], cfg.mask_ratio)
        attribution_queries = len(xf) + len(xr)
        if arm.mask == "random":
            mask = random_mask(layout.dim, int(mask.sum()),
                               generator=torch.Generator().manual_seed(seed + 17))
    settings = UpdateSettings(
        order=arm.order, objective=arm.objective, budget=cfg.budget,
        lr=arm.lr or (cfg.zo.lr if arm.order == "zo" else cfg.fo_lr), gamma=cfg.gamma,
        beta=cfg.beta, q=cfg.zo.q, mu=cfg.zo.mu, sam_rho=arm.sam_rho, rs_sigma=arm.rs_sigma,
        wa_every=arm.wa_every)
    counters = unlearn_loop(layout, loss, next_batch, settings, generator=gen, mask=mask,
                            progress=progress)
    state = digital.state_dict()
    for n, p in zip(layout.names, layout.params, strict=True):
        state[prefix + n] = p.detach().clone()
    digital.load_state_dict(state)
    forget_items, retain_items, general_items = items
    chip = with_errors(digital, errors)
    res = evaluate(chip, tok, forget_items, retain_items, general_items, tr_reference)
    attacked = relearn(digital, tok, forget_items, cfg.relearn, seed=seed + 1)
    after = evaluate(with_errors(attacked, errors), tok, forget_items, retain_items,
                     general_items, tr_reference)
    res |= {f"{k}_relearned": v for k, v in after.items()}
    res |= {"forward_queries": counters["forward_queries"], "steps": counters["steps"],
            "attribution_queries": attribution_queries, "updated_params": layout.dim,
            "masked_params": int(mask.sum()) if mask is not None else layout.dim}
    if moe_target is not None:
        res["routing_to_target"] = routing_share(chip, xf, mf, *moe_target)
    return res


# ------------------------------------------------------------------------------- the run
def run(cfg: Config, ctx: RunContext) -> dict[str, object]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    arts = load_models(BenchmarkConfig(n_authors=cfg.n_authors), arch=cfg.arch,
                       roles=("target", "retain"), seed=cfg.lm_seed,
                       train_cfg=TrainConfig(**cfg.train_overrides),
                       lm_overrides=cfg.lm_overrides)
    bench, tok = arts.bench, arts.tok
    target, retain = arts.models["target"], arts.models["retain"]
    for mdl in (target, retain):
        mdl.requires_grad_(False)
    keep = 100 - int(cfg.forget_split.removeprefix("forget"))
    forget_items = bench.split(cfg.forget_split)
    retain_pool = bench.split(f"retain{keep:02d}")
    pick = torch.randperm(len(retain_pool), generator=torch.Generator().manual_seed(0))
    retain_eval = [retain_pool[i] for i in pick[: cfg.n_retain_eval].tolist()]
    general_pool = bench.split("general")
    pick = torch.randperm(len(general_pool), generator=torch.Generator().manual_seed(1))
    general = [general_pool[i] for i in pick[: cfg.n_general_eval].tolist()]
    items = (forget_items, retain_eval, general)

    data = {"forget": _packed(tok, forget_items), "retain": _packed(tok, retain_pool)}
    chip_kw = dict(device=ctx.device, noise=ctx.noise, tile=cfg.tile, seed=ctx.seed)
    errors = chip_errors(target, realised_model(target, **chip_kw))
    retain_chip = realised_model(retain, **chip_kw)
    target_chip = with_errors(target, errors)
    tr_reference = truth_ratio(retain_chip, tok, forget_items)

    baseline = evaluate(target_chip, tok, *items, tr_reference)
    retain_ref = evaluate(retain_chip, tok, *items, tr_reference)
    digital_target = evaluate(target, tok, *items, truth_ratio(retain, tok, forget_items))
    moe_target = None
    extra: dict[str, object] = {}
    if cfg.arch == "moe":
        xf, _, mf = data["forget"]
        attr = expert_attribution(target_chip, xf, mf)
        flat = int(attr.argmax())
        moe_target = (flat // attr.shape[1], flat % attr.shape[1])
        extra["uoe_layer"], extra["uoe_expert"] = moe_target
        extra["expert_attribution"] = {f"l{i}e{j}": float(attr[i, j])
                                       for i in range(attr.shape[0])
                                       for j in range(attr.shape[1])}
        baseline["routing_to_target"] = routing_share(target_chip, xf, mf, *moe_target)

    seeds = [ctx.seed + i for i in range(cfg.n_seeds)]
    bar = ctx.progress(len(seeds) * len(cfg.arms) * cfg.budget, "unlearning (queries)")
    per_seed: dict[str, list[dict[str, float]]] = {a.name: [] for a in cfg.arms}
    cache: dict = {}  # per-run invariants shared by all arms and seeds (see run_arm)
    for s in seeds:
        for k, arm in enumerate(cfg.arms):
            per_seed[arm.name].append(run_arm(
                arm, cfg, target=target, errors=errors, data=data, tok=tok, items=items,
                tr_reference=tr_reference, seed=1000 * s + k, moe_target=moe_target,
                progress=bar, cache=cache))
    bar.close()
    summary = {name: aggregate(rows) for name, rows in per_seed.items()}

    comparisons: dict[str, dict[str, float]] = {}
    for a, b in cfg.compare:
        for key in ("forget_accuracy_relearned", "forget_quality_relearned", "model_utility",
                    "forget_accuracy"):
            diffs = [x[key] - y[key] for x, y in zip(per_seed[a], per_seed[b], strict=True)]
            lo, hi = bootstrap_ci(diffs, seed=0)
            comparisons[f"{a}_vs_{b}.{key}"] = {"mean_diff": float(np.mean(diffs)),
                                                "ci95_low": lo, "ci95_high": hi,
                                                "n_seeds": len(diffs)}
    metrics: dict[str, object] = {
        "target": baseline, "retain_model": retain_ref, "target_digital": digital_target,
        **summary, "comparisons": comparisons, "dataset_hash": bench.hash,
        "budget_forward_queries": cfg.budget, **extra,
        "acceptance": {
            "target_forget_accuracy": baseline["forget_accuracy"],
            "retain_forget_accuracy": retain_ref["forget_accuracy"],
            "chance": 1 / (1 + len(forget_items[0].wrong_values)),
        },
    }
    metrics["seeds"] = {f"seed{s}.{a}.{k}": v for a, rows in per_seed.items()
                        for s, r in zip(seeds, rows, strict=True) for k, v in r.items()}

    fig, ax = plt.subplots(figsize=(6, 4))
    for name, rows in per_seed.items():
        fq = [max(r["forget_quality"], 1e-300) for r in rows]
        ax.scatter(fq, [r["model_utility"] for r in rows], label=name, s=18)
    ax.scatter([max(baseline["forget_quality"], 1e-300)], [baseline["model_utility"]],
               marker="*", s=120, c="k", label="target")
    ax.set_xscale("log")
    ax.set_xlabel("forget quality (KS p-value)")
    ax.set_ylabel("model utility")
    ax.legend(fontsize=7)
    ctx.savefig(fig, "quality_vs_utility.png")
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(7, 3.5))
    names = list(per_seed)
    xs = np.arange(len(names))
    for off, key, lab in ((-0.2, "forget_accuracy", "before attack"),
                          (0.2, "forget_accuracy_relearned", "after relearning")):
        ax.bar(xs + off, [summary[n][key] for n in names], 0.4,
               yerr=[summary[n][f"{key}_std"] for n in names], label=lab)
    ax.axhline(baseline["forget_accuracy"], color="k", ls=":", label="target")
    ax.set_xticks(xs, names, rotation=30, ha="right", fontsize=7)
    ax.set_ylabel("forget MC accuracy")
    ax.legend(fontsize=7)
    ctx.savefig(fig, "relearning.png")
    plt.close(fig)

    cols = list(METRICS) + (["routing_to_target"] if cfg.arch == "moe" else [])
    rows = {"target (chip)": baseline, "retain model (chip)": retain_ref,
            "target (digital)": digital_target} | summary
    comp_lines = "\n".join(
        f"| {k} | {v['mean_diff']:+.4g} | [{v['ci95_low']:+.4g}, {v['ci95_high']:+.4g}] | "
        f"{v['n_seeds']} |" for k, v in comparisons.items()) or "| – | | | |"
    arms_desc = "\n".join(f"- `{a.name}`: {a.model_dump(exclude_defaults=True)}"
                          for a in cfg.arms)
    report = f"""# Zeroth-order unlearning on the photonic chip ({cfg.arch} model)

Dataset hash `{bench.hash}`; forget split `{cfg.forget_split}` ({len(forget_items)} questions).
Chip: device `{ctx.device.name}`, {cfg.tile}×{cfg.tile} tiles, static programming errors of
noise `{ctx.noise.model_dump()}` (see the module docstring for what is and is not simulated).
Seeds {seeds}; budget per arm {cfg.budget:,} forward queries (sequence inferences); ZO:
two-sided RGE, Gaussian per-tensor directions, q = {cfg.zo.q}, μ = {cfg.zo.mu}, Adam lr
{cfg.zo.lr}; FO reference lr {cfg.fo_lr}; NPO β = {cfg.beta}, γ = {cfg.gamma}; relearning:
Adam lr {cfg.relearn.lr}, {cfg.relearn.steps} steps on k = {cfg.relearn.k} forget samples.
WAGLE scores are first-order ("hybrid": one back-propagation over D_f and D_r, not counted
in the budget), mask ratio {cfg.mask_ratio}.
{f"UOE target: layer {moe_target[0]}, expert {moe_target[1]}." if moe_target else ""}

Arms:
{arms_desc}

## Results (mean ± sample std over seeds)
{markdown_table(rows, cols)}

Acceptance inputs: target forget MC accuracy {baseline['forget_accuracy']:.3f}, retain model
{retain_ref['forget_accuracy']:.3f} (chance {metrics['acceptance']['chance']:.3f}).

## Paired comparisons (arm − baseline, percentile bootstrap 95 % CI over seeds)
| comparison | mean diff | 95 % CI | seeds |
|---|---|---|---|
{comp_lines}

![quality vs utility](quality_vs_utility.png)

![relearning](relearning.png)
"""
    ctx.write_text("report.md", report)
    if not math.isfinite(baseline["forget_quality"]):
        raise RuntimeError("forget quality of the target is not finite")
    return metrics
