"""The ``decode`` workload's report (``report.md``) and figure (``decode_deltas.png``)."""

from __future__ import annotations

import numpy as np

from photonic.runio import RunContext, new_figure
from photonic.textutil import markdown_table

SET_TITLES = {"facts": "Factual QA (fictitious facts, held-out phrasing)",
              "general": "General knowledge ({} phrasing)"}


def _p(v: float) -> str:
    return f"{v:.2g}"


def _comparison_table(rows: list[dict], set_name: str) -> list[str]:
    body = []
    for r in rows:
        if r["set"] != set_name:
            continue
        body.append([
            r["chip"], r["role"], r["measure"], r["rule"], f"{r['greedy']:.3f}",
            f"{r['value']:.3f}",
            f"{r['delta']:+.3f} [{r['delta_ci_low']:+.3f}, {r['delta_ci_high']:+.3f}]",
            f"{r['delta_seed_median']:+.3f} / {r['delta_seed_worst']:+.3f} / "
            f"{r['delta_seed_spread']:.3f}",
            f"{r['n_better']} / {r['n_worse']}", _p(r["sign_p"]), _p(r["sign_p_min"]),
            _p(r["sign_p_holm"]), "yes" if r["significant"] else "no"])
    return markdown_table(
        ["chip", "model", "measure", "rule", "greedy", "rule value", "Δ [simultaneous CI]",
         "Δ per seed median / worst / spread", "better / worse items", "sign p", "min. p",
         "Holm p", "significant"], body)


def _headline(rows: list[dict], family_alpha: float) -> list[str]:
    sig = [r for r in rows if r["significant"]]
    gains = sorted({f"{r['rule']} on {r['set']}" for r in sig if r["delta"] > 0})
    verdict = (f"Significant gains over greedy: {', '.join(gains)}." if gains else
               "No significant gain over greedy on any set or measure.")
    if not sig:
        best = min(rows, key=lambda r: r["sign_p_holm"])
        return [verdict, "", f"No rule differs significantly from greedy decoding at family-wise "
                f"α = {family_alpha:g} (Holm over {len(rows)} comparisons): a null result. "
                f"Smallest Holm-adjusted p: {_p(best['sign_p_holm'])} ({best['chip']} / "
                f"{best['role']} / {best['set']} / {best['rule']} / {best['measure']}, "
                f"Δ = {best['delta']:+.3f})."]
    out = [verdict, "", f"Differences to greedy significant at family-wise α = {family_alpha:g} "
           f"(Holm p over {len(rows)} comparisons below it and the simultaneous interval "
           "excluding zero):"]
    for r in sig:
        out.append(f"- {r['chip']} / {r['role']} / {r['set']} / {r['rule']} / {r['measure']}: "
                   f"Δ = {r['delta']:+.3f} [{r['delta_ci_low']:+.3f}, {r['delta_ci_high']:+.3f}],"
                   f" {r['n_better']} better / {r['n_worse']} worse items, Holm p = "
                   f"{_p(r['sign_p_holm'])}")
    return out


