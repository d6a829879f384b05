"""mlfrontends.unlearning — forward-only unlearning workloads on the photonic chip.

- ``forget_vector``: input-space forget vectors on a digits classifier (kind "forget_vector");
- ``workload``: ZO GradDiff / NPO LLM unlearning with SAM, smoothing, weight averaging,
  WAGLE / random masks, UOE on the MoE model, relearning attacks (kind "unlearn");
- ``methods``: objectives, attribution scores and the update loop (ZO via ``mlfrontends.zo``);
- ``common``: seed statistics (bootstrap CIs) and report tables.
"""
