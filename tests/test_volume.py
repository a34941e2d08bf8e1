"""Volumes ∫_U det G dA: closed forms (π^n/n!, r²/(1+r²), π r²/(1−r²)), scipy's adaptive
quadrature on closed-form densities, and the diagnostics that must refuse bad estimates."""

from __future__ import annotations

import math

import pytest
import torch
from scipy import integrate

import kahlergeom as kg
from kahlergeom.potentials import ComplexHyperbolic, Flat, FubiniStudy, KahlerPotential, Product
from kahlergeom.volume import (
    Ball,
    Box,
    GaussianProposal,
    Predicate,
    StudentTProposal,
    UniformProposal,
    VolumeConvergenceError,
    hill_tail_index,
    volume_monte_carlo,
    volume_quadrature,
)

C128 = torch.complex128


def fs(n):
    return kg.KahlerManifold(FubiniStudy(n))


def fs_density(x, y):
    """det G of Fubini–Study, n = 1, written independently: (1 + x² + y²)^-2."""
    return (1 + x * x + y * y) ** -2


def within_sigmas(res, exact, k=4.0):
    assert res.converged, res.message
    assert abs(res.value - exact) <= k * res.stderr, (res, exact)


# -- quadrature -------------------------------------------------------------------------------


def test_quadrature_fubini_study_total_volume():
    res = volume_quadrature(fs(1))
    assert res.converged
    assert res.value == pytest.approx(math.pi, rel=1e-10)
    assert res.error_estimate < 1e-9


@pytest.mark.parametrize("r", [0.3, 1.0, 2.5, 10.0])
def test_quadrature_fubini_study_disk_probability(r):
    """n = 1: det G / π is a probability density with P(|z| <= r) = r²/(1 + r²)."""
    res = volume_quadrature(fs(1), Ball(r))
    assert res.value / math.pi == pytest.approx(r * r / (1 + r * r), rel=1e-10)


def test_quadrature_off_center_disk_against_scipy():
    c, r = 0.7 - 0.4j, 0.8
    res = volume_quadrature(fs(1), Ball(r, center=[c]))
    exact, _ = integrate.dblquad(
        lambda rho, th: fs_density(c.real + rho * math.cos(th), c.imag + rho * math.sin(th)) * rho,
        0,
        2 * math.pi,
        0,
        r,
        epsabs=1e-13,
        epsrel=1e-12,
    )
    assert res.value == pytest.approx(exact, rel=1e-9)


def test_quadrature_ball_manifold_disk():
    """Poincaré disk K = −log(1 − |z|²): ∫_{|z|<=r} (1 − |z|²)^-2 dA = π r²/(1 − r²)."""
    M = kg.KahlerManifold(ComplexHyperbolic(1))
    for r in (0.5, 0.9):
        assert volume_quadrature(M, Ball(r)).value == pytest.approx(
            math.pi * r * r / (1 - r * r), rel=1e-10
        )


def test_quadrature_box_n1_and_product_n2_against_scipy():
    lo1, hi1 = (-0.5, 0.2), (1.0, 1.5)  # (x, y) corners
    lo2, hi2 = (0.1, -1.0), (0.6, 0.3)

    def box_integral(lo, hi):
        val, _ = integrate.dblquad(
            lambda y, x: fs_density(x, y), lo[0], hi[0], lo[1], hi[1], epsabs=1e-13, epsrel=1e-12
        )
        return val

    I1, I2 = box_integral(lo1, hi1), box_integral(lo2, hi2)
    box1 = Box([complex(*lo1)], [complex(*hi1)])
    assert volume_quadrature(fs(1), box1, order=24).value == pytest.approx(I1, rel=1e-10)
    # FS(1) × FS(1): det G is the product, so the volume of a product box is I1 · I2.
    M = kg.KahlerManifold(Product([FubiniStudy(1), FubiniStudy(1)]))
    box = Box([complex(*lo1), complex(*lo2)], [complex(*hi1), complex(*hi2)])
    res = volume_quadrature(M, box, order=16)
    assert res.value == pytest.approx(I1 * I2, rel=1e-9)


def test_quadrature_flat_box_is_lebesgue_volume():
    box = Box(torch.tensor([-1 + 0j, 2j]), torch.tensor([0.5 + 1j, 1 + 3j]))
    res = volume_quadrature(kg.KahlerManifold(Flat(2)), box, order=4)
    assert res.value == pytest.approx(1.5 * 1.0 * 1.0 * 1.0, rel=1e-12)


