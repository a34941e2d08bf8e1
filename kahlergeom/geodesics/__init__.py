r"""Geodesics, exponential and logarithm maps, distances and parallel transport.

Connection: a manifold with ``is_kahler`` uses the Kähler Christoffel symbols in holomorphic
coordinates ($\ddot z_l + \Gamma^l_{ab}\dot z_a\dot z_b = 0$); any other Hermitian metric uses
the Levi-Civita connection of its real metric $G_R$. Results record which (``connection``).

* `exp`, `transport`, `sample_geodesic`: initial-value problems, integrated by the batched
  adaptive Dormand–Prince RK5(4) `dopri5` (per-trajectory step control) configured by `Dopri5`.
* `solve_log`: boundary-value problems with a `GeodesicSolver` — `EnergyMinimisation`
  (default; discrete curve energy from several initial curves, refined by `Shooting`) or
  `Shooting` alone. The length is the minimum over the converged candidates.

The manifold methods (``exp``, ``log``, ``dist``, ``geodesic``, ``parallel_transport``) return
NaN where a solve failed and emit a `GeodesicWarning`; these functions return result records.
"""

from kahlergeom.geodesics._api import (
    GeodesicWarning,
    exp,
    sample_geodesic,
    solve_log,
    transport,
)
from kahlergeom.geodesics._equations import connection_of, geodesic_rhs
from kahlergeom.geodesics._ode import STATUS, ODEResult, dopri5, rk_fixed
from kahlergeom.geodesics._solvers import (
    Dopri5,
    EnergyMinimisation,
    ExpResult,
    GeodesicSolver,
    LogResult,
    Shooting,
)

__all__ = [
    "STATUS",
    "Dopri5",
    "EnergyMinimisation",
    "ExpResult",
    "GeodesicSolver",
    "GeodesicWarning",
    "LogResult",
    "ODEResult",
    "Shooting",
    "connection_of",
    "dopri5",
    "exp",
    "geodesic_rhs",
    "rk_fixed",
    "sample_geodesic",
    "solve_log",
    "transport",
]
