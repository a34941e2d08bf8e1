"""Training: ELBO goes up, determinism, bit-identical resume, atomic checkpoints, regulariser.

Oracles: exact equality (torch.equal) between straight and resumed runs, the checkpoint file
on disk, `hermitian_logdet` of `FisherManifold(model.decoder).metric`, and ``ddbar`` of the
log-sum-exp surrogate written by hand in this file.
"""

from __future__ import annotations

import os

import pytest
import torch
from conftest import assert_close
from torch import nn

import kahlergeom
from kahlergeom._linalg import hermitian_logdet
from kahlergeom.data import load_digits, to_complex
from kahlergeom.vae import (
    ComplexVAE,
    GeometricRegulariser,
    TrainConfig,
    Trainer,
    TrainHistory,
    load_model,
)

C128 = torch.complex128


@pytest.fixture(scope="module")
def x_small():
    data = load_digits()
    return to_complex(data.images[:96], "identity", C128)


def make_model(seed=0, **kw):
    torch.manual_seed(seed)
    return ComplexVAE(64, 2, (12,), dtype=C128, **kw)


def config(**kw):
    kw.setdefault("epochs", 3)
    kw.setdefault("batch_size", 32)
    kw.setdefault("progress", False)
    return TrainConfig(**kw)


def params(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def assert_params_equal(a, b):
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


# -- learning ----------------------------------------------------------------------------
def mean_elbo(model, x, seed=0, repeats=4):
    with torch.no_grad():
        return float(
            torch.stack(
                [model.elbo(x, torch.Generator().manual_seed(seed + r)).mean() for r in range(4)]
            ).mean()
        )


def test_training_increases_elbo(x_small):
    model = make_model()
    before = mean_elbo(model, x_small)
    hist = Trainer(model, x_small, config(epochs=6, lr=5e-3)).fit()
    after = mean_elbo(model, x_small)
    assert isinstance(hist, TrainHistory)
    assert len(hist.elbo) == len(hist.loss) == len(hist.regulariser) == 6
    assert hist.elbo[-1] > hist.elbo[0]
    assert after > before + 10  # the untrained ELBO is far below (tens of nats)
    assert not model.training  # fit leaves the model in eval mode


def test_same_seed_same_parameters_different_seed_differs(x_small):
    runs = []
    for seed in (0, 0, 1):
        model = make_model()
        Trainer(model, x_small, config(epochs=2, seed=seed)).fit()
        runs.append(params(model))
    assert_params_equal(runs[0], runs[1])
    assert any(not torch.equal(runs[0][k], runs[2][k]) for k in runs[0])


# -- checkpoints and resume --------------------------------------------------------------
@pytest.mark.parametrize("k", [1, 2])
def test_resume_is_bit_identical(x_small, tmp_path, k):
    E = 3
    reg = GeometricRegulariser(weight=0.01, n_points=8)
    straight = make_model()
    t0 = Trainer(straight, x_small, config(epochs=E, regulariser=reg))
    t0.fit()

    ckpt = str(tmp_path / "run" / "model.pt")
    first = make_model()
    Trainer(first, x_small, config(epochs=k, regulariser=reg, checkpoint_path=ckpt)).fit()
    assert os.path.isfile(ckpt)

    # A fresh model with a different initialisation: the checkpoint must override it.
    fresh = make_model(seed=99)
    t2 = Trainer(fresh, x_small, config(epochs=E, regulariser=reg, checkpoint_path=ckpt))
    hist = t2.fit()
    assert t2.epoch == E
    assert_params_equal(params(straight), params(fresh))
    assert hist == t0.history
    assert hist.regulariser[0] > 0
    # Optimiser moments match too (the next step would be identical).
    s0, s2 = t0.optimizer.state_dict()["state"], t2.optimizer.state_dict()["state"]
    for i in s0:
        for key in s0[i]:
            assert torch.equal(s0[i][key], s2[i][key])


def test_fit_without_resume_restarts(x_small, tmp_path):
    ckpt = str(tmp_path / "m.pt")
    model = make_model()
    Trainer(model, x_small, config(epochs=1, checkpoint_path=ckpt)).fit()
    t = Trainer(make_model(), x_small, config(epochs=1, checkpoint_path=ckpt))
    t.fit(resume=False)
    assert t.epoch == 1 and len(t.history.elbo) == 1
    # Already at the configured number of epochs: resuming trains nothing more.
    t3 = Trainer(make_model(seed=5), x_small, config(epochs=1, checkpoint_path=ckpt))
    t3.fit()
    assert_params_equal(params(t3.model), params(t.model))


def test_checkpoint_leaves_no_temp_files(x_small, tmp_path):
    ckpt = tmp_path / "model.pt"
    Trainer(make_model(), x_small, config(epochs=2, checkpoint_path=str(ckpt))).fit()
    assert sorted(os.listdir(tmp_path)) == ["model.pt"]


def test_failing_save_keeps_old_checkpoint(x_small, tmp_path, monkeypatch):
    ckpt = str(tmp_path / "model.pt")
    trainer = Trainer(make_model(), x_small, config(epochs=1, checkpoint_path=ckpt))
    trainer.fit()
    good = params(load_model(ckpt))
    real_save = torch.save

    def broken_save(obj, f, *a, **kw):
        with open(f, "wb") as fh:  # a partial write, then the disk "fills up"
            fh.write(b"\x00garbage")
        raise OSError("No space left on device")

    monkeypatch.setattr(torch, "save", broken_save)
    trainer.config.epochs = 2
    with pytest.raises(OSError, match="No space left"):
        trainer.fit(resume=False)
    monkeypatch.setattr(torch, "save", real_save)
    assert_params_equal(params(load_model(ckpt)), good)
    assert sorted(os.listdir(tmp_path)) == ["model.pt"]  # the partial temp file is removed
    state = torch.load(ckpt, weights_only=True)
    assert state["epoch"] == 1


def test_load_model_rebuilds(x_small, tmp_path):
    ckpt = str(tmp_path / "m.pt")
    model = make_model(covariance="full", decoder_variance="point")
    Trainer(model, x_small, config(epochs=1, checkpoint_path=ckpt)).fit()
    loaded = load_model(ckpt)
    assert isinstance(loaded, ComplexVAE) and not loaded.training
    assert loaded.config == model.config
    assert_params_equal(params(loaded), params(model))
    with torch.no_grad():
        assert torch.equal(loaded.encode(x_small).mean, model.encode(x_small).mean)


def test_load_errors(tmp_path, x_small):
    with pytest.raises(ValueError, match="path: no checkpoint at"):
        load_model(str(tmp_path / "missing.pt"))
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="is not a readable kahlergeom checkpoint"):
        load_model(str(bad))
    # A torch file that is not a kahlergeom checkpoint.
    other = tmp_path / "other.pt"
    torch.save({"weights": torch.zeros(2)}, str(other))
    with pytest.raises(ValueError, match="other.pt.*is not a kahlergeom checkpoint"):
        load_model(str(other))
    t = Trainer(make_model(), x_small, config())
    with pytest.raises(ValueError, match="path: no checkpoint at"):
        t.load_checkpoint(str(tmp_path / "missing.pt"))
    with pytest.raises(ValueError, match="bad.pt.*is not a readable kahlergeom checkpoint"):
        t.load_checkpoint(str(bad))


