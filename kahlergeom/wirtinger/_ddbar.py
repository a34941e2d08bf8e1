"""The vectorised ∂∂̄ engine.

Everything is differentiated in real coordinates u = (x, y) ∈ R^{2n} (x first), because
``torch.func``'s ``jacfwd``/``jacrev``/``hessian`` refuse complex inputs; complex
intermediates inside the differentiated function are fine. Batches are handled by
``torch.func.vmap`` (optionally chunked), never by Python loops over points.

Two layers:

* ``_levi``, ``_partial`` and ``_wirtinger_jacobian`` are *unchecked* cores. They are safe to
  call inside other ``torch.func`` transforms (curvature differentiates the metric again).
* ``ddbar``, ``partial``, ``partial_bar`` and ``wirtinger_jacobian`` are the public, checked
  entry points: they validate the points (dtype, shape, finiteness, domain) first.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import torch
from torch.func import grad as _grad
from torch.func import hessian, jacfwd, vmap

from kahlergeom._checks import check_chunk_size, check_in_domain, check_points
from kahlergeom._linalg import from_real, levi_from_real_hessian, to_real, wirtinger

# torch imports its forward-mode decompositions lazily on the first jvp, and that import emits
# a DeprecationWarning about torch.jit.script (torch 2.13). Import it once here, silently, so
# the first ddbar of a user who runs with warnings as errors does not fail.
with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    try:
        import torch._decomp.decompositions_for_jvp  # noqa: F401
    except ImportError:  # pragma: no cover - a torch without this private module
        pass

__all__ = [
    "closedness_residual",
    "ddbar",
    "from_real",
    "partial",
    "partial_bar",
    "to_real",
    "wirtinger_jacobian",
]


def _real_scalar(f: Callable, n: int) -> Callable:
    """f of one complex point (n,) → real 0-dim, as a function of u ∈ R^{2n}."""

    def fr(u: torch.Tensor) -> torch.Tensor:
        out = f(torch.complex(u[:n], u[n:]))
        if not isinstance(out, torch.Tensor):
            raise ValueError(
                f"f must return a torch.Tensor (a real value per point); got {type(out).__name__}."
            )
        if out.is_complex():
            raise ValueError(
                "f must return a real tensor (a Kähler potential is real-valued); it returned "
                f"{out.dtype}. Return the real part, e.g. `.real`, if the imaginary part is zero."
            )
        if out.shape != ():
            raise ValueError(
                "f must return one real value per point: shape (...) for points of shape "
                f"(..., n); for a single point it returned shape {tuple(out.shape)}."
            )
        return out

    return fr


def _real_tensor(F: Callable, n: int) -> tuple[Callable, dict]:
    """A tensor-valued F of one complex point → real tensor (complex outputs as (..., 2)).

    Also returns a dict whose ``"complex"`` entry records, once ``Fr`` has been traced, whether
    F's output was complex (so the caller need not evaluate F again to find out).
    """
    seen: dict = {}

    def Fr(u: torch.Tensor) -> torch.Tensor:
        out = F(torch.complex(u[:n], u[n:]))
        seen["complex"] = out.is_complex()
        # resolve_conj: view_as_real refuses lazily conjugated tensors (e.g. F = z.conj()).
        return torch.view_as_real(out.resolve_conj()) if out.is_complex() else out

    return Fr, seen


def _flatten(z: torch.Tensor) -> tuple[torch.Tensor, torch.Size]:
    batch = z.shape[:-1]
    return z.reshape(-1, z.shape[-1]), batch


def _is_missing_batching_rule(exc: RuntimeError) -> bool:
    return "Batching rule not implemented" in str(exc)


def _per_point(f: Callable, z: torch.Tensor, chunk_size, reverse, forward):
    """``vmap(reverse(f_real))`` over the flattened points, in real coordinates.

    ``reverse`` and ``forward`` build the per-point derivative (e.g. ``hessian`` and
    ``jacfwd∘jacfwd``); the forward-mode one is used where torch.func lacks a reverse-mode
    batching rule. Returns ``(None, batch)`` for an empty batch (vmap cannot trace complex views
    on it).
    """
    zf, batch = _flatten(z)
    if zf.shape[0] == 0:
        return None, batch
    fr = _real_scalar(f, z.shape[-1])
    u = to_real(zf)
    try:
        return vmap(reverse(fr), chunk_size=chunk_size)(u), batch
    except RuntimeError as exc:
        if not _is_missing_batching_rule(exc):
            raise
        return vmap(forward(fr), chunk_size=chunk_size)(u), batch


def _levi(f: Callable, z: torch.Tensor, chunk_size: int | None = None) -> torch.Tensor:
    """Unchecked batched Levi matrix ∂_a ∂̄_b f, (..., n) → (..., n, n).

    Forward-over-reverse (``torch.func.hessian``) per point. torch.func has no batching rule
    for reverse mode through some complex views (e.g. ``z.conj()`` feeding a matmul raises
    "Batching rule not implemented for aten::_neg_view"); then the Hessian is recomputed
    forward-over-forward, which has no such gap.
    """
    n = z.shape[-1]
    H, batch = _per_point(f, z, chunk_size, hessian, lambda g: jacfwd(jacfwd(g)))
    if H is None:
        return z.new_zeros(*batch, n, n)
    return levi_from_real_hessian(H).reshape(*batch, n, n)


def _partial(f: Callable, z: torch.Tensor, chunk_size: int | None = None) -> torch.Tensor:
    """Unchecked batched holomorphic gradient ∂_a f = ½(∂f/∂x_a − i ∂f/∂y_a).

    Reverse mode per point, with the forward-mode fallback of `_levi`.
    """
    n = z.shape[-1]
    g, batch = _per_point(f, z, chunk_size, _grad, jacfwd)
    if g is None:
        return z.new_zeros(*batch, n)
    return (0.5 * torch.complex(g[..., :n], -g[..., n:])).reshape(*batch, n)


def _wirtinger_jacobian(
    F: Callable, z: torch.Tensor, chunk_size: int | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Unchecked (∂F/∂z_c, ∂F/∂z̄_c) of a tensor field F, each of shape (..., *S, n)."""
    n = z.shape[-1]
    zf, batch = _flatten(z)
    if zf.shape[0] == 0:
        # Empty batch: learn the output shape from one point (the origin), keep none of it.
        d, dbar = _wirtinger_jacobian(F, z.new_zeros(1, n), chunk_size)
        return d[:0].reshape(*batch, *d.shape[1:]), dbar[:0].reshape(*batch, *d.shape[1:])
    Fr, seen = _real_tensor(F, n)
    J = vmap(jacfwd(Fr), chunk_size=chunk_size)(to_real(zf))
    jx, jy = J[..., :n], J[..., n:]
    if seen["complex"]:
        # view_as_real put (re, im) just before the derivative axis: recombine.
        jx = torch.complex(jx[..., 0, :], jx[..., 1, :])
        jy = torch.complex(jy[..., 0, :], jy[..., 1, :])
    d, dbar = wirtinger(jx, jy)
    shape = d.shape[1:]
    return d.reshape(*batch, *shape), dbar.reshape(*batch, *shape)


