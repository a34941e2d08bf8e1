"""Anchor baselines: the exact metric at the nearest anchor, and its smooth kernel average."""

from __future__ import annotations

import torch

from kahlergeom._checks import check_points, check_points_and_metrics, check_temperature
from kahlergeom.manifolds._hermitian import HermitianManifold


def _check_anchor_metrics(anchors, metrics):
    anchors, metrics = check_points_and_metrics(
        anchors, metrics, names=("anchors", "metrics"), count="m"
    )
    if not bool(torch.isfinite(metrics).all()):
        raise ValueError("metrics must be finite (no NaN or inf).")
    return anchors, 0.5 * (metrics + metrics.mH)


def _anchor_sq_dists(z: torch.Tensor, anchors: torch.Tensor) -> torch.Tensor:
    """|z − a_j|² in C^n ≅ R^{2n}, real ``(..., m)`` (traceable).

    Expanded as |z|² + |a_j|² − 2 Re⟨z, a_j⟩ (one matrix product, no (..., m, n) intermediate),
    clamped at 0 against rounding.
    """
    u = torch.view_as_real(z).flatten(-2)
    a = torch.view_as_real(anchors).flatten(-2)
    d2 = u.square().sum(-1, keepdim=True) + a.square().sum(-1) - 2 * u @ a.T
    return d2.clamp_min(0)


class _AnchorMetrics(HermitianManifold):
    def __init__(self, anchors: torch.Tensor, metrics: torch.Tensor):
        self.anchors, self.metrics = _check_anchor_metrics(anchors, metrics)
        super().__init__(self.anchors.shape[1])

    @property
    def m(self) -> int:
        """Number of anchors."""
        return self.anchors.shape[0]

    @classmethod
    def from_manifold(cls, manifold: HermitianManifold, anchors: torch.Tensor, **kwargs):
        """Evaluate ``manifold.metric`` (e.g. the exact `FisherManifold`) at ``anchors`` (m, n)."""
        if not isinstance(manifold, HermitianManifold):
            raise ValueError(
                f"manifold must be a kahlergeom HermitianManifold; got {type(manifold).__name__}."
            )
        check_points(anchors, manifold.n, "anchors")
        return cls(anchors, manifold.metric(anchors).detach(), **kwargs)

    def _on(self, z):
        return (
            self.anchors.to(device=z.device, dtype=z.dtype),
            self.metrics.to(device=z.device, dtype=z.dtype),
        )


def _not_smooth(name):
    def method(self, *args, **kwargs):
        raise ValueError(
            f"NearestAnchorManifold.{name}: the nearest-anchor metric is piecewise constant and "
            "jumps across cell boundaries, so geodesics and curvature are not defined by it. Use "
            "KernelAnchorManifold, a surrogate potential, or the exact FisherManifold instead."
        )

    method.__name__ = name
    return method


class NearestAnchorManifold(_AnchorMetrics):
    r"""Baseline: the metric at z is the exact metric at the nearest anchor.

    $G(z) = G_{j^*}$, $j^* = \arg\min_j |z - a_j|$ (Euclidean distance of C^n ≅ R^{2n}; ties go
    to the lower index). Piecewise constant on the Voronoi cells of the anchors: exact at the
    anchors, PSD wherever the anchor metrics are, O(m n) per point, but **not smooth** — it jumps
    across cell boundaries, so it is no use for geodesics or curvature (those methods raise).

    Args:
        anchors: complex ``(m, n)``.
        metrics: Hermitian ``(m, n, n)``, the metric at each anchor (`from_manifold` computes
            them from a manifold).
    """

    def metric_field(self, z):
        anchors, metrics = self._on(z)
        return metrics[_anchor_sq_dists(z, anchors).argmin(-1)]

    def nearest(self, z: torch.Tensor) -> torch.Tensor:
        """Index of the nearest anchor, int64 ``(...)``."""
        self.check_point(z)
        anchors, _ = self._on(z)
        return _anchor_sq_dists(z, anchors).argmin(-1)


for _name in (
    "exp",
    "log",
    "dist",
    "geodesic",
    "parallel_transport",
    "riemannian_sectional_curvature",
    "closedness_residual",
):
    setattr(NearestAnchorManifold, _name, _not_smooth(_name))
del _name


class KernelAnchorManifold(_AnchorMetrics):
    r"""Baseline: a smooth average of the exact anchor metrics with Gaussian-kernel weights.

    $$G(z) = \sum_j \pi_j(z)\, G_j,\qquad \pi = \mathrm{softmax}_j\big(-|z - a_j|^2/\tau\big).$$

    A convex combination of PSD matrices, so PSD; smooth; O(m n²) per point; tends to
    `NearestAnchorManifold` as τ → 0 and to the plain average of the anchor metrics as τ → ∞.
    It is a Hermitian metric field, **not** the Levi matrix of a potential (not Kähler in
    general): geodesics use the Levi-Civita connection of its real metric.

    Args:
        anchors: complex ``(m, n)``.
        metrics: Hermitian ``(m, n, n)``.
        temperature: kernel bandwidth ``τ > 0`` (in squared latent distance).
    """

    def __init__(self, anchors: torch.Tensor, metrics: torch.Tensor, temperature: float = 1.0):
        super().__init__(anchors, metrics)
        self.temperature = check_temperature(temperature)

    def with_temperature(self, temperature: float) -> KernelAnchorManifold:
        """The same anchors and metrics with another bandwidth."""
        return KernelAnchorManifold(self.anchors, self.metrics, temperature)

    def weights(self, z: torch.Tensor) -> torch.Tensor:
        """Kernel weights π_j(z), real ``(..., m)``."""
        self.check_point(z)
        anchors, _ = self._on(z)
        return torch.softmax(-_anchor_sq_dists(z, anchors) / self.temperature, -1)

    def metric_field(self, z):
        anchors, metrics = self._on(z)
        pi = torch.softmax(-_anchor_sq_dists(z, anchors) / self.temperature, -1)
        return torch.einsum("...j,jab->...ab", pi.to(z.dtype), metrics)

    def __repr__(self):
        return f"KernelAnchorManifold(m={self.m}, n={self.n}, temperature={self.temperature})"
