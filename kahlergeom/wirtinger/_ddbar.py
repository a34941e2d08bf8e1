"""The vectorised ∂∂̄ engine.

Derivatives are taken in real coordinates u = (x, y) ∈ R^{2n} (x first): ``torch.func``'s
``jacfwd``/``jacrev``/``hessian`` refuse complex inputs, so the per-point engine works on u;
the batched engine differentiates from complex points directly, where torch's gradient of a
real function is ∂_x f + i ∂_y f (a complex vector of real partials). Complex intermediates
inside the differentiated function are fine. Never a Python loop over points.

Two engines for ∂∂̄ and ∂ (same numbers, to rounding):

* **batched** (for functions declared batched: a `KahlerPotential`, whose ``__call__`` maps
  ``(..., n) → (...)`` point by point, or ``batched=True``): ``f`` is called once on a block of
  points, differentiated from the complex points as a leaf; one ``torch.autograd.grad`` with
  ``create_graph=True`` gives g = ∂_x f + i ∂_y f at every point, and vector-Jacobian products
  of g with the 2n unit cotangents e_a, i e_a give the rows of every point's real Hessian as
  n complex numbers each (`_hessian_rows`, `levi_from_hessian_rows`): looped (the column
  loop), batched into one call with ``is_grads_batched``, or from one evaluation of f on 2n
  copies of the block. Which one is a fixed rule of f's declared ``ddbar_mode``, n and the
  number of points (`_row_mode`; no timing). Blocks hold at most ``_HESSIAN_BLOCK_ELEMENTS``
  real-Hessian numbers for the batched and replicated passes (measured: larger blocks fall out
  of cache) and ``_LOOP_BLOCK_ELEMENTS`` (a memory bound) for the loop. Used only outside
  ``torch.func`` transforms, inference mode and forward-AD dual levels, and on the CPU (on a
  GPU the per-point engine was measured fast; this one was not).
* **per point** (any other callable, other devices, and inside ``torch.func`` transforms, where
  ``torch.autograd.grad`` cannot run): ``torch.func.vmap`` over points (optionally chunked) of
  ``torch.func.hessian`` / ``grad`` in real coordinates; ``f`` sees one point ``(n,)``.

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
from torch._C._functorch import peek_interpreter_stack
from torch.autograd import forward_ad as _forward_ad
from torch.func import grad as _grad
from torch.func import hessian, jacfwd, vmap

from kahlergeom._checks import check_chunk_size, check_in_domain, check_points
from kahlergeom._linalg import (
    from_real,
    levi_from_hessian_rows,
    levi_from_real_hessian,
    to_real,
    wirtinger,
)

# torch imports its forward-mode decompositions lazily on the first jvp, and that import emits
# a DeprecationWarning about torch.jit.script (torch 2.13). Import it once here, silently, so
# the first ddbar of a user who runs with warnings as errors does not fail.
with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    try:
        import torch._decomp.decompositions_for_jvp  # noqa: F401
    except ImportError:  # pragma: no cover - a torch without this private module
        pass

#: Largest real-Hessian block (points × (2n)², numbers) the batched engine builds at once. The
#: batched backward over 2n directions is fastest up to about this size on CPU; beyond it the
#: block leaves the cache (benchmarks/bench_ddbar.py, docs/benchmarks.md).
_HESSIAN_BLOCK_ELEMENTS = 2**18
#: The same bound for the looped rows, which hold no more than the column loop does (the block's
#: graph and its rows) and gain from large blocks (fewer passes per point): a memory bound only,
#: 2n² complex numbers per point, 64 MiB of rows at most in complex128.
_LOOP_BLOCK_ELEMENTS = 2**22

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


def _use_batched(f: Callable, batched: bool | None, z: torch.Tensor) -> bool:
    """Whether the batched autograd engine applies: ``f`` is declared batched, ``z`` is on the
    CPU, and we are outside ``torch.func`` transforms, inference mode and
    ``torch.autograd.forward_ad`` dual levels (where its ``torch.autograd.grad`` calls cannot
    run or would drop tangents).

    CPU only: on a GPU the per-point engine is one fused vmapped computation, measured 1.7–9×
    faster than the column loop for n ≥ 4 (docs/benchmarks.md); the batched engine has not been
    measured there.
    """
    if batched is None:
        batched = getattr(f, "batched_call", False) is True
    return (
        batched
        and z.device.type == "cpu"
        and peek_interpreter_stack() is None
        and not torch.is_inference_mode_enabled()
        and getattr(_forward_ad, "_current_level", -1) < 0
    )


def _blocks(n_points: int, chunk_size: int | None, per_point: int, budget: int | None = None):
    """Slices of at most ``chunk_size`` points and at most ``budget // per_point`` points (at
    least one; ``budget`` defaults to ``_HESSIAN_BLOCK_ELEMENTS``)."""
    budget = _HESSIAN_BLOCK_ELEMENTS if budget is None else budget
    size = max(1, budget // per_point)
    if chunk_size is not None:
        size = min(size, chunk_size)
    return [slice(i, i + size) for i in range(0, n_points, size)]


def _has_other_leaves(t: torch.Tensor, leaf: torch.Tensor) -> bool:
    """Whether ``t``'s autograd graph reaches a tensor requiring grad other than ``leaf``
    (a parameter of f, a captured tensor with history): then the derivatives must keep their
    graph for the caller's backward pass."""
    seen = set()
    stack = [t.grad_fn]
    while stack:
        node = stack.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        variable = getattr(node, "variable", None)  # AccumulateGrad nodes hold their leaf
        if variable is not None and variable is not leaf:
            return True
        stack.extend(nxt for nxt, _ in node.next_functions)
    return False


