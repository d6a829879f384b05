"""Non-ideality models of a programmed mesh, each separately switchable and seeded.

A programmed phase φ (rad) reaches the waveguide through this chain (shifter index s runs
over the K internal θ, then the K external φ, then the N output-screen phases of a mesh):

1. phase quantisation — the DAC drives a voltage V(φ) on a grid of 2^b levels in
   [0, V_max]; the shifter law maps it back: quadratic (thermal, φ = γV², γ = π/V_π²) or
   linear (φ = πV/V_π), so uniform voltage steps give non-uniform phase steps
   (``phase_dac.grid = "voltage"``); or 2^b levels uniform over one turn (``"phase"``);
2. gamma error — the realised coefficient differs per device: φ ← φ·(1 + δγ_s),
   δγ_s ~ N(0, gamma_std²) (static, per chip);
3. thermal crosstalk — φ ← Γφ with Γ_ii = 1 and off-diagonal Γ_ij by distance
   (:class:`photonic.devices.CrosstalkParams`);
4. static phase offsets (fabrication) ~ N(0, phase_offset_std²) and dynamic phase noise
   ~ N(0, phase_noise_std²) drawn anew at every call;
5. wavelength — phases scale as λ0/λ; coupler angle κ(λ) = (π/4 + α)(1 + D·(λ − λ0)).

Couplers get static angle errors α, β ~ N(0, split_error_std²); each MZI an insertion loss
``insertion_loss_db`` (+ N(0, loss_std²) spread, clipped at 0) — the loss through its θ arm —
and an arm imbalance Δ ~ N(arm_imbalance_db, arm_imbalance_std_db²): the other arm loses Δ dB less
(:func:`photonic.mzi.arm_transmission`), which bounds the extinction ratio.

One meaning of "noise level" (:func:`scaled_device`): a level multiplies every standard
deviation drawn above (fabrication spreads and the dynamic phase noise); design figures —
mean losses, mean arm imbalance, crosstalk, dispersion, converter bits — stay.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict
from scipy.spatial import cKDTree

from photonic.devices import CrosstalkParams, DeviceParams, LayoutParams, PhaseShifterParams
from photonic.mesh import BALANCED_TOPOLOGIES, MeshLayout, transfer_matrix
from photonic.mzi import arm_transmission

__all__ = [
    "NoiseConfig",
    "MeshErrors",
    "sample_mesh_errors",
    "quantize_phase",
    "phase_dac_code",
    "dac_code_phase",
    "crosstalk_coupling",
    "precompensate_crosstalk",
    "shifter_positions_um",
    "realise_phases",
    "realise_mesh",
    "num_shifters",
    "coupler_angles",
    "mzi_transmission",
    "scaled_device",
]


class NoiseConfig(BaseModel):
    """Which non-idealities are switched on (all off: an ideal chip)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    phase_quantization: bool = False
    gamma_error: bool = False
    phase_offset: bool = False
    phase_noise: bool = False
    crosstalk: bool = False
    coupler_error: bool = False
    insertion_loss: bool = False
    arm_imbalance: bool = False
    detector_noise: bool = False
    input_quantization: bool = False
    output_quantization: bool = False
    wavelength_um: float | None = None  # None: operate at the design wavelength

    @property
    def linear_detection(self) -> bool:
        """True when the chip computes an exactly linear map of its input: no input DAC,
        detector noise or output ADC, so the detected in-phase output is Re(T)·x."""
        return not (self.input_quantization or self.detector_noise or self.output_quantization)

    @classmethod
    def ideal(cls) -> NoiseConfig:
        return cls()

    @classmethod
    def all(cls) -> NoiseConfig:
        return cls(**{k: True for k, f in cls.model_fields.items() if f.annotation is bool})

    @classmethod
    def from_spec(cls, spec: str | dict) -> NoiseConfig:
        """A config's ``chip.noise``: "all", "ideal" or a mapping of fields."""
        if spec == "all":
            return cls.all()
        if spec == "ideal":
            return cls.ideal()
        return cls(**spec)


def num_shifters(layout: MeshLayout) -> int:
    """Phase shifters of a mesh: θ and φ of every MZI plus the output phase screen."""
    return 2 * layout.num_mzis + layout.n


