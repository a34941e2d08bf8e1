"""Contract checks for metrics and potentials, in the spirit of e3nn's ``assert_equivariant``.

Each check takes a `HermitianManifold` (any metric field) or a `KahlerPotential` (checked through
``KahlerManifold(potential)``, i.e. its closed-form ``levi`` when it has one) and points
``z`` of shape ``(..., n)``, and raises ``AssertionError`` naming the first failing point (its
batch index and coordinates) and the size of the violation against the tolerance used.
Tolerances follow the dtype of ``z`` (see `default_tolerance`).
"""

from __future__ import annotations

import torch

from kahlergeom._linalg import psd_test
from kahlergeom.manifolds import HermitianManifold, KahlerManifold
from kahlergeom.potentials import KahlerPotential
from kahlergeom.wirtinger._ddbar import _closedness

__all__ = [
    "assert_batch_consistent",
    "assert_hermitian",
    "assert_kahler",
    "assert_psh",
    "default_tolerance",
]

#: Relative tolerances per real dtype, per check.
_TOLERANCES = {
    torch.float64: {"hermitian": 1e-12, "kahler": 1e-8, "batch": 1e-10},
    torch.float32: {"hermitian": 1e-5, "kahler": 1e-4, "batch": 1e-4},
}


def default_tolerance(dtype: torch.dtype, check: str) -> float:
    """Relative tolerance of ``check`` ("hermitian", "kahler", "batch") for a (complex) dtype."""
    real = torch.float32 if dtype in (torch.complex64, torch.float32) else torch.float64
    return _TOLERANCES[real][check]


def _as_manifold(obj, name: str = "obj") -> HermitianManifold:
    if isinstance(obj, HermitianManifold):
        return obj
    if isinstance(obj, KahlerPotential):
        return KahlerManifold(obj)
    raise TypeError(
        f"{name} must be a HermitianManifold or a KahlerPotential; got {type(obj).__name__}."
    )


def _where(z: torch.Tensor, index: tuple) -> str:
    point = z[index] if index else z
    return f"batch index {index}, z = {point.detach().cpu().numpy()}"


def _first_bad(bad: torch.Tensor) -> tuple:
    return tuple(bad.nonzero()[0].tolist()) if bad.ndim else ()


def _finite_metric(obj, M: HermitianManifold, z: torch.Tensor) -> torch.Tensor:
    """G(z), or AssertionError naming the first point where it is NaN or inf (overflow)."""
    G = M.metric(z)
    bad = ~torch.isfinite(G).flatten(-2).all(-1)
    if bool(bad.any()):
        i = _first_bad(bad)
        raise AssertionError(
            f"metric of {obj!r} is not finite (NaN or overflow) at {int(bad.sum())} point(s); "
            f"first at {_where(z, i)}. Keep test points away from the domain's boundary "
            "(e.g. kahlergeom.testing.domain_points(..., center=..., margin=...))."
        )
    return G


def _scale(G: torch.Tensor) -> torch.Tensor:
    return G.abs().flatten(-2).amax(-1).clamp_min(1.0)


def assert_hermitian(obj, z: torch.Tensor, *, rtol: float | None = None) -> None:
    r"""Assert $G(z) = G(z)^H$ at every point: $\max|G - G^H| \le \text{rtol}\cdot\max(1, \max|G|)$.

    Args:
        obj: a `HermitianManifold` or `KahlerPotential`.
        z: complex points ``(..., n)``.
        rtol: default `default_tolerance(z.dtype, "hermitian")`.
    """
    M = _as_manifold(obj)
    G = _finite_metric(obj, M, z)
    rtol = default_tolerance(z.dtype, "hermitian") if rtol is None else rtol
    err = (G - G.mH).abs().flatten(-2).amax(-1)
    tol = rtol * _scale(G)
    bad = ~(err <= tol)
    if bool(bad.any()):
        i = _first_bad(bad)
        raise AssertionError(
            f"metric of {obj!r} is not Hermitian at {int(bad.sum())} point(s); first at "
            f"{_where(z, i)}: max |G - G^H| = {float(err[i]):.3e} > tolerance {float(tol[i]):.3e}."
        )


