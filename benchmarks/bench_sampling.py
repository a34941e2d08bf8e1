"""Exact-law validation of `sample_volume` over many seeds, and cost ratios between samplers.

For each target with a known law of s = |z|² (derivations in docs/sampling.md; each law is
re-checked by quadrature in tests/test_sampling.py) and each sampler, the script draws
``--n`` points for each of ``--seeds`` seeds, takes the KS p-value of the draws against the
exact law, and then tests the p-values themselves for uniformity (a KS test of the p-values:
a correct sampler gives U(0, 1) p-values, a biased one piles them up near 0). It also reports
how often the run said ``ok``, the smallest ESS per coordinate relative to n, and the mean time
per run with its ratio to the default sampler measured in the same run.

Targets (s = |z|²):

* ``FS n=1``: Fubini–Study chart of CP¹, flat prior, β = 1: P(s ≤ x) = x/(1+x).
* ``FS n=2``: CP², flat prior, β = 1: t = s/(1+s) ~ Beta(2, 1).
* ``FS n=1 b=2``: β = 2: t ~ Beta(1, 3).
* ``flat C2 CN``: flat C², prior CN(0, I): s ~ Gamma(2, 1).
* ``ball CN b=1/8``: the unit disk (K = −log(1−|z|²)), prior CN(0, I), β = 1/8: density of s
  ∝ e^{-s}(1−s)^{-1/4} on (0, 1); CDF by numerical quadrature.

Samplers: the default (``method=None``: SIR with its fitted proposal), ``MALA()`` and
``HMC()`` with their default options. Negative controls (must be rejected): the former SIR
default proposal CN(0, I) on ``FS n=1`` (too light tails), and the default's FS n = 1 draws
tested against the β = 2 law (a wrong target).

Usage::

    python benchmarks/bench_sampling.py                 # 40 seeds, n = 400, 2 processes
    python benchmarks/bench_sampling.py --quick         # 4 seeds, n = 200, no HMC (smoke)
    python benchmarks/bench_sampling.py --out table.md --figure docs/figures/sampling_pvalues.png
"""

from __future__ import annotations

import argparse
import math
import multiprocessing as mp
import sys
import time
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


# ----------------------------------------------------------------------------- exact laws
def _fs_cdf(x):
    return x / (1 + x)


def _beta_t_cdf(a, b):
    from scipy import stats

    law = stats.beta(a, b)
    return lambda x: law.cdf(x / (1 + x))


def _gamma_cdf(k):
    from scipy import stats

    return stats.gamma(k).cdf


def _quadrature_cdf(density, upper, n_grid=4000):
    """CDF of s on (0, upper) for an unnormalised density, by adaptive quadrature per cell of
    a grid refined towards the upper end (where the ball's density is singular)."""
    from scipy import integrate

    v = np.concatenate([[0.0], np.logspace(-12, 0, n_grid)])  # distance to the upper end
    grid = np.unique(np.concatenate([upper * (1 - v), np.linspace(0, upper, n_grid)]))
    cells = [integrate.quad(density, a, b)[0] for a, b in zip(grid[:-1], grid[1:], strict=True)]
    cum = np.concatenate([[0.0], np.cumsum(cells)])
    cum /= cum[-1]
    return lambda x: np.interp(np.clip(x, 0, upper), grid, cum)


def cases():
    """name → (manifold factory args, log_prior spec, beta, cdf of s)."""
    return {
        "FS n=1": (("fs", 1), None, 1.0, _fs_cdf),
        "FS n=2": (("fs", 2), None, 1.0, _beta_t_cdf(2, 1)),
        "FS n=1 b=2": (("fs", 1), None, 2.0, _beta_t_cdf(1, 3)),
        "flat C2 CN": (("flat", 2), "cn", 1.0, _gamma_cdf(2)),
        "ball CN b=1/8": (
            ("ball", 1),
            "cn",
            0.125,
            _quadrature_cdf(lambda s: math.exp(-s) * (1 - s) ** -0.25, 1.0),
        ),
    }


def _method(name, n, n_samples):
    from kahlergeom.sampling import HMC, MALA, SIR, ComplexNormal

    return {
        "default": None,
        "MALA": MALA(),
        "HMC": HMC(),
        "SIR CN(0,I) [control]": SIR(ComplexNormal(n), n_proposals=20 * n_samples),
    }[name]


# ----------------------------------------------------------------------------- one run
def run_one(task):
    case, method, seed, n_samples = task
    import torch

    torch.set_num_threads(1)
    from scipy import stats

    import kahlergeom as kg
    from kahlergeom.potentials import ComplexHyperbolic, Flat, FubiniStudy
    from kahlergeom.sampling import ComplexNormal, sample_volume

    (kind, n), prior, beta, cdf = cases()[case]
    pot = {"fs": FubiniStudy, "flat": Flat, "ball": ComplexHyperbolic}[kind](n)
    M = kg.KahlerManifold(pot)
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        r = sample_volume(
            M,
            n_samples,
            log_prior=ComplexNormal(n) if prior == "cn" else None,
            beta=beta,
            method=_method(method, n, n_samples),
            seed=1000 + seed,
        )
    dt = time.perf_counter() - t0
    s = (r.samples.real.square() + r.samples.imag.square()).sum(-1).numpy()
    out = {
        "case": case,
        "method": method,
        "seed": seed,
        "p": float(stats.kstest(s, cdf).pvalue),
        "ok": bool(r.ok),
        "ess_frac": float(r.ess.min()) / n_samples,
        "time": dt,
    }
    if case == "FS n=1" and method == "default":  # negative control: a wrong target
        out["p_wrong"] = float(stats.kstest(s, _beta_t_cdf(1, 3)).pvalue)
    return out


