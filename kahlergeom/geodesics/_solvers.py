r"""Boundary-value (``log``) solvers: the `GeodesicSolver` extension point and two solvers.

Solvers are small frozen objects (``Shooting(max_iter=20)``), not strings with option dicts,
and each carries its algorithm as methods:

* `Shooting`: Newton on the initial velocity, Jacobian from the variational equations.
* `EnergyMinimisation` (default): discrete curve energy from several initial curves, refined
  by a `Shooting`; the shortest *certified* candidate is returned.

Every candidate a solver returns as converged is checked for conjugate points: the Jacobi
fields $Y(t) = \partial u(t) / \partial \dot u(0)$ (``Y(0) = 0``) are integrated in forward
mode along the geodesic and $\det Y(t)$ must stay positive on (0, 1]. A geodesic through a
conjugate point is not locally minimising, so its length is not the distance.
"""

from __future__ import annotations

import abc
import dataclasses
import math
from dataclasses import dataclass, field

import torch
from torch.func import grad, hessian, vmap

from kahlergeom._checks import check_optional_positive, check_positive_int
from kahlergeom._linalg import from_real, to_real
from kahlergeom.geodesics._bvp import (
    assemble_polyline_derivatives,
    endpoint_miss,
    energy_fn,
    flow,
    h_norm,
    pick_shortest,
    polyline_inside,
    polyline_length,
    polyline_tangent,
    real_metric_at,
    segment_derivatives_batched,
    segment_energy_fn,
)
from kahlergeom.geodesics._equations import closed_form_of, connection_of
from kahlergeom.geodesics._ode import (
    NON_FINITE,
    NOT_CONVERGED,
    SUCCESS,
    Dop853,
    Dopri5,
    Integrator,
)
from kahlergeom.geodesics._results import LogResult

#: A Newton step damped below this factor makes no progress: the pair is given up.
MIN_DAMPING = 1e-6
#: Trust region of shooting: a Newton step may change the initial velocity by at most this
#: fraction of max(|v|, |w − z|) (real coordinates): beyond it the linear model is not trusted,
#: and far trial trajectories (running off to infinity) are also the most expensive ones.
MAX_STEP_RATIO = 0.5
#: After two rejected Broyden steps in a row (damping below 1/4) the exact Jacobian is refreshed.
REFRESH_DAMPING = 0.3
#: Levenberg–Marquardt start: this fraction of the mean |diagonal| of the energy Hessian
#: (close to a pure Newton step, scaled to the problem).
INITIAL_DAMPING = 1e-4
#: Levenberg–Marquardt damping update after an accepted / a rejected step.
DAMPING_DOWN, DAMPING_UP = 3.0, 4.0
#: Damping this many times (1 + E) means steps of 1e-12 of a gradient step: stalled, stop.
STALL_DAMPING = 1e12
#: Relative energy gradient max|∇E| / (1 + E) below which a polyline counts as converged
#: (its tangent only seeds shooting, which polishes to the endpoint tolerance).
ENERGY_GRAD_TOL = 1e-6
#: Halvings of a bent initial curve's amplitude tried until it lies inside the domain.
BEND_HALVINGS = 8
#: Restarts for pairs whose candidates all pass a conjugate point: shoot from −s·v for the
#: shortest such candidate v. Going the other way round the geodesic (as on a great circle of
#: Fubini–Study, where the short arc has length π − L) is the usual way out.
RESTART_SCALES = (0.5, 0.25, 1.0, 0.75)
#: Newton shooting (``jacobian="exact"``) integrates with `LOOSE_RTOL` (a `Dopri5` or `Dop853`
#: with default tolerances only) while more than `LOOSE_FRACTION` of the active pairs' endpoint
#: misses are above `LOOSE_UNTIL`: far from
#: the solution an inexact flow gives as good a Newton step at a fraction of the steps; the
#: last iterations, whose residuals decide convergence, use the integrator as given.
LOOSE_RTOL = {torch.float64: 1e-7, torch.float32: 1e-4}
LOOSE_UNTIL = {torch.float64: 1e-4, torch.float32: 1e-2}
#: Step budget of a loose integration: a trial trajectory that runs towards the edge of the
#: chart only costs a rejected step, instead of holding the whole batch for `DEFAULT_MAX_STEPS`.
#: A loose `Dop853` geodesic takes 10–25 steps on the oracle sets (a `Dopri5` 30–60), so this
#: is ten times the usual; a polyline start through the far chart (e.g. Fubini–Study nodes at
#: |z| ~ 1e5) used to hold the batch for 1000 steps (12 000 evaluations) here.
LOOSE_MAX_STEPS = 250
#: The loose phase lasts while more than this fraction of the active pairs miss by more than
#: `LOOSE_UNTIL` (each integration costs as much as its slowest pair, so one more loose pass
#: for a few far pairs is cheaper than the extra tight pass they would need; measured over
#: 4 seeds of the FS and ball benchmark pairs: 8% fewer evaluations than a half).
LOOSE_FRACTION = 0.1
JACOBIAN_MODES = ("auto", "exact", "broyden")