@dataclass(frozen=True, eq=False)
class MeshErrors:
    """Static (per-chip) errors of a mesh; leading dims broadcast with the phases."""

    gamma_rel: torch.Tensor  # (..., S)
    phase_offset_rad: torch.Tensor  # (..., S)
    alpha_rad: torch.Tensor  # (..., K) input coupler angle errors
    beta_rad: torch.Tensor  # (..., K) output coupler angle errors
    loss_db: torch.Tensor  # (..., K)
    arm_imbalance_db: torch.Tensor | None = None  # (..., K); None: the device's mean


def sample_mesh_errors(
    layout: MeshLayout,
    device: DeviceParams,
    *,
    generator: torch.Generator,
    batch_shape: tuple[int, ...] = (),
) -> MeshErrors:
    """Draw one chip's static errors from the device's variation figures."""
    s, k = num_shifters(layout), layout.num_mzis

    def normal(shape, std):
        return torch.randn(batch_shape + shape, generator=generator, dtype=torch.float64) * std

    loss = device.mzi.insertion_loss_db + normal((k,), device.mzi.loss_std_db)
    errors = MeshErrors(
        gamma_rel=normal((s,), device.variation.gamma_std),
        phase_offset_rad=normal((s,), device.variation.phase_offset_std_rad),
        alpha_rad=normal((k,), device.coupler.split_error_std_rad),
        beta_rad=normal((k,), device.coupler.split_error_std_rad),
        loss_db=loss.clamp_min(0.0),
    )
    # Drawn last and only when spread, so chips of devices without it keep their draws.
    if device.mzi.arm_imbalance_std_db > 0:
        imb = device.mzi.arm_imbalance_db + normal((k,), device.mzi.arm_imbalance_std_db)
        errors = dataclasses.replace(errors, arm_imbalance_db=imb)
    return errors


def quantize_phase(phase_rad: torch.Tensor, shifter: PhaseShifterParams, bits: int | None,
                   grid: str = "voltage"):
    """Phase realised after a ``bits``-bit DAC drives the shifter for ``phase_rad``.

    Phases are wrapped into [0, 2π) first (a shifter only adds phase). ``grid`` "voltage":
    the voltage grid is uniform over [0, V_max] and the phase grid follows the shifter law;
    "phase": the grid is uniform over [0, 2π] (:class:`photonic.devices.PhaseDacParams`).
    Gradients pass straight through (straight-through estimator) so phase-domain training
    still sees a slope.
    """
    wrapped = torch.remainder(phase_rad, 2 * math.pi)
    if bits is None:
        return phase_rad + (wrapped - phase_rad).detach()
    q = dac_code_phase(phase_dac_code(wrapped, shifter, bits, grid), shifter, bits, grid)
    return phase_rad + (q - phase_rad).detach()


def _check_grid(grid: str) -> None:
    if grid not in ("voltage", "phase"):
        raise ValueError(f"phase_dac.grid: must be 'voltage' or 'phase', got {grid!r}")


def phase_dac_code(phase_rad: torch.Tensor, shifter: PhaseShifterParams,
                   bits: int, grid: str = "voltage") -> torch.Tensor:
    """Nearest code (as a float, not clipped) of a ``bits``-bit DAC for phases ≥ 0: uniform
    over [0, V_max] under the shifter law φ = π(V/V_π)² or πV/V_π (``grid`` "voltage"), or
    uniform over [0, 2π] (``grid`` "phase")."""
    _check_grid(grid)
    if grid == "phase":
        return torch.round(phase_rad.clamp_min(0.0) / (2 * math.pi / (2**bits - 1)))
    ratio = phase_rad.clamp_min(0.0) / math.pi
    volts = shifter.v_pi_v * (ratio.sqrt() if shifter.law == "quadratic" else ratio)
    return torch.round(volts / (shifter.v_max_v / (2**bits - 1)))


