"""The batched autograd engine of ddbar / partial against the per-point torch.func engine.

A function declared batched (every `KahlerPotential`, or ``batched=True``) is differentiated on
whole blocks of points with ``torch.autograd`` (module docstring of ``kahlergeom/wirtinger/
_ddbar.py``); anything else, and everything inside ``torch.func`` transforms, per point under
``vmap``. Oracles: the per-point engine (``batched=False``), closed-form Levi matrices and ∂K of
the library potentials, and ``torch.autograd.gradcheck`` (finite differences) for gradients.
"""

from __future__ import annotations

import pytest
import torch
from conftest import TOL, assert_close, random_points
from hypothesis import given
from torch.func import jvp, vmap

import kahlergeom as kg
import kahlergeom.wirtinger._ddbar as engine
from kahlergeom.decoders import Bernoulli
from kahlergeom.potentials import (
    ComplexHyperbolic,
    Flat,
    FubiniStudy,
    GaussianMixturePotential,
    KahlerPotential,
    KLPotential,
    LogSumExp,
    PotentialSum,
    Product,
    Quadratic,
    SiegelDisk,
)
from kahlergeom.testing import points, psh_potentials
from kahlergeom.wirtinger import partial, partial_bar
from kahlergeom.wirtinger._ddbar import _levi, _partial

C128 = torch.complex128
SAME = dict(rtol=1e-12, atol=1e-12)  # two engines, same derivatives, different rounding
TOL9 = dict(rtol=1e-9, atol=1e-9)
RANDOM_TOL = 2e-11  # relative to max |G|, random mixtures (see the random-potential test)


class UserPotential(KahlerPotential):
    """A user subclass with no closed forms: K = log(1 + |z|²) + |z_0|⁴ + Re(z̄ᵀ M z)."""

    def __init__(self, n, M):
        super().__init__(n)
        self.M = M

    def __call__(self, z):
        sq = z.real**2 + z.imag**2
        quad = ((z.conj() @ self.M) * z).sum(-1).real
        return torch.log1p(sq.sum(-1)) + sq[..., 0] ** 2 + quad


def _hermitian_pd(n, gen):
    A = torch.randn(n, n, dtype=C128, generator=gen)
    return A @ A.mH + torch.eye(n, dtype=C128)


def _mixture(n, gen, m=3):
    means = torch.randn(m, n, dtype=C128, generator=gen)
    P = torch.stack([_hermitian_pd(n, gen) for _ in range(m)])
    return GaussianMixturePotential(
        means, P, torch.rand(m, generator=gen, dtype=torch.float64) + 0.5
    )


def _decoder(n, D=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    W = torch.randn(D, n, dtype=C128, generator=g)
    A = torch.randn(D, 2 * n, dtype=torch.float64, generator=g)

    def dec(z):
        u = torch.cat([z.real, z.imag], -1)
        return torch.tanh(z @ W.T), torch.exp(0.3 * torch.tanh(u @ A.T))

    return dec


def library_potentials(gen):
    """(potential, points) for every library potential and a user subclass."""
    n = 3
    z = 0.5 * random_points(n, (5,), generator=gen)
    ball = random_points(n, (5,), radius=0.9, generator=gen)
    siegel = random_points(4, (5,), radius=0.9, generator=gen)  # ‖Z‖₂ ≤ ‖Z‖_F < 1
    z2 = random_points(2, (5,), generator=gen)
    return [
        (Flat(n), z),
        (FubiniStudy(n), z),
        (ComplexHyperbolic(n), ball),
        (SiegelDisk(2), siegel),
        (Product([FubiniStudy(1), ComplexHyperbolic(2)]), torch.cat([z[:, :1], ball[:, :2]], -1)),
        (PotentialSum([FubiniStudy(n), Quadratic(z[0], _hermitian_pd(n, gen))]), z),
        (LogSumExp([FubiniStudy(n), Flat(n)], torch.tensor([0.3, -0.2]), temperature=0.7), z),
        (_mixture(n, gen), z),
        (UserPotential(n, _hermitian_pd(n, gen)), z),
        (KLPotential(_decoder(2), z2[0]), z2),
        (KLPotential(kg.decoders.Complexified(_real_net()), z2[1], Bernoulli()), z2),
    ]


def _real_net():
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Linear(4, 6), torch.nn.Tanh(), torch.nn.Linear(6, 3)
    ).double()


