r"""Deterministic quadrature of $\int_U \det G\, dA$ in low dimension."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from kahlergeom._checks import check_positive_int
from kahlergeom.volume._common import (
    VolumeConvergenceError,
    check_dtype,
    check_manifold,
    log_density,
)
from kahlergeom.volume._regions import Ball, Box, as_region


@dataclass(frozen=True)
class QuadratureVolume:
    """Result of `volume_quadrature`.

    Attributes:
        value: the quadrature with ``order`` nodes per axis.
        error_estimate: |value − the same rule with about 2/3 of the nodes per axis|.
        n_evaluations: evaluations of det G (both rules).
        order: nodes per axis of the finer rule.
        converged: ``error_estimate <= max(atol, rtol * |value|)``.
        message: what failed (empty when converged).
    """

    value: float
    error_estimate: float
    n_evaluations: int
    order: int
    converged: bool
    message: str


def _gauss_legendre(order: int, a: float, b: float) -> tuple[torch.Tensor, torch.Tensor]:
    x, w = np.polynomial.legendre.leggauss(order)
    x = torch.from_numpy(x)
    w = torch.from_numpy(w)
    return 0.5 * (b - a) * x + 0.5 * (b + a), 0.5 * (b - a) * w


def _polar_rule(order: int, center: torch.Tensor, radius: float | None, scale: float):
    """Nodes (N, 1) and weights (N,) for ∫ f dA over a disk (radius) or the plane (None).

    Gauss–Legendre in the radius (ρ ∈ [0, R], or ρ = scale·t/(1−t), t ∈ [0, 1)) with the polar
    Jacobian ρ, times the trapezoid rule with 2·order points in the angle (exact for
    trigonometric polynomials of degree < 2·order, spectrally accurate for smooth periodic f).
    """
    if radius is None:
        t, wt = _gauss_legendre(order, 0.0, 1.0)
        rho = scale * t / (1 - t)
        wr = wt * scale / (1 - t) ** 2
    else:
        rho, wr = _gauss_legendre(order, 0.0, radius)
    m = 2 * order
    theta = torch.arange(m, dtype=torch.float64) * (2 * math.pi / m)
    z = center + (rho[:, None] * torch.exp(1j * theta)[None, :]).reshape(-1)
    w = (wr * rho)[:, None].expand(order, m).reshape(-1) * (2 * math.pi / m)
    return z[:, None], w


def _box_rule(order: int, box: Box):
    """Tensor-product Gauss–Legendre over the 2n real coordinates of a box."""
    lo, hi = box.real_bounds
    rules = [_gauss_legendre(order, float(a), float(b)) for a, b in zip(lo, hi, strict=True)]
    nodes = torch.cartesian_prod(*[r[0] for r in rules]).reshape(-1, len(rules))
    weights = torch.cartesian_prod(*[r[1] for r in rules]).reshape(-1, len(rules)).prod(-1)
    n = box.n
    return torch.complex(nodes[:, :n], nodes[:, n:]), weights


def volume_quadrature(
    manifold,
    region=None,
    *,
    order: int = 48,
    rtol: float = 1e-8,
    atol: float = 0.0,
    scale: float = 1.0,
    dtype: torch.dtype = torch.complex128,
    batch_size: int = 65536,
    max_evaluations: int = 2**22,
    check: bool = True,
) -> QuadratureVolume:
    r"""Volume $V = \int_U \det G(z)\, dA(z)$ by tensor-product Gauss–Legendre quadrature.

    Supported regions (det G must be smooth and positive on all of U, which must lie in the
    chart's domain):

    * n = 1, a `Ball` |z − c| ≤ r: polar coordinates, Gauss–Legendre in ρ (with the Jacobian
      ρ) and the trapezoid rule in θ;
    * n = 1, ``region=None``: the whole plane (the domain must be all of C), via
      ρ = scale·t/(1 − t), t ∈ [0, 1) (an integrable density is needed; e.g. Fubini–Study
      gives π);
    * any n, a `Box`: Gauss–Legendre in each of the 2n real coordinates (``order^(2n)``
      points, at most ``max_evaluations``).

    The error estimate compares with the same rule at about 2/3 of ``order``.

    Args:
        manifold: a `HermitianManifold`.
        region: a `Ball` (n = 1), a `Box`, or None (n = 1, whole plane).
        order: Gauss–Legendre nodes per axis (≥ 3).
        rtol, atol: convergence criterion ``error_estimate <= max(atol, rtol * |value|)``.
        scale: length scale of the map to the whole plane.
        dtype: complex dtype of the nodes.
        batch_size: points per evaluation of det G.
        max_evaluations: refuse rules with more points than this.
        check: raise `VolumeConvergenceError` when not converged (else return the result with
            ``converged=False``).

    Returns:
        `QuadratureVolume`.

    Raises:
        ValueError: unsupported region or dimension, a region leaving the domain, det G not
            positive on the nodes, bad arguments.
        VolumeConvergenceError: the error estimate exceeds the tolerance.
    """
    manifold = check_manifold(manifold)
    n = manifold.n
    check_positive_int(order, "order", minimum=3)
    check_positive_int(batch_size, "batch_size")
    dtype = check_dtype(dtype)
    if not (rtol >= 0 and atol >= 0):
        raise ValueError(f"rtol and atol must be >= 0; got rtol={rtol!r}, atol={atol!r}.")
    if not (float(scale) > 0 and math.isfinite(float(scale))):
        raise ValueError(f"scale must be a finite number > 0; got {scale!r}.")
    region = as_region(region, n)

    if isinstance(region, Box):
        per_rule = order ** (2 * n)
        if per_rule > max_evaluations:
            raise ValueError(
                f"a tensor-product rule with order = {order} in 2n = {2 * n} real dimensions "
                f"needs {per_rule} evaluations > max_evaluations = {max_evaluations}; lower "
                "order, raise max_evaluations, or use volume_monte_carlo."
            )

        def rule(k):
            return _box_rule(k, region)
    elif n != 1:
        raise ValueError(
            f"volume_quadrature supports a Ball or the whole plane only for n = 1 (got n = {n}) "
            f"and a Box for any n; got region {region!r}. Use volume_monte_carlo instead."
        )
    elif region is None:

        def rule(k):
            return _polar_rule(k, torch.zeros((), dtype=torch.complex128), None, float(scale))
    elif isinstance(region, Ball):
        center = region._center(torch.zeros(1, dtype=torch.complex128))[0]

        def rule(k):
            return _polar_rule(k, center, region.radius, 1.0)
    else:
        raise ValueError(
            f"volume_quadrature needs a Ball, a Box or None as region; got {region!r} (the "
            "indicator of a general region is not smooth). Use volume_monte_carlo instead."
        )

    def integrate(k):
        z, w = rule(k)
        z = z.to(dtype)
        inside = manifold.contains(z)
        if not bool(inside.all()):
            where = "all of C" if region is None else repr(region)
            raise ValueError(
                f"region {where} is not inside the domain of {manifold!r} "
                f"({manifold.domain_description}): quadrature needs det G on the whole region. "
                "Pass a Ball or Box inside the domain."
            )
        dens = torch.exp(log_density(manifold, z, batch_size).to(torch.float64))
        return float((dens * w).sum()), z.shape[0]

    value, n1 = integrate(order)
    coarse, n2 = integrate(max(2, (2 * order) // 3))
    err = abs(value - coarse)
    ok = math.isfinite(value) and err <= max(atol, rtol * abs(value))
    message = (
        ""
        if ok
        else (
            f"error estimate {err:.3g} exceeds max(atol, rtol * |value|) = "
            f"{max(atol, rtol * abs(value)):.3g} (value {value:.10g} with order {order}); "
            "raise order, or check that det G is smooth and integrable on the region"
        )
    )
    result = QuadratureVolume(
        value=value,
        error_estimate=err,
        n_evaluations=n1 + n2,
        order=order,
        converged=ok,
        message=message,
    )
    if not ok and check:
        raise VolumeConvergenceError(
            f"volume_quadrature did not converge: {message}. Pass check=False to get the "
            "estimate anyway.",
            result,
        )
    return result
