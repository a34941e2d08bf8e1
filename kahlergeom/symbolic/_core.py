r"""Symbolic Kähler geometry: Levi matrix, checks and curvature of $K(z, \bar z)$ with sympy.

Conventions (see the conventions page): $G[a, b] = g_{a\bar b} = \partial_a \bar\partial_b K$,
$\partial_a = \partial/\partial z_a$ and $\bar\partial_b = \partial/\partial \bar z_b$ with
$z, \bar z$ independent symbols; $g^{l\bar m}$ is the matrix $G^{-T}$.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import numpy as np
import sympy as sp
import torch
from sympy.polys.matrices import DomainMatrix

from kahlergeom.symbolic._expr import (
    check_coordinates,
    check_expr,
    check_matrix,
    conjugate,
    decide_zero,
    in_real_coordinates,
    random_points,
    tidy,
)
from kahlergeom.symbolic._torch import _env, _eval_unchecked, _walk

#: Relative tolerance of the sampled PSH test: the smallest eigenvalue at a point is compared
#: with ``rtol`` times the largest absolute eigenvalue there.
SAMPLED_RTOL = 1e-9


@dataclass(frozen=True)
class CheckResult:
    r"""Outcome of a symbolic check; truthy when the check passed.

    Attributes:
        ok: the verdict.
        method: ``"exact"`` when sympy decided every step symbolically; ``"sampled"`` when at
            least one step was decided by evaluation at seeded random points (evidence, not
            proof).
        message: a one-line human-readable summary.
        residual: the first nonzero residual (Hermitian/Kähler checks) or the failing minor
            (PSH), as a sympy expression; ``None`` when the check passed.
        index: where ``residual`` sits: ``(a, b)`` for Hermitian, ``(a, b, c)`` for Kähler
            (residual $\partial_c g_{a\bar b} - \partial_a g_{c\bar b}$), the minor's index
            tuple for PSH.
        minors: PSH only: ``(indices, minor, decision)`` per principal minor examined, with
            ``decision`` True (sign proved), False (proved to fail everywhere) or None.
        min_eigenvalue: PSH sampled (or failed): on failure the smallest eigenvalue of G at
            ``counterexample`` (the sample with the most negative eigenvalue relative to the
            largest one there); on a sampled pass the smallest eigenvalue over all samples.
        counterexample: PSH: a point (complex numpy array ``(n,)``) where G is not positive
            (semi)definite, or ``None``.
        n_samples: how many sample points were used (0 for a purely exact decision).
    """

    ok: bool
    method: str
    message: str
    residual: sp.Expr | None = None
    index: tuple | None = None
    minors: tuple = field(default=())
    min_eigenvalue: float | None = None
    counterexample: np.ndarray | None = None
    n_samples: int = 0

    def __bool__(self) -> bool:
        return bool(self.ok)


# --------------------------------------------------------------------------- Levi matrix


def is_real(K, z, zb) -> bool:
    r"""Whether $K(z, \bar z)$ is real on $\bar z = \mathrm{conj}(z)$.

    Decided as $K - K^* \equiv 0$ with $K^*$ the formal conjugate (swap ``z ↔ zb``,
    conjugate coefficients), by ``cancel``/``simplify``; if sympy cannot simplify the
    difference, by evaluation at seeded random points (see `decide_zero`).
    """
    z, zb = check_coordinates(z, zb)
    K = check_expr(K, z, zb, "K")
    return decide_zero(K - conjugate(K, z, zb), z, zb)[0]


def levi_matrix(K, z, zb, *, simplify: bool = True) -> sp.ImmutableMatrix:
    r"""Levi matrix $G[a, b] = \partial^2 K / \partial z_a \partial \bar z_b$ (sympy, n×n).

    Args:
        K: a real scalar sympy expression in ``z``, ``zb`` (real parameters allowed).
        z, zb: coordinate symbols from `symbols`.
        simplify: factor each entry (rational parts cancelled); ``False`` returns the raw
            derivatives.

    Raises:
        ValueError: ``K`` is not real, not a scalar, uses unsupported functions or unknown
            symbols; ``z``/``zb`` invalid.
    """
    z, zb = check_coordinates(z, zb)
    K = _check_real(K, z, zb, "K")
    n = len(z)
    G = sp.Matrix(n, n, lambda a, b: sp.diff(K, z[a], zb[b]))
    return sp.ImmutableMatrix(G.applyfunc(tidy) if simplify else G)


def _check_real(K, z, zb, name: str) -> sp.Expr:
    K = check_expr(K, z, zb, name)
    if not decide_zero(K - conjugate(K, z, zb), z, zb)[0]:
        raise ValueError(
            f"{name} must be real: K(z, zb) must equal its conjugate with z <-> zb swapped and "
            f"coefficients conjugated; got {name} = {K}. Write |w|^2 as w*wb."
        )
    return K


def _metric(K_or_G, z, zb, name: str = "K_or_G", simplify: bool = True) -> sp.ImmutableMatrix:
    """G from a potential (scalar) or a Hermitian matrix field (checked)."""
    if isinstance(K_or_G, (sp.MatrixBase, list, tuple)):
        G = check_matrix(K_or_G, z, zb, name)
        herm = check_hermitian(G, z, zb)
        if not herm:
            raise ValueError(
                f"{name} must be Hermitian (G[a,b] = conj(G[b,a])); entry {herm.index} has "
                f"residual G[a,b] - conj(G[b,a]) = {herm.residual}."
            )
        return G
    return levi_matrix(_check_real(K_or_G, z, zb, name), z, zb, simplify=simplify)


# --------------------------------------------------------------------------- checks


def check_hermitian(G, z, zb) -> CheckResult:
    r"""Check $G[a, b] = \overline{G[b, a]}$ as functions of $z$ (``zb = conj(z)``).

    Each residual $G[a,b] - G[b,a]^*$ ($^*$: formal conjugate) is simplified; the first
    nonzero one is returned in the result (``index = (a, b)``).
    """
    z, zb = check_coordinates(z, zb)
    G = check_matrix(G, z, zb, "G")
    n, method = len(z), "exact"
    for a, b in itertools.combinations_with_replacement(range(n), 2):
        r = G[a, b] - conjugate(G[b, a], z, zb)
        zero, how = decide_zero(r, z, zb)
        method = "sampled" if how == "sampled" else method
        if not zero:
            return CheckResult(
                False, how, f"not Hermitian: G[{a},{b}] != conj(G[{b},{a}])", tidy(r), (a, b)
            )
    return CheckResult(True, method, "Hermitian")


def check_kahler(G, z, zb) -> CheckResult:
    r"""Kähler (closedness) check of a Hermitian matrix field $G(z, \bar z)$.

    $\omega = i\, g_{a\bar b}\, dz_a \wedge d\bar z_b$ is closed iff
    $\partial_c g_{a\bar b} - \partial_a g_{c\bar b} = 0$ for all a, b, c (the $\bar\partial$
    half follows by Hermitian symmetry). Returns the first nonzero residual with
    ``index = (a, b, c)``. ``G = levi_matrix(K)`` always passes.

    Raises:
        ValueError: ``G`` is not an n×n Hermitian matrix of supported expressions.
    """
    z, zb = check_coordinates(z, zb)
    G = _metric(G, z, zb, "G")
    n, method = len(z), "exact"
    for a, c in itertools.combinations(range(n), 2):
        for b in range(n):
            r = sp.diff(G[a, b], z[c]) - sp.diff(G[c, b], z[a])
            zero, how = decide_zero(r, z, zb)
            method = "sampled" if how == "sampled" else method
            if not zero:
                msg = f"not Kähler: d_{c} g[{a},{b}] - d_{a} g[{c},{b}] != 0"
                return CheckResult(False, how, msg, tidy(r), (a, b, c))
    return CheckResult(True, method, "Kähler (closed)")


def check_psh(
    K_or_G,
    z,
    zb,
    *,
    strict: bool = False,
    domain=None,
    radius: float = 2.0,
    n_samples: int = 256,
    seed: int = 0,
    exact: bool = True,
) -> CheckResult:
    r"""Plurisubharmonicity: is $G = \partial\bar\partial K \succeq 0$ (``strict``: $\succ 0$)?

    **Exact route** (``exact=True``): the principal minors of G are written in real
    coordinates $z = x + iy$ (real symbols) and their sign is asked of sympy's assumptions
    after factoring. Semidefinite needs *every* principal minor $\ge 0$; definite
    (``strict``) needs the leading minors $> 0$ (Sylvester). sympy reasons over all real
    $x, y$ where the minor is defined, *ignoring* ``domain``: a minor proved nonnegative
    everywhere proves PSH, and one proved negative everywhere (e.g. a negative constant)
    disproves it; both give ``method="exact"``.

    **Sampled fallback**: when some minor is undecided (typically it needs the domain, as for
    the ball), G is evaluated at ``n_samples`` seeded random points, uniform in the complex
    ball of ``radius`` and kept only where ``domain`` holds, and its eigenvalues are checked
    (smallest ≥ −``SAMPLED_RTOL``·largest, or > for ``strict``). The result then says
    ``method="sampled"``: a failure comes with a counterexample point; a pass is evidence
    on the samples, not a proof.

    Args:
        K_or_G: a real potential (scalar expression) or a Hermitian n×n matrix field.
        z, zb: coordinate symbols.
        strict: test positive definiteness instead of semidefiniteness.
        domain: sympy relation in ``z, zb`` (e.g. ``z1*zb1 < 1``) or callable on complex
            torch points ``(m, n)`` → bool ``(m,)``, restricting the sample points.
        radius, n_samples, seed: the sampler.
        exact: try the exact route first (``False``: sample only).

    Returns:
        A `CheckResult` (truthy if PSH) with the minors, and, when sampled or failed, the
        smallest eigenvalue found and a counterexample point.

    Raises:
        ValueError: ``K_or_G`` not real / not Hermitian / unsupported; no sample point lies in
            ``domain``; sampling needed but the expression has free parameters.
    """
    z, zb = check_coordinates(z, zb)
    G = _metric(K_or_G, z, zb)
    n = len(z)
    if isinstance(n_samples, bool) or not isinstance(n_samples, int) or n_samples < 1:
        raise ValueError(f"n_samples must be an integer >= 1; got {n_samples!r}.")
    if not radius > 0:
        raise ValueError(f"radius must be positive; got {radius!r}.")
    kind = "positive definite" if strict else "positive semidefinite"
    minors: list = []
    if exact:
        subsets = (
            [tuple(range(k)) for k in range(1, n + 1)]
            if strict
            else [s for k in range(1, n + 1) for s in itertools.combinations(range(n), k)]
        )
        for idx in subsets:
            m = tidy(det(G.extract(list(idx), list(idx))))
            decision = _decide_sign(m, z, zb, strict)
            minors.append((idx, m, decision))
            if decision is False:
                try:  # an illustration only: the exact verdict does not depend on it
                    point, lam, count = _worst_point(G, z, zb, strict, domain, radius, 16, seed)
                except ValueError:
                    point, lam, count = None, None, 0
                return CheckResult(
                    False,
                    "exact",
                    f"not {kind}: principal minor {idx} = {m} is proved "
                    f"{'not positive' if strict else 'negative'} everywhere",
                    m,
                    idx,
                    tuple(minors),
                    lam,
                    point,
                    count,
                )
        if all(d for _, _, d in minors):
            how = "leading minors > 0" if strict else "all principal minors >= 0"
            return CheckResult(True, "exact", f"{kind} ({how}, proved)", minors=tuple(minors))
    point, lam, count = _worst_point(G, z, zb, strict, domain, radius, n_samples, seed)
    ok = point is None
    msg = (
        f"{kind} at all {count} sample points (smallest eigenvalue {lam:.3g})"
        if ok
        else f"not {kind}: eigenvalue {lam:.3g} at a sample point"
    )
    return CheckResult(
        ok,
        "sampled",
        msg,
        minors=tuple(minors),
        min_eigenvalue=lam,
        counterexample=point,
        n_samples=count,
    )


def _decide_sign(minor: sp.Expr, z, zb, strict: bool) -> bool | None:
    """True: minor ≥ 0 (> 0 if strict) wherever defined; False: it fails everywhere; None."""
    num, den = sp.fraction(sp.factor(minor))
    _, x, y = in_real_coordinates(sp.S.Zero, z, zb)
    sub = {z[a]: x[a] + sp.I * y[a] for a in range(len(z))}
    sub |= {zb[a]: x[a] - sp.I * y[a] for a in range(len(z))}

    def real_forms(p):
        # factor by factor (keeps even powers visible), then fully expanded; lazily.
        parts = (f.as_base_exp() for f in sp.Mul.make_args(p))
        yield sp.Mul(*(sp.expand(b.xreplace(sub)) ** k for b, k in parts))
        yield sp.expand(p.xreplace(sub))

    nums, dens = list(real_forms(num)), list(real_forms(den))
    # denominators: nonnegative means positive wherever the minor is defined.
    den_pos = any(d.is_nonnegative for d in dens)
    den_neg = any(d.is_nonpositive for d in dens)
    if not (den_pos or den_neg):
        return None
    sign = 1 if den_pos else -1
    if strict:
        good = any((p.is_positive if sign > 0 else p.is_negative) for p in nums)
        bad = any((p.is_nonpositive if sign > 0 else p.is_nonnegative) for p in nums)
    else:
        good = any((p.is_nonnegative if sign > 0 else p.is_nonpositive) for p in nums)
        bad = any((p.is_negative if sign > 0 else p.is_positive) for p in nums)
    return True if good else (False if bad else None)


def _sample_domain(n, count, radius, seed, domain, z, zb) -> torch.Tensor:
    """``count`` seeded points (complex128 (count, n)) in the ball of ``radius`` ∩ domain."""
    kept, total = [], 0
    for attempt in range(50):
        pts = torch.from_numpy(random_points(n, 4 * count, radius, seed + attempt))
        if domain is not None:
            if isinstance(domain, sp.Basic):
                inside = _walk(domain, _env(z, zb, pts), {})
            else:
                inside = domain(pts)
            inside = torch.as_tensor(inside, dtype=torch.bool).expand(pts.shape[:-1])
            pts = pts[inside]
        kept.append(pts)
        total += pts.shape[0]
        if total >= count:
            break
    if total == 0:
        raise ValueError(
            f"domain: no sample point in the ball of radius {radius} satisfies {domain}; "
            "pass a radius that reaches the domain."
        )
    return torch.cat(kept)[:count]


def _worst_point(G, z, zb, strict, domain, radius, n_samples, seed):
    """Evaluate G on samples; return (counterexample or None, smallest eigenvalue, count)."""
    extra = set().union(*(e.free_symbols for e in G)) - set(z) - set(zb)
    if extra:
        raise ValueError(
            f"K_or_G has free parameters {sorted(map(str, extra))}; the PSH question could not "
            "be settled symbolically, and sampling needs numbers: substitute values first."
        )
    pts = _sample_domain(len(z), n_samples, radius, seed, domain, z, zb)
    vals = _eval_unchecked(list(G), z, zb, pts)
    Gv = torch.stack(vals, -1).reshape(-1, len(z), len(z))
    finite = torch.isfinite(Gv).all(-1).all(-1)
    pts, Gv = pts[finite], Gv[finite]
    if pts.shape[0] == 0:
        raise ValueError("K_or_G: G is not finite at any sample point; check domain/radius.")
    eig = torch.linalg.eigvalsh(0.5 * (Gv + Gv.mH))
    scale = eig.abs().amax(-1).clamp_min(torch.finfo(eig.dtype).tiny)
    rel = eig[:, 0] / scale
    worst = int(torch.argmin(rel))
    bad = rel[worst] <= SAMPLED_RTOL if strict else rel[worst] < -SAMPLED_RTOL
    if bool(bad):
        return pts[worst].numpy().copy(), float(eig[worst, 0]), int(pts.shape[0])
    return None, float(eig[:, 0].min()), int(pts.shape[0])


# --------------------------------------------------------------------------- curvature


def det(M: sp.MatrixBase) -> sp.Expr:
    """Determinant of a matrix of expressions, computed in a rational-function field.

    Non-polynomial pieces (function applications, fractional powers) are frozen as
    placeholders, so the determinant runs over Q(i)(z, zb, ...) with polynomial arithmetic
    (much faster than sympy's generic algorithms on rational-function entries).
    """
    frozen: dict = {}
    for e in M:
        for node in sp.preorder_traversal(e):
            if isinstance(node, sp.Function) or (node.is_Pow and not node.exp.is_Integer):
                frozen.setdefault(node, sp.Dummy())
    Mf = sp.Matrix(M).xreplace(frozen)
    dm = DomainMatrix.from_Matrix(Mf).to_field()
    value = dm.domain.to_sympy(dm.det())
    return value.xreplace({d: node for node, d in frozen.items()})


def _inverse(G: sp.MatrixBase, simplify: bool) -> sp.Matrix:
    n = G.shape[0]
    D = tidy(det(G))
    # adjugate from cofactors: adj[i, j] = (-1)^(i+j) det(G without row j, column i)
    cof = sp.Matrix(
        n,
        n,
        lambda i, j: (-1) ** (i + j) * det(_drop(G, j, i)) if n > 1 else sp.S.One,
    )
    inv = cof / D
    return inv.applyfunc(tidy) if simplify else inv


def _drop(G: sp.MatrixBase, row: int, col: int) -> sp.Matrix:
    keep_r = [i for i in range(G.shape[0]) if i != row]
    keep_c = [j for j in range(G.shape[1]) if j != col]
    return G.extract(keep_r, keep_c)


def christoffel(K_or_G, z, zb, *, simplify: bool = True) -> sp.ImmutableDenseNDimArray:
    r"""Kähler Christoffel symbols ``Γ[l, a, b]`` $= \Gamma^l_{ab} = \sum_m g^{l\bar m}
    \partial_a g_{b\bar m}$, a sympy Array of shape (n, n, n) (the convention of
    ``kahlergeom.curvature.kahler_christoffel``)."""
    z, zb = check_coordinates(z, zb)
    G = _metric(K_or_G, z, zb, simplify=simplify)
    n, inv = len(z), _inverse(G, simplify)
    # Σ_m g^{l m̄} ∂_a g_{b m̄} = Σ_m (G^{-1})[m, l] ∂_a G[b, m] = (∂_a G · G^{-1})[b, l]
    per_a = [G.diff(z[a]) * inv for a in range(n)]
    out = [[[per_a[a][b, l] for b in range(n)] for a in range(n)] for l in range(n)]
    arr = sp.Array(out)
    return sp.ImmutableDenseNDimArray(arr.applyfunc(tidy) if simplify else arr)


def ricci_form(K_or_G, z, zb, *, simplify: bool = True) -> sp.ImmutableMatrix:
    r"""Ricci form $\mathrm{Ric}[a, b] = -\partial_a \bar\partial_b \log\det G$ (sympy n×n).

    Computed without a logarithm as
    $-(\det G\,\partial_a\bar\partial_b \det G - \partial_a\det G\,\bar\partial_b\det G)
    / (\det G)^2$. Kähler–Einstein metrics have $\mathrm{Ric} = \lambda G$ (Fubini–Study:
    $n+1$; ball: $-(n+1)$).
    """
    z, zb = check_coordinates(z, zb)
    G = _metric(K_or_G, z, zb, simplify=simplify)
    n = len(z)
    D = tidy(det(G))
    Ric = sp.Matrix(
        n,
        n,
        lambda a, b: -(D * sp.diff(D, z[a], zb[b]) - sp.diff(D, z[a]) * sp.diff(D, zb[b])) / D**2,
    )
    return sp.ImmutableMatrix(Ric.applyfunc(tidy) if simplify else Ric)


def riemann_tensor(K_or_G, z, zb, *, simplify: bool = True) -> sp.ImmutableDenseNDimArray:
    r"""Riemann tensor ``R[a, b, c, d]`` $= R_{a\bar b c\bar d}$, a sympy Array (n, n, n, n).

    $R_{a\bar b c\bar d} = -\partial_c\bar\partial_d g_{a\bar b}
    + \sum_{m,k} g^{m\bar k}\,(\partial_c g_{a\bar k})(\bar\partial_d g_{m\bar b})$, with
    $g^{m\bar k} = (G^{-1})[k, m]$; i.e. for each (c, d) the matrix
    $R[:, :, c, d] = -\partial_c\bar\partial_d G + (\partial_c G)\, G^{-1} (\bar\partial_d G)$.
    Fubini–Study: $R = g\otimes g + $ (b ↔ d); the ball: its negative. ``simplify=False``
    is much faster for n ≥ 2 (substitute a point, then simplify).
    """
    z, zb = check_coordinates(z, zb)
    G = _metric(K_or_G, z, zb, simplify=simplify)
    n, inv = len(z), _inverse(G, simplify)
    blocks = {
        (c, d): -G.diff(z[c]).diff(zb[d]) + G.diff(z[c]) * inv * G.diff(zb[d])
        for c in range(n)
        for d in range(n)
    }
    out = [
        [[[blocks[c, d][a, b] for d in range(n)] for c in range(n)] for b in range(n)]
        for a in range(n)
    ]
    arr = sp.Array(out)
    return sp.ImmutableDenseNDimArray(arr.applyfunc(tidy) if simplify else arr)


def holomorphic_sectional_curvature(
    K_or_G, z, zb, v=None, vb=None, *, simplify: bool = True
) -> sp.Expr:
    r"""Holomorphic sectional curvature $H(v) = R(v, \bar v, v, \bar v) / h(v, v)^2$.

    $R(v,\bar v,v,\bar v) = \sum R_{a\bar b c\bar d}\, v_a \bar v_b v_c \bar v_d$ and
    $h(v, v) = \sum g_{a\bar b} v_a \bar v_b$ (conventions page). Computed along $v$ directly:
    $v^\top[-D\bar D G + (DG)\,G^{-1}(\bar D G)]\,\bar v$ with $D = \sum_c v_c\partial_c$,
    $\bar D = \sum_d \bar v_d \bar\partial_d$.

    Args:
        v: the direction: numbers or expressions free of ``z``, ``zb``; ``None`` makes symbols
            ``v1..vn`` (and ``vb1..vbn`` for $\bar v$).
        vb: $\bar v$; default the conjugate of ``v`` (required if ``v`` holds symbols).

    Returns:
        A sympy expression in ``z, zb`` (and ``v``, ``vb``). Fubini–Study: 2; ball: −2.
    """
    z, zb = check_coordinates(z, zb)
    G = _metric(K_or_G, z, zb, simplify=simplify)
    n = len(z)
    v, vb = _direction(v, vb, n, z, zb)
    DG = sum((v[c] * G.diff(z[c]) for c in range(n)), sp.zeros(n, n))
    DbG = sum((vb[d] * G.diff(zb[d]) for d in range(n)), sp.zeros(n, n))
    DDbG = sum((vb[d] * DG.diff(zb[d]) for d in range(n)), sp.zeros(n, n))
    if simplify:  # keep the pieces small: factor them before combining
        DG, DbG, DDbG = (X.applyfunc(tidy) for X in (DG, DbG, DDbG))
    M = -DDbG + DG * _inverse(G, simplify) * DbG
    if simplify:
        M = M.applyfunc(tidy)
    vr, vbc = sp.Matrix([list(v)]), sp.Matrix(list(vb))
    num, h = (vr * M * vbc)[0, 0], (vr * G * vbc)[0, 0]
    if simplify:
        return tidy(tidy(num) / tidy(h) ** 2)
    return num / h**2


def _direction(v, vb, n, z, zb):
    if v is None:
        if vb is not None:
            raise ValueError("vb given without v; pass both or neither.")
        return sp.symbols(f"v1:{n + 1}"), sp.symbols(f"vb1:{n + 1}")
    v = tuple(sp.sympify(e) for e in v)
    if len(v) != n:
        raise ValueError(f"v must have n = {n} entries; got {len(v)}.")
    if any(e.free_symbols & (set(z) | set(zb)) for e in v):
        raise ValueError(f"v must not depend on the coordinates z, zb; got {v}.")
    if vb is None:
        if any(e.free_symbols for e in v):
            raise ValueError(f"v holds symbols {v}; pass vb (its conjugate) explicitly.")
        vb = tuple(sp.conjugate(e) for e in v)
    vb = tuple(sp.sympify(e) for e in vb)
    if len(vb) != n:
        raise ValueError(f"vb must have n = {n} entries; got {len(vb)}.")
    return v, vb
