"""Decoders and their likelihoods: the embedding maps that induce Fisher metrics.

A decoder is any callable (or ``nn.Module``) ``z -> outputs`` on complex latent points
``(..., n)``; a `Likelihood` says what the outputs parameterise. The default is the circular
complex Gaussian, whose decoder returns ``(mean, variance)``.
"""

from kahlergeom.decoders._decoders import Complexified, check_decoder, evaluate_decoder
from kahlergeom.decoders._likelihoods import Bernoulli, ComplexGaussian, Likelihood, RealGaussian

__all__ = [
    "Bernoulli",
    "ComplexGaussian",
    "Complexified",
    "Likelihood",
    "RealGaussian",
    "check_decoder",
    "evaluate_decoder",
]
