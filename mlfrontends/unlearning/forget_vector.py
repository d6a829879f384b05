"""Forget vectors (Sun et al. 2024, "Forget Vector: Unlearning via input perturbations"), on
a frozen digits classifier whose linear layers run on the photonic chip.

The model is never reprogrammed; unlearning learns one input perturbation δ ∈ R^64 added to
every (8×8 digit) input:

  L(δ) = α · CE(f(x + δ), y) over retain samples
       + β · mean max(z_y − max_{k≠y} z_k, −τ) over forget samples      (margin loss)
       + λ · ‖δ‖₂.

Forget-vector arithmetic: δ(w) = Σ_c w_c δ_c over a library of class-wise vectors δ_c; only
w ∈ R^10 is optimised. Here the library is learned first-order on the *digital* model
(offline, by whoever holds the weights) and w is tuned on the noisy chip, so the chip-side
search has 10 dimensions.

Tasks and arms (every arm of a task gets the same budget of forward queries = sample
inferences, counted on the chip; evaluation forwards are not counted):
- task "class" (forget ``forget_class``): ``fo_vector`` (back-propagation through the
  simulated chip, a digital twin knowing its realised errors), ``zo_vector`` (RGE, 64 dims);
- task "pair" (forget the two ``pair_classes`` at once, a request no library vector was made
  for): ``zo_vector_pair`` (64 dims), ``zo_arithmetic`` (10 dims), ``fo_arithmetic``.
``original`` is δ = 0.

Metrics (Jia et al. 2023, "Model sparsity can simplify machine unlearning", §5):
unlearning accuracy UA = 1 − accuracy on the forget training samples; retain accuracy on the
other training samples; test accuracy on test samples of the retained classes (and
``forget_test_accuracy`` on test samples of the forgotten classes); MIA efficacy = fraction
of forget samples a confidence-based membership-inference attack calls non-members (a
confidence threshold on the true-class probability, set for the best balanced accuracy of
retain-train members vs retained-class test non-members).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field, model_validator
from torch import nn

import photonic
from mlfrontends.unlearning.common import (
    Settings,
    aggregate,
    comparison_table,
    paired_differences,
    seed_table,
)
from mlfrontends.zo import FirstOrderStepper, ZOStepper
from photonic.runio import RunContext, WorkloadConfig, new_figure

__all__ = ["Config", "run", "DigitsData", "load_digits_split", "train_classifier",
           "InputShift", "ArithmeticShift", "forget_vector_loss", "evaluate", "mia_efficacy",
           "optimise"]

ARMS_CLASS = ("original", "fo_vector", "zo_vector")
ARMS_PAIR = ("original_pair", "zo_vector_pair", "zo_arithmetic", "fo_arithmetic")
COMPARE = (("zo_vector", "fo_vector"), ("zo_arithmetic", "zo_vector_pair"),
           ("zo_arithmetic", "fo_arithmetic"))
METRICS = ("unlearning_accuracy", "retain_accuracy", "test_accuracy", "forget_test_accuracy",
           "mia_efficacy", "delta_norm", "forward_queries")


class ZOSettings(Settings):
    """Randomised gradient estimate (two-sided, Gaussian) feeding Adam."""

    q: int = Field(8, ge=1, description="directions per step (2q chip evaluations)")
    mu: float = Field(0.01, gt=0, description="smoothing radius of the perturbations")
    lr: float = Field(0.02, gt=0)
    distribution: Literal["gaussian", "rademacher"] = "gaussian"


class Config(WorkloadConfig):
    kind: Literal["forget_vector"]
    n_seeds: int = Field(3, ge=1, description="seeds ctx.seed, ctx.seed+1, ...")
    test_fraction: float = Field(0.3, gt=0, lt=1)
    hidden: int = Field(32, ge=2, description="MLP hidden width (64 -> hidden -> 10)")
    pretrain_steps: int = Field(400, ge=1, description="full-batch Adam steps, digital")
    pretrain_lr: float = Field(0.01, gt=0)
    tile: int = Field(16, ge=2, description="photonic tile size k (k×k SVD meshes)")
    forget_class: int = Field(3, ge=0, le=9)
    pair_classes: tuple[int, int] = (1, 7)
    alpha: float = Field(1.0, ge=0, description="retain CE weight")
    beta: float = Field(1.0, ge=0, description="forget margin weight")
    tau: float = Field(2.0, ge=0, description="margin floor: stop once z_y is τ below")
    lam: float = Field(0.01, ge=0, description="‖δ‖₂ weight")
    batch_retain: int = Field(64, ge=1)
    batch_forget: int = Field(64, ge=1)
    zo_steps: int = Field(100, ge=1, description="ZO steps; sets every arm's query budget")
    zo: ZOSettings = ZOSettings()
    fo_lr: float = Field(0.02, gt=0)
    library_steps: int = Field(300, ge=1, description="digital FO steps per class vector")

    @model_validator(mode="after")
    def _distinct_pair(self) -> Config:
        a, b = self.pair_classes
        if a == b or not (0 <= a <= 9 and 0 <= b <= 9):
            raise ValueError(f"pair_classes={self.pair_classes}: need two distinct digits 0-9")
        return self

    @property
    def budget(self) -> int:
        """Forward queries of one arm: zo_steps · 2q · (batch_retain + batch_forget)."""
        return self.zo_steps * 2 * self.zo.q * (self.batch_retain + self.batch_forget)


# ----------------------------------------------------------------------------------- data
@dataclass(frozen=True)
class DigitsData:
    """scikit-learn's bundled 8×8 digits, pixels scaled to [0, 1], stratified split."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor


