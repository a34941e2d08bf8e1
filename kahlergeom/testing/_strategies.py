"""Hypothesis strategies for complex points, matrices and plurisubharmonic potentials.

Every strategy draws plain floats (so hypothesis can shrink a failure to simple numbers such
as 0) and assembles torch tensors from them. Parameters are built in float64 / complex128; the
potentials cast them to the dtype of the point they are evaluated at.
"""

from __future__ import annotations

import numpy as np
import torch
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from kahlergeom.potentials import (
    GaussianMixturePotential,
    KahlerPotential,
    LogSumExp,
    PotentialSum,
    Quadratic,
    sq_norm,
)

__all__ = [
    "AffineLogNorm",
    "AffineSquaredNorm",
    "PotentialSum",
    "ball_points",
    "complex_arrays",
    "domain_points",
    "half_plane_points",
    "hermitian_pd_matrices",
    "kahlergeom_settings",
    "points",
    "polydisc_points",
    "psh_potentials",
    "unitary_matrices",
]

_COMPLEX = (torch.complex64, torch.complex128)


def _check_complex_dtype(dtype) -> None:
    if dtype not in _COMPLEX:
        raise ValueError(f"dtype must be torch.complex64 or torch.complex128; got {dtype}.")


def complex_arrays(shape, *, scale: float = 2.0, dtype=torch.complex128):
    """Complex tensors of the given shape, real and imaginary parts uniform-ish in [-scale, scale].

    Returns a strategy of complex torch tensors (``dtype``, CPU).
    """
    _check_complex_dtype(dtype)
    try:
        shape = tuple(int(d) for d in shape)
    except (TypeError, ValueError):
        raise ValueError(f"shape must be a tuple of integers >= 0; got {shape!r}.") from None
    if any(d < 0 for d in shape):
        raise ValueError(f"shape must be a tuple of integers >= 0; got {shape!r}.")
    scale = _check_positive(scale, "scale")
    floats = st.floats(
        -scale, scale, allow_nan=False, allow_infinity=False, allow_subnormal=False, width=64
    )
    arrays = hnp.arrays(np.float64, (*shape, 2), elements=floats)
    return arrays.map(lambda a: torch.view_as_complex(torch.from_numpy(a).clone()).to(dtype))


def points(
    n: int,
    *,
    batch=(),
    radius: float | None = None,
    scale: float = 2.0,
    margin: float = 0.05,
    dtype=torch.complex128,
):
    r"""Complex points of shape ``(*batch, n)``.

    Without ``radius``: real and imaginary parts in ``[-scale, scale]``. With ``radius``: points
    of the ball $|z| \le (1 - \text{margin})\,\text{radius}$ (a drawn point of the box is rescaled
    radially into the ball, so the origin and points near the rim both occur).

    Example:
        >>> from hypothesis import given
        >>> @given(points(2, radius=1.0))
        ... def test_inside(z):
        ...     assert float(z.abs().square().sum()) < 1
    """
    if not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be an integer >= 1; got {n!r}.")
    if radius is not None and not (isinstance(radius, int | float) and radius > 0):
        raise ValueError(f"radius must be > 0 or None; got {radius!r}.")
    _check_complex_dtype(dtype)
    _check_positive(scale, "scale")
    _check_margin(margin)
    shape = (*tuple(batch), n)
    raw = complex_arrays(shape, scale=scale, dtype=torch.complex128)
    if radius is None:
        return raw.map(lambda z: z.to(dtype))
    fraction = st.floats(0.0, 1.0 - margin, allow_subnormal=False, width=64)
    if batch:
        # Rim points are drawn on purpose: hypothesis alone rarely picks the largest radius.
        fraction = st.one_of(fraction, st.just(1.0 - margin))
        fractions = hnp.arrays(np.float64, tuple(batch), elements=fraction)
    else:
        fractions = st.one_of(fraction, st.just(1.0 - margin)).map(np.float64)

    def into_ball(args):
        z, frac = args
        norm = torch.linalg.vector_norm(z, dim=-1, keepdim=True)
        e1 = torch.zeros_like(z)
        e1[..., 0] = 1.0
        # A zero draw points along e_1, so the radius alone decides where the point lies.
        direction = torch.where(norm > 0, z / norm.clamp_min(1e-300), e1)
        r = radius * torch.as_tensor(frac, dtype=torch.float64).unsqueeze(-1)
        return (r * direction).to(dtype)

    return st.tuples(raw, fractions).map(into_ball)