def assert_psh(obj, z: torch.Tensor, *, strict: bool = False, rtol: float | None = None) -> None:
    r"""Assert G(z) is positive semidefinite (``strict``: definite) at every point.

    Uses the smallest eigenvalue λ_min of the Hermitian part of G against
    ``tol = rtol · max(1, ‖G‖₂)`` (default ``rtol = 100 n eps``, as `HermitianManifold.is_psh`):
    PSD needs λ_min ≥ −tol, strict needs λ_min > tol.
    """
    M = _as_manifold(obj)
    ok, lam, tol = psd_test(_finite_metric(obj, M, z), strict=strict, rtol=rtol)
    bad = ~ok
    if bool(bad.any()):
        i = _first_bad(bad)
        what = "positive definite" if strict else "positive semidefinite"
        bound = f"> {float(tol[i]):.3e}" if strict else f">= {-float(tol[i]):.3e}"
        raise AssertionError(
            f"metric of {obj!r} is not {what} (not {'strictly ' if strict else ''}PSH) at "
            f"{int(bad.sum())} point(s); first at {_where(z, i)}: smallest eigenvalue "
            f"{float(lam[i]):.3e}, needed {bound}."
        )


def assert_kahler(obj, z: torch.Tensor, *, rtol: float | None = None) -> None:
    r"""Assert the metric is Kähler (closed) at every point.

    With $r = \max_{abc}|\partial_c g_{a\bar b} - \partial_a g_{c\bar b}|$ (the absolute
    closedness residual), passes when $r \le \text{rtol}\cdot\max(1, \max|G|, \max|\partial g|)$
    (default ``rtol`` = `default_tolerance(z.dtype, "kahler")`). The floor ``max(1, max|G|)``
    keeps a nearly constant field (where the purely relative residual $r / \max|\partial g|$
    is rounding noise, e.g. a saturated mixture) from failing spuriously.
    """
    M = _as_manifold(obj)
    M.check_point(z)
    rtol = default_tolerance(z.dtype, "kahler") if rtol is None else rtol
    G = M.metric_field(z)
    res, dscale = _closedness(M.metric_field, z, M.chunk_size)  # as closedness_residual
    tol = rtol * torch.maximum(_scale(G), dscale)
    bad = ~(res <= tol)
    if bool(bad.any()):
        i = _first_bad(bad)
        rel = float(res[i] / dscale[i].clamp_min(torch.finfo(res.dtype).tiny))
        raise AssertionError(
            f"metric of {obj!r} is not Kähler (not closed) at {int(bad.sum())} point(s); first "
            f"at {_where(z, i)}: closedness residual max|∂_c g_ab̄ - ∂_a g_cb̄| = "
            f"{float(res[i]):.3e} (relative to max|∂g|: {rel:.3e}) > tolerance {float(tol[i]):.3e}."
        )


def assert_batch_consistent(obj, z: torch.Tensor, *, rtol: float | None = None) -> None:
    r"""Assert the batched metric equals the metric evaluated one point at a time.

    A deliberately slow reference: a Python loop over the points of ``z`` (flattened batch),
    each evaluated alone as shape ``(n,)``. Passes when
    $\max|G_\text{batch} - G_\text{single}| \le \text{rtol}\cdot\max(1, \max|G|)$ at every point.
    """
    M = _as_manifold(obj)
    rtol = default_tolerance(z.dtype, "batch") if rtol is None else rtol
    G = M.metric(z)
    n = z.shape[-1]
    flat = z.reshape(-1, n)
    single = torch.stack([M.metric(flat[i]) for i in range(flat.shape[0])])
    single = single.reshape(G.shape)
    if single.dtype != G.dtype:
        raise AssertionError(f"metric dtype differs: batched {G.dtype}, single {single.dtype}.")
    err = (G - single).abs().flatten(-2).amax(-1)
    tol = rtol * torch.maximum(_scale(G), _scale(single))
    bad = ~(err <= tol)
    if bool(bad.any()):
        i = _first_bad(bad)
        raise AssertionError(
            f"metric of {obj!r} depends on the batch: at {int(bad.sum())} point(s) the batched "
            f"and one-point results differ; first at {_where(z, i)}: max difference "
            f"{float(err[i]):.3e} > tolerance {float(tol[i]):.3e}."
        )
