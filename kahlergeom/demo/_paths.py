"""Interpolation paths for the demo: straight segments and discrete Fisher-energy geodesics.

`energy_paths` minimises the discrete energy of a K-point path with fixed ends,

$$E = (K-1)\\sum_{k=0}^{K-2} h_{m_k}(\\Delta_k, \\Delta_k),\\qquad
  \\Delta_k = z_{k+1} - z_k,\\ m_k = \tfrac12(z_k + z_{k+1}),$$

over the K − 2 interior nodes of all pairs at once with L-BFGS (first-order: the gradient of E
needs derivatives of the metric field, never of its derivatives). Its minimiser is a discrete
geodesic of the Hermitian metric h; as K grows its nodes approach constant-speed samples of a
geodesic. Each path reports whether the optimiser converged (gradient norm below ``gtol`` times
the initial one) so the demo can count failures instead of hiding them.
"""

from __future__ import annotations

import torch

from kahlergeom._linalg import from_real, to_real

#: Gradient norm treated as zero, relative to max(1, energy): rounding level of float64 sums.
_ROUNDING = 1e-10


def straight_paths(z0: torch.Tensor, z1: torch.Tensor, K: int) -> torch.Tensor:
    """Straight segments ``(P, K, n)`` from ``z0`` to ``z1`` (each ``(P, n)``)."""
    t = torch.linspace(0, 1, K, dtype=z0.real.dtype, device=z0.device)[None, :, None]
    return z0[:, None] + t * (z1 - z0)[:, None]


def path_energy(metric_field, paths: torch.Tensor) -> torch.Tensor:
    """Discrete energy (K−1) Σ_k h_{m_k}(Δ_k, Δ_k) of paths ``(P, K, n)``, real ``(P,)``."""
    P, K, n = paths.shape
    d = paths[:, 1:] - paths[:, :-1]
    mid = 0.5 * (paths[:, 1:] + paths[:, :-1])
    G = metric_field(mid.reshape(-1, n)).reshape(P, K - 1, n, n)
    h = torch.einsum("pka,pkab,pkb->pk", d, G, d.conj()).real
    return (K - 1) * h.sum(-1)


def energy_paths(
    metric_field,
    z0: torch.Tensor,
    z1: torch.Tensor,
    K: int = 12,
    *,
    max_iter: int = 200,
    gtol: float = 1e-3,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Discrete geodesics ``(P, K, n)`` minimising `path_energy`, started from straight lines.

    Returns ``(paths, energy (P,), converged (P,))``; ``converged`` is False for a pair whose
    gradient did not fall below ``gtol`` × its initial norm (or to rounding level, for a start
    that is already stationary) or whose energy is not finite.
    """
    start = straight_paths(z0, z1, K)
    x = to_real(start[:, 1:-1]).detach().clone().requires_grad_(True)
    ends0, ends1 = z0[:, None], z1[:, None]

    def paths_of(xr):
        return torch.cat([ends0, from_real(xr), ends1], 1)

    def total():
        return path_energy(metric_field, paths_of(x)).sum()

    g0 = torch.autograd.grad(total(), x)[0].flatten(1).norm(dim=1)
    opt = torch.optim.LBFGS(
        [x],
        max_iter=max_iter,
        tolerance_grad=0.0,
        tolerance_change=0.0,
        history_size=20,
        line_search_fn="strong_wolfe",
    )

    def closure():
        opt.zero_grad()
        loss = total()
        loss.backward()
        return loss

    opt.step(closure)
    with torch.enable_grad():
        e = path_energy(metric_field, paths_of(x))
        g = torch.autograd.grad(e.sum(), x)[0].flatten(1).norm(dim=1)
    # Relative to the initial gradient; a start that is already stationary (e.g. a flat metric,
    # g0 at rounding level) counts as converged when g is at rounding level of the energy.
    floor = _ROUNDING * e.abs().clamp_min(1.0)
    converged = (g <= torch.maximum(gtol * g0, floor)) & torch.isfinite(e)
    return paths_of(x).detach(), e.detach(), converged
