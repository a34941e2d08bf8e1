r"""Building blocks of the boundary-value solvers (no solver objects here).

* `flow`: integrate $t \mapsto \exp_z(t v)$ for a batch, optionally with the variational
  equations, which give the Jacobi fields $Y(t) = \partial u(t)/\partial \dot u(0)$ in forward
  mode: $Y(1)$ is the shooting Jacobian, and $\det Y(t) > 0$ on a grid of t ∈ (0, 1] is the
  conjugate-point certificate.
* discrete curve energy of a polyline, initial curves, polyline tangents;
* `pick_shortest`: the shortest certified candidate per pair.

Everything is batched over P pairs ``z, w`` of shape ``(P, n)``; per-pair decisions are masks.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import torch

from kahlergeom._linalg import from_real, real_metric, to_real
from kahlergeom.geodesics._equations import geodesic_rhs, geodesic_variational_rhs, inside_fn
from kahlergeom.geodesics._ode import (
    CONJUGATE_POINT,
    NON_FINITE,
    NOT_CONVERGED,
    SUCCESS,
)

#: Grid of t on which det Y(t) must stay positive. Conjugate crossings are seen on this grid;
#: two crossings of one geodesic closer than 1/CERTIFICATE_GRID in t cancel in the sign and
#: can be missed (generic conjugate points are isolated and of multiplicity one).
CERTIFICATE_GRID = 32


def h_norm(G: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """sqrt(h(v, v)) = sqrt(Re vᵀ G v̄), real ``(...)``."""
    q = torch.einsum("...a,...ab,...b->...", v, G, v.conj()).real
    return q.clamp_min(0).sqrt()


def real_h_norm(GR: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
    """sqrt(rᵀ G_R r) for real vectors ``r`` ``(..., 2n)``."""
    return torch.einsum("...i,...ij,...j->...", r, GR, r).clamp_min(0).sqrt()


@dataclass
class Flow:
    """States of a batch of geodesics ``(Q, ...)`` from `flow`."""

    end: torch.Tensor  # (Q, 2n) real end points
    end_velocity: torch.Tensor  # (Q, 2n)
    status: torch.Tensor  # (Q,) integrator codes
    jacobian: torch.Tensor | None  # (Q, 2n, 2n): ∂u(1)/∂u̇(0)
    certified: torch.Tensor | None  # (Q,) det Y(t) > 0 on the grid
    points: torch.Tensor | None  # (Q, M, 2n) at the requested output times


def flow(
    manifold,
    z: torch.Tensor,
    uv: torch.Tensor,
    integrator,
    *,
    jacobian: bool = False,
    n_points: int | None = None,
    certify: bool = True,
) -> Flow:
    """Integrate geodesics from ``z`` ``(Q, n)`` with real initial velocities ``uv`` ``(Q, 2n)``.

    With ``jacobian``, the variational equations run alongside (forward mode), giving the
    shooting Jacobian and the conjugate-point certificate on `CERTIFICATE_GRID` (with
    ``certify=False`` only the Jacobian: ``certified`` is all False and the integrator needs
    no output times); with ``n_points``, points at that many equally spaced times in [0, 1]
    are returned as well.
    """
    n = manifold.n
    m, d = 2 * n, 4 * n
    Q = z.shape[0]
    dtype = uv.dtype
    inside = inside_fn(manifold)
    y0 = torch.cat([to_real(z), uv], -1)
    grids = []
    if jacobian and certify:
        grids.append(torch.linspace(0, 1, CERTIFICATE_GRID + 1, dtype=dtype, device=uv.device))
    if n_points is not None:
        grids.append(torch.linspace(0, 1, n_points, dtype=dtype, device=uv.device))
    t_eval = torch.unique(torch.cat(grids)) if grids else None
    if jacobian:
        T0 = torch.zeros(Q, m, d, dtype=dtype, device=uv.device)
        T0[:, torch.arange(m), m + torch.arange(m)] = 1
        y0 = torch.cat([y0, T0.reshape(Q, m * d)], -1)
        res = integrator.integrate(
            geodesic_variational_rhs(manifold),
            y0,
            inside=lambda Y: inside(Y[..., :d]),
            t_eval=t_eval,
        )
    else:
        f = geodesic_rhs(manifold, traceable=False)
        res = integrator.integrate(f, y0, inside=inside, t_eval=t_eval)
    J = cert = pts = None
    if jacobian:
        J = res.y[:, d:].reshape(Q, m, d)[:, :, :m].transpose(1, 2)
        cert = torch.zeros(Q, dtype=torch.bool, device=uv.device)
        if certify:
            on_grid = torch.isin(t_eval, grids[0]) & (t_eval > 0)
            Yt = res.ys[:, on_grid, d:].reshape(Q, -1, m, d)[..., :m]
            sign = torch.linalg.slogdet(Yt.transpose(-1, -2))[0]  # NaN rows give sign 0
            cert = (sign > 0).all(-1) & (res.status == SUCCESS)
    if n_points is not None:
        grid = torch.linspace(0, 1, n_points, dtype=dtype, device=uv.device)
        pts = res.ys[:, torch.isin(t_eval, grid), :m]
    return Flow(
        end=res.y[:, :m],
        end_velocity=res.y[:, m:d],
        status=res.status,
        jacobian=J,
        certified=cert,
        points=pts,
    )


def endpoint_miss(GRw: torch.Tensor, fl: Flow, uw: torch.Tensor):
    """``(r, |r|_{G_R(w)})`` with the norm inf where the integration failed, NaN where it
    stopped with ``"non_finite"`` (the metric field was not finite on the way)."""
    r = fl.end - uw
    rn = real_h_norm(GRw, r)
    ok = (fl.status == SUCCESS) & torch.isfinite(rn)
    failed = torch.full_like(rn, float("inf")).masked_fill(fl.status == NON_FINITE, float("nan"))
    return r, torch.where(ok, rn, failed)


def real_metric_at(manifold, w: torch.Tensor) -> torch.Tensor:
    """G_R at points ``w`` ``(..., n)`` through the manifold's unchecked hook."""
    return real_metric(manifold.metric_field(w))


