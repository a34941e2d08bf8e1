"""The Wirtinger engine (ddbar, partial, wirtinger_jacobian, closedness_residual).

Oracles: closed-form Levi matrices written out here in numpy (docs/conventions.md § Closed forms),
central finite
differences of the potential's values (Richardson-extrapolated, no autodiff), and holomorphic /
antiholomorphic test functions whose Wirtinger derivatives are known by hand.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import TOL, assert_close, random_points
from hypothesis import given

import kahlergeom as kg
from kahlergeom._linalg import levi_from_real_hessian
from kahlergeom.potentials import (
    ComplexHyperbolic,
    Flat,
    FubiniStudy,
    GaussianMixturePotential,
    LogSumExp,
    Quadratic,
)
from kahlergeom.testing import points, psh_potentials
from kahlergeom.wirtinger import (
    closedness_residual,
    from_real,
    partial,
    partial_bar,
    to_real,
    wirtinger_jacobian,
)
from kahlergeom.wirtinger._ddbar import _levi

NS = [1, 2, 3, 4, 5, 6]


# -- oracles ------------------------------------------------------------------------------------


def fs_metric_np(z: np.ndarray) -> np.ndarray:
    """((1+|z|²) I − z̄ zᵀ)/(1+|z|²)², one point, numpy."""
    s = float(np.vdot(z, z).real)
    return ((1 + s) * np.eye(len(z)) - np.outer(z.conj(), z)) / (1 + s) ** 2


def ball_metric_np(z: np.ndarray) -> np.ndarray:
    """((1−|z|²) I + z̄ zᵀ)/(1−|z|²)², one point, numpy."""
    s = float(np.vdot(z, z).real)
    return ((1 - s) * np.eye(len(z)) + np.outer(z.conj(), z)) / (1 - s) ** 2


def _values(f, u: np.ndarray) -> np.ndarray:
    """f at real coordinates u (..., 2n), evaluated without any autodiff."""
    with torch.no_grad():
        return f(from_real(torch.from_numpy(u))).numpy()


def fd_levi(f, z: torch.Tensor, h: float = 2e-3) -> np.ndarray:
    """Levi matrix from a Richardson-extrapolated central-difference real Hessian (numpy).

    G = ¼[(K_xx + K_yy) + i(K_xy − K_xyᵀ)] (docs/conventions.md § Coordinates and derivatives),
    O(h⁴) truncation error.
    """
    u0 = to_real(z).numpy()
    m = u0.shape[-1]
    eye = np.eye(m)

    def hess(h):
        ei = eye[:, None, :] * h
        ej = eye[None, :, :] * h
        pp = _values(f, u0 + ei + ej)
        pm = _values(f, u0 + ei - ej)
        mp = _values(f, u0 - ei + ej)
        mm = _values(f, u0 - ei - ej)
        return (pp - pm - mp + mm) / (4 * h * h)

    H = (4 * hess(h / 2) - hess(h)) / 3
    n = m // 2
    kxx, kyy, kxy = H[:n, :n], H[n:, n:], H[:n, n:]
    return 0.25 * ((kxx + kyy) + 1j * (kxy - kxy.T))


def fd_partial(f, z: torch.Tensor, h: float = 1e-3) -> np.ndarray:
    """∂_a f = ½(∂x_a − i∂y_a) f from Richardson-extrapolated central differences."""
    u0 = to_real(z).numpy()
    m = u0.shape[-1]
    eye = np.eye(m)

    def grad(h):
        return (_values(f, u0 + h * eye) - _values(f, u0 - h * eye)) / (2 * h)

    g = (4 * grad(h / 2) - grad(h)) / 3
    n = m // 2
    return 0.5 * (g[:n] - 1j * g[n:])


def _mixture(n, m, temperature, seed=0):
    g = torch.Generator().manual_seed(seed)
    means = torch.randn(m, n, dtype=torch.complex128, generator=g)
    A = torch.randn(m, n, n, dtype=torch.complex128, generator=g)
    P = A @ A.mH + 0.5 * torch.eye(n, dtype=torch.complex128)
    w = torch.rand(m, dtype=torch.float64, generator=g) + 0.5
    return GaussianMixturePotential(means, P, w, temperature=temperature)


# -- coordinates --------------------------------------------------------------------------------


def test_to_real_layout_and_round_trip(gen):
    z = random_points(3, (4,), generator=gen)
    u = to_real(z)
    assert u.shape == (4, 6) and u.dtype == torch.float64
    assert torch.equal(u[:, :3], z.real) and torch.equal(u[:, 3:], z.imag)
    assert torch.equal(from_real(u), z)


def test_levi_from_real_hessian_of_a_quadratic_form():
    # K(u) = uᵀ S u / 2 has real Hessian S; take S = G_R of a known Hermitian G:
    # then uᵀ G_R u = 2 Re... use K = vᵀ G conj(v) = h(v, v), whose Levi matrix is G itself.
    G = torch.tensor([[2.0, 1 + 1j], [1 - 1j, 3.0]], dtype=torch.complex128)
    GR = torch.cat([torch.cat([G.real, G.imag], 1), torch.cat([-G.imag, G.real], 1)], 0)
    # h(v, v) = uᵀ G_R u, so the real Hessian is 2 G_R (G_R symmetric for Hermitian G).
    assert_close(levi_from_real_hessian(2 * GR), G)


def test_levi_from_hessian_rows_against_the_real_hessian_and_a_quadratic_form(gen):
    """levi_from_hessian_rows(R) with R[a] = H[a, :n] + i H[a, n:] (the rows as K_x + i K_y)
    is levi_from_real_hessian(H), and exactly Hermitian; for h(v, v) = vᵀ G conj(v) (real
    Hessian 2 G_R) it returns G itself."""
    from kahlergeom._linalg import levi_from_hessian_rows, real_metric

    for n in (1, 2, 5):
        A = torch.randn(3, 2 * n, 2 * n, dtype=torch.float64, generator=gen)
        H = A + A.mT
        R = torch.complex(H[..., :n], H[..., n:])
        G = levi_from_hessian_rows(R)
        assert torch.equal(G, G.mH)
        S = H[..., :n, :n] + H[..., n:, n:]  # written out: ¼[(K_xx + K_yy) + i(K_xy − K_yx)]
        D = H[..., :n, n:] - H[..., n:, :n]
        assert_close(G, 0.25 * torch.complex(S, D), rtol=1e-14, atol=1e-14)
        assert torch.equal(levi_from_real_hessian(H), G)
        B = torch.randn(n, n, dtype=torch.complex128, generator=gen)
        G0 = B @ B.mH
        GR = real_metric(G0)
        assert_close(levi_from_hessian_rows(torch.complex(2 * GR[:, :n], 2 * GR[:, n:])), G0)
    # a non-symmetric H (rounding in a computed Hessian) is symmetrised, as before
    H = torch.randn(4, 4, dtype=torch.float64, generator=gen)
    Hs = 0.5 * (H + H.T)
    assert_close(levi_from_real_hessian(H), levi_from_real_hessian(Hs), rtol=1e-15, atol=1e-15)
    # a complex H (the real Hessians of a complex field's entries) is linear in H
    H2 = torch.randn(4, 4, dtype=torch.float64, generator=gen)
    Hc = torch.complex(H + H.T, H2 + H2.T)
    expected = levi_from_real_hessian(Hc.real) + 1j * levi_from_real_hessian(Hc.imag)
    assert_close(levi_from_real_hessian(Hc), expected, rtol=1e-14, atol=1e-14)


# -- ddbar against closed forms -----------------------------------------------------------------


@pytest.mark.parametrize("n", NS)
def test_ddbar_flat_is_identity(n, gen):
    z = random_points(n, (5,), generator=gen)
    G = kg.ddbar(Flat(n), z)
    assert_close(G, torch.eye(n, dtype=torch.complex128).expand(5, n, n))


@pytest.mark.parametrize("n", NS)
def test_ddbar_fubini_study_closed_form(n, gen):
    z = random_points(n, (5,), generator=gen)
    G = kg.ddbar(FubiniStudy(n), z).numpy()
    expected = np.stack([fs_metric_np(p) for p in z.numpy()])
    np.testing.assert_allclose(G, expected, rtol=0, atol=1e-12)


@pytest.mark.parametrize("n", NS)
def test_ddbar_ball_closed_form(n, gen):
    z = random_points(n, (5,), radius=0.95, generator=gen)
    G = kg.ddbar(ComplexHyperbolic(n), z).numpy()
    expected = np.stack([ball_metric_np(p) for p in z.numpy()])
    scale = np.abs(expected).max()
    np.testing.assert_allclose(G, expected, rtol=0, atol=1e-10 * scale)


@pytest.mark.parametrize("n", [1, 3])
def test_ddbar_at_origin_is_exact(n):
    # Pitfall of docs/conventions.md § Coordinates and derivatives: |z|² must be differentiable at
    # 0.
    z = torch.zeros(n, dtype=torch.complex128)
    eye = torch.eye(n, dtype=torch.complex128)
    assert_close(kg.ddbar(FubiniStudy(n), z), eye)
    assert_close(kg.ddbar(ComplexHyperbolic(n), z), eye)
    assert_close(kg.ddbar(Flat(n), z), eye)


def test_ddbar_of_plain_function_and_hermitian_form(gen):
    # K(z) = h_P(z, z) = zᵀ P conj(z) for a fixed Hermitian P has Levi matrix exactly P.
    A = torch.randn(3, 3, dtype=torch.complex128, generator=gen)
    P = A + A.mH

    def K(z):
        return torch.einsum("...a,ab,...b->...", z, P, z.conj()).real

    z = random_points(3, (2, 4), generator=gen)
    G = kg.ddbar(K, z)
    assert G.shape == (2, 4, 3, 3)
    assert_close(G, P.expand(2, 4, 3, 3))


# -- ddbar against finite differences (independent of torch.func) -------------------------------


@pytest.mark.parametrize("n", [1, 2, 3])
def test_ddbar_mixture_matches_finite_differences(n, gen):
    pot = _mixture(n, m=3, temperature=0.7, seed=n)
    for z in random_points(n, (3,), generator=gen):
        G = kg.ddbar(pot, z).numpy()
        expected = fd_levi(pot, z)
        np.testing.assert_allclose(G, expected, rtol=0, atol=1e-7 * max(1, np.abs(G).max()))


def test_ddbar_logsumexp_matches_finite_differences(gen):
    n = 2
    comps = [
        FubiniStudy(n),
        Quadratic(torch.tensor([0.3, -0.2j], dtype=torch.complex128), torch.eye(n) * 0.5 + 0j),
        Flat(n),
    ]
    pot = LogSumExp(comps, biases=torch.tensor([0.5, -0.1, 0.0]), temperature=0.6)
    for z in random_points(n, (3,), generator=gen):
        G = kg.ddbar(pot, z).numpy()
        np.testing.assert_allclose(G, fd_levi(pot, z), rtol=0, atol=1e-7 * max(1, abs(G).max()))


def test_partial_matches_finite_differences(gen):
    pot = _mixture(2, m=3, temperature=1.3)
    z = random_points(2, (3,), generator=gen)
    d = partial(pot, z)
    for i in range(3):
        np.testing.assert_allclose(d[i].numpy(), fd_partial(pot, z[i]), rtol=0, atol=1e-8)
    assert_close(partial_bar(pot, z), d.conj())


def test_partial_closed_forms(gen):
    z = random_points(3, (4,), radius=0.9, generator=gen)
    s = (z.real**2 + z.imag**2).sum(-1, keepdim=True)
    assert_close(partial(Flat(3), z), z.conj())
    assert_close(partial(FubiniStudy(3), z), z.conj() / (1 + s))
    assert_close(partial(ComplexHyperbolic(3), z), z.conj() / (1 - s))


# -- wirtinger_jacobian on functions with known derivatives -------------------------------------


def test_wirtinger_jacobian_holomorphic(gen):
    # F(z) = (z0², z0 z1, exp(z1)): ∂F = F', ∂̄F = 0.
    def F(z):
        return torch.stack([z[0] ** 2, z[0] * z[1], torch.exp(z[1])])

    z = random_points(2, (4,), generator=gen)
    d, dbar = wirtinger_jacobian(F, z)
    assert d.shape == dbar.shape == (4, 3, 2)
    zero = torch.zeros_like(z[:, 0])
    expected = torch.stack(
        [
            torch.stack([2 * z[:, 0], zero], -1),
            torch.stack([z[:, 1], z[:, 0]], -1),
            torch.stack([zero, torch.exp(z[:, 1])], -1),
        ],
        -2,
    )
    assert_close(d, expected)
    assert_close(dbar, torch.zeros_like(dbar))


def test_wirtinger_jacobian_antiholomorphic_and_real(gen):
    z = random_points(3, (2,), generator=gen)
    d, dbar = wirtinger_jacobian(lambda w: w.conj(), z)
    eye = torch.eye(3, dtype=torch.complex128).expand(2, 3, 3)
    assert_close(d, torch.zeros_like(d))
    assert_close(dbar, eye)
    # Real output: |z|² has ∂ = conj(z), ∂̄ = z.
    d, dbar = wirtinger_jacobian(lambda w: (w.real**2 + w.imag**2).sum(), z)
    assert_close(d, z.conj())
    assert_close(dbar, z)


# -- closedness residual ------------------------------------------------------------------------


def non_closed_metric(z):
    """diag(1 + |z_1|², 1) (0-based z_1 = second coordinate): ∂_1 g_00̄ = conj(z_1) but
    ∂_0 g_10̄ = 0, so the absolute closedness residual is exactly |z_1| and the relative one 1."""
    s = z[..., 1].real ** 2 + z[..., 1].imag ** 2
    one = torch.ones_like(s)
    zero = torch.zeros_like(s)
    G = torch.stack([torch.stack([1 + s, zero], -1), torch.stack([zero, one], -1)], -2)
    return G.to(z.dtype)


def test_closedness_residual_detects_non_kahler(gen):
    z = random_points(2, (5,), generator=gen)
    res = closedness_residual(non_closed_metric, z, relative=False)
    assert_close(res, z[:, 1].abs())
    rel = closedness_residual(non_closed_metric, z)
    assert_close(rel, torch.ones(5, dtype=torch.float64))


def test_closedness_residual_small_for_levi_matrices(gen):
    z = random_points(3, (4,), generator=gen)
    pot = _mixture(3, m=2, temperature=0.8)
    for metric_fn in (pot.levi, FubiniStudy(3).levi, lambda w: _levi(FubiniStudy(3), w)):
        # Absolute residual against the size of G: the relative residual is rounding noise
        # where the field is nearly constant (a saturated mixture has |∂g| ~ 1e-10).
        res = closedness_residual(metric_fn, z, relative=False)
        assert res.shape == (4,)
        scale = metric_fn(z).abs().flatten(-2).amax(-1).clamp_min(1.0)
        assert bool((res < 1e-12 * scale).all()), res


@given(psh_potentials(2), points(2, batch=(2,)))
def test_closedness_of_random_psh_potentials(pot, z):
    res = closedness_residual(pot.levi, z, relative=False)
    scale = pot.levi(z).abs().flatten(-2).amax(-1).clamp_min(1.0)
    assert bool((res < 1e-10 * scale).all()), (pot, res)


# -- batching, chunking, dtype ------------------------------------------------------------------


def test_ddbar_chunk_size_matches(gen):
    pot = _mixture(2, m=3, temperature=1.0)
    z = random_points(2, (3, 5), generator=gen)
    G = kg.ddbar(pot, z)
    assert_close(kg.ddbar(pot, z, chunk_size=4), G)
    assert_close(kg.ddbar(pot, z, chunk_size=1), G)
    assert_close(partial(pot, z, chunk_size=2), partial(pot, z))


def test_empty_batch_gives_empty_results():
    z = torch.zeros(0, 2, dtype=torch.complex128)
    assert kg.ddbar(FubiniStudy(2), z).shape == (0, 2, 2)
    assert partial(FubiniStudy(2), z).shape == (0, 2)
    d, dbar = wirtinger_jacobian(lambda w: torch.stack([w[0] * w[1], w[0].conj()]), z)
    assert d.shape == dbar.shape == (0, 2, 2) and d.dtype == torch.complex128
    assert closedness_residual(FubiniStudy(2).levi, z).shape == (0,)


def test_ddbar_complex64_in_complex64_out(gen):
    z = random_points(3, (4,), generator=gen)
    pot = FubiniStudy(3)
    G32 = kg.ddbar(pot, z.to(torch.complex64))
    assert G32.dtype == torch.complex64 and G32.device == z.device
    assert partial(pot, z.to(torch.complex64)).dtype == torch.complex64
    assert_close(G32, kg.ddbar(pot, z).to(torch.complex64), **TOL[torch.complex64])


@given(psh_potentials(3), points(3, batch=(3,)))
def test_ddbar_hermitian_and_psd_for_psh_potentials(pot, z):
    G = kg.ddbar(pot, z)
    assert torch.equal(G, G.mH)  # exact by construction of the Levi matrix
    lam = torch.linalg.eigvalsh(G)
    scale = torch.linalg.matrix_norm(G, ord=2).clamp_min(1.0)
    assert bool((lam[..., 0] >= -1e-12 * scale).all()), (pot, lam)
