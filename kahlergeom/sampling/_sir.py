r"""Sampling-importance-resampling (SIR) from the volume-weighted target."""

from __future__ import annotations

import math

import torch

from kahlergeom._checks import check_positive_int
from kahlergeom._linalg import to_real
from kahlergeom.sampling._base import LogTarget, Sampler, SamplingResult
from kahlergeom.sampling._diagnostics import importance_ess
from kahlergeom.sampling._fit import fit_proposal
from kahlergeom.sampling._priors import resolve_prior
from kahlergeom.volume import hill_tail_index

#: Without ``n_proposals``, proposals are drawn in batches until the Kish ESS of the weights is
#: at least this many times n_samples: the resampled draws then have an ESS of
#: n_samples / (1 + 1/20) ≈ 0.95 n_samples, and the ECDF's variance is inflated by ≤ 5%.
SIR_ESS_PER_SAMPLE = 20
#: ... or until this many proposals per sample have been drawn (the ESS check then fails).
SIR_MAX_PROPOSALS_PER_SAMPLE = 200
#: Proposals per batch (and at least this many in all: the weights' tail needs a population).
SIR_MIN_PROPOSALS = 10_000
#: Metric evaluations per batch (bounds memory for decoders' Fisher metrics).
SIR_CHUNK_SIZE = 65536


def resampled_ess(z: torch.Tensor, logw: torch.Tensor, n_samples: int) -> torch.Tensor:
    r"""ESS per real coordinate of ``n_samples`` draws resampled from weighted points.

    For coordinate j, with $f$ the weighted-rank transform of $u_j$ (its weighted empirical CDF
    minus 1/2, bounded even when $u_j$ has no variance) and normalised weights $ar w$, the
    importance ESS is $\sumar w f^2 / \sumar w^2 f^2$ (= m for equal weights), and
    multinomial resampling adds the variance of n i.i.d. draws:
    $\mathrm{ESS} = 1/(1/n + 1/\mathrm{ESS}_{IS})$. ``z`` ``(m, n)``, ``logw`` ``(m,)`` → ``(2n,)``.
    """
    w = torch.softmax(logw.double(), 0)
    u = to_real(z).double()
    out = []
    for j in range(u.shape[1]):
        order = torch.argsort(u[:, j])
        ws = w[order]
        f = torch.cumsum(ws, 0) - 0.5 * ws - 0.5
        ess_is = (ws * f * f).sum() / (ws * ws * f * f).sum()
        out.append(1.0 / (1.0 / n_samples + 1.0 / ess_is))
    return torch.stack(out)


class SIR(Sampler):
    r"""Sampling-importance-resampling.

    Draw points $z_i \sim q$, weight them by
    $w_i = \mathrm{prior}(z_i)\det G(z_i)^\beta / q(z_i)$ (0 outside the domain) and resample
    ``n_samples`` of them with probabilities $\propto w_i$ (multinomial, with replacement).
    Exact as the number of proposals → ∞ (bias O(1/m)). Reported: the Kish ESS
    $(\sum w)^2/\sum w^2$ of the weights, the per-coordinate ESS of the resampled draws
    (`resampled_ess`) and the Hill tail index of the weights (above 1/2 their variance is
    infinite and the draws cannot be trusted: flagged by `sample_volume`).

    Args:
        proposal: an object with ``sample`` and ``log_prob`` (`ComplexNormal`, a
            ``kahlergeom.volume.Proposal`` such as ``StudentTProposal``, ...). Default: a
            heavy-tailed Cauchy mixture fitted to the target (`fit_proposal`), whose weights
            stay bounded for targets decaying at least like $|u|^{-(2n+1)}$.
        n_proposals: a fixed number of proposals. Default: batches of
            ``max(SIR_MIN_PROPOSALS, n_samples)`` until the Kish ESS reaches
            ``SIR_ESS_PER_SAMPLE * n_samples`` (at most ``SIR_MAX_PROPOSALS_PER_SAMPLE *
            n_samples`` proposals).
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

    def _proposal_for(self, target: LogTarget, generator):
        if self.proposal is not None:
            return resolve_prior(self.proposal, target.n, "SIR proposal")
        return resolve_prior(fit_proposal(target, generator), target.n, "SIR proposal")

    def _weights(self, prop, target, m, generator):
        z = prop.sample(m, generator, target.dtype)
        logw = torch.empty(m, dtype=target.real_dtype)
        for s in range(0, m, self.chunk_size):
            zc = z[s : s + self.chunk_size]
            with torch.no_grad():
                lq = prop.log_prob(zc)
            logw[s : s + self.chunk_size] = target.log_density(zc) - lq
        return z, torch.nan_to_num(logw, nan=-math.inf, posinf=-math.inf)

    def run(self, target, n_samples, *, generator, init=None, progress=False):
        prop = self._proposal_for(target, generator)
        if self.n_proposals is not None:
            z, logw = self._weights(prop, target, self.n_proposals, generator)
        else:
            batch = max(SIR_MIN_PROPOSALS, n_samples)
            cap = max(SIR_MAX_PROPOSALS_PER_SAMPLE * n_samples, batch)
            zs, lws, m = [], [], 0
            while True:
                zb, lwb = self._weights(prop, target, batch, generator)
                zs.append(zb)
                lws.append(lwb)
                m += batch
                kish = float(importance_ess(torch.cat(lws)))
                if kish >= SIR_ESS_PER_SAMPLE * n_samples or m + batch > cap:
                    break
            z, logw = torch.cat(zs), torch.cat(lws)
        m = z.shape[0]
        if not bool(torch.isfinite(logw).any()):
            raise ValueError(
                f"SIR: all {m} proposals have zero weight (outside the domain of "
                f"{target.manifold!r} or with G not positive definite); choose a proposal "
                "concentrated on the domain."
            )
        logw = logw - torch.logsumexp(logw, 0)
        idx = torch.multinomial(logw.exp(), n_samples, replacement=True, generator=generator)
        return SamplingResult(
            samples=z[idx],
            method=self.name,
            beta=target.beta,
            ess=resampled_ess(z, logw, n_samples).to(target.real_dtype),
            importance_ess=float(importance_ess(logw)),
            log_weights=logw,
            tail_index=hill_tail_index(logw.double().exp()),
        )
