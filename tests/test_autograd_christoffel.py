"""Reverse-mode Christoffel contractions of potentials without closed forms (issue 11).

`AutogradChristoffel` computes Γ(u, v), its derivative along z and the linearised spray from
reverse-mode passes over a batched potential (docs/conventions.md § Christoffel contractions by
reverse mode). Oracles: the ``torch.func`` defaults of `KahlerPotential` (a jvp of ``levi``),
the Christoffel tensor of `kahlergeom.curvature.kahler_christoffel`, `FubiniStudy`'s closed
forms (a hand-written Fubini–Study potential must agree with them), central finite
differences, the generic autodiff geodesic equations, and closed-form distances (Fubini–Study,
a scaled Fubini–Study, and Fubini–Study × ball written as one potential).
"""

from __future__ import annotations

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from torch.func import jvp, vmap

import kahlergeom as kg
from kahlergeom import geodesics
from kahlergeom._linalg import to_real
from kahlergeom.curvature import kahler_christoffel
from kahlergeom.geodesics._equations import (
    closed_form_of,
    geodesic_rhs,
    geodesic_variational_rhs,
    variational_rhs,
)
from kahlergeom.potentials import (
    AutogradChristoffel,
    FubiniStudy,
    GaussianMixturePotential,
    KahlerPotential,
)

C128 = torch.complex128


# -- user-written potentials (no closed forms) --------------------------------------------------
class HandFS(KahlerPotential):
    """K = c · log(1 + |z|²) written by hand: Fubini–Study scaled by c (distances × √c)."""

    def __init__(self, n, c=1.0):
        super().__init__(n)
        self.c = c

    def __call__(self, z):
        return self.c * torch.log1p((z.real**2 + z.imag**2).sum(-1))


class HandFSxBall(KahlerPotential):
    """K = log(1 + |z₁|²) − log(1 − |z₂|²) on C × unit disk: FS(CP¹) × B¹ as one potential."""

    domain_description = "|z_2| < 1"

    def __init__(self):
        super().__init__(2)

    def __call__(self, z):
        r = z.real**2 + z.imag**2
        return torch.log1p(r[..., 0]) - torch.log1p(-r[..., 1])

    def contains(self, z):
        return z[..., 1].real ** 2 + z[..., 1].imag ** 2 < 1


class Weighted(KahlerPotential):
    """A strictly PSH potential that is neither Fubini–Study nor a product:
    log(1 + |z|²) + ¼|z|⁴ + exp(Re z₁)."""

    def __call__(self, z):
        r = (z.real**2 + z.imag**2).sum(-1)
        return torch.log1p(r) + 0.25 * r**2 + torch.exp(z.real[..., 0])


def _mixture():
    g = torch.Generator().manual_seed(11)
    A = torch.randn(3, 2, 2, dtype=C128, generator=g)
    P = A @ A.mH + 0.5 * torch.eye(2, dtype=C128)
    return GaussianMixturePotential(torch.randn(3, 2, dtype=C128, generator=g), P)


POTENTIALS = [
    ("hand_fs", lambda: HandFS(2), 1.0),
    ("hand_fs3_scaled", lambda: HandFS(3, c=2.5), 1.0),
    ("fs_x_ball", HandFSxBall, 0.4),
    ("weighted", lambda: Weighted(2), 0.6),
    ("mixture_closed_levi", _mixture, 1.0),  # closed-form levi, no closed-form Christoffels
]
IDS = [p[0] for p in POTENTIALS]


def _rand(g, *shape, scale=1.0):
    return scale * torch.randn(*shape, dtype=C128, generator=g)


def _fs_dist(z, w):
    ip = (1 + (z.conj() * w).sum(-1)).abs()
    nz = 1 + (z.real**2 + z.imag**2).sum(-1)
    nw = 1 + (w.real**2 + w.imag**2).sum(-1)
    return torch.arccos((ip / torch.sqrt(nz * nw)).clamp(max=1))


def _ball_dist(z, w):
    nz = 1 - (z.real**2 + z.imag**2).sum(-1)
    nw = 1 - (w.real**2 + w.imag**2).sum(-1)
    ip = 1 - (z.conj() * w).sum(-1)
    return torch.atanh(torch.sqrt(1 - nz * nw / (ip.real**2 + ip.imag**2)))


class _SlowKahler(kg.KahlerManifold):
    """No Christoffel contractions: the geodesic equations differentiate the metric field with
    ``torch.func`` (the generic path, an independent implementation)."""

    closed_form_christoffel = None


