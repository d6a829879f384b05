"""Workload ``decode``: greedy vs DoLa vs END decoding of a small LM on photonic chips.

For every seed a dense model is trained (or loaded from the cache) on the fictitious-authors
benchmark (``mlfrontends.lm``); the seed sets the model initialisation, the data order, the
sampled evaluation questions and the chip's error draw. Both the ``partial`` snapshot (errors
remain) and the fully trained ``target`` are evaluated on

- ``facts``: held-out phrasings of memorised author facts (``heldout_question``), a seeded
  sample of ``n_author_items``;
- ``general``: held-out phrasings of the general-knowledge set;

with two measures per decoding rule:

- ``mc_accuracy``: the true answer (held-out phrasing) against the perturbed answers of the
  same phrasing, by length-normalised log-probability under the rule's scores (r = ``r_mc``);
- ``exact_match``: greedy generation under the rule (r = ``r_generation``) equals the true
  answer word for word.

Chips: ``digital`` (exact weights), the run's chip (``chip.preset`` with ``chip.noise``) and
any extra ``presets``, each evaluated as a weight-stationary programmed chip (see
``mlfrontends.lm.chip.realised_model`` for what is and is not simulated).

Aggregation over seeds: mean and a two-sided 95 % Student-t interval; the difference to greedy
is paired by seed. Fewer than two seeds give null intervals. Energy and latency per generated
token come from ``photonic.estimate_cost`` with the model's linear layers as weight-stationary
stages (attention score products and softmax are electronic and not costed) and the LM head
run 1 + ``extra_projections_per_token`` times per token.
"""

from __future__ import annotations

import math
import random
from typing import Literal

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field, model_validator
from scipy import stats

import photonic
from mlfrontends.decoding.methods import END, DecodingRule, DoLa, Greedy, stacked
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
    tile: int = Field(8, ge=2, description="k of the k×k SVD tiles")
    n_author_items: int = Field(150, ge=1)
    n_general_items: int | None = Field(None, ge=1, description="None: the whole set")
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


def mean_ci(values: list[float]) -> tuple[float, float | None, float | None]:
    """Mean and two-sided 95 % Student-t interval (None, None for fewer than two values)."""
    a = np.asarray(values, dtype=float)
    m = float(a.mean())
    if len(a) < 2:
        return m, None, None
    half = float(stats.t.ppf(0.975, len(a) - 1) * a.std(ddof=1) / math.sqrt(len(a)))
    return m, m - half, m + half


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


def _evaluate(model: CausalLM, tok, items_by_set, rules_mc, rules_gen, max_new_tokens
              ) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    with torch.no_grad():
        for set_name, items in items_by_set.items():
            prefix = "" if set_name == "facts" else f"{set_name}_"
            lp = option_logprobs(model, tok, items, heldout=True, scorer=stacked(rules_mc))
            acc = mc_correct(lp).float().mean(-1)
            for rule, a in zip(rules_mc, acc.tolist(), strict=True):
                out.setdefault(rule_label(rule), {})[f"{prefix}mc_accuracy"] = a
            refs = [it.heldout_answer for it in items]
            for rule in rules_gen:
                gen = generate(model, tok, [it.heldout_question for it in items], scorer=rule,
                               max_new_tokens=max_new_tokens)
                em = exact_match(gen, refs, tok).float().mean().item()
                out.setdefault(rule_label(rule), {})[f"{prefix}exact_match"] = em
    return out


