"""kahlergeom.symbolic against closed forms (docs/conventions.md § Closed forms), torch autodiff and
real calculus.

Oracles: the closed-form Levi matrices, Ricci forms and curvatures of flat space, Fubini–Study
and the ball, typed from the conventions page; `kahlergeom.ddbar` and
`kahlergeom.curvature.kahler_christoffel` (torch autodiff, an independent engine) on random
real potentials, with the sympy side evaluated by sympy's own numpy `lambdify`; the Gaussian
curvature of a conformal metric in real coordinates for n = 1.
"""

from __future__ import annotations

import numpy as np
import pytest
import sympy as sp
import torch
from conftest import assert_close, random_points
from hypothesis import given
from hypothesis import strategies as st

import kahlergeom as kg
from kahlergeom import symbolic as S
from kahlergeom.curvature import kahler_christoffel
from kahlergeom.potentials import ComplexHyperbolic, Flat, FubiniStudy
from kahlergeom.wirtinger import closedness_residual

I = sp.I


def r2(z, zb):
    return sum(a * b for a, b in zip(z, zb, strict=True))


def fs_closed(z, zb):
    """docs/conventions.md § Closed forms: G[a,b] = ((1+|z|²) δ_ab − conj(z_a) z_b) / (1+|z|²)²."""
    n, s = len(z), 1 + r2(z, zb)
    return sp.Matrix(n, n, lambda a, b: (s * sp.KroneckerDelta(a, b) - zb[a] * z[b]) / s**2)


def ball_closed(z, zb):
    """docs/conventions.md § Closed forms: G[a,b] = ((1−|z|²) δ_ab + conj(z_a) z_b) / (1−|z|²)²."""
    n, s = len(z), 1 - r2(z, zb)
    return sp.Matrix(n, n, lambda a, b: (s * sp.KroneckerDelta(a, b) + zb[a] * z[b]) / s**2)


def exact(value) -> sp.Expr:
    """Canonical a + b*I form of an exact complex number (fast, unlike simplify)."""
    return sp.expand_complex(value)


def is_zero_matrix(M) -> bool:
    return all(sp.cancel(sp.together(e)) == 0 for e in M)


def at_point(expr, z, zb, point):
    """Substitute an exact (sympy) complex point, zb = its conjugate."""
    sub = {z[a]: point[a] for a in range(len(z))}
    sub |= {zb[a]: sp.conjugate(point[a]) for a in range(len(z))}
    return expr.xreplace(sub) if hasattr(expr, "xreplace") else expr.subs(sub)


def numpy_eval(expr, z, zb, points: np.ndarray) -> np.ndarray:
    """sympy's own lambdify (numpy), independent of kahlergeom's torch evaluator.

    ``points`` complex (m, n) or (n,) → (m, *shape) or shape (a scalar or a matrix).
    """
    pts = np.atleast_2d(points)
    entries = list(expr) if isinstance(expr, sp.MatrixBase) else [expr]
    f = sp.lambdify((*z, *zb), entries, modules="numpy")
    vals = f(*pts.T, *np.conj(pts).T)
    out = np.stack([np.broadcast_to(np.asarray(v, dtype=complex), pts.shape[:1]) for v in vals], -1)
    out = out.reshape(pts.shape[0], *(expr.shape if isinstance(expr, sp.MatrixBase) else ()))
    return out if np.ndim(points) == 2 else out[0]


# --------------------------------------------------------------------------- basics


