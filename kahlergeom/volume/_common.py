"""Shared pieces of the volume estimators: argument checks and batched log det G."""

from __future__ import annotations

import torch

from kahlergeom.manifolds._hermitian import HermitianManifold


class VolumeConvergenceError(RuntimeError):
    """An estimate failed its convergence checks; the estimate is attached as ``.result``."""

    def __init__(self, message: str, result=None):
        super().__init__(message)
        self.result = result


def check_manifold(manifold) -> HermitianManifold:
    if not isinstance(manifold, HermitianManifold):
        raise ValueError(
            "manifold must be a kahlergeom HermitianManifold (e.g. KahlerManifold(potential)); "
            f"got {type(manifold).__name__}."
        )
    return manifold


def check_dtype(dtype) -> torch.dtype:
    if dtype not in (torch.complex64, torch.complex128):
        raise ValueError(f"dtype must be torch.complex64 or torch.complex128; got {dtype!r}.")
    return dtype


def log_density(manifold: HermitianManifold, z: torch.Tensor, batch_size: int) -> torch.Tensor:
    """log det G at points ``(N, n)`` (all inside the domain), in batches; raises ValueError
    where G is not positive definite (no volume density there)."""
    out = torch.cat(
        [manifold.log_volume_density(chunk) for chunk in z.split(batch_size)]
        if z.shape[0]
        else [torch.zeros(0, dtype=z.real.dtype)]
    )
    bad = ~torch.isfinite(out)
    if bool(bad.any()):
        first = z[bad.nonzero()[0, 0]]
        raise ValueError(
            f"the metric of {manifold!r} is not positive definite (or not finite) at "
            f"{int(bad.sum())} integration point(s), e.g. z = {first.tolist()}: det G is not a "
            "volume density there. Check manifold.is_psh(z, strict=True) on the region."
        )
    return out
