"""Shared test configuration: hypothesis profiles, tolerances, seeded generators."""

from __future__ import annotations

import os

import pytest
import torch
from hypothesis import HealthCheck, settings

# CI: bounded and reproducible. dev: a few more examples. thorough: for local hunting.
settings.register_profile(
    "ci",
    max_examples=20,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile("dev", max_examples=40, deadline=None)
settings.register_profile("thorough", max_examples=400, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "dev"))

# The tests work on small matrices, where torch's intra-op threads cost more than they save
# (and, on a shared 2-core runner, much more). Override with KAHLERGEOM_TEST_THREADS.
torch.set_num_threads(int(os.environ.get("KAHLERGEOM_TEST_THREADS", "1")))

#: One tolerance table per dtype (absolute/relative), used by every numerical test.
TOL = {
    torch.float64: dict(rtol=1e-10, atol=1e-10),
    torch.complex128: dict(rtol=1e-10, atol=1e-10),
    torch.float32: dict(rtol=1e-4, atol=1e-5),
    torch.complex64: dict(rtol=1e-4, atol=1e-5),
}


def assert_close(actual, expected, dtype=None, **overrides):
    """torch.testing.assert_close with the tolerance table of ``dtype`` (default: actual's)."""
    tol = dict(TOL[dtype or actual.dtype])
    tol.update(overrides)
    torch.testing.assert_close(actual, expected, **tol)


@pytest.fixture
def gen():
    """A seeded torch generator, fresh per test."""
    return torch.Generator().manual_seed(1234)


def random_points(n, batch=(), *, radius=None, generator=None, dtype=torch.complex128):
    """Random complex points of shape (*batch, n); inside the ball |z| < radius if given."""
    z = torch.randn(*batch, n, dtype=dtype, generator=generator)
    if radius is not None:
        r = torch.rand(*batch, 1, generator=generator, dtype=z.real.dtype) ** (1 / (2 * n))
        z = radius * r * z / torch.linalg.vector_norm(z, dim=-1, keepdim=True)
    return z
