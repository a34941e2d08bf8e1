"""`DiscreteEnergy`: discrete curve-energy geodesics of decoder manifolds (issue 11, item 2).

Independent oracles:
- a complex-linear decoder: constant Fisher metric, so the geodesic is the straight segment and
  the distance |w − z|_G in closed form;
- decoders that embed a known chart isometrically: the radius-½ sphere (the Fubini–Study chart
  of CP¹, inverse stereographic projection) and the projector embedding z ↦ ZZᴴ/|Z|² of CP²
  (Z = (1, z)); their Fisher metrics are checked against the closed-form Fubini–Study metric and
  the distances against the closed form of docs/conventions.md; the error falls as K⁻⁴;
- the same geodesic from a different discretisation (the midpoint metric-field energy) and from
  shooting refinement (adaptive endpoint check and conjugate-point certificate), and (heavy)
  from the exact `EnergyMinimisation` solver;
- flags: a budget too small gives not_converged, NaN and a GeodesicWarning; batch = loop; bad
  options raise a ValueError naming the argument.
"""

from __future__ import annotations

import math
import warnings

import pytest
import torch
from test_fisher import make_decoder

import kahlergeom as kg
from kahlergeom.geodesics import (
    STATUS_NAMES,
    DiscreteEnergy,
    EnergyMinimisation,
    GeodesicWarning,
    Shooting,
    solve_log,
)

C128 = torch.complex128
F64 = torch.float64
SUCCESS = 1
NOT_CONVERGED = next(k for k, v in STATUS_NAMES.items() if v == "not_converged")


def fs_dist(z, w):
    ip = (1 + (z.conj() * w).sum(-1)).abs()
    nz = 1 + (z.real**2 + z.imag**2).sum(-1)
    nw = 1 + (w.real**2 + w.imag**2).sum(-1)
    return torch.arccos((ip / torch.sqrt(nz * nw)).clamp(max=1))


def sphere_decoder(z):
    """CP¹'s Fubini–Study chart as the sphere of radius ½ in C × R (constant variance 1)."""
    s = 1 + (z.real**2 + z.imag**2)[..., 0]
    mean = torch.stack([z[..., 0] / s, ((2 - s) / (2 * s)).to(z.dtype)], -1)
    return mean, torch.tensor(1.0, dtype=F64)


def projector_decoder(z):
    """CP²'s chart z ↦ ZZᴴ/|Z|² (Hermitian projectors, Frobenius metric = 2·Fubini–Study)."""
    Z = torch.cat([torch.ones_like(z[..., :1]), z], -1)
    nrm = (Z.real**2 + Z.imag**2).sum(-1)[..., None, None]
    P = Z[..., :, None] * Z.conj()[..., None, :] / nrm
    return P.flatten(-2), torch.tensor(2.0, dtype=F64)


def pairs(n, P, seed, scale=0.7):
    g = torch.Generator().manual_seed(seed)
    z = scale * torch.randn(P, n, dtype=C128, generator=g)
    w = scale * torch.randn(P, n, dtype=C128, generator=g)
    return z, w


