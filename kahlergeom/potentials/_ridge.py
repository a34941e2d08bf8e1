r"""Ridge plurisubharmonic potential: a sum of softplus ridges plus a Hermitian quadratic.

$$K(z) = \sum_{k=1}^H a_k\,\mathrm{softplus}(w_k\cdot u + b_k)
  + (z - z_0)^\top M\,\overline{(z - z_0)},$$
with $u = (\mathrm{Re}(z - z_0), \mathrm{Im}(z - z_0))$,

with $a_k \ge 0$, $w_k \in \mathbb R^{2n}$ and $M$ Hermitian positive definite. Each ridge is a
convex function of a real-linear form, hence PSH; the quadratic has the constant Levi matrix $M$.

Levi matrix (conventions: ``docs/conventions.md``). Write $w_k = (w_{k,x}, w_{k,y})$ and
$c_k = w_{k,x} + i\,w_{k,y} \in \mathbb C^n$. The form $s_k = w_k\cdot u + b_k$ is real-linear,
so $\partial\bar\partial s_k = 0$, and with
$\partial_a = \tfrac12(\partial_{x_a} - i\partial_{y_a})$
$$\partial_a s_k = \tfrac12\,\overline{c_{k,a}},\qquad \bar\partial_b s_k = \tfrac12\,c_{k,b}.$$
For $f = \mathrm{softplus}$ ($f' = \sigma$, $f'' = \sigma(1-\sigma)$),
$\partial_a\bar\partial_b f(s_k) = f''(s_k)\,\partial_a s_k\,\bar\partial_b s_k$, hence
$$G[a, b] = \partial_a\bar\partial_b K
  = M[a, b] + \tfrac14\sum_k a_k\,\sigma(s_k)\big(1-\sigma(s_k)\big)\;\overline{c_{k,a}}\,c_{k,b}.$$
Every ridge adds a rank-one PSD matrix $\bar c_k c_k^\top$ with a non-negative weight, so
$G \succeq M \succ 0$ everywhere: $\lambda_{\min}(M)$ is a strictly positive floor.
"""

from __future__ import annotations

import torch

from kahlergeom.potentials._base import KahlerPotential


