"""A virtual fabricated mesh: hidden per-device errors, observable only through detectors.

:func:`fabricate` returns two objects:

- :class:`VirtualChip` — what a lab has: the *design* (layout, shifter law, DAC, detector,
  mean losses — the public data sheet, with every fabrication spread and crosstalk value
  removed) and two receivers: :meth:`VirtualChip.measure` programs DAC codes, launches chosen
  input fields and returns the output fields read by balanced homodyne receivers;
  :meth:`VirtualChip.measure_power` returns the output powers read by plain photodiodes
  (power meters, what most labs have). Both add their shot and thermal noise. Every call is
  counted (per named stage). Nothing else is public.
- :class:`ChipTruth` — the hidden errors and the noise-free transfer matrix, for scoring a
  calibration afterwards. Calibration routines receive only the chip.

Receiver: the hub's coherent detection (:mod:`photonic.core`): a local oscillator of power
P_LO per output, signal current i = 2R·√P_LO·Re(E e^{−iψ}) read at ψ = 0 and π/2, noise
σ_i² = 2qB(R(P_LO + |E|²) + 2I_d) + 4k_BTB/R_L. Fields are returned in units of the input
amplitude √P_ch, so the noise per quadrature is σ_i / (2R√(P_LO P_ch)) / √shots, where one
measurement averages ``shots`` detector samples (integration time shots / B).
A power detector alone cannot see the output phase screen; homodyne receivers can, and the
tensor core has them anyway. Power detector: photocurrent R·|E|²·P_ch with noise
σ_i² = 2qB(R|E|²P_ch + I_d) + 4k_BTB/R_L, returned in units of P_ch.
"""

from __future__ import annotations

import math
from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass

import torch

from photonic.decompose import MeshPhases
from photonic.devices import CrosstalkParams, DeviceParams, VariationParams
from photonic.mesh import MeshLayout, mesh_layout
from photonic.noise import (
    MeshErrors,
    NoiseConfig,
    dac_code_phase,
    num_shifters,
    phase_dac_code,
    realise_mesh,
    sample_mesh_errors,
)
from photonic.power import receiver_current_variance

__all__ = [
    "VirtualChip",
    "ChipTruth",
    "fabricate",
    "drive_phase_rad",
    "code_for_drive",
    "public_design",
    "readout_noise_std",
    "power_noise_std",
]

# The static error families a fabricated chip has (dynamic phase noise is off: calibration
# is about what stays put; detector noise is modelled by the receivers below).
STATIC_ERRORS = NoiseConfig(gamma_error=True, phase_offset=True, crosstalk=True,
                            coupler_error=True, insertion_loss=True, arm_imbalance=True)
_STATIC_FIELDS = ("gamma_error", "phase_offset", "crosstalk", "coupler_error", "insertion_loss",
                  "arm_imbalance")


def public_design(device: DeviceParams) -> DeviceParams:
    """What the data sheet tells the lab: the device with spreads and crosstalk removed (mean
    losses and the mean arm imbalance are design values and stay)."""
    return device.model_copy(update={
        "variation": VariationParams(),
        "coupler": device.coupler.model_copy(update={"split_error_std_rad": 0.0}),
        "mzi": device.mzi.model_copy(update={"loss_std_db": 0.0, "arm_imbalance_std_db": 0.0}),
        "crosstalk": CrosstalkParams(model="none"),
    })


def _voltage_dac_bits(design: DeviceParams) -> int | None:
    if design.phase_dac.grid != "voltage":
        raise ValueError(f"phase_dac.grid = {design.phase_dac.grid!r}: the fabricated-chip "
                         "model drives its shifters with a voltage DAC (grid 'voltage')")
    return design.phase_dac.bits


