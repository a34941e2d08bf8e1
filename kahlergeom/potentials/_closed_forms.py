"""Potentials of the classical Kähler manifolds, with closed-form Levi matrices."""

from __future__ import annotations

import torch

from kahlergeom._checks import check_positive_int
from kahlergeom._linalg import hermitian_logdet
from kahlergeom.potentials._base import KahlerPotential, sq_norm


def _eye_like(z: torch.Tensor, n: int) -> torch.Tensor:
    return torch.eye(n, dtype=z.dtype, device=z.device)


def _outer_conj(z: torch.Tensor) -> torch.Tensor:
    """M[..., a, b] = conj(z_a) z_b."""
    return z.conj().unsqueeze(-1) * z.unsqueeze(-2)


def _dot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Σ_b conj(a_b) b_b over the last axis, keeping it (``(..., 1)``)."""
    return torch.linalg.vecdot(a, b).unsqueeze(-1)


def _radial_x(z: torch.Tensor) -> torch.Tensor:
    """|z|², real ``(..., 1)``."""
    return _dot(z, z).real


# Potentials φ(|z|²) (Fubini–Study, the ball) have Christoffel symbols
# Γ^l_ab = c(|z|²)(δ_la z̄_b + δ_lb z̄_a), so Γ(u, v) = c (u ⟨z, v⟩ + v ⟨z, u⟩) with
# ⟨a, b⟩ = Σ conj(a) b. Written with few tensor operations: geodesic integrations evaluate them
# millions of times on small batches, where the per-operation overhead is the whole cost.
def _split_real(u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    n = u.shape[-1] // 2
    return u[..., :n], u[..., n:]


def _real_inner(u: torch.Tensor, r: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Real and imaginary parts of ⟨z, v⟩ = Σ conj(z_a) v_a from real coordinates."""
    (x, y), (p, q) = _split_real(u), _split_real(r)
    return (x * p + y * q).sum(-1), (x * q - y * p).sum(-1)


