"""Program a characterised chip: from a target unitary to DAC codes.

Naive programming (:func:`naive_codes`) trusts the data sheet: decompose U for ideal MZIs,
wrap each phase into [0, 2π) and round the nominal voltage √(φ/π)·V_π to the DAC grid
(as :func:`photonic.noise.quantize_phase` does).

Error-aware programming (:class:`ErrorAwareProgrammer`) uses the learned twin:

1. *coupler correction* — starting from the ideal decomposition, minimise
   ‖T(p; α̂, β̂) − U‖_F² over the realised phases p of the twin (Levenberg–Marquardt with
   the exact factored Jacobian, :func:`coupler_corrected_phases`). This is the global form
   of the local correction of Bandyopadhyay, Hamerly & Englund (Optica 8, 1247 (2021)) /
   Hamerly et al. 2022: each MZI with errant couplers is re-set so that the mesh as a whole
   realises U; it reaches the same optimum where the local rule applies and also spreads
   uncorrectable errors over neighbours.
2. *phase-chain inversion with crosstalk compensation* — realised p = Γ(g ⊙ d) + o with
   Γ = I + C: solve Γ y = p* − o (+ 2π n) for the drive y = g ⊙ d shifter by shifter
   (Gauss–Seidel over an independent-set colouring of the crosstalk graph, a few sweeps).
3. *branch choice* — a thermal shifter reaches several turns (π(V_max/V_π)² = 19.3 rad for
   the BP-free chip), and the quadratic law puts the DAC grid at different offsets on each
   turn: each shifter takes the turn and neighbouring code whose realised phase lands
   closest to its target (including the leak its choice puts on its neighbours);
4. *quantisation error feedback* (``compensate_quantization``) — GPTQ-style: each shifter's
   rounding error is fed forward to the not-yet-quantised ones (:meth:`quantize_with_feedback`);
5. *polish* — greedy ±1-code moves on the linearised twin (:meth:`polish`); of the codes of
   steps 3, 4 and 5 the one with the smallest twin error is kept.
"""

from __future__ import annotations

import math

import numpy as np
import scipy.linalg
import torch

from calibration.chip import code_for_drive, drive_phase_rad
from calibration.twin import (
    TwinParams,
    gain_matched_error,
    gauss_newton_normal,
    mesh_jacobian,
    twin_matrix,
)
from photonic.decompose import decompose
from photonic.devices import DeviceParams
from photonic.mesh import MeshLayout

__all__ = ["naive_codes", "ErrorAwareProgrammer", "coupler_corrected_phases"]

TWO_PI = 2 * math.pi


def naive_codes(U: torch.Tensor, layout: MeshLayout, design: DeviceParams) -> torch.Tensor:
    """DAC codes (S,) from the ideal decomposition and the data-sheet law (see module doc)."""
    ph = decompose(U, layout.topology)
    p = torch.cat([ph.theta, ph.phi, ph.out_phase], -1)
    return code_for_drive(torch.remainder(p, TWO_PI), design)


def coupler_corrected_phases(U: torch.Tensor, layout: MeshLayout, alpha: torch.Tensor,
                             beta: torch.Tensor, *, iterations: int = 15,
                             rtol: float = 1e-3, atol_rel: float = 1e-4,
                             optics: dict | None = None) -> np.ndarray:
    """Realised phases (S,) minimising ‖T(p; α, β) − g·U‖_F² from the ideal decomposition
    (Levenberg–Marquardt with the exact factored Jacobian; a step is kept only if it lowers
    the error, else the damping grows tenfold). ``optics`` passes the twin's ``arm_ratio``,
    ``amplitude`` and ``pad_amplitude`` to :func:`calibration.twin.mesh_jacobian`; the real
    gain ``g`` (undone by the electronic gain) is re-fitted at every step. Stops when a step
    gains less than ``rtol`` (relative) or ‖T − gU‖/‖gU‖ <
    ``atol_rel`` — two orders below the 8-bit quantisation floor (≈ 0.02)."""
    ph = decompose(U, layout.topology)
    p = torch.cat([ph.theta, ph.phi, ph.out_phase], -1).numpy().copy()
    al, be = np.asarray(alpha, dtype=float), np.asarray(beta, dtype=float)
    optics = optics or {}
    u_unit = torch.as_tensor(U, dtype=torch.complex128).numpy()
    norm_u = float(np.sum(np.abs(u_unit) ** 2))

    def scaled_target(t):  # g·U with the gain that fits T best (variable projection)
        u = max(float(np.real(np.vdot(u_unit, t))) / norm_u, 1e-12) * u_unit
        return u, float(np.sum(np.abs(t - u) ** 2))

    t, a, b = mesh_jacobian(layout, p, al, be, **optics)
    u, loss = scaled_target(t)
    lam = 1e-6
    for _ in range(iterations):
        h, g = gauss_newton_normal(a, b, t - u)
        scale = np.trace(h) / len(h)
        while True:
            trial = p - _solve_psd(h + lam * scale * np.eye(len(h)), g)
            t_new, a_new, b_new = mesh_jacobian(layout, trial, al, be, **optics)
            u_new, new = scaled_target(t_new)
            if new < loss or lam > 1e6:
                break
            lam *= 10
        if new >= loss:
            break
        gained = (loss - new) / max(loss, 1e-300)
        p, t, a, b, u, loss = trial, t_new, a_new, b_new, u_new, new
        lam = max(lam / 3, 1e-9)
        if gained < rtol or loss < atol_rel**2 * np.sum(np.abs(u) ** 2):
            break
    return p


