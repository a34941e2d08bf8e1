"""Potentials built from other potentials: products and log-sum-exp mixtures."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from kahlergeom._checks import check_temperature
from kahlergeom.potentials._base import KahlerPotential


def _as_potential_list(potentials, name: str) -> list[KahlerPotential]:
    if isinstance(potentials, KahlerPotential) or not isinstance(potentials, Sequence):
        raise ValueError(f"{name} must be a non-empty list of KahlerPotential; got {potentials!r}.")
    out = list(potentials)
    if not out:
        raise ValueError(f"{name} must be a non-empty list of KahlerPotential; got an empty list.")
    for i, p in enumerate(out):
        if not isinstance(p, KahlerPotential):
            raise ValueError(
                f"{name}[{i}] must be a KahlerPotential; got {type(p).__name__}. Wrap a function "
                "by subclassing KahlerPotential and implementing __call__."
            )
    return out


def _shared_mode(parts) -> str | None:
    """``"batched"`` if every part declares it (`KahlerPotential.ddbar_mode`), else None."""
    return "batched" if all(p.ddbar_mode == "batched" for p in parts) else None


class Product(KahlerPotential):
    r"""Product manifold: $K(z^{(1)}, \dots, z^{(r)}) = \sum_i K_i(z^{(i)})$.

    The point is the concatenation of the factors' points (n = Σ n_i); the metric is block
    diagonal and distances combine as the square root of the sum of squares.
    """

    def __init__(self, potentials: Sequence[KahlerPotential]):
        self.factors = _as_potential_list(potentials, "potentials")
        self.sizes = [p.n for p in self.factors]
        super().__init__(sum(self.sizes))
        self.batched_call = all(p.batched_call for p in self.factors)
        self.ddbar_mode = _shared_mode(self.factors)

    @property
    def hadamard(self) -> bool:
        """Every factor has curvature ≤ 0 on a simply connected domain."""
        return all(getattr(p, "hadamard", False) for p in self.factors)

    @property
    def domain_description(self) -> str:  # type: ignore[override]
        return " × ".join(f"({p.domain_description})" for p in self.factors)

    def _split(self, z):
        return torch.split(z, self.sizes, dim=-1)

    def __call__(self, z):
        return sum(p(zi) for p, zi in zip(self.factors, self._split(z), strict=True))

    def contains(self, z):
        inside = [p.contains(zi) for p, zi in zip(self.factors, self._split(z), strict=True)]
        return torch.stack(inside, -1).all(-1)

    def levi(self, z):
        blocks = [p.levi(zi) for p, zi in zip(self.factors, self._split(z), strict=True)]
        return _block_diag(blocks, self.sizes)

    def partial(self, z):
        parts = [p.partial(zi) for p, zi in zip(self.factors, self._split(z), strict=True)]
        return torch.cat(parts, -1)

    def _blockwise(self, method: str, *tensors):
        """Each factor's ``method`` on its own block of the (broadcast) tensors, concatenated:
        the metric is block diagonal, so the Christoffel contractions split by factor."""
        tensors = torch.broadcast_tensors(*tensors)
        parts = zip(self.factors, *(self._split(t) for t in tensors), strict=True)
        return torch.cat([getattr(p, method)(*args) for p, *args in parts], -1)

    def squared_norm_real(self, u, r):
        """Sum of the factors' squared norms (real coordinates split into each factor's
        ``(x_i, y_i)``)."""
        u, r = torch.broadcast_tensors(u, r)
        n = self.n
        out = 0
        for p, xu, yu, xr, yr in zip(
            self.factors,
            self._split(u[..., :n]),
            self._split(u[..., n:]),
            self._split(r[..., :n]),
            self._split(r[..., n:]),
            strict=True,
        ):
            out = out + p.squared_norm_real(torch.cat([xu, yu], -1), torch.cat([xr, yr], -1))
        return out

    def christoffel_contract(self, z, u, v):
        """Blockwise: each factor's own contraction (the metric is block diagonal)."""
        return self._blockwise("christoffel_contract", z, u, v)

    def christoffel_contract_derivative(self, z, dz, u, v):
        return self._blockwise("christoffel_contract_derivative", z, dz, u, v)

    def christoffel_spray_linearised(self, z, u, dz, du):
        return self._blockwise("christoffel_spray_linearised", z, u, dz, du)

    @property
    def has_closed_form_christoffel(self) -> bool:
        """Every factor has closed-form Christoffel contractions."""
        return all(p.has_closed_form_christoffel for p in self.factors)

    def __repr__(self):
        return f"Product([{', '.join(map(repr, self.factors))}])"


