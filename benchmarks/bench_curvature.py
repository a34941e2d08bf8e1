"""Metric-derivative kernels of ``kahlergeom.curvature`` against a plain column loop.

Kernels (each differentiates a batched metric field G(z), (N, n) → (N, n, n)):

* ``christoffel``: Γ^l_ab = Σ_m g^{l m̄} ∂_a g_{b m̄} (first derivatives of G).
  library: ``kahler_christoffel`` (``torch.func.vmap`` over points of ``jacfwd``).
  column: a Python loop over the 2n real directions e_j, each a forward-mode derivative of the
  metric field on the whole batch (``torch.func.jvp``), then the same solve.
* ``ricci``: Ric = −∂∂̄ log det G (second derivatives of log det G).
  library: ``ricci`` (the batched engine of ``kahlergeom.ddbar`` on −log det G).
  vmap: the per-point engine (``ddbar(..., batched=False)``), the library's path before.
  column: one batched reverse-mode gradient with ``create_graph=True``, then a loop over its 2n
  components, each differentiated again (as ``bench_ddbar.py``'s column loop).
* ``riemann``: R_{a b̄ c d̄} (second derivatives of G).
  library: ``riemann`` (vmap over points of ``jacfwd(jacfwd)``).
  column: a loop over pairs of real directions (i ≤ j), each a nested ``torch.func.jvp`` of the
  metric field on the whole batch.

Metric fields: ``fubini-study`` (the closed-form Levi matrix of ``FubiniStudy``) and
``fubini-study-autodiff`` (the same potential without closed forms, so G itself comes from
``ddbar`` and the kernels take third or fourth derivatives of K). Every method is checked
against the closed forms (Γ from the library on the closed-form field, Ric = (n+1) G,
R = g⊗g + g⊗g swapped) before timing; the script stops if they disagree.

Run from the repository root::

    .venv/bin/python benchmarks/bench_curvature.py --quick
    .venv/bin/python benchmarks/bench_curvature.py --n 1 2 4 8 --N 1000 --threads 1
"""

from __future__ import annotations

import argparse
import sys
import time

import torch
from _common import (
    format_ratio,
    format_seconds,
    load_average,
    machine_info,
    markdown_table,
    setup_torch,
    time_interleaved,
    write_text,
)
from torch.func import jvp

import kahlergeom as kg
from kahlergeom.curvature import kahler_christoffel, ricci, riemann
from kahlergeom.potentials import FubiniStudy, KahlerPotential

KERNELS = ("christoffel", "ricci", "riemann")
FIELDS = ("fubini-study", "fubini-study-autodiff")
TOLERANCE = 1e-9  # max |Δ| / max(1, max |reference|), float64
SEED = 0


class FubiniStudyAutodiff(KahlerPotential):
    """log(1 + |z|²) with no closed forms: the metric is differentiated by ddbar."""

    def __call__(self, z):
        return torch.log1p((z.real**2 + z.imag**2).sum(-1))


def metric_field(field: str, n: int):
    pot = FubiniStudy(n) if field == "fubini-study" else FubiniStudyAutodiff(n)
    return kg.KahlerManifold(pot).metric_field


def _split_levi(dx: torch.Tensor, dy: torch.Tensor) -> torch.Tensor:
    """∂ = ½(∂x − i∂y) of derivatives stacked on the last axis."""
    return 0.5 * (dx - 1j * dy)


# ----------------------------------------------------------------------------- baselines


def christoffel_column(metric_fn, z: torch.Tensor) -> torch.Tensor:
    """Loop over the 2n real directions, each one ``torch.func.jvp`` on the whole batch."""
    n = z.shape[-1]
    G = metric_fn(z)
    dx, dy = [], []
    for a in range(n):
        t = torch.zeros_like(z)
        t[:, a] = 1
        dx.append(jvp(metric_fn, (z,), (t,))[1])
        dy.append(jvp(metric_fn, (z,), (1j * t,))[1])
    dG = _split_levi(torch.stack(dx, -1), torch.stack(dy, -1))  # [k, b, m, a] = ∂_a g_{b m̄}
    rhs = dG.permute(0, 2, 3, 1).reshape(z.shape[0], n, n * n)  # [k, m, (a, b)]
    return torch.linalg.solve(G.transpose(-1, -2), rhs).reshape(-1, n, n, n)


