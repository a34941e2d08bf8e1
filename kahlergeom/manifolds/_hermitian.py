"""Hermitian and Kähler manifolds given by a metric field on a chart of C^n."""

from __future__ import annotations

import abc

import torch

from kahlergeom import curvature as _curv
from kahlergeom import geodesics as _geo
from kahlergeom._checks import (
    check_chunk_size,
    check_in_domain,
    check_independent,
    check_nonzero,
    check_points,
    check_positive_int,
    check_same_shape,
    require_kahler,
)
from kahlergeom._linalg import hermitian_logdet_ex, psd_test, real_metric
from kahlergeom.geodesics import _api as _geo_api
from kahlergeom.potentials._autograd_christoffel import AutogradChristoffel, reverse_mode_usable
from kahlergeom.potentials._base import KahlerPotential
from kahlergeom.wirtinger._ddbar import _levi, closedness_residual


def _hermitian_form(G: torch.Tensor, u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """h(u, v) = uᵀ G v̄, broadcast over the batch, complex ``(...)``."""
    return torch.einsum("...a,...ab,...b->...", u, G, v.conj())


class HermitianManifold(abc.ABC):
    r"""A chart of C^n with a Hermitian metric field $G(z)[a, b] = g_{a\bar b}$.

    Subclasses implement ``metric_field(z)`` (unchecked, traceable by ``torch.func``) and may
    override ``_contains``. Everything else (inner products, volume, PSD and closedness checks)
    follows from it. Conventions: $h(u, v) = \sum_{ab} g_{a\bar b} u_a \bar v_b = u^\top G \bar v$;
    lengths $|v|^2 = h(v, v)$; volume density $\det G$ (no square root) on $\mathbb R^{2n}$.
    """

    #: True when the metric is known to be Kähler (e.g. it is ∂∂̄ of one potential).
    is_kahler: bool = False
    domain_description: str = "all of C^n"

    def __init__(self, n: int, *, chunk_size: int | None = None):
        self.n = check_positive_int(n, "n")
        self.chunk_size = check_chunk_size(chunk_size)

    # -- to implement -------------------------------------------------------------------
    @abc.abstractmethod
    def metric_field(self, z: torch.Tensor) -> torch.Tensor:
        """The metric field G(z), ``(..., n)`` → ``(..., n, n)``, **unchecked**.

        This is the one method a subclass implements, and the public hook that curvature,
        geodesics, sampling and volume differentiate: it must be traceable by ``torch.func``
        (no data-dependent Python control flow, no validation). Users calling it directly get no
        input checks; call :meth:`metric` for validated input.
        """

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
        r"""Metric matrix $G[\ldots, a, b] = g_{a\bar b}(z)$.

        Shapes: ``(..., n)`` → ``(..., n, n)`` complex.
        """
        return self.metric_field(self.check_point(z))

    def real_metric(self, z: torch.Tensor) -> torch.Tensor:
        """Real metric G_R in coordinates u = (x, y): ``(..., n)`` → ``(..., 2n, 2n)``."""
        return real_metric(self.metric(z))

    def inner(self, z: torch.Tensor, u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        r"""Hermitian inner product $h(u, v) = \sum_{ab} g_{a\bar b}\, u_a \bar v_b$, ``(...)``.

        Linear in ``u``, antilinear in ``v``; $\mathrm{Re}\,h$ is the Riemannian inner product of
        the real vectors (Re, Im).
        """
        self.check_point(z)
        check_same_shape(z, u, "u")
        check_same_shape(z, v, "v")
        return _hermitian_form(self.metric_field(z), u, v)

    def norm(self, z: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        r"""Length $\sqrt{h(v, v)}$ of tangent vectors ``v`` at ``z``, real ``(...)``."""
        check_same_shape(self.check_point(z), v, "v")
        return _hermitian_form(self.metric_field(z), v, v).real.clamp_min(0).sqrt()

    # -- volume ---------------------------------------------------------------------------
    def log_volume_density(self, z: torch.Tensor) -> torch.Tensor:
        r"""$\log\det G(z)$, real ``(...)``, via Cholesky.

        Where G is not positive definite, falls back to $\log\det G$ from ``slogdet`` when the
        determinant is positive, and returns NaN where it is ≤ 0 (no volume density there).
        """
        G = self.metric(z)
        chol, pd = hermitian_logdet_ex(G)
        if bool(pd.all()):
            return chol
        sign, logabs = torch.linalg.slogdet(G)
        fallback = torch.where(sign.real > 0, logabs, torch.full_like(logabs, float("nan")))
        return torch.where(pd, chol, fallback)

    def volume_density(self, z: torch.Tensor) -> torch.Tensor:
        r"""Riemannian volume density $\det G(z)$ w.r.t. Lebesgue measure on $\mathbb R^{2n}$.

        Real ``(...)``. (The real metric has $\det G_R = (\det G)^2$, so
        $\sqrt{\det G_R} = \det G$.)
        Computed as ``exp(log_volume_density)`` where G is positive definite, else as the real
        determinant (which may be ≤ 0 for an indefinite form).
        """
        G = self.metric(z)
        chol, pd = hermitian_logdet_ex(G)
        if bool(pd.all()):
            return chol.exp()
        return torch.where(pd, chol.exp(), torch.linalg.det(G).real)

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
        return psd_test(self.metric(z), strict=strict, rtol=rtol)[0]

    def closedness_residual(self, z: torch.Tensor, *, relative: bool = True) -> torch.Tensor:
        r"""Kähler-closedness residual $\max|\partial_c g_{a\bar b} - \partial_a g_{c\bar b}|$.

        Real ``(...)``; relative to $\max|\partial g|$ by default. Zero (to rounding) for
        a Kähler metric; measures how far a pointwise metric field is from one.
        """
        self.check_point(z)
        return closedness_residual(
            self.metric_field, z, relative=relative, chunk_size=self.chunk_size
        )

    # -- curvature (kahlergeom.curvature; Kähler formulas need is_kahler) -----------------
    def christoffel(self, z: torch.Tensor) -> torch.Tensor:
        r"""Kähler Christoffel symbols ``Γ[..., l, a, b]``, shape ``(..., n, n, n)``.

        $\Gamma^l_{ab} = \sum_m g^{l\bar m}\partial_a g_{b\bar m}$. Raises `NotKahlerError` (a
        ValueError) when ``is_kahler`` is False: the Kähler formulas do not give the
        Levi-Civita connection of a non-closed metric
        (`kahlergeom.curvature.levi_civita_christoffel` does, in real coordinates).
        """
        require_kahler(self, "christoffel")
        return _curv.kahler_christoffel(self.metric_field, self.check_point(z), self.chunk_size)

    def riemann(self, z: torch.Tensor) -> torch.Tensor:
        r"""Curvature tensor ``R[..., a, b, c, d]`` $= R_{a\bar b c\bar d}$, ``(..., n, n, n, n)``.

        $R_{a\bar b c\bar d} = -\partial_c\bar\partial_d g_{a\bar b} + \sum_{m,k} g^{m\bar k}
        (\partial_c g_{a\bar k})(\bar\partial_d g_{m\bar b})$ (see
        `kahlergeom.curvature.riemann`). Kähler only: raises `NotKahlerError` otherwise.
        """
        require_kahler(self, "riemann")
        return _curv.riemann(self.metric_field, self.check_point(z), self.chunk_size)

    def ricci(self, z: torch.Tensor) -> torch.Tensor:
        r"""Ricci form ``Ric[..., a, b]`` $= -\partial_a\bar\partial_b\log\det G$, ``(..., n, n)``.

        Kähler only (raises `NotKahlerError` otherwise); Fubini–Study gives $(n+1)G$.
        """
        require_kahler(self, "ricci")
        return _curv.ricci(self.metric_field, self.check_point(z), self.chunk_size)

    def scalar_curvature(self, z: torch.Tensor) -> torch.Tensor:
        r"""Scalar curvature $s = \mathrm{tr}(G^{-1}\mathrm{Ric})$, real ``(...)``.

        $s = \sum g^{a\bar b} \mathrm{Ric}_{a\bar b}$; $n(n+1)$ on Fubini–Study (the scalar
        curvature of $G_R$ is $4s$).
        Kähler only (raises `NotKahlerError` otherwise).
        """
        require_kahler(self, "scalar_curvature")
        return _curv.scalar_curvature(self.metric_field, self.check_point(z), self.chunk_size)

    def holomorphic_sectional_curvature(self, z: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        r"""$H(v) = R(v, \bar v, v, \bar v) / h(v, v)^2$ for nonzero ``v``, real ``(...)``.

        Contracted without the 4-index tensor. 2 on Fubini–Study, −2 on the ball; the real
        plane span{v, iv} has sectional curvature $2H(v)$. Kähler only (raises
        `NotKahlerError` otherwise; `riemannian_sectional_curvature` works for any metric).
        """
        require_kahler(self, "holomorphic_sectional_curvature")
        self.check_point(z)
        check_same_shape(z, v, "v")
        check_nonzero(v, "v")
        return _curv.holomorphic_sectional_curvature(self.metric_field, z, v, self.chunk_size)

    def bisectional_curvature(
        self, z: torch.Tensor, u: torch.Tensor, v: torch.Tensor
    ) -> torch.Tensor:
        r"""Bisectional curvature $B(u, v) = R(u, \bar u, v, \bar v) / (h(u, u)\, h(v, v))$.

        Real ``(...)``, for nonzero u, v. Contracted without the 4-index tensor; in [1, 2] on
        Fubini–Study. Kähler only (raises
        `NotKahlerError` otherwise).
        """
        require_kahler(self, "bisectional_curvature")
        self.check_point(z)
        check_same_shape(z, u, "u")
        check_same_shape(z, v, "v")
        check_nonzero(u, "u")
        check_nonzero(v, "v")
        return _curv.bisectional_curvature(self.metric_field, z, u, v, self.chunk_size)

    def riemannian_sectional_curvature(
        self, z: torch.Tensor, u: torch.Tensor, v: torch.Tensor
    ) -> torch.Tensor:
        r"""Sectional curvature of the real metric $G_R$ on the real plane span{u, v}.

        u and v are tangent vectors ``(..., n)`` read as real vectors (Re, Im); they must be
        linearly independent over R. Uses the Levi-Civita connection of $G_R$, so it holds for
        any Hermitian metric, Kähler or not. For a Kähler metric, $K(v, iv) = 2H(v)$.
        """
        self.check_point(z)
        check_same_shape(z, u, "u")
        check_same_shape(z, v, "v")
        check_independent(u, v, self.metric_field(z))
        return _curv.riemannian_sectional_curvature(self.metric_field, z, u, v, self.chunk_size)

    # -- geodesics (kahlergeom.geodesics) -------------------------------------------------------
    @property
    def connection(self) -> str:
        """Connection used for geodesics: ``"kahler"`` if ``is_kahler``, else ``"levi-civita"``."""
        return "kahler" if self.is_kahler else "levi-civita"

    #: True when the metric is known to have non-positive sectional curvature on a simply
    #: connected domain (Cartan–Hadamard): geodesics are unique and every one is minimising,
    #: so certified lengths are distances (``LogResult.certificate == "global"``). Kähler
    #: manifolds take it from their potential's ``hadamard`` attribute.
    @property
    def hadamard(self) -> bool:
        return bool(getattr(getattr(self, "potential", None), "hadamard", False))

    def exp(self, z: torch.Tensor, v: torch.Tensor, *, integrator=None) -> torch.Tensor:
        r"""Exponential map $\exp_z(v)$: the geodesic from z with velocity v at t = 1.

        ``(..., n)`` points and tangent vectors (broadcast) → ``(..., n)``. Integration of the
        geodesic equation of `connection` by ``integrator`` (default adaptive
        `kahlergeom.geodesics.Dopri5`). Where a trajectory leaves the domain, its step
        underflows, its speed is not conserved (edge of the domain or of the floating-point
        range) or it reaches a point where the metric field is not finite, the output is NaN
        and a `GeodesicWarning` is emitted
        (`kahlergeom.geodesics.exp` returns the per-trajectory status instead).
        """
        r = _geo.exp(self, z, v, integrator=integrator)
        _geo_api.warn_failures(r.success, "exp", f"Outcomes: {r.reasons}. ")
        return _geo_api.nan_where(r.point, r.success)

    def log(self, z: torch.Tensor, w: torch.Tensor, *, solver=None) -> torch.Tensor:
        r"""Logarithm map: the initial velocity v of the shortest geodesic found, $\exp_z(v) = w$.

        ``(..., n)`` → ``(..., n)``. Solver: `kahlergeom.geodesics.EnergyMinimisation` by
        default (several initial curves, shortest certified candidate). NaN and a
        `GeodesicWarning` where no candidate converged or every one passes a conjugate point.
        `kahlergeom.geodesics.solve_log` returns velocity, length, points and status at once.
        """
        r = _geo.solve_log(self, z, w, solver=solver)
        _geo_api.warn_failures(r.success, "log", f"Outcomes: {r.reasons}. ")
        return _geo_api.nan_where(r.velocity, r.success)

    def dist(self, z: torch.Tensor, w: torch.Tensor, *, solver=None) -> torch.Tensor:
        r"""Geodesic distance: the minimum length $|v|_{G(z)}$ over the certified candidates.

        Real ``(...)``. NaN and a `GeodesicWarning` where the solver did not converge or every
        candidate passes a conjugate point (never a length that was not verified by an adaptive
        endpoint check and a conjugate-point certificate).
        """
        r = _geo.solve_log(self, z, w, solver=solver)
        _geo_api.warn_failures(r.success, "dist", f"Outcomes: {r.reasons}. ")
        return _geo_api.nan_where(r.length, r.success)

    def geodesic(
        self, z: torch.Tensor, w: torch.Tensor, n_points: int, *, solver=None, integrator=None
    ) -> torch.Tensor:
        r"""Points of the geodesic from z to w at ``n_points`` equally spaced times in [0, 1].

        ``(..., n)`` → ``(..., n_points, n)`` (first point z, last ≈ w). NaN and a
        `GeodesicWarning` where the boundary solve or the integration failed.
        """
        r = _geo.solve_log(self, z, w, solver=solver, n_points=n_points, integrator=integrator)
        ok = r.success & torch.isfinite(r.points).all(-1).all(-1)
        _geo_api.warn_failures(ok, "geodesic", f"Outcomes: {r.reasons}. ")
        return _geo_api.nan_where(r.points, ok)

    def parallel_transport(
        self, z: torch.Tensor, w: torch.Tensor, v: torch.Tensor, *, solver=None, integrator=None
    ) -> torch.Tensor:
        r"""Parallel transport of the tangent vector v at z to w along the geodesic from z to w.

        ``(..., n)`` → ``(..., n)``. Kähler: $\dot V_l + \Gamma^l_{ab}\dot z_a V_b = 0$. Preserves
        $h(V, V)$ and $h(V, \dot z)$. NaN and a `GeodesicWarning` where a solve failed. To
        transport along $t \mapsto \exp_z(t u)$ instead, use `kahlergeom.geodesics.transport`.
        """
        solver = _geo_api.check_solver(solver)
        integrator = _geo_api.check_integrator(integrator)
        _geo_api.check_point(self, z, "z")
        _geo_api.check_point(self, w, "w")
        _geo_api.check_second_point(z, w, "w")
        check_same_shape(z, v, "v")
        r = _geo_api.solve_log_core(self, z, w, solver, None, integrator)
        u = torch.where(r.success[..., None], r.velocity, torch.zeros_like(r.velocity))
        e = _geo_api.transport_core(self, z, u, v, integrator)
        ok = r.success & e.success
        _geo_api.warn_failures(ok, "parallel_transport")
        return _geo_api.nan_where(e.transported, ok)

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
        if isinstance(potential, type) and issubclass(potential, KahlerPotential):
            raise ValueError(
                f"potential must be a KahlerPotential instance; got the class "
                f"{potential.__name__}. Instantiate it, e.g. {potential.__name__}(n)."
            )
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

    def metric_field(self, z):
        if self.potential.has_closed_form_levi:
            return self.potential.levi(z)
        return _levi(self.potential, z, self.chunk_size)

    @property
    def closed_form_christoffel(self):
        """Christoffel contractions for the geodesic and variational equations without
        ``torch.func`` transforms: the potential itself when it has closed forms
        (`KahlerPotential.has_closed_form_christoffel`; no automatic differentiation at all),
        else an `AutogradChristoffel` of it (reverse-mode ``torch.autograd`` on the batched
        potential), except while a ``torch.func`` transform is active or for a potential that
        is not `KahlerPotential.batched_call` (``None``: the equations then differentiate the
        metric field themselves)."""
        if self.potential.has_closed_form_christoffel:
            return self.potential
        if not (self.potential.batched_call and reverse_mode_usable()):
            return None
        adapter = self.__dict__.get("_autograd_christoffel")
        if adapter is None:
            adapter = self._autograd_christoffel = AutogradChristoffel(self.potential)
        return adapter

    def log_volume_density(self, z: torch.Tensor) -> torch.Tensor:
        r"""$\log\det G(z)$; the potential's closed form ``log_det_levi`` when it has one.

        (A closed form keeps full accuracy where G is too ill-conditioned for a Cholesky
        factorisation, e.g. the Fubini–Study metric at $|z| = 10^8$, condition $\approx|z|^2$.)
        """
        closed = getattr(self.potential, "log_det_levi", None)
        if closed is None:
            return super().log_volume_density(z)
        return closed(self.check_point(z))

    def __repr__(self):
        return f"KahlerManifold({self.potential!r})"