def _real_wedge_sq(u: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
    """Σ_{a<b} |z_a v_b − z_b v_a|² = |z|²|v|² − |⟨z, v⟩|² (Lagrange), without cancellation."""
    (x, y), (p, q) = _split_real(u), _split_real(r)
    A = x.unsqueeze(-1) * p.unsqueeze(-2) - y.unsqueeze(-1) * q.unsqueeze(-2)  # Re z_a v_b
    B = x.unsqueeze(-1) * q.unsqueeze(-2) + y.unsqueeze(-1) * p.unsqueeze(-2)  # Im z_a v_b
    return 0.5 * ((A - A.mT).square() + (B - B.mT).square()).sum((-1, -2))


def _radial_christoffel(z, u, v, c):
    """Γ(u, v) for symbols c(|z|²)(δ_la z̄_b + δ_lb z̄_a); ``c`` real ``(..., 1)``."""
    if v is u:
        return u * (2 * c * _dot(z, u))
    return c * (u * _dot(z, v) + v * _dot(z, u))


def _radial_christoffel_derivative(z, dz, u, v, c, dc_dx):
    """Derivative of `_radial_christoffel` along the real direction ``dz`` (``c = c(|z|²)``,
    ``dc_dx = c'(|z|²)``, both ``(..., 1)``)."""
    dcx = 2 * dc_dx * _dot(z, dz).real  # c' · d|z|² along dz
    if v is u:
        return u * (2 * (dcx * _dot(z, u) + c * _dot(dz, u)))
    return dcx * (u * _dot(z, v) + v * _dot(z, u)) + c * (u * _dot(dz, v) + v * _dot(dz, u))


def _radial_spray_linearised(z, u, dz, du, c, dc_dx):
    """`KahlerPotential.christoffel_spray_linearised` for symbols c(|z|²)(δ_la z̄_b + δ_lb z̄_a):
    with s = ⟨z, u⟩, 2[(c' d|z|² s + c ds) u + c s du], ds = ⟨dz, u⟩ + ⟨z, du⟩."""
    s = _dot(z, u)
    ds = _dot(dz, u) + _dot(z, du)
    dcx = 2 * dc_dx * _dot(z, dz).real
    cs = 2 * c * s
    return u * (2 * (dcx * s + c * ds)) + du * cs


class Flat(KahlerPotential):
    r"""Flat C^n: $K = |z|^2$, $G = I$ (the Euclidean metric of R^{2n})."""

    ddbar_mode = "batched"  # elementwise: see KahlerPotential.ddbar_mode

    #: Curvature ≤ 0 on a simply connected domain: geodesics are unique and minimising.
    hadamard = True

    def __call__(self, z):
        return sq_norm(z)

    def levi(self, z):
        return _eye_like(z, self.n).expand(*z.shape[:-1], self.n, self.n).clone()

    def partial(self, z):
        return z.conj()

    def squared_norm_real(self, u, r):
        """|v|²."""
        return torch.broadcast_to(r, torch.broadcast_shapes(u.shape, r.shape)).square().sum(-1)

    def christoffel_contract(self, z, u, v):
        """Γ = 0."""
        return torch.zeros(
            torch.broadcast_shapes(z.shape, u.shape, v.shape), dtype=z.dtype, device=z.device
        )

    def christoffel_contract_derivative(self, z, dz, u, v):
        """0."""
        shape = torch.broadcast_shapes(z.shape, dz.shape, u.shape, v.shape)
        return torch.zeros(shape, dtype=z.dtype, device=z.device)

    def christoffel_spray_linearised(self, z, u, dz, du):
        """0."""
        shape = torch.broadcast_shapes(z.shape, u.shape, dz.shape, du.shape)
        return torch.zeros(shape, dtype=z.dtype, device=z.device)

    def log_det_levi(self, z):
        r"""$\log\det G = 0$, real ``(...)``."""
        return torch.zeros(z.shape[:-1], dtype=z.real.dtype, device=z.device)


def _sq_norm_excluding_each(z: torch.Tensor) -> torch.Tensor:
    r"""$\sum_{c \ne a} |z_c|^2$ for each a, real ``(..., n)``, without the cancellation of
    $|z|^2 - |z_a|^2$ (which loses everything when one coordinate dominates)."""
    sq = torch.view_as_real(z).square().sum(-1)  # |z_c|^2, (..., n)
    n = z.shape[-1]
    off = 1 - torch.eye(n, dtype=sq.dtype, device=sq.device)
    return (sq.unsqueeze(-2) * off).sum(-1)


def _representable_radius_sq(dtype: torch.dtype) -> float:
    """Largest |z|² at which the Fubini–Study metric's smallest eigenvalue 1/(1+|z|²)² is a
    normal number of ``dtype``'s real type (beyond it G underflows and log det G is lost)."""
    real = torch.float32 if dtype in (torch.complex64, torch.float32) else torch.float64
    return float(torch.finfo(real).tiny) ** -0.5


class FubiniStudy(KahlerPotential):
    r"""Fubini–Study metric in the affine chart of CP^n: $K = \log(1 + |z|^2)$.

    $G[a,b] = \dfrac{(1+|z|^2)\,\delta_{ab} - \bar z_a z_b}{(1+|z|^2)^2}$; holomorphic sectional
    curvature 2, Ricci $= (n+1)G$, $\log\det G = -(n+1)\log(1+|z|^2)$, total volume
    $\pi^n/n!$.

    Evaluated without overflow or cancellation: with $t = 1/(1+|z|^2)$ and $u = \sqrt t\,z$
    ($|u| < 1$), $G[a,b] = t\,[(1 + \sum_{c\ne a}|z_c|^2)\,t\,\delta_{ab} - \bar u_a u_b\,
    (1-\delta_{ab})]$, so at $|z| = 10^8$ in float64 $G$ keeps its true entries
    ($\sim 10^{-32}$ along z) instead of cancelling to 0. The chart is all of $\mathbb C^n$,
    but `contains` is False where $1/(1+|z|^2)^2$ is not a normal number of the point's dtype
    ($|z| \gtrsim 3\cdot10^{9}$ in complex64, $8\cdot10^{76}$ in complex128): there G
    underflows, and checked entry points refuse such points instead of returning NaN.
    """

    ddbar_mode = "batched"  # elementwise: see KahlerPotential.ddbar_mode

    domain_description = (
        "all of C^n, numerically |z|^2 < 1/sqrt(tiny) of the point's real dtype so that G is "
        "representable (|z| < 3.0e9 in complex64, 8.2e76 in complex128; use complex128 for "
        "far points)"
    )

    def __call__(self, z):
        return torch.log1p(sq_norm(z))

    def contains(self, z):
        # |z|² as a matrix-vector product (a check, no autodiff): 3–8× faster than sq_norm's
        # sum over the short last axes for n ≤ 2 (it runs on every checked call); rounding
        # order aside the same number, and the bound lies far beyond any rounding difference.
        v = torch.view_as_real(z).flatten(-2)
        return v.square() @ v.new_ones(v.shape[-1]) < _representable_radius_sq(z.dtype)

    def levi(self, z):
        t = 1 / (1 + sq_norm(z))  # (...), in (0, 1]
        u = z * t.sqrt().unsqueeze(-1).to(z.dtype)
        eye = _eye_like(z, self.n)
        diag = ((1 + _sq_norm_excluding_each(z)) * t.unsqueeze(-1)).to(z.dtype)
        inner = torch.diag_embed(diag) - _outer_conj(u) * (1 - eye)
        return t[..., None, None].to(z.dtype) * inner

    def partial(self, z):
        return z.conj() / (1 + sq_norm(z)).unsqueeze(-1)

    def squared_norm_real(self, u, r):
        r"""$h = (|v|^2 + \sum_{a<b}|z_a v_b - z_b v_a|^2)/(1+|z|^2)^2$: the numerator is
        $|v|^2(1+|z|^2) - |\langle z, v\rangle|^2$ by Lagrange's identity, without its
        cancellation far out in the chart."""
        s = 1 + u.square().sum(-1)
        return (r.square().sum(-1) + _real_wedge_sq(u, r)) / s.square()

    def christoffel_contract(self, z, u, v):
        r"""$\Gamma^l_{ab} = -(\delta_{la}\bar z_b + \delta_{lb}\bar z_a)/(1+|z|^2)$."""
        return _radial_christoffel(z, u, v, -(1 + _radial_x(z)).reciprocal())

    def christoffel_contract_derivative(self, z, dz, u, v):
        t = (1 + _radial_x(z)).reciprocal()
        return _radial_christoffel_derivative(z, dz, u, v, -t, t * t)

    def christoffel_spray_linearised(self, z, u, dz, du):
        t = (1 + _radial_x(z)).reciprocal()
        return _radial_spray_linearised(z, u, dz, du, -t, t * t)

    def log_det_levi(self, z):
        r"""$\log\det G = -(n+1)\log(1+|z|^2)$, real ``(...)`` (closed form, no matrix)."""
        return -(self.n + 1) * torch.log1p(sq_norm(z))


class ComplexHyperbolic(KahlerPotential):
    r"""Complex hyperbolic space as the unit ball (Bergman-type metric): $K = -\log(1 - |z|^2)$.

    $G[a,b] = \dfrac{(1-|z|^2)\,\delta_{ab} + \bar z_a z_b}{(1-|z|^2)^2}$; holomorphic sectional
    curvature −2, Ricci $= -(n+1)G$. For n = 1 this is geomstats' ComplexPoincareDisk.
    """

    ddbar_mode = "batched"  # elementwise: see KahlerPotential.ddbar_mode

    domain_description = "the open unit ball |z| < 1"
    #: Curvature ≤ 0 on a simply connected domain: geodesics are unique and minimising.
    hadamard = True

    def __call__(self, z):
        return -torch.log1p(-sq_norm(z))

    def contains(self, z):
        return sq_norm(z) < 1

    def levi(self, z):
        s = sq_norm(z)[..., None, None]
        return ((1 - s) * _eye_like(z, self.n) + _outer_conj(z)) / (1 - s) ** 2

    def partial(self, z):
        return z.conj() / (1 - sq_norm(z)).unsqueeze(-1)

    def squared_norm_real(self, u, r):
        r"""$h = |v|^2/(1-|z|^2) + |\langle z, v\rangle|^2/(1-|z|^2)^2$."""
        s = 1 - u.square().sum(-1)
        re, im = _real_inner(u, r)
        return r.square().sum(-1) / s + (re.square() + im.square()) / s.square()

    def christoffel_contract(self, z, u, v):
        r"""$\Gamma^l_{ab} = (\delta_{la}\bar z_b + \delta_{lb}\bar z_a)/(1-|z|^2)$."""
        return _radial_christoffel(z, u, v, (1 - _radial_x(z)).reciprocal())

    def christoffel_contract_derivative(self, z, dz, u, v):
        t = (1 - _radial_x(z)).reciprocal()
        return _radial_christoffel_derivative(z, dz, u, v, t, t * t)

    def christoffel_spray_linearised(self, z, u, dz, du):
        t = (1 - _radial_x(z)).reciprocal()
        return _radial_spray_linearised(z, u, dz, du, t, t * t)

    def log_det_levi(self, z):
        r"""$\log\det G = -(n+1)\log(1-|z|^2)$, real ``(...)`` (closed form, no matrix)."""
        return -(self.n + 1) * torch.log1p(-sq_norm(z))


class SiegelDisk(KahlerPotential):
    r"""Siegel disk of k×k complex matrices Z with $I - Z^H Z \succ 0$; n = k².

    Points are flattened row-major: ``z[..., i*k + j] = Z[i, j]``.
    $K = -\log\det(I - Z^H Z)$ and
    $h(V, W) = \mathrm{tr}[(I - ZZ^H)^{-1} V (I - Z^HZ)^{-1} W^H]$, i.e.
    $G = A^\top \otimes B$ (Kronecker, row-major) with $A = (I - ZZ^H)^{-1}$,
    $B = (I - Z^H Z)^{-1}$.
    """

    domain_description = "the Siegel disk ||Z||_2 < 1 (I - Z^H Z positive definite)"
    #: Curvature ≤ 0 on a simply connected domain: geodesics are unique and minimising.
    hadamard = True

    def __init__(self, k: int):
        self.k = check_positive_int(k, "k")
        super().__init__(k * k)

    def _matrix(self, z):
        return z.reshape(*z.shape[:-1], self.k, self.k)

    def _eye(self, z):
        return torch.eye(self.k, dtype=z.dtype, device=z.device)

    def __call__(self, z):
        Z = self._matrix(z)
        M = self._eye(z) - Z.mH @ Z
        return -hermitian_logdet(M)  # via Cholesky: stable under autodiff

    def contains(self, z):
        Z = self._matrix(z)
        return torch.linalg.eigvalsh(self._eye(z) - Z.mH @ Z)[..., 0] > 0

    def levi(self, z):
        Z = self._matrix(z)
        eye = self._eye(z)
        A = torch.linalg.inv(eye - Z @ Z.mH)
        B = torch.linalg.inv(eye - Z.mH @ Z)
        k = self.k
        G = A.transpose(-1, -2)[..., :, None, :, None] * B[..., None, :, None, :]
        return G.reshape(*z.shape[:-1], k * k, k * k)

    def _flat(self, X):
        return X.reshape(*X.shape[:-2], self.k * self.k)

    def christoffel_contract(self, z, u, v):
        r"""$\Gamma(U, V) = U\,C\,V + V\,C\,U$ with $C = (I - Z^HZ)^{-1}Z^H$ (matrices
        row-major as the points): $\partial_U h(V, W) = h(\Gamma(U, V), W)$ for
        $h(V, W) = \mathrm{tr}[(I-ZZ^H)^{-1}V(I-Z^HZ)^{-1}W^H]$."""
        z, u, v = torch.broadcast_tensors(z, u, v)
        Z, U, V = self._matrix(z), self._matrix(u), self._matrix(v)
        C = torch.linalg.solve(self._eye(z) - Z.mH @ Z, Z.mH)
        return self._flat(U @ C @ V + V @ C @ U)

    def christoffel_contract_derivative(self, z, dz, u, v):
        z, dz, u, v = torch.broadcast_tensors(z, dz, u, v)
        Z, dZ, U, V = self._matrix(z), self._matrix(dz), self._matrix(u), self._matrix(v)
        B = torch.linalg.inv(self._eye(z) - Z.mH @ Z)
        # d[(I - ZᴴZ)⁻¹Zᴴ] = B (dZᴴZ + ZᴴdZ) B Zᴴ + B dZᴴ
        dC = B @ ((dZ.mH @ Z + Z.mH @ dZ) @ (B @ Z.mH) + dZ.mH)
        return self._flat(U @ dC @ V + V @ dC @ U)

    def __repr__(self):
        return f"SiegelDisk(k={self.k})"
