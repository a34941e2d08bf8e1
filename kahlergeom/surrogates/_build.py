r"""Building the log-sum-exp surrogate potential from data (docs/conventions.md § Log-sum-exp
surrogate).

The surrogate is a `GaussianMixturePotential`
$\Psi(z) = \tau\log\sum_j \exp\big(((z-m_j)^H P_j (z-m_j) + \log w_j)/\tau\big)$, whose
closed-form Levi matrix needs no decoder at query time. This module chooses its ingredients:
the centres $m_j$ and precisions $P_j$ (from encoder posteriors or from exact metrics at
anchors), the number of components (`reduce_components`), and the temperature τ
(`choose_temperature`).
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from kahlergeom._checks import check_hermitian_pd, check_points, check_points_and_metrics
from kahlergeom.manifolds._hermitian import HermitianManifold
from kahlergeom.potentials._mixture import GaussianMixturePotential
from kahlergeom.surrogates._anchors import KernelAnchorManifold
from kahlergeom.surrogates._fidelity import relative_frobenius_error
from kahlergeom.surrogates._reduce import reduce_components

#: Default temperature grid of `choose_temperature`: 10^-3 … 10^3, 4 values per decade.
DEFAULT_TEMPERATURES = torch.logspace(-3, 3, 25, dtype=torch.float64)


def _check_means(means, name="means"):
    check_points(means, None, name)
    if means.ndim != 2:
        raise ValueError(f"{name} must have shape (m, n); got {tuple(means.shape)}.")
    return means


def _precisions_from_covariances(covariances, m, n, cdtype):
    """Γ (m, n) diagonal or (m, n, n) Hermitian PD → Γ^{-1} (m, n, n) complex."""
    if not isinstance(covariances, torch.Tensor):
        raise ValueError(
            f"covariances must be a tensor of shape (m, n) (diagonal) or (m, n, n) (full); got "
            f"{type(covariances).__name__}."
        )
    if not bool(torch.isfinite(covariances).all()):
        raise ValueError("covariances must be finite (no NaN or inf).")
    if covariances.shape == (m, n):
        if covariances.is_complex():
            raise ValueError(
                "diagonal covariances (m, n) must be real (the variances of CN(m_j, Γ_j)); got "
                f"{covariances.dtype}."
            )
        bad = (covariances <= 0).any(-1).nonzero()
        if bad.numel():
            j = bad[0].item()
            raise ValueError(
                f"covariances[{j}] has a non-positive variance "
                f"({covariances[j].min().item():.3g}); posterior variances must be > 0 "
                "(parameterise them as exp(log_var))."
            )
        return torch.diag_embed(1.0 / covariances).to(cdtype)
    if covariances.shape == (m, n, n):
        C = check_hermitian_pd(
            covariances.to(cdtype),
            "covariances[{i}]",
            hint="a posterior covariance must be Hermitian positive definite.",
        )
        P = torch.cholesky_inverse(torch.linalg.cholesky(C))
        return 0.5 * (P + P.mH)
    raise ValueError(
        f"covariances must have shape (m, n) = ({m}, {n}) (diagonal variances) or "
        f"(m, n, n) = ({m}, {n}, {n}) (full); got {tuple(covariances.shape)}."
    )


def _subtract_prior(P, prior_precision, on_indefinite, floor):
    n = P.shape[-1]
    Lam = torch.as_tensor(prior_precision)
    if Lam.ndim == 0:
        Lam = Lam * torch.eye(n, dtype=P.real.dtype)
    if Lam.shape != (n, n):
        raise ValueError(
            f"prior_precision must be a scalar or an (n, n) = ({n}, {n}) Hermitian matrix; got "
            f"shape {tuple(Lam.shape)}."
        )
    Lam = Lam.to(device=P.device, dtype=P.dtype)
    Q = P - Lam
    Q = 0.5 * (Q + Q.mH)
    lam, U = torch.linalg.eigh(Q)
    top = torch.linalg.eigvalsh(P)[..., -1:]
    lower = floor * top  # per component: floor × largest eigenvalue of the posterior precision
    bad = (lam[..., :1] < lower).squeeze(-1)
    if bool(bad.any()):
        if on_indefinite == "raise":
            j = bad.nonzero()[0].item()
            raise ValueError(
                f"prior_precision: subtracting it from the posterior precision of component {j} "
                f"(and {int(bad.sum()) - 1} others) leaves a matrix that is not positive definite "
                f"(smallest eigenvalue {lam[j, 0].item():.3g}). Pass on_indefinite='clip' to clip "
                "the eigenvalues, or prior_precision=None."
            )
        lam = torch.maximum(lam, lower)
        Q = (U * lam.to(U.dtype).unsqueeze(-2)) @ U.mH
        Q = 0.5 * (Q + Q.mH)
    return Q


def _reduce_precisions(means, precisions, m, reduction, seed):
    """Representatives of the means and the average precision of each group."""
    red = reduce_components(means, m, method=reduction, seed=seed)
    counts = torch.bincount(red.labels, minlength=m)
    sums = torch.zeros(m, *precisions.shape[1:], dtype=precisions.dtype, device=precisions.device)
    sums.index_add_(0, red.labels, precisions)
    # A group is never empty for k-means labels after convergence; guard against it anyway.
    own = precisions[
        torch.cdist(
            torch.view_as_real(red.centres).flatten(-2), torch.view_as_real(means).flatten(-2)
        ).argmin(-1)
    ]
    avg = torch.where(
        (counts > 0)[:, None, None], sums / counts.clamp_min(1)[:, None, None].to(sums.dtype), own
    )
    return red.centres, 0.5 * (avg + avg.mH), counts


def from_posteriors(
    means: torch.Tensor,
    covariances: torch.Tensor,
    *,
    prior_precision: float | torch.Tensor | None = None,
    on_indefinite: str = "raise",
    floor: float = 1e-6,
    m: int | None = None,
    reduction: str = "kmeans",
    seed: int = 0,
    temperature: float = 1.0,
    weights: torch.Tensor | None = None,
) -> GaussianMixturePotential:
    r"""LSE surrogate from encoder posteriors $q(z\mid x_j) = \mathcal{CN}(m_j, \Gamma_j)$.

    Component j is $\psi_j(z) = (z - m_j)^H P_j (z - m_j)$ with $P_j = \Gamma_j^{-1}$ — the
    negative log-density of the posterior up to a constant — so its Levi matrix is
    $P_j^\top = \Gamma_j^{-\top}$ and $h(v, v) = v^H \Gamma_j^{-1} v$.

    **Prior subtraction (Laplace view, docs/conventions.md § Log-sum-exp surrogate).** For a trained
    VAE with prior precision Λ
    (Λ = I for the standard prior CN(0, I)) the posterior precision is ≈ Fisher metric + Λ, in
    the sense $\Gamma_j^{-1} \approx G(m_j)^\top + \Lambda$. With ``prior_precision=Λ`` the
    precisions become $P_j = \Gamma_j^{-1} - \Lambda$. The difference need not be positive
    definite (a posterior that is no tighter than the prior along some direction); then
    ``on_indefinite="raise"`` (default) raises, and ``on_indefinite="clip"`` raises the
    eigenvalues of $P_j$ to ``floor`` × (largest eigenvalue of $\Gamma_j^{-1}$), keeping each
    component strictly PSH. Default: no subtraction.

    **Reduction.** With ``m`` given, the means are reduced to m representatives by
    `reduce_components` (``reduction="kmeans"``: cluster centres; ``"random"``: a subsample) and
    each representative gets the average precision of the posteriors assigned to it (after prior
    subtraction). Weights stay ones unless given.

    Args:
        means: complex ``(M, n)``, the posterior means.
        covariances: real ``(M, n)`` (diagonal variances) or Hermitian PD ``(M, n, n)``.
        prior_precision: None, a scalar λ (meaning λ I), or a Hermitian ``(n, n)`` matrix.
        on_indefinite: ``"raise"`` or ``"clip"`` (see above).
        floor: relative eigenvalue floor of the clipping.
        m: number of components to keep (default: all M).
        reduction: ``"kmeans"`` or ``"random"``.
        seed: seed of the reduction.
        temperature: τ of the surrogate.
        weights: positive ``(m,)`` weights $w_j$ (default ones).

    Returns:
        `GaussianMixturePotential`; wrap it in `kahlergeom.KahlerManifold` for the geometry.
    """
    means = _check_means(means)
    M, n = means.shape
    if on_indefinite not in ("raise", "clip"):
        raise ValueError(f"on_indefinite must be 'raise' or 'clip'; got {on_indefinite!r}.")
    if not 0 < float(floor) < 1:
        raise ValueError(f"floor must be in (0, 1); got {floor!r}.")
    P = _precisions_from_covariances(covariances, M, n, means.dtype).to(means.device)
    if prior_precision is not None:
        P = _subtract_prior(P, prior_precision, on_indefinite, float(floor))
    if m is not None and m != M:
        means, P, _ = _reduce_precisions(means, P, m, reduction, seed)
    return GaussianMixturePotential(means, P, weights=weights, temperature=temperature)


def from_anchors(
    manifold: HermitianManifold,
    anchors: torch.Tensor,
    *,
    m: int | None = None,
    reduction: str = "kmeans",
    seed: int = 0,
    jitter: float = 0.0,
    temperature: float = 1.0,
    weights: torch.Tensor | None = None,
) -> GaussianMixturePotential:
    r"""LSE surrogate whose components carry the exact metric at anchor points.

    Component j is centred at anchor $a_j$ with precision $P_j = G(a_j)^\top$ (for Hermitian G,
    $G^\top = \bar G$), so that its Levi matrix is exactly $G(a_j)$. With one anchor the
    surrogate's metric is $G(a_1)$ everywhere. With several anchors the surrogate's metric is
    $\sum_j \pi_j G(a_j)$ plus the $1/\tau$ covariance of the component gradients, where
    $\pi = \mathrm{softmax}(\psi/\tau)$ favours the component whose quadratic is *largest* at z
    — near anchor j that is a distant anchor, not j itself. So the surrogate does **not**
    reproduce $G(a_j)$ at $a_j$ when m > 1 (see docs/decoder-geometry.md).

    Args:
        manifold: a `HermitianManifold` (e.g. `kahlergeom.FisherManifold`) giving the exact
            metric.
        anchors: complex ``(N, n)``, e.g. encoder means of training data.
        m: reduce the anchors to m representatives first (`reduce_components`); the exact metric
            is evaluated at the representatives (k-means centres or the random subsample).
        reduction, seed: see `reduce_components`.
        jitter: add ``jitter · I`` to every precision (for metrics that are only semidefinite).
        temperature: τ of the surrogate (see `choose_temperature`).
        weights: positive ``(m,)`` (default ones).

    Returns:
        `GaussianMixturePotential` with means = the anchors used.
    """
    if not isinstance(manifold, HermitianManifold):
        raise ValueError(
            f"manifold must be a kahlergeom HermitianManifold (e.g. FisherManifold); got "
            f"{type(manifold).__name__}."
        )
    anchors = _check_means(anchors, "anchors")
    if m is not None:
        anchors = reduce_components(anchors, m, method=reduction, seed=seed).centres
    G = manifold.metric(anchors).detach()
    P = G.transpose(-1, -2)
    P = 0.5 * (P + P.mH)
    if jitter:
        if not float(jitter) > 0:
            raise ValueError(f"jitter must be >= 0; got {jitter!r}.")
        P = P + float(jitter) * torch.eye(P.shape[-1], dtype=P.dtype, device=P.device)
    P = check_hermitian_pd(
        P,
        "anchors: the metric at anchor {i}",
        hint="the decoder's Jacobian is rank deficient there; pass jitter > 0 to add jitter·I.",
    )
    return GaussianMixturePotential(anchors, P, weights=weights, temperature=temperature)


class TemperatureChoice(NamedTuple):
    """Result of `choose_temperature`."""

    #: the selected τ
    temperature: float
    #: the grid, real (T,)
    temperatures: torch.Tensor
    #: median relative Frobenius error at each τ, real (T,)
    errors: torch.Tensor
    #: the surrogate rebuilt with the selected τ
    surrogate: object


def _with_temperature(surrogate, tau):
    if isinstance(surrogate, GaussianMixturePotential):
        return GaussianMixturePotential(
            surrogate.means, surrogate.precisions, surrogate.weights_, temperature=tau
        )
    return surrogate.with_temperature(tau)


def _surrogate_metric(surrogate, points):
    if isinstance(surrogate, GaussianMixturePotential):
        return surrogate.levi(points)
    return surrogate.metric(points)


def choose_temperature(
    surrogate: GaussianMixturePotential | KernelAnchorManifold,
    points: torch.Tensor,
    metrics: torch.Tensor,
    *,
    temperatures: torch.Tensor | None = None,
) -> TemperatureChoice:
    r"""Pick τ from a grid by the held-out median relative Frobenius error.

    $$\tau^* = \arg\min_{\tau \in \text{grid}} \operatorname{median}_i
      \frac{\|G_\tau(z_i) - G(z_i)\|_F}{\|G(z_i)\|_F},$$

    where $G(z_i)$ are exact metrics (e.g. Fisher) at held-out points $z_i$ and $G_\tau$ is the
    surrogate's metric at temperature τ. The median makes the choice robust to a few points
    where the exact metric is near zero. Ties go to the smallest τ. Use points not used to
    build the surrogate.

    Args:
        surrogate: a `GaussianMixturePotential` (its Levi matrix) or a `KernelAnchorManifold`
            (its bandwidth); only its temperature is changed.
        points: complex ``(N, n)`` held-out points.
        metrics: complex ``(N, n, n)`` exact metrics at them.
        temperatures: positive grid ``(T,)`` (default `DEFAULT_TEMPERATURES`, 10^-3 … 10^3).

    Returns:
        `TemperatureChoice` (temperature, grid, errors, surrogate at the chosen τ).
    """
    if not isinstance(surrogate, GaussianMixturePotential | KernelAnchorManifold):
        raise ValueError(
            "surrogate must be a GaussianMixturePotential or a KernelAnchorManifold; got "
            f"{type(surrogate).__name__}."
        )
    points, metrics = check_points_and_metrics(points, metrics, surrogate.n)
    grid = DEFAULT_TEMPERATURES if temperatures is None else torch.as_tensor(temperatures)
    grid = grid.to(torch.float64).flatten()
    if grid.numel() == 0 or not bool(torch.isfinite(grid).all()) or not bool((grid > 0).all()):
        raise ValueError(f"temperatures must be a non-empty grid of finite values > 0; got {grid}.")
    metrics = metrics.to(points.dtype)
    errors = torch.stack(
        [
            torch.quantile(
                relative_frobenius_error(
                    _surrogate_metric(_with_temperature(surrogate, float(t)), points), metrics
                ),
                0.5,
            )
            for t in grid  # a loop over grid values; each evaluation is batched over points
        ]
    )
    best = int(torch.argmin(torch.nan_to_num(errors, nan=float("inf"))))
    tau = float(grid[best])
    return TemperatureChoice(tau, grid, errors, _with_temperature(surrogate, tau))
