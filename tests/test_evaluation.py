"""Deciding the paper's claims: paired intervals, verdicts, Laplacian eigenmaps.

Oracles: a hand-computed t interval, scipy's paired t-test (the interval excludes 0 exactly when
p < 1 − level), Monte Carlo coverage of the interval, and the generalised eigenproblem itself.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import spearmanr, ttest_rel

from kahlergeom.evaluation import laplacian_eigenmaps, paired_comparison, verdict


def test_interval_by_hand():
    # d = a - b = (1, 2, 3): mean 2, sd 1, t_{0.975, 2} = 4.302652729911275
    c = paired_comparison([2.0, 4.0, 6.0], [1.0, 2.0, 3.0])
    half = 4.302652729911275 / np.sqrt(3)
    assert c.mean_diff == pytest.approx(2.0)
    assert c.sd_diff == pytest.approx(1.0)
    assert (c.low, c.high) == pytest.approx((2 - half, 2 + half))
    assert c.effect_size == pytest.approx(2.0)
    assert (c.mean_a, c.mean_b, c.n) == (4.0, 2.0, 3)


@settings(max_examples=50, deadline=None)
@given(
    st.lists(st.floats(-10, 10), min_size=3, max_size=12).flatmap(
        lambda a: st.tuples(
            st.just(a), st.lists(st.floats(-10, 10), min_size=len(a), max_size=len(a))
        )
    )
)
def test_interval_agrees_with_scipy_paired_t_test(ab):
    a, b = map(np.asarray, ab)
    d = a - b
    if d.std(ddof=1) < 1e-6:
        return
    c = paired_comparison(a, b)
    p = ttest_rel(a, b).pvalue
    if abs(p - 0.05) > 1e-9:
        assert (c.low > 0 or c.high < 0) == (p < 0.05)


def test_interval_covers_the_true_mean_95_percent_of_the_time():
    rng = np.random.default_rng(0)
    trials, hits = 4000, 0
    for _ in range(trials):
        d = rng.normal(0.3, 1.0, size=5)
        c = paired_comparison(d, np.zeros(5))
        hits += c.low <= 0.3 <= c.high
    assert abs(hits / trials - 0.95) < 4 * np.sqrt(0.95 * 0.05 / trials)


@pytest.mark.parametrize(
    ("a", "claimed", "expected"),
    [
        ([1.0, 1.1, 0.9, 1.05], "higher", "supported"),
        ([1.0, 1.1, 0.9, 1.05], "lower", "contradicted"),
        ([-1.0, -1.1, -0.9, -1.05], "lower", "supported"),
        ([1.0, -1.0, 0.5, -0.5], "lower", "inconclusive"),
        ([1.0, -1.0, 0.5, -0.5], "higher", "inconclusive"),
    ],
)
def test_verdict(a, claimed, expected):
    assert verdict(paired_comparison(a, [0.0] * len(a)), claimed) == expected


@pytest.mark.parametrize(
    ("a", "b", "kw", "match"),
    [
        ([1.0], [2.0], {}, "at least 2 seeds"),
        ([1.0, np.nan], [2.0, 3.0], {}, "finite"),
        ([1.0, 2.0], [2.0], {}, "equal length"),
        ([1.0, 2.0], [2.0, 1.0], {"level": 1.5}, "level"),
    ],
)
def test_paired_comparison_errors(a, b, kw, match):
    with pytest.raises(ValueError, match=match):
        paired_comparison(a, b, **kw)


def test_verdict_rejects_unknown_direction():
    with pytest.raises(ValueError, match="claimed"):
        verdict(paired_comparison([1.0, 2.0], [0.0, 0.0]), "smaller")


def _curve(N=60):
    t = torch.linspace(0, 1, N, dtype=torch.float64)
    return torch.complex(torch.cos(3 * t), torch.sin(3 * t))[:, None] * (1 + t[:, None]), t


def test_eigenmap_orders_points_along_a_curve():
    z, t = _curve()
    v = laplacian_eigenmaps(z, n_neighbors=4, dims=2)
    assert v.shape == (60, 2)
    assert abs(spearmanr(v[:, 0], t.numpy())[0]) > 0.99


def test_eigenmap_is_scale_free():
    z, _ = _curve(40)
    v_euc = laplacian_eigenmaps(z, n_neighbors=5)
    eye = torch.eye(1, dtype=torch.complex128)

    def constant_metric(w, c=4.0):
        return c * eye.expand(w.shape[0], 1, 1)

    v_met = laplacian_eigenmaps(z, constant_metric, n_neighbors=5)
    # a constant metric rescales every edge; σ is the median edge, so the graph is the same
    for k in range(2):
        assert (
            min(np.abs(v_euc[:, k] - v_met[:, k]).max(), np.abs(v_euc[:, k] + v_met[:, k]).max())
            < 1e-8
        )


def test_a_nonconstant_metric_changes_the_embedding():
    z, _ = _curve(40)

    def bumpy(w):
        scale = 1 + 50 * (w.real > 0).double()
        return (scale[..., 0] ** 2)[:, None, None] * torch.ones(w.shape[0], 1, 1, dtype=w.dtype)

    a = laplacian_eigenmaps(z, n_neighbors=5)
    b = laplacian_eigenmaps(z, bumpy, n_neighbors=5)
    assert min(np.abs(a - b).max(), np.abs(a + b).max()) > 1e-3


@pytest.mark.parametrize(
    ("kw", "match"),
    [({"n_neighbors": 0}, "n_neighbors"), ({"n_neighbors": 3, "dims": 0}, "dims")],
)
def test_eigenmap_errors(kw, match):
    z, _ = _curve(10)
    with pytest.raises(ValueError, match=match):
        laplacian_eigenmaps(z, **kw)
    with pytest.raises(ValueError, match="z must be complex"):
        laplacian_eigenmaps(z.real)