def test_symbols_names_and_errors():
    z, zb = S.symbols(3)
    assert [str(s) for s in z] == ["z1", "z2", "z3"]
    assert [str(s) for s in zb] == ["zb1", "zb2", "zb3"]
    assert all(s.is_real is None for s in z + zb)  # independent complex symbols
    with pytest.raises(ValueError, match="n must be"):
        S.symbols(0)
    K = z[0] * zb[0]
    with pytest.raises(ValueError, match="same length"):
        S.levi_matrix(K, z, zb[:2])
    with pytest.raises(ValueError, match="z: symbol x carries a real"):
        S.levi_matrix(K, (sp.Symbol("x", real=True),), (sp.Symbol("xb"),))
    with pytest.raises(ValueError, match="share symbols"):
        S.levi_matrix(K, z, (zb[0], zb[1], z[2]))
    with pytest.raises(ValueError, match="repeated"):
        S.levi_matrix(K, (z[0], z[0]), zb[:2])
    with pytest.raises(ValueError, match="zb must be a non-empty tuple"):
        S.levi_matrix(K, z, "zb")


def test_expression_errors_name_the_argument():
    z, zb = S.symbols(2)
    with pytest.raises(ValueError, match="K contains arg"):
        S.levi_matrix(sp.arg(z[0]) ** 2, z, zb)
    with pytest.raises(ValueError, match="K contains sign"):
        S.levi_matrix(sp.sign(z[0] * zb[0]), z, zb)
    with pytest.raises(ValueError, match="K contains the function"):
        S.levi_matrix(sp.Function("f")(z[0] * zb[0]), z, zb)
    with pytest.raises(ValueError, match="K contains the symbol w"):
        S.levi_matrix(sp.Symbol("w") * z[0] * zb[0], z, zb)
    with pytest.raises(ValueError, match="K must be real"):
        S.levi_matrix(z[0] * zb[0] + z[1], z, zb)
    with pytest.raises(ValueError, match="K must be a scalar"):
        S.levi_matrix(sp.Matrix([z[0]]), z, zb)


@pytest.mark.parametrize(
    "written, expected",
    [
        (lambda z, zb: sp.Abs(z[0]) ** 2, lambda z, zb: z[0] * zb[0]),
        (lambda z, zb: z[0] * sp.conjugate(z[0]), lambda z, zb: z[0] * zb[0]),
        (lambda z, zb: sp.re(z[0]) ** 2, lambda z, zb: (z[0] + zb[0]) ** 2 / 4),
        (lambda z, zb: -sp.log(sp.im(z[0])), lambda z, zb: -sp.log((z[0] - zb[0]) / (2 * I))),
        (
            lambda z, zb: sp.im(z[0] * z[1]) ** 2 + sp.re(z[1]),
            lambda z, zb: -((z[0] * z[1] - zb[0] * zb[1]) ** 2) / 4 + (z[1] + zb[1]) / 2,
        ),
        (
            lambda z, zb: sp.Abs(z[0] + 2 * I * z[1]) ** 2,
            lambda z, zb: (z[0] + 2 * I * z[1]) * (zb[0] - 2 * I * zb[1]),
        ),
    ],
)
def test_real_parts_are_rewritten_in_z_and_zb(written, expected):
    """re, im, conjugate and Abs of coordinate expressions give the Levi matrix of the
    same function written with z and zb by hand (oracle: the hand-written form)."""
    z, zb = S.symbols(2)
    got = S.levi_matrix(written(z, zb), z, zb)
    want = S.levi_matrix(expected(z, zb), z, zb)
    assert sp.simplify(got - want) == sp.zeros(2, 2)


def test_half_plane_written_with_im():
    """K = -log Im z: G = 1/(4 (Im z)^2) (the Poincaré half-plane), in sympy and in torch."""
    z, zb = S.symbols(1)
    y = sp.Symbol("y", positive=True)
    G = S.levi_matrix(-sp.log(sp.im(z[0])), z, zb)
    assert sp.simplify(G[0, 0].subs({z[0]: 1 + I * y, zb[0]: 1 - I * y}) - 1 / (4 * y**2)) == 0
    P = S.to_potential(-sp.log(sp.im(z[0])), z, zb, domain=sp.im(z[0]) > 0)
    pts = torch.tensor([[0.3 + 2j], [-1 + 0.5j]], dtype=torch.complex128)
    got = kg.ddbar(P, pts)[..., 0, 0].real
    torch.testing.assert_close(got, 1 / (4 * pts.imag[:, 0] ** 2), rtol=1e-12, atol=0)
    assert P.contains(torch.tensor([[1 - 1j]], dtype=torch.complex128)).tolist() == [False]


