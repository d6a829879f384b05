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

Seeds. Seed i (i = 0 … n_seeds − 1) draws everything that makes the result vary: with
``vary_model`` the benchmark (values, wrong answers and the forget authors: the data split)
is generated with seed ``data_seed + i`` and the target and retain models are trained with
seed ``lm_seed + i``; the chip's programming errors are drawn with seed ``ctx.seed + i``; the
held-out utility items, the relearning attacker's samples and the optimiser's batches and
directions follow from i too. The arms of one seed share all of it (paired comparisons).

Updated parameters. Each arm unlearns one block's MLP (``target: mlp``, block ``layer``), or,
on the MoE model, one expert plus that layer's router (``target: uoe``) or that layer's
router and all experts (``target: moe_layer``), optionally only the coordinates of a mask
(``mask: wagle | random``, share ``mask_ratio``). The frozen part before it is evaluated once
per data set (hidden states cached), so a perturbed forward runs only the tail of the
network, for all P perturbations in one batched call.

Budget. ``forward_queries`` = sequence inferences spent by the updates (P × batch per
evaluation; a first-order gradient of B sequences counts B) plus, for WAGLE masks, the
one-off attribution (one gradient over every forget and retain-train sequence, counted as
one query per sequence, ``attribution_queries``); every arm gets the same ``budget``, so a
WAGLE arm has that much less for its updates. Evaluation is not counted.

Metrics (TOFU, Maini et al. 2024): ``forget_quality`` = KS two-sample p-value between the
truth ratios on the forget set of the model and of the retain model (both on the chip);
``model_utility`` = harmonic mean of answer probability P(a|q)^{1/|a|}, ROUGE-L recall of the
greedy answer and truth-ratio score max(0, 1 − R), on ``n_retain_eval`` retain items held
out from the unlearning (the retain loss and the WAGLE scores never see them) and on
``n_general_eval`` general-knowledge items (6 numbers); ``utility_loss`` = the target's
utility − the arm's (same seed); ``forget_accuracy`` = multiple-choice accuracy on the
forget set (true answer vs 5 wrong values; chance 1/6). Relearning attack: first-order Adam
on ``relearn.k`` forget samples, all weights, digital; ``forget_accuracy_relearned`` and
``forget_quality_relearned`` are measured on the forget items the attacker did not see (a
recovery of knowledge, not a repetition of the attack set), ``attack_accuracy_relearned`` on
the attacker's own samples. The attack is run on the retain model (it never learned the
forget set: what the attack alone teaches) and on the target (it must not damage it) too.
MoE: ``routing_to_target`` = share of forget answer tokens routed to e*.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from pydantic import Field, model_validator
from scipy.stats import ks_2samp
from torch import nn
from torch.func import functional_call

from mlfrontends.lm.chip import realised_model
from mlfrontends.lm.data import BenchmarkConfig, QAItem
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
from mlfrontends.unlearning.common import (
    Settings,
    aggregate,
    comparison_table,
    paired_differences,
    seed_table,
)
from mlfrontends.unlearning.methods import (
    DIRECTION_SUPPORTS,
    FORGET_TERMS,
    UpdateSettings,
    random_mask,
    top_fraction_mask,
    unlearn_loop,
    wagle_scores,
)
from mlfrontends.unlearning.smollm2 import SmolSettings, run_smollm2
from mlfrontends.zo import ParamLayout
from photonic.runio import RunContext, WorkloadConfig, new_figure
from photonic.textutil import did_you_mean

__all__ = ["Config", "ArmConfig", "run"]

METRICS = ("forget_quality", "model_utility", "utility_loss", "forget_accuracy",
           "forget_quality_relearned", "forget_accuracy_relearned",
           "attack_accuracy_relearned", "forward_queries")
COMPARED = ("forget_accuracy_relearned", "forget_quality_relearned", "model_utility",
            "forget_accuracy")


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
    q: int = Field(2, ge=1, description="directions per support per estimate")
    mu: float = Field(1e-3, gt=0)
    lr: float = Field(2e-3, gt=0)
    directions: str = Field("per_tensor", description="supports: per_tensor | whole")

    @model_validator(mode="after")
    def _known_support(self) -> ZOSettings:
        if self.directions not in DIRECTION_SUPPORTS:
            raise ValueError(
                f"zo.directions: unknown support {self.directions!r}"
                f"{did_you_mean(self.directions, DIRECTION_SUPPORTS)} "
                f"(valid: {', '.join(DIRECTION_SUPPORTS)})")
        return self


