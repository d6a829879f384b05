"""Area, energy and latency of photonic tensor-core designs (analytic, nanoGPT-style).

A *design* is a sequence of :class:`Stage` s, each one matrix product realised on SVD tiles
(U Σ V† on MZI meshes, :mod:`photonic.core`); stages run one after the other with an
optical → electrical → optical conversion between them (detect, digitise, buffer, modulate).
Two dataflows:

- ``weight_stationary``: every logical tile has its own hardware; phases are written once
  and held; input vectors stream at ``min(clock, DAC rate, ADC rate)``.
- ``time_multiplexed``: ``physical_tiles`` k×k tiles are reused; every logical tile is
  loaded in turn (phase write + settling), intermediate results and the phases of all tiles
  live in an SRAM (TONN-2 of Zhao et al., arXiv 2401.00413).

Every formula below names its source; every device number comes from
:class:`photonic.devices.DeviceParams` (presets, with sources) except the few system
constants DeviceParams has no field for, which sit in :class:`CostParams` with their source.
Units are in the names: µm², pJ, ns, mW (mW · ns = pJ).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

import torch
from pydantic import BaseModel, ConfigDict, Field

from photonic.core import CoreCounts
from photonic.devices import DeviceParams, PhaseShifterParams
from photonic.footprint import mesh_area_um2, sigma_area_um2
from photonic.mesh import mesh_layout
from photonic.power import IDEAL_ADC_BITS, ChannelGroup, PowerBudget, power_budget, svd_path_mzis

__all__ = [
    "C_UM_PER_NS",
    "CostParams",
    "TrainingStep",
    "Stage",
    "CostReport",
    "DATAFLOWS",
    "estimate_cost",
    "mesh_mzis",
    "mesh_depth",
    "svd_mzis",
    "svd_phase_shifters",
    "shifter_hold_power_mw",
    "shifter_update_energy_pj",
]

C_UM_PER_NS = 299_792.458  # speed of light in vacuum, µm/ns (exact, SI definition)

DATAFLOWS = ("weight_stationary", "time_multiplexed")


class CostParams(BaseModel):
    """System constants the device presets have no field for (each with its source).

    These are the only defaults of the estimator that do not come from DeviceParams; a
    preset-driven report lists them beside the preset values.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    group_index: float = Field(
        4.2, gt=0,
        description="group index of the routing waveguide; 220×500 nm SOI strip at 1550 nm "
        "(Bogaerts et al., Laser Photonics Rev. 6, 47 (2012)) (unverified)",
    )
    sram_area_um2_per_bit: float = Field(
        0.346, ge=0,
        description="6T SRAM bit cell, Intel 45 nm (Mistry et al., IEDM 2007); bit cells "
        "only, no periphery (unverified)",
    )
    sram_energy_pj_per_bit: float = Field(
        10.0 / 64, ge=0,
        description="64-bit access of an 8 kB SRAM ≈ 10 pJ at 45 nm (Horowitz, ISSCC 2014) "
        "(unverified)",
    )
    ideal_converter_bits: int = Field(
        IDEAL_ADC_BITS, ge=1,
        description="bits assumed for modulator energy / storage when a converter is ideal "
        "(bits=None); the BP-free PINN study used 8-bit phases (Zhao et al., arXiv 2502.12384)",
    )
    num_lasers: int = Field(1, ge=1, description="lasers sharing the input fan-out")
    laser_area_um2: float = Field(
        0.0, ge=0, description="on-chip area per laser; 0: off-chip laser, edge-coupled"
    )