def run(cfg: Config, ctx: RunContext) -> dict[str, object]:
    rules_mc, rules_gen = _rules(cfg, "mc"), _rules(cfg, "generation")
    run_chip = str(ctx.provenance.get("preset", "chip"))
    chips: dict[str, photonic.DeviceParams | None] = {"digital": None, run_chip: ctx.device}
    for name in cfg.presets:
        chips[name] = ctx.presets[name]
    lm_overrides = cfg.lm.model_dump(exclude_none=True)
    per_seed: dict[tuple[str, str, str], dict[str, list[float]]] = {}
    records: dict[int, dict] = {}
    art = None
    bar = ctx.progress(len(cfg.seeds) * len(cfg.models) * len(chips), "decode")
    for seed in cfg.seeds:
        art = load_models(cfg.benchmark, arch="dense", roles=tuple(cfg.models), seed=seed,
                          train_cfg=cfg.train, lm_overrides=lm_overrides,
                          cache_dir=cfg.cache_dir)
        records[seed] = art.records
        rng = random.Random(f"decode-eval:{seed}")
        general = art.bench.split("general")
        items_by_set = {
            "facts": rng.sample(art.bench.split("authors"), cfg.n_author_items),
            "general": rng.sample(general, min(len(general), cfg.n_general_items or len(general))),
        }
        for role in cfg.models:
            for chip, dev in chips.items():
                model = art.models[role]
                if dev is not None:
                    model = realised_model(model, device=dev, noise=ctx.noise, tile=cfg.tile,
                                           seed=seed)
                res = _evaluate(model, art.tok, items_by_set, rules_mc, rules_gen,
                                cfg.max_new_tokens)
                for label, vals in res.items():
                    slot = per_seed.setdefault((chip, role, label), {})
                    for k, v in vals.items():
                        slot.setdefault(k, []).append(v)
                bar.update(1)
    bar.close()
    assert art is not None
    n_layers = art.models[cfg.models[0]].cfg.n_layers
    extra = {rule_label(r): r.extra_projections_per_token(n_layers) for r in rules_gen}

    metrics: dict[str, object] = {"dataset_hash": art.dataset_hash, "n_seeds": len(cfg.seeds),
                                  "n_author_items": len(items_by_set["facts"]),
                                  "n_general_items": len(items_by_set["general"])}
    for seed, rec in records.items():
        for role, r in rec.items():
            metrics[f"train.seed{seed}.{role}.final_answer_nll"] = r["log"][-1]["answer_nll"]
    rows = []
    cost_notes: set[str] = set()
    for (chip, role, label), vals in per_seed.items():
        arm: dict[str, object] = {"extra_projections_per_token": extra[label]}
        base = per_seed[(chip, role, "greedy")]
        for key, v in vals.items():
            m, lo, hi = mean_ci(v)
            dm, dlo, dhi = mean_ci([a - b for a, b in zip(v, base[key], strict=True)])
            arm |= {key: m, f"{key}_ci95_low": lo, f"{key}_ci95_high": hi,
                    f"{key}_delta_vs_greedy": dm, f"{key}_delta_ci95_low": dlo,
                    f"{key}_delta_ci95_high": dhi}
        if chips[chip] is not None:
            cost = token_cost(art.models[role], device=chips[chip], tile=cfg.tile,
                              extra_projections=extra[label])
            arm |= {"energy_pj_per_token": cost.energy_pj,
                    "latency_ns_per_token": cost.latency_ns}
            cost_notes.update(cost.assumptions)
        metrics[f"{chip}.{role}.{label}"] = arm
        rows.append((chip, role, label, arm))
    _report(cfg, ctx, metrics, rows, chips, sorted(cost_notes))
    return metrics


def _fmt(arm: dict, key: str) -> str:
    m, lo, hi = arm.get(key), arm.get(f"{key}_ci95_low"), arm.get(f"{key}_ci95_high")
    if m is None:
        return "–"
    return f"{m:.3f} [{lo:.3f}, {hi:.3f}]" if lo is not None else f"{m:.3f}"


def _fmt_delta(arm: dict, key: str) -> str:
    m, lo, hi = (arm.get(f"{key}_delta_vs_greedy"), arm.get(f"{key}_delta_ci95_low"),
                 arm.get(f"{key}_delta_ci95_high"))
    if m is None:
        return "–"
    return f"{m:+.3f} [{lo:+.3f}, {hi:+.3f}]" if lo is not None else f"{m:+.3f}"


