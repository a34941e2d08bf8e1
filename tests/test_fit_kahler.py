"""Fitted Kähler surrogates: `RidgePotential`, `fit_kahler` and its families.

Oracles: autodiff `kg.ddbar` / `_partial` of the potential's value (independent of the
closed-form Levi matrix and gradient); eigenvalues for the PSD floor; a planted target whose
metric the family can represent exactly (the metric of a known ridge potential, the flat
metric); the minimum of the recorded validation losses for early stopping; a potential without
closed-form ``levi`` (autodiff of the same value) for the curvature consistency check.
"""

from __future__ import annotations

import math

import pytest
import torch
from conftest import assert_close
from hypothesis import given
from hypothesis import strategies as st

import kahlergeom as kg
from kahlergeom.potentials import (
    FubiniStudy,
    GaussianMixturePotential,
    KahlerPotential,
    RidgePotential,
)
from kahlergeom.surrogates import (
    KahlerFit,
    LSEFamily,
    RidgeFamily,
    SurrogateFamily,
    compare_metrics,
    fit_kahler,
    fit_kahler_to_manifold,
    manifold_metrics,
)
from kahlergeom.wirtinger._ddbar import _partial

C128 = torch.complex128
F64 = torch.float64
seeds = st.integers(0, 2**31 - 1)


def random_ridge(n, H, gen, *, scale=1.0, floor=0.1):
    W = scale * torch.randn(H, 2 * n, dtype=F64, generator=gen)
    b = torch.randn(H, dtype=F64, generator=gen)
    a = 3 * torch.rand(H, dtype=F64, generator=gen)
    A = torch.randn(n, n, dtype=C128, generator=gen)
    M = A @ A.mH / n + floor * torch.eye(n, dtype=C128)
    c = torch.randn(n, dtype=C128, generator=gen)
    return RidgePotential(W, b, a, M, c)


class _NoClosedForm(KahlerPotential):
    """The same value as a wrapped potential, Levi matrix by autodiff only."""

    def __init__(self, p):
        super().__init__(p.n)
        self.p = p

    def __call__(self, z):
        return self.p(z)


# ------------------------------------------------------------------------ RidgePotential


@given(seeds, st.integers(1, 4), st.integers(1, 9), st.floats(0.1, 5.0))
def test_ridge_levi_equals_ddbar(seed, n, H, scale):
    gen = torch.Generator().manual_seed(seed)
    p = random_ridge(n, H, gen, scale=scale)
    z = 2 * torch.randn(6, n, dtype=C128, generator=gen)
    G = p.levi(z)
    assert (G - kg.ddbar(p, z)).abs().max() <= 1e-9 * max(1.0, float(G.abs().max()))
    assert_close(p.partial(z), _partial(p, z), rtol=1e-9, atol=1e-9)


@given(seeds, st.integers(1, 4), st.floats(0.1, 30.0))
def test_ridge_is_psd_above_its_floor(seed, n, radius):
    gen = torch.Generator().manual_seed(seed)
    p = random_ridge(n, 11, gen, scale=3.0, floor=0.05)
    z = radius * torch.randn(50, n, dtype=C128, generator=gen)
    lam = torch.linalg.eigvalsh(p.levi(z))[..., 0]
    floor = torch.linalg.eigvalsh(p.base_metric)[0]
    assert bool((lam >= floor * (1 - 1e-9)).all())
    assert float(floor) > 0


def test_ridge_batch_shapes_and_float32(gen):
    p = random_ridge(3, 5, gen)
    z = torch.randn(2, 4, 3, dtype=C128, generator=gen)
    assert p(z).shape == (2, 4) and p.levi(z).shape == (2, 4, 3, 3)
    assert_close(p.levi(z)[1, 2], p.levi(z[1, 2]))
    G32 = p.levi(z.to(torch.complex64))
    assert G32.dtype == torch.complex64
    assert_close(G32, p.levi(z).to(torch.complex64))


