"""Scores and metrics shared by the unlearning and decoding workloads.

Every function takes a ``scorer``: how the per-position next-token scores are formed from the
model's hidden states. ``None`` is the plain model (final-layer logits); the decoding workload
passes END / DoLa scorers. A scorer is ``scorer(model, hidden_states) -> scores`` where
``hidden_states`` is the list of n_layers + 1 hidden states at the positions of interest
(shape (*P, ..., d)) and the scores have shape (*P, ..., V); log-probabilities are
``log_softmax(scores)``.

Definitions (as in TOFU, Maini et al. 2024):

- length-normalised answer log-probability: (1/|a|) Σ_t log p(a_t | q, a_<t) over the answer
  words and ``<eos>``;
- truth ratio R = mean_j P(â_j|q)^{1/|â_j|} / P(ã|q)^{1/|ã|} over the perturbed answers â_j and
  the paraphrased answer ã (R ≪ 1: the model prefers the true fact);
- multiple-choice accuracy: the true option (index 0) has the strictly highest
  length-normalised log-probability among the options (chance = 1 / number of options);
- greedy exact match: the greedily generated answer (up to ``<eos>``) equals the reference
  word for word;
- ROUGE-L: longest-common-subsequence recall / F1 over words (Lin 2004); TOFU reports recall.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch.func import functional_call

from mlfrontends.lm.data import QAItem
from mlfrontends.lm.model import CausalLM
from mlfrontends.lm.tokenizer import WordTokenizer, pack

Scorer = Callable[[CausalLM, list[torch.Tensor]], torch.Tensor]


class _Scored(torch.nn.Module):
    """model + scorer as one module, so ``functional_call`` swaps parameters for both."""

    def __init__(self, model: CausalLM, scorer: Scorer):
        super().__init__()
        self.model, self.scorer = model, scorer

    def forward(self, ids: torch.Tensor, **kw) -> torch.Tensor:
        return self.scorer(self.model, self.model(ids, **kw).hidden_states)


def final_logits(model: CausalLM, hidden: list[torch.Tensor]) -> torch.Tensor:
    """The plain model's scores: final norm + head on the last hidden state."""
    return model.exit_logits(hidden[-1])


def sequence_logprobs(model: CausalLM, inputs: torch.Tensor, targets: torch.Tensor,
                      mask: torch.Tensor, *, scorer: Scorer | None = None,
                      param_batch: int | None = None,
                      params: dict[str, torch.Tensor] | None = None) -> torch.Tensor:
    """Summed log-probability of the masked targets per sequence: (*P, B).

    ``params``: parameters to swap in with ``torch.func.functional_call`` (any subset, each
    optionally with a leading batch P: the batched-parameter convention)."""
    scored = _Scored(model, scorer or final_logits)
    kw = {"param_batch": param_batch}
    if params is None:
        scores = scored(inputs, **kw)
    else:  # the scorer's head / norm projections must see the swapped parameters too
        scores = functional_call(scored, {f"model.{k}": v for k, v in params.items()},
                                 (inputs,), kw)
    return scores_logprobs(scores, targets, mask)


def scores_logprobs(scores: torch.Tensor, targets: torch.Tensor,
                    mask: torch.Tensor) -> torch.Tensor:
    """Summed log-probability of the masked targets under given scores (*P, B, T, V)."""
    logp = torch.log_softmax(scores, dim=-1)
    tgt = targets.expand(*logp.shape[:-1])
    tok = logp.gather(-1, tgt.unsqueeze(-1)).squeeze(-1)
    return (tok * mask).sum(-1)


def answer_nll(model: CausalLM, inputs: torch.Tensor, targets: torch.Tensor,
               mask: torch.Tensor, **kw) -> torch.Tensor:
    """Mean answer-token NLL per sequence (*P, B) of a ``pack``-ed batch; keywords as
    ``sequence_logprobs`` (``params``, ``param_batch``, ``scorer``)."""
    return -sequence_logprobs(model, inputs, targets, mask, **kw) / mask.sum(-1)


