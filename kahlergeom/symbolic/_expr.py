r"""Expressions in $z$ and $\bar z$: symbols, validation, formal conjugation, zero tests.

A potential is written with sympy in $z_1..z_n$ and $\bar z_1..\bar z_n$ treated as
*independent* symbols (``zb1..zbn``), so that $\partial_a = \partial/\partial z_a$ and
$\bar\partial_b = \partial/\partial \bar z_b$ are plain sympy derivatives. The value at a point
$z \in \mathbb C^n$ is the expression evaluated at ``zb = conj(z)``.

Formal conjugation $f^*(z, \bar z) = \overline{f(\bar{\bar z}, \bar z)}$ swaps ``z_a`` and
``zb_a`` and conjugates the numeric coefficients; for the supported functions (real on the
real axis) it equals the complex conjugate of the evaluated function away from branch cuts.
Two real-analytic functions of $(z, \bar z)$ that agree on $\bar z = \mathrm{conj}(z)$ agree
as functions of independent $z, \bar z$, so identities such as $f = f^*$ (reality) or
$G_{ab} = G_{ba}^*$ (Hermitian) are decided by symbolic equality.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import sympy as sp

#: Functions that may appear in an expression (real-valued on the real axis, so formal
#: conjugation is f(conj(x)) = conj(f(x)) away from branch cuts), mapped to torch names.
SUPPORTED_FUNCTIONS = {
    sp.exp: "exp",
    sp.log: "log",
    sp.sin: "sin",
    sp.cos: "cos",
    sp.tan: "tan",
    sp.sinh: "sinh",
    sp.cosh: "cosh",
    sp.tanh: "tanh",
    sp.asin: "asin",
    sp.acos: "acos",
    sp.atan: "atan",
    sp.asinh: "asinh",
    sp.acosh: "acosh",
    sp.atanh: "atanh",
}

_FORBIDDEN = (sp.conjugate, sp.re, sp.im, sp.Abs, sp.arg, sp.sign)
#: Rewritten into z and zb by `check_expr` (see `rewrite_real_parts`).
_REWRITTEN = (sp.conjugate, sp.re, sp.im, sp.Abs)


def symbols(n: int, z: str = "z", zb: str = "zb") -> tuple[tuple[sp.Symbol, ...], ...]:
    r"""Holomorphic and antiholomorphic coordinate symbols for $\mathbb C^n$.

    Returns ``(z, zb)``: two tuples of ``n`` plain sympy Symbols, ``z1..zn`` and ``zb1..zbn``
    (no assumptions: they are independent complex variables). Write $|z_a|^2$ as
    ``z[a] * zb[a]``.

    Example:
        >>> import sympy as sp
        >>> from kahlergeom import symbolic
        >>> z, zb = symbolic.symbols(2)
        >>> K = sp.log(1 + z[0] * zb[0] + z[1] * zb[1])   # Fubini–Study
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be an integer >= 1; got {n!r}.")
    if not (isinstance(z, str) and isinstance(zb, str) and z and zb and z != zb):
        raise ValueError(f"z and zb must be two different non-empty names; got {z!r}, {zb!r}.")
    zs = tuple(sp.Symbol(f"{z}{a + 1}") for a in range(n))
    zbs = tuple(sp.Symbol(f"{zb}{a + 1}") for a in range(n))
    return zs, zbs


def check_coordinates(z, zb) -> tuple[tuple[sp.Symbol, ...], tuple[sp.Symbol, ...]]:
    """Validate the coordinate symbols; return them as tuples (raises ValueError naming z/zb)."""
    out = []
    for name, seq in (("z", z), ("zb", zb)):
        if isinstance(seq, sp.Symbol):
            seq = (seq,)
        if not isinstance(seq, Sequence) or isinstance(seq, str) or len(seq) == 0:
            raise ValueError(
                f"{name} must be a non-empty tuple of sympy Symbols (use "
                f"kahlergeom.symbolic.symbols(n)); got {seq!r}."
            )
        for s in seq:
            if not isinstance(s, sp.Symbol):
                raise ValueError(f"{name} must hold sympy Symbols; got {s!r} ({type(s).__name__}).")
            if s.is_real or s.is_extended_real:
                raise ValueError(
                    f"{name}: symbol {s} carries a real assumption, but coordinates are complex. "
                    "Create them with kahlergeom.symbolic.symbols(n)."
                )
        if len(set(seq)) != len(seq):
            raise ValueError(f"{name} holds repeated symbols: {tuple(seq)}.")
        out.append(tuple(seq))
    z, zb = out
    if len(z) != len(zb):
        raise ValueError(
            f"z and zb must have the same length n; got {len(z)} and {len(zb)} symbols."
        )
    if set(z) & set(zb):
        raise ValueError(f"z and zb share symbols {sorted(map(str, set(z) & set(zb)))}.")
    return z, zb