def ricci_column(metric_fn, z: torch.Tensor) -> torch.Tensor:
    """Batched gradient of −log det G, then a loop over its 2n components (reverse mode)."""
    n = z.shape[-1]
    u = torch.cat([z.real, z.imag], -1).detach().requires_grad_(True)
    G = metric_fn(torch.complex(u[:, :n], u[:, n:]))
    k = -2 * torch.log(torch.linalg.cholesky(G).diagonal(dim1=-2, dim2=-1).real).sum(-1)
    (g,) = torch.autograd.grad(k.sum(), u, create_graph=True)
    rows = [torch.autograd.grad(g[:, i].sum(), u, retain_graph=True)[0] for i in range(2 * n)]
    H = torch.stack(rows, 1)
    H = 0.5 * (H + H.transpose(-1, -2))
    kxx, kyy, kxy = H[:, :n, :n], H[:, n:, n:], H[:, :n, n:]
    return 0.25 * torch.complex(kxx + kyy, kxy - kxy.transpose(-1, -2))


def ricci_vmap(metric_fn, z: torch.Tensor) -> torch.Tensor:
    """The per-point engine on −log det G (the library's path before the batched engine)."""
    from kahlergeom._linalg import hermitian_logdet

    return kg.ddbar(lambda w: -hermitian_logdet(metric_fn(w)), z, batched=False)


def riemann_column(metric_fn, z: torch.Tensor) -> torch.Tensor:
    """Loop over pairs of real directions i ≤ j: nested jvp of G on the whole batch."""
    n = z.shape[-1]
    dirs = []
    for a in range(n):
        t = torch.zeros_like(z)
        t[:, a] = 1
        dirs.append(t)
    dirs += [1j * t for t in dirs]  # real directions x_1..x_n, y_1..y_n as complex tangents
    G = metric_fn(z)

    def d1(i):
        return lambda w: jvp(metric_fn, (w,), (dirs[i],))[1]

    J = [d1(i)(z) for i in range(2 * n)]
    Hs = [[None] * (2 * n) for _ in range(2 * n)]
    for i in range(2 * n):
        for j in range(i, 2 * n):
            Hs[i][j] = Hs[j][i] = jvp(d1(i), (z,), (dirs[j],))[1]
    J = torch.stack(J, -1)  # [k, a, b, i]
    H = torch.stack([torch.stack(row, -1) for row in Hs], -2)  # [k, a, b, i, j]
    dG = _split_levi(J[..., :n], J[..., n:])  # ∂_c g_ab̄
    dbarG = 0.5 * (J[..., :n] + 1j * J[..., n:])  # ∂̄_d g_ab̄
    hxx, hyy, hxy = H[..., :n, :n], H[..., n:, n:], H[..., :n, n:]
    ddbarG = 0.25 * ((hxx + hyy) + 1j * (hxy - hxy.transpose(-1, -2)))
    quad = torch.einsum("pkm,pakc,pmbd->pabcd", torch.linalg.inv(G), dG, dbarG)
    return -ddbarG + quad


# ----------------------------------------------------------------------------- checks


def fs_riemann(G: torch.Tensor) -> torch.Tensor:
    return torch.einsum("...ab,...cd->...abcd", G, G) + torch.einsum("...ad,...cb->...abcd", G, G)


def methods(kernel: str, metric_fn, z: torch.Tensor) -> dict:
    if kernel == "christoffel":
        return {
            "library": lambda: kahler_christoffel(metric_fn, z),
            "column": lambda: christoffel_column(metric_fn, z),
        }
    if kernel == "ricci":
        return {
            "library": lambda: ricci(metric_fn, z),
            "vmap": lambda: ricci_vmap(metric_fn, z),
            "column": lambda: ricci_column(metric_fn, z),
        }
    return {
        "library": lambda: riemann(metric_fn, z),
        "column": lambda: riemann_column(metric_fn, z),
    }


def reference(kernel: str, n: int, z: torch.Tensor) -> torch.Tensor:
    M = kg.KahlerManifold(FubiniStudy(n))
    G = M.metric(z)
    if kernel == "christoffel":
        return kahler_christoffel(M.metric_field, z)
    if kernel == "ricci":
        return (n + 1) * G
    return fs_riemann(G)


