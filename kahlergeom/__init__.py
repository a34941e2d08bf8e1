"""kahlergeom: Kähler geometry of complex latent spaces.

Layers (imports go one way, DESIGN.md states them and ``tests/test_architecture.py`` enforces
them): ``_checks``/``_linalg`` ← ``wirtinger`` ← ``decoders`` ← ``potentials`` ←
``curvature``/``symbolic`` ← ``geodesics`` ← ``manifolds`` ← ``volume``/``surrogates`` ←
``sampling`` ← ``data``/``vae`` ← ``distributed``/``evaluation``/``interop``/``testing`` ←
``demo`` ← ``cli``.

The core names are imported eagerly; the heavier subpackages load on first attribute access
(``kahlergeom.sampling``, ``kahlergeom.symbolic``, ...), so ``import kahlergeom`` stays light.
"""

import importlib

from kahlergeom import decoders, potentials, wirtinger
from kahlergeom.manifolds import FisherManifold, HermitianManifold, KahlerManifold
from kahlergeom.wirtinger import ddbar

__version__ = "0.1.0"

_LAZY = (
    "curvature",
    "data",
    "demo",
    "evaluation",
    "geodesics",
    "interop",
    "sampling",
    "surrogates",
    "symbolic",
    "testing",
    "vae",
    "volume",
)


def __getattr__(name: str):
    if name in _LAZY:
        module = importlib.import_module(f"kahlergeom.{name}")
        globals()[name] = module
        return module
    raise AttributeError(f"module 'kahlergeom' has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + list(_LAZY))


__all__ = [
    "FisherManifold",
    "HermitianManifold",
    "KahlerManifold",
    "ddbar",
    "decoders",
    "potentials",
    "wirtinger",
    "__version__",
    *_LAZY,
]