def _check(f, z: torch.Tensor, name: str = "z") -> None:
    n = getattr(f, "n", None)
    check_points(z, n, name)
    if hasattr(f, "contains"):
        check_in_domain(f, z, name)


def ddbar(f: Callable, z: torch.Tensor, *, chunk_size: int | None = None) -> torch.Tensor:
    r"""Levi matrix (complex Hessian) of a real function of complex points, batched.

    $$G[\ldots, a, b] = \partial_a \bar\partial_b f
      = \tfrac14\big[(f_{xx} + f_{yy}) + i\,(f_{xy} - f_{xy}^\top)\big]_{ab}$$

    with $\partial_a = \tfrac12(\partial_{x_a} - i\,\partial_{y_a})$ (see the conventions page).

    Args:
        f: a real function of one complex point, ``f(z) -> real`` for ``z`` of shape ``(n,)``
            (any `KahlerPotential` qualifies). It is traced by ``torch.func`` per point.
        z: complex points, shape ``(..., n)``, ``complex64`` or ``complex128``. Device and dtype
            of the result follow ``z``.
        chunk_size: if given, evaluate at most this many points at once (bounds memory).

    Returns:
        Complex tensor ``(..., n, n)``, exactly Hermitian.

    Raises:
        ValueError: ``z`` is not complex, has the wrong last dimension, holds NaN/inf, or lies
            outside ``f.contains`` (when ``f`` has one).

    Example:
        >>> import torch, kahlergeom as kg
        >>> z = torch.zeros(3, 2, dtype=torch.complex128)
        >>> kg.ddbar(kg.potentials.FubiniStudy(2), z)[0].real
        tensor([[1., 0.],
                [0., 1.]], dtype=torch.float64)

    Unlike `KahlerManifold.metric`, this always differentiates, even when the potential has a
    closed-form `levi`.
    """
    _check(f, z)
    check_chunk_size(chunk_size)
    return _levi(f, z, chunk_size)


