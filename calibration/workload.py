"""Workload ``calibrate_mesh``: characterise fabricated meshes and program them accurately.

For each virtual chip (hidden errors drawn from the run's preset, seeded — offsets, coupler
angles, coefficients, losses, arm imbalance and thermal crosstalk of the preset's model),
a characteriser measures it through its receivers only; then Haar-random target unitaries
are programmed naively (data sheet) and error-aware
(:class:`~calibration.program.ErrorAwareProgrammer`), and the realised matrices are scored
against the hidden truth with the gain-matched error (:func:`calibration.twin.
gain_matched_error`: the electronic gain undoes a common loss). Studies:

1. reference — ``reference_n`` (16) modes, ``reference_chips`` × ``reference_unitaries``
   (5 × 10), homodyne receivers (:class:`~calibration.characterise.MeshCharacterizer` with
   the global refinement): the acceptance figures and an ablation of the programming steps;
   each case is also programmed with the *true* chip parameters (the oracle: what perfect
   characterisation would reach with this DAC and these optics);
2. intensity-only — ``intensity_chips`` × ``intensity_unitaries`` at ``intensity_n`` with
   power meters (:class:`~calibration.characterise.IntensityCharacterizer`), judged up to
   the output phases power meters cannot see;
3. residual vs mesh size N (``sizes``);
4. residual vs noise level (:func:`photonic.noise.scaled_device`: every fabrication spread
   times the level; crosstalk and mean losses are design and stay).

Statistics over cases (chips × unitaries): median, worst (max) and spread (std).
metrics.json keys: ``naive_rel_error``, ``calibrated_rel_error`` (medians),
``*_worst``, ``*_spread``, ``error_reduction`` (ratio of the medians),
``error_reduction_worst`` (worst naive-over-calibrated ratio of one case),
``oracle_rel_error``, ``measurements`` (per chip), ``measurements_by_stage.*``,
``stage_rel_error.*``, ``characterisation_error.*``, ``noise_std``, ``intensity.*``,
``size.N<n>.*``, ``level.x<level>.*``.
"""

from __future__ import annotations

import math
import time
from typing import Literal

import numpy as np
import torch
from pydantic import Field, model_validator
from scipy.stats import unitary_group

from calibration.characterise import IntensityCharacterizer, MeshCharacterizer
from calibration.chip import ChipTruth, fabricate
from calibration.program import ErrorAwareProgrammer, naive_codes
from calibration.twin import TwinParams, gain_matched_error
from photonic.devices import DeviceParams
from photonic.metrics import matrix_fidelity
from photonic.mzi import arm_transmission
from photonic.noise import crosstalk_coupling, num_shifters, scaled_device
from photonic.runio import RunContext, WorkloadConfig, new_figure
from photonic.textutil import markdown_table

__all__ = ["Config", "run", "evaluate_chip", "oracle_twin"]

STAGES = ("naive", "chain_inverted", "calibrated", "oracle")