class TrainingStep(BaseModel):
    """What one training step asks of the chip.

    ``queries``: distinct phase settings per step (ZO with S Rademacher samples: 2S + 1, the
    centre and ±μu_s, Zhao et al., arXiv 2502.12384); ``inferences_per_query``: forward
    passes with one setting (collocation points × Stein stencil points).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    queries: int = Field(..., ge=1)
    inferences_per_query: int = Field(..., ge=1)


def mesh_depth(n: int, topology: str = "clements") -> int:
    """Columns of an n-mode mesh: N (Clements, Optica 3, 1460 (2016)), 2N − 3 (Reck,
    PRL 73, 58 (1994)); a 1-mode 'mesh' is a bare waveguide (depth 0)."""
    return 0 if n < 2 else mesh_layout(int(n), topology).depth


def mesh_mzis(n: int, topology: str = "clements") -> int:
    """MZIs of a universal n-mode mesh: N(N − 1)/2 for both topologies (Reck 1994;
    Clements 2016); 0 for n = 1."""
    return 0 if n < 2 else mesh_layout(int(n), topology).num_mzis


def svd_mzis(
    rows: int, cols: int, topology: str = "clements", *, isometry: bool = False
) -> int:
    """MZIs of one rows × cols SVD block W = U Σ V†: U (rows modes) + V† (cols modes) +
    min(rows, cols) attenuating MZIs for Σ (Shen et al.,
    Nat. Photon. 11, 441 (2017)). For a k×k tile: k(k − 1) + k = k².

    ``isometry=True``: a rectangular block only needs the first r = min(rows, cols) columns
    of U and rows of V†, i.e. r·n − r(r + 1)/2 MZIs per n-mode mesh (Reck nulling stopped
    after r rows, PRL 73, 58 (1994)); the total is then exactly rows · cols.
    """
    if not isometry:
        return mesh_mzis(rows, topology) + mesh_mzis(cols, topology) + min(rows, cols)
    r = min(rows, cols)
    return (r * rows - r * (r + 1) // 2) + (r * cols - r * (r + 1) // 2) + r


def svd_phase_shifters(rows: int, cols: int, topology: str = "clements") -> int:
    """Phase shifters of one SVD block, as the hub counts them (:mod:`photonic.core`):
    θ and φ per mesh MZI plus each mesh's output phase screen, θ and φ per Σ MZI."""
    def mesh(n: int) -> int:
        return 2 * mesh_mzis(n, topology) + (n if n >= 2 else 0)

    return mesh(rows) + mesh(cols) + 2 * min(rows, cols)


def _phase_moments(phases: torch.Tensor | None) -> tuple[float, float]:
    """(E[φ/π], E[(φ/π)²]) over the programmed phases wrapped to [0, 2π) (a shifter only
    adds phase, :func:`photonic.quantize_phase`). Without phases: φ uniform on [0, 2π),
    giving (1, 4/3) — the assumption a report states."""
    if phases is None:
        return 1.0, 4.0 / 3.0
    x = torch.remainder(torch.as_tensor(phases, dtype=torch.float64).detach(), 2 * math.pi)
    x = x / math.pi
    if x.numel() == 0:
        return 0.0, 0.0
    return float(x.mean()), float((x * x).mean())


def shifter_hold_power_mw(shifter: PhaseShifterParams, phase_over_pi: float) -> float:
    """Static power to hold phase φ: P_π · φ/π.

    Thermo-optic: heater power ∝ V² ∝ φ (Harris et al., Opt. Express 22, 10487 (2014));
    MOSCAP ≈ 0 (capacitive, Xiao et al., APL Photonics 6, 126107 (2021)) and MEMS ~nW
    (SimPhony library) follow from their presets' ``p_pi_mw``.
    """
    return shifter.p_pi_mw * phase_over_pi


def shifter_update_energy_pj(
    shifter: PhaseShifterParams, phase_over_pi: float, phase_over_pi_sq: float
) -> float:
    """Energy of one write: ½ C V(φ)² + ``energy_per_update_pj`` (mean over phases).

    V(φ) follows the shifter law: linear V = V_π φ/π (MOSCAP / carrier / MEMS to first
    order) so E[V²] = V_π² E[(φ/π)²]; quadratic V = V_π √(φ/π) (thermal) so
    E[V²] = V_π² E[φ/π]. ½CV² for a capacitive shifter: Xiao et al., APL Photonics 6,
    126107 (2021). C in fF, V in V → fJ; returned in pJ.
    """
    v2 = shifter.v_pi_v**2 * (phase_over_pi_sq if shifter.law == "linear" else phase_over_pi)
    return 0.5 * shifter.capacitance_ff * v2 * 1e-3 + shifter.energy_per_update_pj