def relative_error(x: torch.Tensor, ref: torch.Tensor) -> float:
    return (x - ref).abs().max().item() / max(1.0, ref.abs().max().item())


def run_row(args, kernel: str, field: str, n: int, N: int) -> dict:
    gen = torch.Generator().manual_seed(SEED + 1000 * n)
    z = torch.randn(N, n, dtype=torch.complex128, generator=gen)
    metric_fn = metric_field(field, n)
    fns = methods(kernel, metric_fn, z)
    ref = reference(kernel, n, z)
    errors = {name: relative_error(fn(), ref) for name, fn in fns.items()}  # also the warm-up
    bad = {k: v for k, v in errors.items() if not v <= TOLERANCE}
    if bad:
        raise AssertionError(f"{kernel} on {field}, n={n}, N={N}: wrong answers {bad}.")
    timings = time_interleaved(fns, repeats=args.repeats)
    return dict(kernel=kernel, field=field, n=n, N=N, timings=timings, max_err=max(errors.values()))


HEADERS = ["kernel", "metric field", "n", "N", "library", "vmap", "column", "column / library",
           "vmap / library", "max rel. err"]  # fmt: skip


def row_cells(row: dict) -> list:
    t = row["timings"]
    lib = t["library"].seconds
    vmap = t.get("vmap")
    return [
        row["kernel"],
        row["field"],
        row["n"],
        row["N"],
        format_seconds(lib),
        format_seconds(vmap.seconds) if vmap else "–",
        format_seconds(t["column"].seconds),
        format_ratio(t["column"].seconds / lib),
        format_ratio(vmap.seconds / lib) if vmap else "–",
        f"{row['max_err']:.1e}",
    ]


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        description="Benchmark kahlergeom.curvature's kernels against a column loop.",
        allow_abbrev=False,
    )
    p.add_argument("--quick", action="store_true", help="tiny grid for smoke tests (seconds)")
    p.add_argument("--kernels", nargs="+", choices=KERNELS, default=list(KERNELS))
    p.add_argument("--fields", nargs="+", choices=FIELDS, default=list(FIELDS))
    p.add_argument("--n", dest="ns", type=int, nargs="+", default=[1, 2, 4, 8])
    p.add_argument("--N", dest="Ns", type=int, nargs="+", default=[1000])
    p.add_argument("--repeats", type=int, default=3, help="interleaved timing rounds (best kept)")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: all cores)")
    p.add_argument("--out", help="also write the report (Markdown) to this path")
    args = p.parse_args(argv)
    if args.quick:
        args.ns, args.Ns, args.repeats = [2], [32], 1
    for name in ("repeats", "threads"):
        value = getattr(args, name)
        if value is not None and value < 1:
            p.error(f"--{name} must be >= 1; got {value}.")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    start = time.perf_counter()
    setup_torch(args.threads)
    header = machine_info("cpu")
    rows = []
    for kernel in args.kernels:
        for field in args.fields:
            for n in args.ns:
                for N in args.Ns:
                    t0 = time.perf_counter()
                    rows.append(run_row(args, kernel, field, n, N))
                    print(
                        f"[bench_curvature] {kernel} {field} n={n} N={N} "
                        f"done in {time.perf_counter() - t0:.1f} s",
                        file=sys.stderr,
                        flush=True,
                    )
    lines = [
        "# curvature benchmark: metric-derivative kernels vs a column loop",
        "",
        *[f"- {h}" for h in header],
        "- float64 (points complex128); time: best of "
        f"{args.repeats} interleaved rounds after a warm-up call that is also checked against "
        f"the closed forms (tolerance {TOLERANCE:g} relative to max(1, max |reference|))",
        "- library = kahlergeom.curvature; vmap = the per-point ∂∂̄ engine (ricci only); "
        "column = loop over real directions, batched over points (see the module docstring)",
        "",
        markdown_table(HEADERS, [row_cells(r) for r in rows]),
        "",
        f"load average (1/5/15 min) at end: {load_average()}; "
        f"total runtime {time.perf_counter() - start:.0f} s",
    ]
    report = "\n".join(lines)
    print(report)
    write_text(args.out, report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
