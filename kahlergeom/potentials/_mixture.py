"""Complex-Gaussian components and the log-sum-exp surrogate over a mixture of them."""

from __future__ import annotations

import torch

from kahlergeom.potentials._base import KahlerPotential
from kahlergeom.potentials._combinators import check_temperature, lse_levi


def _check_means_precisions(means, precisions, name_m="means", name_p="precisions"):
    if not isinstance(means, torch.Tensor) or not means.is_complex() or means.ndim != 2:
        raise ValueError(
            f"{name_m} must be a complex tensor of shape (m, n); got "
            f"{getattr(means, 'dtype', type(means).__name__)} of shape "
            f"{tuple(getattr(means, 'shape', ()))}."
        )
    m, n = means.shape
    if m < 1 or n < 1:
        raise ValueError(
            f"{name_m} must have shape (m, n) with m, n >= 1; got {tuple(means.shape)}."
        )
    if not isinstance(precisions, torch.Tensor) or precisions.shape != (m, n, n):
        raise ValueError(
            f"{name_p} must be a tensor of shape (m, n, n) = ({m}, {n}, {n}); got "
            f"{tuple(getattr(precisions, 'shape', ()))}."
        )
    precisions = precisions.to(means.dtype)
    if not (bool(torch.isfinite(means).all()) and bool(torch.isfinite(precisions).all())):
        raise ValueError(f"{name_m} and {name_p} must be finite (no NaN or inf).")
    asym = (precisions - precisions.mH).abs().amax((-1, -2))
    scale = precisions.abs().amax((-1, -2)).clamp_min(1.0)
    tol = 1e3 * torch.finfo(precisions.real.dtype).eps
    bad = (asym > tol * scale).nonzero()
    if bad.numel():
        raise ValueError(
            f"{name_p}[{bad[0].item()}] is not Hermitian (max |P - P^H| = "
            f"{asym[bad[0]].item():.3g}); pass 0.5 * (P + P.mH) if the asymmetry is rounding."
        )
    precisions = 0.5 * (precisions + precisions.mH)
    _, info = torch.linalg.cholesky_ex(precisions)
    bad = (info != 0).nonzero()
    if bad.numel():
        raise ValueError(
            f"{name_p}[{bad[0].item()}] is not positive definite; each precision must be "
            "Hermitian positive definite (the inverse of a posterior covariance)."
        )
    return means, precisions


class Quadratic(KahlerPotential):
    r"""One complex-Gaussian component: $\psi(z) = (z - m)^H P (z - m)$, P Hermitian ≻ 0.

    Strictly PSH with constant Levi matrix $G = P^\top$ (so $h(v, v) = v^H P v$) and
    $\partial_a\psi = \overline{(P(z - m))_a}$. It is −log of a CN(m, P^{-1}) density up to a
    constant.
    """

    def __init__(self, mean: torch.Tensor, precision: torch.Tensor):
        if not isinstance(mean, torch.Tensor) or mean.ndim != 1:
            raise ValueError(f"mean must be a complex tensor of shape (n,); got {mean!r}.")
        if not isinstance(precision, torch.Tensor) or precision.ndim != 2:
            raise ValueError(f"precision must be a tensor of shape (n, n); got {precision!r}.")
        means, precisions = _check_means_precisions(
            mean[None], precision[None], "mean", "precision"
        )
        self.mean, self.precision = means[0], precisions[0]
        super().__init__(self.mean.shape[0])

    def _d(self, z):
        return z - self.mean.to(device=z.device, dtype=z.dtype)

    def __call__(self, z):
        d = self._d(z)
        Pd = d @ self.precision.to(device=z.device, dtype=z.dtype).transpose(-1, -2)
        return (d.conj() * Pd).sum(-1).real

    def partial(self, z):
        d = self._d(z)
        return (d @ self.precision.to(device=z.device, dtype=z.dtype).transpose(-1, -2)).conj()

    def levi(self, z):
        P = self.precision.to(device=z.device, dtype=z.dtype).transpose(-1, -2)
        return P.expand(*z.shape[:-1], self.n, self.n).clone()


class GaussianMixturePotential(KahlerPotential):
    r"""Log-sum-exp surrogate over complex-Gaussian components (vectorised over components).

    $$\Psi(z) = \tau \log \sum_{j=1}^m \exp\big(\psi_j(z)/\tau\big),\qquad
      \psi_j(z) = (z - m_j)^H P_j (z - m_j) + \log w_j .$$

    PSH (each ψ_j is), with the closed-form Levi matrix of `lse_levi`: expected component
    metric $\sum_j \pi_j P_j^\top$ plus $1/\tau$ times the covariance of the gradients
    $\partial\psi_j = \overline{P_j (z - m_j)}$. Cost O(m n²) per point, no autodiff.

    Args:
        means: complex ``(m, n)``.
        precisions: Hermitian positive definite ``(m, n, n)`` (e.g. inverse posterior covariances).
        weights: positive ``(m,)``, default ones.
        temperature: ``τ > 0``.
    """

    def __init__(
        self,
        means: torch.Tensor,
        precisions: torch.Tensor,
        weights: torch.Tensor | None = None,
        temperature: float = 1.0,
    ):
        self.means, self.precisions = _check_means_precisions(means, precisions)
        m, n = self.means.shape
        if weights is None:
            weights = torch.ones(m, dtype=self.means.real.dtype)
        weights = torch.as_tensor(weights)
        if (
            weights.shape != (m,)
            or weights.is_complex()
            or not bool(torch.isfinite(weights).all())
            or not bool((weights > 0).all())
        ):
            raise ValueError(f"weights must be {m} finite positive real numbers; got {weights!r}.")
        self.weights_ = weights
        self.temperature = check_temperature(temperature)
        super().__init__(n)

    @property
    def m(self) -> int:
        """Number of components."""
        return self.means.shape[0]

    def _parts(self, z):
        """Scores ψ_j + log w_j (..., m), and P_j (z - m_j) (..., m, n)."""
        means = self.means.to(device=z.device, dtype=z.dtype)
        P = self.precisions.to(device=z.device, dtype=z.dtype)
        d = z.unsqueeze(-2) - means
        Pd = torch.einsum("jab,...jb->...ja", P, d)
        # log in z's precision: float32 weights must not cost float64 points their accuracy.
        logw = torch.log(self.weights_.to(device=z.device, dtype=z.real.dtype))
        return (d.conj() * Pd).sum(-1).real + logw, Pd

    def __call__(self, z):
        scores, _ = self._parts(z)
        return self.temperature * torch.logsumexp(scores / self.temperature, -1)

    def weights(self, z):
        """Softmax responsibilities π_j(z), real ``(..., m)``."""
        scores, _ = self._parts(z)
        return torch.softmax(scores / self.temperature, -1)

    def partial(self, z):
        scores, Pd = self._parts(z)
        pi = torch.softmax(scores / self.temperature, -1).to(z.dtype)
        return torch.einsum("...j,...ja->...a", pi, Pd.conj())

    def levi(self, z):
        scores, Pd = self._parts(z)
        pi = torch.softmax(scores / self.temperature, -1)
        P_T = self.precisions.to(device=z.device, dtype=z.dtype).transpose(-1, -2)
        n = self.n
        mean_levi = (pi.to(z.dtype) @ P_T.reshape(-1, n * n)).reshape(*pi.shape[:-1], n, n)
        return lse_levi(pi, Pd.conj(), mean_levi, self.temperature)

    def __repr__(self):
        return f"GaussianMixturePotential(m={self.m}, n={self.n}, temperature={self.temperature})"
