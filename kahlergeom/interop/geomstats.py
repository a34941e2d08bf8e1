r"""Use geomstats' estimators on kahlergeom manifolds.

`as_geomstats` wraps a `kahlergeom.HermitianManifold` (a `KahlerManifold` or a
`FisherManifold`) as a geomstats manifold on $\mathbb{R}^{2n}$ in the real coordinates
$u = (\operatorname{Re} z, \operatorname{Im} z)$ (x first, docs/conventions.md). Its metric is a
geomstats ``RiemannianMetric`` whose ``metric_matrix(u)`` is the real metric
$G_R = \begin{pmatrix}\operatorname{Re} G & \operatorname{Im} G\\ -\operatorname{Im} G &
\operatorname{Re} G\end{pmatrix}$ at $z = u_{:n} + i\,u_{n:}$, so that
$u^\top G_R u = h(v, v)$ for $u = (\operatorname{Re} v, \operatorname{Im} v)$.

By default ``exp``, ``log``, ``dist`` and ``squared_dist`` call kahlergeom's own geodesic
solvers (adaptive Dormand–Prince shooting and the multi-start boundary solver, which returns
the shortest converged candidate). geomstats' generic machinery for a metric given only by its
matrix (fixed Euler steps, L-BFGS shooting) is much slower and was measured up to 456% off on
the Fubini–Study chart; pass ``geodesics="geomstats"`` to keep it anyway.

geomstats needs ``GEOMSTATS_BACKEND=pytorch`` before its first import, and importing it sets
torch's default dtype to float64 as a side effect. `as_geomstats` sets the variable when it is
unset, raises ``RuntimeError`` when geomstats was already imported with another backend, and
restores torch's default dtype after the import.
"""

from __future__ import annotations

import os
import sys
import warnings

import torch

from kahlergeom.wirtinger import from_real, to_real

__all__ = ["as_geomstats", "import_geomstats"]

_GEODESICS = ("kahlergeom", "geomstats")


def import_geomstats():
    """Import geomstats with the pytorch backend, keeping torch's default dtype.

    Returns the ``geomstats`` module. Raises ``RuntimeError`` if geomstats was imported before
    with a backend other than pytorch (the backend cannot be switched after the first import),
    and ``ImportError`` with an install hint if geomstats is missing.
    """
    backend = os.environ.get("GEOMSTATS_BACKEND")
    if "geomstats" in sys.modules:
        loaded = getattr(sys.modules.get("geomstats._backend"), "BACKEND_NAME", None)
        if loaded is None:
            loaded = os.environ.get("GEOMSTATS_BACKEND", "numpy")
        if loaded != "pytorch":
            raise RuntimeError(
                f"geomstats was already imported with the backend {loaded!r}; "
                "kahlergeom.interop.geomstats needs the pytorch backend. Set "
                "GEOMSTATS_BACKEND=pytorch before geomstats is first imported (or call "
                "kahlergeom.interop.geomstats.as_geomstats before importing geomstats)."
            )
        return sys.modules["geomstats"]
    if backend is None:
        os.environ["GEOMSTATS_BACKEND"] = "pytorch"
    elif backend != "pytorch":
        raise RuntimeError(
            f"GEOMSTATS_BACKEND is set to {backend!r}; kahlergeom.interop.geomstats needs "
            "GEOMSTATS_BACKEND=pytorch (set it before geomstats is first imported)."
        )
    dtype = torch.get_default_dtype()
    try:
        with warnings.catch_warnings():
            # geomstats' backend importer triggers ImportWarning (exec_module fallback) and
            # may warn about optional packages on import; none concern kahlergeom's use.
            warnings.simplefilter("ignore")
            import geomstats
            import geomstats.backend  # noqa: F401
    except ImportError as e:  # pragma: no cover - geomstats is a dependency
        raise ImportError(
            "kahlergeom.interop.geomstats needs geomstats (pip install geomstats==2.8.0)"
        ) from e
    finally:
        torch.set_default_dtype(dtype)
    return geomstats


def _as_real(x) -> torch.Tensor:
    x = torch.as_tensor(x)
    if x.is_complex():
        raise ValueError(
            f"expected real coordinates u = (Re z, Im z) of shape (..., 2n); got a complex "
            f"tensor of shape {tuple(x.shape)}"
        )
    if not x.is_floating_point():
        x = x.to(torch.get_default_dtype())
    return x


