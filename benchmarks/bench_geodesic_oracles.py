"""Benchmark: `dist` on closed-form oracle sets over many seeds (issue 11's correctness target).

For each seed, random pairs (``--pairs``, batched in one call) on four sets whose distance is
known in closed form (docs/conventions.md § Closed forms):

* ``fs``: the Fubini–Study chart of CP^2, points uniform in the ball |z| ≤ 2;
* ``ball``: the complex hyperbolic ball B^2, points uniform in |z| ≤ 0.9;
* ``fs x ball``: the product FS(CP^1) × B^1, FS points up to |z| = 2, ball points up to 0.8;
* ``user``: a user-written potential K = log(1 + |z|²) on C^2 (no closed-form Levi matrix or
  Christoffel symbols: geodesics take its contractions from reverse-mode autograd,
  `kahlergeom.potentials.AutogradChristoffel`), truth Fubini–Study;
* ``user-fs``: `FubiniStudy(2)` (closed forms) on exactly the pairs of ``user``: the time
  ratio of the two is the price of a potential without closed forms.

Each pair is counted as *within 1e-6* (status ``success`` and relative error ≤ 1e-6),
*flagged* (status not ``success``: NaN from ``dist``) or *silently wrong* (``success`` with a
larger error). Issue 11's target: ≥ 95% within 1e-6, the rest flagged, 0 silently wrong.
Run: ``.venv/bin/python benchmarks/bench_geodesic_oracles.py --seeds 10 --pairs 32``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # this checkout's kahlergeom, not another installed one
    sys.path.insert(0, str(ROOT))

from _common import ball_dist, fs_dist  # noqa: E402

import kahlergeom as kg  # noqa: E402
from kahlergeom import geodesics  # noqa: E402
from kahlergeom.potentials import (  # noqa: E402
    ComplexHyperbolic,
    FubiniStudy,
    KahlerPotential,
    Product,
)

C128 = torch.complex128
TOL = 1e-6


class HandWrittenFS(KahlerPotential):
    """A user's potential: K = log(1 + |z|²) written by hand, no closed forms."""

    def __call__(self, z):
        return torch.log1p((z.real**2 + z.imag**2).sum(-1))


def disk_points(P, n, radius, g):
    """P points uniform in the ball |z| ≤ radius of C^n."""
    x = torch.randn(P, n, dtype=C128, generator=g)
    r = radius * torch.rand(P, 1, dtype=torch.float64, generator=g) ** (1 / (2 * n))
    return r * x / torch.linalg.vector_norm(x, dim=-1, keepdim=True)


def oracle_sets(seed: int, P: int, names=("fs", "ball", "fs x ball", "user")):
    """``[(name, manifold, z, w, truth)]`` for one seed (``user`` and ``user-fs``: the same
    pairs, from their own generator)."""
    g = torch.Generator().manual_seed(seed)
    gu = torch.Generator().manual_seed(1000 + seed)
    user_pairs = disk_points(P, 2, 2.0, gu), disk_points(P, 2, 2.0, gu)
    out = []
    for name in names:
        if name == "fs":
            z, w = disk_points(P, 2, 2.0, g), disk_points(P, 2, 2.0, g)
            out.append((name, kg.KahlerManifold(FubiniStudy(2)), z, w, fs_dist(z, w)))
        elif name == "ball":
            z, w = disk_points(P, 2, 0.9, g), disk_points(P, 2, 0.9, g)
            out.append((name, kg.KahlerManifold(ComplexHyperbolic(2)), z, w, ball_dist(z, w)))
        elif name == "fs x ball":
            z1, w1 = disk_points(P, 1, 2.0, g), disk_points(P, 1, 2.0, g)
            zb, wb = disk_points(P, 1, 0.8, g), disk_points(P, 1, 0.8, g)
            M = kg.KahlerManifold(Product([FubiniStudy(1), ComplexHyperbolic(1)]))
            truth = torch.sqrt(fs_dist(z1, w1) ** 2 + ball_dist(zb, wb) ** 2)
            out.append((name, M, torch.cat([z1, zb], -1), torch.cat([w1, wb], -1), truth))
        elif name == "user":
            z, w = user_pairs
            out.append((name, kg.KahlerManifold(HandWrittenFS(2)), z, w, fs_dist(z, w)))
        elif name == "user-fs":
            z, w = user_pairs
            out.append((name, kg.KahlerManifold(FubiniStudy(2)), z, w, fs_dist(z, w)))
        else:
            raise ValueError(f"unknown oracle set {name!r}")
    return out


def classify(r, truth):
    """``(within, flagged, wrong)`` bool masks of a `LogResult` against the truth."""
    ok = r.success
    err = (r.length - truth).abs() / truth
    within = ok & (err <= TOL)
    return within, ~ok, ok & ~(err <= TOL)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=10)
    ap.add_argument("--first-seed", type=int, default=0, help="seeds first .. first + seeds - 1")
    ap.add_argument("--pairs", type=int, default=32)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument(
        "--sets", default="fs,ball,fs x ball,user", help="comma-separated sets (also user-fs)"
    )
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    names = [s.strip() for s in args.sets.split(",")]
    tot = {n: [0, 0, 0, 0, 0.0, 0.0] for n in names}  # within, flagged, wrong, all, time, max err
    for seed in range(args.first_seed, args.first_seed + args.seeds):
        for name, M, z, w, truth in oracle_sets(seed, args.pairs, names):
            t0 = time.perf_counter()
            r = geodesics.solve_log(M, z, w)
            dt = time.perf_counter() - t0
            within, flagged, wrong = classify(r, truth)
            err = ((r.length - truth).abs() / truth)[r.success]
            row = tot[name]
            row[0] += int(within.sum())
            row[1] += int(flagged.sum())
            row[2] += int(wrong.sum())
            row[3] += truth.numel()
            row[4] += dt
            row[5] = max(row[5], float(err.max()) if err.numel() else 0.0)
            print(
                f"seed {seed} {name}: within {int(within.sum())}, flagged {int(flagged.sum())} "
                f"{r.reasons}, wrong {int(wrong.sum())}, {dt / truth.numel() * 1e3:.1f} ms/pair",
                flush=True,
            )
    print()
    print(
        f"torch {torch.__version__}, threads {torch.get_num_threads()}, float64, "
        f"seeds {args.first_seed}..{args.first_seed + args.seeds - 1} x {args.pairs} pairs"
    )
    print()
    print(
        "| set | pairs | within 1e-6 | flagged | silently wrong | max rel. err (success) | "
        "time / pair (s) |"
    )
    print("|---|---|---|---|---|---|---|")
    verdict = True
    for name, (wi, fl, wr, al, dt, emax) in tot.items():
        print(
            f"| {name} | {al} | {wi} ({100 * wi / al:.1f}%) | {fl} ({100 * fl / al:.1f}%) | "
            f"{wr} | {emax:.1e} | {dt / al:.3f} |"
        )
        verdict = verdict and wr == 0 and wi >= 0.95 * al
    if "user" in tot and "user-fs" in tot and tot["user-fs"][4] > 0:
        print()
        print(
            "user (reverse-mode contractions) vs user-fs (FubiniStudy closed forms), same "
            f"pairs: {tot['user'][4] / tot['user-fs'][4]:.1f}x the time per pair"
        )
    print()
    print(
        f"issue 11 target (>= 95% within 1e-6 on every set, the rest flagged, 0 silently "
        f"wrong): {'met' if verdict else 'NOT met'}"
    )


if __name__ == "__main__":
    main()
