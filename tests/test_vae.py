"""The complex VAE: posterior, KL, reparameterisation, activations, decoder geometry, errors.

Oracles: complex Gaussian densities and the real-Gaussian KL written in this file, Monte Carlo
with standard errors, activation definitions evaluated at hand-picked points, central finite
differences of the decoder for its Fisher metric, and ``ddbar`` of the potential μᴴΣ⁻¹μ.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from conftest import assert_close
from hypothesis import given
from hypothesis import strategies as st

import kahlergeom
from kahlergeom.vae import (
    ACTIVATIONS,
    Cardioid,
    ComplexDecoder,
    ComplexTanh,
    ComplexVAE,
    CReLU,
    ModReLU,
    Posterior,
    ZReLU,
    complex_normal,
)

C128 = torch.complex128
F64 = torch.float64


# -- oracles written here ------------------------------------------------------------------
def cn_log_density(z, m, cov):
    """log CN(z; m, Γ) = −n log π − log det Γ − (z−m)ᴴ Γ⁻¹ (z−m), numpy, z (N, n)."""
    n = m.shape[-1]
    d = z - m
    sol = np.linalg.solve(cov, d.T).T  # Γ⁻¹ (z−m)
    quad = np.einsum("ni,ni->n", d.conj(), sol).real
    _, logdet = np.linalg.slogdet(cov)
    return -n * math.log(math.pi) - logdet - quad


def real_gaussian_kl_to_half_identity(m, cov):
    """KL(CN(m, Γ) ‖ CN(0, I)) via the real 2n-dim Gaussians (u = (Re z, Im z)).

    CN(m, Γ) is N((Re m, Im m), ½[[Re Γ, −Im Γ], [Im Γ, Re Γ]]) and CN(0, I) is N(0, ½ I).
    """
    n = m.shape[-1]
    mu = np.concatenate([m.real, m.imag])
    S1 = 0.5 * np.block([[cov.real, -cov.imag], [cov.imag, cov.real]])
    S2 = 0.5 * np.eye(2 * n)
    S2inv = np.linalg.inv(S2)
    return 0.5 * (
        np.trace(S2inv @ S1)
        + mu @ S2inv @ mu
        - 2 * n
        + np.linalg.slogdet(S2)[1]
        - np.linalg.slogdet(S1)[1]
    )


def random_posterior(n, full, seed, batch=()):
    g = torch.Generator().manual_seed(seed)
    m = torch.randn(*batch, n, dtype=C128, generator=g)
    diag = torch.exp(0.5 * torch.randn(*batch, n, dtype=F64, generator=g))
    L = torch.diag_embed(diag).to(C128)
    if full:
        off = 0.5 * torch.randn(*batch, n, n, dtype=C128, generator=g)
        L = L + torch.tril(off, diagonal=-1)
    return Posterior(m, L)


def mc_mean_check(samples, target, k=5.0):
    """|mean(samples) − target| < k standard errors, entrywise (samples (N, ...))."""
    mean = samples.mean(0)
    se = samples.std(0) / math.sqrt(samples.shape[0])
    err = (mean - target).abs()
    assert bool((err < k * se + 1e-12).all()), (err, se)


# -- Posterior and KL ------------------------------------------------------------------------
@pytest.mark.parametrize("full", [False, True])
def test_kl_matches_closed_forms(full):
    q = random_posterior(3, full, seed=1, batch=(4,))
    kl = q.kl_to_standard()
    assert kl.shape == (4,) and kl.dtype == F64
    cov = (q.scale_tril @ q.scale_tril.mH).numpy()
    m = q.mean.numpy()
    for i in range(4):
        # Closed form with a determinant computed independently of L's diagonal.
        direct = (
            np.trace(cov[i]).real
            + np.vdot(m[i], m[i]).real
            - 3
            - np.log(np.linalg.det(cov[i]).real)
        )
        real_kl = real_gaussian_kl_to_half_identity(m[i], cov[i])
        assert kl[i].item() == pytest.approx(direct, rel=1e-10, abs=1e-10)
        assert kl[i].item() == pytest.approx(real_kl, rel=1e-10, abs=1e-10)
        if not full:
            d2 = np.diag(cov[i]).real
            diag_form = np.sum(d2 + np.abs(m[i]) ** 2 - 1 - np.log(d2))
            assert kl[i].item() == pytest.approx(diag_form, rel=1e-10)


@given(n=st.integers(1, 4), full=st.booleans(), seed=st.integers(0, 2**16))
def test_kl_property_real_gaussian_oracle(n, full, seed):
    q = random_posterior(n, full, seed)
    cov = (q.scale_tril @ q.scale_tril.mH).numpy()
    oracle = real_gaussian_kl_to_half_identity(q.mean.numpy(), cov)
    assert q.kl_to_standard().item() == pytest.approx(oracle, rel=1e-9, abs=1e-9)
    assert q.kl_to_standard().item() >= 0


def test_kl_zero_at_prior_and_positive_elsewhere():
    n = 3
    q0 = Posterior(torch.zeros(n, dtype=C128), torch.eye(n, dtype=C128))
    assert abs(q0.kl_to_standard().item()) < 1e-14
    q = random_posterior(n, True, seed=5, batch=(10,))
    assert bool((q.kl_to_standard() > 0).all())


@pytest.mark.parametrize("full", [False, True])
def test_kl_matches_monte_carlo(full):
    n, N = 2, 200_000
    q = random_posterior(n, full, seed=2)
    m, L = q.mean.numpy(), q.scale_tril.numpy()
    cov = L @ L.conj().T
    rng = np.random.default_rng(0)
    eps = (rng.standard_normal((N, n)) + 1j * rng.standard_normal((N, n))) / math.sqrt(2)
    z = m + eps @ L.T
    log_ratio = cn_log_density(z, m, cov) - cn_log_density(z, np.zeros(n), np.eye(n))
    est, se = log_ratio.mean(), log_ratio.std() / math.sqrt(N)
    assert abs(q.kl_to_standard().item() - est) < 5 * se


def test_covariance_precision_logdet():
    q = random_posterior(3, True, seed=3, batch=(2,))
    cov = q.covariance
    assert_close(cov, cov.mH)
    assert_close(q.precision @ cov, torch.eye(3, dtype=C128).expand(2, 3, 3))
    assert_close(q.log_det_covariance(), torch.linalg.slogdet(cov)[1])


# -- reparameterisation ---------------------------------------------------------------------
def test_rsample_moments_mean_covariance_relation():
    n, N = 2, 100_000
    q = random_posterior(n, True, seed=4)
    g = torch.Generator().manual_seed(0)
    # rsample draws one sample per batch entry: expand the posterior to N entries.
    qN = Posterior(q.mean.expand(N, n), q.scale_tril.expand(N, n, n))
    z = qN.rsample(g)
    assert z.shape == (N, n) and z.dtype == C128
    d = z - q.mean
    cov = q.covariance
    mc_mean_check(z.real, q.mean.real)
    mc_mean_check(z.imag, q.mean.imag)
    outer = d[:, :, None] * d[:, None, :].conj()  # (z−m)(z−m)ᴴ
    relation = d[:, :, None] * d[:, None, :]  # (z−m)(z−m)ᵀ
    for part in (torch.real, torch.imag):
        mc_mean_check(part(outer), part(cov))
        mc_mean_check(part(relation), torch.zeros(n, n, dtype=F64))


def test_rsample_is_m_plus_L_eps_with_seeded_noise():
    q = random_posterior(3, True, seed=6, batch=(5,))
    z = q.rsample(torch.Generator().manual_seed(11))
    eps = complex_normal((5, 3), C128, generator=torch.Generator().manual_seed(11))
    assert_close(z, q.mean + torch.einsum("bij,bj->bi", q.scale_tril, eps))
    z2 = q.rsample(torch.Generator().manual_seed(11))
    assert torch.equal(z, z2)


@pytest.mark.parametrize("dtype", [torch.complex64, C128])
def test_complex_normal_is_standard_circular(dtype):
    N = 200_000
    eps = complex_normal((N,), dtype, generator=torch.Generator().manual_seed(0)).to(C128)
    assert eps.shape == (N,)
    mc_mean_check((eps.real**2 + eps.imag**2)[:, None], torch.ones(1, dtype=F64))
    sq = eps * eps  # E[ε²] = 0: circular
    mc_mean_check(torch.stack([sq.real, sq.imag], -1), torch.zeros(2, dtype=F64))
    mc_mean_check(eps.real[:, None] ** 2, torch.full((1,), 0.5, dtype=F64))
    assert complex_normal((2, 3), dtype).dtype == dtype


# -- ELBO --------------------------------------------------------------------------------
def small_vae(**kw):
    torch.manual_seed(0)
    kw.setdefault("dtype", C128)
    return ComplexVAE(6, 2, (8,), **kw)


def test_reconstruction_term_is_complex_gaussian_log_density():
    model = small_vae(decoder_variance="point", covariance="full")
    x = complex_normal((5, 6), C128, generator=torch.Generator().manual_seed(1))
    rec, kl, q, z = model.elbo_terms(x, torch.Generator().manual_seed(2))
    mu, var = model.decode(z)
    var = var.expand_as(mu)
    hand = -(torch.abs(x - mu) ** 2 / var).sum(-1) - torch.log(var).sum(-1) - 6 * math.log(math.pi)
    assert_close(rec, hand)
    # The CN log-density of the numpy oracle agrees too (diagonal covariance).
    for i in range(5):
        ref = cn_log_density(
            x[i : i + 1].detach().numpy(),
            mu[i].detach().numpy(),
            np.diag(var[i].detach().numpy()).astype(complex),
        )
        assert rec[i].item() == pytest.approx(ref[0], rel=1e-10)
    assert_close(kl, q.kl_to_standard())
    elbo = model.elbo(x, torch.Generator().manual_seed(2))
    assert_close(elbo, rec - kl)


# -- activations ---------------------------------------------------------------------------
def test_crelu_and_zrelu_values():
    z = torch.tensor([1 + 2j, -1 + 2j, 1 - 2j, -1 - 2j, 3 + 0j, 0 + 3j], dtype=C128)
    assert torch.equal(CReLU()(z), torch.tensor([1 + 2j, 2j, 1, 0, 3, 3j], dtype=C128))
    # zReLU keeps z only strictly inside the first quadrant.
    assert torch.equal(ZReLU()(z), torch.tensor([1 + 2j, 0, 0, 0, 0, 0], dtype=C128))


def test_modrelu_values():
    act = ModReLU(3, dtype=F64)
    with torch.no_grad():
        act.bias.copy_(torch.tensor([-1.0, -6.0, 2.0], dtype=F64))
    z = torch.tensor([3 + 4j, 3 + 4j, -3 + 4j], dtype=C128)  # |z| = 5
    expected = torch.tensor([4 * (3 + 4j) / 5, 0, 7 * (-3 + 4j) / 5], dtype=C128)
    assert_close(act(z), expected, rtol=1e-12, atol=1e-12)


def test_cardioid_values():
    r = 2.0
    angles = torch.tensor([0.0, math.pi / 2, math.pi, math.pi / 3], dtype=F64)
    z = torch.polar(torch.full_like(angles, r), angles)
    expected = 0.5 * (1 + torch.cos(angles)) * z
    assert_close(Cardioid()(z), expected, rtol=1e-12, atol=1e-12)
    assert_close(Cardioid()(z)[0], z[0], rtol=1e-12, atol=1e-12)  # real positive axis: z
    assert abs(Cardioid()(z)[2]) < 1e-12  # negative real axis: 0


def test_complex_tanh_is_holomorphic_tanh():
    z = torch.tensor([0.3 + 0.2j, -1 + 0.5j], dtype=C128)
    w = np.tanh(z.numpy())
    assert_close(ComplexTanh()(z), torch.from_numpy(w))


@pytest.mark.parametrize("bias", [-0.1, 0.5])
@pytest.mark.parametrize("name", ["modrelu", "cardioid"])
def test_activation_gradients_finite_at_zero(name, bias):
    act = ModReLU(2, dtype=F64) if name == "modrelu" else Cardioid()
    if name == "modrelu":
        with torch.no_grad():
            act.bias.fill_(bias)
    u = torch.zeros(2, 2, dtype=F64, requires_grad=True)
    out = act(torch.view_as_complex(u))
    assert bool(torch.isfinite(torch.view_as_real(out)).all())
    (torch.view_as_real(out) * torch.tensor([1.0, 2.0], dtype=F64)).sum().backward()
    assert bool(torch.isfinite(u.grad).all())
    if name == "cardioid":
        # d/dx of ½(1 + x/|z|) z at 0 along the real axis is ½ (the x/|z| part is multiplied
        # by z = 0): real output part gets ½, imaginary part 0, per feature.
        assert_close(u.grad[:, 0], torch.full((2,), 0.5, dtype=F64), atol=1e-6, rtol=0)


def test_activation_registry_and_error():
    assert set(ACTIVATIONS) == {"modrelu", "crelu", "cardioid", "zrelu", "tanh"}
    with pytest.raises(ValueError, match="activation must be one of"):
        ComplexVAE(4, 2, (8,), encoder_activation="relu", dtype=C128)
    with pytest.raises(ValueError, match="activation must be one of"):
        ComplexVAE(4, 2, (8,), decoder_activation="gelu", dtype=C128)


# -- decoder geometry ----------------------------------------------------------------------
def fd_fisher(decoder, z, h=1e-5):
    """Fisher metric (docs/conventions.md § Fisher metric of a decoder) from central finite
    differences of (μ, σ²)."""
    n = z.shape[-1]
    mu0, var0 = decoder(z)
    var0 = var0.expand_as(mu0).real
    dmu, dvar = [], []
    for step in (1.0, 1j):
        for a in range(n):
            e = torch.zeros(n, dtype=C128)
            e[a] = h * step
            mp, vp = decoder(z + e)
            mm, vm = decoder(z - e)
            dmu.append((mp - mm) / (2 * h))
            dvar.append((vp.expand_as(mp) - vm.expand_as(mm)) / (2 * h))
    dx, dy = torch.stack(dmu[:n]), torch.stack(dmu[n:])  # (n, D)
    vx, vy = torch.stack(dvar[:n]), torch.stack(dvar[n:])
    d = 0.5 * (dx - 1j * dy)  # ∂_a μ
    db = 0.5 * (dx + 1j * dy)  # ∂̄_a μ
    dv = 0.5 * (vx - 1j * vy)  # ∂_a σ²
    dbv = 0.5 * (vx + 1j * vy)  # ∂̄_a σ²
    w = 1 / var0
    G = torch.zeros(n, n, dtype=C128)
    for a in range(n):
        for b in range(n):
            G[a, b] = (
                (d[b].conj() * w * d[a]).sum()
                + (db[a].conj() * w * db[b]).sum()
                + (w * dv[a] * w * dbv[b]).sum()
            )
    return G


@pytest.mark.parametrize("variance", ["learned", "point", 0.3])
@pytest.mark.parametrize("activation", ["crelu", "tanh", "modrelu", "cardioid"])
def test_decoder_outputs_and_fisher_metric(variance, activation):
    torch.manual_seed(1)
    dec = ComplexDecoder(2, 5, (6,), activation, variance, C128, 1e-3).eval()
    z = complex_normal((3, 2), C128, generator=torch.Generator().manual_seed(3))
    mean, var = dec(z)
    assert mean.shape == (3, 5) and mean.dtype == C128
    assert not var.is_complex() and bool((var > 0).all())
    assert torch.broadcast_shapes(var.shape, mean.shape) == (3, 5)
    if variance == "point":
        assert var.shape == (3, 5)
    M = kahlergeom.FisherManifold(dec)
    G = M.metric(z)
    assert G.shape == (3, 2, 2)
    assert_close(G, G.mH)
    assert bool((torch.linalg.eigvalsh(G) >= -1e-12).all())
    with torch.no_grad():
        for i in range(3):
            assert_close(G[i], fd_fisher(dec, z[i]), rtol=1e-6, atol=1e-7)


def test_holomorphic_decoder_has_kahler_fisher_metric():
    model = small_vae(decoder_activation="tanh", decoder_variance=0.5).eval()
    z = complex_normal((4, 2), C128, generator=torch.Generator().manual_seed(0))
    M = kahlergeom.FisherManifold(model.decoder)
    assert float(M.holomorphy_residual(z).detach().max()) < 1e-12
    assert float(M.closedness_residual(z).detach().max()) < 1e-8

    # Oracle: with a holomorphic mean and Σ = ½ I, G = ∂∂̄ (μᴴ Σ⁻¹ μ).
    def potential(z1):
        mu = model.decoder(z1)[0]
        return (mu.real**2 + mu.imag**2).sum(-1) / 0.5

    assert_close(M.metric(z), kahlergeom.ddbar(potential, z), rtol=1e-8, atol=1e-10)


def test_non_holomorphic_decoder_is_detected():
    model = small_vae(decoder_activation="crelu", decoder_variance=0.5).eval()
    z = complex_normal((4, 2), C128, generator=torch.Generator().manual_seed(0))
    res = kahlergeom.FisherManifold(model.decoder).holomorphy_residual(z)
    assert float(res.detach().min()) > 0.05


# -- config round trip ---------------------------------------------------------------------
@pytest.mark.parametrize(
    "kw",
    [
        dict(),
        dict(covariance="full", decoder_variance="point", encoder_activation="modrelu"),
        dict(decoder_variance=0.25, decoder_activation="cardioid", min_variance=1e-2),
        dict(dtype=torch.complex64, decoder_activation="zrelu"),
    ],
)
def test_from_config_round_trip(kw):
    model = small_vae(**kw).eval()
    cfg = json.loads(json.dumps(model.config))  # plain types only
    clone = ComplexVAE.from_config(cfg)
    assert clone.config == model.config
    clone.load_state_dict(model.state_dict())
    clone.eval()
    x = complex_normal((3, 6), model.dtype, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        q1, q2 = model.encode(x), clone.encode(x)
        assert torch.equal(q1.mean, q2.mean) and torch.equal(q1.scale_tril, q2.scale_tril)
        z = q1.mean
        for a, b in zip(model.decode(z), clone.decode(z), strict=True):
            assert torch.equal(a, b)


def test_full_covariance_encoder_is_lower_triangular_with_positive_diagonal():
    model = small_vae(covariance="full")
    x = complex_normal((4, 6), C128, generator=torch.Generator().manual_seed(0))
    q = model.encode(x)
    L = q.scale_tril
    assert torch.equal(L, torch.tril(L))
    diag = torch.diagonal(L, dim1=-2, dim2=-1)
    assert bool((diag.real > 0).all()) and bool((diag.imag == 0).all())
    assert bool((torch.tril(L, -1) != 0).any())


def test_sample_prior():
    model = small_vae()
    z = model.sample_prior(7, torch.Generator().manual_seed(0))
    assert z.shape == (7, 2) and z.dtype == C128


# -- errors ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "args, kw, match",
    [
        ((0, 2), {}, "data_dim must be an integer >= 1"),
        ((4.0, 2), {}, "data_dim must be an integer >= 1"),
        ((4, True), {}, "latent_dim must be an integer >= 1"),
        ((4, -1), {}, "latent_dim must be an integer >= 1"),
        ((4, 2), dict(dtype=torch.float64), "dtype must be torch.complex64 or"),
        ((4, 2), dict(covariance="banded"), "covariance must be 'diagonal' or 'full'"),
        ((4, 2), dict(decoder_variance="fixed"), "variance must be 'learned', 'point'"),
        ((4, 2), dict(decoder_variance=-1.0), "variance must be .* a finite number > 0"),
        ((4, 2), dict(decoder_variance=float("nan")), "variance must be .* a finite number > 0"),
        ((4, 2), dict(hidden=(0,)), "hidden must hold integer layer widths >= 1"),
        ((4, 2), dict(hidden=(8, -3)), "hidden must hold integer layer widths >= 1"),
        ((4, 2), dict(hidden=(2.5,)), "hidden must hold integer layer widths >= 1"),
        ((4, 2), dict(hidden=8), "hidden must be a sequence of layer widths"),
        ((4, 2), dict(encoder_activation="relu"), "encoder_activation must be one of"),
        ((4, 2), dict(min_variance=-1e-3), "min_variance must be a finite number >= 0"),
        ((4, 2), dict(decoder_activation="relu"), "activation must be one of"),
    ],
)
def test_constructor_errors(args, kw, match):
    kw = {"hidden": (8,), **kw}
    with pytest.raises(ValueError, match=match):
        ComplexVAE(*args, **kw)


@pytest.mark.parametrize(
    "x, match",
    [
        (torch.zeros(3, 6, dtype=F64), r"x must be a torch.complex128 tensor .* got torch.float64"),
        (torch.zeros(3, 6, dtype=torch.complex64), "x must be a torch.complex128"),
        (np.zeros((3, 6), dtype=complex), "x must be a torch.complex128 .* got complex128"),
        (torch.zeros(3, 5, dtype=C128), r"x must have shape \(batch, 6\); got \(3, 5\)"),
        (torch.zeros(6, dtype=C128), r"x must have shape \(batch, 6\); got \(6,\)"),
        (torch.zeros(2, 3, 6, dtype=C128), r"x must have shape \(batch, 6\)"),
        (torch.full((3, 6), complex("nan+0j"), dtype=C128), "x contains NaN or inf"),
        (torch.full((3, 6), complex(0, float("inf")), dtype=C128), "x contains NaN or inf"),
    ],
)
def test_check_data_errors(x, match):
    model = small_vae()
    with pytest.raises(ValueError, match=match):
        model.check_data(x)
    good = torch.zeros(3, 6, dtype=C128)
    assert model.check_data(good) is good