class RelearnSettings(Settings):
    k: int = Field(10, ge=1, description="forget samples the attacker fine-tunes on")
    steps: int = Field(20, ge=0)
    lr: float = Field(1e-3, gt=0)


class Config(WorkloadConfig):
    kind: Literal["unlearn"]
    model: Literal["small", "smollm2"] = Field(
        "small", description="small: the word-level LM trained here; smollm2: the pretrained "
        "SmolLM2-135M with the facts fine-tuned into its top blocks (mlfrontends/unlearning/"
        "smollm2.py; one ZO NPO arm at each of smollm2.lrs)")
    smollm2: SmolSettings = SmolSettings()
    arch: Literal["dense", "moe"] = "dense"
    n_authors: int = Field(100, ge=100, le=200)
    forget_split: Literal["forget01", "forget05", "forget10"] = "forget10"
    vary_model: bool = Field(True, description="seed i: benchmark data_seed+i, LMs lm_seed+i")
    data_seed: int = Field(0, ge=0, description="benchmark seed of seed 0")
    lm_seed: int = Field(0, ge=0, description="pre-training seed of seed 0's models")
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
    forget_tokens: Literal["answer", "value"] = Field(
        "answer", description="forget-loss tokens: the whole answer, or the fact's value words")
    zo: ZOSettings = ZOSettings()
    fo_lr: float = Field(1e-3, gt=0)
    mask_ratio: float = Field(0.05, gt=0, le=1)
    wagle_mu: float = Field(1e-6, gt=0)
    relearn: RelearnSettings = RelearnSettings()
    n_retain_eval: int = Field(100, ge=1, description="held-out retain items in model utility")
    n_general_eval: int = Field(112, ge=1, description="general items in model utility")
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
                    raise ValueError(f"compare: unknown arm {n!r}{did_you_mean(n, names)}; "
                                     f"arms are {names}")
        if self.model == "smollm2" and self.arch != "dense":
            raise ValueError(f"arch = {self.arch!r}: model 'smollm2' is dense (use arch: dense)")
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
def _utility_parts(model: CausalLM, tok, items) -> list[float]:
    """Answer probability, ROUGE-L recall of the greedy answer, truth-ratio score."""
    qs, ans = [it.question for it in items], [it.answer for it in items]
    gen = generate(model, tok, qs)
    return [float(normalised_logprobs(model, tok, qs, ans).exp().mean()),
            float(np.mean([rouge_l(tok.decode(g), a)[0] for g, a in zip(gen, ans, strict=True)])),
            float((1 - truth_ratio(model, tok, items)).clamp_min(0).mean())]


@torch.no_grad()
def forget_metrics(model: CausalLM, tok, forget_items, tr_reference: torch.Tensor
                   ) -> dict[str, float]:
    """Forget quality (KS p-value against the retain model's truth ratios) and MC accuracy."""
    tr_f = truth_ratio(model, tok, forget_items)
    return {"forget_quality": float(ks_2samp(tr_f.numpy(), tr_reference.numpy()).pvalue),
            "forget_accuracy": float(mc_correct(option_logprobs(model, tok, forget_items))
                                     .float().mean()),
            "truth_ratio_forget_median": float(tr_f.median())}


@torch.no_grad()
def evaluate(model: CausalLM, tok, forget_items, retain_items, general_items,
             tr_reference: torch.Tensor) -> dict[str, float]:
    """Forget quality, model utility and forget accuracy of a chip-view model."""
    parts = _utility_parts(model, tok, retain_items) + _utility_parts(model, tok, general_items)
    mu = len(parts) / sum(1 / max(p, 1e-12) for p in parts)
    return forget_metrics(model, tok, forget_items, tr_reference) | {"model_utility": mu}


