r"""Geometry-aware training of a `ComplexVAE`: seeded, resumable, with a log-det regulariser.

Loss per batch (minimised): $-\mathrm{ELBO} + \lambda\,R$, where the optional geometric term
$R$ is computed from $\ell_i = \log\det G(z_i)$ at the batch's latent samples (detached, so
the term shapes the decoder's geometry rather than moving the codes):

* ``kind="variance"``: $R = \mathrm{Var}_i\,\ell_i$ (uniform volume over the data),
* ``kind="magnitude"``: $R = \mathrm{mean}_i\,\ell_i^2$ (volume kept near the Euclidean one),

with $G$ the exact Fisher metric of the decoder (``metric="fisher"``, the default), the
closed-form log-sum-exp surrogate built from the batch's encoder posteriors
(``metric="surrogate"``), or a fixed fitted Kähler surrogate (``metric="fitted"`` with
``surrogate=`` a potential from `kahlergeom.surrogates.fit_kahler`, e.g. of a pretrained
decoder). The surrogate terms are evaluated at the (not detached) codes, so their gradients move
the encoder, not the decoder: use ``"fitted"`` to shape where a frozen or slowly changing
decoder's codes go at closed-form cost (refit the surrogate when the decoder changes).
"""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass, field

import torch

from kahlergeom._linalg import hermitian_logdet
from kahlergeom.manifolds._fisher import FisherManifold
from kahlergeom.potentials._base import KahlerPotential
from kahlergeom.potentials._combinators import check_temperature
from kahlergeom.potentials._mixture import GaussianMixturePotential
from kahlergeom.vae._model import ComplexVAE

_KINDS = ("variance", "magnitude")
_METRICS = ("fisher", "surrogate", "fitted")


@dataclass
class GeometricRegulariser:
    """Options of the log-det-metric regulariser (see the module docstring)."""

    weight: float = 1e-2
    kind: str = "variance"
    metric: str = "fisher"
    n_points: int = 32
    temperature: float = 1.0
    surrogate: KahlerPotential | None = None

    def __post_init__(self):
        if not (isinstance(self.weight, int | float) and self.weight >= 0):
            raise ValueError(f"weight must be a number >= 0; got {self.weight!r}.")
        if self.kind not in _KINDS:
            raise ValueError(f"kind must be one of {_KINDS}; got {self.kind!r}.")
        if self.metric not in _METRICS:
            raise ValueError(f"metric must be one of {_METRICS}; got {self.metric!r}.")
        if (
            isinstance(self.n_points, bool)
            or not isinstance(self.n_points, int)
            or self.n_points < 2
        ):
            raise ValueError(f"n_points must be an integer >= 2; got {self.n_points!r}.")
        self.temperature = check_temperature(self.temperature)
        if (self.metric == "fitted") != (self.surrogate is not None):
            raise ValueError(
                'surrogate must be given exactly when metric="fitted" (a KahlerPotential with a '
                f"closed-form levi, e.g. fit_kahler(...).potential); got metric={self.metric!r}, "
                f"surrogate={self.surrogate!r}."
            )
        if self.surrogate is not None and not (
            isinstance(self.surrogate, KahlerPotential) and self.surrogate.has_closed_form_levi
        ):
            raise ValueError(
                "surrogate must be a KahlerPotential with a closed-form levi (e.g. "
                f"fit_kahler(...).potential); got {type(self.surrogate).__name__}."
            )

    def log_det(self, model: ComplexVAE, z: torch.Tensor, posterior) -> torch.Tensor:
        """log det G at latent points ``z`` (n_points, n), differentiable in the model."""
        if self.metric == "fisher":
            G = FisherManifold(model.decoder, n=model.latent_dim).metric_field(z.detach())
        elif self.metric == "fitted":
            G = self.surrogate.levi(z)
        else:
            # The constructor validates without detaching, so gradients reach the encoder.
            gm = GaussianMixturePotential(
                posterior.mean, posterior.precision, temperature=self.temperature
            )
            G = gm.levi(z.detach())
        return hermitian_logdet(G)

    def __call__(self, model: ComplexVAE, z: torch.Tensor, posterior) -> torch.Tensor:
        ell = self.log_det(model, z, posterior)
        if self.kind == "variance":
            return ell.var()
        return ell.square().mean()


@dataclass
class TrainConfig:
    """Training options. ``checkpoint_path`` enables atomic per-epoch checkpoints and resume."""

    epochs: int = 30
    batch_size: int = 64
    lr: float = 2e-3
    seed: int = 0
    kl_weight: float = 1.0
    regulariser: GeometricRegulariser | None = None
    checkpoint_path: str | None = None
    progress: bool = True

    def __post_init__(self):
        for name in ("epochs", "batch_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1; got {value!r}.")
        if not (isinstance(self.lr, int | float) and self.lr > 0):
            raise ValueError(f"lr must be a number > 0; got {self.lr!r}.")


@dataclass
class TrainHistory:
    loss: list[float] = field(default_factory=list)
    elbo: list[float] = field(default_factory=list)
    regulariser: list[float] = field(default_factory=list)


