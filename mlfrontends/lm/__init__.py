"""mlfrontends.lm — the small language models and the TOFU-like benchmark shared by the
unlearning and decoding workloads.

- data: ``build_benchmark(BenchmarkConfig(seed, n_authors, n_wrong)) -> Benchmark`` with
  ``.split(name)``, ``.hash``;
- tokenizer: ``WordTokenizer``, ``pack``;
- model: ``CausalLM(LMConfig(...))`` (dense or top-1 MoE; every projection an ``nn.Linear``;
  batched-parameter convention; ``exit_logits``);
- train: ``load_models(...) -> LMArtefacts`` (target / retain / partial, cached), ``answer_nll``;
- metrics: answer log-probs, truth ratio, MC accuracy, greedy generation / exact match, ROUGE-L;
- chip: ``photonic_model`` / ``realised_model`` (linear layers on the hub's tensor cores).
"""

from mlfrontends.lm.chip import photonic_model, realised_model
from mlfrontends.lm.data import SPLIT_NAMES, Benchmark, BenchmarkConfig, QAItem, build_benchmark
from mlfrontends.lm.metrics import (
    answer_logprobs,
    answer_nll,
    exact_match,
    generate,
    mc_correct,
    normalised_logprobs,
    option_logprobs,
    rouge_l,
    sequence_logprobs,
    truth_ratio,
)
from mlfrontends.lm.model import CausalLM, LMConfig, LMOutput, batched_linear
from mlfrontends.lm.tokenizer import WordTokenizer, pack
from mlfrontends.lm.train import (
    LMArtefacts,
    TrainConfig,
    default_cache_dir,
    encode_items,
    load_models,
    train_model,
    training_items,
)

__all__ = [
    "SPLIT_NAMES",
    "Benchmark",
    "BenchmarkConfig",
    "CausalLM",
    "LMArtefacts",
    "LMConfig",
    "LMOutput",
    "QAItem",
    "TrainConfig",
    "WordTokenizer",
    "answer_logprobs",
    "answer_nll",
    "batched_linear",
    "build_benchmark",
    "default_cache_dir",
    "encode_items",
    "exact_match",
    "generate",
    "load_models",
    "mc_correct",
    "normalised_logprobs",
    "option_logprobs",
    "pack",
    "photonic_model",
    "realised_model",
    "rouge_l",
    "sequence_logprobs",
    "train_model",
    "training_items",
    "truth_ratio",
]
