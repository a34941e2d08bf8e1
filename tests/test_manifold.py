"""HermitianManifold / KahlerManifold: metric, inner products, volume, checks, invariances.

Oracles: closed-form determinants (matrix determinant lemma, Kronecker determinants) and
eigenvalues; scipy quadrature of the Fubini–Study volume (π for n = 1); the isometry groups of
Fubini–Study (unitaries) and of the ball (unitaries, Möbius maps, Rudin's automorphisms φ_a),
whose differentials come from torch.func.jvp of the map (or by hand), not from the metric code;
a deliberately slow per-point loop for batching; analytic closedness residuals.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from conftest import TOL, assert_close, random_points
from hypothesis import given
from hypothesis import strategies as st
from scipy import integrate

import kahlergeom as kg
from kahlergeom import HermitianManifold, KahlerManifold
from kahlergeom.potentials import (
    ComplexHyperbolic,
    Flat,
    FubiniStudy,
    GaussianMixturePotential,
    KahlerPotential,
    SiegelDisk,
    sq_norm,
)
from kahlergeom.testing import (
    AffineSquaredNorm,
    points,
    psh_potentials,
    unitary_matrices,
)

NS = [1, 2, 3, 4, 5, 6]
C128 = torch.complex128


def _mixture(n, m=3, temperature=1.0, seed=0):
    g = torch.Generator().manual_seed(seed)
    means = torch.randn(m, n, dtype=C128, generator=g)
    A = torch.randn(m, n, n, dtype=C128, generator=g)
    P = A @ A.mH / n + 0.5 * torch.eye(n, dtype=C128)
    return GaussianMixturePotential(means, P, temperature=temperature)


class NonPSHFlat(KahlerPotential):
    """K = −|z|²: Levi matrix −I, not PSH anywhere."""

    def __call__(self, z):
        return -sq_norm(z)


class Saddle(KahlerPotential):
    """K = |z1|² − ½|z2|²: Levi matrix diag(1, −½), indefinite."""

    def __init__(self):
        super().__init__(2)

    def __call__(self, z):
        return sq_norm(z[..., :1]) - 0.5 * sq_norm(z[..., 1:])


class NonClosed(HermitianManifold):
    """G = diag(1 + |z_2|², 1): Hermitian, positive definite, not Kähler.

    ∂_2 g_{11̄} = conj(z_2) while ∂_1 g_{21̄} = 0, so the absolute closedness residual is |z_2|
    (and the relative one 1 wherever z_2 ≠ 0).
    """

    def __init__(self):
        super().__init__(2)

    def metric_field(self, z):
        s = z[..., 1].real ** 2 + z[..., 1].imag ** 2
        zero = torch.zeros_like(s)
        G = torch.stack(
            [torch.stack([1 + s, zero], -1), torch.stack([zero, torch.ones_like(s)], -1)], -2
        )
        return G.to(z.dtype)


# -- volume -------------------------------------------------------------------------------------


@pytest.mark.parametrize("n", NS)
def test_volume_density_closed_forms(n, gen):
    z = random_points(n, (5,), radius=0.9, generator=gen)
    s = sq_norm(z)
    fs = KahlerManifold(FubiniStudy(n))
    ball = KahlerManifold(ComplexHyperbolic(n))
    # det((1±s) I ∓ z̄zᵀ) / (1±s)^{2n} = (1±s)^{n-1} / (1±s)^{2n} (determinant lemma).
    assert_close(fs.volume_density(z), (1 + s) ** -(n + 1))
    assert_close(ball.volume_density(z), (1 - s) ** -(n + 1))
    assert_close(fs.log_volume_density(z), -(n + 1) * torch.log1p(s))
    assert_close(ball.log_volume_density(z), -(n + 1) * torch.log1p(-s))
    assert_close(KahlerManifold(Flat(n)).volume_density(z), torch.ones_like(s))


def test_volume_density_siegel(gen):
    k = 2
    Z = torch.randn(4, k, k, dtype=C128, generator=gen)
    Z = 0.9 * Z / torch.linalg.matrix_norm(Z, ord=2)[:, None, None]
    z = Z.reshape(4, k * k)
    M = KahlerManifold(SiegelDisk(k))
    # det(Aᵀ ⊗ B) = det(A)^k det(B)^k and det(I − ZZ^H) = det(I − Z^HZ).
    d = torch.linalg.det(torch.eye(k, dtype=C128) - Z.mH @ Z).real
    assert_close(M.volume_density(z), d ** (-2 * k))
    assert_close(M.log_volume_density(z), -2 * k * torch.log(d))


def test_log_volume_density_consistent_for_mixture(gen):
    M = KahlerManifold(_mixture(3, temperature=0.5))
    z = random_points(3, (6,), generator=gen)
    G = M.metric(z)
    assert_close(M.volume_density(z), torch.linalg.det(G).real)
    assert_close(M.log_volume_density(z), torch.log(M.volume_density(z)))


def test_volume_density_of_indefinite_metric():
    M = KahlerManifold(Saddle())
    z = torch.zeros(3, 2, dtype=C128)
    assert_close(M.volume_density(z), torch.full((3,), -0.5, dtype=torch.float64))
    assert bool(torch.isnan(M.log_volume_density(z)).all())


def test_fubini_study_total_volume_n1():
    """∫_C det G_FS dA = π, by scipy quadrature in polar coordinates (r, θ)."""
    M = KahlerManifold(FubiniStudy(1))
    theta = torch.linspace(0, 2 * math.pi, 9, dtype=torch.float64)[:-1]

    def radial(r):
        # θ-average on 8 angles (exact for a trigonometric polynomial of low degree; the
        # density is rotation invariant, so any deviation would show up here too).
        z = (r * torch.exp(1j * theta)).to(C128).unsqueeze(-1)
        return 2 * math.pi * r * float(M.volume_density(z).mean())

    total, err = integrate.quad(radial, 0, np.inf, epsabs=1e-11, epsrel=1e-11)
    assert abs(total - math.pi) < 1e-8
    # P(|z| ≤ r) = r² / (1 + r²) for the normalised density det G / π.
    for r in (0.5, 1.0, 3.0):
        mass, _ = integrate.quad(radial, 0, r, epsabs=1e-12, epsrel=1e-12)
        assert abs(mass / math.pi - r**2 / (1 + r**2)) < 1e-10


def test_fubini_study_total_volume_n2(gen):
    """∫_{C²} det G_FS = π²/2: radial quadrature times |S³| = 2π², density at random directions."""
    M = KahlerManifold(FubiniStudy(2))
    d = random_points(2, (6,), generator=gen)
    d = d / torch.linalg.vector_norm(d, dim=-1, keepdim=True)

    def radial(r):
        return 2 * math.pi**2 * r**3 * float(M.volume_density(r * d).mean())

    total, _ = integrate.quad(radial, 0, np.inf, epsabs=1e-11, epsrel=1e-11)
    assert abs(total - math.pi**2 / 2) < 1e-8


# -- real metric and the Hermitian form ---------------------------------------------------------


@given(psh_potentials(2), points(2, batch=(2,)), points(2, batch=(2,)))
def test_real_metric_identities(pot, z, v):
    M = KahlerManifold(pot)
    G = M.metric(z)
    GR = M.real_metric(z)
    assert GR.shape == (2, 4, 4) and GR.dtype == torch.float64
    u = torch.cat([v.real, v.imag], -1)
    quad = torch.einsum("...i,...ij,...j->...", u, GR, u)
    hvv = torch.einsum("...a,...ab,...b->...", v, G, v.conj())
    scale = G.abs().amax((-1, -2)).clamp_min(1.0) * (1 + sq_norm(v))
    assert_close(quad / scale, hvv.real / scale)
    assert_close(hvv.imag / scale, torch.zeros_like(scale))
    # det G_R = |det G|², compared on G / max|G| (both sides scale by the same power; a
    # potential with denormal coefficients, e.g. 1e-161, would otherwise underflow to NaN).
    gmax = G.abs().amax((-1, -2), keepdim=True).clamp_min(1e-300)
    detG = torch.linalg.det(G / gmax).real
    assert_close(torch.linalg.det(GR / gmax), detG**2, rtol=1e-9, atol=1e-12)
    assert_close(M.norm(z, v) ** 2 / scale, hvv.real / scale)


def test_inner_is_sesquilinear_and_hermitian(gen):
    M = KahlerManifold(_mixture(3))
    z, u, v, w = (random_points(3, (4,), generator=gen) for _ in range(4))
    a, b = 0.3 - 1.2j, 2.0 + 0.5j
    h = M.inner
    assert_close(h(z, a * u + b * w, v), a * h(z, u, v) + b * h(z, w, v))
    assert_close(h(z, u, a * v), np.conj(a) * h(z, u, v))
    assert_close(h(z, u, v), h(z, v, u).conj())
    # Flat: h(u, v) = Σ u_a conj(v_a) (Euclidean in real coordinates).
    assert_close(KahlerManifold(Flat(3)).inner(z, u, v), (u * v.conj()).sum(-1))
    # Broadcasting: one point, a batch of vectors.
    assert h(z[0], u, v).shape == (4,)


@pytest.mark.parametrize("n", [1, 2, 4])
def test_min_eigenvalue_closed_forms(n, gen):
    z = random_points(n, (5,), radius=0.9, generator=gen)
    s = sq_norm(z)
    # FS eigenvalues: 1/(1+s) (multiplicity n−1) and 1/(1+s)² (along z̄).
    assert_close(KahlerManifold(FubiniStudy(n)).min_eigenvalue(z), (1 + s) ** -2)
    # Ball eigenvalues: 1/(1−s) (multiplicity n−1) and 1/(1−s)²; smallest is 1/(1−s) if n ≥ 2.
    expected = (1 - s) ** -2 if n == 1 else (1 - s) ** -1
    assert_close(KahlerManifold(ComplexHyperbolic(n)).min_eigenvalue(z), expected)


# -- invariance under isometries ----------------------------------------------------------------


def _h(M, z, v):
    return M.inner(z, v, v).real


@given(st.integers(1, 4).flatmap(lambda n: st.tuples(unitary_matrices(n), points(n), points(n))))
def test_fubini_study_unitary_invariance(args):
    U, z, v = args
    M = KahlerManifold(FubiniStudy(z.shape[-1]))
    assert_close(_h(M, U @ z, U @ v), _h(M, z, v))


@given(
    st.integers(1, 4).flatmap(
        lambda n: st.tuples(unitary_matrices(n), points(n, radius=1.0), points(n))
    )
)
def test_ball_unitary_invariance(args):
    U, z, v = args
    M = KahlerManifold(ComplexHyperbolic(z.shape[-1]))
    scale = 1 + float(_h(M, z, v))
    assert_close(_h(M, U @ z, U @ v) / scale, _h(M, z, v) / scale)


@given(points(1, radius=1.0), points(1, radius=1.0), points(1))
def test_disk_mobius_invariance(a, z, v):
    """φ_a(z) = (z − a)/(1 − ā z), φ_a'(z) = (1 − |a|²)/(1 − ā z)² (by hand)."""
    M = KahlerManifold(ComplexHyperbolic(1))
    den = 1 - a.conj() * z
    w = (z - a) / den
    dphi = (1 - sq_norm(a)) / den**2
    scale = 1 + float(_h(M, z, v))
    assert_close(_h(M, w, dphi * v) / scale, _h(M, z, v) / scale)


