"""Issue 11, item 5 (b), (c): geodesics on decoder manifolds (used by ``bench_geodesics.py``).

(b) complex latent n = 4, D = 784, constant variance: a holomorphic decoder (complex-linear
layers, the entire activation sin), whose Hermitian Fisher metric is 1/σ² times the pullback
of the Euclidean metric of C^D = R^{2D} (so stochman's ``EmbeddedManifold`` with the embedding
μ/σ measures the same lengths), and a non-holomorphic MLP (cardioid activation), whose metric is
the J-average (|dμ(v)|² + |dμ(iv)|²)/(2σ²) of the pullback, handed to stochman as a metric field
(``Manifold.metric`` = G_R from ``FisherManifold.metric_field``) so both solve one problem.
(c) n = 2, D = 50, the demo's VAE decoder (cardioid, learned per-output variance) and a
point-dependent variance head.

Every curve's length is measured by one independent quadrature: the curve sampled at 257
equally spaced parameters, midpoint rule with the exact metric on 256 and 128 segments,
Richardson-extrapolated ((4 L_256 − L_128)/3). Times are per pair, the whole batch solved at
once by each method (stochman's routines are batched too).
"""

from __future__ import annotations

import math
import time
import warnings

import torch
from torch import nn

import kahlergeom as kg
from kahlergeom._linalg import from_real, real_metric, to_real
from kahlergeom.geodesics import DiscreteEnergy, solve_log

C128 = torch.complex128
SAMPLES = 257
#: (c) has a small decoder: its curves are sampled more finely (its cardioid metric has sharp
#: features that the 257-sample Richardson rule resolves only to about 1e-6).
SAMPLES_C = 2049


class _Sin(nn.Module):
    def forward(self, z):
        return torch.sin(z)


class _Cardioid(nn.Module):
    def forward(self, z):
        return 0.5 * (1 + z.real / torch.sqrt(z.real**2 + z.imag**2 + 1e-12)) * z


class MLPDecoder(nn.Module):
    """z ∈ C^n ↦ (mean ∈ C^D, constant variance): complex-linear layers n → 64 → 256 → D."""

    def __init__(self, n, D, activation, variance=0.1, seed=0):
        super().__init__()
        torch.manual_seed(seed)
        act = _Sin if activation == "sin" else _Cardioid
        self.body = nn.Sequential(
            nn.Linear(n, 64, dtype=C128),
            act(),
            nn.Linear(64, 256, dtype=C128),
            act(),
            nn.Linear(256, D, dtype=C128),
        )
        self.n = n
        self.variance = variance
        self.eval()
        for p in self.parameters():
            p.requires_grad_(False)

    def forward(self, z):
        return self.body(z), torch.tensor(self.variance, dtype=torch.float64)


def vae_decoder(variance: str, seed=0):
    """The demo's decoder shape C² → C⁵⁰ (hidden 64, cardioid), random weights."""
    from kahlergeom.vae import ComplexVAE

    torch.manual_seed(seed)
    vae = ComplexVAE(
        50, 2, (64,), decoder_activation="cardioid", decoder_variance=variance, dtype=C128
    )
    dec = vae.decoder.eval()
    for p in dec.parameters():
        p.requires_grad_(False)
    return dec


def make_pairs(n, P, seed=1, scale=1.0):
    g = torch.Generator().manual_seed(seed)
    z = scale * torch.randn(P, n, dtype=C128, generator=g)
    w = scale * torch.randn(P, n, dtype=C128, generator=g)
    return z, w


def quadrature_length(M, pts):
    """Independent length of curves sampled at equally spaced parameters ``(P, T, n)``."""

    def polyline(p):
        n = p.shape[-1]
        d = p[:, 1:] - p[:, :-1]
        m = 0.5 * (p[:, 1:] + p[:, :-1])
        G = M.metric_field(m.reshape(-1, n)).reshape(*m.shape[:2], n, n)
        q = torch.einsum("pka,pkab,pkb->pk", d, G, d.conj()).real
        return q.clamp_min(0).sqrt().sum(-1)

    with torch.no_grad():
        return (4 * polyline(pts) - polyline(pts[:, ::2])) / 3


