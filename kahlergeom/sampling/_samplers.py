r"""Volume-weighted sampling: MALA, HMC and sampling-importance-resampling.

Target density on the chart, w.r.t. Lebesgue measure on $\mathbb R^{2n}$ (u = (x, y)):

$$\pi(z) \propto \mathrm{prior}(z)\,(\det G(z))^\beta .$$

MCMC runs in real coordinates with a batch of chains (no loop over chains); the log target is
$\ell(u) = \log\mathrm{prior}(z) + \beta\log\det G(z)$, with $\log\det G$ from a Cholesky
factor of ``manifold.metric_field`` and $\nabla_u\ell$ by autograd. Proposals outside
``manifold.contains`` (or where G is not positive definite) have $\ell = -\infty$ and are
rejected.
"""

from __future__ import annotations

import math
import numbers
import warnings
from dataclasses import dataclass, field

import torch

from kahlergeom._checks import check_points, check_positive_int, complex_dtype_of, real_dtype_of
from kahlergeom.manifolds._hermitian import HermitianManifold
from kahlergeom.sampling._diagnostics import effective_sample_size, importance_ess, split_rhat
from kahlergeom.sampling._priors import ComplexNormal, _Prior, resolve_prior
from kahlergeom.wirtinger._ddbar import from_real, to_real


class SamplingWarning(RuntimeWarning):
    """Emitted when a sampler's diagnostics are poor (low acceptance, low ESS, divergences)."""


# -- samplers as option objects ------------------------------------------------------------
class Sampler:
    """Base class of the sampling methods accepted by `sample_volume` (option objects).

    The built-in methods are `MALA`, `HMC` and `SIR`; their options are validated at
    construction.
    """

    name: str = "sampler"


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


class _MCMC(Sampler):
    step_size: float | None
    adapt: bool
    target_accept: float

    def __init__(self, step_size, adapt, target_accept):
        self.step_size = _check_step(step_size)
        if not adapt and self.step_size is None:
            raise ValueError("step_size must be given when adapt=False.")
        self.adapt = bool(adapt)
        self.target_accept = _check_prob(target_accept, "target_accept")


class MALA(_MCMC):
    r"""Metropolis-adjusted Langevin algorithm in real coordinates u ∈ R^{2n}.

    Proposal $u' = u + \tfrac{\varepsilon^2}{2}\nabla\ell(u) + \varepsilon\xi$,
    $\xi\sim N(0, I_{2n})$, accepted with probability
    $\min\{1, \pi(u')q(u\mid u') / (\pi(u)q(u'\mid u))\}$.

    Args:
        step_size: ε (initial value when ``adapt``; default 0.1 then).
        adapt: tune ε during burn-in by dual averaging (Hoffman & Gelman 2014) of the
            acceptance probability averaged over chains, towards ``target_accept``; ε is then
            frozen, so the kept draws come from an exact (non-adaptive) chain.
        target_accept: default 0.574, the optimal MALA acceptance rate.
    """

    name = "MALA"

    def __init__(self, step_size: float | None = None, *, adapt: bool = True,
                 target_accept: float = 0.574):  # fmt: skip
        super().__init__(step_size, adapt, target_accept)

    def __repr__(self):
        return f"MALA(step_size={self.step_size}, adapt={self.adapt})"


class HMC(_MCMC):
    r"""Hamiltonian Monte Carlo with an identity mass matrix and ``n_leapfrog`` leapfrog steps.

    $H(u, p) = -\ell(u) + |p|^2/2$; a trajectory that leaves the domain is rejected and
    counted as divergent (as is an energy error above 1000).

    Args:
        step_size: leapfrog ε (initial value when ``adapt``; default 0.1 then).
        n_leapfrog: leapfrog steps per iteration.
        adapt: dual-averaging adaptation of ε during burn-in (then frozen).
        target_accept: default 0.65.
        jitter: each iteration and chain uses ε·U(1 − jitter, 1 + jitter) (state-independent,
            so exactness is kept; avoids periodic trajectories).
    """

    name = "HMC"

    def __init__(self, step_size: float | None = None, n_leapfrog: int = 10, *,
                 adapt: bool = True, target_accept: float = 0.65, jitter: float = 0.1):  # fmt: skip
        super().__init__(step_size, adapt, target_accept)
        self.n_leapfrog = check_positive_int(n_leapfrog, "n_leapfrog")
        if not (isinstance(jitter, numbers.Real) and 0 <= jitter < 1):
            raise ValueError(f"jitter must be a number in [0, 1); got {jitter!r}.")
        self.jitter = float(jitter)

    def __repr__(self):
        return f"HMC(step_size={self.step_size}, n_leapfrog={self.n_leapfrog}, adapt={self.adapt})"


