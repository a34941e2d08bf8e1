r"""From sympy to torch: numerical evaluation and `to_potential`.

An expression in $z, \bar z$ is evaluated on complex tensors with ``zb = conj(z)``, by a
walk over its tree that emits plain torch operations (sums, products, integer powers,
``torch.log`` ...). Nothing branches on data, so the result is traceable by ``torch.func``
(``vmap``, ``hessian`` in real coordinates), and $|z_a|^2$ enters as the product
``z_a * conj(z_a)``, which is smooth at 0 (no ``abs``). Repeated subexpressions are
evaluated once per call.
"""

from __future__ import annotations

import functools
import operator
from collections.abc import Callable

import sympy as sp
import torch

from kahlergeom._checks import check_points
from kahlergeom.potentials._base import KahlerPotential
from kahlergeom.symbolic._expr import (
    SUPPORTED_FUNCTIONS,
    check_coordinates,
    check_expr,
    conjugate,
    decide_zero,
    rewrite_real_parts,
)

_TORCH_FUNCTIONS = {f: getattr(torch, name) for f, name in SUPPORTED_FUNCTIONS.items()}
_RELATIONS = {
    sp.StrictLessThan: operator.lt,
    sp.LessThan: operator.le,
    sp.StrictGreaterThan: operator.gt,
    sp.GreaterThan: operator.ge,
}


def _number(node: sp.Basic):
    v = complex(node.evalf(17))
    return v.real if v.imag == 0 else v


def _walk(node: sp.Basic, env: dict, memo: dict):
    if node in memo:
        return memo[node]
    if node in env:
        val = env[node]
    elif isinstance(node, sp.Expr) and not node.free_symbols:
        val = _number(node)
    elif node.is_Add:
        val = functools.reduce(operator.add, (_walk(a, env, memo) for a in node.args))
    elif node.is_Mul:
        val = functools.reduce(operator.mul, (_walk(a, env, memo) for a in node.args))
    elif node.is_Pow:
        b, e = node.args
        base = _walk(b, env, memo)
        if e.is_Integer:
            k = int(e)
            val = base**k if k >= 0 else 1 / base ** (-k)
        elif e == sp.S.Half:
            val = torch.sqrt(base)
        elif e == -sp.S.Half:
            val = 1 / torch.sqrt(base)
        else:
            val = base ** _walk(e, env, memo)
    elif isinstance(node, sp.Function) and node.func in _TORCH_FUNCTIONS:
        val = _TORCH_FUNCTIONS[node.func](_walk(node.args[0], env, memo))
    elif type(node) in _RELATIONS:
        diff = _walk(node.lhs - node.rhs, env, memo)
        val = _RELATIONS[type(node)](torch.as_tensor(diff).real, 0)
    elif isinstance(node, sp.And):
        val = functools.reduce(torch.logical_and, (_walk(a, env, memo) for a in node.args))
    elif isinstance(node, sp.Or):
        val = functools.reduce(torch.logical_or, (_walk(a, env, memo) for a in node.args))
    elif isinstance(node, sp.Not):
        val = torch.logical_not(_walk(node.args[0], env, memo))
    else:
        raise ValueError(f"cannot evaluate {node!r} ({type(node).__name__}) in torch.")
    memo[node] = val
    return val


def _env(z_syms, zb_syms, zt: torch.Tensor) -> dict:
    zc = zt.conj()
    env = {s: zt[..., a] for a, s in enumerate(z_syms)}
    env |= {s: zc[..., a] for a, s in enumerate(zb_syms)}
    return env


def _as_batch(val, zt: torch.Tensor, dtype=None) -> torch.Tensor:
    """Broadcast a (possibly constant) value to the batch shape of the points."""
    dtype = dtype or zt.dtype
    if not isinstance(val, torch.Tensor):
        val = torch.as_tensor(val, dtype=dtype, device=zt.device)
    elif dtype is not torch.bool:
        val = val.to(dtype)
    return val.expand(zt.shape[:-1]) if val.shape != zt.shape[:-1] else val