IDS = [
    "flat", "fubini-study", "ball", "siegel", "product", "sum", "lse", "mixture", "user",
    "kl-gaussian", "kl-bernoulli-module",
]  # fmt: skip


@pytest.mark.parametrize("case", range(len(IDS)), ids=IDS)
def test_batched_engine_matches_per_point_engine_and_closed_form(case, gen):
    pot, z = library_potentials(gen)[case]
    assert pot.batched_call is True
    G = kg.ddbar(pot, z)
    assert_close(G, kg.ddbar(pot, z, batched=False), **SAME)
    assert torch.equal(G, G.mH)
    assert_close(partial(pot, z), partial(pot, z, batched=False), **SAME)
    if pot.has_closed_form_levi:
        assert_close(G, pot.levi(z), **SAME)
    if type(pot).partial is not KahlerPotential.partial:
        assert_close(partial(pot, z), pot.partial(z), **SAME)


@given(psh_potentials(3), points(3, batch=(4,)))
def test_batched_engine_matches_per_point_engine_on_random_psh_potentials(pot, z):
    """Tolerance: reverse-over-reverse (this engine, and the column loop) rounds worse than
    forward-over-reverse on log-sum-exp mixtures far from their means: measured up to 6e-12 of
    max |G| against the closed form over 150 random mixtures (per-point engine: 4e-14)."""
    G = kg.ddbar(pot, z)
    scale = max(1.0, float(G.abs().max()))
    assert_close(G, kg.ddbar(pot, z, batched=False), rtol=0, atol=RANDOM_TOL * scale)
    # the potentials' own levi: closed form, or (AffineLogNorm terms) the default engine
    assert_close(G, pot.levi(z), rtol=0, atol=RANDOM_TOL * scale)
    assert_close(partial(pot, z), partial(pot, z, batched=False), rtol=0, atol=1e-12 * scale)


@given(psh_potentials(2, kinds=("mixture",)), points(2, batch=(3,)))
def test_batched_engine_matches_closed_form_mixture(pot, z):
    assert pot.has_closed_form_levi
    G = kg.ddbar(pot, z)
    assert_close(G, pot.levi(z), rtol=0, atol=RANDOM_TOL * max(1.0, float(G.abs().max())))


def test_plain_callables_stay_per_point(gen):
    """A function of one point is never fed a batch unless declared batched."""
    z = random_points(2, (4,), generator=gen)
    expected = torch.zeros(4, 2, 2, dtype=C128)
    expected[:, 0, 0] = 1

    def first_coordinate(w):  # |w_0|², written for one point: w[0] is a coordinate
        return (w[0] * w[0].conj()).real

    assert_close(kg.ddbar(first_coordinate, z), expected)
    assert_close(kg.ddbar(first_coordinate, z, batched=False), expected)
    # the same function declared batched reads the first *point*: rejected by the shape check
    with pytest.raises(ValueError, match="one real value per point.*batched=False"):
        kg.ddbar(first_coordinate, z, batched=True)

    def batched_fn(w):
        return (w[..., 0] * w[..., 0].conj()).real

    assert_close(kg.ddbar(batched_fn, z, batched=True), expected)
    assert_close(partial_bar(batched_fn, z, batched=True), partial_bar(batched_fn, z))


def test_batched_call_false_opts_out(gen, monkeypatch):
    class OnePoint(KahlerPotential):
        batched_call = False

        def __call__(self, z):
            return (z[0] * z[0].conj()).real + (z[1] * z[1].conj()).real

    z = random_points(2, (3,), generator=gen)
    eye = torch.eye(2, dtype=C128).expand(3, 2, 2)
    assert_close(kg.ddbar(OnePoint(2), z), eye)
    assert_close(OnePoint(2).levi(z), eye)
    # combinators inherit it from their parts
    assert PotentialSum([OnePoint(2), Flat(2)]).batched_call is False
    assert Product([FubiniStudy(1), FubiniStudy(1)]).batched_call is True

    def fail(*args, **kwargs):
        raise AssertionError("the batched engine must not run")

    monkeypatch.setattr(engine, "_levi_batched", fail)
    kg.ddbar(OnePoint(2), z)