def unitary_matrices(n: int, *, dtype=torch.complex128):
    """Unitary n×n matrices: Q of the QR decomposition of a drawn complex matrix (phases fixed)."""
    _check_n(n)
    _check_complex_dtype(dtype)

    def to_unitary(A):
        A = A.numpy() + np.eye(n)  # never the zero matrix
        Q, R = np.linalg.qr(A)  # numpy: cheaper than torch for tiny matrices
        d = np.diagonal(R)
        phase = np.where(np.abs(d) > 0, d / np.maximum(np.abs(d), 1e-300), 1.0)
        return torch.from_numpy(Q * phase[None, :]).to(dtype)

    return complex_arrays((n, n), scale=1.0).map(to_unitary)


def hermitian_pd_matrices(
    n: int, *, min_eig: float = 0.1, max_eig: float = 10.0, dtype=torch.complex128
):
    """Hermitian positive definite n×n matrices U diag(λ) U^H with λ in ``[min_eig, max_eig]``.

    The spectrum bounds keep the condition number ≤ max_eig / min_eig.
    """
    _check_n(n)
    _check_complex_dtype(dtype)
    if not 0 < min_eig <= max_eig:
        raise ValueError(f"need 0 < min_eig <= max_eig; got {min_eig!r}, {max_eig!r}.")
    eigs = hnp.arrays(
        np.float64, (n,), elements=st.floats(min_eig, max_eig, allow_subnormal=False, width=64)
    )

    def build(args):
        U, lam = args
        lam = torch.as_tensor(lam, dtype=torch.float64).to(U.dtype)
        P = (U * lam.unsqueeze(-2)) @ U.mH
        return (0.5 * (P + P.mH)).to(dtype)

    return st.tuples(unitary_matrices(n), eigs).map(build)


# -- potentials used by psh_potentials ----------------------------------------------------------