@dataclass(frozen=True)
class Stage:
    """One matrix product of a design, realised on ``tiles`` identical SVD blocks of
    ``mesh_rows`` × ``mesh_cols`` (U on ``mesh_rows`` modes, V† on ``mesh_cols``).

    ``vectors_per_inference``: input vectors each tile sees per network inference (1 for a
    dense layer; ∏ n_j<k · ∏ m_j>k for TT-core k). ``phases``: programmed phases of the
    stage's shifters (any shape), used for phase-dependent shifter power; None = uniform.
    """

    name: str
    mesh_rows: int
    mesh_cols: int
    tiles: int
    vectors_per_inference: float = 1.0
    num_mzis: int | None = None  # None: svd_mzis × tiles
    num_phase_shifters: int | None = None  # None: svd_phase_shifters × tiles
    phases: torch.Tensor | None = field(default=None, repr=False, compare=False)
    topology: str = "clements"

    def __post_init__(self):
        for name in ("mesh_rows", "mesh_cols", "tiles"):
            if getattr(self, name) < 1:
                raise ValueError(f"Stage {self.name!r}: {name}={getattr(self, name)} must be ≥ 1")
        if self.num_mzis is None:
            object.__setattr__(
                self, "num_mzis",
                self.tiles * svd_mzis(self.mesh_rows, self.mesh_cols, self.topology))
        if self.num_phase_shifters is None:
            object.__setattr__(
                self, "num_phase_shifters",
                self.tiles * svd_phase_shifters(self.mesh_rows, self.mesh_cols, self.topology))

    @classmethod
    def from_counts(
        cls,
        counts: CoreCounts,
        *,
        name: str = "core",
        phases: torch.Tensor | None = None,
        topology: str = "clements",
    ) -> Stage:
        """A TensorCore's counts as a stage: k×k tiles; vectors per inference from the
        DAC conversions it counted (1 when it has not been called yet)."""
        k, tiles = counts.tile, counts.num_tiles
        if k < 1 or tiles < 1:
            raise ValueError(f"counts has tile={k}, num_tiles={tiles}; both must be ≥ 1 "
                             "(pass TensorCore.counts)")
        vectors = 1.0
        if counts.inferences > 0:
            vectors = counts.dac_conversions / (counts.inferences * tiles * k)
        return cls(name=name, mesh_rows=k, mesh_cols=k, tiles=tiles,
                   vectors_per_inference=vectors, num_mzis=counts.num_mzis,
                   num_phase_shifters=counts.num_phase_shifters, phases=phases,
                   topology=topology)

    @property
    def path_mzis(self) -> int:
        """MZIs on the longest optical path: depth(V†) + 1 (Σ) + depth(U)."""
        return svd_path_mzis(self.mesh_rows, self.mesh_cols, self.topology)

    @property
    def num_modulators(self) -> int:
        return self.tiles * self.mesh_cols

    @property
    def num_detectors(self) -> int:
        return self.tiles * self.mesh_rows