# ----------------------------------------------------------------------------- report
def summarise(results, methods, case_names):
    from scipy import stats

    rows = []
    base_time = {}
    for case in case_names:
        for m in methods:
            rs = [r for r in results if r["case"] == case and r["method"] == m]
            if not rs:
                continue
            ps = np.array([r["p"] for r in rs])
            t = float(np.mean([r["time"] for r in rs]))
            if m == "default":
                base_time[case] = t
            rows.append(
                {
                    "case": case,
                    "method": m,
                    "seeds": len(rs),
                    "median_p": float(np.median(ps)),
                    "min_p": float(ps.min()),
                    "unif_p": float(stats.kstest(ps, "uniform").pvalue),
                    "ok": float(np.mean([r["ok"] for r in rs])),
                    "ess": float(np.mean([r["ess_frac"] for r in rs])),
                    "time": t,
                    "ps": ps,
                }
            )
    for row in rows:
        b = base_time.get(row["case"])
        row["ratio"] = row["time"] / b if b else float("nan")
    wrong = [r["p_wrong"] for r in results if "p_wrong" in r]
    return rows, wrong


def table(rows, wrong, n, seeds):
    lines = [
        f"KS p-values of s = |z|² against the exact law, n = {n} draws per run, {seeds} seeds "
        "per row (timings under shared load: compare ratios, not seconds).",
        "",
        "| target | sampler | seeds | median p | min p | KS of p-values (uniform?) | ok rate "
        "| min ESS / n | s / run | time vs default |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['case']} | {r['method']} | {r['seeds']} | {r['median_p']:.3f} | "
            f"{r['min_p']:.2g} | {r['unif_p']:.3f} | {r['ok']:.2f} | {r['ess']:.2f} | "
            f"{r['time']:.2f} | {r['ratio']:.1f}× |"
        )
    if wrong:
        from scipy import stats

        lines += [
            "",
            f"Negative control (wrong target): the default's FS n=1 draws tested against the "
            f"β = 2 law: median p = {np.median(wrong):.2g}, max p = {max(wrong):.2g}, "
            f"KS of p-values {stats.kstest(wrong, 'uniform').pvalue:.2g}.",
        ]
    return "\n".join(lines)


def figure(rows, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    case_names = list(dict.fromkeys(r["case"] for r in rows))
    methods = list(dict.fromkeys(r["method"] for r in rows))
    fig, axes = plt.subplots(
        len(case_names),
        len(methods),
        figsize=(2.6 * len(methods), 1.8 * len(case_names)),
        squeeze=False,
        sharex=True,
    )
    for i, c in enumerate(case_names):
        for j, m in enumerate(methods):
            ax = axes[i, j]
            rs = [r for r in rows if r["case"] == c and r["method"] == m]
            if rs:
                r = rs[0]
                ax.hist(r["ps"], bins=10, range=(0, 1), color="C0" if r["unif_p"] > 0.01 else "C3")
                ax.axhline(len(r["ps"]) / 10, color="k", lw=0.8, ls="--")
                ax.set_title(f"{c} | {m}\nKS(p) = {r['unif_p']:.2f}", fontsize=7)
            else:
                ax.axis("off")
            ax.tick_params(labelsize=6)
    fig.suptitle("KS p-values over seeds (flat if exact; dashed: expected)", fontsize=9)
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=40)
    ap.add_argument("--n", type=int, default=400, help="draws per run")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--methods", default="default,MALA,HMC")
    ap.add_argument("--cases", default=None, help="comma-separated subset of the targets")
    ap.add_argument("--quick", action="store_true", help="4 seeds, n = 200, no HMC")
    ap.add_argument("--out", default=None, help="write the table (Markdown) here")
    ap.add_argument("--figure", default=None, help="save the p-value histograms here")
    a = ap.parse_args(argv)
    if a.quick:
        a.seeds, a.n, a.methods = 4, 200, "default,MALA"
    methods = a.methods.split(",") + ["SIR CN(0,I) [control]"]
    case_names = list(cases()) if a.cases is None else a.cases.split(",")
    tasks = [
        (c, m, s, a.n)
        for c in case_names
        for m in methods
        for s in range(a.seeds)
        if not (m.endswith("[control]") and c != "FS n=1")
    ]
    t0 = time.perf_counter()
    if a.workers > 1:
        with mp.get_context("spawn").Pool(a.workers) as pool:
            results = []
            for i, r in enumerate(pool.imap_unordered(run_one, tasks), 1):
                results.append(r)
                if i % 20 == 0:
                    print(f"  {i}/{len(tasks)} runs, {time.perf_counter() - t0:.0f} s", flush=True)
    else:
        results = [run_one(t) for t in tasks]
    rows, wrong = summarise(results, methods, case_names)
    text = table(rows, wrong, a.n, a.seeds)
    print(text)
    print(f"\nwall time {time.perf_counter() - t0:.0f} s with {a.workers} worker(s)")
    if a.out:
        Path(a.out).write_text(text + "\n", encoding="utf-8")
    if a.figure:
        figure(rows, a.figure)
    return rows


if __name__ == "__main__":
    main()
