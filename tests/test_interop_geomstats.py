"""kahlergeom.interop.geomstats: a kahlergeom manifold as a geomstats space on R^{2n}.

Checked against: the real metric G_R and the Hermitian form h (docs/conventions.md § Metric,
lengths, volume), geomstats'
closed-form ComplexPoincareDisk distance, the known Fréchet mean of symmetric points on the
Fubini–Study chart (run with geomstats' own FrechetMean), and geomstats' RiemannianKMeans on a
decoder latent (two well-separated clusters are recovered).
"""

from __future__ import annotations

import pytest
import torch
from conftest import assert_close, random_points

import kahlergeom as kg
from kahlergeom.geodesics import Shooting
from kahlergeom.interop.geomstats import as_geomstats, import_geomstats
from kahlergeom.wirtinger import from_real, to_real


@pytest.fixture
def f64():
    """geomstats' pytorch backend computes in float64 (its import sets that default dtype);
    run each test in float64 and restore the previous default dtype afterwards."""
    before = torch.get_default_dtype()
    import_geomstats()
    assert torch.get_default_dtype() == before  # the import did not leak its dtype change
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(before)


def test_import_keeps_default_dtype():
    before = torch.get_default_dtype()
    as_geomstats(kg.KahlerManifold(kg.potentials.Flat(1)))
    assert torch.get_default_dtype() == before


def test_bad_arguments():
    with pytest.raises(ValueError, match="manifold"):
        as_geomstats(object())
    with pytest.raises(ValueError, match="geodesics"):
        as_geomstats(kg.KahlerManifold(kg.potentials.Flat(1)), geodesics="other")


@pytest.mark.parametrize(
    "potential", [kg.potentials.FubiniStudy(2), kg.potentials.ComplexHyperbolic(2)]
)
def test_metric_matrix_is_real_metric(f64, gen, potential):
    M = kg.KahlerManifold(potential)
    space = as_geomstats(M)
    assert space.dim == 4 and space.shape == (4,)
    z = random_points(2, (5,), radius=0.9, generator=gen)
    v = random_points(2, (5,), generator=gen)
    u = to_real(z)
    GR = space.metric.metric_matrix(u)
    G = M.metric(z)
    expected = torch.cat([torch.cat([G.real, G.imag], -1), torch.cat([-G.imag, G.real], -1)], -2)
    assert_close(GR, expected)
    # u^T G_R u = h(v, v), and geomstats' inner product is that form
    uv = to_real(v)
    h = M.inner(z, v, v).real
    assert_close(torch.einsum("...i,...ij,...j->...", uv, GR, uv), h)
    assert_close(space.metric.squared_norm(uv, u), h)


def test_belongs_uses_contains(f64):
    space = as_geomstats(kg.KahlerManifold(kg.potentials.ComplexHyperbolic(1)))
    u = torch.tensor([[0.3, 0.4], [0.8, 0.7], [float("nan"), 0.0]])
    assert space.belongs(u).tolist() == [True, False, False]
    assert not bool(space.belongs(torch.zeros(3)))


def test_dist_matches_geomstats_complex_poincare_disk(f64, gen):
    from geomstats.geometry.complex_poincare_disk import ComplexPoincareDisk

    space = as_geomstats(kg.KahlerManifold(kg.potentials.ComplexHyperbolic(1)))
    a = random_points(1, (3,), radius=0.8, generator=gen)
    b = random_points(1, (3,), radius=0.8, generator=gen)
    expected = ComplexPoincareDisk().metric.dist(a, b)
    ours = space.metric.dist(to_real(a), to_real(b))
    assert_close(ours, expected, rtol=1e-6, atol=1e-6)
    assert_close(
        space.metric.squared_dist(to_real(a), to_real(b)), expected**2, rtol=1e-6, atol=1e-6
    )