def test_batched_output_errors(gen):
    z = random_points(2, (3,), generator=gen)
    with pytest.raises(ValueError, match="must return a real tensor"):
        kg.ddbar(lambda w: (w * w).sum(-1), z, batched=True)
    with pytest.raises(ValueError, match=r"returned shape \(3, 2\)"):
        kg.ddbar(lambda w: w.real, z, batched=True)
    with pytest.raises(ValueError, match="must return a torch.Tensor"):
        kg.ddbar(lambda w: 1.0, z, batched=True)
    with pytest.raises(ValueError, match="batched must be True, False or None"):
        kg.ddbar(FubiniStudy(2), z, batched="yes")


def test_affine_and_constant_functions_give_zero(gen):
    z = random_points(2, (3,), generator=gen)
    for f in (lambda w: w.real.sum(-1), lambda w: torch.ones(w.shape[:-1], dtype=torch.float64)):
        assert torch.equal(kg.ddbar(f, z, batched=True), torch.zeros(3, 2, 2, dtype=C128))
    assert_close(
        partial(lambda w: w.imag.sum(-1), z, batched=True), torch.full((3, 2), -0.5j, dtype=C128)
    )
    assert torch.equal(
        partial(lambda w: torch.ones(w.shape[:-1], dtype=torch.float64), z, batched=True),
        torch.zeros(3, 2, dtype=C128),
    )


def test_blocks_respect_chunk_size_and_the_element_budget(gen, monkeypatch):
    seen = []

    class Recording(FubiniStudy):
        def __call__(self, z):
            seen.append(z.shape[0])
            return super().__call__(z)

    pot = Recording(2)
    z = random_points(2, (3, 5), generator=gen)
    G = kg.ddbar(pot, z)
    assert_close(G, FubiniStudy(2).levi(z), **SAME)
    assert seen == [15]
    seen.clear()
    assert_close(kg.ddbar(pot, z, chunk_size=4), G, **SAME)
    assert seen == [4, 4, 4, 3]
    seen.clear()
    assert_close(partial(pot, z, chunk_size=6), FubiniStudy(2).partial(z), **SAME)
    assert seen == [6, 6, 3]
    seen.clear()
    monkeypatch.setattr(engine, "_HESSIAN_BLOCK_ELEMENTS", 7 * 16)  # 7 points of (2n)² = 16
    assert_close(kg.ddbar(pot, z), G, **SAME)
    assert seen == [7, 7, 1]
    seen.clear()
    assert_close(kg.ddbar(pot, z, chunk_size=5), G, **SAME)
    assert seen == [5, 5, 5]
    # looped rows have their own (memory) budget
    seen.clear()
    pot.ddbar_mode = "loop"
    assert_close(kg.ddbar(pot, z), G, **SAME)
    assert seen == [15]
    seen.clear()
    monkeypatch.setattr(engine, "_LOOP_BLOCK_ELEMENTS", 4 * 16)
    assert_close(kg.ddbar(pot, z), G, **SAME)
    assert seen == [4, 4, 4, 3]


