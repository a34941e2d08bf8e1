"""Complex-Gaussian components and the log-sum-exp surrogate over a mixture of them."""

from __future__ import annotations

import torch

from kahlergeom._checks import check_hermitian_pd, check_temperature
from kahlergeom.potentials._base import KahlerPotential
from kahlergeom.potentials._combinators import (
    levi_from_covariance,
    weighted_covariance,
)

#: Points per chunk are chosen so that a chunk's (points, m, 2n) tensors hold at most this
#: many elements (bounded memory, cache-friendly).
_CHUNK_ELEMENTS = 1 << 18


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
    precisions = check_hermitian_pd(
        precisions,
        name_p + "[{i}]",
        hint="each precision must be Hermitian positive definite (the inverse of a posterior "
        "covariance).",
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

    def _operators(self, z):
        """Real forms of the components at z's dtype and device (O(m n²), rebuilt per call so
        that ``means``/``precisions`` may change or carry autograd history).

        With u = (Re z, Im z) − u0 (u0: the mean of the means, so the cancellation in
        P_j z − P_j m_j is at the scale of the data's spread), P_j = A_j + i B_j and q_j =
        (Re, Im) of P_j (z − m_j): q_j = u W_j + b_j with W_j = [[A_jᵀ, B_jᵀ], [−B_jᵀ, A_jᵀ]]
        and b_j = −(Re, Im) P_j (m_j − z0). All components side by side: one real GEMM
        (N, 2n) × (2n, 2n·m). M_j = (Re, Im)(m_j − z0).
        """
        dtype, device = z.dtype, z.device
        means = self.means.to(device=device, dtype=dtype)
        P = self.precisions.to(device=device, dtype=dtype)
        m, n = means.shape
        z0 = means.mean(0)
        centred = means - z0
        c = (P @ centred.unsqueeze(-1)).squeeze(-1)  # P_j (m_j − z0), (m, n)
        At, Bt = P.real.transpose(-1, -2), P.imag.transpose(-1, -2)
        W = torch.cat([torch.cat([At, Bt], -1), torch.cat([-Bt, At], -1)], -2)  # (m, 2n, 2n)
        # Columns ordered (output coordinate, component): q comes out as (B, 2n, m), the layout
        # in which the reductions below and the batched Gram GEMM of the Levi matrix are fastest.
        W = W.permute(1, 2, 0).reshape(2 * n, 2 * n * m)
        bias = -torch.cat([c.real, c.imag], -1).transpose(0, 1).reshape(2 * n * m)
        M = torch.cat([centred.real, centred.imag], -1).transpose(0, 1)  # (2n, m)
        u0 = torch.cat([z0.real, z0.imag], -1)
        # log in z's precision: float32 weights must not cost float64 points their accuracy.
        logw = torch.log(self.weights_.to(device=device, dtype=z.real.dtype))
        # Score ψ_j + log w_j = (u − M_j)·q_j + log w_j = u·q_j − (u·V_j + k_j), V_j = W_j M_j,
        # k_j = M_j·b_j − log w_j: a batched dot product and one small GEMM, no (B, 2n, m) temps.
        V = (W.reshape(2 * n, 2 * n, m) * M).sum(1)  # (2n, m)
        k = (M * bias.reshape(2 * n, m)).sum(0) - logw
        # Biases as an extra input row (u gets a trailing 1): one plain GEMM per chunk, no
        # copy of the broadcast bias into the output first.
        return torch.cat([W, bias.unsqueeze(0)], 0), torch.cat([V, k.unsqueeze(0)], 0), u0

    def _chunks(self, z):
        """z as real rows u = (Re z, Im z), (B, 2n), and the points per chunk (bounded memory)."""
        n = z.shape[-1]
        zf = z.reshape(-1, n)
        rows = max(1, _CHUNK_ELEMENTS // (2 * n * self.means.shape[0]))
        return torch.cat([zf.real, zf.imag], -1), rows

    def _chunk_parts(self, u, ops):
        """Scores ψ_j + log w_j (B, m) and q_j = (Re, Im) P_j (z − m_j) as (B, 2n, m), of rows u."""
        Wb, Vk, u0 = ops
        u = u - u0
        u1 = torch.cat([u, torch.ones_like(u[:, :1])], -1)
        q = (u1 @ Wb).reshape(u.shape[0], Vk.shape[0] - 1, Vk.shape[1])
        # Re((z − m_j)ᴴ P_j (z − m_j)) = (u − M_j)·q_j.
        scores = (u.unsqueeze(-2) @ q).squeeze(-2) - u1 @ Vk
        return scores, q

    def _map(self, z, fn):
        """``fn(scores, q)`` chunk by chunk over the points (flattened), concatenated; ``fn``
        returns a tensor or a tuple of tensors with the chunk's points as the leading axis."""
        ops = self._operators(z)
        u, rows = self._chunks(z)
        outs = [fn(*self._chunk_parts(uc, ops)) for uc in torch.split(u, rows)]
        if len(outs) == 1:
            return outs[0]
        if isinstance(outs[0], tuple):
            return tuple(torch.cat(parts, 0) for parts in zip(*outs, strict=True))
        return torch.cat(outs, 0)

    def __call__(self, z):
        t = self.temperature
        out = self._map(z, lambda s, q: t * torch.logsumexp(s / t, -1))
        return out.reshape(z.shape[:-1])

    def weights(self, z):
        """Softmax responsibilities π_j(z), real ``(..., m)``."""
        t = self.temperature
        out = self._map(z, lambda s, q: torch.softmax(s / t, -1))
        return out.reshape(tuple(z.shape[:-1]) + (self.m,))

    def partial(self, z):
        t, n = self.temperature, self.n

        def fn(scores, q):
            pi = torch.softmax(scores / t, -1)
            return (q @ pi.unsqueeze(-1)).squeeze(-1)  # Σ_j π_j q_j, (B, 2n)

        g = self._map(z, fn)
        g = torch.complex(g[..., :n], -g[..., n:])  # conj(Σ_j π_j P_j (z − m_j))
        return g.reshape(tuple(z.shape[:-1]) + (n,))

    def levi(self, z):
        t, n = self.temperature, self.n

        def fn(scores, q):
            pi = torch.softmax(scores / t, -1)
            return pi, weighted_covariance(pi, q)

        pi, S = self._map(z, fn)  # (B, m), real covariance of the q_j (B, 2n, 2n)
        P_T = self.precisions.to(device=z.device, dtype=z.dtype).transpose(-1, -2)
        # Σ_j π_j P_jᵀ as one real GEMM over (Re, Im) of the flattened P_jᵀ.
        P_T = torch.cat([P_T.real.reshape(-1, n * n), P_T.imag.reshape(-1, n * n)], -1)
        ml = pi @ P_T
        mean_levi = torch.complex(ml[..., : n * n], ml[..., n * n :]).reshape(-1, n, n)
        # The gradients are g_j = conj(P_j (z − m_j)): the conjugate of the q_j's covariance.
        G = levi_from_covariance(S, mean_levi, t, conjugate=True)
        return G.reshape(tuple(z.shape[:-1]) + (n, n))

    def __repr__(self):
        return f"GaussianMixturePotential(m={self.m}, n={self.n}, temperature={self.temperature})"