def _packed(tok, items) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Teacher-forcing batch (inputs, targets, answer mask) of QA items."""
    return pack(*zip(*encode_items(tok, items), strict=True), pad_id=tok.pad_id)


def value_mask(tok, items: list[QAItem]) -> torch.Tensor:
    """(B, T) bool, true at the target positions of each answer's value words (the fact
    itself, e.g. the city in "x was born in <city> ."), in the layout of ``_packed``."""
    _, y, m = _packed(tok, items)
    out = torch.zeros_like(m)
    for b, it in enumerate(items):
        ans, val = tok.answer_ids(it.answer), tok.encode(it.value)
        start = next(j for j in range(len(ans)) if ans[j:j + len(val)] == val)
        first = int(m[b].nonzero()[0])  # target index of the answer's first token
        out[b, first + start:first + start + len(val)] = True
    return out


def relearn(model: CausalLM, tok, items: list[QAItem], s: RelearnSettings) -> CausalLM:
    """The attacker: first-order Adam on ``items`` (its ``s.k`` forget samples), all weights,
    digital."""
    out = copy.deepcopy(model).train().requires_grad_(True)
    x, y, m = _packed(tok, items)
    opt = torch.optim.Adam(out.parameters(), lr=s.lr)
    for _ in range(s.steps):
        opt.zero_grad(set_to_none=True)
        answer_nll(out, x, y, m).mean().backward()
        opt.step()
    return out.eval().requires_grad_(False)


@dataclass
class SeedSetup:
    """Everything one seed's arms share: models, tokenizer, item splits, packed data, the
    chip's programming errors and the retain model's reference truth ratios."""

    seed: int
    tok: object
    target: CausalLM
    retain: CausalLM
    errors: dict[str, torch.Tensor]
    retain_chip: CausalLM
    forget: list[QAItem]
    attack: list[QAItem]  # the relearning attacker's samples
    forget_unseen: list[QAItem]  # forget items the attacker does not see
    retain_eval: list[QAItem]  # held out from the unlearning: utility only
    general: list[QAItem]
    data: dict[str, tuple[torch.Tensor, torch.Tensor, torch.Tensor]]
    tr_reference: torch.Tensor
    tr_reference_unseen: torch.Tensor
    bench_hash: str

    @property
    def utility_items(self) -> tuple[list[QAItem], list[QAItem], list[QAItem]]:
        return self.forget, self.retain_eval, self.general


def _draw(pool: list, n: int, gen: torch.Generator) -> tuple[list, list]:
    """(n items drawn without replacement, the rest), in pool order."""
    pick = set(torch.randperm(len(pool), generator=gen)[:n].tolist())
    return ([x for i, x in enumerate(pool) if i in pick],
            [x for i, x in enumerate(pool) if i not in pick])


def prepare_seed(cfg: Config, ctx: RunContext, i: int) -> SeedSetup:
    """Seed i's models (trained or cached), splits, chip programming and references."""
    off = i if cfg.vary_model else 0
    arts = load_models(BenchmarkConfig(seed=cfg.data_seed + off, n_authors=cfg.n_authors),
                       arch=cfg.arch, roles=("target", "retain"), seed=cfg.lm_seed + off,
                       train_cfg=TrainConfig(**cfg.train_overrides),
                       lm_overrides=cfg.lm_overrides)
    bench, tok = arts.bench, arts.tok
    target, retain = (arts.models[r].requires_grad_(False) for r in ("target", "retain"))
    keep = 100 - int(cfg.forget_split.removeprefix("forget"))
    forget = bench.split(cfg.forget_split)
    gen = torch.Generator().manual_seed(10_007 * (ctx.seed + i) + 1)
    retain_eval, retain_train = _draw(bench.split(f"retain{keep:02d}"), cfg.n_retain_eval, gen)
    general, _ = _draw(bench.split("general"), cfg.n_general_eval, gen)
    if cfg.relearn.k >= len(forget):
        raise ValueError(f"relearn.k = {cfg.relearn.k}: must be below the {len(forget)} items "
                         f"of {cfg.forget_split} (the attack is scored on the others)")
    attack, forget_unseen = _draw(forget, cfg.relearn.k, gen)
    chip_kw = dict(device=ctx.device, noise=ctx.noise, tile=cfg.tile, seed=ctx.seed + i)
    errors = chip_errors(target, realised_model(target, **chip_kw))
    retain_chip = realised_model(retain, **chip_kw)
    return SeedSetup(
        seed=i, tok=tok, target=target, retain=retain, errors=errors, retain_chip=retain_chip,
        forget=forget, attack=attack, forget_unseen=forget_unseen, retain_eval=retain_eval,
        general=general,
        data={"forget": _packed(tok, forget), "retain": _packed(tok, retain_train),
              "forget_loss_mask": (value_mask(tok, forget) if cfg.forget_tokens == "value"
                                   else _packed(tok, forget)[2])},
        tr_reference=truth_ratio(retain_chip, tok, forget),
        tr_reference_unseen=truth_ratio(retain_chip, tok, forget_unseen), bench_hash=bench.hash)