# ---------------------------------------------------------------------------------------------
# Discrete curve energy
# ---------------------------------------------------------------------------------------------
def energy_fn(manifold, K: int):
    """Energy of one polyline with K interior nodes, ``(p (K·2n,), uz, uw) → E``.

    $E = (K+1)\\sum_k |x_{k+1}-x_k|^2_{G((x_k+x_{k+1})/2)}$.
    """
    metric_fn = manifold.metric_field
    n = manifold.n

    def energy(p, uz, uw):
        pts = from_real(torch.cat([uz[None], p.reshape(K, 2 * n), uw[None]], 0))
        d = pts[1:] - pts[:-1]
        G = metric_fn(0.5 * (pts[1:] + pts[:-1]))
        q = torch.einsum("ka,kab,kb->k", d, G, d.conj()).real
        return (K + 1) * q.sum()

    return energy


def segment_energy_fn(manifold, K: int):
    r"""Energy of one segment of a polyline with K interior nodes, ``(a, b) (2n,) each → e``.

    $e = (K+1)\,|b - a|^2_{G((a+b)/2)}$ in real coordinates; `energy_fn` is the sum over the
    K + 1 segments. Differentiated per segment (a function of 4n variables) and assembled by
    `assemble_polyline_derivatives`, its Hessian costs a fraction of the whole energy's.
    """
    metric_fn = manifold.metric_field

    def energy(a, b):
        d, m = from_real(b - a), from_real(0.5 * (a + b))
        q = torch.einsum("a,ab,b->", d, metric_fn(m), d.conj()).real
        return (K + 1) * q

    return energy


def segment_derivatives_batched(squared_norm_real, K: int, a: torch.Tensor, b: torch.Tensor):
    r"""Gradient and Hessian of `segment_energy_fn` for a batch of segments by reverse mode.

    ``a, b`` ``(S, 2n)`` → ``(ga, gb, Haa, Hab, Hbb)`` (``(S, 2n)`` and ``(S, 2n, 2n)``), the
    same quantities as ``vmap`` of ``torch.func`` ``grad``/``hessian`` of the segment energy,
    from one batched evaluation of ``squared_norm_real(u, r)`` = h(v, v) in real coordinates
    (a closed-form potential's `KahlerPotential.squared_norm_real`): a gradient with
    ``create_graph``, then all 4n Hessian columns in one batched backward pass (the segments
    are independent, so the gradient of the batch sum is each segment's gradient). Only for
    plain batched torch code (closed forms, not differentiated by ``torch.func`` themselves),
    where it avoids the per-operation cost of forward-mode AD.
    """
    m = a.shape[-1]
    x = torch.cat([a, b], -1).detach().requires_grad_(True)
    eye = torch.eye(2 * m, dtype=x.dtype, device=x.device)
    with torch.enable_grad():
        xa, xb = x[:, :m], x[:, m:]
        q = squared_norm_real(0.5 * (xa + xb), xb - xa)
        (g,) = torch.autograd.grad((K + 1) * q.sum(), x, create_graph=True)
        with warnings.catch_warnings():  # a missing batching rule only costs speed
            warnings.filterwarnings("ignore", message=".*performance drop.*")
            (H,) = torch.autograd.grad(
                g, x, grad_outputs=eye[:, None, :].expand(2 * m, *g.shape), is_grads_batched=True
            )
    H = H.permute(1, 2, 0).detach()  # H[s, i, j] = ∂²e/∂x_i∂x_j (symmetric)
    g = g.detach()
    return g[:, :m], g[:, m:], H[:, :m, :m], H[:, :m, m:], H[:, m:, m:]


