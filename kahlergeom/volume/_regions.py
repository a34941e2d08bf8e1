r"""Regions U of a chart of C^n over which a volume $\int_U \det G\, dA$ is computed."""

from __future__ import annotations

import abc
import math
from collections.abc import Callable

import torch

from kahlergeom._checks import check_points, check_positive_int


def _as_corner(value, name: str) -> torch.Tensor:
    if not isinstance(value, torch.Tensor):
        # Python numbers and lists in double precision (torch.tensor would make complex64).
        value = torch.as_tensor(value, dtype=torch.complex128)
    if value.ndim != 1:
        raise ValueError(
            f"{name} must be a 1-D tensor of shape (n,); got shape {tuple(value.shape)}."
        )
    if not value.is_complex():
        value = value.to(torch.float64) + 0j
    return check_points(value, None, name).to(torch.complex128)


class Region(abc.ABC):
    """A measurable subset of a chart of C^n, given by its indicator ``contains(z)``.

    An extension point (template in ``docs/extending.md``): implement ``contains(z)``,
    vectorised over complex points ``(..., n)`` → bool ``(...)`` (no Python loop over points),
    and set ``n`` when the region fixes the dimension. `volume_monte_carlo` accepts any Region
    (the region is intersected with the manifold's domain); `volume_quadrature` has rules for
    `Ball` and `Box` only.
    """

    #: Dimension n of the chart, or None when the region does not fix it.
    n: int | None = None

    @abc.abstractmethod
    def contains(self, z: torch.Tensor) -> torch.Tensor:
        """Whether each point lies in the region: complex ``(..., n)`` → bool ``(...)``."""


class Ball(Region):
    r"""The closed ball $\{z : |z - c| \le r\}$ (Euclidean norm in $\mathbb R^{2n}$).

    Args:
        radius: $r > 0$.
        center: complex ``(n,)``; default the origin (then ``n`` is taken from the points, or
            from ``n`` if given).
        n: the dimension, when ``center`` is not given.
    """

    def __init__(self, radius: float, center: torch.Tensor | None = None, *, n: int | None = None):
        r = float(radius)
        if not (r > 0 and math.isfinite(r)):
            raise ValueError(f"radius must be a finite number > 0; got {radius!r}.")
        self.radius = r
        if center is not None:
            self.center = _as_corner(center, "center")
            if n is not None and n != self.center.shape[0]:
                raise ValueError(
                    f"n = {n} does not match center of shape {tuple(self.center.shape)}."
                )
            self.n = self.center.shape[0]
        else:
            self.center = None
            self.n = None if n is None else check_positive_int(n, "n")

    def _center(self, z: torch.Tensor) -> torch.Tensor:
        if self.center is None:
            return torch.zeros(z.shape[-1], dtype=z.dtype, device=z.device)
        return self.center.to(dtype=z.dtype, device=z.device)

    def contains(self, z):
        d = torch.view_as_real(z - self._center(z)).square().sum((-1, -2))
        return d <= self.radius**2

    def __repr__(self):
        c = "0" if self.center is None else self.center.tolist()
        return f"Ball(radius={self.radius}, center={c})"


class Box(Region):
    r"""The box $\{z : \mathrm{Re}\,\ell_a \le \mathrm{Re}\, z_a \le \mathrm{Re}\, h_a,\
    \mathrm{Im}\,\ell_a \le \mathrm{Im}\, z_a \le \mathrm{Im}\, h_a\}$.

    Args:
        low, high: complex ``(n,)`` corners ``ℓ = x_lo + i y_lo`` and ``h = x_hi + i y_hi``
            (real tensors are read as ``y = 0``), with ``low < high`` in every real coordinate.
    """

    def __init__(self, low: torch.Tensor, high: torch.Tensor):
        self.low = _as_corner(low, "low")
        self.high = _as_corner(high, "high")
        if self.low.shape != self.high.shape:
            raise ValueError(
                f"low and high must have the same shape (n,); got {tuple(self.low.shape)} and "
                f"{tuple(self.high.shape)}."
            )
        if not (
            bool((self.low.real < self.high.real).all())
            and bool((self.low.imag < self.high.imag).all())
        ):
            raise ValueError(
                "low must be below high in every real coordinate (Re and Im of each z_a); got "
                f"low = {self.low.tolist()}, high = {self.high.tolist()}."
            )
        self.n = self.low.shape[0]

    @property
    def real_bounds(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Bounds in real coordinates u = (x, y): two float64 tensors ``(2n,)``."""
        lo = torch.cat([self.low.real, self.low.imag])
        hi = torch.cat([self.high.real, self.high.imag])
        return lo, hi

    @property
    def lebesgue_volume(self) -> float:
        lo, hi = self.real_bounds
        return float(torch.prod(hi - lo))

    def contains(self, z):
        lo, hi = self.real_bounds
        u = torch.cat([z.real, z.imag], -1)
        lo, hi = lo.to(u), hi.to(u)
        return ((u >= lo) & (u <= hi)).all(-1)

    def __repr__(self):
        return f"Box(low={self.low.tolist()}, high={self.high.tolist()})"


class Predicate(Region):
    """A region given by a user indicator ``fn(z) -> bool (...)`` (Monte Carlo only).

    Args:
        fn: vectorised indicator over points ``(..., n)``.
        n: optional dimension, checked against the manifold.
    """

    def __init__(self, fn: Callable[[torch.Tensor], torch.Tensor], *, n: int | None = None):
        if not callable(fn):
            raise ValueError(f"fn must be callable (z -> bool tensor); got {type(fn).__name__}.")
        self.fn = fn
        self.n = None if n is None else check_positive_int(n, "n")

    def contains(self, z):
        out = self.fn(z)
        if not isinstance(out, torch.Tensor) or out.shape != z.shape[:-1]:
            raise ValueError(
                "the region's predicate must return a bool tensor of shape z.shape[:-1] = "
                f"{tuple(z.shape[:-1])}; got {getattr(out, 'shape', type(out).__name__)}."
            )
        return out.to(torch.bool)

    def __repr__(self):
        return f"Predicate({getattr(self.fn, '__name__', self.fn)!r})"


def as_region(region, n: int) -> Region | None:
    """Validate a region for an n-dimensional chart (None: the whole chart)."""
    if region is None:
        return None
    if not isinstance(region, Region):
        if callable(region):
            region = Predicate(region)
        else:
            raise ValueError(
                "region must be None (the whole chart), a kahlergeom.volume Ball, Box or "
                f"Predicate, or a callable z -> bool; got {type(region).__name__}."
            )
    if region.n is not None and region.n != n:
        raise ValueError(f"region has dimension n = {region.n} but the manifold has n = {n}.")
    return region
