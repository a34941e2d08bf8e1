"""How well one metric field approximates another: the numbers the benchmark reports."""

from __future__ import annotations

from typing import NamedTuple

import torch

from kahlergeom._linalg import psh_tolerance


def _check_metrics(G, name):
    if not isinstance(G, torch.Tensor) or G.ndim < 2 or G.shape[-1] != G.shape[-2]:
        raise ValueError(
            f"{name} must be a tensor of metrics of shape (..., n, n); got "
            f"{tuple(getattr(G, 'shape', ()))}."
        )


def relative_frobenius_error(approx: torch.Tensor, exact: torch.Tensor) -> torch.Tensor:
    r"""Per-point relative error $\|G_\text{approx} - G\|_F / \|G\|_F$, real ``(...)``.

    Both ``(..., n, n)`` (broadcast). Scale-aware: 1 means "as large as the metric itself"
    (e.g. the zero matrix, or twice the metric).
    """
    _check_metrics(approx, "approx")
    _check_metrics(exact, "exact")
    num = torch.linalg.matrix_norm(approx - exact)
    den = torch.linalg.matrix_norm(exact)
    return num / den.clamp_min(torch.finfo(den.dtype).tiny)


def _ranks(x: torch.Tensor) -> torch.Tensor:
    """Average ranks (ties share the mean rank), float ``(N,)``."""
    order = torch.argsort(x, stable=True)
    sorted_x = x[order]
    # Group equal values and give each group the mean of its positions.
    new_group = torch.ones_like(sorted_x, dtype=torch.bool)
    new_group[1:] = sorted_x[1:] != sorted_x[:-1]
    group = torch.cumsum(new_group.long(), 0) - 1
    pos = torch.arange(x.numel(), dtype=torch.float64, device=x.device)
    counts = torch.bincount(group).to(torch.float64)
    mean_pos = torch.zeros_like(counts).index_add_(0, group, pos) / counts
    ranks = torch.empty_like(pos)
    ranks[order] = mean_pos[group]
    return ranks


def spearman(a: torch.Tensor, b: torch.Tensor) -> float:
    """Spearman rank correlation of two real vectors ``(N,)`` (Pearson of average ranks).

    NaN when one of them is constant.
    """
    if a.shape != b.shape or a.ndim != 1 or a.numel() < 2:
        raise ValueError(
            f"spearman needs two real vectors of the same length >= 2; got shapes "
            f"{tuple(a.shape)} and {tuple(b.shape)}."
        )
    ra, rb = _ranks(a.detach()), _ranks(b.detach())
    ra, rb = ra - ra.mean(), rb - rb.mean()
    den = (ra.square().sum() * rb.square().sum()).sqrt()
    return float(ra @ rb / den) if den > 0 else float("nan")


class Fidelity(NamedTuple):
    """Summary of `compare_metrics` over N points."""

    #: median over points of ‖G_approx − G‖_F / ‖G‖_F
    median_rel_error: float
    #: 90th percentile of the same
    p90_rel_error: float
    #: Spearman correlation of det G_approx with det G (= of log det where both are > 0)
    spearman_logdet: float
    #: fraction of points where G_approx is positive semidefinite (λ_min ≥ −tol)
    psd_rate: float
    #: per-point relative errors, real (N,)
    rel_errors: torch.Tensor


def compare_metrics(approx: torch.Tensor, exact: torch.Tensor) -> Fidelity:
    r"""Fidelity of a metric field to an exact one at the same N points.

    Args:
        approx: complex ``(N, n, n)``, e.g. a surrogate's metric.
        exact: complex ``(N, n, n)``, e.g. the exact Fisher metric.

    Returns:
        `Fidelity`: median and 90th percentile of the relative Frobenius error
        (`relative_frobenius_error`), Spearman rank correlation of $\log\det G$ (computed on the
        real determinants, whose ranks equal those of log det where both are positive and stay
        defined where an approximation is indefinite), and the PSD rate of ``approx``
        (smallest eigenvalue ≥ −100 n eps · max(1, ‖G‖₂), as in `HermitianManifold.is_psh`).
    """
    _check_metrics(approx, "approx")
    _check_metrics(exact, "exact")
    if approx.shape != exact.shape or approx.ndim != 3:
        raise ValueError(
            f"approx and exact must both have shape (N, n, n); got {tuple(approx.shape)} and "
            f"{tuple(exact.shape)}."
        )
    err = relative_frobenius_error(approx, exact)
    det_a = torch.linalg.det(approx).real
    det_e = torch.linalg.det(exact).real
    lam = torch.linalg.eigvalsh(approx)[..., 0]
    psd = (lam >= -psh_tolerance(approx)).double().mean()
    return Fidelity(
        median_rel_error=float(torch.quantile(err, 0.5)),
        p90_rel_error=float(torch.quantile(err, 0.9)),
        spearman_logdet=spearman(det_a, det_e),
        psd_rate=float(psd),
        rel_errors=err,
    )
