r"""The paper's claims made measurable: path smoothness, semantic outliers, sample variety.

* **Smoothness of a decoded path** $z_0, \dots, z_{K-1}$ (K points, $t_k = k/(K-1)$): with
  data-space steps $s_k = \|\mu(z_{k+1}) - \mu(z_k)\|$, the discrete path energy
  $E = (K-1)\sum_k s_k^2$, the length $L = \sum_k s_k$ ($E \ge L^2$, equality iff constant
  speed) and the step-length variation $\mathrm{CV} = \mathrm{std}(s)/\mathrm{mean}(s)$.
* **Semantic outliers** of decoded samples: the share a classifier trained on the real data is
  unsure about (max class probability below a threshold), and the share farther from every
  training image than the 95th percentile of training nearest-neighbour distances.
* **Variety** (the price): mean pairwise distance between decoded samples and the entropy of
  their predicted classes.
* **Deciding a claim**: `paired_comparison` gives the mean paired difference over seeds with a
  Student-t 95% interval and the standardised effect size; `verdict` reads a claim's direction
  off the interval (supported, contradicted or inconclusive).
* **The paper's Figure 1**: `laplacian_eigenmaps` embeds latent samples through a
  metric-weighted graph (generalised eigenproblem L v = λ D v).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

__all__ = [
    "OutlierScorer",
    "PairedComparison",
    "laplacian_eigenmaps",
    "paired_comparison",
    "path_smoothness",
    "summarise",
    "variety",
    "verdict",
]


def path_smoothness(decode_mean, paths: torch.Tensor) -> dict[str, torch.Tensor]:
    """Energy, length and step variation of decoded latent paths.

    Args:
        decode_mean: ``z (..., n) -> mean (..., D)`` (complex or real).
        paths: latent paths ``(P, K, n)`` with K ≥ 3.

    Returns:
        dict of real ``(P,)`` tensors: ``energy``, ``length``, ``step_cv``.
    """
    if paths.ndim != 3 or paths.shape[1] < 3:
        raise ValueError(f"paths must have shape (P, K, n) with K >= 3; got {tuple(paths.shape)}.")
    with torch.no_grad():
        mu = decode_mean(paths)
    diff = mu[:, 1:] - mu[:, :-1]
    steps = torch.linalg.vector_norm(diff, dim=-1)
    K = paths.shape[1]
    return {
        "energy": (K - 1) * steps.square().sum(-1),
        "length": steps.sum(-1),
        "step_cv": steps.std(-1) / steps.mean(-1).clamp_min(1e-30),
    }


@dataclass
class OutlierScorer:
    """Classifier + nearest-neighbour outlier scores, fitted on real (training) images.

    Args:
        images: ``(N, H, W)`` real training images; labels ``(N,)``.
        unsure_threshold: a sample is "unsure" when its max class probability is below this.
        far_quantile: the distance threshold is this quantile of the training images'
            leave-one-out nearest-neighbour distances.
    """

    images: np.ndarray
    labels: np.ndarray
    unsure_threshold: float = 0.5
    far_quantile: float = 0.95
    seed: int = 0

    def __post_init__(self):
        from sklearn.linear_model import LogisticRegression
        from sklearn.neighbors import NearestNeighbors

        X = np.asarray(self.images, dtype=np.float64).reshape(len(self.images), -1)
        if self.labels is None or len(self.labels) != len(X):
            raise ValueError("labels must give one class per training image.")
        self._clf = LogisticRegression(max_iter=2000, C=1.0, random_state=self.seed)
        self._clf.fit(X, self.labels)
        self._nn = NearestNeighbors(n_neighbors=2).fit(X)
        d, _ = self._nn.kneighbors(X)
        self.far_threshold = float(np.quantile(d[:, 1], self.far_quantile))

    def scores(self, images: np.ndarray) -> dict[str, float]:
        """Shares of unsure and far samples, and the class entropy, of images ``(M, H, W)``."""
        X = np.asarray(images, dtype=np.float64).reshape(len(images), -1)
        proba = self._clf.predict_proba(X)
        d, _ = self._nn.kneighbors(X, n_neighbors=1)
        counts = np.bincount(proba.argmax(1), minlength=proba.shape[1]) / len(X)
        nz = counts[counts > 0]
        return {
            "unsure_share": float((proba.max(1) < self.unsure_threshold).mean()),
            "far_share": float((d[:, 0] > self.far_threshold).mean()),
            "class_entropy": float(-(nz * np.log(nz)).sum()),
        }


def variety(images: np.ndarray) -> float:
    """Mean pairwise Euclidean distance between images ``(M, H, W)``."""
    X = torch.as_tensor(np.asarray(images, dtype=np.float64).reshape(len(images), -1))
    D = torch.cdist(X, X)
    M = X.shape[0]
    return float(D.sum() / (M * (M - 1)))


def summarise(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation over seeds."""
    a = np.asarray(values, dtype=np.float64)
    return float(a.mean()), float(a.std(ddof=1)) if a.size > 1 else 0.0


