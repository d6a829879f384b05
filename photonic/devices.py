"""Typed device parameters of a photonic tensor core (units in every field name).

These are plain validated data; presets with their sources live as YAML under
``calibration/presets`` and are resolved by ``calibration.load_preset``. Range checks name
the field, the value and the rule (pydantic reports the dotted path of the field).
"""

from __future__ import annotations

import math
from typing import Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    field_validator,
    model_serializer,
    model_validator,
)

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
    "WaveguideParams",
    "DeviceParams",
    "mzi_cell_length_um",
    "mzi_loss_db",
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
    """An MZI cell's loss. Its footprint follows from its parts
    (:attr:`DeviceParams.mzi_cell_length_um`, :attr:`DeviceParams.mzi_cell_height_um`).

    ``insertion_loss_db``: whole-cell loss, applied to both arms. None (the default): derived
    by :class:`DeviceParams` from the parts, :func:`mzi_loss_db`; a number: a measured
    whole-cell loss, allowed only where it agrees with non-zero part losses.
    """

    insertion_loss_db: float | None = Field(None, ge=0, description="whole-cell loss, both "
                                            "arms; None: from the couplers, shifter and "
                                            "waveguide")
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
    lo_power_mw: float = Field(1.0, gt=0, description="local-oscillator power per output "
                               "(homodyne detection), taken from the laser")
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
    """The laser feeding the inputs and the local oscillators (:mod:`photonic.power`).

    ``power_per_channel_mw``: optical power launched into each input mode of a mesh. None
    (the default): what the power budget needs, the detector sensitivity for the ADC's SNR
    times the mesh path loss; a number: a fixed launch power (the budget then checks it).
    The limits (None: none stated) mark designs whose laser power exceeds them infeasible.
    """

    wavelength_um: float = Field(1.55, gt=0)
    wall_plug_efficiency: float = Field(0.2, gt=0, le=1)
    power_per_channel_mw: float | None = Field(None, gt=0, description="optical power per "
                                               "input mode; None: from the power budget")
    max_power_per_laser_mw: float | None = Field(None, gt=0, description="optical output "
                                                 "one laser can deliver")
    max_power_per_chip_mw: float | None = Field(None, gt=0, description="optical power the "
                                                "chip may take in")


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
    """Geometry used for crosstalk distances and analytic area.

    The MZI cell's routing (:attr:`DeviceParams.mzi_cell_length_um`): ``sbend_length_um``
    per S-bend between the mode pitch and the input coupler's port gap (one before, one
    after the cell's MZI); ``arm_bend_length_um`` per coupler for the bends that take its
    ports apart to the arm separation; ``contact_length_um`` per end of the external (input)
    shifter for its contacts, which lie in line on a single waveguide.
    """

    mode_pitch_um: float = Field(50.0, gt=0, description="vertical spacing of waveguides")
    column_pitch_um: float = Field(200.0, gt=0, description="horizontal spacing of columns")
    routing_overhead: float = Field(0.1, ge=0, description="extra area fraction for routing")
    sbend_length_um: float = Field(40.0, ge=0, description="one fan-in / fan-out S-bend")
    arm_bend_length_um: float = Field(20.0, ge=0, description="arm bends at one coupler")
    contact_length_um: float = Field(16.0, ge=0, description="contacts at one shifter end")


class WaveguideParams(_Params):
    """The routing waveguide: propagation loss over the cell length enters the MZI loss."""

    loss_db_per_cm: float = Field(0.0, ge=0, description="propagation loss")


def mzi_cell_length_um(
    *, shifter: PhaseShifterParams, coupler: CouplerParams, layout: LayoutParams
) -> float:
    """Length of one mesh MZI cell along the light, from its parts (µm).

    The hub's MZI M(θ, φ) = B · diag(e^{iθ}, 1) · B · diag(e^{iφ}, 1) has two shifters in
    series: the external φ on the top input (its contacts in line), then an S-bend to the
    first coupler, the arm bends, the internal θ on the top arm, the arm bends, the second
    coupler and an S-bend back to the mode pitch:
    L = 2 L_shifter + 2 L_contact + 2 L_sbend + 2 L_coupler + 2 L_arm_bend.
    """
    return 2.0 * (shifter.length_um + layout.contact_length_um + layout.sbend_length_um
                  + coupler.length_um + layout.arm_bend_length_um)


def mzi_loss_db(
    *, shifter: PhaseShifterParams, coupler: CouplerParams, layout: LayoutParams,
    waveguide: WaveguideParams,
) -> float:
    """Insertion loss of one MZI cell from its parts (dB): two couplers, the arm shifter and
    the waveguide over the cell length. The hub applies it to both arms; one shifter's loss
    is counted per light path through the cell (the θ arm's; the external φ shifter lies on
    one input only)."""
    length_cm = mzi_cell_length_um(shifter=shifter, coupler=coupler, layout=layout) * 1e-4
    return (2.0 * coupler.insertion_loss_db + shifter.insertion_loss_db
            + waveguide.loss_db_per_cm * length_cm)


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
    waveguide: WaveguideParams = WaveguideParams()
    clock_ghz: float = Field(10.0, gt=0, description="rate of input vectors")
    _mzi_loss_derived: bool = PrivateAttr(default=False)

    @field_validator("phase_dac", mode="before")
    @classmethod
    def _phase_dac_from_converter(cls, v):
        """A plain ConverterParams (as before the grid existed) is a voltage-grid DAC."""
        if isinstance(v, ConverterParams) and not isinstance(v, PhaseDacParams):
            return PhaseDacParams(**v.model_dump())
        return v

    @model_validator(mode="after")
    def _mzi_loss_from_parts(self) -> DeviceParams:
        """Fill ``mzi.insertion_loss_db`` from the parts; a given value must agree with them
        when they carry loss (one number, never two that disagree)."""
        parts = mzi_loss_db(shifter=self.shifter, coupler=self.coupler, layout=self.layout,
                            waveguide=self.waveguide)
        given = self.mzi.insertion_loss_db
        if given is None:
            # frozen model: the derived value is set once, here, during validation
            object.__setattr__(self, "mzi", self.mzi.model_copy(
                update={"insertion_loss_db": parts}))
            self._mzi_loss_derived = True
        elif parts > 0 and abs(given - parts) > 1e-9 * max(1.0, parts):
            raise ValueError(
                f"mzi.insertion_loss_db={given} disagrees with the {parts:.6g} dB its parts "
                f"give (2 × coupler.insertion_loss_db + shifter.insertion_loss_db + "
                f"waveguide.loss_db_per_cm × cell length); leave it unset to derive it")
        return self

    @model_serializer(mode="wrap")
    def _dump_derived_as_unset(self, handler):
        """A derived MZI loss is dumped as None, so a dump edited (a part's loss or length
        changed, as ``chip.overrides`` do) and validated again derives it afresh."""
        data = handler(self)
        if self._mzi_loss_derived and isinstance(data.get("mzi"), dict):
            data["mzi"]["insertion_loss_db"] = None
        return data

    @property
    def mzi_cell_length_um(self) -> float:
        """Analytic MZI cell length (µm), :func:`mzi_cell_length_um`."""
        return mzi_cell_length_um(shifter=self.shifter, coupler=self.coupler,
                                  layout=self.layout)

    @property
    def mzi_cell_height_um(self) -> float:
        """Height of one MZI cell in a mesh: it spans two modes, 2 × ``layout.mode_pitch_um``."""
        return 2.0 * self.layout.mode_pitch_um