def test_isometric_embeddings_reproduce_fubini_study():
    """The two chart decoders' Fisher metrics are the closed-form Fubini–Study metrics."""
    for n, dec in ((1, sphere_decoder), (2, projector_decoder)):
        M = kg.FisherManifold(dec, n=n)
        FS = kg.KahlerManifold(kg.potentials.FubiniStudy(n))
        z = pairs(n, 6, 0)[0]
        torch.testing.assert_close(M.metric(z), FS.metric(z), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("holomorphic", [False, True])
def test_linear_decoder_straight_line(holomorphic):
    """Complex-linear decoder, scalar variance: the metric is constant, the geodesic is the
    straight segment, the length |w − z|_G."""
    g = torch.Generator().manual_seed(1)
    A = torch.randn(5, 2, dtype=C128, generator=g)
    M = kg.FisherManifold(lambda z: (z @ A.T, torch.tensor(0.5, dtype=F64)), n=2)
    z, w = pairs(2, 3, 2, scale=2.0)
    r = solve_log(M, z, w, solver=DiscreteEnergy(holomorphic=holomorphic), n_points=9)
    assert r.status.tolist() == [SUCCESS] * 3 and r.certificate == "discrete"
    torch.testing.assert_close(r.length, M.norm(z, w - z), rtol=1e-10, atol=0)
    t = torch.linspace(0, 1, 9, dtype=F64)[:, None]
    torch.testing.assert_close(r.points, z[:, None] + t * (w - z)[:, None], rtol=0, atol=1e-8)
    torch.testing.assert_close(r.velocity, w - z, rtol=0, atol=1e-8)
    assert bool((r.discretisation <= 1e-6).all()) and bool((r.residual == 0).all())


@pytest.mark.parametrize("energy", ["divergence", "metric"])
def test_sphere_chart_distance_and_rate(energy):
    """CP¹ as the radius-½ sphere: distances to 1e-7 with the defaults; the error decreases as K
    doubles (about 16× per doubling, the spline length's K⁻⁴ rate), and the reported
    discretisation estimate bounds it within a factor of 2."""
    M = kg.FisherManifold(sphere_decoder, n=1)
    z, w = pairs(1, 4, 3)
    truth = fs_dist(z, w)
    r = solve_log(M, z, w, solver=DiscreteEnergy(energy=energy))
    assert r.success.all()
    err = (r.length - truth) / truth
    assert float(err.abs().max()) <= 1e-7
    assert bool((err > -1e-12).all())  # the length of a curve: never below the distance
    assert bool((err.abs() <= 2 * r.discretisation + 1e-12).all())
    errs = []
    for K in (32, 64, 128):
        s = DiscreteEnergy(energy=energy, segments=K, max_segments=K, length_rtol=1.0)
        errs.append(float(((solve_log(M, z, w, solver=s).length - truth) / truth).abs().max()))
    assert errs[0] > 8 * errs[1] > 64 * errs[2], errs


def test_projector_chart_distance():
    """CP² through the projector embedding (n = 2, non-holomorphic decoder, J-averaged metric):
    the closed-form Fubini–Study distance to 1e-7."""
    M = kg.FisherManifold(projector_decoder, n=2)
    z, w = pairs(2, 3, 4, scale=0.6)
    truth = fs_dist(z, w)
    d = M.dist(z, w)  # the default solver of a FisherManifold is DiscreteEnergy
    assert isinstance(M.default_solver, DiscreteEnergy)
    torch.testing.assert_close(d, truth, rtol=1e-7, atol=0)


@pytest.mark.slow
def test_default_solver_over_many_seeds_never_silently_wrong():
    """The FisherManifold default (DiscreteEnergy) over 6 seeds × 4 pairs on both chart
    decoders with closed-form distances: every pair reported successful is within 1e-6 and
    never below the distance; at least 95% succeed, the rest are flagged (NaN from dist)."""
    ok = total = 0
    for n, dec in ((1, sphere_decoder), (2, projector_decoder)):
        M = kg.FisherManifold(dec, n=n)
        for seed in range(10, 16):
            z, w = pairs(n, 4, seed, scale=0.8)
            truth = fs_dist(z, w)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                r = solve_log(M, z, w)
                d = M.dist(z, w)
            err = (r.length - truth) / truth
            good = r.success
            assert bool((err[good].abs() <= 1e-6).all()), (seed, err)
            assert bool((err[good] > -1e-12).all()), (seed, err)
            assert bool(d[~good].isnan().all()) and bool(d[good].isfinite().all())
            ok += int(good.sum())
            total += good.numel()
    assert ok >= 0.95 * total, (ok, total)


def test_kahler_chart_metric_energy():
    """energy="metric" runs on any manifold: the Fubini–Study chart of CP² in closed form."""
    M = kg.KahlerManifold(kg.potentials.FubiniStudy(2))
    z, w = pairs(2, 3, 5, scale=0.6)
    r = solve_log(M, z, w, solver=DiscreteEnergy())  # auto: no decoder hooks → metric
    assert r.success.all()
    torch.testing.assert_close(r.length, fs_dist(z, w), rtol=1e-7, atol=0)
    with pytest.raises(ValueError, match="energy='divergence'"):
        solve_log(M, z, w, solver=DiscreteEnergy(energy="divergence"))


def test_point_variance_decoder_two_energies_agree():
    """A non-holomorphic decoder with a point-dependent variance: the divergence energy and the
    metric-field energy (two discretisations) give one length to 1e-6."""
    M = kg.FisherManifold(make_decoder(1, 3, variance="point", seed=4), n=1)
    z, w = pairs(1, 2, 5, scale=0.5)
    r_div = solve_log(M, z, w, solver=DiscreteEnergy())
    r_met = solve_log(M, z, w, solver=DiscreteEnergy(energy="metric"))
    assert r_div.success.all() and r_met.success.all()
    torch.testing.assert_close(r_div.length, r_met.length, rtol=1e-6, atol=0)


@pytest.mark.slow
def test_shooting_refinement():
    """refine=Shooting(): the discrete curve's tangent seeds shooting, whose endpoint check
    (1e-8) and conjugate-point certificate decide; the lengths agree with the discrete one."""
    M = kg.KahlerManifold(kg.potentials.FubiniStudy(2))
    z, w = pairs(2, 1, 9, scale=0.6)
    r = solve_log(M, z, w, solver=DiscreteEnergy(refine=Shooting()), n_points=5)
    assert r.success.all() and r.certificate == "local"
    assert float(r.residual.max()) <= 1e-8
    torch.testing.assert_close(r.length, fs_dist(z, w), rtol=1e-8, atol=0)
    torch.testing.assert_close(r.candidate_lengths[:, 1], r.length, rtol=1e-7, atol=0)
    torch.testing.assert_close(r.points[:, -1], w, rtol=0, atol=1e-7)


@pytest.mark.heavy
def test_agrees_with_exact_solver():
    """Against `EnergyMinimisation` + shooting and against shooting refinement (minutes each:
    shooting differentiates the decoder three times), on a tiny point-variance decoder."""
    M = kg.FisherManifold(make_decoder(2, 3, variance="point", seed=4), n=2)
    z, w = pairs(2, 2, 5, scale=0.5)
    fast = solve_log(M, z, w, solver=DiscreteEnergy())
    exact = solve_log(M, z, w, solver=EnergyMinimisation())
    refined = solve_log(M, z, w, solver=DiscreteEnergy(refine=Shooting(max_iter=4)))
    assert exact.success.all() and fast.success.all() and refined.success.all()
    torch.testing.assert_close(fast.length, exact.length, rtol=1e-6, atol=0)
    torch.testing.assert_close(refined.length, exact.length, rtol=1e-7, atol=0)
    # the discretisation estimate is a fair error estimate (measured: within 10 %)
    err = ((fast.length - exact.length) / exact.length).abs()
    assert bool((err <= 2 * fast.discretisation + 1e-9).all())


def test_small_budget_is_flagged():
    """One energy evaluation per level and K ≤ 32 cannot converge: status not_converged, and the
    manifold methods return NaN with a GeodesicWarning."""
    M = kg.FisherManifold(sphere_decoder, n=1)
    z, w = pairs(1, 2, 6)
    solver = DiscreteEnergy(max_iter=1, max_segments=32)
    r = solve_log(M, z, w, solver=solver)
    assert r.status.tolist() == [NOT_CONVERGED] * 2 and not r.success.any()
    with pytest.warns(GeodesicWarning):
        d = M.dist(z, w, solver=solver)
    assert bool(torch.isnan(d).all())
    # the discretisation check alone: K capped at 32 with a 1e-14 tolerance fails honestly
    strict = DiscreteEnergy(segments=32, max_segments=32, length_rtol=1e-14)
    r = solve_log(M, z, w, solver=strict)
    assert not r.success.any() and bool((r.discretisation > 1e-14).all())


def test_batch_equals_loop():
    M = kg.FisherManifold(projector_decoder, n=2)
    z, w = pairs(2, 3, 7, scale=0.6)
    batched = solve_log(M, z, w, solver=DiscreteEnergy())
    for k in range(3):
        one = solve_log(M, z[k : k + 1], w[k : k + 1], solver=DiscreteEnergy())
        torch.testing.assert_close(one.length, batched.length[k : k + 1], rtol=1e-9, atol=0)
        assert one.status.tolist() == batched.status[k : k + 1].tolist()


def test_shapes_chunking_and_points():
    """Broadcast batch shapes, chunked decoder calls (chunk_size), points from the spline with
    exact end points."""
    M = kg.FisherManifold(projector_decoder, n=2, chunk_size=7)
    z, w = pairs(2, 4, 8, scale=0.5)
    r = solve_log(M, z.reshape(2, 2, 2), w.reshape(2, 2, 2), n_points=6)
    assert r.length.shape == (2, 2) and r.points.shape == (2, 2, 6, 2)
    assert r.nodes.shape[:2] == (2, 2) and r.discretisation.shape == (2, 2)
    assert torch.equal(r.points[..., 0, :], z.reshape(2, 2, 2))
    assert torch.equal(r.points[..., -1, :], w.reshape(2, 2, 2))
    torch.testing.assert_close(r.length.reshape(-1), fs_dist(z, w), rtol=1e-7, atol=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        pts = M.geodesic(z, w, 5)
    assert pts.shape == (4, 5, 2) and bool(torch.isfinite(pts).all())


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"coarse": 3}, "coarse"),
        ({"segments": 16}, "segments"),
        ({"segments": 48}, "segments"),
        ({"max_segments": 48}, "max_segments"),
        ({"max_segments": 16}, "max_segments"),
        ({"max_iter": 0}, "max_iter"),
        ({"history": 0}, "history"),
        ({"energy_rtol": -1.0}, "energy_rtol"),
        ({"length_rtol": math.inf}, "length_rtol"),
        ({"energy": "kl"}, "energy"),
        ({"holomorphic": 1}, "holomorphic"),
        ({"refine": "shooting"}, "refine"),
    ],
)
def test_bad_options(kwargs, name):
    with pytest.raises(ValueError, match=name):
        DiscreteEnergy(**kwargs)