def ridge_outer(W: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    r"""Real and imaginary parts of $\bar c_k c_k^\top$, flattened: two ``(H, n²)`` tensors.

    ``W`` real ``(H, 2n)`` holds $w_k = (w_{k,x}, w_{k,y})$; with $c = x + iy$,
    $\bar c_a c_b = (x_a x_b + y_a y_b) + i(x_a y_b - y_a x_b)$.
    """
    n = W.shape[-1] // 2
    x, y = W[:, :n], W[:, n:]
    re = x[:, :, None] * x[:, None, :] + y[:, :, None] * y[:, None, :]
    im = x[:, :, None] * y[:, None, :] - y[:, :, None] * x[:, None, :]
    return re.reshape(-1, n * n), im.reshape(-1, n * n)


def ridge_levi_flat(
    u: torch.Tensor, W: torch.Tensor, b: torch.Tensor, a: torch.Tensor, outer: torch.Tensor
) -> torch.Tensor:
    r"""Ridge part of the Levi matrix as real rows ``(B, 2n²)`` = (Re, Im) flattened.

    $\tfrac14\sum_k a_k\,\sigma(s_k)(1-\sigma(s_k))\,\bar c_k c_k^\top$ with $s = u W^\top + b$, as
    one ``(B, H) × (H, 2n²)`` GEMM against ``outer`` = ``cat(ridge_outer(W), -1)`` (real
    arithmetic only; the fitting loop uses this form).
    """
    sig = torch.sigmoid(torch.addmm(b, u, W.transpose(0, 1)))
    return (sig - sig * sig) @ ((0.25 * a).unsqueeze(-1) * outer)


def ridge_levi(
    u: torch.Tensor,
    W: torch.Tensor,
    b: torch.Tensor,
    a: torch.Tensor,
    M: torch.Tensor,
) -> torch.Tensor:
    r"""Levi matrix of the ridge potential at real centred rows ``u`` ``(B, 2n)``: ``(B, n, n)``.

    $G = M + \tfrac14\sum_k a_k\,\sigma(s_k)(1 - \sigma(s_k))\,\bar c_k c_k^\top$ with
    $s = u W^\top + b$; one ``(B, H) × (H, 2n²)`` GEMM (`ridge_levi_flat`).
    """
    n = W.shape[-1] // 2
    g = ridge_levi_flat(u, W, b, a, torch.cat(ridge_outer(W), -1))
    G = torch.complex(g[:, : n * n], g[:, n * n :]).reshape(-1, n, n)
    return G + M


def _softplus(s: torch.Tensor) -> torch.Tensor:
    """log(1 + e^s), overflow-free, whose autodiff second derivative is σ(1 − σ) for every s.

    (torch's softplus is linear above s = 20, and logaddexp's double backward gives NaN for
    s ≪ 0.) Two clamped branches: log1p(e^s) for s ≤ 0 and s + log1p(e^{−s}) for s > 0.
    """
    neg = s.clamp(max=0)
    pos = s.clamp(min=0)
    return torch.where(s > 0, pos + torch.log1p(torch.exp(-pos)), torch.log1p(torch.exp(neg)))


def _check_ridge(directions, offsets, amplitudes, base_metric, centre):
    if not isinstance(directions, torch.Tensor) or directions.is_complex() or directions.ndim != 2:
        raise ValueError(
            "directions must be a real tensor of shape (H, 2n) (rows w_k = (w_x, w_y)); got "
            f"{getattr(directions, 'dtype', type(directions).__name__)} of shape "
            f"{tuple(getattr(directions, 'shape', ()))}."
        )
    H, two_n = directions.shape
    if two_n % 2 or two_n == 0:
        raise ValueError(f"directions must have an even number 2n >= 2 of columns; got {two_n}.")
    n = two_n // 2
    for name, t, shape in (("offsets", offsets, (H,)), ("amplitudes", amplitudes, (H,))):
        if not isinstance(t, torch.Tensor) or t.is_complex() or tuple(t.shape) != shape:
            raise ValueError(
                f"{name} must be a real tensor of shape {shape}; got "
                f"{tuple(getattr(t, 'shape', ()))}."
            )
    if not isinstance(base_metric, torch.Tensor) or tuple(base_metric.shape) != (n, n):
        raise ValueError(
            f"base_metric must be a Hermitian positive definite ({n}, {n}) tensor; got shape "
            f"{tuple(getattr(base_metric, 'shape', ()))}."
        )
    if not isinstance(centre, torch.Tensor) or tuple(centre.shape) != (n,):
        raise ValueError(
            f"centre must be a complex tensor of shape ({n},); got "
            f"{tuple(getattr(centre, 'shape', ()))}."
        )
    for name, t in (
        ("directions", directions),
        ("offsets", offsets),
        ("amplitudes", amplitudes),
        ("base_metric", base_metric),
        ("centre", centre),
    ):
        if not bool(torch.isfinite(t).all()):
            raise ValueError(f"{name} must be finite (no NaN or inf).")
    if bool((amplitudes < 0).any()):
        raise ValueError(
            f"amplitudes must be >= 0 (a negative ridge is not PSH); got min "
            f"{float(amplitudes.min()):.3g}."
        )
    cdtype = torch.complex128 if directions.dtype == torch.float64 else torch.complex64
    M = base_metric.to(cdtype)
    asym = float((M - M.mH).abs().max())
    if asym > 1e3 * torch.finfo(directions.dtype).eps * max(1.0, float(M.abs().max())):
        raise ValueError(f"base_metric must be Hermitian; max |M - M^H| = {asym:.3g}.")
    M = 0.5 * (M + M.mH)
    _, info = torch.linalg.cholesky_ex(M)
    if int(info) != 0:
        raise ValueError("base_metric must be positive definite (it is the metric's floor).")
    return M, centre.to(cdtype)


class RidgePotential(KahlerPotential):
    r"""Ridge PSH potential: softplus ridges plus a Hermitian quadratic.

    $K(z) = \sum_k a_k\,\mathrm{softplus}(w_k\cdot u + b_k) + (z-z_0)^\top M\,\overline{(z-z_0)}$.

    $u = (\mathrm{Re}(z - z_0), \mathrm{Im}(z - z_0)) \in \mathbb R^{2n}$. Strictly PSH with the
    closed-form Levi matrix (see the module docstring for the derivation)
    $$G[a, b] = M[a, b] + \tfrac14\sum_k a_k\,\sigma(s_k)(1-\sigma(s_k))\,
      \overline{c_{k,a}}\,c_{k,b},\qquad c_k = w_{k,x} + i\,w_{k,y},$$
    so $G \succeq M$ everywhere. Cost O(H n²) per point, no autodiff. Built by
    `kahlergeom.surrogates.fit_kahler` (the default family) or directly.

    Args:
        directions: real ``(H, 2n)``, rows $w_k$.
        offsets: real ``(H,)``, $b_k$.
        amplitudes: real ``(H,)``, $a_k \ge 0$.
        base_metric: Hermitian positive definite ``(n, n)``, $M$ (the Levi matrix of the
            quadratic part, the metric's floor).
        centre: complex ``(n,)``, $z_0$ (default zeros).
    """

    def __init__(
        self,
        directions: torch.Tensor,
        offsets: torch.Tensor,
        amplitudes: torch.Tensor,
        base_metric: torch.Tensor,
        centre: torch.Tensor | None = None,
    ):
        if centre is None and isinstance(directions, torch.Tensor) and directions.ndim == 2:
            cdtype = torch.complex128 if directions.dtype == torch.float64 else torch.complex64
            centre = torch.zeros(directions.shape[1] // 2, dtype=cdtype)
        M, centre = _check_ridge(directions, offsets, amplitudes, base_metric, centre)
        self.directions, self.offsets, self.amplitudes = directions, offsets, amplitudes
        self.base_metric, self.centre = M, centre
        super().__init__(directions.shape[1] // 2)

    @property
    def n_ridges(self) -> int:
        """Number of ridges H."""
        return self.directions.shape[0]

    def _u(self, z):
        d = z - self.centre.to(device=z.device, dtype=z.dtype)
        return d, torch.cat([d.real, d.imag], -1)

    def _params(self, z):
        real = z.real.dtype
        return (
            self.directions.to(device=z.device, dtype=real),
            self.offsets.to(device=z.device, dtype=real),
            self.amplitudes.to(device=z.device, dtype=real),
            self.base_metric.to(device=z.device, dtype=z.dtype),
        )

    def __call__(self, z):
        d, u = self._u(z)
        W, b, a, M = self._params(z)
        s = u @ W.transpose(0, 1) + b
        ridges = (_softplus(s) * a).sum(-1)
        # (z − z0)ᵀ M conj(z − z0) is real for Hermitian M; its Levi matrix is M.
        quad = (d * (d.conj() @ M.transpose(-1, -2))).sum(-1).real
        return ridges + quad

    def partial(self, z):
        r"""$\partial_a K = \tfrac12\sum_k a_k\,\sigma(s_k)\,\overline{c_{k,a}}
        + \sum_b M[a, b]\,\overline{(z - z_0)_b}$, ``(..., n)``."""
        d, u = self._u(z)
        W, b, a, M = self._params(z)
        n = self.n
        sig = torch.sigmoid(u @ W.transpose(0, 1) + b) * a  # (..., H)
        cbar = torch.complex(W[:, :n], -W[:, n:])  # (H, n)
        return 0.5 * (sig.to(z.dtype) @ cbar) + d.conj() @ M.transpose(-1, -2)

    def levi(self, z):
        _, u = self._u(z)
        W, b, a, M = self._params(z)
        G = ridge_levi(u.reshape(-1, 2 * self.n), W, b, a, M)
        return G.reshape(*z.shape[:-1], self.n, self.n)

    def __repr__(self):
        return f"RidgePotential(H={self.n_ridges}, n={self.n})"
