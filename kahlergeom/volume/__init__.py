r"""Volumes $\int_U \det G\, dA$ of regions of a chart (Riemannian volume, docs/conventions.md §
Metric, lengths, volume).

* `volume_monte_carlo(manifold, n_samples, *, region=None, proposal=None, ...)`: importance
  sampling with a standard error and diagnostics (effective sample size, tail index of the
  weights); failed checks raise `VolumeConvergenceError` instead of returning a silent number.
* `volume_quadrature(manifold, region=None, *, order=48, ...)`: Gauss–Legendre quadrature in
  low dimension (n = 1 disks and the whole plane in polar coordinates; boxes for any n).
* Regions: `Ball`, `Box`, `Predicate` (or any callable ``z -> bool``). Proposals:
  `GaussianProposal`, `StudentTProposal`, `UniformProposal`.
"""

from kahlergeom.volume._common import VolumeConvergenceError
from kahlergeom.volume._monte_carlo import MonteCarloVolume, hill_tail_index, volume_monte_carlo
from kahlergeom.volume._proposals import (
    GaussianProposal,
    Proposal,
    StudentTProposal,
    UniformProposal,
)
from kahlergeom.volume._quadrature import QuadratureVolume, volume_quadrature
from kahlergeom.volume._regions import Ball, Box, Predicate, Region

__all__ = [
    "Ball",
    "Box",
    "GaussianProposal",
    "MonteCarloVolume",
    "Predicate",
    "Proposal",
    "QuadratureVolume",
    "Region",
    "StudentTProposal",
    "UniformProposal",
    "VolumeConvergenceError",
    "hill_tail_index",
    "volume_monte_carlo",
    "volume_quadrature",
]
