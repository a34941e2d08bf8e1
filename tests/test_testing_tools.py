"""kahlergeom.testing: the strategies produce what they promise, and the contract checks pass
on good metrics and raise (with the failing point and the size of the violation) on bad ones.

Oracles: unitarity / Hermitian / spectrum checks by numpy; hand-derived Levi matrices of the
helper potentials (|Az+b|² → AᵀĀ; log(1+|Az+b|²) → Aᵀ G_FS(Az+b) Ā) against autodiff; metrics
that are wrong by construction (non-Hermitian, indefinite, non-closed, batch-mixing).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import assert_close, random_points
from hypothesis import given
from hypothesis import strategies as st

import kahlergeom as kg
from kahlergeom import HermitianManifold, KahlerManifold
from kahlergeom.potentials import (
    FubiniStudy,
    GaussianMixturePotential,
    KahlerPotential,
    LogSumExp,
    Quadratic,
    sq_norm,
)
from kahlergeom.testing import (
    AffineLogNorm,
    AffineSquaredNorm,
    PotentialSum,
    assert_batch_consistent,
    assert_hermitian,
    assert_kahler,
    assert_psh,
    complex_arrays,
    default_tolerance,
    hermitian_pd_matrices,
    points,
    psh_potentials,
    unitary_matrices,
)

C128 = torch.complex128


# -- bad metrics, each wrong in one way ---------------------------------------------------------


class NotHermitian(HermitianManifold):
    """G = [[1, z_0], [0, 1]]: G − G^H has entries of size |z_0|."""

    def __init__(self):
        super().__init__(2)

    def metric_field(self, z):
        one = torch.ones_like(z[..., 0])
        zero = torch.zeros_like(one)
        return torch.stack([torch.stack([one, z[..., 0]], -1), torch.stack([zero, one], -1)], -2)


class NonClosed(HermitianManifold):
    """G = diag(1 + |z_1|², 1): absolute closedness residual |z_1| (0-based)."""

    def __init__(self):
        super().__init__(2)

    def metric_field(self, z):
        s = z[..., 1].real ** 2 + z[..., 1].imag ** 2
        zero = torch.zeros_like(s)
        G = torch.stack(
            [torch.stack([1 + s, zero], -1), torch.stack([zero, torch.ones_like(s)], -1)], -2
        )
        return G.to(z.dtype)


class BatchMixing(HermitianManifold):
    """G = (1 + |mean of the batch|²) I: right for one point, wrong for a batch."""

    def __init__(self):
        super().__init__(2)

    def metric_field(self, z):
        m = z.reshape(-1, 2).mean(0)
        c = 1 + (m.real**2 + m.imag**2).sum()
        eye = torch.eye(2, dtype=z.dtype)
        return (c * eye).expand(*z.shape[:-1], 2, 2)


class Saddle(KahlerPotential):
    """|z_0|² − ½|z_1|²: Levi matrix diag(1, −½)."""

    def __init__(self):
        super().__init__(2)

    def __call__(self, z):
        return sq_norm(z[..., :1]) - 0.5 * sq_norm(z[..., 1:])


class NegativeFlat(KahlerPotential):
    def __call__(self, z):
        return -sq_norm(z)


# -- strategies ---------------------------------------------------------------------------------


@given(points(3, batch=(2, 4), scale=5.0))
def test_points_shape_dtype_and_box(z):
    assert z.shape == (2, 4, 3) and z.dtype == C128
    assert float(z.real.abs().max()) <= 5.0 and float(z.imag.abs().max()) <= 5.0


@given(points(2, batch=(5,), radius=0.5, dtype=torch.complex64))
def test_points_in_ball(z):
    assert z.dtype == torch.complex64 and z.shape == (5, 2)
    assert bool((torch.linalg.vector_norm(z.to(C128), dim=-1) <= 0.5 * 0.95 + 1e-7).all())


def test_points_reach_origin_and_rim():
    # Across draws the ball strategy must produce both the centre and points near the rim.
    norms = []

    @given(points(2, radius=1.0))
    def collect(z):
        norms.append(float(torch.linalg.vector_norm(z)))

    collect()
    assert min(norms) < 0.1 and max(norms) > 0.8


@given(st.integers(1, 5).flatmap(unitary_matrices))
def test_unitary_matrices(U):
    n = U.shape[-1]
    u = U.numpy()
    np.testing.assert_allclose(u @ u.conj().T, np.eye(n), atol=1e-12)


@given(st.integers(1, 5).flatmap(lambda n: hermitian_pd_matrices(n, min_eig=0.5, max_eig=3.0)))
def test_hermitian_pd_matrices(P):
    p = P.numpy()
    assert np.array_equal(p, p.conj().T)
    lam = np.linalg.eigvalsh(p)
    assert lam.min() >= 0.5 - 1e-10 and lam.max() <= 3.0 + 1e-10


def test_strategy_arguments():
    with pytest.raises(ValueError, match=r"n must be an integer >= 1"):
        points(0)
    with pytest.raises(ValueError, match=r"radius must be > 0"):
        points(2, radius=-1.0)
    with pytest.raises(ValueError, match=r"dtype must be torch.complex64 or torch.complex128"):
        unitary_matrices(2, dtype=torch.float64)
    with pytest.raises(ValueError, match=r"need 0 < min_eig <= max_eig"):
        hermitian_pd_matrices(2, min_eig=2.0, max_eig=1.0)
    with pytest.raises(ValueError, match=r"kinds must be a non-empty subset"):
        psh_potentials(2, kinds=("convex",))


@given(psh_potentials(3))
def test_psh_potentials_are_potentials(pot):
    assert isinstance(pot, KahlerPotential) and pot.n == 3
    assert isinstance(
        pot,
        (
            Quadratic,
            AffineLogNorm,
            AffineSquaredNorm,
            PotentialSum,
            LogSumExp,
            GaussianMixturePotential,
        ),
    )


def test_psh_potentials_cover_every_kind():
    seen = set()

    @given(psh_potentials(2))
    def collect(pot):
        seen.add(type(pot).__name__)

    collect()
    assert {"LogSumExp", "GaussianMixturePotential"} <= seen
    assert seen & {"Quadratic", "AffineLogNorm", "AffineSquaredNorm", "PotentialSum"}


def test_helper_potentials_closed_forms(gen):
    A = torch.randn(2, 3, dtype=C128, generator=gen)
    b = torch.randn(2, dtype=C128, generator=gen)
    z = random_points(3, (4,), generator=gen)
    # |Az + b|²: G[a, c] = Σ_r A[r, a] conj(A[r, c]).
    G = kg.ddbar(AffineSquaredNorm(A, b), z)
    assert_close(G, (A.T @ A.conj()).expand(4, 3, 3))
    # log(1 + |w|²), w = Az + b: pullback of the FS metric, Aᵀ G_FS(w) Ā.
    w = (z @ A.T + b).numpy()
    An = A.numpy()
    expected = []
    for wi in w:
        s = float(np.vdot(wi, wi).real)
        g_fs = ((1 + s) * np.eye(2) - np.outer(wi.conj(), wi)) / (1 + s) ** 2
        expected.append(An.T @ g_fs @ An.conj())
    G = kg.ddbar(AffineLogNorm(A, b), z).numpy()
    np.testing.assert_allclose(G, np.stack(expected), atol=1e-12)
    # The sum's closed-form levi and partial are the sums of its terms'.
    terms = [AffineLogNorm(A, b), AffineSquaredNorm(A, b), FubiniStudy(3)]
    pot = PotentialSum(terms)
    assert_close(pot.levi(z), kg.ddbar(pot, z))
    assert_close(pot.partial(z), kg.wirtinger.partial(pot, z))


# -- the contract checks pass on good metrics ---------------------------------------------------


@given(psh_potentials(2), points(2, batch=(3,)))
def test_checks_pass_on_random_psh_potentials(pot, z):
    assert_hermitian(pot, z)
    assert_psh(pot, z)
    assert_kahler(pot, z)


def test_checks_pass_on_manifolds_and_float32(gen):
    z = random_points(3, (2, 3), generator=gen)
    for obj in (FubiniStudy(3), KahlerManifold(FubiniStudy(3), chunk_size=2)):
        for zz in (z, z.to(torch.complex64)):
            assert_hermitian(obj, zz)
            assert_psh(obj, zz, strict=True)
            assert_kahler(obj, zz)
            assert_batch_consistent(obj, zz)


def test_assert_kahler_on_a_saturated_mixture():
    # Far from all means but one, the metric is constant to ~1e-10: the purely relative
    # residual is rounding noise there, the check must still pass.
    g = torch.Generator().manual_seed(0)
    means = torch.randn(2, 3, dtype=C128, generator=g)
    P = torch.eye(3, dtype=C128).expand(2, 3, 3) * torch.tensor([1.0, 5.0])[:, None, None]
    pot = GaussianMixturePotential(means, P, temperature=0.2)
    z = means[1] + 3.0 + torch.zeros(4, 3, dtype=C128)
    assert float(pot.weights(z)[:, 0].min()) < 1e-10 or float(pot.weights(z)[:, 1].min()) < 1e-10
    assert_kahler(pot, z)


def test_default_tolerance():
    assert default_tolerance(torch.complex128, "hermitian") < default_tolerance(
        torch.complex64, "hermitian"
    )
    assert default_tolerance(torch.float32, "batch") == default_tolerance(torch.complex64, "batch")


# -- and fail on bad ones, saying where and by how much -----------------------------------------


def test_assert_hermitian_fails():
    z = torch.tensor([[0.0, 0.0], [0.5j, 0.0], [0.0, 1.0]], dtype=C128)
    with pytest.raises(
        AssertionError,
        match=r"not Hermitian at 1 point\(s\); first at batch index \(1,\).*max \|G - G\^H\| "
        r"= 5\.000e-01 > tolerance",
    ):
        assert_hermitian(NotHermitian(), z)
    assert_hermitian(NotHermitian(), torch.zeros(2, 2, dtype=C128))  # Hermitian at z_0 = 0


def test_assert_psh_fails():
    z = torch.zeros(2, 2, dtype=C128)
    with pytest.raises(AssertionError, match=r"not positive semidefinite .* at 2 point\(s\)"):
        assert_psh(NegativeFlat(2), z)
    with pytest.raises(
        AssertionError, match=r"batch index \(0,\).*smallest eigenvalue -5\.000e-01"
    ):
        assert_psh(Saddle(), z)
    rank_one = AffineSquaredNorm(
        torch.tensor([[1.0, 1.0j]], dtype=C128), torch.zeros(1, dtype=C128)
    )
    assert_psh(rank_one, z)
    with pytest.raises(AssertionError, match=r"not positive definite \(not strictly PSH\)"):
        assert_psh(rank_one, z, strict=True)


def test_assert_kahler_fails():
    z = torch.tensor([[0.3, 0.0], [0.0, 1e-3j]], dtype=C128)
    # Residual |z_1|: 0 at the first point, 1e-3 at the second.
    with pytest.raises(
        AssertionError,
        match=r"not Kähler \(not closed\) at 1 point\(s\); first at batch index \(1,\).*"
        r"= 1\.000e-03 \(relative to max\|∂g\|: 1\.000e\+00\)",
    ):
        assert_kahler(NonClosed(), z)
    assert_kahler(NonClosed(), z[:1])


def test_assert_batch_consistent_fails(gen):
    z = random_points(2, (2, 3), generator=gen)
    with pytest.raises(
        AssertionError, match=r"depends on the batch.*first at batch index \(0, 0\)"
    ):
        assert_batch_consistent(BatchMixing(), z)
    assert_batch_consistent(BatchMixing(), z[:1, :1])  # one point: nothing to mix


def test_checks_reject_other_objects():
    with pytest.raises(TypeError, match=r"must be a HermitianManifold or a KahlerPotential"):
        assert_psh(lambda z: z, torch.zeros(2, dtype=C128))
    with pytest.raises(ValueError, match=r"z must be complex"):
        assert_kahler(FubiniStudy(2), torch.zeros(2))


# -- domain-aware strategies and the settings profile ------------------------------------------
from hypothesis import settings as _hyp_settings  # noqa: E402

from kahlergeom.potentials import ComplexHyperbolic, SiegelDisk  # noqa: E402
from kahlergeom.testing import (  # noqa: E402
    ball_points,
    domain_points,
    half_plane_points,
    kahlergeom_settings,
    polydisc_points,
)


@given(half_plane_points(2, batch=(3,), min_imag=0.1, scale=1.5))
def test_half_plane_points_lie_in_the_half_planes(z):
    assert z.shape == (3, 2) and z.dtype == torch.complex128
    assert bool((z.imag >= 0.1).all()) and bool((z.imag <= 1.6).all())
    assert bool((z.real.abs() <= 1.5).all())


@given(polydisc_points(3, radius=2.0, margin=0.1, batch=(2,)))
def test_polydisc_points_lie_in_the_polydisc(z):
    assert z.shape == (2, 3)
    assert bool((z.abs() <= 1.8 * (1 + 1e-12)).all())


@given(ball_points(2, radius=1.0, dtype=torch.complex64))
def test_ball_points_lie_in_the_ball(z):
    assert z.dtype == torch.complex64 and bool(ComplexHyperbolic(2).contains(z))


@given(domain_points(SiegelDisk(2), center=torch.zeros(4, dtype=torch.complex128), batch=(2,)))
def test_domain_points_pull_into_a_star_shaped_domain(z):
    # Oracle: the Siegel disk condition by numpy (largest singular value < 1).
    Z = z.reshape(2, 2, 2).numpy()
    assert (np.linalg.svd(Z, compute_uv=False).max(-1) < 1).all()


@given(domain_points(ComplexHyperbolic(1), scale=1.0))
def test_domain_points_by_rejection(z):
    assert z.shape == (1,) and float(z.abs()[0]) < 1


def test_domain_points_of_a_symbolic_half_plane():
    import sympy as sp

    from kahlergeom import symbolic

    zs, zbs = symbolic.symbols(1)
    P = symbolic.to_potential(-sp.log(sp.im(zs[0])), zs, zbs, domain=sp.im(zs[0]) > 0)

    @kahlergeom_settings
    @given(domain_points(P, center=torch.tensor([1j], dtype=torch.complex128)))
    def check(z):
        assert float(z.imag[0]) > 0
        assert_psh(P, z.unsqueeze(0))

    check()


@pytest.mark.parametrize(
    "build, match",
    [
        (lambda: half_plane_points(0), "n must be an integer >= 1"),
        (lambda: half_plane_points(1, min_imag=0), "min_imag must be a number > 0"),
        (lambda: half_plane_points(1, dtype=torch.float64), "dtype must be torch.complex64"),
        (lambda: polydisc_points(2, radius=-1), "radius must be a number > 0"),
        (lambda: polydisc_points(2, margin=1.0), r"margin must be a number in \[0, 1\)"),
        (lambda: ball_points(2, radius=float("inf")), "radius must be finite"),
        (lambda: domain_points("ball"), "potential must be a KahlerPotential"),
        (
            lambda: domain_points(
                ComplexHyperbolic(2), center=torch.ones(2, dtype=torch.complex128)
            ),
            "center must lie in the domain",
        ),
        (
            lambda: domain_points(ComplexHyperbolic(2), center=torch.zeros(3)),
            r"center must be a complex tensor of shape \(2,\)",
        ),
    ],
)
def test_domain_strategy_errors(build, match):
    with pytest.raises(ValueError, match=match):
        build()


def test_settings_profiles_have_no_deadline():
    assert kahlergeom_settings.deadline is None
    for name in ("kahlergeom", "kahlergeom-ci"):
        assert _hyp_settings.get_profile(name).deadline is None
    assert _hyp_settings.get_profile("kahlergeom-ci").derandomize


@pytest.mark.parametrize(
    "build, match",
    [
        (lambda: complex_arrays((2,), scale=-1.0), "scale must be a number > 0"),
        (lambda: complex_arrays((2, -1)), "shape must be a tuple of integers >= 0"),
        (lambda: complex_arrays("ab"), "shape must be a tuple of integers >= 0"),
        (lambda: points(2, scale=0.0), "scale must be a number > 0"),
        (lambda: points(2, radius=1.0, margin=1.5), r"margin must be a number in \[0, 1\)"),
        (lambda: points(2, dtype=torch.float32), "dtype must be torch.complex64"),
        (lambda: unitary_matrices(0), "n must be an integer >= 1"),
        (lambda: hermitian_pd_matrices(2.5), "n must be an integer >= 1"),
    ],
)
def test_strategy_options_validated(build, match):
    with pytest.raises(ValueError, match=match):
        build()