def _batched_values(f: Callable, w: torch.Tensor) -> torch.Tensor:
    """f at the complex points w (B, n), checked: real, one value per point, shape (B,)."""
    out = f(w)
    if not isinstance(out, torch.Tensor):
        raise ValueError(
            f"f must return a torch.Tensor (a real value per point); got {type(out).__name__}."
        )
    if out.is_complex():
        raise ValueError(
            "f must return a real tensor (a Kähler potential is real-valued); it returned "
            f"{out.dtype}. Return the real part, e.g. `.real`, if the imaginary part is zero."
        )
    if out.shape != w.shape[:1]:
        raise ValueError(
            "f must return one real value per point: shape (...) for points of shape (..., n); "
            f"for {w.shape[0]} points of shape ({w.shape[1]},) it returned shape "
            f"{tuple(out.shape)}. A function of one point only must be passed with batched=False."
        )
    return out


def _batched_leaf(z: torch.Tensor, grad_on: bool) -> tuple[torch.Tensor, bool]:
    """The complex points to differentiate at, and whether z's own graph must be kept (only
    when the caller's grad mode, ``grad_on``, is enabled). Lazy conjugate / negative views are
    resolved first (``torch.view_as_real`` inside f refuses them)."""
    keep = grad_on and z.requires_grad
    w = z.resolve_conj().resolve_neg()
    return (w if keep else w.detach().requires_grad_(True)), keep


#: Row modes of `_hessian_rows`; all give the same numbers to rounding.
_MODES = ("loop", "batched", "replicated")
#: Without a declared mode, the batched pass is used only where the whole call is one small
#: block: at most this many point-directions (2n × points). There the per-pass costs dominate
#: and it won even through heavy backward graphs; on larger blocks it lost to the loop by up to
#: 1.6× through a decoder, a Gaussian mixture or a Cholesky (benchmarks/bench_ddbar.py,
#: docs/benchmarks.md).
_BATCHED_MAX_DIRECTIONS = 2**13
#: A light function of one complex variable (``ddbar_mode = "batched"``, n = 1) is evaluated on
#: two copies of the points, one reverse pass for both rows, on calls of at most this many
#: point-directions (2 × points): 1.1–1.3× faster than the loop there, slower beyond.
_REPLICATE_MAX_DIRECTIONS = 2**12