@dataclass(frozen=True)
class CostReport:
    """Area, energy and latency of a design; breakdowns sum to the totals.

    ``energy_pj`` and ``time_per_inference_ns`` are per inference within a batch of
    ``batch``; ``latency_ns`` is the time until the batch (hence each of its inferences) is
    done. ``*_per_step`` describe one training step (None without a TrainingStep).
    ``power``: the optical power budget (:mod:`photonic.power`); ``feasible`` is its verdict
    and ``infeasible_reasons`` says which laser limit or SNR rule a design breaks.
    """

    area_um2: float
    energy_pj: float
    latency_ns: float
    time_per_inference_ns: float
    area_breakdown_um2: dict[str, float]
    energy_breakdown_pj: dict[str, float]
    latency_breakdown_ns: dict[str, float]
    static_power_mw: dict[str, float]
    num_mzis: int
    num_phase_shifters: int
    num_modulators: int
    num_detectors: int
    power: PowerBudget
    energy_pj_per_step: float | None = None
    latency_ns_per_step: float | None = None
    step_energy_breakdown_pj: dict[str, float] | None = None
    assumptions: tuple[str, ...] = ()

    @property
    def worst_path_loss_db(self) -> float:
        """Loss of the longest light path, modulator included (dB)."""
        return self.power.worst_path_loss_db

    @property
    def laser_optical_mw(self) -> float:
        """Optical laser power: input channels and local oscillators (mW)."""
        return self.power.laser_optical_mw

    @property
    def feasible(self) -> bool:
        return self.power.feasible

    @property
    def infeasible_reasons(self) -> tuple[str, ...]:
        return self.power.reasons

    def as_dict(self) -> dict[str, float | int | bool | str | None]:
        """Flat dict (``area.meshes_um2`` style keys) for metrics.json."""
        out: dict[str, float | int | bool | str | None] = {
            "area_um2": self.area_um2,
            "energy_pj_per_inference": self.energy_pj,
            "latency_ns_per_inference": self.latency_ns,
            "time_per_inference_ns": self.time_per_inference_ns,
            "num_mzis": self.num_mzis,
            "num_phase_shifters": self.num_phase_shifters,
            "num_modulators": self.num_modulators,
            "num_detectors": self.num_detectors,
            "worst_path_loss_db": self.worst_path_loss_db,
            "laser_optical_mw": self.laser_optical_mw,
            "feasible": self.feasible,
            "infeasible_reasons": "; ".join(self.infeasible_reasons),
            "energy_pj_per_step": self.energy_pj_per_step,
            "latency_ns_per_step": self.latency_ns_per_step,
        }
        out.update({f"area.{k}_um2": v for k, v in self.area_breakdown_um2.items()})
        out.update({f"energy.{k}_pj": v for k, v in self.energy_breakdown_pj.items()})
        out.update({f"latency.{k}_ns": v for k, v in self.latency_breakdown_ns.items()})
        out.update({f"static.{k}_mw": v for k, v in self.static_power_mw.items()})
        out.update({f"power.{k}": v for k, v in self.power.as_dict().items()
                    if k not in ("feasible", "reasons", "worst_path_loss_db")})
        return out


def _bits(bits: int | None, params: CostParams) -> int:
    return params.ideal_converter_bits if bits is None else bits


@dataclass(frozen=True)
class _Plan:
    """What runs where: the stages of the work, the hardware on the chip, and how many
    rounds each stage takes on it (1 for weight-stationary)."""

    stages: list[Stage]
    hw: list[Stage]
    rounds: list[tuple[Stage, int]]
    dataflow: str
    batch: int


def _plan(stages: list[Stage], dataflow: str, physical_tiles: int,
          physical_tile: int | None, batch: int) -> _Plan:
    if dataflow == "weight_stationary":
        return _Plan(stages, stages, [(s, 1) for s in stages], dataflow, batch)
    k = physical_tile or max(max(s.mesh_rows, s.mesh_cols) for s in stages)
    hw = [Stage(name="physical", mesh_rows=k, mesh_cols=k, tiles=physical_tiles,
                topology=stages[0].topology)]
    rounds = []
    for s in stages:
        logical = s.tiles * math.ceil(s.mesh_rows / k) * math.ceil(s.mesh_cols / k)
        rounds.append((s, math.ceil(logical / physical_tiles)))
    return _Plan(stages, hw, rounds, dataflow, batch)


def _power(d: DeviceParams, plan: _Plan, params: CostParams) -> PowerBudget:
    """Weight-stationary: all stages' channels are fed while any streams (one shared source,
    peak power); time-multiplexed: the physical tiles' channels."""
    def group(s: Stage) -> ChannelGroup:
        return ChannelGroup(mesh_path_loss_db=s.path_mzis * d.mzi.insertion_loss_db,
                            inputs=s.num_modulators, outputs=s.num_detectors)

    return power_budget(d, groups=[group(s) for s in plan.hw], num_lasers=params.num_lasers)