class Config(WorkloadConfig):
    kind: Literal["calibrate_mesh"]
    topology: Literal["clements"] = "clements"
    reference_n: int = Field(16, ge=2)
    reference_chips: int = Field(5, ge=1)
    reference_unitaries: int = Field(10, ge=1)
    sizes: list[int] = Field(default_factory=lambda: [4, 8, 16, 32, 64])
    size_chips: list[int] = Field(default_factory=lambda: [3, 3, 3, 2, 1])
    size_unitaries: list[int] = Field(default_factory=lambda: [4, 4, 4, 2, 1])
    error_levels: list[float] = Field(default_factory=lambda: [0.25, 0.5, 1.0, 2.0, 4.0])
    level_n: int = Field(16, ge=2)
    level_chips: int = Field(1, ge=1)
    level_unitaries: int = Field(5, ge=1)
    intensity_n: int = Field(8, ge=2)
    intensity_chips: int = Field(2, ge=0)
    intensity_unitaries: int = Field(5, ge=1)
    shots: int = Field(1000, ge=1, description="detector samples averaged per measurement")
    sweep_points: int = Field(1, ge=1, description="drive levels per shifter sweep")
    refine: bool = Field(True, description="global maximum-likelihood twin fit (homodyne)")
    refine_iterations: int = Field(300, ge=0, description="L-BFGS evaluations per fit stage")
    random_settings: int = Field(64, ge=0, description="random-code settings in the fit")
    intensity_iterations: int = Field(400, ge=1, description="L-BFGS evaluations, intensity")
    quantization_feedback: bool = True

    @model_validator(mode="after")
    def _lists_match(self) -> Config:
        if not (len(self.sizes) == len(self.size_chips) == len(self.size_unitaries)):
            raise ValueError(f"sizes, size_chips and size_unitaries must have equal lengths; "
                             f"got {len(self.sizes)}, {len(self.size_chips)}, "
                             f"{len(self.size_unitaries)}")
        if any(n < 2 for n in self.sizes) or any(x <= 0 for x in self.error_levels):
            raise ValueError("sizes must be ≥ 2 and error_levels > 0")
        return self


def _characterisation_error(ch: MeshCharacterizer, truth: ChipTruth) -> dict[str, float]:
    e = truth.errors
    d_off = np.angle(np.exp(1j * (ch.phase_offset_rad_ - e.phase_offset_rad.numpy())))
    out = {
        "offset_rad": float(np.abs(d_off).max()),
        "gain_rel": float(np.abs(ch.gain_rel_ - e.gamma_rel.numpy()).max()),
        "alpha_rad": float(np.abs(ch.alpha_rad_ - e.alpha_rad.numpy()).max()),
        "beta_rad": float(np.abs(ch.beta_rad_ - e.beta_rad.numpy()).max()),
    }
    dense = _true_crosstalk(truth)
    i, j = ch.crosstalk_pairs_
    out["crosstalk"] = float(np.abs(ch.crosstalk_ - dense[i, j]).max()) if len(i) else 0.0
    return out


def _true_crosstalk(truth: ChipTruth) -> np.ndarray:
    s = num_shifters(truth.layout)
    dense = np.zeros((s, s))
    if truth.families.crosstalk and truth.device.crosstalk.model != "none":
        rows, cols, vals = crosstalk_coupling(truth.layout, truth.device)
        dense[rows.numpy(), cols.numpy()] = vals.numpy()
    return dense


def oracle_twin(truth: ChipTruth, transmission: float) -> TwinParams:
    """The chip's true parameters as a twin (in the characterisers' units: fields divided by
    ``transmission``, the measured mean field transmission) — perfect characterisation."""
    e, dev, fam = truth.errors, truth.device, truth.families
    k = truth.layout.num_mzis
    dense = _true_crosstalk(truth)
    i, j = np.nonzero(dense)
    zero_k = torch.zeros(k, dtype=torch.float64)
    loss = e.loss_db if fam.insertion_loss else zero_k
    imb = e.arm_imbalance_db if e.arm_imbalance_db is not None else torch.full(
        (k,), dev.mzi.arm_imbalance_db, dtype=torch.float64)
    ratio, other = arm_transmission(imb if fam.arm_imbalance else zero_k, loss)
    pad = 10.0 ** (-dev.mzi.insertion_loss_db / 20.0) if fam.insertion_loss else 1.0
    per = transmission ** (1.0 / truth.layout.depth)  # the common loss, spread over columns
    return TwinParams(
        offset_rad=e.phase_offset_rad if fam.phase_offset else torch.zeros_like(e.gamma_rel),
        gain_rel=e.gamma_rel if fam.gamma_error else torch.zeros_like(e.gamma_rel),
        alpha_rad=e.alpha_rad if fam.coupler_error else zero_k,
        beta_rad=e.beta_rad if fam.coupler_error else zero_k,
        crosstalk=torch.as_tensor(dense[i, j]), pairs=torch.as_tensor(np.stack([i, j])),
        arm_ratio=ratio, amplitude=other / per, pad_amplitude=pad / per)


