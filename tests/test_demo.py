"""The demo pipeline: worker processes give the results of one process; the report's verdicts
follow the paired intervals."""

import json
import os

import pytest

from kahlergeom.demo import DemoConfig, run_demo
from kahlergeom.demo._report import _claim_verdict

TINY = dict(
    seeds=(0, 1),
    epochs=1,
    hidden=(8,),
    n_pairs=2,
    n_samples=16,
    fit_points=40,
    fit_steps=5,
    fit_ridges=4,
    path_points=4,
    path_iterations=3,
    figures=False,
    progress=False,
)


@pytest.mark.slow
def test_jobs_give_the_results_of_one_process(tmp_path):
    one = run_demo(DemoConfig(out=str(tmp_path / "one"), **TINY))
    two = run_demo(DemoConfig(out=str(tmp_path / "two"), jobs=2, **TINY))
    drop = ("seconds",)
    for arm in one["per_seed"]:
        for a, b in zip(one["per_seed"][arm], two["per_seed"][arm], strict=True):
            assert {k: v for k, v in a.items() if not any(d in k for d in drop)} == {
                k: v for k, v in b.items() if not any(d in k for d in drop)
            }
    with open(os.path.join(tmp_path / "two", "results.json")) as fh:
        assert json.load(fh)["config"]["jobs"] == 2
    for name in ("report.md", "report.html"):
        assert os.path.getsize(tmp_path / "two" / name) > 1000


@pytest.mark.parametrize(
    ("verdicts", "expected"),
    [
        (["supported", "supported", "inconclusive"], "supported"),
        (["supported", "inconclusive", "inconclusive"], "inconclusive"),
        (["supported", "contradicted", "supported"], "inconclusive"),
        (["contradicted", "contradicted"], "contradicted"),
        (["inconclusive"], "inconclusive"),
    ],
)
def test_claim_verdict(verdicts, expected):
    assert _claim_verdict(verdicts) == expected


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({"seeds": (0,)}, "at least 2 seeds"),
        ({"jobs": 0}, "jobs"),
        ({"betas": ()}, "betas"),
        ({"path_points": 2}, "path_points"),
    ],
)
def test_config_errors(kw, match):
    with pytest.raises(ValueError, match=match):
        DemoConfig(**kw)


def test_energy_paths_are_discrete_geodesics():
    """Flat metric: the straight segment exactly. Fubini–Study: √E approaches the closed-form
    distance arccos(|1 + z̄·w| / √((1+|z|²)(1+|w|²))) from above as the path is refined."""
    import torch

    import kahlergeom as kg
    from kahlergeom.demo._paths import energy_paths, path_energy, straight_paths

    g = torch.Generator().manual_seed(0)
    z = 0.6 * torch.randn(4, 2, dtype=torch.complex128, generator=g)
    w = 0.6 * torch.randn(4, 2, dtype=torch.complex128, generator=g)
    flat = kg.KahlerManifold(kg.potentials.Flat(2))
    p, e, ok = energy_paths(flat.metric_field, z, w, 8)
    assert bool(ok.all())
    assert torch.allclose(p, straight_paths(z, w, 8), atol=1e-8)
    assert torch.allclose(e, (z - w).abs().square().sum(-1), rtol=1e-10)
    fs = kg.KahlerManifold(kg.potentials.FubiniStudy(2))
    inner = (1 + (z.conj() * w).sum(-1)).abs()
    d = torch.arccos(
        inner / ((1 + z.abs().square().sum(-1)) * (1 + w.abs().square().sum(-1))).sqrt()
    )
    errs = []
    for K in (8, 32):
        p, e, ok = energy_paths(fs.metric_field, z, w, K, max_iter=500)
        assert bool(ok.all())
        assert bool((e <= path_energy(fs.metric_field, straight_paths(z, w, K)) + 1e-12).all())
        errs.append(float((e.sqrt() / d - 1).abs().max()))
    assert errs[1] < 2e-3 and errs[1] < errs[0]
