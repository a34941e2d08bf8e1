"""Figures of the demo report (matplotlib, Agg backend)."""

from __future__ import annotations

import os
import warnings

import numpy as np
import torch

from kahlergeom.data import from_complex


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


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
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


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
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _samples(plt, keep, path):
    fig, axes = plt.subplots(len(keep), 2, figsize=(7, 3.6 * len(keep)), squeeze=False)
    for row, (variant, (_m, ex)) in zip(axes, keep.items(), strict=True):
        for ax, name in zip(row, ("prior", "volume"), strict=True):
            ax.imshow(
                _grid_image(np.clip(ex["images"][name][:64], 0, 1), 8, 8),
                cmap="gray",
                vmin=0,
                vmax=1,
            )
            ax.set_title(f"{variant}: {name} samples")
            ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _fidelity(plt, keep, x_train, x_test, path):
    """Exact Fisher vs LSE surrogate (from posteriors) vs nearest anchor, on test codes."""
    from kahlergeom.surrogates import (
        NearestAnchorManifold,
        choose_temperature,
        compare_metrics,
        from_posteriors,
    )

    model, ex = keep["baseline"]
    M = ex["manifold"]
    with torch.no_grad():
        q = model.encode(x_train)
        exact = M.metric(ex["codes"]).detach()
    half = exact.shape[0] // 2
    m = min(256, q.mean.shape[0])
    sur = from_posteriors(q.mean, q.covariance, m=m, seed=0)
    choice = choose_temperature(sur, ex["codes"][:half], exact[:half])
    sur = choice.surrogate
    approx = sur.levi(ex["codes"][half:]).detach()
    nearest = NearestAnchorManifold.from_manifold(M, sur.means)
    near = nearest.metric(ex["codes"][half:]).detach()
    fid = {
        "lse_posteriors": compare_metrics(approx, exact[half:]),
        "nearest_anchor": compare_metrics(near, exact[half:]),
    }
    plt_ = plt
    fig, ax = plt_.subplots(figsize=(5.5, 4))
    for name, G in (
        ("exact Fisher", exact[half:]),
        ("LSE surrogate", approx),
        ("nearest anchor", near),
    ):
        v = np.sort(G[:, 0, 0].real.numpy())
        ax.plot(v, np.linspace(0, 1, len(v)), label=name)
    ax.set_xscale("log")
    ax.set_xlabel("Re G[0, 0] at held-out test codes")
    ax.set_ylabel("CDF")
    ax.legend()
    ax.set_title(f"Surrogate fidelity (m = {m}, τ = {choice.temperature:.3g})")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt_.close(fig)
    summary = {
        name: {
            "median_rel_error": f.median_rel_error,
            "p90_rel_error": f.p90_rel_error,
            "spearman_logdet": f.spearman_logdet,
            "psd_rate": f.psd_rate,
        }
        for name, f in fid.items()
    }
    summary["temperature"] = choice.temperature
    summary["components"] = m
    return summary


def _eigenmaps(plt, keep, path, k_neighbours=10):
    """Metric-weighted Laplacian eigenmaps of prior vs volume samples (cf. the paper's Fig. 1).

    Graph on the latent samples: k-NN edges with weights exp(−h_mid(Δz, Δz)/σ²), where h_mid is
    the Fisher metric at the edge midpoint and σ² the median edge value; then the generalised
    eigenproblem L v = λ D v and a plot of (v₁, v₂).
    """
    from scipy.linalg import eigh

    _model, ex = keep.get("regularised", next(iter(keep.values())))
    M = ex["manifold"]
    fig, axes = plt.subplots(1, 2, figsize=(9, 4))
    for ax, name in zip(axes, ("prior_z", "volume_z"), strict=True):
        z = ex[name][:200]
        N = z.shape[0]
        d2 = torch.cdist(torch.view_as_real(z).flatten(1), torch.view_as_real(z).flatten(1)) ** 2
        nbr = d2.argsort(1)[:, 1 : k_neighbours + 1]
        i = torch.arange(N).repeat_interleave(k_neighbours)
        j = nbr.reshape(-1)
        dz = z[j] - z[i]
        with torch.no_grad():
            h = M.inner(0.5 * (z[i] + z[j]), dz, dz).real
        sigma2 = h.median().clamp_min(1e-30)
        W = torch.zeros(N, N, dtype=torch.float64)
        W[i, j] = torch.exp(-h / sigma2)
        W = torch.maximum(W, W.T)
        Dg = W.sum(1)
        L = torch.diag(Dg) - W
        _, vecs = eigh(L.numpy(), np.diag(Dg.numpy()))
        ax.scatter(vecs[:, 1], vecs[:, 2], s=6)
        ax.set_title(f"{'prior' if name == 'prior_z' else 'volume'} samples")
        ax.set_xlabel("v₁")
        ax.set_ylabel("v₂")
    fig.suptitle("Metric-weighted Laplacian eigenmaps of latent samples")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def make_figures(cfg, keep, x_train, x_test, shape):
    """Write all figures under ``cfg.out/figures``; return (paths, surrogate fidelity)."""
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
        fidelity = _fidelity(plt, keep, x_train, x_test, full["surrogate_fidelity"])
        _eigenmaps(plt, keep, full["eigenmaps"])
    return paths, fidelity
