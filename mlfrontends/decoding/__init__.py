"""mlfrontends.decoding — greedy, DoLa and END decoding over early-exit logits (``methods``),
paired comparisons against greedy (``stats``) and the ``decode`` workload (``workload``,
``report``)."""

from mlfrontends.decoding.methods import (
    END,
    DecodingRule,
    DoLa,
    Greedy,
    cross_layer_entropy,
    dola_scores,
    early_exit_logits,
    end_scores,
    js_divergence,
    stacked,
)

__all__ = [
    "END",
    "DecodingRule",
    "DoLa",
    "Greedy",
    "cross_layer_entropy",
    "dola_scores",
    "early_exit_logits",
    "end_scores",
    "js_divergence",
    "stacked",
]
