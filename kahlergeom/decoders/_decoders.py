"""Decoder helpers: evaluating a decoder with checks, and real-latent adapters."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from kahlergeom.decoders._likelihoods import Likelihood

_BATCH_MIXING = (nn.modules.batchnorm._BatchNorm, nn.Dropout, nn.Dropout1d, nn.Dropout2d)


def check_decoder(decoder) -> Callable:
    """Validate a decoder: callable, and (for an nn.Module) not in a batch-mixing training mode.

    Batch norm and dropout in training mode mix or randomise the batch, so per-point Jacobians
    are meaningless; call ``decoder.eval()`` first.
    """
    if not callable(decoder):
        raise ValueError(f"decoder must be callable (z -> outputs); got {type(decoder).__name__}.")
    if isinstance(decoder, nn.Module):
        for name, module in decoder.named_modules():
            if isinstance(module, _BATCH_MIXING) and module.training:
                raise ValueError(
                    f"decoder module {name or type(module).__name__!r} "
                    f"({type(module).__name__}) is in training mode; batch norm and dropout "
                    "mix the batch, so per-point Jacobians would be wrong. Call decoder.eval()."
                )
    return decoder


def _drop_batch_of_one(params: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
    """Remove the batch axis of one added by `decode_params` (shared parameters keep theirs)."""
    lead = params[0].ndim
    return tuple(p.squeeze(0) if p.ndim == lead and p.ndim >= 2 else p for p in params)


def decode_params(
    decoder: Callable, likelihood: Likelihood, z: torch.Tensor
) -> tuple[torch.Tensor, ...]:
    """The likelihood's parameters of ``decoder`` at ``z`` ``(..., n)`` (traceable, unchecked).

    A single point ``(n,)`` (what per-point ``torch.func`` transforms see) is passed to the
    decoder as a batch of one, ``(1, n)``, and that axis is removed again: layers such as
    ``BatchNorm1d`` refuse unbatched input.
    """
    if z.ndim != 1:
        return likelihood.params(decoder(z))
    return _drop_batch_of_one(likelihood.params(decoder(z.unsqueeze(0))))


def evaluate_decoder(
    decoder: Callable, likelihood: Likelihood, z: torch.Tensor
) -> tuple[torch.Tensor, ...]:
    """Run ``decoder(z)`` once (outside transforms) and validate its parameters."""
    try:
        output = decoder(z.unsqueeze(0) if z.ndim == 1 else z)
    except Exception as exc:  # re-raised with the input shape: the usual cause
        raise ValueError(
            f"decoder failed on latent points of shape {tuple(z.shape)} and dtype {z.dtype}: "
            f"{type(exc).__name__}: {exc}"
        ) from exc
    params = likelihood.params(output)
    if z.ndim == 1:
        params = _drop_batch_of_one(params)
    likelihood.check(params, z.shape[:-1])
    return params


class Complexified(nn.Module):
    r"""Adapter: a decoder of a *real* latent r ∈ R^{2n} seen as a decoder of z ∈ C^n.

    ``pairing="interleaved"``: $z_a = r_{2a} + i\,r_{2a+1}$ (consecutive pairs);
    ``pairing="split"``: $z = r_{:n} + i\,r_{n:}$ (real parts first). The wrapped decoder
    receives the real latent ``(..., 2n)`` in its own ordering.
    """

    def __init__(self, real_decoder: Callable, pairing: str = "interleaved"):
        super().__init__()
        if pairing not in ("interleaved", "split"):
            raise ValueError(f"pairing must be 'interleaved' or 'split'; got {pairing!r}.")
        if not callable(real_decoder):
            raise ValueError(f"real_decoder must be callable; got {type(real_decoder).__name__}.")
        self.real_decoder = real_decoder
        self.pairing = pairing

    def forward(self, z: torch.Tensor):
        if self.pairing == "split":
            r = torch.cat([z.real, z.imag], -1)
        else:
            r = torch.view_as_real(z).flatten(-2)
        return self.real_decoder(r)