def test_fallback_without_a_batching_rule(gen, monkeypatch):
    """Where torch has no batching rule for some backward, the rows are looped (remembered per
    kind of function, so the batched pass is tried once)."""
    real_grad = torch.autograd.grad
    batched_calls = []

    def grad(*args, **kwargs):
        if kwargs.get("is_grads_batched"):
            batched_calls.append(1)
            raise RuntimeError("Batching rule not implemented for aten::_fake_op")
        return real_grad(*args, **kwargs)

    pot = _mixture(2, gen)
    z = random_points(2, (8,), generator=gen)
    G = kg.ddbar(pot, z)
    assert engine._row_mode(pot, 2, 8, 4) == "batched"  # 2n × 4 points: a small call
    monkeypatch.setattr(torch.autograd, "grad", grad)
    monkeypatch.setattr(engine, "_NO_BATCHING_RULE", set())
    assert_close(kg.ddbar(pot, z, chunk_size=4), G, **SAME)
    assert len(batched_calls) == 1  # tried on the first block, then looped
    assert engine._NO_BATCHING_RULE == {GaussianMixturePotential}
    other = _mixture(2, gen)
    assert_close(kg.ddbar(other, z), kg.ddbar(other, z, batched=False), **SAME)
    assert len(batched_calls) == 1  # another instance of the same class: looped at once


@pytest.mark.parametrize("mode", engine._MODES)
def test_every_mode_agrees_with_the_per_point_engine(mode, gen, monkeypatch):
    monkeypatch.setattr(engine, "_row_mode", lambda *args: mode)
    P = _hermitian_pd(3, gen).requires_grad_(True)
    pot = UserPotential(3, P)
    z = random_points(3, (7,), generator=gen)
    G = kg.ddbar(pot, z)
    assert_close(G, kg.ddbar(pot, z, batched=False), **SAME)
    (g,) = torch.autograd.grad(G.abs().sum(), P)
    (g_ref,) = torch.autograd.grad(kg.ddbar(pot, z, batched=False).abs().sum(), P)
    assert_close(g, g_ref, **SAME)
    zg = (0.5 * random_points(2, (3,), generator=gen)).requires_grad_(True)
    small = UserPotential(2, _hermitian_pd(2, gen))
    assert torch.autograd.gradcheck(lambda w: kg.ddbar(small, w), (zg,))
    for case in range(len(IDS)):  # every library potential, in this mode
        lib, zl = library_potentials(gen)[case]
        assert_close(kg.ddbar(lib, zl), kg.ddbar(lib, zl, batched=False), **SAME)
    for n in (1, 2):  # and the rows themselves against central differences
        _check_rows_against_finite_differences(mode, n, gen)
        z64 = random_points(n, (5,), generator=gen).to(torch.complex64)  # cotangents per dtype
        G64 = kg.ddbar(FubiniStudy(n), z64)
        assert G64.dtype == torch.complex64
        assert_close(G64, FubiniStudy(n).levi(z64), **TOL[torch.complex64])


def _check_rows_against_finite_differences(mode, n, gen):
    """`_hessian_rows`: R[a] = ∂_x(∂f/∂x_a) + i ∂_y(∂f/∂x_a), R[n + a] = the same for ∂f/∂y_a,
    against central differences of the closed-form gradient of Fubini–Study,
    ∂_x K + i ∂_y K = 2 ∂̄K = 2 z / (1 + |z|²) (no autodiff in the oracle)."""
    z = random_points(n, (4,), generator=gen)
    R, keep = engine._hessian_rows(FubiniStudy(n), z, True, mode)
    assert R.shape == (4, 2 * n, n) and not keep

    def g(w):
        return 2 * w / (1 + (w.real**2 + w.imag**2).sum(-1, keepdim=True))

    h = 1e-5
    for a in range(2 * n):
        e = torch.zeros(n, dtype=C128)
        e[a % n] = 1 if a < n else 1j
        fd = (g(z + h * e) - g(z - h * e)) / (2 * h)
        assert_close(R[:, a], fd, rtol=1e-8, atol=1e-8)


