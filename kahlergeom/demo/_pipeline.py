"""The main job: train complex VAEs with and without the geometric regulariser, build their
geometry, compare straight lines with geodesics and prior with volume sampling, and write a
report with figures and a table of the measured numbers (mean ± sd over seeds)."""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field

import numpy as np
import torch

from kahlergeom.data import from_complex, load_dataset, to_complex
from kahlergeom.evaluation import OutlierScorer, path_smoothness, variety
from kahlergeom.geodesics import EnergyMinimisation
from kahlergeom.manifolds import FisherManifold
from kahlergeom.vae import ComplexVAE, GeometricRegulariser, TrainConfig, Trainer

VARIANTS = ("baseline", "regularised")


@dataclass
class DemoConfig:
    """Options of `run_demo` (the CLI exposes each as a flag)."""

    out: str = "runs/demo"
    data: str | None = None
    transform: str = "identity"
    seeds: tuple[int, ...] = (0, 1, 2)
    latent_dim: int = 1
    hidden: tuple[int, ...] = (64,)
    epochs: int = 30
    batch_size: int = 64
    lr: float = 1e-3
    reg_weight: float = 50.0
    reg_kind: str = "variance"
    n_pairs: int = 6
    path_points: int = 16
    n_samples: int = 256
    progress: bool = True
    figures: bool = True
    threads: int | None = 1  # small matrices: one thread is fastest on CPU
    timings: dict = field(default_factory=dict)


def _log(cfg: DemoConfig, msg: str) -> None:
    if cfg.progress:
        print(f"[demo] {msg}", flush=True)


def _train(cfg, variant, seed, x, D):
    torch.manual_seed(seed)
    # Cardioid: smooth away from 0 and free of poles. A holomorphic activation (tanh) would make
    # the Fisher metric Kähler, but its poles make det G blow up and attract volume sampling.
    model = ComplexVAE(
        D, cfg.latent_dim, cfg.hidden, decoder_activation="cardioid", dtype=torch.complex128
    )
    reg = (
        GeometricRegulariser(weight=cfg.reg_weight, kind=cfg.reg_kind, metric="fisher")
        if variant == "regularised"
        else None
    )
    ckpt = os.path.join(cfg.out, "checkpoints", f"{variant}-seed{seed}.pt")
    tc = TrainConfig(
        epochs=cfg.epochs,
        batch_size=cfg.batch_size,
        lr=cfg.lr,
        seed=seed,
        regulariser=reg,
        checkpoint_path=ckpt,
        progress=cfg.progress,
    )
    history = Trainer(model, x, tc).fit()
    return model.eval(), history


def _pairs(labels, n_pairs, seed):
    """Pairs of test indices with different labels, seeded."""
    rng = np.random.default_rng(1000 + seed)
    pairs = []
    while len(pairs) < n_pairs:
        i, j = rng.choice(len(labels), 2, replace=False)
        if labels is None or labels[i] != labels[j]:
            pairs.append((i, j))
    return np.array(pairs)


