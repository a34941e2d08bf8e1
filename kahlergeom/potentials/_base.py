"""The extension point: a real potential K on a domain of C^n."""

from __future__ import annotations

import abc

import torch
from torch.func import jvp

from kahlergeom._checks import check_positive_int
from kahlergeom._linalg import from_real
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
    * ``christoffel_contract(z, u, v)`` and ``christoffel_contract_derivative(z, dz, u, v)``
      (optional, together): closed-form $\sum_{ab}\Gamma^l_{ab}u_a v_b$ and its derivative
      along a real direction of z. Geodesics integrate with them instead of differentiating the
      metric (no autodiff per step). The defaults differentiate `levi` with ``torch.func``.

    Potentials do not validate their input (they run inside ``torch.func`` transforms);
    `KahlerManifold` and `kahlergeom.ddbar` do.
    """

    #: Human-readable description of the domain, used in error messages.
    domain_description: str = "all of C^n"
    #: ``__call__`` maps a batch of any shape ``(..., n) → (...)`` point by point, so the
    #: Wirtinger engine (`kahlergeom.ddbar`, the default `levi` and `partial`) evaluates it on
    #: whole blocks of points with ``torch.autograd``, and geodesics take Christoffel
    #: contractions from reverse-mode passes over a batch (`AutogradChristoffel`). Set it to
    #: ``False`` in a subclass whose values mix points or pair its input with a fixed batch
    #: (e.g. one base point per batch entry): every point is then differentiated on its own,
    #: under ``torch.func.vmap``.
    batched_call: bool = True
    #: How the batched Wirtinger engine takes the 2n real Hessian rows on the CPU:
    #: ``"batched"`` (one ``is_grads_batched`` reverse pass), ``"loop"`` (2n reverse passes,
    #: the cost of the column loop), or ``None`` (the default: batched only on calls of at most
    #: a few thousand point-directions, the loop elsewhere). Declare ``"batched"`` for a light,
    #: elementwise potential: the library's closed forms do (measured 1.3–2.6× faster than the
    #: loop, benchmarks/bench_ddbar.py). Through heavy backward graphs (a decoder, a Gaussian
    #: mixture's matrix products, a Cholesky) the batched pass lost on large blocks.
    ddbar_mode: str | None = None

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

    def christoffel_contract(self, z: torch.Tensor, u: torch.Tensor, v: torch.Tensor):
        r"""$\Gamma(u, v)_l = \sum_{ab}\Gamma^l_{ab}(z)\,u_a v_b$, ``(..., n)`` (broadcast).

        $\Gamma^l_{ab} = \sum_m g^{l\bar m}\partial_a g_{b\bar m}$ (docs/conventions.md); the
        geodesic equation is $\ddot z = -\Gamma(\dot z, \dot z)$. Default: one ``torch.func``
        jvp of `levi` (the holomorphic derivative along u), then a linear solve.
        """
        z, u, v = torch.broadcast_tensors(z, u, v)
        G2, dG2 = jvp(self.levi, (torch.stack([z, z]),), (torch.stack([u, 1j * u]),))
        D = 0.5 * (dG2[0] - 1j * dG2[1])  # D[..., b, m] = Σ_a u_a ∂_a g_{b m̄}
        rhs = torch.einsum("...bm,...b->...m", D, v)
        return torch.linalg.solve(G2[0].transpose(-1, -2), rhs.unsqueeze(-1)).squeeze(-1)

    def christoffel_contract_derivative(
        self, z: torch.Tensor, dz: torch.Tensor, u: torch.Tensor, v: torch.Tensor
    ) -> torch.Tensor:
        r"""$\frac{d}{d\epsilon}\Gamma_{z + \epsilon\,dz}(u, v)$ at 0, ``(..., n)``: the derivative
        of `christoffel_contract` along the real direction ``dz`` of z (u, v fixed).

        Default: a ``torch.func`` jvp of `christoffel_contract`.
        """
        z, dz, u, v = torch.broadcast_tensors(z, dz, u, v)
        return jvp(lambda x: self.christoffel_contract(x, u, v), (z,), (dz,))[1]

    def christoffel_spray_linearised(
        self, z: torch.Tensor, u: torch.Tensor, dz: torch.Tensor, du: torch.Tensor
    ) -> torch.Tensor:
        r"""Linearisation of the spray $(z, u) \mapsto \Gamma_z(u, u)$ along ``(dz, du)``:
        $\partial_{dz}\Gamma_z(u, u) + 2\,\Gamma_z(u, du)$, ``(..., n)`` (broadcast).

        The variational (Jacobi) equations of geodesics integrate it. Default: from
        `christoffel_contract_derivative` and `christoffel_contract`; a closed form may fuse them.
        """
        return self.christoffel_contract_derivative(z, dz, u, u) + 2 * self.christoffel_contract(
            z, u, du
        )

    def squared_norm_real(self, u: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
        r"""$h_z(v, v) = \mathrm{Re}\, v^\top G(z)\,\bar v$ with z and v in real coordinates.

        ``u = (Re z, Im z)`` and ``r = (Re v, Im v)`` ``(..., 2n)`` (x first, broadcast) → real
        ``(...)``. The discrete curve energy of `kahlergeom.geodesics.EnergyMinimisation` is
        differentiated twice through it by reverse mode, where real arithmetic costs a fraction
        of complex. Default: from `levi`; the radial closed forms override it.
        """
        v = from_real(r)
        return torch.einsum("...a,...ab,...b->...", v, self.levi(from_real(u)), v.conj()).real

    @property
    def has_closed_form_levi(self) -> bool:
        """True when the class overrides `levi` with a closed form."""
        return type(self).levi is not KahlerPotential.levi

    @property
    def has_closed_form_christoffel(self) -> bool:
        """True when the class overrides `christoffel_contract` (and its derivative) with closed
        forms; geodesics then integrate without automatic differentiation."""
        cls = type(self)
        return (
            cls.christoffel_contract is not KahlerPotential.christoffel_contract
            and cls.christoffel_contract_derivative
            is not KahlerPotential.christoffel_contract_derivative
        )

    def __repr__(self) -> str:
        return f"{type(self).__name__}(n={self.n})"