# -- the contractions ---------------------------------------------------------------------------
@pytest.mark.parametrize("name, build, scale", POTENTIALS, ids=IDS)
def test_contractions_match_torch_func_defaults(name, build, scale):
    pot = build()
    assert not pot.has_closed_form_christoffel
    ag = AutogradChristoffel(pot)
    g = torch.Generator().manual_seed(1)
    n = pot.n
    z, dz = _rand(g, 5, n, scale=scale), _rand(g, 5, n)
    u, v, du = _rand(g, 5, n), _rand(g, 5, n), _rand(g, 5, n)
    base = KahlerPotential
    pairs = [
        (ag.levi(z), pot.levi(z)),
        (ag.christoffel_contract(z, u, v), base.christoffel_contract(pot, z, u, v)),
        (ag.christoffel_contract(z, u, u), base.christoffel_contract(pot, z, u, u)),
        (
            ag.christoffel_contract_derivative(z, dz, u, v),
            base.christoffel_contract_derivative(pot, z, dz, u, v),
        ),
        (
            ag.christoffel_spray_linearised(z, u, dz, du),
            base.christoffel_spray_linearised(pot, z, u, dz, du),
        ),
    ]
    for got, want in pairs:
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-11)


@pytest.mark.parametrize("name, build, scale", POTENTIALS, ids=IDS)
def test_contract_matches_curvature_tensor(name, build, scale):
    """Γ[l, a, b] of `kahler_christoffel` (2n jvps of the metric) contracted with u, v."""
    pot = build()
    g = torch.Generator().manual_seed(2)
    z, u, v = _rand(g, 4, pot.n, scale=scale), _rand(g, 4, pot.n), _rand(g, 4, pot.n)
    gamma = kahler_christoffel(kg.KahlerManifold(pot).metric_field, z)
    want = torch.einsum("...lab,...a,...b->...l", gamma, u, v)
    got = AutogradChristoffel(pot).christoffel_contract(z, u, v)
    torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-11)


def test_hand_written_fs_matches_fubini_study_closed_forms():
    ag, fs = AutogradChristoffel(HandFS(2)), FubiniStudy(2)
    g = torch.Generator().manual_seed(3)
    z, dz, u, v, du = (_rand(g, 6, 2, scale=1.5) for _ in range(5))
    torch.testing.assert_close(ag.levi(z), fs.levi(z), rtol=1e-12, atol=1e-14)
    pairs = [
        (ag.christoffel_contract(z, u, v), fs.christoffel_contract(z, u, v)),
        (
            ag.christoffel_contract_derivative(z, dz, u, v),
            fs.christoffel_contract_derivative(z, dz, u, v),
        ),
        (
            ag.christoffel_spray_linearised(z, u, dz, du),
            fs.christoffel_spray_linearised(z, u, dz, du),
        ),
    ]
    for got, want in pairs:
        torch.testing.assert_close(got, want, rtol=1e-11, atol=1e-13)


@pytest.mark.parametrize("name, build, scale", POTENTIALS[2:4], ids=IDS[2:4])
def test_derivatives_match_finite_differences(name, build, scale):
    ag = AutogradChristoffel(build())
    g = torch.Generator().manual_seed(4)
    n = ag.n
    z, dz = _rand(g, 4, n, scale=scale), _rand(g, 4, n, scale=0.3)
    u, v, du = _rand(g, 4, n), _rand(g, 4, n), _rand(g, 4, n)
    h = 1e-5
    fd = (ag.christoffel_contract(z + h * dz, u, v) - ag.christoffel_contract(z - h * dz, u, v)) / (
        2 * h
    )
    got = ag.christoffel_contract_derivative(z, dz, u, v)
    torch.testing.assert_close(got, fd, rtol=1e-7, atol=1e-8)
    fd_spray = (
        ag.christoffel_contract(z + h * dz, u + h * du, u + h * du)
        - ag.christoffel_contract(z - h * dz, u - h * du, u - h * du)
    ) / (2 * h)
    torch.testing.assert_close(
        ag.christoffel_spray_linearised(z, u, dz, du), fd_spray, rtol=1e-7, atol=1e-8
    )


