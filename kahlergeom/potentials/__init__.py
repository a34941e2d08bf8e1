"""Kähler potentials: the extension point of kahlergeom.

A potential is a real function K on a domain of C^n; its Levi matrix ∂∂̄K is the metric.
Subclass `KahlerPotential` and implement ``__call__`` to add your own.
"""

from kahlergeom.potentials._autograd_christoffel import AutogradChristoffel
from kahlergeom.potentials._base import KahlerPotential, sq_norm
from kahlergeom.potentials._closed_forms import ComplexHyperbolic, Flat, FubiniStudy, SiegelDisk
from kahlergeom.potentials._combinators import LogSumExp, PotentialSum, Product, lse_levi
from kahlergeom.potentials._kl import KLPotential
from kahlergeom.potentials._mixture import GaussianMixturePotential, Quadratic
from kahlergeom.potentials._ridge import RidgePotential

__all__ = [
    "AutogradChristoffel",
    "ComplexHyperbolic",
    "Flat",
    "FubiniStudy",
    "GaussianMixturePotential",
    "KLPotential",
    "KahlerPotential",
    "LogSumExp",
    "PotentialSum",
    "Product",
    "Quadratic",
    "RidgePotential",
    "SiegelDisk",
    "lse_levi",
    "sq_norm",
]