def test_is_real_and_conjugate():
    z, zb = S.symbols(2)
    assert S.is_real(sp.log(1 + r2(z, zb)), z, zb)
    assert S.is_real(I * (z[0] - zb[0]), z, zb)  # = -2 Im z1
    assert S.is_real((2 + I) * z[0] * zb[1] + (2 - I) * zb[0] * z[1], z, zb)
    assert not S.is_real(z[0] - zb[0], z, zb)
    assert not S.is_real(I * z[0] * zb[0], z, zb)
    assert S.conjugate((1 + 2 * I) * z[0] ** 2 * zb[1], z, zb) == (1 - 2 * I) * zb[0] ** 2 * z[1]
    # a real parameter is left alone
    c = sp.Symbol("c", positive=True)
    assert S.is_real(c * z[0] * zb[0], z, zb)


def test_decide_zero_exact_and_sampled():
    z, zb = S.symbols(1)
    w = z[0] * zb[0]
    assert S.decide_zero((1 + w) ** 2 - 1 - 2 * w - w**2, z, zb) == (True, "exact")
    assert S.decide_zero(z[0] - zb[0], z, zb) == (False, "exact")
    # log(exp(w)) = w only where Im w is small: sympy keeps it, the samples (w = |z|²) agree
    assert S.decide_zero(sp.log(sp.exp(w)) - w, z, zb) == (True, "sampled")
    assert S.decide_zero(sp.log(sp.exp(w)) - 2 * w, z, zb) == (False, "sampled")


# --------------------------------------------------------------------------- Levi matrix


@pytest.mark.parametrize("n", [1, 2, 3])
def test_levi_matrix_closed_forms(n):
    z, zb = S.symbols(n)
    s = r2(z, zb)
    assert S.levi_matrix(s, z, zb) == sp.eye(n)
    assert is_zero_matrix(S.levi_matrix(sp.log(1 + s), z, zb) - fs_closed(z, zb))
    assert is_zero_matrix(S.levi_matrix(-sp.log(1 - s), z, zb) - ball_closed(z, zb))
    # unsimplified output is the same function
    assert is_zero_matrix(S.levi_matrix(sp.log(1 + s), z, zb, simplify=False) - fs_closed(z, zb))


def test_levi_matrix_detects_a_wrong_closed_form():
    """The comparison above can fail: a sign error in the off-diagonal term is caught."""
    z, zb = S.symbols(2)
    s = 1 + r2(z, zb)
    wrong = sp.Matrix(2, 2, lambda a, b: (s * sp.KroneckerDelta(a, b) + zb[a] * z[b]) / s**2)
    assert not is_zero_matrix(S.levi_matrix(sp.log(s), z, zb) - wrong)


@st.composite
def real_potentials(draw):
    """Random real potentials: positive sums of |monomial|², |affine|², log(1+|affine|²),
    exp(|affine|²/4), and a real pluriharmonic part 2 Re(c z^α)."""
    n = draw(st.integers(1, 3))
    z, zb = S.symbols(n)
    ints = st.integers(-1, 1)

    def cplx():
        return draw(ints) + I * draw(ints)

    def affine():
        coeffs = [cplx() for _ in range(n)]
        c0 = cplx()
        w = c0 + sum(c * v for c, v in zip(coeffs, z, strict=True))
        wb = sp.conjugate(c0) + sum(sp.conjugate(c) * v for c, v in zip(coeffs, zb, strict=True))
        return w, wb

    K = sp.S.Zero
    for _ in range(draw(st.integers(1, 2))):
        kind = draw(st.sampled_from(["monomial", "affine", "log", "exp", "pluriharmonic"]))
        if kind == "monomial":
            alpha = [draw(st.integers(0, 2)) for _ in range(n)]
            m = sp.Mul(*(v**k for v, k in zip(z, alpha, strict=True)))
            mb = sp.Mul(*(v**k for v, k in zip(zb, alpha, strict=True)))
            K += sp.Rational(draw(st.integers(1, 4)), 2) * m * mb
        elif kind == "affine":
            w, wb = affine()
            K += w * wb
        elif kind == "log":
            w, wb = affine()
            K += sp.log(1 + w * wb)
        elif kind == "exp":
            w, wb = affine()
            K += sp.exp(w * wb / 4)
        else:
            c, k, a = cplx(), draw(st.integers(1, 3)), draw(st.integers(0, n - 1))
            K += c * z[a] ** k + sp.conjugate(c) * zb[a] ** k
    return K, z, zb