def _affine(A: torch.Tensor, b: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """w = A z + b for points z (..., n): (..., r)."""
    A = A.to(device=z.device, dtype=z.dtype)
    return z @ A.transpose(-1, -2) + b.to(device=z.device, dtype=z.dtype)


def _check_affine(A, b):
    if not isinstance(A, torch.Tensor) or A.ndim != 2 or not A.is_complex():
        raise ValueError(f"A must be a complex tensor of shape (r, n); got {A!r}.")
    if not isinstance(b, torch.Tensor) or b.shape != A.shape[:1] or not b.is_complex():
        raise ValueError(f"b must be a complex tensor of shape ({A.shape[0]},); got {b!r}.")


class AffineSquaredNorm(KahlerPotential):
    r"""$K(z) = |Az + b|^2$ (A complex r×n): PSH, Levi matrix $G = A^\top \bar A$."""

    def __init__(self, A: torch.Tensor, b: torch.Tensor):
        _check_affine(A, b)
        self.A, self.b = A, b
        super().__init__(A.shape[1])

    def __call__(self, z):
        return sq_norm(_affine(self.A, self.b, z))


class AffineLogNorm(KahlerPotential):
    r"""$K(z) = \log(1 + |Az + b|^2)$: the Fubini–Study potential pulled back by an affine map.

    PSH (a holomorphic pullback of a PSH function), Levi matrix $A^\top G_{FS}(Az+b) \bar A$.
    """

    def __init__(self, A: torch.Tensor, b: torch.Tensor):
        _check_affine(A, b)
        self.A, self.b = A, b
        super().__init__(A.shape[1])

    def __call__(self, z):
        return torch.log1p(sq_norm(_affine(self.A, self.b, z)))


def _quadratic(n):
    return st.tuples(complex_arrays((n,), scale=1.0), hermitian_pd_matrices(n)).map(
        lambda a: Quadratic(*a)
    )


def _affine_term(n, cls):
    r = st.integers(1, n)
    return r.flatmap(
        lambda r: st.tuples(complex_arrays((r, n), scale=1.0), complex_arrays((r,), scale=1.0)).map(
            lambda a: cls(*a)
        )
    )


def _simple_term(n):
    return st.one_of(
        _quadratic(n), _affine_term(n, AffineSquaredNorm), _affine_term(n, AffineLogNorm)
    )


def _sum(n):
    return st.lists(_simple_term(n), min_size=1, max_size=3).map(
        lambda ts: ts[0] if len(ts) == 1 else PotentialSum(ts)
    )


def _lse(n):
    m = st.integers(1, 3)
    return m.flatmap(
        lambda m: st.tuples(
            st.lists(_simple_term(n), min_size=m, max_size=m),
            hnp.arrays(np.float64, (m,), elements=st.floats(-2.0, 2.0, width=64)),
            st.floats(0.2, 5.0, width=64),
        ).map(lambda a: LogSumExp(a[0], torch.from_numpy(a[1].copy()), temperature=a[2]))
    )


def _mixture(n):
    m = st.integers(1, 4)
    return m.flatmap(
        lambda m: st.tuples(
            complex_arrays((m, n), scale=1.5),
            st.lists(hermitian_pd_matrices(n), min_size=m, max_size=m),
            hnp.arrays(np.float64, (m,), elements=st.floats(0.1, 10.0, width=64)),
            st.floats(0.2, 5.0, width=64),
        ).map(
            lambda a: GaussianMixturePotential(
                a[0], torch.stack(a[1]), torch.from_numpy(a[2].copy()), temperature=a[3]
            )
        )
    )


def psh_potentials(n: int, *, kinds=("sum", "lse", "mixture")):
    r"""Random plurisubharmonic potentials on all of C^n.

    Drawn from: sums of `Quadratic` $(z-m)^H P (z-m)$, Fubini–Study-type terms
    $\log(1 + |Az + b|^2)$ (`AffineLogNorm`) and $|Az + b|^2$ (`AffineSquaredNorm`);
    `LogSumExp` of such terms with random biases and temperature; and
    `GaussianMixturePotential` with random means, precisions, weights and temperature.
    Every one is PSH by construction (sums, holomorphic pullbacks and log-sum-exp preserve
    plurisubharmonicity), so its Levi matrix must be positive semidefinite everywhere.

    Args:
        n: complex dimension.
        kinds: any of ``"sum"``, ``"lse"``, ``"mixture"``.
    """
    if not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be an integer >= 1; got {n!r}.")
    table = {"sum": _sum, "lse": _lse, "mixture": _mixture}
    unknown = set(kinds) - set(table)
    if unknown or not kinds:
        raise ValueError(f"kinds must be a non-empty subset of {sorted(table)}; got {kinds!r}.")
    return st.one_of([table[k](n) for k in kinds])


# -- domain-aware points and a settings profile ----------------------------------------------


def _check_n(n) -> int:
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be an integer >= 1; got {n!r}.")
    return n


def _check_margin(margin) -> float:
    if not (isinstance(margin, int | float) and 0 <= margin < 1):
        raise ValueError(f"margin must be a number in [0, 1); got {margin!r}.")
    return float(margin)


def _check_positive(value, name: str) -> float:
    if not (isinstance(value, int | float) and not isinstance(value, bool) and value > 0):
        raise ValueError(f"{name} must be a number > 0; got {value!r}.")
    if not np.isfinite(value):
        raise ValueError(f"{name} must be finite; got {value!r}.")
    return float(value)


def _floats(lo: float, hi: float):
    return st.floats(lo, hi, allow_nan=False, allow_infinity=False, allow_subnormal=False)


def ball_points(
    n: int, *, radius: float = 1.0, margin: float = 0.05, batch=(), dtype=torch.complex128
):
    r"""Points of the ball $|z| \le (1-\text{margin})\,\text{radius}$ (e.g. `ComplexHyperbolic`).

    The same as ``points(n, radius=radius, margin=margin, ...)``; rim points occur on purpose.
    """
    _check_n(n)
    _check_margin(margin)
    return points(
        n, batch=batch, radius=_check_positive(radius, "radius"), margin=margin, dtype=dtype
    )


def polydisc_points(
    n: int, *, radius: float = 1.0, margin: float = 0.05, batch=(), dtype=torch.complex128
):
    r"""Points of the polydisc $|z_a| \le (1-\text{margin})\,\text{radius}$ for every a.

    Each coordinate is drawn as modulus ∈ [0, (1−margin)·radius] (the rim value included as
    an explicit case) and an angle; shape ``(*batch, n)``, ``dtype`` complex.
    """
    _check_n(n)
    _check_complex_dtype(dtype)
    r_max = (1 - _check_margin(margin)) * _check_positive(radius, "radius")
    shape = (*tuple(batch), n)
    moduli = hnp.arrays(np.float64, shape, elements=st.one_of(_floats(0.0, r_max), st.just(r_max)))
    angles = hnp.arrays(np.float64, shape, elements=_floats(-np.pi, np.pi))

    def build(args):
        r, theta = args
        return torch.polar(torch.from_numpy(r.copy()), torch.from_numpy(theta.copy())).to(dtype)

    return st.tuples(moduli, angles).map(build)


def half_plane_points(
    n: int, *, scale: float = 2.0, min_imag: float = 0.05, batch=(), dtype=torch.complex128
):
    r"""Points of the product of upper half-planes: $\mathrm{Im}\,z_a \ge$ ``min_imag`` for all a.

    Real parts in ``[-scale, scale]``, imaginary parts in ``[min_imag, min_imag + scale]``
    (``min_imag`` itself included as an explicit case, so points near the boundary occur).
    """
    _check_n(n)
    _check_complex_dtype(dtype)
    scale = _check_positive(scale, "scale")
    min_imag = _check_positive(min_imag, "min_imag")
    shape = (*tuple(batch), n)
    re = hnp.arrays(np.float64, shape, elements=_floats(-scale, scale))
    im = hnp.arrays(
        np.float64,
        shape,
        elements=st.one_of(_floats(min_imag, min_imag + scale), st.just(min_imag)),
    )
    return st.tuples(re, im).map(
        lambda a: torch.complex(torch.from_numpy(a[0].copy()), torch.from_numpy(a[1].copy())).to(
            dtype
        )
    )


def domain_points(
    potential: KahlerPotential,
    *,
    batch=(),
    scale: float = 2.0,
    center=None,
    margin: float = 0.05,
    dtype=torch.complex128,
):
    r"""Points inside ``potential``'s domain (its ``contains``), for any potential.

    Candidates are drawn in the box $[-\text{scale}, \text{scale}]$ (real and imaginary
    parts). Without ``center`` a candidate outside the domain is rejected (hypothesis
    filtering: fine when the domain fills much of the box). With ``center`` (a point of the
    domain, complex ``(n,)``) a candidate outside is pulled towards it,
    $w = c + 2^{-k}(z - c)$ for the first k ≤ 60 that keeps a relative ``margin`` from the
    boundary ($c + (w - c)/(1 - \text{margin})$ inside too), which works for every domain
    that is star-shaped about the center (balls, polydiscs, the Siegel disk, half-planes
    about an interior point) and keeps points off the boundary, where metrics overflow.
    Each point of a batch is drawn on its own.

    Example:
        >>> from hypothesis import given
        >>> from kahlergeom.potentials import SiegelDisk
        >>> D = SiegelDisk(2)
        >>> @given(domain_points(D, center=torch.zeros(4, dtype=torch.complex128)))
        ... def test_inside(z):
        ...     assert bool(D.contains(z))
    """
    if not isinstance(potential, KahlerPotential):
        raise ValueError(f"potential must be a KahlerPotential; got {type(potential).__name__}.")
    _check_complex_dtype(dtype)
    n = potential.n
    scale = _check_positive(scale, "scale")
    if center is not None:
        if not isinstance(center, torch.Tensor) or center.shape != (n,) or not center.is_complex():
            raise ValueError(f"center must be a complex tensor of shape ({n},); got {center!r}.")
        center = center.to(dtype)
        if not bool(potential.contains(center)):
            raise ValueError(f"center must lie in the domain ({potential.domain_description}).")

    def inside(z):
        return bool(potential.contains(z))

    stretch = 1 / (1 - _check_margin(margin))

    def clear(w):
        return inside(w) and (center is None or inside(center + (w - center) * stretch))

    def pull(z):
        if center is None:
            return z
        for k in range(61):
            w = center + (z - center) * 2.0**-k
            if clear(w):
                return w
        return z

    one = complex_arrays((n,), scale=scale, dtype=dtype).map(pull).filter(clear)
    count = int(np.prod(tuple(batch))) if batch else None
    if count is None:
        return one
    return st.lists(one, min_size=count, max_size=count).map(
        lambda zs: torch.stack(zs).reshape(*tuple(batch), n)
    )


#: Settings for property tests of kahlergeom objects: no per-example deadline (the first call
#: of a ``torch.func`` transform is slow and timings vary under load, so hypothesis' default
#: 200 ms deadline fails at random) and no "too slow" health check. Use it as a decorator,
#: ``@kahlergeom_settings``, or load the registered profile ``"kahlergeom"`` (or
#: ``"kahlergeom-ci"``: derandomized, fewer examples) in your conftest.py.
kahlergeom_settings = settings(
    deadline=None,
    max_examples=50,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.register_profile("kahlergeom", kahlergeom_settings)
settings.register_profile(
    "kahlergeom-ci", kahlergeom_settings, max_examples=20, derandomize=True, print_blob=True
)