# -- the geometric regulariser -----------------------------------------------------------
def lse_logdet_oracle(posterior, z, temperature):
    """log det ∂∂̄ of τ log Σ_j exp(ψ_j/τ), ψ_j = (z−m_j)ᴴ P_j (z−m_j), by autodiff (ddbar)."""
    means = posterior.mean.detach()
    P = posterior.precision.detach()

    def potential(w):
        d = w - means  # (m, n)
        psi = torch.einsum("ja,jab,jb->j", d.conj(), P, d).real
        return temperature * torch.logsumexp(psi / temperature, 0)

    return torch.linalg.slogdet(kahlergeom.ddbar(potential, z.detach()))[1]


@pytest.mark.parametrize("metric", ["fisher", "surrogate"])
@pytest.mark.parametrize("kind", ["variance", "magnitude"])
def test_regulariser_values_and_gradients(x_small, metric, kind):
    model = make_model(covariance="full", decoder_variance="point")
    reg = GeometricRegulariser(weight=1.0, kind=kind, metric=metric, temperature=2.0)
    xb = x_small[:6]
    rec, kl, q, z = model.elbo_terms(xb, torch.Generator().manual_seed(0))
    ell = reg.log_det(model, z, q)
    assert ell.shape == (6,) and bool(torch.isfinite(ell).all())
    if metric == "fisher":
        G = kahlergeom.FisherManifold(model.decoder).metric(z.detach())
        oracle = hermitian_logdet(G)
        oracle2 = torch.linalg.slogdet(G)[1]
        assert_close(oracle, oracle2, rtol=1e-9, atol=1e-9)
    else:
        oracle = lse_logdet_oracle(q, z, 2.0)
    assert_close(ell.detach(), oracle.detach(), rtol=1e-8, atol=1e-8)
    value = reg(model, z, q)
    expected = ell.var() if kind == "variance" else ell.square().mean()
    assert_close(value.detach(), expected.detach())
    assert value.ndim == 0 and bool(torch.isfinite(value))
    value.backward()
    enc = [p.grad for p in model.encoder.parameters()]
    dec = [p.grad for p in model.decoder.parameters()]
    if metric == "fisher":
        assert any(g is not None and bool((g != 0).any()) for g in dec)
        assert all(g is None for g in enc)  # codes are detached: only the decoder moves
    else:
        assert any(g is not None and bool((g != 0).any()) for g in enc)
        assert all(g is None for g in dec)
    for g in enc + dec:
        assert g is None or bool(torch.isfinite(g).all())