class SIR(Sampler):
    r"""Sampling-importance-resampling.

    Draw ``n_proposals`` points $z_i \sim q$, weight them by
    $w_i = \mathrm{prior}(z_i)\det G(z_i)^\beta / q(z_i)$ (0 outside the domain) and resample
    ``n_samples`` of them with probabilities $\propto w_i$ (multinomial, with replacement).
    Exact as ``n_proposals`` → ∞; the Kish ESS $(\sum w)^2/\sum w^2$ of the weights is reported.

    Args:
        proposal: an object with ``sample`` and ``log_prob`` (see `ComplexNormal`). Default:
            the prior when it is sampleable (then $w = \det G^\beta$), else $\mathcal{CN}(0, I)$.
        n_proposals: default ``max(20 * n_samples, 10_000)``.
        chunk_size: evaluate the metric on at most this many proposals at once.
    """

    name = "SIR"

    def __init__(self, proposal: object | None = None, n_proposals: int | None = None, *,
                 chunk_size: int = 65536):  # fmt: skip
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


# -- result -------------------------------------------------------------------------------
@dataclass
class SamplingResult:
    r"""Output of `sample_volume`.

    Attributes:
        samples: ``(n_samples, n)`` complex draws.
        method: ``"MALA"``, ``"HMC"`` or ``"SIR"``.
        beta: the exponent β.
        ess: effective sample size per real coordinate u = (x, y), ``(2n,)``. MCMC: Geyer's
            multi-chain estimator on the kept draws (NaN with fewer than 4 draws per chain);
            SIR: min(Kish ESS of the weights, n_samples) for every coordinate.
        acceptance_rate: per-chain acceptance rate after burn-in, ``(n_chains,)`` (MCMC only).
        mean_acceptance: its mean (MCMC only).
        step_size: final step size (MCMC only).
        chains: kept draws ``(n_draws, n_chains, n)`` before flattening (MCMC only).
        n_divergent: HMC trajectories that left the domain or had an energy error > 1000.
        rhat: split-R̂ of the log density over the last half of burn-in and the sampling phase
            (MCMC only; computed even with one kept draw per chain).
        importance_ess: Kish ESS of the importance weights (SIR only).
        log_weights: normalised log importance weights ``(n_proposals,)`` (SIR only).
        messages: diagnostics that were also emitted as `SamplingWarning`; empty when fine.
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
    rhat: float | None = None
    importance_ess: float | None = None
    log_weights: torch.Tensor | None = None
    messages: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when no diagnostic warning was raised."""
        return not self.messages

    @property
    def min_ess(self) -> float:
        """Smallest ESS over the real coordinates."""
        return float(self.ess.min())


