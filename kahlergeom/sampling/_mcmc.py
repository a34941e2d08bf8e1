r"""MCMC samplers (MALA, HMC) in real coordinates u ∈ R^{2n}, all chains as one batch.

The log target is $\ell(u) = \log\mathrm{prior}(z) + \beta\log\det G(z)$ (`LogTarget`), with
$\nabla_u\ell$ by autograd. Proposals outside ``manifold.contains`` (or where G is not
positive definite) have $\ell = -\infty$ and are rejected.
"""

from __future__ import annotations

import abc
import math
import numbers

import torch

from kahlergeom._checks import check_points, check_positive_int
from kahlergeom._linalg import complex_normal_sample, from_real, to_real
from kahlergeom.sampling._base import LogTarget, Sampler, SamplingResult
from kahlergeom.sampling._diagnostics import effective_sample_size, split_rhat
from kahlergeom.sampling._sir import SIR, SIR_MIN_PROPOSALS

#: Initial step size ε when none is given; dual averaging moves it within a few dozen steps.
DEFAULT_STEP_SIZE = 0.1
#: Default starting points are shrunk by halving the CN(0, σ²I) scale at most this many times
#: (2^-30 ≈ 1e-9: a domain that contains no point that close to 0 needs an explicit init).
INIT_SHRINK_TRIES = 30
#: Default starts are resampled from this many proposals per chain (see `initial_states`).
START_PROPOSALS_PER_CHAIN = 20
#: The split-R̂ trace keeps at most this many iterations (memory n_chains × window).
RHAT_WINDOW = 2000
#: An HMC trajectory whose energy error exceeds this is counted as divergent (its acceptance
#: probability is below e^-1000: the integrator has blown up, not just lost accuracy).
HMC_DIVERGENT_ENERGY_ERROR = 1000.0

# Dual averaging constants of Hoffman & Gelman (2014), section 3.2 (their recommended values).
_DA_GAMMA, _DA_T0, _DA_KAPPA, _DA_MU_FACTOR = 0.05, 10.0, 0.75, 10.0


def _check_step(step_size, name="step_size"):
    if step_size is None:
        return None
    if not (isinstance(step_size, numbers.Real) and math.isfinite(step_size) and step_size > 0):
        raise ValueError(f"{name} must be a positive finite number or None; got {step_size!r}.")
    return float(step_size)


def _check_prob(p, name):
    if not (isinstance(p, numbers.Real) and 0 < p < 1):
        raise ValueError(f"{name} must be a number in (0, 1); got {p!r}.")
    return float(p)


class _DualAveraging:
    """Nesterov dual averaging of log ε (Hoffman & Gelman 2014, Algorithm 5)."""

    def __init__(self, eps0: float, target: float):
        self.mu = math.log(_DA_MU_FACTOR * eps0)
        self.target = target
        self.h_bar = 0.0
        self.log_eps_bar = math.log(eps0)
        self.t = 0

    def update(self, accept_prob: float) -> float:
        self.t += 1
        t = self.t
        w = 1 / (t + _DA_T0)
        self.h_bar = (1 - w) * self.h_bar + w * (self.target - accept_prob)
        log_eps = self.mu - math.sqrt(t) / _DA_GAMMA * self.h_bar
        eta = t ** (-_DA_KAPPA)
        self.log_eps_bar = eta * log_eps + (1 - eta) * self.log_eps_bar
        return math.exp(log_eps)

    @property
    def final(self) -> float:
        return math.exp(self.log_eps_bar)


def _progress(total: int, enabled: bool, desc: str):
    if not enabled:
        return None
    try:
        from tqdm.auto import tqdm
    except ImportError:  # pragma: no cover - tqdm is optional
        return None
    return tqdm(total=total, desc=desc, leave=False)


