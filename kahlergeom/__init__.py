"""kahlergeom: Kähler geometry of complex latent spaces.

Layers (imports go one way): ``wirtinger`` ← ``potentials`` ← ``manifolds``; ``symbolic``
(sympy oracles) and ``testing`` (checks for users) sit beside them. See DESIGN.md.
"""

from kahlergeom import potentials, wirtinger
from kahlergeom.manifolds import HermitianManifold, KahlerManifold
from kahlergeom.wirtinger import ddbar

__version__ = "0.1.0"

__all__ = ["HermitianManifold", "KahlerManifold", "ddbar", "potentials", "wirtinger", "__version__"]
