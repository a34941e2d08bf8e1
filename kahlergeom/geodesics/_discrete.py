r"""Discrete curve-energy geodesics: `DiscreteEnergy`, the fast solver for decoder manifolds.

A curve from z to w is a not-a-knot cubic spline through nodes ``x_0 = z, x_1, …, x_K = w`` at
t = k/K. Its energy is discretised per segment ``Δ_k = x_{k+1} − x_k`` around the midpoint
``m_k = (x_k + x_{k+1})/2`` in one of two ways:

* ``energy="divergence"`` (decoders): through the decoder's output distributions only,
  $|Δ_k|^2_h \approx \tfrac14\,[S(x_k, x_{k+1}) + S(m_k - \tfrac i2 Δ_k, m_k + \tfrac i2 Δ_k)]$
  with the symmetrised divergence $S(a, b) = \mathrm{KL}(p_a\|p_b) + \mathrm{KL}(p_b\|p_a)$.
  $S(m - \tfrac12 u, m + \tfrac12 u) = u^\top F(m)\, u + O(|u|^4)$ (it is even in u) with F the
  real Fisher matrix, and the Hermitian metric is $G_R = \tfrac14(F + J^\top F J)$ (J: the
  complex structure, multiplication by i), so the sum is second-order consistent with
  `metric_field` for *any* decoder (the rotated term supplies the J-average that makes the
  metric Hermitian). Where F is J-invariant (a holomorphic decoder mean with constant
  variance) the rotated term is redundant and is dropped (half the decoder evaluations):
  $|Δ|^2_h \approx \tfrac12 S(x_k, x_{k+1})$. ``holomorphic="auto"`` (default) decides this
  per pair from the decoder (`holomorphy_defect`: the J-defect of F from forward-mode JVPs of
  the parameters and the KL divergence's Hessian) at five chord points before solving and at
  every node of the returned curve after, re-solving with the full energy where the second
  check fails (docs/conventions.md, "When the rotated divergence term is redundant"). Only
  first derivatives of the decoder are needed (one batched decoder call forward and backward
  per energy evaluation).
* ``energy="metric"`` (any manifold): $|Δ_k|^2_{G(m_k)}$ from ``metric_field`` (its first
  derivatives: second derivatives of a decoder).

$E = K\sum_k |Δ_k|^2$ is minimised over the interior nodes of all pairs at once by a batched
L-BFGS (per-pair history, step and convergence; Armijo backtracking) preconditioned by the
Gauss–Newton matrix $2K\sum_k D_k^\top G_R(m_k) D_k$ (block tridiagonal, from the metric at
the midpoints of the level's initial curve), coarse to fine: K = ``coarse``, 2·coarse, …,
``segments``, each level started from the previous level's spline. A pair has converged at a
level when its Newton decrement $g^\top P^{-1} g$ is at most ``energy_rtol`` · E.

The length is an adaptive quadrature (Gauss–Kronrod (3, 7), segments halved until the Kronrod
and the embedded Gauss rule agree to 1 % of ``length_rtol``: `adaptive_spline_length`) of
$\sqrt{h(\dot c, \dot c)}$ with the exact metric along the returned spline c, so it is the
true length of a curve from z to w (an upper bound of the distance) to that accuracy. Its
discretisation is checked: from the lengths at K/8, K/4, K/2 and K segments,
`discretisation_error` estimates the relative error of the length at K (Richardson where the
K^-4 rate is observed, else the larger of the last two changes), plus the quadrature's own
estimate, plus the optimisation's (a quarter of the final relative Newton decrement: the
energy iteration stops at ``energy_rtol``, by default 1/100 of ``length_rtol``); it must be at
most ``length_rtol``, else K is doubled (up to ``max_segments``) for the pairs that fail;
pairs that pass leave the iteration. The default ``length_rtol`` is 1e-4 on decoder manifolds
and 1e-6 elsewhere (float64; `DiscreteEnergy.tolerances`). ``converged``
(and status ``success``) means: the energy iteration converged at the last level *and* the
discretisation check passed. End points are fixed nodes (exact); ``velocity`` is the spline's
tangent at t = 0. With ``refine`` (a `Shooting`), that tangent seeds Newton shooting, whose
adaptive endpoint check and conjugate-point certificate then decide the status.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import torch

from kahlergeom._checks import check_optional_positive, check_positive_int
from kahlergeom._linalg import from_real, real_metric, to_real
from kahlergeom.geodesics._bvp import h_norm
from kahlergeom.geodesics._equations import connection_of
from kahlergeom.geodesics._ode import CONJUGATE_POINT, NOT_CONVERGED, SUCCESS
from kahlergeom.geodesics._results import LogResult
from kahlergeom.geodesics._solvers import GeodesicSolver, Shooting

#: Armijo constant and backtracking factor of the L-BFGS line search.
ARMIJO, BACKTRACK = 1e-4, 0.5
#: Line-search halvings after which a pair is given up (its step is 2^-40 of the quasi-Newton
#: step: no progress is possible).
MAX_HALVINGS = 40
#: Default tolerance of the length's estimated relative discretisation error per real dtype:
#: `LENGTH_RTOL` on manifolds without decoder hooks (closed-form charts, metric fields),
#: `DECODER_LENGTH_RTOL` on decoder manifolds (``decoder_params``/``decoder_kl``: a
#: `FisherManifold`). A decoder with a non-smooth activation (ReLU, cardioid) has a metric whose
#: curves converge slowly under refinement (about K^-2): on the n = 4, D = 784 cardioid decoder of
#: ``benchmarks/bench_geodesics.py`` 1e-4 costs ~1.4 s per pair and 1e-6 ~9 s (K to 1024), while
#: stochman's default answers to ~1e-3; ``length_rtol=1e-6`` asks for more (docs/geodesics.md).
LENGTH_RTOL = {torch.float64: 1e-6, torch.float32: 1e-3}
DECODER_LENGTH_RTOL = {torch.float64: 1e-4, torch.float32: 1e-3}
#: Default energy tolerance as a fraction of the length tolerance: the iteration stops at a
#: Newton decrement λ² ≤ ``energy_rtol`` · E, an energy gap of about λ²/2 and so a relative
#: length gap of about ``energy_rtol``/4 (E ≈ L² at constant speed): 1/400 of the length
#: tolerance, far below the level-to-level changes the discretisation check compares.
ENERGY_PER_LENGTH_RTOL = 1e-2
ENERGIES = ("auto", "divergence", "metric")
#: Ratios of successive length changes taken as the K^-4 regime (16) of the spline length, and
#: the change below which (in ulps of the length) a length counts as converged.
ASYMPTOTIC_RATIOS, ROUNDING_ULPS = (8.0, 32.0), 64
#: Points per decoder (or metric-field) call when the manifold sets no ``chunk_size``: bounds
#: the memory of the batched energy, its gradient and the length quadrature.
DEFAULT_CHUNK_POINTS = 2048
#: Holomorphy check (``holomorphic="auto"``): the largest relative J-defect δ of the real Fisher
#: matrix (`holomorphy_defect`) for which the rotated divergence term is dropped. The dropped
#: energy ½F(Δ, Δ) is within a factor 1 ± δ of the Hermitian one, so the curve it returns is at
#: most about δ longer than the Hermitian-energy curve: δ ≤ length tolerance / 100 (float64),
#: / 10 (float32, where rounding allows no less).
HOLOMORPHY_RTOL = {torch.float64: 1e-8, torch.float32: 1e-4}
#: Ridge (relative to the largest diagonal entry of F + JᵀFJ) of the holomorphy check's
#: whitening: rounding of F in near-null directions of the metric is not a defect.
HOLOMORPHY_RIDGE = {torch.float64: 1e-6, torch.float32: 1e-2}
#: Points along each pair's chord (t = k/4) where holomorphy is checked before solving.
HOLOMORPHY_CHORD_POINTS = 5
#: Share of the length tolerance given to the adaptive length quadrature
#: (`adaptive_spline_length`): its estimated error is added to the discretisation estimate.
QUADRATURE_SHARE = 0.01
#: Energy tolerance of the coarse levels (before the last four regular ones), which only provide
#: the starting curve of the next level.
COARSE_ENERGY_RTOL = 1e-6


# ---------------------------------------------------------------------------------------------
# Cubic splines on the uniform grid t_k = k/K (not-a-knot)
# ---------------------------------------------------------------------------------------------
@functools.lru_cache(maxsize=32)
def _spline_operator(K: int, dtype: torch.dtype, device: str) -> torch.Tensor:
    """``C`` ``(K+1, K+1)``: second derivatives M = C y of the not-a-knot spline through y_k."""
    A = torch.zeros(K + 1, K + 1, dtype=torch.float64)
    R = torch.zeros(K + 1, K + 1, dtype=torch.float64)
    h = 1.0 / K
    for k in range(1, K):
        A[k, k - 1 : k + 2] = torch.tensor([1.0, 4.0, 1.0])
        R[k, k - 1 : k + 2] = torch.tensor([1.0, -2.0, 1.0]) * (6 / h**2)
    # not-a-knot: the third derivative is continuous at t_1 and t_{K-1}
    A[0, :3] = torch.tensor([1.0, -2.0, 1.0])
    A[K, K - 2 :] = torch.tensor([1.0, -2.0, 1.0])
    return torch.linalg.solve(A, R).to(dtype=dtype, device=device)


def spline_eval(Y: torch.Tensor, t: torch.Tensor, *, derivative: bool = True):
    """Positions (and derivatives d/dt) ``(P, T, n)`` of the splines through ``Y`` ``(P, K+1, n)``.

    ``t`` ``(T,)`` in [0, 1] (real, Y's real dtype).
    """
    K = Y.shape[1] - 1
    C = _spline_operator(K, Y.real.dtype, str(Y.device))
    M = torch.einsum("jk,pkn->pjn", C.to(Y.dtype), Y)
    h = 1.0 / K
    k = torch.clamp((t * K).floor().long(), 0, K - 1)
    s = (t - k.to(t.dtype) * h) / h  # (T,) in [0, 1]
    s_, r_ = s[None, :, None], (1 - s)[None, :, None]
    y0, y1, m0, m1 = Y[:, k], Y[:, k + 1], M[:, k], M[:, k + 1]
    pos = r_ * y0 + s_ * y1 + (h * h / 6) * ((r_**3 - r_) * m0 + (s_**3 - s_) * m1)
    if not derivative:
        return pos, None
    vel = (y1 - y0) / h + (h / 6) * (-(3 * r_**2 - 1) * m0 + (3 * s_**2 - 1) * m1)
    return pos, vel


def resample(Y: torch.Tensor, K_new: int) -> torch.Tensor:
    """Nodes ``(P, K_new+1, n)`` of the spline through ``Y`` at t = j/K_new (ends kept exact)."""
    t = torch.linspace(0, 1, K_new + 1, dtype=Y.real.dtype, device=Y.device)
    out = spline_eval(Y, t, derivative=False)[0]
    out[:, 0], out[:, -1] = Y[:, 0], Y[:, -1]
    return out


def sample_curve(nodes: torch.Tensor, n_points: int) -> torch.Tensor:
    """Points ``(..., n_points, n)`` of the spline through ``nodes`` ``(..., K+1, n)`` at equally
    spaced t in [0, 1] (the nodes themselves when n_points = K + 1)."""
    lead, (K1, n) = nodes.shape[:-2], nodes.shape[-2:]
    Y = nodes.reshape(-1, K1, n)
    if n_points == K1:
        return nodes.clone()
    return resample(Y, n_points - 1).reshape(*lead, n_points, n)


def _gauss(dtype: torch.dtype, device) -> tuple[torch.Tensor, torch.Tensor]:
    """Three-point Gauss–Legendre rule on [0, 1] (exact for polynomials of degree 5)."""
    r = 0.5 * math.sqrt(3 / 5)
    x = torch.tensor([0.5 - r, 0.5, 0.5 + r], dtype=dtype, device=device)
    w = torch.tensor([5 / 18, 8 / 18, 5 / 18], dtype=dtype, device=device)
    return x, w


def _speed(manifold, pos: torch.Tensor, vel: torch.Tensor) -> torch.Tensor:
    """sqrt(h(v, v)) at points ``pos`` for tangents ``vel`` (both ``(N, n)``), chunked; NaN
    outside the domain. h from the manifold's optional ``squared_norm(z, v)`` hook (decoders:
    two JVPs) where it has one, else from ``metric_field``."""
    sq = getattr(manifold, "squared_norm", None)
    chunk = getattr(manifold, "chunk_size", None) or DEFAULT_CHUNK_POINTS
    parts = []
    for a, b in zip(torch.split(pos, chunk), torch.split(vel, chunk), strict=True):
        if callable(sq):
            parts.append(sq(a, b).clamp_min(0).sqrt())
        else:
            parts.append(h_norm(manifold.metric_field(a), b))
    speed = torch.cat(parts) if parts else pos.real.new_zeros(0)
    return torch.where(manifold.contains(pos), speed, torch.full_like(speed, math.nan))


def _gauss_kronrod(dtype: torch.dtype, device) -> tuple[torch.Tensor, ...]:
    """Gauss–Kronrod (3, 7) on [0, 1]: seven nodes, the Kronrod weights (exact for degree 11)
    and the weights of the embedded three-point Gauss rule (zero at the four Kronrod-only
    nodes)."""
    xk = [0.9604912687080202835, 0.7745966692414833770, 0.4342437493468025580, 0.0]
    wk = [0.1046562260264672652, 0.2684880898683334407, 0.4013974147759622229]
    x = torch.tensor([-xk[0], -xk[1], -xk[2], 0.0, xk[2], xk[1], xk[0]], dtype=torch.float64)
    wK = torch.tensor([*wk, 0.4509165386584741424, *wk[::-1]], dtype=torch.float64)
    wG = torch.tensor([0.0, 5 / 9, 0.0, 8 / 9, 0.0, 5 / 9, 0.0], dtype=torch.float64)
    return tuple(t.to(dtype=dtype, device=device) for t in ((1 + x) / 2, wK / 2, wG / 2))


def adaptive_spline_length(
    manifold, Y: torch.Tensor, rtol: float | None = None, max_depth: int = 6
) -> tuple[torch.Tensor, torch.Tensor]:
    r"""Length ``(P,)`` of the splines through ``Y`` ``(P, K+1, n)`` and its estimated relative
    quadrature error ``(P,)``: adaptive Gauss–Kronrod quadrature of
    $\sqrt{h(\dot c, \dot c)}$ with the exact metric.

    On each interval (first the K segments) the seven-point Kronrod rule $Q_K$ (degree 11) is
    compared with its embedded three-point Gauss rule $Q_G$ (degree 5); the interval is
    accepted (contributing $Q_K$, and $|Q_K - Q_G|$, a bound of the Gauss rule's error far
    above the Kronrod rule's, to the error) when $|Q_K - Q_G| \le$ ``rtol`` · L₀ · (its share
    of t), L₀ the first pass's length, else halved, at most ``max_depth`` times (non-finite
    values are accepted as they are). A metric with sharp features (a decoder with a
    cardioid activation) needs sub-intervals that the curve's own nodes do not provide.
    ``rtol=None``: the three-point Gauss rule once per segment, error 0 (not estimated).
    """
    P, K1, n = Y.shape
    K = K1 - 1
    dtype, dev = Y.real.dtype, Y.device
    if rtol is None:
        x, wK = _gauss(dtype, dev)
        wG = wK
    else:
        x, wK, wG = _gauss_kronrod(dtype, dev)
    C = _spline_operator(K, dtype, str(dev))
    Mv = torch.einsum("jk,pkn->pjn", C.to(Y.dtype), Y)
    h = 1.0 / K
    Q = x.numel()

    def quad(pi, k, a, b):
        s = a[:, None] + (b - a)[:, None] * x  # (I, Q) local parameter in the segment
        s_, r_ = s[..., None], (1 - s)[..., None]
        y0, y1 = Y[pi, k][:, None], Y[pi, k + 1][:, None]
        m0, m1 = Mv[pi, k][:, None], Mv[pi, k + 1][:, None]
        pos = r_ * y0 + s_ * y1 + (h * h / 6) * ((r_**3 - r_) * m0 + (s_**3 - s_) * m1)
        vel = (y1 - y0) / h + (h / 6) * (-(3 * r_**2 - 1) * m0 + (3 * s_**2 - 1) * m1)
        speed = _speed(manifold, pos.reshape(-1, n), vel.reshape(-1, n)).reshape(-1, Q)
        width = (b - a) * h
        return (speed * wK).sum(-1) * width, (speed * wG).sum(-1) * width

    pi = torch.arange(P, device=dev).repeat_interleave(K)
    k = torch.arange(K, device=dev).repeat(P)
    a = torch.zeros(P * K, dtype=dtype, device=dev)
    b = torch.ones_like(a)
    qK, qG = quad(pi, k, a, b)
    L0 = torch.zeros(P, dtype=dtype, device=dev).index_add_(0, pi, qK)
    if rtol is None:
        return L0, torch.zeros_like(L0)
    total = torch.zeros_like(L0)
    err = torch.zeros_like(L0)
    for depth in range(max_depth + 1):
        diff = (qK - qG).abs()
        budget = rtol * L0[pi].abs() * (b - a) * h
        acc = (diff <= budget) | ~torch.isfinite(diff) | (depth == max_depth)
        total.index_add_(0, pi[acc], qK[acc])
        err.index_add_(0, pi[acc], diff[acc])
        rest = ~acc
        if not bool(rest.any()):
            break
        mid = 0.5 * (a + b)
        pi, k = pi[rest].repeat(2), k[rest].repeat(2)
        a, b = torch.cat([a[rest], mid[rest]]), torch.cat([mid[rest], b[rest]])
        qK, qG = quad(pi, k, a, b)
    scale = total.abs().clamp_min(torch.finfo(dtype).tiny)
    return total, err / scale


def spline_length(manifold, Y: torch.Tensor) -> torch.Tensor:
    """Length ``(P,)`` of the splines through ``Y`` ``(P, K+1, n)``: Gauss–Legendre quadrature of
    sqrt(h(ċ, ċ)) with the exact metric, three points per segment (`adaptive_spline_length`
    without adaptation)."""
    return adaptive_spline_length(manifold, Y)[0]


def discretisation_error(L0, L1, L2, L3) -> torch.Tensor:
    r"""Estimated relative error of ``L3`` from lengths at K/8, K/4, K/2 and K segments ``(P,)``.

    With the successive changes $d_1, d_2, d_3$ ($d_3 = L_2 - L_3$) and their ratios
    $r_1 = d_1/d_2$, $r_2 = d_2/d_3$: where both ratios lie in `ASYMPTOTIC_RATIOS` (the
    spline length's $K^{-4}$ rate, ratio 16, seen twice) the geometric tail
    $|d_3|/(\min(r_1, r_2, 16) - 1)$; otherwise (a metric with sharp features, e.g. a decoder
    with a cardioid activation, converges erratically before it is resolved) the larger of the
    last two changes, $\max(|d_2|, |d_3|)$, unscaled. A heuristic: on 16 pairs of that
    decoder at the 1e-4 tolerance (first check at K = 64) every error was within the tolerance,
    the worst at 1.8× its estimate (the largest of the last three changes, tried, did not
    change that worst case and refused (c)'s 1e-6 pairs of the benchmark). Changes at the
    rounding level of the length count as converged. Relative to ``|L3|``; inf where a length
    is not finite.
    """
    eps = torch.finfo(L3.dtype).eps
    d1, d2, d3 = L0 - L1, L1 - L2, L2 - L3
    scale = L3.abs().clamp_min(torch.finfo(L3.dtype).tiny)
    r1, r2 = d1 / d2, d2 / d3
    lo, hi = ASYMPTOTIC_RATIOS
    asymptotic = (r1 >= lo) & (r1 <= hi) & (r2 >= lo) & (r2 <= hi)
    rich = d3.abs() / (torch.minimum(torch.minimum(r1, r2), torch.full_like(r1, 16.0)) - 1)
    est = torch.where(asymptotic, rich, torch.maximum(d2.abs(), d3.abs()))
    est = torch.where(d3.abs() <= ROUNDING_ULPS * eps * scale, d3.abs(), est) / scale
    finite = torch.isfinite(L3) & torch.isfinite(L2) & torch.isfinite(L1) & torch.isfinite(L0)
    return torch.where(finite, est, torch.full_like(est, math.inf))


# ---------------------------------------------------------------------------------------------
# Discrete energies
# ---------------------------------------------------------------------------------------------
def _split_params(params, N: int, sizes):
    """Split batched decoder parameters ``(N, ...)`` into pieces of ``sizes``; parameters
    without the batch axis (shared, e.g. a constant variance) are passed to every piece."""
    lead = params[0].ndim
    pieces = [[] for _ in sizes]
    for p in params:
        if p.ndim == lead and p.shape[0] == N:
            for i, q in enumerate(torch.split(p, sizes)):
                pieces[i].append(q)
        else:
            for piece in pieces:
                piece.append(p)
    return [tuple(piece) for piece in pieces]


def _decoder_hooks(manifold):
    params = getattr(manifold, "decoder_params", None)
    kl = getattr(manifold, "decoder_kl", None)
    return (params, kl) if callable(params) and callable(kl) else None


def segment_energy(manifold, X: torch.Tensor, energy: str, holomorphic: bool) -> torch.Tensor:
    """Discrete energy ``(P,)`` = K Σ_k |Δ_k|² of the node sets ``X`` ``(P, K+1, n)``."""
    P, K1, n = X.shape
    K = K1 - 1
    d = X[:, 1:] - X[:, :-1]
    m = 0.5 * (X[:, 1:] + X[:, :-1])
    if energy == "metric":
        G = manifold.metric_field(m.reshape(-1, n)).reshape(P, K, n, n)
        q = torch.einsum("pka,pkab,pkb->pk", d, G, d.conj()).real
        return K * q.sum(-1)
    params_fn, kl = _decoder_hooks(manifold)
    pts = [X.reshape(-1, n)]
    if not holomorphic:
        half = 0.5j * d
        pts += [(m - half).reshape(-1, n), (m + half).reshape(-1, n)]
    sizes = [p.shape[0] for p in pts]
    allp = torch.cat(pts)
    parts = _split_params(params_fn(allp), allp.shape[0], sizes)

    def sym(a, b):
        return kl(a, b) + kl(b, a)

    nodes = [p.reshape(P, K1, *p.shape[1:]) if p.shape[:1] == (P * K1,) else p for p in parts[0]]
    first = tuple(p[:, :-1] if p.ndim == parts[0][0].ndim + 1 else p for p in nodes)
    second = tuple(p[:, 1:] if p.ndim == parts[0][0].ndim + 1 else p for p in nodes)
    s_plain = sym(first, second)  # (P, K)
    if holomorphic:
        return K * 0.5 * s_plain.sum(-1)

    def seg(p):
        return p.reshape(P, K, *p.shape[1:]) if p.shape[:1] == (P * K,) else p

    lo = tuple(seg(p) for p in parts[1])
    hi = tuple(seg(p) for p in parts[2])
    s_rot = sym(lo, hi)
    return K * 0.25 * (s_plain + s_rot).sum(-1)


def _inside(manifold, X, energy, holomorphic):
    """bool ``(P,)``: every point the energy evaluates lies in the domain."""
    m = 0.5 * (X[:, 1:] + X[:, :-1])
    ok = manifold.contains(X).all(-1) & manifold.contains(m).all(-1)
    if energy == "divergence" and not holomorphic:
        half = 0.5j * (X[:, 1:] - X[:, :-1])
        ok = ok & manifold.contains(m - half).all(-1) & manifold.contains(m + half).all(-1)
    return ok


# ---------------------------------------------------------------------------------------------
# Holomorphy (J-invariance of the real Fisher matrix): when the rotated divergence term is
# redundant
# ---------------------------------------------------------------------------------------------
def _complex_structure(m: int, dtype, device) -> torch.Tensor:
    """J ``(m, m)``: multiplication by i in real coordinates u = (x, y): J(x, y) = (−y, x)."""
    n = m // 2
    J = torch.zeros(m, m, dtype=dtype, device=device)
    J[n:, :n] = torch.eye(n, dtype=dtype, device=device)
    J[:n, n:] = -torch.eye(n, dtype=dtype, device=device)
    return J


def _kl_hessian_forms(kl, params, tangents):
    r"""$q(a) = \tfrac{d^2}{dt^2}\mathrm{KL}(p\,\|\,p + t a)|_{t=0} = a^\top H_p a$ for one point.

    ``params``: the point's parameter tuple; ``tangents``: per parameter ``(C, ...)`` (``None``
    for a parameter that does not depend on z). Returns ``(C,)``: the parameter-space Fisher
    form (the Hessian of the KL divergence at its minimum) on each of the C tangents.
    """
    real = next(p for p in params if p.is_floating_point() or p.is_complex())
    rdt = real.real.dtype if real.is_complex() else real.dtype
    zero = torch.zeros((), dtype=rdt, device=real.device)
    one = torch.ones((), dtype=rdt, device=real.device)

    def form(a):
        def g(t):
            moved = tuple(p if d is None else p + t * d for p, d in zip(params, a, strict=True))
            return kl(params, moved)

        def dg(t):
            return torch.func.jvp(g, (t,), (one,))[1]

        return torch.func.jvp(dg, (zero,), (one,))[1]

    dims = tuple(None if d is None else 0 for d in tangents)
    return torch.vmap(form, in_dims=(dims,))(tangents)


def fisher_from_hooks(manifold, z: torch.Tensor) -> torch.Tensor:
    r"""Real Fisher matrices ``(B, 2n, 2n)`` at points ``z`` ``(B, n)`` from the decoder hooks.

    $F = D_p^\top H_p D_p$: the parameters' derivatives $D_p$ along the 2n real directions
    (forward-mode JVPs of ``decoder_params``, in real coordinates u = (x, y), x first) and the
    parameter-space Fisher $H_p$ = the Hessian of ``decoder_kl(p, ·)`` at p, applied by
    polarisation: $F_{ij} = \tfrac12[q(a_i + a_j) - q(a_i) - q(a_j)]$ with
    $q(a) = a^\top H_p a$ (`_kl_hessian_forms`). Any likelihood; first derivatives of the
    decoder only. Chunked like the energy (the manifold's ``chunk_size`` or
    `DEFAULT_CHUNK_POINTS` points per decoder call, divided by the tangents per point).
    """
    params_fn, kl = _decoder_hooks(manifold)
    B, n = z.shape
    m = 2 * n
    chunk = getattr(manifold, "chunk_size", None) or DEFAULT_CHUNK_POINTS
    iu, ju = torch.triu_indices(m, m, 1, device=z.device)
    C = m + iu.numel()
    out = []
    for zc in torch.split(z, max(1, chunk // C)):
        u = to_real(zc)
        b = u.shape[0]
        basis = torch.eye(m, dtype=u.dtype, device=u.device).unsqueeze(1).expand(m, b, m)
        with torch.no_grad():
            params, dparams = torch.func.vmap(
                lambda t, u=u: torch.func.jvp(lambda x: params_fn(from_real(x)), (u,), (t,))
            )(basis)
            params = tuple(p[0] for p in params)
            lead = params[0].ndim
            batched = [p.ndim == lead and p.shape[0] == b for p in params]
            # tangents per parameter: the m basis directions and the m(m−1)/2 sums a_i + a_j
            tans = tuple(
                torch.cat([d, d[iu] + d[ju]]).transpose(0, 1) if bt else None
                for d, bt in zip(dparams, batched, strict=True)
            )  # (b, C, ...)
            q = torch.vmap(
                lambda p, t: _kl_hessian_forms(kl, p, t),
                in_dims=(
                    tuple(0 if bt else None for bt in batched),
                    tuple(0 if bt else None for bt in batched),
                ),
            )(params, tans)  # (b, C)
        diag = q[:, :m]
        F = torch.diag_embed(diag)
        off = 0.5 * (q[:, m:] - diag[:, iu] - diag[:, ju])
        F[:, iu, ju] = off
        F[:, ju, iu] = off
        out.append(F)
    return torch.cat(out)


def holomorphy_defect(manifold, z: torch.Tensor) -> torch.Tensor:
    r"""How far the real Fisher matrix is from J-invariant at points ``z`` ``(B, n)``: ``(B,)``.

    $\delta = \sup_v |F(v, v) - F(iv, iv)| / (F(v, v) + F(iv, iv) + \rho|v|^2)$, the largest
    absolute generalised eigenvalue of $A = F - J^\top F J$ against
    $S = F + J^\top F J + \rho I$ ($\rho$ = `HOLOMORPHY_RIDGE` · max diag S: rounding in the
    metric's null directions is not a defect). $|A(v,v)| \le S(v,v)$, so δ ∈ [0, 1]; δ = 0
    exactly when the rotated divergence term is redundant (docs/conventions.md, "When the
    rotated term is redundant"): for the complex Gaussian, a holomorphic mean (Cauchy–Riemann:
    dμ(iv) = i dμ(v)) with a variance that does not depend on z. inf where F is not finite.
    F comes from the manifold's optional ``real_fisher(z)`` hook where it has one (a
    `FisherManifold`: its blocked JVP Gram matrices, about 8× faster than the generic route),
    else from `fisher_from_hooks`.
    """
    fast = getattr(manifold, "real_fisher", None)  # optional hook (FisherManifold): one GEMM
    m = 2 * z.shape[-1]
    good = torch.isfinite(z).all(-1)  # the checked hook refuses non-finite points
    F = torch.full((z.shape[0], m, m), math.nan, dtype=z.real.dtype, device=z.device)
    if bool(good.any()):
        zg = z[good]
        F[good] = fast(zg) if callable(fast) else fisher_from_hooks(manifold, zg)
    J = _complex_structure(m, F.dtype, F.device)
    JFJ = J.T @ F @ J
    S, A = F + JFJ, F - JFJ
    eye = torch.eye(m, dtype=F.dtype, device=F.device)
    scale = S.diagonal(dim1=-2, dim2=-1).amax(-1).clamp_min(torch.finfo(F.dtype).tiny)
    S = S + (HOLOMORPHY_RIDGE[F.dtype] * scale)[:, None, None] * eye
    finite = torch.isfinite(F).all(-1).all(-1)
    S = torch.where(finite[:, None, None], S, eye.expand_as(S))
    A = torch.where(finite[:, None, None], A, torch.zeros_like(A))
    L, info = torch.linalg.cholesky_ex(S)
    W = torch.linalg.solve_triangular(L, A, upper=False)
    W = torch.linalg.solve_triangular(L, W.transpose(-1, -2), upper=False)
    W = 0.5 * (W + W.transpose(-1, -2))
    delta = torch.linalg.eigvalsh(W).abs().amax(-1)
    bad = ~finite | (info != 0) | ~torch.isfinite(delta)
    return torch.where(bad, torch.full_like(delta, math.inf), delta)


# ---------------------------------------------------------------------------------------------
# Gauss–Newton preconditioner: block tridiagonal, factorised by block Cholesky
# ---------------------------------------------------------------------------------------------
class _BlockTridiagonal:
    """P = 2K Σ_k D_kᵀ G_R(m_k) D_k over the interior nodes, per pair; ``solve(g)`` → P⁻¹ g."""

    def __init__(self, GR: torch.Tensor):
        # GR: (P, K, m, m) at the segment midpoints; interior nodes j = 1..K-1.
        P, K, m, _ = GR.shape
        GR = 0.5 * (GR + GR.transpose(-1, -2))
        diag = 2 * K * (GR[:, :-1] + GR[:, 1:])  # (P, K-1, m, m)
        off = -2 * K * GR[:, 1:-1]  # (P, K-2, m, m): block (j, j+1)
        eye = torch.eye(m, dtype=GR.dtype, device=GR.device)
        # A tiny ridge keeps the factorisation defined where the metric is (nearly) singular.
        ridge = 1e-12 * diag.diagonal(dim1=-2, dim2=-1).abs().amax(-1).clamp_min(1e-300)
        diag = diag + ridge[..., None, None] * eye
        self.L, self.C = [], []  # L_j lower Cholesky, C_j = off_{j-1}ᵀ L_{j-1}^{-T}
        Lp = None
        for j in range(K - 1):
            Dj = diag[:, j]
            if j > 0:
                Cj = torch.linalg.solve_triangular(Lp, off[:, j - 1], upper=False).transpose(
                    -1, -2
                )  # off_{j-1}ᵀ L_{j-1}^{-T}
                Dj = Dj - Cj @ Cj.transpose(-1, -2)
                self.C.append(Cj)
            Lj, _ = torch.linalg.cholesky_ex(Dj)
            self.L.append(Lj)
            Lp = Lj
        self.m = m

    def solve(self, g: torch.Tensor, idx: torch.Tensor | None = None) -> torch.Tensor:
        """P⁻¹ g for ``g`` ``(Q, (K-1)·m)`` (rows ``idx`` of the pairs)."""
        m = self.m
        J = len(self.L)
        Ls = [L if idx is None else L[idx] for L in self.L]
        Cs = [C if idx is None else C[idx] for C in self.C]
        b = g.reshape(g.shape[0], J, m)
        y = []
        for j in range(J):
            r = b[:, j]
            if j > 0:
                r = r - (Cs[j - 1] @ y[j - 1].unsqueeze(-1)).squeeze(-1)
            y.append(torch.linalg.solve_triangular(Ls[j], r.unsqueeze(-1), upper=False))
            y[-1] = y[-1].squeeze(-1)
        x = [None] * J
        for j in reversed(range(J)):
            r = y[j]
            if j < J - 1:
                r = r - (Cs[j].transpose(-1, -2) @ x[j + 1].unsqueeze(-1)).squeeze(-1)
            x[j] = torch.linalg.solve_triangular(
                Ls[j].transpose(-1, -2), r.unsqueeze(-1), upper=True
            ).squeeze(-1)
        return torch.stack(x, 1).reshape(g.shape)


def _common_nodes(groups, P: int) -> torch.Tensor:
    """Nodes ``(P, K+1, n)`` of all pairs at the finest K among ``groups`` (``(pair indices,
    nodes)``, K a power-of-two multiple of every group's). A coarser group is resampled: a
    cubic spline on the knots k/K is one on the refined knots j/(2^r K) too, and satisfies
    the not-a-knot conditions there (its third derivative is continuous inside a coarse
    segment), so the spline through the resampled nodes is the same curve (to rounding) and
    its length and discretisation estimate stand."""
    K = max(Xg.shape[1] - 1 for _, Xg in groups)
    n = groups[0][1].shape[-1]
    X = groups[0][1].new_zeros(P, K + 1, n)
    for gi, Xg in groups:
        X[gi] = Xg if Xg.shape[1] - 1 == K else resample(Xg, K)
    return X


# ---------------------------------------------------------------------------------------------
# The solver
# ---------------------------------------------------------------------------------------------
def _check_power_of_two_multiple(value: int, base: int, name: str, base_name: str) -> None:
    q, r = divmod(value, base)
    if r or q < 1 or q & (q - 1):
        raise ValueError(
            f"{name} must be {base_name} ({base}) times a power of two; got {value!r}."
        )


@dataclass(frozen=True)
class DiscreteEnergy(GeodesicSolver):
    r"""Discrete curve-energy minimisation, coarse to fine, with a discretisation check.

    The fast boundary-value solver for decoder manifolds (the default of `FisherManifold`); it
    also runs on any manifold with ``energy="metric"``. See the module docstring of
    ``kahlergeom.geodesics._discrete`` and ``docs/geodesics.md``.

    Result: ``length`` is the exact-metric quadrature length of the returned spline (the
    length of a curve from z to w), ``velocity`` its tangent at t = 0, ``nodes`` the spline's
    nodes, ``discretisation`` the estimated relative discretisation error of the length
    (`discretisation_error`, from the lengths at K/8 … K segments, plus the adaptive length
    quadrature's own estimate and a quarter of the final relative Newton decrement),
    ``holomorphic`` which energy each pair's curve minimises (divergence energy only),
    ``residual`` 0 (the end points are fixed nodes), ``certificate`` ``"discrete"`` (a
    converged energy minimiser: locally minimising, up to the discretisation). ``converged``
    requires the energy iteration's convergence at the last level and ``discretisation`` ≤
    ``length_rtol``; otherwise the status is ``not_converged``. With ``refine`` the status,
    velocity, length and certificate are those of the shooting refinement (endpoint check and
    conjugate-point certificate), started from the spline's tangent.

    Args:
        segments: segments K of the last regular level (``coarse`` times a power of two ≥ 8).
        coarse: segments of the first level (≥ 4).
        max_segments: K is doubled beyond ``segments``, up to this, for pairs whose
            discretisation check fails (``segments`` times a power of two).
        max_iter: energy evaluations (batched over pairs) per level.
        history: L-BFGS memory.
        energy_rtol: Newton decrement (from the L-BFGS direction) relative to the energy below
            which a pair's iteration has converged (``None``: `ENERGY_PER_LENGTH_RTOL` = 1/100
            of the length tolerance, at most 1e-6; a relative length gap of about 1/400 of it).
        length_rtol: tolerance of the discretisation check (``None``: on decoder manifolds
            1e-4 in float64, 1e-3 in float32 (`DECODER_LENGTH_RTOL`: ten times tighter than
            stochman's default answers, at a fraction of its time; a non-smooth decoder needs
            K ≈ 1000 segments, ~6× the time, for 1e-6); on other manifolds 1e-6 in float64,
            1e-3 in float32 (`LENGTH_RTOL`). `tolerances` returns the values used.
        energy: ``"divergence"`` (needs the manifold's ``decoder_params`` and ``decoder_kl``
            hooks), ``"metric"`` (any manifold) or ``"auto"`` (divergence when available).
        holomorphic: whether the rotated divergence term is dropped (half the decoder
            points per energy evaluation), which is exact to second order only where the real
            Fisher matrix F is J-invariant (a holomorphic mean with a constant variance;
            docs/conventions.md). ``"auto"`` (default) decides per pair: before solving,
            `holomorphy_defect` ≤ `holomorphy_tolerance` at five points of the chord; after,
            at every node of the returned curve, else the pair is solved again with the full
            energy (never a curve minimising the wrong energy). ``True`` declares it without
            checks (wrong for other decoders: the curve then minimises the pullback energy,
            not the Hermitian one); ``False`` always uses the full energy. The result's
            ``holomorphic`` says which energy each pair's curve minimises.
        refine: a `Shooting` run from the discrete curve's tangent, or ``None``.
    """

    segments: int = 64
    coarse: int = 4
    max_segments: int = 1024
    max_iter: int = 200
    history: int = 10
    energy_rtol: float | None = None
    length_rtol: float | None = None
    energy: str = "auto"
    holomorphic: bool | str = "auto"
    refine: Shooting | None = None

    def __post_init__(self):
        check_positive_int(self.coarse, "coarse", minimum=4)
        check_positive_int(self.segments, "segments", minimum=8 * self.coarse)
        _check_power_of_two_multiple(self.segments, self.coarse, "segments", "coarse")
        check_positive_int(self.max_segments, "max_segments", minimum=self.segments)
        _check_power_of_two_multiple(self.max_segments, self.segments, "max_segments", "segments")
        check_positive_int(self.max_iter, "max_iter", minimum=1)
        check_positive_int(self.history, "history", minimum=1)
        check_optional_positive(self.energy_rtol, "energy_rtol")
        check_optional_positive(self.length_rtol, "length_rtol")
        if self.energy not in ENERGIES:
            raise ValueError(f"energy must be one of {ENERGIES}; got {self.energy!r}.")
        if not (isinstance(self.holomorphic, bool) or self.holomorphic == "auto"):
            raise ValueError(
                f"holomorphic must be 'auto', True or False; got {self.holomorphic!r}."
            )
        if self.refine is not None and not isinstance(self.refine, Shooting):
            raise ValueError(
                f"refine must be a kahlergeom.geodesics.Shooting or None; got {self.refine!r}."
            )

    # -- pieces -----------------------------------------------------------------------------
    def energy_kind(self, manifold) -> str:
        """The energy used on ``manifold`` (``"divergence"`` or ``"metric"``)."""
        hooks = _decoder_hooks(manifold)
        if self.energy == "divergence" and hooks is None:
            raise ValueError(
                "energy='divergence' needs a manifold with decoder_params and decoder_kl (a "
                f"FisherManifold); {manifold!r} has none. Use energy='metric'."
            )
        if self.energy == "auto":
            return "divergence" if hooks is not None else "metric"
        return self.energy

    def _value_and_grad(self, manifold, ends, p, kind, holomorphic=False):
        """Energy ``(Q,)`` and gradient ``(Q, d)`` at interior nodes ``p`` (real, flat); energy
        inf where a point leaves the domain or the energy is not finite."""
        z0, z1 = ends
        Q = p.shape[0]
        n = z0.shape[-1]
        K = p.shape[1] // (2 * n) + 1
        per_pair = (K + 1) + (0 if kind == "metric" or holomorphic else 2 * K)
        chunk = getattr(manifold, "chunk_size", None) or DEFAULT_CHUNK_POINTS
        rows = max(1, chunk // per_pair)
        Es, gs = [], []
        for s in range(0, Q, rows):
            sl = slice(s, s + rows)
            with torch.enable_grad():
                q = p[sl].detach().requires_grad_(True)
                X = torch.cat(
                    [z0[sl, None], from_real(q.reshape(q.shape[0], K - 1, 2 * n)), z1[sl, None]],
                    1,
                )
                E = segment_energy(manifold, X, kind, holomorphic)
                (g,) = torch.autograd.grad(E.sum(), q)
            inside = _inside(manifold, X.detach(), kind, holomorphic)
            ok = inside & torch.isfinite(E) & torch.isfinite(g).all(-1)
            Es.append(torch.where(ok, E.detach(), torch.full_like(E, math.inf)))
            gs.append(torch.where(ok[:, None], g, torch.zeros_like(g)))
        return torch.cat(Es), torch.cat(gs)

    def _preconditioner(self, manifold, X):
        P, K1, n = X.shape
        mids = 0.5 * (X[:, 1:] + X[:, :-1])
        # metric_field carries 2n forward-mode tangents per point: chunk it like the energy
        chunk = max(1, (getattr(manifold, "chunk_size", None) or DEFAULT_CHUNK_POINTS) // n)
        with torch.no_grad():
            G = torch.cat(
                [manifold.metric_field(c) for c in torch.split(mids.reshape(-1, n), chunk)]
            )
        GR = real_metric(G).reshape(P, K1 - 1, 2 * n, 2 * n)
        GR = torch.where(torch.isfinite(GR), GR, torch.zeros_like(GR))
        return _BlockTridiagonal(GR)

    def minimise(
        self, manifold, X: torch.Tensor, kind: str, etol: float, holomorphic: bool = False
    ):
        """Batched preconditioned L-BFGS on the interior nodes of ``X`` ``(P, K+1, n)``
        (``holomorphic``: the divergence energy without its rotated term).

        Returns ``(X, converged (P,), energy (P,), decrement (P,))``, ``decrement`` the final
        relative Newton decrement $-g^\top D / E$ (D the preconditioned L-BFGS direction), whose
        quarter estimates the relative length gap to the level's minimiser (E ≈ L²).
        """
        P, K1, n = X.shape
        K = K1 - 1
        dtype = X.real.dtype
        eps = torch.finfo(dtype).eps
        ends = (X[:, 0], X[:, -1])
        pre = self._preconditioner(manifold, X)
        p = to_real(X[:, 1:-1]).reshape(P, -1).detach().clone()
        d = p.shape[1]
        E, g = self._value_and_grad(manifold, ends, p, kind, holomorphic)
        H = self.history
        S = p.new_zeros(P, H, d)
        Y = p.new_zeros(P, H, d)
        rho = p.new_zeros(P, H)

        def direction(idx):
            q = g[idx].clone()
            a = []
            for j in range(H):
                aj = rho[idx, j] * (S[idx, j] * q).sum(-1)
                q = q - aj[:, None] * Y[idx, j]
                a.append(aj)
            r = pre.solve(q, idx)
            for j in reversed(range(H)):
                b = rho[idx, j] * (Y[idx, j] * r).sum(-1)
                r = r + S[idx, j] * (a[j] - b)[:, None]
            return -r

        all_idx = torch.arange(P, device=X.device)
        D = direction(all_idx)
        gd = (g * D).sum(-1)
        converged = torch.isfinite(E) & (-gd <= etol * E.abs())
        failed = ~torch.isfinite(E)
        alpha = torch.ones(P, dtype=dtype, device=X.device)
        for _ in range(self.max_iter):
            active = ~converged & ~failed
            if not bool(active.any()):
                break
            idx = active.nonzero().squeeze(-1)
            p_try = p[idx] + alpha[idx, None] * D[idx]
            E_t, g_t = self._value_and_grad(
                manifold, (ends[0][idx], ends[1][idx]), p_try, kind, holomorphic
            )
            slack = 16 * eps * E[idx].abs()
            ok = torch.isfinite(E_t) & (E_t <= E[idx] + ARMIJO * alpha[idx] * gd[idx] + slack)
            acc, rej = idx[ok], idx[~ok]
            if acc.numel():
                s = p_try[ok] - p[acc]
                y = g_t[ok] - g[acc]
                sy = (s * y).sum(-1)
                push = sy > eps**0.5 * s.norm(dim=-1) * y.norm(dim=-1)
                pa = acc[push]
                if pa.numel():
                    S[pa] = torch.roll(S[pa], 1, dims=1)
                    Y[pa] = torch.roll(Y[pa], 1, dims=1)
                    rho[pa] = torch.roll(rho[pa], 1, dims=1)
                    S[pa, 0], Y[pa, 0], rho[pa, 0] = s[push], y[push], 1 / sy[push]
                p[acc], E[acc], g[acc] = p_try[ok], E_t[ok], g_t[ok]
                D[acc] = direction(acc)
                gd[acc] = (g[acc] * D[acc]).sum(-1)
                # A direction that is not a descent direction: drop the history.
                bad = acc[gd[acc] >= 0]
                if bad.numel():
                    rho[bad] = 0
                    S[bad] = 0
                    Y[bad] = 0
                    D[bad] = direction(bad)
                    gd[bad] = (g[bad] * D[bad]).sum(-1)
                alpha[acc] = 1.0
                converged[acc] = -gd[acc] <= etol * E[acc].abs()
            if rej.numel():
                alpha[rej] = alpha[rej] * BACKTRACK
                failed[rej] = alpha[rej] < BACKTRACK**MAX_HALVINGS
        Xo = torch.cat(
            [ends[0][:, None], from_real(p.reshape(P, K - 1, 2 * n)), ends[1][:, None]], 1
        )
        scale = E.abs().clamp_min(torch.finfo(dtype).tiny)
        decrement = torch.where(torch.isfinite(E), (-gd).clamp_min(0) / scale, math.inf)
        return Xo, converged & torch.isfinite(E), E, decrement

    # -- holomorphy -------------------------------------------------------------------------
    def tolerances(self, manifold, dtype: torch.dtype) -> tuple[float, float]:
        """``(energy_rtol, length_rtol)`` used on ``manifold`` in ``dtype``: the options, or
        their defaults (``length_rtol``: `DECODER_LENGTH_RTOL` on decoder manifolds, else
        `LENGTH_RTOL`; ``energy_rtol``: `ENERGY_PER_LENGTH_RTOL` × the length tolerance, at most
        `COARSE_ENERGY_RTOL`, the coarse levels' tolerance)."""
        if self.length_rtol is not None:
            ltol = self.length_rtol
        elif _decoder_hooks(manifold) is not None:
            ltol = DECODER_LENGTH_RTOL[dtype]
        else:
            ltol = LENGTH_RTOL[dtype]
        if self.energy_rtol is not None:
            return self.energy_rtol, ltol
        return min(ENERGY_PER_LENGTH_RTOL * ltol, COARSE_ENERGY_RTOL), ltol

    def holomorphy_tolerance(self, manifold, dtype: torch.dtype) -> float:
        """Largest `holomorphy_defect` at which ``holomorphic="auto"`` drops the rotated term:
        `HOLOMORPHY_RTOL` for the dtype, at most a tenth of the length tolerance."""
        return min(HOLOMORPHY_RTOL[dtype], self.tolerances(manifold, dtype)[1] / 10)

    def _holomorphic_along(self, manifold, X: torch.Tensor) -> torch.Tensor:
        """bool ``(P,)``: the real Fisher matrix is J-invariant (to `holomorphy_tolerance`) at
        every point of ``X`` ``(P, T, n)``."""
        P, T, n = X.shape
        defect = holomorphy_defect(manifold, X.reshape(-1, n)).reshape(P, T)
        return defect.amax(-1) <= self.holomorphy_tolerance(manifold, X.real.dtype)

    # -- the solve --------------------------------------------------------------------------
    def _levels(self, manifold, z, w, kind, holomorphic, etol, ltol):
        """Coarse-to-fine solve of the pairs ``z``, ``w`` ``(P, n)`` with one energy.

        Returns ``(groups, L, ok, err)``: ``groups`` a list of ``(pair indices, nodes)``, one
        per level at which pairs stopped (passed the check, or reached ``max_segments``), and
        per pair the length, the success flag and the discretisation estimate ``(P,)``. A pair
        stops being refined (and its length being recomputed) once it passes.
        """
        P, n = z.shape
        dtype, dev = z.real.dtype, z.device
        levels = [self.coarse]
        while levels[-1] < self.max_segments:
            levels.append(2 * levels[-1])
        K = levels[0]
        t = torch.linspace(0, 1, K + 1, dtype=dtype, device=dev)[None, :, None]
        X = z[:, None] + t * (w - z)[:, None]
        X[:, 0], X[:, -1] = z, w  # exact end points (z + (w − z) need not round to w)
        idx = torch.arange(P, device=dev)  # pairs still being refined
        ok = torch.zeros(P, dtype=torch.bool, device=dev)
        nan = torch.full((P,), math.nan, dtype=dtype, device=dev)
        hist = [nan, nan, nan]  # lengths at K/8, K/4 and K/2
        L, err = nan.clone(), nan.clone()
        groups = []
        for K in levels:
            if X.shape[1] - 1 != K:
                X = resample(X, K)
            # Levels whose length is not checked only start the next one: a loose tolerance.
            tol = etol if 8 * K >= self.segments else max(etol, COARSE_ENERGY_RTOL)
            X, conv, _, decrement = self.minimise(manifold, X, kind, tol, holomorphic)
            if 8 * K < self.segments:
                continue  # lengths only at the last four regular levels and beyond
            with torch.no_grad():
                # lengths of the levels below ``segments`` only feed the estimate's history
                # (changes of 1e-4 and more): one rule per segment there
                qtol = QUADRATURE_SHARE * ltol if K >= self.segments else None
                L[idx], qerr = adaptive_spline_length(manifold, X, qtol)
            if K >= self.segments:
                est = discretisation_error(hist[0][idx], hist[1][idx], hist[2][idx], L[idx])
                # + the optimisation's share: a quarter of the relative Newton decrement
                err[idx] = est = est + qerr + decrement / 4
                passed = conv & (est <= ltol) & torch.isfinite(L[idx])
                ok[idx] = passed
                stop = passed | (K == levels[-1])
                if bool(stop.any()):
                    groups.append((idx[stop], X[stop]))
                    idx, X = idx[~stop], X[~stop]
                if idx.numel() == 0:
                    break
            hist = [hist[1], hist[2], L.clone()]
        return groups, L, ok, err

    def solve(self, manifold, z, w):
        P, n = z.shape
        dtype, dev = z.real.dtype, z.device
        kind = self.energy_kind(manifold)
        etol, ltol = self.tolerances(manifold, dtype)
        auto = self.holomorphic == "auto"
        if kind == "metric":  # no rotated term to drop
            holo = torch.zeros(P, dtype=torch.bool, device=dev)
        elif auto:  # before solving: J-invariance at five points of each chord
            t = torch.linspace(0, 1, HOLOMORPHY_CHORD_POINTS, dtype=dtype, device=dev)
            holo = self._holomorphic_along(manifold, z[:, None] + t[:, None] * (w - z)[:, None])
        else:
            holo = torch.full((P,), self.holomorphic, dtype=torch.bool, device=dev)
        L = torch.full((P,), math.nan, dtype=dtype, device=dev)
        ok = torch.zeros(P, dtype=torch.bool, device=dev)
        err = L.clone()
        groups = []
        for energy_holo in (True, False):
            ids = (holo == energy_holo).nonzero().squeeze(-1)
            if ids.numel() == 0:
                continue
            gs, Lg, okg, errg = self._levels(
                manifold, z[ids], w[ids], kind, energy_holo, etol, ltol
            )
            if energy_holo and auto:
                # after solving: J-invariance at every node of the returned curves; pairs where
                # it fails are solved again with the full energy (next loop pass).
                kept = []
                for gi, Xg in gs:
                    along = self._holomorphic_along(manifold, Xg)
                    holo[ids[gi[~along]]] = False
                    if bool(along.any()):
                        kept.append((gi[along], Xg[along]))
                gs = kept
            for gi, Xg in gs:
                groups.append((ids[gi], Xg))
                L[ids[gi]], ok[ids[gi]], err[ids[gi]] = Lg[gi], okg[gi], errg[gi]
        X = _common_nodes(groups, P)
        _, v0 = spline_eval(X, torch.zeros(1, dtype=dtype, device=dev))
        v0 = v0[:, 0]
        if self.refine is not None:
            holo = holo if kind == "divergence" else None
            return self._refined(manifold, z, w, v0, L, ok, err, holo)
        return LogResult(
            velocity=v0,
            length=L,
            converged=ok,
            residual=torch.zeros(P, dtype=dtype, device=dev),
            candidate_lengths=torch.where(ok, L, torch.full_like(L, math.nan))[:, None],
            connection=connection_of(manifold),
            solver=self,
            certified=ok.clone(),
            status=torch.where(ok, SUCCESS, NOT_CONVERGED),
            certificate="discrete",
            discretisation=err,
            nodes=X,
            holomorphic=holo if kind == "divergence" else None,
        )

    def _refined(self, manifold, z, w, v0, L_disc, ok_disc, err, holo):
        v, conv, cert, res = self.refine.refine(manifold, z, w, v0)
        L = h_norm(manifold.metric_field(z), v)
        status = torch.where(
            conv & cert, SUCCESS, torch.where(conv, CONJUGATE_POINT, NOT_CONVERGED)
        )
        nan = torch.full_like(L, math.nan)
        cand = torch.stack(
            [torch.where(conv & cert, L, nan), torch.where(ok_disc, L_disc, nan)], -1
        )
        return LogResult(
            velocity=v,
            length=L,
            converged=conv,
            residual=res,
            candidate_lengths=cand,
            connection=connection_of(manifold),
            solver=self,
            certified=cert & conv,
            status=status,
            discretisation=err,
            holomorphic=holo,
        )
