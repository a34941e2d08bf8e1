"""Curvature of Kähler metrics against closed forms, finite differences and the real
Levi-Civita curvature of G_R (an independent path through the Riemannian formulas)."""

from __future__ import annotations

import pytest
import torch
from conftest import assert_close, random_points
from hypothesis import given, settings
from hypothesis import strategies as st

import kahlergeom as kg
from kahlergeom._linalg import levi_from_real_hessian
from kahlergeom.curvature import (
    NotKahlerError,
    bisectional_curvature,
    holomorphic_sectional_curvature,
    ricci,
    riemann,
)
from kahlergeom.manifolds import HermitianManifold
from kahlergeom.potentials import (
    ComplexHyperbolic,
    Flat,
    FubiniStudy,
    GaussianMixturePotential,
    KahlerPotential,
    SiegelDisk,
    sq_norm,
)
from kahlergeom.wirtinger import from_real, to_real

C128 = torch.complex128
seeds = st.integers(0, 2**31 - 1)
# Each example costs several batched autodiff passes (~0.1-0.2 s each): cap the example count
# (never above the active profile's) and put 3 random points in every example instead.
few = settings(max_examples=min(5, settings().max_examples))


def herm(G, u, v):
    """h(u, v) = uᵀ G conj(v), written out here independently of the library."""
    return torch.einsum("...a,...ab,...b->...", u, G, v.conj())


def const_curvature_R(G, c):
    """R of constant holomorphic sectional curvature c: (c/2)(g_ab̄ g_cd̄ + g_ad̄ g_cb̄)."""
    return (
        0.5
        * c
        * (torch.einsum("...ab,...cd->...abcd", G, G) + torch.einsum("...ad,...cb->...abcd", G, G))
    )


def contract(R, u, v):
    """R(u, ū, v, v̄) from the full tensor."""
    return torch.einsum("...abcd,...a,...b,...c,...d->...", R, u, u.conj(), v, v.conj())


class AutodiffFS(KahlerPotential):
    """Fubini–Study potential without a closed-form Levi matrix: every derivative is autodiff
    (curvature then needs 4th derivatives of K through nested torch.func transforms)."""

    def __call__(self, z):
        return torch.log1p(sq_norm(z))


