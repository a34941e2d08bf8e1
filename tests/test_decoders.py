"""Decoder likelihoods, the `Complexified` adapter, and the errors bad decoders give.

Oracles: ``torch.distributions`` (log-densities and KL divergences of Normal and Bernoulli;
the circular complex Gaussian as two independent real normals of variance σ²/2); the real
Fisher matrix as an exact expectation of score outer products (enumeration of all outcomes for
Bernoulli, Gauss–Hermite quadrature — exact for these polynomial integrands — for Gaussians),
with the score from autograd of ``torch.distributions`` log-densities.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from conftest import assert_close, random_points
from torch import distributions as dist
from torch import nn

import kahlergeom as kg
from kahlergeom.decoders import (
    Bernoulli,
    ComplexGaussian,
    Complexified,
    Likelihood,
    RealGaussian,
    check_decoder,
    evaluate_decoder,
)
from kahlergeom.potentials import KLPotential

C128 = torch.complex128
F64 = torch.float64


def rand(*shape, gen, dtype=F64):
    return torch.randn(*shape, dtype=dtype, generator=gen)


# -- log-densities and KL divergences against torch.distributions ----------------------------


def cn_as_normals(mean, var):
    """CN(μ, σ²) as independent real normals: Re and Im each N(·, σ²/2)."""
    sd = (var / 2).sqrt()
    return dist.Normal(mean.real, sd), dist.Normal(mean.imag, sd)


def test_complex_gaussian_log_prob_and_kl(gen):
    lik = ComplexGaussian()
    mean, mean0 = rand(4, 3, gen=gen, dtype=C128), rand(4, 3, gen=gen, dtype=C128)
    var, var0 = rand(4, 3, gen=gen).exp(), rand(3, gen=gen).exp()  # (..., D) and (D,)
    x = rand(4, 3, gen=gen, dtype=C128)
    re, im = cn_as_normals(mean, var)
    expected = (re.log_prob(x.real) + im.log_prob(x.imag)).sum(-1)
    assert_close(lik.log_prob(x, (mean, var)), expected)
    re0, im0 = cn_as_normals(mean0, var0.expand(4, 3))
    kl = (dist.kl_divergence(re0, re) + dist.kl_divergence(im0, im)).sum(-1)
    assert_close(lik.kl((mean0, var0), (mean, var)), kl)
    assert_close(lik.kl((mean, var), (mean, var)), torch.zeros(4, dtype=F64))


@pytest.mark.parametrize("shape0", [(), (3,), (4, 3), (4, 1)])
@pytest.mark.parametrize("shape", [(), (3,), (4, 3), (4, 1)])
def test_complex_gaussian_kl_variance_shapes(gen, shape0, shape):
    """Scalar, per-output, per-point and per-point-scalar variances (the variance terms are
    summed without expanding them over D): equal to torch.distributions' KL of the expanded
    real normals."""
    lik = ComplexGaussian()
    mean, mean0 = rand(4, 3, gen=gen, dtype=C128), rand(4, 3, gen=gen, dtype=C128)
    var0 = (0.3 * rand(*shape0, gen=gen)).exp() if shape0 else torch.tensor(1.3, dtype=F64)
    var = (0.3 * rand(*shape, gen=gen)).exp() if shape else torch.tensor(0.7, dtype=F64)
    re0, im0 = cn_as_normals(mean0, var0.expand(4, 3))
    re, im = cn_as_normals(mean, var.expand(4, 3))
    kl = (dist.kl_divergence(re0, re) + dist.kl_divergence(im0, im)).sum(-1)
    got = lik.kl((mean0, var0), (mean, var))
    assert got.shape == (4,)
    assert_close(got, kl)


@pytest.mark.parametrize("shape0", [(), (3,), (4, 3), (4, 1)])
@pytest.mark.parametrize("shape", [(), (3,), (4, 3), (4, 1)])
def test_real_gaussian_kl_variance_shapes(gen, shape0, shape):
    """The same variance shapes for the real Gaussian, against torch.distributions."""
    lik = RealGaussian()
    mean, mean0 = rand(4, 3, gen=gen), rand(4, 3, gen=gen)
    var0 = (0.3 * rand(*shape0, gen=gen)).exp() if shape0 else torch.tensor(1.3, dtype=F64)
    var = (0.3 * rand(*shape, gen=gen)).exp() if shape else torch.tensor(0.7, dtype=F64)
    p0 = dist.Normal(mean0, var0.expand(4, 3).sqrt())
    p = dist.Normal(mean, var.expand(4, 3).sqrt())
    got = lik.kl((mean0, var0), (mean, var))
    assert got.shape == (4,)
    assert_close(got, dist.kl_divergence(p0, p).sum(-1))


def test_real_gaussian_log_prob_and_kl(gen):
    lik = RealGaussian()
    mean, mean0 = rand(4, 3, gen=gen), rand(4, 3, gen=gen)
    var, var0 = torch.tensor(0.7, dtype=F64), rand(4, 3, gen=gen).exp()  # scalar and (..., D)
    x = rand(4, 3, gen=gen)
    p = dist.Normal(mean, var.sqrt().expand(4, 3))
    assert_close(lik.log_prob(x, (mean, var)), p.log_prob(x).sum(-1))
    p0 = dist.Normal(mean0, var0.sqrt())
    assert_close(lik.kl((mean0, var0), (mean, var)), dist.kl_divergence(p0, p).sum(-1))


def test_bernoulli_log_prob_and_kl(gen):
    lik = Bernoulli()
    eta, eta0 = 3 * rand(4, 5, gen=gen), 3 * rand(4, 5, gen=gen)
    x = (torch.rand(4, 5, generator=gen, dtype=F64) < 0.5).to(F64)
    p = dist.Bernoulli(logits=eta)
    assert_close(lik.log_prob(x, (eta,)), p.log_prob(x).sum(-1))
    kl = dist.kl_divergence(dist.Bernoulli(logits=eta0), p).sum(-1)
    assert_close(lik.kl((eta0,), (eta,)), kl)
    # extreme logits stay finite
    big = torch.tensor([[40.0, -40.0]], dtype=F64)
    assert bool(torch.isfinite(lik.kl((big,), (-big,))).all())


# -- the real Fisher matrix as an exact expectation ------------------------------------------


def score_outer_expectation(logp, theta, support, weights):
    """Σ_k w_k s_k s_kᵀ, s_k = ∇_θ log p(x_k | θ) by autograd; weights sum to 1."""
    F = torch.zeros(theta.numel(), theta.numel(), dtype=F64)
    for x, w in zip(support, weights, strict=True):
        (s,) = torch.autograd.grad(logp(x, theta), theta)
        F += w * torch.outer(s, s)
    return F


def test_bernoulli_fisher_real_by_enumeration(gen):
    D, m = 3, 4
    A, b = rand(D, m, gen=gen), rand(D, gen=gen)
    theta = rand(m, gen=gen).requires_grad_()

    def logits(t):
        return torch.tanh(A @ t) * 2 + b

    def logp(x, t):
        return dist.Bernoulli(logits=logits(t)).log_prob(x).sum()

    support = [torch.tensor(bits, dtype=F64) for bits in itertools.product([0, 1], repeat=D)]
    with torch.no_grad():
        weights = [logp(x, theta).exp().item() for x in support]
    F_exact = score_outer_expectation(logp, theta, support, weights)
    J = torch.autograd.functional.jacobian(logits, theta.detach())  # (D, m)
    F = Bernoulli().fisher_real((logits(theta.detach()),), (J.T,))
    assert_close(F, F_exact)


def gauss_hermite_normal(k=12):
    """Nodes and weights for E over N(0, 1) (exact for polynomials of degree < 2k)."""
    t, w = np.polynomial.hermite_e.hermegauss(k)
    return torch.from_numpy(t), torch.from_numpy(w / w.sum())


def test_real_gaussian_fisher_real_by_quadrature(gen):
    D, m = 2, 3
    A, B = rand(D, m, gen=gen), 0.5 * rand(D, m, gen=gen)
    theta = rand(m, gen=gen).requires_grad_()

    def params(t):
        return torch.sin(A @ t), torch.exp(torch.tanh(B @ t))

    def logp(x, t):
        mu, var = params(t)
        return dist.Normal(mu, var.sqrt()).log_prob(x).sum()

    nodes, w = gauss_hermite_normal()
    with torch.no_grad():
        mu, var = params(theta)
    support, weights = [], []
    for i, j in itertools.product(range(len(nodes)), repeat=D):
        support.append(mu + var.sqrt() * torch.stack([nodes[i], nodes[j]]))
        weights.append((w[i] * w[j]).item())
    F_exact = score_outer_expectation(logp, theta, support, weights)
    t0 = theta.detach()
    Jm = torch.autograd.functional.jacobian(lambda t: params(t)[0], t0)
    Jv = torch.autograd.functional.jacobian(lambda t: params(t)[1], t0)
    F = RealGaussian().fisher_real(params(t0), (Jm.T, Jv.T))
    assert_close(F, F_exact)


def test_complex_gaussian_fisher_real_by_quadrature(gen):
    m = 3  # one complex output: a 2-D quadrature over (Re x, Im x)
    a, c = rand(m, gen=gen, dtype=C128), 0.5 * rand(m, gen=gen)
    theta = rand(m, gen=gen).requires_grad_()

    def params(t):
        return torch.tanh(a @ t.to(C128)).reshape(1), torch.exp(torch.sin(c @ t)).reshape(1)

    def logp(x, t):
        mu, var = params(t)
        re, im = cn_as_normals(mu, var)
        return (re.log_prob(x.real) + im.log_prob(x.imag)).sum()

    nodes, w = gauss_hermite_normal()
    with torch.no_grad():
        mu, var = params(theta)
    sd = (var / 2).sqrt()
    support, weights = [], []
    for i, j in itertools.product(range(len(nodes)), repeat=2):
        support.append(mu + sd * torch.complex(nodes[i], nodes[j]))
        weights.append((w[i] * w[j]).item())
    F_exact = score_outer_expectation(logp, theta, support, weights)
    t0 = theta.detach()
    Jm = torch.autograd.functional.jacobian(lambda t: torch.view_as_real(params(t)[0]), t0)
    Jm = torch.complex(Jm[..., 0, :], Jm[..., 1, :])  # (1, m)
    Jv = torch.autograd.functional.jacobian(lambda t: params(t)[1], t0)
    F = ComplexGaussian().fisher_real(params(t0), (Jm.T, Jv.T))
    assert_close(F, F_exact)


# -- Complexified ---------------------------------------------------------------------------


@pytest.mark.parametrize("pairing", ["interleaved", "split"])
def test_complexified_passes_the_paired_real_latent(pairing):
    seen = []

    def real_dec(r):
        seen.append(r)
        return r, torch.ones_like(r)

    z = torch.tensor([[1 + 2j, 3 + 4j], [5 + 6j, 7 + 8j]], dtype=C128)
    mean, _ = Complexified(real_dec, pairing)(z)
    expected = {
        "interleaved": [[1.0, 2.0, 3.0, 4.0], [5.0, 6.0, 7.0, 8.0]],
        "split": [[1.0, 3.0, 2.0, 4.0], [5.0, 7.0, 6.0, 8.0]],
    }[pairing]
    assert_close(mean, torch.tensor(expected, dtype=F64))
    assert seen[0].dtype == F64


def test_complexified_default_and_errors():
    assert Complexified(lambda r: r).pairing == "interleaved"
    with pytest.raises(ValueError, match="pairing must be 'interleaved' or 'split'"):
        Complexified(lambda r: r, "pairs")
    with pytest.raises(ValueError, match="real_decoder must be callable"):
        Complexified(3)


def test_complexified_real_vae_decoder_module(gen):
    """A real nn.Module decoder (as in a real VAE) works through the adapter in eval mode."""
    net = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.Tanh(), nn.Linear(8, 3)).double()
    dec = Complexified(net)
    z = random_points(2, (5,), generator=gen)
    with pytest.raises(ValueError, match=r"training mode.*decoder\.eval\(\)"):
        kg.FisherManifold(dec, Bernoulli())
    net.eval()
    M = kg.FisherManifold(dec, Bernoulli())
    G = M.metric(z)
    # unbatched points and the KL potential work too (BatchNorm1d refuses 1-D input by itself)
    assert_close(M.metric(z[0]), G[0])
    assert_close(kg.ddbar(KLPotential(dec, z[0], Bernoulli()), z[0]), G[0])
    assert G.shape == (5, 2, 2)
    assert bool(M.is_psh(z).all())


# -- errors ---------------------------------------------------------------------------------


def good_mean(z, D=3):
    return torch.cat([z, z[..., :1] ** 2], -1)[..., :D]


def fisher_metric(decoder, z=None, likelihood=None):
    if z is None:
        z = torch.tensor([[0.1 + 0.2j, -0.3 + 0.4j]], dtype=C128)
    return kg.FisherManifold(decoder, likelihood).metric(z)


BAD_GAUSSIAN_DECODERS = {
    "single tensor": (lambda z: good_mean(z), r"must return \(mean, variance\); got Tensor"),
    "three outputs": (
        lambda z: (good_mean(z), 1.0, 2.0),
        r"must return \(mean, variance\); got tuple of length 3",
    ),
    "mean not a tensor": (
        lambda z: (good_mean(z).detach().numpy(), 1.0),
        "decoder mean must be a torch.Tensor",
    ),
    "mean without batch": (
        lambda z: (good_mean(z).reshape(-1), 1.0),
        r"mean must have shape \(\.\.\., D\) matching the latent batch shape \(1,\)",
    ),
    "mean with extra axis": (
        lambda z: (good_mean(z)[..., None], 1.0),
        r"mean must have shape \(\.\.\., D\).*got \(1, 3, 1\)",
    ),
    "real mean": (lambda z: (good_mean(z).real, 1.0), "mean must be a complex tensor"),
    "complex variance": (
        lambda z: (good_mean(z), torch.ones(3, dtype=C128)),
        "variance must be real and positive",
    ),
    "python complex variance": (lambda z: (good_mean(z), 1 + 1j), "variance must be real"),
    "string variance": (lambda z: (good_mean(z), "big"), "variance must be a real tensor or"),
    "zero variance": (lambda z: (good_mean(z), 0.0), r"finite and > 0; got min 0"),
    "negative variance": (
        lambda z: (good_mean(z), torch.tensor([1.0, -0.5, 1.0], dtype=F64)),
        r"finite and > 0; got min -0\.5",
    ),
    "point-dependent negative variance": (
        lambda z: (good_mean(z), z.real.sum(-1, keepdim=True).expand(-1, 3)),
        "finite and > 0",
    ),
    "nan variance": (lambda z: (good_mean(z), float("nan")), "finite and > 0"),
    "inf variance": (lambda z: (good_mean(z), float("inf")), "finite and > 0"),
    "nan mean": (lambda z: (good_mean(z) * float("nan"), 1.0), "mean contains NaN or inf"),
    "variance not broadcastable": (
        lambda z: (good_mean(z), torch.ones(4, dtype=F64)),
        r"variance of shape \(4,\) does not broadcast to the mean's shape \(1, 3\)",
    ),
    "decoder raises": (
        lambda z: (z @ torch.ones(5, 3, dtype=C128), 1.0),
        r"decoder failed on latent points of shape \(1, 2\)",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_GAUSSIAN_DECODERS))
def test_bad_complex_gaussian_decoder_raises(case):
    decoder, match = BAD_GAUSSIAN_DECODERS[case]
    with pytest.raises(ValueError, match=match):
        fisher_metric(decoder)
    # the KL potential checks its base point's parameters the same way
    z0 = torch.tensor([[0.1 + 0.2j, -0.3 + 0.4j]], dtype=C128)
    with pytest.raises(ValueError, match=match):
        KLPotential(decoder, z0)


def test_bad_real_gaussian_decoder_raises():
    with pytest.raises(ValueError, match="mean must be a real tensor for the real Gaussian"):
        fisher_metric(lambda z: (good_mean(z), 1.0), likelihood=RealGaussian())
    with pytest.raises(ValueError, match="finite and > 0"):
        fisher_metric(lambda z: (good_mean(z).real, -1.0), likelihood=RealGaussian())


BAD_BERNOULLI_DECODERS = {
    "two outputs": (lambda z: (good_mean(z).real, 1.0), "must return logits .* length 2"),
    "not a tensor": (lambda z: [[0.0, 1.0]], "logits must be a torch.Tensor; got list"),
    "complex logits": (lambda z: good_mean(z), "logits must be real"),
    "nan logits": (lambda z: good_mean(z).real * float("nan"), "logits contain NaN or inf"),
    "wrong shape": (lambda z: good_mean(z).real.reshape(-1), r"logits must have shape"),
}


@pytest.mark.parametrize("case", sorted(BAD_BERNOULLI_DECODERS))
def test_bad_bernoulli_decoder_raises(case):
    decoder, match = BAD_BERNOULLI_DECODERS[case]
    with pytest.raises(ValueError, match=match):
        fisher_metric(decoder, likelihood=Bernoulli())


def test_bernoulli_accepts_one_tuple(gen):
    z = random_points(2, (3,), generator=gen)
    G1 = fisher_metric(lambda w: (good_mean(w).real,), z, Bernoulli())
    G2 = fisher_metric(lambda w: good_mean(w).real, z, Bernoulli())
    assert_close(G1, G2)


def test_good_decoder_variants_pass(gen):
    """Scalar, per-output and point-dependent variances, Python numbers and ints, all work."""
    z = random_points(2, (2,), generator=gen)
    for var in [1, 2.0, torch.tensor(2.0, dtype=F64), torch.full((3,), 2.0, dtype=F64)]:
        G = fisher_metric(lambda w, v=var: (good_mean(w), v), z)
        assert G.shape == (2, 2, 2)
    assert_close(
        fisher_metric(lambda w: (good_mean(w), 2), z),
        fisher_metric(lambda w: (good_mean(w), 2.0), z),
    )
    # a point-dependent variance of shape (..., 1); unbatched points give the same metric
    M = kg.FisherManifold(lambda w: (good_mean(w), torch.exp(w.real[..., :1])))
    G = M.metric(z)
    assert_close(M.metric(z[1]), G[1])
    assert_close(kg.ddbar(KLPotential(M.decoder, z[1]), z[1]), G[1])


def test_non_callable_decoder():
    for bad in [None, 3, torch.zeros(2)]:
        with pytest.raises(ValueError, match="decoder must be callable"):
            kg.FisherManifold(bad)
        with pytest.raises(ValueError, match="decoder must be callable"):
            KLPotential(bad, torch.zeros(2, dtype=C128))


@pytest.mark.parametrize("layer", ["batchnorm", "dropout"])
def test_training_mode_module_raises(layer, gen):
    mixer = nn.BatchNorm1d(6) if layer == "batchnorm" else nn.Dropout(0.1)
    net = nn.Sequential(nn.Linear(4, 6), mixer, nn.Tanh(), nn.Linear(6, 3)).double()

    class Dec(nn.Module):
        def __init__(self):
            super().__init__()
            self.net = net

        def forward(self, z):
            return torch.complex(
                self.net(torch.cat([z.real, z.imag], -1)), 0 * z.real[..., :1]
            ), 1.0

    dec = Dec()
    name = type(mixer).__name__
    with pytest.raises(ValueError, match=rf"\({name}\) is in training mode.*decoder\.eval\(\)"):
        kg.FisherManifold(dec)
    with pytest.raises(ValueError, match=r"decoder\.eval\(\)"):
        check_decoder(dec)
    with pytest.raises(ValueError, match=r"decoder\.eval\(\)"):
        KLPotential(dec, torch.zeros(2, dtype=C128))
    dec.eval()
    M = kg.FisherManifold(dec)
    z = random_points(2, (4,), generator=gen)
    G = M.metric(z)
    assert_close(G[1], M.metric(z[1:2])[0])  # eval mode: no batch mixing
    # switched back to training mode after construction: caught at evaluation time
    dec.train()
    with pytest.raises(ValueError, match=r"decoder\.eval\(\)"):
        M.metric(z)


@pytest.mark.parametrize(
    "bad", ["gaussian", ComplexGaussian, 1.0, torch.distributions.Normal(0.0, 1.0)]
)
def test_bad_likelihood_argument(bad):
    dec = lambda z: (z, 1.0)  # noqa: E731
    with pytest.raises(ValueError, match="likelihood must be a kahlergeom.decoders.Likelihood"):
        kg.FisherManifold(dec, bad)
    with pytest.raises(ValueError, match="likelihood must be a kahlergeom.decoders.Likelihood"):
        KLPotential(dec, torch.zeros(2, dtype=C128), likelihood=bad)


def test_likelihood_is_abstract():
    with pytest.raises(TypeError):
        Likelihood()

    class Incomplete(Likelihood):
        def params(self, output):
            return (output,)

    with pytest.raises(TypeError):
        Incomplete()


BAD_Z = {
    "real tensor": (torch.zeros(3, 2, dtype=F64), "must be complex"),
    "list": ([[0.0, 1.0]], "must be a complex torch.Tensor"),
    "wrong n": (torch.zeros(3, 4, dtype=C128), "last dimension n = 2"),
    "0-dim": (torch.tensor(1j, dtype=C128), "0-dim"),
    "nan": (torch.tensor([[0.0, float("nan")]], dtype=C128), "NaN or inf"),
    "inf": (torch.tensor([[0.0, 1.0], [float("inf"), 0.0]], dtype=C128), "NaN or inf"),
}


@pytest.mark.parametrize("case", sorted(BAD_Z))
def test_bad_points_raise(case):
    z, match = BAD_Z[case]
    M = kg.FisherManifold(lambda w: (good_mean(w), 1.0), n=2)
    with pytest.raises(ValueError, match=rf"z .*{match}|z: .*{match}|{match}"):
        M.metric(z)
    with pytest.raises(ValueError, match=match):
        M.real_fisher(z)
    if case != "wrong n":
        with pytest.raises(ValueError, match=rf"^z0 .*{match}|{match}"):
            KLPotential(lambda w: (good_mean(w), 1.0), z)


def test_error_messages_name_the_argument():
    M = kg.FisherManifold(lambda w: (good_mean(w), 1.0), n=2)
    with pytest.raises(ValueError, match="^z must be complex"):
        M.metric(torch.zeros(1, 2))
    with pytest.raises(ValueError, match="^z0 must be complex"):
        KLPotential(lambda w: (good_mean(w), 1.0), torch.zeros(2))


# -- helpers --------------------------------------------------------------------------------


def test_check_and_evaluate_decoder(gen):
    def dec(z):
        return good_mean(z), 0.5

    assert check_decoder(dec) is dec
    z = random_points(2, (4,), generator=gen)
    mean, var = evaluate_decoder(dec, ComplexGaussian(), z)
    assert mean.shape == (4, 3)
    assert var.dtype == F64 and float(var) == 0.5
    z32 = z.to(torch.complex64)
    _, var32 = evaluate_decoder(dec, ComplexGaussian(), z32)
    assert var32.dtype == torch.float32
    assert math.isclose(float(var32), 0.5)