def initial_states(
    target: LogTarget, init, n_chains: int, generator, name="init", start="importance"
):
    """Starting points ``(C, 2n)`` with finite ℓ: from ``init``, or drawn: ``start =
    "importance"`` resamples them from the fitted heavy-tailed proposal of `SIR` (close to the
    target; falls back to "prior" when no proposal can be fitted), ``"prior"`` draws from the
    prior or CN(0, σ²I), σ halved until every chain starts inside the domain."""
    n, dtype, prior = target.n, target.dtype, target.prior
    if init is not None:
        check_points(init, n, name)
        z0 = init.to(dtype)
        if z0.ndim == 1:
            z0 = z0.expand(n_chains, n)
        if z0.shape != (n_chains, n):
            raise ValueError(
                f"{name} must have shape (n,) or (n_chains, n) = ({n_chains}, {n}); "
                f"got {tuple(init.shape)}."
            )
        u0 = to_real(z0).clone()
        _, _, ok = target(u0, u0)
        if not bool(ok.all()):
            bad = int((~ok).nonzero()[0])
            raise ValueError(
                f"{name}: {int((~ok).sum())} starting point(s) lie outside the domain of "
                f"{target.manifold!r} ({target.manifold.domain_description}) or have a "
                f"non-finite log density (G not positive definite, or log_prior = -inf); first "
                f"at chain {bad}: {z0[bad].detach().cpu().numpy()}."
            )
        return u0
    if start == "importance":
        try:
            z = SIR(n_proposals=max(START_PROPOSALS_PER_CHAIN * n_chains, SIR_MIN_PROPOSALS))
            u = to_real(z.run(target, n_chains, generator=generator).samples)
        except ValueError:  # no proposal could be fitted (domain far from 0, ...)
            u = None
        if u is not None:
            _, _, ok = target(u, u)
            if bool(ok.all()):
                return u
    u = None
    ok = torch.zeros(n_chains, dtype=torch.bool)
    scale = 1.0
    for _ in range(INIT_SHRINK_TRIES):
        if prior.sample is not None and scale == 1.0:
            z = prior.sample(n_chains, generator, dtype)
        else:
            z = complex_normal_sample((n_chains, n), scale=scale, dtype=dtype, generator=generator)
        cand = to_real(z)
        u = cand if u is None else torch.where(ok[:, None], u, cand)
        fb = torch.where(target.inside(u)[:, None], u, torch.zeros_like(u))
        _, _, ok = target(u, fb)
        if bool(ok.all()):
            return u
        scale *= 0.5
    raise ValueError(
        f"could not find starting points with a finite log density on {target.manifold!r} "
        f"({target.manifold.domain_description}) from the prior or CN(0, σ²I); pass init= "
        "(shape (n,) or (n_chains, n)) with points inside the domain."
    )


def _ranks(x: torch.Tensor) -> torch.Tensor:
    return x.argsort(0).argsort(0).to(torch.float64)


def start_memory(u0: torch.Tensor, u1: torch.Tensor) -> float:
    """Largest |Spearman rank correlation| between chains' starts ``u0`` and later states
    ``u1`` (both ``(C, 2n)``), over the real coordinates and log(1 + |u|²); NaN for C < 3.

    Independent of the start (a mixed chain) it is O(1/√C); a chain that has not forgotten
    its start keeps it near 1."""
    if u0.shape[0] < 3:
        return math.nan

    def feats(u):
        return torch.cat([u, torch.log1p(u.square().sum(-1, keepdim=True))], -1)

    a, b = _ranks(feats(u0)), _ranks(feats(u1))
    a, b = a - a.mean(0), b - b.mean(0)
    den = torch.sqrt(a.square().sum(0) * b.square().sum(0))
    rho = (a * b).sum(0) / den
    return float(torch.nan_to_num(rho.abs(), nan=0.0).max())