def _eval_unchecked(exprs: list, z_syms, zb_syms, zt: torch.Tensor) -> list[torch.Tensor]:
    env, memo = _env(z_syms, zb_syms, zt), {}
    return [_as_batch(_walk(e, env, memo), zt) for e in exprs]


def to_torch(expr, z, zb) -> Callable[[torch.Tensor], torch.Tensor]:
    r"""Compile a scalar or matrix expression of $(z, \bar z)$ into a torch function.

    Returns ``f(points)``: complex ``(..., n)`` → complex ``(...)`` (scalar) or
    ``(..., r, c)`` (an ``r×c`` matrix), evaluated at ``zb = conj(points)``. ``f`` does not
    validate its input, so it can run inside ``torch.func`` transforms, e.g. as the
    ``metric_fn`` of ``kahlergeom.wirtinger.closedness_residual`` or of the curvature code.

    Raises:
        ValueError: bad symbols, unsupported nodes, or free symbols other than the coordinates.
    """
    z, zb = check_coordinates(z, zb)
    if isinstance(expr, sp.MatrixBase):
        shape = expr.shape
        entries = [_no_parameters(check_expr(e, z, zb, "expr"), z, zb, "expr") for e in expr]

        def matrix_fn(points: torch.Tensor) -> torch.Tensor:
            vals = _eval_unchecked(entries, z, zb, points)
            return torch.stack(vals, -1).reshape(*points.shape[:-1], *shape)

        return matrix_fn
    e = _no_parameters(check_expr(expr, z, zb, "expr"), z, zb, "expr")

    def scalar_fn(points: torch.Tensor) -> torch.Tensor:
        return _eval_unchecked([e], z, zb, points)[0]

    return scalar_fn


def evaluate(expr, z, zb, points: torch.Tensor) -> torch.Tensor:
    r"""Evaluate a scalar or matrix expression of $(z, \bar z)$ at complex points.

    ``zb`` is set to ``conj(points)``. Shapes: ``points`` ``(..., n)`` → ``(...)`` for a
    scalar, ``(..., r, c)`` for an ``r×c`` matrix; complex, with the dtype of ``points``.
    The checked counterpart of `to_torch`.

    Raises:
        ValueError: bad symbols, unsupported nodes, free symbols other than the coordinates,
            or ``points`` not complex of last dimension n.
    """
    fn = to_torch(expr, z, zb)
    check_points(points, len(check_coordinates(z, zb)[0]), "points")
    return fn(points)


def _no_parameters(expr: sp.Expr, z, zb, name: str) -> sp.Expr:
    extra = expr.free_symbols - set(z) - set(zb)
    if extra:
        raise ValueError(
            f"{name} has free parameters {sorted(map(str, extra))}; substitute numbers for them "
            "(expr.subs({...})) before evaluating numerically."
        )
    return expr


class SymbolicPotential(KahlerPotential):
    r"""A `KahlerPotential` evaluating a sympy expression $K(z, \bar z)$ in torch.

    Build it with `to_potential`. ``__call__(z)`` evaluates ``K`` at ``zb = conj(z)`` with
    complex torch operations and returns the real part: complex ``(..., n)`` → real ``(...)``
    (float32 for complex64, float64 for complex128). Traceable by ``torch.func``.

    Attributes:
        expr: the sympy expression $K$.
        z, zb: its coordinate symbols.
        domain: the sympy predicate or callable given as ``domain`` (or ``None``).
    """

    def __init__(self, expr: sp.Expr, z, zb, domain=None, name: str | None = None):
        super().__init__(len(z))
        self.expr, self.z, self.zb, self.domain = expr, z, zb, domain
        self.name = name or "SymbolicPotential"
        if domain is None:
            self.domain_description = "all of C^n"
        elif isinstance(domain, sp.Basic):
            self.domain_description = f"the set where {domain}"
        else:
            label = getattr(domain, "__name__", type(domain).__name__)
            self.domain_description = f"the set where {label}(z) is True"

    def __call__(self, z: torch.Tensor) -> torch.Tensor:
        return _eval_unchecked([self.expr], self.z, self.zb, z)[0].real

    def contains(self, z: torch.Tensor) -> torch.Tensor:
        if self.domain is None:
            return super().contains(z)
        if isinstance(self.domain, sp.Basic):
            env, memo = _env(self.z, self.zb, z), {}
            return _as_batch(_walk(self.domain, env, memo), z, torch.bool)
        return _as_batch(torch.as_tensor(self.domain(z)), z, torch.bool)

    def __repr__(self) -> str:
        return f"{self.name}(n={self.n}, K={self.expr})"


