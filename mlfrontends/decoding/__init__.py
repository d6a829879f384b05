"""mlfrontends.decoding — greedy, DoLa and END decoding over early-exit logits, and the
``decode`` workload (``mlfrontends.decoding.workload``)."""

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