def test_regularised_training_runs_and_records(x_small):
    reg = GeometricRegulariser(weight=0.1, kind="magnitude", metric="surrogate", n_points=8)
    hist = Trainer(make_model(), x_small, config(epochs=2, regulariser=reg)).fit()
    assert all(v > 0 for v in hist.regulariser)
    hist0 = Trainer(make_model(), x_small, config(epochs=2)).fit()
    assert hist0.regulariser == [0.0, 0.0]


# -- bad configuration -------------------------------------------------------------------
@pytest.mark.parametrize(
    "kw, match",
    [
        (dict(epochs=0), "epochs must be an integer >= 1"),
        (dict(epochs=2.5), "epochs must be an integer >= 1"),
        (dict(batch_size=True), "batch_size must be an integer >= 2"),
        (dict(batch_size=1), "batch_size must be an integer >= 2"),
        (dict(lr=0.0), "lr must be a finite number > 0"),
        (dict(lr="1e-3"), "lr must be a finite number > 0"),
        (dict(lr=float("nan")), "lr must be a finite number > 0"),
        (dict(kl_weight=-1.0), "kl_weight must be a finite number >= 0"),
        (dict(seed=-1), "seed must be an integer >= 0"),
        (dict(data_transform="fourier"), "data_transform must be one of"),
    ],
)
def test_train_config_errors(kw, match):
    with pytest.raises(ValueError, match=match):
        TrainConfig(**kw)


@pytest.mark.parametrize(
    "kw, match",
    [
        (dict(weight=-1.0), "weight must be a number >= 0"),
        (dict(weight="big"), "weight must be a number >= 0"),
        (dict(kind="entropy"), "kind must be one of"),
        (dict(metric="euclidean"), "metric must be one of"),
        (dict(n_points=1), "n_points must be an integer >= 2"),
        (dict(n_points=True), "n_points must be an integer >= 2"),
        (dict(temperature=0.0), "temperature must be"),
        (dict(temperature=-1.0), "temperature must be"),
    ],
)
def test_regulariser_config_errors(kw, match):
    with pytest.raises(ValueError, match=match):
        GeometricRegulariser(**kw)


