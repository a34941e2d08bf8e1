"""Potentials built from other potentials: products and log-sum-exp mixtures."""

from __future__ import annotations

from collections.abc import Sequence

import torch

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


class Product(KahlerPotential):
    r"""Product manifold: $K(z^{(1)}, \dots, z^{(r)}) = \sum_i K_i(z^{(i)})$.

    The point is the concatenation of the factors' points (n = Σ n_i); the metric is block
    diagonal and distances combine as the square root of the sum of squares.
    """

    def __init__(self, potentials: Sequence[KahlerPotential]):
        self.factors = _as_potential_list(potentials, "potentials")
        self.sizes = [p.n for p in self.factors]
        super().__init__(sum(self.sizes))

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
    pi = weights.to(grads.dtype)
    weighted = grads * pi.unsqueeze(-1)  # π_j g_j, (..., m, n)
    # Σ_j π_j g_j g_jᴴ as one batched GEMM (no (..., m, n, n) intermediate).
    second = weighted.transpose(-1, -2) @ grads.conj()
    gbar = weighted.sum(-2)
    cov = second - gbar.unsqueeze(-1) * gbar.conj().unsqueeze(-2)
    G = mean_levi + cov / temperature
    return 0.5 * (G + G.mH)


def check_temperature(temperature) -> float:
    try:
        t = float(temperature)
    except (TypeError, ValueError):
        raise ValueError(f"temperature must be a finite number > 0; got {temperature!r}.") from None
    if not t > 0 or t != t or t == float("inf"):
        raise ValueError(f"temperature must be a finite number > 0; got {temperature!r}.")
    return t


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