def test_exp_log_roundtrip_closed_form(f64):
    # Fubini–Study exp_0(v) = tan|v| v/|v| (docs/conventions.md § Closed forms)
    space = as_geomstats(kg.KahlerManifold(kg.potentials.FubiniStudy(1)))
    v = torch.tensor([0.3, -0.4])
    out = space.metric.exp(v, torch.zeros(2))
    assert_close(out, torch.tan(torch.tensor(0.5)) * v / 0.5, rtol=1e-7, atol=1e-7)
    assert_close(space.metric.log(out, torch.zeros(2)), v, rtol=1e-6, atol=1e-6)


@pytest.mark.slow
def test_frechet_mean_fubini_study(f64):
    """geomstats' FrechetMean on the Fubini–Study chart: points symmetric about 0 (z ↦ −z is
    an isometry fixing 0) have Fréchet mean 0; the first-order condition Σ log_m(x_i) = 0
    holds with kahlergeom's own log."""
    from geomstats.learning.frechet_mean import FrechetMean

    M = kg.KahlerManifold(kg.potentials.FubiniStudy(1))
    space = as_geomstats(M, solver=Shooting())
    X = torch.tensor([[0.6, 0.2], [-0.6, -0.2], [0.1, 0.5], [-0.1, -0.5]])
    fm = FrechetMean(space)
    fm.set(max_iter=8, epsilon=1e-12, init_point=torch.tensor([0.1, -0.05]))
    mean = fm.fit(X).estimate_
    assert mean.shape == (2,)
    assert torch.linalg.vector_norm(mean) < 1e-4
    grad = M.log(from_real(mean), from_real(X), solver=Shooting()).sum(0)
    assert torch.linalg.vector_norm(to_real(grad)) < 1e-3


def _tiny_decoder(gen):
    W = 0.5 * torch.randn(6, 1, dtype=torch.complex128, generator=gen)
    b = 0.3 * torch.randn(6, dtype=torch.complex128, generator=gen)

    def decoder(z):
        mean = torch.tanh(z @ W.T + b)
        return mean, torch.ones(mean.shape, dtype=torch.float64)

    return decoder


@pytest.mark.slow
def test_riemannian_kmeans_on_decoder_latent(f64, gen):
    """geomstats' RiemannianKMeans on a random-weight decoder's Fisher latent recovers two
    well-separated clusters (labels) and puts each centre near its cluster."""
    from geomstats.learning.kmeans import RiemannianKMeans

    M = kg.FisherManifold(_tiny_decoder(gen), n=1)
    space = as_geomstats(M, solver=Shooting())
    centres = torch.tensor([[-0.3, 0.1], [0.3, -0.1]])
    offsets = 0.03 * torch.tensor([[1.0, 0.0], [-0.5, 0.8], [-0.5, -0.8]])
    X = (centres[:, None, :] + offsets).reshape(-1, 2)
    km = RiemannianKMeans(space, n_clusters=2, init=X[[0, 3]].clone(), max_iter=1, tol=1e-3)
    km.mean_estimator.set(max_iter=2)  # geomstats' default 100 is far more than needed
    km.fit(X)
    labels = km.labels_.tolist()
    assert labels[:3] == [labels[0]] * 3 and labels[3:] == [labels[3]] * 3
    assert labels[0] != labels[3]
    for k in range(2):
        found = km.cluster_centers_[labels[3 * k]]
        assert torch.linalg.vector_norm(found - centres[k]) < 0.02


def test_wrong_backend_is_a_clear_error():
    """With GEOMSTATS_BACKEND=numpy, as_geomstats refuses (in a fresh interpreter)."""
    import os
    import subprocess
    import sys

    code = (
        "import kahlergeom as kg\n"
        "from kahlergeom.interop.geomstats import as_geomstats\n"
        "try:\n"
        "    as_geomstats(kg.KahlerManifold(kg.potentials.Flat(1)))\n"
        "except RuntimeError as e:\n"
        "    print('RuntimeError:', e)\n"
    )
    env = dict(os.environ, GEOMSTATS_BACKEND="numpy")
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert "RuntimeError:" in r.stdout and "pytorch" in r.stdout, r.stdout + r.stderr
