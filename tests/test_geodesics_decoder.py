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
from kahlergeom.geodesics._discrete import DECODER_LENGTH_RTOL, discretisation_error

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
    """CP¹ as the radius-½ sphere: distances within the default tolerance (1e-4 on decoder
    manifolds) and to 1e-7 with ``length_rtol=1e-6``; the reported estimate (discretisation,
    quadrature and optimisation) bounds the error within a factor of 2; the error decreases as K
    doubles (about 16× per doubling, the spline length's K⁻⁴ rate). The sphere's stereographic
    chart is conformal, so F is J-invariant: auto drops the rotated term; the rate is that of
    the full energy (holomorphic=False)."""
    M = kg.FisherManifold(sphere_decoder, n=1)
    z, w = pairs(1, 4, 3)
    truth = fs_dist(z, w)
    for ltol, bound in ((None, DECODER_LENGTH_RTOL[F64]), (1e-6, 1e-7)):
        r = solve_log(M, z, w, solver=DiscreteEnergy(energy=energy, length_rtol=ltol))
        assert r.success.all()
        assert r.holomorphic is None if energy == "metric" else bool(r.holomorphic.all())
        err = (r.length - truth) / truth
        assert float(err.abs().max()) <= bound, (ltol, err)
        assert bool((err > -1e-12).all())  # the length of a curve: never below the distance
        assert bool((err.abs() <= 2 * r.discretisation + 1e-12).all()), (ltol, err, r)
    errs = []
    for K in (32, 64, 128):
        s = DiscreteEnergy(
            energy=energy,
            segments=K,
            max_segments=K,
            length_rtol=1.0,
            energy_rtol=1e-12,
            holomorphic=False,
        )
        errs.append(float(((solve_log(M, z, w, solver=s).length - truth) / truth).abs().max()))
    assert errs[0] > 8 * errs[1] > 64 * errs[2], errs


def test_projector_chart_distance():
    """CP² through the projector embedding (n = 2, non-holomorphic decoder, J-averaged metric):
    the closed-form Fubini–Study distance within the default tolerance 1e-4, and to 1e-7 with
    ``length_rtol=1e-6``."""
    M = kg.FisherManifold(projector_decoder, n=2)
    z, w = pairs(2, 3, 4, scale=0.6)
    truth = fs_dist(z, w)
    d = M.dist(z, w)  # the default solver of a FisherManifold is DiscreteEnergy
    assert isinstance(M.default_solver, DiscreteEnergy)
    torch.testing.assert_close(d, truth, rtol=DECODER_LENGTH_RTOL[F64], atol=0)
    d = M.dist(z, w, solver=DiscreteEnergy(length_rtol=1e-6))
    torch.testing.assert_close(d, truth, rtol=1e-7, atol=0)


def test_default_tolerances():
    """Defaults: length 1e-4 on decoder manifolds, 1e-6 elsewhere (float64), 1e-3 in float32;
    energy 1/100 of the length tolerance, at most 1e-6; explicit options are kept."""
    dec = kg.FisherManifold(sphere_decoder, n=1)
    chart = kg.KahlerManifold(kg.potentials.FubiniStudy(1))
    s = DiscreteEnergy()
    assert s.tolerances(dec, F64) == pytest.approx((1e-6, 1e-4), rel=1e-12)
    assert s.tolerances(chart, F64) == pytest.approx((1e-8, 1e-6), rel=1e-12)
    assert s.tolerances(dec, torch.float32) == pytest.approx((1e-6, 1e-3), rel=1e-12)
    assert s.tolerances(chart, torch.float32) == pytest.approx((1e-6, 1e-3), rel=1e-12)
    t = DiscreteEnergy(length_rtol=1e-5, energy_rtol=1e-9)
    assert t.tolerances(dec, F64) == (1e-9, 1e-5) == t.tolerances(chart, F64)
    assert DiscreteEnergy(length_rtol=1e-6).tolerances(dec, F64) == pytest.approx((1e-8, 1e-6))


