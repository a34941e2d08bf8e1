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

import copy
import hashlib
import math
import os
from dataclasses import asdict, dataclass, field

import torch

from kahlergeom._checks import check_temperature
from kahlergeom._linalg import hermitian_logdet
from kahlergeom.manifolds._fisher import FisherManifold
from kahlergeom.potentials._base import KahlerPotential
from kahlergeom.potentials._mixture import GaussianMixturePotential
from kahlergeom.vae._checkpoint import (
    FORMAT,
    FORMAT_VERSION,
    TRANSFORMS,
    atomic_save,
    check_model_matches,
    check_optimizer_matches,
    check_run_matches,
    check_transform,
    read_checkpoint,
)
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
    #: The real → complex transform the data went through (``"identity"``/``"fft"``), stored
    #: in checkpoints so that readers can refuse data prepared differently; None = unknown.
    data_transform: str | None = None

    def __post_init__(self):
        for name, low, why in (
            ("epochs", 1, ""),
            ("batch_size", 2, " (batches of one example are skipped: see Trainer)"),
        ):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"{name} must be an integer >= {low}{why}; got {value!r}.")
        for name, positive in (("lr", True), ("kl_weight", False)):
            value = getattr(self, name)
            ok = isinstance(value, int | float) and not isinstance(value, bool)
            if not (ok and math.isfinite(value) and (value > 0 if positive else value >= 0)):
                bound = "> 0" if positive else ">= 0"
                raise ValueError(f"{name} must be a finite number {bound}; got {value!r}.")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ValueError(f"seed must be an integer >= 0; got {self.seed!r}.")
        if self.regulariser is not None and not isinstance(self.regulariser, GeometricRegulariser):
            raise ValueError(
                f"regulariser must be a GeometricRegulariser or None; got {self.regulariser!r}."
            )
        if self.checkpoint_path is not None and not isinstance(self.checkpoint_path, str):
            raise ValueError(
                f"checkpoint_path must be a path string or None; got {self.checkpoint_path!r}."
            )
        if self.data_transform is not None and self.data_transform not in TRANSFORMS:
            raise ValueError(
                f"data_transform must be one of {TRANSFORMS} or None; got {self.data_transform!r}."
            )

    def run_options(self) -> dict:
        """The options a resumed run must share with the saved one (stored in checkpoints)."""
        reg = None if self.regulariser is None else asdict(self.regulariser)
        if reg is not None and reg["surrogate"] is not None:
            # Checkpoints hold plain data only (weights-only loading): the fixed surrogate is
            # stored as a fingerprint of its tensors, enough to refuse a resume with another.
            reg["surrogate"] = _fingerprint(self.regulariser.surrogate)
        return {
            "seed": self.seed,
            "batch_size": self.batch_size,
            "lr": float(self.lr),
            "kl_weight": float(self.kl_weight),
            "regulariser": reg,
        }


def _fingerprint(potential: KahlerPotential) -> str:
    """``"Class(n=…, sha256=…)"`` over the potential's tensor attributes (sorted by name)."""
    digest = hashlib.sha256()
    for name, value in sorted(vars(potential).items()):
        if isinstance(value, torch.Tensor):
            digest.update(name.encode())
            digest.update(value.detach().cpu().contiguous().numpy().tobytes())
    return f"{type(potential).__name__}(n={potential.n}, sha256={digest.hexdigest()[:16]})"


@dataclass
class TrainHistory:
    """Per-epoch means over the batches: loss (minimised), ELBO, regulariser term."""

    loss: list[float] = field(default_factory=list)
    elbo: list[float] = field(default_factory=list)
    regulariser: list[float] = field(default_factory=list)


def load_model(path: str) -> ComplexVAE:
    """Rebuild a trained `ComplexVAE` from a checkpoint written by `Trainer` (eval mode).

    The file is validated (format, configuration, weights' names, shapes and dtype) before the
    model is built; any problem is a ``ValueError`` naming the file and the field. The data
    transform the model was trained on is `checkpoint_transform`.
    """
    state = read_checkpoint(path, training=False)
    try:
        model = ComplexVAE.from_config(state["model_config"])
    except (ValueError, TypeError, AttributeError) as exc:
        raise ValueError(f"checkpoint {path!r}: its model_config is not usable: {exc}") from exc
    check_model_matches(state, model)
    model.load_state_dict(state["model"])
    model.data_transform = state.get("data_transform")
    return model.eval()