def write_report(cfg, ctx: RunContext, metrics: dict, rows: list[dict], costs: dict,
                 extra: dict[str, int]) -> None:
    level = rows[0]["ci_level"] if rows else 1 - cfg.family_alpha
    lines = [
        "# Decoding on the photonic chip: greedy vs DoLa vs END", "",
        *_headline(rows, cfg.family_alpha), "",
        f"Seeds {cfg.seeds}: each seed redraws the benchmark (seed `benchmark.seed` + s: authors,"
        " values and the trained / held-out phrasing split), the model's training "
        "(initialisation and data order), the evaluation sample and the chip's error draw. "
        f"{metrics['n_author_items']} factual and {metrics['n_general_items']} general "
        f"questions per seed and model, so {len(cfg.seeds)} × those paired (seed, item) units "
        "per comparison.", "",
        "Δ = rule − greedy, the mean paired difference over (seed, item) pairs; its interval is "
        f"a two-stage cluster bootstrap (seeds, then items; {cfg.n_bootstrap} resamples) at the "
        f"Bonferroni level {level:.5f} = 1 − {cfg.family_alpha:g}/{len(rows)}, simultaneous over"
        " all comparisons. p: exact two-sided sign test over the discordant items; min. p: the "
        "smallest p that test can reach with that many discordant items; Holm p: adjusted over "
        "the whole family. Per-seed Δ: median / worst (minimum) / spread (max − min) over seeds.",
        "",
        f"END: layers L = {cfg.end.layers} + last, α ∈ {cfg.end.alphas}, r = {cfg.end.r_mc} (MC)"
        f" / {cfg.end.r_generation} (generation). DoLa: premature layers J = "
        f"{cfg.dola.premature_layers}, r = {cfg.dola.r_mc} (MC) / {cfg.dola.r_generation} "
        "(generation).", ""]
    for set_name in ("facts", "general"):
        title = SET_TITLES[set_name].format(cfg.general_phrasing)
        lines += [f"## {title}", "", *_comparison_table(rows, set_name), ""]
    lines += ["## Chip cost per generated token", "",
              "Chips other than `digital` are weight-stationary programmed chips: the model's "
              "linear weights are replaced by the matrices the chip realises with every mesh "
              "non-ideality of the preset (noise flags as in `config.resolved.yaml`); "
              "per-inference detector noise and DAC/ADC quantisation are not simulated. Cost: "
              "`photonic.estimate_cost` over the linear layers of the last seed's model "
              "(attention products are electronic and not costed).", ""]
    lines += markdown_table(
        ["chip", "model", "rule", "extra projections / token", "energy pJ / token",
         "latency ns / token"],
        [[chip, role, label, extra[label], f"{c.energy_pj:.4g}", f"{c.latency_ns:.4g}"]
         for (chip, role, label), c in costs.items()])
    notes = sorted({a for c in costs.values() for a in c.assumptions})
    if notes:
        lines += ["", "Cost estimator assumptions:", *(f"- {n}" for n in notes)]
    lines += ["", "![paired differences](decode_deltas.png)", ""]
    ctx.write_text("report.md", "\n".join(lines) + "\n")
    _figure(ctx, rows)


def _figure(ctx: RunContext, rows: list[dict]) -> None:
    """Per set and measure: Δ vs greedy per rule and chip/model, simultaneous intervals."""
    measures = list(dict.fromkeys(r["measure"] for r in rows))
    sets = list(dict.fromkeys(r["set"] for r in rows))
    fig = new_figure(figsize=(4.2 * len(measures), 3.4 * len(sets)))
    axes = np.atleast_2d(fig.subplots(len(sets), len(measures), squeeze=False))
    for i, set_name in enumerate(sets):
        for j, measure in enumerate(measures):
            ax = axes[i, j]
            sel = [r for r in rows if r["set"] == set_name and r["measure"] == measure]
            labels = [f"{r['rule']}\n{r['chip']}/{r['role']}" for r in sel]
            y = np.arange(len(sel))
            d = np.array([r["delta"] for r in sel])
            err = np.array([[r["delta"] - r["delta_ci_low"] for r in sel],
                            [r["delta_ci_high"] - r["delta"] for r in sel]])
            colours = ["tab:green" if r["significant"] else "tab:grey" for r in sel]
            ax.errorbar(d, y, xerr=err, fmt="none", ecolor="black", capsize=2)
            ax.scatter(d, y, c=colours, zorder=3)
            for k, r in enumerate(sel):
                ax.scatter(r["delta_per_seed"], [k - 0.15] * len(r["delta_per_seed"]), s=8,
                           color="tab:blue", zorder=2)
            ax.axvline(0.0, color="tab:red", lw=0.8)
            ax.set_yticks(y, labels, fontsize=6)
            ax.set_xlabel(f"Δ {measure} vs greedy (fraction of items)")
            ax.set_ylabel("rule (chip / model)")
            ax.set_title(f"{set_name}: {measure}", fontsize=9)
    fig.suptitle("Δ vs greedy over (seed, item) pairs with simultaneous Bonferroni intervals; "
                 "green: Holm-significant, grey: not; blue: per-seed Δ", fontsize=9)
    fig.tight_layout()
    ctx.savefig(fig, "decode_deltas.png")
