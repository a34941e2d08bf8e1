"""Benchmark: geodesic distances, kahlergeom vs geomstats' generic machinery vs stochman.

On charts where the truth is known in closed form (Fubini–Study chart of CP^2 and the complex
hyperbolic ball B^2, docs/conventions.md § Closed forms), for far-apart pairs:

* kahlergeom: ``KahlerManifold(...).dist`` (EnergyMinimisation + shooting), all pairs batched;
* geomstats: a ``RiemannianMetric`` on R^4 given only ``metric_matrix = G_R`` (its own default
  log solver, pytorch backend), one pair per call as geomstats' generic solver requires;
* stochman: ``Manifold`` with ``metric = G_R``, cubic-spline energy minimisation (Adam), batched;
  run at a budget of iterations chosen to take about as long as kahlergeom.

Prints one Markdown table: time per pair and relative error (median / max) per method, and the
ratios. ``--quick`` runs a smoke version (fewer pairs). Run:
``OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_geodesics.py``.

``--decoder`` adds (``--decoder-only`` runs just) issue 11's decoder sections (b) n = 4,
D = 784 holomorphic and non-holomorphic decoders against stochman at its defaults and tuned,
and (c) the n = 2 VAE decoder; see ``benchmarks/_decoder_geodesics.py``.
"""

from __future__ import annotations

import argparse
import math
import os
import time
import warnings

import torch

os.environ.setdefault("GEOMSTATS_BACKEND", "pytorch")

from _common import ball_dist, fs_dist  # noqa: E402

import kahlergeom as kg  # noqa: E402
from kahlergeom._linalg import from_real, real_metric, to_real  # noqa: E402
from kahlergeom.geodesics import EnergyMinimisation  # noqa: E402
from kahlergeom.potentials import ComplexHyperbolic, FubiniStudy  # noqa: E402

C128 = torch.complex128


def fs_pairs(n, P, gen):
    """Pairs at FS distances spread over [0.3, 0.9·π/2], minimising arc inside the chart."""
    zs, ws = [], []
    t = torch.linspace(0, 1, 50, dtype=torch.float64)
    for d in torch.linspace(0.3, 0.9 * math.pi / 2, P, dtype=torch.float64):
        while True:
            Z = torch.randn(n + 1, dtype=C128, generator=gen)
            Z = Z / torch.linalg.vector_norm(Z)
            U = torch.randn(n + 1, dtype=C128, generator=gen)
            U = U - (Z.conj() * U).sum() * Z
            U = U / torch.linalg.vector_norm(U)
            W = torch.cos(d * t)[:, None] * Z + torch.sin(d * t)[:, None] * U
            if bool((W[:, 0].abs() >= 0.3).all()):
                zs.append(Z[1:] / Z[0])
                ws.append(W[-1, 1:] / W[-1, 0])
                break
    return torch.stack(zs), torch.stack(ws)


def ball_pairs(n, P, gen):
    z = torch.randn(P, n, dtype=C128, generator=gen)
    w = torch.randn(P, n, dtype=C128, generator=gen)
    r = torch.linspace(0.5, 0.9, P, dtype=torch.float64)[:, None]
    z = r * z / torch.linalg.vector_norm(z, dim=-1, keepdim=True)
    w = r * w / torch.linalg.vector_norm(w, dim=-1, keepdim=True)
    return z, w


def rel_err(d, truth):
    e = ((d - truth).abs() / truth).double()
    e = torch.where(torch.isnan(e), torch.full_like(e, float("inf")), e)
    return float(e.median()), float(e.max())


# ---------------------------------------------------------------------------------------------
def run_ours(M, z, w, solver=None):
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        d = M.dist(z, w, solver=solver)
    return d, (time.perf_counter() - t0) / z.shape[0]


