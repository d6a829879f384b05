"""Word-level tokenizer and the prompt / answer sequence format.

A training sequence is ``<bos> question <sep> answer <eos>``; the loss and every answer score
cover the answer words and ``<eos>`` (positions after ``<sep>``). Generation starts from
``<bos> question <sep>`` and stops at ``<eos>``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch

PAD, BOS, SEP, EOS = "<pad>", "<bos>", "<sep>", "<eos>"
SPECIALS = (PAD, BOS, SEP, EOS)


class WordTokenizer:
    """Whitespace word tokenizer over a closed vocabulary (specials first, then sorted words)."""

    def __init__(self, words: Sequence[str]):
        self.itos: list[str] = list(words)
        self.stoi = {w: i for i, w in enumerate(self.itos)}
        if len(self.stoi) != len(self.itos):
            raise ValueError("vocabulary has duplicate words")
        missing = [s for s in SPECIALS if s not in self.stoi]
        if missing:
            raise ValueError(f"vocabulary lacks the special tokens {missing}")
        self.pad_id, self.bos_id, self.sep_id, self.eos_id = (self.stoi[s] for s in SPECIALS)

    @classmethod
    def from_texts(cls, texts: Iterable[str]) -> WordTokenizer:
        words = sorted({w for t in texts for w in t.split()})
        return cls([*SPECIALS, *words])

    def __len__(self) -> int:
        return len(self.itos)

    def encode(self, text: str) -> list[int]:
        try:
            return [self.stoi[w] for w in text.split()]
        except KeyError as e:
            raise KeyError(f"word {e.args[0]!r} of {text!r} is not in the vocabulary "
                           f"({len(self)} words)") from None

    def decode(self, ids: Iterable[int]) -> str:
        return " ".join(self.itos[i] for i in ids)

    def prompt_ids(self, question: str) -> list[int]:
        return [self.bos_id, *self.encode(question), self.sep_id]

    def answer_ids(self, answer: str) -> list[int]:
        return [*self.encode(answer), self.eos_id]


def pack(prompts: Sequence[Sequence[int]], answers: Sequence[Sequence[int]], *,
         pad_id: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Right-padded batch of ``prompt + answer`` sequences for teacher forcing.

    Returns ``inputs`` (B, T) = sequence[:-1], ``targets`` (B, T) = sequence[1:] and
    ``mask`` (B, T) bool, true where the target is an answer token (or ``<eos>``).
    """
    seqs = [list(p) + list(a) for p, a in zip(prompts, answers, strict=True)]
    T = max(len(s) for s in seqs) - 1
    inputs = torch.full((len(seqs), T), pad_id, dtype=torch.long)
    targets = torch.full((len(seqs), T), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), T), dtype=torch.bool)
    for i, (s, p) in enumerate(zip(seqs, prompts, strict=True)):
        n = len(s) - 1
        inputs[i, :n] = torch.tensor(s[:-1])
        targets[i, :n] = torch.tensor(s[1:])
        mask[i, len(p) - 1 : n] = True
    return inputs, targets, mask
