"""Metric fields evaluated across processes: each rank a contiguous shard, gathered on all."""

from __future__ import annotations

from collections.abc import Callable

import torch

from kahlergeom._dist import all_gather_rows, is_distributed, shard_slice, world
from kahlergeom.manifolds._hermitian import HermitianManifold


def evaluate_metric_field(
    manifold,
    z: torch.Tensor,
    *,
    method: str | Callable = "metric",
) -> torch.Tensor:
    """The metric field at points ``z`` ``(N, n)``, sharded across ranks, gathered on all.

    Args:
        manifold: a `HermitianManifold`, or a zero-argument callable building one (so each
            rank can build its own, e.g. ``lambda: FisherManifold(load_model(path).decoder)``).
        z: the points ``(N, n)``, the same on every rank.
        method: the per-point method name (``"metric"``, ``"real_metric"``,
            ``"log_volume_density"``, ...) or a callable ``f(manifold, z_shard)``.

    Returns:
        ``method`` of the manifold at all N points (e.g. ``(N, n, n)``), identical on every
        rank and equal to the one-process result: each point is evaluated by the same ops.
        Without an initialised multi-rank process group, this is just ``manifold.metric(z)``.
    """
    if not isinstance(manifold, HermitianManifold) and callable(manifold):
        manifold = manifold()
    if not isinstance(manifold, HermitianManifold):
        raise ValueError(
            "manifold must be a HermitianManifold or a callable returning one; got "
            f"{type(manifold).__name__}."
        )
    if not isinstance(z, torch.Tensor) or z.ndim != 2:
        raise ValueError(
            f"z must be a tensor of shape (N, n); got {getattr(z, 'shape', type(z).__name__)}."
        )
    fn = method if callable(method) else getattr(manifold, method, None)
    if fn is None:
        raise ValueError(f"method: the manifold has no method {method!r}.")
    call = (lambda w: fn(manifold, w)) if callable(method) else fn
    if not is_distributed():
        return call(z)
    rank, size = world()
    local = call(z[shard_slice(z.shape[0], rank, size)])
    return all_gather_rows(local, z.shape[0], size)
