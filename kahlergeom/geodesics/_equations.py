r"""The geodesic and parallel-transport equations as a real first-order system.

State layout (both connections): ``y = (x, y, Re ż, Im ż[, Re V, Im V])``, i.e.
``(to_real(z), to_real(ż)[, to_real(V)])`` of size ``4n`` (``6n`` with a transported vector).

* Kähler connection (``manifold.is_kahler``), holomorphic coordinates:
  $\ddot z_l = -\sum_{ab}\Gamma^l_{ab}\,\dot z_a \dot z_b$ and
  $\dot V_l = -\sum_{ab}\Gamma^l_{ab}\,\dot z_a V_b$, with $\Gamma$ from `kahler_christoffel`.
* Levi-Civita connection of $G_R$ (any Hermitian metric), real coordinates u = (x, y):
  $\ddot u_k = -\sum_{ij}\Gamma^k_{ij}\dot u_i \dot u_j$ and
  $\dot V_k = -\sum_{ij}\Gamma^k_{ij}\dot u_i V_j$, with $\Gamma$ from `levi_civita_christoffel`.

For a Kähler metric the two agree (the Levi-Civita connection of $G_R$ is the Kähler one).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.autograd.forward_ad as fwAD
from torch.func import grad, jvp, vmap

from kahlergeom._linalg import from_real, to_real, wirtinger
from kahlergeom.curvature._connection import real_metric_fn

KAHLER = "kahler"
LEVI_CIVITA = "levi-civita"


def connection_of(manifold) -> str:
    """``"kahler"`` when ``manifold.is_kahler``, else ``"levi-civita"``."""
    return KAHLER if manifold.is_kahler else LEVI_CIVITA


def holomorphic_derivative(metric_fn: Callable, z: torch.Tensor, zd: torch.Tensor):
    r"""``(G, D)`` with $D[..., b, m] = \sum_a \dot z_a\,\partial_a g_{b\bar m}$.

    One ``torch.func.jvp`` with the two real directions ż and iż stacked on a new leading
    axis: $\sum_a \dot z_a \partial_a G = \tfrac12(dG[\dot z] - i\, dG[i\dot z])$.
    """
    G2, dG2 = jvp(metric_fn, (torch.stack([z, z]),), (torch.stack([zd, 1j * zd]),))
    return G2[0], wirtinger(dG2[0], dG2[1])[0]


def _holomorphic_derivative_eager(metric_fn: Callable, z: torch.Tensor, zd: torch.Tensor):
    """`holomorphic_derivative` with ``torch.autograd.forward_ad`` dual tensors.

    The same product, about half the per-call overhead of ``torch.func.jvp``; not usable under
    ``torch.func`` transforms (nested forward mode), so only the plain integrations use it.
    """
    with fwAD.dual_level():
        x = fwAD.make_dual(torch.stack([z, z]), torch.stack([zd, 1j * zd]))
        out = fwAD.unpack_dual(metric_fn(x))
    return out.primal[0], wirtinger(out.tangent[0], out.tangent[1])[0]


def closed_form_of(manifold):
    """The manifold's closed-form Christoffel contractions (an object with
    ``christoffel_contract(z, u, v)`` and ``christoffel_spray_linearised(z, u, dz, du)``, e.g. a
    closed-form `KahlerPotential`), from its optional ``closed_form_christoffel`` attribute;
    ``None`` when it has none or is not Kähler."""
    if not manifold.is_kahler:
        return None
    return getattr(manifold, "closed_form_christoffel", None)


def _closed_form_rhs(cf, n: int, transport: bool) -> Callable:
    """`geodesic_rhs` from closed-form contractions: no automatic differentiation."""

    def f(y: torch.Tensor) -> torch.Tensor:
        ud = y[..., 2 * n : 4 * n]
        z, zd = from_real(y[..., : 2 * n]), from_real(ud)
        acc = cf.christoffel_contract(z, zd, zd)
        parts = [ud, -acc.real, -acc.imag]
        if transport:
            tr = cf.christoffel_contract(z, zd, from_real(y[..., 4 * n :]))
            parts += [-tr.real, -tr.imag]
        return torch.cat(parts, -1)

    return f


def geodesic_rhs(manifold, transport: bool = False, *, traceable: bool = True) -> Callable:
    r"""Right-hand side ``y ↦ ẏ`` of the geodesic (and transport) system, ``(..., 4n|6n)``.

    Unchecked and, with ``traceable`` (default), traceable by ``torch.func`` (the connection
    choice is a static branch). A Kähler manifold with closed-form Christoffel contractions
    (`closed_form_of`) uses them directly: no automatic differentiation at all. Otherwise
    ``traceable=False`` computes the Kähler metric derivative with
    ``torch.autograd.forward_ad`` dual tensors (about half the per-call overhead, but not
    usable under ``torch.func`` transforms). The Christoffel contractions are computed
    without forming Γ: Kähler,
    $\sum_{ab}\Gamma^l_{ab}\dot z_a X_b = [G^{-T} D^\top X]_l$ with $D$ from
    `holomorphic_derivative` (one jvp instead of the 2n of `kahler_christoffel`);
    Levi-Civita, $\Gamma^k_{ij}\dot u_i X_j = \tfrac12 [G_R^{-1}(dG_R[\dot u]X
    + dG_R[X]\dot u - \nabla_u(\dot u^\top G_R X))]_k$.
    """
    n = manifold.n
    cf = closed_form_of(manifold)
    if cf is not None:
        return _closed_form_rhs(cf, n, transport)
    metric_fn = manifold.metric_field
    kahler = manifold.is_kahler
    gr_fn = real_metric_fn(metric_fn)
    # The eager path cannot run a metric field that itself uses torch.func forward mode (e.g. a
    # potential differentiated by autodiff): fall back to the traceable path on first failure.
    chosen = [holomorphic_derivative if traceable else _holomorphic_derivative_eager]

    def hd(fn, z, zd):
        try:
            return chosen[0](fn, z, zd)
        except RuntimeError:
            if chosen[0] is holomorphic_derivative:
                raise
            chosen[0] = holomorphic_derivative
            return holomorphic_derivative(fn, z, zd)

    def f(y: torch.Tensor) -> torch.Tensor:
        ud = y[..., 2 * n : 4 * n]
        if kahler:
            z, zd = from_real(y[..., : 2 * n]), from_real(ud)
            G, D = hd(metric_fn, z, zd)
            rhs = [torch.einsum("...bm,...b->...m", D, zd)]
            if transport:
                rhs.append(torch.einsum("...bm,...b->...m", D, from_real(y[..., 4 * n :])))
            sol = torch.linalg.solve_ex(G.transpose(-1, -2), torch.stack(rhs, -1))[0]
            parts = [ud] + [to_real(-sol[..., k]) for k in range(len(rhs))]
        else:
            u = y[..., : 2 * n]
            GR, dGu = jvp(gr_fn, (u,), (ud,))

            def grad_form(a, b):  # ∇_u (aᵀ G_R(u) b), per batch entry
                return grad(lambda uu: torch.einsum("...i,...ij,...j->", a, gr_fn(uu), b))(u)

            rhs = [torch.einsum("...ij,...j->...i", dGu, ud) - 0.5 * grad_form(ud, ud)]
            if transport:
                X = y[..., 4 * n :]
                dGX = jvp(gr_fn, (u,), (X,))[1]
                tr = torch.einsum("...ij,...j->...i", dGu, X)
                tr = tr + torch.einsum("...ij,...j->...i", dGX, ud) - grad_form(ud, X)
                rhs.append(0.5 * tr)
            sol = torch.linalg.solve_ex(GR, torch.stack(rhs, -1))[0]
            parts = [ud] + [-sol[..., k] for k in range(len(rhs))]
        return torch.cat(parts, -1)

    return f


#: A state (position or velocity) larger than eps^ESCAPE_EXPONENT of its dtype (6.7e7 in float64)
#: is treated as outside the domain: the trajectory is running to infinity in the chart (e.g.
#: through the hyperplane at infinity of a Fubini–Study chart) or out of the floating-point
#: range, and an adaptive integrator would otherwise spend thousands of steps approaching it.
ESCAPE_EXPONENT = -0.5


def inside_fn(manifold) -> Callable:
    """``y ↦ manifold.contains(z) & (|(z, ż)| < eps^ESCAPE_EXPONENT)``, bool ``(B,)``."""
    n = manifold.n

    def inside(y):
        bound = torch.finfo(y.dtype).eps ** ESCAPE_EXPONENT
        small = y[..., : 4 * n].abs().amax(-1) < bound
        return manifold.contains(from_real(y[..., : 2 * n])) & small

    return inside


def variational_rhs(f: Callable, d: int, m: int) -> Callable:
    r"""Right-hand side of ``ẏ = f(y)`` together with its variational equations.

    The state ``(B, d·(1 + m))`` holds ``y`` and ``m`` tangent vectors ``δy_j`` (row-major
    after ``y``); $\dot{\delta y}_j = Df(y)\,\delta y_j$ is one forward-mode product
    (``torch.func.jvp``, vmapped over the m tangents, the primal evaluated once). Integrated
    from ``δy_j(0) = (0, e_j)`` along a geodesic, the position blocks of the tangents are the
    Jacobi fields $Y(t) = \partial u(t) / \partial \dot u(0)$ with ``Y(0) = 0``.
    """

    def F(Y: torch.Tensor) -> torch.Tensor:
        B = Y.shape[0]
        y = Y[:, :d]
        T = Y[:, d:].reshape(B, m, d).transpose(0, 1)  # (m, B, d)
        fy, dT = vmap(lambda t: jvp(f, (y,), (t,)), out_dims=(None, 0))(T)
        return torch.cat([fy, dT.transpose(0, 1).reshape(B, m * d)], -1)

    return F


def geodesic_variational_rhs(manifold) -> Callable:
    r"""`variational_rhs` of the geodesic system (``d = 4n``, ``m = 2n`` tangents).

    With closed-form Christoffel contractions (`closed_form_of`) the linearisation is written
    out, batched over the m tangents by broadcasting and without automatic differentiation:
    for $\ddot z = -\Gamma_z(\dot z, \dot z)$,
    $\delta\ddot z = -\partial_{\delta z}\Gamma_z(\dot z, \dot z) - 2\,\Gamma_z(\dot z,
    \delta\dot z)$ (Γ symmetric). Otherwise forward-mode products of `geodesic_rhs`.
    """
    n = manifold.n
    d, m = 4 * n, 2 * n
    cf = closed_form_of(manifold)
    if cf is None:
        return variational_rhs(geodesic_rhs(manifold), d, m)
    f = _closed_form_rhs(cf, n, transport=False)

    def F(Y: torch.Tensor) -> torch.Tensor:
        B = Y.shape[0]
        y = Y[:, :d]
        T = Y[:, d:].reshape(B, m, d)
        z, zd = from_real(y[:, None, : 2 * n]), from_real(y[:, None, 2 * n :])
        dz, dzd = from_real(T[..., : 2 * n]), from_real(T[..., 2 * n :])
        dacc = cf.christoffel_spray_linearised(z, zd, dz, dzd)
        dT = torch.cat([T[..., 2 * n :], -dacc.real, -dacc.imag], -1)
        return torch.cat([f(y), dT.reshape(B, m * d)], -1)

    return F