@pytest.mark.slow
def test_default_solver_over_many_seeds_never_silently_wrong():
    """The FisherManifold default (DiscreteEnergy) over 6 seeds × 4 pairs on both chart
    decoders with closed-form distances: every pair reported successful is within the default
    tolerance (1e-4) and twice its own error estimate and never below the distance; at least 95%
    succeed, the rest are flagged (NaN from dist)."""
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
            assert bool((err[good].abs() <= DECODER_LENGTH_RTOL[F64]).all()), (seed, err)
            bound = 2 * r.discretisation + 1e-12
            assert bool((err[good].abs() <= bound[good]).all()), (seed, err, r.discretisation)
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
    r_div = solve_log(M, z, w, solver=DiscreteEnergy(length_rtol=1e-6))
    r_met = solve_log(M, z, w, solver=DiscreteEnergy(energy="metric", length_rtol=1e-6))
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
    fast = solve_log(M, z, w, solver=DiscreteEnergy(length_rtol=1e-6))
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
    solver = DiscreteEnergy(max_iter=1, segments=32, max_segments=32, energy_rtol=1e-12)
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


# ---------------------------------------------------------------------------------------------
# holomorphic="auto": the rotated divergence term is dropped only where the real Fisher matrix
# is J-invariant (docs/conventions.md, "When the rotated term is redundant")
# ---------------------------------------------------------------------------------------------
def _bump(x, centre, width):
    """A C^∞ bump exp(−1/(1 − u²)), u = (x − centre)/width: exactly 0 for |u| ≥ ~1."""
    u = (x - centre) / width
    return torch.exp(-1 / (1 - u**2).clamp_min(1e-3))


def strip_decoder(z):
    """Holomorphic (sin of a complex-linear map, constant variance) except in the strip
    |Re z − 0.25| < 0.1, where a conj(z) term is switched on: holomorphic at the chord points
    of the pair −1 → 1 (Re z ∈ {−1, −½, 0, ½, 1}) but not along any curve between them."""
    W = torch.tensor([[1.0 + 0.5j], [0.3 - 1.0j], [-0.7 + 0.2j]], dtype=C128)
    mean = torch.sin(z @ W.T)
    mean = mean + (_bump(z.real[..., :1], 0.25, 0.1) * z.conj()).expand_as(mean) * 0.5
    return mean, torch.tensor(0.5, dtype=F64)


def _same(r1, r2):
    assert r1.status.tolist() == r2.status.tolist()
    assert torch.equal(r1.length, r2.length) and torch.equal(r1.nodes, r2.nodes)


def test_fisher_from_hooks_and_defect_against_oracles():
    """`fisher_from_hooks` (decoder JVPs and the KL Hessian in parameter space) equals the
    manifold's own real Fisher matrix; `holomorphy_defect` equals the largest generalised
    eigenvalue of F − JᵀFJ against F + JᵀFJ (+ ridge), and bounds |F(v,v) − F(iv,iv)| /
    (F(v,v) + F(iv,iv)) over random directions (brute force)."""
    from kahlergeom.geodesics._discrete import (
        HOLOMORPHY_RIDGE,
        fisher_from_hooks,
        holomorphy_defect,
    )

    M = kg.FisherManifold(make_decoder(2, 4, variance="point", seed=3), n=2)
    z = pairs(2, 6, 11)[0]
    F = fisher_from_hooks(M, z)
    torch.testing.assert_close(F, M.real_fisher(z), rtol=1e-12, atol=1e-12)
    delta = holomorphy_defect(M, z)
    J = torch.zeros(4, 4, dtype=F64)
    J[2:, :2], J[:2, 2:] = torch.eye(2, dtype=F64), -torch.eye(2, dtype=F64)
    S, A = F + J.T @ F @ J, F - J.T @ F @ J
    S = S + HOLOMORPHY_RIDGE[F64] * S.diagonal(dim1=-2, dim2=-1).amax(-1)[:, None, None] * (
        torch.eye(4, dtype=F64)
    )
    eig = torch.linalg.eigvals(torch.linalg.solve(S, A)).real.abs().amax(-1)
    torch.testing.assert_close(delta, eig, rtol=1e-10, atol=1e-14)
    v = torch.randn(20000, 4, dtype=F64, generator=torch.Generator().manual_seed(0))
    Jv = v @ J.T
    Fvv = torch.einsum("vi,pij,vj->pv", v, F, v)
    FJJ = torch.einsum("vi,pij,vj->pv", Jv, F, Jv)
    brute = ((Fvv - FJJ).abs() / (Fvv + FJJ)).amax(-1)
    assert bool((brute <= delta * (1 + 1e-9)).all()) and bool((brute >= 0.5 * delta).all())
    assert bool((delta > 0.05).all())  # conj(z) and |z|² pieces: far from J-invariant
    bad = torch.tensor([[math.nan, 0.1j]], dtype=C128)
    assert holomorphy_defect(M, torch.cat([z[:1], bad])).tolist()[1] == math.inf