def test_ridge_bad_input(gen):
    p = random_ridge(2, 3, gen)
    W, b, a, M = p.directions, p.offsets, p.amplitudes, p.base_metric
    with pytest.raises(ValueError, match="amplitudes must be >= 0"):
        RidgePotential(W, b, -a, M)
    with pytest.raises(ValueError, match="base_metric must be positive definite"):
        RidgePotential(W, b, a, -M)
    with pytest.raises(ValueError, match="base_metric must be Hermitian"):
        RidgePotential(W, b, a, M + torch.triu(torch.ones(2, 2), 1))
    with pytest.raises(ValueError, match="directions must be a real tensor"):
        RidgePotential(W.to(C128), b, a, M)
    with pytest.raises(ValueError, match="offsets must be a real tensor of shape"):
        RidgePotential(W, b[:2], a, M)
    with pytest.raises(ValueError, match="must be finite"):
        RidgePotential(W, b * float("nan"), a, M)


# ------------------------------------------------------------------------ fitting


def planted(n=3, H=8, N=300, seed=0):
    """Points and the exact metrics of a known ridge potential (representable target)."""
    gen = torch.Generator().manual_seed(seed)
    true = random_ridge(n, H, gen, scale=1.0, floor=0.3)
    z = torch.randn(N, n, dtype=C128, generator=gen)
    return true, z, true.levi(z)


@pytest.fixture(scope="module")
def ridge_fit():
    true, z, G = planted()
    fit = fit_kahler(
        z[:240],
        G[:240],
        val_points=z[240:],
        val_metrics=G[240:],
        family=RidgeFamily(n_ridges=32),
        steps=1500,
        progress=False,
    )
    return true, z, G, fit


def test_fit_reaches_planted_ridge_metric(ridge_fit):
    true, _, _, fit = ridge_fit
    gen = torch.Generator().manual_seed(99)
    z = torch.randn(400, true.n, dtype=C128, generator=gen)  # fresh points: generalisation
    f = compare_metrics(fit.potential.levi(z), true.levi(z))
    assert f.median_rel_error < 0.03, f
    assert f.spearman_logdet > 0.95
    assert f.psd_rate == 1.0
    assert fit.validation == "given" and fit.fidelity.median_rel_error < 0.03
    assert len(fit.history.step) == len(fit.history.val_loss) > 0


def test_fit_flat_target_is_nearly_exact():
    gen = torch.Generator().manual_seed(3)
    A = torch.randn(2, 2, dtype=C128, generator=gen)
    G0 = A @ A.mH + 0.5 * torch.eye(2, dtype=C128)
    z = torch.randn(200, 2, dtype=C128, generator=gen)
    fit = fit_kahler(
        z, G0.expand(200, 2, 2), family=RidgeFamily(n_ridges=8), steps=1000, progress=False
    )
    assert fit.validation == "split"
    z2 = torch.randn(100, 2, dtype=C128, generator=gen)
    assert compare_metrics(fit.potential.levi(z2), G0.expand(100, 2, 2)).median_rel_error < 0.05


def test_fitted_potential_levi_is_ddbar_and_psd_everywhere(ridge_fit):
    _, _, _, fit = ridge_fit
    p = fit.potential
    assert isinstance(p, RidgePotential) and p.has_closed_form_levi
    gen = torch.Generator().manual_seed(5)
    for radius in (0.1, 1.0, 10.0, 1e3):
        z = radius * torch.randn(64, p.n, dtype=C128, generator=gen)
        G = p.levi(z)
        assert (G - kg.ddbar(p, z)).abs().max() <= 1e-9 * max(1.0, float(G.abs().max()))
        lam = torch.linalg.eigvalsh(G)[..., 0]
        assert bool((lam >= 0.999 * float(fit.params["eps"])).all())


def test_early_stopping_keeps_the_best_validation_parameters():
    true, z, G = planted(N=200)
    gen = torch.Generator().manual_seed(1)
    # Validation metrics unrelated to the training target: training improves, validation soon
    # stops improving, and the kept parameters are those of the best validation loss.
    B = torch.randn(40, 3, 3, dtype=C128, generator=gen)
    val_G = B @ B.mH + torch.eye(3)
    fit = fit_kahler(
        z[:160],
        G[:160],
        val_points=z[160:],
        val_metrics=val_G,
        family=RidgeFamily(n_ridges=8),
        steps=3000,
        eval_every=10,
        patience=3,
        logdet_weight=0.0,  # the recomputed validation loss below is the Frobenius term
        progress=False,
    )
    assert fit.stopped_early
    assert fit.history.step[-1] < 3000
    best = min(fit.history.val_loss)
    assert fit.best_step == fit.history.step[fit.history.val_loss.index(best)]
    Gv = fit.potential.levi(z[160:])
    val_loss = (
        (torch.linalg.matrix_norm(Gv - val_G) / torch.linalg.matrix_norm(val_G)).square().mean()
    )
    assert math.isclose(float(val_loss), best, rel_tol=1e-5)  # the fit ran in float32


