r"""Cheap stand-ins for the exact Fisher metric of a decoder, and how to measure them.

* `from_posteriors`, `from_anchors`: the log-sum-exp (LSE) surrogate potential of
docs/conventions.md § Log-sum-exp surrogate,
  a `GaussianMixturePotential` whose Levi matrix is a closed form (no decoder at query time),
  built from encoder posteriors $\mathcal{CN}(m_j, \Gamma_j)$ or from exact metrics at anchors.
* `reduce_components`: k-means or random subsampling to m components.
* `choose_temperature`: τ on a log grid by held-out median relative Frobenius error.
* Baselines `NearestAnchorManifold` (piecewise constant) and `KernelAnchorManifold` (smooth
  kernel average of the anchor metrics).
* `compare_metrics`: median relative Frobenius error, Spearman of log det, PSD rate.
* `fit_kahler`, `fit_kahler_to_manifold`: a Kähler potential *fitted* to exact metrics (the
  route that tracks the Fisher metric), with families behind `SurrogateFamily`
  (`RidgeFamily`, the default; `LSEFamily`, the paper's LSE with learned parameters).

Surrogates are approximations whose fidelity is an empirical question: measure it with
`compare_metrics` against `kahlergeom.FisherManifold` (see docs/decoder-geometry.md).
"""

from kahlergeom.surrogates._anchors import KernelAnchorManifold, NearestAnchorManifold
from kahlergeom.surrogates._build import (
    DEFAULT_TEMPERATURES,
    TemperatureChoice,
    choose_temperature,
    from_anchors,
    from_posteriors,
)
from kahlergeom.surrogates._families import LSEFamily, RidgeFamily, SurrogateFamily
from kahlergeom.surrogates._fidelity import (
    Fidelity,
    compare_metrics,
    relative_frobenius_error,
    spearman,
)
from kahlergeom.surrogates._fit import (
    FitHistory,
    KahlerFit,
    fit_kahler,
    fit_kahler_to_manifold,
    manifold_metrics,
)
from kahlergeom.surrogates._reduce import Reduction, reduce_components

__all__ = [
    "DEFAULT_TEMPERATURES",
    "Fidelity",
    "FitHistory",
    "KahlerFit",
    "LSEFamily",
    "KernelAnchorManifold",
    "NearestAnchorManifold",
    "Reduction",
    "RidgeFamily",
    "SurrogateFamily",
    "TemperatureChoice",
    "choose_temperature",
    "compare_metrics",
    "fit_kahler",
    "fit_kahler_to_manifold",
    "from_anchors",
    "from_posteriors",
    "manifold_metrics",
    "reduce_components",
    "relative_frobenius_error",
    "spearman",
]