def run_geomstats(M, z, w):
    old = torch.get_default_dtype()
    try:
        from geomstats.geometry.euclidean import Euclidean
        from geomstats.geometry.riemannian_metric import RiemannianMetric

        class ChartMetric(RiemannianMetric):
            """geomstats' generic machinery given only metric_matrix = G_R."""

            def __init__(self, space, manifold):
                super().__init__(space)
                self.manifold = manifold

            def metric_matrix(self, base_point=None):
                return real_metric(self.manifold.metric_field(from_real(base_point)))

        from geomstats.numerics.geodesic import ExpODESolver, LogShootingSolver

        space = Euclidean(2 * M.n, equip=False)
        space.equip_with_metric(ChartMetric, manifold=M)
        # geomstats' default numerical solvers for a generic metric (GSIVPIntegrator steps,
        # scipy L-BFGS-B shooting), constructed with their default arguments.
        space.metric.exp_solver = ExpODESolver(space)
        space.metric.log_solver = LogShootingSolver(space)
        ds = []
        t0 = time.perf_counter()
        for k in range(z.shape[0]):
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    dk = space.metric.dist(to_real(z[k]), to_real(w[k]))
                ds.append(float(dk))
            except Exception as exc:  # report, do not hide: a failed pair counts as inf error
                print(f"  geomstats failed on pair {k}: {type(exc).__name__}: {exc}")
                ds.append(float("nan"))
        dt = (time.perf_counter() - t0) / z.shape[0]
    finally:
        torch.set_default_dtype(old)
    return torch.tensor(ds, dtype=torch.float64), dt


def stochman_available():
    try:
        import stochman  # noqa: F401
    except Exception as exc:  # pragma: no cover - environment dependent
        return f"stochman not importable ({type(exc).__name__}: {exc})"
    return None


def run_stochman(M, z, w, max_iter):
    from stochman.curves import CubicSpline
    from stochman.geodesic import geodesic_minimizing_energy
    from stochman.manifold import Manifold

    class ChartManifold(Manifold):
        def metric(self, points):
            return real_metric(M.metric_field(from_real(points)))

    man = ChartManifold()
    p0, p1 = to_real(z), to_real(w)
    t0 = time.perf_counter()
    curve = CubicSpline(p0, p1, num_nodes=8, requires_grad=True)
    curve = curve.to(torch.float64) if hasattr(curve, "to") else curve
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if max_iter is None:  # stochman's own routine (Adam, stops when max |grad| < 1e-4)
            geodesic_minimizing_energy(curve, man, eval_grid=20)
        else:  # the same optimisation run for exactly max_iter steps (no early stop)
            alpha = torch.linspace(0, 1, 20, dtype=torch.float64)
            opt = torch.optim.Adam(curve.parameters(), lr=1e-1)
            for _ in range(max_iter):
                opt.zero_grad()
                loss = man.curve_energy(curve(alpha)).mean()
                loss.backward()
                opt.step()
        with torch.no_grad():
            pts = curve(torch.linspace(0, 1, 200, dtype=torch.float64))
            L = man.curve_length(pts)
    return L.detach().reshape(-1), (time.perf_counter() - t0) / z.shape[0]