@given(
    seed=st.integers(0, 2**16),
    alpha=st.complex_numbers(max_magnitude=3, allow_nan=False, allow_infinity=False),
    a=st.floats(-2, 2),
    b=st.floats(-2, 2),
)
def test_contraction_invariants(seed, alpha, a, b):
    """Γ(u, v) = Γ(v, u) (Kähler), complex bilinear; the spray linearisation is real-linear
    in (dz, du)."""
    ag = AutogradChristoffel(Weighted(2))
    g = torch.Generator().manual_seed(seed)
    z, u, v = _rand(g, 3, 2, scale=0.6), _rand(g, 3, 2), _rand(g, 3, 2)
    d1, d2, e1, e2 = (_rand(g, 3, 2) for _ in range(4))
    tol = dict(rtol=1e-9, atol=1e-10)
    G_uv = ag.christoffel_contract(z, u, v)
    torch.testing.assert_close(ag.christoffel_contract(z, v, u), G_uv, **tol)
    torch.testing.assert_close(ag.christoffel_contract(z, alpha * u, v), alpha * G_uv, **tol)
    L = ag.christoffel_spray_linearised
    torch.testing.assert_close(
        L(z, u, a * d1 + b * d2, a * e1 + b * e2), a * L(z, u, d1, e1) + b * L(z, u, d2, e2), **tol
    )


def test_broadcasting_and_cache_are_transparent():
    ag = AutogradChristoffel(Weighted(2))
    g = torch.Generator().manual_seed(5)
    z, u = _rand(g, 4, 1, 2, scale=0.5), _rand(g, 4, 1, 2)
    dz, du = _rand(g, 4, 3, 2), _rand(g, 4, 3, 2)
    out = ag.christoffel_spray_linearised(z, u, dz, du)  # fills the cache at (z, u)
    assert out.shape == (4, 3, 2)
    for j in range(3):
        ag._cache = None
        want = ag.christoffel_spray_linearised(z[:, 0], u[:, 0], dz[:, j], du[:, j])
        torch.testing.assert_close(out[:, j], want, rtol=1e-12, atol=1e-14)
    # A cached entry is not reused for other values, also after an in-place change.
    a = ag.christoffel_contract(z[:, 0], u[:, 0], u[:, 0])
    z2 = z[:, 0].clone()
    z2[0, 0] += 0.1
    b = ag.christoffel_contract(z2, u[:, 0], u[:, 0])
    assert not torch.allclose(a[0], b[0])
    ag._cache = None
    torch.testing.assert_close(b, ag.christoffel_contract(z2, u[:, 0], u[:, 0]))
    assert ag.christoffel_contract(z[:0, 0], u[:0, 0], u[:0, 0]).shape == (0, 2)


def test_complex64():
    ag = AutogradChristoffel(HandFS(2))
    g = torch.Generator().manual_seed(6)
    z, u = _rand(g, 3, 2), _rand(g, 3, 2)
    got = ag.christoffel_contract(
        z.to(torch.complex64), u.to(torch.complex64), u.to(torch.complex64)
    )
    assert got.dtype == torch.complex64
    torch.testing.assert_close(
        got, FubiniStudy(2).christoffel_contract(z, u, u).to(torch.complex64), rtol=1e-4, atol=1e-5
    )


# -- soundness outside plain eager autograd -----------------------------------------------------
def test_under_torch_func_transforms_and_grad_it_delegates():
    pot = Weighted(2)
    ag = AutogradChristoffel(pot)
    g = torch.Generator().manual_seed(7)
    z, u, dz = _rand(g, 3, 2, scale=0.5), _rand(g, 3, 2), _rand(g, 3, 2)
    eager = ag.christoffel_contract(z, u, u)
    # vmap: batched tensors; reverse-mode autograd would not see them, the default does.
    torch.testing.assert_close(vmap(lambda a, b: ag.christoffel_contract(a, b, b))(z, u), eager)
    # jvp along z equals the reverse-mode derivative
    t = jvp(lambda x: ag.christoffel_contract(x, u, u), (z,), (dz,))[1]
    torch.testing.assert_close(t, ag.christoffel_contract_derivative(z, dz, u, u))
    # inputs that require grad keep their graph (the result is differentiable in u)
    ur = u.clone().requires_grad_(True)
    out = ag.christoffel_contract(z, ur, ur)
    assert out.requires_grad
    (gu,) = torch.autograd.grad(out.real.sum(), ur)
    want = torch.func.grad(lambda x: KahlerPotential.christoffel_contract(pot, z, x, x).real.sum())
    torch.testing.assert_close(gu, want(u))
    with torch.inference_mode():
        torch.testing.assert_close(ag.christoffel_contract(z, u, u), eager)
    with torch.no_grad():  # the adapter enables grad for its own passes
        torch.testing.assert_close(ag.christoffel_contract(z, u, u), eager)


