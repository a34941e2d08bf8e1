"""Potentials of the classical Kähler manifolds, with closed-form Levi matrices."""

from __future__ import annotations

import torch

from kahlergeom._checks import check_positive_int
from kahlergeom.potentials._base import KahlerPotential, sq_norm


def _eye_like(z: torch.Tensor, n: int) -> torch.Tensor:
    return torch.eye(n, dtype=z.dtype, device=z.device)


def _outer_conj(z: torch.Tensor) -> torch.Tensor:
    """M[..., a, b] = conj(z_a) z_b."""
    return z.conj().unsqueeze(-1) * z.unsqueeze(-2)


class Flat(KahlerPotential):
    r"""Flat C^n: $K = |z|^2$, $G = I$ (the Euclidean metric of R^{2n})."""

    #: Curvature ≤ 0 on a simply connected domain: geodesics are unique and minimising.
    hadamard = True

    def __call__(self, z):
        return sq_norm(z)

    def levi(self, z):
        return _eye_like(z, self.n).expand(*z.shape[:-1], self.n, self.n).clone()

    def partial(self, z):
        return z.conj()


class FubiniStudy(KahlerPotential):
    r"""Fubini–Study metric in the affine chart of CP^n: $K = \log(1 + |z|^2)$.

    $G[a,b] = \dfrac{(1+|z|^2)\,\delta_{ab} - \bar z_a z_b}{(1+|z|^2)^2}$; holomorphic sectional
    curvature 2, Ricci $= (n+1)G$, total volume $\pi^n/n!$.
    """

    def __call__(self, z):
        return torch.log1p(sq_norm(z))

    def levi(self, z):
        s = sq_norm(z)[..., None, None]
        return ((1 + s) * _eye_like(z, self.n) - _outer_conj(z)) / (1 + s) ** 2

    def partial(self, z):
        return z.conj() / (1 + sq_norm(z)).unsqueeze(-1)


class ComplexHyperbolic(KahlerPotential):
    r"""Complex hyperbolic space as the unit ball (Bergman-type metric): $K = -\log(1 - |z|^2)$.

    $G[a,b] = \dfrac{(1-|z|^2)\,\delta_{ab} + \bar z_a z_b}{(1-|z|^2)^2}$; holomorphic sectional
    curvature −2, Ricci $= -(n+1)G$. For n = 1 this is geomstats' ComplexPoincareDisk.
    """

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
        # log det of a Hermitian positive definite matrix via Cholesky (stable under autodiff).
        L = torch.linalg.cholesky(M)
        return -2 * torch.log(torch.diagonal(L, dim1=-2, dim2=-1).real).sum(-1)

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

    def __repr__(self):
        return f"SiegelDisk(k={self.k})"
