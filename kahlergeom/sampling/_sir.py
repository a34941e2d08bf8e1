r"""Sampling-importance-resampling (SIR) from the volume-weighted target."""

from __future__ import annotations

import math

import torch

from kahlergeom._checks import check_positive_int
from kahlergeom.sampling._base import LogTarget, Sampler, SamplingResult
from kahlergeom.sampling._diagnostics import importance_ess
from kahlergeom.sampling._priors import ComplexNormal, resolve_prior

#: Default number of proposals: this many per requested sample ...
SIR_PROPOSALS_PER_SAMPLE = 20
#: ... and at least this many (the Kish ESS of the weights needs a population to be measured).
SIR_MIN_PROPOSALS = 10_000
#: Metric evaluations per batch (bounds memory for decoders' Fisher metrics).
SIR_CHUNK_SIZE = 65536


class SIR(Sampler):
    r"""Sampling-importance-resampling.

    Draw ``n_proposals`` points $z_i \sim q$, weight them by
    $w_i = \mathrm{prior}(z_i)\det G(z_i)^\beta / q(z_i)$ (0 outside the domain) and resample
    ``n_samples`` of them with probabilities $\propto w_i$ (multinomial, with replacement).
    Exact as ``n_proposals`` → ∞; the Kish ESS $(\sum w)^2/\sum w^2$ of the weights is reported.

    Args:
        proposal: an object with ``sample`` and ``log_prob`` (see `ComplexNormal`; a
            ``kahlergeom.volume.Proposal`` such as ``StudentTProposal`` also works). Default:
            the prior when it is sampleable (then $w = \det G^\beta$), else $\mathcal{CN}(0, I)$.
        n_proposals: default ``max(SIR_PROPOSALS_PER_SAMPLE * n_samples, SIR_MIN_PROPOSALS)``.
        chunk_size: evaluate the metric on at most this many proposals at once.
    """

    name = "SIR"

    def __init__(self, proposal: object | None = None, n_proposals: int | None = None, *,
                 chunk_size: int = SIR_CHUNK_SIZE):  # fmt: skip
        if proposal is not None and not (
            callable(getattr(proposal, "sample", None))
            and callable(getattr(proposal, "log_prob", None))
        ):
            raise ValueError(
                "proposal must have sample and log_prob methods (e.g. "
                f"kahlergeom.sampling.ComplexNormal(n)); got {type(proposal).__name__}."
            )
        self.proposal = proposal
        self.n_proposals = (
            None if n_proposals is None else check_positive_int(n_proposals, "n_proposals")
        )
        self.chunk_size = check_positive_int(chunk_size, "chunk_size")

    def __repr__(self):
        return f"SIR(proposal={self.proposal!r}, n_proposals={self.n_proposals})"

    def _proposal_for(self, target: LogTarget):
        if self.proposal is not None:
            return resolve_prior(self.proposal, target.n, "SIR proposal")
        if target.prior.sample is not None:
            return target.prior
        return resolve_prior(ComplexNormal(target.n), target.n)

    def run(self, target, n_samples, *, generator, init=None, progress=False):
        prop = self._proposal_for(target)
        m = self.n_proposals or max(SIR_PROPOSALS_PER_SAMPLE * n_samples, SIR_MIN_PROPOSALS)
        z = prop.sample(m, generator, target.dtype)
        logw = torch.empty(m, dtype=target.real_dtype)
        for s in range(0, m, self.chunk_size):
            zc = z[s : s + self.chunk_size]
            with torch.no_grad():
                lq = prop.log_prob(zc)
            logw[s : s + self.chunk_size] = target.log_density(zc) - lq
        logw = torch.nan_to_num(logw, nan=-math.inf, posinf=-math.inf)
        if not bool(torch.isfinite(logw).any()):
            raise ValueError(
                f"SIR: all {m} proposals have zero weight (outside the domain of "
                f"{target.manifold!r} or with G not positive definite); choose a proposal "
                "concentrated on the domain."
            )
        logw = logw - torch.logsumexp(logw, 0)
        idx = torch.multinomial(logw.exp(), n_samples, replacement=True, generator=generator)
        kish = float(importance_ess(logw))
        ess = torch.full((2 * target.n,), min(kish, float(n_samples)), dtype=target.real_dtype)
        return SamplingResult(
            samples=z[idx], method=self.name, beta=target.beta, ess=ess, importance_ess=kish,
            log_weights=logw,
        )  # fmt: skip
