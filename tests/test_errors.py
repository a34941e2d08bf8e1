"""Bad input raises ValueError naming the argument (TypeError for the abstract base class).

Every test matches the message text, so a message that stops naming its argument fails here.
"""

from __future__ import annotations

import pytest
import torch

import kahlergeom as kg
from kahlergeom import KahlerManifold
from kahlergeom.potentials import (
    ComplexHyperbolic,
    Flat,
    FubiniStudy,
    GaussianMixturePotential,
    KahlerPotential,
    LogSumExp,
    Product,
    Quadratic,
    SiegelDisk,
    sq_norm,
)
from kahlergeom.wirtinger import closedness_residual, partial, wirtinger_jacobian

C128 = torch.complex128
Z = torch.zeros(3, 2, dtype=C128)
FS = KahlerManifold(FubiniStudy(2))


def _means(m=2, n=2):
    return torch.zeros(m, n, dtype=C128)


def _precisions(m=2, n=2):
    return torch.eye(n, dtype=C128).expand(m, n, n).clone()


# -- points -------------------------------------------------------------------------------------

BAD_POINTS = [
    (torch.zeros(3, 2), r"z must be complex \(torch.complex64 or torch.complex128\); got torch"),
    (torch.zeros(3, 2, dtype=torch.int64), r"z must be complex .*got torch.int64"),
    (torch.zeros(3, 3, dtype=C128), r"z must have last dimension n = 2; got shape \(3, 3\)"),
    (torch.zeros(3, 0, dtype=C128), r"z must have last dimension n = 2; got shape \(3, 0\)"),
    (torch.tensor(1j, dtype=C128), r"z must have shape \(\.\.\., n\) with n >= 1; got a 0-dim"),
    (
        torch.tensor([[0, 0], [1, float("nan")]], dtype=C128),
        r"z contains NaN or inf at 1 point\(s\), first at batch index \(1,\)",
    ),
    (torch.tensor([[float("inf"), 0]], dtype=C128), r"z contains NaN or inf"),
    ([0j, 0j], r"z must be a complex torch.Tensor of shape \(\.\.\., n\); got list"),
]


@pytest.mark.parametrize("z, match", BAD_POINTS)
def test_bad_points_ddbar(z, match):
    with pytest.raises(ValueError, match=match):
        kg.ddbar(FubiniStudy(2), z)
    with pytest.raises(ValueError, match=match):
        partial(FubiniStudy(2), z)


def test_finiteness_check_against_isfinite(gen):
    """check_points' one-sum fast path (kahlergeom/_checks.py) against torch.isfinite entry by
    entry: each non-finite value at each position, lazily conjugated / negated views, and
    finite points whose sum overflows (accepted: the fast path falls back)."""
    from kahlergeom._checks import _all_finite, check_points

    big = torch.finfo(torch.float64).max
    for dtype in (torch.complex64, C128):
        z = torch.randn(4, 3, dtype=dtype, generator=gen)
        assert _all_finite(z) and _all_finite(z[:0])
        for bad in (float("nan"), float("inf"), -float("inf")):
            for part in (1, 1j):
                for i in range(4):
                    w = z.clone()
                    w[i, i % 3] = bad * part if part == 1 else complex(0, bad)
                    for view in (w, w.conj(), torch._neg_view(w), w.T, w[:, ::2]):
                        assert _all_finite(view) == bool(torch.isfinite(view).all())
        hmax = torch.finfo(z.real.dtype).max
        huge = torch.full((3, 2), complex(hmax, hmax), dtype=dtype)  # its sum overflows
        assert not torch.isfinite(torch.view_as_real(huge).sum()) and _all_finite(huge)
        check_points(huge, 2)
    with pytest.raises(ValueError, match=r"z contains NaN or inf at 2 point\(s\)"):
        bad = [[big, 0], [1j * big, float("nan")], [0, -float("inf")]]
        check_points(torch.tensor(bad, dtype=C128))


@pytest.mark.parametrize("z, match", BAD_POINTS)
@pytest.mark.parametrize(
    "method",
    ["metric", "real_metric", "volume_density", "log_volume_density", "min_eigenvalue", "is_psh"],
)
def test_bad_points_manifold(method, z, match):
    with pytest.raises(ValueError, match=match):
        getattr(FS, method)(z)


def test_bad_points_closedness_and_jacobian():
    with pytest.raises(ValueError, match=r"z must be complex"):
        FS.closedness_residual(torch.zeros(2))
    with pytest.raises(ValueError, match=r"z must be complex"):
        closedness_residual(FubiniStudy(2).levi, torch.zeros(2))
    with pytest.raises(ValueError, match=r"z must be complex"):
        wirtinger_jacobian(lambda w: w, torch.zeros(2))