def test_row_mode_is_a_fixed_rule(gen, monkeypatch):
    """No timing: the mode depends on f.ddbar_mode, n and the points per call only, and ddbar
    follows it."""
    rule = engine._row_mode
    cap = engine._BATCHED_MAX_DIRECTIONS

    def plain(w):
        return torch.log1p((w.real**2 + w.imag**2).sum(-1))

    for n in (2, 3, 8, 16):
        points = cap // (2 * n)
        assert rule(plain, n, points, None) == "batched"
        assert rule(plain, n, points + 1, None) == "loop"
        assert rule(plain, n, 10**6, points) == "batched"  # chunk_size bounds the call
    assert rule(plain, 1, 10, None) == "loop"
    for pot in (FubiniStudy(2), ComplexHyperbolic(3), Flat(16)):  # declared
        assert pot.ddbar_mode == "batched" and rule(pot, pot.n, 10**6, None) == "batched"
    # n = 1, declared light: two copies of small calls, the loop on larger ones
    small = engine._REPLICATE_MAX_DIRECTIONS // 2
    assert FubiniStudy(1).ddbar_mode == "batched"
    assert rule(FubiniStudy(1), 1, small, None) == "replicated"
    assert rule(FubiniStudy(1), 1, small + 1, None) == "loop"
    assert rule(FubiniStudy(1), 1, 10**6, small) == "replicated"
    assert _mixture(2, gen).ddbar_mode is None and rule(_mixture(2, gen), 2, 10**6, None) == "loop"
    assert Product([FubiniStudy(1), ComplexHyperbolic(2)]).ddbar_mode == "batched"
    assert PotentialSum([FubiniStudy(2), _mixture(2, gen)]).ddbar_mode is None
    plain.ddbar_mode = "loop"
    assert rule(plain, 2, 4, None) == "loop"
    plain.ddbar_mode = "replicated"
    assert rule(plain, 2, 10**6, None) == "replicated"
    plain.ddbar_mode = "fastest"
    with pytest.raises(ValueError, match=r"f.ddbar_mode must be one of \('loop', 'batched', 'r"):
        kg.ddbar(plain, random_points(2, (3,), generator=gen), batched=True)
    del plain.ddbar_mode

    seen = []
    real = engine._hessian_rows

    def spy(f, zb, grad_on, mode):
        seen.append((zb.shape[0], mode))
        return real(f, zb, grad_on, mode)

    monkeypatch.setattr(engine, "_hessian_rows", spy)
    monkeypatch.setattr(engine, "_BATCHED_MAX_DIRECTIONS", 40)  # 10 points at n = 2
    z = random_points(2, (12,), generator=gen)
    fs = FubiniStudy(2).levi(z)
    assert_close(kg.ddbar(plain, z[:10], batched=True), fs[:10], **SAME)
    assert_close(kg.ddbar(plain, z, batched=True), fs, **SAME)
    assert_close(kg.ddbar(plain, z, batched=True, chunk_size=6), fs, **SAME)
    assert_close(kg.ddbar(FubiniStudy(2), z), fs, **SAME)
    assert_close(kg.ddbar(FubiniStudy(1), z[:, :1]), FubiniStudy(1).levi(z[:, :1]), **SAME)
    monkeypatch.setattr(engine, "_REPLICATE_MAX_DIRECTIONS", 20)  # 10 points at n = 1
    assert_close(kg.ddbar(FubiniStudy(1), z[:, :1]), FubiniStudy(1).levi(z[:, :1]), **SAME)
    assert seen == [
        (10, "batched"),
        (12, "loop"),
        (6, "batched"),
        (6, "batched"),
        (12, "batched"),
        (12, "replicated"),
        (12, "loop"),
    ]


def test_lazy_conjugate_and_negative_views(gen):
    """The engine differentiates at the points themselves: lazily conjugated (or negated)
    inputs are resolved before f sees them (torch.view_as_real inside f refuses them)."""
    z = random_points(2, (4,), generator=gen)

    def fs(w):  # Fubini–Study through torch.view_as_real, without a domain check
        return torch.log1p(torch.view_as_real(w).square().sum((-1, -2)))

    for w in (z.conj(), torch._neg_view(z), torch._neg_view(z.conj())):
        plain = w.resolve_conj().resolve_neg()
        assert_close(kg.ddbar(fs, w, batched=True), FubiniStudy(2).levi(plain), **SAME)
        assert_close(partial(fs, w, batched=True), FubiniStudy(2).partial(plain), **SAME)


