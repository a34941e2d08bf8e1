"""Checked, batched entry points: exp, parallel transport, log/dist and sampled geodesics.

These return result records (`ExpResult`, `LogResult`) that report failures per trajectory;
the manifold methods (``manifold.exp``, ``.log``, ``.dist``, ...) wrap them, put NaN where a
solve failed and emit a `GeodesicWarning`. Each argument is validated once, here.

A manifold is used only through its public protocol: ``n``, ``metric_field``, ``contains``,
``is_kahler``, ``domain_description``, its optional ``check_point`` (a manifold's own point
validation) and its optional ``hadamard`` flag (non-positive curvature on a simply connected
domain).
"""

from __future__ import annotations

import warnings

import torch

from kahlergeom._checks import check_in_domain, check_points, check_positive_int, check_same_shape
from kahlergeom._linalg import from_real, to_real
from kahlergeom.geodesics._bvp import flow, h_norm
from kahlergeom.geodesics._discrete import sample_curve
from kahlergeom.geodesics._equations import connection_of, geodesic_rhs, inside_fn
from kahlergeom.geodesics._ode import (
    CONJUGATE_POINT,
    NOT_CONVERGED,
    SPEED_DRIFT,
    SUCCESS,
    Dopri5,
    Integrator,
    reasons,
)
from kahlergeom.geodesics._results import ExpResult, LogResult
from kahlergeom.geodesics._solvers import EnergyMinimisation, GeodesicSolver

#: Relative change of the speed h(ż, ż)^½ along a geodesic (it is conserved) above which a
#: trajectory is reported as ``speed_drift``: a healthy integration conserves it to about
#: 1e-9 (float64); near the edge of a domain or of the floating-point range the metric is
#: evaluated without correct digits and the end point is meaningless.
SPEED_DRIFT_RTOL = {torch.float64: 1e-6, torch.float32: 1e-3}


class GeodesicWarning(RuntimeWarning):
    """Some geodesic solves failed; their outputs are NaN (see the result objects)."""


# ---------------------------------------------------------------------------------------------
# Validation (once per argument)
# ---------------------------------------------------------------------------------------------
def check_point(manifold, z, name):
    check = getattr(manifold, "check_point", None)
    if check is not None:
        check(z, name)
    else:
        check_points(z, manifold.n, name)
        check_in_domain(manifold, z, name)
    return z


def check_second_point(z, w, name):
    """``w`` already checked as a point: only its dtype and broadcast against ``z``."""
    if w.dtype != z.dtype:
        raise ValueError(f"{name} must have the dtype of z ({z.dtype}); got {w.dtype}.")
    try:
        torch.broadcast_shapes(z.shape, w.shape)
    except RuntimeError:
        raise ValueError(
            f"{name} of shape {tuple(w.shape)} does not broadcast with z's shape {tuple(z.shape)}."
        ) from None


def check_integrator(integrator):
    if integrator is None:
        return Dopri5()
    if not isinstance(integrator, Integrator):
        raise ValueError(
            "integrator must be a kahlergeom.geodesics.Integrator (e.g. Dopri5() or RK4()); got "
            f"{type(integrator).__name__}."
        )
    return integrator


def check_solver(solver, manifold=None):
    """The solver to use: ``solver``, else the manifold's ``default_solver`` (an optional
    protocol attribute, e.g. `FisherManifold`'s `DiscreteEnergy`), else `EnergyMinimisation`."""
    if solver is None:
        default = getattr(manifold, "default_solver", None)
        return default if isinstance(default, GeodesicSolver) else EnergyMinimisation()
    if not isinstance(solver, GeodesicSolver):
        raise ValueError(
            "solver must be a kahlergeom.geodesics.GeodesicSolver (e.g. EnergyMinimisation() or "
            f"Shooting()); got {type(solver).__name__}."
        )
    return solver


def _flatten(n, *tensors):
    out = torch.broadcast_tensors(*tensors)
    batch = out[0].shape[:-1]
    return [t.reshape(-1, n) for t in out], batch


def _certificate(manifold) -> str:
    return "global" if bool(getattr(manifold, "hadamard", False)) else "local"


# ---------------------------------------------------------------------------------------------
# Initial-value problems
# ---------------------------------------------------------------------------------------------
def _speed_ok(manifold, z, v, end, end_v):
    """bool ``(B,)``: the speed is conserved to `SPEED_DRIFT_RTOL`."""
    s0 = h_norm(manifold.metric_field(z), v)
    safe_end = torch.where(torch.isfinite(end), end, z)
    s1 = h_norm(manifold.metric_field(safe_end), end_v)
    rtol = SPEED_DRIFT_RTOL[z.real.dtype]
    return (s1 - s0).abs() <= rtol * s0.clamp_min(torch.finfo(s0.dtype).tiny)