def checkpoint_transform(path: str) -> str | None:
    """The data transform (``"identity"``/``"fft"``) stored in a checkpoint; None if unknown."""
    return read_checkpoint(path, training=False).get("data_transform")


# Kept for callers that imported the private helper.
_atomic_save = atomic_save


class Trainer:
    """Trains a `ComplexVAE` on complex data ``x`` ``(N, D)``; deterministic given the seed.

    Shuffling and reparameterisation noise come from one ``torch.Generator`` seeded with
    ``config.seed``; its state is checkpointed with the model and optimiser, so a resumed run
    continues bit-identically (same CPU thread count assumed). Each epoch visits a fresh
    permutation in batches of ``config.batch_size``; a last batch of a single example is
    skipped (the regulariser's variance needs two), so ``batch_size`` and ``x`` need >= 2.
    """

    def __init__(self, model: ComplexVAE, x: torch.Tensor, config: TrainConfig | None = None):
        if not isinstance(model, ComplexVAE):
            raise ValueError(f"model must be a ComplexVAE; got {type(model).__name__}.")
        self.model = model
        # Data follow the model's device (CPU or GPU); the RNG stays on the CPU (see
        # `complex_normal`), so a run is reproducible and resumable on either.
        if config is not None and not isinstance(config, TrainConfig):
            raise ValueError(f"config must be a TrainConfig or None; got {type(config).__name__}.")
        x = model.check_data(x, "x")
        if x.shape[0] < 2:
            raise ValueError(
                f"x must hold at least 2 examples (a batch needs two); got {x.shape[0]}."
            )
        self.x = x.to(next(model.parameters()).device)
        self.config = config or TrainConfig()
        self.optimizer = torch.optim.Adam(model.parameters(), lr=self.config.lr)
        self.generator = torch.Generator(device="cpu").manual_seed(self.config.seed)
        self.epoch = 0
        self.history = TrainHistory()

    # -- checkpoints ------------------------------------------------------------------
    def state_dict(self) -> dict:
        return {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "model_config": self.model.config,
            "dtype": self.model.config["dtype"],
            "data_transform": self.config.data_transform,
            "train_config": self.config.run_options(),
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "generator": self.generator.get_state(),
            "epoch": self.epoch,
            "history": asdict(self.history),
        }

    def save_checkpoint(self, path: str) -> None:
        """Write a checkpoint atomically (temporary file, then ``os.replace``)."""
        atomic_save(self.state_dict(), path)

    def load_checkpoint(self, path: str) -> None:
        """Restore model, optimiser, RNG and progress from ``path``.

        Everything is compared before anything is loaded: the file's format, the model
        configuration (sizes, activations, decoder-variance mode, dtype) and weights, the
        optimiser state, the generator state, the data transform and the run's options
        (seed, batch size, learning rate, KL weight, regulariser). A mismatch raises a
        ``ValueError`` naming the file and the field, and the trainer is left unchanged.
        """
        state = read_checkpoint(path, training=True)
        check_model_matches(state, self.model)
        check_optimizer_matches(state, self.optimizer)
        self.config.data_transform = check_transform(state, self.config.data_transform)
        check_run_matches(state, self.config.run_options())
        backup = (
            {k: v.detach().clone() for k, v in self.model.state_dict().items()},
            copy.deepcopy(self.optimizer.state_dict()),
            self.generator.get_state(),
        )
        try:
            self.model.load_state_dict(state["model"])
            self.optimizer.load_state_dict(state["optimizer"])
            self.generator.set_state(state["generator"])
        except Exception as exc:  # checked above; restore the trainer if torch still refuses
            self.model.load_state_dict(backup[0])
            self.optimizer.load_state_dict(backup[1])
            self.generator.set_state(backup[2])
            raise ValueError(f"checkpoint {path!r}: cannot be loaded: {exc}") from exc
        self.epoch = state["epoch"]
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
        self._apply(loss, float(loss.detach()))
        return float(loss.detach()), float(elbo.detach()), reg_value

    def _apply(self, loss: torch.Tensor, loss_value: float) -> None:
        """The end of every training step: refuse a non-finite loss, then one optimiser step."""
        if not math.isfinite(loss_value):
            raise RuntimeError(
                f"training diverged at epoch {self.epoch + 1}: the loss is {loss_value}; "
                "lower the learning rate or the regulariser weight."
            )
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()

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