def _row_mode(f: Callable, n: int, n_points: int, chunk_size: int | None) -> str:
    """How `_hessian_rows` takes the 2n rows of ``n_points`` points. A fixed rule, no timing:
    the same call always takes the same path.

    * ``f.ddbar_mode = "loop"`` or ``"replicated"``: that mode.
    * ``f.ddbar_mode = "batched"`` (a light, elementwise function; the library's closed forms
      declare it): the batched pass for n ≥ 2; for n = 1 (two rows, nothing to batch) the
      replicated pass on calls of at most ``_REPLICATE_MAX_DIRECTIONS`` point-directions, the
      loop on larger ones.
    * undeclared (``None``): the batched pass for n ≥ 2 on calls of at most
      ``_BATCHED_MAX_DIRECTIONS`` point-directions, the loop elsewhere.

    Points per call: ``n_points``, or ``chunk_size`` when smaller.
    """
    mode = getattr(f, "ddbar_mode", None)
    if mode is not None and mode not in _MODES:
        raise ValueError(f"f.ddbar_mode must be one of {_MODES} or None; got {mode!r}.")
    directions = 2 * n * (n_points if chunk_size is None else min(n_points, chunk_size))
    if mode == "batched" and n == 1:
        return "replicated" if directions <= _REPLICATE_MAX_DIRECTIONS else "loop"
    if mode is not None:
        return mode
    return "batched" if n > 1 and directions <= _BATCHED_MAX_DIRECTIONS else "loop"


#: The 2n unit cotangents (2n, n) per (n, dtype, device): e_a and i e_a (`_cotangents`).
_UNITS: dict[tuple, torch.Tensor] = {}


def _cotangents(w: torch.Tensor) -> torch.Tensor:
    """V (2n, B, n) complex: V[a] = e_a and V[n + a] = i e_a at every point (a < n); a
    broadcast view (stride 0 along the points) of a cached (2n, n) constant."""
    B, n = w.shape
    key = (n, w.dtype, w.device)
    units = _UNITS.get(key)
    if units is None:
        eye = torch.eye(n, dtype=w.dtype, device=w.device)
        units = torch.cat([eye, 1j * eye])
        if len(_UNITS) >= 64:
            _UNITS.clear()
        _UNITS[key] = units
    return units.unsqueeze(1).expand(2 * n, B, n)