@given(real_potentials(), st.integers(0, 2**31 - 1))
def test_torch_ddbar_matches_sympy_levi(Kz, seed):
    K, z, zb = Kz
    n = len(z)
    G = S.levi_matrix(K, z, zb, simplify=False)
    gen = torch.Generator().manual_seed(seed)
    pts = random_points(n, (3,), radius=0.7, generator=gen)
    pot = S.to_potential(K, z, zb)
    torch_G = kg.ddbar(pot, pts)
    assert_close(torch_G, torch.from_numpy(numpy_eval(G, z, zb, pts.numpy())))
    expected_K = numpy_eval(K, z, zb, pts.numpy())
    assert np.abs(expected_K.imag).max() < 1e-9 * (1 + np.abs(expected_K).max())
    assert_close(pot(pts), torch.from_numpy(expected_K.real))


# --------------------------------------------------------------------------- to_potential


@pytest.mark.parametrize(
    "builtin, make_K, radius",
    [
        (Flat, lambda s: s, 2.0),
        (FubiniStudy, lambda s: sp.log(1 + s), 2.0),
        (ComplexHyperbolic, lambda s: -sp.log(1 - s), 0.9),
    ],
)
@pytest.mark.parametrize("n", [1, 3])
def test_to_potential_round_trip(builtin, make_K, radius, n, gen):
    z, zb = S.symbols(n)
    s = r2(z, zb)
    domain = s < 1 if builtin is ComplexHyperbolic else None
    pot = S.to_potential(make_K(s), z, zb, domain=domain, name="sym")
    ref = builtin(n)
    assert isinstance(pot, kg.potentials.KahlerPotential) and pot.n == n
    pts = random_points(n, (2, 3), radius=radius, generator=gen)
    pts[0, 0] = 0  # |w|² at w = 0: must not go through abs()
    assert pot(pts).shape == (2, 3) and pot(pts).dtype == torch.float64
    assert_close(pot(pts), ref(pts))
    assert_close(kg.ddbar(pot, pts), ref.levi(pts))
    assert_close(kg.KahlerManifold(pot).metric(pts), ref.levi(pts))
    # float32 (complex64) through vmap/hessian
    p32 = pts.to(torch.complex64)
    assert pot(p32).dtype == torch.float32
    assert_close(kg.ddbar(pot, p32), ref.levi(pts).to(torch.complex64), atol=1e-4)
    # domain
    far = torch.full((n,), 1.5, dtype=torch.complex128)
    assert bool(pot.contains(far)) == bool(ref.contains(far))
    assert pot.contains(pts).shape == (2, 3) and bool(pot.contains(pts).all())


def test_to_potential_domain_is_enforced_and_callable_domains():
    z, zb = S.symbols(1)
    disk = S.to_potential(-sp.log(1 - z[0] * zb[0]), z, zb, domain=z[0] * zb[0] < 1)
    outside = torch.tensor([[1.2 + 0j]], dtype=torch.complex128)
    with pytest.raises(ValueError, match="z: 1 point"):
        kg.ddbar(disk, outside)
    half = S.to_potential(
        z[0] * zb[0], z, zb, domain=lambda w: w[..., 0].real > 0, name="half-plane"
    )
    w = torch.tensor([[1 + 1j], [-1 + 0j]], dtype=torch.complex128)
    assert half.contains(w).tolist() == [True, False]
    assert "half-plane" in repr(half)
    both = sp.And(z[0] * zb[0] < 4, z[0] * zb[0] > sp.Rational(1, 4))
    ring = S.to_potential(z[0] * zb[0], z, zb, domain=both)
    r = torch.tensor([[0.1 + 0j], [1j], [3 + 0j]], dtype=torch.complex128)
    assert ring.contains(r).tolist() == [False, True, False]


