"""A small causal transformer (dense or top-1 mixture-of-experts) built for photonic execution.

Design rules, so that the hub can run the model on a simulated tensor core:

- Every matrix multiply with a learned weight is a ``Linear`` module, a subclass of
  ``torch.nn.Linear`` called as a module. A converter that swaps ``nn.Linear`` modules (e.g. for
  ``photonic.PhotonicLinear``) therefore changes every projection: attention q/k/v and output,
  MLP / expert layers, MoE routers and the LM head. The token and position embeddings are
  look-ups, not matrix multiplies, and stay digital.
- Batched-parameter convention: any parameter may carry an extra leading dim P (swapped in
  with ``torch.func.functional_call``); the model then evaluates P independent parameter sets at
  once and every output gains a leading P: logits (P, B, T, V). The model finds P from its own
  parameters (those present at construction) or from ``forward(..., param_batch=P)``; once
  P is known the residual stream is expanded to (P, B, T, d), so every layer receives inputs
  with a leading P and needs no guessing. ``Linear`` with a (P, out, in) weight and (P, out) or
  (out,) bias maps (P, ..., in) to (P, ..., out); an input without the leading P (fewer dims
  than the weight, or first dim ≠ P) is broadcast over the P sets (the shape rule of
  ``photonic.core.batched_linear``).
- Early exit: ``exit_logits(h)`` applies the final norm and the LM head to any hidden state, so
  ``exit_logits(out.hidden_states[l])`` are layer l's logits, and ``l = n_layers`` gives exactly
  ``out.logits``.

Architecture: GPT-2-style pre-norm blocks (Radford et al. 2019), learned absolute positions,
GELU MLP, untied LM head. The MoE variant replaces each block's MLP by top-1 routing over
``n_experts`` expert MLPs (Switch Transformer, Fedus et al. 2022, JMLR 23(120)): the router's
softmax gives gate probabilities g(x); the chosen expert's output is scaled by its gate
probability, and training adds the Switch load-balancing loss E · Σ_e f_e · P_e.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field, model_validator
from torch import nn

from photonic.core import batched_linear


class LMConfig(BaseModel):
    """Architecture. ``n_experts = 0`` is the dense model; ≥ 2 the top-1 MoE variant."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    vocab_size: int = Field(ge=5)
    d_model: int = Field(128, ge=8)
    n_layers: int = Field(4, ge=1)
    n_heads: int = Field(4, ge=1)
    d_ff: int = Field(512, ge=1, description="MLP hidden width (dense model)")
    n_experts: int = Field(0, ge=0, description="0: dense MLP; >= 2: top-1 MoE")
    d_expert: int = Field(256, ge=1, description="hidden width of each expert MLP")
    max_len: int = Field(48, ge=2)

    @model_validator(mode="after")
    def _check(self) -> LMConfig:
        if self.d_model % self.n_heads:
            raise ValueError(f"d_model={self.d_model} must be divisible by "
                             f"n_heads={self.n_heads}")
        if self.n_experts == 1:
            raise ValueError("n_experts=1: use 0 for the dense model or >= 2 experts")
        return self


KV = tuple[torch.Tensor, torch.Tensor]