# ----------------------------------------------------------------------------- methods
def run_ours(M, z, w, solver=None, samples=SAMPLES):
    t0 = time.perf_counter()
    r = solve_log(M, z, w, solver=solver, n_points=samples)
    dt = (time.perf_counter() - t0) / z.shape[0]
    return r.points, dt, r


def _stochman_manifold(M, dec, holomorphic):
    from stochman.manifold import EmbeddedManifold, Manifold

    if holomorphic:
        sigma = math.sqrt(dec.variance)

        class Embedded(EmbeddedManifold):
            """μ/σ as real coordinates: its pullback metric is the Fisher metric."""

            def embed(self, u, jacobian=False):
                mu = dec(from_real(u))[0] / sigma
                return torch.cat([mu.real, mu.imag], -1)

        return Embedded()

    class FisherMetric(Manifold):
        """The Hermitian Fisher metric G_R as a metric field."""

        def metric(self, u):
            return real_metric(M.metric_field(from_real(u)))

    return FisherMetric()


def run_stochman_default(M, dec, z, w, holomorphic):
    man = _stochman_manifold(M, dec, holomorphic)
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        curve, _ = man.connecting_geodesic(to_real(z), to_real(w))
    dt = (time.perf_counter() - t0) / z.shape[0]
    with torch.no_grad():
        pts = from_real(curve(torch.linspace(0, 1, SAMPLES, dtype=torch.float64)))
    return pts.reshape(z.shape[0], SAMPLES, -1), dt


def run_stochman_tuned(M, dec, z, w, holomorphic, nodes=12, grid=64, max_iter=300):
    """stochman's CubicSpline with more nodes, a finer energy grid and L-BFGS (strong Wolfe)."""
    from stochman.curves import CubicSpline

    man = _stochman_manifold(M, dec, holomorphic)
    t0 = time.perf_counter()
    curve = CubicSpline(to_real(z), to_real(w), num_nodes=nodes)
    alpha = torch.linspace(0, 1, grid, dtype=torch.float64)
    opt = torch.optim.LBFGS(
        curve.parameters(),
        lr=1.0,
        max_iter=max_iter,
        tolerance_grad=1e-10,
        tolerance_change=1e-14,
        history_size=20,
        line_search_fn="strong_wolfe",
    )

    def closure():
        opt.zero_grad()
        loss = man.curve_energy(curve(alpha)).sum()
        loss.backward()
        return loss

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        opt.step(closure)
    dt = (time.perf_counter() - t0) / z.shape[0]
    with torch.no_grad():
        pts = from_real(curve(torch.linspace(0, 1, SAMPLES, dtype=torch.float64)))
    return pts.reshape(z.shape[0], SAMPLES, -1), dt


def endpoint_error(pts, z, w):
    return float(torch.maximum((pts[:, 0] - z).abs().amax(), (pts[:, -1] - w).abs().amax()))


# ----------------------------------------------------------------------------- memory worker
def memory_worker(case: str, pairs: int) -> dict:
    from _common import measure_rss_in_worker

    torch.set_num_threads(1)
    holo = case == "holomorphic"
    dec = MLPDecoder(4, 784, "sin" if holo else "cardioid")
    M = kg.FisherManifold(dec)
    z, w = make_pairs(4, pairs)
    solver = DiscreteEnergy()  # the FisherManifold default
    return measure_rss_in_worker(
        lambda: solve_log(M, z, w, solver=solver),
        lambda: solve_log(M, z[:1], w[:1], solver=DiscreteEnergy(max_segments=64)),
    )


