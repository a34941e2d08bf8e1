"""Batched ∂∂̄ (``kahlergeom.ddbar``) against two baselines that compute the same Levi matrix.

Methods, each returning G[k, a, b] = ∂_a ∂̄_b K(z_k) as an (N, n, n) complex tensor for the same
potential K (differentiated through its ``__call__``; the closed-form ``levi`` is only the
oracle of the correctness check):

* ``batched``: ``kahlergeom.ddbar`` at its defaults. A potential is batched by contract, so this
  is its batched autograd engine: one reverse pass from the complex points for the gradient of
  every point, then the Hessian rows by a fixed rule (the potential's ``ddbar_mode``, n and the
  number of points): one batched reverse pass (``is_grads_batched``) over the 2n unit
  cotangents, a loop of 2n passes, or (n = 1, small calls) one pass over two copies of the
  points (CPU).
* ``vmap``: ``kahlergeom.ddbar(..., batched=False)``, the per-point engine (the default before
  the batched one, and still the one used for functions of one point and inside ``torch.func``
  transforms): ``torch.func.vmap`` over points of ``torch.func.hessian`` in real coordinates
  u = (Re z, Im z).
* ``loop``: a Python loop over points of ``torch.autograd.functional.hessian`` of the real
  function of u ∈ R^{2n} (default options), combined into G.
* ``column``: the column loop of the Calabi–Yau metric codes (cymetric, MLGeometry): one batched
  reverse-mode gradient with ``create_graph=True``, then a Python loop over its 2n components,
  each differentiated again by reverse mode after summing over the batch (reverse-over-reverse,
  batched over points, looped over columns).

All four are checked against each other and against the closed-form Levi matrix before any
timing; the script stops if they disagree.

Run from the repository root::

    .venv/bin/python benchmarks/bench_ddbar.py            # full grid, a few minutes
    .venv/bin/python benchmarks/bench_ddbar.py --quick    # smoke test, seconds
    .venv/bin/python benchmarks/bench_ddbar.py --out /tmp/ddbar_cpu.md

See ``benchmarks/README.md`` for what is measured and how.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import torch
from _common import (
    COMPLEX_OF,
    DTYPES,
    Timing,
    cpu_count,
    cuda_peak_bytes,
    default_device,
    extrapolate,
    format_bytes,
    format_ratio,
    format_seconds,
    load_average,
    machine_info,
    markdown_table,
    measure_rss_in_worker,
    run_worker,
    setup_torch,
    time_interleaved,
    worker_report,
    write_text,
)

import kahlergeom as kg
from kahlergeom.potentials import FubiniStudy, GaussianMixturePotential

METHODS = ("batched", "vmap", "loop", "column")
POTENTIALS = ("fubini-study", "mixture")
HEADLINE = (8, 4096)  # (n, N) of the done criterion
HEADLINE_TARGET = 30.0
TOLERANCE = {torch.float64: 1e-10, torch.float32: 1e-4}  # max |ΔG| / max(1, max |G|)
SEED = 0
MIXTURE_COMPONENTS = 4


# ----------------------------------------------------------------------------- problems


def make_problem(
    potential: str, n: int, N: int, dtype: torch.dtype, device: str
) -> tuple[kg.potentials.KahlerPotential, torch.Tensor]:
    """The potential and N points (seeded, generated on the CPU so every device sees the same)."""
    gen = torch.Generator().manual_seed(SEED + 1000 * n)
    cdtype = COMPLEX_OF[dtype]
    z = torch.randn(N, n, dtype=torch.complex128, generator=gen).to(device=device, dtype=cdtype)
    if potential == "fubini-study":
        return FubiniStudy(n), z
    if potential == "mixture":
        m = MIXTURE_COMPONENTS
        means = torch.randn(m, n, dtype=torch.complex128, generator=gen)
        A = torch.randn(m, n, n, dtype=torch.complex128, generator=gen) / math.sqrt(n)
        precisions = A @ A.mH + 0.5 * torch.eye(n, dtype=torch.complex128)
        weights = torch.rand(m, dtype=torch.float64, generator=gen) + 0.5
        K = GaussianMixturePotential(
            means.to(device=device, dtype=cdtype),
            precisions.to(device=device, dtype=cdtype),
            weights.to(device=device, dtype=dtype),
            temperature=2.0,
        )
        return K, z
    raise ValueError(f"potential must be one of {POTENTIALS}; got {potential!r}.")


# ----------------------------------------------------------------------------- methods


def levi_from_real_hessian(H: torch.Tensor) -> torch.Tensor:
    """G = ¼[(K_xx + K_yy) + i(K_xy − K_xyᵀ)] from the real Hessian (..., 2n, 2n).

    Written out here (not imported from kahlergeom) so that the baselines share no code with
    the method they are compared against.
    """
    n = H.shape[-1] // 2
    kxx, kyy, kxy = H[..., :n, :n], H[..., n:, n:], H[..., :n, n:]
    return 0.25 * torch.complex(kxx + kyy, kxy - kxy.transpose(-1, -2))


def levi_batched(K, z: torch.Tensor, chunk_size: int | None = None) -> torch.Tensor:
    """(a) kahlergeom.ddbar: vmap of torch.func.hessian over the points."""
    return kg.ddbar(K, z, chunk_size=chunk_size)


def levi_vmap(K, z: torch.Tensor, chunk_size: int | None = None) -> torch.Tensor:
    """(a') kahlergeom.ddbar's per-point engine: vmap of torch.func.hessian over the points."""
    return kg.ddbar(K, z, chunk_size=chunk_size, batched=False)


def levi_loop(K, z: torch.Tensor) -> torch.Tensor:
    """(b) per-point loop of torch.autograd.functional.hessian in real coordinates."""
    n = z.shape[-1]

    def f(u: torch.Tensor) -> torch.Tensor:
        return K(torch.complex(u[:n], u[n:]))

    us = torch.cat([z.real, z.imag], dim=-1)
    H = torch.stack([torch.autograd.functional.hessian(f, u) for u in us])
    return levi_from_real_hessian(H)


def levi_column(K, z: torch.Tensor) -> torch.Tensor:
    """(c) Calabi–Yau-code style: batched gradient, then a loop over its 2n columns."""
    n = z.shape[-1]
    u = torch.cat([z.real, z.imag], dim=-1).detach().requires_grad_(True)
    k = K(torch.complex(u[:, :n], u[:, n:]))
    (g,) = torch.autograd.grad(k.sum(), u, create_graph=True)
    # Points are independent, so the gradient of a column summed over the batch is, per point,
    # one row of that point's Hessian: H[:, i, :] = ∂(∂K/∂u_i)/∂u.
    rows = [torch.autograd.grad(g[:, i].sum(), u, retain_graph=True)[0] for i in range(2 * n)]
    return levi_from_real_hessian(torch.stack(rows, dim=1))


def method_fns(K, z: torch.Tensor, loop_points: int, chunk_size: int | None) -> dict:
    """The four methods as zero-argument callables (the loop runs on the first points only)."""
    return {
        "batched": lambda: levi_batched(K, z, chunk_size),
        "vmap": lambda: levi_vmap(K, z, chunk_size),
        "loop": lambda: levi_loop(K, z[:loop_points]),
        "column": lambda: levi_column(K, z),
    }


def relative_error(G: torch.Tensor, G_ref: torch.Tensor) -> float:
    scale = max(1.0, G_ref.abs().max().item())
    return (G - G_ref).abs().max().item() / scale


def check_agreement(K, z: torch.Tensor, results: dict, loop_points: int, tol: float) -> float:
    """Every method against the batched one, and the batched one against the closed form."""
    ref = results["batched"]
    errors = {
        "batched vs closed-form K.levi": relative_error(ref, K.levi(z)),
        "column vs batched": relative_error(results["column"], ref),
        "vmap vs batched": relative_error(results["vmap"], ref),
        f"loop vs batched (first {loop_points} points)": relative_error(
            results["loop"], ref[:loop_points]
        ),
    }
    bad = {k: v for k, v in errors.items() if not v <= tol}
    if bad:
        raise AssertionError(
            f"methods disagree for {K!r} at N = {z.shape[0]}: "
            + ", ".join(f"{k}: {v:.3g}" for k, v in bad.items())
            + f" (tolerance {tol:g} relative to max(1, max |G|)). Not timing wrong answers."
        )
    return max(errors.values())


# ----------------------------------------------------------------------------- one row


def worker_args(args, method: str, potential: str, n: int, N: int) -> list[str]:
    out = [
        "--worker", method,
        "--worker-potential", potential,
        "--worker-n", str(n),
        "--worker-N", str(N),
        "--device", args.device,
        "--dtype", args.dtype,
        "--loop-max-points", str(args.loop_max_points),
    ]  # fmt: skip
    if args.chunk_size is not None:
        out += ["--chunk-size", str(args.chunk_size)]
    if args.threads is not None:
        out += ["--threads", str(args.threads)]
    return out


def run_row(args, potential: str, n: int, N: int) -> dict:
    dtype = DTYPES[args.dtype]
    K, z = make_problem(potential, n, N, dtype, args.device)
    loop_points = min(N, args.loop_max_points)
    fns = method_fns(K, z, loop_points, args.chunk_size)

    # The first call of each method is both its warm-up and the input to the agreement check.
    results = {name: fn() for name, fn in fns.items()}
    max_err = check_agreement(K, z, results, loop_points, TOLERANCE[dtype])
    del results

    # Interleaved rounds (one call of each method per round): ratios survive a shared machine.
    timings: dict[str, Timing] = time_interleaved(fns, repeats=args.repeats, device=args.device)
    if loop_points < N:
        timings["loop"] = extrapolate(timings["loop"], loop_points, N)

    # CUDA: peak memory in-process now. CPU: later, in fresh subprocesses (see measure_cpu_memory).
    memory: dict[str, int | None] = {name: None for name in METHODS}
    if not args.no_memory and args.device.startswith("cuda"):
        memory = {name: cuda_peak_bytes(fn, args.device) for name, fn in fns.items()}
    return dict(
        potential=potential,
        n=n,
        N=N,
        loop_points=loop_points,
        timings=timings,
        memory=memory,
        max_err=max_err,
    )


def measure_cpu_memory(args, rows: list[dict]) -> None:
    """Fill in each row's CPU peak memory, one fresh subprocess per method and row.

    Runs after all timings, so it cannot disturb them; the subprocesses run side by side (one
    per core), which changes how long they take but not their own peak RSS.
    """
    jobs = [(row, name) for row in rows for name in METHODS]

    def measure(job):
        row, name = job
        report = run_worker(__file__, worker_args(args, name, row["potential"], row["n"], row["N"]))
        return report

    with ThreadPoolExecutor(max_workers=cpu_count()) as pool:
        for (row, name), report in zip(jobs, pool.map(measure, jobs), strict=True):
            row["memory"][name] = report["delta_bytes"]
            row["memory_how"] = report["how"]


def worker_main(args) -> None:
    """Inside a fresh process: peak memory of one method on one problem (CPU)."""
    setup_torch(args.threads)
    dtype = DTYPES[args.dtype]
    N = args.worker_N
    K, z = make_problem(args.worker_potential, args.worker_n, N, dtype, args.device)
    loop_points = min(N, args.loop_max_points)
    fn = method_fns(K, z, loop_points, args.chunk_size)[args.worker]
    warm = method_fns(K, z[:2], 2, args.chunk_size)[args.worker]
    worker_report(**measure_rss_in_worker(fn, warmup=warm))


# ----------------------------------------------------------------------------- report


def row_cells(row: dict) -> list[str]:
    t, mem = row["timings"], row["memory"]
    star = "*" if t["loop"].extrapolated else ""
    loop_mem = format_bytes(mem["loop"]) + star if mem["loop"] is not None else "n/a"
    return [
        row["potential"],
        row["n"],
        row["N"],
        format_seconds(t["batched"].seconds),
        format_seconds(t["vmap"].seconds),
        format_seconds(t["loop"].seconds) + star,
        format_seconds(t["column"].seconds),
        format_ratio(t["loop"].seconds / t["batched"].seconds) + star,
        format_ratio(t["column"].seconds / t["batched"].seconds),
        format_ratio(t["column"].seconds / t["vmap"].seconds),
        format_bytes(mem["batched"]),
        format_bytes(mem["vmap"]),
        loop_mem,
        format_bytes(mem["column"]),
        f"{row['max_err']:.1e}",
    ]


HEADERS = [
    "potential",
    "n",
    "N",
    "batched",
    "vmap",
    "loop",
    "column",
    "loop / batched",
    "column / batched",
    "column / vmap",
    "mem batched",
    "mem vmap",
    "mem loop",
    "mem column",
    "max rel. diff",
]


def headline_lines(rows: list[dict], device: str) -> list[str]:
    n, N = HEADLINE
    lines = []
    for row in rows:
        if (row["n"], row["N"]) != HEADLINE:
            continue
        t = row["timings"]
        ratio = t["loop"].seconds / t["batched"].seconds
        verdict = "met" if ratio >= HEADLINE_TARGET else "NOT met"
        how = (
            f"per-point loop timed on {row['loop_points']} points, extrapolated"
            if t["loop"].extrapolated
            else "per-point loop timed on all points"
        )
        lines.append(
            f"n={n}, N={N}: batched is {ratio:.0f}× faster than the per-point loop "
            f"(target ≥ {HEADLINE_TARGET:.0f}×: {verdict}; {row['potential']}, {device}; {how})"
        )
    if not lines:
        lines.append(f"(headline row n={n}, N={N} is not in this grid)")
    return lines


def build_report(args, rows: list[dict], header: list[str], elapsed: float) -> str:
    device = args.device
    memory_note = (
        "not measured (--no-memory)"
        if args.no_memory
        else "torch.cuda.max_memory_allocated during one call, minus what was allocated before"
        if device.startswith("cuda")
        else "one call in a fresh subprocess per method and row, after imports, data creation "
        "and a 2-point warm-up: "
        + "; ".join(sorted({r.get("memory_how", "?") for r in rows}))
        + " (includes the (N, n, n) output; 0 B means the call fit into memory the process "
        "already held)"
    )
    any_extrapolated = any(r["timings"]["loop"].extrapolated for r in rows)
    lines = [
        "# ddbar benchmark: batched ∂∂̄ vs per-point engine vs per-point loop vs column loop",
        "",
        *[f"- {h}" for h in header],
        f"- dtype: {args.dtype} (points {COMPLEX_OF[DTYPES[args.dtype]]}), "
        f"chunk_size: {args.chunk_size}",
        f"- time: best of {args.repeats} interleaved rounds (each method once per round) after a "
        "warm-up call (time.perf_counter"
        + (", CUDA synchronised" if device.startswith("cuda") else "")
        + "); all methods agree to the tolerance before timing "
        f"({TOLERANCE[DTYPES[args.dtype]]:g} relative to max(1, max |G|); the last column is "
        "the largest difference seen, including batched vs the closed-form Levi matrix)",
        f"- peak memory: {memory_note}",
        "- methods: batched = kahlergeom.ddbar (its batched autograd engine: one gradient from "
        "the complex points, then the 2n Hessian rows by a fixed rule: one is_grads_batched "
        "reverse pass, a loop of 2n passes, or for n = 1 one pass over two copies of a small "
        "block); vmap = "
        "kahlergeom.ddbar(batched=False) (vmap of torch.func.hessian); loop = Python loop "
        "of torch.autograd.functional.hessian per point; column = one batched gradient with "
        "create_graph, then a loop over its 2n components (cymetric / MLGeometry style)",
        "",
        markdown_table(HEADERS, [row_cells(r) for r in rows]),
        "",
    ]
    if any_extrapolated:
        lines.append(
            f"\\* extrapolated: the per-point loop was timed on the first "
            f"{args.loop_max_points} points and scaled linearly to N (its cost is the same for "
            "every point)"
            + ("; its peak memory is that of the subset run." if not args.no_memory else ".")
        )
        lines.append("")
    lines += headline_lines(rows, device)
    lines += [
        "",
        f"load average (1/5/15 min) at end: {load_average()}; total runtime {elapsed:.0f} s",
    ]
    return "\n".join(lines)


# ----------------------------------------------------------------------------- main


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        description="Benchmark kahlergeom.ddbar against its per-point engine, a per-point loop "
        "and a column loop.",
        allow_abbrev=False,
    )
    p.add_argument("--quick", action="store_true", help="tiny grid for smoke tests (seconds)")
    p.add_argument(
        "--device", default=default_device(), help="cpu or cuda (default: cuda if available)"
    )
    p.add_argument("--dtype", choices=sorted(DTYPES), default="float64")
    p.add_argument("--chunk-size", type=int, default=None, help="chunk_size for kahlergeom.ddbar")
    p.add_argument("--n", dest="ns", type=int, nargs="+", help="complex dimensions (1 4 16)")
    p.add_argument("--N", dest="Ns", type=int, nargs="+", help="numbers of points (1000 10000)")
    p.add_argument(
        "--potentials",
        nargs="+",
        choices=POTENTIALS,
        default=["fubini-study"],
        help="potentials to differentiate (default: fubini-study)",
    )
    p.add_argument("--repeats", type=int, default=3, help="timed calls per method (best kept)")
    p.add_argument(
        "--loop-max-points",
        type=int,
        default=256,
        help="time the per-point loop on at most this many points, then extrapolate",
    )
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: all cores)")
    p.add_argument("--no-memory", action="store_true", help="skip the peak-memory measurement")
    p.add_argument("--out", help="also write the report (Markdown) to this path")
    p.add_argument("--worker", choices=METHODS, help=argparse.SUPPRESS)
    p.add_argument("--worker-potential", choices=POTENTIALS, help=argparse.SUPPRESS)
    p.add_argument("--worker-n", type=int, help=argparse.SUPPRESS)
    p.add_argument("--worker-N", type=int, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        p.error(f"--device {args.device}: CUDA is not available here; use --device cpu.")
    for name in ("repeats", "loop_max_points", "chunk_size", "threads"):
        value = getattr(args, name)
        if value is not None and value < 1:
            p.error(f"--{name.replace('_', '-')} must be >= 1; got {value}.")
    return args


def grid(args) -> list[tuple[str, int, int]]:
    if args.quick:
        ns, Ns = args.ns or [3], args.Ns or [64]
    else:
        ns, Ns = args.ns or [1, 4, 16], args.Ns or [1000, 10000]
    cells = [(n, N) for n in ns for N in Ns]
    if not args.quick and args.ns is None and args.Ns is None:
        cells.append(HEADLINE)
    return [(p, n, N) for p in args.potentials for n, N in cells]


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.worker is not None:
        worker_main(args)
        return 0
    if args.quick:  # one small row that still exercises every path (extrapolation included)
        args.repeats = min(args.repeats, 2)
        args.loop_max_points = min(args.loop_max_points, 32)
    start = time.perf_counter()
    setup_torch(args.threads)
    header = machine_info(args.device)
    rows = []
    for potential, n, N in grid(args):
        t0 = time.perf_counter()
        rows.append(run_row(args, potential, n, N))
        print(
            f"[bench_ddbar] {potential} n={n} N={N} done in {time.perf_counter() - t0:.1f} s",
            file=sys.stderr,
            flush=True,
        )
    if not args.no_memory and not args.device.startswith("cuda"):
        t0 = time.perf_counter()
        measure_cpu_memory(args, rows)
        print(
            f"[bench_ddbar] peak memory measured in {time.perf_counter() - t0:.1f} s",
            file=sys.stderr,
            flush=True,
        )
    report = build_report(args, rows, header, time.perf_counter() - start)
    print(report)
    write_text(args.out, report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
