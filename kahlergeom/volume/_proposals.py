r"""Proposal distributions for importance sampling, densities w.r.t. Lebesgue on R^{2n}."""

from __future__ import annotations

import abc
import math

import torch

from kahlergeom._checks import check_points, check_positive_int
from kahlergeom._linalg import complex_normal_log_prob, complex_normal_sample
from kahlergeom.volume._regions import Ball, Box


def _center(center, n: int) -> torch.Tensor:
    if center is None:
        return torch.zeros(n, dtype=torch.complex128)
    c = (
        center
        if isinstance(center, torch.Tensor)
        else torch.as_tensor(center, dtype=torch.complex128)
    )
    if not c.is_complex():
        c = c.to(torch.float64) + 0j
    return check_points(c, n, "center").to(torch.complex128)


def _scale(scale) -> float:
    s = float(scale)
    if not (s > 0 and math.isfinite(s)):
        raise ValueError(f"scale must be a finite number > 0; got {scale!r}.")
    return s


class Proposal(abc.ABC):
    r"""A distribution q on $\mathbb C^n \cong \mathbb R^{2n}$ to sample from and weigh by.

    An extension point (template in ``docs/extending.md``): set the attribute ``n`` and
    implement ``sample(n_samples, generator, dtype)`` → complex ``(n_samples, n)`` of ``dtype``,
    drawing all randomness from ``generator`` (a ``torch.Generator`` or None), and
    ``log_prob(z)`` → real ``(...)`` for ``z`` ``(..., n)``: the normalised log density w.r.t.
    Lebesgue measure on $\mathbb R^{2n}$ (u = (Re z, Im z)), −inf outside the support.
    `volume_monte_carlo` weighs by it, and ``kahlergeom.sampling.SIR(proposal=...)`` accepts
    it as a proposal.
    """

    n: int

    @abc.abstractmethod
    def sample(
        self, n_samples: int, generator: torch.Generator | None, dtype: torch.dtype
    ) -> torch.Tensor: ...

    @abc.abstractmethod
    def log_prob(self, z: torch.Tensor) -> torch.Tensor: ...


class GaussianProposal(Proposal):
    r"""Circular complex Gaussian $\mathcal{CN}(c, s^2 I)$:
    $q(z) = (\pi s^2)^{-n} \exp(-|z - c|^2 / s^2)$ (each real coordinate has variance $s^2/2$).

    Light-tailed: for a volume density with polynomial tails (Fubini–Study) the importance
    weights have infinite variance; use `StudentTProposal` there.
    """

    def __init__(self, n: int, scale: float = 1.0, center=None):
        self.n = check_positive_int(n, "n")
        self.scale = _scale(scale)
        self.center = _center(center, self.n)

    def sample(self, n_samples, generator, dtype):
        z = complex_normal_sample((n_samples, self.n), scale=self.scale, dtype=dtype,
                                  generator=generator)  # fmt: skip
        return z + self.center.to(dtype)

    def log_prob(self, z):
        return complex_normal_log_prob(z, self.center.to(z.dtype), self.scale)

    def __repr__(self):
        return f"GaussianProposal(n={self.n}, scale={self.scale})"


class StudentTProposal(Proposal):
    r"""Multivariate Student t on $\mathbb R^{2n}$ with ``df`` = ν degrees of freedom:
    $q(u) \propto (1 + |u - c|^2/(\nu s^2))^{-(\nu + 2n)/2}$.

    Heavy-tailed (decay $|u|^{-\nu - 2n}$): with ν = 1 it dominates any volume density that
    decays like $|z|^{-2n-2}$ (Fubini–Study), so the importance weights stay bounded. Sampled as
    $c + s\, g / \sqrt{\chi^2_\nu/\nu}$ with ν an integer (χ² as a sum of squared normals).
    """

    def __init__(self, n: int, df: int = 1, scale: float = 1.0, center=None):
        self.n = check_positive_int(n, "n")
        self.df = check_positive_int(df, "df")
        self.scale = _scale(scale)
        self.center = _center(center, self.n)

    def sample(self, n_samples, generator, dtype):
        real = torch.float32 if dtype == torch.complex64 else torch.float64
        d = 2 * self.n
        g = torch.randn(n_samples, d, generator=generator, dtype=real)
        chi2 = torch.randn(n_samples, self.df, generator=generator, dtype=real).square().sum(-1)
        x = self.scale * g / torch.sqrt(chi2 / self.df)[:, None]
        return torch.complex(x[:, : self.n], x[:, self.n :]) + self.center.to(dtype)

    def log_prob(self, z):
        nu, d, s = self.df, 2 * self.n, self.scale
        r2 = torch.view_as_real(z - self.center.to(z.dtype)).square().sum((-1, -2))
        const = (
            math.lgamma((nu + d) / 2)
            - math.lgamma(nu / 2)
            - (d / 2) * math.log(nu * math.pi)
            - d * math.log(s)
        )
        return const - (nu + d) / 2 * torch.log1p(r2 / (nu * s * s))

    def __repr__(self):
        return f"StudentTProposal(n={self.n}, df={self.df}, scale={self.scale})"


class UniformProposal(Proposal):
    """Uniform on a `Ball` (with a center, or ``n`` given) or a `Box`."""

    def __init__(self, region: Ball | Box, n: int | None = None):
        if not isinstance(region, (Ball, Box)):
            raise ValueError(
                f"UniformProposal needs a Ball or a Box region; got {type(region).__name__}."
            )
        n = region.n if region.n is not None else n
        if n is None:
            raise ValueError("UniformProposal on a Ball without a center needs n.")
        self.n = check_positive_int(n, "n")
        self.region = region
        if isinstance(region, Ball):
            d = 2 * self.n
            self.log_volume = (
                self.n * math.log(math.pi) + d * math.log(region.radius) - math.lgamma(self.n + 1)
            )
        else:
            self.log_volume = math.log(region.lebesgue_volume)

    def sample(self, n_samples, generator, dtype):
        real = torch.float32 if dtype == torch.complex64 else torch.float64
        n, d = self.n, 2 * self.n
        if isinstance(self.region, Ball):
            g = torch.randn(n_samples, d, generator=generator, dtype=real)
            g = g / torch.linalg.vector_norm(g, dim=-1, keepdim=True)
            r = self.region.radius * torch.rand(n_samples, 1, generator=generator, dtype=real) ** (
                1 / d
            )
            x = r * g
            z = torch.complex(x[:, :n], x[:, n:])
            return z + self.region._center(z)
        lo, hi = self.region.real_bounds
        lo, hi = lo.to(real), hi.to(real)
        x = lo + (hi - lo) * torch.rand(n_samples, d, generator=generator, dtype=real)
        return torch.complex(x[:, :n], x[:, n:])

    def log_prob(self, z):
        inside = self.region.contains(z)
        real = z.real.dtype
        return torch.where(
            inside,
            torch.full(inside.shape, -self.log_volume, dtype=real),
            torch.full(inside.shape, -math.inf, dtype=real),
        )

    def __repr__(self):
        return f"UniformProposal({self.region!r})"
