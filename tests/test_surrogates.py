"""Surrogates of the decoder metric: LSE potentials built from data, anchor baselines, fidelity.

Oracles: the posterior's own quadratic form v^H Γ^{-1} v (the precision convention); the exact
metric of the manifold the anchors came from (Fubini–Study closed form, a FisherManifold of a
small decoder); autodiff `kg.ddbar` of the built potentials (independent of the closed-form
`levi`); brute-force loops over points for nearest anchors; planted cluster centres for k-means;
a planted optimum for the temperature choice; scipy.stats.spearmanr for the rank correlation;
`is_psh` eigenvalue tests (hypothesis) for plurisubharmonicity.
"""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
import scipy.stats
import torch
from conftest import assert_close, random_points
from hypothesis import given
from hypothesis import strategies as st

import kahlergeom as kg
from kahlergeom.potentials import FubiniStudy, GaussianMixturePotential
from kahlergeom.surrogates import (
    KernelAnchorManifold,
    NearestAnchorManifold,
    choose_temperature,
    compare_metrics,
    from_anchors,
    from_posteriors,
    reduce_components,
    relative_frobenius_error,
    spearman,
)

C128 = torch.complex128
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
seeds = st.integers(0, 2**31 - 1)


def random_hpd(m, n, gen, min_eig=0.2):
    A = torch.randn(m, n, n, dtype=C128, generator=gen)
    return A @ A.mH / n + min_eig * torch.eye(n, dtype=C128)


def small_decoder(n=2, D=5, seed=0):
    """A non-holomorphic decoder z ↦ (A z + B (z̄ ⊙ z) broadcast, σ² = 0.5) for FisherManifold."""
    gen = torch.Generator().manual_seed(seed)
    A = torch.randn(D, n, dtype=C128, generator=gen)
    B = torch.randn(D, n, dtype=C128, generator=gen)

    def decoder(z):
        mean = z @ A.T + (z.conj() * z) @ B.T
        return mean, torch.full(mean.shape, 0.5, dtype=torch.float64)

    return decoder


# -- from_posteriors: the precision convention ----------------------------------------------------


@pytest.mark.parametrize("full", [False, True])
def test_from_posteriors_single_component_quadratic_form(gen, full):
    n = 3
    mean = random_points(n, (1,), generator=gen)
    if full:
        cov = random_hpd(1, n, gen)
    else:
        cov = torch.rand(1, n, dtype=torch.float64, generator=gen) + 0.1
    pot = from_posteriors(mean, cov, temperature=0.7)
    M = kg.KahlerManifold(pot)
    v = random_points(n, (6,), generator=gen)
    cov_full = cov if full else torch.diag_embed(cov).to(C128)
    expected = torch.einsum("ka,ab,kb->k", v.conj(), torch.linalg.inv(cov_full[0]), v).real
    assert_close(M.inner(mean[0].expand(6, n), v, v).real, expected)
    # One component: the Levi matrix is Γ^{-T} everywhere (no covariance term).
    z = random_points(n, (4,), generator=gen)
    assert_close(pot.levi(z), torch.linalg.inv(cov_full[0]).T.expand(4, n, n))


def test_from_posteriors_levi_matches_autodiff(gen):
    n, m = 2, 5
    means = random_points(n, (m,), generator=gen)
    cov = torch.rand(m, n, dtype=torch.float64, generator=gen) + 0.2
    pot = from_posteriors(means, cov, temperature=0.5)
    z = random_points(n, (7,), generator=gen)
    assert_close(pot.levi(z), kg.ddbar(pot, z), rtol=1e-9, atol=1e-9)


def test_from_posteriors_prior_subtraction_recovers_fisher(gen):
    # Laplace view: Γ^{-1} = G^T + Λ. Subtracting Λ leaves components with Levi matrix G.
    n = 3
    G = random_hpd(1, n, gen)[0]
    Lam = 0.5 * torch.eye(n, dtype=C128)
    cov = torch.linalg.inv(G.T + Lam)[None]
    mean = random_points(n, (1,), generator=gen)
    pot = from_posteriors(mean, 0.5 * (cov + cov.mH), prior_precision=Lam)
    assert_close(pot.levi(mean[0]), G, rtol=1e-9, atol=1e-9)
    pot_scalar = from_posteriors(mean, 0.5 * (cov + cov.mH), prior_precision=0.5)
    assert_close(pot_scalar.precisions, pot.precisions)


