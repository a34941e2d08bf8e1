r"""Decoder likelihoods: how a decoder's outputs define a Fisher metric and a KL divergence.

A decoder maps a latent point z ∈ C^n to the parameters of a distribution p(x | z). A
`Likelihood` knows three things about that family:

* its **real Fisher information** in the latent's real coordinates u = (x, y):
  $F_{ij} = \mathbb E[\partial_{u_i}\ell\,\partial_{u_j}\ell]$, from the parameters and their
  derivatives along the 2n real directions (``fisher_real``);
* its **log-density** ``log_prob(x, params)``;
* the **KL divergence** ``kl(params0, params)`` = KL(p(·|z0) ‖ p(·|z)).

The Hermitian Fisher metric $g_{a\bar b} = \mathbb E[\partial_a\ell\,\bar\partial_b\ell]$ is
then the Wirtinger combination
$G = \tfrac14[(F_{xx} + F_{yy}) + i(F_{xy} - F_{xy}^\top)]$, the same map that takes a real
Hessian to a Levi matrix — which is why ∂∂̄ of the KL divergence at z0 is the Fisher metric.
"""

from __future__ import annotations

import abc
import math

import torch
import torch.nn.functional as F

from kahlergeom._checks import broadcasts


def _broadcast_tangent(dvar: torch.Tensor, var: torch.Tensor, mean: torch.Tensor):
    """Broadcast the variance and its m tangents (m, *var.shape) to the mean's shape."""
    m = dvar.shape[0]
    lead = [1] * (mean.ndim - var.ndim)
    dvar = dvar.reshape(m, *lead, *var.shape).expand(m, *mean.shape)
    return var.expand(mean.shape), dvar


def _real(t: torch.Tensor) -> torch.Tensor:
    return t.real if t.is_complex() else t