def _latency(d: DeviceParams, plan: _Plan, params: CostParams) -> dict[str, float]:
    t_vec = 1.0 / min(d.clock_ghz, d.dac.sample_rate_gsps, d.adc.sample_rate_gsps)
    t_phase_write = 1.0 / d.phase_dac.sample_rate_gsps + d.shifter.settling_time_ns
    lat = dict.fromkeys(("dac", "optical", "adc", "streaming", "reprogramming"), 0.0)
    for s, r in plan.rounds:
        on = s if plan.dataflow == "weight_stationary" else plan.hw[0]
        length_um = on.path_mzis * d.mzi_cell_length_um + d.modulator.length_um
        lat["dac"] += r / d.dac.sample_rate_gsps
        lat["optical"] += r * length_um * params.group_index / C_UM_PER_NS
        lat["adc"] += r / d.adc.sample_rate_gsps
        lat["streaming"] += r * max(plan.batch * s.vectors_per_inference - 1.0, 0.0) * t_vec
        if plan.dataflow == "time_multiplexed":
            lat["reprogramming"] += r * t_phase_write
    return lat


def _write_energy_pj(d: DeviceParams, st: Stage, params: CostParams) -> float:
    """Energy to write one shifter of ``st`` (mean over its phases), pJ."""
    m1, m2 = _phase_moments(st.phases)
    return (shifter_update_energy_pj(d.shifter, m1, m2) + d.phase_dac.energy_pj_per_conversion
            + _bits(d.phase_dac.bits, params) * params.sram_energy_pj_per_bit)


def _hold_power_mw(d: DeviceParams, plan: _Plan) -> float:
    if plan.dataflow == "weight_stationary":
        return sum(shifter_hold_power_mw(d.shifter, _phase_moments(s.phases)[0])
                   * s.num_phase_shifters for s in plan.stages)
    # the physical tiles hold the phases of whatever tile is loaded: weighted mean
    w = sum(r for _, r in plan.rounds)
    m1 = sum(_phase_moments(s.phases)[0] * r for s, r in plan.rounds) / w
    return shifter_hold_power_mw(d.shifter, m1) * sum(s.num_phase_shifters for s in plan.hw)


def _energy(d: DeviceParams, plan: _Plan, params: CostParams, static_mw: dict[str, float],
            batch_ns: float) -> dict[str, float]:
    """Energy per inference of one batch (pJ), by part."""
    t_vec = 1.0 / min(d.clock_ghz, d.dac.sample_rate_gsps, d.adc.sample_rate_gsps)
    # light and TIAs are on while a stage streams (round by round when time-multiplexed)
    stream_ns = sum(r * plan.batch * s.vectors_per_inference * t_vec for s, r in plan.rounds)
    samples_in = sum(s.num_modulators * s.vectors_per_inference for s in plan.stages)
    samples_out = sum(s.num_detectors * s.vectors_per_inference for s in plan.stages)
    e_in = (d.dac.energy_pj_per_conversion
            + d.modulator.energy_fj_per_bit * _bits(d.dac.bits, params) * 1e-3)
    n_sh = sum(s.num_phase_shifters for s in plan.hw)
    e = {
        "laser": static_mw["laser_electrical"] * stream_ns,
        "dac_modulator": plan.batch * samples_in * e_in,
        "adc": plan.batch * samples_out * d.adc.energy_pj_per_conversion,
        "tia": static_mw["tia"] * stream_ns,
        "shifter_hold": static_mw["shifter_hold"] * batch_ns,
        "buffer": (plan.batch * samples_out * _bits(d.adc.bits, params) * 2
                   * params.sram_energy_pj_per_bit),
        "reprogramming": 0.0,
    }
    if plan.dataflow == "time_multiplexed":
        # every round loads all shifters of the physical tiles with the stage's phases
        e["reprogramming"] = sum(r * n_sh * _write_energy_pj(d, s, params)
                                 for s, r in plan.rounds)
    return {k: v / plan.batch for k, v in e.items()}