class MCMCSampler(Sampler):
    """Base of the batched Metropolis–Hastings samplers: chains, burn-in with step-size
    adaptation, thinning, acceptance and split-R̂ bookkeeping. Subclasses implement
    `transition` (one proposal for every chain).

    Args:
        step_size: ε (initial value when ``adapt``; `DEFAULT_STEP_SIZE` then).
        adapt: tune ε during burn-in by dual averaging (Hoffman & Gelman 2014) of the
            acceptance probability averaged over chains, towards ``target_accept``; ε is then
            frozen, so the kept draws come from an exact (non-adaptive) chain.
        target_accept: acceptance rate aimed at by the adaptation.
        n_chains: parallel chains; each keeps ``ceil(n_samples / n_chains)`` draws. Default
            None: one chain per sample, each keeping its state after burn-in, so the draws are
            independent (ESS = number of chains) once the chains have forgotten their starts,
            which the ``memory`` diagnostic (start/end rank correlation) checks.
        burn_in: iterations discarded per chain (the adaptation happens here).
        thin: keep every ``thin``-th iteration after burn-in.
        start: where chains start without ``init``: ``"importance"`` (default) resamples
            the starts from SIR's fitted heavy-tailed proposal, so the chains start near the
            target and burn-in only has to remove the residual importance-sampling error (from
            the prior, MALA had not filled the ball's singular boundary layer after 500
            iterations: KS of the p-values 0.001 over 10 seeds); ``"prior"``: the prior if
            sampleable, else CN(0, σ²I) shrunk into the domain.
    """

    uses_init = True

    def __init__(self, step_size, adapt, target_accept, n_chains, burn_in, thin, start):
        if start not in ("importance", "prior"):
            raise ValueError(f"start must be 'importance' or 'prior'; got {start!r}.")
        self.start = start
        self.step_size = _check_step(step_size)
        if not adapt and self.step_size is None:
            raise ValueError("step_size must be given when adapt=False.")
        self.adapt = bool(adapt)
        self.target_accept = _check_prob(target_accept, "target_accept")
        self.n_chains = None if n_chains is None else check_positive_int(n_chains, "n_chains")
        self.burn_in = check_positive_int(burn_in, "burn_in", minimum=0)
        self.thin = check_positive_int(thin, "thin")

    @abc.abstractmethod
    def transition(self, target: LogTarget, u, lp, g, eps: float, generator):
        """One proposal per chain from states ``u`` ``(C, 2n)`` with ℓ ``lp`` and ∇ℓ ``g``.

        Returns ``(u', ℓ', ∇ℓ', ok', log_alpha, divergent)``: the proposals, their log target,
        gradient and validity, the log acceptance probabilities ``(C,)`` (−inf to reject),
        and a bool ``(C,)`` of divergent transitions.
        """

    def run(self, target, n_samples, *, generator, init=None, progress=False):
        C = self.n_chains if self.n_chains is not None else n_samples
        u = initial_states(target, init, C, generator, start=self.start)
        u_start = u.clone()
        n_draws = -(-n_samples // C)
        burn_in, thin = self.burn_in, self.thin
        d, rdt = u.shape[1], u.dtype
        eps = self.step_size if self.step_size is not None else DEFAULT_STEP_SIZE
        adapter = _DualAveraging(eps, self.target_accept) if (self.adapt and burn_in > 0) else None
        lp, g, _ = target(u, u)
        total = burn_in + n_draws * thin
        draws = torch.empty(n_draws, C, d, dtype=rdt)
        accepted = torch.zeros(C, dtype=rdt)
        n_div = 0
        w0 = max(burn_in // 2, total - RHAT_WINDOW)
        trace = torch.empty(total - w0, C, 2, dtype=rdt)  # ℓ and log(1 + |u|²)
        bar = _progress(total, progress, self.name)
        for it in range(total):
            up, lpp, gp, okp, log_alpha, div = self.transition(target, u, lp, g, eps, generator)
            log_alpha = torch.nan_to_num(log_alpha, nan=-math.inf)
            accept = okp & (torch.log(torch.rand(C, generator=generator, dtype=rdt)) < log_alpha)
            u = torch.where(accept[:, None], up, u)
            lp = torch.where(accept, lpp, lp)
            g = torch.where(accept[:, None], gp, g)
            if it >= w0:
                trace[it - w0, :, 0] = lp
                trace[it - w0, :, 1] = torch.log1p(u.square().sum(-1))
            if it < burn_in:
                if adapter is not None:
                    eps = adapter.update(torch.exp(log_alpha.clamp(max=0.0)).mean().item())
                    if it == burn_in - 1:
                        eps = adapter.final
            else:
                accepted += accept.to(rdt)
                n_div += int(div.sum())
                k = it - burn_in
                if (k + 1) % thin == 0:
                    draws[k // thin] = u
            if bar is not None:
                bar.update(1)
        if bar is not None:
            bar.close()
        acc = accepted / (n_draws * thin)
        chains = from_real(draws)
        if n_draws == 1:  # independent chains, one draw each
            ess = torch.full((d,), float(C), dtype=rdt)
        else:
            ess = effective_sample_size(draws)
        return SamplingResult(
            samples=chains.reshape(-1, target.n)[:n_samples],
            method=self.name,
            beta=target.beta,
            ess=ess,
            acceptance_rate=acc,
            mean_acceptance=float(acc.mean()),
            step_size=eps,
            chains=chains,
            n_divergent=n_div,
            n_transitions=n_draws * thin * C,
            rhat=float(split_rhat(trace).max()),
            memory=start_memory(u_start, draws[0]) if C >= 3 else None,
        )


class MALA(MCMCSampler):
    r"""Metropolis-adjusted Langevin algorithm in real coordinates u ∈ R^{2n}.

    Proposal $u' = u + \tfrac{\varepsilon^2}{2}\nabla\ell(u) + \varepsilon\xi$,
    $\xi\sim N(0, I_{2n})$, accepted with probability
    $\min\{1, \pi(u')q(u\mid u') / (\pi(u)q(u'\mid u))\}$.

    Args:
        step_size, adapt, n_chains, burn_in, thin: see `MCMCSampler`.
        target_accept: default 0.574, the optimal MALA acceptance rate.
    """

    name = "MALA"

    def __init__(self, step_size: float | None = None, *, adapt: bool = True,
                 target_accept: float = 0.574, n_chains: int | None = None, burn_in: int = 500,
                 thin: int = 1, start: str = "importance"):  # fmt: skip
        super().__init__(step_size, adapt, target_accept, n_chains, burn_in, thin, start)

    def transition(self, target, u, lp, g, eps, generator):
        xi = torch.randn(u.shape, generator=generator, dtype=u.dtype)
        up = u + 0.5 * eps**2 * g + eps * xi
        lpp, gp, okp = target(up, u)
        rev = u - up - 0.5 * eps**2 * gp
        log_q = 0.5 * xi.square().sum(-1) - 0.5 * rev.square().sum(-1) / eps**2
        log_alpha = torch.where(okp, lpp - lp + log_q, torch.full_like(lp, -math.inf))
        return up, lpp, gp, okp, log_alpha, torch.zeros_like(okp)

    def __repr__(self):
        return (f"MALA(step_size={self.step_size}, adapt={self.adapt}, n_chains={self.n_chains}, "
                f"burn_in={self.burn_in}, thin={self.thin})")  # fmt: skip


class HMC(MCMCSampler):
    r"""Hamiltonian Monte Carlo with an identity mass matrix and ``n_leapfrog`` leapfrog steps.

    $H(u, p) = -\ell(u) + |p|^2/2$; a trajectory that leaves the domain is rejected and
    counted as divergent (as is an energy error above `HMC_DIVERGENT_ENERGY_ERROR`).

    Args:
        step_size: leapfrog ε (initial value when ``adapt``).
        n_leapfrog: leapfrog steps per iteration.
        adapt, n_chains, burn_in, thin: see `MCMCSampler`.
        target_accept: default 0.65.
        jitter: each iteration and chain uses ε·U(1 − jitter, 1 + jitter) (state-independent,
            so exactness is kept; avoids periodic trajectories).
    """

    name = "HMC"

    def __init__(self, step_size: float | None = None, n_leapfrog: int = 10, *,
                 adapt: bool = True, target_accept: float = 0.65, jitter: float = 0.1,
                 n_chains: int | None = None, burn_in: int = 500, thin: int = 1,
                 start: str = "importance"):  # fmt: skip
        super().__init__(step_size, adapt, target_accept, n_chains, burn_in, thin, start)
        self.n_leapfrog = check_positive_int(n_leapfrog, "n_leapfrog")
        if not (isinstance(jitter, numbers.Real) and 0 <= jitter < 1):
            raise ValueError(f"jitter must be a number in [0, 1); got {jitter!r}.")
        self.jitter = float(jitter)

    def transition(self, target, u, lp, g, eps, generator):
        C, rdt = u.shape[0], u.dtype
        e = eps * (1 + self.jitter * (2 * torch.rand(C, 1, generator=generator, dtype=rdt) - 1))
        p = torch.randn(u.shape, generator=generator, dtype=rdt)
        h0 = -lp + 0.5 * p.square().sum(-1)
        q, lq, gq = u, lp, g
        alive = torch.ones(C, dtype=torch.bool)
        p = p + 0.5 * e * gq
        for step in range(self.n_leapfrog):
            qn = q + e * p
            lqn, gqn, okn = target(qn, q)
            alive = alive & okn
            q = torch.where(alive[:, None], qn, q)
            lq = torch.where(alive, lqn, lq)
            gq = torch.where(alive[:, None], gqn, gq)
            half = 0.5 if step == self.n_leapfrog - 1 else 1.0
            p = p + half * e * gq
        h1 = -lq + 0.5 * p.square().sum(-1)
        log_alpha = torch.where(alive, h0 - h1, torch.full_like(lp, -math.inf))
        div = ~alive | ~torch.isfinite(h1) | (h1 - h0 > HMC_DIVERGENT_ENERGY_ERROR)
        return q, lq, gq, alive, log_alpha, div

    def __repr__(self):
        return (f"HMC(step_size={self.step_size}, n_leapfrog={self.n_leapfrog}, "
                f"adapt={self.adapt}, n_chains={self.n_chains}, burn_in={self.burn_in}, "
                f"thin={self.thin})")  # fmt: skip