def default_tol(dtype: torch.dtype) -> float:
    """Default endpoint tolerance of boundary solvers (h-norm of the miss at w)."""
    return 1e-4 if dtype in (torch.float32, torch.complex64) else 1e-8


class GeodesicSolver(abc.ABC):
    """A boundary-value solver: implement ``solve(manifold, z, w) -> LogResult``.

    ``z`` and ``w`` arrive validated and flattened to ``(P, n)``; the result is ``(P, ...)``.
    The solver may leave ``LogResult.certified`` as ``None``: `kahlergeom.geodesics.solve_log`
    then certifies the returned velocity itself (one integration with the variational
    equations), so a user-written solver gets the same conjugate-point check.
    """

    @abc.abstractmethod
    def solve(self, manifold, z: torch.Tensor, w: torch.Tensor) -> LogResult:
        """Solve for initial velocities from z to w, batched over P pairs."""


@dataclass(frozen=True)
class Shooting(GeodesicSolver):
    r"""Damped Newton shooting on $v \mapsto \exp_z(v) - w$.

    Each iteration integrates the geodesic together with its variational equations (forward
    mode, one adaptive `integrator` run for all active pairs): the end point gives the residual,
    the Jacobi fields at t = 1 the exact real 2n×2n Jacobian $\partial u(1)/\partial\dot u(0)$
    of the integrated flow, and $\det Y(t)$ on a grid of (0, 1] the conjugate-point
    certificate. A step is accepted when the residual's h-norm at w decreases, else halved
    (per pair). ``converged`` means that h-norm is at most ``tol``.
    Used alone it starts from the straight-line velocity ``v = w − z`` and is local: far pairs
    need `EnergyMinimisation`, which calls it to refine.

    Two Jacobian strategies (``jacobian``): ``"exact"`` integrates the variational equations
    at every iterate (Newton: residual, Jacobian and certificate from one integration; the
    early iterations, while more than `LOOSE_FRACTION` of the active pairs miss by more than
    `LOOSE_UNTIL`, with the integrator loosened, up to ``max_iter`` of them besides the
    ``max_iter`` others);
    ``"broyden"`` integrates them only at the start, after stalls and to certify, with Broyden
    rank-one updates from plain integrations in between. ``"auto"`` (default) takes
    ``"exact"`` where the manifold provides Christoffel contractions
    (``closed_form_christoffel``: closed forms, or reverse-mode ones for any batched potential;
    a variational integration costs about three plain ones there) and ``"broyden"`` otherwise
    (nested ``torch.func`` autodiff makes it many times dearer).

    Args:
        max_iter: Newton iterations (≥ 0).
        tol: endpoint tolerance, h-norm at w (``None``: 1e-8 in float64, 1e-4 in float32).
        integrator: the integrator of the geodesic and variational equations (default
            `Dop853`: at the tight default tolerances a Newton iteration costs about a third of
            a `Dopri5` one).
        jacobian: ``"auto"``, ``"exact"`` or ``"broyden"``.
    """

    max_iter: int = 12
    tol: float | None = None
    integrator: Integrator = field(default_factory=Dop853)
    jacobian: str = "auto"

    def __post_init__(self):
        check_positive_int(self.max_iter, "max_iter", minimum=0)
        check_optional_positive(self.tol, "tol")
        if self.jacobian not in JACOBIAN_MODES:
            raise ValueError(f"jacobian must be one of {JACOBIAN_MODES}; got {self.jacobian!r}.")
        if not isinstance(self.integrator, Integrator):
            raise ValueError(
                "integrator must be a kahlergeom.geodesics.Integrator (e.g. Dopri5()); got "
                f"{type(self.integrator).__name__}."
            )

    def solve(self, manifold, z, w):
        v, conv, cert, res = self.refine(manifold, z, w, w - z)
        v, L, conv, cert, res, status, cand = pick_shortest(
            manifold, z, v[None], conv[None], cert[None], res[None]
        )
        return LogResult(v, L, conv, res, cand, connection_of(manifold), self, cert, status)

    def refine(self, manifold, z, w, v0):
        """Newton shooting from initial velocities ``v0`` ``(P, n)``.

        Returns ``(v, converged, certified, residual)``; ``residual`` is the adaptive endpoint
        miss ``|exp_z(v) − w|_{G(w)}`` (inf where the integration failed), ``certified`` the
        conjugate-point certificate of the returned geodesic.
        """
        exact = self.jacobian == "exact" or (
            self.jacobian == "auto" and closed_form_of(manifold) is not None
        )
        if exact:
            return self._refine_newton(manifold, z, w, v0)
        P = z.shape[0]
        dtype = z.real.dtype
        tol = self.tol if self.tol is not None else default_tol(dtype)
        uw = to_real(w)
        GRw = real_metric_at(manifold, w)
        uv = to_real(v0).clone()
        fl = flow(manifold, z, uv, self.integrator, jacobian=True)
        r, rn = endpoint_miss(GRw, fl, uw)
        J = fl.jacobian.clone()
        cert = fl.certified.clone()
        fresh = torch.ones(P, dtype=torch.bool, device=z.device)  # cert belongs to uv
        alpha = torch.ones(P, dtype=dtype, device=z.device)
        failed = ~torch.isfinite(rn)
        scale = (uw - to_real(z)).norm(dim=-1)
        for _ in range(self.max_iter):
            stale = (alpha < REFRESH_DAMPING) & ~fresh & (rn > tol) & ~failed
            stale = stale.nonzero().squeeze(-1)
            if stale.numel():  # Broyden lost its way: integrate the exact Jacobi fields again
                fl_s = flow(manifold, z[stale], uv[stale], self.integrator, jacobian=True)
                J[stale], cert[stale], fresh[stale] = fl_s.jacobian, fl_s.certified, True
                alpha[stale] = 1.0
            active = (rn > tol) & ~failed
            if not bool(active.any()):
                break
            idx = active.nonzero().squeeze(-1)
            delta, info = torch.linalg.solve_ex(J[idx], r[idx].unsqueeze(-1))
            step = -alpha[idx, None] * delta.squeeze(-1)
            size = step.norm(dim=-1, keepdim=True)
            cap = MAX_STEP_RATIO * torch.maximum(uv[idx].norm(dim=-1), scale[idx])[:, None]
            step = step * (cap / size.clamp_min(torch.finfo(dtype).tiny)).clamp(max=1.0)
            uv_try = uv[idx] + step
            # Plain integration; the Jacobian is updated by Broyden's rank-one formula
            # J += (Δr − J Δu) Δuᵀ / |Δu|² (superlinear; the exact Jacobi fields are integrated
            # again only to certify the converged velocity).
            fl_t = flow(manifold, z[idx], uv_try, self.integrator)
            r_t, rn_t = endpoint_miss(GRw[idx], fl_t, uw[idx])
            finite = torch.isfinite(rn_t) & (info == 0)
            dr = torch.where(finite[:, None], r_t - r[idx], torch.zeros_like(r_t))
            upd = (dr - (J[idx] @ step.unsqueeze(-1)).squeeze(-1))[..., :, None] * step[
                ..., None, :
            ]
            den = step.square().sum(-1).clamp_min(torch.finfo(dtype).tiny)[:, None, None]
            J[idx] = torch.where(finite[:, None, None], J[idx] + upd / den, J[idx])
            better = finite & (rn_t < rn[idx])
            good = idx[better]
            uv[good], r[good], rn[good] = uv_try[better], r_t[better], rn_t[better]
            fresh[good] = False
            alpha[good] = (alpha[good] * 2).clamp(max=1.0)
            bad = idx[~better]
            alpha[bad] = alpha[bad] / 2
            failed = failed | (alpha < MIN_DAMPING)
        # Certify (and check once more) every converged velocity found by a plain step.
        redo = ((rn <= tol) & ~fresh).nonzero().squeeze(-1)
        if redo.numel():
            fl_c = flow(manifold, z[redo], uv[redo], self.integrator, jacobian=True)
            _, rn[redo] = endpoint_miss(GRw[redo], fl_c, uw[redo])
            cert[redo] = fl_c.certified
        converged = rn <= tol
        return from_real(uv), converged, cert & converged, rn

    def _loose_integrator(self, dtype):
        """The integrator with loosened tolerances for the early Newton iterations, or ``None``
        (only a `Dopri5` or `Dop853` on its default tolerances is loosened)."""
        it = self.integrator
        if type(it) not in (Dopri5, Dop853) or it.rtol is not None or it.atol is not None:
            return None
        tol = LOOSE_RTOL[dtype]
        return dataclasses.replace(
            it, rtol=tol, atol=tol, max_steps=min(it.max_steps, LOOSE_MAX_STEPS)
        )

    def _refine_newton(self, manifold, z, w, v0):
        """`refine` with the exact Jacobian at every iterate (``jacobian="exact"``).

        Each iteration integrates the variational system once at the trial velocities of the
        active pairs: a trial is accepted when its endpoint miss decreases (or it is the first
        evaluation with the given integrator after loose ones), else the step is halved. A
        pair converges when the miss of an integration with the given integrator is at most
        ``tol``; its certificate comes from that same integration.
        """
        P, n = z.shape
        dtype, dev = z.real.dtype, z.device
        tol = self.tol if self.tol is not None else default_tol(dtype)
        loose = self._loose_integrator(dtype)
        uw = to_real(w)
        GRw = real_metric_at(manifold, w)
        scale = (uw - to_real(z)).norm(dim=-1)
        uv = to_real(v0).clone()
        trial = uv.clone()
        r = torch.zeros_like(uv)
        rn = torch.full((P,), math.inf, dtype=dtype, device=dev)
        J = torch.zeros(P, 2 * n, 2 * n, dtype=dtype, device=dev)
        cert = torch.zeros(P, dtype=torch.bool, device=dev)
        exact = torch.zeros(P, dtype=torch.bool, device=dev)  # rn from the given integrator
        seen = torch.zeros(P, dtype=torch.bool, device=dev)
        alpha = torch.ones(P, dtype=dtype, device=dev)
        failed = torch.zeros(P, dtype=torch.bool, device=dev)
        n_loose = n_tight = 0
        while n_tight <= self.max_iter:
            todo = ~failed & ~(exact & (rn <= tol))
            if not bool(todo.any()):
                break
            idx = todo.nonzero().squeeze(-1)
            # Loose while more than LOOSE_FRACTION of the active pairs are far (their own budget
            # of max_iter integrations): a few stragglers neither hold the others in the loose
            # phase nor use up their iterations at the given tolerance.
            far = int((rn[idx] > LOOSE_UNTIL[dtype]).sum()) > LOOSE_FRACTION * idx.numel()
            use_loose = loose is not None and far and n_loose < self.max_iter
            n_loose, n_tight = n_loose + use_loose, n_tight + (not use_loose)
            fl = flow(
                manifold,
                z[idx],
                trial[idx],
                loose if use_loose else self.integrator,
                jacobian=True,
                certify=not use_loose,  # a loose integration's certificate is never used
            )
            r_t, rn_t = endpoint_miss(GRw[idx], fl, uw[idx])
            finite = torch.isfinite(rn_t)
            better = ~seen[idx] | (finite & (rn_t < rn[idx]))
            if not use_loose:
                better = better | (finite & ~exact[idx])
            good, bad = idx[better], idx[~better]
            uv[good], r[good], rn[good] = trial[good], r_t[better], rn_t[better]
            J[good], cert[good] = fl.jacobian[better], fl.certified[better]
            exact[good], seen[good] = not use_loose, True
            alpha[good] = (alpha[good] * 2).clamp(max=1.0)
            alpha[bad] = alpha[bad] / 2
            failed = failed | (alpha < MIN_DAMPING) | (seen & ~torch.isfinite(rn))
            act = ~failed & ~(exact & (rn <= tol))
            a = act.nonzero().squeeze(-1)
            if a.numel() == 0:
                break
            delta, info = torch.linalg.solve_ex(J[a], r[a].unsqueeze(-1))
            step = -alpha[a, None] * delta.squeeze(-1)
            size = step.norm(dim=-1, keepdim=True)
            cap = MAX_STEP_RATIO * torch.maximum(uv[a].norm(dim=-1), scale[a])[:, None]
            step = step * (cap / size.clamp_min(torch.finfo(dtype).tiny)).clamp(max=1.0)
            trial[a] = torch.where((info == 0)[:, None], uv[a] + step, uv[a])
            failed[a[info != 0]] = True
        converged = exact & (rn <= tol)
        return from_real(uv), converged, cert & converged, rn