def assess(digital: CausalLM, st: SeedSetup, cfg: Config, errors=None) -> dict[str, float]:
    """All metrics of a digital model seen through its chip errors (``st.errors`` unless
    given), before and after the relearning attack."""
    errors = st.errors if errors is None else errors
    res = evaluate(with_errors(digital, errors), st.tok, *st.utility_items, st.tr_reference)
    attacked = with_errors(relearn(digital, st.tok, st.attack, cfg.relearn), errors)
    after = forget_metrics(attacked, st.tok, st.forget_unseen, st.tr_reference_unseen)
    res |= {f"{k}_relearned": v for k, v in after.items()}
    res["attack_accuracy_relearned"] = float(
        mc_correct(option_logprobs(attacked, st.tok, st.attack)).float().mean())
    return res


def reference_rows(st: SeedSetup, cfg: Config) -> dict[str, dict[str, float]]:
    """The target and the retain model on the chip (each through its own programming), both
    attacked as the arms are: the calibration of the relearning attack."""
    retain_err = chip_errors(st.retain, st.retain_chip)
    rows = {"target": assess(st.target, st, cfg), "retain_model": assess(st.retain, st, cfg,
                                                                          retain_err)}
    for r in rows.values():
        r["utility_loss"] = rows["target"]["model_utility"] - r["model_utility"]
    rows["target"]["mc_chance"] = 1 / len(st.forget[0].mc_options)
    return rows


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