def load_digits_split(*, test_fraction: float, seed: int) -> DigitsData:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    d = load_digits()
    x = d.data.astype(np.float64) / 16.0
    xtr, xte, ytr, yte = train_test_split(x, d.target, test_size=test_fraction,
                                          stratify=d.target, random_state=seed)
    t = torch.as_tensor
    return DigitsData(t(xtr), t(ytr, dtype=torch.long), t(xte), t(yte, dtype=torch.long))


def train_classifier(data: DigitsData, *, hidden: int, steps: int, lr: float,
                     seed: int) -> nn.Sequential:
    """64 → hidden → 10 ReLU MLP, full-batch Adam, first order (pre-training is not the
    workload)."""
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(64, hidden), nn.ReLU(), nn.Linear(hidden, 10)).double()
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    for _ in range(steps):
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(data.x_train), data.y_train).backward()
        opt.step()
    model.requires_grad_(False)
    return model.eval()


# ----------------------------------------------------------------- perturbation modules
class InputShift(nn.Module):
    """x ↦ x + δ. Batched-parameter convention: δ (P, 64) maps (B, 64) to (P, B, 64)."""

    def __init__(self, dim: int = 64):
        super().__init__()
        self.delta = nn.Parameter(torch.zeros(dim, dtype=torch.float64))

    def shift(self) -> torch.Tensor:
        return self.delta

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        d = self.shift()
        return x + (d.unsqueeze(-2) if d.dim() == 2 else d)


class ArithmeticShift(InputShift):
    """x ↦ x + Σ_c w_c δ_c with a frozen library (C, 64); only w (C,) is learned."""

    def __init__(self, library: torch.Tensor):
        nn.Module.__init__(self)
        self.register_buffer("library", library.detach().clone())
        self.w = nn.Parameter(torch.zeros(library.shape[0], dtype=library.dtype))

    def shift(self) -> torch.Tensor:
        return self.w @ self.library


# ----------------------------------------------------------------------------- objective
def forget_vector_loss(logits_r: torch.Tensor, y_r: torch.Tensor, logits_f: torch.Tensor,
                       y_f: torch.Tensor, delta: torch.Tensor, *, alpha: float, beta: float,
                       tau: float, lam: float) -> torch.Tensor:
    """The forget-vector objective; logits (*P, B, 10), δ (*P, 64) → loss (*P,)."""
    ce = F.cross_entropy(logits_r.flatten(0, -2), y_r.expand(logits_r.shape[:-1]).flatten(),
                         reduction="none").reshape(logits_r.shape[:-1]).mean(-1)
    yf = y_f.expand(logits_f.shape[:-1]).unsqueeze(-1)
    z_y = logits_f.gather(-1, yf).squeeze(-1)
    others = logits_f.scatter(-1, yf, float("-inf")).amax(-1)
    margin = torch.clamp(z_y - others, min=-tau).mean(-1)
    return alpha * ce + beta * margin + lam * delta.norm(dim=-1)


@torch.no_grad()
def _predict_proba(model: nn.Module, x: torch.Tensor, delta: torch.Tensor) -> torch.Tensor:
    return torch.softmax(model(x + delta), dim=-1)