def test_from_posteriors_prior_subtraction_indefinite_raise_or_clip():
    mean = torch.zeros(2, 2, dtype=C128)
    mean[1, 0] = 1.0
    cov = torch.tensor([[0.5, 2.0], [0.5, 0.5]], dtype=torch.float64)  # precisions 2 and 0.5
    with pytest.raises(ValueError, match="prior_precision.*component 0.*on_indefinite='clip'"):
        from_posteriors(mean, cov, prior_precision=1.0)
    pot = from_posteriors(mean, cov, prior_precision=1.0, on_indefinite="clip", floor=1e-3)
    eig = torch.linalg.eigvalsh(pot.precisions)
    assert_close(eig[0], torch.tensor([1e-3 * 2.0, 1.0], dtype=torch.float64))
    assert_close(eig[1], torch.tensor([1.0, 1.0], dtype=torch.float64))
    assert bool(kg.KahlerManifold(pot).is_psh(random_points(2, (20,))).all())


def test_from_posteriors_reduction_averages_precisions(gen):
    # Two tight groups of posteriors: reduced to 2 components, each with its group's mean
    # precision.
    n = 2
    centres = torch.tensor([[5.0, 0.0], [-5.0, 0.0]], dtype=C128)
    labels = torch.arange(40) % 2
    means = centres[labels] + 0.01 * random_points(n, (40,), generator=gen)
    cov = torch.rand(40, n, dtype=torch.float64, generator=gen) + 0.5
    pot = from_posteriors(means, cov, m=2, seed=3)
    assert pot.m == 2
    for k in range(2):
        j = int(torch.argmin((pot.means - centres[k]).abs().sum(-1)))
        expected = torch.diag_embed(1 / cov[labels == k]).mean(0).to(C128)
        assert_close(pot.precisions[j], expected)


# -- from_anchors ---------------------------------------------------------------------------------


@pytest.mark.parametrize("source", ["fubini-study", "fisher"])
def test_from_anchors_one_anchor_reproduces_metric(gen, source):
    n = 2
    if source == "fisher":
        M = kg.FisherManifold(small_decoder(n), n=n)
    else:
        M = kg.KahlerManifold(FubiniStudy(n))
    a = random_points(n, (1,), generator=gen)
    pot = from_anchors(M, a, temperature=0.3)
    G = M.metric(a[0])
    # Convention check: P = G^T, so the component's Levi matrix is G(anchor) itself.
    assert_close(pot.precisions[0], G.T)
    assert_close(kg.KahlerManifold(pot).metric(a[0]), G)
    assert_close(kg.ddbar(pot, a), G[None], rtol=1e-9, atol=1e-9)
    # ... and h(v, v) at the anchor is the exact metric's length.
    v = random_points(n, (3,), generator=gen)
    assert_close(kg.KahlerManifold(pot).norm(a.expand(3, n), v), M.norm(a.expand(3, n), v))


def test_lse_small_temperature_limit_is_dominant_component_not_own_anchor(gen):
    """What the τ → 0 limit at an anchor really is (a finding, not the hoped-for property).

    The softmax weights of Ψ = τ log Σ exp(ψ_j/τ) favour the *largest* ψ_j; at anchor a_i,
    ψ_i(a_i) = 0 is the smallest, so the limit is the metric of the anchor k = argmax_j ψ_j(a_i)
    (a distant one), within 1e-10 at τ = 1e-3 here, and not G(a_i) when m > 1.
    """
    n = 2
    M = kg.KahlerManifold(FubiniStudy(n))
    anchors = random_points(n, (6,), generator=gen)
    pot = from_anchors(M, anchors, temperature=1e-3)
    G_anchor = M.metric(anchors)
    G_lse = pot.levi(anchors)
    d = anchors[:, None, :] - pot.means[None]  # a_i − m_j, (6, 6, n); equal weights
    scores = torch.einsum("ija,jab,ijb->ij", d.conj(), pot.precisions, d).real  # ψ_j(a_i)
    k = scores.argmax(-1)
    assert bool((k != torch.arange(6)).all())
    assert_close(G_lse, G_anchor[k], rtol=1e-10, atol=1e-10)
    assert float(relative_frobenius_error(G_lse, G_anchor).min()) > 1e-2


def test_lse_small_temperature_limit_equal_metrics(gen):
    # When every anchor has the same metric the τ → 0 limit is that metric (the covariance term
    # dies as exp(-Δψ/τ)): within 1e-10 at τ = 1e-2.
    n = 2
    P = random_hpd(1, n, gen)[0]
    anchors = random_points(n, (5,), generator=gen)
    pot = GaussianMixturePotential(anchors, P.expand(5, n, n), temperature=1e-2)
    assert_close(pot.levi(anchors), P.T.expand(5, n, n), rtol=1e-10, atol=1e-10)