def test_trainable_potential_tensors_keep_their_gradient():
    """A potential holding a tensor that requires grad: results stay differentiable in it.
    Oracle: central differences in that tensor (in-place changes of it must invalidate the
    cache, or the differences vanish). (The torch.func default's gradient of the
    spray linearisation in such a closure tensor is off by 30% here, torch 2.13.)"""

    class Learned(KahlerPotential):
        def __init__(self):
            super().__init__(2)
            self.c = torch.tensor(0.3, dtype=torch.float64, requires_grad=True)

        def __call__(self, z):
            r = (z.real**2 + z.imag**2).sum(-1)
            return torch.log1p(r) + self.c * r**2

    pot = Learned()
    ag = AutogradChristoffel(pot)
    g = torch.Generator().manual_seed(14)
    z, u, dz, du = (_rand(g, 3, 2, scale=0.5) for _ in range(4))

    def total(f):
        out = f()
        return out.real.sum() + out.imag.sum()

    for f in (
        lambda: ag.christoffel_contract(z, u, u),
        lambda: ag.christoffel_spray_linearised(z, u, dz, du),
    ):
        (got,) = torch.autograd.grad(total(f), pot.c)
        h = 1e-6
        with torch.no_grad():
            pot.c += h
            up = total(f)
            pot.c -= 2 * h
            down = total(f)
            pot.c += h
            assert not f().requires_grad
        assert got.abs() > 1e-2
        torch.testing.assert_close(got, (up - down) / (2 * h), rtol=1e-7, atol=1e-9)
    # A reassigned attribute invalidates the cache too.
    with torch.no_grad():
        before = ag.christoffel_contract(z, u, u)
        pot.c = torch.tensor(0.7, dtype=torch.float64)
        after = ag.christoffel_contract(z, u, u)
    assert not torch.allclose(before, after)
    torch.testing.assert_close(after, AutogradChristoffel(pot).christoffel_contract(z, u, u))


def test_manifold_hands_out_the_adapter_only_where_sound():
    user = kg.KahlerManifold(HandFS(2))
    assert not user.potential.has_closed_form_christoffel
    cf = user.closed_form_christoffel
    assert isinstance(cf, AutogradChristoffel) and cf is user.closed_form_christoffel
    fs = kg.KahlerManifold(FubiniStudy(2))
    assert fs.closed_form_christoffel is fs.potential
    seen = []

    def probe(x):
        seen.append(user.closed_form_christoffel)
        return x

    vmap(probe)(torch.zeros(2, 2))
    assert seen == [None]


def test_unbatched_potential_keeps_the_generic_path():
    """A KL potential with one base point per batch entry pairs z[i] with z0[i]: not batched,
    so the manifold hands out no reverse-mode contractions."""
    from kahlergeom.potentials import KLPotential

    def decoder(z):
        return torch.cat([z, z**2], -1), torch.ones(4, dtype=torch.float64)

    z0 = torch.zeros(3, 2, dtype=C128)
    assert not KLPotential(decoder, z0).batched_call
    assert kg.KahlerManifold(KLPotential(decoder, z0)).closed_form_christoffel is None
    with pytest.raises(ValueError, match="not batched"):
        AutogradChristoffel(KLPotential(decoder, z0))
    single = kg.KahlerManifold(KLPotential(decoder, z0[0]))
    assert single.potential.batched_call
    assert isinstance(single.closed_form_christoffel, AutogradChristoffel)


def test_potential_breaking_the_batched_contract_is_rejected():
    class Unbatched(KahlerPotential):
        def __call__(self, z):  # one value for the whole batch
            return torch.log1p((z.real**2 + z.imag**2).sum())

    ag = AutogradChristoffel(Unbatched(2))
    z = torch.zeros(3, 2, dtype=C128)
    with pytest.raises(ValueError, match=r"batched contract"):
        ag.christoffel_contract(z, z + 1, z + 1)
    with pytest.raises(ValueError, match="potential must be"):
        AutogradChristoffel(lambda z: z)


