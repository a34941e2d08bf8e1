"""Component reduction: k-means (Lloyd's algorithm) or random subsampling of points of C^n."""

from __future__ import annotations

from typing import NamedTuple

import torch

from kahlergeom._checks import check_points


class Reduction(NamedTuple):
    """Result of `reduce_components`.

    Attributes:
        centres: complex ``(m, n)``, the representatives.
        labels: int64 ``(N,)``, index of the centre each input point belongs to (its nearest
            centre in the Euclidean distance of C^n ≅ R^{2n}).
        inertia: sum of squared distances of the points to their centres (real scalar tensor).
    """

    centres: torch.Tensor
    labels: torch.Tensor
    inertia: torch.Tensor


def _sq_dists(x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """Squared Euclidean distances |x_i − c_k|² in R^{2n}, real ``(N, m)``."""
    return torch.cdist(
        torch.view_as_real(x).flatten(-2), torch.view_as_real(c).flatten(-2)
    ).square()


def _assign(x: torch.Tensor, c: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    d2 = _sq_dists(x, c)
    best, labels = d2.min(-1)
    return labels, best.sum()


def _kmeans_pp(x: torch.Tensor, m: int, gen: torch.Generator) -> torch.Tensor:
    """k-means++ seeding: each next centre drawn ∝ squared distance to the chosen ones."""
    N = x.shape[0]
    first = torch.randint(N, (1,), generator=gen).to(x.device)
    centres = [x[first]]
    d2 = _sq_dists(x, centres[0]).squeeze(-1)
    for _ in range(1, m):  # loop over centres (m of them), not over points
        total = d2.sum()
        if not bool(total > 0):  # fewer distinct points than m: take any unchosen point
            probs = torch.ones_like(d2)
        else:
            probs = d2 / total
        nxt = torch.multinomial(probs.cpu(), 1, generator=gen).to(x.device)
        centres.append(x[nxt])
        d2 = torch.minimum(d2, _sq_dists(x, x[nxt]).squeeze(-1))
    return torch.cat(centres, 0)


def _lloyd(x: torch.Tensor, centres: torch.Tensor, n_iter: int) -> Reduction:
    m = centres.shape[0]
    labels, inertia = _assign(x, centres)
    for _ in range(n_iter):
        counts = torch.bincount(labels, minlength=m)
        sums = torch.zeros_like(centres).index_add_(0, labels, x)
        filled = counts > 0
        # An emptied cluster keeps its previous centre.
        new = torch.where(filled[:, None], sums / counts.clamp_min(1)[:, None], centres)
        new_labels, new_inertia = _assign(x, new)
        centres = new
        converged = bool((new_labels == labels).all())
        labels, inertia = new_labels, new_inertia
        if converged:
            break
    return Reduction(centres, labels, inertia)


def reduce_components(
    points: torch.Tensor,
    m: int,
    *,
    method: str = "kmeans",
    seed: int = 0,
    n_iter: int = 100,
    n_init: int = 4,
) -> Reduction:
    r"""Reduce N points of C^n to m representatives, by k-means or random subsampling.

    Points are compared in the Euclidean distance of $\mathbb C^n \cong \mathbb R^{2n}$,
    $|z - w|^2 = \sum_a |z_a - w_a|^2$.

    * ``method="kmeans"``: Lloyd's algorithm from k-means++ seeding, ``n_init`` seeded restarts,
      the run with the smallest inertia $\sum_i |z_i - c_{k(i)}|^2$ is kept. Centres are cluster
      means (so they need not be data points); a cluster that empties keeps its centre.
    * ``method="random"``: m distinct points drawn uniformly without replacement.

    Deterministic for a given ``seed`` (a private ``torch.Generator``; the global RNG is not
    touched). Batched over points: the only Python loops are over iterations and centres.

    Args:
        points: complex ``(N, n)``.
        m: number of representatives, ``1 <= m <= N``.
        method: ``"kmeans"`` or ``"random"``.
        seed: seed of the generator.
        n_iter: maximum Lloyd iterations per restart (stops early when labels stop changing).
        n_init: k-means restarts.

    Returns:
        `Reduction` ``(centres (m, n), labels (N,), inertia)``; ``labels`` assigns each point to
        its nearest centre.
    """
    check_points(points, None, "points")
    if points.ndim != 2:
        raise ValueError(
            f"points must have shape (N, n); got {tuple(points.shape)}. Flatten batch dimensions "
            "with points.reshape(-1, n)."
        )
    N = points.shape[0]
    if isinstance(m, bool) or not isinstance(m, int) or not 1 <= m <= N:
        raise ValueError(
            f"m must be an integer with 1 <= m <= N = {N} (the number of points); got {m!r}."
        )
    if method not in ("kmeans", "random"):
        raise ValueError(f"method must be 'kmeans' or 'random'; got {method!r}.")
    for name, value in (("n_iter", n_iter), ("n_init", n_init)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive integer; got {value!r}.")
    gen = torch.Generator().manual_seed(int(seed))
    x = points.detach()
    if method == "random":
        idx = torch.randperm(N, generator=gen)[:m].to(x.device)
        centres = x[idx]
        labels, inertia = _assign(x, centres)
        return Reduction(centres, labels, inertia)
    best = None
    for _ in range(n_init):
        run = _lloyd(x, _kmeans_pp(x, m, gen), n_iter)
        if best is None or bool(run.inertia < best.inertia):
            best = run
    return best
