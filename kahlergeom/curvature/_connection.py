r"""Connection coefficients of a Hermitian metric field, by automatic differentiation.

Two connections:

* Kähler (Chern = Levi-Civita when the metric is Kähler), holomorphic coordinates:
  $\Gamma^l_{ab} = \sum_m g^{l\bar m}\,\partial_a g_{b\bar m}$, with $g^{l\bar m}$ the matrix
  $G^{-T}$ (``Σ_m g^{l m̄} g_{k m̄} = δ_lk``). Only the unmixed symbols survive; the geodesic
  equation is $\ddot z_l + \sum_{ab}\Gamma^l_{ab}\dot z_a \dot z_b = 0$.
* Levi-Civita of the real metric $G_R$ in coordinates u = (x, y) ∈ R^{2n}, for Hermitian
  fields that are not Kähler: $\Gamma^k_{ij} = \tfrac12 g^{kl}(\partial_i g_{jl}
  + \partial_j g_{il} - \partial_l g_{ij})$.

Both take an *unchecked*, ``torch.func``-traceable metric field ``metric_fn(z)``:
``(..., n)`` complex → ``(..., n, n)`` complex (e.g. ``HermitianManifold.metric_field``).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from kahlergeom._linalg import from_real, real_metric, to_real
from kahlergeom.wirtinger._ddbar import _wirtinger_jacobian


def kahler_christoffel(
    metric_fn: Callable, z: torch.Tensor, chunk_size: int | None = None
) -> torch.Tensor:
    r"""Kähler Christoffel symbols ``Γ[..., l, a, b]`` $=\Gamma^l_{ab}$, shape ``(..., n, n, n)``.

    Symmetric in (a, b) exactly when the metric is Kähler.
    """
    G = metric_fn(z)
    dG, _ = _wirtinger_jacobian(metric_fn, z, chunk_size)  # dG[..., b, m, a] = ∂_a g_{b m̄}
    rhs = dG.permute(*range(dG.ndim - 3), -2, -1, -3)  # [..., m, a, b]
    n = z.shape[-1]
    flat = rhs.reshape(*rhs.shape[:-2], n * n)
    gamma = torch.linalg.solve(G.transpose(-1, -2), flat)  # G^{-T} applied over m
    return gamma.reshape(*rhs.shape)


def real_metric_fn(metric_fn: Callable) -> Callable:
    """u ∈ R^{2n} ↦ G_R(u) = [[Re G, Im G], [−Im G, Re G]] (real 2n×2n)."""

    def fn(u: torch.Tensor) -> torch.Tensor:
        return real_metric(metric_fn(from_real(u)))

    return fn


def levi_civita_christoffel(
    metric_fn: Callable, z: torch.Tensor, chunk_size: int | None = None
) -> torch.Tensor:
    r"""Levi-Civita symbols of $G_R$ in real coordinates, ``Γ[..., k, i, j]`` $=\Gamma^k_{ij}$.

    Shape ``(..., 2n, 2n, 2n)`` (indices over u = (x, y), x first). The geodesic equation is
    $\ddot u_k + \sum_{ij}\Gamma^k_{ij}\dot u_i \dot u_j = 0$.
    """
    from torch.func import jacfwd, vmap

    gfn = real_metric_fn(metric_fn)
    u = to_real(z)
    uf = u.reshape(-1, u.shape[-1])
    gr = gfn(uf)
    dg = vmap(jacfwd(gfn), chunk_size=chunk_size)(uf)  # dg[..., i, j, k] = ∂_k g_ij
    first = 0.5 * first_kind(dg)  # Γ_{l i j} of the first kind, [..., l, i, j]
    m = u.shape[-1]
    gamma = torch.linalg.solve(gr, first.reshape(-1, m, m * m))
    return gamma.reshape(*u.shape[:-1], m, m, m)


def first_kind(dg: torch.Tensor) -> torch.Tensor:
    """Twice the Christoffel symbols of the first kind, ``[..., l, i, j]``.

    ∂_i g_jl + ∂_j g_il − ∂_l g_ij from ``dg[..., p, q, r]`` = ∂_r g_pq.
    """
    a = torch.einsum("...jli->...lij", dg)  # ∂_i g_jl
    b = torch.einsum("...ilj->...lij", dg)  # ∂_j g_il
    c = torch.einsum("...ijl->...lij", dg)  # ∂_l g_ij
    return a + b - c
