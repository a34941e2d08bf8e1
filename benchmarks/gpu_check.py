"""GPU check: the same computations on the CPU and on CUDA agree, and what CUDA costs.

Each row runs one public entry point on the CPU and on the GPU with the same inputs and
reports the largest relative difference and both times (best of ``--repeats`` after a warm-up;
CUDA timed with synchronisation). Run on a machine with a GPU:

    PYTHONPATH=. python benchmarks/gpu_check.py

Rows: Levi matrices (`ddbar`) of Fubini–Study, the exact Fisher field of an MLP decoder
(n = 8, D = 784, float32 and float64), the fitted Kähler surrogate's metric, geodesic
distances on Fubini–Study (``--geodesics``), and log volume densities.
"""

from __future__ import annotations

import argparse
import time

import torch

import kahlergeom as kg


def _timed(fn, device, repeats):
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    best = float("inf")
    out = None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - t0)
    return out, best


def _rel(a, b):
    a, b = a.detach().cpu(), b.detach().cpu().to(a.dtype)
    return float((a - b).abs().max() / b.abs().max().clamp_min(1e-300))


def _decoder(n, D, H, dtype, device, seed=0):
    g = torch.Generator().manual_seed(seed)
    real = torch.float32 if dtype == torch.complex64 else torch.float64
    W1 = (torch.randn(2 * n, H, generator=g, dtype=real) / (2 * n) ** 0.5).to(device)
    W2 = (torch.randn(H, 2 * D, generator=g, dtype=real) / H**0.5).to(device)

    def decoder(z):
        h = torch.tanh(torch.cat([z.real, z.imag], -1) @ W1)
        out = h @ W2
        return torch.complex(out[..., :D], out[..., D:]), torch.ones((), dtype=real, device=device)

    return decoder


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--N", type=int, default=1024)
    ap.add_argument("--geodesics", action="store_true", help="also time dist (slow on CUDA)")
    args = ap.parse_args(argv)
    if not torch.cuda.is_available():
        print("no CUDA device: nothing to check")
        return 0
    cpu, gpu = torch.device("cpu"), torch.device("cuda")
    rows = []

    def row(name, make, repeats=args.repeats):
        out_c, t_c = _timed(lambda: make(cpu), cpu, repeats)
        out_g, t_g = _timed(lambda: make(gpu), gpu, repeats)
        rows.append((name, _rel(out_g, out_c), t_c, t_g))

    g = torch.Generator().manual_seed(0)
    z8 = torch.randn(args.N, 8, dtype=torch.complex128, generator=g)
    fs = kg.potentials.FubiniStudy(8)
    row("ddbar, Fubini–Study n=8 (float64)", lambda d: kg.ddbar(fs, z8.to(d)))
    for dtype in (torch.complex64, torch.complex128):
        name = "float32" if dtype == torch.complex64 else "float64"

        def fisher(d, dtype=dtype):
            M = kg.FisherManifold(_decoder(8, 784, 256, dtype, d), n=8)
            return M.metric(z8.to(device=d, dtype=dtype))

        row(f"Fisher field, MLP C^8 -> C^784 ({name})", fisher)
    from kahlergeom.surrogates import fit_kahler

    M_cpu = kg.FisherManifold(_decoder(8, 784, 256, torch.complex128, cpu), n=8)
    G = M_cpu.metric(z8[:512])
    fit = fit_kahler(z8[:512], G, seed=0, steps=200, progress=False)
    pot = fit.potential
    row("fitted surrogate metric (closed-form levi)", lambda d: pot.levi(z8.to(d)))
    row(
        "log volume density, Fubini–Study n=8",
        lambda d: kg.KahlerManifold(fs).log_volume_density(z8.to(d)),
    )
    if args.geodesics:
        z2 = torch.randn(32, 2, dtype=torch.complex128, generator=g)
        w2 = torch.randn(32, 2, dtype=torch.complex128, generator=g)
        MF = kg.KahlerManifold(kg.potentials.FubiniStudy(2))
        row("dist, Fubini–Study CP^2, 32 pairs", lambda d: MF.dist(z2.to(d), w2.to(d)), repeats=1)

    print("| check | max rel. diff GPU vs CPU | CPU time | GPU time | CPU / GPU |")
    print("|---|---|---|---|---|")
    for name, diff, tc, tg in rows:
        print(f"| {name} | {diff:.1e} | {tc * 1e3:.1f} ms | {tg * 1e3:.1f} ms | {tc / tg:.1f}× |")
    print(f"torch {torch.__version__}, {torch.cuda.get_device_name()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