def _area(d: DeviceParams, plan: _Plan, params: CostParams) -> dict[str, float]:
    """Area by part (µm²); meshes and Σ from :mod:`photonic.footprint`."""
    hw = plan.hw
    n_mod = sum(s.num_modulators for s in hw)
    n_det = sum(s.num_detectors for s in hw)
    n_sh = sum(s.num_phase_shifters for s in hw)
    act_bits = _bits(d.adc.bits, params)
    a = {
        "meshes": sum(s.tiles * (mesh_area_um2(d, n=s.mesh_rows, topology=s.topology)
                                 + mesh_area_um2(d, n=s.mesh_cols, topology=s.topology))
                      for s in hw),
        "sigma_attenuators": sum(s.tiles * sigma_area_um2(d, n=min(s.mesh_rows, s.mesh_cols))
                                 for s in hw),
        "modulators": n_mod * d.modulator.length_um * d.modulator.width_um,
        "dacs": n_mod * d.dac.area_um2,
        "detectors": n_det * d.detector.area_um2,
        "tias": n_det * d.tia.area_um2,
        "adcs": n_det * d.adc.area_um2,
        "phase_dacs": n_sh * d.phase_dac.area_um2,
        "lasers": params.num_lasers * params.laser_area_um2,
    }
    max_act = max(s.num_detectors * s.vectors_per_inference for s in plan.stages)
    mem_bits = 2 * max_act * act_bits * plan.batch  # double-buffered activations
    if plan.dataflow == "time_multiplexed":
        mem_bits += _bits(d.phase_dac.bits, params) * sum(s.num_phase_shifters
                                                          for s in plan.stages)
    a["memory"] = mem_bits * params.sram_area_um2_per_bit
    photonic = a["meshes"] + a["sigma_attenuators"] + a["modulators"] + a["detectors"]
    a["routing_overhead"] = d.layout.routing_overhead * photonic
    return a


def _checked_stages(counts, stages, phases, topology, dataflow, batch,
                    physical_tiles) -> list[Stage]:
    if dataflow not in DATAFLOWS:
        raise ValueError(f"dataflow={dataflow!r} is not known; valid choices: {list(DATAFLOWS)}")
    if (counts is None) == (stages is None):
        raise ValueError("pass exactly one of counts= (a TensorCore's CoreCounts) or stages=")
    if stages is not None and phases is not None:
        raise ValueError("phases= goes with counts=; with stages= give each Stage its phases")
    if batch < 1 or physical_tiles < 1:
        raise ValueError(f"batch={batch} and physical_tiles={physical_tiles} must be ≥ 1")
    if counts is not None:
        stages = [Stage.from_counts(counts, phases=phases, topology=topology)]
    stages = list(stages)
    if not stages:
        raise ValueError("stages is empty: a design needs at least one stage")
    return stages


