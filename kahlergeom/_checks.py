"""Input validation shared by every public entry point.

Checks run *outside* ``torch.func`` transforms (data-dependent control flow is not allowed
under ``vmap``), so potentials themselves stay free of checks and can be traced.
"""

from __future__ import annotations

import math

import torch

_COMPLEX = (torch.complex64, torch.complex128)


def real_dtype_of(dtype: torch.dtype) -> torch.dtype:
    """The real dtype matching a complex one (complex64 -> float32, complex128 -> float64)."""
    return torch.float32 if dtype == torch.complex64 else torch.float64


def complex_dtype_of(dtype: torch.dtype) -> torch.dtype:
    """The complex dtype matching a real one (float32 -> complex64, float64 -> complex128)."""
    return torch.complex64 if dtype == torch.float32 else torch.complex128


def _all_finite(z: torch.Tensor) -> bool:
    """Whether every entry of the complex tensor ``z`` is finite.

    Fast path: one sum over the real view. NaN and ±inf propagate through a sum, so a finite
    sum proves every entry finite; a non-finite sum (a non-finite entry, or finite entries
    whose sum overflows) is settled entry by entry. (``torch.isfinite`` of a complex tensor
    takes several passes: 3–10× slower on 10⁴ points.)
    """
    parts = torch.view_as_real(z.conj() if z.is_conj() else z)  # conj: same finiteness
    return math.isfinite(parts.sum().item()) or bool(torch.isfinite(z).all())


def check_points(z, n: int | None = None, name: str = "z") -> torch.Tensor:
    """Validate complex points of shape ``(..., n)``; return them unchanged.

    Raises ``ValueError`` naming ``name`` when ``z`` is not a complex tensor, has the wrong
    last dimension, or holds NaN/inf.
    """
    if not isinstance(z, torch.Tensor):
        raise ValueError(
            f"{name} must be a complex torch.Tensor of shape (..., n); got {type(z).__name__}. "
            f"Build one with torch.complex(x, y) or torch.tensor(..., dtype=torch.complex128)."
        )
    if z.dtype not in _COMPLEX:
        raise ValueError(
            f"{name} must be complex (torch.complex64 or torch.complex128); got {z.dtype}. "
            f"Real coordinates u = (x, y) convert with torch.complex(u[..., :n], u[..., n:])."
        )
    if z.ndim == 0:
        raise ValueError(f"{name} must have shape (..., n) with n >= 1; got a 0-dim tensor.")
    if n is not None and z.shape[-1] != n:
        raise ValueError(f"{name} must have last dimension n = {n}; got shape {tuple(z.shape)}.")
    if z.shape[-1] < 1:
        raise ValueError(f"{name} must have last dimension n >= 1; got shape {tuple(z.shape)}.")
    if not _all_finite(z):
        bad = (~torch.isfinite(z)).any(-1).nonzero()
        raise ValueError(
            f"{name} contains NaN or inf at {bad.shape[0]} point(s), first at batch index "
            f"{tuple(bad[0].tolist())}."
        )
    return z


def check_same_shape(z: torch.Tensor, v, name: str = "v") -> torch.Tensor:
    """Validate a tangent vector ``v`` at ``z``: complex, same dtype, broadcastable shape."""
    check_points(v, z.shape[-1], name)
    if v.dtype != z.dtype:
        raise ValueError(f"{name} must have the dtype of the point ({z.dtype}); got {v.dtype}.")
    if not broadcasts(z.shape, v.shape):
        raise ValueError(
            f"{name} of shape {tuple(v.shape)} does not broadcast with the point's shape "
            f"{tuple(z.shape)}."
        )
    return v


def broadcasts(*shapes) -> bool:
    """Whether the shapes broadcast together (torch's rules)."""
    try:
        torch.broadcast_shapes(*shapes)
    except RuntimeError:
        return False
    return True


def check_in_domain(potential, z: torch.Tensor, name: str = "z") -> None:
    """Raise ``ValueError`` if any point lies outside ``potential.contains``."""
    inside = potential.contains(z)
    if not bool(torch.as_tensor(inside).all()):
        bad = (~torch.as_tensor(inside)).nonzero()
        first = tuple(bad[0].tolist())
        point = z[first] if first else z
        raise ValueError(
            f"{name}: {bad.shape[0]} point(s) lie outside the domain of {potential!r} "
            f"({potential.domain_description}); first at batch index {first}: "
            f"{point.detach().cpu().numpy()}."
        )


def check_positive_int(value, name: str, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}; got {value!r}.")
    return value


class NotKahlerError(ValueError):
    """A Kähler-only formula was asked of a metric that is not known to be Kähler."""


def require_kahler(manifold, what: str) -> None:
    """Raise `NotKahlerError` unless ``manifold.is_kahler`` is True."""
    if not getattr(manifold, "is_kahler", False):
        raise NotKahlerError(
            f"{what} uses Kähler formulas, but {manifold!r} is not known to be Kähler "
            "(is_kahler is False). Measure how far its metric is from a closed one with "
            "manifold.closedness_residual(z); for the curvature of its real metric G_R, use "
            "manifold.riemannian_sectional_curvature(z, u, v), which holds for any Hermitian "
            "metric."
        )