def test_trainer_argument_errors(x_small):
    with pytest.raises(ValueError, match="model must be a ComplexVAE; got Linear"):
        Trainer(nn.Linear(2, 2), x_small)
    model = make_model()
    with pytest.raises(ValueError, match="x must be a torch.complex128"):
        Trainer(model, x_small.real)
    with pytest.raises(ValueError, match=r"x must have shape \(batch, 64\)"):
        Trainer(model, x_small[:, :10])
    bad = x_small.clone()
    bad[3, 5] = complex("nan+0j")
    with pytest.raises(ValueError, match="x contains NaN or inf"):
        Trainer(model, bad)


# -- divergence --------------------------------------------------------------------------
def test_divergence_raises_and_keeps_last_good_checkpoint(x_small, tmp_path):
    ckpt = str(tmp_path / "m.pt")
    trainer = Trainer(make_model(), x_small, config(epochs=2, checkpoint_path=ckpt))
    trainer.fit()
    good = params(trainer.model)
    with torch.no_grad():  # inject a NaN in a decoder weight
        trainer.model.decoder.mean_head.weight[0, 0] = float("nan")
    trainer.config.epochs = 4
    with pytest.raises(RuntimeError, match="training diverged at epoch 3"):
        trainer.fit(resume=False)
    assert_params_equal(params(load_model(ckpt)), good)
    assert sorted(os.listdir(tmp_path)) == ["m.pt"]
    # Resuming from the checkpoint continues from the last good state.
    t2 = Trainer(make_model(), x_small, config(epochs=3, checkpoint_path=ckpt))
    hist = t2.fit()
    assert t2.epoch == 3 and len(hist.elbo) == 3
    assert all(torch.isfinite(p).all() for p in t2.model.parameters())


def test_huge_learning_rate_diverges_with_epoch_in_message(x_small, tmp_path):
    ckpt = str(tmp_path / "m.pt")
    trainer = Trainer(make_model(), x_small, config(epochs=30, lr=1e6, checkpoint_path=ckpt))
    with pytest.raises(RuntimeError, match=r"training diverged at epoch \d+"):
        trainer.fit()
    if os.path.isfile(ckpt):  # whatever epochs completed are intact and loadable
        model = load_model(ckpt)
        assert all(torch.isfinite(p).all() for p in model.parameters())


def test_fitted_regulariser_checkpoint_loads_weights_only(tmp_path):
    """A run regularised with a fitted surrogate writes a plain-data checkpoint (the surrogate
    as a fingerprint) that resumes; another surrogate is refused."""
    from kahlergeom.potentials import Quadratic
    from kahlergeom.vae import ComplexVAE, GeometricRegulariser, TrainConfig, Trainer, load_model

    x = torch.randn(24, 6, dtype=torch.complex128, generator=torch.Generator().manual_seed(0))

    def config(precision_scale):
        pot = Quadratic(
            torch.zeros(2, dtype=torch.complex128),
            precision_scale * torch.eye(2, dtype=torch.complex128),
        )
        reg = GeometricRegulariser(weight=1.0, metric="fitted", surrogate=pot)
        return TrainConfig(
            epochs=1, batch_size=8, regulariser=reg, progress=False, checkpoint_path=str(path)
        )

    path = tmp_path / "m.pt"
    torch.manual_seed(0)
    Trainer(ComplexVAE(6, 2, (4,), dtype=torch.complex128), x, config(1.0)).fit()
    load_model(str(path))
    torch.manual_seed(0)
    Trainer(ComplexVAE(6, 2, (4,), dtype=torch.complex128), x, config(1.0)).fit()  # resumes
    with pytest.raises(ValueError, match="regulariser"):
        torch.manual_seed(0)
        Trainer(ComplexVAE(6, 2, (4,), dtype=torch.complex128), x, config(2.0)).fit()
