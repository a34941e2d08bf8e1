"""Volume-weighted sampling: Fubini–Study (exact law) and a decoder's Fisher latent.

Run: .venv/bin/python examples/volume_sampling.py [--out PATH] [--quick]

`kahlergeom.sampling.sample_volume` draws z with density ∝ det G(z). On the Fubini–Study chart
of CP¹ (n = 1) the normalised density is det G / π and P(|z| ≤ r) = r²/(1+r²): the variable
t = |z|²/(1+|z|²) is exactly uniform on [0, 1]. The left panel compares the histogram of t with
that law (Kolmogorov–Smirnov distance printed). The right panel samples a random-weight
decoder's Fisher volume times a standard complex normal prior, over a log det G heatmap.
"""

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402
from _common import parse_args, save  # noqa: E402

import kahlergeom as kg  # noqa: E402


def random_decoder(seed: int, D: int = 16):
    """mean = a z + c (b z + d)² with random complex weights (n = 1), unit variance.

    A holomorphic polynomial: no poles (complex tanh has some), so det G grows only
    polynomially and the Gaussian prior keeps the target normalisable."""
    g = torch.Generator().manual_seed(seed)
    a, b, c, d = (torch.randn(4, D, dtype=torch.complex128, generator=g) / D**0.5).unbind(0)

    def decoder(z):
        mean = a * z + c * (b * z + d) ** 2
        return mean, torch.ones(mean.shape, dtype=torch.float64)

    return decoder


def main() -> None:
    args = parse_args("volume_sampling", __doc__)
    n_samples = 400 if args.quick else 4000

    fs = kg.KahlerManifold(kg.potentials.FubiniStudy(1))
    # Default method: SIR with a heavy-tailed proposal fitted to the target (docs/sampling.md).
    res = kg.sampling.sample_volume(fs, n_samples, seed=args.seed)
    t = (res.samples.abs().square() / (1 + res.samples.abs().square()))[:, 0]
    ts = torch.sort(t).values
    k = torch.arange(1, len(ts) + 1, dtype=ts.dtype) / len(ts)
    ks = torch.maximum((k - ts).abs(), (k - 1 / len(ts) - ts).abs()).max().item()
    print(
        f"Fubini–Study: {len(t)} samples, KS distance of |z|²/(1+|z|²) to U(0,1): {ks:.3f} "
        f"(min ESS {res.min_ess:.0f})"
    )

    M = kg.FisherManifold(random_decoder(args.seed), n=1)
    prior = kg.sampling.ComplexNormal(1)
    res2 = kg.sampling.sample_volume(M, n_samples, log_prior=prior, seed=args.seed)
    s = res2.samples[:, 0]
    print(
        f"decoder: {len(s)} samples, mean |z| = {s.abs().mean().item():.3f}, "
        f"min ESS {res2.min_ess:.0f}"
    )

    fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 4.5))
    a1.hist(
        t.numpy(),
        bins=20 if args.quick else 40,
        range=(0, 1),
        density=True,
        alpha=0.7,
        label="samples",
    )
    a1.axhline(1.0, color="k", lw=2, label="exact law U(0, 1)")
    a1.set_xlabel("|z|² / (1 + |z|²)")
    a1.set_ylabel("density")
    a1.set_title(f"Fubini–Study, density ∝ det G (KS = {ks:.3f})")
    a1.legend()

    k = 25 if args.quick else 80
    xs = torch.linspace(-3, 3, k, dtype=torch.float64)
    grid = torch.complex(xs[None, :].expand(k, k), xs[:, None].expand(k, k))
    logdet = M.log_volume_density(grid.reshape(-1, 1)).reshape(k, k)
    im = a2.pcolormesh(xs, xs, logdet, shading="auto", cmap="viridis")
    fig.colorbar(im, ax=a2, label="log det G")
    a2.scatter(s.real, s.imag, s=2, color="w", alpha=0.5)
    a2.set_xlim(-3, 3)
    a2.set_ylim(-3, 3)
    a2.set_aspect("equal")
    a2.set_title("decoder latent: samples ∝ CN(0,1) · det G")
    a2.set_xlabel("Re z")
    a2.set_ylabel("Im z")
    save(fig, args.out)


if __name__ == "__main__":
    main()