def _hessian_rows(f: Callable, zb: torch.Tensor, grad_on: bool, mode: str):
    """Complex Hessian rows R (B, 2n, n) of f at the points zb (B, n), and whether R keeps a
    graph (for `levi_from_hessian_rows`).

    ``R`` is ``None`` where f does not depend on z. With z = x + iy, one reverse pass of the
    batch sum from a complex leaf gives torch's gradient g = ∂_x f + i ∂_y f = 2 ∂̄f at every
    point (``create_graph=True``). The vector-Jacobian product of g with a cotangent V (by
    torch's convention the gradient of Re Σ conj(V) g) is, for V = e_a, the gradient of
    ∂f/∂x_a: R[a] = ∂_x ∂_{x_a} f + i ∂_y ∂_{x_a} f; for V = i e_a, that of ∂f/∂y_a, R[n + a].
    Points are independent, so one cotangent at every point gives that row at every point.
    ``mode``: ``"loop"``, one reverse pass per row (the column loop); ``"batched"``, the 2n
    rows in one ``is_grads_batched`` pass; ``"replicated"``, f evaluated once on 2n copies of
    the block, copy j giving row j, all rows in one reverse pass.
    """
    w, keep = _batched_leaf(zb, grad_on)
    B, n = w.shape
    x = w.unsqueeze(0).expand(2 * n, B, n) if mode == "replicated" else w
    k = _batched_values(f, x.reshape(-1, n))
    if not k.requires_grad:  # f does not depend on z
        return None, False
    keep = keep or (grad_on and _has_other_leaves(k, w))
    (g,) = torch.autograd.grad(k, x, torch.ones_like(k), create_graph=True)
    if not g.requires_grad:  # f is affine in z: zero Hessian
        return w.new_zeros(B, 2 * n, n), keep
    V = _cotangents(w)
    if mode == "replicated":
        # copy j of the points depends on copy j only: one product with V gives all rows
        (R,) = torch.autograd.grad(g, x, V, create_graph=keep, materialize_grads=True)
        return R.transpose(0, 1), keep
    if mode == "loop":
        rows = [
            torch.autograd.grad(
                g, w, V[i], retain_graph=True, create_graph=keep, materialize_grads=True
            )[0]
            for i in range(2 * n)
        ]
        return torch.stack(rows, dim=1), keep
    with warnings.catch_warnings():
        # vmap's "performance drop" warning: its fallback loops, with correct values.
        warnings.simplefilter("ignore", UserWarning)
        (R,) = torch.autograd.grad(
            g,
            w,
            V,
            retain_graph=True,
            create_graph=keep,
            is_grads_batched=True,
            materialize_grads=True,
        )
    return R.transpose(0, 1), keep


#: Kinds of function (`_kind`) whose backward had no batching rule: their rows are looped.
_NO_BATCHING_RULE: set = set()


def _kind(f: Callable):
    return getattr(f, "__code__", None) or type(f)


def _block_rows(f: Callable, zb: torch.Tensor, grad_on: bool, mode: str):
    """`_hessian_rows` in ``mode``; where torch lacks a batching rule for some op's backward,
    the loop (remembered per kind of function, so the batched pass is tried once)."""
    if mode != "batched":
        return _hessian_rows(f, zb, grad_on, mode)
    kind = _kind(f)
    if kind not in _NO_BATCHING_RULE:
        try:
            return _hessian_rows(f, zb, grad_on, mode)
        except RuntimeError as exc:
            if not _is_missing_batching_rule(exc):
                raise
            _NO_BATCHING_RULE.add(kind)
    return _hessian_rows(f, zb, grad_on, "loop")


def _join(blocks: list[torch.Tensor], empty: torch.Tensor) -> torch.Tensor:
    """The blocks' results along the point axis (no copy for one block)."""
    if not blocks:
        return empty
    return blocks[0] if len(blocks) == 1 else torch.cat(blocks)


def _levi_batched(f: Callable, z: torch.Tensor, chunk_size: int | None) -> torch.Tensor:
    """Levi matrices by the batched autograd engine (see the module docstring); f batched."""
    n = z.shape[-1]
    zf, batch = _flatten(z)
    mode = _row_mode(f, n, zf.shape[0], chunk_size)
    budget = _LOOP_BLOCK_ELEMENTS if mode == "loop" else _HESSIAN_BLOCK_ELEMENTS
    out = []
    grad_on = torch.is_grad_enabled()
    with torch.enable_grad():
        for block in _blocks(zf.shape[0], chunk_size, (2 * n) ** 2, budget):
            R, keep = _block_rows(f, zf[block], grad_on, mode)
            if R is None:  # f does not depend on z: zero Levi matrix
                out.append(zf.new_zeros(zf[block].shape[0], n, n))
                continue
            G = levi_from_hessian_rows(R)
            out.append(G if keep else G.detach())
    return _join(out, z.new_zeros(0, n, n)).reshape(*batch, n, n)


