r"""Data-parallel training: a `Trainer` whose model is wrapped in DistributedDataParallel.

Every rank holds the full data and the same seeded CPU generator, so every rank draws the same
permutation and the same reparameterisation noise for the **global** batch
(``config.batch_size``), then keeps its contiguous slice of it. The local loss is the sum over
the slice divided by the global batch size and multiplied by the world size; DDP's gradient
average then equals the gradient of the single-process batch mean, up to floating-point
summation order. Checkpoints (the single-process format) are written atomically by rank 0 only.
"""

from __future__ import annotations

import torch
import torch.distributed as dist

from kahlergeom._dist import is_distributed, shard_slice, world
from kahlergeom._linalg import complex_normal_sample
from kahlergeom.vae._model import ComplexVAE
from kahlergeom.vae._train import TrainConfig, Trainer


class _ELBOModule(torch.nn.Module):
    """Forward = the per-example ELBO terms with given noise, so DDP can wrap it."""

    def __init__(self, model: ComplexVAE):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor, eps: torch.Tensor):
        q = self.model.encode(x)
        z = q.mean + (q.scale_tril @ eps.unsqueeze(-1)).squeeze(-1)
        rec = self.model.likelihood.log_prob(x, self.model.decode(z))
        return rec, q.kl_to_standard(), q.mean, q.scale_tril, z


class DistributedTrainer(Trainer):
    """Data-parallel `Trainer`: DDP-wrapped model, each global batch sharded across ranks.

    Call `init_distributed` first (every rank passes the same data, config and seed). With a
    world of size 1 it trains like `Trainer` (same batches and noise). ``config.batch_size``
    is the **global** batch; each rank processes its contiguous slice of it. The geometric
    regulariser is not supported yet (it needs the batch's first points on every rank).
    """

    def __init__(self, model: ComplexVAE, x: torch.Tensor, config: TrainConfig | None = None):
        config = config or TrainConfig()
        if config.regulariser is not None and config.regulariser.weight > 0:
            raise ValueError(
                "regulariser: DistributedTrainer does not support the geometric regulariser "
                "yet; train without it or use Trainer."
            )
        self.rank, self.world_size = world()
        if self.rank != 0 and config.progress:
            config = TrainConfig(**{**config.__dict__, "progress": False})
        super().__init__(model, x, config)
        self._elbo = _ELBOModule(model)
        if is_distributed():
            from torch.nn.parallel import DistributedDataParallel

            device = next(model.parameters()).device
            ids = [device.index] if device.type == "cuda" else None
            self._elbo = DistributedDataParallel(self._elbo, device_ids=ids)

    def save_checkpoint(self, path: str) -> None:
        """Rank 0 writes the checkpoint atomically; the others wait for it."""
        if self.rank == 0:
            super().save_checkpoint(path)
        if is_distributed():
            dist.barrier()

    def _step(self, xb: torch.Tensor) -> tuple[float, float, float]:
        cfg = self.config
        B = xb.shape[0]
        # The same draw as `Posterior.rsample` on the whole global batch in one process.
        eps = complex_normal_sample(
            (B, self.model.latent_dim),
            dtype=self.model.dtype,
            device=xb.device,
            generator=self.generator,
        )
        part = shard_slice(B, self.rank, self.world_size)
        rec, kl, _mean, _tril, _z = self._elbo(xb[part], eps[part])
        # Sum / B x world: DDP averages over ranks, giving the gradient of the global mean.
        local = -(rec - cfg.kl_weight * kl).sum()
        loss = local * (self.world_size / B)
        sums = torch.stack([local.detach(), (rec - kl).sum().detach()]).to(torch.float64)
        if is_distributed():
            dist.all_reduce(sums)
        loss_value, elbo_value = float(sums[0]) / B, float(sums[1]) / B
        self._apply(loss, loss_value)
        return loss_value, elbo_value, 0.0