def _block_diag(blocks: list[torch.Tensor], sizes: list[int]) -> torch.Tensor:
    """Batched block-diagonal matrix, built without in-place writes (safe under vmap)."""
    rows = []
    for i, block in enumerate(blocks):
        batch = block.shape[:-2]
        parts = [
            block if j == i else block.new_zeros(*batch, sizes[i], size)
            for j, size in enumerate(sizes)
        ]
        rows.append(torch.cat(parts, -1))
    return torch.cat(rows, -2)


def lse_levi(
    weights: torch.Tensor, grads: torch.Tensor, mean_levi: torch.Tensor, temperature: float
) -> torch.Tensor:
    r"""Levi matrix of $\Psi = \tau \log \sum_j e^{(\psi_j + b_j)/\tau}$ (law of total covariance).

    $$\partial\bar\partial\Psi = \sum_j \pi_j\, \partial\bar\partial\psi_j
      + \tfrac1\tau\Big[\sum_j \pi_j\, g_j g_j^{H} - \bar g\, \bar g^{H}\Big],\qquad
      \pi = \mathrm{softmax}((\psi + b)/\tau),\ g_j = \partial\psi_j,\
      \bar g = \textstyle\sum_j \pi_j g_j,$$

    where the outer product entry ``[a, b]`` is $\partial_a\psi\,\overline{\partial_b\psi}$.

    Shapes: ``weights`` π real ``(..., m)``, ``grads`` complex ``(..., m, n)``, ``mean_levi``
    $\sum_j \pi_j \partial\bar\partial\psi_j$ complex ``(..., n, n)`` → ``(..., n, n)``.
    """
    if not grads.is_complex():
        pi = weights.to(grads.dtype)
        weighted = grads * pi.unsqueeze(-1)
        second = weighted.transpose(-1, -2) @ grads
        gbar = weighted.sum(-2)
        cov = second - gbar.unsqueeze(-1) * gbar.unsqueeze(-2)
        G = mean_levi + cov / temperature
        return 0.5 * (G + G.mH)
    # Real arithmetic on the stacked parts [Re g; Im g] (real GEMMs are much faster than
    # complex ones on CPU), components along the last axis.
    parts = torch.cat([grads.real.transpose(-1, -2), grads.imag.transpose(-1, -2)], -2)
    return stacked_lse_levi(weights, parts, mean_levi, temperature, conjugate=False)


def stacked_lse_levi(
    weights: torch.Tensor,
    parts: torch.Tensor,
    mean_levi: torch.Tensor,
    temperature: float,
    *,
    conjugate: bool,
) -> torch.Tensor:
    r"""`lse_levi` with the gradients given by their real parts: ``parts`` = [Re h; Im h], real
    ``(..., 2n, m)`` (components along the last axis), and $g_j = h_j$ (``conjugate=False``) or
    $g_j = \bar h_j$ (``True``).

    With $S = \sum_j \pi_j (q_j - \hat q)(q_j - \hat q)^\top$ the real covariance of
    $q_j = (\mathrm{Re}\,h_j, \mathrm{Im}\,h_j)$ ($\hat q = \sum_j \pi_j q_j$), the complex
    covariance of the $h_j$ is $(S_{rr} + S_{ii}) + i(S_{ir} - S_{ri})$, and its conjugate is that
    of the $\bar h_j$. One real batched GEMM, no complex products.
    """
    S = weighted_covariance(weights, parts)
    return levi_from_covariance(S, mean_levi, temperature, conjugate=conjugate)


def weighted_covariance(weights: torch.Tensor, parts: torch.Tensor) -> torch.Tensor:
    r"""$\sum_j \pi_j (q_j - \hat q)(q_j - \hat q)^\top$ for ``parts`` real ``(..., k, m)``
    (column j is $q_j$) and ``weights`` π real ``(..., m)`` summing to 1: ``(..., k, k)``.

    Centred before the Gram GEMM: the uncentred second moment minus $\hat q \hat q^\top$ loses
    the covariance to cancellation when one component dominates; this does not.
    """
    pi = weights.to(parts.dtype).unsqueeze(-2)  # (..., 1, m)
    qbar = parts @ pi.transpose(-1, -2)  # Σ_j π_j q_j, (..., k, 1)
    centred = parts - qbar
    return (centred * pi) @ centred.transpose(-1, -2)


