"""Workload ``decode``: greedy vs DoLa vs END decoding of a small LM on photonic chips.

For every seed s the whole pipeline is redrawn: the fictitious-authors benchmark with seed
``benchmark.seed + s`` (which authors and values exist and which phrasing of each fact is
trained, i.e. the train / held-out split), the model trained on it (initialisation and data
order seed s, cached), the evaluation sample and the chip's error draw (seed s). Each model in
``models`` is evaluated on the ``digital`` chip (exact weights, unless ``digital`` is false),
the run's chip and any extra ``presets``, on two separate sets:

- ``facts``: factual QA on the fictitious facts the model was trained on, asked in the
  held-out phrasing (``heldout_question``), a seeded sample of ``n_author_items``;
- ``general``: the general-knowledge items (capitals, opposites, colours, sums) the model was
  trained on, asked as trained (``general_phrasing: trained``, the default: does a rule damage
  what the model reliably knows?) or in their held-out phrasing (``n_general_items``, default
  all).

Measures per item (0/1) and rule:

- ``value_match``: the greedy generation under the rule (r = ``r_generation``) contains the
  fact's value as a contiguous word sequence (the answer is right, whatever the phrasing);
- ``exact_match``: the generation equals the answer of the asked phrasing word for word;
- ``mc_accuracy``: the true answer beats the wrong-valued answers of the same phrasing by
  length-normalised log-probability under the rule's scores (r = ``r_mc``).

Statistics (``mlfrontends.decoding.stats``): every rule is compared with greedy decoding item by
item within seeds. Per comparison: the mean paired difference, its two-stage cluster-bootstrap
interval at the Bonferroni level 1 − ``family_alpha`` / m (m = every rule × set × measure × chip
× model comparison of the run), the exact sign test over discordant pairs with its smallest
attainable p, Holm-adjusted p over the same family, and the per-seed differences as median,
worst and spread. A difference counts as significant when its Holm p < ``family_alpha`` and
its simultaneous interval excludes zero.

Energy and latency per generated token come from ``photonic.estimate_cost`` with the model's
linear layers as weight-stationary stages (attention score products and softmax are
electronic and not costed) and the LM head run 1 + ``extra_projections_per_token`` times per
token.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field, model_validator

import photonic
from mlfrontends.decoding.methods import END, DecodingRule, DoLa, Greedy, stacked
from mlfrontends.decoding.report import write_report
from mlfrontends.decoding.stats import cluster_bootstrap, holm, seed_summary, sign_test
from mlfrontends.lm.chip import realised_model
from mlfrontends.lm.data import BenchmarkConfig
from mlfrontends.lm.metrics import exact_match, generate, mc_correct, option_logprobs
from mlfrontends.lm.model import CausalLM, LMConfig
from mlfrontends.lm.train import TrainConfig, load_models
from photonic.runio import RunContext, WorkloadConfig


class EndSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    layers: list[int] = Field([2, 3], description="upper layers of L; the last is always added")
    alphas: list[float] = Field([0.25, 1.0, 3.0], min_length=1)
    r_mc: float = Field(0.0, ge=0, le=1)
    r_generation: float = Field(0.01, ge=0, le=1)


class DolaSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    premature_layers: list[int] = Field([0, 1, 2, 3], min_length=1)
    r_mc: float = Field(0.0, ge=0, le=1)
    r_generation: float = Field(0.1, ge=0, le=1)


class LMOverrides(BaseModel):
    """Architecture changes (e.g. a tiny model for smoke tests); unset fields keep defaults."""

    model_config = ConfigDict(extra="forbid")

    d_model: int | None = None
    n_layers: int | None = None
    n_heads: int | None = None
    d_ff: int | None = None


class Config(WorkloadConfig):
    kind: Literal["decode"]
    seeds: list[int] = Field([0, 1, 2, 3, 4], min_length=1)
    models: list[Literal["partial", "target"]] = Field(["partial", "target"], min_length=1)
    presets: list[str] = Field([], description="extra chips besides digital and chip.preset")
    digital: bool = Field(True, description="also evaluate the exact-weight (digital) model")
    tile: int = Field(8, ge=2, description="k of the k×k SVD tiles")
    n_author_items: int = Field(200, ge=1)
    n_general_items: int | None = Field(None, ge=1, description="None: the whole set")
    general_phrasing: Literal["trained", "heldout"] = Field(
        "trained", description="ask the general set as trained (does a rule damage what the "
                               "model knows?) or in the held-out phrasing")
    family_alpha: float = Field(0.05, gt=0, lt=1, description="family-wise error rate")
    n_bootstrap: int = Field(10000, ge=100, description="cluster-bootstrap resamples")
    max_new_tokens: int = Field(16, ge=1)
    end: EndSettings = EndSettings()
    dola: DolaSettings = DolaSettings()
    benchmark: BenchmarkConfig = BenchmarkConfig()
    train: TrainConfig = TrainConfig()
    lm: LMOverrides = LMOverrides()
    cache_dir: str | None = Field(None, description="model cache; None: ~/.cache/photonic-sim")

    @model_validator(mode="after")
    def _layers_in_range(self) -> Config:
        n = self.lm.n_layers or LMConfig.model_fields["n_layers"].default
        for where, layers, hi in (("end.layers", self.end.layers, n),
                                  ("dola.premature_layers", self.dola.premature_layers, n - 1)):
            bad = [l for l in layers if not 0 <= l <= hi]
            if bad:
                raise ValueError(f"{where} = {layers}: layers {bad} out of range; the model has "
                                 f"{n} layers, so valid values are 0..{hi}")
        for where, values in (("seeds", self.seeds), ("end.alphas", self.end.alphas),
                              ("models", self.models)):
            if len(set(values)) != len(values):
                raise ValueError(f"{where} = {values}: values must be distinct")
        if self.n_author_items > 10 * self.benchmark.n_authors:
            raise ValueError(f"n_author_items = {self.n_author_items} exceeds the "
                             f"{10 * self.benchmark.n_authors} author questions")
        return self


def _rules(cfg: Config, task: Literal["mc", "generation"]) -> list[DecodingRule]:
    r_end = cfg.end.r_mc if task == "mc" else cfg.end.r_generation
    r_dola = cfg.dola.r_mc if task == "mc" else cfg.dola.r_generation
    return [Greedy(), DoLa(tuple(cfg.dola.premature_layers), r_dola),
            *(END(tuple(cfg.end.layers), a, r_end) for a in cfg.end.alphas)]


def rule_label(rule: DecodingRule) -> str:
    return f"end_a{rule.alpha:g}" if isinstance(rule, END) else rule.name


def token_cost(model: CausalLM, *, device: photonic.DeviceParams, tile: int,
               extra_projections: int) -> photonic.CostReport:
    """Cost of one generated token: every linear layer once (KV-cached decoding), the LM head
    1 + ``extra_projections`` times; weight-stationary tiles."""
    stages = []
    for name, mod in model.named_modules():
        if isinstance(mod, torch.nn.Linear):
            tiles = math.ceil(mod.out_features / tile) * math.ceil(mod.in_features / tile)
            vectors = 1 + extra_projections if name == "head" else 1
            stages.append(photonic.Stage(name=name, mesh_rows=tile, mesh_cols=tile,
                                         tiles=tiles, vectors_per_inference=vectors))
    return photonic.estimate_cost(device=device, stages=stages)


SETS = ("facts", "general")
MEASURES = ("value_match", "exact_match", "mc_accuracy")


def contains_words(generated: list[int], value: list[int]) -> bool:
    """True if ``value`` occurs as a contiguous sub-sequence of ``generated``."""
    n = len(value)
    return any(generated[i:i + n] == value for i in range(len(generated) - n + 1))


def _evaluate(model: CausalLM, tok, items_by_set, heldout_by_set, rules_mc, rules_gen,
              max_new_tokens) -> dict[tuple[str, str, str], np.ndarray]:
    """Per-item 0/1 outcomes keyed (set, rule label, measure); ``heldout_by_set[set]`` picks
    the held-out or the trained phrasing of question and answers."""
    out: dict[tuple[str, str, str], np.ndarray] = {}
    with torch.no_grad():
        for set_name, items in items_by_set.items():
            heldout = heldout_by_set[set_name]
            lp = option_logprobs(model, tok, items, heldout=heldout, scorer=stacked(rules_mc))
            for rule, ok in zip(rules_mc, mc_correct(lp), strict=True):
                out[(set_name, rule_label(rule), "mc_accuracy")] = ok.numpy().astype(float)
            questions = [it.heldout_question if heldout else it.question for it in items]
            refs = [it.heldout_answer if heldout else it.answer for it in items]
            values = [tok.encode(it.value) for it in items]
            for rule in rules_gen:
                gen = generate(model, tok, questions, scorer=rule, max_new_tokens=max_new_tokens)
                em = exact_match(gen, refs, tok)
                out[(set_name, rule_label(rule), "exact_match")] = em.numpy().astype(float)
                out[(set_name, rule_label(rule), "value_match")] = np.array(
                    [contains_words(g, v) for g, v in zip(gen, values, strict=True)], float)
    return out


@dataclass(frozen=True)
class Comparison:
    """One rule against greedy on one (chip, model, set, measure): ``diff`` (seeds, items)."""

    chip: str
    role: str
    set_name: str
    label: str
    measure: str
    rule: np.ndarray
    greedy: np.ndarray

    @property
    def diff(self) -> np.ndarray:
        return self.rule - self.greedy


def _sample_items(art, cfg: Config, seed: int) -> dict[str, list]:
    rng = random.Random(f"decode-eval:{seed}")
    general = art.bench.split("general")
    return {"facts": rng.sample(art.bench.split("authors"), cfg.n_author_items),
            "general": rng.sample(general, min(len(general), cfg.n_general_items or len(general)))}


def _collect(cfg: Config, ctx: RunContext, chips: dict) -> tuple[dict, dict, object, dict]:
    """Run every seed; returns outcomes {(chip, role, set, label, measure): (S, N) array},
    training records by seed, the last seed's artefacts and the evaluated set sizes."""
    rules_mc, rules_gen = _rules(cfg, "mc"), _rules(cfg, "generation")
    heldout_by_set = {"facts": True, "general": cfg.general_phrasing == "heldout"}
    lm_overrides = cfg.lm.model_dump(exclude_none=True)
    rows: dict[tuple, list[np.ndarray]] = {}
    records: dict[int, dict] = {}
    sizes: dict[str, int] = {}
    art = None
    bar = ctx.progress(len(cfg.seeds) * len(cfg.models) * len(chips), "decode")
    for seed in cfg.seeds:
        bench_cfg = cfg.benchmark.model_copy(update={"seed": cfg.benchmark.seed + seed})
        art = load_models(bench_cfg, arch="dense", roles=tuple(cfg.models), seed=seed,
                          train_cfg=cfg.train, lm_overrides=lm_overrides,
                          cache_dir=cfg.cache_dir)
        records[seed] = {"dataset_hash": art.dataset_hash, "benchmark_seed": bench_cfg.seed,
                         **{role: r["log"][-1]["answer_nll"] for role, r in art.records.items()}}
        items_by_set = _sample_items(art, cfg, seed)
        sizes = {k: len(v) for k, v in items_by_set.items()}
        for role in cfg.models:
            for chip, dev in chips.items():
                model = art.models[role]
                if dev is not None:
                    model = realised_model(model, device=dev, noise=ctx.noise, tile=cfg.tile,
                                           seed=seed)
                res = _evaluate(model, art.tok, items_by_set, heldout_by_set, rules_mc,
                                rules_gen, cfg.max_new_tokens)
                for (set_name, label, measure), v in res.items():
                    rows.setdefault((chip, role, set_name, label, measure), []).append(v)
                bar.update(1)
    bar.close()
    return {k: np.stack(v) for k, v in rows.items()}, records, art, sizes


