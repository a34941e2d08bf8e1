"""Geodesic vs straight line between two codes of a decoder's Fisher latent (n = 1).

Run: .venv/bin/python examples/geodesics_on_decoder.py [--out PATH] [--quick]

Trains a tiny complex VAE (one complex latent dimension) on the bundled 8×8 digits for a few
epochs, takes the Fisher metric of its decoder (`kahlergeom.FisherManifold`), and draws the
geodesic between the mean codes of two digit classes over a heatmap of log det G. The
geodesic bends towards where the metric is small; its length is shorter than the straight
line's (both measured with the Fisher metric).
"""

import time

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402
from _common import digits, parse_args, save, train_vae  # noqa: E402

import kahlergeom as kg  # noqa: E402


def curve_length(M, pts):
    """Fisher length of a polyline (midpoint rule)."""
    mid = 0.5 * (pts[1:] + pts[:-1])
    return M.norm(mid, pts[1:] - pts[:-1]).sum()


def main() -> None:
    args = parse_args("geodesics_on_decoder", __doc__)
    x, labels = digits(300 if args.quick else None)
    model, _ = train_vae(x, 1, 1 if args.quick else 8, seed=args.seed)
    M = kg.FisherManifold(model.decoder, n=1)

    with torch.no_grad():
        codes = model.encode(x).mean
    a, b = (codes[labels == c].mean(0) for c in (0, 1))

    t = time.perf_counter()
    r = kg.geodesics.solve_log(M, a[None], b[None])  # one boundary solve: velocity, length
    geo = kg.geodesics.sample_geodesic(M, a[None], r.velocity, 40)[0][0]
    d = r.length[0]
    line = a + torch.linspace(0, 1, 40, dtype=torch.float64)[:, None] * (b - a)
    print(f"geodesic solve: {time.perf_counter() - t:.1f} s, converged: {bool(r.converged[0])}")
    print(f"Fisher distance (geodesic): {d.item():.4f}")
    print(f"Fisher length of the geodesic polyline: {curve_length(M, geo).item():.4f}")
    print(f"Fisher length of the straight line:     {curve_length(M, line).item():.4f}")

    k = 25 if args.quick else 80
    pts = torch.cat([codes, geo, line])
    lo, hi = pts.real.min().item(), pts.real.max().item()
    lo2, hi2 = pts.imag.min().item(), pts.imag.max().item()
    pad = 0.3 * max(hi - lo, hi2 - lo2)
    xs = torch.linspace(lo - pad, hi + pad, k, dtype=torch.float64)
    ys = torch.linspace(lo2 - pad, hi2 + pad, k, dtype=torch.float64)
    grid = torch.complex(xs[None, :].expand(k, k), ys[:, None].expand(k, k))
    logdet = M.log_volume_density(grid.reshape(-1, 1)).reshape(k, k)

    fig, ax = plt.subplots(figsize=(6, 5))
    im = ax.pcolormesh(xs, ys, logdet.detach(), shading="auto", cmap="viridis")
    fig.colorbar(im, ax=ax, label="log det G")
    for c in range(10):
        sel = codes[labels == c]
        ax.scatter(sel.real[:, 0], sel.imag[:, 0], s=3, alpha=0.4, color="w")
    ax.plot(line.real[:, 0], line.imag[:, 0], "--", color="orange", label="straight line")
    ax.plot(
        geo.real[:, 0],
        geo.imag[:, 0],
        "-",
        color="red",
        lw=2,
        label=f"geodesic (d = {d.item():.2f})",
    )
    ax.set_xlabel("Re z")
    ax.set_ylabel("Im z")
    ax.set_title("Fisher geodesic between the mean codes of digits 0 and 1")
    ax.legend(loc="lower right")
    save(fig, args.out)


if __name__ == "__main__":
    main()