def partial(f: Callable, z: torch.Tensor, *, chunk_size: int | None = None) -> torch.Tensor:
    r"""Holomorphic gradient $\partial_a f = \tfrac12(\partial_{x_a} - i\,\partial_{y_a}) f$.

    Shapes: ``z`` ``(..., n)`` complex → ``(..., n)`` complex. For real ``f``,
    $\bar\partial f = \overline{\partial f}$ (see `partial_bar`).
    """
    _check(f, z)
    check_chunk_size(chunk_size)
    return _partial(f, z, chunk_size)


def partial_bar(f: Callable, z: torch.Tensor, *, chunk_size: int | None = None) -> torch.Tensor:
    r"""Antiholomorphic gradient $\bar\partial_a f = \tfrac12(\partial_{x_a} + i\,\partial_{y_a}) f$
    of a real function; ``(..., n)`` → ``(..., n)``."""
    return partial(f, z, chunk_size=chunk_size).conj()


def wirtinger_jacobian(
    F: Callable, z: torch.Tensor, *, chunk_size: int | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    r"""Wirtinger derivatives of a tensor-valued function of one complex point.

    For ``F(z)`` of shape ``S`` (real or complex) at a point ``z`` of shape ``(n,)``, returns
    ``(dF, dbarF)`` with ``dF[..., *s, c] = ∂F[s]/∂z_c`` and ``dbarF[..., *s, c] = ∂F[s]/∂z̄_c``,
    each of shape ``(..., *S, n)`` (the derivative index last). ``F`` is traced per point with
    ``torch.func.jacfwd`` on real coordinates.
    """
    check_points(z, None, "z")
    check_chunk_size(chunk_size)
    return _wirtinger_jacobian(F, z, chunk_size)


def _closedness(
    metric_fn: Callable, z: torch.Tensor, chunk_size: int | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Unchecked ``(max|∂_c g_ab̄ − ∂_a g_cb̄|, max|∂g|)`` per point, each real ``(...)``."""
    dG, _ = _wirtinger_jacobian(metric_fn, z, chunk_size)  # (..., a, b, c) = ∂_c g_ab̄
    res = (dG - dG.transpose(-1, -3)).abs().flatten(-3).amax(-1)
    return res, dG.abs().flatten(-3).amax(-1)


def closedness_residual(
    metric_fn: Callable,
    z: torch.Tensor,
    *,
    relative: bool = True,
    chunk_size: int | None = None,
) -> torch.Tensor:
    r"""Kähler-closedness residual of a Hermitian metric field, per point.

    A Hermitian metric $g_{a\bar b}$ is Kähler (its form $\omega = i\, g_{a\bar b}\, dz^a \wedge
    d\bar z^b$ is closed) iff $\partial_c g_{a\bar b} = \partial_a g_{c\bar b}$ for all a, b, c.
    Returns $\max_{a,b,c} |\partial_c g_{a\bar b} - \partial_a g_{c\bar b}|$ at each point,
    divided by $\max |\partial g|$ there when ``relative`` (0 for a metric with zero derivative).

    Args:
        metric_fn: ``G(z)`` for one point ``(n,)`` → ``(n, n)`` complex, traceable by
            ``torch.func`` (no data-dependent Python control flow).
        z: points ``(..., n)``.

    Returns:
        Real tensor ``(...)``.
    """
    check_points(z, None, "z")
    check_chunk_size(chunk_size)
    res, scale = _closedness(metric_fn, z, chunk_size)
    if not relative:
        return res
    tiny = torch.finfo(res.dtype).tiny
    return torch.where(scale > tiny, res / scale.clamp_min(tiny), torch.zeros_like(res))
