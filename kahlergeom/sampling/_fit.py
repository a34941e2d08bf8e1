r"""A heavy-tailed importance proposal fitted to the target (the default of `SIR`).

The proposal is a two-component mixture of multivariate Student t distributions on
$\mathbb R^{2n}$ (u = (Re z, Im z)), both with ν = 1 degree of freedom (Cauchy tails
$|u|^{-(2n+1)}$):

$$q(u) = (1-\alpha)\,t_1(u; c, s^2 I) + \alpha\,t_1(u; c, (\kappa s)^2 I),$$

a fitted component and a wider defensive one (α = `DEFENSIVE_WEIGHT`, κ = `DEFENSIVE_WIDTH`).
With Cauchy tails the importance weights $w = \pi/q$ stay bounded for every target that decays
at least like $|u|^{-(2n+1)}$ (Fubini–Study with β ≥ (2n+1)/(2n+2), Gaussian priors, bounded
domains); heavier targets give unbounded weights, which the Hill tail diagnostic reports.

Fit: from a standard Cauchy pilot, the centre c is the weighted coordinate-wise median and the
scale s matches the weighted median of $|u - c|^2$ to the median of $s^2\,2n\,F(2n, 1)$ (the law
of $|u - c|^2$ under $t_1(c, s^2 I)$); repeated `FIT_ROUNDS` times, each from the previous fit.
Robust statistics (medians), because heavy-tailed targets have no finite variance. A pilot
dominated by a few weights (Kish ESS < `FIT_MIN_ESS`) or with heavy-tailed weights (Hill index
above `FIT_MAX_TAIL_INDEX`: the target is heavier than Cauchy, or improper) is not fitted to:
the current proposal is kept, and SIR's tail diagnostic reports the weights.
"""

from __future__ import annotations

import math

import torch

from kahlergeom._linalg import from_real, to_real
from kahlergeom.sampling._diagnostics import importance_ess
from kahlergeom.volume import Proposal, StudentTProposal, hill_tail_index

#: Weight α of the defensive component: weights are at most 1/α times those of the wide t.
DEFENSIVE_WEIGHT = 0.2
#: Scale factor κ of the defensive component relative to the fitted one.
DEFENSIVE_WIDTH = 4.0
#: Pilot draws per fitting round (medians of a few thousand weighted points are stable to ~5%).
FIT_PILOT = 4000
#: Fitting rounds (the second starts from a proposal already near the target).
FIT_ROUNDS = 2
#: A pilot whose Kish ESS is below this, or ...
FIT_MIN_ESS = 100
#: ... whose weights have a Hill tail index above this (infinite variance), is not fitted to.
FIT_MAX_TAIL_INDEX = 0.5
#: Smallest fitted scale (a target concentrated on a point would otherwise give s = 0).
_MIN_SCALE = 1e-150


class MixtureProposal(Proposal):
    r"""Finite mixture $q = \sum_k a_k q_k$ of `Proposal` s on the same $\mathbb C^n$.

    Args:
        components: `Proposal` s with equal ``n``.
        weights: mixture weights $a_k > 0$ (normalised here).
    """

    def __init__(self, components: list[Proposal], weights: list[float]):
        if not components or len(components) != len(weights):
            raise ValueError("components and weights must be non-empty and of equal length.")
        if not all(isinstance(c, Proposal) for c in components):
            raise ValueError("every component must be a kahlergeom.volume.Proposal.")
        if len({c.n for c in components}) != 1:
            raise ValueError("the components must share n.")
        if not all(math.isfinite(w) and w > 0 for w in weights):
            raise ValueError(f"weights must be positive and finite; got {weights!r}.")
        total = float(sum(weights))
        self.components = list(components)
        self.weights = [w / total for w in weights]
        self.n = components[0].n

    def sample(self, n_samples, generator, dtype):
        probs = torch.tensor(self.weights, dtype=torch.float64)
        k = torch.multinomial(probs, n_samples, replacement=True, generator=generator)
        z = torch.empty(n_samples, self.n, dtype=dtype)
        for j, comp in enumerate(self.components):
            mask = k == j
            m = int(mask.sum())
            if m:
                z[mask] = comp.sample(m, generator, dtype)
        return z

    def log_prob(self, z):
        pairs = zip(self.weights, self.components, strict=True)
        parts = torch.stack([math.log(w) + c.log_prob(z) for w, c in pairs])
        return torch.logsumexp(parts, 0)

    def __repr__(self):
        return f"MixtureProposal({self.components!r}, weights={self.weights})"


def _weighted_median(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """Weighted median along axis 0: ``x`` ``(m,)`` or ``(m, d)``, ``w`` ``(m,)`` summing to 1."""
    if x.ndim == 2:
        return torch.stack([_weighted_median(x[:, j], w) for j in range(x.shape[1])])
    xs, order = torch.sort(x)
    cw = torch.cumsum(w[order], 0)
    idx = int(torch.searchsorted(cw, torch.tensor([0.5], dtype=cw.dtype)).clamp(max=len(x) - 1))
    return xs[idx]


def _t_radius_median(d: int) -> float:
    """Median of |u|² for u ~ t_1(0, I_d): d · median of F(d, 1)."""
    from scipy import stats

    return float(d * stats.f.median(d, 1))


def fit_proposal(target, generator: torch.Generator) -> MixtureProposal:
    """The fitted Cauchy mixture for ``target`` (a `LogTarget`); see the module docstring.

    Raises ValueError when no pilot draw has a positive target density (the domain is too
    small or too far from 0 for the pilot).
    """
    n, dtype = target.n, target.dtype
    d = 2 * n
    med_std = _t_radius_median(d)
    q: Proposal = StudentTProposal(n, df=1, scale=1.0)
    for round_ in range(FIT_ROUNDS):
        z = q.sample(FIT_PILOT, generator, dtype)
        logw = target.log_density(z) - q.log_prob(z)
        logw = torch.nan_to_num(logw.double(), nan=-math.inf, posinf=-math.inf)
        if not bool(torch.isfinite(logw).any()):
            if round_ > 0:
                break  # keep the previous fit
            raise ValueError(
                f"could not fit a proposal: none of {FIT_PILOT} pilot draws from {q!r} has a "
                f"positive target density on {target.manifold!r} "
                f"({target.manifold.domain_description}); pass SIR(proposal=...) concentrated on "
                "the domain, or an MCMC method with init=."
            )
        w = torch.softmax(logw, 0)
        if float(importance_ess(logw)) < FIT_MIN_ESS or not (
            hill_tail_index(w) <= FIT_MAX_TAIL_INDEX
        ):
            # A few pilot points dominate, or the weights are heavy-tailed under this proposal
            # (the target has heavier tails than Cauchy, or is improper): a fit would chase
            # them. Keep the current proposal; SIR's tail diagnostic reports the problem.
            break
        u = to_real(z).double()
        c = _weighted_median(u, w)
        r2 = (u - c).square().sum(-1)
        scale = math.sqrt(max(float(_weighted_median(r2, w)) / med_std, _MIN_SCALE**2))
        q = _mixture(n, from_real(c), scale)
    return q


def _mixture(n: int, center: torch.Tensor, scale: float) -> MixtureProposal:
    return MixtureProposal(
        [
            StudentTProposal(n, df=1, scale=scale, center=center),
            StudentTProposal(n, df=1, scale=DEFENSIVE_WIDTH * scale, center=center),
        ],
        [1 - DEFENSIVE_WEIGHT, DEFENSIVE_WEIGHT],
    )