def assemble_polyline_derivatives(ga, gb, Haa, Hab, Hbb):
    """Gradient ``(P, K·2n)`` and Hessian ``(P, K·2n, K·2n)`` of a polyline energy over its K
    interior nodes from the per-segment derivatives w.r.t. the segment's start a and end b
    (``(P, K+1, 2n)`` and ``(P, K+1, 2n, 2n)``; segment k joins nodes k and k+1, nodes 0 and
    K+1 being the fixed ends): block tridiagonal."""
    P, S, m = ga.shape
    K = S - 1
    g = (gb[:, :-1] + ga[:, 1:]).reshape(P, K * m)
    H = ga.new_zeros(P, K, m, K, m)
    ar = torch.arange(K, device=ga.device)
    H[:, ar, :, ar, :] = (Hbb[:, :-1] + Haa[:, 1:]).transpose(0, 1)
    if K > 1:
        off = Hab[:, 1:-1].transpose(0, 1)  # (K-1, P, m, m): node i (a of segment i) with i+1
        H[:, ar[:-1], :, ar[1:], :] = off
        H[:, ar[1:], :, ar[:-1], :] = off.transpose(-1, -2)
    return g, H.reshape(P, K * m, K * m)


def polyline_inside(manifold, z, w, X) -> torch.Tensor:
    """bool ``(P,)``: the nodes ``X`` ``(P, K, n)`` and every segment midpoint lie in the domain."""
    pts = torch.cat([z[:, None], X, w[:, None]], 1)
    mids = 0.5 * (pts[:, 1:] + pts[:, :-1])
    return manifold.contains(X).all(-1) & manifold.contains(mids).all(-1)


def polyline_tangent(z: torch.Tensor, X: torch.Tensor) -> torch.Tensor:
    """Second-order one-sided tangent at t = 0 of a polyline with nodes at t = k/(K+1)."""
    K = X.shape[-2]
    return (K + 1) * (-3 * z + 4 * X[:, 0] - X[:, 1]) / 2


def polyline_length(manifold, z, w, X) -> torch.Tensor:
    """Midpoint-rule length of the polyline z, X, w ``(P,)``."""
    pts = torch.cat([z[:, None], X, w[:, None]], 1)
    d = pts[:, 1:] - pts[:, :-1]
    return h_norm(manifold.metric_field(0.5 * (pts[:, 1:] + pts[:, :-1])), d).sum(-1)


# ---------------------------------------------------------------------------------------------
# Choosing among candidates
# ---------------------------------------------------------------------------------------------
def pick_shortest(manifold, z, v, conv, cert, res):
    """Per pair, the shortest converged **and certified** candidate among ``v`` ``(S, P, n)``.

    Returns ``(velocity, length, converged, certified, residual, status, candidate_lengths)``:
    status ``success`` where a certified candidate exists, ``conjugate_point`` where candidates
    converged but each passes a conjugate point (not the distance), ``non_finite`` where every
    candidate's residual is NaN (each integration met a non-finite metric field, see
    `endpoint_miss`), ``not_converged`` otherwise. Uncertified or unconverged candidates have
    NaN candidate lengths.
    """
    G = manifold.metric_field(z)  # (P, n, n)
    lengths = h_norm(G[None], v)  # (S, P)
    good = conv & cert
    inf = torch.full_like(lengths, float("inf"))
    # No certified candidate: report a converged one (flagged), else the smallest residual.
    best = torch.where(
        good.any(0),
        torch.where(good, lengths, inf).argmin(0),
        torch.where(
            conv.any(0),
            torch.where(conv, lengths, inf).argmin(0),
            torch.where(torch.isnan(res), inf, res).argmin(0),
        ),
    )
    pick = torch.arange(v.shape[1], device=v.device)
    failed = torch.where(torch.isnan(res).all(0), NON_FINITE, NOT_CONVERGED)
    status = torch.where(good.any(0), SUCCESS, torch.where(conv.any(0), CONJUGATE_POINT, failed))
    cand = torch.where(good, lengths, torch.full_like(lengths, float("nan")))
    return (
        v[best, pick],
        lengths[best, pick],
        conv[best, pick],
        cert[best, pick],
        res[best, pick],
        status,
        cand.transpose(0, 1),
    )