def check_expr(expr, z, zb, name: str = "K") -> sp.Expr:
    """Sympify and validate a scalar expression in ``z``, ``zb`` (and real parameters).

    Raises ``ValueError`` naming ``name`` for matrices, unsupported functions (``Abs``,
    ``conjugate``, ``re``, ``im``, undefined functions, ...) and non-coordinate symbols that
    are not declared real.
    """
    if isinstance(expr, (sp.MatrixBase, sp.NDimArray, list, tuple)):
        raise ValueError(f"{name} must be a scalar sympy expression; got a {type(expr).__name__}.")
    try:
        expr = sp.sympify(expr)
    except (sp.SympifyError, TypeError) as err:
        raise ValueError(f"{name} must be a sympy expression; got {expr!r} ({err}).") from None
    if not isinstance(expr, sp.Expr):
        raise ValueError(
            f"{name} must be a sympy expression; got {expr!r} ({type(expr).__name__})."
        )
    expr = rewrite_real_parts(expr, z, zb)
    _check_nodes(expr, name)
    coords = set(z) | set(zb)
    for s in expr.free_symbols:
        if s not in coords and not s.is_real:
            raise ValueError(
                f"{name} contains the symbol {s}, which is neither a coordinate in z/zb "
                f"({', '.join(map(str, z + zb))}) nor declared real. Use the coordinates from "
                "symbols(n), declare parameters with sympy.Symbol(..., real=True), or substitute "
                "numbers."
            )
    return expr


def rewrite_real_parts(expr, z, zb):
    r"""Rewrite ``re``, ``im``, ``conjugate`` and ``Abs`` of expressions in z, zb.

    With $w^*$ the formal conjugate (`conjugate`): $\mathrm{Re}\,w = (w + w^*)/2$,
    $\mathrm{Im}\,w = (w - w^*)/(2i)$, $\bar w = w^*$ and $|w| = \sqrt{w\,w^*}$ (so
    ``Abs(w)**2`` becomes ``w*w^*``). Innermost first, so nested uses work. For example
    ``im(z1)`` becomes ``-I*(z1 - zb1)/2`` and ``-log(im(z1))`` is the half-plane potential.
    Other expressions are returned unchanged.
    """
    expr = sp.sympify(expr)
    if not expr.has(*_REWRITTEN):
        return expr
    z, zb = check_coordinates(z, zb)
    swap = dict(zip(z, zb, strict=True)) | dict(zip(zb, z, strict=True))

    def star(w):
        return _conj(w, swap)

    rules = (
        (sp.conjugate, star),
        (sp.re, lambda w: (w + star(w)) / 2),
        (sp.im, lambda w: (w - star(w)) / (2 * sp.I)),
        (sp.Abs, lambda w: sp.sqrt(sp.expand(w * star(w)))),
    )
    for func, rule in rules:
        expr = expr.replace(func, rule)
    return expr


def _check_nodes(expr: sp.Basic, name: str) -> None:
    for node in sp.preorder_traversal(expr):
        if isinstance(node, _FORBIDDEN):
            raise ValueError(
                f"{name} contains {node}, which cannot be written in z and zb; write |w|^2 as "
                "w*wb with the conjugate symbols (re, im, conjugate and Abs of coordinate "
                "expressions are rewritten automatically; arg and sign are not supported)."
            )
        if isinstance(node, sp.Function) and node.func not in SUPPORTED_FUNCTIONS:
            raise ValueError(
                f"{name} contains the function {node.func}, which is not supported; supported: "
                f"{', '.join(sorted(SUPPORTED_FUNCTIONS.values()))} (and powers, sums, products)."
            )
        if isinstance(node, (sp.Piecewise, sp.Order, sp.Integral, sp.Derivative)):
            raise ValueError(f"{name} contains {type(node).__name__}, which is not supported.")


def check_matrix(G, z, zb, name: str = "G") -> sp.Matrix:
    """Validate a square ``n×n`` sympy matrix field; return it as an immutable Matrix."""
    if isinstance(G, (list, tuple)):
        try:
            G = sp.Matrix(G)
        except (ValueError, TypeError) as err:
            raise ValueError(f"{name} must be an n×n sympy Matrix; got {G!r} ({err}).") from None
    if not isinstance(G, sp.MatrixBase):
        raise ValueError(f"{name} must be an n×n sympy Matrix; got {type(G).__name__}.")
    n = len(z)
    if G.shape != (n, n):
        raise ValueError(
            f"{name} must have shape ({n}, {n}) for n = {n} coordinates; got {G.shape}."
        )
    for entry in G:
        check_expr(entry, z, zb, name)
    return sp.ImmutableMatrix(G)


def conjugate(expr, z, zb):
    r"""Formal conjugate: swap ``z_a ↔ zb_a`` and conjugate numbers (``I → -I``).

    Works on scalars and matrices (entrywise, no transpose). Real parameters are left alone.
    For the supported functions this is the complex conjugate of the evaluated expression
    (away from branch cuts).
    """
    z, zb = check_coordinates(z, zb)
    swap = dict(zip(z, zb, strict=True)) | dict(zip(zb, z, strict=True))
    if isinstance(expr, sp.MatrixBase):
        return expr.applyfunc(lambda e: _conj(e, swap))
    return _conj(sp.sympify(expr), swap)


