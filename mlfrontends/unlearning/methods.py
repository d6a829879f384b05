"""LM unlearning objectives, attribution scores and the forward-only update loop.

Objectives (Fan et al. 2025), per-sequence mean answer-token NLLs in:
- GradDiff: ℓ = −mean NLL(θ; B_f) + γ · mean NLL(θ; B_r);
- NPO (Zhang et al. 2024): r = NLL(θ; B_f) − NLL(θ_ref; B_f) per sequence,
  ℓ_f = mean −(2/β) log σ(β r), ℓ = ℓ_f + γ · mean NLL(θ; B_r) (θ_ref's NLL cached).
Wrappers on the forget term (the retain term is always taken at θ):
- SAM: δ = ρ ĝ_f / ‖ĝ_f‖, update with ĝ_f(θ + δ) + γ ĝ_r(θ);
- randomised smoothing (RS): ĝ_f at θ + ε, ε ~ N(0, σ² I) fresh per step (σ ≫ the ZO μ);
- weight averaging (WA): running mean of θ every ``wa_every`` steps in the second half.
Gradients ĝ are ZO estimates (``mlfrontends.zo``: two-sided RGE along per-tensor Gaussian
directions, optionally masked) or, for the first-order reference, autograd.

Attribution:
- WAGLE (Jia et al. 2024): S_i = |(θ_i − [∇ℓ_r]_i / μ_w) · [∇ℓ_f]_i| with gradients of the
  NLL summed over D_f and D_r, μ_w = 1e-6; top fraction r kept. Gradients here are first
  order ("hybrid": computed once by back-propagation through the chip model's error model).
- UOE (Zhuang et al. 2024): a_{l,e} = mean gate probability of expert e of layer l over the
  forget answer tokens; the target is (l*, e*) = argmax_{l,e} a_{l,e}.
  Router anchor loss used here: α · mean_t (−log g_{e*}(x_t)) over forget answer tokens at
  layer l*, added to the unlearning loss (the paper's ambiguous equation read as a
  cross-entropy keeping forget tokens routed to e*).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from mlfrontends.zo import ParamLayout, block_directions, zo_gradient

__all__ = ["DIRECTION_SUPPORTS", "graddiff_forget", "npo_forget", "wagle_scores",
           "top_fraction_mask", "random_mask", "UpdateSettings", "unlearn_loop"]


def graddiff_forget(nll_f: torch.Tensor, nll_ref: torch.Tensor | None = None,
                    *, beta: float = 0.0) -> torch.Tensor:
    """GradDiff's forget term −mean NLL over the last dim: (*P, B) → (*P,)."""
    return -nll_f.mean(-1)


def npo_forget(nll_f: torch.Tensor, nll_ref: torch.Tensor, *, beta: float) -> torch.Tensor:
    """NPO's forget term mean −(2/β) log σ(β (NLL_θ − NLL_ref)): (*P, B) → (*P,)."""
    return (-(2.0 / beta) * F.logsigmoid(beta * (nll_f - nll_ref))).mean(-1)


FORGET_TERMS: dict[str, Callable[..., torch.Tensor]] = {
    "graddiff": graddiff_forget, "npo": npo_forget,
}


def wagle_scores(theta: torch.Tensor, grad_f: torch.Tensor, grad_r: torch.Tensor, *,
                 mu: float = 1e-6) -> torch.Tensor:
    """WAGLE attribution |(θ − ∇ℓ_r / μ) · ∇ℓ_f| elementwise (flat tensors)."""
    return ((theta - grad_r / mu) * grad_f).abs()


def top_fraction_mask(scores: torch.Tensor, ratio: float) -> torch.Tensor:
    """Boolean mask of the ``ceil(ratio · n)`` largest scores (ties broken by index)."""
    k = max(1, int(torch.ceil(torch.tensor(ratio * scores.numel())).item()))
    mask = torch.zeros(scores.numel(), dtype=torch.bool)
    mask[torch.topk(scores.flatten(), k).indices] = True
    return mask.reshape(scores.shape)


def random_mask(n: int, count: int, *, generator: torch.Generator) -> torch.Tensor:
    mask = torch.zeros(n, dtype=torch.bool)
    mask[torch.randperm(n, generator=generator)[:count]] = True
    return mask


@dataclass(frozen=True)
class UpdateSettings:
    """One arm's update rule. ``budget``: forward queries (sequence inferences)."""

    order: str  # "zo" | "fo"
    objective: str  # "graddiff" | "npo"
    budget: int
    lr: float
    gamma: float = 1.0
    beta: float = 0.1
    q: int = 4
    mu: float = 1e-3
    sam_rho: float = 0.0
    rs_sigma: float = 0.0
    wa_every: int = 0
    clip_norm: float | None = None
    directions: str = "per_tensor"  # key of DIRECTION_SUPPORTS


def _per_tensor_supports(layout: ParamLayout, mask: torch.Tensor | None) -> list[slice]:
    """One support per parameter tensor that holds at least one unmasked coordinate (a
    tensor the mask excludes entirely would only spend queries on zero directions)."""
    return [sl for sl in layout.slices if mask is None or bool(mask[sl].any())]


