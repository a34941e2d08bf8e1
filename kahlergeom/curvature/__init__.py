"""Connections and curvature of Hermitian/Kähler metric fields (autodiff, batched)."""

from kahlergeom.curvature._connection import (
    kahler_christoffel,
    levi_civita_christoffel,
    real_metric_fn,
)

__all__ = ["kahler_christoffel", "levi_civita_christoffel", "real_metric_fn"]