def check_nonzero(v: torch.Tensor, name: str) -> None:
    """Raise ValueError if some tangent vector ``v`` is zero (h(v, v) = 0 would divide by 0)."""
    norm = torch.linalg.vector_norm(v, dim=-1)
    if not bool((norm > 0).all()):
        bad = (norm == 0).nonzero()
        raise ValueError(
            f"{name} must be a nonzero tangent vector at every point; it is zero at "
            f"{bad.shape[0]} point(s), first at batch index {tuple(bad[0].tolist())}."
        )


def check_independent(u: torch.Tensor, v: torch.Tensor, G: torch.Tensor) -> None:
    """Raise ValueError unless u, v span a real 2-plane at every point (Gram determinant > 0)."""

    def g(a, b):
        return torch.einsum("...a,...ab,...b->...", a, G, b.conj()).real

    guu, gvv, guv = g(u, u), g(v, v), g(u, v)
    gram = guu * gvv - guv**2
    tol = 1e3 * torch.finfo(gram.dtype).eps * guu * gvv
    if not bool((gram > tol).all()):
        bad = (gram <= tol).nonzero()
        raise ValueError(
            "u and v must be linearly independent over R (span a real 2-plane) at every point; "
            f"they are (nearly) parallel at {bad.shape[0]} point(s), first at batch index "
            f"{tuple(bad[0].tolist())}. For the plane of a complex line take v = 1j * u."
        )


def check_hermitian_pd(
    P: torch.Tensor, label: str, *, hint: str, hermitian_rtol: float | None = None
) -> torch.Tensor:
    """Validate a stack of matrices ``(m, n, n)`` as Hermitian positive definite.

    Returns the Hermitian part ½(P + Pᴴ). ``label`` is formatted with ``i`` (the first bad
    index) to name the offending matrix in the message, e.g. ``"precisions[{i}]"``; ``hint``
    says what the caller expected. Asymmetry beyond ``hermitian_rtol``·max(1, max|P|) (default
    1000 eps) is refused; positive definiteness is tested by Cholesky.
    """
    if hermitian_rtol is None:
        hermitian_rtol = 1e3 * torch.finfo(P.real.dtype).eps
    asym = (P - P.mH).abs().amax((-1, -2))
    scale = P.abs().amax((-1, -2)).clamp_min(1.0)
    bad = (asym > hermitian_rtol * scale).nonzero()
    if bad.numel():
        i = bad[0].item()
        raise ValueError(
            f"{label.format(i=i)} is not Hermitian (max |P - P^H| = {asym[i].item():.3g}); "
            "pass 0.5 * (P + P.mH) if the asymmetry is rounding."
        )
    P = 0.5 * (P + P.mH)
    _, info = torch.linalg.cholesky_ex(P)
    bad = (info != 0).nonzero()
    if bad.numel():
        raise ValueError(f"{label.format(i=bad[0].item())} is not positive definite; {hint}")
    return P


def check_points_and_metrics(
    points,
    metrics,
    n: int | None = None,
    names: tuple[str, str] = ("points", "metrics"),
    count: str = "N",
) -> tuple[torch.Tensor, torch.Tensor]:
    """Validate points ``(N, n)`` and a metric at each, ``(N, n, n)``; return both (metrics
    cast to the points' dtype). ``names`` name the two arguments in messages, ``count`` the
    number of points (``"N"``, or ``"m"`` for anchors)."""
    pname, mname = names
    check_points(points, n, pname)
    if points.ndim != 2:
        raise ValueError(f"{pname} must have shape ({count}, n); got {tuple(points.shape)}.")
    N, n = points.shape
    if not isinstance(metrics, torch.Tensor) or metrics.shape != (N, n, n):
        raise ValueError(
            f"{mname} must be a tensor of shape ({count}, n, n) = ({N}, {n}, {n}), the metric at "
            f"each of the {pname}; got {tuple(getattr(metrics, 'shape', ()))}."
        )
    return points, metrics.to(points.dtype)


def check_temperature(temperature) -> float:
    """A temperature τ: a finite number > 0, returned as float."""
    try:
        t = float(temperature)
    except (TypeError, ValueError):
        raise ValueError(f"temperature must be a finite number > 0; got {temperature!r}.") from None
    if not t > 0 or t != t or t == float("inf"):
        raise ValueError(f"temperature must be a finite number > 0; got {temperature!r}.")
    return t


def check_chunk_size(chunk_size) -> int | None:
    """``None`` (no chunking) or an integer >= 1."""
    if chunk_size is not None:
        check_positive_int(chunk_size, "chunk_size")
    return chunk_size


def check_optional_positive(value, name: str) -> None:
    """``None`` or a finite number > 0 (tolerances and similar options)."""
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise ValueError(f"{name} must be a positive float or None; got {value!r}.")
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite; got {value!r}.")
