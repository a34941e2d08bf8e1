"""Hermitian and Kähler manifolds given by a metric field on a chart of C^n."""

from __future__ import annotations

import abc

import torch

from kahlergeom._checks import check_in_domain, check_points, check_same_shape
from kahlergeom.potentials._base import KahlerPotential
from kahlergeom.wirtinger._ddbar import _levi, closedness_residual


def hermitian_logdet(G: torch.Tensor) -> torch.Tensor:
    """log det of Hermitian positive definite matrices via Cholesky (autodiff-stable)."""
    L = torch.linalg.cholesky(G)
    return 2 * torch.log(torch.diagonal(L, dim1=-2, dim2=-1).real).sum(-1)


def real_metric(G: torch.Tensor) -> torch.Tensor:
    """The real 2n×2n metric G_R = [[Re G, Im G], [−Im G, Re G]] of a Hermitian G.

    For u = (Re v, Im v): uᵀ G_R u = h(v, v) = vᵀ G conj(v), and det G_R = (det G)².
    """
    top = torch.cat([G.real, G.imag], -1)
    bottom = torch.cat([-G.imag, G.real], -1)
    return torch.cat([top, bottom], -2)


def psh_tolerance(G: torch.Tensor, rtol: float | None = None) -> torch.Tensor:
    """Absolute eigenvalue tolerance for PSD tests: rtol · max(1, ‖G‖) per matrix.

    Default ``rtol`` is 100 · n · eps of the dtype (≈ 2e-13 n in float64, 1e-5 n in float32).
    """
    n = G.shape[-1]
    if rtol is None:
        rtol = 100 * n * torch.finfo(G.real.dtype).eps
    scale = torch.linalg.matrix_norm(G, ord=2).clamp_min(1.0)
    return rtol * scale