def test_fit_is_deterministic_for_a_seed():
    _, z, G = planted(N=120)
    kw = dict(family=RidgeFamily(n_ridges=8), steps=60, eval_every=20, progress=False)
    a = fit_kahler(z, G, seed=7, **kw)
    b = fit_kahler(z, G, seed=7, **kw)
    c = fit_kahler(z, G, seed=8, **kw)
    for k in a.params:
        assert torch.equal(a.params[k], b.params[k])
    assert a.history.val_loss == b.history.val_loss
    assert not torch.equal(a.params["W"], c.params["W"])


def test_save_load_roundtrip(ridge_fit, tmp_path):
    _, z, _, fit = ridge_fit
    path = tmp_path / "fit.pt"
    fit.save(str(path))
    back = KahlerFit.load(str(path))
    assert torch.equal(back.potential.levi(z), fit.potential.levi(z))
    assert back.family == fit.family
    assert back.history == fit.history
    assert back.fidelity.median_rel_error == fit.fidelity.median_rel_error
    assert back.best_step == fit.best_step
    again = KahlerFit.from_state_dict(back.state_dict())
    assert torch.equal(again.potential(z), fit.potential(z))
    with pytest.raises(ValueError, match="state must be a dict written by"):
        KahlerFit.from_state_dict({"format": "other"})
    state = fit.state_dict()
    state["family"] = "nonexistent"
    with pytest.raises(ValueError, match="unknown surrogate family 'nonexistent'"):
        KahlerFit.from_state_dict(state)
    with pytest.raises(ValueError, match="path: .* is not a readable fit_kahler state"):
        KahlerFit.load(str(tmp_path / "missing.pt"))


def test_lse_family_fit_and_temperature_identity():
    _, z, G = planted(N=160)
    fit = fit_kahler(
        z,
        G,
        family=LSEFamily(n_components=6, temperature=30.0),
        steps=40,
        eval_every=20,
        progress=False,
    )
    p = fit.potential
    assert isinstance(p, GaussianMixturePotential)
    # The family's τ-rescaled Levi matrix equals the built potential's closed form ...
    assert_close(fit.family.levi(fit.params, z[:20]), p.levi(z[:20]), rtol=1e-9, atol=1e-9)
    # ... which equals autodiff of its value, and is PSD above the floor.
    G_fit = p.levi(z[:20])
    assert (G_fit - kg.ddbar(p, z[:20])).abs().max() <= 1e-9 * float(G_fit.abs().max())
    assert bool((torch.linalg.eigvalsh(G_fit)[..., 0] >= 0.999 * float(fit.params["eps"])).all())
    assert p.temperature != 30.0  # τ was learned
    fixed = LSEFamily(n_components=6, temperature=30.0, learn_temperature=False)
    fit2 = fit_kahler(z, G, family=fixed, steps=20, eval_every=10, progress=False)
    assert fit2.potential.temperature == pytest.approx(30.0)


def test_logdet_weight_adds_the_logdet_term():
    _, z, G = planted(N=100)
    kw = dict(family=RidgeFamily(n_ridges=4), steps=1, eval_every=1, progress=False, seed=2)
    kw["fit_dtype"] = None  # float64, as the reference below
    a = fit_kahler(z, G, logdet_weight=0.0, **kw)
    b = fit_kahler(z, G, logdet_weight=0.5, **kw)
    # Same initial parameters (same seed), one step: the train losses differ by the log-det term.
    fam = RidgeFamily(n_ridges=4)
    gen = torch.Generator().manual_seed(2)
    perm = torch.randperm(100, generator=gen)
    tr = perm[15:]
    trainable, buffers = fam.init(z[tr], G[tr], gen)
    L = fam.levi({**trainable, **buffers}, z[tr])
    ld = torch.linalg.slogdet(L)[1] - torch.linalg.slogdet(G[tr])[1]
    assert b.history.train_loss[0] - a.history.train_loss[0] == pytest.approx(
        0.5 * float((ld / 3).square().mean()), rel=1e-9
    )


