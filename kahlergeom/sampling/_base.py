r"""The sampler extension point: `Sampler`, the log target it draws from, and its result.

`sample_volume` validates its arguments, builds a `LogTarget`, calls ``sampler.run(target,
n_samples, generator=..., init=..., progress=...)`` and then diagnoses the returned
`SamplingResult`. A new sampler subclasses `Sampler`, validates its options in its constructor
and implements `Sampler.run`; nothing else in the library needs to know about it.
"""

from __future__ import annotations

import abc
import math
from dataclasses import dataclass, field

import torch

from kahlergeom._linalg import from_real, hermitian_logdet_ex, to_real
from kahlergeom.manifolds._hermitian import HermitianManifold
from kahlergeom.sampling._priors import _Prior


class SamplingWarning(RuntimeWarning):
    """Emitted when a sampler's diagnostics are poor (low acceptance, low ESS, divergences)."""


class LogTarget:
    r"""The unnormalised log target $\ell(z) = \log\mathrm{prior}(z) + \beta\log\det G(z)$.

    Built by `sample_volume` and handed to `Sampler.run`. Densities are w.r.t. Lebesgue
    measure on $\mathbb R^{2n}$, u = (x, y) = ``to_real(z)`` (see the conventions page).

    Attributes:
        manifold: the `HermitianManifold`.
        prior: the resolved prior: ``prior.log_prob(z)`` (real ``(...)``), ``prior.sample(m,
            generator, dtype)`` (complex ``(m, n)``, or ``None`` when not sampleable) and
            ``prior.flat`` (True for the flat, improper prior).
        beta: the exponent β.
        n: latent dimension.
        dtype: complex dtype of the samples to return; ``real_dtype`` its real counterpart.
    """

    def __init__(
        self, manifold: HermitianManifold, prior: _Prior, beta: float, n: int, dtype: torch.dtype
    ):
        self.manifold = manifold
        self.prior = prior
        self.beta = beta
        self.n = n
        self.dtype = dtype
        self.real_dtype = torch.float32 if dtype == torch.complex64 else torch.float64

    def value(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Unchecked ℓ at complex points ``(..., n)`` inside the domain, and a bool ``(...)``
        'G is positive definite' (ℓ is meaningless where it is False). Differentiable."""
        val = self.prior.log_prob(z)
        if not isinstance(val, torch.Tensor) or val.shape != z.shape[:-1] or val.is_complex():
            raise ValueError(
                "log_prior(z) must return a real tensor of shape (...) for points z of shape "
                f"(..., n); for z of shape {tuple(z.shape)} it gave "
                f"{getattr(val, 'dtype', type(val).__name__)} of shape "
                f"{tuple(getattr(val, 'shape', ()))}."
            )
        if self.beta == 0:
            return val, torch.ones(z.shape[:-1], dtype=torch.bool, device=z.device)
        logdet, pd = hermitian_logdet_ex(self.manifold.metric_field(z))
        return val + self.beta * logdet, pd

    def inside(self, u: torch.Tensor) -> torch.Tensor:
        """Bool ``(...)``: real points ``(..., 2n)`` are finite and inside the manifold's domain."""
        finite = torch.isfinite(u).all(-1)
        z = from_real(torch.where(finite[..., None], u, torch.zeros_like(u)))
        return torch.as_tensor(self.manifold.contains(z), dtype=torch.bool) & finite

    def log_density(self, z: torch.Tensor) -> torch.Tensor:
        """ℓ at complex points ``(m, n)``, real ``(m,)``, −inf outside the domain, where G is
        not positive definite or ℓ is not finite. No gradient (for derivative-free samplers)."""
        with torch.no_grad():
            inside = self.inside(to_real(z))
            zs = torch.where(inside[:, None], z, torch.zeros_like(z))
            val, pd = self.value(zs)
            ok = inside & pd & torch.isfinite(val)
            return torch.where(ok, val, torch.full_like(val, -math.inf))

    def __call__(self, u: torch.Tensor, fallback: torch.Tensor):
        """(ℓ, ∇_u ℓ, ok) at real points ``u`` ``(C, 2n)``; points outside the domain are
        evaluated at ``fallback`` (a valid state) instead and get ℓ = −inf, ∇ℓ = 0, ok = False."""
        inside = self.inside(u)
        ue = torch.where(inside[:, None], u, fallback).detach().requires_grad_(True)
        with torch.enable_grad():
            val, pd = self.value(from_real(ue))
            ok = inside & pd & torch.isfinite(val)
            safe = torch.where(ok, val, torch.zeros_like(val))
            if safe.requires_grad:
                (g,) = torch.autograd.grad(safe.sum(), ue, allow_unused=True)
            else:
                g = None
        g = torch.zeros_like(u) if g is None else torch.nan_to_num(g, nan=0.0)
        g = torch.where(ok[:, None], g, torch.zeros_like(g))
        val = torch.where(ok, val.detach(), torch.full_like(val.detach(), -math.inf))
        return val, g, ok


@dataclass
class SamplingResult:
    r"""Output of `Sampler.run` and of `sample_volume`.

    A sampler fills ``samples``, ``method`` and ``ess`` and whichever diagnostics it has;
    `sample_volume` then checks them (fields left at ``None`` are not checked).

    Attributes:
        samples: ``(n_samples, n)`` complex draws.
        method: the sampler's name (``"MALA"``, ``"HMC"``, ``"SIR"``, ...).
        beta: the exponent β.
        ess: effective sample size per real coordinate u = (x, y), ``(2n,)``. MCMC: Geyer's
            multi-chain estimator on the kept draws (NaN with fewer than 4 draws per chain);
            SIR: min(Kish ESS of the weights, n_samples) for every coordinate.
        acceptance_rate: per-chain acceptance rate after burn-in, ``(n_chains,)`` (MCMC only).
        mean_acceptance: its mean (MCMC only).
        step_size: final step size (MCMC only).
        chains: kept draws ``(n_draws, n_chains, n)`` before flattening (MCMC only).
        n_divergent: trajectories that left the domain or had a huge energy error (HMC).
        n_transitions: transitions after burn-in over all chains (MCMC only; 0 otherwise).
        rhat: split-R̂ over the last half of burn-in and the sampling phase, the larger of
            those of the log density and of log(1 + |z|²) (the latter sees chains drifting
            away, e.g. on an improper target whose density is flat); MCMC only, computed even
            with one kept draw per chain.
        importance_ess: Kish ESS of the importance weights (importance samplers).
        log_weights: normalised log importance weights ``(n_proposals,)`` (SIR only).
        tail_index: Hill tail index of the importance weights (importance samplers; above 1/2
            their variance is infinite).
        memory: largest |rank correlation| between the chains' starts and their first kept
            draws, over the real coordinates and log(1 + |z|²) (MCMC with at least 3 chains;
            the check that backs ESS = number of chains when each keeps one draw).
        failures: the failed diagnostics, name → reason (``"ess"``, ``"acceptance"``,
            ``"rhat"``, ``"divergences"``, ``"tail"``, ``"memory"``, ...); empty when fine.
        messages: the reasons of ``failures`` (also emitted as `SamplingWarning`).
    """

    samples: torch.Tensor
    method: str
    beta: float
    ess: torch.Tensor
    acceptance_rate: torch.Tensor | None = None
    mean_acceptance: float | None = None
    step_size: float | None = None
    chains: torch.Tensor | None = None
    n_divergent: int = 0
    n_transitions: int = 0
    rhat: float | None = None
    importance_ess: float | None = None
    log_weights: torch.Tensor | None = None
    tail_index: float | None = None
    memory: float | None = None
    failures: dict[str, str] = field(default_factory=dict)
    messages: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when no diagnostic failed (a diagnostic that is NaN counts as failed)."""
        return not self.messages and not self.failures

    @property
    def min_ess(self) -> float:
        """Smallest ESS over the real coordinates."""
        return float(self.ess.min())


class Sampler(abc.ABC):
    """Base class of the sampling methods accepted by `sample_volume`.

    A sampler is an object of options (validated in its constructor) with the algorithm on the
    class: `run`. Built-in: `MALA`, `HMC` (MCMC with many chains) and `SIR`
    (sampling-importance-resampling). See ``docs/extending.md`` for a user-written sampler.

    Class attributes:
        name: reported as ``SamplingResult.method``.
        uses_init: whether `run` accepts starting points ``init`` (MCMC); `sample_volume`
            refuses ``init`` for samplers where it is False.
    """

    name: str = "sampler"
    uses_init: bool = False

    @abc.abstractmethod
    def run(
        self,
        target: LogTarget,
        n_samples: int,
        *,
        generator: torch.Generator,
        init: torch.Tensor | None = None,
        progress: bool = False,
    ) -> SamplingResult:
        """Draw ``n_samples`` points from ``target``.

        Args:
            target: the `LogTarget` (log density, domain, prior, dtype).
            n_samples: number of points to return.
            generator: the only source of randomness (same generator state, same draws).
            init: validated starting points ``(n,)`` or ``(n_chains, n)``, or None (only
                passed when ``uses_init``).
            progress: show a progress bar if the sampler has one.

        Returns:
            a `SamplingResult` with ``samples`` ``(n_samples, n)`` of ``target.dtype``,
            ``method``, ``beta``, ``ess`` ``(2n,)`` and any further diagnostics.
        """