class HermitianManifold(abc.ABC):
    r"""A chart of C^n with a Hermitian metric field $G(z)[a, b] = g_{a\bar b}$.

    Subclasses implement ``_metric(z)`` (unchecked, traceable by ``torch.func``) and may
    override ``_contains``. Everything else (inner products, volume, PSD and closedness checks)
    follows from it. Conventions: $h(u, v) = \sum_{ab} g_{a\bar b} u_a \bar v_b = u^\top G \bar v$;
    lengths $|v|^2 = h(v, v)$; volume density $\det G$ (no square root) on $\mathbb R^{2n}$.
    """

    #: True when the metric is known to be Kähler (e.g. it is ∂∂̄ of one potential).
    is_kahler: bool = False
    domain_description: str = "all of C^n"

    def __init__(self, n: int, *, chunk_size: int | None = None):
        self.n = n
        self.chunk_size = chunk_size

    # -- to implement -------------------------------------------------------------------
    @abc.abstractmethod
    def _metric(self, z: torch.Tensor) -> torch.Tensor:
        """Unchecked metric field, (..., n) → (..., n, n); safe under torch.func transforms."""

    def contains(self, z: torch.Tensor) -> torch.Tensor:
        """Whether each point lies in the chart's domain, bool ``(...)``."""
        return torch.ones(z.shape[:-1], dtype=torch.bool, device=z.device)

    # -- checks -----------------------------------------------------------------------------
    def check_point(self, z, name: str = "z") -> torch.Tensor:
        """Validate points ``(..., n)`` (complex, finite, in the domain) or raise ValueError."""
        check_points(z, self.n, name)
        check_in_domain(self, z, name)
        return z

    # -- metric ---------------------------------------------------------------------------
    def metric(self, z: torch.Tensor) -> torch.Tensor:
        r"""Metric matrix $G[\ldots, a, b] = g_{a\bar b}(z)$: ``(..., n)`` → ``(..., n, n)`` complex."""
        return self._metric(self.check_point(z))

    def real_metric(self, z: torch.Tensor) -> torch.Tensor:
        """Real metric G_R in coordinates u = (x, y): ``(..., n)`` → ``(..., 2n, 2n)``."""
        return real_metric(self.metric(z))

    def inner(self, z: torch.Tensor, u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        r"""Hermitian inner product $h(u, v) = \sum_{ab} g_{a\bar b}\, u_a \bar v_b$, complex ``(...)``.

        Linear in ``u``, antilinear in ``v``; $\mathrm{Re}\,h$ is the Riemannian inner product of
        the real vectors (Re, Im).
        """
        G = self.metric(z)
        check_same_shape(z, u, "u")
        check_same_shape(z, v, "v")
        return torch.einsum("...a,...ab,...b->...", u, G, v.conj())

    def norm(self, z: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        r"""Length $\sqrt{h(v, v)}$ of tangent vectors ``v`` at ``z``, real ``(...)``."""
        return self.inner(z, v, v).real.clamp_min(0).sqrt()

    # -- volume ---------------------------------------------------------------------------
    def log_volume_density(self, z: torch.Tensor) -> torch.Tensor:
        r"""$\log\det G(z)$, real ``(...)``, via Cholesky.

        Where G is not positive definite, falls back to $\log\det G$ from ``slogdet`` when the
        determinant is positive, and returns NaN where it is ≤ 0 (no volume density there).
        """
        G = self.metric(z)
        L, info = torch.linalg.cholesky_ex(G)
        chol = 2 * torch.log(torch.diagonal(L, dim1=-2, dim2=-1).real).sum(-1)
        if bool((info == 0).all()):
            return chol
        sign, logabs = torch.linalg.slogdet(G)
        fallback = torch.where(sign.real > 0, logabs, torch.full_like(logabs, float("nan")))
        return torch.where(info == 0, chol, fallback)

    def volume_density(self, z: torch.Tensor) -> torch.Tensor:
        r"""Riemannian volume density $\det G(z)$ w.r.t. Lebesgue measure on $\mathbb R^{2n}$.

        Real ``(...)``. (The real metric has $\det G_R = (\det G)^2$, so $\sqrt{\det G_R} = \det G$.)
        Computed as ``exp(log_volume_density)`` where G is positive definite, else as the real
        determinant (which may be ≤ 0 for an indefinite form).
        """
        G = self.metric(z)
        L, info = torch.linalg.cholesky_ex(G)
        chol = torch.exp(2 * torch.log(torch.diagonal(L, dim1=-2, dim2=-1).real).sum(-1))
        if bool((info == 0).all()):
            return chol
        return torch.where(info == 0, chol, torch.linalg.det(G).real)

    # -- checks of the metric -------------------------------------------------------------
    def min_eigenvalue(self, z: torch.Tensor) -> torch.Tensor:
        """Smallest eigenvalue of G(z), real ``(...)``."""
        return torch.linalg.eigvalsh(self.metric(z))[..., 0]

    def is_psh(
        self, z: torch.Tensor, *, strict: bool = False, rtol: float | None = None
    ) -> torch.Tensor:
        r"""Whether G(z) is positive semidefinite (``strict``: definite), bool ``(...)``.

        Tests the smallest eigenvalue λ_min against a dtype-aware tolerance
        ``tol = rtol · max(1, ‖G‖₂)`` (default ``rtol = 100 n eps``): PSD means λ_min ≥ −tol,
        strictly PSH means λ_min > tol. For a potential's Levi matrix this is the
        (strict) plurisubharmonicity of the potential at z.
        """
        G = self.metric(z)
        lam = torch.linalg.eigvalsh(G)[..., 0]
        tol = psh_tolerance(G, rtol)
        return lam > tol if strict else lam >= -tol

    def closedness_residual(self, z: torch.Tensor, *, relative: bool = True) -> torch.Tensor:
        r"""Kähler-closedness residual $\max_{abc}|\partial_c g_{a\bar b} - \partial_a g_{c\bar b}|$.

        Real ``(...)``; relative to $\max|\partial g|$ by default. Zero (to rounding) for
        a Kähler metric; measures how far a pointwise metric field is from one.
        """
        self.check_point(z)
        return closedness_residual(
            self._metric, z, relative=relative, chunk_size=self.chunk_size
        )

    def __repr__(self) -> str:
        return f"{type(self).__name__}(n={self.n})"


class KahlerManifold(HermitianManifold):
    r"""The Kähler manifold of a potential: $g_{a\bar b} = \partial_a\bar\partial_b K$.

    Uses the potential's closed-form ``levi`` when it has one, else differentiates the
    potential with ``torch.func`` (forward-over-reverse, vmapped over points, optionally
    chunked by ``chunk_size``).

    Example:
        >>> import torch, kahlergeom as kg
        >>> M = kg.KahlerManifold(kg.potentials.FubiniStudy(2))
        >>> M.volume_density(torch.zeros(2, dtype=torch.complex128))
        tensor(1., dtype=torch.float64)
    """

    is_kahler = True

    def __init__(self, potential: KahlerPotential, *, chunk_size: int | None = None):
        if not isinstance(potential, KahlerPotential):
            raise ValueError(
                "potential must be a kahlergeom.potentials.KahlerPotential; got "
                f"{type(potential).__name__}. Subclass KahlerPotential and implement __call__."
            )
        super().__init__(potential.n, chunk_size=chunk_size)
        self.potential = potential

    @property
    def domain_description(self) -> str:  # type: ignore[override]
        return self.potential.domain_description

    def contains(self, z):
        return self.potential.contains(z)

    def _metric(self, z):
        if self.potential.has_closed_form_levi:
            return self.potential.levi(z)
        return _levi(self.potential, z, self.chunk_size)

    def __repr__(self):
        return f"KahlerManifold({self.potential!r})"
