r"""Complex-valued layers and activations on torch's native complex dtypes.

``nn.Linear`` accepts complex dtypes directly; the activations below are the standard
complex-network nonlinearities. $|z|$ is computed as $\sqrt{x^2 + y^2 + \epsilon}$ where a
derivative at 0 is needed (``abs`` has none there).
"""

from __future__ import annotations

import torch
from torch import nn


def _safe_abs(z: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    return torch.sqrt(z.real**2 + z.imag**2 + eps)


class ModReLU(nn.Module):
    r"""modReLU: $\sigma(z) = \mathrm{ReLU}(|z| + b)\, z / |z|$, learned real bias b per feature."""

    def __init__(self, features: int, dtype: torch.dtype = torch.float32):
        super().__init__()
        self.bias = nn.Parameter(torch.full((features,), -0.1, dtype=dtype))

    def forward(self, z):
        r = _safe_abs(z)
        return torch.relu(r + self.bias) * (z / r)


class CReLU(nn.Module):
    r"""CReLU: $\mathrm{ReLU}(\mathrm{Re}\,z) + i\,\mathrm{ReLU}(\mathrm{Im}\,z)$."""

    def forward(self, z):
        return torch.complex(torch.relu(z.real), torch.relu(z.imag))


class Cardioid(nn.Module):
    r"""Cardioid: $\tfrac12(1 + \cos\arg z)\, z = \tfrac12(1 + \mathrm{Re}\,z/|z|)\, z$."""

    def forward(self, z):
        return 0.5 * (1 + z.real / _safe_abs(z)) * z


class ZReLU(nn.Module):
    r"""zReLU: $z$ where $0 < \arg z < \pi/2$ (both parts positive), else 0."""

    def forward(self, z):
        mask = (z.real > 0) & (z.imag > 0)
        return z * mask.to(z.real.dtype)


class ComplexTanh(nn.Module):
    """Holomorphic tanh (torch's native complex tanh)."""

    def forward(self, z):
        return torch.tanh(z)


ACTIVATIONS = {
    "modrelu": ModReLU,
    "crelu": CReLU,
    "cardioid": Cardioid,
    "zrelu": ZReLU,
    "tanh": ComplexTanh,
}


def make_activation(name: str, features: int, real_dtype: torch.dtype) -> nn.Module:
    """An activation by name: ``modrelu``, ``crelu``, ``cardioid``, ``zrelu`` or ``tanh``."""
    if name not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}; got {name!r}.")
    cls = ACTIVATIONS[name]
    return cls(features, dtype=real_dtype) if cls is ModReLU else cls()


def complex_mlp(
    sizes: list[int], activation: str, dtype: torch.dtype, *, final_activation: bool = False
) -> nn.Sequential:
    """A complex MLP: Linear (complex weights) + activation between layers."""
    real_dtype = torch.float32 if dtype == torch.complex64 else torch.float64
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        layers.append(nn.Linear(a, b, dtype=dtype))
        if i < len(sizes) - 2 or final_activation:
            layers.append(make_activation(activation, b, real_dtype))
    return nn.Sequential(*layers)