def ball_automorphism(a):
    """Rudin's involutive automorphism of the unit ball exchanging 0 and a:
    φ_a(z) = (a − P_a z − s_a Q_a z) / (1 − ⟨z, a⟩), ⟨z, a⟩ = Σ z_i ā_i, P_a z = ⟨z, a⟩ a/|a|²,
    Q_a = I − P_a, s_a = sqrt(1 − |a|²)."""
    aa = sq_norm(a)
    s = torch.sqrt(1 - aa)

    def phi(z):
        za = (z * a.conj()).sum(-1, keepdim=True)
        Pz = za / aa * a
        return (a - Pz - s * (z - Pz)) / (1 - za)

    return phi


@given(
    st.integers(2, 4).flatmap(
        lambda n: st.tuples(points(n, radius=1.0), points(n, radius=1.0), points(n))
    )
)
def test_ball_automorphism_invariance(args):
    a, z, v = args
    if float(sq_norm(a)) < 1e-6:  # φ_a needs a ≠ 0 (P_a); φ_0 = −id is covered by unitaries
        a = a + 0.1
    phi = ball_automorphism(a)
    w, dw = torch.func.jvp(phi, (z,), (v,))  # holomorphic: the JVP along v is φ'(z) v
    assert float(sq_norm(w)) < 1
    assert_close(phi(a), torch.zeros_like(a), atol=1e-12)  # φ_a(a) = 0
    assert_close(phi(w), z, atol=1e-10, rtol=1e-10)  # involution
    M = KahlerManifold(ComplexHyperbolic(z.shape[-1]))
    scale = 1 + float(_h(M, z, v))
    assert_close(_h(M, w, dw) / scale, _h(M, z, v) / scale, rtol=1e-9, atol=1e-9)