def _weighted_gram(a: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """Σ_d a[i, d] a[j, d] w[d] for real ``a`` (m, D) and ``w`` (D,): scale, then one GEMM (no
    (m, m, D) intermediate)."""
    return (a * w) @ a.transpose(-1, -2)


def _weighted_gram_complex(a: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """Re Σ_d conj(a[i, d]) a[j, d] w[d] for complex ``a`` (m, D), real ``w`` (D,), as one real
    GEMM over the interleaved parts: Re(conj(a_i) a_j) = Re a_i · Re a_j + Im a_i · Im a_j."""
    parts = torch.view_as_real(a).flatten(-2)  # (m, 2D): Re, Im interleaved (a view if possible)
    w = w.to(parts.dtype)
    w = w.unsqueeze(-1).expand(*w.shape, 2).flatten(-2)
    return (parts * w) @ parts.transpose(-1, -2)


class Likelihood(abc.ABC):
    """A family p(x | params) whose parameters a decoder outputs. See the module docstring."""

    #: Short name used in reports and errors.
    name: str = "likelihood"

    @abc.abstractmethod
    def params(self, output) -> tuple[torch.Tensor, ...]:
        """Normalise a decoder's raw output into a tuple of parameter tensors (traceable)."""

    @abc.abstractmethod
    def check(self, params: tuple[torch.Tensor, ...], batch_shape: torch.Size) -> None:
        """Validate parameters computed at points of batch shape ``batch_shape`` (not traced)."""

    @abc.abstractmethod
    def fisher_real(
        self, params: tuple[torch.Tensor, ...], dparams: tuple[torch.Tensor, ...]
    ) -> torch.Tensor:
        """Real Fisher matrix (m, m) of one point from parameters and their derivatives.

        ``dparams[k][i]`` is the derivative of ``params[k]`` along the i-th of m real
        directions (the leading axis of each ``dparams`` tensor).
        """

    @abc.abstractmethod
    def log_prob(self, x: torch.Tensor, params: tuple[torch.Tensor, ...]) -> torch.Tensor:
        """log p(x | params), summed over the output dimensions: real ``(...)``."""

    @abc.abstractmethod
    def kl(
        self, params0: tuple[torch.Tensor, ...], params: tuple[torch.Tensor, ...]
    ) -> torch.Tensor:
        """KL(p(·|params0) ‖ p(·|params)), summed over the output dimensions: real ``(...)``."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


def _check_mean_variance(mean, variance, batch_shape, *, complex_mean: bool, who: str):
    kind = "complex" if complex_mean else "real"
    if not isinstance(mean, torch.Tensor) or mean.is_complex() != complex_mean:
        raise ValueError(
            f"decoder mean must be a {kind} tensor for the {who} likelihood; got "
            f"{getattr(mean, 'dtype', type(mean).__name__)}."
        )
    if mean.shape[: len(batch_shape)] != batch_shape or mean.ndim != len(batch_shape) + 1:
        raise ValueError(
            f"decoder mean must have shape (..., D) matching the latent batch shape "
            f"{tuple(batch_shape)}; got {tuple(mean.shape)}."
        )
    if variance.is_complex():
        raise ValueError(f"decoder variance must be real and positive; got {variance.dtype}.")
    if not broadcasts(variance.shape, mean.shape):
        raise ValueError(
            f"decoder variance of shape {tuple(variance.shape)} does not broadcast to the mean's "
            f"shape {tuple(mean.shape)} (expected scalar, (D,), or (..., D))."
        )
    if not bool(torch.isfinite(mean).all()):
        raise ValueError("decoder mean contains NaN or inf.")
    if not bool(torch.isfinite(variance).all()) or not bool((variance > 0).all()):
        raise ValueError(
            f"decoder variance must be finite and > 0; got min {variance.min().item():.3g}. "
            "Parameterise it as exp(log_var) or softplus(.) + eps."
        )


def _mean_variance(output, who: str) -> tuple[torch.Tensor, torch.Tensor]:
    if not isinstance(output, tuple | list) or len(output) != 2:
        raise ValueError(
            f"a decoder for the {who} likelihood must return (mean, variance); got "
            f"{type(output).__name__}"
            + (f" of length {len(output)}" if isinstance(output, tuple | list) else "")
            + "."
        )
    mean, variance = output
    if not isinstance(mean, torch.Tensor):
        raise ValueError(f"decoder mean must be a torch.Tensor; got {type(mean).__name__}.")
    try:
        if not isinstance(variance, torch.Tensor) and not isinstance(variance, complex):
            # A Python number would become float32 (torch's default): use the mean's precision.
            variance = torch.as_tensor(variance, dtype=_real(mean).dtype, device=mean.device)
        variance = torch.as_tensor(variance, device=mean.device)
    except (TypeError, ValueError, RuntimeError) as exc:
        raise ValueError(
            f"decoder variance must be a real tensor or number; got {type(variance).__name__} "
            f"({exc})."
        ) from None
    if not variance.is_floating_point() and not variance.is_complex():
        variance = variance.to(_real(mean).dtype)
    return mean, variance


class ComplexGaussian(Likelihood):
    r"""Circular complex Gaussian $\mathcal{CN}(\mu(z), \mathrm{diag}\,\sigma^2(z))$ on C^D.

    Trivial relation matrix; $\log p = -\sum_d |x_d-\mu_d|^2/\sigma_d^2 - \log\sigma_d^2 - \log\pi$.
    The decoder returns ``(mean, variance)``: mean complex ``(..., D)``, variance real > 0,
    broadcastable to ``(..., D)`` (scalar, per output, or point-dependent). Fisher metric:

    $$g_{a\bar b} = (\partial_b\mu)^H\Sigma^{-1}(\partial_a\mu)
      + (\bar\partial_a\mu)^H\Sigma^{-1}(\bar\partial_b\mu)
      + \mathrm{tr}(\Sigma^{-1}\partial_a\Sigma\,\Sigma^{-1}\bar\partial_b\Sigma).$$

    Computed through the real Fisher
    $F_{ij} = \sum_d \tfrac{2}{\sigma_d^2}\mathrm{Re}(\overline{\partial_i\mu_d}\,\partial_j\mu_d)
      + \partial_i\sigma_d^2\,\partial_j\sigma_d^2/\sigma_d^4$.
    """

    name = "complex-gaussian"

    def params(self, output):
        return _mean_variance(output, "complex Gaussian")

    def check(self, params, batch_shape):
        _check_mean_variance(*params, batch_shape, complex_mean=True, who="complex Gaussian")

    def fisher_real(self, params, dparams):
        mean, var = params
        dmean, dvar = dparams
        var, dvar = _broadcast_tangent(dvar, var, mean)
        Fm = _weighted_gram_complex(dmean, 2.0 / var)
        Fv = _weighted_gram(dvar, var.pow(-2))
        return Fm + Fv

    def log_prob(self, x, params):
        mean, var = params
        d = x - mean
        sq = d.real**2 + d.imag**2
        return -(sq / var + torch.log(var) + math.log(math.pi)).sum(-1)

    def kl(self, params0, params):
        r"""$\sum_d \sigma_{0d}^2/\sigma_d^2 - 1 - \log(\sigma_{0d}^2/\sigma_d^2)
        + |\mu_d - \mu_{0d}|^2/\sigma_d^2$; the variance terms at the variances' own shape (a
        scalar or per-point variance is not expanded over the D outputs)."""
        mean0, var0 = params0
        mean, var = params
        d = mean - mean0
        return _gaussian_kl_sum(d.real**2 + d.imag**2, var0, var)


def _gaussian_kl_sum(sq: torch.Tensor, var0: torch.Tensor, var: torch.Tensor) -> torch.Tensor:
    """Σ_d σ₀²/σ² − 1 − log(σ₀²/σ²) + sq/σ² for squared mean differences ``sq`` ``(..., D)``,
    the variance terms at the variances' own shape (a scalar or per-point variance is not
    expanded over the D outputs): the complex Gaussian's KL, twice the real one's."""
    D = sq.shape[-1]
    ratio = var0 / var
    out = _sum_outputs(ratio - 1 - torch.log(ratio), D) + _sum_outputs(sq / var, D)
    return out.expand(sq.shape[:-1])


def _sum_outputs(x: torch.Tensor, D: int) -> torch.Tensor:
    """Σ over the output axis of ``x`` broadcast to ``(..., D)``: a scalar or a trailing axis
    of length 1 counts D times (no expansion)."""
    if x.ndim == 0:
        return D * x
    if x.shape[-1] == 1:
        return D * x[..., 0]
    return x.sum(-1)


class RealGaussian(Likelihood):
    r"""Real Gaussian $\mathcal N(\mu(z), \mathrm{diag}\,\sigma^2(z))$ on R^D (real outputs).

    Decoder returns ``(mean, variance)`` with real mean ``(..., D)``. Real Fisher
    $F_{ij} = \sum_d \partial_i\mu_d\,\partial_j\mu_d/\sigma_d^2
      + \tfrac12\,\partial_i\sigma_d^2\,\partial_j\sigma_d^2/\sigma_d^4$.
    """

    name = "real-gaussian"

    def params(self, output):
        return _mean_variance(output, "real Gaussian")

    def check(self, params, batch_shape):
        _check_mean_variance(*params, batch_shape, complex_mean=False, who="real Gaussian")

    def fisher_real(self, params, dparams):
        mean, var = params
        dmean, dvar = dparams
        var, dvar = _broadcast_tangent(dvar, var, mean)
        Fm = _weighted_gram(dmean, 1.0 / var)
        Fv = 0.5 * _weighted_gram(dvar, var.pow(-2))
        return Fm + Fv

    def log_prob(self, x, params):
        mean, var = params
        return -0.5 * ((x - mean) ** 2 / var + torch.log(var) + math.log(2 * math.pi)).sum(-1)

    def kl(self, params0, params):
        mean0, var0 = params0
        mean, var = params
        return 0.5 * _gaussian_kl_sum((mean - mean0) ** 2, var0, var)


class Bernoulli(Likelihood):
    r"""Independent Bernoulli outputs with logits $\eta(z)$ (e.g. binarised images).

    The decoder returns the logits, real ``(..., D)`` (or a 1-tuple). Real Fisher
    $F_{ij} = \sum_d p_d(1-p_d)\,\partial_i\eta_d\,\partial_j\eta_d$, $p = \sigma(\eta)$.
    """

    name = "bernoulli"

    def params(self, output):
        if isinstance(output, tuple | list):
            if len(output) != 1:
                raise ValueError(
                    "a decoder for the Bernoulli likelihood must return logits (one tensor); "
                    f"got a tuple of length {len(output)}."
                )
            output = output[0]
        if not isinstance(output, torch.Tensor):
            raise ValueError(f"decoder logits must be a torch.Tensor; got {type(output).__name__}.")
        return (output,)

    def check(self, params, batch_shape):
        (logits,) = params
        if logits.is_complex():
            raise ValueError(f"decoder logits must be real; got {logits.dtype}.")
        if logits.shape[: len(batch_shape)] != batch_shape or logits.ndim != len(batch_shape) + 1:
            raise ValueError(
                f"decoder logits must have shape (..., D) matching the latent batch shape "
                f"{tuple(batch_shape)}; got {tuple(logits.shape)}."
            )
        if not bool(torch.isfinite(logits).all()):
            raise ValueError("decoder logits contain NaN or inf.")

    def fisher_real(self, params, dparams):
        (logits,) = params
        (dlogits,) = dparams
        p = torch.sigmoid(logits)
        return _weighted_gram(dlogits, p * (1 - p))

    def log_prob(self, x, params):
        (logits,) = params
        return -F.binary_cross_entropy_with_logits(logits, x, reduction="none").sum(-1)

    def kl(self, params0, params):
        (eta0,) = params0
        (eta,) = params
        p0 = torch.sigmoid(eta0)

        def logsigmoid(t):
            # −softplus(−t) = log σ(t); F.logsigmoid's backward warns under vmap(hessian).
            return -F.softplus(-t)

        # KL = Σ p0 (log p0 − log p) + (1 − p0)(log(1 − p0) − log(1 − p)), via log-sigmoids.
        return (
            p0 * (logsigmoid(eta0) - logsigmoid(eta))
            + (1 - p0) * (logsigmoid(-eta0) - logsigmoid(-eta))
        ).sum(-1)
