"""Closed-form Christoffel contractions and the fast geodesic paths built on them (issue 11).

Oracles: the autodiff defaults of `KahlerPotential` (one jvp of ``levi``), the Christoffel
tensor of `kahlergeom.curvature.kahler_christoffel`, the generic forward-mode variational
equations, and the closed-form distances.
"""

from __future__ import annotations

import pytest
import torch

import kahlergeom as kg
from kahlergeom import geodesics
from kahlergeom._linalg import to_real
from kahlergeom.curvature import kahler_christoffel
from kahlergeom.geodesics import Shooting
from kahlergeom.geodesics._bvp import (
    assemble_polyline_derivatives,
    energy_fn,
    segment_derivatives_batched,
    segment_energy_fn,
)
from kahlergeom.geodesics._equations import (
    closed_form_of,
    geodesic_rhs,
    geodesic_variational_rhs,
    variational_rhs,
)
from kahlergeom.potentials import (
    AutogradChristoffel,
    ComplexHyperbolic,
    Flat,
    FubiniStudy,
    KahlerPotential,
    Product,
    SiegelDisk,
)

C128 = torch.complex128

CLOSED = [
    ("fs", lambda: FubiniStudy(3), 1.5),
    ("ball", lambda: ComplexHyperbolic(3), 0.25),
    ("flat", lambda: Flat(2), 1.0),
    ("siegel", lambda: SiegelDisk(2), 0.2),
    ("product", lambda: Product([FubiniStudy(1), ComplexHyperbolic(2), Flat(1)]), 0.3),
]


def _rand(g, *shape, scale=1.0):
    return scale * torch.randn(*shape, dtype=C128, generator=g)


