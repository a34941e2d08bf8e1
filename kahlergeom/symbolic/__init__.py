r"""Symbolic oracles (sympy): potentials written in $z$ and $\bar z$ as independent symbols.

Write a potential with the symbols from `symbols`, e.g. ``K = log(1 + z1*zb1)``, then:

* `levi_matrix` — $G[a,b] = \partial_a\bar\partial_b K$; `is_real`, `conjugate`;
* `check_hermitian`, `check_psh` (exact by principal minors where sympy can decide, sampled
  otherwise — the result says which), `check_kahler` (closedness of a matrix field);
* `christoffel`, `ricci_form`, `riemann_tensor`, `holomorphic_sectional_curvature`;
* `to_potential` — a torch `KahlerPotential` for the same K; `to_torch` / `evaluate` —
  torch functions / numbers from any expression or matrix at complex torch points.

Index conventions are those of the conventions page (``G[a, b] = g_{a b̄}``,
``g^{l m̄} = G^{-T}``).
"""

from kahlergeom.symbolic._core import (
    SAMPLED_RTOL,
    CheckResult,
    check_hermitian,
    check_kahler,
    check_psh,
    christoffel,
    holomorphic_sectional_curvature,
    is_real,
    levi_matrix,
    ricci_form,
    riemann_tensor,
)
from kahlergeom.symbolic._expr import (
    conjugate,
    decide_zero,
    in_real_coordinates,
    real_coordinates,
    symbols,
)
from kahlergeom.symbolic._torch import SymbolicPotential, evaluate, to_potential, to_torch

__all__ = [
    "SAMPLED_RTOL",
    "CheckResult",
    "SymbolicPotential",
    "check_hermitian",
    "check_kahler",
    "check_psh",
    "christoffel",
    "conjugate",
    "decide_zero",
    "evaluate",
    "holomorphic_sectional_curvature",
    "in_real_coordinates",
    "is_real",
    "levi_matrix",
    "real_coordinates",
    "ricci_form",
    "riemann_tensor",
    "symbols",
    "to_potential",
    "to_torch",
]