@dataclass(frozen=True)
class PairedComparison:
    """Paired comparison of a quantity between two arms over the same seeds (``a − b``).

    ``mean_diff`` ± the Student-t interval ``(low, high)`` at ``level``; ``effect_size`` is
    Cohen's d_z = mean / sd of the paired differences (NaN when they have no spread);
    ``sd_diff`` is that sd, ``n`` the number of seeds.
    """

    mean_a: float
    mean_b: float
    mean_diff: float
    sd_diff: float
    low: float
    high: float
    effect_size: float
    n: int
    level: float


def paired_comparison(a, b, level: float = 0.95) -> PairedComparison:
    r"""Mean paired difference $\bar d$ of ``a − b`` (one value per seed) with a t interval.

    $\bar d \pm t_{(1+\text{level})/2,\,n-1}\, s_d/\sqrt n$, with $s_d$ the sample sd of the
    differences. Needs n ≥ 2 pairs of finite values (pairs with a NaN are refused, not dropped,
    so a failed run cannot hide).
    """
    from scipy.stats import t as student_t

    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"a and b must be 1-d of equal length; got {a.shape} and {b.shape}.")
    if a.size < 2:
        raise ValueError(f"a paired comparison needs at least 2 seeds; got {a.size}.")
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        raise ValueError("a and b must be finite (a NaN marks a failed run; fix or report it).")
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1); got {level!r}.")
    d = a - b
    n = d.size
    mean, sd = float(d.mean()), float(d.std(ddof=1))
    half = float(student_t.ppf(0.5 + level / 2, n - 1)) * sd / np.sqrt(n)
    effect = mean / sd if sd > 0 else float("nan")
    return PairedComparison(
        float(a.mean()), float(b.mean()), mean, sd, mean - half, mean + half, effect, n, level
    )


def verdict(comparison: PairedComparison, claimed: str) -> str:
    """``"supported"``, ``"contradicted"`` or ``"inconclusive"`` for a claim that a − b is
    ``claimed`` (``"lower"`` or ``"higher"``): supported when the whole interval lies on the
    claimed side of 0, contradicted when it lies on the other side, else inconclusive."""
    if claimed not in ("lower", "higher"):
        raise ValueError(f"claimed must be 'lower' or 'higher'; got {claimed!r}.")
    below = comparison.high < 0
    above = comparison.low > 0
    if not (below or above):
        return "inconclusive"
    return "supported" if (below if claimed == "lower" else above) else "contradicted"


def laplacian_eigenmaps(
    z: torch.Tensor, metric_fn=None, *, n_neighbors: int = 10, dims: int = 2
) -> np.ndarray:
    r"""Laplacian-eigenmaps embedding of points ``z`` ``(N, n)`` on a metric-weighted graph.

    Each point is joined to its ``n_neighbors`` nearest neighbours (symmetrised); an edge
    $(i, j)$ has length $d_{ij} = \sqrt{h_{m}(\Delta, \Delta)}$, the length of the chord
    $\Delta = z_j - z_i$ in the metric at the midpoint $m$ (``metric_fn(z) -> G``, e.g.
    ``manifold.metric``; Euclidean when None), and weight $w_{ij} = \exp(-d_{ij}^2/\sigma^2)$
    with σ the median edge length. Solves the generalised problem $L v = \lambda D v$
    ($L = D - W$) and returns the eigenvectors $v_1, \dots, v_{dims}$ after the constant
    one, ``(N, dims)`` — the construction of the paper's Figure 1.
    """
    from scipy.linalg import eigh

    if not isinstance(z, torch.Tensor) or z.ndim != 2 or not z.is_complex():
        raise ValueError(f"z must be complex points of shape (N, n); got {getattr(z, 'shape', z)}.")
    N = z.shape[0]
    if not 1 <= n_neighbors < N:
        raise ValueError(f"n_neighbors must be in [1, N - 1] = [1, {N - 1}]; got {n_neighbors}.")
    if not 1 <= dims < N - 1:
        raise ValueError(f"dims must be in [1, N - 2]; got {dims}.")
    with torch.no_grad():
        E = torch.cdist(torch.view_as_real(z).flatten(1), torch.view_as_real(z).flatten(1))
        nbr = E.topk(n_neighbors + 1, largest=False).indices[:, 1:]  # (N, k), self excluded
        i = torch.arange(N).repeat_interleave(n_neighbors)
        j = nbr.reshape(-1)
        delta = z[j] - z[i]
        if metric_fn is None:
            d2 = (delta.real.square() + delta.imag.square()).sum(-1)
        else:
            G = metric_fn(0.5 * (z[i] + z[j]))
            d2 = torch.einsum("ea,eab,eb->e", delta, G, delta.conj()).real.clamp_min(0)
    d2 = d2.double().cpu().numpy()
    sigma2 = float(np.median(d2[d2 > 0])) if (d2 > 0).any() else 1.0
    W = np.zeros((N, N))
    W[i.numpy(), j.numpy()] = np.exp(-d2 / sigma2)
    W = np.maximum(W, W.T)
    Dg = W.sum(1)
    if not (Dg > 0).all():
        raise ValueError("the neighbour graph has an isolated point; increase n_neighbors.")
    _, vecs = eigh(np.diag(Dg) - W, np.diag(Dg))
    return vecs[:, 1 : 1 + dims]
