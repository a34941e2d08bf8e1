"""Solver option objects and result records for geodesic problems.

Solvers are small frozen objects (``Shooting(steps=16)``), not strings with option dicts:

* `Dopri5`: the adaptive initial-value integrator used by ``exp``, geodesic sampling,
  parallel transport and the residuals of shooting.
* `GeodesicSolver`: the extension point for boundary-value (``log``) solvers, with
  `Shooting` (Newton on the initial velocity) and `EnergyMinimisation` (discrete curve energy,
  several initial curves, then refined by shooting) — the default.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field

import torch

from kahlergeom._checks import check_positive_int


def _real_dtype(z: torch.Tensor) -> torch.dtype:
    return z.real.dtype


@dataclass(frozen=True)
class Dopri5:
    """Adaptive Dormand–Prince RK5(4) with per-trajectory step control (see `dopri5`).

    Args:
        rtol, atol: tolerances of the local error test; ``None`` picks them from the dtype
            (1e-10 / 1e-10 in float64, 1e-5 / 1e-6 in float32).
        max_steps: cap on accepted plus rejected steps per trajectory.
    """

    rtol: float | None = None
    atol: float | None = None
    max_steps: int = 4000

    def tolerances(self, dtype: torch.dtype) -> tuple[float, float]:
        low = dtype in (torch.float32, torch.complex64)
        rtol = self.rtol if self.rtol is not None else (1e-5 if low else 1e-10)
        atol = self.atol if self.atol is not None else (1e-6 if low else 1e-10)
        return rtol, atol


def default_tol(dtype: torch.dtype) -> float:
    """Default endpoint tolerance of boundary solvers (h-norm of the miss at w)."""
    return 1e-4 if dtype in (torch.float32, torch.complex64) else 1e-8


@dataclass
class ExpResult:
    """Outcome of `kahlergeom.geodesics.exp` (shapes follow the broadcast batch ``(...)``).

    Attributes:
        point: end points ``exp_z(v)`` ``(..., n)`` (last accepted state where it failed).
        velocity: velocity at t = 1 ``(..., n)``.
        success: bool ``(...)``.
        status: int codes ``(...)`` (see `kahlergeom.geodesics.STATUS`: success,
            left_domain, step_underflow, max_steps).
        reasons: counts of each outcome, e.g. ``{"success": 9, "left_domain": 1}``.
        n_steps: accepted steps ``(...)``.
        connection: ``"kahler"`` or ``"levi-civita"``.
        transported: the transported vector at t = 1 ``(..., n)``, or ``None``.
    """

    point: torch.Tensor
    velocity: torch.Tensor
    success: torch.Tensor
    status: torch.Tensor
    reasons: dict
    n_steps: torch.Tensor
    connection: str
    transported: torch.Tensor | None = None


@dataclass
class LogResult:
    """Outcome of a boundary-value solve between z and w (batch ``(...)``).

    Attributes:
        velocity: initial velocity v with ``exp_z(v) ≈ w`` ``(..., n)``.
        length: ``|v|_{G(z)}``, the length of the geodesic found ``(...)``.
        converged: bool ``(...)``: the adaptive endpoint miss ``|exp_z(v) − w|_{G(w)}`` is at
            most the solver's tolerance.
        residual: that endpoint miss ``(...)``.
        candidate_lengths: lengths of every candidate ``(..., S)`` (NaN where it did not
            converge); ``length`` is their minimum.
        connection: ``"kahler"`` or ``"levi-civita"``.
        solver: the solver object that produced it.
    """

    velocity: torch.Tensor
    length: torch.Tensor
    converged: torch.Tensor
    residual: torch.Tensor
    candidate_lengths: torch.Tensor
    connection: str
    solver: GeodesicSolver | None = None


class GeodesicSolver(abc.ABC):
    """A boundary-value solver: implement ``solve(manifold, z, w) -> LogResult``.

    ``z`` and ``w`` arrive validated and flattened to ``(P, n)``; the result is ``(P, ...)``.
    """

    @abc.abstractmethod
    def solve(self, manifold, z: torch.Tensor, w: torch.Tensor) -> LogResult:
        """Solve for initial velocities from z to w, batched over P pairs."""


@dataclass(frozen=True)
class Shooting(GeodesicSolver):
    r"""Newton shooting on $v \mapsto \exp_z(v) - w$.

    Phase A: damped Newton on the fixed-step model $\exp_z$ (``steps`` equal Dormand–Prince
    steps, `rk_fixed`): residual and real 2n×2n Jacobian (central differences, all 4n + 1
    trajectories of all pairs integrated as one batch), per-pair backtracking until the
    residual's h-norm at w decreases. Phase B: the residual from the adaptive `Dopri5`
    ``integrator``, corrected by simplified Newton steps with the last Jacobian (at most three);
    ``converged`` is decided on this adaptive residual.
    Used alone it starts from the straight-line velocity ``v = w − z`` and is local: far pairs
    need `EnergyMinimisation`, which calls it to refine.

    Args:
        steps: fixed steps for the Jacobian (the residual is adaptive regardless).
        max_iter: Newton iterations.
        tol: endpoint tolerance, h-norm at w (``None``: 1e-8 in float64, 1e-4 in float32).
        integrator: the adaptive integrator for residuals.
    """

    steps: int = 16
    max_iter: int = 12
    tol: float | None = None
    integrator: Dopri5 = field(default_factory=lambda: Dopri5(max_steps=1000))

    def __post_init__(self):
        check_positive_int(self.steps, "steps")
        check_positive_int(self.max_iter, "max_iter", minimum=0)

    def solve(self, manifold, z, w):
        from kahlergeom.geodesics._bvp import select_shortest, shooting_refine

        v, conv, res = shooting_refine(self, manifold, z, w, w - z)
        return select_shortest(manifold, z, v[None], conv[None], res[None], self)


@dataclass(frozen=True)
class EnergyMinimisation(GeodesicSolver):
    r"""Discrete curve-energy minimisation, then shooting refinement; the default ``log`` solver.

    Stage 1: a polyline ``z = x_0, x_1, …, x_{K+1} = w`` (``K = nodes`` free interior nodes),
    energy $E = (K+1)\sum_k |x_{k+1}-x_k|^2_{G((x_k+x_{k+1})/2)}$, minimised over the nodes by
    damped Newton (Levenberg–Marquardt on the exact Hessian from ``torch.func``), batched over
    pairs; trial curves leaving the domain are rejected. It starts from ``n_starts`` initial
    curves: the straight segment and segments bent by ``± bend · 4t(1−t) · i(w − z)`` (shrunk
    until they lie in the domain).
    Stage 2 (``refine``, a `Shooting`): Newton shooting from the polyline's initial tangent
    (second-order one-sided difference). The distance is the minimum length over the converged
    candidates (docs/conventions.md § Numerical pitfalls: one start can converge to a longer
    geodesic).

    With ``refine=None`` the result is the polyline alone (``length`` is the polyline length,
    ``converged`` means the energy's Newton iteration converged).

    Args:
        nodes: interior nodes K (≥ 2).
        max_iter: Newton/LM iterations of stage 1.
        n_starts: number of initial curves (1: straight segment only).
        bend: relative amplitude of the bent initial curves.
        refine: the shooting stage, or ``None``.
    """

    nodes: int = 12
    max_iter: int = 40
    n_starts: int = 3
    bend: float = 0.5
    refine: Shooting | None = field(default_factory=Shooting)

    def __post_init__(self):
        check_positive_int(self.nodes, "nodes", minimum=2)
        check_positive_int(self.max_iter, "max_iter", minimum=0)
        check_positive_int(self.n_starts, "n_starts")

    def solve(self, manifold, z, w):
        from kahlergeom.geodesics._bvp import energy_solve

        return energy_solve(self, manifold, z, w)
