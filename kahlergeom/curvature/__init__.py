"""Connections and curvature of Hermitian/Kähler metric fields (autodiff, batched)."""

from kahlergeom._checks import NotKahlerError
from kahlergeom.curvature._connection import (
    kahler_christoffel,
    levi_civita_christoffel,
    real_metric_fn,
)
from kahlergeom.curvature._curvature import (
    bisectional_curvature,
    holomorphic_sectional_curvature,
    ricci,
    riemann,
    riemannian_sectional_curvature,
    scalar_curvature,
)

__all__ = [
    "NotKahlerError",
    "bisectional_curvature",
    "holomorphic_sectional_curvature",
    "kahler_christoffel",
    "levi_civita_christoffel",
    "real_metric_fn",
    "ricci",
    "riemann",
    "riemannian_sectional_curvature",
    "scalar_curvature",
]