@pytest.mark.parametrize(
    ("variance", "holomorphic", "expected"),
    [
        ("scalar", True, True),
        ("output", True, True),
        ("point", True, False),
        ("scalar", False, False),
    ],
)
def test_auto_detection_matches_explicit_setting(variance, holomorphic, expected):
    """A holomorphic mean with a constant variance (scalar or per output) is detected, a
    point-dependent variance or a non-holomorphic mean is not; the result is that of the
    explicit setting, bit for bit, and the chosen path is reported (`holomorphic`)."""
    dec = make_decoder(2, 4, variance=variance, holomorphic=holomorphic, seed=5)
    M = kg.FisherManifold(dec, n=2)
    z, w = pairs(2, 2, 12, scale=0.5)
    r = solve_log(M, z, w)  # the default: holomorphic="auto"
    assert r.holomorphic.tolist() == [expected] * 2
    _same(r, solve_log(M, z, w, solver=DiscreteEnergy(holomorphic=expected)))
    assert r.success.all()


def test_auto_detects_j_invariance_not_just_holomorphy():
    """An antiholomorphic mean (μ(z) = A conj(z) through sin) with constant variance has a
    J-invariant Fisher matrix: the rotated term is redundant, auto drops it, and the length
    agrees with the full energy's to 1e-6."""
    A = torch.tensor([[0.8 - 0.3j, 0.1j], [0.4, -1.1 + 0.2j], [0.2 + 0.5j, 0.6]], dtype=C128)
    M = kg.FisherManifold(lambda z: (torch.sin(z.conj() @ A.T), torch.tensor(0.5, dtype=F64)), n=2)
    z, w = pairs(2, 2, 13, scale=0.6)
    r = solve_log(M, z, w)
    assert r.holomorphic.all() and r.success.all()
    full = solve_log(M, z, w, solver=DiscreteEnergy(holomorphic=False))
    torch.testing.assert_close(r.length, full.length, rtol=1e-6, atol=0)


def test_holomorphic_at_ends_but_not_along_the_curve_gets_the_full_energy():
    """The strip decoder passes the check at the chord points, the holomorphic-energy curve
    crosses the strip, the check at its nodes fails, and the pair is solved again with the full
    energy: the result is that of holomorphic=False (and differs from holomorphic=True)."""
    from kahlergeom.geodesics._discrete import holomorphy_defect

    M = kg.FisherManifold(strip_decoder, n=1)
    z = torch.tensor([[-1.0 + 0j], [-1.0 + 0.1j]], dtype=C128)
    w = torch.tensor([[1.0 + 0j], [1.0 - 0.1j]], dtype=C128)
    t = torch.linspace(0, 1, 5, dtype=F64)[:, None]
    chord = (z[:, None] + t * (w - z)[:, None]).reshape(-1, 1)
    assert float(holomorphy_defect(M, chord).max()) <= 1e-12  # the pre-check passes
    assert float(holomorphy_defect(M, torch.tensor([[0.25 + 0j]], dtype=C128))) > 0.01
    r = solve_log(M, z, w)
    assert r.holomorphic.tolist() == [False, False] and r.success.all()
    _same(r, solve_log(M, z, w, solver=DiscreteEnergy(holomorphic=False)))
    wrong = solve_log(M, z, w, solver=DiscreteEnergy(holomorphic=True))
    assert not torch.equal(wrong.length, r.length)


def test_metric_energy_reports_no_holomorphy():
    M = kg.KahlerManifold(kg.potentials.FubiniStudy(1))
    z, w = pairs(1, 1, 14, scale=0.5)
    assert solve_log(M, z, w, solver=DiscreteEnergy()).holomorphic is None


def test_bad_holomorphic_option():
    with pytest.raises(ValueError, match="holomorphic must be 'auto', True or False"):
        DiscreteEnergy(holomorphic="yes")
    assert DiscreteEnergy().holomorphic == "auto"


