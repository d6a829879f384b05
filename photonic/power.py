"""The optical power budget, one for the noise model and the cost model.

Light path of one input channel: laser → modulator (``modulator.insertion_loss_db``) → mesh
(the longest path of an SVD block, :func:`svd_path_mzis` MZIs of ``mzi.insertion_loss_db``)
→ a homodyne receiver that mixes it with a local oscillator (LO) of ``detector.lo_power_mw``
per output, taken from the same laser.

The receiver must deliver the SNR the ADC's bits can resolve, ``6.02 b + 1.76 dB``
(:func:`adc_snr_db`); :func:`detector_sensitivity_mw` solves the detector's shot, dark and
thermal noise (the noise model of :func:`photonic.core.optical_matmul`) for the signal power
that reaches it. The power launched into each input mode (:func:`channel_power_mw`) is that
sensitivity times the mesh path loss, or the fixed ``laser.power_per_channel_mw`` when a
design sets one. :func:`power_budget` adds the channels and the LOs up to the laser's
optical and wall-plug power and checks them against the laser's stated limits.
Units: mW and dB(m).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from photonic.devices import DetectorParams, DeviceParams
from photonic.mesh import mesh_layout

__all__ = [
    "Q_E",
    "K_B",
    "IDEAL_ADC_BITS",
    "adc_snr_db",
    "receiver_current_variance",
    "detector_sensitivity_mw",
    "svd_path_mzis",
    "svd_path_loss_db",
    "channel_power_mw",
    "ChannelGroup",
    "PowerBudget",
    "power_budget",
]

Q_E = 1.602176634e-19  # elementary charge, C (exact, SI definition)
K_B = 1.380649e-23  # Boltzmann constant, J/K (exact, SI definition)

# Resolution the budget asks for when the ADC is ideal (adc.bits = None): 8 bits, the
# converters of the BP-free PINN study (its 8-bit phase quantisation, preset bpfree_pinn_sim).
IDEAL_ADC_BITS = 8


def adc_snr_db(bits: int) -> float:
    """SNR of an ideal ``bits``-bit quantiser for a full-scale sine: 6.02 b + 1.76 dB
    (Bennett, Bell Syst. Tech. J. 27, 446 (1948); Walden, IEEE J. Sel. Areas Commun. 17,
    539 (1999))."""
    if bits < 1:
        raise ValueError(f"bits={bits}: an ADC has at least 1 bit")
    return 6.02 * bits + 1.76


def receiver_current_variance(det: DetectorParams, *, signal_w, lo_w=0.0,
                              photodiodes: int = 2):
    """Noise variance (A²) of one detector output current: shot noise of the light and of the
    dark current of ``photodiodes`` photodiodes, plus the load's Johnson noise,

        σ² = 2qB (R (P_LO + P_s) + n_pd I_d) + 4kTB / R_L

    (balanced homodyne receiver: n_pd = 2 and the LO's power ``lo_w``; a power meter: n_pd = 1,
    no LO). ``signal_w`` (W) may be a tensor. The one formula of the noise model
    (:func:`photonic.core.optical_matmul`), the power budget and calibration's receivers."""
    bw = det.bandwidth_ghz * 1e9
    return (2 * Q_E * bw * (det.responsivity_a_per_w * (lo_w + signal_w)
                            + photodiodes * det.dark_current_na * 1e-9)
            + 4 * K_B * det.temperature_k * bw / det.load_resistance_ohm)


def _noise_terms(det: DetectorParams) -> tuple[float, float]:
    """(σ² independent of the signal, σ² per W of signal), A², for the receiver noise of
    :func:`receiver_current_variance` at the detector's LO power."""
    lo_w = det.lo_power_mw * 1e-3
    fixed = receiver_current_variance(det, signal_w=0.0, lo_w=lo_w)
    return fixed, 2 * Q_E * det.bandwidth_ghz * 1e9 * det.responsivity_a_per_w