def dac_code_phase(code: torch.Tensor, shifter: PhaseShifterParams, bits: int,
                   grid: str = "voltage") -> torch.Tensor:
    """Phase of DAC ``code`` (inverse of ``phase_dac_code``)."""
    _check_grid(grid)
    if grid == "phase":
        return code * (2 * math.pi / (2**bits - 1))
    vr = code * (shifter.v_max_v / (2**bits - 1)) / shifter.v_pi_v
    return math.pi * (vr * vr if shifter.law == "quadratic" else vr)


def shifter_positions_um(layout: MeshLayout, geometry: LayoutParams) -> np.ndarray:
    """(S, 2) x, y positions in µm of the θ, φ and output shifters (same order as S)."""
    col = layout.columns.astype(float)
    mode = layout.modes.astype(float)
    px, py = geometry.column_pitch_um, geometry.mode_pitch_um
    theta = np.stack([(col + 0.5) * px, mode * py], -1)
    phi = np.stack([col * px, mode * py], -1)
    out = np.stack([np.full(layout.n, layout.depth * px), np.arange(layout.n) * py], -1)
    return np.concatenate([theta, phi, out])


@lru_cache(maxsize=64)
def _coupling_cached(layout: MeshLayout, xt: CrosstalkParams, geometry: LayoutParams):
    k = layout.num_mzis
    if xt.model == "nearest":
        # Shifters of the same kind in vertically adjacent MZIs of one column.
        key = layout.columns * (layout.n + 2) + layout.modes
        order = {int(v): i for i, v in enumerate(key)}
        rows, cols = [], []
        for i, v in enumerate(key):
            j = order.get(int(v) + 2)
            if j is not None:
                for off in (0, k):  # θ block, φ block
                    rows += [i + off, j + off]
                    cols += [j + off, i + off]
        vals = np.full(len(rows), xt.coefficient)
    elif xt.model == "exponential":
        pos = shifter_positions_um(layout, geometry)
        pairs = cKDTree(pos).query_pairs(xt.cutoff_um, output_type="ndarray")
        d = np.linalg.norm(pos[pairs[:, 0]] - pos[pairs[:, 1]], axis=1)
        keep = d >= xt.min_distance_um
        pairs, d = pairs[keep], d[keep]
        rows = np.concatenate([pairs[:, 0], pairs[:, 1]])
        cols = np.concatenate([pairs[:, 1], pairs[:, 0]])
        vals = np.tile(xt.coefficient * np.exp(-xt.decay_per_um * d), 2)
    else:
        rows, cols, vals = [], [], []
    return (
        torch.as_tensor(np.asarray(rows, dtype=np.int64)),
        torch.as_tensor(np.asarray(cols, dtype=np.int64)),
        torch.as_tensor(np.asarray(vals, dtype=np.float64)),
    )


def crosstalk_coupling(layout: MeshLayout, device: DeviceParams):
    """Off-diagonal entries of Γ as (rows, cols, values) over the S shifters of a mesh."""
    return _coupling_cached(layout, device.crosstalk, device.layout)


def precompensate_crosstalk(target: torch.Tensor, layout: MeshLayout, device: DeviceParams,
                            noise: NoiseConfig, *, sweeps: int = 8,
                            wrap: bool = True) -> torch.Tensor:
    """Phases (..., S) to program so that the chip's thermal crosstalk Γ = I + C leaves
    ``target`` (..., S) on the waveguides (mod 2π): the inverse of the crosstalk step of
    :func:`realise_phases`. C is the design's coupling (``device.crosstalk`` on the layout,
    as a designer knows it); each shifter's coefficient error is not known and not undone.

    Heaters only add phase and leak in proportion to the phase they hold, so y solves
    y = (t − C·Q(y)) mod 2π, with Q the phase DAC when ``noise.phase_quantization`` (the leak
    comes from the codes really set): Jacobi sweeps, which contract by ‖C‖ (≈ 2·0.005 for
    nearest-neighbour coupling). A shifter whose target lies below its leak wraps to the
    next turn, and its neighbours absorb the larger leak in the following sweeps; with
    ``wrap=False`` (a phase whose meaning changes by a turn, such as a Σ attenuator's θ,
    whose output phase follows θ/2) it stays at 0 instead. ``target`` unchanged when the
    chip has no crosstalk."""
    if not noise.crosstalk or device.crosstalk.model == "none":
        return target
    rows, cols, vals = crosstalk_coupling(layout, device)
    if not rows.numel():
        return target
    vals = vals.to(target.dtype)
    two_pi = 2 * math.pi
    y = torch.remainder(target, two_pi) if wrap else target.clamp_min(0.0)
    for _ in range(sweeps):
        q = y
        if noise.phase_quantization:
            q = quantize_phase(y, device.shifter, device.phase_dac.bits, device.phase_dac.grid)
        leak = torch.zeros_like(y).index_add(-1, rows, q[..., cols] * vals)
        y = torch.remainder(target - leak, two_pi) if wrap else (target - leak).clamp_min(0.0)
    return y