def test_adaptive_length_quadrature_against_fine_midpoint_rule():
    """`adaptive_spline_length` on a straight spline (collinear, equally spaced nodes: the spline
    is the segment itself) through a cardioid decoder's sharp metric: within its reported error
    (and 1e-9) of a 2¹⁶-point midpoint rule with the public `norm`, where one three-point rule
    per segment is off by more."""
    from kahlergeom.geodesics._discrete import adaptive_spline_length, spline_length

    W1 = torch.tensor([[1.0 + 0.2j], [0.3 - 0.8j], [-0.5 + 0.5j]], dtype=C128)
    b1 = torch.tensor([0.05j, 0.3, -0.2 + 0.1j], dtype=C128)
    W2 = torch.tensor([[0.7, -0.2j, 0.4], [0.1 + 0.3j, 0.9, -0.6j]], dtype=C128)

    def cardioid(h):
        return 0.5 * (1 + h.real / torch.sqrt(h.real**2 + h.imag**2 + 1e-12)) * h

    M = kg.FisherManifold(lambda z: (cardioid(z @ W1.T + b1) @ W2.T, torch.tensor(1.0, dtype=F64)))
    z = torch.tensor([[-1.0 - 0.2j]], dtype=C128)
    w = torch.tensor([[1.0 + 0.1j]], dtype=C128)
    K = 8
    nodes = z[:, None] + torch.linspace(0, 1, K + 1, dtype=F64)[None, :, None] * (w - z)[:, None]
    L, qerr = adaptive_spline_length(M, nodes, 1e-10)
    T = 1 << 16
    t = (torch.arange(T, dtype=F64) + 0.5) / T
    oracle = M.norm(z + t[:, None] * (w - z), (w - z).expand(T, 1)).mean()
    assert abs(float(L[0] - oracle)) <= max(2 * float(qerr[0] * L[0]), 1e-9 * float(oracle))
    assert abs(float(spline_length(M, nodes)[0] - oracle)) > 10 * abs(float(L[0] - oracle))


def test_resample_by_powers_of_two_keeps_the_spline():
    """`resample` to 2^r·K nodes returns the same not-a-knot spline (so a pair's nodes can be
    brought to a finer common K without changing its curve or its length)."""
    from kahlergeom.geodesics._discrete import resample, spline_eval

    g = torch.Generator().manual_seed(21)
    Y = torch.randn(3, 17, 2, dtype=C128, generator=g)
    t = torch.rand(500, dtype=F64, generator=g)
    a, va = spline_eval(Y, t)
    for factor in (2, 8):
        b, vb = spline_eval(resample(Y, 16 * factor), t)
        torch.testing.assert_close(b, a, rtol=0, atol=1e-13)
        torch.testing.assert_close(vb, va, rtol=0, atol=1e-11)
    b = spline_eval(resample(Y, 24), t)[0]  # not a power of two: a different spline
    assert float((b - a).abs().max()) > 1e-6


def test_discretisation_error_branches():
    """`discretisation_error` against hand-computed sequences: the K⁻⁴ regime (ratio 16 seen
    twice) gives the geometric tail d₃/15; an erratic sequence the larger of the last two
    changes; changes at the rounding level count as converged; a non-finite length gives inf."""
    L = 10.0
    t = lambda *v: torch.tensor(v, dtype=F64)  # noqa: E731
    # L_K = L + c K^-4 at K = 8, 16, 32, 64: changes c(8^-4 - 16^-4), ...: ratio 16
    c = 1e3
    Ls = [L + c * K**-4.0 for K in (8, 16, 32, 64)]
    est = discretisation_error(*(t(v) for v in Ls))
    d3 = Ls[2] - Ls[3]
    torch.testing.assert_close(est, t(d3 / 15 / Ls[3]), rtol=1e-9, atol=0)
    assert float(est) * Ls[3] == pytest.approx(Ls[3] - L, rel=1e-6)  # the tail is exact here
    # erratic: changes 1e-3, −4e-4, 2e-5 → the larger of the last two, 4e-4
    Ls = [L + 1e-3, L, L + 4e-4, L + 3.8e-4]
    est = discretisation_error(*(t(v) for v in Ls))
    torch.testing.assert_close(est, t(4e-4 / Ls[3]), rtol=1e-6, atol=0)
    # rounding level: the last change within 64 ulps → that change
    Ls = [L + 1e-3, L + 1e-4, L + 1e-5, L + 1e-5 + 1e-15]
    est = discretisation_error(*(t(v) for v in Ls))
    assert float(est) <= 1e-15
    # non-finite
    assert math.isinf(float(discretisation_error(t(L), t(math.nan), t(L), t(L))))