CHARACTERISERS = {
    "homodyne": lambda cfg, seed: MeshCharacterizer(
        sweep_points=cfg.sweep_points, refine=cfg.refine, refine_iterations=cfg.refine_iterations,
        random_settings=cfg.random_settings, seed=seed),
    "intensity": lambda cfg, seed: IntensityCharacterizer(
        sweep_points=cfg.sweep_points, iterations=cfg.intensity_iterations),
}


def evaluate_chip(n: int, device: DeviceParams, *, seed: int, unitaries: int, cfg: Config,
                  noise=None, unitary_seed: int = 0, receiver: str = "homodyne") -> dict:
    """Fabricate, characterise and program one chip; scores per unitary and stage."""
    chip, truth = fabricate(n, device, topology=cfg.topology, seed=seed, shots=cfg.shots,
                            noise=noise)
    t0 = time.perf_counter()
    ch = CHARACTERISERS[receiver](cfg, seed).fit(chip)
    t_char = time.perf_counter() - t0
    blind = receiver == "intensity"  # power meters cannot see the output phases
    make = dict(compensate_quantization=cfg.quantization_feedback, output_phases=blind)
    prog = ErrorAwareProgrammer(ch.twin_params(), chip.layout, chip.design, **make)
    oracle = ErrorAwareProgrammer(oracle_twin(truth, ch.transmission_), chip.layout,
                                  chip.design, **make)
    rows = []
    t0 = time.perf_counter()
    for u in range(unitaries):
        U = torch.as_tensor(unitary_group.rvs(n, random_state=unitary_seed + u))
        stages = {"naive": naive_codes(U, chip.layout, chip.design)}
        target = prog.target_phases(U)
        chain = prog.codes_for_phases(target)
        stages["chain_inverted"] = torch.as_tensor(chain)
        stages["calibrated"] = prog.program(U, target=target, codes=chain)
        stages["oracle"] = oracle.program(U)
        mats = {k: truth.matrix(c) for k, c in stages.items()}
        rows.append({k: (float(gain_matched_error(U, m, output_phases=blind)),
                         float(matrix_fidelity(U, m))) for k, m in mats.items()})
    t_prog = time.perf_counter() - t0
    return {"rows": rows, "char": ch, "truth": truth, "char_s": t_char, "prog_s": t_prog,
            "measurements": dict(ch.measurements_), "noise_std": ch.noise_std_}


def _summary(results: list[dict]) -> dict[str, float]:
    """Median, worst and spread (std) over all cases of every stage."""
    rows = [r for res in results for r in res["rows"]]
    out = {}
    for stage in STAGES:
        err = np.array([r[stage][0] for r in rows])
        out[f"{stage}_rel_error"] = float(np.median(err))
        out[f"{stage}_rel_error_worst"] = float(err.max())
        out[f"{stage}_rel_error_spread"] = float(err.std())
        out[f"{stage}_fidelity"] = float(np.median([r[stage][1] for r in rows]))
    out["error_reduction"] = out["naive_rel_error"] / out["calibrated_rel_error"]
    out["error_reduction_worst"] = float(min(r["naive"][0] / r["calibrated"][0] for r in rows))
    out["cases"] = float(len(rows))
    out["measurements"] = float(np.mean([sum(r["measurements"].values()) for r in results]))
    return out


def run(cfg: Config, ctx: RunContext) -> dict[str, object]:
    from threadpoolctl import threadpool_limits

    from photonic.executors import limited_threads

    # One thread for torch, BLAS/LAPACK and numba: on a shared 2-core machine oversubscribed
    # BLAS threads made a 256×256 Cholesky 300× slower. The caller's settings come back.
    with limited_threads(1), threadpool_limits(1):
        return _run(cfg, ctx)