def _partial_batched(f: Callable, z: torch.Tensor, chunk_size: int | None) -> torch.Tensor:
    """∂f by one batched reverse pass per block (see `_levi_batched`): torch's gradient from a
    complex leaf is g = ∂_x f + i ∂_y f = 2 ∂̄f, so ∂f = conj(g) / 2 for real f."""
    n = z.shape[-1]
    zf, batch = _flatten(z)
    out = []
    grad_on = torch.is_grad_enabled()
    with torch.enable_grad():
        for block in _blocks(zf.shape[0], chunk_size, 2 * n):
            w, keep = _batched_leaf(zf[block], grad_on)
            k = _batched_values(f, w)
            if not k.requires_grad:
                out.append(zf.new_zeros(w.shape[0], n))
                continue
            keep = keep or (grad_on and _has_other_leaves(k, w))
            (g,) = torch.autograd.grad(
                k, w, torch.ones_like(k), create_graph=keep, materialize_grads=True
            )
            d = 0.5 * g.conj()
            out.append(d if keep else d.detach())
    return _join(out, z.new_zeros(0, n)).reshape(*batch, n)


def _levi(
    f: Callable, z: torch.Tensor, chunk_size: int | None = None, batched: bool | None = None
) -> torch.Tensor:
    """Unchecked batched Levi matrix ∂_a ∂̄_b f, (..., n) → (..., n, n).

    ``batched``: whether ``f`` maps ``(..., n) → (...)`` point by point (``None``: read
    ``f.batched_call``, True for every `KahlerPotential`). Then, outside ``torch.func``
    transforms, the batched autograd engine (module docstring). Otherwise
    forward-over-reverse (``torch.func.hessian``) per point. torch.func has no batching rule
    for reverse mode through some complex views (e.g. ``z.conj()`` feeding a matmul raises
    "Batching rule not implemented for aten::_neg_view"); then the Hessian is recomputed
    forward-over-forward, which has no such gap.
    """
    if _use_batched(f, batched, z):
        return _levi_batched(f, z, chunk_size)
    n = z.shape[-1]
    H, batch = _per_point(f, z, chunk_size, hessian, lambda g: jacfwd(jacfwd(g)))
    if H is None:
        return z.new_zeros(*batch, n, n)
    return levi_from_real_hessian(H).reshape(*batch, n, n)


def _partial(
    f: Callable, z: torch.Tensor, chunk_size: int | None = None, batched: bool | None = None
) -> torch.Tensor:
    """Unchecked batched holomorphic gradient ∂_a f = ½(∂f/∂x_a − i ∂f/∂y_a).

    ``batched`` as in `_levi`: one batched reverse pass, else reverse mode per point with the
    forward-mode fallback of `_levi`.
    """
    if _use_batched(f, batched, z):
        return _partial_batched(f, z, chunk_size)
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


def _check_batched(batched) -> None:
    if batched is not None and not isinstance(batched, bool):
        raise ValueError(f"batched must be True, False or None; got {batched!r}.")


def _check(f, z: torch.Tensor, name: str = "z") -> None:
    n = getattr(f, "n", None)
    check_points(z, n, name)
    if hasattr(f, "contains"):
        check_in_domain(f, z, name)