def detector_sensitivity_mw(det: DetectorParams, *, snr_db: float) -> float:
    """Signal power (mW) a homodyne receiver needs at full scale for ``snr_db``.

    Full-scale signal current amplitude i = 2R√(P_LO P_s), a full-scale sine carries i²/2;
    noise σ² = 2qB(R(P_LO + P_s) + 2 I_d) + 4kTB/R_L (shot noise of LO and signal, dark
    current of the balanced pair, Johnson noise of the load). SNR = 2R²P_LO P_s / σ² solved
    for P_s. Returns ``math.inf`` when the LO is too weak for any signal to reach the SNR
    (the signal's own shot noise then grows as fast as the signal).
    """
    snr = 10.0 ** (snr_db / 10.0)
    fixed, per_w = _noise_terms(det)
    gain = 2 * det.responsivity_a_per_w**2 * det.lo_power_mw * 1e-3  # A² per W of signal
    margin = gain - snr * per_w
    if margin <= 0:
        return math.inf
    return snr * fixed / margin * 1e3


def svd_path_mzis(rows: int, cols: int, topology: str = "clements") -> int:
    """MZIs on the longest optical path of a rows × cols SVD block: depth(V†) + 1 (Σ) +
    depth(U); a 1-mode mesh is a bare waveguide (depth 0)."""
    def depth(n: int) -> int:
        return 0 if n < 2 else mesh_layout(int(n), topology).depth

    return depth(cols) + 1 + depth(rows)


def svd_path_loss_db(device: DeviceParams, rows: int, cols: int,
                     topology: str = "clements") -> float:
    """Loss (dB) of the longest path through the mesh of a rows × cols SVD block."""
    return svd_path_mzis(rows, cols, topology) * device.mzi.insertion_loss_db


def _adc_bits(device: DeviceParams) -> int:
    return IDEAL_ADC_BITS if device.adc.bits is None else device.adc.bits


def _sensitivity(device: DeviceParams) -> float:
    return detector_sensitivity_mw(device.detector, snr_db=adc_snr_db(_adc_bits(device)))


def channel_power_mw(device: DeviceParams, *, mesh_path_loss_db: float) -> float:
    """Optical power launched into each input mode of a mesh (mW): the fixed
    ``laser.power_per_channel_mw`` if the design sets one, else the detector sensitivity for
    the ADC's SNR times the mesh path loss, S · 10^(IL/10) (the per-channel laser budget of
    SimPhony / Lightening-Transformer)."""
    fixed = device.laser.power_per_channel_mw
    if fixed is not None:
        return fixed
    sens = _sensitivity(device)
    if math.isinf(sens):
        raise ValueError(
            f"detector.lo_power_mw={device.detector.lo_power_mw} is too weak: no signal "
            f"reaches the {adc_snr_db(_adc_bits(device)):.2f} dB SNR of a "
            f"{_adc_bits(device)}-bit ADC; raise it or set laser.power_per_channel_mw")
    return sens * 10.0 ** (mesh_path_loss_db / 10.0)


@dataclass(frozen=True)
class ChannelGroup:
    """Input channels of one stage of a design: ``inputs`` modes through a mesh path of
    ``mesh_path_loss_db`` to ``outputs`` homodyne receivers."""

    mesh_path_loss_db: float
    inputs: int
    outputs: int


