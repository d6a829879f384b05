"""Typed device parameters of a photonic tensor core (units in every field name).

These are plain validated data; presets with their sources live as YAML under
``calibration/presets`` and are resolved by ``calibration.load_preset``. Range checks name
the field, the value and the rule (pydantic reports the dotted path of the field).
"""

from __future__ import annotations

import math
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

__all__ = [
    "PhaseShifterParams",
    "CouplerParams",
    "MziParams",
    "DetectorParams",
    "ConverterParams",
    "PhaseDacParams",
    "TiaParams",
    "ModulatorParams",
    "LaserParams",
    "CrosstalkParams",
    "VariationParams",
    "LayoutParams",
    "DeviceParams",
]


class _Params(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PhaseShifterParams(_Params):
    """A phase shifter driven by a DAC voltage.

    ``law`` maps drive voltage to phase: "quadratic" (thermo-optic heating ∝ V², and
    electrostatic MEMS actuation ∝ V²: φ = γV², γ = π/V_π²), "linear" (carrier / MOSCAP
    to first order, φ = πV/V_π).
    """

    kind: Literal["thermal", "moscap", "mems", "ideal"] = "ideal"
    law: Literal["quadratic", "linear"] = "linear"
    v_pi_v: float = Field(1.0, gt=0)
    v_max_v: float = Field(2.0, gt=0)
    p_pi_mw: float = Field(0.0, ge=0, description="static power to hold a π shift")
    capacitance_ff: float = Field(0.0, ge=0, description="drive capacitance (½CV² per update)")
    energy_per_update_pj: float = Field(0.0, ge=0, description="extra energy per reprogramming")
    settling_time_ns: float = Field(0.0, ge=0, description="time to settle after an update")
    length_um: float = Field(100.0, gt=0)
    width_um: float = Field(25.0, gt=0)
    insertion_loss_db: float = Field(0.0, ge=0)

    @model_validator(mode="after")
    def _covers_two_pi(self) -> PhaseShifterParams:
        if self.max_phase_rad < 2 * math.pi - 1e-9:
            raise ValueError(
                f"v_max_v={self.v_max_v} reaches only {self.max_phase_rad:.3f} rad with "
                f"v_pi_v={self.v_pi_v} and law={self.law!r}; a shifter must reach 2π"
            )
        return self

    @property
    def max_phase_rad(self) -> float:
        ratio = self.v_max_v / self.v_pi_v
        return math.pi * (ratio**2 if self.law == "quadratic" else ratio)


class CouplerParams(_Params):
    """50:50 directional coupler; splitting angle κ = π/4 + error."""

    insertion_loss_db: float = Field(0.0, ge=0)
    split_error_std_rad: float = Field(0.0, ge=0, description="fabrication spread of κ")
    dispersion_per_um: float = Field(0.0, description="relative change of κ per µm of λ")
    length_um: float = Field(31.0, gt=0)
    width_um: float = Field(6.5, gt=0)


class MziParams(_Params):
    """An MZI cell: two couplers and a phase-shifter arm (footprint of the whole cell)."""

    length_um: float = Field(180.0, gt=0)
    height_um: float = Field(100.0, gt=0)
    insertion_loss_db: float = Field(0.0, ge=0, description="whole-cell loss, both arms")
    loss_std_db: float = Field(0.0, ge=0, description="device-to-device spread of the loss")
    arm_imbalance_db: float = Field(
        0.0, description="mean loss of the θ (shifter) arm minus the other arm's; "
        "insertion_loss_db is the θ arm's (limits the extinction ratio)")
    arm_imbalance_std_db: float = Field(
        0.0, ge=0, description="device-to-device spread of the arm imbalance")


class DetectorParams(_Params):
    responsivity_a_per_w: float = Field(1.0, gt=0)
    dark_current_na: float = Field(0.1, ge=0)
    load_resistance_ohm: float = Field(166.0, gt=0)
    bandwidth_ghz: float = Field(20.0, gt=0)
    temperature_k: float = Field(300.0, gt=0)
    sensitivity_dbm: float = Field(-20.0, description="optical power needed per detector")
    area_um2: float = Field(100.0, ge=0)


class ConverterParams(_Params):
    """A DAC or ADC: bits (None = ideal), energy per conversion, area, rate."""

    bits: int | None = Field(None, ge=1, le=32)
    energy_pj_per_conversion: float = Field(0.0, ge=0)
    area_um2: float = Field(0.0, ge=0)
    sample_rate_gsps: float = Field(10.0, gt=0)


class PhaseDacParams(ConverterParams):
    """The phase shifters' DAC. ``grid`` sets where its 2^b codes fall:

    - ``voltage``: uniform in voltage over [0, V_max]; the shifter law maps them to phases,
      so a thermal (quadratic) shifter gets fine steps near 0 and coarse ones near 2π, and
      codes above V_2π reach further turns (a plain voltage DAC on the heater);
    - ``phase``: uniform in phase over one turn, step 2π / (2^b − 1) (a driver linear in
      heater power, φ ∝ P; and the quantiser of the BP-free PINN study's simulator,
      torchonn ``PhaseQuantizer``: "uniform phase-space quantization").
    """

    grid: Literal["voltage", "phase"] = "voltage"


class TiaParams(_Params):
    power_mw: float = Field(0.0, ge=0)
    area_um2: float = Field(0.0, ge=0)


class ModulatorParams(_Params):
    energy_fj_per_bit: float = Field(0.0, ge=0)
    length_um: float = Field(1600.0, gt=0)
    width_um: float = Field(460.0, gt=0)
    insertion_loss_db: float = Field(0.0, ge=0)


class LaserParams(_Params):
    wavelength_um: float = Field(1.55, gt=0)
    wall_plug_efficiency: float = Field(0.2, gt=0, le=1)
    power_per_channel_mw: float = Field(1.0, gt=0, description="optical power per input mode")


class CrosstalkParams(_Params):
    """Thermal crosstalk Γ between phase shifters: φ̃ = Γ φ, Γ_ii = 1.

    "nearest": Γ_ij = ``coefficient`` for shifters of vertically adjacent MZIs in the same
    column (the BP-free PINN study's model); "exponential": Γ_ij = ``coefficient`` ·
    exp(−``decay_per_um`` · d_ij) for d_ij ≥ ``min_distance_um`` within ``cutoff_um``
    (SimPhony's fit 0.2167·exp(−0.1275 d/µm)).
    """

    model: Literal["none", "nearest", "exponential"] = "none"
    coefficient: float = Field(0.0, ge=0, lt=1)
    decay_per_um: float = Field(0.1275, ge=0)
    min_distance_um: float = Field(23.0, ge=0)
    cutoff_um: float = Field(120.0, gt=0)


class VariationParams(_Params):
    """Statistical non-idealities (standard deviations) sampled per chip or per call."""

    gamma_std: float = Field(0.0, ge=0, description="relative spread of the shifter coefficient")
    phase_offset_std_rad: float = Field(0.0, ge=0, description="static fabrication offsets")
    phase_noise_std_rad: float = Field(0.0, ge=0, description="dynamic noise per call")


class LayoutParams(_Params):
    """Geometry used for crosstalk distances and analytic area."""

    mode_pitch_um: float = Field(50.0, gt=0, description="vertical spacing of waveguides")
    column_pitch_um: float = Field(200.0, gt=0, description="horizontal spacing of columns")
    routing_overhead: float = Field(0.1, ge=0, description="extra area fraction for routing")


class DeviceParams(_Params):
    """Everything the simulator needs to know about a photonic platform."""

    name: str = "custom"
    design_wavelength_um: float = Field(1.55, gt=0)
    shifter: PhaseShifterParams = PhaseShifterParams(v_pi_v=1.0, v_max_v=2.0)
    coupler: CouplerParams = CouplerParams()
    mzi: MziParams = MziParams()
    crosstalk: CrosstalkParams = CrosstalkParams()
    variation: VariationParams = VariationParams()
    detector: DetectorParams = DetectorParams()
    dac: ConverterParams = ConverterParams()
    adc: ConverterParams = ConverterParams()
    phase_dac: PhaseDacParams = PhaseDacParams()
    tia: TiaParams = TiaParams()
    modulator: ModulatorParams = ModulatorParams()
    laser: LaserParams = LaserParams()
    layout: LayoutParams = LayoutParams()
    clock_ghz: float = Field(10.0, gt=0, description="rate of input vectors")

    @field_validator("phase_dac", mode="before")
    @classmethod
    def _phase_dac_from_converter(cls, v):
        """A plain ConverterParams (as before the grid existed) is a voltage-grid DAC."""
        if isinstance(v, ConverterParams) and not isinstance(v, PhaseDacParams):
            return PhaseDacParams(**v.model_dump())
        return v
