"""Checked, batched entry points: exp, parallel transport, log/dist and sampled geodesics.

These return result records (`ExpResult`, `LogResult`) that report failures per trajectory;
the manifold methods (``manifold.exp``, ``.log``, ``.dist``, ...) wrap them, put NaN where a
solve failed and emit a `GeodesicWarning`.
"""

from __future__ import annotations

import warnings

import torch

from kahlergeom._checks import check_positive_int, check_same_shape
from kahlergeom.geodesics._equations import connection_of, geodesic_rhs, inside_fn
from kahlergeom.geodesics._ode import dopri5
from kahlergeom.geodesics._solvers import (
    Dopri5,
    EnergyMinimisation,
    ExpResult,
    GeodesicSolver,
    LogResult,
)
from kahlergeom.wirtinger._ddbar import from_real, to_real


class GeodesicWarning(RuntimeWarning):
    """Some geodesic solves failed; their outputs are NaN (see the result objects)."""


def _flat_pair(manifold, z, v, name):
    manifold.check_point(z, "z")
    check_same_shape(z, v, name)
    z, v = torch.broadcast_tensors(z, v)
    batch = z.shape[:-1]
    n = manifold.n
    return z.reshape(-1, n), v.reshape(-1, n), batch


def _check_integrator(integrator):
    if integrator is None:
        return Dopri5()
    if not isinstance(integrator, Dopri5):
        raise ValueError(
            f"integrator must be a kahlergeom.geodesics.Dopri5; got {type(integrator).__name__}."
        )
    return integrator


def _check_solver(solver):
    if solver is None:
        return EnergyMinimisation()
    if not isinstance(solver, GeodesicSolver):
        raise ValueError(
            "solver must be a kahlergeom.geodesics.GeodesicSolver (e.g. EnergyMinimisation() or "
            f"Shooting()); got {type(solver).__name__}."
        )
    return solver


def _integrate(manifold, z, v, V, integrator, t_eval=None):
    rtol, atol = integrator.tolerances(z.real.dtype)
    parts = [to_real(z), to_real(v)] + ([to_real(V)] if V is not None else [])
    return dopri5(
        geodesic_rhs(manifold, transport=V is not None),
        torch.cat(parts, -1),
        rtol=rtol,
        atol=atol,
        max_steps=integrator.max_steps,
        inside=inside_fn(manifold),
        t_eval=t_eval,
    )


def _exp_result(manifold, res, batch, transport: bool) -> ExpResult:
    n = manifold.n
    y = res.y
    return ExpResult(
        point=from_real(y[:, : 2 * n]).reshape(*batch, n),
        velocity=from_real(y[:, 2 * n : 4 * n]).reshape(*batch, n),
        success=res.success.reshape(batch),
        status=res.status.reshape(batch),
        reasons=res.reasons(),
        n_steps=res.n_steps.reshape(batch),
        connection=connection_of(manifold),
        transported=from_real(y[:, 4 * n :]).reshape(*batch, n) if transport else None,
    )


def exp(manifold, z, v, *, integrator: Dopri5 | None = None) -> ExpResult:
    r"""Geodesic from ``z`` with initial velocity ``v``, integrated to t = 1.

    Solves the geodesic equation of ``manifold``'s connection (`connection_of`) with the
    adaptive `Dopri5` integrator, batched over the broadcast shape of ``z`` and ``v``
    ``(..., n)``. Trajectories that leave the domain, whose step underflows or that exceed
    ``max_steps`` are reported in the result (``success``, ``status``), not raised.
    """
    integrator = _check_integrator(integrator)
    zf, vf, batch = _flat_pair(manifold, z, v, "v")
    res = _integrate(manifold, zf, vf, None, integrator)
    return _exp_result(manifold, res, batch, transport=False)


def transport(manifold, z, u, v, *, integrator: Dopri5 | None = None) -> ExpResult:
    r"""Parallel-transport ``v`` along the geodesic $t \mapsto \exp_z(t u)$, t ∈ [0, 1].

    Kähler: $\dot V_l + \Gamma^l_{ab}\dot z_a V_b = 0$; Levi-Civita: the real analogue.
    Returns an `ExpResult` whose ``transported`` holds V(1).
    """
    integrator = _check_integrator(integrator)
    manifold.check_point(z, "z")
    check_same_shape(z, u, "u")
    check_same_shape(z, v, "v")
    z, u, v = torch.broadcast_tensors(z, u, v)
    batch = z.shape[:-1]
    n = manifold.n
    res = _integrate(manifold, z.reshape(-1, n), u.reshape(-1, n), v.reshape(-1, n), integrator)
    return _exp_result(manifold, res, batch, transport=True)


def solve_log(manifold, z, w, *, solver: GeodesicSolver | None = None) -> LogResult:
    """Boundary-value solve between ``z`` and ``w`` ``(..., n)`` (broadcast), batched.

    Default solver: `EnergyMinimisation` (three initial curves, refined by `Shooting`).
    Returns a `LogResult` with per-pair ``converged``; nothing is raised for non-convergence.
    """
    solver = _check_solver(solver)
    manifold.check_point(w, "w")
    zf, wf, batch = _flat_pair(manifold, z, w, "w")
    r = solver.solve(manifold, zf, wf)
    n = manifold.n
    return LogResult(
        velocity=r.velocity.reshape(*batch, n),
        length=r.length.reshape(batch),
        converged=r.converged.reshape(batch),
        residual=r.residual.reshape(batch),
        candidate_lengths=r.candidate_lengths.reshape(*batch, -1),
        connection=r.connection,
        solver=r.solver,
    )


def sample_geodesic(
    manifold,
    z,
    v,
    n_points: int,
    *,
    integrator: Dopri5 | None = None,
) -> tuple[torch.Tensor, ExpResult]:
    """Points of $t \\mapsto \\exp_z(t v)$ at ``n_points`` equally spaced t in [0, 1].

    Returns ``(points (..., n_points, n), ExpResult)``; points are NaN beyond a failure.
    """
    check_positive_int(n_points, "n_points", minimum=2)
    integrator = _check_integrator(integrator)
    zf, vf, batch = _flat_pair(manifold, z, v, "v")
    t = torch.linspace(0, 1, n_points, dtype=zf.real.dtype, device=zf.device)
    res = _integrate(manifold, zf, vf, None, integrator, t_eval=t)
    n = manifold.n
    pts = from_real(res.ys[..., : 2 * n]).reshape(*batch, n_points, n)
    return pts, _exp_result(manifold, res, batch, transport=False)


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