def estimate_cost(
    *,
    device: DeviceParams,
    counts: CoreCounts | None = None,
    stages: Sequence[Stage] | None = None,
    phases: torch.Tensor | None = None,
    topology: str = "clements",
    dataflow: Literal["weight_stationary", "time_multiplexed"] = "weight_stationary",
    physical_tiles: int = 1,
    physical_tile: int | None = None,
    batch: int = 1,
    training: TrainingStep | None = None,
    params: CostParams | None = None,
) -> CostReport:
    """Area (µm²), energy (pJ) and latency (ns) of a design on ``device``.

    Pass either ``counts`` (a TensorCore's :class:`CoreCounts`, with its programmed
    ``phases``, e.g. ``core.program.phase_vector()``) or ``stages`` (a multi-stage design,
    e.g. from :func:`photonic.tonn.network_stages`).

    Area (device counts × footprints; Lightening-Transformer / SimPhony style):
      meshes: each block's U and V† meshes, :func:`photonic.footprint.mesh_area_um2` (depth
      columns of the analytic MZI cell × the span of the modes); Σ: min(rows, cols) MZI
      cells; modulators + DACs per input mode, detectors + TIAs + ADCs per output mode, one
      phase DAC per shifter (``phase_dac.area_um2``), lasers, SRAM; routing overhead
      = ``layout.routing_overhead`` × photonic area (meshes, Σ, modulators, detectors).
    Energy per inference (batch-amortised):
      laser: the power budget of :func:`photonic.power.power_budget` (channels sized for the
      detector sensitivity the ADC's SNR needs through the longest path, plus one LO per
      output), electrical = optical / η_WPE, on while vectors stream; DAC + modulator
      (fJ/bit × bits) per input sample; ADC per output sample; TIA power × streaming time per
      detector; shifter hold power P_π·φ/π × the batch time; activation buffer writes +
      reads (SRAM energy per bit); time-multiplexed designs also pay a phase write (½CV² +
      update energy + phase-DAC conversion + SRAM read) for every shifter of every logical
      tile loaded, per batch.
    Latency (batch): per stage DAC conversion + optical propagation
      (L_path · n_g / c, L_path = path MZIs × MZI cell length + modulator length) + ADC
      conversion + streaming (batch · vectors − 1) / rate, rate = min(clock, DAC, ADC) GS/s;
      time-multiplexed: every logical tile round adds its own conversions, streaming and a
      reprogramming time (phase-DAC conversion + ``settling_time_ns``).
    Training step (``training``): every query writes new phases (in-situ phase-domain ZO
      training perturbs every shifter), so per query: program all shifters (weight-stationary:
      all in parallel, one settling time) and run ``inferences_per_query`` inferences.
    """
    params = params or CostParams()
    stages = _checked_stages(counts, stages, phases, topology, dataflow, batch, physical_tiles)
    assumptions: list[str] = []
    if any(s.phases is None for s in stages):
        assumptions.append("programmed phases not given for some stages: φ uniform on "
                           "[0, 2π) assumed (E[φ/π] = 1, E[(φ/π)²] = 4/3)")
    d = device
    plan = _plan(stages, dataflow, physical_tiles, physical_tile, batch)
    budget = _power(d, plan, params)
    static = {"laser_electrical": budget.laser_electrical_mw,
              "tia": d.tia.power_mw * sum(s.num_detectors for s in plan.hw),
              "shifter_hold": _hold_power_mw(d, plan)}
    latency = _latency(d, plan, params)
    batch_ns = sum(latency.values())
    energy = _energy(d, plan, params, static, batch_ns)
    area = _area(d, plan, params)

    e_step = l_step = step_e = None
    if training is not None:
        e_step, l_step, step_e = _training_step(d, plan, params, training, static,
                                                physical_tiles, physical_tile)
    return CostReport(
        area_um2=sum(area.values()), energy_pj=sum(energy.values()), latency_ns=batch_ns,
        time_per_inference_ns=batch_ns / batch, area_breakdown_um2=area,
        energy_breakdown_pj=energy, latency_breakdown_ns=latency, static_power_mw=static,
        num_mzis=sum(s.num_mzis for s in plan.hw),
        num_phase_shifters=sum(s.num_phase_shifters for s in plan.hw),
        num_modulators=sum(s.num_modulators for s in plan.hw),
        num_detectors=sum(s.num_detectors for s in plan.hw), power=budget,
        energy_pj_per_step=e_step, latency_ns_per_step=l_step, step_energy_breakdown_pj=step_e,
        assumptions=tuple(assumptions),
    )


def _training_step(d: DeviceParams, plan: _Plan, params: CostParams, training: TrainingStep,
                   static: dict[str, float], physical_tiles: int,
                   physical_tile: int | None) -> tuple[float, float, dict[str, float]]:
    """(energy pJ, latency ns, energy breakdown) of one training step."""
    q, ipq = training.queries, training.inferences_per_query
    per_query = estimate_cost(
        device=d, stages=plan.stages, dataflow=plan.dataflow, physical_tiles=physical_tiles,
        physical_tile=physical_tile, batch=ipq, params=params)
    if plan.dataflow == "weight_stationary":
        t_prog = 1.0 / d.phase_dac.sample_rate_gsps + d.shifter.settling_time_ns
        e_prog = sum(_write_energy_pj(d, s, params) * s.num_phase_shifters for s in plan.stages)
        e_hold_prog = static["shifter_hold"] * t_prog
    else:  # loading tiles is already part of every batch
        t_prog = e_prog = e_hold_prog = 0.0
    step_e = {k: q * v * ipq for k, v in per_query.energy_breakdown_pj.items()}
    step_e["reprogramming"] += q * e_prog
    step_e["shifter_hold"] += q * e_hold_prog
    return sum(step_e.values()), q * (t_prog + per_query.latency_ns), step_e