@dataclass(frozen=True)
class PowerBudget:
    """The laser power a design needs, and whether a laser and the chip can provide it.

    ``signal_optical_mw``: light for the input channels at the laser (through the
    modulators); ``lo_optical_mw``: the LOs; ``laser_optical_mw`` their sum, shared by
    ``num_lasers`` lasers; ``laser_electrical_mw`` = optical / wall-plug efficiency.
    ``feasible`` is False with a ``reasons`` entry for each broken rule.
    """

    adc_bits: int
    snr_db: float
    sensitivity_mw: float
    worst_path_loss_db: float
    signal_optical_mw: float
    lo_optical_mw: float
    laser_optical_mw: float
    num_lasers: int
    per_laser_mw: float
    laser_electrical_mw: float
    feasible: bool
    reasons: tuple[str, ...]

    @property
    def sensitivity_dbm(self) -> float:
        return 10.0 * math.log10(self.sensitivity_mw)

    def as_dict(self) -> dict[str, float | int | bool | str]:
        """Flat entries for metrics.json (``power.*`` keys in a CostReport)."""
        return {
            "adc_bits": self.adc_bits, "snr_db": self.snr_db,
            "sensitivity_dbm": self.sensitivity_dbm,
            "worst_path_loss_db": self.worst_path_loss_db,
            "signal_optical_mw": self.signal_optical_mw, "lo_optical_mw": self.lo_optical_mw,
            "laser_optical_mw": self.laser_optical_mw, "num_lasers": self.num_lasers,
            "per_laser_mw": self.per_laser_mw, "laser_electrical_mw": self.laser_electrical_mw,
            "feasible": self.feasible, "reasons": "; ".join(self.reasons),
        }


def _limit_reasons(device: DeviceParams, per_laser: float, total: float,
                   num_lasers: int) -> list[str]:
    out = []
    lim = device.laser.max_power_per_laser_mw
    if lim is not None and per_laser > lim:
        out.append(f"laser power {per_laser:.4g} mW per laser ({num_lasers} laser(s)) exceeds "
                   f"laser.max_power_per_laser_mw = {lim:g} mW")
    lim = device.laser.max_power_per_chip_mw
    if lim is not None and total > lim:
        out.append(f"optical power into the chip {total:.4g} mW exceeds "
                   f"laser.max_power_per_chip_mw = {lim:g} mW")
    return out


def power_budget(device: DeviceParams, *, groups: Sequence[ChannelGroup],
                 num_lasers: int = 1) -> PowerBudget:
    """The power budget of a design whose stages are ``groups`` (all fed at once by
    ``num_lasers`` lasers that share the load equally)."""
    if num_lasers < 1 or not groups:
        raise ValueError(f"num_lasers={num_lasers} must be ≥ 1 and groups non-empty")
    bits = _adc_bits(device)
    sens = _sensitivity(device)
    mod_gain = 10.0 ** (device.modulator.insertion_loss_db / 10.0)
    reasons: list[str] = []
    signal = 0.0
    for g in groups:
        if math.isinf(sens):
            signal = math.inf
            break
        p_ch = channel_power_mw(device, mesh_path_loss_db=g.mesh_path_loss_db)
        arriving = p_ch * 10.0 ** (-g.mesh_path_loss_db / 10.0)
        if arriving < sens * (1 - 1e-12):
            reasons.append(
                f"laser.power_per_channel_mw = {p_ch:g} mW reaches the detectors at "
                f"{10 * math.log10(arriving):.2f} dBm through {g.mesh_path_loss_db:.3g} dB, "
                f"below the {10 * math.log10(sens):.2f} dBm a {bits}-bit ADC needs")
        signal += g.inputs * p_ch * mod_gain
    if math.isinf(sens):
        reasons.append(f"detector.lo_power_mw = {device.detector.lo_power_mw:g} mW is too weak "
                       f"for the {adc_snr_db(bits):.2f} dB SNR of a {bits}-bit ADC")
    lo = sum(g.outputs for g in groups) * device.detector.lo_power_mw
    total = signal + lo
    per_laser = total / num_lasers
    reasons += _limit_reasons(device, per_laser, total, num_lasers)
    worst = device.modulator.insertion_loss_db + max(g.mesh_path_loss_db for g in groups)
    return PowerBudget(
        adc_bits=bits, snr_db=adc_snr_db(bits), sensitivity_mw=sens, worst_path_loss_db=worst,
        signal_optical_mw=signal, lo_optical_mw=lo, laser_optical_mw=total,
        num_lasers=num_lasers, per_laser_mw=per_laser,
        laser_electrical_mw=total / device.laser.wall_plug_efficiency,
        feasible=not reasons, reasons=tuple(reasons))