def _logdet_pd(G: torch.Tensor, max_unrolled: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    r"""log det G and "G is positive definite" for Hermitian ``(..., n, n)``; autodiff-safe.

    For n ≤ ``max_unrolled``: Gaussian elimination without pivoting, vectorised over the batch
    (pivots $d_j$ are the squared diagonal of the Cholesky factor, $\log\det G=\sum_j\log d_j$,
    and G ≻ 0 iff every $d_j > 0$). Batched LAPACK Cholesky costs ~20 µs per small matrix
    here, two orders of magnitude more for the n ≤ 4 metrics of typical latent spaces.
    Larger n uses ``torch.linalg.cholesky_ex``. Where G is not PD the log det is garbage (mask
    it with the flag).
    """
    n = G.shape[-1]
    if n > max_unrolled:
        L, info = torch.linalg.cholesky_ex(G)
        return 2 * torch.log(torch.diagonal(L, dim1=-2, dim2=-1).real.abs()).sum(-1), info == 0
    A = G
    logdet = torch.zeros(G.shape[:-2], dtype=G.real.dtype, device=G.device)
    ok = torch.ones(G.shape[:-2], dtype=torch.bool, device=G.device)
    for j in range(n):
        d = A[..., 0, 0].real
        pos = d > 0
        ok = ok & pos
        d = torch.where(pos, d, torch.ones_like(d))
        logdet = logdet + torch.log(d)
        if j < n - 1:
            A = A[..., 1:, 1:] - A[..., 1:, :1] * A[..., :1, 1:] / d[..., None, None]
    return logdet, ok


# -- log target ---------------------------------------------------------------------------
class _LogTarget:
    """ℓ(u) = log prior(z) + β log det G(z) and ∇ℓ, batched over chains ``(C, 2n)``."""

    def __init__(self, manifold: HermitianManifold, prior: _Prior, beta: float):
        self.manifold = manifold
        self.prior = prior
        self.beta = beta

    def value(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Unchecked ℓ at complex points ``(..., n)`` and a bool 'G is positive definite'."""
        val = self.prior.log_prob(z)
        if self.beta == 0:
            return val, torch.ones(z.shape[:-1], dtype=torch.bool, device=z.device)
        logdet, pd = _logdet_pd(self.manifold.metric_field(z))
        return val + self.beta * logdet, pd

    def inside(self, u: torch.Tensor) -> torch.Tensor:
        finite = torch.isfinite(u).all(-1)
        z = from_real(torch.where(finite[:, None], u, torch.zeros_like(u)))
        return torch.as_tensor(self.manifold.contains(z), dtype=torch.bool) & finite

    def __call__(self, u: torch.Tensor, fallback: torch.Tensor):
        """(ℓ, ∇ℓ, ok) at ``u`` ``(C, 2n)``; points outside the domain are evaluated at
        ``fallback`` (a valid state) instead and get ℓ = −inf, ∇ℓ = 0, ok = False."""
        inside = self.inside(u)
        ue = torch.where(inside[:, None], u, fallback).detach().requires_grad_(True)
        with torch.enable_grad():
            val, pd = self.value(from_real(ue))
            if val.shape != u.shape[:1] or val.is_complex():
                raise ValueError(
                    "log_prior(z) must return a real tensor of shape (...) for points z of "
                    f"shape (..., n); for z of shape {(u.shape[0], u.shape[1] // 2)} it gave "
                    f"{val.dtype} of shape {tuple(val.shape)}."
                )
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


class _DualAveraging:
    """Nesterov dual averaging of log ε (Hoffman & Gelman 2014, Algorithm 5)."""

    def __init__(self, eps0: float, target: float, gamma=0.05, t0=10.0, kappa=0.75):
        self.mu = math.log(10 * eps0)
        self.target, self.gamma, self.t0, self.kappa = target, gamma, t0, kappa
        self.h_bar = 0.0
        self.log_eps_bar = math.log(eps0)
        self.t = 0

    def update(self, accept_prob: float) -> float:
        self.t += 1
        t = self.t
        w = 1 / (t + self.t0)
        self.h_bar = (1 - w) * self.h_bar + w * (self.target - accept_prob)
        log_eps = self.mu - math.sqrt(t) / self.gamma * self.h_bar
        eta = t ** (-self.kappa)
        self.log_eps_bar = eta * log_eps + (1 - eta) * self.log_eps_bar
        return math.exp(log_eps)

    @property
    def final(self) -> float:
        return math.exp(self.log_eps_bar)


# -- helpers --------------------------------------------------------------------------------
def _make_generator(generator, seed):
    if generator is not None and seed is not None:
        raise ValueError("pass either generator or seed, not both.")
    if isinstance(generator, numbers.Integral) and not isinstance(generator, bool):
        seed, generator = int(generator), None
    if generator is None:
        g = torch.Generator()
        if seed is not None:
            g.manual_seed(int(seed))
        else:
            g.seed()
        return g
    if not isinstance(generator, torch.Generator):
        raise ValueError(
            f"generator must be a torch.Generator, an int seed or None; got {generator!r}."
        )
    return generator


def _progress(total: int, enabled: bool, desc: str):
    if not enabled:
        return None
    try:
        from tqdm.auto import tqdm
    except ImportError:  # pragma: no cover - tqdm is optional
        return None
    return tqdm(total=total, desc=desc, leave=False)


def _initial_states(target, prior, init, n, n_chains, dtype, generator, name="init"):
    """Starting points ``(C, 2n)`` with finite ℓ: from ``init`` or drawn (prior or CN(0, I))."""
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
        val, _, ok = target(u0, u0)
        if not bool(ok.all()):
            bad = int((~ok).nonzero()[0])
            raise ValueError(
                f"{name}: {int((~ok).sum())} starting point(s) lie outside the domain of "
                f"{target.manifold!r} ({target.manifold.domain_description}) or have a "
                f"non-finite log density (G not positive definite, or log_prior = -inf); first "
                f"at chain {bad}: {z0[bad].detach().cpu().numpy()}."
            )
        return u0
    u = None
    ok = torch.zeros(n_chains, dtype=torch.bool)
    scale = 1.0
    for _ in range(30):
        if prior.sample is not None and scale == 1.0:
            z = prior.sample(n_chains, generator, dtype)
        else:
            z = ComplexNormal(n, scale=scale).sample((n_chains,), generator=generator, dtype=dtype)
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


def _mcmc(method, target, u, n_draws, burn_in, thin, generator, progress):
    """Run the chains.

    Returns draws ``(n_draws, C, 2n)``, acceptance rates ``(C,)``, the final ε, the number of
    divergent transitions, and the log-target trace ``(W, C)`` over the last half of burn-in and
    the sampling phase (at most the last 2000 iterations), for split-R̂.
    """
    C, d = u.shape
    rdt = u.dtype
    eps = method.step_size if method.step_size is not None else 0.1
    adapter = _DualAveraging(eps, method.target_accept) if (method.adapt and burn_in > 0) else None
    lp, g, _ = target(u, u)
    total = burn_in + n_draws * thin
    draws = torch.empty(n_draws, C, d, dtype=rdt)
    accepted = torch.zeros(C, dtype=rdt)
    n_div = 0
    w0 = max(burn_in // 2, total - 2000)
    trace = torch.empty(total - w0, C, dtype=rdt)
    bar = _progress(total, progress, method.name)
    for it in range(total):
        if isinstance(method, MALA):
            xi = torch.randn(C, d, generator=generator, dtype=rdt)
            up = u + 0.5 * eps**2 * g + eps * xi
            lpp, gp, okp = target(up, u)
            rev = u - up - 0.5 * eps**2 * gp
            log_q = 0.5 * xi.square().sum(-1) - 0.5 * rev.square().sum(-1) / eps**2
            log_alpha = torch.where(okp, lpp - lp + log_q, torch.full_like(lp, -math.inf))
            div = torch.zeros(C, dtype=torch.bool)
        else:
            e = eps * (1 + method.jitter * (2 * torch.rand(C, 1, generator=generator, dtype=rdt)
                                            - 1))  # fmt: skip
            p = torch.randn(C, d, generator=generator, dtype=rdt)
            h0 = -lp + 0.5 * p.square().sum(-1)
            q, lq, gq = u, lp, g
            alive = torch.ones(C, dtype=torch.bool)
            p = p + 0.5 * e * gq
            for step in range(method.n_leapfrog):
                qn = q + e * p
                lqn, gqn, okn = target(qn, q)
                alive = alive & okn
                q = torch.where(alive[:, None], qn, q)
                lq = torch.where(alive, lqn, lq)
                gq = torch.where(alive[:, None], gqn, gq)
                half = 0.5 if step == method.n_leapfrog - 1 else 1.0
                p = p + half * e * gq
            h1 = -lq + 0.5 * p.square().sum(-1)
            log_alpha = torch.where(alive, h0 - h1, torch.full_like(lp, -math.inf))
            div = ~alive | ~torch.isfinite(h1) | (h1 - h0 > 1000)
            up, lpp, gp, okp = q, lq, gq, alive
        log_alpha = torch.nan_to_num(log_alpha, nan=-math.inf)
        accept = okp & (torch.log(torch.rand(C, generator=generator, dtype=rdt)) < log_alpha)
        u = torch.where(accept[:, None], up, u)
        lp = torch.where(accept, lpp, lp)
        g = torch.where(accept[:, None], gp, g)
        if it >= w0:
            trace[it - w0] = lp
        if it < burn_in:
            if adapter is not None:
                alpha = torch.exp(log_alpha.clamp(max=0.0)).mean().item()
                eps = adapter.update(alpha)
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
    return draws, accepted / (n_draws * thin), eps, n_div, trace


def _sir(method: SIR, target: _LogTarget, prior: _Prior, n, n_samples, dtype, generator):
    if method.proposal is not None:
        prop = resolve_prior(method.proposal, n, "SIR proposal")
    elif prior.sample is not None:
        prop = prior
    else:
        prop = resolve_prior(ComplexNormal(n), n)
    m = method.n_proposals or max(20 * n_samples, 10_000)
    z = prop.sample(m, generator, dtype)
    logw = torch.empty(m, dtype=real_dtype_of(dtype))
    with torch.no_grad():
        for s in range(0, m, method.chunk_size):
            zc = z[s : s + method.chunk_size]
            u = to_real(zc)
            inside = target.inside(u)
            zs = torch.where(inside[:, None], zc, torch.zeros_like(zc))
            val, pd = target.value(zs)
            lw = val - prop.log_prob(zs)
            ok = inside & pd & torch.isfinite(lw)
            logw[s : s + method.chunk_size] = torch.where(ok, lw, torch.full_like(lw, -math.inf))
    if not bool(torch.isfinite(logw).any()):
        raise ValueError(
            f"SIR: all {m} proposals have zero weight (outside the domain of "
            f"{target.manifold!r} or with G not positive definite); choose a proposal "
            "concentrated on the domain."
        )
    logw = logw - torch.logsumexp(logw, 0)
    idx = torch.multinomial(logw.exp(), n_samples, replacement=True, generator=generator)
    return z[idx], logw, float(importance_ess(logw))


# -- public API -----------------------------------------------------------------------------
def sample_volume(
    manifold: HermitianManifold,
    n_samples: int,
    *,
    log_prior: object | None = None,
    beta: float = 1.0,
    method: Sampler | None = None,
    init: torch.Tensor | None = None,
    n_chains: int = 64,
    burn_in: int = 500,
    thin: int = 1,
    generator: torch.Generator | int | None = None,
    seed: int | None = None,
    dtype: torch.dtype | None = None,
    min_ess: float = 100.0,
    min_acceptance: float = 0.1,
    max_rhat: float = 1.5,
    progress: bool = False,
) -> SamplingResult:
    r"""Sample $z$ with density $\propto \mathrm{prior}(z)\,(\det G(z))^\beta$ on the chart.

    The density is w.r.t. Lebesgue measure on $\mathbb R^{2n}$ (u = (x, y)); with β = 1 and
    a flat prior it is the Riemannian volume element $\det G$ (see the conventions page).

    Args:
        manifold: a `HermitianManifold` (`KahlerManifold`, `FisherManifold`, ...).
        n_samples: number of returned points.
        log_prior: None (flat, improper), a callable ``z (..., n) -> real (...)``, or a
            distribution-like object (``log_prob``, ``sample``), e.g. `ComplexNormal`.
        beta: the exponent β (real; β = 0 samples the prior).
        method: `MALA` (default), `HMC` or `SIR`.
        init: MCMC starting points ``(n,)`` or ``(n_chains, n)``; default: draws from the prior
            when it is sampleable, else from $\mathcal{CN}(0, I)$ (shrunk until inside the
            domain).
        n_chains: parallel chains (MCMC); each keeps ``ceil(n_samples / n_chains)`` draws.
        burn_in: iterations discarded per chain (step size adaptation happens here).
        thin: keep every ``thin``-th iteration after burn-in.
        generator: a ``torch.Generator`` (or an int, read as a seed); the same seed gives the
            same samples.
        seed: an int seed (alternative to ``generator``).
        dtype: complex dtype of the samples (default: ``init``'s, else complex128).
        min_ess: warn when the smallest per-coordinate ESS is below this.
        min_acceptance: warn when the mean MCMC acceptance rate is below this.
        max_rhat: warn when the split-R̂ of the log density (last half of burn-in and the
            sampling phase) exceeds this.
        progress: show a tqdm progress bar (MCMC).

    Returns:
        `SamplingResult` with ``samples`` ``(n_samples, n)``, ``ess``, ``acceptance_rate``,
        ``step_size``, ``method`` and ``messages``. Poor diagnostics (acceptance below
        ``min_acceptance``, ESS below ``min_ess``, split-R̂ above ``max_rhat``, > 10% HMC
        divergences) are emitted as a
        `SamplingWarning` and listed in ``messages``.

    Example:
        >>> import kahlergeom as kg
        >>> from kahlergeom.sampling import sample_volume
        >>> M = kg.KahlerManifold(kg.potentials.FubiniStudy(1))
        >>> r = sample_volume(M, 1000, n_chains=500, burn_in=200, thin=5, seed=0)
        >>> r.samples.shape
        torch.Size([1000, 1])
    """
    if not isinstance(manifold, HermitianManifold):
        raise ValueError(
            "manifold must be a kahlergeom HermitianManifold (e.g. KahlerManifold(potential) "
            f"or FisherManifold(decoder)); got {type(manifold).__name__}."
        )
    n_samples = check_positive_int(n_samples, "n_samples")
    n_chains = check_positive_int(n_chains, "n_chains")
    burn_in = check_positive_int(burn_in, "burn_in", minimum=0)
    thin = check_positive_int(thin, "thin")
    if not (isinstance(beta, numbers.Real) and math.isfinite(beta)):
        raise ValueError(f"beta must be a finite real number; got {beta!r}.")
    beta = float(beta)
    if method is None:
        method = MALA()
    if not isinstance(method, Sampler):
        raise ValueError(
            "method must be a sampler object: MALA(...), HMC(...) or SIR(...) from "
            f"kahlergeom.sampling; got {method!r}."
        )
    n = manifold.n
    if init is not None:
        check_points(init, n, "init")
        n = init.shape[-1]
    if n is None:
        raise ValueError(
            "the manifold's latent dimension n is unknown (FisherManifold without n); pass "
            "init= or construct the manifold with n=."
        )
    if dtype is None:
        dtype = init.dtype if init is not None else torch.complex128
    if dtype not in (torch.complex64, torch.complex128):
        if dtype in (torch.float32, torch.float64):
            dtype = complex_dtype_of(dtype)
        else:
            raise ValueError(f"dtype must be torch.complex64 or torch.complex128; got {dtype}.")
    gen = _make_generator(generator, seed)
    prior = resolve_prior(log_prior, n)
    target = _LogTarget(manifold, prior, beta)
    messages: list[str] = []

    if isinstance(method, SIR):
        samples, logw, kish = _sir(method, target, prior, n, n_samples, dtype, gen)
        ess = torch.full((2 * n,), min(kish, float(n_samples)), dtype=real_dtype_of(dtype))
        if kish < min_ess:
            messages.append(
                f"SIR: the importance weights' effective sample size is {kish:.1f} of "
                f"{logw.shape[0]} proposals (< min_ess = {min_ess}); the samples are dominated "
                "by a few proposals. Use more proposals or a proposal closer to the target."
            )
        result = SamplingResult(
            samples=samples, method="SIR", beta=beta, ess=ess, importance_ess=kish,
            log_weights=logw, messages=messages,
        )  # fmt: skip
    else:
        u0 = _initial_states(target, prior, init, n, n_chains, dtype, gen)
        n_draws = -(-n_samples // n_chains)
        draws, acc, eps, n_div, trace = _mcmc(
            method, target, u0, n_draws, burn_in, thin, gen, progress
        )
        ess = effective_sample_size(draws)
        rhat = float(split_rhat(trace))
        chains = from_real(draws)
        samples = chains.reshape(-1, n)[:n_samples]
        mean_acc = float(acc.mean())
        if mean_acc < min_acceptance:
            messages.append(
                f"{method.name}: mean acceptance rate {mean_acc:.3f} < min_acceptance = "
                f"{min_acceptance} (step size {eps:.3g}); the chains barely move. Lengthen "
                "burn_in (adaptation) or lower step_size."
            )
        min_e = float(ess.min())
        if min_e < min_ess:  # NaN (too few draws per chain) compares False: no claim made
            messages.append(
                f"{method.name}: smallest effective sample size {min_e:.1f} < min_ess = "
                f"{min_ess} (from {n_draws} draws x {n_chains} chains); the chains mix slowly. "
                "Increase thin, burn_in or n_chains."
            )
        if rhat > max_rhat:
            messages.append(
                f"{method.name}: split-R-hat of the log density over the last half of burn-in and "
                f"the sampling phase is {rhat:.3f} > max_rhat = {max_rhat}: the chains had not "
                "forgotten their starting points (or mix slowly, e.g. near a singular boundary). "
                "Lengthen burn_in or pass init= closer to the target."
            )
        n_trans = n_draws * thin * n_chains
        if n_div > 0.1 * n_trans:
            messages.append(
                f"HMC: {n_div} of {n_trans} trajectories diverged (left the domain or energy "
                "error > 1000); lower step_size or n_leapfrog."
            )
        result = SamplingResult(
            samples=samples, method=method.name, beta=beta, ess=ess, acceptance_rate=acc,
            mean_acceptance=mean_acc, step_size=eps, chains=chains, n_divergent=n_div,
            rhat=rhat, messages=messages,
        )  # fmt: skip
    for msg in messages:
        warnings.warn(msg, SamplingWarning, stacklevel=2)
    return result


def log_volume_weight(
    manifold: HermitianManifold, z: torch.Tensor, beta: float = 1.0, *, jitter: float = 0.0
) -> torch.Tensor:
    r"""$\beta\log\det G(z)$ (or $\beta\log\det(G + \epsilon I)$ with ``jitter`` ε), real ``(...)``.

    Batched over ``z`` ``(..., n)`` and differentiable: w.r.t. ``z`` and, for a
    `FisherManifold`, w.r.t. the decoder's parameters — so it can enter a training loss as a
    regulariser (e.g. its batch variance, or a penalty on its magnitude). Cholesky-based;
    ``jitter`` > 0 keeps it finite where the metric is (nearly) singular. Points where G is not
    positive definite give NaN (see `HermitianManifold.log_volume_density`).
    """
    if not isinstance(manifold, HermitianManifold):
        raise ValueError(
            f"manifold must be a kahlergeom HermitianManifold; got {type(manifold).__name__}."
        )
    if not (isinstance(beta, numbers.Real) and math.isfinite(beta)):
        raise ValueError(f"beta must be a finite real number; got {beta!r}.")
    if not (isinstance(jitter, numbers.Real) and jitter >= 0):
        raise ValueError(f"jitter must be a number >= 0; got {jitter!r}.")
    if jitter == 0:
        return beta * manifold.log_volume_density(z)
    G = manifold.metric(z)
    G = G + jitter * torch.eye(G.shape[-1], dtype=G.dtype, device=G.device)
    L, info = torch.linalg.cholesky_ex(G)
    val = 2 * torch.log(torch.diagonal(L, dim1=-2, dim2=-1).real).sum(-1)
    return beta * torch.where(info == 0, val, torch.full_like(val, float("nan")))
