"""The extension point: a real potential K on a domain of C^n."""

from __future__ import annotations

import abc

import torch

from kahlergeom._checks import check_positive_int
from kahlergeom.wirtinger._ddbar import _levi, _partial


def sq_norm(z: torch.Tensor) -> torch.Tensor:
    """|z|² = Σ (Re z)² + (Im z)² over the last axis, smooth at z = 0 under autodiff.

    (``z.abs()**2`` has no derivative at 0 and autodiff silently returns a wrong Hessian there.)
    """
    return torch.view_as_real(z).square().sum((-1, -2))


class KahlerPotential(abc.ABC):
    r"""A real function K on a domain of C^n whose Levi matrix is a Kähler metric.

    Subclass it, call ``super().__init__(n)``, and implement ``__call__``:

    * ``__call__(z)``: ``z`` complex ``(..., n)`` → real ``(...)``. It must broadcast over
      leading dimensions and be traceable by ``torch.func`` (no data-dependent Python branches,
      no ``.item()``); write $|w|^2$ as ``w.real**2 + w.imag**2``, not ``w.abs()**2``.
    * ``contains(z)`` (optional): bool ``(...)``, where K is defined (default: everywhere).
      Public entry points raise ``ValueError`` for points outside it.
    * ``levi(z)`` (optional): closed-form Levi matrix $G[a,b]=\partial_a\bar\partial_b K$,
      ``(..., n, n)``. The default differentiates ``__call__`` with ``torch.func``.
    * ``partial(z)`` (optional): closed-form $\partial_a K$, ``(..., n)``.

    Potentials do not validate their input (they run inside ``torch.func`` transforms);
    `KahlerManifold` and `kahlergeom.ddbar` do.
    """

    #: Human-readable description of the domain, used in error messages.
    domain_description: str = "all of C^n"

    def __init__(self, n: int):
        self.n = check_positive_int(n, "n")

    @abc.abstractmethod
    def __call__(self, z: torch.Tensor) -> torch.Tensor:
        """The potential K(z): complex ``(..., n)`` → real ``(...)``."""

    def contains(self, z: torch.Tensor) -> torch.Tensor:
        """Whether each point lies in the domain: complex ``(..., n)`` → bool ``(...)``."""
        return torch.ones(z.shape[:-1], dtype=torch.bool, device=z.device)

    def levi(self, z: torch.Tensor) -> torch.Tensor:
        r"""Levi matrix $G[a,b] = \partial_a\bar\partial_b K$: ``(..., n)`` → ``(..., n, n)``.

        Default: automatic differentiation of ``__call__`` (unchecked; safe inside transforms).
        """
        return _levi(self, z)

    def partial(self, z: torch.Tensor) -> torch.Tensor:
        r"""Holomorphic gradient $\partial_a K$, ``(..., n)`` → ``(..., n)`` (default: autodiff)."""
        return _partial(self, z)

    @property
    def has_closed_form_levi(self) -> bool:
        """True when the class overrides `levi` with a closed form."""
        return type(self).levi is not KahlerPotential.levi

    def __repr__(self) -> str:
        return f"{type(self).__name__}(n={self.n})"
