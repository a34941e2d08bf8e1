"""Figures of the demo report (matplotlib, Agg backend)."""

from __future__ import annotations

import os
import warnings

import numpy as np
import torch

from kahlergeom.data import from_complex
from kahlergeom.evaluation import laplacian_eigenmaps
from kahlergeom.manifolds import KahlerManifold


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(plt, fig, path) -> None:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _grid_image(images: np.ndarray, rows: int, cols: int) -> np.ndarray:
    h, w = images.shape[1:]
    canvas = np.ones((rows * (h + 1) - 1, cols * (w + 1) - 1))
    for k in range(min(rows * cols, len(images))):
        r, c = divmod(k, cols)
        canvas[r * (h + 1) : r * (h + 1) + h, c * (w + 1) : c * (w + 1) + w] = images[k]
    return canvas


def _latent_volume(plt, cfg, keep, path):
    fig, axes = plt.subplots(1, len(keep), figsize=(5.2 * len(keep), 4.4), squeeze=False)
    for ax, (variant, (_model, ex)) in zip(axes[0], keep.items(), strict=True):
        M, codes = ex["manifold"], ex["codes"]
        c = codes[:, 0]
        lo_x, hi_x = float(c.real.min()), float(c.real.max())
        lo_y, hi_y = float(c.imag.min()), float(c.imag.max())
        pad_x, pad_y = 0.15 * (hi_x - lo_x + 1e-9), 0.15 * (hi_y - lo_y + 1e-9)
        xs = torch.linspace(lo_x - pad_x, hi_x + pad_x, 70, dtype=torch.float64)
        ys = torch.linspace(lo_y - pad_y, hi_y + pad_y, 70, dtype=torch.float64)
        X, Y = torch.meshgrid(xs, ys, indexing="xy")
        grid = torch.zeros(*X.shape, M.n, dtype=torch.complex128)
        grid[..., 0] = torch.complex(X, Y)
        with torch.no_grad():
            logdet = M.log_volume_density(grid.reshape(-1, M.n)).reshape(X.shape)
        im = ax.pcolormesh(X.numpy(), Y.numpy(), logdet.numpy(), shading="auto", cmap="viridis")
        fig.colorbar(im, ax=ax, label="log det G (Fisher)")
        ax.scatter(c.real, c.imag, s=2, c="white", alpha=0.35, label="test codes")
        for k, (line, geo) in enumerate(zip(ex["straight"], ex["geodesic"], strict=True)):
            ax.plot(
                line[:, 0].real, line[:, 0].imag, "w--", lw=1, label="straight" if k == 0 else None
            )
            if torch.isfinite(geo).all():
                ax.plot(
                    geo[:, 0].real,
                    geo[:, 0].imag,
                    "r-",
                    lw=1.4,
                    label="geodesic" if k == 0 else None,
                )
        ax.set_title(f"{variant}: latent volume and paths")
        ax.set_xlabel("Re z₁")
        ax.set_ylabel("Im z₁")
        ax.legend(loc="lower right", fontsize=7)
    _save(plt, fig, path)


def _interpolations(plt, keep, shape, transform, path):
    rows, labels = [], []
    for variant, (model, ex) in keep.items():
        for kind in ("straight", "geodesic"):
            zs = ex[kind][0]
            if not torch.isfinite(zs).all():
                continue
            with torch.no_grad():
                img = from_complex(model.decoder(zs)[0], shape, transform).numpy()
            rows.append(img)
            labels.append(f"{variant} / {kind}")
    fig, axes = plt.subplots(len(rows), 1, figsize=(10, 1.1 * len(rows) + 0.3), squeeze=False)
    for ax, img, lab in zip(axes[:, 0], rows, labels, strict=True):
        ax.imshow(_grid_image(np.clip(img, 0, 1), 1, len(img)), cmap="gray", vmin=0, vmax=1)
        ax.set_ylabel(lab, rotation=0, ha="right", fontsize=8)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle("Decoded interpolations: straight line vs geodesic (same endpoints)")
    _save(plt, fig, path)


def _samples(plt, keep, path):
    """Decoded samples of the baseline model: prior, Fisher volume, surrogate volume."""
    _model, ex = keep["baseline"]
    names = list(ex["images"])
    fig, axes = plt.subplots(1, len(names), figsize=(3.6 * len(names), 3.8), squeeze=False)
    for ax, name in zip(axes[0], names, strict=True):
        ax.imshow(
            _grid_image(np.clip(ex["images"][name][:64], 0, 1), 8, 8), cmap="gray", vmin=0, vmax=1
        )
        ax.set_title(name.replace("_", " "), fontsize=9)
        ax.axis("off")
    fig.suptitle("Decoded samples (baseline model, first seed)")
    _save(plt, fig, path)


def _fidelity(plt, keep, path):
    """Fitted Kähler surrogate vs exact Fisher metric at held-out test codes (baseline)."""
    _model, ex = keep["baseline"]
    M, codes, sur = ex["manifold"], ex["codes"], ex["surrogate"]
    with torch.no_grad():
        exact = M.log_volume_density(codes).numpy()
        approx = KahlerManifold(sur).log_volume_density(codes).detach().numpy()
    fig, ax = plt.subplots(figsize=(4.6, 4.2))
    ax.scatter(exact, approx, s=5, alpha=0.6)
    lo, hi = float(min(exact.min(), approx.min())), float(max(exact.max(), approx.max()))
    ax.plot([lo, hi], [lo, hi], "k--", lw=1)
    ax.set_xlabel("log det G, exact Fisher")
    ax.set_ylabel("log det G, fitted Kähler surrogate")
    ax.set_title("Surrogate fidelity at test codes")
    _save(plt, fig, path)


def _eigenmaps(plt, keep, path):
    """Metric-weighted Laplacian eigenmaps of prior vs volume samples (the paper's Figure 1),
    with `kahlergeom.evaluation.laplacian_eigenmaps` on the baseline's Fisher metric."""
    _model, ex = keep["baseline"]
    M = ex["manifold"]
    names = [k for k in ex["samples"] if k != "surrogate_volume"][:2]
    fig, axes = plt.subplots(1, len(names), figsize=(4.5 * len(names), 4), squeeze=False)
    for ax, name in zip(axes[0], names, strict=True):
        v = laplacian_eigenmaps(ex["samples"][name][:200], M.metric_field)
        ax.scatter(v[:, 0], v[:, 1], s=6)
        ax.set_title(f"{name.replace('_', ' ')} samples")
        ax.set_xlabel("v₁")
        ax.set_ylabel("v₂")
    fig.suptitle("Metric-weighted Laplacian eigenmaps of latent samples")
    _save(plt, fig, path)


def make_figures(cfg, keep, shape):
    """Write all figures under ``cfg.out/figures``; return their paths relative to ``out``."""
    plt = _plt()
    fig_dir = os.path.join(cfg.out, "figures")
    os.makedirs(fig_dir, exist_ok=True)
    paths = {
        "latent_volume": "figures/latent_volume.png",
        "interpolations": "figures/interpolations.png",
        "samples": "figures/samples.png",
        "surrogate_fidelity": "figures/surrogate_fidelity.png",
        "eigenmaps": "figures/eigenmaps.png",
    }
    full = {k: os.path.join(cfg.out, v) for k, v in paths.items()}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _latent_volume(plt, cfg, keep, full["latent_volume"])
        _interpolations(plt, keep, shape, cfg.transform, full["interpolations"])
        _samples(plt, keep, full["samples"])
        _fidelity(plt, keep, full["surrogate_fidelity"])
        _eigenmaps(plt, keep, full["eigenmaps"])
    return paths
