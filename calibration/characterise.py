"""Characterise a fabricated Clements mesh from detector readings only.

Method (one drive sweep per shifter, progressive over columns). The baseline setting is all
DAC codes 0, where every shifter's realised phase is its static offset (no drive, no heat).
Driving one shifter s to nominal phases d_q changes only shifters of the *same plane* (the
internal θ's of one column, the external φ's of one column, or the output screen): s by
g_s·d_q and its thermal neighbours i by c_is·g_s·d_q. With T = A·diag(e^{iΔ})·U (U upstream
of the plane, A downstream) the measured products

    M_q = T_0^† T_q = U^† diag(e^{iΔ}) U

carry, model-free, the realised phase changes as eigenvalues and the upstream optics as
eigenvectors. Hence, column by column from the inputs (K = product of columns already
characterised):

1. θ sweep of MZI k (top mode m): the eigenvector u with the largest |λ − 1| satisfies
   C_{ℓ−1}·K·u ∝ B(α_k)^† diag(e^{−iφ_k}, 1)… i.e. (Bα Dφ K u) is zero off mode m. This gives
   the *previous* column's output coupler β and internal phase θ (one complex condition per
   downstream neighbour, solved in closed form) and this MZI's input coupler α (from
   |(K u)_m| = cos(π/4 + α)) and external phase φ (the relative phase of (K u)_{m, m+1}).
2. With U known, U M_q U^† = diag(e^{iΔ}): the diagonal is read directly — the swept
   shifter's change (unwrapped, slope over the sweep → coefficient g_s) and its neighbours'
   changes (slope / (g_s d) → crosstalk c_is). The interference curve fitted is e^{iΔ(d)}.
3. The last column's β, θ and the output screen follow from W = T_0 K^{−1} = D_out·C_last.

Offsets come out as the realised phases of the baseline. The thermal crosstalk matrix is
measured between shifters of one plane within ``crosstalk_radius_um`` on the public layout
(cross-plane terms are not separable by this scheme and are assumed negligible).
Only :meth:`VirtualChip.measure` is used; every measurement is counted per stage.
"""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
import torch

from calibration.chip import VirtualChip, code_for_drive, drive_phase_rad
from calibration.twin import TwinParams
from photonic.devices import DeviceParams
from photonic.mesh import MeshLayout
from photonic.mzi import mzi_entries

__all__ = ["MeshCharacterizer", "column_matrix", "sweep_codes"]

_QUARTER = math.pi / 4


def sweep_codes(design: DeviceParams, num_points: int) -> np.ndarray:
    """DAC codes whose nominal drives are the ``num_points`` largest odd multiples of π within
    reach (5π, 3π, π for the BP-free chip): odd multiples keep the swept eigenvalue far from
    the cluster at 1; large drives make the slope (coefficient) and crosstalk precise."""
    top = design.shifter.max_phase_rad
    odd = [(2 * q + 1) * math.pi for q in range(int(top / math.pi) + 1)
           if (2 * q + 1) * math.pi <= top]
    targets = odd[-num_points:] if odd else [top]
    codes = code_for_drive(torch.tensor(targets, dtype=torch.float64), design).numpy()
    return np.unique(codes)


def column_matrix(layout: MeshLayout, col: int, theta: np.ndarray, phi: np.ndarray,
                  alpha: np.ndarray, beta: np.ndarray) -> np.ndarray:
    """N×N transfer matrix of column ``col`` (realised phases / coupler errors per MZI)."""
    n = layout.n
    c = np.eye(n, dtype=np.complex128)
    ks = np.nonzero(layout.columns == col)[0]
    if ks.size == 0:
        return c
    m00, m01, m10, m11 = (t.numpy() for t in mzi_entries(
        torch.as_tensor(theta[ks]), torch.as_tensor(phi[ks]),
        alpha=torch.as_tensor(alpha[ks]), beta=torch.as_tensor(beta[ks])))
    m = layout.modes[ks]
    c[m, m], c[m, m + 1], c[m + 1, m], c[m + 1, m + 1] = m00, m01, m10, m11
    return c