@pytest.mark.parametrize(
    "potential, z, match",
    [
        (
            ComplexHyperbolic(2),
            torch.tensor([[0.1, 0], [0.8, 0.7j]], dtype=C128),
            r"batch index \(1,\)",
        ),
        (ComplexHyperbolic(1), torch.tensor([1.0 + 0j], dtype=C128), r"open unit ball \|z\| < 1"),
        (SiegelDisk(2), torch.tensor([0.6, 0.6, 0.6, 0.6], dtype=C128), r"Siegel disk"),
        (
            Product([Flat(1), ComplexHyperbolic(1)]),
            torch.tensor([[5.0, 0.5], [0.0, 2.0]], dtype=C128),
            r"1 point\(s\) lie outside.*first at batch index \(1,\)",
        ),
    ],
)
def test_points_outside_domain(potential, z, match):
    with pytest.raises(ValueError, match=r"z: 1 point\(s\) lie outside the domain"):
        kg.ddbar(potential, z)
    with pytest.raises(ValueError, match=match):
        KahlerManifold(potential).metric(z)
    with pytest.raises(ValueError, match=match):
        KahlerManifold(potential).volume_density(z)


def test_tangent_vectors():
    with pytest.raises(
        ValueError, match=r"u must have the dtype of the point \(torch.complex128\)"
    ):
        FS.inner(Z, Z.to(torch.complex64), Z)
    with pytest.raises(ValueError, match=r"u of shape \(4, 2\) does not broadcast"):
        FS.inner(Z, torch.zeros(4, 2, dtype=C128), Z)
    with pytest.raises(ValueError, match=r"v must have last dimension n = 2"):
        FS.inner(Z, Z, torch.zeros(3, 3, dtype=C128))
    with pytest.raises(ValueError, match=r"v must be complex"):
        FS.norm(Z, torch.zeros(3, 2))
    with pytest.raises(ValueError, match=r"v contains NaN"):
        FS.norm(Z, torch.full((3, 2), float("nan"), dtype=C128))


# -- mixtures and quadratics --------------------------------------------------------------------


def test_mixture_precisions():
    P = _precisions()
    P[0, 0, 1] = 1.0  # not Hermitian
    with pytest.raises(
        ValueError, match=r"precisions\[0\] is not Hermitian \(max \|P - P\^H\| = 1"
    ):
        GaussianMixturePotential(_means(), P)
    P = _precisions()
    P[1, 1, 1] = -1.0  # Hermitian, indefinite
    with pytest.raises(ValueError, match=r"precisions\[1\] is not positive definite"):
        GaussianMixturePotential(_means(), P)
    with pytest.raises(
        ValueError, match=r"precisions must be a tensor of shape \(m, n, n\) = \(2, 2, 2\)"
    ):
        GaussianMixturePotential(_means(), _precisions(3))
    with pytest.raises(ValueError, match=r"means and precisions must be finite"):
        GaussianMixturePotential(_means() * float("nan"), _precisions())


def test_mixture_means():
    with pytest.raises(
        ValueError, match=r"means must be a complex tensor of shape \(m, n\); got torch.float"
    ):
        GaussianMixturePotential(torch.zeros(2, 2), _precisions())
    with pytest.raises(ValueError, match=r"means must be a complex tensor of shape \(m, n\)"):
        GaussianMixturePotential(torch.zeros(2, dtype=C128), _precisions())


@pytest.mark.parametrize(
    "weights",
    [
        torch.tensor([1.0, 0.0]),
        torch.tensor([1.0, -2.0]),
        torch.tensor([1.0]),
        torch.tensor([1.0, float("nan")]),
        torch.tensor([1.0, 1.0 + 1j]),
    ],
    ids=["zero", "negative", "wrong-shape", "nan", "complex"],
)
def test_mixture_weights(weights):
    with pytest.raises(ValueError, match=r"weights must be 2 finite positive real numbers"):
        GaussianMixturePotential(_means(), _precisions(), weights)


@pytest.mark.parametrize("temperature", [0.0, -1.0, float("nan"), float("inf"), "hot", None])
def test_temperature(temperature):
    with pytest.raises(ValueError, match=r"temperature must be a finite number > 0"):
        GaussianMixturePotential(_means(), _precisions(), temperature=temperature)
    with pytest.raises(ValueError, match=r"temperature must be a finite number > 0"):
        LogSumExp([FubiniStudy(2)], temperature=temperature)