def test_lse_large_temperature_limit_is_constant_mean_metric(gen):
    # τ → ∞: uniform weights and a covariance term O(1/τ), so the metric tends to the plain
    # average of the component Levi matrices, the same at every point (rel. error ~ 1/τ).
    n, m = 2, 5
    anchors = random_points(n, (m,), generator=gen)
    P = random_hpd(m, n, gen)
    pot = GaussianMixturePotential(anchors, P, temperature=1e8)
    z = random_points(n, (6,), generator=gen)
    assert_close(pot.levi(z), P.transpose(-1, -2).mean(0).expand(6, n, n), rtol=1e-6, atol=1e-6)


def test_from_anchors_reduction_uses_centres(gen):
    n = 2
    M = kg.KahlerManifold(FubiniStudy(n))
    pts = random_points(n, (30,), generator=gen)
    pot = from_anchors(M, pts, m=4, seed=1)
    red = reduce_components(pts, 4, seed=1)
    assert_close(pot.means, red.centres)
    assert_close(pot.precisions, M.metric(red.centres).transpose(-1, -2))


def test_from_anchors_rank_deficient_metric_needs_jitter():
    # n = 2 latent, one output: the Fisher metric has rank ≤ 1.
    def decoder(z):
        mean = z[..., :1] + z[..., 1:]
        return mean, torch.ones_like(mean.real)

    M = kg.FisherManifold(decoder, n=2)
    a = torch.zeros(1, 2, dtype=C128)
    with pytest.raises(ValueError, match="anchors: the metric at anchor 0.*jitter"):
        from_anchors(M, a)
    pot = from_anchors(M, a, jitter=1e-3)
    assert_close(pot.levi(a[0]), M.metric(a[0]) + 1e-3 * torch.eye(2, dtype=C128))


# -- PSH of the built surrogates (hypothesis) ------------------------------------------------------


@given(seed=seeds, log_tau=st.floats(-2, 2), full=st.booleans())
def test_built_surrogates_are_psh(seed, log_tau, full):
    gen = torch.Generator().manual_seed(seed)
    n, m = 3, 6
    means = 2 * random_points(n, (m,), generator=gen)
    cov = random_hpd(m, n, gen) if full else torch.rand(m, n, dtype=torch.float64, generator=gen)
    if not full:
        cov = cov + 0.05
    z = 3 * random_points(n, (16,), generator=gen)
    tau = 10.0**log_tau
    for pot in (
        from_posteriors(means, cov, temperature=tau),
        from_posteriors(means, cov, temperature=tau, m=3, seed=seed),
        from_anchors(kg.KahlerManifold(FubiniStudy(n)), means, temperature=tau),
    ):
        M = kg.KahlerManifold(pot)
        assert bool(M.is_psh(z, strict=True).all())
        G = M.metric(z)
        assert_close(G, G.mH)


# -- anchor baselines -----------------------------------------------------------------------------


def test_nearest_anchor_matches_brute_force(gen):
    n = 2
    M = kg.KahlerManifold(FubiniStudy(n))
    anchors = random_points(n, (7,), generator=gen)
    base = NearestAnchorManifold.from_manifold(M, anchors)
    z = 2 * random_points(n, (25,), generator=gen)
    G_anchor = M.metric(anchors)
    expected = []
    for zi in z:  # slow reference: a loop over points
        dists = [float(torch.linalg.vector_norm(zi - a)) for a in anchors]
        expected.append(G_anchor[int(np.argmin(dists))])
    assert_close(base.metric(z), torch.stack(expected))
    assert_close(base.metric(anchors), G_anchor)
    assert base.nearest(anchors).tolist() == list(range(7))


def test_nearest_anchor_refuses_geodesics(gen):
    n = 2
    anchors = random_points(n, (3,), generator=gen)
    base = NearestAnchorManifold(anchors, random_hpd(3, n, gen))
    z, w = random_points(n, generator=gen), random_points(n, generator=gen)
    with pytest.raises(ValueError, match="piecewise constant"):
        base.dist(z, w)
    with pytest.raises(ValueError, match="piecewise constant"):
        base.exp(z, w)
    with pytest.raises(ValueError, match="christoffel"):
        base.christoffel(z)  # not Kähler


