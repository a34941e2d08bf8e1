"""Shared helpers of the example scripts (argument parsing, a tiny VAE on the bundled digits)."""

from __future__ import annotations

import argparse
import os
import time

import torch

FIGURES = os.path.join(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "docs", "figures", "examples"
)


def parse_args(name: str, doc: str) -> argparse.Namespace:
    """``--out`` (default docs/figures/examples/<name>.png), ``--quick``, ``--seed``."""
    p = argparse.ArgumentParser(description=doc.splitlines()[0])
    p.add_argument("--out", default=os.path.join(FIGURES, f"{name}.png"), help="PNG path")
    p.add_argument("--quick", action="store_true", help="tiny sizes (smoke test)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(args.seed)
    return args


def save(fig, path: str) -> None:
    os.makedirs(os.path.dirname(os.path.abspath(path)) or ".", exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    print(f"figure: {path}")


def digits(n_images: int | None = None):
    """Bundled 8×8 digits as complex vectors (N, 64) complex128, and their labels."""
    import kahlergeom as kg

    data = kg.data.load_digits()
    x = kg.data.to_complex(data.images, dtype=torch.complex128)
    labels = torch.as_tensor(data.labels)
    if n_images is not None:
        x, labels = x[:n_images], labels[:n_images]
    return x, labels


def train_vae(x, latent_dim: int, epochs: int, *, seed: int = 0, regulariser=None, hidden=(32,)):
    """A small ComplexVAE (complex128, learned per-output variance) trained on ``x``."""
    import kahlergeom as kg

    torch.manual_seed(seed)
    model = kg.vae.ComplexVAE(x.shape[1], latent_dim, hidden=hidden, dtype=torch.complex128)
    cfg = kg.vae.TrainConfig(
        epochs=epochs, batch_size=64, lr=5e-3, seed=seed, regulariser=regulariser, progress=False
    )
    t = time.perf_counter()
    history = kg.vae.Trainer(model, x, cfg).fit()
    print(
        f"trained ComplexVAE(n={latent_dim}) for {epochs} epochs in "
        f"{time.perf_counter() - t:.1f} s; final ELBO {history.elbo[-1]:.1f}"
    )
    return model.eval().requires_grad_(False), history