@given(unitary_matrices(2), unitary_matrices(2), points(4, radius=1.0), points(4))
def test_siegel_invariance_under_unitary_multiplication(U, V, z, a):
    """Z ↦ U Z V (U, V unitary) is an automorphism of the Siegel disk; its differential maps a
    tangent matrix A to U A V, and h_{UZV}(UAV, UAV) = h_Z(A, A).

    (A Frobenius norm < 1 implies spectral norm < 1, so the ball strategy gives Siegel points.)
    """
    M = KahlerManifold(SiegelDisk(2))
    Z, A = z.reshape(2, 2), a.reshape(2, 2)
    w, b = (U @ Z @ V).reshape(4), (U @ A @ V).reshape(4)
    scale = 1 + float(_h(M, z, a))
    assert_close(_h(M, w, b) / scale, _h(M, z, a) / scale)


def test_metric_prefers_closed_form_levi_and_ddbar_differentiates(gen):
    class Marked(KahlerPotential):
        """K = |z|² but with a deliberately different closed-form levi (2 I)."""

        def __call__(self, z):
            return sq_norm(z)

        def levi(self, z):
            return 2 * torch.eye(self.n, dtype=z.dtype).expand(*z.shape[:-1], self.n, self.n)

    z = random_points(2, (3,), generator=gen)
    eye = torch.eye(2, dtype=C128).expand(3, 2, 2)
    assert_close(KahlerManifold(Marked(2)).metric(z), 2 * eye)
    assert_close(kg.ddbar(Marked(2), z), eye)