class Linear(nn.Linear):
    """``nn.Linear`` that also accepts a leading parameter batch P on its weight and bias."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return batched_linear(x, self.weight, self.bias)


def _lead_view(p: torch.Tensor, base_ndim: int, x_ndim: int) -> torch.Tensor:
    """Reshape a (P, *base) parameter to (P, 1, ..., 1, *base) for an x with x_ndim dims."""
    if p.dim() == base_ndim:
        return p
    return p.reshape(p.shape[0], *([1] * (x_ndim - 1 - base_ndim)), *p.shape[1:])


class LayerNorm(nn.Module):
    """LayerNorm (Ba et al. 2016) over the last dim; weight/bias may carry a leading P."""

    def __init__(self, d: int, eps: float = 1e-5):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(d))
        self.bias = nn.Parameter(torch.zeros(d))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.layer_norm(x, x.shape[-1:], eps=self.eps)
        return y * _lead_view(self.weight, 1, y.dim()) + _lead_view(self.bias, 1, y.dim())


class Attention(nn.Module):
    def __init__(self, cfg: LMConfig):
        super().__init__()
        self.n_heads = cfg.n_heads
        self.qkv = Linear(cfg.d_model, 3 * cfg.d_model)
        self.proj = Linear(cfg.d_model, cfg.d_model)

    def forward(self, x: torch.Tensor, past: KV | None = None) -> tuple[torch.Tensor, KV]:
        """x (..., T, d); ``past`` the keys/values of earlier positions (..., H, S, d/H)."""
        *lead, T, d = x.shape
        q, k, v = self.qkv(x).split(d, dim=-1)
        # (..., T, d) -> (..., H, T, d/H)
        q, k, v = (t.reshape(*t.shape[:-1], self.n_heads, d // self.n_heads).transpose(-2, -3)
                   for t in (q, k, v))
        if past is None:
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        else:
            k, v = torch.cat([past[0], k], dim=-2), torch.cat([past[1], v], dim=-2)
            S = k.shape[-2]
            mask = torch.ones(T, S, dtype=torch.bool).tril(diagonal=S - T)
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        return self.proj(y.transpose(-2, -3).reshape(*y.shape[:-3], T, d)), (k, v)


class MLP(nn.Module):
    def __init__(self, d_model: int, d_hidden: int):
        super().__init__()
        self.fc1 = Linear(d_model, d_hidden)
        self.fc2 = Linear(d_hidden, d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x)))


class MoE(nn.Module):
    """Top-1 mixture of expert MLPs (Switch routing). All experts are evaluated densely and the
    routed one is selected: with 4 small experts this is cheaper than a scatter, and it keeps the
    batched-parameter convention trivially (every expert sees the same (P, ..., d) input)."""

    def __init__(self, cfg: LMConfig):
        super().__init__()
        self.router = Linear(cfg.d_model, cfg.n_experts)
        self.experts = nn.ModuleList(MLP(cfg.d_model, cfg.d_expert)
                                     for _ in range(cfg.n_experts))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        probs = torch.softmax(self.router(x), dim=-1)  # (..., T, E)
        idx = probs.argmax(dim=-1)  # (..., T)
        outs = torch.stack([e(x) for e in self.experts], dim=-2)  # (..., T, E, d)
        outs, idx_b = torch.broadcast_tensors(outs, idx[..., None, None])
        chosen = outs.gather(-2, idx_b[..., :1, :]).squeeze(-2)
        gate = probs.gather(-1, idx.unsqueeze(-1))
        return gate * chosen, probs, idx


class Block(nn.Module):
    def __init__(self, cfg: LMConfig):
        super().__init__()
        self.ln1 = LayerNorm(cfg.d_model)
        self.attn = Attention(cfg)
        self.ln2 = LayerNorm(cfg.d_model)
        self.mlp: nn.Module = MoE(cfg) if cfg.n_experts else MLP(cfg.d_model, cfg.d_ff)

    def forward(self, x: torch.Tensor, past: KV | None = None
                ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None, KV]:
        a, present = self.attn(self.ln1(x), past)
        x = x + a
        if isinstance(self.mlp, MoE):
            y, probs, idx = self.mlp(self.ln2(x))
            return x + y, probs, idx, present
        return x + self.mlp(self.ln2(x)), None, None, present


@dataclass
class LMOutput:
    """``logits`` (*P, B, T, V); ``hidden_states`` n_layers + 1 tensors (*P, B, T, d): the
    embedding output, then the output of each block; MoE only: ``gate_probs`` per block
    (*P, B, T, E), ``expert_index`` per block (*P, B, T), ``aux_loss`` the Switch
    load-balancing loss summed over blocks; ``past`` each block's attention keys and values
    (pass back as ``forward(next_ids, past=out.past)`` for incremental decoding)."""

    logits: torch.Tensor
    hidden_states: list[torch.Tensor]
    gate_probs: list[torch.Tensor] = field(default_factory=list)
    expert_index: list[torch.Tensor] = field(default_factory=list)
    aux_loss: torch.Tensor | None = None
    past: list[KV] = field(default_factory=list)


class CausalLM(nn.Module):
    def __init__(self, cfg: LMConfig):
        super().__init__()
        self.cfg = cfg
        self.tok_emb = nn.Parameter(torch.empty(cfg.vocab_size, cfg.d_model))
        self.pos_emb = nn.Parameter(torch.empty(cfg.max_len, cfg.d_model))
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layers))
        self.ln_f = LayerNorm(cfg.d_model)
        self.head = Linear(cfg.d_model, cfg.vocab_size)
        self._init_weights()
        self._base_ndim = {n: p.dim() for n, p in self.named_parameters()}

    def _init_weights(self) -> None:
        # GPT-2 initialisation: N(0, 0.02), residual output projections scaled by 1/sqrt(2L).
        g = 0.02
        nn.init.normal_(self.tok_emb, std=g)
        nn.init.normal_(self.pos_emb, std=g)
        for name, mod in self.named_modules():
            if isinstance(mod, nn.Linear):
                std = g / math.sqrt(2 * self.cfg.n_layers) if name.endswith(("proj", "fc2")) else g
                nn.init.normal_(mod.weight, std=std)
                nn.init.zeros_(mod.bias)

    @property
    def n_params(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def param_batch(self) -> int | None:
        """P if the current parameters (e.g. under ``functional_call``) carry a leading batch."""
        P = None
        for name, p in self.named_parameters():
            base = self._base_ndim.get(name)
            if base is None or p.dim() == base:
                continue
            if p.dim() != base + 1 or (P is not None and p.shape[0] != P):
                raise ValueError(f"parameter {name!r} has shape {tuple(p.shape)}: expected its "
                                 f"{base}-d base shape with at most one leading batch dim "
                                 f"P={P}")
            P = p.shape[0]
        return P

    def exit_logits(self, h: torch.Tensor) -> torch.Tensor:
        """Final norm + LM head on any hidden state (early-exit logits)."""
        return self.head(self.ln_f(h))

    def forward(self, ids: torch.Tensor, *, param_batch: int | None = None,
                past: list[KV] | None = None) -> LMOutput:
        """``ids`` (B, T) token ids. ``param_batch`` forces P (see module docstring); ``past``
        (from an earlier output) continues those sequences: ``ids`` are the next positions."""
        start = past[0][0].shape[-2] if past else 0
        T = ids.shape[-1]
        if start + T > self.cfg.max_len:
            raise ValueError(f"sequence length {start + T} exceeds max_len={self.cfg.max_len}")
        P = param_batch or self.param_batch()
        tok = self.tok_emb
        h = tok[:, ids] if tok.dim() == 3 else F.embedding(ids, tok)
        pos = self.pos_emb[..., start:start + T, :]
        h = h + (pos.unsqueeze(1) if pos.dim() == 3 else pos)
        if P is not None and (h.dim() == ids.dim() + 1):
            h = h.unsqueeze(0).expand(P, *h.shape)
        hidden = [h]
        probs_all: list[torch.Tensor] = []
        idx_all: list[torch.Tensor] = []
        present: list[KV] = []
        for i, block in enumerate(self.blocks):
            h, probs, idx, kv = block(h, past[i] if past else None)
            hidden.append(h)
            present.append(kv)
            if probs is not None:
                probs_all.append(probs)
                idx_all.append(idx)
        aux = None
        if probs_all:
            E = self.cfg.n_experts
            aux = sum(E * (F.one_hot(i, E).float().mean(dim=(-3, -2)) * p.mean(dim=(-3, -2)))
                      .sum(-1).mean() for p, i in zip(probs_all, idx_all, strict=True))
        return LMOutput(self.exit_logits(h), hidden, probs_all, idx_all, aux, present)
