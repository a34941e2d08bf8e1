"""Boundary-value algorithms: discrete curve-energy minimisation and Newton shooting.

Everything is batched over P pairs ``z, w`` of shape ``(P, n)``; per-pair decisions (step
acceptance, damping, convergence) are masks, never Python loops over pairs.
"""

from __future__ import annotations

import torch
from torch.func import grad, hessian, vmap

from kahlergeom._linalg import real_metric
from kahlergeom.geodesics._equations import connection_of, geodesic_rhs, inside_fn
from kahlergeom.geodesics._ode import dopri5, rk_fixed
from kahlergeom.geodesics._solvers import LogResult, default_tol
from kahlergeom.wirtinger._ddbar import from_real, to_real


def _h_norm(G: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """sqrt(h(v, v)) = sqrt(Re vᵀ G v̄), real ``(...)``."""
    q = torch.einsum("...a,...ab,...b->...", v, G, v.conj()).real
    return q.clamp_min(0).sqrt()


def _real_h_norm(GR: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
    return torch.einsum("...i,...ij,...j->...", r, GR, r).clamp_min(0).sqrt()


# ---------------------------------------------------------------------------------------------
# Shooting
# ---------------------------------------------------------------------------------------------
def shooting_refine(solver, manifold, z, w, v0):
    """Newton shooting from initial velocities ``v0`` ``(P, n)``.

    Returns ``(v, converged, residual)`` with ``residual = |exp_z(v) − w|_{G(w)}`` from the
    adaptive integrator (inf where that integration failed).
    """
    n = manifold.n
    dtype = z.real.dtype
    tol = solver.tol if solver.tol is not None else default_tol(dtype)
    rtol, atol = solver.integrator.tolerances(dtype)
    f = geodesic_rhs(manifold)
    inside = inside_fn(manifold)
    uz, uw = to_real(z), to_real(w)
    GRw = real_metric(manifold.metric_field(w))

    def residual(idx, uv):
        res = dopri5(
            f,
            torch.cat([uz[idx], uv], -1),
            rtol=rtol,
            atol=atol,
            max_steps=solver.integrator.max_steps,
            inside=inside,
        )
        r = res.y[:, : 2 * n] - uw[idx]
        rn = _real_h_norm(GRw[idx], r)
        rn = torch.where(res.success & torch.isfinite(rn), rn, torch.full_like(rn, float("inf")))
        return r, rn

    steps = solver.steps

    m = 2 * n
    eye = torch.eye(m, dtype=dtype, device=z.device)
    fd = torch.finfo(dtype).eps ** (1 / 3)

    def model(idx, uv1):
        """Fixed-step residual and its Jacobian by central differences, one batched run."""
        step = fd * (1 + uv1.abs().amax(-1))  # (Q,)
        Q = uv1.shape[0]
        dv = step[:, None, None] * torch.cat([eye, -eye])  # (Q, 2m, m)
        vs = torch.cat([uv1[:, None], uv1[:, None] + dv], 1)  # (Q, 2m + 1, m)
        y0 = torch.cat([uz[idx, None].expand(Q, 2 * m + 1, m), vs], -1).reshape(-1, 2 * m)
        end = rk_fixed(f, y0, 1.0, steps)[:, :m].reshape(Q, 2 * m + 1, m)
        J1 = ((end[:, 1 : m + 1] - end[:, m + 1 :]) / (2 * step[:, None, None])).transpose(1, 2)
        r1 = end[:, 0] - uw[idx]
        rn1 = _real_h_norm(GRw[idx], r1)
        bad = ~torch.isfinite(rn1) | ~torch.isfinite(J1).flatten(-2).all(-1)
        return J1, r1, torch.where(bad, torch.full_like(rn1, float("inf")), rn1)

    P = z.shape[0]
    allidx = torch.arange(P, device=z.device)
    uv = to_real(v0).clone()
    # Phase A: damped Newton on the fixed-step model (value and Jacobian in one pass).
    J, r, rn = model(allidx, uv)
    alpha = torch.ones(P, dtype=dtype, device=z.device)
    failed = ~torch.isfinite(rn)
    for _ in range(solver.max_iter):
        active = (rn > 0.1 * tol) & ~failed
        if not bool(active.any()):
            break
        idx = active.nonzero().squeeze(-1)
        delta, info = torch.linalg.solve_ex(J[idx], r[idx].unsqueeze(-1))
        uv_try = uv[idx] - alpha[idx, None] * delta.squeeze(-1)
        J_try, r_try, rn_try = model(idx, uv_try)
        better = (rn_try < rn[idx]) & (info == 0)
        good = idx[better]
        uv[good], J[good], r[good], rn[good] = (
            uv_try[better],
            J_try[better],
            r_try[better],
            rn_try[better],
        )
        alpha[good] = (alpha[good] * 2).clamp(max=1.0)
        bad = idx[~better]
        alpha[bad] = alpha[bad] / 4
        failed = failed | (alpha < 1e-6)
    # Phase B: adaptive residual, simplified Newton with the last Jacobian.
    # Only candidates whose fixed-step model converged are verified (a wild candidate would
    # hold the whole adaptive batch for many steps).
    todo = allidx[(rn <= 10 * tol) & ~failed]
    rn_ad = torch.full((P,), float("inf"), dtype=dtype, device=z.device)
    for k in range(4):
        if todo.numel() == 0:
            break
        r_k, rn_k = residual(todo, uv[todo])
        rn_ad[todo] = rn_k
        keep = (rn_k > tol) & torch.isfinite(rn_k)
        todo = todo[keep]
        if k == 3 or todo.numel() == 0:
            break
        delta, info = torch.linalg.solve_ex(J[todo], r_k[keep].unsqueeze(-1))
        ok = (info == 0) & torch.isfinite(delta).flatten(-2).all(-1)
        uv[todo[ok]] = uv[todo[ok]] - delta.squeeze(-1)[ok]
        todo = todo[ok]
    converged = rn_ad <= tol
    return from_real(uv), converged, rn_ad


def select_shortest(manifold, z, v, conv, res, solver) -> LogResult:
    """Pick, per pair, the shortest converged candidate among ``v`` ``(S, P, n)``."""
    G = manifold.metric_field(z)  # (P, n, n)
    lengths = _h_norm(G[None], v)  # (S, P)
    masked = torch.where(conv, lengths, torch.full_like(lengths, float("inf")))
    # Where no candidate converged, report the one with the smallest residual.
    key = torch.where(conv.any(0, keepdim=True), masked, res)
    best = key.argmin(0)  # (P,)
    pick = torch.arange(v.shape[1], device=v.device)
    cand = torch.where(conv, lengths, torch.full_like(lengths, float("nan")))
    return LogResult(
        velocity=v[best, pick],
        length=lengths[best, pick],
        converged=conv[best, pick],
        residual=res[best, pick],
        candidate_lengths=cand.transpose(0, 1),
        connection=connection_of(manifold),
        solver=solver,
    )


# ---------------------------------------------------------------------------------------------
# Discrete curve energy
# ---------------------------------------------------------------------------------------------
def _energy_fn(manifold, K: int):
    metric_fn = manifold.metric_field
    n = manifold.n

    def energy(p, uz, uw):  # one pair: p (K*2n,), uz and uw (2n,) real coordinates
        pts = from_real(torch.cat([uz[None], p.reshape(K, 2 * n), uw[None]], 0))
        d = pts[1:] - pts[:-1]
        G = metric_fn(0.5 * (pts[1:] + pts[:-1]))
        q = torch.einsum("ka,kab,kb->k", d, G, d.conj()).real
        return (K + 1) * q.sum()

    return energy


def _initial_curves(manifold, z, w, K, n_starts, bend):
    """Interior nodes ``(S, P, K, n)`` of the straight and bent initial curves."""
    t = torch.linspace(0, 1, K + 2, dtype=z.real.dtype, device=z.device)[1:-1]
    t = t[:, None]
    straight = z[:, None] + t * (w - z)[:, None]  # (P, K, n)
    curves = [straight]
    bump = 4 * t * (1 - t) * (1j * (w - z))[:, None]  # (P, K, n)
    for s in range(1, n_starts):
        sign = 1.0 if s % 2 else -1.0
        amp = bend * ((s + 1) // 2) * sign
        scale = torch.full((z.shape[0], 1, 1), amp, dtype=z.real.dtype, device=z.device)
        for _ in range(8):  # shrink the bend until the curve lies in the domain
            c = straight + scale * bump
            ok = manifold.contains(c).all(-1)
            scale = torch.where(ok[:, None, None], scale, scale / 2)
        c = straight + scale * bump
        ok = manifold.contains(c).all(-1)
        curves.append(torch.where(ok[:, None, None], c, straight))
    return torch.stack(curves)


def energy_minimise(solver, manifold, z, w, X0):
    """Damped-Newton minimisation of the discrete energy; ``X0`` ``(P, K, n)`` interior nodes.

    Returns ``(X, converged)``.
    """
    P, K, n = X0.shape
    energy = _energy_fn(manifold, K)
    vE = vmap(energy)
    vG = vmap(grad(energy))
    vH = vmap(hessian(energy))
    dtype = z.real.dtype
    eps = torch.finfo(dtype).eps
    p = to_real(X0).reshape(P, K * 2 * n)

    def valid(p_try):
        X = from_real(p_try.reshape(P, K, 2 * n))
        pts = torch.cat([z[:, None], X, w[:, None]], 1)
        mids = 0.5 * (pts[:, 1:] + pts[:, :-1])
        return manifold.contains(X).all(-1) & manifold.contains(mids).all(-1)

    uz, uw = to_real(z), to_real(w)
    E = vE(p, uz, uw)
    g, H = vG(p, uz, uw), vH(p, uz, uw)
    eye = torch.eye(p.shape[-1], dtype=dtype, device=z.device)
    lam = 1e-4 * torch.diagonal(H, dim1=-2, dim2=-1).abs().mean(-1).clamp_min(eps)
    converged = torch.zeros(P, dtype=torch.bool, device=z.device)
    for _ in range(solver.max_iter):
        active = ~converged
        if not bool(active.any()):
            break
        d, info = torch.linalg.solve_ex(H + lam[:, None, None] * eye, -g.unsqueeze(-1))
        d = torch.where(active[:, None], d.squeeze(-1), torch.zeros_like(p))
        p_try = p + d
        E_try = vE(p_try, uz, uw)
        ok = (info == 0) & torch.isfinite(E_try) & valid(p_try)
        accept = active & ok & (E_try <= E)
        p = torch.where(accept[:, None], p_try, p)
        E = torch.where(accept, E_try, E)
        lam = torch.where(active, torch.where(accept, lam / 3, lam * 4), lam)
        step = d.abs().amax(-1) / (1 + p.abs().amax(-1))
        converged = converged | (accept & (step < eps**0.5))
        converged = converged | (active & (lam > 1e12 * (1 + E.abs())))  # stalled: stop
        if bool(accept.any()):
            g, H = vG(p, uz, uw), vH(p, uz, uw)
    gnorm = g.abs().amax(-1) / (1 + E.abs())
    return from_real(p.reshape(P, K, 2 * n)), converged & (gnorm < 1e-6)


def energy_solve(solver, manifold, z, w) -> LogResult:
    """`EnergyMinimisation.solve`: several initial curves, minimise, refine, pick the shortest."""
    P, n = z.shape
    K = solver.nodes
    S = solver.n_starts
    X0 = _initial_curves(manifold, z, w, K, S, solver.bend)  # (S, P, K, n)
    zz = z.repeat(S, 1)
    ww = w.repeat(S, 1)
    X, conv = energy_minimise(solver, manifold, zz, ww, X0.reshape(S * P, K, n))
    # Second-order one-sided tangent at t = 0 of the polyline (nodes at t = k/(K+1)).
    v0 = (K + 1) * (-3 * zz + 4 * X[:, 0] - X[:, 1]) / 2
    if solver.refine is None:
        pts = torch.cat([zz[:, None], X, ww[:, None]], 1)
        d = pts[:, 1:] - pts[:, :-1]
        G = manifold.metric_field(0.5 * (pts[:, 1:] + pts[:, :-1]))
        L = _h_norm(G, d).sum(-1)
        cand = torch.where(conv, L, torch.full_like(L, float("inf"))).reshape(S, P)
        best = cand.argmin(0)
        pick = torch.arange(P, device=z.device)
        Ls, cs = L.reshape(S, P), conv.reshape(S, P)
        return LogResult(
            velocity=v0.reshape(S, P, n)[best, pick],
            length=Ls[best, pick],
            converged=cs[best, pick],
            residual=torch.full((P,), float("nan"), dtype=z.real.dtype, device=z.device),
            candidate_lengths=torch.where(cs, Ls, torch.full_like(Ls, float("nan"))).T,
            connection=connection_of(manifold),
            solver=solver,
        )
    v, convs, res = shooting_refine(solver.refine, manifold, zz, ww, v0)
    return select_shortest(
        manifold, z, v.reshape(S, P, n), convs.reshape(S, P), res.reshape(S, P), solver
    )
