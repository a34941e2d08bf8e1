"""Numeric helpers shared by every layer (the lowest layer beside ``_checks``).

Each formula used in more than one package has its single home here. Conventions are those of
``docs/conventions.md``: real coordinates u = (x, y), x first; Wirtinger operators
∂ = ½(∂x − i∂y), ∂̄ = ½(∂x + i∂y); G[..., a, b] = g_{a b̄}.
"""

from __future__ import annotations

import math

import torch


def to_real(z: torch.Tensor) -> torch.Tensor:
    """Real coordinates of complex points: (..., n) complex → (..., 2n) real, u = (Re z, Im z)."""
    return torch.cat([z.real, z.imag], dim=-1)


def from_real(u: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`to_real`: (..., 2n) real → (..., n) complex, z = u[:n] + i u[n:]."""
    n = u.shape[-1] // 2
    return torch.complex(u[..., :n], u[..., n:])


def wirtinger(dx: torch.Tensor, dy: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(∂, ∂̄) from the real partial derivatives: ∂ = ½(∂x − i∂y), ∂̄ = ½(∂x + i∂y).

    ``dx`` and ``dy`` are derivatives (real or complex, any equal shapes) along x and y of one
    coordinate; see ``docs/conventions.md`` § Coordinates and derivatives.
    """
    return 0.5 * (dx - 1j * dy), 0.5 * (dx + 1j * dy)


def levi_from_hessian_rows(R: torch.Tensor) -> torch.Tensor:
    """Levi matrix of a real function K from its complex Hessian rows R (…, 2n, n).

    Row a < n is the derivative of ∂K/∂x_a and row n + a that of ∂K/∂y_a, each written as one
    complex vector ∂_x(·) + i ∂_y(·) (torch's gradient from a complex leaf):
    R[a] = K_xx[a] + i K_xy[a], R[n + a] = K_yx[a] + i K_yy[a]. Then
    G = ¼ (R_x − i R_y) = ¼ [(K_xx + K_yy) + i (K_xy − K_yx)], with R_x, R_y the two halves;
    the result is Hermitised, ½(G + G^H), which is exactly Hermitian (the same as symmetrising
    the real Hessian first).
    """
    n = R.shape[-1]
    G = torch.sub(R[..., :n, :], R[..., n:, :], alpha=1j)  # R_x − i R_y (i R_y is exact)
    return (G + G.mH).mul_(0.125)


def levi_from_real_hessian(H: torch.Tensor) -> torch.Tensor:
    """Levi matrix from the real Hessian (…, 2n, 2n) of a real function.

    G = ¼ [(K_xx + K_yy) + i (K_xy − K_xyᵀ)], with the Hessian symmetrised first so that G is
    exactly Hermitian. A complex H (the real Hessians of the entries of a complex field, e.g.
    of g_{a b̄}) gives ∂_c ∂̄_d of each entry by the same formula.
    """
    n = H.shape[-1] // 2
    if not H.is_complex():
        # Rows of H as complex vectors K_x + i K_y: the formula of levi_from_hessian_rows.
        return levi_from_hessian_rows(torch.complex(H[..., :n], H[..., n:]))
    # A complex H is symmetrised (not Hermitised): re = S + Sᵀ with S = K_xx + K_yy,
    # im = A − Aᵀ with A = K_xy − K_yx, each exactly symmetric / antisymmetric.
    re = H[..., :n, :n] + H[..., n:, n:]
    im = H[..., :n, n:] - H[..., n:, :n]
    re = re + re.transpose(-1, -2)
    im = im - im.transpose(-1, -2)
    return 0.125 * (re + 1j * im)


def real_metric(G: torch.Tensor) -> torch.Tensor:
    """The real 2n×2n metric G_R = [[Re G, Im G], [−Im G, Re G]] of a Hermitian G.

    For u = (Re v, Im v): uᵀ G_R u = h(v, v) = vᵀ G conj(v), and det G_R = (det G)².
    """
    return real_metric_parts(G.real, G.imag)


def real_metric_parts(re: torch.Tensor, im: torch.Tensor) -> torch.Tensor:
    """G_R = [[Re G, Im G], [−Im G, Re G]] from the real and imaginary parts of G (real
    arithmetic only, e.g. inside a fit that keeps G as two real tensors)."""
    return torch.cat([torch.cat([re, im], -1), torch.cat([-im, re], -1)], -2)


def hermitian_logdet(G: torch.Tensor) -> torch.Tensor:
    """log det of Hermitian positive definite matrices via Cholesky (autodiff-stable).

    Raises torch's error where G is not positive definite; see :func:`hermitian_logdet_ex`.
    """
    L = torch.linalg.cholesky(G)
    return 2 * torch.log(torch.diagonal(L, dim1=-2, dim2=-1).real).sum(-1)


def hermitian_logdet_ex(G: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(log det G, ok)`` via ``cholesky_ex``: ``ok`` is False where G is not positive definite.

    The log det is meaningless where ``ok`` is False (mask it); no error is raised, so this is
    safe inside loops over batches where some points may be degenerate.
    """
    L, info = torch.linalg.cholesky_ex(G)
    return 2 * torch.log(torch.diagonal(L, dim1=-2, dim2=-1).real).sum(-1), info == 0


def psh_tolerance(G: torch.Tensor, rtol: float | None = None) -> torch.Tensor:
    """Absolute eigenvalue tolerance for PSD tests: rtol · max(1, ‖G‖) per matrix.

    Default ``rtol`` is 100 · n · eps of the dtype (≈ 2e-13 n in float64, 1e-5 n in float32).
    """
    n = G.shape[-1]
    if rtol is None:
        rtol = 100 * n * torch.finfo(G.real.dtype).eps
    scale = torch.linalg.matrix_norm(G, ord=2).clamp_min(1.0)
    return rtol * scale


def psd_test(
    G: torch.Tensor, *, strict: bool = False, rtol: float | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(ok, λ_min, tol)``: is the Hermitian G positive semidefinite (``strict``: definite)?

    λ_min is the smallest eigenvalue of the Hermitian part, tol = :func:`psh_tolerance`; PSD
    means λ_min ≥ −tol, definite λ_min > tol. All three are ``(...)``.
    """
    lam = torch.linalg.eigvalsh(0.5 * (G + G.mH))[..., 0]
    tol = psh_tolerance(G, rtol)
    return (lam > tol if strict else lam >= -tol), lam, tol


def kish_ess(log_weights: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """Kish effective sample size (Σw)²/Σw² of importance weights given as logs."""
    w = torch.softmax(log_weights, dim=dim)
    return 1.0 / (w * w).sum(dim)


def complex_normal_log_prob(
    z: torch.Tensor, mean: torch.Tensor | complex = 0.0, scale: float = 1.0
) -> torch.Tensor:
    """log density of CN(mean, σ² I) on C^n w.r.t. Lebesgue measure on R^{2n}, real ``(...)``.

    p(z) = (π σ²)^{-n} exp(−|z − mean|²/σ²) with σ = ``scale``; |w|² is written as Re² + Im²
    (differentiable at 0, see ``docs/conventions.md``).
    """
    d = z - mean
    s2 = scale**2
    sq = torch.view_as_real(d.resolve_conj()).square().sum((-1, -2))
    return -sq / s2 - z.shape[-1] * math.log(math.pi * s2)


def complex_normal_sample(
    shape: tuple[int, ...],
    *,
    mean: torch.Tensor | complex = 0.0,
    scale: float = 1.0,
    dtype: torch.dtype = torch.complex128,
    device=None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Draws of shape ``shape`` (last axis n) from CN(mean, σ² I), σ = ``scale``.

    Re and Im are independent N(·, σ²/2). Drawn on the generator's device (so a CPU generator
    gives the same draws whatever ``device`` is) and moved to ``device``.
    """
    real = torch.float32 if dtype == torch.complex64 else torch.float64
    gen_device = generator.device if generator is not None else device
    parts = torch.randn(*shape, 2, dtype=real, device=gen_device, generator=generator)
    z = torch.view_as_complex(parts * (scale * math.sqrt(0.5))).to(device=device, dtype=dtype)
    return z + mean if not (isinstance(mean, float | int) and mean == 0) else z