def test_to_potential_errors():
    z, zb = S.symbols(2)
    c = sp.Symbol("c", real=True)
    with pytest.raises(ValueError, match="K has free parameters"):
        S.to_potential(c * z[0] * zb[0], z, zb)
    with pytest.raises(ValueError, match="K must be real"):
        S.to_potential(z[0] ** 2 * zb[1], z, zb)
    with pytest.raises(ValueError, match="domain must be"):
        S.to_potential(z[0] * zb[0], z, zb, domain="|z|<1")
    with pytest.raises(ValueError, match="domain: both sides"):
        S.to_potential(z[0] * zb[0], z, zb, domain=z[0] < 1)
    with pytest.raises(ValueError, match="points must have last dimension n = 2"):
        S.evaluate(z[0] * zb[0], z, zb, torch.zeros(3, dtype=torch.complex128))


def test_to_torch_traceable_and_evaluate():
    z, zb = S.symbols(2)
    G = S.levi_matrix(sp.log(1 + r2(z, zb)), z, zb)
    fn = S.to_torch(G, z, zb)
    pts = random_points(2, (4,), generator=torch.Generator().manual_seed(0))
    assert_close(torch.func.vmap(fn)(pts), FubiniStudy(2).levi(pts))
    assert_close(S.evaluate(G, z, zb, pts), FubiniStudy(2).levi(pts))
    # constant entries broadcast to the batch
    assert S.evaluate(sp.eye(2), z, zb, pts).shape == (4, 2, 2)
    assert S.evaluate(sp.Integer(3), z, zb, pts).shape == (4,)


# --------------------------------------------------------------------------- Hermitian / PSH


def test_check_hermitian():
    z, zb = S.symbols(2)
    good = sp.Matrix([[1 + z[0] * zb[0], (1 + I) * z[1]], [(1 - I) * zb[1], 2]])
    assert S.check_hermitian(good, z, zb).ok
    res = S.check_hermitian(sp.Matrix([[1, z[0]], [0, 1]]), z, zb)
    assert not res and res.index == (0, 1) and res.method == "exact"
    assert sp.simplify(res.residual - z[0]) == 0
    assert not S.check_hermitian(sp.Matrix([[1, I], [I, 1]]), z, zb)
    assert not S.check_hermitian(sp.Matrix([[I * z[0] * zb[0], 0], [0, 1]]), z, zb)
    with pytest.raises(ValueError, match=r"G must have shape \(2, 2\)"):
        S.check_hermitian(sp.eye(3), z, zb)


def test_non_hermitian_matrix_is_rejected():
    z, zb = S.symbols(2)
    bad = sp.Matrix([[1, z[0]], [0, 1]])
    for fn in (S.check_psh, S.check_kahler, S.ricci_form, S.riemann_tensor):
        with pytest.raises(ValueError, match="must be Hermitian"):
            fn(bad, z, zb)


@pytest.mark.parametrize("n", [1, 2])
def test_psh_passes_exactly_on_flat_and_fubini_study(n):
    z, zb = S.symbols(n)
    s = r2(z, zb)
    for K in (s, sp.log(1 + s)):
        for strict in (False, True):
            res = S.check_psh(K, z, zb, strict=strict)
            assert res.ok and res.method == "exact", res
            assert res.counterexample is None
    # semidefinite: all 2^n - 1 principal minors; definite: the n leading ones
    assert len(S.check_psh(sp.log(1 + s), z, zb).minors) == 2**n - 1
    assert len(S.check_psh(sp.log(1 + s), z, zb, strict=True).minors) == n


