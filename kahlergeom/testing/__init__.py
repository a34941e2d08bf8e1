"""Testing tools for users of kahlergeom: hypothesis strategies and contract checks.

Strategies (need ``hypothesis``; the checks do not): `points`, `hermitian_pd_matrices`,
`unitary_matrices`, `psh_potentials` (random plurisubharmonic potentials), `complex_arrays`,
and points of a domain: `ball_points`, `polydisc_points`, `half_plane_points`,
`domain_points` (any potential's ``contains``, by rejection or by pulling towards a center).
Settings: `kahlergeom_settings` (no deadline; also registered as the hypothesis profiles
``"kahlergeom"`` and ``"kahlergeom-ci"``) — without it, hypothesis' 200 ms default deadline
fails property tests at random, because first calls of ``torch.func`` transforms are slow.
Contract checks (raise ``AssertionError`` naming the failing point): `assert_hermitian`,
`assert_psh`, `assert_kahler`, `assert_batch_consistent`.

Example:
    >>> import torch, kahlergeom as kg
    >>> from kahlergeom.testing import assert_kahler, assert_psh
    >>> z = torch.randn(4, 2, dtype=torch.complex128)
    >>> assert_psh(kg.potentials.FubiniStudy(2), z)
    >>> assert_kahler(kg.potentials.FubiniStudy(2), z)
"""

from kahlergeom.testing._asserts import (
    assert_batch_consistent,
    assert_hermitian,
    assert_kahler,
    assert_psh,
    default_tolerance,
)

try:
    from kahlergeom.testing._strategies import (
        AffineLogNorm,
        AffineSquaredNorm,
        PotentialSum,
        ball_points,
        complex_arrays,
        domain_points,
        half_plane_points,
        hermitian_pd_matrices,
        kahlergeom_settings,
        points,
        polydisc_points,
        psh_potentials,
        unitary_matrices,
    )
except ImportError as _exc:  # hypothesis is optional: the contract checks work without it
    if getattr(_exc, "name", None) != "hypothesis" and "hypothesis" not in str(_exc):
        raise
    _MISSING = str(_exc)

    def __getattr__(name):
        if name in __all__:
            raise ImportError(
                f"kahlergeom.testing.{name} needs hypothesis ({_MISSING}); "
                "install it with `pip install hypothesis` (or the `test` extra)."
            )
        raise AttributeError(f"module 'kahlergeom.testing' has no attribute {name!r}")


__all__ = [
    "AffineLogNorm",
    "AffineSquaredNorm",
    "PotentialSum",
    "assert_batch_consistent",
    "assert_hermitian",
    "assert_kahler",
    "assert_psh",
    "ball_points",
    "complex_arrays",
    "default_tolerance",
    "domain_points",
    "half_plane_points",
    "hermitian_pd_matrices",
    "kahlergeom_settings",
    "points",
    "polydisc_points",
    "psh_potentials",
    "unitary_matrices",
]