def gmm_potential(n, m=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    means = torch.randn(m, n, dtype=C128, generator=g)
    A = torch.randn(m, n, n, dtype=C128, generator=g)
    P = A @ A.mH + 0.5 * torch.eye(n, dtype=C128)
    return GaussianMixturePotential(means, P, temperature=0.7)


class RoundSphereChart(HermitianManifold):
    """Stereographic chart of the round 2n-sphere: G = 4/(1+|z|²)² I. Hermitian, conformally
    flat, sectional curvature 1 in every real plane; not Kähler for n >= 2."""

    def __init__(self, n):
        super().__init__(n)

    def metric_field(self, z):
        f = 4 / (1 + sq_norm(z)) ** 2
        return f[..., None, None] * torch.eye(self.n, dtype=z.dtype)


# -- Fubini–Study and the ball: constant holomorphic sectional curvature ----------------------


@pytest.mark.parametrize("n", [1, 2, 3, 4])
@few
@given(seed=seeds)
def test_fubini_study_closed_forms(n, seed):
    g = torch.Generator().manual_seed(seed)
    M = kg.KahlerManifold(FubiniStudy(n))
    z = random_points(n, (3,), generator=g)
    u = random_points(n, (3,), generator=g)
    v = random_points(n, (3,), generator=g)
    G = FubiniStudy(n).levi(z)
    # the 4-index tensor: R = g⊗g + g⊗g (swapped) exactly (docs/conventions.md § Closed forms)
    if n <= 3:
        assert_close(M.riemann(z), const_curvature_R(G, 2.0))
    assert_close(M.ricci(z), (n + 1) * G)
    assert_close(M.scalar_curvature(z), torch.full((3,), float(n * (n + 1)), dtype=torch.float64))
    assert_close(
        M.holomorphic_sectional_curvature(z, v), torch.full((3,), 2.0, dtype=torch.float64)
    )
    B = M.bisectional_curvature(z, u, v)
    huu, hvv, huv = herm(G, u, u).real, herm(G, v, v).real, herm(G, u, v)
    expected = (huu * hvv + huv.real**2 + huv.imag**2) / (huu * hvv)
    assert_close(B, expected)
    assert bool(((B >= 1 - 1e-12) & (B <= 2 + 1e-12)).all())


@pytest.mark.parametrize("n", [1, 2, 3])
@few
@given(seed=seeds)
def test_ball_closed_forms(n, seed):
    g = torch.Generator().manual_seed(seed)
    M = kg.KahlerManifold(ComplexHyperbolic(n))
    z = random_points(n, (3,), radius=0.9, generator=g)
    v = random_points(n, (3,), generator=g)
    G = ComplexHyperbolic(n).levi(z)
    assert_close(M.riemann(z), const_curvature_R(G, -2.0), rtol=1e-9, atol=1e-9)
    assert_close(M.ricci(z), -(n + 1) * G, rtol=1e-9, atol=1e-9)
    assert_close(M.scalar_curvature(z), torch.full((3,), -float(n * (n + 1)), dtype=torch.float64))
    H = M.holomorphic_sectional_curvature(z, v)
    assert_close(H, torch.full((3,), -2.0, dtype=torch.float64))


@pytest.mark.parametrize(("pot", "K"), [(FubiniStudy(1), 4.0), (ComplexHyperbolic(1), -4.0)])
def test_gaussian_curvature_n1(pot, K, gen):
    """n = 1: Gaussian curvature of the real metric G_R (Levi-Civita path) is 2H = 2s."""
    M = kg.KahlerManifold(pot)
    z = random_points(1, (4,), radius=0.9, generator=gen)
    one = torch.ones_like(z)
    expected = torch.full((4,), K, dtype=torch.float64)
    assert_close(M.riemannian_sectional_curvature(z, one, 1j * one), expected)
    assert_close(2 * M.holomorphic_sectional_curvature(z, one), expected)
    assert_close(2 * M.scalar_curvature(z), expected)


def test_autodiff_potential_matches_closed_form(gen):
    """A potential with no closed-form Levi matrix: curvature by 4th-order autodiff of K."""
    n = 2
    M = kg.KahlerManifold(AutodiffFS(n))
    assert not M.potential.has_closed_form_levi
    z = random_points(n, (3,), generator=gen)
    v = random_points(n, (3,), generator=gen)
    G = FubiniStudy(n).levi(z)
    assert_close(M.riemann(z), const_curvature_R(G, 2.0))
    assert_close(M.ricci(z), 3 * G)
    assert_close(
        M.holomorphic_sectional_curvature(z, v), torch.full((3,), 2.0, dtype=torch.float64)
    )


# -- Siegel disk ----------------------------------------------------------------------------


def test_siegel_disk_at_zero():
    """At Z = 0, G = I and dG = 0, so R(V, V̄, V, V̄) = −∂_t²∂̄_t² K(tV)|₀. The quartic Taylor
    term of K = −log det(I − Z^H Z) is ½ tr((Z^H Z)²), so R(V, V̄, V, V̄) = −2 tr((V^H V)²) and
    H(V) = −2 Σσ⁴ / (Σσ²)² (σ the singular values of V): −2 on every rank-one V such as E11.

    docs/conventions.md's "−4 on span{E11, iE11}" is the *sectional* curvature of that real
    plane (the Gaussian-curvature normalisation, = 2H with h-lengths): k = 1 is the Poincaré
    disk, whose
    Gaussian curvature is −4 and H = −2. Both are tested here."""
    k = 2
    M = kg.KahlerManifold(SiegelDisk(k))
    z = torch.zeros(k * k, dtype=C128)
    E11 = torch.tensor([1, 0, 0, 0], dtype=C128)
    assert_close(M.holomorphic_sectional_curvature(z, E11), torch.tensor(-2.0, dtype=torch.float64))
    assert_close(M.holomorphic_sectional_curvature(z, 1j * E11), torch.tensor(-2.0).double())
    assert_close(M.riemannian_sectional_curvature(z, E11, 1j * E11), torch.tensor(-4.0).double())
    V = torch.randn(5, k * k, dtype=C128, generator=torch.Generator().manual_seed(3))
    sig = torch.linalg.svdvals(V.reshape(5, k, k))
    expected = -2 * (sig**4).sum(-1) / (sig**2).sum(-1) ** 2
    assert_close(M.holomorphic_sectional_curvature(torch.zeros_like(V), V), expected)


def test_siegel_disk_contractions_away_from_zero(gen):
    k = 2
    M = kg.KahlerManifold(SiegelDisk(k))
    Z = torch.randn(3, k, k, dtype=C128, generator=gen)
    Z = 0.7 * Z / torch.linalg.matrix_norm(Z, ord=2)[:, None, None]
    z = Z.reshape(3, k * k)
    v = random_points(k * k, (3,), generator=gen)
    G = M.metric(z)
    H_full = contract(M.riemann(z), v, v).real / herm(G, v, v).real ** 2
    H = M.holomorphic_sectional_curvature(z, v)
    assert_close(H, H_full)
    assert_close(M.riemannian_sectional_curvature(z, v, 1j * v), 2 * H, rtol=1e-9, atol=1e-9)
    assert bool((H < 0).all())


# -- a non-trivial potential -------------------------------------------------------------------


@pytest.fixture(scope="module")
def gmm2():
    pot = gmm_potential(2)
    z = torch.randn(4, 2, dtype=C128, generator=torch.Generator().manual_seed(7))
    return kg.KahlerManifold(pot), z


def test_riemann_symmetries(gmm2):
    M, z = gmm2
    R = M.riemann(z)
    scale = R.abs().amax()
    assert scale > 1e-3  # not trivially zero
    tol = dict(rtol=0, atol=1e-11 * float(scale))
    assert_close(R, R.transpose(-4, -2), **tol)  # R_ab̄cd̄ = R_cb̄ad̄
    assert_close(R, R.transpose(-3, -1), **tol)  # R_ab̄cd̄ = R_ad̄cb̄
    assert_close(R.conj(), R.permute(0, 2, 1, 4, 3), **tol)  # conj R_ab̄cd̄ = R_bād c̄


def test_contracted_curvatures_match_full_tensor(gmm2, gen):
    M, z = gmm2
    u = random_points(2, (4,), generator=gen)
    v = random_points(2, (4,), generator=gen)
    G = M.metric(z)
    R = M.riemann(z)
    huu, hvv = herm(G, u, u).real, herm(G, v, v).real
    H_full = contract(R, v, v).real / hvv**2
    B_full = contract(R, u, v).real / (huu * hvv)
    assert_close(M.holomorphic_sectional_curvature(z, v), H_full)
    assert_close(M.bisectional_curvature(z, u, v), B_full)
    # The two Ricci paths: Levi matrix of −log det G vs the trace g^{c d̄} R_{a b̄ c d̄}.
    Ric_trace = torch.einsum("...dc,...abcd->...ab", torch.linalg.inv(G), R)
    assert_close(M.ricci(z), Ric_trace)


def test_ricci_against_finite_differences(gmm2):
    """Oracle: central finite differences of −log det G in real coordinates (no autodiff)."""
    M, z = gmm2
    n, h = 2, 1e-4

    def f(u):  # −log det G at real points (..., 2n), via eigenvalues (not the library path)
        return -torch.log(torch.linalg.eigvalsh(M.metric(from_real(u)))).sum(-1)

    u0 = to_real(z)
    E = h * torch.eye(2 * n, dtype=torch.float64)
    pp = f(u0[:, None, None] + E[:, None] + E[None, :])
    pm = f(u0[:, None, None] + E[:, None] - E[None, :])
    mp = f(u0[:, None, None] - E[:, None] + E[None, :])
    mm = f(u0[:, None, None] - E[:, None] - E[None, :])
    hess = (pp - pm - mp + mm) / (4 * h * h)
    Ric_fd = levi_from_real_hessian(hess)
    Ric = M.ricci(z)
    assert Ric.abs().amax() > 1e-2
    assert_close(Ric, Ric_fd, rtol=0, atol=1e-6 * float(Ric.abs().amax()))


def test_gaussian_curvature_n1_against_finite_differences():
    """n = 1, G = λ: the real metric is λ(dx² + dy²) with Gaussian curvature −Δlog λ / (2λ),
    here by a 4th-order finite-difference Laplacian. It must equal 2H and 2s."""
    M = kg.KahlerManifold(gmm_potential(1, m=3, seed=5))
    z = torch.randn(5, 1, dtype=C128, generator=torch.Generator().manual_seed(11))
    h = 1e-3

    def loglam(w):
        return torch.log(M.metric(w)[..., 0, 0].real)

    def d2(step):
        return (
            -loglam(z + 2 * step)
            + 16 * loglam(z + step)
            - 30 * loglam(z)
            + 16 * loglam(z - step)
            - loglam(z - 2 * step)
        ) / (12 * h * h)

    lap = d2(torch.tensor([h], dtype=C128)) + d2(torch.tensor([1j * h], dtype=C128))
    K_fd = -lap / (2 * M.metric(z)[..., 0, 0].real)
    one = torch.ones_like(z)
    assert K_fd.abs().amax() > 1e-3
    tol = dict(rtol=1e-6, atol=1e-8)
    assert_close(2 * M.holomorphic_sectional_curvature(z, one), K_fd, **tol)
    assert_close(2 * M.scalar_curvature(z), K_fd, **tol)
    assert_close(M.riemannian_sectional_curvature(z, one, 1j * one), K_fd, **tol)


def test_bisectional_against_real_sectional_curvature(gmm2, gen):
    """Kähler identity: K(u, v)|u∧v|² + K(u, iv)|u∧iv|² = 2 R(u, ū, v, v̄), where K is the
    sectional curvature of G_R (Levi-Civita path) and |u∧v|² the Gram determinant."""
    M, z = gmm2
    u = random_points(2, (4,), generator=gen)
    v = random_points(2, (4,), generator=gen)
    G = M.metric(z)

    def gram(a, b):
        return herm(G, a, a).real * herm(G, b, b).real - herm(G, a, b).real ** 2

    lhs = M.riemannian_sectional_curvature(z, u, v) * gram(u, v)
    lhs = lhs + M.riemannian_sectional_curvature(z, u, 1j * v) * gram(u, 1j * v)
    rhs = 2 * M.bisectional_curvature(z, u, v) * herm(G, u, u).real * herm(G, v, v).real
    assert_close(lhs, rhs, rtol=1e-9, atol=1e-12)
    H = M.holomorphic_sectional_curvature(z, v)
    assert_close(M.riemannian_sectional_curvature(z, v, 1j * v), 2 * H, rtol=1e-9, atol=1e-12)


# -- flat, batching, errors ---------------------------------------------------------------------


def test_flat_is_flat(gen):
    n = 2
    M = kg.KahlerManifold(Flat(n))
    z = random_points(n, (3,), generator=gen)
    u = random_points(n, (3,), generator=gen)
    v = random_points(n, (3,), generator=gen)
    zero = torch.zeros(3, dtype=torch.float64)
    assert_close(M.christoffel(z), torch.zeros(3, n, n, n, dtype=C128))
    assert_close(M.riemann(z), torch.zeros(3, n, n, n, n, dtype=C128))
    assert_close(M.ricci(z), torch.zeros(3, n, n, dtype=C128))
    assert_close(M.scalar_curvature(z), zero)
    assert_close(M.holomorphic_sectional_curvature(z, v), zero)
    assert_close(M.bisectional_curvature(z, u, v), zero)
    assert_close(M.riemannian_sectional_curvature(z, u, v), zero)


def test_christoffel_method_matches_module():
    M = kg.KahlerManifold(FubiniStudy(2))
    z = torch.tensor([[0.3 + 0.1j, -0.2 + 0.5j]], dtype=C128)
    # Closed form for FS: Γ^l_ab = −(z̄_a δ_lb + z̄_b δ_la) / (1 + |z|²).
    s = 1 + sq_norm(z)[..., None, None, None]
    eye = torch.eye(2, dtype=C128)
    zb = z.conj()
    expected = (
        -(
            zb[:, None, :, None] * eye[None, :, None, :]
            + zb[:, None, None, :] * eye[None, :, :, None]
        )
        / s
    )
    assert_close(M.christoffel(z), expected)


def test_broadcasting_equals_loop(gmm2):
    M, _ = gmm2
    g = torch.Generator().manual_seed(2)
    z = random_points(2, (2, 1), generator=g)
    u = random_points(2, (1, 2), generator=g)
    v = random_points(2, (2, 2), generator=g)
    B = M.bisectional_curvature(z, u, v)
    H = M.holomorphic_sectional_curvature(z, v)
    assert B.shape == (2, 2) and H.shape == (2, 2)
    for i in range(2):
        for j in range(2):
            assert_close(B[i, j], bisectional_curvature(M.metric_field, z[i, 0], u[0, j], v[i, j]))
            assert_close(H[i, j], holomorphic_sectional_curvature(M.metric_field, z[i, 0], v[i, j]))
    assert M.riemann(z).shape == (2, 1, 2, 2, 2, 2)
    assert M.ricci(z).shape == (2, 1, 2, 2)
    assert M.scalar_curvature(z).shape == (2, 1)
    assert_close(riemann(M.metric_field, z[1]), M.riemann(z)[1])
    assert_close(ricci(M.metric_field, z[1, 0]), M.ricci(z)[1, 0])


def test_chunked_equals_unchunked(gen):
    pot = gmm_potential(2, seed=4)
    z = random_points(2, (5,), generator=gen)
    v = random_points(2, (5,), generator=gen)
    M, Mc = kg.KahlerManifold(pot), kg.KahlerManifold(pot, chunk_size=2)
    assert_close(Mc.riemann(z), M.riemann(z))
    assert_close(Mc.ricci(z), M.ricci(z))
    assert_close(Mc.holomorphic_sectional_curvature(z, v), M.holomorphic_sectional_curvature(z, v))


def test_non_kahler_metric_refuses_kahler_formulas(gen):
    n = 2
    M = RoundSphereChart(n)
    z = random_points(n, (3,), generator=gen)
    u = random_points(n, (3,), generator=gen)
    v = random_points(n, (3,), generator=gen)
    assert bool((M.closedness_residual(z) > 1e-3).all())  # genuinely not Kähler
    for call in (
        lambda: M.christoffel(z),
        lambda: M.riemann(z),
        lambda: M.ricci(z),
        lambda: M.scalar_curvature(z),
        lambda: M.holomorphic_sectional_curvature(z, v),
        lambda: M.bisectional_curvature(z, u, v),
    ):
        with pytest.raises(NotKahlerError, match="not known to be Kähler.*closedness_residual"):
            call()
    # The Riemannian sectional curvature of G_R works for any Hermitian metric: round S^4.
    one = torch.ones(3, dtype=torch.float64)
    assert_close(M.riemannian_sectional_curvature(z, u, v), one)
    assert_close(M.riemannian_sectional_curvature(z, v, 1j * v), one)


def test_input_errors():
    M = kg.KahlerManifold(ComplexHyperbolic(2))
    z = torch.tensor([0.1 + 0.1j, 0.2j], dtype=C128)
    v = torch.tensor([1.0, 0.5j], dtype=C128)
    with pytest.raises(ValueError, match="v must be a nonzero tangent vector"):
        M.holomorphic_sectional_curvature(z, torch.zeros_like(v))
    with pytest.raises(ValueError, match="u must be a nonzero"):
        M.bisectional_curvature(z, torch.zeros_like(v), v)
    with pytest.raises(ValueError, match="v must have last dimension"):
        M.holomorphic_sectional_curvature(z, v[:1])
    with pytest.raises(ValueError, match="v must have the dtype"):
        M.holomorphic_sectional_curvature(z, v.to(torch.complex64))
    with pytest.raises(ValueError, match="outside the domain"):
        M.ricci(torch.tensor([0.9, 0.9], dtype=C128))
    with pytest.raises(ValueError, match="z must be complex"):
        M.riemann(torch.zeros(2))
    with pytest.raises(ValueError, match="linearly independent over R"):
        M.riemannian_sectional_curvature(z, v, (2 + 0j) * v)


def test_float32_runs():
    M = kg.KahlerManifold(FubiniStudy(2))
    z = torch.tensor([[0.3 + 0.1j, -0.2 + 0.5j]], dtype=torch.complex64)
    v = torch.tensor([[1.0 + 0j, 0.5j]], dtype=torch.complex64)
    H = M.holomorphic_sectional_curvature(z, v)
    assert H.dtype == torch.float32
    assert_close(H, torch.full((1,), 2.0), rtol=1e-4, atol=1e-4)
    assert_close(M.scalar_curvature(z), torch.full((1,), 6.0), rtol=1e-4, atol=1e-4)