def _run(manifold, z, v, V, integrator, t_eval=None):
    """Integrate flat batches ``(B, n)``; returns the ODE result and the final status."""
    parts = [to_real(z), to_real(v)] + ([to_real(V)] if V is not None else [])
    res = integrator.integrate(
        geodesic_rhs(manifold, transport=V is not None, traceable=False),
        torch.cat(parts, -1),
        inside=inside_fn(manifold),
        t_eval=t_eval,
    )
    n = manifold.n
    status = res.status
    if z.shape[0]:
        end, end_v = from_real(res.y[:, : 2 * n]), from_real(res.y[:, 2 * n : 4 * n])
        drift = (status == SUCCESS) & ~_speed_ok(manifold, z, v, end, end_v)
        status = torch.where(drift, SPEED_DRIFT, status)
    return res, status


def _exp_result(manifold, res, status, batch, transport: bool, points=None) -> ExpResult:
    n = manifold.n
    y = res.y
    return ExpResult(
        point=from_real(y[:, : 2 * n]).reshape(*batch, n),
        velocity=from_real(y[:, 2 * n : 4 * n]).reshape(*batch, n),
        success=(status == SUCCESS).reshape(batch),
        status=status.reshape(batch),
        reasons=reasons(status),
        n_steps=res.n_steps.reshape(batch),
        connection=connection_of(manifold),
        transported=from_real(y[:, 4 * n :]).reshape(*batch, n) if transport else None,
        points=points,
    )


def exp(manifold, z, v, *, integrator: Integrator | None = None) -> ExpResult:
    r"""Geodesic from ``z`` with initial velocity ``v``, integrated to t = 1.

    Solves the geodesic equation of ``manifold``'s connection (Kähler or Levi-Civita) with
    ``integrator`` (default `Dopri5`), batched over the broadcast shape of ``z`` and ``v``
    ``(..., n)``. Trajectories that leave the domain, whose step underflows, that exceed
    ``max_steps``, whose speed is not conserved (the edge of the domain or of the
    floating-point range reached: ``speed_drift``) or that reach a point inside the domain
    where the metric field is not finite (``non_finite``) are reported in the result
    (``success``, ``status``), not raised.
    """
    integrator = check_integrator(integrator)
    check_point(manifold, z, "z")
    check_same_shape(z, v, "v")
    (zf, vf), batch = _flatten(manifold.n, z, v)
    res, status = _run(manifold, zf, vf, None, integrator)
    return _exp_result(manifold, res, status, batch, transport=False)


def transport(manifold, z, u, v, *, integrator: Integrator | None = None) -> ExpResult:
    r"""Parallel-transport ``v`` along the geodesic $t \mapsto \exp_z(t u)$, t ∈ [0, 1].

    Kähler: $\dot V_l + \Gamma^l_{ab}\dot z_a V_b = 0$; Levi-Civita: the real analogue.
    Returns an `ExpResult` whose ``transported`` holds V(1).
    """
    integrator = check_integrator(integrator)
    check_point(manifold, z, "z")
    check_same_shape(z, u, "u")
    check_same_shape(z, v, "v")
    return transport_core(manifold, z, u, v, integrator)


def transport_core(manifold, z, u, v, integrator) -> ExpResult:
    """`transport` on validated arguments."""
    (zf, uf, vf), batch = _flatten(manifold.n, z, u, v)
    res, status = _run(manifold, zf, uf, vf, integrator)
    return _exp_result(manifold, res, status, batch, transport=True)


def sample_geodesic(
    manifold,
    z,
    v,
    n_points: int,
    *,
    integrator: Integrator | None = None,
) -> tuple[torch.Tensor, ExpResult]:
    """Points of $t \\mapsto \\exp_z(t v)$ at ``n_points`` equally spaced t in [0, 1].

    Returns ``(points (..., n_points, n), ExpResult)``; points are NaN beyond a failure.
    """
    check_positive_int(n_points, "n_points", minimum=2)
    integrator = check_integrator(integrator)
    check_point(manifold, z, "z")
    check_same_shape(z, v, "v")
    (zf, vf), batch = _flatten(manifold.n, z, v)
    t = torch.linspace(0, 1, n_points, dtype=zf.real.dtype, device=zf.device)
    res, status = _run(manifold, zf, vf, None, integrator, t_eval=t)
    n = manifold.n
    pts = from_real(res.ys[..., : 2 * n]).reshape(*batch, n_points, n)
    return pts, _exp_result(manifold, res, status, batch, transport=False, points=pts)


# ---------------------------------------------------------------------------------------------
# Boundary-value problems
# ---------------------------------------------------------------------------------------------
def solve_log(
    manifold,
    z,
    w,
    *,
    solver: GeodesicSolver | None = None,
    n_points: int | None = None,
    integrator: Integrator | None = None,
) -> LogResult:
    """One boundary-value solve between ``z`` and ``w`` ``(..., n)`` (broadcast), batched.

    Returns a `LogResult` holding everything: initial velocity, length, status (one vocabulary
    with `exp`: ``success``, ``not_converged``, ``conjugate_point``, ...), the conjugate-point
    certificate and, with ``n_points``, the points of the geodesic at that many equally spaced
    times (integrated by ``integrator``, default `Dopri5`). Nothing is raised for
    non-convergence. Default solver: `EnergyMinimisation`. Where the solver leaves
    ``certified`` unset, the returned geodesic is certified here (variational equations).
    """
    solver = check_solver(solver, manifold)
    integrator = check_integrator(integrator)
    if n_points is not None:
        check_positive_int(n_points, "n_points", minimum=2)
    check_point(manifold, z, "z")
    check_point(manifold, w, "w")
    check_second_point(z, w, "w")
    return solve_log_core(manifold, z, w, solver, n_points, integrator)


