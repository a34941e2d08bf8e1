"""Fisher metrics of decoders (`FisherManifold`) and the KL-exact potential (`KLPotential`).

Oracles, each independent of the library's forward-mode JVP + real-Fisher route:
- the three-term formula of docs/conventions.md § Fisher metric of a decoder, assembled here from
  Jacobians taken per point with
  reverse-mode ``torch.autograd.functional.jacobian`` on real coordinates (and, once, from
  central finite differences without autodiff);
- Monte Carlo: E[∂_a ℓ · conj(∂_b ℓ)] over samples from each likelihood's own sampler, with the
  score from autograd of a log-density written out here, checked within 5 standard errors;
- ∂∂̄ of the KL divergence at the base point (autodiff of a different function);
- sympy: a polynomial decoder in z and z̄ (independent symbols), its metric derived
  symbolically and compared numerically to a torch decoder written by hand;
- holomorphic decoders with constant variance: ∂∂̄ of μ^H Σ^{-1} μ, and an analytic Jacobian
  for a 10⁵-output tanh decoder;
- `Complexified` real decoders: the real Fisher from Jacobians in the real latent r, contracted
  with the Wirtinger vectors ½(e_x − i e_y) of the chosen pairing.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import sympy as sp
import torch
from conftest import TOL, assert_close, random_points
from hypothesis import given
from hypothesis import strategies as st

import kahlergeom as kg
from kahlergeom.decoders import Bernoulli, ComplexGaussian, Complexified, RealGaussian
from kahlergeom.potentials import KahlerPotential, KLPotential

C128 = torch.complex128
F64 = torch.float64


# -- decoders used throughout ---------------------------------------------------------------


def make_decoder(
    n, D, *, variance="point", holomorphic=False, seed=0, hidden=5, dtype=C128, scale=1.0
):
    """A small complex MLP decoder z -> (mean (..., D), variance).

    ``holomorphic=False`` adds non-holomorphic pieces (conj(z), |z|²); ``variance`` is
    "scalar" (0-dim tensor), "output" ((D,)), or "point" ((..., D), depends on Re z and Im z).
    """
    g = torch.Generator().manual_seed(seed)
    rdt = torch.float32 if dtype == torch.complex64 else F64

    def c(*shape, s=1.0):
        return (s * torch.randn(*shape, dtype=C128, generator=g)).to(dtype)

    def r(*shape, s=1.0):
        return (s * torch.randn(*shape, dtype=F64, generator=g)).to(rdt)

    W1, b1, W2 = c(hidden, n, s=scale), c(hidden, s=0.3), c(D, hidden, s=0.7)
    C, Q = c(D, n, s=0.4), r(D, n, s=0.3)
    A, v0 = r(D, 2 * n, s=0.4), r(D, s=0.3)

    def dec(z):
        mean = torch.tanh(z @ W1.T + b1) @ W2.T
        if not holomorphic:
            sq = z.real**2 + z.imag**2
            mean = mean + z.conj() @ C.T + (sq @ Q.T).to(dtype)
        if variance == "scalar":
            var = torch.tensor(0.6, dtype=rdt)
        elif variance == "output":
            var = torch.exp(v0)
        else:
            u = torch.cat([z.real, z.imag], -1)
            var = torch.exp(torch.tanh(u @ A.T) + v0)
        return mean, var

    return dec


def make_real_decoder(m, D, *, kind="gaussian", seed=0, hidden=6):
    """A real MLP r ∈ R^m -> (mean, variance) (kind "gaussian") or logits ("bernoulli")."""
    g = torch.Generator().manual_seed(seed)
    W1 = torch.randn(hidden, m, dtype=F64, generator=g)
    b1 = 0.3 * torch.randn(hidden, dtype=F64, generator=g)
    W2 = 0.8 * torch.randn(D, hidden, dtype=F64, generator=g)
    A = 0.4 * torch.randn(D, m, dtype=F64, generator=g)

    def dec(r):
        h = torch.tanh(r @ W1.T + b1) @ W2.T
        if kind == "bernoulli":
            return h
        return h, torch.exp(0.5 * torch.tanh(r @ A.T))

    return dec


def rel_err(actual, expected):
    scale = expected.abs().amax(dim=(-1, -2), keepdim=True).clamp_min(1e-300)
    return ((actual - expected).abs() / scale).amax().item()


# -- independent references -------------------------------------------------------------


def wirtinger_split(J, n):
    """Real-coordinate Jacobian (..., 2n) -> (∂ = ½(∂x − i∂y), ∂̄ = ½(∂x + i∂y)) (..., n)."""
    Jx, Jy = J[..., :n], J[..., n:]
    return 0.5 * (Jx - 1j * Jy), 0.5 * (Jx + 1j * Jy)


def jacobians_reverse(dec, z):
    """Per point, reverse mode: ∂μ, ∂̄μ (D, n), ∂σ², ∂̄σ² (D, n), σ² (D,)."""
    n = z.shape[-1]

    def mean_r(u):
        m, _ = dec(torch.complex(u[:n], u[n:]))
        return torch.cat([m.real, m.imag])

    def var_r(u):
        m, v = dec(torch.complex(u[:n], u[n:]))
        return torch.as_tensor(v, dtype=m.real.dtype).expand(m.shape) + 0 * u.sum()

    u = torch.cat([z.real, z.imag])
    Jm = torch.autograd.functional.jacobian(mean_r, u)
    D = Jm.shape[0] // 2
    Jm = torch.complex(Jm[:D], Jm[D:])
    Jv = torch.autograd.functional.jacobian(var_r, u).to(Jm.dtype)
    with torch.no_grad():
        m, v = dec(z)
        v = torch.as_tensor(v, dtype=m.real.dtype).expand(m.shape)
    return (*wirtinger_split(Jm, n), *wirtinger_split(Jv, n), v)


def jacobians_fd(dec, z, h=1e-5):
    """Same as `jacobians_reverse` from central finite differences (no autodiff)."""
    n = z.shape[-1]
    cols_m, cols_v = [], []
    with torch.no_grad():
        m0, v0 = dec(z)
        for i in range(2 * n):
            e = torch.zeros(n, dtype=z.dtype)
            e[i % n] = 1.0 if i < n else 1j
            mp, vp = dec(z + h * e)
            mm, vm = dec(z - h * e)
            cols_m.append((mp - mm) / (2 * h))
            cols_v.append(torch.as_tensor(vp - vm).expand(m0.shape) / (2 * h))
    Jm = torch.stack(cols_m, -1)
    Jv = torch.stack(cols_v, -1).to(Jm.dtype)
    v0 = torch.as_tensor(v0).expand(m0.shape)
    return (*wirtinger_split(Jm, n), *wirtinger_split(Jv, n), v0)


def fisher_formula(dmu, dbmu, dv, dbv, var):
    """docs/conventions.md § Fisher metric of a decoder: G[a,b] = (∂_bμ)^H Σ⁻¹ ∂_aμ + (∂̄_aμ)^H Σ⁻¹
    ∂̄_bμ + tr(Σ⁻¹∂_aΣ Σ⁻¹∂̄_bΣ)."""
    iv = (1.0 / var).to(dmu.dtype)
    t1 = torch.einsum("db,d,da->ab", dmu.conj(), iv, dmu)
    t2 = torch.einsum("da,d,db->ab", dbmu.conj(), iv, dbmu)
    t3 = torch.einsum("d,da,d,db->ab", iv, dv, iv, dbv)
    return t1 + t2 + t3


def reference_metric(dec, z, jac=jacobians_reverse):
    flat = z.reshape(-1, z.shape[-1])
    G = torch.stack([fisher_formula(*jac(dec, zi)) for zi in flat])
    return G.reshape(*z.shape[:-1], z.shape[-1], z.shape[-1])


# -- 1. the exact metric against the independent formula ---------------------------------


@pytest.mark.parametrize("variance", ["scalar", "output", "point"])
@pytest.mark.parametrize("n,D", [(1, 3), (2, 5), (3, 4)])
def test_metric_matches_three_term_formula(variance, n, D, gen):
    dec = make_decoder(n, D, variance=variance, seed=n * 10 + D)
    z = 0.8 * random_points(n, (4,), generator=gen)
    G = kg.FisherManifold(dec).metric(z)
    Gref = reference_metric(dec, z)
    assert rel_err(G, Gref) <= 1e-9
    # the variance term matters: with point-dependent variance, dropping it is detectable
    if variance == "point":
        no_var = torch.stack(
            [
                fisher_formula(dm, dbm, 0 * dv, 0 * dbv, v)
                for dm, dbm, dv, dbv, v in (jacobians_reverse(dec, zi) for zi in z)
            ]
        )
        assert rel_err(no_var, Gref) > 1e-3


def test_metric_matches_finite_difference_formula(gen):
    dec = make_decoder(2, 6, variance="point", seed=7)
    z = 0.8 * random_points(2, (3,), generator=gen)
    G = kg.FisherManifold(dec).metric(z)
    Gfd = reference_metric(dec, z, jac=jacobians_fd)
    assert rel_err(G, Gfd) <= 1e-7  # central differences, h = 1e-5: O(h²) + rounding


def test_metric_scalar_variance_as_python_float(gen):
    """A plain Python float variance keeps float64 precision (it must not pass through float32)."""
    W = torch.randn(4, 2, dtype=C128, generator=gen)
    z = random_points(2, (3,), generator=gen)
    G_float = kg.FisherManifold(lambda w: (torch.tanh(w @ W.T), 0.7)).metric(z)
    G_tensor = kg.FisherManifold(
        lambda w: (torch.tanh(w @ W.T), torch.tensor(0.7, dtype=F64))
    ).metric(z)
    assert_close(G_float, G_tensor)


# -- 2. Monte Carlo: E[∂_a ℓ conj(∂_b ℓ)] ----------------------------------------------------


def mc_fisher(logp_of_u, u, n):
    """Score s = ∂ℓ (N, n) by autograd of ``logp_of_u(u) -> (N,)``; mean and standard error of
    the entries s_a conj(s_b), each of shape (n, n) complex (real and imaginary parts)."""
    J = torch.func.jacfwd(logp_of_u)(u)  # (N, 2n), forward mode: 2n tangents
    s = 0.5 * (J[:, :n] - 1j * J[:, n:])
    prod = s[:, :, None] * s[:, None, :].conj()  # (N, n, n)
    N = prod.shape[0]
    mean = prod.mean(0)
    se = torch.complex(prod.real.std(0), prod.imag.std(0)) / math.sqrt(N)
    return mean, se


def assert_within_se(G, mean, se, k=5.0):
    bad_re = (G.real - mean.real).abs() > k * se.real + 1e-12
    bad_im = (G.imag - mean.imag).abs() > k * se.imag + 1e-12
    assert not bool(bad_re.any() or bad_im.any()), (G, mean, se)


N_MC = 200_000


@pytest.mark.parametrize("variance", ["output", "point"])
def test_complex_gaussian_fisher_matches_monte_carlo(variance, gen):
    n, D = 2, 3
    dec = make_decoder(n, D, variance=variance, seed=3)
    z = 0.7 * random_points(n, (2,), generator=gen)
    G = kg.FisherManifold(dec).metric(z)
    for i in range(z.shape[0]):
        with torch.no_grad():
            mu, var = dec(z[i])
            var = var.expand(D)
        # circular CN(μ, σ²): real and imaginary parts independent N(0, σ²/2)
        eps = torch.randn(N_MC, D, dtype=C128, generator=gen)  # E|eps|² = 1, circular
        x = mu + var.sqrt() * eps

        def logp(u, x=x):
            m, v = dec(torch.complex(u[:n], u[n:]))
            d = x - m
            return (-(d.real**2 + d.imag**2) / v - torch.log(v) - math.log(math.pi)).sum(-1)

        mean, se = mc_fisher(logp, torch.cat([z[i].real, z[i].imag]), n)
        assert_within_se(G[i], mean, se)
        # sanity of the sampler: E|x − μ|² = σ² per output
        dev = (x - mu).real ** 2 + (x - mu).imag ** 2
        assert_close(dev.mean(0), var, rtol=0.02, atol=0.0)


@pytest.mark.parametrize("pairing", ["interleaved", "split"])
def test_real_gaussian_fisher_matches_monte_carlo(pairing, gen):
    n, D = 2, 3
    real_dec = make_real_decoder(2 * n, D, seed=4)
    dec = Complexified(real_dec, pairing)
    z = 0.7 * random_points(n, (2,), generator=gen)
    G = kg.FisherManifold(dec, RealGaussian()).metric(z)
    for i in range(z.shape[0]):
        with torch.no_grad():
            mu, var = dec(z[i])
        x = mu + var.sqrt() * torch.randn(N_MC, D, dtype=F64, generator=gen)

        def logp(u, x=x):
            m, v = dec(torch.complex(u[:n], u[n:]))
            return (-0.5 * (x - m) ** 2 / v - 0.5 * torch.log(2 * math.pi * v)).sum(-1)

        mean, se = mc_fisher(logp, torch.cat([z[i].real, z[i].imag]), n)
        assert_within_se(G[i], mean, se)


def test_bernoulli_fisher_matches_monte_carlo(gen):
    n, D = 2, 4
    dec = Complexified(make_real_decoder(2 * n, D, kind="bernoulli", seed=5))
    z = 0.7 * random_points(n, (2,), generator=gen)
    G = kg.FisherManifold(dec, Bernoulli()).metric(z)
    for i in range(z.shape[0]):
        with torch.no_grad():
            p = torch.sigmoid(dec(z[i]))
        x = (torch.rand(N_MC, D, dtype=F64, generator=gen) < p).to(F64)

        def logp(u, x=x):
            q = torch.sigmoid(dec(torch.complex(u[:n], u[n:])))
            return (x * torch.log(q) + (1 - x) * torch.log1p(-q)).sum(-1)

        mean, se = mc_fisher(logp, torch.cat([z[i].real, z[i].imag]), n)
        assert_within_se(G[i], mean, se)


def test_monte_carlo_check_can_fail(gen):
    """The MC comparison detects a metric off by 10% (so the tests above have power)."""
    n, D = 2, 3
    dec = make_decoder(n, D, variance="point", seed=3)
    z = 0.7 * random_points(n, (1,), generator=gen)
    G = kg.FisherManifold(dec).metric(z)[0]
    with torch.no_grad():
        mu, var = dec(z[0])
    x = mu + var.sqrt() * torch.randn(N_MC, D, dtype=C128, generator=gen)

    def logp(u):
        m, v = dec(torch.complex(u[:n], u[n:]))
        d = x - m
        return (-(d.real**2 + d.imag**2) / v - torch.log(v)).sum(-1)

    mean, se = mc_fisher(logp, torch.cat([z[0].real, z[0].imag]), n)
    assert_within_se(G, mean, se)
    with pytest.raises(AssertionError):
        assert_within_se(1.1 * G, mean, se)


# -- 3. KL potential: ∂∂̄ KL at z0 is the Fisher metric ----------------------------------


def _likelihood_cases():
    return {
        "complex-gaussian": (make_decoder(3, 5, variance="point", seed=11), ComplexGaussian()),
        "real-gaussian": (Complexified(make_real_decoder(6, 5, seed=12)), RealGaussian()),
        "bernoulli": (
            Complexified(make_real_decoder(6, 5, kind="bernoulli", seed=13), "split"),
            Bernoulli(),
        ),
    }


@pytest.mark.parametrize("case", ["complex-gaussian", "real-gaussian", "bernoulli"])
def test_kl_potential_levi_at_base_point_is_fisher(case, gen):
    dec, lik = _likelihood_cases()[case]
    Z0 = 0.8 * random_points(3, (3,), generator=gen)
    G = kg.FisherManifold(dec, lik).metric(Z0)
    for i in range(Z0.shape[0]):
        K = KLPotential(dec, Z0[i], likelihood=lik)
        assert abs(K(Z0[i]).item()) < 1e-12  # KL(p ‖ p) = 0
        assert rel_err(kg.ddbar(K, Z0[i]), G[i]) <= 1e-10
    # batched base points: levi pairs z[i] with z0[i]
    Kb = KLPotential(dec, Z0, likelihood=lik)
    assert rel_err(Kb.levi(Z0), G) <= 1e-10
    # away from the base point the KL potential's Levi matrix is a different matrix
    K0 = KLPotential(dec, Z0[0], likelihood=lik)
    assert rel_err(kg.ddbar(K0, Z0[1]), G[1]) > 1e-4


def test_kl_potential_batched_wrong_shape_raises(gen):
    dec = make_decoder(2, 3)
    Z0 = random_points(2, (3,), generator=gen)
    with pytest.raises(ValueError, match="batch shape of the base points"):
        KLPotential(dec, Z0).levi(Z0[:2])


# -- 4. sympy: a polynomial decoder in z and z̄ ---------------------------------------------


def sympy_fisher_metric():
    """G for μ = (z1² + z̄2, (1+2i) z1 z2, 3 z̄1 + z2 z̄2), σ² = (1 + z1 z̄1, 2, ½ + ½ z2 z̄2).

    z and z̄ are independent real-declared symbols, so `sp.conjugate` conjugates coefficients
    only; swapping z ↔ z̄ then gives the conjugate polynomial.
    """
    z1, z2, w1, w2 = sp.symbols("z1 z2 w1 w2", real=True)  # w = z̄ (formal)
    zs, ws = [z1, z2], [w1, w2]
    swap = {z1: w1, z2: w2, w1: z1, w2: z2}

    def conj(e):
        return sp.conjugate(e).xreplace(swap)

    mu = [z1**2 + w2, (1 + 2 * sp.I) * z1 * z2, 3 * w1 + z2 * w2]
    s2 = [1 + z1 * w1, sp.Integer(2), sp.Rational(1, 2) + z2 * w2 / 2]
    G = sp.zeros(2, 2)
    for a in range(2):
        for b in range(2):
            G[a, b] = sum(
                (
                    conj(sp.diff(m, zs[b])) * sp.diff(m, zs[a])
                    + conj(sp.diff(m, ws[a])) * sp.diff(m, ws[b])
                )
                / s
                + sp.diff(s, zs[a]) * sp.diff(s, ws[b]) / s**2
                for m, s in zip(mu, s2, strict=True)
            )
    return sp.lambdify((z1, z2, w1, w2), G, "numpy")


def torch_polynomial_decoder(z):
    z1, z2 = z[..., 0], z[..., 1]
    mean = torch.stack([z1**2 + z2.conj(), (1 + 2j) * z1 * z2, 3 * z1.conj() + z2 * z2.conj()], -1)
    a1, a2 = z1.real**2 + z1.imag**2, z2.real**2 + z2.imag**2
    var = torch.stack([1 + a1, 2 + 0 * a1, 0.5 + 0.5 * a2], -1)
    return mean, var


def test_metric_matches_sympy_polynomial_decoder(gen):
    Gsym = sympy_fisher_metric()
    z = random_points(2, (6,), generator=gen)
    G = kg.FisherManifold(torch_polynomial_decoder).metric(z).numpy()
    zn = z.numpy()
    for i in range(zn.shape[0]):
        z1, z2 = zn[i]
        ref = np.asarray(Gsym(z1, z2, np.conj(z1), np.conj(z2)), dtype=complex)
        np.testing.assert_allclose(G[i], ref, rtol=1e-11, atol=1e-11 * np.abs(ref).max())


# -- 5. holomorphic decoders: Kähler with potential μ^H Σ⁻¹ μ -------------------------------


class PullbackPotential(KahlerPotential):
    """K(z) = μ(z)^H Σ⁻¹ μ(z) = Σ_d |μ_d(z)|² / σ_d² for a constant variance."""

    def __init__(self, n, mean_fn, var):
        super().__init__(n)
        self.mean_fn = mean_fn
        self.var = var

    def __call__(self, z):
        m = self.mean_fn(z)
        return ((m.real**2 + m.imag**2) / self.var).sum(-1)


def holomorphic_decoder(n, D, seed=0, anti=False):
    g = torch.Generator().manual_seed(seed)
    A = 0.8 * torch.randn(4, n, dtype=C128, generator=g)
    B = 0.6 * torch.randn(D, 4, dtype=C128, generator=g)
    C = 0.5 * torch.randn(D, n, dtype=C128, generator=g)
    var = torch.exp(0.4 * torch.randn(D, dtype=F64, generator=g))

    def mean_fn(z):
        # conj written as complex(x, −y): ddbar of a potential that calls z.conj() fails in
        # torch.func (no batching rule for aten::_neg_view under vmap of reverse mode).
        w = torch.complex(z.real, -z.imag) if anti else z
        return torch.tanh(w @ A.T) @ B.T + (w @ C.T) ** 2

    return (lambda z: (mean_fn(z), var)), mean_fn, var


@pytest.mark.parametrize("anti", [False, True])
@pytest.mark.parametrize("n", [1, 2, 3])
def test_holomorphic_decoder_is_kahler_with_pullback_potential(n, anti, gen):
    dec, mean_fn, var = holomorphic_decoder(n, 4, seed=n, anti=anti)
    z = random_points(n, (4,), generator=gen)
    M = kg.FisherManifold(dec)
    G = M.metric(z)
    K = PullbackPotential(n, mean_fn, var)
    assert rel_err(G, kg.ddbar(K, z)) <= 1e-10
    assert rel_err(G, kg.KahlerManifold(K).metric(z)) <= 1e-10
    assert float(M.closedness_residual(z).max()) < 1e-10
    hol = M.holomorphy_residual(z)
    # an antiholomorphic mean gives a Kähler metric too (potential |μ|² = |conj μ|²)
    assert_close(hol, torch.full_like(hol, 1.0 if anti else 0.0), atol=1e-12, rtol=0)


def test_non_holomorphic_decoder_is_not_kahler(gen):
    n = 2
    dec = make_decoder(n, 4, variance="output", holomorphic=False, seed=21)
    z = random_points(n, (4,), generator=gen)
    M = kg.FisherManifold(dec)
    res = M.closedness_residual(z)
    assert float(res.max()) > 1e-2 and float(res.min()) > 1e-8  # Kähler ones are ~1e-15
    hol = M.holomorphy_residual(z)
    assert bool(((hol > 1e-3) & (hol < 0.99)).all())
    # the holomorphic part alone is Kähler
    Mh = kg.FisherManifold(make_decoder(n, 4, variance="output", holomorphic=True, seed=21))
    assert float(Mh.closedness_residual(z).max()) < 1e-10
    assert float(Mh.holomorphy_residual(z).max()) < 1e-12


def test_holomorphic_mean_with_point_dependent_variance_is_not_kahler(gen):
    n = 2
    dec = make_decoder(n, 4, variance="point", holomorphic=True, seed=22)
    z = random_points(n, (3,), generator=gen)
    M = kg.FisherManifold(dec)
    assert float(M.holomorphy_residual(z).max()) < 1e-12
    assert float(M.closedness_residual(z).min()) > 1e-3


def test_holomorphy_residual_rejects_real_mean(gen):
    M = kg.FisherManifold(Complexified(make_real_decoder(4, 3)), RealGaussian())
    with pytest.raises(ValueError, match="complex mean"):
        M.holomorphy_residual(random_points(2, (2,), generator=gen))


# -- 6. properties ----------------------------------------------------------------------------


@given(
    seed=st.integers(0, 10_000),
    n=st.integers(1, 3),
    D=st.integers(1, 5),
    variance=st.sampled_from(["scalar", "output", "point"]),
    holomorphic=st.booleans(),
)
def test_metric_hermitian_psd_and_batch_consistent(seed, n, D, variance, holomorphic):
    g = torch.Generator().manual_seed(seed)
    dec = make_decoder(n, D, variance=variance, holomorphic=holomorphic, seed=seed)
    z = random_points(n, (2, 2), generator=g)
    M = kg.FisherManifold(dec)
    G = M.metric(z)
    assert G.shape == (2, 2, n, n)
    scale = G.abs().amax().item()
    assert_close(G, G.mH, atol=1e-13 * max(scale, 1.0), rtol=0)
    lam = torch.linalg.eigvalsh(G)
    assert float(lam.min()) >= -1e-12 * max(scale, 1.0)
    assert bool(M.is_psh(z).all())
    # batch = per point (and an unbatched point gives an (n, n) matrix)
    for i in range(2):
        for j in range(2):
            assert_close(M.metric(z[i, j]), G[i, j], atol=1e-13 * max(scale, 1.0), rtol=1e-12)


@pytest.mark.parametrize("chunk_size", [1, 2, 5])
def test_chunk_size_invariance(chunk_size, gen):
    dec = make_decoder(2, 4, variance="point", seed=31)
    z = random_points(2, (3, 2), generator=gen)
    G = kg.FisherManifold(dec).metric(z)
    Gc = kg.FisherManifold(dec, chunk_size=chunk_size).metric(z)
    assert_close(Gc, G, rtol=1e-13, atol=1e-13)
    lik = RealGaussian()
    rdec = Complexified(make_real_decoder(4, 3, seed=32))
    assert_close(
        kg.FisherManifold(rdec, lik, chunk_size=chunk_size).metric(z),
        kg.FisherManifold(rdec, lik).metric(z),
        rtol=1e-13,
        atol=1e-13,
    )


@pytest.mark.parametrize("variance", ["scalar", "output", "point"])
def test_automatic_cpu_blocks_match_one_block(variance, gen, monkeypatch):
    """With no chunk_size the CPU path splits the points into cache-sized blocks: the metric
    equals one call over all points (chunk_size = N) and the block size follows the decoder's
    output size (bytes of 2n tangents of all its batched outputs per point)."""
    from kahlergeom.manifolds import _fisher

    n, D, N = 2, 7, 37
    dec = make_decoder(n, D, variance=variance, seed=33)
    z = random_points(n, (N,), generator=gen)
    ref = kg.FisherManifold(dec, chunk_size=N).metric(z)
    M = kg.FisherManifold(dec)
    # complex128 mean (16 B) per output, plus a float64 variance per output when per point
    per_point = D * 16 + (D * 8 if variance == "point" else 0)
    monkeypatch.setattr(_fisher, "MIN_BLOCK_POINTS", 1)
    monkeypatch.setattr(_fisher, "CPU_BLOCK_BYTES", 5 * 2 * n * per_point)
    u = torch.cat([z.real, z.imag], -1)
    assert M._block_points(u, 2 * n) == 5
    assert_close(M.metric(z), ref, rtol=1e-13, atol=1e-13)
    # h(v, v) by two tangents per point: blocks sized for 2 tangents, same values as the metric
    assert M._block_points(u, 2) == 10
    v = random_points(n, (N,), generator=gen)
    h = torch.einsum("...a,...ab,...b->...", v, ref, v.conj()).real
    assert_close(M.squared_norm(z, v), h, rtol=1e-12, atol=1e-13)
    monkeypatch.setattr(_fisher, "MIN_BLOCK_POINTS", 8)
    assert M._block_points(u, 2 * n) == 8  # the floor
    assert_close(M.metric(z), ref, rtol=1e-13, atol=1e-13)


@pytest.mark.parametrize("variance", ["scalar", "point"])
def test_complex64_agrees_with_complex128(variance, gen):
    n, D = 2, 5
    dec64 = make_decoder(n, D, variance=variance, seed=41, dtype=torch.complex64)
    dec128 = make_decoder(n, D, variance=variance, seed=41, dtype=C128)
    z = random_points(n, (4,), generator=gen)
    G64 = kg.FisherManifold(dec64).metric(z.to(torch.complex64))
    G128 = kg.FisherManifold(dec128).metric(z)
    assert G64.dtype == torch.complex64
    scale = G128.abs().amax().item()
    tol = TOL[torch.complex64]
    assert_close(G64.to(C128), G128, rtol=tol["rtol"], atol=tol["atol"] * max(scale, 1.0))


def complexified_reference(real_dec, z, pairing, kind):
    """Fisher metric of a real decoder's pullback, computed in the real latent r.

    F_r from reverse-mode Jacobians of (mean, variance) or logits in r; then
    G[a, b] = d_aᵀ F_r conj(d_b) with d_a = ½(e_{x_a} − i e_{y_a}) placed by the pairing.
    """
    n = z.shape[-1]
    if pairing == "split":
        r = torch.cat([z.real, z.imag])
        ix, iy = list(range(n)), list(range(n, 2 * n))
    else:
        r = torch.view_as_real(z).flatten()
        ix, iy = list(range(0, 2 * n, 2)), list(range(1, 2 * n, 2))
    if kind == "bernoulli":
        J = torch.autograd.functional.jacobian(real_dec, r)  # (D, 2n)
        p = torch.sigmoid(real_dec(r)).detach()
        F = J.T @ torch.diag(p * (1 - p)) @ J
    else:
        Jm = torch.autograd.functional.jacobian(lambda t: real_dec(t)[0], r)
        Jv = torch.autograd.functional.jacobian(lambda t: real_dec(t)[1], r)
        v = real_dec(r)[1].detach()
        F = Jm.T @ torch.diag(1 / v) @ Jm + 0.5 * Jv.T @ torch.diag(v**-2) @ Jv
    d = torch.zeros(n, 2 * n, dtype=C128)
    for a in range(n):
        d[a, ix[a]] = 0.5
        d[a, iy[a]] = -0.5j
    return d @ F.to(C128) @ d.conj().T


@pytest.mark.parametrize("kind", ["gaussian", "bernoulli"])
@pytest.mark.parametrize("pairing", ["interleaved", "split"])
def test_complexified_matches_real_coordinate_fisher(pairing, kind, gen):
    n, D = 3, 5
    real_dec = make_real_decoder(2 * n, D, kind=kind, seed=51)
    lik = Bernoulli() if kind == "bernoulli" else RealGaussian()
    z = random_points(n, (3,), generator=gen)
    G = kg.FisherManifold(Complexified(real_dec, pairing), lik).metric(z)
    ref = torch.stack([complexified_reference(real_dec, zi, pairing, kind) for zi in z])
    assert rel_err(G, ref) <= 1e-10
    # the two pairings are different charts: their metrics differ
    other = "split" if pairing == "interleaved" else "interleaved"
    G_other = kg.FisherManifold(Complexified(real_dec, other), lik).metric(z)
    assert rel_err(G_other, ref) > 1e-3


def test_large_output_dimension(gen):
    """D = 10⁵ outputs: holomorphic tanh decoder against its analytic Jacobian."""
    n, D = 2, 100_000
    W = 0.5 * torch.randn(D, n, dtype=C128, generator=gen)
    var = torch.exp(0.3 * torch.randn(D, dtype=F64, generator=gen))

    def dec(z):
        return torch.tanh(z @ W.T), var

    z = 0.5 * random_points(n, (3,), generator=gen)
    G = kg.FisherManifold(dec, chunk_size=1).metric(z)
    s = 1 - torch.tanh(z @ W.T) ** 2  # (3, D): ∂_a μ_d = s_d W_da, ∂̄μ = 0
    dmu = s[..., None] * W  # (3, D, n)
    ref = torch.einsum("kdb,d,kda->kab", dmu.conj(), 1 / var.to(C128), dmu)
    assert rel_err(G, ref) <= 1e-10


def test_fisher_manifold_latent_dim_and_repr(gen):
    class Dec(torch.nn.Module):
        latent_dim = 2

        def forward(self, z):
            return z**2, torch.ones(z.shape[:-1] + (2,), dtype=F64)

    M = kg.FisherManifold(Dec())
    assert M.n == 2
    assert "FisherManifold(n=2" in repr(M)
    with pytest.raises(ValueError, match="last dimension n = 2"):
        M.metric(random_points(3, (2,), generator=gen))
    # n inferred from the first points seen when the decoder does not say
    M2 = kg.FisherManifold(lambda z: (z**2, 1.0))
    assert M2.metric(random_points(3, (2,), generator=gen)).shape == (2, 3, 3)
    assert M2.n == 3