# -- batching, chunking, dtypes -----------------------------------------------------------------


@given(psh_potentials(2), points(2, batch=(2, 2)))
def test_batch_equals_per_point(pot, z):
    M = KahlerManifold(pot)
    G = M.metric(z)
    assert G.shape == (2, 2, 2, 2)
    loop = torch.stack([M.metric(z[i, j]) for i in range(2) for j in range(2)]).reshape(G.shape)
    scale = G.abs().amax().clamp_min(1.0)
    assert_close(G / scale, loop / scale)


@given(psh_potentials(2), points(2, batch=(3,), scale=1.0))
def test_float32_agrees_with_float64(pot, z):
    M = KahlerManifold(pot)
    G64 = M.metric(z)
    G32 = M.metric(z.to(torch.complex64))
    assert G32.dtype == torch.complex64
    scale = G64.abs().amax().clamp_min(1.0)
    assert_close((G32.to(C128) / scale), G64 / scale, rtol=1e-3, atol=1e-3)


def test_chunk_size_matches_unchunked(gen):
    class Mix(KahlerPotential):  # no closed form: the metric goes through vmap chunks
        def __init__(self):
            super().__init__(3)
            self.inner = _mixture(3, temperature=0.7)

        def __call__(self, z):
            return self.inner(z)

    z = random_points(3, (2, 5), generator=gen)
    G = KahlerManifold(Mix()).metric(z)
    for chunk in (1, 3, 100):
        M = KahlerManifold(Mix(), chunk_size=chunk)
        assert_close(M.metric(z), G)
        assert_close(M.closedness_residual(z), KahlerManifold(Mix()).closedness_residual(z))
    assert_close(G, _mixture(3, temperature=0.7).levi(z))