def mia_efficacy(p_member: torch.Tensor, p_nonmember: torch.Tensor,
                 p_forget: torch.Tensor) -> float:
    """Fraction of forget samples a confidence-threshold MIA calls non-members.

    Inputs are true-class probabilities. The attacker calls a sample a member iff its
    confidence is ≥ t (members are fitted better: Yeom et al. 2018, CSF); t maximises the
    balanced accuracy on members vs non-members. Efficacy = share of forget samples < t."""
    cand = torch.cat([p_member, p_nonmember]).unique()
    tpr = (p_member[None, :] >= cand[:, None]).double().mean(1)
    tnr = (p_nonmember[None, :] < cand[:, None]).double().mean(1)
    t = cand[int(torch.argmax(tpr + tnr))]
    return float((p_forget < t).double().mean())


def evaluate(model: nn.Module, data: DigitsData, forget: tuple[int, ...],
             delta: torch.Tensor) -> dict[str, float]:
    fset = torch.tensor(forget)
    ftr = torch.isin(data.y_train, fset)
    fte = torch.isin(data.y_test, fset)
    ptr = _predict_proba(model, data.x_train, delta)
    pte = _predict_proba(model, data.x_test, delta)
    ok_tr = ptr.argmax(-1) == data.y_train
    ok_te = pte.argmax(-1) == data.y_test
    conf_tr = ptr.gather(-1, data.y_train[:, None]).squeeze(-1)
    conf_te = pte.gather(-1, data.y_test[:, None]).squeeze(-1)
    return {
        "unlearning_accuracy": 1.0 - float(ok_tr[ftr].double().mean()),
        "retain_accuracy": float(ok_tr[~ftr].double().mean()),
        "test_accuracy": float(ok_te[~fte].double().mean()),
        "forget_test_accuracy": float(ok_te[fte].double().mean()),
        "mia_efficacy": mia_efficacy(conf_tr[~ftr], conf_te[~fte], conf_tr[ftr]),
        "delta_norm": float(delta.norm()),
    }