def test_psh_ball_exact_for_n1_sampled_for_n2():
    z, zb = S.symbols(1)
    res = S.check_psh(-sp.log(1 - z[0] * zb[0]), z, zb, strict=True)
    assert res.ok and res.method == "exact"
    z, zb = S.symbols(2)
    s = r2(z, zb)
    res = S.check_psh(-sp.log(1 - s), z, zb, strict=True, domain=s < 1, radius=1.0, n_samples=64)
    # the minors need |z| < 1, which sympy's real assumptions cannot use: sampled
    assert res.ok and res.method == "sampled" and res.n_samples == 64
    assert any(d is None for _, _, d in res.minors)
    assert res.min_eigenvalue >= 1 - 1e-12  # eigenvalues of the ball metric are >= 1


def _has_negative_eigenvalue(K, z, zb, point) -> bool:
    G = numpy_eval(S.levi_matrix(K, z, zb), z, zb, point)
    return np.linalg.eigvalsh(0.5 * (G + G.conj().T))[0] < -1e-12


def test_psh_fails_on_minus_flat():
    for n in (1, 2):
        z, zb = S.symbols(n)
        K = -r2(z, zb)
        res = S.check_psh(K, z, zb)
        assert not res and res.method == "exact" and res.index == (0,)
        assert res.min_eigenvalue == pytest.approx(-1.0)
        assert _has_negative_eigenvalue(K, z, zb, res.counterexample)


def test_psh_fails_on_indefinite_quadratic():
    z, zb = S.symbols(2)
    K = z[0] * zb[0] - sp.Rational(1, 2) * z[1] * zb[1]
    res = S.check_psh(K, z, zb)
    assert not res and res.method == "exact"
    assert res.index == (1,) and res.residual == -sp.Rational(1, 2)
    assert res.min_eigenvalue == pytest.approx(-0.5)
    assert _has_negative_eigenvalue(K, z, zb, res.counterexample)
    assert not S.check_psh(K, z, zb, strict=True)


def test_psh_semidefinite_vs_definite():
    z, zb = S.symbols(2)
    K = z[0] * zb[0]  # G = diag(1, 0)
    assert S.check_psh(K, z, zb).ok
    res = S.check_psh(K, z, zb, strict=True)
    assert not res and res.method == "exact" and res.index == (0, 1)


def test_psh_sampled_failure_finds_a_counterexample():
    """K = |z|⁴ − |z|²: G = 4|z|² − 1 changes sign; sympy cannot decide, sampling can."""
    z, zb = S.symbols(1)
    s = z[0] * zb[0]
    K = s**2 - s
    res = S.check_psh(K, z, zb, radius=1.0, n_samples=64)
    assert not res and res.method == "sampled"
    assert abs(res.counterexample[0]) < 0.5
    assert _has_negative_eigenvalue(K, z, zb, res.counterexample)
    # restricted to |z| > 1/2 (callable domain) it is PSH on the samples
    far = S.check_psh(K, z, zb, radius=2.0, n_samples=64, domain=lambda w: w.abs()[..., 0] > 0.5)
    assert far.ok and far.method == "sampled"
    with pytest.raises(ValueError, match="domain: no sample point"):
        S.check_psh(K, z, zb, radius=0.1, domain=s > 4)
    with pytest.raises(ValueError, match="free parameters"):
        S.check_psh(sp.Symbol("c", real=True) * K, z, zb)


# --------------------------------------------------------------------------- Kähler


