"""The main job: test the paper's claims on complex VAEs, with enough seeds to decide them.

For every seed, three arms are trained on the same data split: a baseline VAE, one regularised
with the log-det of the **exact Fisher metric** of its decoder, and one regularised with a
**fitted Kähler surrogate** of the baseline decoder's Fisher metric (`fit_kahler`). Each model
is then measured: straight-line vs discrete-geodesic interpolation (data-space energy and
step-length variation), and decoded samples drawn from the prior, by the Fisher volume element
(for each β in ``betas``) and by the surrogate's volume element (semantic outliers and variety).
Every comparison is paired by seed (`kahlergeom.evaluation.paired_comparison`) and the report
gives a verdict per claim of the paper.
"""

from __future__ import annotations

import json
import os
import time
import warnings
from dataclasses import asdict, dataclass, replace

import numpy as np
import torch

from kahlergeom.data import from_complex, load_dataset, to_complex
from kahlergeom.demo._paths import energy_paths, path_energy, straight_paths
from kahlergeom.demo._report import ARM_LABELS
from kahlergeom.evaluation import OutlierScorer, path_smoothness, variety
from kahlergeom.manifolds import FisherManifold, KahlerManifold
from kahlergeom.vae import ComplexVAE, GeometricRegulariser, TrainConfig, Trainer

ARMS = ("baseline", "fisher", "fitted")


