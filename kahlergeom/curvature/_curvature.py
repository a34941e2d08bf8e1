r"""Curvature of a Kähler metric field by automatic differentiation, batched.

Conventions (see the conventions page): $G[a, b] = g_{a\bar b}$, $h(u, v) = u^\top G \bar v$,
$\partial_a = \tfrac12(\partial_{x_a} - i\,\partial_{y_a})$, and $g^{l\bar m}$ is the matrix
$G^{-T}$. The curvature tensor of a Kähler metric is

$$R_{a\bar b c\bar d} = -\partial_c\bar\partial_d\, g_{a\bar b}
  + \sum_{m,k} g^{m\bar k}\,(\partial_c g_{a\bar k})\,(\bar\partial_d g_{m\bar b}),$$

stored as ``R[..., a, b, c, d]``. With these conventions the Fubini–Study metric has
$R_{a\bar b c\bar d} = g_{a\bar b} g_{c\bar d} + g_{a\bar d} g_{c\bar b}$, holomorphic sectional
curvature 2, Ricci form $(n+1)G$ and scalar curvature $n(n+1)$.

Every function takes an *unchecked*, ``torch.func``-traceable metric field
``metric_fn(z)``: ``(..., n)`` complex → ``(..., n, n)`` complex (e.g.
``HermitianManifold.metric_field``), differentiates it in real coordinates u = (x, y), and maps
over the points with ``torch.func.vmap`` (``chunk_size`` bounds memory). These are the Kähler
formulas: for a Hermitian metric that is not closed they are not the curvature of its
Levi-Civita connection (use `riemannian_sectional_curvature` there).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch.func import jacfwd, jvp, vmap

from kahlergeom._linalg import (
    from_real,
    hermitian_logdet,
    levi_from_real_hessian,
    to_real,
    wirtinger,
)
from kahlergeom.curvature._connection import first_kind, real_metric_fn
from kahlergeom.wirtinger._ddbar import _levi

__all__ = [
    "bisectional_curvature",
    "holomorphic_sectional_curvature",
    "riemann",
    "riemannian_sectional_curvature",
    "ricci",
    "scalar_curvature",
]


def _complex_view(metric_fn: Callable) -> Callable:
    """u ∈ R^{2n} ↦ G(from_real(u)) as a real tensor (n, n, 2) = (Re G, Im G)."""

    def fn(u: torch.Tensor) -> torch.Tensor:
        return torch.view_as_real(metric_fn(from_real(u)))

    return fn


def _as_complex(t: torch.Tensor, axis: int) -> torch.Tensor:
    """Recombine a (re, im) axis of size 2 into a complex tensor."""
    re, im = t.unbind(axis)
    return torch.complex(re, im)


def _flat(*tensors: torch.Tensor) -> tuple[list[torch.Tensor], torch.Size]:
    """Broadcast tensors of shape (..., n) to a common batch and flatten it to (B, n)."""
    batch = torch.broadcast_shapes(*(t.shape[:-1] for t in tensors))
    flat = [t.expand(*batch, t.shape[-1]).reshape(-1, t.shape[-1]) for t in tensors]
    return flat, batch


def _map_points(point: Callable, z, u, v, chunk_size) -> torch.Tensor:
    """``point(z, u, v)`` (one point each, → scalar) vmapped over broadcast batches."""
    (zf, uf, vf), batch = _flat(z, u, v)
    return vmap(point, chunk_size=chunk_size)(zf, uf, vf).reshape(batch)


def _riemann_point(metric_fn: Callable, u: torch.Tensor) -> torch.Tensor:
    """R[a, b, c, d] at one point u ∈ R^{2n}."""
    n = u.shape[-1] // 2
    fn = _complex_view(metric_fn)
    G = _as_complex(fn(u), -1)
    J = _as_complex(jacfwd(fn)(u), -2)  # J[a, b, i] = ∂G_ab/∂u_i
    Hs = _as_complex(jacfwd(jacfwd(fn))(u), -3)  # Hs[a, b, i, j] = ∂²G_ab/∂u_i∂u_j
    # dG[a, b, c] = ∂_c g_{a b̄}, dbarG[a, b, d] = ∂̄_d g_{a b̄}
    dG, dbarG = wirtinger(J[..., :n], J[..., n:])
    # ∂_c ∂̄_d g_{a b̄}: the Levi matrix of each entry's real Hessian, [a, b, c, d]
    ddbarG = levi_from_real_hessian(Hs)
    Ginv = torch.linalg.inv(G)  # g^{m k̄} = Ginv[k, m]
    quad = torch.einsum("km,akc,mbd->abcd", Ginv, dG, dbarG)
    return -ddbarG + quad


def riemann(metric_fn: Callable, z: torch.Tensor, chunk_size: int | None = None) -> torch.Tensor:
    r"""Curvature tensor ``R[..., a, b, c, d]`` $= R_{a\bar b c\bar d}$, ``(..., n, n, n, n)``.

    $R_{a\bar b c\bar d} = -\partial_c\bar\partial_d g_{a\bar b} + \sum_{m,k} g^{m\bar k}
    (\partial_c g_{a\bar k})(\bar\partial_d g_{m\bar b})$, from the first and second real
    derivatives of the metric field (``jacfwd`` twice, vmapped over points). For a Kähler metric
    it has the symmetries $R_{a\bar b c\bar d} = R_{c\bar b a\bar d} = R_{a\bar d c\bar b}$ and
    $\overline{R_{a\bar b c\bar d}} = R_{b\bar a d\bar c}$. Cost O(n⁴) memory per point; use
    `holomorphic_sectional_curvature` or `bisectional_curvature` for contractions.
    """
    (zf,), batch = _flat(z)
    n = z.shape[-1]
    R = vmap(lambda u: _riemann_point(metric_fn, u), chunk_size=chunk_size)(to_real(zf))
    return R.reshape(*batch, n, n, n, n)


def ricci(metric_fn: Callable, z: torch.Tensor, chunk_size: int | None = None) -> torch.Tensor:
    r"""Ricci form ``Ric[..., a, b]`` $= -\partial_a\bar\partial_b \log\det G$, ``(..., n, n)``.

    Computed as the Levi matrix of $-\log\det G$ (log det via Cholesky), not by contracting the
    4-index tensor; for a Kähler metric it equals $\sum_{cd} g^{c\bar d} R_{a\bar b c\bar d}$.
    Hermitian. The metric field is batched, so $-\log\det G$ is differentiated by the batched
    engine of `kahlergeom.ddbar` (blocks of points through ``torch.autograd``; per point under
    ``torch.func.vmap`` inside ``torch.func`` transforms): 1.1–3× faster than per point
    (docs/benchmarks.md).
    """

    def neg_logdet(w: torch.Tensor) -> torch.Tensor:
        return -hermitian_logdet(metric_fn(w))

    # Through the Cholesky backward a loop of 2n reverse passes was 1.3–1.9× faster than one
    # batched pass at n = 4–8 (benchmarks/bench_curvature.py): declare it.
    neg_logdet.ddbar_mode = "loop"
    return _levi(neg_logdet, z, chunk_size, batched=True)


def scalar_curvature(
    metric_fn: Callable, z: torch.Tensor, chunk_size: int | None = None
) -> torch.Tensor:
    r"""Scalar curvature $s = \sum_{ab} g^{a\bar b}\,\mathrm{Ric}_{a\bar b}
    = \mathrm{tr}(G^{-1}\,\mathrm{Ric})$, real ``(...)``.

    Normalised so that Fubini–Study gives $s = n(n+1)$ and, for n = 1, $s$ equals the
    holomorphic sectional curvature (half the Gaussian curvature). The scalar curvature of the
    real Riemannian metric $G_R$ is $4s$ in this convention (lengths from h).
    """
    G = metric_fn(z)
    Ric = ricci(metric_fn, z, chunk_size)
    return torch.linalg.solve(G, Ric).diagonal(dim1=-2, dim2=-1).sum(-1).real


def _directional(metric_fn: Callable, u: torch.Tensor, t: torch.Tensor):
    """(G, D_t G, D_t D_t G) at u ∈ R^{2n} along the real direction t (complex (n, n) each)."""
    fn = _complex_view(metric_fn)

    def first(x):
        return jvp(fn, (x,), (t,))

    (G, dG), (_, ddG) = jvp(first, (u,), (t,))
    return _as_complex(G, -1), _as_complex(dG, -1), _as_complex(ddG, -1)


def _bisectional_numerator_point(
    metric_fn: Callable, u: torch.Tensor, a: torch.Tensor, v: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    r"""$R(a, \bar a, v, \bar v)$, $h(a, a)$, $h(v, v)$ at one point, without the 4-index tensor.

    With $\varphi(z) = a^\top G(z) \bar a$ and real directional derivatives $D_w$:
    $\sum v_c\bar v_d \partial_c\bar\partial_d \varphi = \tfrac14 (D_v^2 + D_{iv}^2)\varphi$, and
    $\partial_v G = \tfrac12(D_v - i D_{iv}) G$; then, with $w = a^\top \partial_v G$,
    $R(a,\bar a, v, \bar v) = -\tfrac14 (D_v^2 + D_{iv}^2)\varphi + w^\top G^{-1}\bar w$.
    """
    tv = to_real(v)
    tiv = to_real(1j * v)
    G, d1, dd1 = _directional(metric_fn, u, tv)
    _, d2, dd2 = _directional(metric_fn, u, tiv)
    dvG = wirtinger(d1, d2)[0]  # Σ_c v_c ∂_c G
    levi_term = 0.25 * torch.einsum("i,ij,j->", a, dd1 + dd2, a.conj())
    w = torch.einsum("i,ik->k", a, dvG)
    quad = torch.einsum("k,k->", w, torch.linalg.solve(G, w.conj()))
    num = (-levi_term + quad).real
    haa = torch.einsum("i,ij,j->", a, G, a.conj()).real
    hvv = torch.einsum("i,ij,j->", v, G, v.conj()).real
    return num, haa, hvv


def bisectional_curvature(
    metric_fn: Callable,
    z: torch.Tensor,
    u: torch.Tensor,
    v: torch.Tensor,
    chunk_size: int | None = None,
) -> torch.Tensor:
    r"""Holomorphic bisectional curvature
    $B(u, v) = R(u, \bar u, v, \bar v) / (h(u, u)\, h(v, v))$, real ``(...)``.

    $R(u, \bar u, v, \bar v) = \sum R_{a\bar b c\bar d} u_a \bar u_b v_c \bar v_d$ is contracted
    without building the 4-index tensor: second directional derivatives of the metric along the
    complex line $z + t v$ (nested ``jvp``) plus the Christoffel-type term $w^\top G^{-1}\bar w$,
    $w = u^\top \partial_v G$. ``z``, ``u``, ``v`` of shape ``(..., n)`` broadcast together.
    """

    def point(zp, up, vp):
        num, huu, hvv = _bisectional_numerator_point(metric_fn, to_real(zp), up, vp)
        return num / (huu * hvv)

    return _map_points(point, z, u, v, chunk_size)


def holomorphic_sectional_curvature(
    metric_fn: Callable, z: torch.Tensor, v: torch.Tensor, chunk_size: int | None = None
) -> torch.Tensor:
    r"""Holomorphic sectional curvature $H(v) = R(v, \bar v, v, \bar v) / h(v, v)^2$, ``(...)``.

    Contracted without the 4-index tensor (see `bisectional_curvature`, of which it is the case
    u = v). With h-lengths the sectional curvature of the real plane span{v, iv} is $2H(v)$;
    for n = 1 that is the Gaussian curvature. Fubini–Study: 2; complex hyperbolic ball: −2.
    """
    return bisectional_curvature(metric_fn, z, v, v, chunk_size)


# -- Riemannian curvature of G_R (any Hermitian metric, Kähler or not) ------------------------


def _lc_gamma(gfn: Callable) -> Callable:
    """u ↦ Γ[k, i, j] of the real metric field gfn(u) (2n × 2n) at one point."""

    def gamma(u):
        g = gfn(u)
        dg = jacfwd(gfn)(u)  # dg[p, q, r] = ∂_r g_pq
        first = 0.5 * first_kind(dg)
        # inv, not solve: vmap(jacfwd(torch.linalg.solve)) returns garbage in torch 2.13.
        return torch.einsum("kl,lij->kij", torch.linalg.inv(g), first)

    return gamma


def _sectional_point(metric_fn: Callable, u, X, Y):
    gfn = real_metric_fn(metric_fn)
    gamma_fn = _lc_gamma(gfn)
    g = gfn(u)
    Gam = gamma_fn(u)
    dGam = jacfwd(gamma_fn)(u)  # dGam[k, i, j, r] = ∂_r Γ^k_ij
    # R^k_{l i j} = ∂_i Γ^k_{jl} − ∂_j Γ^k_{il} + Γ^k_{im} Γ^m_{jl} − Γ^k_{jm} Γ^m_{il};
    # (R(X, Y) Y)^k = R^k_{l i j} Y^l X^i Y^j, and K = g(R(X, Y) Y, X) / (|X|²|Y|² − g(X, Y)²).
    RXYY = (
        torch.einsum("kjli,l,i,j->k", dGam, Y, X, Y)
        - torch.einsum("kilj,l,i,j->k", dGam, Y, X, Y)
        + torch.einsum("kim,mjl,l,i,j->k", Gam, Gam, Y, X, Y)
        - torch.einsum("kjm,mil,l,i,j->k", Gam, Gam, Y, X, Y)
    )
    num = torch.einsum("k,kl,l->", RXYY, g, X)
    gxx = torch.einsum("i,ij,j->", X, g, X)
    gyy = torch.einsum("i,ij,j->", Y, g, Y)
    gxy = torch.einsum("i,ij,j->", X, g, Y)
    return num / (gxx * gyy - gxy**2)


def riemannian_sectional_curvature(
    metric_fn: Callable,
    z: torch.Tensor,
    u: torch.Tensor,
    v: torch.Tensor,
    chunk_size: int | None = None,
) -> torch.Tensor:
    r"""Sectional curvature of the real metric $G_R$ on the real plane spanned by u and v.

    Valid for any Hermitian metric field, Kähler or not: the Levi-Civita connection of
    $G_R$ in coordinates (x, y) (docs/conventions.md § Curvature), $R^k{}_{lij} =
    \partial_i\Gamma^k_{jl}
    - \partial_j\Gamma^k_{il} + \Gamma^k_{im}\Gamma^m_{jl} - \Gamma^k_{jm}\Gamma^m_{il}$ and
    $K(X, Y) = \langle R(X, Y)Y, X\rangle / (|X|^2|Y|^2 - \langle X, Y\rangle^2)$ with
    X = (Re u, Im u), Y = (Re v, Im v). Real ``(...)``; u and v must be ℝ-linearly
    independent. For a Kähler metric, $K(v, iv) = 2H(v)$.
    """

    def point(zp, up, vp):
        return _sectional_point(metric_fn, to_real(zp), to_real(up), to_real(vp))

    return _map_points(point, z, u, v, chunk_size)
