"""Zeroth-order NPO unlearning of TOFU-like facts fine-tuned into the pretrained SmolLM2-135M.

What runs (one seed):

1. The benchmark of ``mlfrontends.lm.data`` (seed ``data_seed + i``); ``n_retain_authors``
   retain authors and the authors of ``forget_split`` are the fictitious facts taught.
2. The frozen prefix (embedding + blocks ``0 … n_layers − n_top − 1``) runs once per
   sequence, digitally; its last hidden states are cached.
3. The top ``n_top`` blocks are programmed on the chip: every linear weight W of them gets the
   static programming error E = W_realised − W of ``tile``×``tile`` SVD meshes of the run's
   device and noise (``photonic.PhotonicMatrix.realised_matrix``; seed = the chip draw). The
   target (all taught authors + general) and the retain model (without the forget authors)
   are fine-tuned first-order on the chip (forward with W + E: hardware-aware fine-tuning),
   loss on answer tokens only, Adam. The LM head (tied embedding, 49152×576) stays digital.
4. ZO NPO (two-sided Gaussian RGE, q directions, MeZO-style, Adam) on the top block's MLP,
   forward-only with W + E; γ · retain NLL on retain-train items.
5. Metrics: forget MC accuracy (true answer vs the wrong values, trained phrasing, mean
   answer-token log-prob); model utility = harmonic mean of answer probability
   P(a|q)^{1/|a|} and truth-ratio score max(0, 1 − R) on held-out retain items (never in the
   retain loss) and on general items (4 numbers; ROUGE-L of a greedy answer is not computed
   on this path); utility_loss = target − unlearned.
"""

from __future__ import annotations

import copy
import math
import random
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field, field_validator

import photonic
from mlfrontends.lm.data import BenchmarkConfig, QAItem, build_benchmark
from mlfrontends.lm.pretrained import LlamaLM, rope_angles

PROMPT = "Question: {q}\nAnswer:"


class SmolSettings(BaseModel):
    """The ``workload.smollm2`` section (what the small-model workload has no field for)."""

    model_config = ConfigDict(extra="forbid")

    n_retain_authors: int = Field(10, ge=2, description="retain authors fine-tuned in")
    n_top: int = Field(2, ge=1, description="top blocks fine-tuned and on the chip")
    ft_epochs: int = Field(8, ge=1)
    ft_lr: float = Field(1e-3, gt=0)
    ft_batch: int = Field(32, ge=1)
    zo_steps: int = Field(60, ge=1)
    lrs: list[float] = Field([1e-4], min_length=1, description="ZO Adam lr of each NPO arm")

    @field_validator("lrs")
    @classmethod
    def _positive(cls, v: list[float]) -> list[float]:
        bad = [x for x in v if not x > 0]
        if bad:
            raise ValueError(f"workload.smollm2.lrs = {v}: every lr must be > 0 (got {bad})")
        return v


class SmolConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    forget_split: str = "forget05"
    n_retain_authors: int = Field(20, ge=2)
    n_retain_eval: int = Field(40, ge=1, description="held-out retain items for utility")
    n_general_eval: int = Field(40, ge=1)
    n_top: int = Field(2, ge=1, description="top blocks fine-tuned and on the chip")
    tile: int = Field(16, ge=2)
    ft_epochs: int = Field(12, ge=1)
    ft_lr: float = Field(1e-3, gt=0)
    ft_batch: int = Field(32, ge=1)
    zo_steps: int = Field(100, ge=0)
    zo_q: int = Field(4, ge=1)
    zo_mu: float = Field(1e-3, gt=0)
    zo_lr: float = Field(1e-4, gt=0)
    beta: float = Field(0.1, gt=0)
    gamma: float = Field(1.0, ge=0)
    batch_forget: int = Field(8, ge=1)
    batch_retain: int = Field(8, ge=1)


@dataclass
class Seqs:
    """Padded token ids (N, T), answer-target mask (N, T−1) and cached prefix states."""

    ids: torch.Tensor
    mask: torch.Tensor
    hidden: torch.Tensor | None = None


