r"""Priors for volume-weighted sampling: the complex normal and an adapter for user priors.

A prior enters `sample_volume` as ``log_prior``. It may be

* ``None``: the flat (Lebesgue) prior on the chart, improper; fine when $(\det G)^\beta$ is
  integrable (e.g. Fubini–Study with β = 1);
* a callable ``log_prior(z)``: complex ``(..., n)`` → real ``(...)`` (an unnormalised log
  density w.r.t. Lebesgue measure on $\mathbb R^{2n}$, u = (x, y));
* a distribution-like object with ``log_prob`` and ``sample``, e.g. `ComplexNormal`, or a
  ``torch.distributions`` distribution whose ``event_shape`` is ``(2n,)`` (read in real
  coordinates u = (Re z, Im z)). Only such objects can serve as the proposal of `SIR`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

from kahlergeom._checks import check_positive_int, real_dtype_of
from kahlergeom._linalg import (
    complex_normal_log_prob,
    complex_normal_sample,
    from_real,
    to_real,
)
from kahlergeom.volume import Proposal


class ComplexNormal:
    r"""Circular complex normal $\mathcal{CN}(m, \sigma^2 I)$ on $\mathbb C^n$.

    Density w.r.t. Lebesgue measure on $\mathbb R^{2n}$:
    $p(z) = (\pi\sigma^2)^{-n}\exp(-|z - m|^2/\sigma^2)$, i.e. Re z and Im z are independent
    $N(\mathrm{Re}\,m, \sigma^2/2)$ and $N(\mathrm{Im}\,m, \sigma^2/2)$; $|z - m|^2/\sigma^2
    \sim \mathrm{Gamma}(n, 1)$. The default $\mathcal{CN}(0, I)$ has density $\propto e^{-|z|^2}$.

    Args:
        n: dimension.
        mean: complex mean, scalar or ``(n,)`` (default 0).
        scale: σ > 0 (default 1).
    """

    def __init__(self, n: int, mean: complex | torch.Tensor = 0.0, scale: float = 1.0):
        self.n = check_positive_int(n, "n")
        if not (isinstance(scale, int | float) and math.isfinite(scale) and scale > 0):
            raise ValueError(f"scale must be a positive finite number; got {scale!r}.")
        self.scale = float(scale)
        self.mean = torch.as_tensor(mean, dtype=torch.complex128)
        if self.mean.ndim > 1 or (self.mean.ndim == 1 and self.mean.shape[0] != n):
            raise ValueError(
                f"mean must be a scalar or have shape (n,) = ({n},); got {tuple(self.mean.shape)}."
            )

    def log_prob(self, z: torch.Tensor) -> torch.Tensor:
        r"""$\log p(z) = -|z - m|^2/\sigma^2 - n\log(\pi\sigma^2)$: ``(..., n)`` → ``(...)``."""
        return complex_normal_log_prob(z, self.mean.to(dtype=z.dtype, device=z.device), self.scale)

    def sample(
        self,
        sample_shape=(),
        *,
        generator: torch.Generator | None = None,
        dtype: torch.dtype = torch.complex128,
    ) -> torch.Tensor:
        """Draw points of shape ``(*sample_shape, n)``."""
        shape = (*tuple(sample_shape), self.n)
        z = complex_normal_sample(shape, scale=self.scale, dtype=dtype, generator=generator)
        return z + self.mean.to(dtype=dtype)

    def __repr__(self) -> str:
        return f"ComplexNormal(n={self.n}, scale={self.scale})"


@dataclass
class _Prior:
    """A resolved prior: unnormalised log density and, if sampleable, a sampler."""

    log_prob: Callable[[torch.Tensor], torch.Tensor]
    sample: Callable[[int, torch.Generator, torch.dtype], torch.Tensor] | None
    flat: bool
    description: str
    source: object = None


def _seeded_call(fn, generator: torch.Generator):
    """Run ``fn()`` with torch's global RNG seeded from ``generator``, restoring it after."""
    seed = int(torch.randint(0, 2**62, (1,), generator=generator).item())
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return fn()


def resolve_prior(log_prior, n: int, name: str = "log_prior") -> _Prior:
    """Turn ``None``, a callable, or a distribution-like object into a `_Prior`."""
    if log_prior is None:
        return _Prior(
            log_prob=lambda z: torch.zeros(z.shape[:-1], dtype=z.real.dtype, device=z.device),
            sample=None,
            flat=True,
            description="flat (Lebesgue) prior",
        )
    if isinstance(log_prior, Proposal):  # kahlergeom.volume proposals: sample(m, generator, dtype)
        if log_prior.n != n:
            raise ValueError(f"{name} has n = {log_prior.n} but the manifold has n = {n}.")

        def sample_proposal(m, generator, dtype):
            return log_prior.sample(m, generator, dtype)

        return _Prior(log_prior.log_prob, sample_proposal, False, repr(log_prior))
    has_lp = callable(getattr(log_prior, "log_prob", None))
    has_sample = callable(getattr(log_prior, "sample", None))
    if has_lp:
        event = getattr(log_prior, "event_shape", None)
        if isinstance(log_prior, torch.distributions.Distribution):
            if tuple(event) != (2 * n,):
                raise ValueError(
                    f"{name}: a torch.distributions prior must have event_shape (2n,) = "
                    f"({2 * n},) in real coordinates u = (Re z, Im z); got {tuple(event)}. "
                    "Use kahlergeom.sampling.ComplexNormal for a complex normal."
                )

            def lp_real(z):
                return log_prior.log_prob(to_real(z))

            def sample_real(m, generator, dtype):
                u = _seeded_call(lambda: log_prior.sample((m,)), generator)
                return from_real(u.to(real_dtype_of(dtype)))

            return _Prior(lp_real, sample_real if has_sample else None, False, repr(log_prior))

        def sample_complex(m, generator, dtype):
            try:
                z = log_prior.sample((m,), generator=generator, dtype=dtype)
            except TypeError:  # a sampler without generator/dtype keywords
                z = _seeded_call(lambda: log_prior.sample((m,)), generator)
            if not (isinstance(z, torch.Tensor) and z.is_complex() and z.shape == (m, n)):
                raise ValueError(
                    f"{name}.sample((m,)) must return complex points of shape (m, n) = "
                    f"({m}, {n}); got {getattr(z, 'dtype', type(z))} "
                    f"{tuple(getattr(z, 'shape', ()))}."
                )
            return z.to(dtype)

        return _Prior(
            log_prior.log_prob,
            sample_complex if has_sample else None,
            False,
            repr(log_prior),
            log_prior,
        )
    if callable(log_prior):
        return _Prior(log_prior, None, False, getattr(log_prior, "__name__", repr(log_prior)))
    raise ValueError(
        f"{name} must be None, a callable z -> log density, or an object with log_prob (and "
        f"sample, for SIR); got {type(log_prior).__name__}."
    )