def _whole_support(layout: ParamLayout, mask: torch.Tensor | None) -> list[slice]:
    """One support over the whole (masked) vector: 2q queries per estimate, not 2q per tensor."""
    return [slice(0, layout.dim)]


DIRECTION_SUPPORTS: dict[str, Callable[[ParamLayout, torch.Tensor | None], list[slice]]] = {
    "per_tensor": _per_tensor_supports, "whole": _whole_support,
}


LossFn = Callable[[dict[str, torch.Tensor], str, int], torch.Tensor]
"""``loss(params, part, P)``: the loss part "forget" or "retain" of the current mini-batch
for parameters ``params`` (each with a leading P, or none when P == 0); returns (P,) or ()."""


def unlearn_loop(layout: ParamLayout, loss: LossFn, next_batch: Callable[[], tuple[int, int]],
                 s: UpdateSettings, *, generator: torch.Generator,
                 mask: torch.Tensor | None = None, progress=None) -> dict[str, float]:
    """Update the parameters of ``layout`` in place until ``s.budget`` forward queries.

    ``next_batch()`` draws the next forget / retain mini-batch (inside the caller's closure)
    and returns their sizes (B_f, B_r). A ZO estimate of one part costs 2q · (number of
    parameter tensors) · B sequence inferences (per-tensor directions), a first-order one B;
    SAM's second forget estimate costs the same again, RS nothing extra.
    Returns counters: forward queries used, steps, last losses."""
    theta0 = layout.flatten()
    param = torch.nn.Parameter(theta0.clone())
    opt = torch.optim.Adam([param], lr=s.lr)
    flat_mask = None if mask is None else mask.to(theta0.dtype)
    supports = DIRECTION_SUPPORTS[s.directions](layout, mask)
    used, steps = 0, 0
    avg, n_avg = None, 0
    last = {"forget": float("nan"), "retain": float("nan")}
    # a step's cost is known only after the batch sizes are drawn; stop when the next full
    # step would overrun the budget
    while True:
        bf, br = next_batch()
        mult = 2 * s.q * len(supports) if s.order == "zo" else 1
        n_forget_evals = 2 if s.sam_rho > 0 else 1
        cost = mult * (n_forget_evals * bf + br)
        if used + cost > s.budget:
            break
        theta = param.detach()
        grad_f_at = theta
        if s.rs_sigma > 0:
            eps = torch.randn(theta.shape, generator=generator, dtype=theta.dtype) * s.rs_sigma
            if flat_mask is not None:
                eps = eps * flat_mask
            grad_f_at = theta + eps
        g_f, l_f = _gradient(layout, loss, "forget", grad_f_at, s, generator, flat_mask, supports)
        if s.sam_rho > 0:
            shift = s.sam_rho * g_f / (g_f.norm() + 1e-12)
            g_f, l_f = _gradient(layout, loss, "forget", grad_f_at + shift, s, generator,
                                 flat_mask, supports)
        g_r, l_r = _gradient(layout, loss, "retain", theta, s, generator, flat_mask, supports)
        g = g_f + s.gamma * g_r
        if s.clip_norm is not None:
            g = g * torch.clamp(s.clip_norm / (g.norm() + 1e-30), max=1.0)
        opt.zero_grad(set_to_none=True)
        param.grad = g
        opt.step()
        used += cost
        steps += 1
        last = {"forget": l_f, "retain": l_r}
        if progress is not None:
            progress.update(cost)
        if s.wa_every and used > s.budget / 2 and steps % s.wa_every == 0:
            cur = param.detach().clone()
            n_avg += 1
            avg = cur if avg is None else avg + (cur - avg) / n_avg
    final = avg if avg is not None else param.detach()
    with torch.no_grad():
        for p, sl in zip(layout.params, layout.slices, strict=True):
            p.copy_(final[sl].reshape(p.shape))
    return {"forward_queries": used, "steps": steps, "final_forget_loss": last["forget"],
            "final_retain_loss": last["retain"], "averaged_snapshots": n_avg}


def _gradient(layout: ParamLayout, loss: LossFn, part: str, theta: torch.Tensor,
              s: UpdateSettings, generator: torch.Generator,
              mask: torch.Tensor | None, supports: list[slice]) -> tuple[torch.Tensor, float]:
    if s.order == "fo":
        t = theta.clone().requires_grad_(True)
        value = loss(layout.unflatten(t), part, 0)
        (grad,) = torch.autograd.grad(value, t)
        grad = grad if mask is None else grad * mask
        return grad.detach(), float(value.detach())
    U = block_directions(s.q, supports, layout.dim, distribution="gaussian",
                         generator=generator, dtype=theta.dtype)
    if mask is not None:
        U = U * mask
    with torch.no_grad():
        est = zo_gradient(lambda batch: loss(layout.unflatten(batch), part, batch.shape[0]),
                          theta, U, mu=s.mu, two_sided=True, scale=1.0 / s.q)
    return est.grad, est.loss