def encode(tok, pairs: list[tuple[str, str]]) -> Seqs:
    rows, masks = [], []
    for q, a in pairs:
        iq = tok.encode(PROMPT.format(q=q)).ids
        ia = tok.encode(" " + a).ids
        rows.append(iq + ia)
        masks.append([0] * (len(iq) - 1) + [1] * len(ia))
    t = max(map(len, rows))
    ids = torch.zeros(len(rows), t, dtype=torch.long)
    mask = torch.zeros(len(rows), t - 1, dtype=torch.bool)
    for k, (r, m) in enumerate(zip(rows, masks, strict=True)):
        ids[k, : len(r)] = torch.tensor(r)
        mask[k, : len(m)] = torch.tensor(m, dtype=torch.bool)
    return Seqs(ids, mask)


@torch.no_grad()
def cache_prefix(model: LlamaLM, s: Seqs, start: int, chunk: int = 64) -> None:
    angles = rope_angles(torch.arange(s.ids.shape[1]), model.cfg.head_dim, model.cfg.rope_base)
    out = []
    for i in range(0, len(s.ids), chunk):
        h = F.embedding(s.ids[i:i + chunk], model.tok_emb)
        for block in model.blocks[:start]:
            h = block(h, angles)
        out.append(h)
    s.hidden = torch.cat(out)