def test_quadratic():
    with pytest.raises(ValueError, match=r"precision\[0\] is not positive definite"):
        Quadratic(torch.zeros(2, dtype=C128), -torch.eye(2, dtype=C128))
    with pytest.raises(ValueError, match=r"precision\[0\] is not Hermitian"):
        Quadratic(torch.zeros(2, dtype=C128), torch.tensor([[1.0, 1j], [1j, 1.0]]))
    with pytest.raises(ValueError, match=r"mean must be a complex tensor of shape \(n,\)"):
        Quadratic(torch.zeros(1, 2, dtype=C128), torch.eye(2, dtype=C128))
    with pytest.raises(ValueError, match=r"precision must be a tensor of shape \(n, n\)"):
        Quadratic(torch.zeros(2, dtype=C128), torch.ones(2, dtype=C128))


# -- combinators --------------------------------------------------------------------------------


def test_logsumexp_arguments():
    with pytest.raises(ValueError, match=r"components must all have the same n; got n = \[2, 3\]"):
        LogSumExp([FubiniStudy(2), Flat(3)])
    with pytest.raises(ValueError, match=r"components must be a non-empty list.*empty list"):
        LogSumExp([])
    with pytest.raises(
        ValueError, match=r"components\[1\] must be a KahlerPotential; got function"
    ):
        LogSumExp([FubiniStudy(2), lambda z: z])
    with pytest.raises(ValueError, match=r"components must be a non-empty list of KahlerPotential"):
        LogSumExp(FubiniStudy(2))
    with pytest.raises(ValueError, match=r"biases must be 1 finite real numbers"):
        LogSumExp([FubiniStudy(2)], biases=[1.0, 2.0])
    with pytest.raises(ValueError, match=r"biases must be 2 finite real numbers"):
        LogSumExp([FubiniStudy(2), Flat(2)], biases=[1.0, float("nan")])


def test_product_arguments():
    with pytest.raises(ValueError, match=r"potentials\[1\] must be a KahlerPotential; got str"):
        Product([FubiniStudy(2), "flat"])
    with pytest.raises(ValueError, match=r"potentials must be a non-empty list.*empty list"):
        Product([])


# -- user potentials and manifolds --------------------------------------------------------------


class ComplexValued(KahlerPotential):
    def __call__(self, z):
        return (z * z).sum(-1)


class VectorValued(KahlerPotential):
    def __call__(self, z):
        return z.real


class NotATensor(KahlerPotential):
    def __call__(self, z):
        return 1.0


@pytest.mark.parametrize(
    "cls, match",
    [
        (ComplexValued, r"f must return a real tensor .* it returned torch.complex128"),
        # per point (a plain callable): shape (2,); on the batch of 3 (a potential): (3, 2)
        (VectorValued, r"f must return one real value per point: .* returned shape \((2,|3, 2)\)"),
        (NotATensor, r"f must return a torch.Tensor .*got float"),
    ],
)
def test_bad_user_potential(cls, match):
    with pytest.raises(ValueError, match=match):
        kg.ddbar(cls(2), Z)
    with pytest.raises(ValueError, match=match):
        KahlerManifold(cls(2)).metric(Z)
    with pytest.raises(ValueError, match=match):
        kg.ddbar(lambda w: cls.__call__(None, w), Z)


def test_kahler_manifold_needs_a_potential():
    with pytest.raises(
        ValueError, match=r"potential must be a kahlergeom.potentials.KahlerPotential; got function"
    ):
        KahlerManifold(lambda z: sq_norm(z))
    with pytest.raises(
        ValueError, match=r"potential must be a KahlerPotential instance; got the class FubiniStudy"
    ):
        KahlerManifold(FubiniStudy)  # the class, not an instance


def test_abstract_classes_not_instantiable():
    with pytest.raises(TypeError, match=r"abstract"):
        KahlerPotential(2)
    with pytest.raises(TypeError, match=r"abstract"):
        kg.HermitianManifold(2)

    class Forgot(KahlerPotential):  # __call__ not implemented
        pass

    with pytest.raises(TypeError, match=r"abstract"):
        Forgot(2)


@pytest.mark.parametrize("n", [0, -1, 2.0, "2", True])
def test_dimension_arguments(n):
    with pytest.raises(ValueError, match=r"n must be an integer >= 1; got"):
        FubiniStudy(n)
    with pytest.raises(ValueError, match=r"k must be an integer >= 1; got"):
        SiegelDisk(n)


@pytest.mark.parametrize("chunk_size", [0, -2, 1.5])
def test_chunk_size_argument(chunk_size):
    with pytest.raises(ValueError, match=r"chunk_size must be an integer >= 1"):
        KahlerManifold(FubiniStudy(2), chunk_size=chunk_size)
    with pytest.raises(ValueError, match=r"chunk_size must be an integer >= 1"):
        kg.ddbar(FubiniStudy(2), Z, chunk_size=chunk_size)
    with pytest.raises(ValueError, match=r"chunk_size must be an integer >= 1"):
        partial(FubiniStudy(2), Z, chunk_size=chunk_size)