def _study(ctx, cfg, bar, device, n, chips, units, seed0, useed, receiver="homodyne"):
    res = []
    for c in range(chips):
        res.append(evaluate_chip(n, device, seed=seed0 + c, unitaries=units, cfg=cfg,
                                 noise=ctx.noise, unitary_seed=useed, receiver=receiver))
        bar.update(1)
    return res


def _run(cfg: Config, ctx: RunContext) -> dict[str, object]:
    device = ctx.device
    total = (cfg.reference_chips + cfg.intensity_chips + sum(cfg.size_chips)
             + cfg.level_chips * len(cfg.error_levels))
    bar = ctx.progress(total, "calibrate_mesh chips")
    seed = ctx.seed
    ref = _study(ctx, cfg, bar, device, cfg.reference_n, cfg.reference_chips,
                 cfg.reference_unitaries, seed * 1000, seed * 1000 + 100)
    summary = _summary(ref)
    inten = _study(ctx, cfg, bar, device, cfg.intensity_n, cfg.intensity_chips,
                   cfg.intensity_unitaries, seed * 1000 + 400, seed * 1000 + 150, "intensity")
    inten_summary = _summary(inten) if inten else {}
    first = ref[0]["char"]
    ctx.write_text("characterised_chip.yaml",
                   first.to_preset_yaml(base=device.name,
                                        chip_label=f"reference chip seed {seed * 1000}"))
    ctx.savez("characterised_chip.npz", phase_offset_rad=first.phase_offset_rad_,
              gain_rel=first.gain_rel_, alpha_rad=first.alpha_rad_, beta_rad=first.beta_rad_,
              crosstalk_pairs=first.crosstalk_pairs_, crosstalk=first.crosstalk_,
              arm_ratio=first.arm_ratio_)
    by_stage: dict[str, float] = {}
    for res in ref:
        for k, v in res["measurements"].items():
            stage = k.removeprefix("characterise.")
            by_stage[stage] = by_stage.get(stage, 0) + v / len(ref)
    per_chip = [_characterisation_error(r["char"], r["truth"]) for r in ref]
    char_err = {k: max(e[k] for e in per_chip) for k in per_chip[0]}
    size_rows = {}
    for n, chips, units in zip(cfg.sizes, cfg.size_chips, cfg.size_unitaries, strict=True):
        res = _study(ctx, cfg, bar, device, n, chips, units, seed * 1000 + 500,
                     seed * 1000 + 200)
        s = _summary(res)
        s["char_s"] = float(np.mean([r["char_s"] for r in res]))
        s["prog_s_per_unitary"] = float(np.mean([r["prog_s"] for r in res])) / units
        size_rows[n] = s
    level_rows = {}
    for level in cfg.error_levels:
        dev = scaled_device(device, noise_scale=level)
        level_rows[level] = _summary(_study(ctx, cfg, bar, dev, cfg.level_n, cfg.level_chips,
                                            cfg.level_unitaries, seed * 1000 + 800,
                                            seed * 1000 + 300))
    bar.close()
    _figures(ctx, size_rows, level_rows, summary, cfg)
    _report(ctx, cfg, device, summary, inten_summary, by_stage, char_err, size_rows,
            level_rows, ref)
    return _metrics(summary, inten_summary, by_stage, char_err, size_rows, level_rows, ref)


