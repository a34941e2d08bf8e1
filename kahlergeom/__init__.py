"""kahlergeom: Kähler geometry of complex latent spaces.

Layers (imports go one way): ``wirtinger`` ← ``potentials`` ← ``manifolds``; ``symbolic``
(sympy oracles) and ``testing`` (checks for users) sit beside them. See DESIGN.md.
"""

from kahlergeom import decoders, potentials, wirtinger
from kahlergeom.manifolds import FisherManifold, HermitianManifold, KahlerManifold
from kahlergeom.wirtinger import ddbar

__version__ = "0.1.0"

__all__ = [
    "FisherManifold",
    "HermitianManifold",
    "KahlerManifold",
    "ddbar",
    "decoders",
    "potentials",
    "wirtinger",
    "__version__",
]