@dataclass
class DemoConfig:
    """Options of `run_demo` (the CLI exposes each as a flag).

    The defaults are the quick preset (≤ 10 min on 2 CPU cores); `DemoConfig.full` is the
    larger one documented in ``docs/does-it-work.md``.
    """

    out: str = "runs/demo"
    data: str | None = None
    transform: str = "identity"
    seeds: tuple[int, ...] = (0, 1, 2, 3, 4)
    latent_dim: int = 2
    hidden: tuple[int, ...] = (64,)
    epochs: int = 30
    batch_size: int = 64
    lr: float = 1e-3
    reg_weight: float = 50.0
    reg_kind: str = "variance"
    betas: tuple[float, ...] = (1.0,)
    fit_points: int = 400
    fit_steps: int = 400
    fit_ridges: int = 64
    n_pairs: int = 6
    path_points: int = 12
    path_iterations: int = 200
    n_samples: int = 256
    progress: bool = True
    figures: bool = True
    threads: int | None = 1  # small matrices: one thread is fastest on CPU
    jobs: int = 1  # seeds run in this many worker processes

    def __post_init__(self):
        if len(self.seeds) < 2:
            raise ValueError(f"seeds: paired comparisons need at least 2 seeds; got {self.seeds}.")
        if self.latent_dim < 1:
            raise ValueError(f"latent_dim must be >= 1; got {self.latent_dim}.")
        if not self.betas or not all(b > 0 for b in self.betas):
            raise ValueError(f"betas must be a non-empty tuple of numbers > 0; got {self.betas}.")
        for name in ("fit_points", "fit_steps", "fit_ridges", "n_pairs", "n_samples"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1; got {getattr(self, name)}.")
        if self.jobs < 1:
            raise ValueError(f"jobs must be >= 1; got {self.jobs}.")
        if self.path_points < 3:
            raise ValueError(f"path_points must be >= 3; got {self.path_points}.")

    @classmethod
    def full(cls, **overrides) -> DemoConfig:
        """The ``--full`` preset: 10 seeds, latent C⁴, two β, larger surrogate, more pairs and
        samples (same network and training as the default)."""
        base = cls(
            seeds=tuple(range(10)),
            latent_dim=4,
            betas=(0.5, 1.0),
            fit_points=800,
            fit_steps=800,
            fit_ridges=128,
            n_pairs=10,
            n_samples=512,
        )
        return replace(base, **overrides)


def _log(cfg: DemoConfig, msg: str) -> None:
    if cfg.progress:
        print(f"[demo] {msg}", flush=True)


def _train(cfg, arm, seed, x, D, surrogate=None):
    torch.manual_seed(seed)
    # Cardioid: smooth away from 0 and free of poles. A holomorphic activation (tanh) would make
    # the Fisher metric Kähler, but its poles make det G blow up and attract volume sampling.
    model = ComplexVAE(
        D, cfg.latent_dim, cfg.hidden, decoder_activation="cardioid", dtype=torch.complex128
    )
    reg = None
    if arm == "fisher":
        reg = GeometricRegulariser(weight=cfg.reg_weight, kind=cfg.reg_kind, metric="fisher")
    elif arm == "fitted":
        reg = GeometricRegulariser(
            weight=cfg.reg_weight, kind=cfg.reg_kind, metric="fitted", surrogate=surrogate
        )
    tc = TrainConfig(
        epochs=cfg.epochs,
        batch_size=cfg.batch_size,
        lr=cfg.lr,
        seed=seed,
        regulariser=reg,
        checkpoint_path=os.path.join(cfg.out, "checkpoints", f"{arm}-seed{seed}.pt"),
        data_transform=cfg.transform,
        progress=cfg.progress,
    )
    history = Trainer(model, x, tc).fit()
    return model.eval(), history


def _fit_surrogate(cfg, model, x_train, x_test, seed):
    """A Kähler surrogate fitted to the model's Fisher metric at training codes, and its
    fidelity at test codes (median relative Frobenius error, Spearman of log det)."""
    from kahlergeom.surrogates import RidgeFamily, compare_metrics, fit_kahler_to_manifold

    M = FisherManifold(model.decoder, n=cfg.latent_dim)
    with torch.no_grad():
        codes = model.encode(x_train).mean
        test_codes = model.encode(x_test).mean
    g = torch.Generator().manual_seed(seed)
    idx = torch.randperm(codes.shape[0], generator=g)[: cfg.fit_points]
    t0 = time.perf_counter()
    fit = fit_kahler_to_manifold(
        M,
        codes[idx],
        family=RidgeFamily(n_ridges=cfg.fit_ridges),
        steps=cfg.fit_steps,
        seed=seed,
        progress=False,
    )
    fit_seconds = time.perf_counter() - t0
    fid = compare_metrics(fit.potential.levi(test_codes).detach(), M.metric(test_codes).detach())
    return fit.potential, {
        "fit_seconds": fit_seconds,
        "surrogate_median_rel_error": fid.median_rel_error,
        "surrogate_spearman_logdet": fid.spearman_logdet,
        "surrogate_psd_rate": fid.psd_rate,
    }


def _pairs(labels, n_pairs, seed):
    """Pairs of test indices with different labels, seeded."""
    rng = np.random.default_rng(1000 + seed)
    pairs = []
    while len(pairs) < n_pairs:
        i, j = rng.choice(len(labels), 2, replace=False)
        if labels[i] != labels[j]:
            pairs.append((i, j))
    return np.array(pairs)


def _sample(manifold, cfg, beta, seed):
    """Volume samples with the CN(0, I) prior (the library default sampler); diagnostics kept."""
    from kahlergeom.sampling import ComplexNormal, sample_volume

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # failures are recorded from res.ok / res.failures
        res = sample_volume(
            manifold,
            cfg.n_samples,
            log_prior=ComplexNormal(cfg.latent_dim),
            beta=beta,
            seed=seed,
        )
    return res.samples.detach().to(torch.complex128), res


def _evaluate(cfg, model, seed, x_test, labels_test, shape, scorer, surrogate=None):
    """All measurements for one trained model."""
    M = FisherManifold(model.decoder, n=cfg.latent_dim)
    with torch.no_grad():
        codes = model.encode(x_test).mean
    pairs = _pairs(labels_test, cfg.n_pairs, seed)
    z0, z1 = codes[pairs[:, 0]], codes[pairs[:, 1]]
    straight = straight_paths(z0, z1, cfg.path_points)
    t0 = time.perf_counter()
    geo, _, converged = energy_paths(
        M.metric_field, z0, z1, cfg.path_points, max_iter=cfg.path_iterations
    )
    out = {"geodesic_seconds": time.perf_counter() - t0}
    out["geodesic_unconverged"] = float((~converged).float().mean())

    def decode_mean(z):
        return model.decoder(z)[0]

    s_line = path_smoothness(decode_mean, straight)
    s_geo = path_smoothness(decode_mean, geo)
    with torch.no_grad():
        out["fisher_energy_line"] = float(path_energy(M.metric_field, straight).mean())
        out["fisher_energy_geodesic"] = float(path_energy(M.metric_field, geo).mean())
    out["energy_line"] = float(s_line["energy"].mean())
    out["energy_geodesic"] = float(s_geo["energy"].mean())
    out["step_cv_line"] = float(s_line["step_cv"].mean())
    out["step_cv_geodesic"] = float(s_geo["step_cv"].mean())
    logdet = M.log_volume_density(codes).detach()
    out["logdet_var_test"] = float(logdet.var())

    samples = {"prior": model.sample_prior(cfg.n_samples, torch.Generator().manual_seed(seed))}
    t0 = time.perf_counter()
    sampling_ok = []
    for beta in cfg.betas:
        samples[f"volume_b{beta:g}"], res = _sample(M, cfg, beta, seed)
        sampling_ok.append(res.ok)
    if surrogate is not None:
        samples["surrogate_volume"], res = _sample(KahlerManifold(surrogate), cfg, 1.0, seed)
        sampling_ok.append(res.ok)
    out["sampling_seconds"] = time.perf_counter() - t0
    out["sampling_failed"] = float(np.mean([not ok for ok in sampling_ok]))
    images = {}
    for name, z in samples.items():
        with torch.no_grad():
            img = from_complex(decode_mean(z), shape, cfg.transform).numpy()
        sc = scorer.scores(img)
        out[f"{name}_unsure"] = sc["unsure_share"]
        out[f"{name}_far"] = sc["far_share"]
        out[f"{name}_class_entropy"] = sc["class_entropy"]
        out[f"{name}_variety"] = variety(img)
        images[name] = img
    extras = {
        "manifold": M,
        "codes": codes,
        "straight": straight,
        "geodesic": geo,
        "samples": samples,
        "images": images,
        "surrogate": surrogate,
    }
    return out, extras


@dataclass
class _Prepared:
    shape: tuple
    x_train: torch.Tensor
    x_test: torch.Tensor
    labels_test: np.ndarray
    scorer: OutlierScorer
    description: str


def _prepare(cfg: DemoConfig) -> _Prepared:
    data = load_dataset(cfg.data)
    if data.labels is None:
        raise ValueError("data: the demo needs labelled images (for the outlier classifier).")
    train, test = data.split(0.2, seed=0)
    return _Prepared(
        shape=train.shape,
        x_train=to_complex(train.images, cfg.transform, torch.complex128),
        x_test=to_complex(test.images, cfg.transform, torch.complex128),
        labels_test=test.labels,
        scorer=OutlierScorer(train.images, train.labels),
        description=f"data {data.name}: {len(train)} train / {len(test)} test images of "
        f"{train.shape}",
    )


def _run_seed(cfg: DemoConfig, seed: int, prep: _Prepared, keep_models: bool):
    """The three arms of one seed: ``({arm: metrics}, {arm: (model, extras)} or None)``."""
    out, keep, surrogate = {}, {}, None
    D = prep.x_train.shape[1]
    for k, arm in enumerate(ARMS, 1):
        tag = f"seed {seed} [{k}/{len(ARMS)}]"
        t0 = time.perf_counter()
        _log(cfg, f"{tag}: training {ARM_LABELS[arm]}")
        model, history = _train(cfg, arm, seed, prep.x_train, D, surrogate)
        metrics = {"train_seconds": time.perf_counter() - t0}
        if arm == "baseline":
            _log(cfg, f"{tag}: fitting the Kähler surrogate")
            surrogate, fit_info = _fit_surrogate(cfg, model, prep.x_train, prep.x_test, seed)
            metrics.update(fit_info)
        _log(cfg, f"{tag}: measuring {arm} (paths, sampling)")
        with torch.no_grad():
            test_elbo = float(model.elbo(prep.x_test, torch.Generator().manual_seed(seed)).mean())
        m, extras = _evaluate(
            cfg,
            model,
            seed,
            prep.x_test,
            prep.labels_test,
            prep.shape,
            prep.scorer,
            surrogate if arm == "baseline" else None,
        )
        metrics.update(m, final_train_elbo=history.elbo[-1], test_elbo=test_elbo)
        out[arm] = metrics
        if keep_models:
            keep[arm] = (model, extras)
    return out, (keep if keep_models else None)


def _seed_worker(cfg: DemoConfig, seed: int, keep_models: bool):
    """One seed in a worker process (``jobs > 1``): its own data, one torch thread."""
    torch.set_num_threads(cfg.threads or 1)
    return _run_seed(replace(cfg, progress=False), seed, _prepare(cfg), keep_models)


def run_demo(cfg: DemoConfig | None = None) -> dict:
    """Run the whole demo; returns the results dict (also written to ``out/results.json``).

    With ``cfg.jobs > 1`` the seeds run in that many worker processes (spawned, one torch
    thread each); the results are the same as in one process (every seed is seeded on its own).
    """
    cfg = cfg or DemoConfig()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    start = time.perf_counter()
    os.makedirs(cfg.out, exist_ok=True)
    prep = _prepare(cfg)
    _log(cfg, prep.description)
    by_seed: dict = {}
    keep: dict = {}
    first = cfg.seeds[0]
    if cfg.jobs > 1:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor, as_completed

        ctx = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=cfg.jobs, mp_context=ctx) as pool:
            futures = {
                pool.submit(_seed_worker, cfg, seed, seed == first and cfg.figures): seed
                for seed in cfg.seeds
            }
            for fut in as_completed(futures):
                seed = futures[fut]
                by_seed[seed], kept = fut.result()
                keep = kept or keep
                _log(cfg, f"seed {seed} done ({len(by_seed)}/{len(cfg.seeds)})")
    else:
        for seed in cfg.seeds:
            by_seed[seed], kept = _run_seed(cfg, seed, prep, seed == first and cfg.figures)
            keep = kept or keep
    results: dict = {"config": asdict(cfg)}
    results["per_seed"] = {arm: [by_seed[s][arm] for s in cfg.seeds] for arm in ARMS}
    if cfg.figures:
        from kahlergeom.demo._figures import make_figures

        _log(cfg, "figures")
        results["figures"] = make_figures(cfg, keep, prep.shape)
    results["total_seconds"] = time.perf_counter() - start
    from kahlergeom.demo._report import write_report

    paths = write_report(cfg, results)
    with open(os.path.join(cfg.out, "results.json"), "w") as fh:
        json.dump(results, fh, indent=2, default=float)
    _log(cfg, f"report written to {paths[0]} and {paths[1]} ({results['total_seconds']:.0f} s)")
    return results