def ddbar(
    f: Callable,
    z: torch.Tensor,
    *,
    chunk_size: int | None = None,
    batched: bool | None = None,
) -> torch.Tensor:
    r"""Levi matrix (complex Hessian) of a real function of complex points, batched.

    $$G[\ldots, a, b] = \partial_a \bar\partial_b f
      = \tfrac14\big[(f_{xx} + f_{yy}) + i\,(f_{xy} - f_{xy}^\top)\big]_{ab}$$

    with $\partial_a = \tfrac12(\partial_{x_a} - i\,\partial_{y_a})$ (see the conventions page).

    Args:
        f: a real function of complex points. Either batched, ``f(z) -> real (...)`` for ``z``
            of shape ``(..., n)`` with each output depending on its own point only (every
            `KahlerPotential` is), or a function of one point, ``(n,) -> real ()``.
        z: complex points, shape ``(..., n)``, ``complex64`` or ``complex128``. Device and dtype
            of the result follow ``z``.
        chunk_size: if given, evaluate at most this many points at once (bounds memory).
        batched: whether ``f`` is batched. ``None`` (default): ``f.batched_call`` if ``f`` has
            that attribute (``True`` on every `KahlerPotential`), else ``False``. A function of
            one point must not be declared batched: ``lambda z: (z[0] * z[0].conj()).real``
            reads the first *point* of a batch.

    How: on the CPU a batched ``f`` is evaluated on blocks of points with ``torch.autograd``:
    one reverse pass for every point's gradient ∂_x f + i ∂_y f (``create_graph=True``), then
    the 2n real Hessian rows (row j is the gradient of the batch-sum of gradient component j:
    points are independent), by a fixed rule: one batched reverse pass where f declares
    ``ddbar_mode = "batched"`` (the library's closed-form potentials do) or the call is small,
    a loop of 2n passes elsewhere, and for n = 1 one pass over two copies of a small block
    (see `KahlerPotential.ddbar_mode`). Inside ``torch.func`` transforms, on other devices,
    and for functions of one point: ``torch.func.vmap`` of ``torch.func.hessian`` over the
    points, in real coordinates u = (Re z, Im z). The two agree to rounding (~1e-16 relative; see
    docs/benchmarks.md for speed). The result keeps its autograd graph when ``z`` or a tensor
    inside ``f`` requires grad (it can be backpropagated, e.g. through a regulariser), and has
    none otherwise.

    Returns:
        Complex tensor ``(..., n, n)``, exactly Hermitian.

    Raises:
        ValueError: ``z`` is not complex, has the wrong last dimension, holds NaN/inf, or lies
            outside ``f.contains`` (when ``f`` has one); ``f`` does not return one real value
            per point; ``f.ddbar_mode`` is set to something other than ``"loop"``,
            ``"batched"``, ``"replicated"`` or ``None``.

    Example:
        >>> import torch, kahlergeom as kg
        >>> z = torch.zeros(3, 2, dtype=torch.complex128)
        >>> kg.ddbar(kg.potentials.FubiniStudy(2), z)[0].real
        tensor([[1., 0.],
                [0., 1.]], dtype=torch.float64)
        >>> kg.ddbar(lambda w: (w.real**2 + w.imag**2).sum(-1), z, batched=True)[0].real
        tensor([[1., 0.],
                [0., 1.]], dtype=torch.float64)

    Unlike `KahlerManifold.metric`, this always differentiates, even when the potential has a
    closed-form `levi`.
    """
    _check(f, z)
    check_chunk_size(chunk_size)
    _check_batched(batched)
    return _levi(f, z, chunk_size, batched)


def partial(
    f: Callable,
    z: torch.Tensor,
    *,
    chunk_size: int | None = None,
    batched: bool | None = None,
) -> torch.Tensor:
    r"""Holomorphic gradient $\partial_a f = \tfrac12(\partial_{x_a} - i\,\partial_{y_a}) f$.

    Shapes: ``z`` ``(..., n)`` complex → ``(..., n)`` complex. For real ``f``,
    $\bar\partial f = \overline{\partial f}$ (see `partial_bar`). ``f``, ``chunk_size`` and
    ``batched`` as in `ddbar` (a batched ``f`` takes one reverse pass per block of points).
    """
    _check(f, z)
    check_chunk_size(chunk_size)
    _check_batched(batched)
    return _partial(f, z, chunk_size, batched)


def partial_bar(
    f: Callable,
    z: torch.Tensor,
    *,
    chunk_size: int | None = None,
    batched: bool | None = None,
) -> torch.Tensor:
    r"""Antiholomorphic gradient $\bar\partial_a f = \tfrac12(\partial_{x_a} + i\,\partial_{y_a}) f$
    of a real function; ``(..., n)`` → ``(..., n)``; arguments as in `partial`."""
    return partial(f, z, chunk_size=chunk_size, batched=batched).conj()


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