def _report(cfg: Config, ctx: RunContext, metrics: dict, rows: list, chips: dict,
            cost_notes: list[str]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    has_cost = any("energy_pj_per_token" in arm for *_, arm in rows)
    head = ("| chip | model | method | extra proj./token | MC acc. (facts) | Δ vs greedy | "
            "exact match (facts) | Δ vs greedy | MC acc. (general) | exact match (general) |"
            + (" energy pJ/token | latency ns/token |" if has_cost else ""))
    sig = []
    for chip, role, label, arm in rows:
        for key in ("mc_accuracy", "exact_match", "general_mc_accuracy", "general_exact_match"):
            lo, hi = arm.get(f"{key}_delta_ci95_low"), arm.get(f"{key}_delta_ci95_high")
            if label != "greedy" and lo is not None and (lo > 0 or hi < 0):
                sig.append(f"{chip} / {role} / {label} / {key}: Δ = "
                           f"{arm[f'{key}_delta_vs_greedy']:+.3f} [{lo:+.3f}, {hi:+.3f}]")
    lines = [
        "# Decoding on the photonic chip: greedy vs DoLa vs END",
        "",
        "Differences to greedy whose 95 % interval excludes zero"
        + (":" if sig else ": none (a null result at this sample size)."),
        *(f"- {x}" for x in sig),
        "",
        f"Dataset hash `{metrics['dataset_hash']}`; seeds {cfg.seeds} (model init, data order,"
        f" evaluation sample, chip error draw); {metrics['n_author_items']} held-out author "
        f"questions and {metrics['n_general_items']} general questions per seed. Values: mean "
        "over seeds [95 % Student-t interval]; Δ is paired by seed. Null intervals mean fewer "
        "than two seeds.",
        "",
        f"END layers L = {cfg.end.layers} + last, r = {cfg.end.r_mc} (MC) / "
        f"{cfg.end.r_generation} (generation); DoLa premature layers J = "
        f"{cfg.dola.premature_layers}, r = {cfg.dola.r_mc} (MC) / {cfg.dola.r_generation} "
        "(generation).",
        "",
        "Chips other than `digital` are weight-stationary programmed chips: the model's linear "
        "weights are replaced by the matrices the chip realises with every mesh non-ideality "
        "of the preset (noise flags as in `config.resolved.yaml`); per-inference detector noise"
        " and DAC/ADC quantisation are not simulated in this sweep (cost of the hub's "
        "optical_matmul per call). Energy/latency: `photonic.estimate_cost` over the model's "
        "linear layers (weight-stationary, 8-bit converters of the preset); attention products "
        "are electronic and not costed.",
        "",
        head,
        "|" + "---|" * (head.count("|") - 1),
    ]
    for chip, role, label, arm in rows:
        row = (f"| {chip} | {role} | {label} | {arm['extra_projections_per_token']} | "
               f"{_fmt(arm, 'mc_accuracy')} | {_fmt_delta(arm, 'mc_accuracy')} | "
               f"{_fmt(arm, 'exact_match')} | {_fmt_delta(arm, 'exact_match')} | "
               f"{_fmt(arm, 'general_mc_accuracy')} | {_fmt(arm, 'general_exact_match')} |")
        if has_cost:
            e, t = arm.get("energy_pj_per_token"), arm.get("latency_ns_per_token")
            row += (f" {e:.4g} | {t:.4g} |" if e is not None else " – | – |")
        lines.append(row)
    if cost_notes:
        lines += ["", "Cost estimator assumptions:", *(f"- {n}" for n in cost_notes)]
    lines += ["", "![accuracy](decode_accuracy.png)", ""]
    ctx.write_text("report.md", "\n".join(lines) + "\n")

    chip_names = list(chips)
    fig, axes = plt.subplots(len(cfg.models), 2, figsize=(11, 3.2 * len(cfg.models)),
                             squeeze=False)
    for i, role in enumerate(cfg.models):
        for j, key in enumerate(("mc_accuracy", "exact_match")):
            ax = axes[i, j]
            labels = [lab for c, r, lab, _ in rows if c == chip_names[0] and r == role]
            width = 0.8 / len(chip_names)
            for k, chip in enumerate(chip_names):
                arms = {lab: arm for c, r, lab, arm in rows if c == chip and r == role}
                ms = [arms[lab][key] for lab in labels]
                lo = [arms[lab][f"{key}_ci95_low"] for lab in labels]
                hi = [arms[lab][f"{key}_ci95_high"] for lab in labels]
                err = [[0.0 if b is None else m - b for m, b in zip(ms, lo, strict=True)],
                       [0.0 if b is None else b - m for m, b in zip(ms, hi, strict=True)]]
                ax.bar(np.arange(len(labels)) + k * width, ms, width, yerr=err, label=chip,
                       capsize=3)
            ax.set_xticks(np.arange(len(labels)) + 0.4 - width / 2, labels)
            ax.set_title(f"{role}: {key} (held-out facts)")
            ax.set_ylim(0, 1)
            ax.legend(fontsize=7)
    fig.tight_layout()
    ctx.savefig(fig, "decode_accuracy.png")
