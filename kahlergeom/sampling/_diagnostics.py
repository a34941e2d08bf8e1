r"""Convergence diagnostics: effective sample sizes of MCMC chains and importance weights."""

from __future__ import annotations

import torch

from kahlergeom._linalg import kish_ess


def _autocovariance(x: torch.Tensor) -> torch.Tensor:
    """Biased autocovariance along axis 0 (divided by N) for all lags, by FFT.

    ``x``: ``(N, ...)`` real → ``(N, ...)``.
    """
    N = x.shape[0]
    xc = x - x.mean(0, keepdim=True)
    m = 1 << (2 * N - 1).bit_length()  # zero-pad: no circular wrap-around
    f = torch.fft.rfft(xc, n=m, dim=0)
    acov = torch.fft.irfft(f * f.conj(), n=m, dim=0)[:N]
    return acov / N


def effective_sample_size(draws: torch.Tensor) -> torch.Tensor:
    r"""Multi-chain effective sample size by Geyer's initial monotone sequence estimator.

    ``draws``: real ``(N, M, ...)`` (N draws of M chains; trailing axes are independent
    quantities) → ``(...)``. The estimator of Stan / Vehtari et al. (2021), without rank
    normalisation:

    * per-chain autocovariances $\gamma_{m,t}$ (FFT), within-chain variance W, between-chain
      variance B, and $\widehat{\mathrm{var}}^+ = \frac{N-1}{N}W + \frac{B}{N}$;
    * autocorrelations $\hat\rho_t = 1 - (W - \overline{\gamma}_{t}) / \widehat{\mathrm{var}}^+$
      (chains stuck at different values lower them, so disagreement between chains lowers
      the ESS);
    * Geyer: pair sums $P_k = \hat\rho_{2k} + \hat\rho_{2k+1}$ are summed while positive
      (initial positive sequence) after being made non-increasing (initial monotone sequence);
      $\hat\tau = -1 + 2\sum_k P_k$, and $\mathrm{ESS} = NM/\hat\tau$ (with
      $\hat\tau \ge 1/\log_{10}(NM)$, so antithetic chains may exceed NM).

    For an AR(1) chain $x_t = \phi x_{t-1} + \varepsilon_t$, $\tau = (1+\phi)/(1-\phi)$.
    Returns NaN for N < 4 draws per chain or a constant quantity.
    """
    if not isinstance(draws, torch.Tensor) or draws.ndim < 2 or draws.is_complex():
        raise ValueError(
            "draws must be a real tensor of shape (n_draws, n_chains, ...); got "
            f"{getattr(draws, 'dtype', type(draws).__name__)} of shape "
            f"{tuple(getattr(draws, 'shape', ()))}."
        )
    x = draws.to(torch.float64) if not draws.is_floating_point() else draws
    N, M = x.shape[0], x.shape[1]
    out_shape = x.shape[2:]
    if N < 4:
        return torch.full(out_shape, float("nan"), dtype=x.dtype)
    acov = _autocovariance(x)  # (N, M, ...)
    chain_mean = x.mean(0)  # (M, ...)
    chain_var = acov[0] * N / (N - 1)
    W = chain_var.mean(0)
    B_over_N = chain_mean.var(0, unbiased=True) if M > 1 else torch.zeros_like(W)
    var_plus = (N - 1) / N * W + B_over_N
    rho = 1 - (W - acov.mean(1)) / var_plus  # (N, ...)
    rho[0] = 1.0
    K = N // 2
    P = rho[: 2 * K].reshape(K, 2, *out_shape).sum(1)  # (K, ...)
    positive = torch.cumprod((P > 0).to(x.dtype), 0)  # initial positive sequence
    mono = torch.cummin(P, 0).values  # initial monotone sequence
    tau = -1 + 2 * (positive * mono).sum(0)
    tau = torch.maximum(tau, torch.full_like(tau, 1 / torch.log10(torch.tensor(N * M)).item()))
    ess = N * M / tau
    return torch.where(var_plus > 0, ess, torch.full_like(ess, float("nan")))


def importance_ess(log_weights: torch.Tensor) -> torch.Tensor:
    r"""Kish's effective sample size of importance weights, $(\sum w)^2 / \sum w^2$.

    ``log_weights``: real ``(..., m)`` (unnormalised; −inf allowed) → ``(...)``, in [1, m]
    (0 when every weight is zero).
    """
    any_positive = torch.isfinite(torch.logsumexp(log_weights, -1))
    ess = kish_ess(torch.where(any_positive[..., None], log_weights, torch.zeros_like(log_weights)))
    return torch.where(any_positive, ess, torch.zeros_like(ess))


def split_rhat(draws: torch.Tensor, *, rank_normalize: bool = True) -> torch.Tensor:
    r"""Rank-normalised split-$\hat R$ (Vehtari et al. 2021).

    Each chain is split in halves; with ``rank_normalize`` the pooled values are replaced by
    normal scores $\Phi^{-1}((r - 3/8)/(S + 1/4))$ of their ranks r among all S values (so
    heavy tails do not inflate it); then $\hat R = \sqrt{\widehat{\mathrm{var}}^+/W}$ over
    the 2M half-chains. ``draws``: real ``(N, M, ...)`` → ``(...)``. Near 1 when the chains
    agree; well above 1 when they still remember where they started or mix slowly for the
    window. NaN for N < 4 or a constant quantity.
    """
    if not isinstance(draws, torch.Tensor) or draws.ndim < 2 or draws.is_complex():
        raise ValueError(
            "draws must be a real tensor of shape (n_draws, n_chains, ...); got "
            f"{getattr(draws, 'dtype', type(draws).__name__)} of shape "
            f"{tuple(getattr(draws, 'shape', ()))}."
        )
    N = draws.shape[0]
    if N < 4:
        return torch.full(draws.shape[2:], float("nan"), dtype=draws.dtype)
    h = N // 2
    x = torch.cat([draws[:h], draws[N - h :]], 1)  # (h, 2M, ...)
    if rank_normalize:
        flat = x.reshape(-1, *x.shape[2:])
        ranks = flat.argsort(0).argsort(0).to(torch.float64) + 1
        S = flat.shape[0]
        x = torch.special.ndtri((ranks - 0.375) / (S + 0.25)).reshape(x.shape)
    W = x.var(0, unbiased=True).mean(0)
    B_over_n = x.mean(0).var(0, unbiased=True)
    var_plus = (h - 1) / h * W + B_over_n
    r = torch.sqrt(var_plus / W)
    return torch.where(W > 0, r, torch.full_like(r, float("nan")))
