"""Manifolds: a chart of C^n with a Hermitian metric field (Kähler when from a potential)."""

from kahlergeom._linalg import hermitian_logdet, psh_tolerance, real_metric
from kahlergeom.manifolds._fisher import FisherManifold
from kahlergeom.manifolds._hermitian import HermitianManifold, KahlerManifold

__all__ = [
    "FisherManifold",
    "HermitianManifold",
    "KahlerManifold",
    "hermitian_logdet",
    "psh_tolerance",
    "real_metric",
]
