r"""Sampling from the geometry: densities $\propto \mathrm{prior}(z)\,(\det G(z))^\beta$.

* `sample_volume(manifold, n_samples, *, log_prior=None, beta=1.0, method=...)`: validate →
  ``method.run(...)`` → diagnose; returns a `SamplingResult` whose ``ok`` is False when a
  diagnostic failed (each failure is also a `SamplingWarning` and a line of ``messages``).
* Samplers (`Sampler` subclasses, options validated at construction): `MALA`, `HMC` (batched
  MCMC, `MCMCSampler`), `SIR` (sampling-importance-resampling). A new sampler implements
  `Sampler.run(target, n_samples, ...)` against the `LogTarget` it is given.
* `log_volume_weight(manifold, z, beta)`: β log det G(z), a differentiable regulariser term.
* `ComplexNormal`: the prior/proposal $\mathcal{CN}(m, \sigma^2 I)$.
* `effective_sample_size` (Geyer, multi-chain), `split_rhat` and `importance_ess` (Kish).
"""

from kahlergeom.sampling._base import LogTarget, Sampler, SamplingResult, SamplingWarning
from kahlergeom.sampling._diagnostics import effective_sample_size, importance_ess, split_rhat
from kahlergeom.sampling._mcmc import HMC, MALA, MCMCSampler
from kahlergeom.sampling._priors import ComplexNormal
from kahlergeom.sampling._samplers import log_volume_weight, sample_volume
from kahlergeom.sampling._sir import SIR

__all__ = [
    "HMC",
    "MALA",
    "SIR",
    "ComplexNormal",
    "LogTarget",
    "MCMCSampler",
    "Sampler",
    "SamplingResult",
    "SamplingWarning",
    "effective_sample_size",
    "importance_ess",
    "log_volume_weight",
    "sample_volume",
    "split_rhat",
]