def realise_phases(
    programmed: torch.Tensor,
    layout: MeshLayout,
    device: DeviceParams,
    noise: NoiseConfig,
    errors: MeshErrors | None,
    *,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Phases (..., S) on the waveguides for programmed phases (..., S); see module doc."""
    phi = programmed
    if noise.phase_quantization:
        phi = quantize_phase(phi, device.shifter, device.phase_dac.bits, device.phase_dac.grid)
    if noise.gamma_error and errors is not None:
        phi = phi * (1.0 + errors.gamma_rel)
    if noise.crosstalk and device.crosstalk.model != "none":
        rows, cols, vals = crosstalk_coupling(layout, device)
        if rows.numel():
            leak = torch.zeros_like(phi).index_add(-1, rows, phi[..., cols] * vals.to(phi.dtype))
            phi = phi + leak
    if noise.phase_offset and errors is not None:
        phi = phi + errors.phase_offset_rad
    if noise.phase_noise and device.variation.phase_noise_std_rad > 0:
        if generator is None:
            raise ValueError("noise.phase_noise=True needs a torch.Generator for reproducibility")
        std = device.variation.phase_noise_std_rad
        phi = phi + std * torch.randn(phi.shape, generator=generator, dtype=phi.dtype)
    if noise.wavelength_um is not None:
        phi = phi * (device.design_wavelength_um / noise.wavelength_um)
    return phi


def realise_mesh(
    phases,
    *,
    device: DeviceParams | None,
    noise: NoiseConfig | None,
    errors: MeshErrors | None = None,
    generator: torch.Generator | None = None,
    programmed: torch.Tensor | None = None,
) -> torch.Tensor:
    """Transfer matrix (..., N, N) of ``phases`` (a MeshPhases) programmed on ``device``.

    ``errors`` are the chip's static errors (sampled from ``generator`` when omitted and
    needed); ``programmed`` may pass the (..., S) phase vector directly (phase-domain training).
    """
    device = device or DeviceParams()
    noise = noise or NoiseConfig()
    layout = phases.layout
    k = layout.num_mzis
    needs_errors = noise.gamma_error or noise.phase_offset or noise.coupler_error
    needs_errors = needs_errors or noise.insertion_loss or noise.arm_imbalance
    if errors is None and needs_errors:
        if generator is None:
            raise ValueError("sampling chip errors needs a torch.Generator (pass generator=)")
        errors = sample_mesh_errors(layout, device, generator=generator)
    if programmed is None:
        programmed = torch.cat([phases.theta, phases.phi, phases.out_phase], -1)
    real = realise_phases(programmed, layout, device, noise, errors, generator=generator)
    theta, phi, out = real[..., :k], real[..., k : 2 * k], real[..., 2 * k :]
    alpha, beta = coupler_angles(device, noise, errors, dtype=real.dtype)
    amplitude, arm_ratio = mzi_transmission(device, noise, errors, dtype=real.dtype)
    pad = torch.ones((), dtype=real.dtype)
    if noise.insertion_loss and layout.topology in BALANCED_TOPOLOGIES:
        pad = torch.tensor(10.0 ** (-device.mzi.insertion_loss_db / 20.0), dtype=real.dtype)
    return transfer_matrix(layout, theta, phi, out, alpha=alpha, beta=beta, amplitude=amplitude,
                           pad_amplitude=pad, arm_ratio=arm_ratio)


def coupler_angles(
    device: DeviceParams, noise: NoiseConfig, errors: MeshErrors | None, *,
    dtype: torch.dtype = torch.float64,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Coupler angle errors (α, β) of every MZI as realised: the static errors (when
    ``noise.coupler_error``) and the dispersion κ(λ) = (π/4 + α)(1 + D·(λ − λ0)) at
    ``noise.wavelength_um``; scalars 0 for ideal couplers at the design wavelength."""
    alpha = beta = torch.zeros((), dtype=dtype)
    if noise.coupler_error and errors is not None:
        alpha, beta = errors.alpha_rad.to(dtype), errors.beta_rad.to(dtype)
    if noise.wavelength_um is not None:
        scale = 1.0 + device.coupler.dispersion_per_um * (
            noise.wavelength_um - device.design_wavelength_um
        )
        alpha = (math.pi / 4 + alpha) * scale - math.pi / 4
        beta = (math.pi / 4 + beta) * scale - math.pi / 4
    return alpha, beta