class TopTail(torch.nn.Module):
    """Blocks ``start …`` + final norm + head, on cached hidden states; per-sequence NLL of
    the answer tokens. ``err``: chip errors added to the named weights in every forward."""

    def __init__(self, model: LlamaLM, start: int, err: dict[str, torch.Tensor]):
        super().__init__()
        self.blocks = copy.deepcopy(model.blocks[start:])
        self.norm = copy.deepcopy(model.norm)
        self.head_w = model.tok_emb.detach()
        self.cfg = model.cfg
        self.err = err
        for p in self.parameters():
            p.requires_grad_(False)

    def seq_nll(self, h: torch.Tensor, ids: torch.Tensor, mask: torch.Tensor,
                params: dict[str, torch.Tensor] | None = None) -> torch.Tensor:
        own = dict(self.named_parameters())
        full = {n: (params or {}).get(n, p) for n, p in own.items()}
        full = {n: v + self.err[n] if n in self.err else v for n, v in full.items()}
        angles = rope_angles(torch.arange(h.shape[1]), self.cfg.head_dim, self.cfg.rope_base)
        out = torch.func.functional_call(self, full, (h, angles))
        pos = mask.nonzero(as_tuple=True)
        logits = out[:, :-1][pos] @ self.head_w.T
        lp = -F.cross_entropy(logits, ids[:, 1:][pos], reduction="none")
        tot = torch.zeros(len(ids)).index_add_(0, pos[0], lp)
        return -tot / mask.sum(1).clamp_min(1)

    def forward(self, h: torch.Tensor, angles: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            h = block(h, angles)
        return self.norm(h)


def chip_errors(tail: TopTail, device, noise, tile: int, seed: int) -> dict[str, torch.Tensor]:
    """E = W_realised − W for every linear weight of the tail (static programming errors)."""
    err = {}
    for k, (n, p) in enumerate(tail.named_parameters()):
        if p.ndim == 2:
            m = photonic.PhotonicMatrix(p.detach().double(), tile=tile, device=device,
                                        noise=noise, seed=seed * 1000 + k)
            with torch.no_grad():
                err[n] = (m.realised_matrix().float() - p.detach()).detach()
    return err


def finetune(tail: TopTail, s: Seqs, cfg: SmolConfig, seed: int) -> list[float]:
    """First-order Adam on the answer-token NLL of every tail parameter (through W + E)."""
    params = {n: p.detach().clone().requires_grad_(True) for n, p in tail.named_parameters()}
    opt = torch.optim.Adam(params.values(), lr=cfg.ft_lr)
    g = torch.Generator().manual_seed(seed)
    hist = []
    for _ in range(cfg.ft_epochs):
        perm = torch.randperm(len(s.ids), generator=g)
        tot = 0.0
        for i in range(0, len(perm), cfg.ft_batch):
            b = perm[i:i + cfg.ft_batch]
            loss = tail.seq_nll(s.hidden[b], s.ids[b], s.mask[b], params).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            tot += float(loss.detach()) * len(b)
        hist.append(tot / len(perm))
    with torch.no_grad():
        for n, p in tail.named_parameters():
            p.copy_(params[n])
    return hist


# --------------------------------------------------------------------------- metrics
@torch.no_grad()
def mean_logprob(tail: TopTail, s: Seqs, params=None, chunk: int = 64) -> torch.Tensor:
    return torch.cat([-tail.seq_nll(s.hidden[i:i + chunk], s.ids[i:i + chunk],
                                    s.mask[i:i + chunk], params)
                      for i in range(0, len(s.ids), chunk)])


def mc_accuracy(tail, s: Seqs, n_opt: int, params=None) -> float:
    lp = mean_logprob(tail, s, params).view(-1, n_opt)
    return float((lp.argmax(1) == 0).float().mean())


def utility_parts(tail, s: Seqs, n_wrong: int, params=None) -> tuple[float, float]:
    """(mean answer probability, mean truth-ratio score) from [answer, paraphrase, wrongs…]."""
    lp = mean_logprob(tail, s, params).view(-1, 2 + n_wrong)
    prob = lp[:, 0].exp().mean()
    ratio = (lp[:, 2:].exp().mean(1) / lp[:, 1].exp())
    return float(prob), float((1 - ratio).clamp_min(0).mean())


def harmonic(xs: list[float]) -> float:
    if min(xs) <= 0:
        return 0.0
    return len(xs) / sum(1 / x for x in xs)


def model_utility(tail, data: dict, n_wrong: int, params=None) -> float:
    return harmonic([*utility_parts(tail, data["util_retain"], n_wrong, params),
                     *utility_parts(tail, data["util_general"], n_wrong, params)])


# ------------------------------------------------------------------------------ data
def _mc_pairs(items: list[QAItem]) -> list[tuple[str, str]]:
    return [(it.question, o) for it in items for o in it.mc_options]


def _util_pairs(items: list[QAItem]) -> list[tuple[str, str]]:
    return [(it.question, a) for it in items
            for a in (it.answer, it.paraphrased_answer, *it.perturbed_answers)]


def build_data(tok, cfg: SmolConfig, data_seed: int) -> dict:
    """Items of one seed: the forget authors, ``n_retain_authors`` random retain authors (the
    first ``n_retain_eval`` of their items held out of the retain loss), general items."""
    bench = build_benchmark(BenchmarkConfig(seed=data_seed))
    if cfg.forget_split not in bench.forget_authors:
        raise ValueError(f"workload.forget_split = {cfg.forget_split!r}: must be one of "
                         f"{', '.join(bench.forget_authors)}")
    forget = bench.split(cfg.forget_split)
    f_ids = set(bench.forget_authors[cfg.forget_split])
    rng = random.Random(data_seed)
    pool = [a.author_id for a in bench.authors if a.author_id not in f_ids]
    r_ids = set(rng.sample(pool, cfg.n_retain_authors))
    retain = [it for it in bench.items if it.author_id in r_ids]
    rng.shuffle(retain)
    if cfg.n_retain_eval >= len(retain):
        raise ValueError(f"workload.n_retain_eval = {cfg.n_retain_eval}: must be below the "
                         f"{len(retain)} retain items")
    r_eval, r_train = retain[: cfg.n_retain_eval], retain[cfg.n_retain_eval:]
    general = bench.split("general")
    g_eval = rng.sample(general, min(cfg.n_general_eval, len(general)))
    qa = [(it.question, it.answer) for it in forget + retain + general]
    qa_retain = [(it.question, it.answer) for it in retain + general]
    return {"n_wrong": bench.cfg.n_wrong,
            "train_target": encode(tok, qa), "train_retain": encode(tok, qa_retain),
            "forget": encode(tok, [(it.question, it.answer) for it in forget]),
            "retain_train": encode(tok, [(it.question, it.answer) for it in r_train]),
            "forget_mc": encode(tok, _mc_pairs(forget)),
            "util_retain": encode(tok, _util_pairs(r_eval)),
            "util_general": encode(tok, _util_pairs(g_eval))}


# -------------------------------------------------------------------------- ZO NPO
def zo_npo(tail: TopTail, data: dict, cfg: SmolConfig, seed: int) -> dict[str, float]:
    """Forward-only NPO on the top block's MLP: two-sided Gaussian RGE (q directions per
    estimate, one direction per whole MLP), Adam on the estimate. Returns the update."""
    names = [n for n, _ in tail.named_parameters()
             if n.startswith(f"blocks.{len(tail.blocks) - 1}.mlp.")]
    if not names:
        raise RuntimeError("no MLP parameters found in the top block")
    own = dict(tail.named_parameters())
    theta = {n: own[n].detach().clone() for n in names}
    f, r = data["forget"], data["retain_train"]
    nll_ref = -mean_logprob(tail, f)
    g = torch.Generator().manual_seed(seed)
    m = {n: torch.zeros_like(v) for n, v in theta.items()}
    v2 = {n: torch.zeros_like(v) for n, v in theta.items()}
    queries = 0

    def loss(params, bf, br):
        nll_f = tail.seq_nll(f.hidden[bf], f.ids[bf], f.mask[bf], params)
        lf = -(2 / cfg.beta) * F.logsigmoid(cfg.beta * (nll_f - nll_ref[bf])).mean()
        lr_ = tail.seq_nll(r.hidden[br], r.ids[br], r.mask[br], params).mean()
        return float(lf + cfg.gamma * lr_)

    with torch.no_grad():
        for step in range(1, cfg.zo_steps + 1):
            bf = torch.randint(len(f.ids), (cfg.batch_forget,), generator=g)
            br = torch.randint(len(r.ids), (cfg.batch_retain,), generator=g)
            grad = {n: torch.zeros_like(v) for n, v in theta.items()}
            for _ in range(cfg.zo_q):
                u = {n: torch.randn(v.shape, generator=g) for n, v in theta.items()}
                lp = loss({n: theta[n] + cfg.zo_mu * u[n] for n in names}, bf, br)
                lm = loss({n: theta[n] - cfg.zo_mu * u[n] for n in names}, bf, br)
                for n in names:
                    grad[n] += (lp - lm) / (2 * cfg.zo_mu * cfg.zo_q) * u[n]
                queries += 2 * (cfg.batch_forget + cfg.batch_retain)
            for n in names:
                m[n].mul_(0.9).add_(grad[n], alpha=0.1)
                v2[n].mul_(0.999).addcmul_(grad[n], grad[n], value=0.001)
                mh, vh = m[n] / (1 - 0.9 ** step), v2[n] / (1 - 0.999 ** step)
                theta[n] -= cfg.zo_lr * mh / (vh.sqrt() + 1e-8)
    return theta | {"_queries": queries}


def run_seed(model: LlamaLM, tok, cfg: SmolConfig, *, device, noise, data_seed: int,
             chip_seed: int, seed: int, lrs: tuple[float, ...] | None = None,
             log=print) -> dict[str, float]:
    """Target and retain fine-tunes, ZO NPO of the target (at ``cfg.zo_lr``, or at each of
    ``lrs``: rows ``npo_lr<lr>``, the trade-off curve), metrics (see module docstring)."""
    start = model.cfg.n_layers - cfg.n_top
    data = build_data(tok, cfg, data_seed)
    for s in data.values():
        if isinstance(s, Seqs):
            cache_prefix(model, s, start)
    base = TopTail(model, start, {})
    err = chip_errors(base, device, noise, cfg.tile, chip_seed)
    rows: dict[str, float] = {}
    tails = {}
    for role, key in (("target", "train_target"), ("retain_model", "train_retain")):
        tail = TopTail(model, start, err)
        torch.manual_seed(seed)
        hist = finetune(tail, data[key], cfg, seed)
        log(f"{role}: fine-tune NLL {hist[0]:.3f} -> {hist[-1]:.3f}")
        tails[role] = tail
    nw = data["n_wrong"]
    for role, tail in tails.items():
        rows[f"{role}.forget_accuracy"] = mc_accuracy(tail, data["forget_mc"], nw + 1)
        rows[f"{role}.model_utility"] = model_utility(tail, data, nw)
    log(", ".join(f"{k} {v:.3f}" for k, v in rows.items()))
    for lr in lrs or (cfg.zo_lr,):
        key = "npo" if lrs is None else f"npo_lr{lr:.0e}"
        theta = zo_npo(tails["target"], data, cfg.model_copy(update={"zo_lr": lr}), seed)
        rows[f"{key}.forward_queries"] = theta.pop("_queries")
        rows[f"{key}.forget_accuracy"] = mc_accuracy(tails["target"], data["forget_mc"],
                                                     nw + 1, theta)
        rows[f"{key}.model_utility"] = model_utility(tails["target"], data, nw, theta)
        rows[f"{key}.utility_loss"] = rows["target.model_utility"] - rows[f"{key}.model_utility"]
        rows[f"{key}.forget_gap"] = (rows[f"{key}.forget_accuracy"]
                                     - rows["retain_model.forget_accuracy"])
        log(f"{key}: " + ", ".join(f"{k.split('.')[1]} {v:.3f}" for k, v in rows.items()
                                    if k.startswith(key + ".")))
        if not math.isfinite(rows[f"{key}.model_utility"]):
            raise RuntimeError(f"model utility after NPO (lr {lr}) is not finite")
    return rows


# ----------------------------------------------------------------- the workload's option
_FROM_WORKLOAD = ("forget_split", "tile", "beta", "gamma", "batch_forget", "batch_retain",
                  "n_retain_eval", "n_general_eval")


def _acceptance(per_seed: list[dict[str, float]], key: str) -> dict[str, float]:
    gap = [r[f"{key}.forget_gap"] for r in per_seed]
    loss = [r[f"{key}.utility_loss"] for r in per_seed]
    med = sorted(gap)[len(gap) // 2] if len(gap) % 2 else sum(sorted(gap)[len(gap) // 2 - 1:
                                                                        len(gap) // 2 + 1]) / 2
    lmed = sorted(loss)[len(loss) // 2] if len(loss) % 2 else sum(
        sorted(loss)[len(loss) // 2 - 1: len(loss) // 2 + 1]) / 2
    return {"forget_gap_median": med, "forget_gap_worst": max(gap),
            "forget_gap_spread": max(gap) - min(gap), "utility_loss_median": lmed,
            "utility_loss_worst": max(loss), "utility_loss_spread": max(loss) - min(loss),
            "seeds_meeting_target": sum(g <= 0.1 and u <= 0.10
                                        for g, u in zip(gap, loss, strict=True))}


def run_smollm2(cfg, ctx) -> dict[str, object]:
    """``workload.model: smollm2``: ``n_seeds`` seeds (seed i: benchmark ``data_seed + i``,
    chip draw ``ctx.seed + i``, fine-tune and optimiser ``ctx.seed + i``), one ZO NPO arm per
    lr of ``smollm2.lrs``; metrics.json keys ``seed<i>.<row>.<metric>`` and ``acceptance``."""
    from mlfrontends.lm.pretrained import load_pretrained

    s = cfg.smollm2
    smol = SmolConfig(**{k: getattr(cfg, k) for k in _FROM_WORKLOAD},
                      n_retain_authors=s.n_retain_authors, n_top=s.n_top,
                      ft_epochs=s.ft_epochs, ft_lr=s.ft_lr, ft_batch=s.ft_batch,
                      zo_steps=s.zo_steps, zo_q=cfg.zo.q, zo_mu=cfg.zo.mu)
    pre = load_pretrained()
    per_seed = []
    for i in range(cfg.n_seeds):
        per_seed.append(run_seed(pre.model, pre.tokenizer, smol, device=ctx.device,
                                 noise=ctx.noise, data_seed=cfg.data_seed + i,
                                 chip_seed=ctx.seed + i, seed=ctx.seed + i,
                                 lrs=tuple(s.lrs), log=lambda m, i=i: print(f"seed {i}: {m}")))
    keys = [f"npo_lr{lr:.0e}" for lr in s.lrs]
    acceptance = {k: _acceptance(per_seed, k) for k in keys}
    metrics = {"seeds": {f"seed{i}.{k}": v for i, r in enumerate(per_seed)
                         for k, v in r.items()}, "acceptance": acceptance}
    lines = [f"# ZO NPO unlearning of SmolLM2-135M on the photonic chip ({cfg.n_seeds} seeds)",
             "", f"Forget split `{cfg.forget_split}`, {s.n_retain_authors} retain authors; "
             f"top {s.n_top} blocks fine-tuned ({s.ft_epochs} epochs) and on "
             f"{cfg.tile}×{cfg.tile} tiles with static programming errors of device "
             f"`{ctx.device.name}`; prefix and LM head digital. ZO: {s.zo_steps} steps, "
             f"q = {cfg.zo.q}, μ = {cfg.zo.mu}.", "",
             "| arm | forget gap median | worst | spread | utility loss median | worst | "
             "spread | seeds meeting target |", "|---|---|---|---|---|---|---|---|"]
    for k, a in acceptance.items():
        lines.append(f"| {k} | " + " | ".join(f"{v:.3f}" for v in a.values()) + " |")
    ctx.write_text("report.md", "\n".join(lines) + "\n")
    return metrics
