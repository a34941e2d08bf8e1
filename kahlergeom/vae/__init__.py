"""Complex VAEs: complex layers and activations, the model, and geometry-aware training."""

from kahlergeom.vae._distributed import DistributedTrainer
from kahlergeom.vae._layers import (
    ACTIVATIONS,
    Cardioid,
    ComplexTanh,
    CReLU,
    ModReLU,
    ZReLU,
    complex_mlp,
)
from kahlergeom.vae._model import (
    ComplexDecoder,
    ComplexEncoder,
    ComplexVAE,
    Posterior,
    complex_normal,
)
from kahlergeom.vae._train import (
    GeometricRegulariser,
    TrainConfig,
    Trainer,
    TrainHistory,
    load_model,
)

__all__ = [
    "ACTIVATIONS",
    "CReLU",
    "Cardioid",
    "ComplexDecoder",
    "ComplexEncoder",
    "ComplexTanh",
    "ComplexVAE",
    "DistributedTrainer",
    "GeometricRegulariser",
    "ModReLU",
    "Posterior",
    "TrainConfig",
    "TrainHistory",
    "Trainer",
    "ZReLU",
    "complex_mlp",
    "complex_normal",
    "load_model",
]
