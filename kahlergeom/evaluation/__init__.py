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
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

__all__ = ["OutlierScorer", "path_smoothness", "summarise", "variety"]


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
