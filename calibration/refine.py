"""Refine a digital twin on every recorded measurement at once (maximum likelihood).

The progressive characterisation (:mod:`calibration.characterise`) reads each shifter's
sweep as if only its own plane moved. On a real chip heat also reaches the other planes (the
φ heater before an MZI, the θ heater inside it, the output screen), and the arms of an MZI
lose unequally; both bias that reading. This step fits all twin parameters — offsets,
coefficients, coupler angles, per-MZI field transmission and θ-arm ratio, and a crosstalk
coefficient for *every* pair of heaters within ``radius_um`` on the public layout, whatever
plane each sits in — to all measured matrices jointly, starting from the progressive
estimate. Receivers:

- ``homodyne``: the residual is T_twin − T_meas (fields are measured against the local
  oscillator, so their phase is known);
- ``intensity``: power meters read |T x|² for chosen inputs x (one alone and two together,
  :func:`calibration.characterise.interference_inputs`, so relative phases within a row
  show); the residual is |T_twin x|² − P_meas. The output-screen phases stay invisible.

Gaussian readout noise makes the least-squares fit the maximum-likelihood one. Optimiser:
L-BFGS with a strong-Wolfe line search (torch), gradients by autograd through the hub's
differentiable mesh.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from scipy.spatial import cKDTree

from calibration.twin import TwinParams, twin_matrix
from photonic.devices import DeviceParams
from photonic.mesh import MeshLayout
from photonic.noise import shifter_positions_um

__all__ = ["RESIDUALS", "heater_pairs", "refine_twin", "phase_tomography", "read_phase_chain"]


def _homodyne_residual(pred: torch.Tensor, meas: torch.Tensor, inputs) -> torch.Tensor:
    return (pred - meas).abs().pow(2).sum()


def _intensity_residual(pred: torch.Tensor, meas: torch.Tensor, inputs) -> torch.Tensor:
    return ((pred @ inputs).abs().pow(2) - meas).pow(2).sum()


RESIDUALS: dict[str, Callable[[torch.Tensor, torch.Tensor, object], torch.Tensor]] = {
    "homodyne": _homodyne_residual,
    "intensity": _intensity_residual,
}


def heater_pairs(layout: MeshLayout, design: DeviceParams, radius_um: float) -> np.ndarray:
    """(2, Q) directed pairs (i ← j) of distinct shifters within ``radius_um`` on the public
    layout (:func:`photonic.noise.shifter_positions_um`), every plane included."""
    pos = shifter_positions_um(layout, design.layout)
    pairs = cKDTree(pos).query_pairs(radius_um, output_type="ndarray")
    both = np.concatenate([pairs, pairs[:, ::-1]]) if len(pairs) else np.zeros((0, 2), int)
    order = np.lexsort((both[:, 1], both[:, 0]))
    return both[order].T.astype(np.int64)


def phase_tomography(layout: MeshLayout, twin: TwinParams, drives_rad: np.ndarray,
                     measured: np.ndarray, *, iterations: int = 4,
                     damping: float = 1e-6) -> np.ndarray:
    """Realised phases (P, S) of every measured matrix, each fitted on its own.

    For each setting, Gauss–Newton on ‖T(p) − T_meas‖² over all S phases (the twin's
    couplers, transmissions and arm ratios held), from the twin's prediction; a mesh of N²
    phases is locally a chart of U(N), so the phases are determined up to noise (a weak
    Levenberg damping keeps near-degenerate directions, e.g. a φ before a bar-state MZI,
    at the prediction).
    """
    from calibration.twin import gauss_newton_normal, mesh_jacobian, realised_phases

    with torch.no_grad():
        start = realised_phases(torch.as_tensor(drives_rad), twin).numpy()
    optics = {"arm_ratio": np.asarray(torch.as_tensor(twin.arm_ratio)),
              "amplitude": np.asarray(torch.as_tensor(twin.amplitude)),
              "pad_amplitude": float(twin.pad_amplitude)}
    al, be = twin.alpha_rad.numpy(), twin.beta_rad.numpy()
    out = start.copy()
    for q in range(len(out)):
        p = out[q]
        for _ in range(iterations):
            t, a, b = mesh_jacobian(layout, p, al, be, **optics)
            h, g = gauss_newton_normal(a, b, t - measured[q])
            lam = damping * np.trace(h) / len(h)
            p = p - np.linalg.solve(h + lam * np.eye(len(h)), g)
        out[q] = p
    return out


def read_phase_chain(drives_rad: np.ndarray, phases: np.ndarray, start: TwinParams,
                     *, significance: float = 5.0):
    """Offsets, coefficients and crosstalk read from tomographic phases of single-shifter
    sweeps (rows of ``drives_rad`` with one driven shifter; rows with none are baselines;
    rows with several are skipped).

    With y_j = (1 + g_j)·d_j the drive of the swept shifter j, the realised change of every
    shifter i is c_ij·y_j (any plane): offsets are the baselines' phases, g_j the slope of
    j's own change, c_ij the slope of i's change over y_j. Pairs above ``significance``
    times the noise of a slope (the phases' scatter over the repeated baselines) are kept.
    Returns (offset (S,), gain_rel (S,), pairs (2, Q), crosstalk (Q,)).
    """
    drives = np.asarray(drives_rad)
    single = (drives > 0).sum(1) <= 1  # other settings (e.g. random codes) are not read here
    drives, phases = drives[single], phases[single]
    driven = drives > 0
    base = ~driven.any(1)
    s_all = drives.shape[1]
    offset = np.angle(np.exp(1j * phases[base]).mean(0))
    pred_gain = start.gain_rel.numpy()
    delta = phases - offset  # unwrap each change next to the twin's own prediction
    own_pred = (1 + pred_gain)[None, :] * drives
    delta = own_pred + np.angle(np.exp(1j * (delta - own_pred)))
    rows, src = np.nonzero(driven)
    d = drives[rows, src]
    own = delta[rows, src]
    gain = np.zeros(s_all)
    np.add.at(gain, src, own * d)
    norm = np.zeros(s_all)
    np.add.at(norm, src, d * d)
    gain = gain / np.where(norm > 0, norm, 1.0) - 1.0
    y = (1 + gain[src]) * d  # (R,) drive of each sweep's source
    slope = np.zeros((s_all, s_all))  # slope[i, j] = Σ Δ_i y / Σ y²
    np.add.at(slope.T, src, delta[rows] * y[:, None])
    yy = np.zeros(s_all)
    np.add.at(yy, src, y * y)
    slope /= np.where(yy > 0, yy, 1.0)[None, :]
    np.fill_diagonal(slope, 0.0)
    # noise of a read phase: its scatter over the repeated baselines
    sigma_phi = float(np.median(np.abs(np.angle(np.exp(1j * (phases[base] - offset))))) / 0.6745)
    scale = sigma_phi / np.sqrt(np.mean(yy[yy > 0]))
    keep = np.abs(slope) > significance * scale
    i, j = np.nonzero(keep)
    return offset, gain, np.stack([i, j]).astype(np.int64), slope[i, j]


class _Packed:
    """The twin's free parameters as one flat float64 vector (for L-BFGS)."""

    def __init__(self, start: TwinParams, pairs: np.ndarray, k: int):
        xt = dict(zip(map(tuple, start.pairs.T.tolist()), start.crosstalk.tolist(),
                      strict=True))
        ratio = torch.as_tensor(start.arm_ratio, dtype=torch.float64).expand(k)
        amp = torch.as_tensor(start.amplitude, dtype=torch.float64).expand(k)
        self.pairs = torch.as_tensor(pairs)
        self.parts = {
            "offset_rad": start.offset_rad.double(),
            "gain_rel": start.gain_rel.double(),
            "alpha_rad": start.alpha_rad.double(),
            "beta_rad": start.beta_rad.double(),
            "log_arm_ratio": ratio.log(),
            "log_amplitude": amp.log(),
            "log_pad": torch.tensor([float(start.pad_amplitude)], dtype=torch.float64).log(),
            "crosstalk": torch.tensor([xt.get((int(i), int(j)), 0.0) for i, j in pairs.T],
                                      dtype=torch.float64),
        }
        self.sizes = [v.numel() for v in self.parts.values()]

    def vector(self) -> torch.Tensor:
        return torch.cat([v.reshape(-1) for v in self.parts.values()])

    def twin(self, x: torch.Tensor) -> TwinParams:
        p = dict(zip(self.parts, torch.split(x, self.sizes), strict=True))
        return TwinParams(offset_rad=p["offset_rad"], gain_rel=p["gain_rel"],
                          alpha_rad=p["alpha_rad"], beta_rad=p["beta_rad"],
                          crosstalk=p["crosstalk"], pairs=self.pairs,
                          arm_ratio=p["log_arm_ratio"].exp(),
                          amplitude=p["log_amplitude"].exp(),
                          pad_amplitude=p["log_pad"].exp()[0])


def refine_twin(layout: MeshLayout, design: DeviceParams, start: TwinParams,
                drives_rad: torch.Tensor, measured: torch.Tensor, *, receiver: str,
                noise_std: float, inputs: torch.Tensor | None = None,
                pairs: np.ndarray | None = None, radius_um: float = 200.0,
                iterations: int = 2000,
                tolerance: float = 1e-9) -> tuple[TwinParams, dict[str, float]]:
    """Fit the twin to measurements of nominal drives (P, S) (module doc): matrices (P, N, N)
    (``homodyne``) or powers (P, N, B) for the input fields ``inputs`` (N, B) (``intensity``).

    ``noise_std`` is the readout noise per quadrature or power reading (the fit's unit: a
    residual of 1 per entry is the noise floor). Crosstalk is fitted on ``pairs`` (2, Q)
    (i ← j), by default every pair of heaters within ``radius_um`` (:func:`heater_pairs`).
    Returns the refined :class:`TwinParams` (detached) and
    ``{"start": r0, "end": r1, "evaluations": e}`` with the mean residual per reading in
    units of the noise variance before and after.
    """
    if receiver not in RESIDUALS:
        raise ValueError(f"receiver={receiver!r} is not known; valid choices: "
                         f"{sorted(RESIDUALS)}")
    residual = RESIDUALS[receiver]
    if pairs is None:
        pairs = heater_pairs(layout, design, radius_um)
    packed = _Packed(start, pairs, layout.num_mzis)
    x = packed.vector().clone().requires_grad_(True)
    meas = torch.as_tensor(measured, dtype=torch.complex128)
    drives = torch.as_tensor(drives_rad, dtype=torch.float64)
    entries = meas.numel() * (2 if receiver == "homodyne" else 1) * noise_std**2
    meas = meas if receiver == "homodyne" else meas.real
    opt = torch.optim.LBFGS([x], lr=1.0, max_iter=iterations, history_size=50,
                            tolerance_grad=1e-14, tolerance_change=tolerance,
                            line_search_fn="strong_wolfe")
    calls = [0]

    def closure():
        opt.zero_grad()
        loss = residual(twin_matrix(layout, drives, packed.twin(x)), meas, inputs) / entries
        loss.backward()
        calls[0] += 1
        return loss

    with torch.no_grad():
        first = float(residual(twin_matrix(layout, drives, packed.twin(x)), meas, inputs) / entries)
    opt.step(closure)
    with torch.no_grad():
        final = packed.twin(x.detach())
        last = float(residual(twin_matrix(layout, drives, final), meas, inputs) / entries)
    return final, {"start": first, "end": last, "evaluations": float(calls[0])}
