r"""Sampling from the geometry: densities $\propto \mathrm{prior}(z)\,(\det G(z))^\beta$.

* `sample_volume(manifold, n_samples, *, log_prior=None, beta=1.0, method=MALA())` with the
  samplers `MALA`, `HMC` and `SIR` (option objects), returning a `SamplingResult` with
  diagnostics (acceptance, ESS, step size); poor diagnostics emit a `SamplingWarning`.
* `log_volume_weight(manifold, z, beta)`: β log det G(z), a differentiable regulariser term.
* `ComplexNormal`: the prior/proposal $\mathcal{CN}(m, \sigma^2 I)$.
* `effective_sample_size` (Geyer, multi-chain), `split_rhat` and `importance_ess` (Kish).
"""

from kahlergeom.sampling._diagnostics import effective_sample_size, importance_ess, split_rhat
from kahlergeom.sampling._priors import ComplexNormal
from kahlergeom.sampling._samplers import (
    HMC,
    MALA,
    SIR,
    Sampler,
    SamplingResult,
    SamplingWarning,
    log_volume_weight,
    sample_volume,
)

__all__ = [
    "HMC",
    "MALA",
    "SIR",
    "ComplexNormal",
    "Sampler",
    "SamplingResult",
    "SamplingWarning",
    "effective_sample_size",
    "importance_ess",
    "log_volume_weight",
    "sample_volume",
    "split_rhat",
]