@pytest.mark.parametrize("name, build, scale", CLOSED, ids=[c[0] for c in CLOSED])
def test_closed_form_christoffel_matches_autodiff(name, build, scale):
    pot = build()
    assert pot.has_closed_form_christoffel
    g = torch.Generator().manual_seed(3)
    n = pot.n
    z, dz = _rand(g, 6, n, scale=scale), _rand(g, 6, n)
    u, v, du = _rand(g, 6, n), _rand(g, 6, n), _rand(g, 6, n)
    base = KahlerPotential
    pairs = [
        (pot.christoffel_contract(z, u, v), base.christoffel_contract(pot, z, u, v)),
        (pot.christoffel_contract(z, u, u), base.christoffel_contract(pot, z, u, u)),
        (
            pot.christoffel_contract_derivative(z, dz, u, v),
            base.christoffel_contract_derivative(pot, z, dz, u, v),
        ),
        (
            pot.christoffel_spray_linearised(z, u, dz, du),
            base.christoffel_spray_linearised(pot, z, u, dz, du),
        ),
    ]
    for closed, auto in pairs:
        torch.testing.assert_close(closed, auto, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("name, build, scale", CLOSED, ids=[c[0] for c in CLOSED])
def test_closed_form_christoffel_matches_curvature_tensor(name, build, scale):
    """Independent oracle: Γ[l, a, b] of `kahler_christoffel` contracted with u, v."""
    pot = build()
    g = torch.Generator().manual_seed(4)
    z, u, v = _rand(g, 5, pot.n, scale=scale), _rand(g, 5, pot.n), _rand(g, 5, pot.n)
    gamma = kahler_christoffel(kg.KahlerManifold(pot).metric_field, z)
    want = torch.einsum("...lab,...a,...b->...l", gamma, u, v)
    torch.testing.assert_close(pot.christoffel_contract(z, u, v), want, rtol=1e-11, atol=1e-12)


def test_closed_form_christoffel_broadcasts():
    pot = FubiniStudy(2)
    g = torch.Generator().manual_seed(5)
    z, u = _rand(g, 4, 1, 2), _rand(g, 4, 3, 2)
    out = pot.christoffel_contract(z, u, u)
    assert out.shape == (4, 3, 2)
    torch.testing.assert_close(out[:, 1], pot.christoffel_contract(z[:, 0], u[:, 1], u[:, 1]))


def test_product_with_autodiff_factor_is_not_closed_form():
    class Mine(KahlerPotential):
        def __call__(self, z):
            return (z.real**2 + z.imag**2).sum(-1)

    assert not Product([FubiniStudy(1), Mine(1)]).has_closed_form_christoffel
    assert not Mine(1).has_closed_form_christoffel
    M = kg.KahlerManifold(Product([FubiniStudy(1), Mine(1)]))
    # Not closed form: the manifold hands the geodesic equations reverse-mode contractions.
    assert isinstance(closed_form_of(M), AutogradChristoffel)
    assert isinstance(closed_form_of(_SlowKahler(Mine(1))), type(None))
    assert closed_form_of(kg.KahlerManifold(FubiniStudy(1))) is not None


class _SlowKahler(kg.KahlerManifold):
    """A Kähler manifold without Christoffel contractions: its geodesic and variational
    equations differentiate the metric field with ``torch.func`` (the generic path)."""

    closed_form_christoffel = None


class _Hidden(KahlerPotential):
    """A closed-form potential with its Christoffel closed forms hidden (autodiff path)."""

    def __init__(self, inner):
        super().__init__(inner.n)
        self.inner = inner

    def __call__(self, z):
        return self.inner(z)

    def levi(self, z):
        return self.inner.levi(z)

    def contains(self, z):
        return self.inner.contains(z)


@pytest.mark.parametrize(
    "name, build, scale", CLOSED[:2] + CLOSED[3:], ids=["fs", "ball", "siegel", "product"]
)
def test_closed_form_rhs_and_variational_match_autodiff(name, build, scale):
    pot = build()
    fast, slow = kg.KahlerManifold(pot), _SlowKahler(_Hidden(pot))
    assert closed_form_of(slow) is None
    n = pot.n
    g = torch.Generator().manual_seed(6)
    z, zd, V = _rand(g, 5, n, scale=scale), _rand(g, 5, n), _rand(g, 5, n)
    y = torch.cat([to_real(z), to_real(zd)], -1)
    yt = torch.cat([y, to_real(V)], -1)
    torch.testing.assert_close(geodesic_rhs(fast)(y), geodesic_rhs(slow)(y), rtol=1e-11, atol=1e-12)
    torch.testing.assert_close(
        geodesic_rhs(fast, transport=True)(yt),
        geodesic_rhs(slow, transport=True)(yt),
        rtol=1e-11,
        atol=1e-12,
    )
    m, d = 2 * n, 4 * n
    T = torch.randn(5, m * d, dtype=torch.float64, generator=g)
    Y = torch.cat([y, T], -1)
    want = variational_rhs(geodesic_rhs(slow), d, m)(Y)
    torch.testing.assert_close(geodesic_variational_rhs(fast)(Y), want, rtol=1e-10, atol=1e-11)


def test_segment_hessian_assembly_matches_whole_energy():
    from torch.func import grad, hessian, vmap

    M = kg.KahlerManifold(FubiniStudy(2))
    g = torch.Generator().manual_seed(7)
    P, n = 3, 2
    z, w = _rand(g, P, n, scale=0.5), _rand(g, P, n, scale=0.5)
    uz, uw = to_real(z), to_real(w)
    for K in (1, 2, 5):
        p = 0.3 * torch.randn(P, K * 2 * n, dtype=torch.float64, generator=g)
        e = energy_fn(M, K)
        g0, H0 = vmap(grad(e))(p, uz, uw), vmap(hessian(e))(p, uz, uw)
        seg = segment_energy_fn(M, K)
        pts = torch.cat([uz[:, None], p.reshape(P, K, 2 * n), uw[:, None]], 1)
        a, b = pts[:, :-1].reshape(-1, 2 * n), pts[:, 1:].reshape(-1, 2 * n)
        ga, gb = vmap(grad(seg, argnums=(0, 1)))(a, b)
        (Haa, Hab), (_, Hbb) = vmap(hessian(seg, argnums=(0, 1)))(a, b)
        S = (P, K + 1, 2 * n)
        g1, H1 = assemble_polyline_derivatives(
            ga.reshape(S),
            gb.reshape(S),
            Haa.reshape(*S, -1),
            Hab.reshape(*S, -1),
            Hbb.reshape(*S, -1),
        )
        torch.testing.assert_close(g1, g0, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(H1, H0, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("name, build, scale", CLOSED, ids=[c[0] for c in CLOSED])
def test_squared_norm_real_matches_levi(name, build, scale):
    """h(v, v) from the real-arithmetic closed form = Re vᵀ G v̄ from `levi` (broadcast)."""
    pot = build()
    g = torch.Generator().manual_seed(11)
    z, v = _rand(g, 5, 3, pot.n, scale=scale), _rand(g, 1, 3, pot.n)
    want = torch.einsum("...a,...ab,...b->...", v, pot.levi(z), v.conj()).real
    got = pot.squared_norm_real(to_real(z), to_real(v))
    assert got.shape == (5, 3)
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-13)


def test_fubini_study_squared_norm_far_out_in_the_chart():
    """|z| = 1e6, v along z: h = |v|²/(1+|z|²)² ≈ 1e-24 |v|², which the textbook
    (|v|²(1+|z|²) − |⟨z, v⟩|²)/(1+|z|²)² loses to cancellation; the Lagrange form keeps it."""
    z = torch.tensor([[1e6 + 0j, 0j]], dtype=C128)
    v = torch.tensor([[1.0 + 0j, 1e-3 + 0j]], dtype=C128)
    s = 1 + 1e12
    want = (1 + 1e-6 + 1e12 * 1e-6) / s**2  # |v|² + |z_1 v_2 − z_2 v_1|² over s²
    got = FubiniStudy(2).squared_norm_real(to_real(z), to_real(v))
    torch.testing.assert_close(got, torch.tensor([want], dtype=torch.float64), rtol=1e-12, atol=0)


@pytest.mark.parametrize("name, build, scale", CLOSED, ids=[c[0] for c in CLOSED])
def test_segment_derivatives_batched_match_torch_func(name, build, scale):
    """The reverse-mode batched gradient and Hessian of the segment energy equal vmap of
    torch.func grad/hessian (the path taken for metric fields without closed forms)."""
    from torch.func import grad, hessian, vmap

    M = kg.KahlerManifold(build())
    g = torch.Generator().manual_seed(5)
    a = to_real(_rand(g, 12, M.n, scale=scale))
    b = to_real(_rand(g, 12, M.n, scale=scale))
    seg = segment_energy_fn(M, 4)
    ga, gb = vmap(grad(seg, argnums=(0, 1)))(a, b)
    (Haa, Hab), (_, Hbb) = vmap(hessian(seg, argnums=(0, 1)))(a, b)
    got = segment_derivatives_batched(M.potential.squared_norm_real, 4, a, b)
    for x, y in zip(got, (ga, gb, Haa, Hab, Hbb), strict=True):
        torch.testing.assert_close(x, y, rtol=1e-11, atol=1e-11)


def _fs_pairs(g, P):
    z = _rand(g, P, 2, scale=0.4)
    w = _rand(g, P, 2, scale=0.4)
    return z, w


def _fs_dist(z, w):
    ip = (1 + (z.conj() * w).sum(-1)).abs()
    nz = 1 + (z.real**2 + z.imag**2).sum(-1)
    nw = 1 + (w.real**2 + w.imag**2).sum(-1)
    return torch.arccos((ip / torch.sqrt(nz * nw)).clamp(max=1))


@pytest.mark.parametrize("mode", ["exact", "broyden", "auto"])
def test_shooting_jacobian_modes_agree_with_closed_form(mode):
    M = kg.KahlerManifold(FubiniStudy(2))
    z, w = _fs_pairs(torch.Generator().manual_seed(8), 6)
    r = geodesics.solve_log(M, z, w, solver=Shooting(jacobian=mode))
    assert bool(r.success.all()), r.status
    torch.testing.assert_close(r.length, _fs_dist(z, w), rtol=1e-7, atol=0)


def test_shooting_exact_on_autodiff_manifold():
    """``jacobian="exact"`` also works where the variational equations use autodiff."""
    M = _SlowKahler(_Hidden(FubiniStudy(2)))
    z, w = _fs_pairs(torch.Generator().manual_seed(9), 3)
    r = geodesics.solve_log(M, z, w, solver=Shooting(jacobian="exact"))
    assert bool(r.success.all()), r.status
    torch.testing.assert_close(r.length, _fs_dist(z, w), rtol=1e-7, atol=0)


def test_shooting_jacobian_validated():
    with pytest.raises(ValueError, match="jacobian"):
        Shooting(jacobian="fd")
