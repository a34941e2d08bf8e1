r"""Geodesics, exponential and logarithm maps, distances and parallel transport.

Connection: a manifold with ``is_kahler`` uses the Kähler Christoffel symbols in holomorphic
coordinates ($\ddot z_l + \Gamma^l_{ab}\dot z_a\dot z_b = 0$); any other Hermitian metric uses
the Levi-Civita connection of its real metric $G_R$. Results record which (``connection``).

* `exp`, `transport`, `sample_geodesic`: initial-value problems, integrated by an `Integrator`
  (`Dopri5`, adaptive, the default; `RK4`, fixed steps; or your own subclass).
* `solve_log`: one boundary-value solve with a `GeodesicSolver` — `EnergyMinimisation`
  (default; discrete curve energy from several initial curves, refined by `Shooting`) or
  `Shooting` alone, or `DiscreteEnergy` (decoder manifolds: discrete energy through the
  decoder's output distributions, coarse to fine, with a discretisation check) — returning
  velocity, length, status, certificate and (on request) points. The length is the minimum
  over the converged candidates with no conjugate point (`DiscreteEnergy`: the exact-metric
  length of its converged discrete curve).

Every result carries an int ``status`` per pair in one vocabulary, `STATUS_NAMES`. The manifold
methods (``exp``, ``log``, ``dist``, ``geodesic``, ``parallel_transport``) return NaN where a
solve failed or was not certified and emit a `GeodesicWarning`. Guide: ``docs/geodesics.md``.
"""

from kahlergeom.geodesics._api import (
    GeodesicWarning,
    exp,
    sample_geodesic,
    solve_log,
    transport,
)
from kahlergeom.geodesics._discrete import DiscreteEnergy
from kahlergeom.geodesics._ode import RK4, Dop853, Dopri5, Integrator, ODEResult
from kahlergeom.geodesics._ode import STATUS as STATUS_NAMES
from kahlergeom.geodesics._results import ExpResult, LogResult
from kahlergeom.geodesics._solvers import EnergyMinimisation, GeodesicSolver, Shooting

__all__ = [
    "RK4",
    "STATUS_NAMES",
    "DiscreteEnergy",
    "Dop853",
    "Dopri5",
    "EnergyMinimisation",
    "ExpResult",
    "GeodesicSolver",
    "GeodesicWarning",
    "Integrator",
    "LogResult",
    "ODEResult",
    "Shooting",
    "exp",
    "sample_geodesic",
    "solve_log",
    "transport",
]
