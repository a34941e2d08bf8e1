"""Bridges to other geometry libraries.

``kahlergeom.interop.geomstats.as_geomstats(manifold)`` wraps a kahlergeom manifold as a
geomstats manifold on R^{2n}. geomstats is imported lazily, inside that function only.
"""