@dataclass(frozen=True)
class EnergyMinimisation(GeodesicSolver):
    r"""Discrete curve-energy minimisation, then shooting refinement; the default ``log`` solver.

    Stage 1: a polyline ``z = x_0, x_1, …, x_{K+1} = w`` (``K = nodes`` free interior nodes),
    energy $E = (K+1)\sum_k |x_{k+1}-x_k|^2_{G((x_k+x_{k+1})/2)}$, minimised over the nodes by
    damped Newton (Levenberg–Marquardt on the exact Hessian from ``torch.func``), batched over
    pairs; trial curves leaving the domain are rejected. The initial curves are the straight
    segment and segments bent by ``± bend · ⌈s/2⌉ · 4t(1−t) · i(w − z)`` (shrunk until they lie in
    the domain), tried in that order.
    Stage 2 (``refine``, a `Shooting`): Newton shooting from the polyline's initial tangent,
    with the conjugate-point certificate. The distance is the minimum length over the converged,
    certified candidates (a start can converge to a longer geodesic through a conjugate point,
    see ``docs/geodesics.md``). With ``all_starts=False`` a pair stops taking further starts
    once it has a certified candidate. Pairs whose converged candidates all pass a conjugate
    point are restarted by shooting the other way round (from −s·v, s in `RESTART_SCALES`).

    With ``refine=None`` the result is the polyline alone: ``length`` is the polyline's length
    (an upper bound of the distance, the length of a curve from z to w), ``converged`` means the
    energy iteration converged; no conjugate-point certificate is computed (``certified``
    equals ``converged``; ``certificate`` is ``"polyline"``).

    Args:
        nodes: interior nodes K (≥ 2).
        max_iter: Newton/LM iterations of stage 1.
        n_starts: number of initial curves (1: straight segment only).
        bend: relative amplitude of the bent initial curves (> 0).
        refine: the shooting stage, or ``None``.
        all_starts: run every start for every pair (default: stop at the first certified one).
    """

    nodes: int = 12
    max_iter: int = 40
    n_starts: int = 3
    bend: float = 0.5
    refine: Shooting | None = field(default_factory=Shooting)
    all_starts: bool = False

    def __post_init__(self):
        check_positive_int(self.nodes, "nodes", minimum=2)
        check_positive_int(self.max_iter, "max_iter", minimum=0)
        check_positive_int(self.n_starts, "n_starts")
        check_optional_positive(self.bend, "bend")
        if self.refine is not None and not isinstance(self.refine, Shooting):
            raise ValueError(
                f"refine must be a kahlergeom.geodesics.Shooting or None; got {self.refine!r}."
            )
        if not isinstance(self.all_starts, bool):
            raise ValueError(f"all_starts must be a bool; got {self.all_starts!r}.")

    # -- stage 1 ----------------------------------------------------------------------------
    def initial_curve(self, manifold, z, w, s: int) -> torch.Tensor:
        """Interior nodes ``(P, K, n)`` of initial curve number ``s`` (0: straight)."""
        K = self.nodes
        t = torch.linspace(0, 1, K + 2, dtype=z.real.dtype, device=z.device)[1:-1, None]
        straight = z[:, None] + t * (w - z)[:, None]  # (P, K, n)
        if s == 0:
            return straight
        bump = 4 * t * (1 - t) * (1j * (w - z))[:, None]
        amp = self.bend * ((s + 1) // 2) * (1.0 if s % 2 else -1.0)
        scale = torch.full((z.shape[0], 1, 1), amp, dtype=z.real.dtype, device=z.device)
        for _ in range(BEND_HALVINGS):
            ok = manifold.contains(straight + scale * bump).all(-1)
            scale = torch.where(ok[:, None, None], scale, scale / 2)
        c = straight + scale * bump
        ok = manifold.contains(c).all(-1)
        return torch.where(ok[:, None, None], c, straight)

    def minimise(self, manifold, z, w, X0):
        """Damped-Newton minimisation of the discrete energy from nodes ``X0`` ``(P, K, n)``.

        Returns ``(X, converged)``.
        """
        P, K, n = X0.shape
        energy = energy_fn(manifold, K)
        vE = vmap(energy)
        seg = segment_energy_fn(manifold, K)
        vg = vmap(grad(seg, argnums=(0, 1)))
        vh = vmap(hessian(seg, argnums=(0, 1)))
        # A closed-form potential's h(v, v) is plain batched torch code: reverse mode over all
        # segments at once (`segment_derivatives_batched`) instead of vmapped torch.func.
        cf = closed_form_of(manifold)
        sq = cf.squared_norm_real if getattr(cf, "has_closed_form_levi", False) else None
        dtype = z.real.dtype
        eps = torch.finfo(dtype).eps
        p = to_real(X0).reshape(P, K * 2 * n)
        uz, uw = to_real(z), to_real(w)

        def derivatives(p):
            """Gradient and Hessian of the energy, per segment (4n variables) and assembled."""
            pts = torch.cat([uz[:, None], p.reshape(P, K, 2 * n), uw[:, None]], 1)
            a, b = pts[:, :-1].reshape(-1, 2 * n), pts[:, 1:].reshape(-1, 2 * n)
            if sq is not None:
                ga, gb, Haa, Hab, Hbb = segment_derivatives_batched(sq, K, a, b)
            else:
                (ga, gb), ((Haa, Hab), (_, Hbb)) = vg(a, b), vh(a, b)
            S = (P, K + 1, 2 * n)
            return assemble_polyline_derivatives(
                ga.reshape(S),
                gb.reshape(S),
                Haa.reshape(*S, -1),
                Hab.reshape(*S, -1),
                Hbb.reshape(*S, -1),
            )

        E = vE(p, uz, uw)
        g, H = derivatives(p)
        eye = torch.eye(p.shape[-1], dtype=dtype, device=z.device)
        lam = INITIAL_DAMPING * torch.diagonal(H, dim1=-2, dim2=-1).abs().mean(-1).clamp_min(eps)
        converged = torch.zeros(P, dtype=torch.bool, device=z.device)
        for _ in range(self.max_iter):
            active = ~converged
            if not bool(active.any()):
                break
            d, info = torch.linalg.solve_ex(H + lam[:, None, None] * eye, -g.unsqueeze(-1))
            d = torch.where(active[:, None], d.squeeze(-1), torch.zeros_like(p))
            p_try = p + d
            E_try = vE(p_try, uz, uw)
            inside = polyline_inside(manifold, z, w, from_real(p_try.reshape(P, K, 2 * n)))
            ok = (info == 0) & torch.isfinite(E_try) & inside
            accept = active & ok & (E_try <= E)
            p = torch.where(accept[:, None], p_try, p)
            E = torch.where(accept, E_try, E)
            new_lam = torch.where(accept, lam / DAMPING_DOWN, lam * DAMPING_UP)
            lam = torch.where(active, new_lam, lam)
            step = d.abs().amax(-1) / (1 + p.abs().amax(-1))
            converged = converged | (accept & (step < eps**0.5))
            converged = converged | (active & (lam > STALL_DAMPING * (1 + E.abs())))
            if bool(accept.any()):
                g, H = derivatives(p)
        gnorm = g.abs().amax(-1) / (1 + E.abs())
        return from_real(p.reshape(P, K, 2 * n)), converged & (gnorm < ENERGY_GRAD_TOL)

    # -- the solve --------------------------------------------------------------------------
    def solve(self, manifold, z, w):
        P, n = z.shape
        dtype, dev = z.real.dtype, z.device
        S = self.n_starts
        v = torch.zeros(S, P, n, dtype=z.dtype, device=dev)
        conv = torch.zeros(S, P, dtype=torch.bool, device=dev)
        cert = torch.zeros(S, P, dtype=torch.bool, device=dev)
        res = torch.full((S, P), float("inf"), dtype=dtype, device=dev)
        if self.refine is None:
            return self._polyline_only(manifold, z, w)
        todo = torch.arange(P, device=dev)
        for s in range(S):
            if todo.numel() == 0:
                break
            zs, ws = z[todo], w[todo]
            X, _ = self.minimise(manifold, zs, ws, self.initial_curve(manifold, zs, ws, s))
            vs, cs, ce, rs = self.refine.refine(manifold, zs, ws, polyline_tangent(zs, X))
            v[s, todo], conv[s, todo], cert[s, todo], res[s, todo] = vs, cs, ce, rs
            if not self.all_starts:
                todo = todo[~ce]
        v, conv, cert, res = self._restart(manifold, z, w, v, conv, cert, res)
        vb, L, cb, ceb, rb, status, cand = pick_shortest(manifold, z, v, conv, cert, res)
        return LogResult(vb, L, cb, rb, cand, connection_of(manifold), self, ceb, status)

    def _restart(self, manifold, z, w, v, conv, cert, res):
        """Shoot the other way round for pairs whose converged candidates are all uncertified."""
        stuck = conv.any(0) & ~(conv & cert).any(0)
        if not bool(stuck.any()):
            return v, conv, cert, res
        idx = stuck.nonzero().squeeze(-1)
        G = manifold.metric_field(z[idx])
        L = torch.where(conv[:, idx], h_norm(G[None], v[:, idx]), float("inf"))
        vc = v[L.argmin(0), idx]  # (Q, n): shortest converged (uncertified) candidate
        extra = []
        for s in RESTART_SCALES:
            if idx.numel() == 0:
                break
            vs, cs, ce, rs = self.refine.refine(manifold, z[idx], w[idx], -s * vc)
            block = [torch.zeros_like(v[0]), conv[0] & False, cert[0] & False, res[0] + math.inf]
            block[0][idx], block[1][idx], block[2][idx], block[3][idx] = vs, cs, ce, rs
            extra.append(block)
            keep = ~ce
            idx, vc = idx[keep], vc[keep]
        if not extra:
            return v, conv, cert, res
        return (
            torch.cat([v, torch.stack([b[0] for b in extra])]),
            torch.cat([conv, torch.stack([b[1] for b in extra])]),
            torch.cat([cert, torch.stack([b[2] for b in extra])]),
            torch.cat([res, torch.stack([b[3] for b in extra])]),
        )

    def _polyline_only(self, manifold, z, w):
        P, n = z.shape
        S = self.n_starts
        zz, ww = z.repeat(S, 1), w.repeat(S, 1)
        X0 = torch.cat([self.initial_curve(manifold, z, w, s) for s in range(S)])
        X, conv = self.minimise(manifold, zz, ww, X0)
        v0 = polyline_tangent(zz, X)
        L = polyline_length(manifold, zz, ww, X)
        Ls, cs = L.reshape(S, P), conv.reshape(S, P)
        best = torch.where(cs, Ls, torch.full_like(Ls, float("inf"))).argmin(0)
        pick = torch.arange(P, device=z.device)
        c = cs[best, pick]
        return LogResult(
            velocity=v0.reshape(S, P, n)[best, pick],
            length=Ls[best, pick],
            converged=c,
            residual=torch.full((P,), float("nan"), dtype=z.real.dtype, device=z.device),
            candidate_lengths=torch.where(cs, Ls, torch.full_like(Ls, float("nan"))).T,
            connection=connection_of(manifold),
            solver=self,
            certified=c,
            status=torch.where(
                c, SUCCESS, torch.where(torch.isnan(Ls).all(0), NON_FINITE, NOT_CONVERGED)
            ),
            certificate="polyline",
        )