def test_fit_to_manifold_matches_explicit_metrics():
    M = kg.KahlerManifold(FubiniStudy(2))
    gen = torch.Generator().manual_seed(4)
    z = 0.7 * torch.randn(120, 2, dtype=C128, generator=gen)
    assert_close(manifold_metrics(M, z, chunk_size=7), M.metric(z))
    kw = dict(family=RidgeFamily(n_ridges=8), steps=30, eval_every=10, progress=False)
    a = fit_kahler_to_manifold(M, z[:100], val_points=z[100:], chunk_size=16, **kw)
    b = fit_kahler(
        z[:100], M.metric(z[:100]), val_points=z[100:], val_metrics=M.metric(z[100:]), **kw
    )
    assert torch.equal(a.params["W"], b.params["W"])
    with pytest.raises(ValueError, match="manifold must be a kahlergeom HermitianManifold"):
        fit_kahler_to_manifold(FubiniStudy(2), z)


def test_fitted_potential_plugs_into_kahler_manifold(ridge_fit):
    _, z, _, fit = ridge_fit
    S = kg.KahlerManifold(fit.potential)
    ref = kg.KahlerManifold(_NoClosedForm(fit.potential))  # autodiff of the same value
    z0 = z[:3]
    assert_close(S.metric(z0), ref.metric(z0), rtol=1e-9, atol=1e-9)
    assert_close(S.christoffel(z0), ref.christoffel(z0), rtol=1e-7, atol=1e-9)
    assert_close(S.scalar_curvature(z0), ref.scalar_curvature(z0), rtol=1e-7, atol=1e-9)
    assert float(S.closedness_residual(z0).abs().max()) < 1e-9  # Kähler: closed
    v = 0.2 * torch.randn(3, 3, dtype=C128, generator=torch.Generator().manual_seed(0))
    w = S.exp(z0, v)
    assert torch.isfinite(w).all()
    d = S.dist(z0, w)
    assert_close(d, S.norm(z0, v), rtol=1e-3, atol=1e-6)  # short geodesics: |v| = distance
    from kahlergeom.sampling import sample_volume
    from kahlergeom.volume import Ball, volume_monte_carlo

    r = sample_volume(
        S,
        64,
        seed=0,
        min_ess=1.0,
        max_rhat=10.0,
        log_prior=lambda q: -(q.real**2 + q.imag**2).sum(-1),
    )
    assert r.samples.shape == (64, 3) and torch.isfinite(r.samples).all()
    vol = volume_monte_carlo(
        S,
        2000,
        region=Ball(0.5, torch.zeros(3, dtype=C128)),
        generator=torch.Generator().manual_seed(0),
    )
    # Oracle: det G ≥ det M (G ⪰ M) on the ball, volume ≥ det M · vol of the Euclidean ball.
    ball = math.pi**3 * 0.5**6 / 6
    assert float(vol.value) >= float(torch.linalg.det(fit.potential.base_metric).real) * ball * 0.9


# ------------------------------------------------------------------------ bad input


@pytest.mark.parametrize(
    "mutate, match",
    [
        (lambda z, G: (z, G[:-1]), r"metrics must be a complex tensor of shape \(N, n, n\)"),
        (lambda z, G: (z, G.real), r"metrics must be a complex tensor"),
        (lambda z, G: (z.real, G), r"points"),
        (lambda z, G: (z[0], G), r"points must be a complex tensor of shape \(N, n\)"),
        (lambda z, G: (z, G * float("nan")), r"metrics must be finite"),
        (lambda z, G: (z, G + torch.triu(torch.ones(3, 3), 1)), r"metrics\[0\] is not Hermitian"),
        (lambda z, G: (z, torch.cat([0 * G[:1], G[1:]])), r"metrics\[0\] is the zero matrix"),
        (lambda z, G: (z[:1], G[:1]), r"need at least 2 training points"),
    ],
)
def test_fit_bad_data(mutate, match):
    _, z, G = planted(N=20)
    with pytest.raises(ValueError, match=match):
        fit_kahler(*mutate(z, G), progress=False)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(steps=0), "steps must be an integer >= 1"),
        (dict(lr=-1.0), "lr must be None or a finite number > 0"),
        (dict(logdet_weight=-0.1), "logdet_weight must be a finite number >= 0"),
        (dict(val_fraction=1.0), r"val_fraction must be a number in \(0, 1\)"),
        (dict(batch_size=0), "batch_size must be None or an integer >= 1"),
        (dict(family="ridge"), "family must be a kahlergeom.surrogates.SurrogateFamily"),
        (dict(seed=1.5), "seed must be an integer"),
        (dict(val_points=torch.zeros(3, 3, dtype=C128)), "must be given together"),
    ],
)
def test_fit_bad_options(kwargs, match):
    _, z, G = planted(N=20)
    with pytest.raises(ValueError, match=match):
        fit_kahler(z, G, progress=False, **kwargs)