def test_other_runtime_errors_propagate(gen, monkeypatch):
    def grad(*args, **kwargs):
        raise RuntimeError("something else")

    monkeypatch.setattr(torch.autograd, "grad", grad)
    with pytest.raises(RuntimeError, match="something else"):
        kg.ddbar(FubiniStudy(2), random_points(2, (3,), generator=gen))


@pytest.mark.parametrize("dtype", [torch.complex64, torch.complex128])
def test_dtypes(dtype, gen):
    pot = _mixture(3, gen)
    z = random_points(3, (6,), generator=gen)
    G = kg.ddbar(pot, z.to(dtype))
    assert G.dtype == dtype and partial(pot, z.to(dtype)).dtype == dtype
    tol = TOL[dtype] if dtype == torch.complex64 else SAME
    assert_close(G, kg.ddbar(pot, z.to(dtype), batched=False), **tol)
    assert_close(G, pot.levi(z).to(dtype), **TOL[dtype])


def test_graph_only_when_needed(gen):
    z = random_points(2, (3,), generator=gen)
    pot = FubiniStudy(2)
    assert not kg.ddbar(pot, z).requires_grad
    assert not partial(pot, z).requires_grad
    zg = z.clone().requires_grad_(True)
    assert kg.ddbar(pot, zg).requires_grad and partial(pot, zg).requires_grad
    with torch.no_grad():
        assert not kg.ddbar(pot, zg).requires_grad
        assert_close(kg.ddbar(pot, zg), pot.levi(z), **SAME)
    with torch.inference_mode():
        assert_close(kg.ddbar(pot, z), pot.levi(z), **SAME)


def test_gradcheck_through_the_batched_engine():
    g = torch.Generator().manual_seed(5)
    z = (0.7 * torch.randn(3, 2, dtype=C128, generator=g)).requires_grad_(True)
    pot = UserPotential(2, _hermitian_pd(2, g))
    assert torch.autograd.gradcheck(lambda w: kg.ddbar(pot, w), (z,))
    assert torch.autograd.gradcheck(lambda w: partial(pot, w), (z,))
    assert torch.autograd.gradgradcheck(lambda w: partial(pot, w), (z,))
    # second order through G (e.g. a curve energy built from the default levi, differentiated
    # twice by reverse mode)
    assert torch.autograd.gradgradcheck(lambda w: pot.levi(w).real.sum(-1), (z,))


def test_gradient_to_parameters_inside_the_potential(gen):
    """A regulariser backpropagates through G to tensors inside f (not z)."""
    P = _hermitian_pd(2, gen).requires_grad_(True)
    pot = UserPotential(2, P)
    z = random_points(2, (4,), generator=gen)

    def loss(batched):
        G = kg.ddbar(pot, z, batched=batched)
        return torch.linalg.slogdet(G)[1].var() + partial(pot, z, batched=batched).abs().sum()

    (g_batched,) = torch.autograd.grad(loss(None), P)
    (g_point,) = torch.autograd.grad(loss(False), P)
    assert_close(g_batched, g_point, **SAME)
    # and to z and P at once, against finite differences
    zg = z.clone().requires_grad_(True)
    Pd = P.detach().requires_grad_(True)
    assert torch.autograd.gradcheck(
        lambda w, p: kg.ddbar(UserPotential(2, p), w).abs().sum(-1), (zg, Pd)
    )