def load_model(path: str) -> ComplexVAE:
    """Rebuild a trained `ComplexVAE` from a checkpoint written by `Trainer` (eval mode)."""
    if not os.path.isfile(path):
        raise ValueError(f"path: no checkpoint at {path!r}.")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        model = ComplexVAE.from_config(state["model_config"])
        model.load_state_dict(state["model"])
    except ValueError:
        raise
    except Exception as exc:
        raise ValueError(f"path: {path!r} is not a readable kahlergeom checkpoint: {exc}") from exc
    return model.eval()


def _atomic_save(obj, path: str) -> None:
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    tmp = f"{path}.tmp-{os.getpid()}"
    try:
        torch.save(obj, tmp)
        os.replace(tmp, path)
    except BaseException:
        # A failed or interrupted save leaves the old checkpoint and no partial temp file.
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


class Trainer:
    """Trains a `ComplexVAE` on complex data ``x`` ``(N, D)``; deterministic given the seed.

    Shuffling and reparameterisation noise come from one ``torch.Generator`` seeded with
    ``config.seed``; its state is checkpointed with the model and optimiser, so a resumed run
    continues bit-identically (same CPU thread count assumed).
    """

    def __init__(self, model: ComplexVAE, x: torch.Tensor, config: TrainConfig | None = None):
        if not isinstance(model, ComplexVAE):
            raise ValueError(f"model must be a ComplexVAE; got {type(model).__name__}.")
        self.model = model
        # Data follow the model's device (CPU or GPU); the RNG stays on the CPU (see
        # `complex_normal`), so a run is reproducible and resumable on either.
        self.x = model.check_data(x, "x").to(next(model.parameters()).device)
        self.config = config or TrainConfig()
        self.optimizer = torch.optim.Adam(model.parameters(), lr=self.config.lr)
        self.generator = torch.Generator(device="cpu").manual_seed(self.config.seed)
        self.epoch = 0
        self.history = TrainHistory()

    # -- checkpoints ------------------------------------------------------------------
    def state_dict(self) -> dict:
        return {
            "model": self.model.state_dict(),
            "model_config": self.model.config,
            "optimizer": self.optimizer.state_dict(),
            "generator": self.generator.get_state(),
            "epoch": self.epoch,
            "history": asdict(self.history),
        }

    def save_checkpoint(self, path: str) -> None:
        """Write a checkpoint atomically (temporary file, then ``os.replace``)."""
        _atomic_save(self.state_dict(), path)

    def load_checkpoint(self, path: str) -> None:
        """Restore model, optimiser, RNG and progress from ``path``."""
        if not os.path.isfile(path):
            raise ValueError(f"path: no checkpoint at {path!r}.")
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:
            raise ValueError(f"path: {path!r} is not a readable checkpoint: {exc}") from exc
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.generator.set_state(state["generator"])
        self.epoch = int(state["epoch"])
        self.history = TrainHistory(**state["history"])

    # -- training ---------------------------------------------------------------------
    def _step(self, xb: torch.Tensor) -> tuple[float, float, float]:
        cfg = self.config
        rec, kl, q, z = self.model.elbo_terms(xb, self.generator)
        elbo = (rec - kl).mean()
        loss = -(rec - cfg.kl_weight * kl).mean()
        reg_value = 0.0
        reg = cfg.regulariser
        if reg is not None and reg.weight > 0:
            k = min(reg.n_points, xb.shape[0])
            posterior = type(q)(q.mean[:k], q.scale_tril[:k])
            term = reg(self.model, z[:k], posterior)
            loss = loss + reg.weight * term
            reg_value = float(term.detach())
        if not math.isfinite(float(loss.detach())):
            raise RuntimeError(
                f"training diverged at epoch {self.epoch + 1}: the loss is {float(loss.detach())}; "
                "lower the learning rate or the regulariser weight."
            )
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return float(loss.detach()), float(elbo.detach()), reg_value

    def fit(self, resume: bool = True) -> TrainHistory:
        """Train up to ``config.epochs`` epochs (resuming from the checkpoint if it exists)."""
        cfg = self.config
        path = cfg.checkpoint_path
        if resume and path and os.path.isfile(path):
            self.load_checkpoint(path)
        self.model.train()
        N = self.x.shape[0]
        bar = None
        if cfg.progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=cfg.epochs, initial=self.epoch, desc="train", leave=False)
        try:
            while self.epoch < cfg.epochs:
                perm = torch.randperm(N, generator=self.generator)
                sums = [0.0, 0.0, 0.0]
                n_batches = 0
                for start in range(0, N, cfg.batch_size):
                    idx = perm[start : start + cfg.batch_size]
                    if idx.numel() < 2:
                        continue
                    for i, v in enumerate(self._step(self.x[idx])):
                        sums[i] += v
                    n_batches += 1
                self.epoch += 1
                self.history.loss.append(sums[0] / n_batches)
                self.history.elbo.append(sums[1] / n_batches)
                self.history.regulariser.append(sums[2] / n_batches)
                if path:
                    self.save_checkpoint(path)
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(elbo=f"{self.history.elbo[-1]:.2f}")
        finally:
            if bar is not None:
                bar.close()
        self.model.eval()
        return self.history