def test_check_kahler():
    z, zb = S.symbols(2)
    assert S.check_kahler(S.levi_matrix(sp.log(1 + r2(z, zb)), z, zb), z, zb).ok
    # diag(1 + |z1|², 1) IS closed: it is ∂∂̄(|z1|² + |z1|⁴/4 + |z2|²)
    closed = sp.diag(1 + z[0] * zb[0], 1)
    K = z[0] * zb[0] + (z[0] * zb[0]) ** 2 / 4 + z[1] * zb[1]
    assert S.levi_matrix(K, z, zb) == closed
    assert S.check_kahler(closed, z, zb).ok
    # diag(1, 1 + |z1|²) is not: ∂_1 g_{2 2̄} = zb1 but ∂_2 g_{1 2̄} = 0
    open_ = sp.diag(1, 1 + z[0] * zb[0])
    res = S.check_kahler(open_, z, zb)
    assert not res and res.method == "exact"
    a, b, c = res.index
    assert (a, b, c) == (0, 1, 1)
    assert sp.expand(res.residual - (sp.diff(open_[a, b], z[c]) - sp.diff(open_[c, b], z[a]))) == 0
    assert sp.expand(res.residual + zb[0]) == 0
    # torch's numerical closedness residual agrees: ~0 for the closed field, > 0 for the other
    pts = random_points(2, (5,), radius=1.0, generator=torch.Generator().manual_seed(1))
    assert closedness_residual(S.to_torch(closed, z, zb), pts).max() < 1e-12
    assert closedness_residual(S.to_torch(open_, z, zb), pts).min() > 0.1


# --------------------------------------------------------------------------- curvature


@pytest.mark.parametrize("n", [1, 2])
def test_ricci_form_is_einstein(n):
    z, zb = S.symbols(n)
    s = r2(z, zb)
    G_fs, G_ball = S.levi_matrix(sp.log(1 + s), z, zb), S.levi_matrix(-sp.log(1 - s), z, zb)
    assert is_zero_matrix(S.ricci_form(sp.log(1 + s), z, zb) - (n + 1) * fs_closed(z, zb))
    assert is_zero_matrix(S.ricci_form(G_ball, z, zb) + (n + 1) * ball_closed(z, zb))
    assert is_zero_matrix(S.ricci_form(s, z, zb))
    # the check can fail: FS is not Einstein with constant n
    assert not is_zero_matrix(S.ricci_form(G_fs, z, zb) - n * G_fs)


@pytest.mark.parametrize(
    "sign, make_K", [(1, lambda s: sp.log(1 + s)), (-1, lambda s: -sp.log(1 - s))]
)
def test_riemann_tensor_constant_holomorphic_curvature(sign, make_K):
    """FS: R_{ab̄cd̄} = g_{ab̄}g_{cd̄} + g_{ad̄}g_{cb̄}; the ball: minus that (docs/conventions.md §
    Closed forms)."""
    z, zb = S.symbols(2)
    K = make_K(r2(z, zb))
    point = (sp.Rational(1, 3) + I / 5, -sp.Rational(1, 4) + I / 2)
    R = S.riemann_tensor(K, z, zb, simplify=False)
    g = at_point(S.levi_matrix(K, z, zb), z, zb, point)
    for a, b, c, d in np.ndindex(2, 2, 2, 2):
        expected = sign * (g[a, b] * g[c, d] + g[a, d] * g[c, b])
        assert exact(at_point(R[a, b, c, d], z, zb, point) - expected) == 0


@pytest.mark.parametrize("n", [1, 2])
def test_holomorphic_sectional_curvature(n):
    z, zb = S.symbols(n)
    s = r2(z, zb)
    point = (sp.Rational(1, 3) + I / 5, -sp.Rational(1, 4) + I / 2)[:n]
    v = (2 - I, sp.Rational(1, 2) + 3 * I)[:n]
    for K, expected in ((sp.log(1 + s), 2), (-sp.log(1 - s), -2), (s, 0)):
        H = S.holomorphic_sectional_curvature(K, z, zb, v, simplify=n == 1)
        assert exact(at_point(H, z, zb, point)) == expected
    # symbolic direction: H of FS is 2 for every v
    H = S.holomorphic_sectional_curvature(sp.log(1 + s), z, zb, simplify=False)
    vs, vbs = sp.symbols(f"v1:{n + 1}"), sp.symbols(f"vb1:{n + 1}")
    sub = dict(zip(vs, v, strict=True)) | {
        vb: sp.conjugate(x) for vb, x in zip(vbs, v, strict=True)
    }
    assert exact(at_point(H, z, zb, point).xreplace(sub)) == 2


