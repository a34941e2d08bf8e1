r"""A complex variational autoencoder with a circular complex Gaussian decoder.

Encoder: $q(z\mid x) = \mathcal{CN}(m(x), \Gamma(x))$ with trivial relation matrix and a
diagonal or full (Cholesky) covariance. Prior $\mathcal{CN}(0, I)$. Decoder:
$p(x\mid z) = \mathcal{CN}(\mu(z), \mathrm{diag}\,\sigma^2)$ — its ``decoder`` attribute is a
decoder in `FisherManifold`'s sense, ``decoder(z) -> (mean, variance)``.

$$\mathrm{KL}(\mathcal{CN}(m,\Gamma)\,\|\,\mathcal{CN}(0,I)) = \mathrm{tr}\,\Gamma + |m|^2 - n
  - \log\det\Gamma, \qquad
  \log p(x\mid z) = -\sum_d \frac{|x_d-\mu_d|^2}{\sigma_d^2} + \log\sigma_d^2 + \log\pi .$$
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from kahlergeom._checks import real_dtype_of
from kahlergeom._linalg import complex_normal_sample
from kahlergeom.decoders._likelihoods import ComplexGaussian
from kahlergeom.vae._layers import ACTIVATIONS, complex_mlp

_COMPLEX = (torch.complex64, torch.complex128)


@dataclass
class Posterior:
    """Encoder output: mean ``(..., n)`` complex and covariance Cholesky factor ``(..., n, n)``.

    The covariance is $\\Gamma = L L^H$ (L lower triangular with positive real diagonal).
    """

    mean: torch.Tensor
    scale_tril: torch.Tensor

    @property
    def covariance(self) -> torch.Tensor:
        return self.scale_tril @ self.scale_tril.mH

    @property
    def precision(self) -> torch.Tensor:
        return torch.cholesky_inverse(self.scale_tril)

    def log_det_covariance(self) -> torch.Tensor:
        return 2 * torch.log(torch.diagonal(self.scale_tril, dim1=-2, dim2=-1).real).sum(-1)

    def rsample(self, generator: torch.Generator | None = None) -> torch.Tensor:
        """Complex reparameterisation: z = m + L ε, ε ~ CN(0, I) (real, imag parts N(0, ½))."""
        eps = complex_normal(self.mean.shape, self.mean.dtype, self.mean.device, generator)
        return self.mean + (self.scale_tril @ eps.unsqueeze(-1)).squeeze(-1)

    def kl_to_standard(self) -> torch.Tensor:
        """KL(CN(m, Γ) ‖ CN(0, I)) = tr Γ + |m|² − n − log det Γ, real ``(...)``."""
        L = self.scale_tril
        tr = (L.real**2 + L.imag**2).sum((-1, -2))
        m2 = (self.mean.real**2 + self.mean.imag**2).sum(-1)
        return tr + m2 - self.mean.shape[-1] - self.log_det_covariance()


def complex_normal(shape, dtype, device=None, generator=None) -> torch.Tensor:
    """Standard circular complex normal CN(0, I): E|ε|² = 1 per entry.

    Drawn on the generator's device (the trainer's generator lives on the CPU, so runs are
    reproducible across devices) and moved to ``device``.
    """
    return complex_normal_sample(tuple(shape), dtype=dtype, device=device, generator=generator)


class ComplexEncoder(nn.Module):
    """x (complex (..., D)) ↦ `Posterior` CN(m(x), Γ(x)), diagonal or full covariance."""

    def __init__(self, data_dim, latent_dim, hidden, activation, covariance, dtype):
        super().__init__()
        if covariance not in ("diagonal", "full"):
            raise ValueError(f"covariance must be 'diagonal' or 'full'; got {covariance!r}.")
        self.covariance = covariance
        self.latent_dim = latent_dim
        self.body = complex_mlp([data_dim, *hidden], activation, dtype, final_activation=True)
        h = hidden[-1] if hidden else data_dim
        self.mean_head = nn.Linear(h, latent_dim, dtype=dtype)
        self.logvar_head = nn.Linear(h, latent_dim, dtype=dtype)
        n_off = latent_dim * (latent_dim - 1) // 2 if covariance == "full" else 0
        self.offdiag_head = nn.Linear(h, n_off, dtype=dtype) if n_off else None

    def forward(self, x: torch.Tensor) -> Posterior:
        h = self.body(x)
        mean = self.mean_head(h)
        log_var = self.logvar_head(h).real.clamp(-12, 8)
        diag = torch.exp(0.5 * log_var).to(mean.dtype)
        L = torch.diag_embed(diag)
        if self.offdiag_head is not None:
            n = self.latent_dim
            rows, cols = torch.tril_indices(n, n, offset=-1, device=x.device)
            off = self.offdiag_head(h)
            scatter = torch.zeros(*off.shape[:-1], n * n, dtype=off.dtype, device=off.device)
            scatter = scatter.index_copy(-1, rows * n + cols, off)
            L = L + scatter.reshape(*off.shape[:-1], n, n)
        return Posterior(mean, L)


class ComplexDecoder(nn.Module):
    """z (complex (..., n)) ↦ (mean (..., D) complex, variance > 0 broadcastable to (..., D)).

    ``variance="learned"``: one learned variance per output (shape (D,));
    ``variance="point"``: a point-dependent head, softplus + ``min_variance``;
    a float: a fixed scalar variance.
    """

    def __init__(self, latent_dim, data_dim, hidden, activation, variance, dtype, min_variance):
        super().__init__()
        self.n = latent_dim
        self.latent_dim = latent_dim
        self.data_dim = data_dim
        self.body = complex_mlp([latent_dim, *hidden], activation, dtype, final_activation=True)
        h = hidden[-1] if hidden else latent_dim
        self.mean_head = nn.Linear(h, data_dim, dtype=dtype)
        real = real_dtype_of(dtype)
        self.min_variance = float(min_variance)
        if variance == "learned":
            self.log_var = nn.Parameter(torch.full((data_dim,), -2.0, dtype=real))
            self.var_head = None
        elif variance == "point":
            self.log_var = None
            self.var_head = nn.Linear(h, data_dim, dtype=dtype)
        else:
            try:
                value = float(variance)
            except (TypeError, ValueError):
                raise ValueError(
                    f"variance must be 'learned', 'point' or a positive number; got {variance!r}."
                ) from None
            if not value > 0:
                raise ValueError(f"variance must be > 0; got {variance!r}.")
            self.register_buffer("fixed_var", torch.tensor(value, dtype=real))
            self.log_var = None
            self.var_head = None
        self.variance_mode = variance if isinstance(variance, str) else "fixed"

    def forward(self, z: torch.Tensor):
        h = self.body(z)
        mean = self.mean_head(h)
        if self.variance_mode == "learned":
            var = torch.exp(self.log_var) + self.min_variance
        elif self.variance_mode == "point":
            var = F.softplus(self.var_head(h).real) + self.min_variance
        else:
            var = self.fixed_var
        return mean, var


def _is_int(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _check_vae_options(
    data_dim,
    latent_dim,
    hidden,
    encoder_activation,
    decoder_activation,
    covariance,
    decoder_variance,
    min_variance,
    dtype,
) -> tuple[int, ...]:
    """Validate every `ComplexVAE` option (ValueError naming it); return ``hidden`` as a tuple."""
    for name, value in (("data_dim", data_dim), ("latent_dim", latent_dim)):
        if not _is_int(value) or value < 1:
            raise ValueError(f"{name} must be an integer >= 1; got {value!r}.")
    if isinstance(hidden, int | str) or not hasattr(hidden, "__iter__"):
        raise ValueError(f"hidden must be a sequence of layer widths, e.g. (64,); got {hidden!r}.")
    hidden = tuple(hidden)
    bad = [h for h in hidden if not _is_int(h) or h < 1]
    if bad:
        raise ValueError(
            f"hidden must hold integer layer widths >= 1; got {hidden!r} (bad: {bad[0]!r})."
        )
    for name, value in (
        ("encoder_activation", encoder_activation),
        ("decoder_activation", decoder_activation),
    ):
        if value not in ACTIVATIONS:
            raise ValueError(f"{name} must be one of {sorted(ACTIVATIONS)}; got {value!r}.")
    if covariance not in ("diagonal", "full"):
        raise ValueError(f"covariance must be 'diagonal' or 'full'; got {covariance!r}.")
    if isinstance(decoder_variance, str):
        if decoder_variance not in ("learned", "point"):
            raise ValueError(
                "decoder_variance must be 'learned', 'point' or a positive number; got "
                f"{decoder_variance!r}."
            )
    elif not (
        isinstance(decoder_variance, int | float)
        and not isinstance(decoder_variance, bool)
        and math.isfinite(decoder_variance)
        and decoder_variance > 0
    ):
        raise ValueError(
            "decoder_variance must be 'learned', 'point' or a finite number > 0; got "
            f"{decoder_variance!r}."
        )
    if not (
        isinstance(min_variance, int | float)
        and not isinstance(min_variance, bool)
        and math.isfinite(min_variance)
        and min_variance >= 0
    ):
        raise ValueError(f"min_variance must be a finite number >= 0; got {min_variance!r}.")
    if dtype not in _COMPLEX:
        raise ValueError(f"dtype must be torch.complex64 or torch.complex128; got {dtype!r}.")
    return tuple(int(h) for h in hidden)


class ComplexVAE(nn.Module):
    r"""Complex VAE: encoder CN(m, Γ), prior CN(0, I), circular complex Gaussian decoder.

    Args:
        data_dim: D, the (complex) data dimension.
        latent_dim: n, the complex latent dimension.
        hidden: hidden layer widths (encoder; reversed for the decoder).
        encoder_activation / decoder_activation: names from `kahlergeom.vae.ACTIVATIONS`.
            ``"tanh"`` (holomorphic, the default) makes the decoder mean holomorphic, so with a
            constant variance its Fisher metric is Kähler; but complex tanh has poles on the
            imaginary axis (at iπ/2 + iπk), where the decoder and det G blow up — choose
            ``"cardioid"`` or ``"modrelu"`` when sampling by volume far from the data.
        covariance: ``"diagonal"`` or ``"full"`` (Cholesky) posterior covariance.
        decoder_variance: ``"learned"`` (per output), ``"point"`` (point-dependent) or a float.
        dtype: ``torch.complex64`` or ``torch.complex128``.
    """

    def __init__(
        self,
        data_dim: int,
        latent_dim: int,
        hidden: tuple[int, ...] = (64,),
        *,
        encoder_activation: str = "crelu",
        decoder_activation: str = "tanh",
        covariance: str = "diagonal",
        decoder_variance: str | float = "learned",
        min_variance: float = 1e-3,
        dtype: torch.dtype = torch.complex64,
    ):
        super().__init__()
        hidden = _check_vae_options(
            data_dim,
            latent_dim,
            hidden,
            encoder_activation,
            decoder_activation,
            covariance,
            decoder_variance,
            min_variance,
            dtype,
        )
        self.data_dim, self.latent_dim, self.dtype = data_dim, latent_dim, dtype
        #: Constructor arguments (plain types), saved in checkpoints; see `from_config`.
        self.config = {
            "data_dim": data_dim,
            "latent_dim": latent_dim,
            "hidden": list(hidden),
            "encoder_activation": encoder_activation,
            "decoder_activation": decoder_activation,
            "covariance": covariance,
            "decoder_variance": decoder_variance,
            "min_variance": float(min_variance),
            "dtype": str(dtype).removeprefix("torch."),
        }
        self.encoder = ComplexEncoder(
            data_dim, latent_dim, hidden, encoder_activation, covariance, dtype
        )
        self.decoder = ComplexDecoder(
            latent_dim,
            data_dim,
            tuple(reversed(hidden)),
            decoder_activation,
            decoder_variance,
            dtype,
            min_variance,
        )
        self.likelihood = ComplexGaussian()

    @classmethod
    def from_config(cls, config: dict) -> ComplexVAE:
        """Rebuild a model (untrained) from its `config` dictionary."""
        if not isinstance(config, dict):
            raise ValueError(f"config must be a dict (ComplexVAE.config); got {config!r}.")
        cfg = dict(config)
        missing = [k for k in ("data_dim", "latent_dim", "hidden", "dtype") if k not in cfg]
        if missing:
            raise ValueError(f"config has no {', '.join(map(repr, missing))} entry.")
        name = cfg.pop("dtype")
        if name not in ("complex64", "complex128"):
            raise ValueError(f"config dtype must be 'complex64' or 'complex128'; got {name!r}.")
        dtype = getattr(torch, name)
        return cls(
            cfg.pop("data_dim"), cfg.pop("latent_dim"), tuple(cfg.pop("hidden")), dtype=dtype, **cfg
        )

    def check_data(self, x, name: str = "x") -> torch.Tensor:
        if not isinstance(x, torch.Tensor) or x.dtype != self.dtype:
            raise ValueError(
                f"{name} must be a {self.dtype} tensor of shape (batch, {self.data_dim}); got "
                f"{getattr(x, 'dtype', type(x).__name__)}. Convert real data with "
                "kahlergeom.data.to_complex."
            )
        if x.ndim != 2 or x.shape[-1] != self.data_dim:
            raise ValueError(
                f"{name} must have shape (batch, {self.data_dim}); got {tuple(x.shape)}."
            )
        if not bool(torch.isfinite(x).all()):
            raise ValueError(f"{name} contains NaN or inf.")
        return x

    def encode(self, x: torch.Tensor) -> Posterior:
        return self.encoder(x)

    def decode(self, z: torch.Tensor):
        return self.decoder(z)

    def elbo_terms(self, x: torch.Tensor, generator: torch.Generator | None = None):
        """Per-example (reconstruction log-likelihood, KL) with one reparameterised sample."""
        q = self.encode(x)
        z = q.rsample(generator)
        rec = self.likelihood.log_prob(x, self.decode(z))
        return rec, q.kl_to_standard(), q, z

    def elbo(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """ELBO per example, real ``(batch,)``."""
        rec, kl, _, _ = self.elbo_terms(x, generator)
        return rec - kl

    @torch.no_grad()
    def sample_prior(self, n_samples: int, generator: torch.Generator | None = None):
        """Latents from the prior CN(0, I), shape (n_samples, n)."""
        device = next(self.parameters()).device
        return complex_normal((n_samples, self.latent_dim), self.dtype, device, generator)