def _metrics(summary, inten_summary, by_stage, char_err, size_rows, level_rows, ref):
    keys = [f"{s}_rel_error{x}" for s in ("naive", "calibrated", "oracle")
            for x in ("", "_worst", "_spread")]
    metrics: dict[str, object] = {k: summary[k] for k in keys}
    metrics.update({
        "error_reduction": summary["error_reduction"],
        "error_reduction_worst": summary["error_reduction_worst"],
        "cases": summary["cases"],
        "naive_fidelity": summary["naive_fidelity"],
        "calibrated_fidelity": summary["calibrated_fidelity"],
        "measurements": summary["measurements"],
        "measurements_by_stage": by_stage,
        "stage_rel_error": {k: summary[f"{k}_rel_error"] for k in STAGES},
        "characterisation_error": char_err,
        "noise_std": float(np.mean([r["noise_std"] for r in ref])),
        "size": {f"N{n}": {k: s[k] for k in ("naive_rel_error", "calibrated_rel_error",
                                             "error_reduction", "measurements", "char_s",
                                             "prog_s_per_unitary")}
                 for n, s in size_rows.items()},
        "level": {f"x{lv:g}": {k: s[k] for k in ("naive_rel_error", "calibrated_rel_error",
                                                 "error_reduction")}
                  for lv, s in level_rows.items()},
    })
    if inten_summary:
        metrics["intensity"] = {k: inten_summary[k] for k in keys + [
            "error_reduction", "error_reduction_worst", "cases", "measurements"]}
    return metrics


def _figures(ctx, size_rows, level_rows, summary, cfg) -> None:
    for name, rows, xlabel in (
        ("residual_vs_n.png", size_rows, "mesh size N (modes)"),
        ("residual_vs_error_level.png", level_rows,
         "noise level (× every fabrication spread of the preset)"),
    ):
        if not rows:
            continue
        xs = list(rows)
        fig = new_figure(figsize=(5.5, 4))
        ax = fig.subplots()
        for stage, style in (("naive", "o-"), ("calibrated", "^-"), ("oracle", "s--")):
            y = [rows[x][f"{stage}_rel_error"] for x in xs]
            e = [rows[x][f"{stage}_rel_error_spread"] for x in xs]
            ax.errorbar(xs, y, yerr=e, fmt=style, capsize=3, label=stage)
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel(xlabel)
        ax.set_ylabel("gain-matched error ‖gT − U‖/‖U‖ (median, ± std)")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend()
        ctx.savefig(fig, name)
    fig = new_figure(figsize=(6, 3.5))
    ax = fig.subplots()
    vals = [summary[f"{s}_rel_error"] for s in STAGES]
    worst = [summary[f"{s}_rel_error_worst"] for s in STAGES]
    ax.bar(range(len(STAGES)), vals, label="median")
    ax.plot(range(len(STAGES)), worst, "kv", label="worst")
    ax.set_xticks(range(len(STAGES)), ["naive", "coupler + chain\ninversion",
                                       "+ quantisation\nfeedback", "oracle (true\nparameters)"])
    ax.set_yscale("log")
    ax.set_xlabel("programming")
    ax.set_ylabel("gain-matched error (dimensionless)")
    ax.set_title(f"{cfg.reference_n}×{cfg.reference_n}, {cfg.reference_chips} chips × "
                 f"{cfg.reference_unitaries} unitaries")
    ax.legend()
    ctx.savefig(fig, "reference_ablation.png")


def _slope(xs, ys) -> float:
    x, y = np.log(np.asarray(xs, float)), np.log(np.asarray(ys, float))
    return float(np.polyfit(x, y, 1)[0]) if len(x) > 1 else math.nan


def _stage_table(summary) -> list[str]:
    labels = {"naive": "naive (data sheet)", "chain_inverted": "coupler correction + chain "
              "inversion", "calibrated": "+ quantisation feedback (calibrated)",
              "oracle": "oracle: the true parameters, same programmer"}
    return markdown_table(
        ["programming", "median", "worst", "spread (std)", "median fidelity"],
        [[labels[s], f"{summary[f'{s}_rel_error']:.4g}", f"{summary[f'{s}_rel_error_worst']:.4g}",
          f"{summary[f'{s}_rel_error_spread']:.2g}", f"{summary[f'{s}_fidelity']:.6f}"]
         for s in STAGES if f"{s}_rel_error" in summary])


