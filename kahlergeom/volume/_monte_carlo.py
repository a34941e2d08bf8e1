r"""Importance-sampling estimate of a volume $\int_U \det G(z)\, dA(z)$ with diagnostics."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from kahlergeom._checks import check_positive_int
from kahlergeom._linalg import kish_ess
from kahlergeom.volume._common import (
    VolumeConvergenceError,
    check_dtype,
    check_manifold,
    log_density,
)
from kahlergeom.volume._proposals import Proposal, StudentTProposal, UniformProposal
from kahlergeom.volume._regions import Ball, Box, as_region


@dataclass(frozen=True)
class MonteCarloVolume:
    """Result of `volume_monte_carlo`.

    Attributes:
        value: the estimate $\\hat V = \\frac1N\\sum_i w_i$.
        stderr: its standard error $\\mathrm{sd}(w)/\\sqrt N$.
        n_samples: N.
        n_inside: samples that fell in the region and the chart's domain.
        ess: Kish effective sample size $(\\sum w)^2/\\sum w^2$.
        tail_index: Hill estimate ξ of the tail of the positive weights (ξ ≥ 1/2 suggests
            infinite variance; NaN when too few positive weights to tell).
        converged: whether every check passed.
        message: what failed (empty when converged).
    """

    value: float
    stderr: float
    n_samples: int
    n_inside: int
    ess: float
    tail_index: float
    converged: bool
    message: str


def hill_tail_index(w: torch.Tensor) -> float:
    """Hill estimator of the tail index ξ of positive weights (top M = min(P/5, 3√P) of P).

    For weights with a Pareto-type tail $P(w > t) \\sim t^{-1/\\xi}$ the variance is infinite
    when ξ ≥ 1/2, so a standard error means nothing there (Pareto-smoothed importance sampling
    calls ξ > 0.7 unreliable even for the mean). Bounded weights give ξ ≈ 0; light tails a
    small positive bias (≈ 0.2 for exponential weights at N = 2·10⁴); a truly heavy tail
    can read low before its asymptotics set in (≈ 0.55–0.7 for ξ = 1 at N = 2·10⁴ in the
    Gaussian-proposal Fubini–Study case). NaN when fewer than 50 positive weights.
    """
    pos = w[w > 0]
    P = pos.numel()
    M = min(P // 5, int(3 * math.sqrt(P)))
    if P < 50 or M < 10:
        return float("nan")
    top = torch.topk(pos, M + 1).values
    return float((torch.log(top[:M]) - torch.log(top[M])).mean())


def _default_proposal(region, n: int) -> Proposal:
    if isinstance(region, (Ball, Box)):
        return UniformProposal(region, n)
    return StudentTProposal(n, df=1, scale=1.0)


def volume_monte_carlo(
    manifold,
    n_samples: int,
    *,
    region=None,
    proposal: Proposal | None = None,
    generator: torch.Generator | None = None,
    dtype: torch.dtype = torch.complex128,
    batch_size: int = 65536,
    min_ess: float = 100.0,
    max_tail_index: float = 0.5,
    rtol: float | None = None,
    check: bool = True,
) -> MonteCarloVolume:
    r"""Volume $V = \int_{U} \det G(z)\, dA(z)$ of a region by importance sampling.

    Draws $z_i \sim q$ (the ``proposal``), weighs $w_i = \mathbf 1_U(z_i)\,\det G(z_i)/q(z_i)$
    and returns $\hat V = \frac1N \sum w_i$ with standard error $\mathrm{sd}(w)/\sqrt N$.
    $dA$ is Lebesgue measure on $\mathbb R^{2n}$, so $\det G\,dA$ is the Riemannian volume
    (e.g. the Fubini–Study chart has total volume $\pi^n/n!$). U is ``region`` intersected with
    the chart's domain (``manifold.contains``); ``region=None`` is the whole chart.

    Args:
        manifold: a `HermitianManifold` (e.g. ``KahlerManifold(potential)``).
        n_samples: N ≥ 2.
        region: None, a `Ball`, a `Box`, a `Predicate` or a callable ``z -> bool (...)``.
        proposal: a `Proposal`, positive on U. Default: uniform on a Ball or Box region,
            else ``StudentTProposal(n, df=1)`` (heavy-tailed, so weights stay bounded for
            densities decaying like $|z|^{-2n-2}$).
        generator: a seeded ``torch.Generator`` for reproducible draws.
        dtype: complex dtype of the sample points.
        batch_size: points per evaluation of det G (bounds memory).
        min_ess: smallest acceptable Kish effective sample size.
        max_tail_index: largest acceptable Hill tail index ξ of the weights. The standard
            error needs weights of finite variance, i.e. ξ < 1/2; bounded weights give ξ ≈ 0,
            light (exponential) tails a small positive ξ of order 1/log(N).
        rtol: if given, also require ``stderr <= rtol * |value|``.
        check: raise `VolumeConvergenceError` (with the estimate as ``.result``) when a check
            fails; with ``check=False`` return it with ``converged=False`` and a message.

    Returns:
        `MonteCarloVolume`.

    Raises:
        ValueError: bad arguments, or det G not positive at a sample in U.
        VolumeConvergenceError: no sample in U, too small an effective sample size, heavy-tailed
            weights (the standard error is then unreliable), or ``rtol`` not met.
    """
    manifold = check_manifold(manifold)
    n = manifold.n
    check_positive_int(n_samples, "n_samples", minimum=2)
    check_positive_int(batch_size, "batch_size")
    dtype = check_dtype(dtype)
    region = as_region(region, n)
    if proposal is None:
        proposal = _default_proposal(region, n)
    if not isinstance(proposal, Proposal):
        raise ValueError(
            "proposal must be a kahlergeom.volume Proposal (GaussianProposal, StudentTProposal, "
            f"UniformProposal, or a subclass); got {type(proposal).__name__}."
        )
    if proposal.n != n:
        raise ValueError(f"proposal has n = {proposal.n} but the manifold has n = {n}.")
    if not (min_ess >= 1):
        raise ValueError(f"min_ess must be >= 1; got {min_ess!r}.")
    if rtol is not None and not (rtol > 0):
        raise ValueError(f"rtol must be > 0 or None; got {rtol!r}.")

    weights = []
    n_inside = 0
    remaining = n_samples
    while remaining > 0:  # batches of samples (memory), not a loop over points
        b = min(batch_size, remaining)
        remaining -= b
        z = proposal.sample(b, generator, dtype)
        logq = proposal.log_prob(z).to(torch.float64)
        inside = manifold.contains(z)
        if region is not None:
            inside = inside & region.contains(z)
        if bool((inside & ~torch.isfinite(logq)).any()):
            raise ValueError(
                f"proposal {proposal!r} drew points where its own density is zero or infinite; "
                "its sample and log_prob disagree."
            )
        w = torch.zeros(b, dtype=torch.float64)
        zi = z[inside]
        w[inside] = torch.exp(
            log_density(manifold, zi, batch_size).to(torch.float64) - logq[inside]
        )
        weights.append(w)
        n_inside += int(inside.sum())
    w = torch.cat(weights)

    value = float(w.mean())
    stderr = float(w.std() / math.sqrt(n_samples))
    ess = float(kish_ess(torch.log(w))) if bool((w > 0).any()) else 0.0
    xi = hill_tail_index(w)

    problems = []
    if n_inside == 0:
        problems.append(
            "no sample fell inside the region (and the chart's domain); use a proposal that "
            "covers the region (e.g. UniformProposal(region)) or more samples"
        )
    elif ess < min_ess:
        problems.append(
            f"effective sample size {ess:.1f} < min_ess = {min_ess:g}: a few weights dominate; "
            "use more samples or a proposal closer to det G on the region"
        )
    if not math.isfinite(value) or not math.isfinite(stderr):
        problems.append("the estimate is not finite (weights overflowed)")
    if math.isfinite(xi) and xi > max_tail_index:
        problems.append(
            f"the importance weights are heavy-tailed (Hill tail index {xi:.2f} > "
            f"{max_tail_index:g}): their variance may be infinite and the standard error is "
            "unreliable; use a heavier-tailed proposal (StudentTProposal with small df)"
        )
    if rtol is not None and n_inside > 0 and stderr > rtol * abs(value):
        problems.append(f"stderr {stderr:.3g} > rtol * |value| = {rtol * abs(value):.3g}")
    message = "; ".join(problems)
    result = MonteCarloVolume(
        value=value,
        stderr=stderr,
        n_samples=n_samples,
        n_inside=n_inside,
        ess=ess,
        tail_index=xi,
        converged=not problems,
        message=message,
    )
    if problems and check:
        raise VolumeConvergenceError(
            f"volume_monte_carlo did not converge (estimate {value:.6g} ± {stderr:.3g}, "
            f"N = {n_samples}, ESS = {ess:.1f}): {message}. Pass check=False to get the estimate "
            "anyway.",
            result,
        )
    return result