# -------------------------------------------------------------------------- optimisation
def optimise(model: nn.Module, shift: InputShift, data: DigitsData, forget: tuple[int, ...],
             cfg: Config, *, method: Literal["zo", "fo"], budget: int, seed: int,
             progress=None) -> int:
    """Optimise ``shift`` in place until ``budget`` forward queries are spent; returns the
    queries used. ZO: mini-batches of (batch_retain + batch_forget) samples, 2q chip
    evaluations per step (all in one batched call). FO: full-batch gradient descent through
    the chip, one forward of every training sample per step."""
    fmask = torch.isin(data.y_train, torch.tensor(forget))
    xr, yr = data.x_train[~fmask], data.y_train[~fmask]
    xf, yf = data.x_train[fmask], data.y_train[fmask]
    g = torch.Generator().manual_seed(seed)
    kw = dict(alpha=cfg.alpha, beta=cfg.beta, tau=cfg.tau, lam=cfg.lam)
    used = 0
    if method == "zo":
        opt = torch.optim.Adam(shift.parameters(), lr=cfg.zo.lr)
        stepper = ZOStepper(shift, opt, mu=cfg.zo.mu, num_queries=cfg.zo.q,
                            distribution=cfg.zo.distribution, per_tensor=False, generator=g)
        per_step = 2 * cfg.zo.q * (cfg.batch_retain + cfg.batch_forget)
        while used + per_step <= budget:
            ir = torch.randint(len(xr), (cfg.batch_retain,), generator=g)
            jf = torch.randint(len(xf), (cfg.batch_forget,), generator=g)

            def loss(fwd, ir=ir, jf=jf):
                # one chip call for both batches (the hub reprograms the tiles per call)
                z = model(fwd(torch.cat([xr[ir], xf[jf]])))
                d = fwd(torch.zeros(1, 64, dtype=torch.float64)).squeeze(-2)
                return forget_vector_loss(z[..., : len(ir), :], yr[ir], z[..., len(ir):, :],
                                          yf[jf], d, **kw)

            stepper.step(loss)
            used += per_step
            if progress is not None:
                progress.update(1)
        return used
    opt = torch.optim.Adam(shift.parameters(), lr=cfg.fo_lr)
    stepper = FirstOrderStepper(shift, opt)
    per_step = len(xr) + len(xf)
    x_all = torch.cat([xr, xf])

    def full_loss(fwd):
        z = model(fwd(x_all))
        return forget_vector_loss(z[: len(xr)], yr, z[len(xr):], yf, shift.shift(), **kw)

    while used + per_step <= budget:
        stepper.step(full_loss)
        used += per_step
    if progress is not None:
        progress.update(budget // (2 * cfg.zo.q * (cfg.batch_retain + cfg.batch_forget)))
    return used


def class_library(model: nn.Module, data: DigitsData, cfg: Config, *,
                  seed: int) -> torch.Tensor:
    """(10, 64) class-wise forget vectors, first order on the digital model (offline)."""
    rows = []
    for c in range(10):
        shift = InputShift()
        opt = torch.optim.Adam(shift.parameters(), lr=cfg.fo_lr)
        fmask = data.y_train == c
        xr, yr, xf, yf = (data.x_train[~fmask], data.y_train[~fmask], data.x_train[fmask],
                          data.y_train[fmask])
        for _ in range(cfg.library_steps):
            opt.zero_grad(set_to_none=True)
            forget_vector_loss(model(shift(xr)), yr, model(shift(xf)), yf, shift.delta,
                               alpha=cfg.alpha, beta=cfg.beta, tau=cfg.tau,
                               lam=cfg.lam).backward()
            opt.step()
        rows.append(shift.delta.detach().clone())
    return torch.stack(rows)


def run_seed(cfg: Config, *, seed: int, device: photonic.DeviceParams,
             noise: photonic.NoiseConfig, progress=None) -> tuple[dict, dict]:
    """All arms for one seed: ({arm: metrics}, {arm: δ} for figures)."""
    torch.manual_seed(seed)
    data = load_digits_split(test_fraction=cfg.test_fraction, seed=seed)
    digital = train_classifier(data, hidden=cfg.hidden, steps=cfg.pretrain_steps,
                               lr=cfg.pretrain_lr, seed=seed)
    library = class_library(digital, data, cfg, seed=seed)
    chip = photonic.convert_linear(copy.deepcopy(digital), mode="weight", tile=cfg.tile,
                                   device=device, noise=noise, seed=seed)
    chip.requires_grad_(False)
    out: dict[str, dict[str, float]] = {}
    deltas: dict[str, torch.Tensor] = {}
    zero = torch.zeros(64, dtype=torch.float64)
    tasks = {
        "class": ((cfg.forget_class,), {"fo_vector": ("fo", InputShift()),
                                        "zo_vector": ("zo", InputShift())}),
        "pair": (tuple(cfg.pair_classes), {"zo_vector_pair": ("zo", InputShift()),
                                           "zo_arithmetic": ("zo", ArithmeticShift(library)),
                                           "fo_arithmetic": ("fo", ArithmeticShift(library))}),
    }
    for task, (forget, arms) in tasks.items():
        base = "original" if task == "class" else "original_pair"
        out[base] = evaluate(chip, data, forget, zero) | {"forward_queries": 0}
        for k, (arm, (method, shift)) in enumerate(arms.items()):
            used = optimise(chip, shift, data, forget, cfg, method=method, budget=cfg.budget,
                            seed=seed * 1000 + k, progress=progress)
            delta = shift.shift().detach()
            out[arm] = evaluate(chip, data, forget, delta) | {"forward_queries": used}
            deltas[arm] = delta
    return out, deltas


def run(cfg: Config, ctx: RunContext) -> dict[str, object]:
    """The ``forget_vector`` workload: all arms over ``n_seeds`` seeds; writes report.md and
    figures; returns {arm: {metric: mean, metric_std: std}} plus the per-seed values."""
    seeds = [ctx.seed + i for i in range(cfg.n_seeds)]
    steps_per_arm = cfg.budget // (2 * cfg.zo.q * (cfg.batch_retain + cfg.batch_forget))
    bar = ctx.progress(len(seeds) * 5 * steps_per_arm, "forget vectors")  # 5 trained arms
    per_seed: list[dict] = []
    first_deltas: dict[str, torch.Tensor] = {}
    for s in seeds:
        res, deltas = run_seed(cfg, seed=s, device=ctx.device, noise=ctx.noise, progress=bar)
        per_seed.append(res)
        first_deltas = first_deltas or deltas
    bar.close()
    arms = list(per_seed[0])
    summary = {arm: aggregate([r[arm] for r in per_seed]) for arm in arms}
    metrics: dict[str, object] = {arm: summary[arm] for arm in arms}
    metrics["seeds"] = {f"seed{s}.{arm}.{k}": v for s, r in zip(seeds, per_seed, strict=True)
                        for arm in arms for k, v in r[arm].items()}
    metrics["budget_forward_queries"] = cfg.budget
    keys = ("unlearning_accuracy", "retain_accuracy", "test_accuracy", "mia_efficacy")
    metrics["comparisons"] = comparisons = {
        f"{a}_vs_{b}.{k}": v for a, b in COMPARE
        for k, v in paired_differences([r[a] for r in per_seed], [r[b] for r in per_seed],
                                       keys).items()}
    _figures(ctx, first_deltas, summary, seed=seeds[0])
    ctx.write_text("report.md", _report(cfg, ctx, summary, comparisons, seeds))
    return metrics


def _figures(ctx: RunContext, deltas: dict[str, torch.Tensor],
             summary: dict[str, dict[str, float]], *, seed: int) -> None:
    """The learned δ of each arm (first seed; colormap centred at zero) and the metrics."""
    fig = new_figure(figsize=(2.9 * len(deltas), 3.0))
    axes = np.atleast_1d(fig.subplots(1, len(deltas)))
    for ax, (arm, d) in zip(axes, deltas.items(), strict=True):
        lim = float(d.abs().max()) or 1.0
        im = ax.imshow(d.reshape(8, 8).numpy(), cmap="RdBu_r", vmin=-lim, vmax=lim)
        ax.set_title(arm, fontsize=8)
        ax.set_xlabel("pixel column", fontsize=7)
        ax.set_ylabel("pixel row", fontsize=7)
        fig.colorbar(im, ax=ax, fraction=0.046).set_label("δ (input intensity units)",
                                                           fontsize=7)
    fig.suptitle(f"learned δ (seed {seed})")
    ctx.savefig(fig, "deltas.png")

    fig = new_figure(figsize=(8, 3.5))
    ax = fig.subplots()
    show = ("unlearning_accuracy", "retain_accuracy", "test_accuracy", "mia_efficacy")
    width = 0.8 / len(summary)
    for i, arm in enumerate(summary):
        ax.bar(np.arange(len(show)) + i * width, [summary[arm][m] for m in show], width,
               yerr=[summary[arm][f"{m}_std"] for m in show], label=arm)
    ax.set_xticks(np.arange(len(show)) + 0.4 - width / 2, show, fontsize=8)
    ax.set_xlabel("metric")
    ax.set_ylabel("fraction of samples (mean ± std over seeds)")
    ax.set_ylim(0, 1.05)
    ax.legend(fontsize=7, ncol=2)
    ctx.savefig(fig, "metrics.png")


def _report(cfg: Config, ctx: RunContext, summary, comparisons, seeds) -> str:
    cols = list(METRICS)
    return f"""# Forget vectors on the photonic chip (8×8 digits)

Frozen 64→{cfg.hidden}→10 MLP (trained first order, digitally), both linear layers run on
{cfg.tile}×{cfg.tile} photonic SVD tiles in weight mode with device `{ctx.device.name}` and
noise `{ctx.noise.model_dump()}`. Only an input perturbation δ is learned; the chip is never
reprogrammed. Seeds: {seeds}. Budget per arm: {cfg.budget:,} forward queries (sample
inferences on the chip; evaluation not counted). ZO: two-sided Gaussian RGE, q = {cfg.zo.q},
μ = {cfg.zo.mu}, Adam lr {cfg.zo.lr}, batches {cfg.batch_retain} retain + {cfg.batch_forget}
forget. FO: full-batch Adam (lr {cfg.fo_lr}) back-propagating through the simulated chip (a
digital twin knowing the realised errors), as many steps as the budget allows.
Forget-vector arithmetic: the class-wise library δ_0..δ_9 is learned first order on the
*digital* model ({cfg.library_steps} steps each, offline, not counted in the chip budget);
on the chip only w ∈ R^10 is optimised.

## Task "class": forget digit {cfg.forget_class}
{seed_table({a: summary[a] for a in ARMS_CLASS}, cols)}

## Task "pair": forget digits {cfg.pair_classes[0]} and {cfg.pair_classes[1]} together
{seed_table({a: summary[a] for a in ARMS_PAIR}, cols)}

## Paired differences (percentile bootstrap 95 % CI over seeds)
{comparison_table(comparisons)}

Mean ± sample std over {len(seeds)} seeds. UA = 1 − accuracy on forgotten training samples;
MIA efficacy = share of forgotten samples a confidence-based attacker calls non-members.

![metrics](metrics.png)

![deltas](deltas.png)
"""