def compare(outcomes: dict, *, family_alpha: float, n_bootstrap: int) -> list[dict]:
    """Every non-greedy rule against greedy, with the family-wise corrections (see module
    docstring); one dict per comparison, in a stable order."""
    comps = [Comparison(chip, role, set_name, label, measure, arr,
                        outcomes[(chip, role, set_name, "greedy", measure)])
             for (chip, role, set_name, label, measure), arr in outcomes.items()
             if label != "greedy"]
    m = len(comps)
    level = 1 - family_alpha / max(m, 1)
    out = []
    for i, c in enumerate(comps):
        st = sign_test(c.diff)
        lo, hi = cluster_bootstrap(c.diff, level=level, n_boot=n_bootstrap, seed=i)
        per_seed = c.diff.mean(axis=1)
        out.append({
            "chip": c.chip, "role": c.role, "set": c.set_name, "rule": c.label,
            "measure": c.measure, "greedy": float(c.greedy.mean()), "value": float(c.rule.mean()),
            "delta": float(c.diff.mean()), "delta_ci_low": lo, "delta_ci_high": hi,
            "ci_level": level, **{f"delta_seed_{k}": v for k, v in seed_summary(per_seed).items()},
            "n_better": st.n_better, "n_worse": st.n_worse, "sign_p": st.p,
            "sign_p_min": st.p_min, "n_pairs": int(c.diff.size),
            "delta_per_seed": per_seed.tolist()})
    for row, p in zip(out, holm([r["sign_p"] for r in out]), strict=True):
        row["sign_p_holm"] = p
        # both views must agree: the sign test treats items as independent, the interval
        # also carries the spread between seeds
        excludes_zero = row["delta_ci_low"] > 0 or row["delta_ci_high"] < 0
        row["significant"] = bool(p < family_alpha and excludes_zero)
    return out