def drive_phase_rad(codes: torch.Tensor, design: DeviceParams) -> torch.Tensor:
    """Nominal phase π(V/V_π)² (quadratic) or πV/V_π (linear) of integer DAC ``codes``."""
    bits = _voltage_dac_bits(design)
    if bits is None:
        raise ValueError("the chip's phase_dac.bits is None; a fabricated chip is driven by a "
                         "DAC with a finite number of bits")
    return dac_code_phase(codes.to(torch.float64), design.shifter, bits)


def code_for_drive(drive_rad: torch.Tensor, design: DeviceParams) -> torch.Tensor:
    """Nearest DAC code (int64) for nominal drive phases, clipped to the DAC range."""
    bits = _voltage_dac_bits(design)
    code = phase_dac_code(drive_rad, design.shifter, bits)
    return code.clamp(0, 2**bits - 1).to(torch.int64)


def readout_noise_std(design: DeviceParams, *, lo_power_mw: float, channel_power_mw: float,
                      shots: int, field_power: torch.Tensor | float = 0.0) -> torch.Tensor:
    """Std of one homodyne quadrature in units of the input amplitude (see module doc)."""
    r = design.detector.responsivity_a_per_w
    p_lo, p_ch = lo_power_mw * 1e-3, channel_power_mw * 1e-3
    var_i = receiver_current_variance(
        design.detector, lo_w=p_lo,
        signal_w=torch.as_tensor(field_power, dtype=torch.float64) * p_ch)
    return var_i.sqrt() / (2 * r * math.sqrt(p_lo * p_ch)) / math.sqrt(shots)


def power_noise_std(design: DeviceParams, *, channel_power_mw: float, shots: int,
                    power: torch.Tensor | float = 0.0) -> torch.Tensor:
    """Std of one power reading in units of P_ch for a detected power ``power`` · P_ch."""
    p_ch = channel_power_mw * 1e-3
    var_i = receiver_current_variance(
        design.detector, photodiodes=1,
        signal_w=torch.as_tensor(power, dtype=torch.float64) * p_ch)
    return var_i.sqrt() / (design.detector.responsivity_a_per_w * p_ch) / math.sqrt(shots)


@dataclass(frozen=True, eq=False)
class ChipTruth:
    """The hidden side of a fabricated chip (for scoring only)."""

    layout: MeshLayout
    device: DeviceParams
    errors: MeshErrors
    families: NoiseConfig = STATIC_ERRORS  # which static error families the chip has

    def realised_phases(self, codes: torch.Tensor) -> torch.Tensor:
        from photonic.noise import realise_phases

        d = drive_phase_rad(codes, self.device)
        return realise_phases(d, self.layout, self.device, self.families, self.errors)

    def matrix(self, codes: torch.Tensor) -> torch.Tensor:
        """Noise-free transfer matrix (..., N, N) of DAC ``codes`` (..., S), T[out, in]."""
        d = drive_phase_rad(torch.as_tensor(codes), self.device)
        k, n = self.layout.num_mzis, self.layout.n
        dummy = MeshPhases(self.layout, torch.zeros(k), torch.zeros(k), torch.zeros(n))
        return realise_mesh(dummy, device=self.device, noise=self.families, errors=self.errors,
                            programmed=d)