def answer_logprobs(model: CausalLM, tok: WordTokenizer, questions: Sequence[str],
                    answers: Sequence[str], *, scorer: Scorer | None = None,
                    batch_size: int = 256,
                    param_batch: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(summed log-prob (*P, N), answer length in tokens incl. ``<eos>`` (N,))."""
    prompts = [tok.prompt_ids(q) for q in questions]
    ans = [tok.answer_ids(a) for a in answers]
    sums = []
    for s in range(0, len(prompts), batch_size):
        x, y, m = pack(prompts[s:s + batch_size], ans[s:s + batch_size], pad_id=tok.pad_id)
        sums.append(sequence_logprobs(model, x, y, m, scorer=scorer, param_batch=param_batch))
    lengths = torch.tensor([len(a) for a in ans], dtype=torch.float32)
    return torch.cat(sums, dim=-1), lengths


def normalised_logprobs(model: CausalLM, tok: WordTokenizer, questions: Sequence[str],
                        answers: Sequence[str], **kw) -> torch.Tensor:
    """Length-normalised answer log-probabilities (*P, N)."""
    total, n = answer_logprobs(model, tok, questions, answers, **kw)
    return total / n


def option_logprobs(model: CausalLM, tok: WordTokenizer, items: Sequence[QAItem], *,
                    heldout: bool = False, **kw) -> torch.Tensor:
    """Length-normalised log-probs of every MC option, (*P, N, n_options).

    ``heldout=False``: the trained question with ``mc_options``; ``heldout=True``: the held-out
    question with the held-out phrasing (true ``heldout_answer`` first, then the perturbed)."""
    qs, opts = [], []
    for it in items:
        options = (it.heldout_answer, *it.perturbed_answers) if heldout else it.mc_options
        q = it.heldout_question if heldout else it.question
        qs += [q] * len(options)
        opts += list(options)
    lp = normalised_logprobs(model, tok, qs, opts, **kw)
    return lp.reshape(*lp.shape[:-1], len(items), -1)


def mc_correct(option_lp: torch.Tensor) -> torch.Tensor:
    """True where option 0 beats every other option strictly: (*P, N) bool."""
    return option_lp[..., 0] > option_lp[..., 1:].max(dim=-1).values


def truth_ratio(model: CausalLM, tok: WordTokenizer, items: Sequence[QAItem],
                **kw) -> torch.Tensor:
    """TOFU truth ratio per item (*P, N), conditioned on the trained question."""
    n_p = len(items[0].perturbed_answers)
    qs = [it.question for it in items for _ in range(n_p + 1)]
    ans = [a for it in items for a in (it.paraphrased_answer, *it.perturbed_answers)]
    lp = normalised_logprobs(model, tok, qs, ans, **kw)
    lp = lp.reshape(*lp.shape[:-1], len(items), n_p + 1)
    return lp[..., 1:].exp().mean(-1) / lp[..., 0].exp()


@torch.no_grad()
def generate(model: CausalLM, tok: WordTokenizer, questions: Sequence[str], *,
             scorer: Scorer | None = None, max_new_tokens: int = 16) -> list[list[int]]:
    """Greedy decoding under ``scorer`` (argmax of the scores) until ``<eos>``.

    Returns the generated ids without ``<eos>``. Prompts are bucketed by length so that a batch
    needs no padding (positions are absolute); later steps reuse the attention keys/values."""
    prompts = [tok.prompt_ids(q) for q in questions]
    results: list[list[int]] = [[] for _ in prompts]
    buckets: dict[int, list[int]] = {}
    for i, p in enumerate(prompts):
        buckets.setdefault(len(p), []).append(i)
    for idx in buckets.values():
        seq = torch.tensor([prompts[i] for i in idx])
        done = torch.zeros(len(idx), dtype=torch.bool)
        room = model.cfg.max_len - seq.shape[1]
        out = None
        for _ in range(min(max_new_tokens, room)):
            out = model(seq) if out is None else model(seq[:, -1:], past=out.past)
            scores = (scorer or final_logits)(model, [h[:, -1] for h in out.hidden_states])
            nxt = scores.argmax(-1)
            nxt[done] = tok.pad_id
            done |= nxt == tok.eos_id
            seq = torch.cat([seq, nxt[:, None]], dim=1)
            if done.all():
                break
        for row, i in enumerate(idx):
            gen = seq[row, len(prompts[i]):].tolist()
            results[i] = gen[: gen.index(tok.eos_id)] if tok.eos_id in gen else gen
    return results


def exact_match(generated: Sequence[Sequence[int]], references: Sequence[str],
                tok: WordTokenizer) -> torch.Tensor:
    """(N,) bool: generated ids equal the reference's word ids."""
    return torch.tensor([list(g) == tok.encode(r)
                         for g, r in zip(generated, references, strict=True)])


def rouge_l(prediction: str, reference: str) -> tuple[float, float]:
    """(recall, F1) of ROUGE-L over words (Lin 2004): LCS / |ref|, harmonic mean with LCS/|pred|."""
    p, r = prediction.split(), reference.split()
    if not p or not r:
        return 0.0, 0.0
    prev = [0] * (len(r) + 1)
    for a in p:
        cur = [0]
        for j, b in enumerate(r):
            cur.append(prev[j] + 1 if a == b else max(prev[j + 1], cur[j]))
        prev = cur
    lcs = prev[-1]
    if lcs == 0:
        return 0.0, 0.0
    rec, prec = lcs / len(r), lcs / len(p)
    return rec, 2 * rec * prec / (rec + prec)