def _solve_psd(h: np.ndarray, g: np.ndarray) -> np.ndarray:
    return scipy.linalg.cho_solve(scipy.linalg.cho_factor(h), g)


def _colouring(num: int, rows: np.ndarray, cols: np.ndarray) -> list[np.ndarray]:
    """Greedy independent sets of the (symmetrised) crosstalk graph."""
    nbrs: list[set[int]] = [set() for _ in range(num)]
    for i, j in zip(rows, cols, strict=True):
        nbrs[int(i)].add(int(j))
        nbrs[int(j)].add(int(i))
    colour = np.full(num, -1)
    for v in range(num):
        used = {colour[u] for u in nbrs[v] if colour[u] >= 0}
        c = 0
        while c in used:
            c += 1
        colour[v] = c
    return [np.nonzero(colour == c)[0] for c in range(colour.max() + 1)]


class ErrorAwareProgrammer:
    """DAC codes that realise a target unitary on a characterised chip (see module doc).

    ``twin`` holds the learned per-device parameters (e.g. ``MeshCharacterizer.twin_params()``),
    ``design`` the data sheet (shifter law, DAC). ``compensate_quantization`` switches step 4
    (error-feedback quantisation); ``passes`` re-runs it with the leak of the previous codes.
    ``output_phases``: the outputs are read by power detectors, so candidates are compared up
    to the output phase screen (:func:`calibration.twin.gain_matched_error`).
    """

    def __init__(self, twin: TwinParams, layout: MeshLayout, design: DeviceParams, *,
                 gauss_newton_iterations: int = 15, sweeps: int = 4,
                 compensate_quantization: bool = True, passes: int = 2,
                 damping: float = 0.01, code_window: int = 3, output_phases: bool = False):
        self.output_phases = output_phases
        self.twin = twin
        self.layout = layout
        self.design = design
        self.gauss_newton_iterations = gauss_newton_iterations
        self.sweeps = sweeps
        self.compensate_quantization = compensate_quantization
        self.passes = passes
        self.damping = damping
        self.code_window = code_window
        self._rows, self._cols = (x.numpy() for x in twin.pairs)
        self._xt = twin.crosstalk.numpy()
        self._gain = 1.0 + twin.gain_rel.numpy()
        self._off = twin.offset_rad.numpy()
        self._classes = _colouring(len(self._off), self._rows, self._cols)
        self._rows_of = _neighbours_into(len(self._off), self._rows, self._cols, self._xt)
        top = 2 ** design.phase_dac.bits - 1
        self._table = drive_phase_rad(torch.arange(top + 1), design).numpy()
        self._optics = {"arm_ratio": np.asarray(torch.as_tensor(twin.arm_ratio).detach()),
                        "amplitude": np.asarray(torch.as_tensor(twin.amplitude).detach()),
                        "pad_amplitude": float(twin.pad_amplitude)}

    # ------------------------------------------------------------------ steps
    def _leak(self, y: np.ndarray) -> np.ndarray:
        out = np.zeros_like(y)
        np.add.at(out, self._rows, self._xt * y[self._cols])
        return out

    def target_phases(self, U: torch.Tensor) -> np.ndarray:
        """Step 1: realised phases that realise U with the learned couplers."""
        return coupler_corrected_phases(U, self.layout, self.twin.alpha_rad.numpy(),
                                        self.twin.beta_rad.numpy(),
                                        iterations=self.gauss_newton_iterations,
                                        optics=self._optics)

    def codes_for_phases(self, target: np.ndarray) -> np.ndarray:
        """Steps 2–3: codes whose realised phases land nearest ``target`` (mod 2π), shifter by
        shifter, with the crosstalk leak of the current codes (Gauss–Seidel sweeps)."""
        g, off, table = self._gain, self._off, self._table
        codes = np.argmin(np.abs(_wrap(g[:, None] * table[None, :] + off[:, None]
                                       - target[:, None])), 1)
        y = g * table[codes]
        for _ in range(self.sweeps):
            for cls in self._classes:
                leak = self._leak(y)
                real = g[cls, None] * table[None, :] + leak[cls, None] + off[cls, None]
                cost = _wrap(real - target[cls, None]) ** 2
                # the leak a choice puts on its neighbours (already placed) moves them too
                sel = np.isin(self._cols, cls)
                if sel.any():
                    pos = np.searchsorted(cls, self._cols[sel])
                    cur = _wrap(y + leak + off - target)[self._rows[sel]]
                    dy = g[self._cols[sel], None] * table[None, :] - y[self._cols[sel], None]
                    delta = (cur[:, None] + self._xt[sel, None] * dy) ** 2 - cur[:, None] ** 2
                    np.add.at(cost, pos, delta)
                codes[cls] = np.argmin(cost, 1)
                y[cls] = g[cls] * table[codes[cls]]
        return codes

    def _normal_matrix(self, target: np.ndarray, U: torch.Tensor | None = None):
        """(H, a, b, g): Gauss–Newton matrix and Jacobian factors at ``target``, and the
        gain g that best fits T to the unitary being programmed (the aim is g·U)."""
        t, a, b = mesh_jacobian(self.layout, target, self.twin.alpha_rad.numpy(),
                                self.twin.beta_rad.numpy(), **self._optics)
        n = self.layout.n
        gain = 1.0
        if U is not None:
            u = torch.as_tensor(U, dtype=torch.complex128).numpy()
            gain = max(float(np.real(np.vdot(u, t))) / float(np.sum(np.abs(u) ** 2)), 1e-12)
        return gauss_newton_normal(a, b, np.zeros((n, n)))[0], a, b, gain

    def quantize_with_feedback(self, target: np.ndarray, codes: np.ndarray,
                               h: np.ndarray | None = None, passes: int = 1) -> np.ndarray:
        """Step 4: quantise shifters one by one; each rounding error is fed forward to the
        not-yet-quantised shifters through the inverse Gauss–Newton matrix (optimal brain
        surgeon / GPTQ update, Frantar et al. 2022), so later shifters absorb it."""
        g, off, table = self._gain, self._off, self._table
        if h is None:
            h = self._normal_matrix(target)[0]
        # "act order" (GPTQ): the shifters whose rounding costs most go first, so the most
        # others are left to absorb their errors; cost ≈ H_ss · (local phase step)².
        step = g * np.abs(table[np.clip(codes + 1, 0, len(table) - 1)] - table[codes])
        order = np.argsort(-np.diag(h) * step**2, kind="stable")
        ho = h[np.ix_(order, order)]
        ho = ho + self.damping * np.trace(ho) / len(ho) * np.eye(len(ho))
        ratio = _inverse_upper_cholesky(ho)
        ratio /= np.diag(ratio)[:, None]
        rows_of = self._rows_of
        top = len(table) - 1
        steps = np.arange(-self.code_window, self.code_window + 1)
        for _ in range(passes):
            y = g * table[codes]
            leak = self._leak(y)
            q = target[order].copy()
            codes = codes.copy()
            for i, s in enumerate(order):
                # stay on the turn chosen by steps 2–3: another turn would move the phases
                # of already-quantised neighbours through the leak (c·2π ≈ 0.03 rad at
                # c = 0.005)
                cand = np.clip(codes[s] + steps, 0, top)
                err = _wrap(g[s] * table[cand] + leak[s] + off[s] - q[i])
                j = int(np.argmin(np.abs(err)))
                c = int(cand[j])
                q[i + 1:] += err[j] * ratio[i, i + 1:]
                new_y = g[s] * table[c]
                for r, coef in rows_of[s]:
                    leak[r] += coef * (new_y - y[s])
                y[s] = new_y
                codes[s] = c
        return codes

    def polish(self, U: torch.Tensor, target: np.ndarray, codes: np.ndarray,
               max_moves: int | None = None, normal=None) -> np.ndarray:
        """Step 5: greedy ±1-code moves on the linearised twin (coordinate descent on the
        lattice of reachable phases): each move takes the largest decrease of
        ‖e + δ J_s‖² = ‖e‖² + 2δ⟨J_s, e⟩ + δ² H_ss and updates ⟨J, e⟩ by δ H[:, s]."""
        layout, g, table = self.layout, self._gain, self._table
        top = len(table) - 1
        h, a, b, gain = normal if normal is not None else self._normal_matrix(target, U)
        u = gain * torch.as_tensor(U, dtype=torch.complex128).numpy()
        t_now = twin_matrix(layout, drive_phase_rad(torch.as_tensor(codes), self.design),
                            self.twin).numpy()
        r = np.real(-1j * np.sum((a.conj().T @ (t_now - u)) * b.conj(), axis=1))
        hd = np.diag(h)
        codes = codes.copy()
        for _ in range(max_moves or 4 * len(codes)):
            up = g * (table[np.clip(codes + 1, 0, top)] - table[codes])
            dn = g * (table[np.clip(codes - 1, 0, top)] - table[codes])
            gain_up = -(2 * up * r + up**2 * hd)
            gain_dn = -(2 * dn * r + dn**2 * hd)
            s_up, s_dn = int(np.argmax(gain_up)), int(np.argmax(gain_dn))
            if max(gain_up[s_up], gain_dn[s_dn]) <= 1e-15:
                break
            s, d, step = (s_up, up[s_up], 1) if gain_up[s_up] >= gain_dn[s_dn] else \
                (s_dn, dn[s_dn], -1)
            codes[s] += step
            r = r + d * h[:, s]
        return codes

    def twin_error(self, U: torch.Tensor, codes: np.ndarray) -> float:
        """Gain-matched error of ``codes`` on the twin (:func:`gain_matched_error`)."""
        t = twin_matrix(self.layout, drive_phase_rad(torch.as_tensor(codes), self.design),
                        self.twin)
        return float(gain_matched_error(U, t, output_phases=self.output_phases))

    def program(self, U: torch.Tensor, *, target: np.ndarray | None = None,
                codes: np.ndarray | None = None) -> torch.Tensor:
        """DAC codes (S,) for target unitary ``U`` (N, N); ``target`` / ``codes`` reuse the
        results of :meth:`target_phases` / :meth:`codes_for_phases` if already computed."""
        target = self.target_phases(U) if target is None else target
        codes = self.codes_for_phases(target) if codes is None else codes
        if self.compensate_quantization:
            normal = self._normal_matrix(target, U)
            candidates = [codes]
            candidates.append(self.quantize_with_feedback(target, codes, normal[0],
                                                          passes=self.passes))
            candidates.append(self.polish(U, target, candidates[-1], normal=normal))
            errors = [self.twin_error(U, c) for c in candidates]
            codes = candidates[int(np.argmin(errors))]
        return torch.as_tensor(codes, dtype=torch.int64)


def _inverse_upper_cholesky(h: np.ndarray) -> np.ndarray:
    """Upper-triangular R with Rᵀ R = H⁻¹ from one Cholesky and one triangular inverse:
    with P the reversal, P H P = L Lᵀ gives H⁻¹ = (L⁻¹P)ᵀ(L⁻¹P) and R = P L⁻¹ P."""
    low = scipy.linalg.cholesky(h[::-1, ::-1], lower=True)
    inv = scipy.linalg.solve_triangular(low, np.eye(len(h)), lower=True)
    return inv[::-1, ::-1].copy()


def _neighbours_into(num: int, rows: np.ndarray, cols: np.ndarray, vals: np.ndarray):
    """For each source shifter j, the (target i, c_ij) pairs its drive leaks into."""
    out: list[list[tuple[int, float]]] = [[] for _ in range(num)]
    for i, j, c in zip(rows, cols, vals, strict=True):
        out[int(j)].append((int(i), float(c)))
    return out


def _wrap(x: np.ndarray) -> np.ndarray:
    return np.remainder(x + math.pi, TWO_PI) - math.pi