def to_potential(
    K, z, zb, domain: sp.Basic | Callable | None = None, name: str | None = None
) -> SymbolicPotential:
    r"""Turn a sympy potential $K(z, \bar z)$ into a torch `KahlerPotential`.

    Args:
        K: real scalar expression in the coordinates (checked with `is_real`); no other free
            symbols (substitute numbers for parameters first).
        z, zb: the coordinate symbols (from `symbols`).
        domain: where K is defined, as a sympy relation in ``z, zb`` (e.g.
            ``z1*zb1 + z2*zb2 < 1``; ``And``/``Or``/``Not`` allowed; both sides real), or a
            callable ``(..., n)`` complex tensor → bool ``(...)``. It gives ``contains``, so
            public entry points (``kahlergeom.ddbar``, ``KahlerManifold``) reject points outside.
        name: a label for ``repr``.

    Returns:
        A `SymbolicPotential`; ``kahlergeom.ddbar(pot, z)`` differentiates it by autodiff.

    Raises:
        ValueError: ``K`` not real, unsupported, or with parameters; bad ``z``/``zb``;
            ``domain`` neither a real sympy relation nor a callable.

    Example:
        >>> import sympy as sp, torch, kahlergeom as kg
        >>> from kahlergeom import symbolic
        >>> z, zb = symbolic.symbols(1)
        >>> disk = symbolic.to_potential(-sp.log(1 - z[0] * zb[0]), z, zb, domain=z[0] * zb[0] < 1)
        >>> kg.ddbar(disk, torch.zeros(1, dtype=torch.complex128)).real
        tensor([[1.]], dtype=torch.float64)
    """
    z, zb = check_coordinates(z, zb)
    K = _no_parameters(check_expr(K, z, zb, "K"), z, zb, "K")
    real, _ = decide_zero(K - conjugate(K, z, zb), z, zb)
    if not real:
        raise ValueError(f"K must be real (K = conj(K) with z <-> zb swapped); got K = {K}.")
    if domain is not None:
        domain = _check_domain(domain, z, zb)
    if name is not None and not isinstance(name, str):
        raise ValueError(f"name must be a string or None; got {name!r}.")
    return SymbolicPotential(K, z, zb, domain, name)


def _check_domain(domain, z, zb):
    if isinstance(domain, bool) or domain in (sp.true, sp.false):
        raise ValueError(f"domain must be a relation in z, zb or a callable; got {domain!r}.")
    if isinstance(domain, sp.Basic):
        domain = rewrite_real_parts(domain, z, zb)
        rels = [r for r in sp.preorder_traversal(domain) if type(r) in _RELATIONS]
        if not rels or not isinstance(domain, (sp.And, sp.Or, sp.Not, *_RELATIONS)):
            raise ValueError(
                "domain must be a strict/non-strict inequality (or And/Or/Not of them) in z, zb; "
                f"got {domain} ({type(domain).__name__})."
            )
        for r in rels:
            side = _no_parameters(check_expr(r.lhs - r.rhs, z, zb, "domain"), z, zb, "domain")
            if not decide_zero(side - conjugate(side, z, zb), z, zb)[0]:
                raise ValueError(f"domain: both sides of {r} must be real; {side} is not.")
        return domain
    if callable(domain):
        return domain
    raise ValueError(
        f"domain must be a sympy relation in z, zb or a callable; got {type(domain).__name__}."
    )