def test_quadrature_reports_non_convergence():
    M = kg.KahlerManifold(ComplexHyperbolic(1))
    with pytest.raises(VolumeConvergenceError, match="error estimate") as info:
        volume_quadrature(M, Ball(0.9999), order=6)
    assert not info.value.result.converged
    res = volume_quadrature(M, Ball(0.9999), order=6, check=False)
    assert not res.converged and "raise order" in res.message
    # The flat plane has infinite volume: the whole-plane rule must not return a number.
    with pytest.raises(VolumeConvergenceError, match="integrable"):
        volume_quadrature(kg.KahlerManifold(Flat(1)))


def test_quadrature_errors():
    M = kg.KahlerManifold(ComplexHyperbolic(1))
    with pytest.raises(ValueError, match="not inside the domain"):
        volume_quadrature(M, Ball(1.5))
    with pytest.raises(ValueError, match="not inside the domain"):
        volume_quadrature(M)  # the whole plane is not in the unit disk
    with pytest.raises(ValueError, match="only for n = 1"):
        volume_quadrature(fs(2), Ball(1.0))
    with pytest.raises(ValueError, match="not smooth"):
        volume_quadrature(fs(1), Predicate(lambda z: z.real > 0))
    with pytest.raises(ValueError, match="max_evaluations"):
        volume_quadrature(fs(3), Box(torch.zeros(3) + 0j, torch.ones(3) + 1j), order=20)
    with pytest.raises(ValueError, match="order must be an integer >= 3"):
        volume_quadrature(fs(1), order=2)
    with pytest.raises(ValueError, match="region has dimension n = 2"):
        volume_quadrature(fs(1), Box(torch.zeros(2), torch.ones(2) + 1j))
    with pytest.raises(ValueError, match="manifold must be a kahlergeom HermitianManifold"):
        volume_quadrature(FubiniStudy(1))


class NegativeQuadratic(KahlerPotential):
    """K = −|z|²: G = −I, not a metric."""

    def __call__(self, z):
        return -(z.real**2 + z.imag**2).sum(-1)


def test_not_positive_definite_is_refused():
    M = kg.KahlerManifold(NegativeQuadratic(1))
    with pytest.raises(ValueError, match="not positive definite"):
        volume_quadrature(M, Ball(1.0), order=6)
    with pytest.raises(ValueError, match="not positive definite"):
        volume_monte_carlo(M, 100, region=Ball(1.0), generator=torch.Generator().manual_seed(0))


# -- Monte Carlo ------------------------------------------------------------------------------


@pytest.mark.parametrize("n", [1, 2, 3])
def test_monte_carlo_fubini_study_total_volume(n):
    res = volume_monte_carlo(fs(n), 20000, generator=torch.Generator().manual_seed(n))
    within_sigmas(res, math.pi**n / math.factorial(n))
    assert res.n_inside == 20000
    assert res.stderr < 0.02 * res.value  # a useful estimate, not a wide interval


@pytest.mark.parametrize("r", [0.5, 2.0])
def test_monte_carlo_disk_probability(r):
    g = torch.Generator().manual_seed(5)
    exact = math.pi * r * r / (1 + r * r)
    within_sigmas(volume_monte_carlo(fs(1), 20000, region=Ball(r), generator=g), exact)
    # the same region as a predicate, with the default heavy-tailed proposal
    res = volume_monte_carlo(
        fs(1), 20000, region=lambda z: (z.real**2 + z.imag**2).sum(-1) <= r * r, generator=g
    )
    within_sigmas(res, exact)
    assert 0 < res.n_inside < 20000


def test_monte_carlo_ball_manifold_and_proposals():
    M = kg.KahlerManifold(ComplexHyperbolic(2))
    g = torch.Generator().manual_seed(8)
    r = 0.8
    # n = 2 ball: det G = (1 − |z|²)^-3, so ∫_{|z|<=r} = 2π² ∫_0^r ρ³ (1 − ρ²)^-3 dρ.
    radial, _ = integrate.quad(lambda p: p**3 * (1 - p * p) ** -3, 0, r, epsabs=1e-13)
    exact = 2 * math.pi**2 * radial
    within_sigmas(volume_monte_carlo(M, 20000, region=Ball(r), generator=g), exact)
    res = volume_monte_carlo(
        M, 20000, region=Ball(r), proposal=StudentTProposal(2, df=3, scale=0.5), generator=g
    )
    within_sigmas(res, exact)
    res = volume_monte_carlo(
        M, 20000, region=Ball(r), proposal=UniformProposal(Ball(0.9, n=2)), generator=g
    )
    within_sigmas(res, exact)


def test_monte_carlo_is_reproducible_and_batched():
    a = volume_monte_carlo(fs(2), 5000, generator=torch.Generator().manual_seed(1))
    b = volume_monte_carlo(fs(2), 5000, generator=torch.Generator().manual_seed(1), batch_size=5000)
    c = volume_monte_carlo(fs(2), 5000, generator=torch.Generator().manual_seed(1), batch_size=777)
    assert a == b
    assert c.converged and abs(c.value - a.value) < 6 * a.stderr