def test_empty_batch(gen):
    class Plain(KahlerPotential):  # autodiff path
        def __call__(self, z):
            return torch.log1p(sq_norm(z))

    z = torch.zeros(0, 3, 2, dtype=C128)
    for pot in (Plain(2), FubiniStudy(2), _mixture(2)):
        M = KahlerManifold(pot)
        assert M.metric(z).shape == (0, 3, 2, 2)
        assert M.volume_density(z).shape == (0, 3)
        assert M.closedness_residual(z).shape == (0, 3)
        assert M.is_psh(z).shape == (0, 3)


@pytest.mark.parametrize("pot", [FubiniStudy(2), _mixture(2), Saddle()], ids=repr)
def test_complex64_in_complex64_out(pot, gen):
    z = random_points(2, (4,), generator=gen).to(torch.complex64)
    M = KahlerManifold(pot)
    assert M.metric(z).dtype == torch.complex64
    assert M.real_metric(z).dtype == torch.float32
    assert M.inner(z, z, z).dtype == torch.complex64
    assert M.norm(z, z).dtype == torch.float32
    assert M.volume_density(z).dtype == torch.float32
    assert M.min_eigenvalue(z).dtype == torch.float32
    assert M.is_psh(z).dtype == torch.bool
    assert_close(M.metric(z), M.metric(z.to(C128)).to(torch.complex64), **TOL[torch.complex64])


# -- the checkers must fail when they should ----------------------------------------------------


def test_is_psh_false_for_non_psh_potentials(gen):
    z = random_points(2, (5,), generator=gen)
    assert not bool(KahlerManifold(NonPSHFlat(2)).is_psh(z).any())
    assert not bool(KahlerManifold(Saddle()).is_psh(z).any())
    assert_close(KahlerManifold(Saddle()).min_eigenvalue(z), torch.full((5,), -0.5).double())
    assert bool(KahlerManifold(FubiniStudy(2)).is_psh(z, strict=True).all())


def test_is_psh_strict_versus_semidefinite(gen):
    # |a·z|² in C²: Levi matrix of rank one, PSD but not PD.
    pot = AffineSquaredNorm(
        torch.tensor([[1.0, 2.0j]], dtype=C128), torch.tensor([0.5], dtype=C128)
    )
    z = random_points(2, (4,), generator=gen)
    M = KahlerManifold(pot)
    assert bool(M.is_psh(z).all())
    assert not bool(M.is_psh(z, strict=True).any())


def test_closedness_residual_non_kahler_field(gen):
    M = NonClosed()
    assert not M.is_kahler
    z = random_points(2, (5,), generator=gen)
    assert_close(M.closedness_residual(z, relative=False), z[:, 1].abs())
    assert_close(M.closedness_residual(z), torch.ones(5, dtype=torch.float64))
    assert bool(M.is_psh(z, strict=True).all())  # positive definite but not Kähler


@pytest.mark.parametrize(
    "pot", [FubiniStudy(3), ComplexHyperbolic(3), _mixture(3, temperature=2.0)], ids=repr
)
def test_closedness_residual_small_for_kahler(pot, gen):
    z = random_points(3, (4,), radius=0.9, generator=gen)
    M = KahlerManifold(pot)
    assert M.is_kahler
    assert float(M.closedness_residual(z).max()) < 1e-12