def _input_half(alpha: float, phi: float) -> np.ndarray:
    """B(π/4 + α)·diag(e^{iφ}, 1): the part of an MZI before its internal phase."""
    k = _QUARTER + alpha
    b = np.array([[math.cos(k), 1j * math.sin(k)], [1j * math.sin(k), math.cos(k)]])
    return b * np.array([np.exp(1j * phi), 1.0])[None, :]


def _own_eigenvectors(m_q: np.ndarray, iterations: int = 8) -> np.ndarray:
    """Eigenvector of the eigenvalue farthest from 1 of each M_q, (n_swept, N).

    M − I = Σ_j (λ_j − 1) u_j u_j^† is dominated by the swept shifter's term (|λ − 1| ≈ 2 at
    odd multiples of π) over its neighbours' (≈ c·d ≲ 0.1), so power iteration on M − I from
    its largest column converges by a factor ≲ 0.05 per step; the sweep level with the
    largest |λ − 1| is used.
    """
    n = m_q.shape[-1]
    x = m_q - np.eye(n)
    best_q = np.argmax(np.linalg.norm(x, axis=(-2, -1)), axis=1)
    x = x[np.arange(len(x)), best_q]  # (n_swept, N, N)
    col = np.argmax(np.linalg.norm(x, axis=-2), axis=-1)
    v = x[np.arange(len(x)), :, col]
    for _ in range(iterations):
        v = (x @ v[..., None])[..., 0]
        v /= np.linalg.norm(v, axis=-1, keepdims=True)
    return v


def _circ_mean(angles: list[float], weights: list[float]) -> float:
    z = sum(w * np.exp(1j * a) for a, w in zip(angles, weights, strict=True))
    return float(np.angle(z))