def _conj(expr: sp.Basic, swap: dict) -> sp.Basic:
    if expr in swap:
        return swap[expr]
    if expr.is_number:
        return sp.conjugate(expr)
    if isinstance(expr, sp.Symbol):  # a real parameter (validated by check_expr)
        return expr
    if not expr.args:
        raise ValueError(f"cannot conjugate {expr!r}.")
    return expr.func(*(_conj(a, swap) for a in expr.args))


def real_coordinates(n: int) -> tuple[tuple[sp.Symbol, ...], tuple[sp.Symbol, ...]]:
    """Real symbols ``x1..xn``, ``y1..yn`` (declared real) for z = x + i y."""
    return (
        tuple(sp.Symbol(f"x{a + 1}", real=True) for a in range(n)),
        tuple(sp.Symbol(f"y{a + 1}", real=True) for a in range(n)),
    )


def in_real_coordinates(expr, z, zb):
    r"""Substitute $z_a = x_a + i y_a$, $\bar z_a = x_a - i y_a$ (real ``x``, ``y``) and expand.

    Returns ``(expr_xy, x, y)``. Works on scalars and matrices.
    """
    z, zb = check_coordinates(z, zb)
    x, y = real_coordinates(len(z))
    sub = {z[a]: x[a] + sp.I * y[a] for a in range(len(z))}
    sub |= {zb[a]: x[a] - sp.I * y[a] for a in range(len(z))}
    if isinstance(expr, sp.MatrixBase):
        return expr.applyfunc(lambda e: sp.expand(e.xreplace(sub))), x, y
    return sp.expand(sp.sympify(expr).xreplace(sub)), x, y


def tidy(expr: sp.Expr) -> sp.Expr:
    """Cheap canonical simplification: factor rational parts (falls back to the input)."""
    if expr.is_number:  # exact complex numbers: a + b*I with each part evaluated
        return sp.expand_complex(expr)
    try:
        return sp.factor(expr)
    except (sp.PolynomialError, NotImplementedError, TypeError):  # pragma: no cover
        return sp.simplify(expr)


def random_points(n: int, count: int, radius: float, seed: int) -> np.ndarray:
    """Seeded points uniform in the complex ball of ``radius``: complex array (count, n)."""
    rng = np.random.default_rng(seed)
    g = rng.standard_normal((count, n)) + 1j * rng.standard_normal((count, n))
    r = rng.random((count, 1)) ** (1 / (2 * n))
    return radius * r * g / np.linalg.norm(g, axis=-1, keepdims=True)


def decide_zero(expr, z, zb, *, seed: int = 0, count: int = 6) -> tuple[bool, str]:
    """Is ``expr`` identically zero? Returns ``(verdict, method)``.

    ``method`` is ``"exact"`` when sympy settles it (``cancel``/``simplify`` give 0, or the
    cancelled numerator is a nonzero polynomial or number), ``"sampled"`` when it is decided
    by evaluating at seeded random points of the ball of radius 1/2 (with random values for
    real parameters): nonzero at some point → False, zero at all → True (not a proof).
    """
    expr = sp.sympify(expr)
    if expr == 0:
        return True, "exact"
    e = sp.cancel(sp.together(expr))
    if e == 0:
        return True, "exact"
    if e.is_number:
        return bool(sp.simplify(e) == 0), "exact"
    num = sp.fraction(e)[0]
    gens = sorted(num.free_symbols, key=str)
    if num.is_polynomial(*gens):
        poly = sp.Poly(num, *gens)
        # exact coefficient domains (not EX) compare canonically: a nonzero poly is nonzero
        if not poly.domain.is_EX and not poly.is_zero:
            return False, "exact"
    s = sp.simplify(e)
    if s == 0:
        return True, "exact"
    if s.is_zero is False:
        return False, "exact"
    return _numeric_zero(s, z, zb, seed=seed, count=count), "sampled"


def _numeric_zero(expr, z, zb, *, seed: int, count: int) -> bool:
    params = sorted(expr.free_symbols - set(z) - set(zb), key=str)
    rng = np.random.default_rng(seed + 1)
    pts = random_points(len(z), count, 0.5, seed)
    f = sp.lambdify((*z, *zb, *params), expr, modules="mpmath")
    vals = []
    for p in pts:
        pv = [
            abs(v) + 0.5 if s.is_positive else v
            for s, v in zip(params, rng.standard_normal(len(params)), strict=True)
        ]
        try:
            v = complex(f(*p, *np.conj(p), *pv))
        except (ValueError, ZeroDivisionError, TypeError, OverflowError):
            continue
        if np.isfinite(v):
            vals.append(abs(v))
    if not vals:
        raise ValueError(
            f"could not decide whether {expr} is zero: sympy did not simplify it and it could not "
            "be evaluated at sample points."
        )
    return max(vals) <= 1e-9