def test_inside_torch_func_transforms_the_per_point_engine_runs(gen):
    """torch.autograd cannot run under torch.func: jvp / vmap of the default levi still work."""
    pot = UserPotential(2, _hermitian_pd(2, gen))
    z = random_points(2, (4,), generator=gen)
    t = random_points(2, (4,), generator=gen)
    _, dG = jvp(pot.levi, (z,), (t,))
    _, dG_ref = jvp(lambda w: _levi(pot, w, batched=False), (z,), (t,))
    assert_close(dG, dG_ref, **SAME)
    h = 1e-5  # and against a central difference of the batched engine itself
    fd = (pot.levi(z + h * t) - pot.levi(z - h * t)) / (2 * h)
    assert_close(dG, fd, rtol=1e-6, atol=1e-6)
    assert_close(vmap(pot.levi)(z), pot.levi(z), **SAME)
    assert_close(vmap(lambda w: _partial(pot, w))(z), pot.partial(z), **SAME)
    # curvature differentiates the default metric again: Christoffel symbols by jacfwd under
    # vmap (per-point engine inside), Ricci by the batched engine around the batched one
    M = kg.KahlerManifold(FubiniStudy(2))

    def metric_fn(w):
        return _levi(FubiniStudy(2), w)

    assert_close(
        kg.curvature.kahler_christoffel(metric_fn, z), M.christoffel(z), rtol=1e-9, atol=1e-9
    )
    assert_close(kg.curvature.ricci(metric_fn, z), 3 * M.metric(z), rtol=1e-9, atol=1e-9)
    # and Ricci inside a transform (per-point engine at both levels)
    assert_close(vmap(lambda w: kg.curvature.ricci(metric_fn, w))(z), 3 * M.metric(z), **TOL9)


def test_empty_and_unbatched_points():
    pot = FubiniStudy(2)
    z0 = torch.zeros(0, 2, dtype=C128)
    assert kg.ddbar(pot, z0).shape == (0, 2, 2) and partial(pot, z0).shape == (0, 2)
    z = torch.tensor([0.3 + 0.1j, -0.2j], dtype=C128)
    assert kg.ddbar(pot, z).shape == (2, 2)
    assert_close(kg.ddbar(pot, z), pot.levi(z), **SAME)


def test_engine_choice_by_context():
    from torch.autograd import forward_ad as fwAD

    pot = FubiniStudy(2)
    z = torch.zeros(2, dtype=C128)
    assert engine._use_batched(pot, None, z) and not engine._use_batched(pot, False, z)
    assert not engine._use_batched(lambda w: w.real.sum(), None, z)
    assert engine._use_batched(lambda w: w.real.sum(), True, z)
    assert not engine._use_batched(pot, None, z.to("meta"))  # other devices: per point
    with fwAD.dual_level():  # torch.autograd.grad would drop dual tangents
        assert not engine._use_batched(pot, None, z)
    with torch.inference_mode():
        assert not engine._use_batched(pot, None, z)
    inside = vmap(lambda w: torch.tensor(engine._use_batched(pot, None, w)))(torch.zeros(2, 2))
    assert inside.sum() == 0


@pytest.mark.parametrize("n", [1, 2, 3])
def test_columns_of_G_from_2n_hessian_vector_products(n, gen):
    """docs/conventions.md: G[:, b] = ¼[(h_x + h'_y) + i(h'_x − h_y)], h = H e_b, h' = H J e_b,
    and fewer than 2n real products cannot determine G."""
    from kahlergeom._linalg import levi_from_real_hessian

    m = 2 * n
    A = torch.randn(m, m, dtype=torch.float64, generator=gen)
    H = A + A.T
    cols = []
    for b in range(n):
        h, h2 = H[:, b], H[:, n + b]
        cols.append(0.25 * torch.complex(h[:n] + h2[n:], h2[:n] - h[n:]))
    assert_close(torch.stack(cols, -1), levi_from_real_hessian(H), **SAME)
    J = torch.zeros(m, m, dtype=torch.float64)
    J[n:, :n], J[:n, n:] = torch.eye(n), -torch.eye(n)
    for k in range(1, m):
        W = torch.randn(m, k, dtype=torch.float64, generator=gen)
        Q, _ = torch.linalg.qr(W)
        P = torch.eye(m, dtype=torch.float64) - Q @ Q.T  # projector onto W⊥
        assert_close(P @ W, torch.zeros(m, k, dtype=torch.float64), rtol=0, atol=1e-12)
        assert torch.trace(0.5 * (P + J.T @ P @ J)) == pytest.approx(m - k)
        # yet its Levi matrix is not 0: tr G = ¼ tr(P_xx + P_yy) = (2n − k)/4
        assert levi_from_real_hessian(P).diagonal().real.sum() == pytest.approx((m - k) / 4)