def test_kernel_anchor_limits(gen):
    n = 2
    anchors = torch.tensor([[0, 0], [1, 0], [0, 1j], [1 + 1j, -1]], dtype=C128)
    metrics = random_hpd(4, n, gen)
    # τ → 0 at an anchor: that anchor's own metric (weights of the others ≤ exp(-1/τ)).
    sharp = KernelAnchorManifold(anchors, metrics, temperature=1e-2)
    assert_close(sharp.metric(anchors), metrics, rtol=1e-12, atol=1e-12)
    z = random_points(n, (10,), generator=gen)
    assert_close(sharp.metric(z), NearestAnchorManifold(anchors, metrics).metric(z), atol=1e-3)
    # τ → ∞: the plain average; PSD everywhere.
    flat = KernelAnchorManifold(anchors, metrics, temperature=1e8)
    assert_close(flat.metric(z), metrics.mean(0).expand(10, n, n), rtol=1e-6, atol=1e-6)
    assert bool(KernelAnchorManifold(anchors, metrics, 0.5).is_psh(3 * z, strict=True).all())


# -- reduction ------------------------------------------------------------------------------------


def test_kmeans_recovers_separated_centres_and_is_seeded(gen):
    n = 2
    centres = torch.tensor([[5, 5j], [-5, 5j], [5j, -5], [0, 0], [-5 - 5j, 5 + 5j]], dtype=C128)
    labels = torch.arange(200) % 5
    pts = centres[labels] + 0.05 * random_points(n, (200,), generator=gen)
    red = reduce_components(pts, 5, seed=0)
    assert red.centres.shape == (5, n) and red.labels.shape == (200,)
    # Each true centre has a recovered centre within 0.05 (the noise of a cluster mean is ~0.01).
    d = (red.centres[:, None] - centres[None]).abs().square().sum(-1).sqrt()
    assert float(d.min(0).values.max()) < 0.05
    assert sorted(d.argmin(1).tolist()) == list(range(5))
    # The partition is the planted one (up to relabelling).
    perm = d.argmin(1)
    assert bool((perm[red.labels] == labels).all())
    # Deterministic for a seed.
    again = reduce_components(pts, 5, seed=0)
    assert torch.equal(red.centres, again.centres) and torch.equal(red.labels, again.labels)


def test_random_reduction_subsamples(gen):
    pts = random_points(3, (50,), generator=gen)
    red = reduce_components(pts, 8, method="random", seed=4)
    assert red.centres.shape == (8, 3)
    idx = [int(torch.nonzero((pts == c).all(-1))[0]) for c in red.centres]
    assert len(set(idx)) == 8
    assert torch.equal(red.centres, reduce_components(pts, 8, method="random", seed=4).centres)
    assert not torch.equal(red.centres, reduce_components(pts, 8, method="random", seed=5).centres)
    # labels point to the nearest centre
    d = (pts[:, None] - red.centres[None]).abs().square().sum(-1)
    assert torch.equal(red.labels, d.argmin(-1))


def test_kmeans_with_m_equal_to_n_points(gen):
    pts = random_points(2, (6,), generator=gen)
    red = reduce_components(pts, 6)
    assert_close(torch.sort(red.centres[:, 0].real).values, torch.sort(pts[:, 0].real).values)
    assert float(red.inertia) < 1e-20


# -- temperature ----------------------------------------------------------------------------------


def test_choose_temperature_finds_planted_optimum(gen):
    n, m = 2, 6
    means = random_points(n, (m,), generator=gen)
    P = random_hpd(m, n, gen)
    grid = torch.logspace(-2, 2, 9, dtype=torch.float64)
    tau_star = float(grid[5])
    z = 1.5 * random_points(n, (40,), generator=gen)
    targets = GaussianMixturePotential(means, P, temperature=tau_star).levi(z)
    choice = choose_temperature(
        GaussianMixturePotential(means, P, temperature=1.0), z, targets, temperatures=grid
    )
    assert choice.temperature == pytest.approx(tau_star)
    assert float(choice.errors[5]) < 1e-12
    assert float(torch.cat([choice.errors[:5], choice.errors[6:]]).min()) > 1e-3
    assert choice.surrogate.temperature == pytest.approx(tau_star)


def test_choose_temperature_kernel_bandwidth(gen):
    n = 2
    anchors = random_points(n, (8,), generator=gen)
    metrics = random_hpd(8, n, gen)
    grid = torch.logspace(-1, 1, 5, dtype=torch.float64)
    z = random_points(n, (30,), generator=gen)
    targets = KernelAnchorManifold(anchors, metrics, float(grid[1])).metric(z)
    choice = choose_temperature(
        KernelAnchorManifold(anchors, metrics), z, targets, temperatures=grid
    )
    assert choice.temperature == pytest.approx(float(grid[1]))
    assert isinstance(choice.surrogate, KernelAnchorManifold)