# ----------------------------------------------------------------------------- sections
def section_b(pairs, stochman_pairs, memory, script, pairs_mem=64):
    """Rows for (b): n = 4, D = 784."""
    from _common import format_bytes, run_worker

    rows, notes = [], []
    for case in ("holomorphic", "non-holomorphic"):
        holo = case == "holomorphic"
        dec = MLPDecoder(4, 784, "sin" if holo else "cardioid")
        M = kg.FisherManifold(dec)
        P = pairs if holo else stochman_pairs
        z, w = make_pairs(4, P)
        solve_log(M, z[:1], w[:1])  # warm-up (first-call tracing is not per-pair work)
        methods = {}
        pts, dt, r = run_ours(M, z, w)
        methods["kahlergeom DiscreteEnergy() (FisherManifold default)"] = (pts, dt, r)
        chosen = int(r.holomorphic.sum())
        notes.append(
            f"(b) {case}: holomorphic='auto' chose the energy without the rotated term for "
            f"{chosen}/{P} pairs"
        )
        pts, dt, r = run_ours(M, z, w, DiscreteEnergy(length_rtol=1e-6))
        methods["kahlergeom DiscreteEnergy(length_rtol=1e-6)"] = (pts, dt, r)
        if holo:
            pts, dt, r = run_ours(M, z, w, DiscreteEnergy(holomorphic=True))
            methods["kahlergeom DiscreteEnergy(holomorphic=True)"] = (pts, dt, r)
            pts, dt, r = run_ours(M, z, w, DiscreteEnergy(holomorphic=False))
            methods["kahlergeom DiscreteEnergy(holomorphic=False)"] = (pts, dt, r)
        pts, dt = run_stochman_default(M, dec, z, w, holo)
        methods["stochman connecting_geodesic (defaults)"] = (pts, dt, None)
        pts, dt = run_stochman_tuned(M, dec, z, w, holo)
        methods["stochman tuned (12 nodes, grid 64, L-BFGS)"] = (pts, dt, None)
        lengths = {k: quadrature_length(M, v[0]) for k, v in methods.items()}
        ref_key = "stochman connecting_geodesic (defaults)"
        ref, t_ref = lengths[ref_key], methods[ref_key][1]
        shortest = torch.stack(list(lengths.values())).min(0).values
        mem = {}
        if memory:
            rep = run_worker(
                script, ["--worker-decoder-memory", case, "--pairs-mem", str(pairs_mem)], 3600
            )
            mem["kahlergeom DiscreteEnergy() (FisherManifold default)"] = rep["delta_bytes"]
        for k, (pts, dt, r) in methods.items():
            L = lengths[k]
            ok = "—" if r is None else f"{int(r.success.sum())}/{P}"
            rows.append(
                (
                    f"(b) {case}, n=4, D=784",
                    k,
                    P,
                    f"{dt:.3f}",
                    f"{dt / t_ref:.2f}×",
                    f"{float(L.median()):.6g}",
                    f"{float(((L - ref) / ref).max()):+.1e}",
                    f"{float(((L - shortest) / shortest).max()):.1e}",
                    f"{endpoint_error(pts, z, w):.0e}",
                    ok,
                    format_bytes(mem.get(k)) if k in mem else "",
                )
            )
        ours = lengths["kahlergeom DiscreteEnergy() (FisherManifold default)"]
        t_ours = methods["kahlergeom DiscreteEnergy() (FisherManifold default)"][1]
        excess = float(((ours - ref) / ref).max())
        met = t_ours <= t_ref and excess <= 1e-3
        notes.append(
            f"(b) {case}: DiscreteEnergy() {t_ours:.3f} s/pair vs stochman default {t_ref:.3f} "
            f"s/pair ({t_ours / t_ref:.2f}×), longest excess over stochman {excess:+.1e} "
            f"(target: time ≤ stochman's, excess ≤ 1e-3: {'met' if met else 'NOT met'})"
        )
        if memory:
            b = mem["kahlergeom DiscreteEnergy() (FisherManifold default)"]
            notes.append(
                f"(b) {case}: peak extra memory for {pairs_mem} pairs {format_bytes(b)} "
                f"(target ≤ 2 GiB: {'met' if b <= 2 * 1024**3 else 'NOT met'})"
            )
    return rows, notes