def mzi_transmission(
    device: DeviceParams, noise: NoiseConfig, errors: MeshErrors | None, *,
    dtype: torch.dtype = torch.float64,
) -> tuple[torch.Tensor | float, torch.Tensor | float]:
    """``(amplitude, arm_ratio)`` of every MZI for :func:`photonic.mesh.transfer_matrix`:
    the cell's insertion loss (when ``noise.insertion_loss``; the loss of the θ arm) and the
    arm imbalance (when ``noise.arm_imbalance``; the other arm loses Δ less,
    :func:`photonic.mzi.arm_transmission`). Plain ``1.0`` where a family is off."""
    amplitude: torch.Tensor | float = 1.0
    arm_ratio: torch.Tensor | float = 1.0
    loss = torch.zeros((), dtype=torch.float64)
    if noise.insertion_loss:
        loss = errors.loss_db if errors is not None else torch.tensor(
            device.mzi.insertion_loss_db, dtype=torch.float64)
        amplitude = (10.0 ** (-loss / 20.0)).to(dtype)
    if noise.arm_imbalance:
        imb = errors.arm_imbalance_db if errors is not None else None
        if imb is None:
            imb = torch.tensor(device.mzi.arm_imbalance_db, dtype=torch.float64)
        ratio, other = arm_transmission(imb, loss)
        arm_ratio, amplitude = ratio.to(dtype), other.to(dtype)
    return amplitude, arm_ratio


def scaled_device(
    device: DeviceParams, *, noise_scale: float = 1.0, phase_noise_std_rad: float | None = None
) -> DeviceParams:
    """``device`` at noise level ``noise_scale``: every random spread multiplied by it.

    Scaled (the stds :func:`sample_mesh_errors` and the dynamic draw of
    :func:`realise_phases` use): ``variation.gamma_std``, ``variation.phase_offset_std_rad``,
    ``variation.phase_noise_std_rad``, ``coupler.split_error_std_rad``, ``mzi.loss_std_db``,
    ``mzi.arm_imbalance_std_db``. Design figures (mean insertion loss and arm imbalance,
    crosstalk, dispersion, converter bits) are not noise and stay. ``phase_noise_std_rad``,
    when given, then replaces the dynamic phase-noise std.
    """
    if noise_scale < 0:
        raise ValueError(f"noise_scale={noise_scale!r}: a noise level must be ≥ 0")
    var = device.variation
    phase_noise = var.phase_noise_std_rad * noise_scale
    if phase_noise_std_rad is not None:
        phase_noise = phase_noise_std_rad
    data = device.model_dump()
    data["variation"].update(
        gamma_std=var.gamma_std * noise_scale,
        phase_offset_std_rad=var.phase_offset_std_rad * noise_scale,
        phase_noise_std_rad=phase_noise,
    )
    data["coupler"]["split_error_std_rad"] = device.coupler.split_error_std_rad * noise_scale
    data["mzi"]["loss_std_db"] = device.mzi.loss_std_db * noise_scale
    data["mzi"]["arm_imbalance_std_db"] = device.mzi.arm_imbalance_std_db * noise_scale
    return DeviceParams.model_validate(data)
