"""Geodesics and curvature on the Fubini–Study chart and the complex hyperbolic disk (n = 1).

Run: .venv/bin/python examples/fubini_study_and_ball.py [--out PATH] [--quick]

For both classical geometries it solves geodesics between random pairs with kahlergeom's
boundary solver and prints them against the closed-form distances, checks the exponential map
at 0 against tan|v| v/|v| (sphere) and tanh|v| v/|v| (disk), and the holomorphic sectional
curvature against ±2 (Gaussian curvature ±4). The figure shows geodesics from 0 and between
random pairs on both charts.
"""

import math

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402
from _common import parse_args, save  # noqa: E402

import kahlergeom as kg  # noqa: E402


def fs_dist(z, w):
    num = (1 + (z.conj() * w).sum(-1)).abs()
    den = torch.sqrt((1 + z.abs().square().sum(-1)) * (1 + w.abs().square().sum(-1)))
    return torch.arccos((num / den).clamp(max=1.0))


def ball_dist(z, w):
    a = (1 - z.abs().square().sum(-1)) * (1 - w.abs().square().sum(-1))
    b = (1 - (z.conj() * w).sum(-1)).abs().square()
    return torch.atanh(torch.sqrt(1 - a / b))


def main() -> None:
    args = parse_args("fubini_study_and_ball", __doc__)
    g = torch.Generator().manual_seed(args.seed)
    n_pairs = 2 if args.quick else 6
    cases = [
        ("Fubini–Study chart of CP¹", kg.potentials.FubiniStudy(1), fs_dist, math.tan, 2.0, 1.5),
        (
            "Poincaré disk (ball, n = 1)",
            kg.potentials.ComplexHyperbolic(1),
            ball_dist,
            math.tanh,
            -2.0,
            0.85,
        ),
    ]
    fig, axes = plt.subplots(1, 2, figsize=(11, 5))
    for ax, (title, potential, closed, radial, H_expected, R) in zip(axes, cases, strict=True):
        M = kg.KahlerManifold(potential)
        print(title)
        # pairs inside radius R
        r = (
            R
            * (0.5 if args.quick else 1.0)
            * torch.rand(2, n_pairs, 1, generator=g, dtype=torch.float64).sqrt()
        )
        phase = torch.exp(
            2j * math.pi * torch.rand(2, n_pairs, 1, generator=g, dtype=torch.float64)
        )
        z, w = r * phase
        res = kg.geodesics.solve_log(M, z, w)
        err = (res.length - closed(z, w)).abs().max().item()
        print(f"  {n_pairs} pairs: max |d_solver - d_closed form| = {err:.1e}")
        curves = kg.geodesics.sample_geodesic(M, z, res.velocity, 50)[0]
        # exp at 0 vs closed form
        v = torch.tensor([[0.6 - 0.3j]], dtype=torch.complex128)
        nv = v.abs().item()
        e_err = (M.exp(torch.zeros_like(v), v) - radial(nv) * v / nv).abs().max().item()
        print(f"  exp_0(v) vs closed form: {e_err:.1e}")
        H = M.holomorphic_sectional_curvature(z, torch.ones_like(z))
        print(
            f"  holomorphic sectional curvature: {H.min().item():.6f} .. "
            f"{H.max().item():.6f} (expected {H_expected:+.0f}; Gaussian curvature "
            f"{2 * H_expected:+.0f})"
        )
        # spokes from 0
        angles = torch.linspace(0, 2 * math.pi, 13 if not args.quick else 5)[:-1]
        v0 = (
            0.9
            * torch.exp(1j * angles.to(torch.float64))[:, None]
            * (1.2 if H_expected > 0 else 1.5)
        )
        spokes = kg.geodesics.sample_geodesic(M, torch.zeros_like(v0), v0, 40)[0]
        for s in spokes:
            ax.plot(s.real[:, 0], s.imag[:, 0], color="0.6", lw=0.8)
        for c, a, b in zip(curves, z, w, strict=True):
            ax.plot(c.real[:, 0], c.imag[:, 0], lw=2)
            ax.plot([a.real[0], b.real[0]], [a.imag[0], b.imag[0]], "k:", lw=0.8)
        if H_expected < 0:
            t = torch.linspace(0, 2 * math.pi, 200)
            ax.plot(torch.cos(t), torch.sin(t), "k-", lw=1)
        ax.set_aspect("equal")
        ax.set_title(f"{title}\nmax distance error {err:.0e}")
        ax.set_xlabel("Re z")
        ax.set_ylabel("Im z")
    fig.suptitle(
        "geodesics (colour), straight chords (dotted), geodesic spokes from 0 (grey)", y=1.03
    )
    save(fig, args.out)


if __name__ == "__main__":
    main()
