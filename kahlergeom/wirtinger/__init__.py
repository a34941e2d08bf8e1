"""Wirtinger calculus on complex points, batched with ``torch.func``.

Conventions (docs/conventions.md): z = x + i y, real coordinates u = (x, y) with x first,
∂_a = ½(∂/∂x_a − i ∂/∂y_a), ∂̄_a = ½(∂/∂x_a + i ∂/∂y_a), Levi matrix G[a, b] = ∂_a ∂̄_b f.
"""

from kahlergeom.wirtinger._ddbar import (
    closedness_residual,
    ddbar,
    from_real,
    partial,
    partial_bar,
    to_real,
    wirtinger_jacobian,
)

__all__ = [
    "closedness_residual",
    "ddbar",
    "from_real",
    "wirtinger_jacobian",
    "partial",
    "partial_bar",
    "to_real",
]