@dataclass
class ArmProblem:
    """One arm's optimisation problem: the digital model it edits, the tail that computes
    the loss (its updated parameters hold digital θ; E is added in every forward), the
    updated names, their chip errors and the cached hidden states and θ_ref NLLs."""

    digital: CausalLM
    tail: Tail
    names: list[str]
    prefix: str
    expert: int | None
    err: dict[str, torch.Tensor | None]
    hidden: tuple[torch.Tensor, torch.Tensor, torch.Tensor]

    def full(self, params: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {n: v + self.err[n] if self.err[n] is not None else v for n, v in params.items()}


def arm_problem(arm: ArmConfig, cfg: Config, target: CausalLM, errors, data,
                moe_target: tuple[int, int] | None, cache: dict) -> ArmProblem:
    """Build the tail and swap the digital updated parameters in. ``cache`` holds what
    depends only on the target, E and the block (hidden states, θ_ref's NLL)."""
    layer = moe_target[0] if (moe_target and arm.target != "mlp") else cfg.layer
    layer = layer % target.cfg.n_layers
    expert = moe_target[1] if moe_target else None
    digital = copy.deepcopy(target)
    view = with_errors(digital, errors)  # frozen chip view; updated params swapped in below
    tail = Tail(view, layer)
    names = _updated_names(tail, arm.target, expert)
    prefix = f"blocks.{layer}."
    (xf, yf, _), (xr, _, _) = data["forget"], data["retain"]
    mf = data["forget_loss_mask"]
    if ("hidden", layer) not in cache:
        hf, hr = hidden_mid(view, xf, layer), hidden_mid(view, xr, layer)
        with torch.no_grad():  # θ_ref = the target on the chip: W + E, before the swap below
            cache["hidden", layer] = hf, hr, _seq_nll(tail(hf)[0], yf, mf)
    digital_state = digital.state_dict()
    for n, p in tail.named_parameters():
        p.requires_grad_(n in names)
        if n in names:
            with torch.no_grad():
                p.copy_(digital_state[prefix + n])
    return ArmProblem(digital=digital, tail=tail, names=names, prefix=prefix, expert=expert,
                      err={n: errors.get(prefix + n) for n in names},
                      hidden=cache["hidden", layer])


def arm_loss(arm: ArmConfig, cfg: Config, pb: ArmProblem, data, gen: torch.Generator):
    """(loss(params, part, P), next_batch()) for ``unlearn_loop`` (see ``LossFn``)."""
    hf, hr, nll_ref = pb.hidden
    (_, yf, _), (_, yr, mr) = data["forget"], data["retain"]
    mf = data["forget_loss_mask"]
    batch = {"f": None, "r": None}
    forget_term = FORGET_TERMS[arm.objective]

    def next_batch():
        batch["f"] = torch.randint(len(hf), (cfg.batch_forget,), generator=gen)
        batch["r"] = torch.randint(len(hr), (cfg.batch_retain,), generator=gen)
        return cfg.batch_forget, cfg.batch_retain

    def loss(params, part, P):
        i = batch["f"] if part == "forget" else batch["r"]
        h, y, m = (hf, yf, mf) if part == "forget" else (hr, yr, mr)
        hi = h[i] if P == 0 else h[i].expand(P, *h[i].shape)  # explicit P: B may equal P
        logits, probs = functional_call(pb.tail, pb.full(params), (hi,))
        nll = _seq_nll(logits, y[i], m[i])
        if part == "retain":
            return nll.mean(-1)
        value = forget_term(nll, nll_ref[i], beta=cfg.beta)
        if arm.anchor_alpha > 0 and probs is not None:
            lg = torch.log(probs[..., pb.expert].clamp_min(1e-12))
            mi = m[i].to(lg.dtype)
            value = value + arm.anchor_alpha * (-(lg * mi).sum((-2, -1)) / mi.sum())
        return value

    return loss, next_batch


def arm_mask(arm: ArmConfig, cfg: Config, pb: ArmProblem, layout: ParamLayout, data,
             cache: dict, seed: int) -> tuple[torch.Tensor | None, int]:
    """(mask or None, attribution queries). WAGLE: one first-order gradient of the summed
    NLL over every forget and retain-train sequence, one query per sequence."""
    if arm.mask == "none":
        return None, 0
    hf, hr, _ = pb.hidden
    (_, yf, _), (_, yr, mr) = data["forget"], data["retain"]
    mf = data["forget_loss_mask"]
    key = ("wagle", pb.prefix, tuple(pb.names))
    if key not in cache:
        theta = layout.flatten().requires_grad_(True)
        grads = []
        for h, y, m in ((hf, yf, mf), (hr, yr, mr)):
            full = pb.full(layout.unflatten(theta))
            (g,) = torch.autograd.grad(
                _seq_nll(functional_call(pb.tail, full, (h,))[0], y, m).sum(), theta)
            grads.append(g)
        cache[key] = wagle_scores(theta.detach(), grads[0], grads[1], mu=cfg.wagle_mu)
    mask = top_fraction_mask(cache[key], cfg.mask_ratio)
    if arm.mask == "random":
        return random_mask(layout.dim, int(mask.sum()),
                           generator=torch.Generator().manual_seed(seed + 17)), 0
    return mask, len(hf) + len(hr)


def run_arm(arm: ArmConfig, cfg: Config, st: SeedSetup, *, seed: int,
            moe_target: tuple[int, int] | None, progress=None,
            cache: dict | None = None) -> dict[str, float]:
    """One arm on one seed's setup. ``cache``: a dict shared by that seed's arms (hidden
    states, θ_ref's NLL, WAGLE scores), so each is computed once per seed."""
    cache = {} if cache is None else cache
    pb = arm_problem(arm, cfg, st.target, st.errors, st.data, moe_target, cache)
    layout = ParamLayout(pb.tail)
    gen = torch.Generator().manual_seed(seed)
    loss, next_batch = arm_loss(arm, cfg, pb, st.data, gen)
    mask, attribution = arm_mask(arm, cfg, pb, layout, st.data, cache, seed)
    if attribution >= cfg.budget:
        raise ValueError(f"budget = {cfg.budget}: arm {arm.name!r} spends {attribution} "
                         f"queries on its WAGLE attribution alone; raise the budget")
    settings = UpdateSettings(
        order=arm.order, objective=arm.objective, budget=cfg.budget - attribution,
        lr=arm.lr or (cfg.zo.lr if arm.order == "zo" else cfg.fo_lr), gamma=cfg.gamma,
        beta=cfg.beta, q=cfg.zo.q, mu=cfg.zo.mu, sam_rho=arm.sam_rho, rs_sigma=arm.rs_sigma,
        wa_every=arm.wa_every, directions=cfg.zo.directions)
    if progress is not None:
        progress.update(attribution)
    counters = unlearn_loop(layout, loss, next_batch, settings, generator=gen, mask=mask,
                            progress=progress)
    state = pb.digital.state_dict()
    for n, p in zip(layout.names, layout.params, strict=True):
        state[pb.prefix + n] = p.detach().clone()
    pb.digital.load_state_dict(state)
    res = assess(pb.digital, st, cfg)
    res |= {"forward_queries": counters["forward_queries"] + attribution,
            "steps": counters["steps"], "attribution_queries": attribution,
            "updated_params": layout.dim,
            "masked_params": int(mask.sum()) if mask is not None else layout.dim}
    if moe_target is not None:
        xf, _, mf = st.data["forget"]
        res["routing_to_target"] = routing_share(with_errors(pb.digital, st.errors), xf, mf,
                                                 *moe_target)
    return res


# ------------------------------------------------------------------------------- the run
def _moe_target(st: SeedSetup) -> tuple[tuple[int, int], dict[str, float]]:
    """UOE's (l*, e*) = argmax of the forget-token gate attribution on the chip target."""
    xf, _, mf = st.data["forget"]
    chip = with_errors(st.target, st.errors)
    attr = expert_attribution(chip, xf, mf)
    flat = int(attr.argmax())
    lt = (flat // attr.shape[1], flat % attr.shape[1])
    info = {f"attribution_l{i}e{j}": float(attr[i, j]) for i in range(attr.shape[0])
            for j in range(attr.shape[1])}
    info |= {"uoe_layer": lt[0], "uoe_expert": lt[1],
             "routing_to_target": routing_share(chip, xf, mf, *lt)}
    return lt, info


def run_seed(cfg: Config, ctx: RunContext, i: int, bar) -> dict[str, dict[str, float]]:
    """Every arm and both references on seed i: {row name: metrics}."""
    st = prepare_seed(cfg, ctx, i)
    rows = reference_rows(st, cfg)
    moe_target = None
    if cfg.arch == "moe":
        moe_target, info = _moe_target(st)
        rows["target"] |= info
    cache: dict = {}  # per-seed invariants shared by the arms (see run_arm)
    for k, arm in enumerate(cfg.arms):
        r = run_arm(arm, cfg, st, seed=1000 * (ctx.seed + i) + k, moe_target=moe_target,
                    progress=bar, cache=cache)
        r["utility_loss"] = rows["target"]["model_utility"] - r["model_utility"]
        rows[arm.name] = r
    return rows


def _acceptance(per_seed: list[dict[str, dict[str, float]]], arm: str) -> dict[str, float]:
    """Per-seed gaps to the stated target: forget accuracy − the retain model's (≤ 0.1) and
    utility loss (≤ 0.10), as median / worst / spread over seeds."""
    gap = [r[arm]["forget_accuracy"] - r["retain_model"]["forget_accuracy"] for r in per_seed]
    loss = [r[arm]["utility_loss"] for r in per_seed]
    return {"forget_gap_median": float(np.median(gap)), "forget_gap_worst": float(max(gap)),
            "forget_gap_spread": float(np.ptp(gap)),
            "utility_loss_median": float(np.median(loss)), "utility_loss_worst": float(max(loss)),
            "utility_loss_spread": float(np.ptp(loss)),
            "seeds_meeting_target": int(sum(g <= 0.1 and u <= 0.10
                                            for g, u in zip(gap, loss, strict=True)))}


def run(cfg: Config, ctx: RunContext) -> dict[str, object]:
    if cfg.model == "smollm2":
        return run_smollm2(cfg, ctx)
    seeds = list(range(cfg.n_seeds))
    bar = ctx.progress(len(seeds) * len(cfg.arms) * cfg.budget, "unlearning (queries)")
    per_seed = [run_seed(cfg, ctx, i, bar) for i in seeds]
    bar.close()
    names = list(per_seed[0])
    summary = {n: aggregate([r[n] for r in per_seed]) for n in names}
    comparisons = {f"{a}_vs_{b}.{k}": v for a, b in cfg.compare for k, v in paired_differences(
        [r[a] for r in per_seed], [r[b] for r in per_seed], COMPARED).items()}
    metrics: dict[str, object] = {
        **summary, "comparisons": comparisons, "budget_forward_queries": cfg.budget,
        "acceptance": {a.name: _acceptance(per_seed, a.name) for a in cfg.arms},
        "seeds": {f"seed{i}.{n}.{k}": v for i, r in zip(seeds, per_seed, strict=True)
                  for n, row in r.items() for k, v in row.items()},
    }
    _figures(ctx, per_seed, summary)
    ctx.write_text("report.md", _report(cfg, ctx, summary, comparisons, metrics["acceptance"]))
    if not math.isfinite(summary["target"]["forget_quality"]):
        raise RuntimeError("forget quality of the target is not finite")
    return metrics


def _figures(ctx: RunContext, per_seed: list[dict[str, dict[str, float]]],
             summary: dict[str, dict[str, float]]) -> None:
    """Forget quality vs utility per seed; forget accuracy before / after the attack."""
    fig = new_figure(figsize=(6, 4))
    ax = fig.subplots()
    for name in summary:
        ax.scatter([max(r[name]["forget_quality"], 1e-300) for r in per_seed],
                   [r[name]["model_utility"] for r in per_seed], label=name, s=18,
                   marker="*" if name in ("target", "retain_model") else "o")
    ax.set_xscale("log")
    ax.set_xlabel("forget quality (KS p-value, log scale)")
    ax.set_ylabel("model utility on held-out items (harmonic mean)")
    ax.legend(fontsize=7)
    ctx.savefig(fig, "quality_vs_utility.png")

    fig = new_figure(figsize=(7, 3.5))
    ax = fig.subplots()
    names = list(summary)
    xs = np.arange(len(names))
    for off, key, lab in ((-0.2, "forget_accuracy", "before attack (all forget items)"),
                          (0.2, "forget_accuracy_relearned",
                           "after relearning (items the attacker did not see)")):
        ax.bar(xs + off, [summary[n][key] for n in names], 0.4,
               yerr=[summary[n][f"{key}_std"] for n in names], label=lab)
    ax.axhline(summary["retain_model"]["forget_accuracy"], color="k", ls=":",
               label="retain model")
    ax.set_xticks(xs, names, rotation=30, ha="right", fontsize=7)
    ax.set_ylabel("forget MC accuracy (fraction)")
    ax.legend(fontsize=7)
    ctx.savefig(fig, "relearning.png")


def _report(cfg: Config, ctx: RunContext, summary, comparisons, acceptance) -> str:
    cols = list(METRICS) + (["routing_to_target"] if cfg.arch == "moe" else [])
    arms_desc = "\n".join(f"- `{a.name}`: {a.model_dump(exclude_defaults=True)}"
                          for a in cfg.arms)
    acc_rows = {a: {k: float(v) for k, v in m.items()} for a, m in acceptance.items()}
    acc_cols = list(next(iter(acceptance.values())))
    return f"""# Zeroth-order unlearning on the photonic chip ({cfg.arch} model)

Forget split `{cfg.forget_split}`; {cfg.n_seeds} seeds (seed i: benchmark seed
{cfg.data_seed} + i and LM seed {cfg.lm_seed} + i {"" if cfg.vary_model else "(not varied)"},
chip draw {ctx.seed} + i, held-out utility items, attacker samples and optimiser draws).
Chip: device `{ctx.device.name}`, {cfg.tile}×{cfg.tile} tiles, static programming errors of
noise `{ctx.noise.model_dump()}` (see the module docstring for what is and is not simulated).
Budget per arm {cfg.budget:,} forward queries (sequence inferences, WAGLE attribution
included); ZO: two-sided RGE, Gaussian directions on `{cfg.zo.directions}` supports,
q = {cfg.zo.q}, μ = {cfg.zo.mu}, Adam lr {cfg.zo.lr}; FO reference lr {cfg.fo_lr}; NPO
β = {cfg.beta}, γ = {cfg.gamma}; batches {cfg.batch_forget} forget + {cfg.batch_retain} retain;
mask ratio {cfg.mask_ratio}. Model utility on {cfg.n_retain_eval} retain items held out from
the unlearning and {cfg.n_general_eval} general items. Relearning: Adam lr {cfg.relearn.lr},
{cfg.relearn.steps} steps on k = {cfg.relearn.k} forget samples, scored on the other forget
items; `target` and `retain_model` rows are attacked the same way (calibration).

Arms:
{arms_desc}

## Results (mean ± sample std over seeds)
{seed_table(summary, cols)}

## Target: forget accuracy within 0.1 of the retain model's at ≤ 0.10 utility loss
Gaps per seed, median / worst / spread (max − min) over seeds:
{seed_table(acc_rows, acc_cols)}

## Paired comparisons (arm − baseline, percentile bootstrap 95 % CI over seeds)
{comparison_table(comparisons) if comparisons else "none configured"}

![quality vs utility](quality_vs_utility.png)

![relearning](relearning.png)
"""