# -- fidelity -------------------------------------------------------------------------------------


def test_compare_metrics(gen):
    G = random_hpd(30, 3, gen)
    same = compare_metrics(G, G)
    assert same.median_rel_error == 0 and same.psd_rate == 1.0
    assert same.spearman_logdet == pytest.approx(1.0)
    twice = compare_metrics(2 * G, G)
    assert twice.median_rel_error == pytest.approx(1.0)
    assert twice.spearman_logdet == pytest.approx(1.0)
    flipped = G.clone()
    flipped[:10] = -flipped[:10]
    assert compare_metrics(flipped, G).psd_rate == pytest.approx(2 / 3)


def test_spearman_against_scipy(gen):
    a = torch.randn(50, dtype=torch.float64, generator=gen)
    b = a + torch.randn(50, dtype=torch.float64, generator=gen)
    a[3] = a[7]  # a tie
    expected = scipy.stats.spearmanr(a.numpy(), b.numpy()).statistic
    assert spearman(a, b) == pytest.approx(expected, abs=1e-12)


# -- errors ---------------------------------------------------------------------------------------


def test_errors(gen):
    n = 2
    means = random_points(n, (4,), generator=gen)
    diag = torch.ones(4, n, dtype=torch.float64)
    with pytest.raises(ValueError, match=r"m must be an integer with 1 <= m <= N = 4"):
        from_posteriors(means, diag, m=5)
    with pytest.raises(ValueError, match=r"m must be an integer with 1 <= m <= N = 4"):
        reduce_components(means, 0)
    with pytest.raises(ValueError, match="method must be 'kmeans' or 'random'"):
        reduce_components(means, 2, method="kmedoids")
    with pytest.raises(ValueError, match=r"points must have shape \(N, n\)"):
        reduce_components(means[None], 2)
    bad = diag.clone()
    bad[2, 1] = -0.1
    with pytest.raises(ValueError, match=r"covariances\[2\] has a non-positive variance"):
        from_posteriors(means, bad)
    full = random_hpd(4, n, gen)
    full[1] = -full[1]
    with pytest.raises(ValueError, match=r"covariances\[1\] is not positive definite"):
        from_posteriors(means, full)
    with pytest.raises(ValueError, match=r"covariances must have shape \(m, n\) = \(4, 2\)"):
        from_posteriors(means, torch.ones(3, n, dtype=torch.float64))
    with pytest.raises(ValueError, match="means must be complex"):
        from_posteriors(means.real, diag)
    with pytest.raises(ValueError, match=r"means must have shape \(m, n\)"):
        from_posteriors(means[0], diag[0])
    with pytest.raises(ValueError, match="prior_precision must be a scalar or an"):
        from_posteriors(means, diag, prior_precision=torch.eye(3))
    with pytest.raises(ValueError, match="manifold must be a kahlergeom HermitianManifold"):
        from_anchors(FubiniStudy(n), means)
    with pytest.raises(ValueError, match=r"metrics must be a tensor of shape \(m, n, n\)"):
        NearestAnchorManifold(means, torch.ones(4, n, dtype=C128))
    pot = from_posteriors(means, diag)
    with pytest.raises(
        ValueError, match=r"metrics must be a tensor of shape \(N, n, n\) = \(4, 2, 2\)"
    ):
        choose_temperature(pot, means, torch.ones(4, n, dtype=C128))
    with pytest.raises(ValueError, match="temperatures must be a non-empty grid"):
        choose_temperature(pot, means, pot.levi(means), temperatures=torch.tensor([1.0, -1.0]))
    with pytest.raises(ValueError, match=r"approx and exact must both have shape \(N, n, n\)"):
        compare_metrics(pot.levi(means), pot.levi(means[:3]))


# -- benchmark smoke test -------------------------------------------------------------------------


@pytest.mark.slow
def test_benchmark_quick_runs(tmp_path):
    out = tmp_path / "bench.md"
    proc = subprocess.run(
        [
            sys.executable,
            os.path.join(ROOT, "benchmarks", "bench_decoder_metric.py"),
            "--quick",
            "--threads",
            "1",
            "--out",
            str(out),
            "--figure",
            str(tmp_path / "cdf.png"),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=ROOT,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    text = out.read_text()
    for heading in ("Fidelity", "Cost", "Headline"):
        assert heading in text
    assert (tmp_path / "cdf.png").stat().st_size > 1000