def run(cfg: Config, ctx: RunContext) -> dict[str, object]:
    run_chip = str(ctx.provenance.get("preset", "chip"))
    chips: dict[str, photonic.DeviceParams | None] = {"digital": None} if cfg.digital else {}
    chips[run_chip] = ctx.device
    for name in cfg.presets:
        chips[name] = ctx.presets[name]
    outcomes, records, art, sizes = _collect(cfg, ctx, chips)
    rows = compare(outcomes, family_alpha=cfg.family_alpha, n_bootstrap=cfg.n_bootstrap)
    n_layers = art.models[cfg.models[0]].cfg.n_layers
    rules_gen = _rules(cfg, "generation")
    extra = {rule_label(r): r.extra_projections_per_token(n_layers) for r in rules_gen}

    metrics: dict[str, object] = {
        "n_seeds": len(cfg.seeds), "n_author_items": sizes["facts"],
        "n_general_items": sizes["general"], "n_comparisons": len(rows),
        "family_alpha": cfg.family_alpha, "train": {f"seed{s}": r for s, r in records.items()}}
    for (chip, role, set_name, label, measure), arr in outcomes.items():
        per_seed = arr.mean(axis=1)
        metrics[f"{chip}.{role}.{set_name}.{label}.{measure}"] = {
            "mean": float(arr.mean()), **{f"seed_{k}": v for k, v in
                                          seed_summary(per_seed).items()}}
    for r in rows:
        key = f"{r['chip']}.{r['role']}.{r['set']}.{r['rule']}.{r['measure']}"
        metrics[key] |= {k: r[k] for k in (
            "delta", "delta_ci_low", "delta_ci_high", "delta_seed_median", "delta_seed_worst",
            "delta_seed_spread", "n_better", "n_worse", "sign_p", "sign_p_min", "sign_p_holm",
            "significant")}
    costs = {}
    for chip, dev in chips.items():
        if dev is None:
            continue
        for role in cfg.models:
            for label, n_extra in extra.items():
                cost = token_cost(art.models[role], device=dev, tile=cfg.tile,
                                  extra_projections=n_extra)
                costs[(chip, role, label)] = cost
                metrics[f"{chip}.{role}.cost.{label}"] = {
                    "extra_projections_per_token": n_extra,
                    "energy_pj_per_token": cost.energy_pj, "latency_ns_per_token": cost.latency_ns}
    write_report(cfg, ctx, metrics, rows, costs, extra)
    return metrics