def _report(ctx, cfg, device, summary, inten, by_stage, char_err, size_rows, level_rows,
            ref) -> None:
    n = cfg.reference_n
    lines = [
        f"# calibrate_mesh — {n}×{n} {cfg.topology} on preset `{device.name}`", "",
        "Virtual chips with hidden per-device errors drawn from the preset (offsets,",
        "coefficients, coupler angles, losses, arm imbalance, thermal crosstalk of the preset's",
        f"model), {cfg.shots} detector samples per measurement. Scores: gain-matched error",
        "min_g ‖gT − U‖/‖U‖ of the realised (noise-free, hidden) matrix; median, worst and",
        "spread over all cases.", "",
        f"## Homodyne receivers ({cfg.reference_chips} chips × {cfg.reference_unitaries} Haar "
        "unitaries)", "", *_stage_table(summary), "",
        f"**Error reduction: {summary['error_reduction']:.2f}×** (ratio of medians; worst "
        f"single case {summary['error_reduction_worst']:.2f}×, {summary['cases']:.0f} cases).",
        "", "![ablation](reference_ablation.png)", "",
    ]
    if inten:
        lines += [
            f"## Intensity-only receivers ({cfg.intensity_chips} chips × "
            f"{cfg.intensity_unitaries} unitaries, {cfg.intensity_n}×{cfg.intensity_n})", "",
            "Power meters only; judged up to the output phases they cannot see.", "",
            *_stage_table(inten), "",
            f"Error reduction {inten['error_reduction']:.2f}× (worst case "
            f"{inten['error_reduction_worst']:.2f}×), {inten['measurements']:.0f} "
            "measurements per chip.", ""]
    lines += [
        "## Measurements per chip (homodyne characterisation; programming uses none)", "",
        *markdown_table(["stage", "measurements"],
                        [[k, f"{v:.0f}"] for k, v in by_stage.items()]
                        + [["**total**", f"{summary['measurements']:.0f}"]]), "",
        "One measurement = one programmed setting × one input vector, all N receivers read.",
        "", "### Characterisation accuracy (max |learned − hidden| over all devices of all chips)",
        "", *[f"- {k}: {v:.3g}" for k, v in char_err.items()],
        f"- estimated receiver noise per quadrature: {ref[0]['noise_std']:.3g} (input units)", "",
    ]
    lines += _sweep_sections(cfg, size_rows, level_rows)
    ctx.write_text("report.md", "\n".join(lines))


def _sweep_sections(cfg, size_rows, level_rows) -> list[str]:
    lines = []
    for title, rows, head, fmt, fig in (
        ("Residual vs mesh size", size_rows, "N", "{:d}", "residual_vs_n.png"),
        (f"Residual vs noise level ({cfg.level_n}×{cfg.level_n})", level_rows, "level", "{:g}",
         "residual_vs_error_level.png"),
    ):
        if not rows:
            continue
        xs = list(rows)
        lines += [f"## {title}", "", *markdown_table(
            [head, "naive", "calibrated", "oracle", "reduction"],
            [[fmt.format(x), f"{rows[x]['naive_rel_error']:.4g}",
              f"{rows[x]['calibrated_rel_error']:.4g}", f"{rows[x]['oracle_rel_error']:.4g}",
              f"{rows[x]['error_reduction']:.2f}"] for x in xs]), "",
            f"Log-log slope: naive {_slope(xs, [rows[x]['naive_rel_error'] for x in xs]):.2f}, "
            f"calibrated {_slope(xs, [rows[x]['calibrated_rel_error'] for x in xs]):.2f}.", "",
            f"![{title}]({fig})", ""]
    lines += ["The first reference chip's characterisation is exported as a preset: "
              "[characterised_chip.yaml](characterised_chip.yaml) (per-device values in "
              "`characterised_chip.npz`).", ""]
    return lines
