r"""The KL-exact local Kähler potential of a decoder."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch.func import vmap

from kahlergeom._checks import check_points
from kahlergeom.decoders._decoders import check_decoder, decode_params, evaluate_decoder
from kahlergeom.decoders._likelihoods import ComplexGaussian, Likelihood
from kahlergeom.potentials._base import KahlerPotential
from kahlergeom.wirtinger._ddbar import _levi


class KLPotential(KahlerPotential):
    r"""KL-exact local potential $K_{z_0}(z) = \mathrm{KL}\big(p(\cdot|z_0)\,\|\,p(\cdot|z)\big)$.

    For the circular complex Gaussian,
    $K_{z_0}(z) = \mathrm{tr}(\Sigma^{-1}\Sigma_0) - D + \log\det\Sigma - \log\det\Sigma_0
      + (\mu-\mu_0)^H\Sigma^{-1}(\mu-\mu_0)$.
    Its Levi matrix **at** $z = z_0$ is exactly the Fisher metric $G(z_0)$ (Fisher information
    is the Hessian of the KL divergence); elsewhere it is only a local potential, one per base
    point.

    Args:
        decoder: as in `FisherManifold`.
        z0: base point ``(n,)``, or base points ``(..., n)``. With several base points the
            potential is evaluated pairwise: ``z`` must have the same batch shape, and
            `levi` pairs ``z[i]`` with ``z0[i]``.
        likelihood: default `ComplexGaussian()`.
    """

    def __init__(self, decoder: Callable, z0: torch.Tensor, likelihood: Likelihood | None = None):
        self.decoder = check_decoder(decoder)
        self.likelihood = likelihood if likelihood is not None else ComplexGaussian()
        if not isinstance(self.likelihood, Likelihood):
            raise ValueError(
                f"likelihood must be a kahlergeom.decoders.Likelihood; got {likelihood!r}."
            )
        check_points(z0, None, "z0")
        self.z0 = z0.detach()
        with torch.no_grad():
            self.params0 = tuple(
                p.detach() for p in evaluate_decoder(self.decoder, self.likelihood, self.z0)
            )
        super().__init__(z0.shape[-1])

    @property
    def batched_call(self) -> bool:  # type: ignore[override]
        """Only with a single base point does ``__call__`` accept any batch of points."""
        return self.z0.ndim == 1

    def _params(self, z):
        return decode_params(self.decoder, self.likelihood, z)

    def __call__(self, z):
        return self.likelihood.kl(self.params0, self._params(z))

    def levi(self, z):
        if self.z0.ndim == 1:
            return _levi(self, z)
        if z.shape[:-1] != self.z0.shape[:-1]:
            raise ValueError(
                f"z must have the batch shape of the base points z0 {tuple(self.z0.shape[:-1])}; "
                f"got {tuple(z.shape[:-1])}."
            )
        n = self.n
        batch = z.shape[:-1]
        params0 = tuple(p.expand(*batch, *p.shape[len(batch) :]) for p in self.params0)
        flat0 = tuple(p.reshape(-1, *p.shape[len(batch) :]) for p in params0)

        def one(zi, *p0):
            return _levi(lambda w: self.likelihood.kl(p0, self._params(w)), zi)

        G = vmap(one)(z.reshape(-1, n), *flat0)
        return G.reshape(*batch, n, n)

    def __repr__(self):
        return f"KLPotential(n={self.n}, base points {tuple(self.z0.shape[:-1])})"