class MeshCharacterizer:
    """Learn per-device offsets, coefficients, coupler errors and crosstalk of a chip.

    Parameters are settings only (scikit-learn style); :meth:`fit` measures and learns.
    Learned attributes (numpy, float64): ``phase_offset_rad_`` (S,), ``gain_rel_`` (S,)
    (realised coefficient / nominal − 1), ``alpha_rad_``/``beta_rad_`` (K,),
    ``crosstalk_pairs_`` (2, Q) directed pairs (i ← j) and ``crosstalk_`` (Q,),
    ``measurements_`` (Counter per stage), ``noise_std_`` (estimated per-quadrature noise).
    """

    def __init__(self, *, sweep_points: int = 2, baseline_repeats: int = 8,
                 crosstalk_radius_um: float = 100.0, batch_settings: int = 256,
                 refine: bool = False, refine_radius_um: float = 200.0,
                 refine_iterations: int = 300, random_settings: int = 64, seed: int = 0):
        self.sweep_points = sweep_points
        self.baseline_repeats = baseline_repeats
        self.crosstalk_radius_um = crosstalk_radius_um
        self.batch_settings = batch_settings
        self.refine = refine
        self.refine_radius_um = refine_radius_um
        self.refine_iterations = refine_iterations
        self.random_settings = random_settings
        self.seed = seed

    # ------------------------------------------------------------------ measurement helpers
    def _measure_matrices(self, chip: VirtualChip, codes: np.ndarray) -> np.ndarray:
        """Measured transfer matrices (P, N, N) of DAC settings ``codes`` (P, S), divided by
        the baseline's mean field transmission (the common loss) once that is known."""
        eye = torch.eye(chip.n, dtype=torch.complex128)
        t = _in_batches(chip.measure, codes, eye, self.batch_settings) / self._scale
        self._log.append((codes, t))
        return t

    def _plane_sweeps(self, chip, shifters: np.ndarray, levels: np.ndarray) -> np.ndarray:
        """M_q = T0^† T for each shifter and level: (len(shifters), len(levels), N, N)."""
        s_all = chip.num_shifters
        codes = np.zeros((len(shifters), len(levels), s_all), dtype=np.int64)
        codes[np.arange(len(shifters)), :, shifters] = levels[None, :]
        t = self._measure_matrices(chip, codes.reshape(-1, s_all))
        t = t.reshape(len(shifters), len(levels), chip.n, chip.n)
        return self._t0_dag @ t

    # ------------------------------------------------------------------ fit
    def fit(self, chip: VirtualChip) -> MeshCharacterizer:
        layout, design = chip.layout, chip.design
        if layout.topology != "clements":
            raise ValueError(f"MeshCharacterizer handles Clements meshes; got topology="
                             f"{layout.topology!r}")
        n, k_mzi, s_all = layout.n, layout.num_mzis, chip.num_shifters
        start = Counter(chip.measurements)
        levels = sweep_codes(design, self.sweep_points)
        drives = drive_phase_rad(torch.as_tensor(levels), design).numpy()

        t0 = self._baseline(chip)

        offset = np.zeros(s_all)
        gain = np.zeros(s_all)
        alpha = np.zeros(k_mzi)
        beta = np.zeros(k_mzi)
        xt_pairs: list[tuple[int, int]] = []
        xt_vals: list[float] = []
        pitch = design.layout.mode_pitch_um
        reach = int(math.floor(self.crosstalk_radius_um / pitch + 1e-9))

        def read_plane(m_q: np.ndarray, mixer: np.ndarray, swept: np.ndarray,
                       plane_modes: np.ndarray) -> None:
            g, pairs, vals = _read_plane(m_q, mixer, swept, plane_modes, drives, reach)
            gain[swept] = g - 1.0
            xt_pairs.extend(pairs)
            xt_vals.extend(vals)

        kmat = np.eye(n, dtype=np.complex128)  # columns < ℓ, fully characterised
        prev_half = None  # (ks, modes, Bα·Dφ 2×2 per MZI) of column ℓ−1, β/θ still unknown
        depth = layout.depth
        for col in range(depth):
            ks = np.nonzero(layout.columns == col)[0]
            modes = layout.modes[ks]
            with chip.stage("characterise.theta_sweeps"):
                m_theta = self._plane_sweeps(chip, ks, levels)
            vecs = _own_eigenvectors(m_theta)
            if prev_half is not None:
                self._finish_previous(layout, prev_half, kmat, vecs, modes, beta, offset)
                kmat = column_matrix(layout, col - 1, offset[:k_mzi], offset[k_mzi:2 * k_mzi],
                                     alpha, beta) @ kmat
            # this column's α and φ from (K u) on (m, m+1) ∝ diag(e^{−iφ},1) B(α)^† e_0
            z = vecs @ kmat.T  # (len(ks), N): K u for each
            top = z[np.arange(len(ks)), modes]
            bot = z[np.arange(len(ks)), modes + 1]
            alpha[ks] = np.arctan2(np.abs(bot), np.abs(top)) - _QUARTER
            # (K u)_m / (K u)_{m+1} = e^{−iφ} cos κ / (−i sin κ)
            offset[k_mzi + ks] = -np.angle(top / bot * (-1j))
            halves = np.stack([_input_half(alpha[k], offset[k_mzi + k]) for k in ks]) \
                if len(ks) else np.zeros((0, 2, 2))
            # φ-plane readout (upstream K), then θ-plane readout (upstream Bα·Dφ·K)
            with chip.stage("characterise.phi_sweeps"):
                m_phi = self._plane_sweeps(chip, k_mzi + ks, levels)
            read_plane(m_phi, kmat, k_mzi + ks, modes)
            half = np.eye(n, dtype=np.complex128)
            for h, m in zip(halves, modes, strict=True):
                half[m:m + 2, m:m + 2] = h
            read_plane(m_theta, half @ kmat, ks, modes)
            prev_half = (ks, modes, halves)

        # last column and output screen: W = T0 K^{-1} = D_out · C_last
        w_mat = t0 @ kmat.conj().T
        _solve_last_column(w_mat, *prev_half, beta=beta, offset=offset)
        kmat = column_matrix(layout, depth - 1, offset[:k_mzi], offset[k_mzi:2 * k_mzi],
                             alpha, beta) @ kmat
        out_idx = 2 * k_mzi + np.arange(n)
        offset[out_idx] = np.angle(np.diagonal(t0 @ kmat.conj().T))
        with chip.stage("characterise.output_sweeps"):
            m_out = self._plane_sweeps(chip, out_idx, levels)
        read_plane(m_out, kmat, out_idx, np.arange(n))

        self.phase_offset_rad_ = offset
        self.gain_rel_ = gain
        self.alpha_rad_ = alpha
        self.beta_rad_ = beta
        self.crosstalk_pairs_ = np.array(xt_pairs, dtype=np.int64).reshape(-1, 2).T
        self.crosstalk_ = np.array(xt_vals)
        self.layout_ = layout
        self._finish(chip, start)
        return self

    def _baseline(self, chip: VirtualChip) -> np.ndarray:
        """Measure the all-zero setting ``baseline_repeats`` times: the common loss (every
        later matrix is divided by it), the receiver noise and T0's unitary polar factor."""
        self._scale = 1.0
        self._log: list[tuple[np.ndarray, np.ndarray]] = []
        with chip.stage("characterise.baseline"):
            zero = np.zeros((self.baseline_repeats, chip.num_shifters), dtype=np.int64)
            t0s = self._measure_matrices(chip, zero)
        self._scale = float(np.linalg.norm(t0s.mean(0)) / math.sqrt(chip.n))
        t0s = t0s / self._scale
        self._log = [(zero, t0s)]
        self.transmission_ = self._scale
        t0 = t0s.mean(0)
        self.noise_std_ = float(np.sqrt((np.abs(t0s - t0) ** 2).mean() / 2
                                        * self.baseline_repeats / (self.baseline_repeats - 1)))
        # T0 is unitary up to noise; its polar factor is the best unitary estimate.
        uu, _, vh = np.linalg.svd(t0)
        t0 = uu @ vh
        self._t0_dag = t0.conj().T
        return t0

    def _finish(self, chip: VirtualChip, start: Counter) -> None:
        """Data-sheet optics (mean arm imbalance; in normalised units the θ arm transmits
        like a pad, both carrying the cell loss), the optional refinement, the counts."""
        k_mzi = chip.layout.num_mzis
        self.arm_ratio_ = np.full(k_mzi, 10.0 ** (-chip.design.mzi.arm_imbalance_db / 20.0))
        self.amplitude_ = 1.0 / self.arm_ratio_
        self.pad_amplitude_ = 1.0
        self.refinement_ = None
        if self.refine:
            self._refine(chip)
        self.measurements_ = Counter({k: v - start.get(k, 0)
                                      for k, v in chip.measurements.items()
                                      if v - start.get(k, 0) > 0})
        del self._t0_dag, self._log

    def _refine(self, chip: VirtualChip) -> None:
        """Phase tomography of every recorded setting, the phase chain read from it (all
        heater pairs, any plane), then a joint maximum-likelihood fit of the twin
        (:mod:`calibration.refine`)."""
        from calibration.refine import phase_tomography, read_phase_chain, refine_twin

        # Random settings: at code 0 every MZI sits near its cross state, where a φ and the
        # next phase on its output path are nearly interchangeable; generic settings break
        # that near-degeneracy and test the twin where programming uses it (all heaters on).
        top = 2 ** chip.design.phase_dac.bits
        gen = np.random.default_rng(self.seed)
        with chip.stage("characterise.random_settings"):
            self._measure_matrices(chip, gen.integers(0, top, (self.random_settings,
                                                               chip.num_shifters)))
        codes = np.concatenate([c for c, _ in self._log])
        meas = np.concatenate([t for _, t in self._log])
        drives = drive_phase_rad(torch.as_tensor(codes), chip.design)
        fit = dict(receiver="homodyne", noise_std=self.noise_std_)
        # 1. optics and near pairs from the progressive start (a start for step 2 only)
        twin, info = refine_twin(chip.layout, chip.design, self.twin_params(), drives,
                                 torch.as_tensor(meas), radius_um=self.refine_radius_um,
                                 iterations=self.refine_iterations // 2, **fit)
        # 2. with the optics known, every setting's phases, and the chain read from them
        phases = phase_tomography(chip.layout, twin, drives.numpy(), meas)
        offset, gain, pairs, xt = read_phase_chain(drives.numpy(), phases, twin)
        twin.offset_rad, twin.gain_rel = torch.as_tensor(offset), torch.as_tensor(gain)
        twin.pairs, twin.crosstalk = torch.as_tensor(pairs), torch.as_tensor(xt)
        # 3. joint fit on the pairs found significant
        twin, info2 = refine_twin(chip.layout, chip.design, twin, drives, torch.as_tensor(meas),
                                  pairs=pairs, iterations=self.refine_iterations, **fit)
        info = {"first": info, "final": info2}
        self._set_twin(twin)
        self.refinement_ = info

    def _set_twin(self, twin: TwinParams) -> None:
        self.phase_offset_rad_ = twin.offset_rad.numpy()
        self.gain_rel_ = twin.gain_rel.numpy()
        self.alpha_rad_ = twin.alpha_rad.numpy()
        self.beta_rad_ = twin.beta_rad.numpy()
        self.crosstalk_pairs_ = twin.pairs.numpy()
        self.crosstalk_ = twin.crosstalk.numpy()
        self.arm_ratio_ = twin.arm_ratio.numpy()
        self.amplitude_ = twin.amplitude.numpy()
        self.pad_amplitude_ = float(twin.pad_amplitude)

    @staticmethod
    def _finish_previous(layout, prev_half, kmat, vecs, modes_next, beta, offset):
        """β and θ of column ℓ−1 from this column's θ eigenvectors (see module doc)."""
        ks, modes, halves = prev_half
        z = vecs @ kmat.T  # upstream of column ℓ−1 applied
        ests: dict[int, list[tuple[float, float, float]]] = {int(k): [] for k in ks}
        by_top = {int(m): (int(k), h) for k, m, h in zip(ks, modes, halves, strict=True)}
        for i, mj in enumerate(modes_next):
            mj = int(mj)
            # previous-column MZI whose bottom output is mj: top output must stay dark
            if mj - 1 in by_top:
                k, h = by_top[mj - 1]
                a, b = h @ z[i, mj - 1:mj + 1]
                kb = math.atan2(abs(a), abs(b))
                ests[k].append((kb, float(np.angle(-1j * b / a)), abs(a) * abs(b)))
            # previous-column MZI whose top output is mj + 1: bottom output must stay dark
            if mj + 1 in by_top:
                k, h = by_top[mj + 1]
                a, b = h @ z[i, mj + 1:mj + 3]
                kb = math.atan2(abs(b), abs(a))
                ests[k].append((kb, float(np.angle(1j * b / a)), abs(a) * abs(b)))
        for k, e in ests.items():
            if not e:
                raise RuntimeError(f"MZI {k} has no downstream neighbour to characterise it")
            wts = [x[2] for x in e]
            beta[k] = float(np.average([x[0] for x in e], weights=wts)) - _QUARTER
            offset[k] = _circ_mean([x[1] for x in e], wts)

    # ------------------------------------------------------------------ use
    def twin_params(self) -> TwinParams:
        """The learned values as digital-twin parameters (torch float64)."""
        t = torch.as_tensor
        return TwinParams(offset_rad=t(self.phase_offset_rad_), gain_rel=t(self.gain_rel_),
                          alpha_rad=t(self.alpha_rad_), beta_rad=t(self.beta_rad_),
                          crosstalk=t(self.crosstalk_), pairs=t(self.crosstalk_pairs_),
                          arm_ratio=t(self.arm_ratio_), amplitude=t(self.amplitude_),
                          pad_amplitude=self.pad_amplitude_)

    @property
    def total_measurements_(self) -> int:
        return int(sum(self.measurements_.values()))

    # ------------------------------------------------------------------ export
    def preset_values(self) -> dict[str, float | str]:
        """The learned figures a :class:`photonic.DeviceParams` can hold, by dotted field:
        spreads (std over devices) of coefficients, offsets and coupler angles, and the mean
        nearest-neighbour crosstalk (θ–θ / φ–φ of vertically adjacent MZIs in a column)."""
        layout, k = self.layout_, self.layout_.num_mzis
        wrapped = np.angle(np.exp(1j * self.phase_offset_rad_))
        i, j = self.crosstalk_pairs_
        s_mzi = 2 * k
        in_mzi = (i < s_mzi) & (j < s_mzi) & ((i < k) == (j < k))
        ki, kj = i % k, j % k
        nearest = in_mzi & (layout.columns[ki] == layout.columns[kj]) & (
            np.abs(layout.modes[ki] - layout.modes[kj]) == 2)
        xt = float(self.crosstalk_[nearest].mean()) if nearest.any() else 0.0
        return {
            "variation.gamma_std": float(self.gain_rel_.std()),
            "variation.phase_offset_std_rad": float(wrapped.std()),
            "coupler.split_error_std_rad": float(np.concatenate([self.alpha_rad_,
                                                                 self.beta_rad_]).std()),
            "crosstalk.model": "nearest" if xt > 0 else "none",
            "crosstalk.coefficient": max(xt, 0.0),
        }

    def to_preset_yaml(self, *, base: str, chip_label: str = "chip") -> str:
        """A preset (``extends: base``) whose variation figures are the measured ones, each
        with its provenance; loadable with ``calibration.load_preset(name, directory=...)``."""
        import yaml

        n_meas = self.total_measurements_
        what = (f"measured: MeshCharacterizer on {chip_label} ({self.layout_.n}×"
                f"{self.layout_.n} {self.layout_.topology}, {n_meas} measurements)")
        params: dict = {}
        for dotted, value in self.preset_values().items():
            node = params
            *head, leaf = dotted.split(".")
            for h in head:
                node = node.setdefault(h, {})
            how = {"variation.gamma_std": "std of the fitted coefficients",
                   "variation.phase_offset_std_rad": "std of the fitted static offsets",
                   "coupler.split_error_std_rad": "std of the fitted α and β",
                   "crosstalk.model": "nearest-neighbour pairs measured",
                   "crosstalk.coefficient": "mean of the fitted nearest-neighbour Γ_ij"}[dotted]
            node[leaf] = {"value": value, "source": f"{what}: {how}"}
        doc = {"description": f"{base} as characterised on {chip_label}", "extends": base,
               "params": params}
        return yaml.safe_dump(doc, sort_keys=False, allow_unicode=True)

    def export_preset(self, directory, name: str, *, base: str, chip_label: str = "chip"):
        """Write ``<directory>/<name>.yaml`` (see :meth:`to_preset_yaml`) and the per-device
        values to ``<directory>/<name>.npz``; returns the YAML path."""
        from pathlib import Path

        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        (d / f"{name}.yaml").write_text(self.to_preset_yaml(base=base, chip_label=chip_label))
        np.savez_compressed(d / f"{name}.npz", phase_offset_rad=self.phase_offset_rad_,
                            gain_rel=self.gain_rel_, alpha_rad=self.alpha_rad_,
                            beta_rad=self.beta_rad_, crosstalk_pairs=self.crosstalk_pairs_,
                            crosstalk=self.crosstalk_)
        return d / f"{name}.yaml"



def interference_inputs(n: int) -> torch.Tensor:
    """(N, 3N − 2) input fields whose output powers give a transfer matrix up to a phase per
    output row: e_j, then (e_0 + e_k)/√2 and (e_0 + i e_k)/√2 for k ≥ 1."""
    eye = torch.eye(n, dtype=torch.complex128)
    plus = (eye[:, :1] + eye[:, 1:]) / math.sqrt(2)
    quad = (eye[:, :1] + 1j * eye[:, 1:]) / math.sqrt(2)
    return torch.cat([eye, plus, quad], 1)


class IntensityCharacterizer:
    """Characterise a chip with power meters only (what most labs have).

    The same settings as :class:`MeshCharacterizer` (a baseline, then each shifter swept
    alone) are read through :meth:`VirtualChip.measure_power` with the inputs of
    :func:`interference_inputs`, and the twin is fitted to the powers from the data sheet
    (zero offsets, unit coefficients, ideal couplers, the design's mean arm imbalance) by
    :func:`calibration.refine.refine_twin` (receiver ``intensity``). Output-screen
    phases are invisible to power meters, so programming is judged up to them. Learned
    attributes as :class:`MeshCharacterizer` (``crosstalk_pairs_``: every pair of heaters
    within ``radius_um``).
    """

    def __init__(self, *, sweep_points: int = 1, baseline_repeats: int = 8,
                 radius_um: float = 120.0, iterations: int = 300, batch_settings: int = 256):
        self.sweep_points = sweep_points
        self.baseline_repeats = baseline_repeats
        self.radius_um = radius_um
        self.iterations = iterations
        self.batch_settings = batch_settings

    def _measure(self, chip: VirtualChip, codes: np.ndarray) -> np.ndarray:
        return _in_batches(chip.measure_power, codes, interference_inputs(chip.n),
                           self.batch_settings)

    def fit(self, chip: VirtualChip) -> IntensityCharacterizer:
        from calibration.refine import refine_twin

        layout, design, s_all = chip.layout, chip.design, chip.num_shifters
        start = Counter(chip.measurements)
        levels = sweep_codes(design, self.sweep_points)
        with chip.stage("characterise.baseline"):
            zero = np.zeros((self.baseline_repeats, s_all), dtype=np.int64)
            t0s = self._measure(chip, zero)
        # mean power transmission (the common loss): single-port inputs give |T_ij|²
        scale = float(t0s.mean(0)[:, :chip.n].sum() / chip.n)
        t0s = t0s / scale
        self.noise_std_ = float(np.sqrt(((t0s - t0s.mean(0)) ** 2).mean()
                                        * self.baseline_repeats / (self.baseline_repeats - 1)))
        codes = np.zeros((s_all * len(levels), s_all), dtype=np.int64)
        codes[np.arange(len(codes)), np.repeat(np.arange(s_all), len(levels))] = \
            np.tile(levels, s_all)
        with chip.stage("characterise.sweeps"):
            sweeps = self._measure(chip, codes) / scale
        k = layout.num_mzis
        ratio = 10.0 ** (-design.mzi.arm_imbalance_db / 20.0)
        t = torch.zeros
        sheet = TwinParams(offset_rad=t(s_all, dtype=torch.float64),
                           gain_rel=t(s_all, dtype=torch.float64),
                           alpha_rad=t(k, dtype=torch.float64), beta_rad=t(k, dtype=torch.float64),
                           crosstalk=t(0, dtype=torch.float64),
                           pairs=t((2, 0), dtype=torch.int64),
                           arm_ratio=torch.full((k,), ratio, dtype=torch.float64),
                           amplitude=torch.full((k,), 1.0 / ratio, dtype=torch.float64))
        all_codes = np.concatenate([zero, codes])
        drives = drive_phase_rad(torch.as_tensor(all_codes), design)
        twin, self.refinement_ = refine_twin(
            layout, design, sheet, drives, torch.as_tensor(np.concatenate([t0s, sweeps])),
            receiver="intensity", noise_std=self.noise_std_,
            inputs=interference_inputs(chip.n), radius_um=self.radius_um,
            iterations=self.iterations)
        self.twin_ = twin
        self.transmission_ = math.sqrt(scale)
        self.phase_offset_rad_ = twin.offset_rad.numpy()
        self.gain_rel_ = twin.gain_rel.numpy()
        self.alpha_rad_ = twin.alpha_rad.numpy()
        self.beta_rad_ = twin.beta_rad.numpy()
        self.crosstalk_pairs_ = twin.pairs.numpy()
        self.crosstalk_ = twin.crosstalk.numpy()
        self.measurements_ = Counter({key: v - start.get(key, 0)
                                      for key, v in chip.measurements.items()
                                      if v - start.get(key, 0) > 0})
        self.layout_ = layout
        return self

    def twin_params(self) -> TwinParams:
        return self.twin_

    @property
    def total_measurements_(self) -> int:
        return int(sum(self.measurements_.values()))


def _read_plane(m_q: np.ndarray, mixer: np.ndarray, swept: np.ndarray,
                plane_modes: np.ndarray, drives: np.ndarray, reach: int):
    """Diagonal readout over a plane whose shifters ``swept`` (on ``plane_modes``) were all
    swept: (relative gains g of the swept shifters, crosstalk pairs (i ← s) onto same-plane
    neighbours within ``reach`` modes, their coefficients)."""
    x = mixer @ m_q @ mixer.conj().T
    dphi = np.angle(np.diagonal(x, axis1=-2, axis2=-1))  # (n_swept, Q, N)
    own = dphi[np.arange(len(swept)), :, plane_modes]  # (n_swept, Q)
    unwrapped = own + 2 * math.pi * np.round((drives - own) / (2 * math.pi))
    dd = drives @ drives
    g = unwrapped @ drives / dd
    # slope of every plane mode's change over g·d; pair (i ← s) for i ≠ s within reach
    slopes = np.einsum("sqn,q->sn", dphi, drives)[:, plane_modes] / (g[:, None] * dd)
    dist = np.abs(plane_modes[None, :].astype(int) - plane_modes[:, None].astype(int))
    src, dst = np.nonzero((dist <= reach) & ~np.eye(len(swept), dtype=bool))
    pairs = list(zip(swept[dst].tolist(), swept[src].tolist(), strict=True))
    return g, pairs, slopes[src, dst].tolist()


def _solve_last_column(w_mat: np.ndarray, ks, modes, halves, *, beta: np.ndarray,
                       offset: np.ndarray) -> None:
    """The last column's output couplers β and θ offsets from W = T0 K^{-1} = D_out · C_last
    (each MZI's 2×2 block right-divided by its known input half), written in place."""
    for k, m, h in zip(ks, modes, halves, strict=True):
        r = w_mat[m:m + 2, m:m + 2] @ np.linalg.inv(h)
        kb = math.atan2(abs(r[0, 1]) + abs(r[1, 0]), abs(r[0, 0]) + abs(r[1, 1]))
        beta[k] = kb - _QUARTER
        e1 = r[0, 1] / (1j * math.sin(kb))
        e2 = r[1, 1] / math.cos(kb)
        offset[k] = _circ_mean([np.angle(r[0, 0] / (e1 * math.cos(kb))),
                                np.angle(r[1, 0] / (e2 * 1j * math.sin(kb)))],
                               [abs(r[0, 0]), abs(r[1, 0])])


def _in_batches(measure, codes: np.ndarray, inputs: torch.Tensor, batch: int) -> np.ndarray:
    """``measure(codes, inputs)`` over at most ``batch`` settings at a time (the chip's memory
    bound), concatenated."""
    return np.concatenate([measure(torch.as_tensor(codes[i:i + batch]), inputs).numpy()
                           for i in range(0, len(codes), batch)])