def test_hsc_matches_gaussian_curvature_in_real_coordinates():
    """n = 1: with h-lengths the real metric is λ(dx² + dy²), λ = G; its Gaussian curvature
    −Δ log λ / (2λ) (real calculus, no Wirtinger derivatives) equals 2·H (docs/conventions.md §
    Curvature)."""
    z, zb = S.symbols(1)
    s = z[0] * zb[0]
    K = s + s**2 / 3 + sp.log(1 + (z[0] + 1 + I) * (zb[0] + 1 - I))
    H = S.holomorphic_sectional_curvature(K, z, zb, (1,), simplify=False)
    lam, x, y = S.in_real_coordinates(S.levi_matrix(K, z, zb)[0, 0], z, zb)
    gauss = -(sp.diff(sp.log(lam), x[0], 2) + sp.diff(sp.log(lam), y[0], 2)) / (2 * lam)
    for px, py in [(sp.Rational(1, 3), sp.Rational(-1, 2)), (sp.Rational(2, 5), sp.Rational(1, 7))]:
        h = exact(at_point(H, z, zb, (px + I * py,)))
        k = exact(gauss.xreplace({x[0]: px, y[0]: py}))
        assert exact(2 * h - k) == 0
        assert abs(sp.N(h)) > 1e-3  # a non-trivial value


def test_riemann_contracts_to_hsc():
    z, zb = S.symbols(2)
    K = z[0] * zb[0] + (z[0] * zb[0]) ** 2 + sp.log(1 + z[1] * zb[1] + z[0] * zb[1] + zb[0] * z[1])
    point = (sp.Rational(1, 5) + I / 7, sp.Rational(1, 3))
    v = (1 + I, 2 - I)
    vb = tuple(sp.conjugate(e) for e in v)
    R = S.riemann_tensor(K, z, zb, simplify=False)
    G = at_point(S.levi_matrix(K, z, zb), z, zb, point)
    num = sum(
        at_point(R[a, b, c, d], z, zb, point) * v[a] * vb[b] * v[c] * vb[d]
        for a, b, c, d in np.ndindex(2, 2, 2, 2)
    )
    h = sum(G[a, b] * v[a] * vb[b] for a, b in np.ndindex(2, 2))
    H = at_point(S.holomorphic_sectional_curvature(K, z, zb, v, simplify=False), z, zb, point)
    assert exact(num / h**2 - H) == 0


def test_christoffel_matches_torch_autodiff():
    z, zb = S.symbols(2)
    K = sp.log(1 + r2(z, zb)) + z[0] * zb[0] * z[1] * zb[1] + sp.exp((z[0] + zb[0]) / 3)
    gamma = S.christoffel(K, z, zb, simplify=False)
    pot = S.to_potential(K, z, zb)
    pts = random_points(2, (3,), radius=1.0, generator=torch.Generator().manual_seed(3))
    torch_gamma = kahler_christoffel(pot.levi, pts)
    flat = sp.Matrix(1, 8, sp.flatten(gamma.tolist()))
    expected = numpy_eval(flat, z, zb, pts.numpy()).reshape(3, 2, 2, 2)
    assert_close(torch_gamma, torch.from_numpy(expected))


def test_flat_space_has_zero_curvature():
    z, zb = S.symbols(2)
    s = r2(z, zb)
    assert all(e == 0 for e in sp.flatten(S.riemann_tensor(s, z, zb).tolist()))
    assert all(e == 0 for e in sp.flatten(S.christoffel(s, z, zb).tolist()))
    assert S.riemann_tensor(s, z, zb).shape == (2, 2, 2, 2)