class VirtualChip:
    """A fabricated mesh seen from the lab bench (see module doc).

    Public: ``n``, ``layout``, ``design`` (data sheet), ``num_shifters``, ``shots``,
    :meth:`measure`, :meth:`stage`, ``measurements`` (a Counter per stage).
    """

    def __init__(self, truth: ChipTruth, *, seed: int, shots: int = 100,
                 lo_power_mw: float = 1.0, channel_power_mw: float = 1.0):
        self._truth = truth
        self._gen = torch.Generator().manual_seed(int(seed) + 7919)
        self.layout = truth.layout
        self.n = truth.layout.n
        self.num_shifters = num_shifters(truth.layout)
        self.design = public_design(truth.device)
        self.shots = int(shots)
        self.lo_power_mw = float(lo_power_mw)
        self.channel_power_mw = float(channel_power_mw)  # bench laser per input mode
        self.measurements: Counter[str] = Counter()
        self._stage = "unlabelled"

    @contextmanager
    def stage(self, name: str):
        """Count the measurements made inside the block under ``name``."""
        prev, self._stage = self._stage, name
        try:
            yield self
        finally:
            self._stage = prev

    def measure(self, codes: torch.Tensor, inputs: torch.Tensor) -> torch.Tensor:
        """Output fields (P, N, B) for DAC ``codes`` (P, S) and input fields ``inputs`` (N, B).

        Each (setting, input column) pair is one measurement: the N receivers read both
        quadratures, averaged over ``shots`` samples. Fields are in units of √P_ch.
        """
        codes, inputs = self._check(codes, inputs)
        fields = self._truth.matrix(codes) @ inputs
        std = readout_noise_std(self.design, lo_power_mw=self.lo_power_mw,
                                channel_power_mw=self.channel_power_mw,
                                shots=self.shots, field_power=fields.abs() ** 2)
        noise = torch.complex(torch.randn(fields.shape, generator=self._gen, dtype=torch.float64),
                              torch.randn(fields.shape, generator=self._gen, dtype=torch.float64))
        self.measurements[self._stage] += codes.shape[0] * inputs.shape[1]
        return fields + std * noise

    def measure_power(self, codes: torch.Tensor, inputs: torch.Tensor) -> torch.Tensor:
        """Output powers (P, N, B) read by photodiodes, in units of P_ch (one measurement per
        setting and input column, as :meth:`measure`)."""
        codes, inputs = self._check(codes, inputs)
        power = (self._truth.matrix(codes) @ inputs).abs() ** 2
        std = power_noise_std(self.design, channel_power_mw=self.channel_power_mw,
                              shots=self.shots, power=power)
        self.measurements[self._stage] += codes.shape[0] * inputs.shape[1]
        return power + std * torch.randn(power.shape, generator=self._gen, dtype=torch.float64)

    def _check(self, codes, inputs) -> tuple[torch.Tensor, torch.Tensor]:
        codes = torch.as_tensor(codes, dtype=torch.int64)
        if codes.ndim != 2 or codes.shape[1] != self.num_shifters:
            raise ValueError(f"codes must have shape (P, {self.num_shifters}); "
                             f"got {tuple(codes.shape)}")
        top = 2**self.design.phase_dac.bits - 1
        if int(codes.min()) < 0 or int(codes.max()) > top:
            raise ValueError(f"DAC codes must lie in [0, {top}]")
        return codes, torch.as_tensor(inputs, dtype=torch.complex128)

    @property
    def total_measurements(self) -> int:
        return int(sum(self.measurements.values()))


def fabricate(n: int, device: DeviceParams, *, topology: str = "clements", seed: int = 0,
              shots: int = 100, lo_power_mw: float = 1.0,
              noise: NoiseConfig | None = None) -> tuple[VirtualChip, ChipTruth]:
    """Draw one chip's hidden errors from ``device``'s variation figures (seeded).

    Uses the hub's :func:`photonic.noise.sample_mesh_errors`: shifter coefficients
    (1 + δγ), static phase offsets, coupler angle errors α, β, per-MZI losses and arm
    imbalances; crosstalk follows ``device.crosstalk`` (any model: with ``exponential`` every
    pair of heaters within the cutoff couples, across the θ, φ and output planes).
    ``noise`` (e.g. a run's ``chip.noise``) can switch families off; only the static ones
    apply.
    """
    layout = mesh_layout(n, topology)
    gen = torch.Generator().manual_seed(int(seed))
    errors = sample_mesh_errors(layout, device, generator=gen)
    fam = STATIC_ERRORS
    if noise is not None:
        fam = NoiseConfig(**{f: getattr(noise, f) for f in _STATIC_FIELDS})
    truth = ChipTruth(layout=layout, device=device, errors=errors, families=fam)
    return VirtualChip(truth, seed=seed, shots=shots, lo_power_mw=lo_power_mw), truth