def test_monte_carlo_stderr_is_calibrated():
    """The spread of independent estimates matches the reported standard error."""
    g = torch.Generator().manual_seed(3)
    runs = [volume_monte_carlo(fs(1), 2000, generator=g) for _ in range(30)]
    values = torch.tensor([r.value for r in runs])
    mean_stderr = sum(r.stderr for r in runs) / len(runs)
    ratio = float(values.std()) / mean_stderr
    assert 0.6 < ratio < 1.5, ratio


def test_monte_carlo_flags_heavy_tailed_weights():
    """A Gaussian proposal for the Fubini–Study density (tails |z|^-4) gives weights
    w ~ e^{|z|²}/|z|⁴ of infinite variance; the ESS alone looks fine, the tail check must
    refuse."""
    g = torch.Generator().manual_seed(0)
    with pytest.raises(VolumeConvergenceError, match="heavy-tailed") as info:
        volume_monte_carlo(fs(1), 20000, proposal=GaussianProposal(1), generator=g)
    res = info.value.result
    assert res.ess > 100 and res.tail_index > 0.5 and not res.converged


def test_monte_carlo_flags_small_ess_and_empty_region():
    g = torch.Generator().manual_seed(0)
    M = kg.KahlerManifold(ComplexHyperbolic(1))
    # The whole disk has infinite volume: the weights blow up near the boundary.
    with pytest.raises(VolumeConvergenceError, match="effective sample size"):
        volume_monte_carlo(M, 5000, generator=g)
    far = Box(torch.tensor([50 + 50j]), torch.tensor([51 + 51j]))
    with pytest.raises(VolumeConvergenceError, match="no sample fell inside"):
        volume_monte_carlo(fs(1), 2000, region=far, proposal=GaussianProposal(1), generator=g)
    res = volume_monte_carlo(
        fs(1), 2000, region=far, proposal=GaussianProposal(1), generator=g, check=False
    )
    assert not res.converged and res.value == 0.0 and res.n_inside == 0
    with pytest.raises(VolumeConvergenceError, match="rtol"):
        volume_monte_carlo(fs(1), 2000, generator=g, rtol=1e-6)


def test_monte_carlo_argument_errors():
    M = fs(1)
    with pytest.raises(ValueError, match="n_samples must be an integer >= 2"):
        volume_monte_carlo(M, 1)
    with pytest.raises(ValueError, match="region must be None"):
        volume_monte_carlo(M, 100, region="disk")
    with pytest.raises(ValueError, match="proposal has n = 2"):
        volume_monte_carlo(M, 100, proposal=GaussianProposal(2))
    with pytest.raises(ValueError, match="proposal must be a kahlergeom.volume Proposal"):
        volume_monte_carlo(M, 100, proposal=object())
    with pytest.raises(ValueError, match="radius must be a finite number > 0"):
        Ball(-1.0)
    with pytest.raises(ValueError, match="low must be below high"):
        Box(torch.tensor([1 + 0j]), torch.tensor([0 + 1j]))
    with pytest.raises(ValueError, match="df must be an integer >= 1"):
        StudentTProposal(1, df=0)
    with pytest.raises(ValueError, match="dtype must be"):
        volume_monte_carlo(M, 100, dtype=torch.float64)
    with pytest.raises(ValueError, match="predicate must return a bool tensor"):
        volume_monte_carlo(M, 100, region=lambda z: True)


def test_proposal_densities_integrate_to_one():
    """Oracle for the proposals' log_prob normalisation: the Flat metric (det G = 1) on a box
    must give the box's area for every proposal that covers it."""
    box = Box(torch.tensor([-0.5 - 0.5j]), torch.tensor([0.5 + 0.5j]))
    g = torch.Generator().manual_seed(4)
    M = kg.KahlerManifold(Flat(1))
    for prop in (GaussianProposal(1, scale=0.8), StudentTProposal(1, df=2), UniformProposal(box)):
        within_sigmas(volume_monte_carlo(M, 20000, region=box, proposal=prop, generator=g), 1.0)
    res = volume_monte_carlo(M, 5000, region=box, proposal=UniformProposal(box), generator=g)
    assert res.value == pytest.approx(1.0, rel=1e-12) and res.stderr < 1e-12


def test_hill_tail_index_on_known_tails():
    g = torch.Generator().manual_seed(0)
    u = torch.rand(20000, generator=g, dtype=torch.float64)
    assert hill_tail_index(u ** (-1.0)) == pytest.approx(1.0, abs=0.15)  # Pareto, ξ = 1
    assert hill_tail_index(u) < 0.05  # bounded
    assert math.isnan(hill_tail_index(u[:20]))