def as_geomstats(manifold, *, geodesics: str = "kahlergeom", solver=None, integrator=None):
    r"""A geomstats manifold on $\mathbb{R}^{2n}$ equipped with the real metric of ``manifold``.

    Points and tangent vectors are real tensors ``(..., 2n)``, u = (Re z, Im z). geomstats'
    pytorch backend computes in float64: run its estimators with
    ``torch.set_default_dtype(torch.float64)`` (restore your default afterwards).

    Args:
        manifold: a `kahlergeom.HermitianManifold` (`KahlerManifold`, `FisherManifold`, ...)
            of complex dimension n.
        geodesics: ``"kahlergeom"`` (default): the metric's ``exp``, ``log``, ``dist`` and
            ``squared_dist`` call ``manifold.exp/log/dist`` (far more accurate than
            geomstats' generic solvers; NaN and a ``GeodesicWarning`` where they do not
            converge). ``"geomstats"``: keep geomstats' generic machinery (Christoffel
            symbols by autodiff of ``metric_matrix``, numerical integration and shooting).
        solver: passed to ``manifold.log/dist`` (e.g. `kahlergeom.geodesics.Shooting()`, faster
            for nearby points); kahlergeom geodesics only.
        integrator: passed to ``manifold.exp``; kahlergeom geodesics only.

    Returns:
        An instance of a subclass of ``geomstats.geometry.euclidean.Euclidean(dim=2n)`` whose
        ``belongs(u)`` is ``manifold.contains(from_real(u))`` (for a finite real point of
        shape ``(..., 2n)``) and whose ``metric`` is a geomstats ``RiemannianMetric`` with
        ``metric_matrix(u) = manifold.real_metric(from_real(u))``. ``space.kahler_manifold``
        is the wrapped manifold.

    Raises:
        ValueError: ``manifold`` is not a kahlergeom manifold, or ``geodesics`` is unknown.
        RuntimeError: geomstats was already imported with a backend other than pytorch.

    Example:
        ```python
        import torch
        import kahlergeom as kg
        from kahlergeom.interop.geomstats import as_geomstats

        space = as_geomstats(kg.KahlerManifold(kg.potentials.FubiniStudy(1)))
        from geomstats.learning.frechet_mean import FrechetMean

        torch.set_default_dtype(torch.float64)
        X = torch.tensor([[0.6, 0.2], [-0.6, -0.2], [0.1, 0.5], [-0.1, -0.5]])
        mean = FrechetMean(space).fit(X).estimate_  # ≈ 0 (the points are symmetric about 0)
        ```
    """
    if geodesics not in _GEODESICS:
        raise ValueError(f"geodesics must be one of {_GEODESICS}; got {geodesics!r}")
    if not hasattr(manifold, "real_metric") or not hasattr(manifold, "n"):
        raise ValueError(
            "manifold must be a kahlergeom HermitianManifold (KahlerManifold, FisherManifold); "
            f"got {type(manifold).__name__}"
        )
    import_geomstats()
    from geomstats.geometry.euclidean import Euclidean
    from geomstats.geometry.riemannian_metric import RiemannianMetric

    n = int(manifold.n)
    use_ours = geodesics == "kahlergeom"

    class KahlerRealMetric(RiemannianMetric):
        """The real metric G_R of a kahlergeom manifold, in coordinates u = (Re z, Im z)."""

        def metric_matrix(self, base_point=None):
            if base_point is None:
                raise ValueError("metric_matrix needs a base_point u of shape (..., 2n)")
            u = _as_real(base_point)
            return manifold.real_metric(from_real(u))

        if use_ours:

            def exp(self, tangent_vec, base_point):
                u = _as_real(base_point)
                v = _as_real(tangent_vec).to(u.dtype)
                return to_real(manifold.exp(from_real(u), from_real(v), integrator=integrator))

            def log(self, point, base_point):
                u = _as_real(base_point)
                w = _as_real(point).to(u.dtype)
                return to_real(manifold.log(from_real(u), from_real(w), solver=solver))

            def dist(self, point_a, point_b):
                a = _as_real(point_a)
                b = _as_real(point_b).to(a.dtype)
                return manifold.dist(from_real(a), from_real(b), solver=solver)

            def squared_dist(self, point_a, point_b):
                return self.dist(point_a, point_b) ** 2

    class KahlerRealSpace(Euclidean):
        """R^{2n} (real coordinates of a kahlergeom chart) with the manifold's real metric."""

        def __init__(self):
            super().__init__(dim=2 * n, equip=False)
            self.kahler_manifold = manifold
            self.geodesics = geodesics
            self.equip_with_metric(KahlerRealMetric)

        @staticmethod
        def default_metric():
            return KahlerRealMetric

        def belongs(self, point, atol=None):
            u = torch.as_tensor(point)
            if u.is_complex() or u.shape[-1:] != (2 * n,):
                return torch.zeros(u.shape[:-1], dtype=torch.bool)
            u = _as_real(u)
            finite = torch.isfinite(u).all(-1)
            z = from_real(torch.where(finite[..., None], u, torch.zeros_like(u)))
            return finite & torch.as_tensor(manifold.contains(z), dtype=torch.bool)

        def __repr__(self):
            return f"as_geomstats({manifold!r}, geodesics={geodesics!r})"

    return KahlerRealSpace()