# -- the geodesic equations ---------------------------------------------------------------------
@pytest.mark.parametrize("name, build, scale", POTENTIALS[1:4], ids=IDS[1:4])
def test_geodesic_and_variational_rhs_match_generic_autodiff(name, build, scale):
    pot = build()
    fast, slow = kg.KahlerManifold(pot), _SlowKahler(pot)
    assert isinstance(closed_form_of(fast), AutogradChristoffel) and closed_form_of(slow) is None
    n = pot.n
    g = torch.Generator().manual_seed(8)
    z, zd, V = _rand(g, 4, n, scale=scale), _rand(g, 4, n), _rand(g, 4, n)
    y = torch.cat([to_real(z), to_real(zd)], -1)
    yt = torch.cat([y, to_real(V)], -1)
    tol = dict(rtol=1e-10, atol=1e-11)
    torch.testing.assert_close(geodesic_rhs(fast)(y), geodesic_rhs(slow)(y), **tol)
    torch.testing.assert_close(
        geodesic_rhs(fast, transport=True)(yt), geodesic_rhs(slow, transport=True)(yt), **tol
    )
    m, d = 2 * n, 4 * n
    Y = torch.cat([y, torch.randn(4, m * d, dtype=torch.float64, generator=g)], -1)
    want = variational_rhs(geodesic_rhs(slow), d, m)(Y)
    torch.testing.assert_close(geodesic_variational_rhs(fast)(Y), want, **tol)


def test_exp_matches_generic_autodiff_path():
    """A non-FS potential: the end point of exp by both implementations of the equations."""
    pot = Weighted(2)
    g = torch.Generator().manual_seed(9)
    z, v = _rand(g, 2, 2, scale=0.3), _rand(g, 2, 2, scale=0.4)
    fast = geodesics.exp(kg.KahlerManifold(pot), z, v)
    slow = geodesics.exp(_SlowKahler(pot), z, v)
    assert bool(fast.success.all()) and bool(slow.success.all())
    torch.testing.assert_close(fast.point, slow.point, rtol=1e-8, atol=1e-9)
    torch.testing.assert_close(fast.velocity, slow.velocity, rtol=1e-8, atol=1e-9)


def test_shooting_on_hand_written_fs_matches_closed_form_distance():
    M = kg.KahlerManifold(HandFS(2))
    g = torch.Generator().manual_seed(10)
    z, w = _rand(g, 3, 2, scale=0.4), _rand(g, 3, 2, scale=0.4)
    r = geodesics.solve_log(M, z, w, solver=geodesics.Shooting())
    assert bool(r.success.all()), r.status
    torch.testing.assert_close(r.length, _fs_dist(z, w), rtol=1e-7, atol=0)


def _disk(g, P, n, radius):
    x = torch.randn(P, n, dtype=C128, generator=g)
    r = radius * torch.rand(P, 1, dtype=torch.float64, generator=g) ** (1 / (2 * n))
    return r * x / torch.linalg.vector_norm(x, dim=-1, keepdim=True)


def _user_cases(seed, P, fs_radius, ball_radius):
    g = torch.Generator().manual_seed(seed)
    z, w = _disk(g, P, 2, fs_radius), _disk(g, P, 2, fs_radius)
    cases = [
        ("hand_fs", kg.KahlerManifold(HandFS(2)), z, w, _fs_dist(z, w)),
        ("hand_fs_scaled", kg.KahlerManifold(HandFS(2, c=2.5)), z, w, 2.5**0.5 * _fs_dist(z, w)),
    ]
    z1, w1 = _disk(g, P, 1, fs_radius), _disk(g, P, 1, fs_radius)
    zb, wb = _disk(g, P, 1, ball_radius), _disk(g, P, 1, ball_radius)
    truth = torch.sqrt(_fs_dist(z1, w1) ** 2 + _ball_dist(zb, wb) ** 2)
    a, b = torch.cat([z1, zb], -1), torch.cat([w1, wb], -1)
    cases.append(("fs_x_ball", kg.KahlerManifold(HandFSxBall()), a, b, truth))
    return cases


def _check_no_silently_wrong(cases, min_success):
    for name, M, a, b, want in cases:
        r = geodesics.solve_log(M, a, b)
        err = (r.length - want).abs() / want
        assert not bool((r.success & ~(err <= 1e-6)).any()), (name, err, r.status)
        assert int(r.success.sum()) >= min_success, (name, r.reasons)


@pytest.mark.slow
def test_dist_on_user_potentials_matches_closed_forms():
    """Default `dist` solver on user-written potentials: within 1e-6 of the closed forms."""
    _check_no_silently_wrong(_user_cases(12, 3, 1.2, 0.7), min_success=3)


@pytest.mark.slow
@pytest.mark.heavy
def test_dist_on_user_potentials_far_pairs():
    """Far-apart pairs (|z| ≤ 2 in the FS charts, minutes): every length within 1e-6 or
    flagged, none silently wrong; at most one flagged per set."""
    _check_no_silently_wrong(_user_cases(13, 8, 2.0, 0.8), min_success=7)