def solve_log_core(manifold, z, w, solver, n_points, integrator) -> LogResult:
    """`solve_log` on validated arguments."""
    n = manifold.n
    (zf, wf), batch = _flatten(n, z, w)
    if zf.shape[0] == 0:
        r = _empty_result(manifold, zf, solver, n_points)
    else:
        r = solver.solve(manifold, zf, wf)
        r = _complete(manifold, zf, r, integrator, n_points)
    return LogResult(
        velocity=r.velocity.reshape(*batch, n),
        length=r.length.reshape(batch),
        converged=r.converged.reshape(batch),
        residual=r.residual.reshape(batch),
        candidate_lengths=r.candidate_lengths.reshape(*batch, r.candidate_lengths.shape[-1]),
        connection=r.connection,
        solver=r.solver,
        certified=r.certified.reshape(batch),
        status=r.status.reshape(batch),
        certificate=r.certificate,
        points=None if r.points is None else r.points.reshape(*batch, n_points, n),
        discretisation=None if r.discretisation is None else r.discretisation.reshape(batch),
        nodes=None if r.nodes is None else r.nodes.reshape(*batch, *r.nodes.shape[-2:]),
        holomorphic=None if r.holomorphic is None else r.holomorphic.reshape(batch),
    )


def _complete(manifold, z, r: LogResult, integrator, n_points) -> LogResult:
    """Certify (if the solver did not), set status and certificate, add points."""
    ok_v = torch.where(r.converged[:, None], r.velocity, torch.zeros_like(r.velocity))
    points = None
    certified = r.certified
    if certified is None:
        fl = flow(manifold, z, to_real(ok_v), integrator, jacobian=True, n_points=n_points)
        certified = fl.certified & r.converged
        points = fl.points
    elif n_points is not None and r.nodes is not None:  # a discrete curve: sample its spline
        points = to_real(sample_curve(r.nodes, n_points))
    elif n_points is not None:
        points = flow(manifold, z, to_real(ok_v), integrator, n_points=n_points).points
    status = r.status
    if status is None:
        status = torch.where(
            r.converged & certified,
            SUCCESS,
            torch.where(r.converged, CONJUGATE_POINT, NOT_CONVERGED),
        )
    if points is not None:
        points = from_real(points)
    certificate = r.certificate if r.certificate != "local" else _certificate(manifold)
    return LogResult(
        velocity=r.velocity,
        length=r.length,
        converged=r.converged,
        residual=r.residual,
        candidate_lengths=r.candidate_lengths,
        connection=r.connection,
        solver=r.solver,
        certified=certified,
        status=status,
        certificate=certificate,
        points=points,
        discretisation=r.discretisation,
        nodes=r.nodes,
        holomorphic=r.holomorphic,
    )


def _empty_result(manifold, z, solver, n_points) -> LogResult:
    real = torch.zeros(0, dtype=z.real.dtype, device=z.device)
    flag = torch.zeros(0, dtype=torch.bool, device=z.device)
    return LogResult(
        velocity=z.clone(),
        length=real,
        converged=flag,
        residual=real,
        candidate_lengths=real.reshape(0, 1),
        connection=connection_of(manifold),
        solver=solver,
        certified=flag,
        status=torch.zeros(0, dtype=torch.long, device=z.device),
        certificate=_certificate(manifold),
        points=None if n_points is None else z.new_zeros(0, n_points, manifold.n),
    )


# ---------------------------------------------------------------------------------------------
# Helpers of the manifold methods
# ---------------------------------------------------------------------------------------------
def warn_failures(ok: torch.Tensor, what: str, detail: str = "") -> None:
    """Emit a `GeodesicWarning` when some entries of ``ok`` are False."""
    bad = int((~ok).sum())
    if bad:
        warnings.warn(
            f"{what}: {bad} of {ok.numel()} solve(s) failed; their outputs are NaN. {detail}"
            "Inspect kahlergeom.geodesics result objects for per-pair status.",
            GeodesicWarning,
            stacklevel=3,
        )


def nan_where(x: torch.Tensor, ok: torch.Tensor) -> torch.Tensor:
    """``x`` with NaN where ``ok`` (broadcast from the left over trailing dims) is False."""
    mask = ok.reshape(tuple(ok.shape) + (1,) * (x.ndim - ok.ndim))
    return torch.where(mask, x, torch.full_like(x, float("nan")))