def _evaluate(cfg, model, seed, x_test, labels_test, shape, scorer):
    """All measurements for one trained model."""
    from kahlergeom.sampling import MALA, ComplexNormal, sample_volume

    M = FisherManifold(model.decoder, n=cfg.latent_dim)
    with torch.no_grad():
        codes = model.encode(x_test).mean
    pairs = _pairs(labels_test, cfg.n_pairs, seed)
    z0, z1 = codes[pairs[:, 0]], codes[pairs[:, 1]]
    t = torch.linspace(0, 1, cfg.path_points, dtype=torch.float64)[None, :, None]
    straight = z0[:, None] + t * (z1 - z0)[:, None]
    t0 = time.perf_counter()
    import warnings

    # One initial curve (the straight segment) and no shooting refinement: the path is
    # exp_z(t v) for the initial velocity of the energy-minimising discrete curve, so its end
    # may miss w slightly (recorded as "geodesic_end_miss"). The library default (three
    # starts + Newton shooting) is about 3x slower; the demo must fit its time budget.
    solver = EnergyMinimisation(n_starts=1, nodes=8, refine=None)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        geo = M.geodesic(z0, z1, cfg.path_points, solver=solver).detach()
    geo_time = time.perf_counter() - t0
    ok = torch.isfinite(geo).all(-1).all(-1)

    def decode_mean(z):
        return model.decoder(z)[0]

    s_line = path_smoothness(decode_mean, straight[ok])
    s_geo = path_smoothness(decode_mean, geo[ok])

    gen = torch.Generator().manual_seed(seed)
    prior_z = model.sample_prior(cfg.n_samples, gen)
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = sample_volume(
            M,
            cfg.n_samples,
            log_prior=ComplexNormal(cfg.latent_dim),
            beta=1.0,
            method=MALA(n_chains=min(32, cfg.n_samples), burn_in=400, thin=5, start="prior"),
            seed=seed,
        )
    sample_time = time.perf_counter() - t0
    vol_z = res.samples.detach().to(torch.complex128)

    out = {"geodesic_failures": int((~ok).sum()), "geodesic_seconds": geo_time}
    logdet = M.log_volume_density(codes).detach()
    out["logdet_var_test"] = float(logdet.var())
    out["logdet_mean_test"] = float(logdet.mean())
    miss = (geo[ok][:, -1] - z1[ok]).abs().norm(dim=-1) / (z1[ok] - z0[ok]).abs().norm(dim=-1)
    miss = miss.detach()
    out["geodesic_end_miss"] = float(miss.median()) if miss.numel() else float("nan")
    out["path_energy_ratio"] = float((s_geo["energy"] / s_line["energy"]).mean())
    out["step_cv_line"] = float(s_line["step_cv"].mean())
    out["step_cv_geodesic"] = float(s_geo["step_cv"].mean())
    out["energy_line"] = float(s_line["energy"].mean())
    out["energy_geodesic"] = float(s_geo["energy"].mean())
    images = {}
    for name, z in (("prior", prior_z), ("volume", vol_z)):
        with torch.no_grad():
            img = from_complex(decode_mean(z), shape, cfg.transform).numpy()
        sc = scorer.scores(img)
        out[f"{name}_unsure"] = sc["unsure_share"]
        out[f"{name}_far"] = sc["far_share"]
        out[f"{name}_class_entropy"] = sc["class_entropy"]
        out[f"{name}_variety"] = variety(img)
        images[name] = img
    out["volume_acceptance"] = float(res.mean_acceptance)
    out["volume_min_ess"] = float(torch.as_tensor(res.ess).min())
    out["sampling_seconds"] = sample_time
    extras = {
        "manifold": M,
        "codes": codes,
        "straight": straight,
        "geodesic": geo,
        "prior_z": prior_z,
        "volume_z": vol_z,
        "images": images,
        "pairs": pairs,
    }
    return out, extras


def run_demo(cfg: DemoConfig | None = None) -> dict:
    """Run the whole demo; returns the results dict (also written to ``out/results.json``)."""
    cfg = cfg or DemoConfig()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    start = time.perf_counter()
    os.makedirs(cfg.out, exist_ok=True)
    data = load_dataset(cfg.data)
    if data.labels is None:
        raise ValueError("data: the demo needs labelled images (for the outlier classifier).")
    train, test = data.split(0.2, seed=0)
    shape = train.shape
    x_train = to_complex(train.images, cfg.transform, torch.complex128)
    x_test = to_complex(test.images, cfg.transform, torch.complex128)
    D = x_train.shape[1]
    _log(cfg, f"data {data.name}: {len(train)} train / {len(test)} test images of {shape}")
    scorer = OutlierScorer(train.images, train.labels)

    results: dict = {"config": {k: v for k, v in asdict(cfg).items() if k != "timings"}}
    per_seed: dict = {v: [] for v in VARIANTS}
    keep: dict = {}
    for seed in cfg.seeds:
        for variant in VARIANTS:
            t0 = time.perf_counter()
            _log(cfg, f"seed {seed}: training {variant} VAE")
            model, history = _train(cfg, variant, seed, x_train, D)
            train_s = time.perf_counter() - t0
            _log(cfg, f"seed {seed}: evaluating {variant} (geodesics, volume sampling)")
            with torch.no_grad():
                test_elbo = float(model.elbo(x_test, torch.Generator().manual_seed(seed)).mean())
            metrics, extras = _evaluate(cfg, model, seed, x_test, test.labels, shape, scorer)
            metrics.update(
                train_seconds=train_s, final_train_elbo=history.elbo[-1], test_elbo=test_elbo
            )
            per_seed[variant].append(metrics)
            if seed == cfg.seeds[0]:
                keep[variant] = (model, extras)
    results["per_seed"] = per_seed
    if cfg.figures:
        from kahlergeom.demo._figures import make_figures

        _log(cfg, "figures")
        results["figures"], results["fidelity"] = make_figures(cfg, keep, x_train, x_test, shape)
    results["total_seconds"] = time.perf_counter() - start
    from kahlergeom.demo._report import write_report

    path = write_report(cfg, results)
    with open(os.path.join(cfg.out, "results.json"), "w") as fh:
        json.dump(results, fh, indent=2, default=float)
    _log(cfg, f"report written to {path} ({results['total_seconds']:.0f} s)")
    return results