def section_c(pairs, exact_pairs):
    """Rows for (c): n = 2, D = 50 (the demo's VAE decoder shape)."""
    from kahlergeom.geodesics import EnergyMinimisation

    rows, notes = [], []
    for variance in ("learned", "point"):
        dec = vae_decoder(variance)
        M = kg.FisherManifold(dec)
        z, w = make_pairs(2, pairs, seed=3)
        solve_log(M, z[:1], w[:1])  # warm-up
        pts, dt, r = run_ours(M, z, w, DiscreteEnergy(length_rtol=1e-6), samples=SAMPLES_C)
        L = quadrature_length(M, pts)
        _, dt_default, r_default = run_ours(M, z, w, samples=SAMPLES_C)
        ref_solver = DiscreteEnergy(
            segments=512, max_segments=512, length_rtol=1.0, energy_rtol=1e-12
        )
        r_ref = solve_log(M, z, w, solver=ref_solver)
        err_ref = ((r.length - r_ref.length) / r_ref.length).abs()
        case = f"(c) VAE decoder C²→C⁵⁰, {variance} variance"
        rows.append(
            (
                case,
                "kahlergeom DiscreteEnergy(length_rtol=1e-6)",
                pairs,
                f"{dt:.3f}",
                "",
                f"{float(L.median()):.6g}",
                "",
                f"{float(err_ref.max()):.1e} (vs K=512)",
                f"{endpoint_error(pts, z, w):.0e}",
                f"{int(r.success.sum())}/{pairs}",
                "",
            )
        )
        err_default = ((r_default.length - r_ref.length) / r_ref.length).abs()
        rows.append(
            (
                case,
                "kahlergeom DiscreteEnergy() (FisherManifold default, length_rtol 1e-4)",
                pairs,
                f"{dt_default:.3f}",
                "",
                f"{float(r_default.length.median()):.6g}",
                "",
                f"{float(err_default.max()):.1e} (vs K=512)",
                "",
                f"{int(r_default.success.sum())}/{pairs}",
                "",
            )
        )
        est = float(r.discretisation.max())
        met = dt <= 2.0 and bool(r.success.all()) and float(err_ref.max()) <= 1e-6
        notes.append(
            f"{case}: {dt:.2f} s/pair, all success: {bool(r.success.all())}, max estimated "
            f"discretisation error {est:.1e}, max deviation from K = 512 "
            f"{float(err_ref.max()):.1e}, independent quadrature vs reported length "
            f"{float(((L - r.length) / L).abs().max()):.1e} "
            f"(target ≤ 2 s/pair at 1e-6: {'met' if met else 'NOT met'})"
        )
        if exact_pairs:
            t0 = time.perf_counter()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                r_ex = solve_log(M, z[:exact_pairs], w[:exact_pairs], solver=EnergyMinimisation())
            t_ex = (time.perf_counter() - t0) / exact_pairs
            dev = ((r.length[:exact_pairs] - r_ex.length) / r_ex.length).abs().max()
            rows.append(
                (
                    case,
                    "kahlergeom EnergyMinimisation() (exact, previous default)",
                    exact_pairs,
                    f"{t_ex:.1f}",
                    "",
                    f"{float(r_ex.length.median()):.6g}",
                    "",
                    f"{float(dev):.1e} (DiscreteEnergy vs this)",
                    "—",
                    f"{int(r_ex.success.sum())}/{exact_pairs}",
                    "",
                )
            )
    return rows, notes


HEADERS = (
    "case",
    "method",
    "pairs",
    "time / pair (s)",
    "time vs stochman default",
    "median length",
    "max rel. excess over stochman default",
    "max rel. excess over shortest",
    "end-point error",
    "success",
    "peak extra memory",
)


def print_table(rows):
    print("| " + " | ".join(HEADERS) + " |")
    print("|" + "---|" * len(HEADERS))
    for r in rows:
        print("| " + " | ".join(str(c) for c in r) + " |")
