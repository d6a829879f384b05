"""PDE benchmarks with exact or trusted references, hard-constraint ansätze and residuals.

Each PDE is registered under the ``pde:`` name a config uses. A PDE supplies
- ``sample(n, generator)``: uniform collocation points (n, d) in its domain;
- ``constrain(z, nn)``: the jet of u = g + h·NN from the network's jet (product rule,
  g and h analytic, see ``jet.affine_ansatz``); a PDE with ``outputs`` > 1 gets and returns
  channel-first jets (C, ..., N) (``derivatives.network_jet``);
- ``residual(z, u)``: the PDE residuals from u's jet (leading batch dims kept): one per
  point (..., N), or ``outputs``-many stacked ones (..., k·N) for a first-order system;
- ``evaluation_grid()``: a fixed test grid with the reference solution.
Coordinates are the columns of z, in the order of ``coord_names``.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass
from functools import cached_property
from typing import ClassVar

import numpy as np
import pydantic
import scipy.sparse as sp
import scipy.sparse.linalg as spla
import torch
from scipy.special import ndtr, roots_hermite

from photonic.textutil import did_you_mean

from .jet import Jet, affine_ansatz

__all__ = [
    "PDE",
    "PDE_REGISTRY",
    "EvalGrid",
    "Burgers",
    "BlackScholes",
    "HJB",
    "Darcy",
    "build_pde",
    "burgers_exact",
    "black_scholes_call",
    "darcy_coefficient_cells",
    "solve_darcy_fv",
]


class _Params(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="forbid", frozen=True)


@dataclass(frozen=True)
class EvalGrid:
    """Fixed test points (M, d), their axes for reports, grid shape, and the reference u."""

    points: np.ndarray
    axes: dict[str, np.ndarray]
    shape: tuple[int, ...]
    u_exact: np.ndarray


class PDE(ABC):
    """A PDE benchmark. Subclasses set ``name``, ``coord_names``, ``bounds`` and ``Params``."""

    name: ClassVar[str]
    coord_names: ClassVar[tuple[str, ...]]
    Params: ClassVar[type[_Params]]

    def __init__(self, params: _Params):
        self.params = params

    @property
    def dim(self) -> int:
        return len(self.coord_names)

    @property
    def hess_dims(self) -> tuple[int, ...]:
        """Coordinates whose second derivatives the residual uses."""
        return (0,)

    #: network outputs the residual uses (one: the scalar NN of the ansatz)
    outputs: ClassVar[int] = 1

    #: (coordinate, +1 or −1): the time coordinate and the direction information travels
    #: from the initial (+1) or terminal (−1) condition; None for a steady problem
    causal_axis: ClassVar[tuple[int, int] | None] = None

    #: axis labels with units, by coordinate name and "u" (the solution); a name not
    #: listed is a dimensionless (scaled) variable
    units: ClassVar[dict[str, str]] = {}

    def label(self, name: str) -> str:
        """Axis label of coordinate ``name`` (or of the solution, "u"), with its unit."""
        return self.units.get(name, f"{name} (dimensionless)")

    @property
    @abstractmethod
    def bounds(self) -> np.ndarray:
        """(d, 2) array of [low, high] per coordinate."""

    def sample(self, n: int, generator: torch.Generator, dtype=torch.float64) -> torch.Tensor:
        lo = torch.as_tensor(self.bounds[:, 0], dtype=dtype)
        hi = torch.as_tensor(self.bounds[:, 1], dtype=dtype)
        r = torch.rand(n, self.dim, generator=generator, dtype=dtype)
        return lo + (hi - lo) * r

    @abstractmethod
    def ansatz_terms(self, z: torch.Tensor) -> tuple[Jet, Jet]:
        """Jets of g and h in u = g + h·NN at points z (N, d)."""

    def constrain(self, z: torch.Tensor, nn: Jet) -> Jet:
        g, h = self.ansatz_terms(z)
        return affine_ansatz(g, h, nn)

    def constrain_value(self, z: torch.Tensor, nn_value: torch.Tensor) -> torch.Tensor:
        g, h = self.ansatz_terms(z)
        return g.value + h.value * nn_value

    @abstractmethod
    def residual(self, z: torch.Tensor, u: Jet) -> torch.Tensor:
        """Residuals (..., N), or (..., k·N) for a first-order system."""

    @abstractmethod
    def evaluation_grid(self) -> EvalGrid: ...


PDE_REGISTRY: dict[str, type[PDE]] = {}


def _register(cls: type[PDE]) -> type[PDE]:
    PDE_REGISTRY[cls.name] = cls
    return cls


def build_pde(name: str, params: dict | None = None) -> PDE:
    """Look up a PDE by its ``pde:`` name and validate its parameters."""
    if name not in PDE_REGISTRY:
        raise ValueError(
            f"pde: unknown PDE {name!r}{did_you_mean(name, PDE_REGISTRY)} Valid choices: "
            f"{sorted(PDE_REGISTRY)}"
        )
    cls = PDE_REGISTRY[name]
    return cls(cls.Params(**(params or {})))


def _const(z: torch.Tensor, value: float = 0.0) -> torch.Tensor:
    return torch.full(z.shape[:-1], value, dtype=z.dtype)


# ----------------------------------------------------------------------------- Burgers
def burgers_exact(
    x: np.ndarray, t: np.ndarray, *, nu: float = 0.01 / np.pi, num_nodes: int = 400
) -> np.ndarray:
    """Exact solution of u_t + u u_x = ν u_xx, u(x, 0) = −sin(πx), u(±1, t) = 0.

    Cole–Hopf (Basdevant et al. 1986, Comput. Fluids 14, eq. 9): with η = 2√(νt)·z,
        u = −∫ sin(π(x−η)) f(x−η) e^{−z²} dz / ∫ f(x−η) e^{−z²} dz,
        f(y) = exp(−cos(πy) / (2πν)),
    evaluated by ``num_nodes``-point Gauss–Hermite quadrature. The exponent is shifted by
    its maximum per point (log-sum-exp) since f spans e^{±50} for ν = 0.01/π.
    """
    x, t = np.broadcast_arrays(np.asarray(x, float), np.asarray(t, float))
    z, w = roots_hermite(num_nodes)
    eta = 2.0 * np.sqrt(nu * t)[..., None] * z
    y = x[..., None] - eta
    expo = -np.cos(np.pi * y) / (2.0 * np.pi * nu)
    expo = expo - expo.max(axis=-1, keepdims=True)
    weights = w * np.exp(expo)
    return -(weights * np.sin(np.pi * y)).sum(-1) / weights.sum(-1)


@_register
class Burgers(PDE):
    """u_t + u u_x − ν u_xx = 0 on x ∈ [−1, 1], t ∈ [0, 1]; u = −sin(πx) + (1−x²)·t·NN."""

    name = "burgers"
    coord_names = ("x", "t")
    causal_axis = (1, 1)  # from the initial condition at t = 0

    class Params(_Params):
        nu: float = pydantic.Field(0.01 / math.pi, gt=0)
        grid_x: int = pydantic.Field(256, ge=2)
        grid_t: int = pydantic.Field(101, ge=2)

    @property
    def bounds(self) -> np.ndarray:
        return np.array([[-1.0, 1.0], [0.0, 1.0]])

    def ansatz_terms(self, z):
        x, t = z[..., 0], z[..., 1]
        zero = torch.zeros_like(x)
        s, c = torch.sin(math.pi * x), torch.cos(math.pi * x)
        g = Jet(
            value=-s,
            grad=torch.stack([-math.pi * c, zero], -1),
            hess_diag=torch.stack([math.pi**2 * s, zero], -1),
        )
        h = Jet(
            value=(1 - x * x) * t,
            grad=torch.stack([-2 * x * t, 1 - x * x], -1),
            hess_diag=torch.stack([-2 * t, zero], -1),
        )
        return g, h

    def residual(self, z, u):
        return u.grad[..., 1] + u.value * u.grad[..., 0] - self.params.nu * u.hess_diag[..., 0]

    @cached_property
    def _grid(self) -> EvalGrid:
        x = np.linspace(-1, 1, self.params.grid_x)
        t = np.linspace(0, 1, self.params.grid_t)
        X, T = np.meshgrid(x, t, indexing="ij")
        u = burgers_exact(X, T, nu=self.params.nu)
        pts = np.stack([X.ravel(), T.ravel()], 1)
        return EvalGrid(pts, {"x": x, "t": t}, X.shape, u.ravel())

    def evaluation_grid(self):
        return self._grid


# ----------------------------------------------------------------------- Black–Scholes
def black_scholes_call(
    S: np.ndarray, tau: np.ndarray, *, strike: float, rate: float, vol: float
) -> np.ndarray:
    """European call price (Black & Scholes 1973) at spot S with time to maturity τ ≥ 0."""
    S, tau = np.broadcast_arrays(np.atleast_1d(np.asarray(S, float)), np.asarray(tau, float))
    out = np.maximum(S - strike, 0.0)
    m = (tau > 0) & (S > 0)
    st = vol * np.sqrt(tau[m])
    d1 = (np.log(S[m] / strike) + (rate + 0.5 * vol**2) * tau[m]) / st
    out[m] = S[m] * ndtr(d1) - strike * np.exp(-rate * tau[m]) * ndtr(d1 - st)
    return out


def _bachelier_call(s: torch.Tensor, tau: torch.Tensor, strike: float, normal_vol: float):
    """Undiscounted call under a normal (Bachelier) model and its derivatives.

    g = (s−k)Φ(d) + wφ(d) with w = σ_n√τ, d = (s−k)/w, which solves g_τ = ½σ_n² g_ss
    with g(s, 0) = max(s−k, 0). Returns (g, g_s, g_ss, g_τ, g_ττ); at τ = 0 the pay-off
    with zero derivatives (its kink lies on the terminal line, never collocated).
    """
    live = tau > 0
    w = normal_vol * torch.sqrt(torch.where(live, tau, torch.ones_like(tau)))
    d = (s - strike) / w
    pdf = torch.exp(-0.5 * d * d) / math.sqrt(2 * math.pi)
    cdf = torch.special.ndtr(d)
    g_ss = pdf / w
    g_tau = 0.5 * normal_vol**2 * g_ss
    g_tautau = normal_vol**4 * (d * d - 1) * pdf / (4 * w**3)
    zero = torch.zeros_like(s)
    payoff = torch.clamp(s - strike, min=0)
    return (torch.where(live, (s - strike) * cdf + w * pdf, payoff),
            torch.where(live, cdf, (s > strike).to(s.dtype)),
            torch.where(live, g_ss, zero), torch.where(live, g_tau, zero),
            torch.where(live, g_tautau, zero))


@_register
class BlackScholes(PDE):
    """European call in scaled variables s = S/S_max, û = V/S_max, t ∈ [0, T = 1]:
    û_t + ½v²s²û_ss + r s û_s − r û = 0 (the equation is invariant under this scaling).

    Ansatz û = g + s(1−s)(1−t)·NN. g is the normal-model (Bachelier) call of normal
    volatility σ_n = v·k at the strike k = K/S_max, τ = 1 − t, corrected linearly in s so
    that g(0, t) = 0 and g(1, t) = 1 − k e^{−rτ}: it meets the terminal pay-off exactly and,
    unlike the pay-off itself, is smooth for t < T. With the pay-off's kink in g, its
    curvature ½v²s²δ(s−k) — the source of the option's time value — lies on a null set
    that uniform collocation never sees, and the trained network stays at g's error.
    g is an approximation (rel. L2 ≈ 0.016 on the test grid), not the reference; the
    network learns the remainder.
    """

    name = "blackscholes"
    coord_names = ("s", "t")
    causal_axis = (1, -1)  # from the terminal pay-off at t = T
    units = {"s": "s = S/S_max (dimensionless)", "t": "t [years]",
             "u": "û = V/S_max (dimensionless)"}

    class Params(_Params):
        vol: float = pydantic.Field(0.2, gt=0)
        rate: float = pydantic.Field(0.05, ge=0)
        strike: float = pydantic.Field(100.0, gt=0)
        s_max: float = pydantic.Field(200.0, gt=0)
        grid_s: int = pydantic.Field(101, ge=2)
        grid_t: int = pydantic.Field(101, ge=2)

    @property
    def bounds(self):
        return np.array([[0.0, 1.0], [0.0, 1.0]])

    def ansatz_terms(self, z):
        p = self.params
        s, t = z[..., 0], z[..., 1]
        tau = 1 - t
        k = p.strike / p.s_max
        sn = p.vol * k
        b, b_s, b_ss, b_t, b_tt = _bachelier_call(s, tau, k, sn)
        b0, _, _, b0_t, b0_tt = _bachelier_call(torch.zeros_like(s), tau, k, sn)
        b1, _, _, b1_t, b1_tt = _bachelier_call(torch.ones_like(s), tau, k, sn)
        disc = torch.exp(-p.rate * tau)
        # c = 1 − k e^{−rτ}, the s = 1 boundary value; derivatives in τ
        c, c_t, c_tt = 1 - k * disc, k * p.rate * disc, -k * p.rate**2 * disc
        g_tau = b_t - (1 - s) * b0_t + s * (c_t - b1_t)
        g = Jet(
            value=b - (1 - s) * b0 + s * (c - b1),
            grad=torch.stack([b_s + b0 + c - b1, -g_tau], -1),
            hess_diag=torch.stack([b_ss, b_tt - (1 - s) * b0_tt + s * (c_tt - b1_tt)], -1),
        )
        zero = torch.zeros_like(s)
        h = Jet(
            value=s * (1 - s) * tau,
            grad=torch.stack([(1 - 2 * s) * tau, -s * (1 - s)], -1),
            hess_diag=torch.stack([-2 * tau, zero], -1),
        )
        return g, h

    def residual(self, z, u):
        p = self.params
        s = z[..., 0]
        return (
            u.grad[..., 1]
            + 0.5 * p.vol**2 * s * s * u.hess_diag[..., 0]
            + p.rate * s * u.grad[..., 0]
            - p.rate * u.value
        )

    @cached_property
    def _grid(self):
        p = self.params
        s = np.linspace(0, 1, p.grid_s)
        t = np.linspace(0, 1, p.grid_t)
        Sg, Tg = np.meshgrid(s, t, indexing="ij")
        v = black_scholes_call(
            Sg * p.s_max, 1.0 - Tg, strike=p.strike, rate=p.rate, vol=p.vol
        ) / p.s_max
        return EvalGrid(np.stack([Sg.ravel(), Tg.ravel()], 1), {"s": s, "t": t}, Sg.shape,
                        v.ravel())

    def evaluation_grid(self):
        return self._grid


# ------------------------------------------------------------------------------- HJB
@_register
class HJB(PDE):
    """u_t + Δ_x u − c‖∇_x u‖² + 2 = 0, x ∈ [0, 1]^20, t ∈ [0, 1], u(x, 1) = Σx_i, c = 0.05.

    Exact u = Σx_i + 1 − t (u_t = −1, Δu = 0, c‖∇u‖² = 20c = 1). Ansatz u = Σx_i + (1−t)·NN.
    Coordinates: x_1 … x_n then t.
    """

    name = "hjb"

    class Params(_Params):
        space_dim: int = pydantic.Field(20, ge=1)
        coef: float = 0.05
        num_test_points: int = pydantic.Field(2000, ge=1)
        test_seed: int = 1234

    def __init__(self, params):
        super().__init__(params)
        n = params.space_dim
        if abs(params.coef * n - 1.0) > 1e-12:
            raise ValueError(
                f"pde_params.coef: the closed form u = Σx + 1 − t needs coef·space_dim = 1, "
                f"got coef={params.coef}, space_dim={n}; set coef to {1.0 / n}"
            )

    @property
    def coord_names(self):  # type: ignore[override]
        return tuple(f"x{i + 1}" for i in range(self.params.space_dim)) + ("t",)

    @property
    def causal_axis(self):  # type: ignore[override]
        return (self.params.space_dim, -1)  # from the terminal condition at t = 1

    @property
    def bounds(self):
        return np.array([[0.0, 1.0]] * (self.params.space_dim + 1))

    def ansatz_terms(self, z):
        n = self.params.space_dim
        t = z[..., n]
        one = torch.ones_like(z)
        one[..., n] = 0.0
        g = Jet(z[..., :n].sum(-1), one, torch.zeros_like(z))
        hg = torch.zeros_like(z)
        hg[..., n] = -1.0
        h = Jet(1 - t, hg, torch.zeros_like(z))
        return g, h

    @property
    def hess_dims(self):
        return tuple(range(self.params.space_dim))

    def residual(self, z, u):
        n = self.params.space_dim
        gx = u.grad[..., :n]
        return (
            u.grad[..., n]
            + u.hess_diag[..., :n].sum(-1)
            - self.params.coef * (gx * gx).sum(-1)
            + 2.0
        )

    @cached_property
    def _grid(self):
        p = self.params
        rng = np.random.default_rng(p.test_seed)
        pts = rng.uniform(size=(p.num_test_points, p.space_dim + 1))
        u = pts[:, :-1].sum(1) + 1 - pts[:, -1]
        return EvalGrid(pts, {"x": pts[:, :-1], "t": pts[:, -1]}, (p.num_test_points,), u)

    def evaluation_grid(self):
        return self._grid


# ------------------------------------------------------------------------------ Darcy
def darcy_coefficient_cells(
    *, num_cells: int, seed: int, high: float = 12.0, low: float = 3.0, alpha: float = 2.0,
    tau: float = 3.0,
) -> np.ndarray:
    """Piecewise-constant coefficient on a num_cells² grid of [0, 1]², as in the FNO data set
    (Li et al. 2021, arXiv 2010.08895, §5.2): a = high where ψ ≥ 0 else low, with ψ a Gaussian
    random field N(0, (−Δ + τ²)^{−α}) (Neumann cosine modes), sampled from ``seed``.
    Returns a[i, j] for the cell [i/n, (i+1)/n] × [j/n, (j+1)/n].
    """
    rng = np.random.default_rng(seed)
    n_modes = num_cells
    k = np.arange(n_modes)
    K1, K2 = np.meshgrid(k, k, indexing="ij")
    amp = (np.pi**2 * (K1**2 + K2**2) + tau**2) ** (-alpha / 2)
    amp[0, 0] = 0.0
    xi = rng.standard_normal((n_modes, n_modes)) * amp
    c = (np.arange(num_cells) + 0.5) / num_cells
    basis = np.cos(np.pi * np.outer(k, c))  # (modes, cells)
    psi = basis.T @ xi @ basis
    return np.where(psi >= 0, high, low)


def solve_darcy_fv(coef: np.ndarray, rhs: np.ndarray) -> np.ndarray:
    """Cell-centred finite-volume solution of −∇·(a∇u) = f on [0, 1]², u = 0 on the boundary.

    coef, rhs: (M, M) values at cell centres ((i+½)/M, (j+½)/M). Face transmissibilities use
    the harmonic mean of the neighbouring cells (exact flux continuity for piecewise-constant
    a); boundary faces use the half-cell distance to the wall. Second-order accurate for
    smooth a and u. Returns u at the cell centres.
    """
    M = coef.shape[0]
    if coef.shape != (M, M) or rhs.shape != (M, M):
        raise ValueError(f"coef and rhs must both be (M, M), got {coef.shape}, {rhs.shape}")
    h2 = (1.0 / M) ** 2
    idx = np.arange(M * M).reshape(M, M)
    diag = np.zeros((M, M))
    rows, cols, vals = [], [], []
    for axis in (0, 1):
        a1 = np.take(coef, np.arange(M - 1), axis=axis)
        a2 = np.take(coef, np.arange(1, M), axis=axis)
        tr = 2 * a1 * a2 / (a1 + a2) / h2
        i1 = np.take(idx, np.arange(M - 1), axis=axis).ravel()
        i2 = np.take(idx, np.arange(1, M), axis=axis).ravel()
        rows += [i1, i2]
        cols += [i2, i1]
        vals += [-tr.ravel(), -tr.ravel()]
        lo = [slice(None)] * 2
        hi = [slice(None)] * 2
        lo[axis], hi[axis] = slice(0, M - 1), slice(1, M)
        diag[tuple(lo)] += tr
        diag[tuple(hi)] += tr
        for edge in (0, M - 1):
            sl = [slice(None)] * 2
            sl[axis] = edge
            diag[tuple(sl)] += 2 * coef[tuple(sl)] / h2
    rows.append(idx.ravel())
    cols.append(idx.ravel())
    vals.append(diag.ravel())
    A = sp.csc_matrix(
        (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(M * M,) * 2
    )
    return spla.spsolve(A, rhs.ravel()).reshape(M, M)


@_register
class Darcy(PDE):
    """−∇·(a∇u) = 1 on [0, 1]², u = 0 on the boundary, as the first-order system
    q + a∇u = 0, ∇·q = 1 (least squares, FOSLS: Cai, Lazarov, Manteuffel & McCormick 1994,
    SIAM J. Numer. Anal. 31). The network has three outputs (NN_u, q_x, q_y) and
    u = x y (x−1)(y−1)·NN_u; the residual per point is
    ((q + a∇u)/√a, ∇·q − 1) — first derivatives only and no ∇a, so the coefficient's
    jumps enter as values of a, never as interface terms ∝ 1/``smoothing``.

    a is piecewise constant on ``num_cells``² cells (``darcy_coefficient_cells``), mollified by
    a Gaussian of width ``smoothing``; the reference solves the same problem with
    ``solve_darcy_fv`` on a ``reference_cells``² grid.
    """

    name = "darcy"
    coord_names = ("x", "y")
    outputs = 3

    class Params(_Params):
        seed: int = 0
        num_cells: int = pydantic.Field(8, ge=1)
        smoothing: float = pydantic.Field(0.02, gt=0)
        reference_cells: int = pydantic.Field(256, ge=8)
        eval_stride: int = pydantic.Field(4, ge=1)

    def __init__(self, params):
        super().__init__(params)
        self.cells = darcy_coefficient_cells(num_cells=params.num_cells, seed=params.seed)
        n = params.num_cells
        edges = np.arange(n + 1) / n
        edges[0], edges[-1] = -np.inf, np.inf  # the outer cells extend: no mass leaks out
        self._edges = torch.as_tensor(edges)
        self._cells_t = torch.as_tensor(self.cells)

    def _axis_weights(self, x: torch.Tensor) -> torch.Tensor:
        """Cell weights P_i(x) = Φ((e_{i+1}−x)/ε) − Φ((e_i−x)/ε), shape (N, n)."""
        arg = (self._edges.to(x.dtype)[None, :] - x[:, None]) / self.params.smoothing
        cdf = torch.special.ndtr(arg)
        return cdf[:, 1:] - cdf[:, :-1]

    def coefficient(self, z: torch.Tensor) -> torch.Tensor:
        """Mollified a at points z (N, 2)."""
        px, py = self._axis_weights(z[:, 0]), self._axis_weights(z[:, 1])
        return torch.einsum("ni,ij,nj->n", px, self._cells_t.to(z.dtype), py)

    @property
    def bounds(self):
        return np.array([[0.0, 1.0], [0.0, 1.0]])

    def ansatz_terms(self, z):
        x, y = z[..., 0], z[..., 1]
        zero = torch.zeros_like(z)
        fx, fy = x * (x - 1), y * (y - 1)
        h = Jet(
            fx * fy,
            torch.stack([(2 * x - 1) * fy, fx * (2 * y - 1)], -1),
            torch.stack([2 * fy, 2 * fx], -1),
        )
        return Jet(zero[..., 0], zero, zero), h

    @property
    def hess_dims(self):
        return ()

    def constrain(self, z, nn):
        """Channel-first jet (3, ..., N) of (u, q_x, q_y) from the network's (NN_u, q_x, q_y)."""
        g, h = self.ansatz_terms(z)
        u = affine_ansatz(g, h, Jet(nn.value[0], nn.grad[0], nn.hess_diag[0]))
        return Jet(*(torch.cat([getattr(u, k)[None], getattr(nn, k)[1:]])
                     for k in ("value", "grad", "hess_diag")))

    def constrain_value(self, z, nn_value):
        """u from the network's outputs (..., N, 3)."""
        return super().constrain_value(z, nn_value[..., 0])

    def residual(self, z, u):
        """(..., 3N): (q_x + a u_x)/√a, (q_y + a u_y)/√a and ∇·q − 1 at every point."""
        a = self.coefficient(z)
        ux, uy = u.grad[0][..., 0], u.grad[0][..., 1]
        qx, qy = u.value[1], u.value[2]
        div = u.grad[1][..., 0] + u.grad[2][..., 1]
        sa = a.sqrt()
        return torch.cat([(qx + a * ux) / sa, (qy + a * uy) / sa, div - 1.0], -1)

    @cached_property
    def _grid(self):
        p = self.params
        M = p.reference_cells
        c = (np.arange(M) + 0.5) / M
        X, Y = np.meshgrid(c, c, indexing="ij")
        pts = torch.as_tensor(np.stack([X.ravel(), Y.ravel()], 1))
        a = self.coefficient(pts).numpy().reshape(M, M)
        u = solve_darcy_fv(a, np.ones((M, M)))
        s = slice(p.eval_stride // 2, None, p.eval_stride)
        xs, ys = c[s], c[s]
        Xs, Ys = np.meshgrid(xs, ys, indexing="ij")
        return EvalGrid(np.stack([Xs.ravel(), Ys.ravel()], 1), {"x": xs, "y": ys}, Xs.shape,
                        u[s, s].ravel())

    def evaluation_grid(self):
        return self._grid
