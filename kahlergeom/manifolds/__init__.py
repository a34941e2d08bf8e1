"""Manifolds: a chart of C^n with a Hermitian metric field (Kähler when from a potential)."""

from kahlergeom._linalg import hermitian_logdet, psh_tolerance, real_metric
from kahlergeom.manifolds._fisher import FisherManifold
from kahlergeom.manifolds._hermitian import HermitianManifold, KahlerManifold
from kahlergeom.manifolds._sharded import evaluate_metric_field

__all__ = [
    "FisherManifold",
    "HermitianManifold",
    "KahlerManifold",
    "evaluate_metric_field",
    "hermitian_logdet",
    "psh_tolerance",
    "real_metric",
]