# ---------------------------------------------------------------------------------------------
def decoder_main(args):
    """Issue 11, item 5 (b) and (c): decoder manifolds (see benchmarks/_decoder_geodesics.py)."""
    import _decoder_geodesics as dg

    rows, notes = [], []
    if not args.skip_b:
        no_stochman = stochman_available()
        if no_stochman:
            raise SystemExit(f"section (b) needs stochman: {no_stochman}")
        r, n = dg.section_b(
            args.decoder_pairs,
            args.stochman_pairs,
            not args.no_memory,
            os.path.abspath(__file__),
            args.pairs_mem,
        )
        rows += r
        notes += n
    r, n = dg.section_c(args.c_pairs, args.exact_pairs)
    rows += r
    notes += n
    print()
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, float64")
    print()
    dg.print_table(rows)
    print()
    for line in notes:
        print(line)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="smoke run (few pairs)")
    ap.add_argument(
        "--pairs",
        type=int,
        default=32,
        help="pairs solved in one batch by ours (default 32, as in the docs)",
    )
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    ap.add_argument("--decoder", action="store_true", help="also run the decoder sections")
    ap.add_argument("--decoder-only", action="store_true", help="only the decoder sections")
    ap.add_argument("--decoder-pairs", type=int, default=64, help="(b) holomorphic decoder pairs")
    ap.add_argument(
        "--stochman-pairs", type=int, default=16, help="(b) non-holomorphic decoder pairs"
    )
    ap.add_argument("--c-pairs", type=int, default=8, help="(c) pairs per decoder")
    ap.add_argument(
        "--exact-pairs", type=int, default=0, help="(c) pairs for EnergyMinimisation (minutes)"
    )
    ap.add_argument("--skip-b", action="store_true", help="decoder sections: only (c)")
    ap.add_argument("--no-memory", action="store_true", help="skip the peak-memory worker")
    ap.add_argument("--worker-decoder-memory", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--pairs-mem", type=int, default=64, help=argparse.SUPPRESS)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if args.worker_decoder_memory is not None:
        import _decoder_geodesics as dg
        from _common import worker_report

        worker_report(**dg.memory_worker(args.worker_decoder_memory, args.pairs_mem))
        return
    if args.decoder_only:
        decoder_main(args)
        return
    P_ours = 4 if args.quick else args.pairs
    P_gs = 1 if args.quick else 3
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0)
    cases = [
        ("Fubini–Study CP^2 chart", kg.KahlerManifold(FubiniStudy(2)), fs_pairs, fs_dist),
        (
            "complex hyperbolic ball B^2",
            kg.KahlerManifold(ComplexHyperbolic(2)),
            ball_pairs,
            ball_dist,
        ),
    ]
    no_stochman = stochman_available()
    if no_stochman:
        print(f"skipping stochman: {no_stochman}")
    rows = []
    for name, M, pairs, truth_fn in cases:
        z, w = pairs(2, P_ours, gen)
        truth = truth_fn(z, w)
        M.dist(z[:1], w[:1])  # warm-up (first-call tracing cost is not per-pair work)
        d, t_ours = run_ours(M, z, w)
        e_ours = rel_err(d, truth)
        rows.append((name, "kahlergeom dist (batched)", P_ours, t_ours, *e_ours))
        print(f"{name}: ours {t_ours:.3f} s/pair, rel err {e_ours[0]:.1e} / {e_ours[1]:.1e}")
        cheap = EnergyMinimisation(n_starts=1, refine=None)
        dc, t_c = run_ours(M, z, w, cheap)
        e_c = rel_err(dc, truth)
        rows.append(
            (name, "kahlergeom EnergyMinimisation(n_starts=1, refine=None)", P_ours, t_c, *e_c)
        )
        idx = torch.linspace(0, P_ours - 1, P_gs).round().long()
        dg, t_gs = run_geomstats(M, z[idx], w[idx])
        e_gs = rel_err(dg, truth[idx])
        rows.append((name, "geomstats generic log", P_gs, t_gs, *e_gs))
        print(f"{name}: geomstats {t_gs:.3f} s/pair, rel err {e_gs}")
        if not no_stochman:
            # Calibrate the iteration budget to take about our time per pair.
            _, t_probe = run_stochman(M, z, w, 5)
            iters = max(5, int(5 * t_ours / max(t_probe, 1e-9)))
            ds, t_st = run_stochman(M, z, w, iters)
            e_st = rel_err(ds, truth)
            rows.append((name, f"stochman Adam, {iters} it (≈ equal time)", P_ours, t_st, *e_st))
            print(f"{name}: stochman {t_st:.3f} s/pair ({iters} it), rel err {e_st}")
            ds, t_st = run_stochman(M, z, w, None)
            e_st = rel_err(ds, truth)
            rows.append((name, "stochman connecting_geodesic defaults", P_ours, t_st, *e_st))
    print()
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, float64")
    print()
    print(
        "| case | method | pairs | time / pair (s) | rel. err median | rel. err max | "
        "time ratio vs ours |"
    )
    print("|---|---|---|---|---|---|---|")
    ours = {r[0]: r[3] for r in rows if r[1].startswith("kahlergeom dist")}
    for name, meth, P, t, emed, emax in rows:
        ratio = t / ours[name]
        print(f"| {name} | {meth} | {P} | {t:.3f} | {emed:.1e} | {emax:.1e} | {ratio:.1f}× |")
    print()
    for name in ours:
        by = {r[1]: r for r in rows if r[0] == name}
        st = by.get("stochman connecting_geodesic defaults")
        if st is not None:
            r = by["kahlergeom dist (batched)"]
            met = r[3] <= 2 * st[3] and r[5] <= 1e-6
            print(
                f"{name}: kahlergeom dist takes {r[3] / st[3]:.1f}x stochman's default time per "
                f"pair at max rel. err {r[5]:.1e} (issue 11 target: <= 2x at <= 1e-6 on every "
                f"pair: {'met' if met else 'NOT met'})"
            )
        gs = by["geomstats generic log"]
        for meth in (
            "kahlergeom dist (batched)",
            "kahlergeom EnergyMinimisation(n_starts=1, refine=None)",
        ):
            r = by[meth]
            verdict = "met" if gs[3] / r[3] >= 10 and r[5] <= gs[5] else "NOT met"
            print(
                f"{name}: {meth} is {gs[3] / r[3]:.1f}x faster per pair than geomstats, max rel. "
                f"err {r[5]:.1e} vs {gs[5]:.1e} (target >= 10x at equal or better accuracy: "
                f"{verdict})"
            )
    if args.decoder:
        decoder_main(args)


if __name__ == "__main__":
    main()