def levi_from_covariance(
    S: torch.Tensor, mean_levi: torch.Tensor, temperature: float, *, conjugate: bool
) -> torch.Tensor:
    """``mean_levi`` + (complex covariance from the real one ``S`` (..., 2n, 2n)) / τ, made
    Hermitian; see `stacked_lse_levi`."""
    n = S.shape[-1] // 2
    rr, ri = S[..., :n, :n], S[..., :n, n:]
    ir, ii = S[..., n:, :n], S[..., n:, n:]
    G_re = (rr + ii) / temperature
    G_im = ((ri - ir) if conjugate else (ir - ri)) / temperature
    if mean_levi.is_complex():
        G_re, G_im = mean_levi.real + G_re, mean_levi.imag + G_im
    else:
        G_re = mean_levi + G_re
    return torch.complex(
        0.5 * (G_re + G_re.transpose(-1, -2)), 0.5 * (G_im - G_im.transpose(-1, -2))
    )


class LogSumExp(KahlerPotential):
    r"""Log-sum-exp of PSH potentials: $\Psi(z) = \tau \log \sum_j \exp((\psi_j(z) + b_j)/\tau)$.

    PSH whenever every component is. As $\tau \to 0$, $\Psi \to \max_j (\psi_j + b_j)$.
    The Levi matrix is the closed form of `lse_levi` (expected component Levi matrix plus the
    covariance of the component gradients), from the components' own `levi` and `partial`.

    Args:
        components: list of `KahlerPotential` with the same ``n``.
        biases: ``b_j``, shape ``(m,)`` (default zeros).
        temperature: ``τ > 0``.
    """

    def __init__(
        self,
        components: Sequence[KahlerPotential],
        biases: torch.Tensor | Sequence[float] | None = None,
        temperature: float = 1.0,
    ):
        self.components = _as_potential_list(components, "components")
        ns = {p.n for p in self.components}
        if len(ns) != 1:
            raise ValueError(
                f"components must all have the same n; got n = {[p.n for p in self.components]}."
            )
        m = len(self.components)
        if biases is None:
            biases = torch.zeros(m, dtype=torch.float64)
        biases = torch.as_tensor(biases)
        if biases.shape != (m,) or biases.is_complex() or not bool(torch.isfinite(biases).all()):
            raise ValueError(
                f"biases must be {m} finite real numbers (one per component); got {biases!r}."
            )
        self.biases = biases
        self.temperature = check_temperature(temperature)
        super().__init__(ns.pop())
        self.batched_call = all(p.batched_call for p in self.components)
        self.ddbar_mode = _shared_mode(self.components)

    def _scores(self, z):
        values = torch.stack([p(z) for p in self.components], -1)
        return values + self.biases.to(device=values.device, dtype=values.dtype)

    def __call__(self, z):
        return self.temperature * torch.logsumexp(self._scores(z) / self.temperature, -1)

    def contains(self, z):
        return torch.stack([p.contains(z) for p in self.components], -1).all(-1)

    def weights(self, z):
        """Softmax weights π_j(z), real ``(..., m)``."""
        return torch.softmax(self._scores(z) / self.temperature, -1)

    def partial(self, z):
        grads = torch.stack([p.partial(z) for p in self.components], -2)
        return torch.einsum("...j,...ja->...a", self.weights(z).to(grads.dtype), grads)

    def levi(self, z):
        grads = torch.stack([p.partial(z) for p in self.components], -2)
        levis = torch.stack([p.levi(z) for p in self.components], -3)
        pi = self.weights(z)
        mean_levi = torch.einsum("...j,...jab->...ab", pi.to(levis.dtype), levis)
        return lse_levi(pi, grads, mean_levi, self.temperature)

    def __repr__(self):
        return f"LogSumExp(m={len(self.components)}, n={self.n}, temperature={self.temperature})"


class PotentialSum(KahlerPotential):
    r"""$K = \sum_i K_i$ of potentials on the same C^n (PSH when every term is).

    Its Levi matrix and ∂K are the sums of the terms' own ``levi`` / ``partial``.
    """

    def __init__(self, terms):
        terms = list(terms)
        if not terms or not all(isinstance(t, KahlerPotential) for t in terms):
            raise ValueError(f"terms must be a non-empty list of KahlerPotential; got {terms!r}.")
        ns = {t.n for t in terms}
        if len(ns) != 1:
            raise ValueError(f"terms must all have the same n; got {[t.n for t in terms]}.")
        self.terms = terms
        super().__init__(ns.pop())
        self.batched_call = all(t.batched_call for t in terms)
        self.ddbar_mode = _shared_mode(terms)

    def __call__(self, z):
        return sum(t(z) for t in self.terms)

    def contains(self, z):
        return torch.stack([t.contains(z) for t in self.terms], -1).all(-1)

    def levi(self, z):
        return sum(t.levi(z) for t in self.terms)

    def partial(self, z):
        return sum(t.partial(z) for t in self.terms)

    def __repr__(self):
        return f"PotentialSum([{', '.join(map(repr, self.terms))}])"
