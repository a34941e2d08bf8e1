"""Potentials: values, domains, closed-form Levi matrices and gradients.

Oracles: the closed forms of docs/conventions.md § Closed forms written out in numpy; the
Siegel-disk metric built entry by entry from h(V, W) = tr[(I−ZZ^H)^{-1} V (I−Z^HZ)^{-1} W^H]
with explicit matrices V, W (a route
independent of the Kronecker form in the code); autodiff (`ddbar`) for the closed-form `levi`
of the combinators; finite differences (no autodiff) for `partial`; explicit numpy formulas for
log-sum-exp values and its τ → 0 limit.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import assert_close, random_points
from hypothesis import given

import kahlergeom as kg
from kahlergeom.potentials import (
    ComplexHyperbolic,
    Flat,
    FubiniStudy,
    GaussianMixturePotential,
    KahlerPotential,
    LogSumExp,
    Product,
    Quadratic,
    SiegelDisk,
)
from kahlergeom.testing import points, psh_potentials
from kahlergeom.wirtinger import from_real, to_real

NS = [1, 2, 3, 4, 5, 6]
C128 = torch.complex128


def fs_metric_np(z):
    s = float(np.vdot(z, z).real)
    return ((1 + s) * np.eye(len(z)) - np.outer(z.conj(), z)) / (1 + s) ** 2


def ball_metric_np(z):
    s = float(np.vdot(z, z).real)
    return ((1 - s) * np.eye(len(z)) + np.outer(z.conj(), z)) / (1 - s) ** 2


def siegel_h(Z, V, W):
    """h(V, W) = tr[(I − Z Z^H)^{-1} V (I − Z^H Z)^{-1} W^H] (numpy, explicit matrices)."""
    k = Z.shape[0]
    eye = np.eye(k)
    A = np.linalg.inv(eye - Z @ Z.conj().T)
    B = np.linalg.inv(eye - Z.conj().T @ Z)
    return np.trace(A @ V @ B @ W.conj().T)


def siegel_metric_from_h(Z):
    """G[a, b] = h(E_a, E_b), E_a the elementary k×k matrix of row-major flat index a."""
    k = Z.shape[0]
    E = np.eye(k * k).reshape(k * k, k, k)
    return np.array([[siegel_h(Z, E[a], E[b]) for b in range(k * k)] for a in range(k * k)])


def random_siegel_points(k, count, gen, max_norm=0.9):
    """Random k×k complex matrices with spectral norm ≤ max_norm, flattened row-major."""
    Z = torch.randn(count, k, k, dtype=C128, generator=gen)
    s = torch.linalg.matrix_norm(Z, ord=2)[:, None, None]
    r = torch.rand(count, 1, 1, dtype=torch.float64, generator=gen) * max_norm
    return (r * Z / s).reshape(count, k * k)


def fd_partial(f, z, h=1e-3):
    """∂_a f = ½(∂x_a − i∂y_a) f by Richardson-extrapolated central differences (no autodiff)."""
    u0 = to_real(z)
    eye = torch.eye(u0.shape[-1], dtype=u0.dtype)

    def grad(h):
        with torch.no_grad():
            return (f(from_real(u0 + h * eye)) - f(from_real(u0 - h * eye))) / (2 * h)

    g = (4 * grad(h / 2) - grad(h)) / 3
    n = z.shape[-1]
    return 0.5 * torch.complex(g[:n], -g[n:])


def _mixture(n, m, temperature, seed=0):
    g = torch.Generator().manual_seed(seed)
    means = torch.randn(m, n, dtype=C128, generator=g)
    A = torch.randn(m, n, n, dtype=C128, generator=g)
    P = A @ A.mH / n + 0.5 * torch.eye(n, dtype=C128)
    w = torch.rand(m, dtype=torch.float64, generator=g) + 0.5
    return GaussianMixturePotential(means, P, w, temperature=temperature)


# -- values and domains -------------------------------------------------------------------------


def test_values_of_classical_potentials(gen):
    z = random_points(3, (4,), radius=0.9, generator=gen)
    zn = z.numpy()
    s = (np.abs(zn) ** 2).sum(-1)
    np.testing.assert_allclose(Flat(3)(z).numpy(), s, rtol=1e-14)
    np.testing.assert_allclose(FubiniStudy(3)(z).numpy(), np.log(1 + s), rtol=1e-14)
    np.testing.assert_allclose(ComplexHyperbolic(3)(z).numpy(), -np.log(1 - s), rtol=1e-13)
    assert FubiniStudy(3)(z).dtype == torch.float64


def test_siegel_value_and_domain(gen):
    k = 2
    z = random_siegel_points(k, 5, gen)
    Z = z.numpy().reshape(5, k, k)
    M = np.eye(k) - np.conj(np.swapaxes(Z, -1, -2)) @ Z
    np.testing.assert_allclose(SiegelDisk(k)(z).numpy(), -np.linalg.slogdet(M)[1], rtol=1e-12)
    assert bool(SiegelDisk(k).contains(z).all())
    # Spectral norm > 1 (numpy SVD as oracle) is outside; norm exactly 1.1 after scaling.
    out = z / torch.linalg.matrix_norm(z.reshape(5, k, k), ord=2)[:, None] * 1.1
    assert not bool(SiegelDisk(k).contains(out).any())
    assert np.all(np.linalg.svd(out.numpy().reshape(5, k, k), compute_uv=False)[:, 0] > 1)


def test_contains_ball_and_product():
    inside = torch.tensor([[0.6, 0.7j], [0.0, 0.0]], dtype=C128)
    outside = torch.tensor([[0.8, 0.7j], [1.0, 0.0]], dtype=C128)
    ball = ComplexHyperbolic(2)
    assert ball.contains(inside).tolist() == [True, True]
    assert ball.contains(outside).tolist() == [False, False]
    prod = Product([ComplexHyperbolic(1), Flat(1)])
    z = torch.tensor([[0.5, 10.0], [1.5, 0.0]], dtype=C128)
    assert prod.contains(z).tolist() == [True, False]
    assert bool(FubiniStudy(2).contains(outside * 100).all())


def test_fubini_study_contains_is_the_squared_norm_bound(gen):
    """FubiniStudy.contains (a matrix-vector product) against |z|² < 1/sqrt(tiny) from
    sq_norm, on random points and points scaled to 1 ± 1e-6 of the bound, every batch shape."""
    from kahlergeom.potentials import sq_norm
    from kahlergeom.potentials._closed_forms import _representable_radius_sq

    for dtype in (torch.complex64, C128):
        bound = _representable_radius_sq(dtype)
        for n in (1, 2, 5):
            z = torch.randn(6, n, dtype=C128, generator=gen)
            unit = z / sq_norm(z).sqrt().unsqueeze(-1)
            scales = torch.tensor([1e-3, 1.0, 1 - 1e-6, 1 + 1e-6, 2.0, 1e3], dtype=torch.float64)
            far = (unit * (scales * bound).sqrt().unsqueeze(-1)).to(dtype)
            for w in (z.to(dtype), far, far.reshape(2, 3, n), far[:0], far[0]):
                expected = sq_norm(w) < bound
                assert torch.equal(FubiniStudy(n).contains(w), expected)
            inside = FubiniStudy(n).contains(far).tolist()
            assert inside[:1] + inside[2:] == [True, True, False, False, False]  # [1]: at it


def test_closed_form_flags():
    assert FubiniStudy(2).has_closed_form_levi
    assert _mixture(2, 2, 1.0).has_closed_form_levi

    class Plain(KahlerPotential):
        def __call__(self, z):
            return kg.potentials.sq_norm(z)

    assert not Plain(2).has_closed_form_levi


# -- closed-form levi against docs/conventions.md and against autodiff ----------------


@pytest.mark.parametrize("n", NS)
def test_levi_closed_forms_match_math_and_autodiff(n, gen):
    z = random_points(n, (4,), radius=0.95, generator=gen)
    for pot, oracle in ((FubiniStudy(n), fs_metric_np), (ComplexHyperbolic(n), ball_metric_np)):
        expected = np.stack([oracle(p) for p in z.numpy()])
        scale = np.abs(expected).max()
        np.testing.assert_allclose(pot.levi(z).numpy(), expected, rtol=0, atol=1e-12 * scale)
        np.testing.assert_allclose(kg.ddbar(pot, z).numpy(), expected, rtol=0, atol=1e-10 * scale)
    eye = torch.eye(n, dtype=C128).expand(4, n, n)
    assert_close(Flat(n).levi(z), eye)


@pytest.mark.parametrize("k", [1, 2])
def test_siegel_metric_matches_trace_formula(k, gen):
    z = random_siegel_points(k, 4, gen)
    pot = SiegelDisk(k)
    G_auto = kg.ddbar(pot, z).numpy()
    G_closed = pot.levi(z).numpy()
    for i, Z in enumerate(z.numpy().reshape(4, k, k)):
        expected = siegel_metric_from_h(Z)
        np.testing.assert_allclose(G_auto[i], expected, rtol=0, atol=1e-10)
        np.testing.assert_allclose(G_closed[i], expected, rtol=0, atol=1e-12)
        # h(V, W) for random V, W: vec(V)ᵀ G conj(vec(W)), row-major vec.
        V = gen_matrix(k, seed=i)
        W = gen_matrix(k, seed=100 + i)
        h = V.reshape(-1) @ G_auto[i] @ W.reshape(-1).conj()
        np.testing.assert_allclose(h, siegel_h(Z, V, W), rtol=1e-10)


def gen_matrix(k, seed):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((k, k)) + 1j * rng.standard_normal((k, k))


def test_siegel_k1_is_the_disk(gen):
    z = random_points(1, (6,), radius=0.95, generator=gen)
    assert_close(SiegelDisk(1).levi(z), ComplexHyperbolic(1).levi(z))
    assert_close(SiegelDisk(1)(z), ComplexHyperbolic(1)(z))


def test_product_is_block_diagonal(gen):
    factors = [FubiniStudy(2), ComplexHyperbolic(1), Flat(1), SiegelDisk(2)]
    prod = Product(factors)
    assert prod.n == 8
    z = torch.cat(
        [
            random_points(2, (3,), generator=gen),
            random_points(1, (3,), radius=0.9, generator=gen),
            random_points(1, (3,), generator=gen),
            random_siegel_points(2, 3, gen),
        ],
        -1,
    )
    G = kg.ddbar(prod, z).numpy()
    expected = np.zeros((3, 8, 8), dtype=complex)
    for i, p in enumerate(z.numpy()):
        expected[i, :2, :2] = fs_metric_np(p[:2])
        expected[i, 2:3, 2:3] = ball_metric_np(p[2:3])
        expected[i, 3, 3] = 1.0
        expected[i, 4:, 4:] = siegel_metric_from_h(p[4:].reshape(2, 2))
    np.testing.assert_allclose(G, expected, rtol=0, atol=1e-10)
    np.testing.assert_allclose(prod.levi(z).numpy(), expected, rtol=0, atol=1e-12)
    assert_close(prod(z), sum(f(zi) for f, zi in zip(factors, z.split([2, 1, 1, 4], -1))))


def test_quadratic_levi_and_partial(gen):
    A = torch.randn(3, 3, dtype=C128, generator=gen)
    P = A @ A.mH + torch.eye(3, dtype=C128)
    m = torch.randn(3, dtype=C128, generator=gen)
    q = Quadratic(m, P)
    z = random_points(3, (4,), generator=gen)
    v = random_points(3, (4,), generator=gen)
    d = (z - m).numpy()
    np.testing.assert_allclose(
        q(z).numpy(), np.einsum("ia,ab,ib->i", d.conj(), P.numpy(), d).real, rtol=1e-12
    )
    # h(v, v) = vᵀ G conj(v) must equal v^H P v.
    G = kg.ddbar(q, z)
    hvv = torch.einsum("...a,...ab,...b->...", v, G, v.conj())
    assert_close(hvv, torch.einsum("...a,ab,...b->...", v.conj(), P, v))
    assert_close(q.levi(z), G)


@pytest.mark.parametrize("n", [1, 2, 4])
@pytest.mark.parametrize("temperature", [0.05, 1.0, 20.0])
def test_mixture_closed_form_matches_autodiff(n, temperature, gen):
    pot = _mixture(n, m=4, temperature=temperature, seed=n)
    # Points near the means, where several components compete, and generic ones.
    z = torch.cat(
        [
            pot.means[:2] + 0.1 * random_points(n, (2,), generator=gen),
            random_points(n, (3,), generator=gen),
        ]
    )
    G_closed = pot.levi(z)
    G_auto = kg.ddbar(pot, z)
    scale = G_auto.abs().amax((-1, -2), keepdim=True).clamp_min(1.0)
    assert_close(G_closed / scale, G_auto / scale)
    assert_close(pot.partial(z), kg.wirtinger.partial(pot, z))


def test_mixture_value_formula(gen):
    pot = _mixture(2, m=3, temperature=0.7)
    z = random_points(2, (5,), generator=gen).numpy()
    d = z[:, None, :] - pot.means.numpy()[None]
    q = np.einsum("ija,jab,ijb->ij", d.conj(), pot.precisions.numpy(), d).real
    scores = (q + np.log(pot.weights_.numpy())) / 0.7
    expected = 0.7 * np.log(np.exp(scores).sum(-1))
    np.testing.assert_allclose(pot(torch.from_numpy(z)).numpy(), expected, rtol=1e-12)


def test_single_component_mixture_is_quadratic(gen):
    A = torch.randn(2, 2, dtype=C128, generator=gen)
    P = A @ A.mH + torch.eye(2, dtype=C128)
    m = torch.randn(1, 2, dtype=C128, generator=gen)
    pot = GaussianMixturePotential(m, P[None], torch.tensor([2.0]), temperature=0.3)
    q = Quadratic(m[0], P)
    z = random_points(2, (4,), generator=gen)
    assert_close(pot(z), q(z) + np.log(2.0))
    assert_close(pot.levi(z), q.levi(z))


def test_logsumexp_levi_matches_autodiff(gen):
    comps = [FubiniStudy(2), Flat(2), _mixture(2, 2, 0.5)]
    pot = LogSumExp(comps, biases=torch.tensor([1.0, -0.5, 0.2]), temperature=0.4)
    z = random_points(2, (5,), generator=gen)
    assert_close(pot.levi(z), kg.ddbar(pot, z))
    assert_close(pot.partial(z), kg.wirtinger.partial(pot, z))


@pytest.mark.parametrize("temperature", [1.0, 0.1, 1e-3])
def test_logsumexp_tends_to_max(temperature, gen):
    comps = [FubiniStudy(2), Flat(2), ComplexHyperbolic(2)]
    b = torch.tensor([0.3, -1.0, 0.0], dtype=torch.float64)
    pot = LogSumExp(comps, biases=b, temperature=temperature)
    z = random_points(2, (6,), radius=0.9, generator=gen)
    zn = z.numpy()
    s = (np.abs(zn) ** 2).sum(-1)
    mx = np.max(np.stack([np.log1p(s) + 0.3, s - 1.0, -np.log1p(-s)]), 0)
    value = pot(z).numpy()
    # max ≤ Ψ ≤ max + τ log m, so Ψ → max as τ → 0.
    assert np.all(value >= mx - 1e-12)
    assert np.all(value <= mx + temperature * np.log(3) + 1e-12)
    if temperature == 1e-3:
        np.testing.assert_allclose(value, mx, atol=temperature * np.log(3))


def test_mixture_weights_concentrate_as_temperature_vanishes(gen):
    pot = _mixture(2, m=3, temperature=1e-4)
    z = pot.means + 0.01
    w = pot.weights(z)
    # At its own mean (shifted by 0.01) a component's score is ≈ log w_j, the others' are
    # larger, so weights are one-hot (τ log-sum-exp picks the max score).
    assert_close(w.sum(-1), torch.ones(3, dtype=torch.float64))
    assert bool(((w > 1 - 1e-6) | (w < 1e-6)).all())


# -- partial against finite differences ---------------------------------------------------------


@pytest.mark.parametrize(
    "pot",
    [FubiniStudy(3), ComplexHyperbolic(3), Flat(3), SiegelDisk(1)],
    ids=["fs", "ball", "flat", "siegel1"],
)
def test_partial_closed_forms_match_finite_differences(pot, gen):
    z = random_points(pot.n, (3,), radius=0.8, generator=gen)
    closed = pot.partial(z)
    for i in range(3):
        assert_close(closed[i], fd_partial(pot, z[i]), atol=1e-8, rtol=1e-8)


def test_partial_of_combinators_matches_finite_differences(gen):
    pots = [
        _mixture(2, m=3, temperature=0.6),
        LogSumExp([FubiniStudy(2), Flat(2)], temperature=0.5),
        Product([FubiniStudy(1), Flat(1)]),
    ]
    z = random_points(2, (3,), generator=gen)
    for pot in pots:
        closed = pot.partial(z)
        for i in range(3):
            assert_close(closed[i], fd_partial(pot, z[i]), atol=1e-8, rtol=1e-8)


# -- hypothesis: random PSH potentials ----------------------------------------------------------


@given(psh_potentials(2), points(2, batch=(3,)))
def test_closed_form_levi_of_random_potentials_matches_autodiff(pot, z):
    G_closed = pot.levi(z)
    G_auto = kg.ddbar(pot, z)
    scale = G_auto.abs().amax((-1, -2), keepdim=True).clamp_min(1.0)
    assert_close(G_closed / scale, G_auto / scale, atol=1e-9, rtol=1e-9)
    assert_close(G_closed, G_closed.mH)