def test_fit_bad_validation_shape():
    _, z, G = planted(N=20)
    with pytest.raises(ValueError, match="val_metrics must be a complex tensor of shape"):
        fit_kahler(z, G, val_points=z[:4], val_metrics=G[:3], progress=False)
    with pytest.raises(ValueError, match="val_points"):
        fit_kahler(z, G, val_points=z[:4, :2], val_metrics=G[:4, :2, :2], progress=False)


def test_family_options_are_validated():
    with pytest.raises(ValueError, match="n_ridges must be an integer > 0"):
        RidgeFamily(n_ridges=0)
    with pytest.raises(ValueError, match="floor must be a finite number > 0"):
        RidgeFamily(floor=0.0)
    with pytest.raises(ValueError, match="temperature must be a finite number > 0"):
        LSEFamily(temperature=-1.0)
    with pytest.raises(TypeError):
        SurrogateFamily()  # abstract


# ------------------------------------------------------------------------ trainer regulariser


def test_trainer_regulariser_with_a_fitted_surrogate():
    from kahlergeom.data import load_digits, to_complex
    from kahlergeom.vae import ComplexVAE, GeometricRegulariser, TrainConfig, Trainer

    x = to_complex(load_digits().images[:64], "identity", C128)
    torch.manual_seed(0)
    model = ComplexVAE(64, 2, (12,), dtype=C128)
    M = kg.FisherManifold(model.decoder, n=2)
    with torch.no_grad():
        codes = model.encode(x).mean
    fit = fit_kahler_to_manifold(
        M, codes, family=RidgeFamily(n_ridges=8), steps=40, eval_every=20, progress=False
    )
    reg = GeometricRegulariser(weight=1.0, metric="fitted", surrogate=fit.potential)
    rec, kl, q, z = model.elbo_terms(x[:6], torch.Generator().manual_seed(0))
    ell = reg.log_det(model, z, q)
    # Oracle: log det of the surrogate's metric at the codes.
    assert_close(ell.detach(), torch.linalg.slogdet(fit.potential.levi(z.detach()))[1])
    reg(model, z, q).backward()
    enc = [p.grad for p in model.encoder.parameters()]
    dec = [p.grad for p in model.decoder.parameters()]
    assert any(g is not None and bool((g != 0).any()) for g in enc)  # moves the codes
    assert all(g is None for g in dec)  # a fixed surrogate does not see the decoder
    cfg = TrainConfig(epochs=1, batch_size=32, progress=False, regulariser=reg)
    hist = Trainer(ComplexVAE(64, 2, (12,), dtype=C128), x, cfg).fit()
    assert hist.regulariser[0] > 0
    with pytest.raises(ValueError, match='surrogate must be given exactly when metric="fitted"'):
        GeometricRegulariser(metric="fitted")
    with pytest.raises(ValueError, match="surrogate must be given exactly"):
        GeometricRegulariser(surrogate=fit.potential)
    with pytest.raises(ValueError, match="surrogate must be a KahlerPotential with a closed-form"):
        GeometricRegulariser(metric="fitted", surrogate=_NoClosedForm(fit.potential))


@given(seeds)
def test_default_fit_is_psd_with_floor_for_any_seed(seed):
    _, z, G = planted(N=40, seed=seed % 1000)
    fit = fit_kahler(z, G, seed=seed, steps=5, eval_every=5, progress=False)
    far = 100 * torch.randn(30, 3, dtype=C128, generator=torch.Generator().manual_seed(seed))
    for pts in (z, far):
        lam = torch.linalg.eigvalsh(fit.potential.levi(pts))[..., 0]
        assert bool((lam >= 0.999 * float(fit.params["eps"])).all())
    assert float(fit.params["eps"]) > 0
    assert math.isfinite(fit.fidelity.median_rel_error) and fit.fidelity.psd_rate == 1.0


def test_progress_bar_runs(capsys):
    _, z, G = planted(N=40)
    fit = fit_kahler(z, G, steps=4, eval_every=2, progress=True)
    assert len(fit.history.step) == 2
