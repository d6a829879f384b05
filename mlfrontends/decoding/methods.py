"""Forward-only decoding rules over early-exit logits: greedy, END and DoLa.

Early-exit logits z_l = head(final_norm(h_l)) for l = 0 … N (l = 0 is the embedding output,
l = N the last block, whose z_N are the model's logits).

END (Wu et al., NAACL 2025 Findings, "Improve Decoding Factuality by Token-wise Cross Layer
Entropy of Large Language Models", arXiv:2502.03199). Each layer l of a set L (upper layers plus
N) gives a next-token distribution p_l = softmax(z_l) over the vocabulary. For each candidate
token x the cross-layer distribution normalises that token's probabilities over the layers,
q_l(x) = p_l(x) / Σ_{l'∈L} p_{l'}(x), and its entropy is H(x) = −Σ_l q_l(x) log q_l(x)
(0 ≤ H ≤ log |L|). A sharp late rise of the token's probability (low H) signals factual
knowledge. Score s(x) = log p_N(x) − α H(x) on the head set {x : p_N(x) ≥ r · max p_N};
other tokens keep log p_N(x). Because H uses per-layer probabilities, adding a constant to
one layer's logits changes nothing (a raw-logit entropy would change). α = 0 gives log p_N,
whose argmax and log-softmax are greedy decoding's.

DoLa (Chuang et al., ICLR 2024, "Decoding by Contrasting Layers"). Per position, the premature
layer M = argmax_{j∈J} JSD(softmax z_N ‖ softmax z_j) over candidate layers J; score
s(x) = log p_N(x) − log p_M(x) on the head set {x : p_N(x) ≥ r · max p_N} (r = 0.1 in the
paper's generation setting), −∞ elsewhere.

Every rule is a scorer for ``mlfrontends.lm.metrics``: ``scorer(model, hidden_states) -> scores``
(greedy decoding takes the argmax; multiple-choice scoring takes ``log_softmax`` of the scores,
as DoLa's released code does with its contrast). Each rule reports
``extra_projections_per_token``: vocabulary projections (final norm + LM head) per generated
token beyond the one the model computes anyway.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import torch

from mlfrontends.lm.model import CausalLM


def early_exit_logits(model: CausalLM, hidden: list[torch.Tensor],
                      layers: tuple[int, ...]) -> torch.Tensor:
    """Stack of z_l for l in ``layers``: (len(layers), *hidden[0].shape[:-1], V)."""
    n = len(hidden) - 1
    bad = [l for l in layers if not 0 <= l <= n]
    if bad:
        raise ValueError(f"layers {bad} out of range: valid early-exit layers are 0..{n}")
    return torch.stack([model.exit_logits(hidden[l]) for l in layers])


def cross_layer_entropy(z: torch.Tensor) -> torch.Tensor:
    """H(x) from early-exit logits z (L, ..., V): p_l = softmax of z_l over the vocabulary (last
    dim), q_l(x) = p_l(x) / Σ_l' p_l'(x) over the layers (dim 0), H = −Σ_l q_l log q_l."""
    logp = torch.log_softmax(z, dim=-1)
    logq = torch.log_softmax(logp, dim=0)  # log p_l(x) − log Σ_l' p_l'(x)
    return -(logq.exp() * logq).sum(0)


def head_set(z_final: torch.Tensor, r: float) -> torch.Tensor:
    """Tokens with p_N(x) ≥ r · max_x p_N(x), computed in log space: log p ≥ log r + max log p."""
    if r <= 0:
        return torch.ones_like(z_final, dtype=torch.bool)
    logp = torch.log_softmax(z_final, dim=-1)
    return logp >= logp.max(dim=-1, keepdim=True).values + torch.log(torch.tensor(r))


def end_scores(z: torch.Tensor, *, alpha: float, r: float) -> torch.Tensor:
    """END scores from early-exit logits z (L, ..., V) whose last entry is the final layer."""
    logp_final = torch.log_softmax(z[-1], dim=-1)
    return torch.where(head_set(z[-1], r), logp_final - alpha * cross_layer_entropy(z),
                       logp_final)


def js_divergence(logits_p: torch.Tensor, logits_q: torch.Tensor) -> torch.Tensor:
    """Jensen–Shannon divergence (nats) of softmax(logits_p) and softmax(logits_q) over the last
    dim: ½ KL(p‖m) + ½ KL(q‖m), m = (p + q)/2; the inputs broadcast."""
    logp = torch.log_softmax(logits_p, dim=-1)
    logq = torch.log_softmax(logits_q, dim=-1)
    logp, logq = torch.broadcast_tensors(logp, logq)
    logm = torch.logsumexp(torch.stack([logp, logq]), dim=0) - torch.log(torch.tensor(2.0))
    kl = lambda a: (a.exp() * (a - logm)).sum(-1)  # noqa: E731
    return 0.5 * (kl(logp) + kl(logq))


def dola_scores(z_final: torch.Tensor, z_premature: torch.Tensor, *,
                r: float) -> tuple[torch.Tensor, torch.Tensor]:
    """DoLa scores and the chosen premature index into ``z_premature`` (J, ..., V)."""
    jsd = js_divergence(z_final.unsqueeze(0), z_premature)  # (J, ...)
    m = jsd.argmax(dim=0)
    zM = z_premature.gather(0, m[None, ..., None].expand(1, *z_final.shape)).squeeze(0)
    s = torch.log_softmax(z_final, dim=-1) - torch.log_softmax(zM, dim=-1)
    return s.masked_fill(~head_set(z_final, r), float("-inf")), m


class DecodingRule(ABC):
    """A scorer over early-exit logits; see the module docstring."""

    name: str

    @abstractmethod
    def __call__(self, model: CausalLM, hidden: list[torch.Tensor]) -> torch.Tensor: ...

    @abstractmethod
    def extra_projections_per_token(self, n_layers: int) -> int: ...


@dataclass(frozen=True)
class Greedy(DecodingRule):
    name: str = "greedy"

    def __call__(self, model: CausalLM, hidden: list[torch.Tensor]) -> torch.Tensor:
        return model.exit_logits(hidden[-1])

    def extra_projections_per_token(self, n_layers: int) -> int:
        return 0


@dataclass(frozen=True)
class END(DecodingRule):
    """``layers``: the upper layers of L; the final layer N is always added."""

    layers: tuple[int, ...]
    alpha: float
    r: float
    name: str = "end"

    def _set(self, n_layers: int) -> tuple[int, ...]:
        return tuple(sorted(set(self.layers) - {n_layers})) + (n_layers,)

    def __call__(self, model: CausalLM, hidden: list[torch.Tensor]) -> torch.Tensor:
        z = early_exit_logits(model, hidden, self._set(len(hidden) - 1))
        return end_scores(z, alpha=self.alpha, r=self.r)

    def extra_projections_per_token(self, n_layers: int) -> int:
        return len(self._set(n_layers)) - 1


@dataclass(frozen=True)
class DoLa(DecodingRule):
    """``premature_layers``: the candidate set J (each < N)."""

    premature_layers: tuple[int, ...]
    r: float
    name: str = "dola"

    def __call__(self, model: CausalLM, hidden: list[torch.Tensor]) -> torch.Tensor:
        n = len(hidden) - 1
        if any(l >= n for l in self.premature_layers):
            raise ValueError(f"premature_layers {self.premature_layers} must be below the final "
                             f"layer {n}")
        zN = model.exit_logits(hidden[-1])
        zJ = early_exit_logits(model, hidden, self.premature_layers)
        return dola_scores(zN, zJ, r=self.r)[0]

    def extra_projections_per_token(self, n_layers: int) -> int:
        return len(set(self.premature_layers))


def stacked(rules: list[DecodingRule]):
    """One scorer giving every rule's scores at once, (R, ..., V): a single forward pass serves
    all rules (the log-prob helpers treat R like a leading parameter batch)."""

    def scorer(model: CausalLM, hidden: list[torch.Tensor]) -> torch.Tensor:
        return torch.stack([rule(model, hidden) for rule in rules])

    return scorer
