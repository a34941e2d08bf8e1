r"""Scale-out with ``torch.distributed``: sharded metric fields and data-parallel training.

Launch with ``torchrun`` (one process per GPU, or several CPU processes):

    torchrun --standalone --nproc_per_node=2 -m kahlergeom.cli train --distributed ...

`init_distributed` reads ``RANK``/``WORLD_SIZE``/``LOCAL_RANK`` (set by torchrun) and starts
the process group with **NCCL** when CUDA is available and **gloo** otherwise. Without those
variables everything runs as one process (world size 1), so the same code is used either way.

* `evaluate_metric_field` splits the points into contiguous shards (``torch.tensor_split``),
  evaluates ``manifold.metric`` on each rank's shard and all-gathers the full ``(N, n, n)``
  field on every rank. Each point goes through the same operations as in one process.
* `DistributedTrainer` is a `Trainer` whose model is wrapped in
  ``DistributedDataParallel``. Every rank holds the full data and the same seeded CPU
  generator, so every rank draws the same permutation and the same reparameterisation noise for
  the **global** batch (``config.batch_size``), then keeps its contiguous slice of it. The local
  loss is the sum over the slice divided by the global batch size and multiplied by the world
  size; DDP's gradient average then equals the gradient of the single-process batch mean, up to
  floating-point summation order. Checkpoints (the single-process format) are written
  atomically by rank 0 only.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.distributed as dist

from kahlergeom.manifolds._hermitian import HermitianManifold
from kahlergeom.vae._model import ComplexVAE, complex_normal
from kahlergeom.vae._train import TrainConfig, Trainer

__all__ = [
    "DistContext",
    "DistributedTrainer",
    "evaluate_metric_field",
    "init_distributed",
    "is_distributed",
    "shard_slice",
    "shutdown_distributed",
]


@dataclass(frozen=True)
class DistContext:
    """Where this process stands: ``rank`` of ``world_size``, its ``device`` and ``backend``."""

    rank: int
    world_size: int
    local_rank: int
    device: torch.device
    backend: str | None

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def is_distributed() -> bool:
    """True when a process group is initialised (of any size, 1 included: a one-rank group
    runs the same collective code path as a larger one, e.g. one GPU under torchrun)."""
    return dist.is_available() and dist.is_initialized()


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value is None:
        return default
    try:
        return int(value)
    except ValueError:
        raise ValueError(
            f"environment variable {name} must be an integer; got {value!r}."
        ) from None


def init_distributed(backend: str | None = None) -> DistContext:
    """Start (or join) the process group from torchrun's environment variables.

    ``backend=None`` takes ``$KAHLERGEOM_DIST_BACKEND`` if set, else ``"nccl"`` when CUDA is
    available and ``"gloo"`` otherwise. With NCCL the process uses ``cuda:LOCAL_RANK``. If a
    group is already initialised, it is joined as is (its backend decides the device). Without
    torchrun's variables (``WORLD_SIZE`` unset) no group is started and a world of size 1 is
    returned (on ``cuda:0`` under NCCL's choice, else the CPU).
    """
    world = _env_int("WORLD_SIZE", 1)
    rank = _env_int("RANK", 0)
    local_rank = _env_int("LOCAL_RANK", 0)
    if dist.is_initialized():
        backend = str(dist.get_backend()).lower()
        device = torch.device("cuda", local_rank) if backend == "nccl" else torch.device("cpu")
        return DistContext(dist.get_rank(), dist.get_world_size(), local_rank, device, backend)
    if backend is None:
        backend = os.environ.get("KAHLERGEOM_DIST_BACKEND") or (
            "nccl" if torch.cuda.is_available() else "gloo"
        )
    if backend not in ("gloo", "nccl"):
        raise ValueError(f"backend must be 'gloo' or 'nccl'; got {backend!r}.")
    if backend == "nccl":
        if not torch.cuda.is_available():
            raise ValueError("backend: 'nccl' needs CUDA; use 'gloo' on the CPU.")
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    else:
        device = torch.device("cpu")
    if world == 1 and "MASTER_ADDR" not in os.environ:
        return DistContext(0, 1, 0, device, None)
    # NCCL: bind the group to this rank's GPU (collectives and barrier() then use it).
    extra = {"device_id": device} if backend == "nccl" else {}
    dist.init_process_group(backend=backend, rank=rank, world_size=world, **extra)
    return DistContext(rank, world, local_rank, device, backend)


def shutdown_distributed() -> None:
    """Destroy the process group if one is initialised (safe to call in any case)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def _world() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def shard_slice(n_items: int, rank: int, world_size: int) -> slice:
    """Contiguous shard of ``range(n_items)`` owned by ``rank`` (sizes differ by at most 1,
    the first ``n_items % world_size`` ranks get one more; same split as ``tensor_split``)."""
    if world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(f"rank must be in [0, world_size); got rank={rank}, {world_size=}.")
    base, extra = divmod(n_items, world_size)
    start = rank * base + min(rank, extra)
    return slice(start, start + base + (1 if rank < extra else 0))


def _all_gather_rows(local: torch.Tensor, n_total: int, world: int) -> torch.Tensor:
    """Concatenate every rank's ``local`` (rows of varying count) in rank order, on all ranks."""
    counts = [shard_slice(n_total, r, world) for r in range(world)]
    size = max(s.stop - s.start for s in counts)
    real = torch.view_as_real(local) if local.is_complex() else local
    padded = real.new_zeros((size, *real.shape[1:]))
    padded[: real.shape[0]] = real
    buffers = [torch.empty_like(padded) for _ in range(world)]
    dist.all_gather(buffers, padded.contiguous())
    rows = [b[: s.stop - s.start] for b, s in zip(buffers, counts, strict=True)]
    full = torch.cat(rows, 0)
    return torch.view_as_complex(full) if local.is_complex() else full


def evaluate_metric_field(
    manifold,
    z: torch.Tensor,
    *,
    method: str | Callable = "metric",
) -> torch.Tensor:
    """The metric field at points ``z`` ``(N, n)``, sharded across ranks, gathered on all.

    Args:
        manifold: a `HermitianManifold`, or a zero-argument callable building one (so each
            rank can build its own, e.g. ``lambda: FisherManifold(load_model(path).decoder)``).
        z: the points ``(N, n)``, the same on every rank.
        method: the per-point method name (``"metric"``, ``"real_metric"``,
            ``"log_volume_density"``, ...) or a callable ``f(manifold, z_shard)``.

    Returns:
        ``method`` of the manifold at all N points (e.g. ``(N, n, n)``), identical on every
        rank and equal to the one-process result: each point is evaluated by the same ops.
        Without an initialised multi-rank process group, this is just ``manifold.metric(z)``.
    """
    if not isinstance(manifold, HermitianManifold) and callable(manifold):
        manifold = manifold()
    if not isinstance(manifold, HermitianManifold):
        raise ValueError(
            "manifold must be a HermitianManifold or a callable returning one; got "
            f"{type(manifold).__name__}."
        )
    if not isinstance(z, torch.Tensor) or z.ndim != 2:
        raise ValueError(
            f"z must be a tensor of shape (N, n); got {getattr(z, 'shape', type(z).__name__)}."
        )
    fn = method if callable(method) else getattr(manifold, method, None)
    if fn is None:
        raise ValueError(f"method: the manifold has no method {method!r}.")
    call = (lambda w: fn(manifold, w)) if callable(method) else fn
    if not is_distributed():
        return call(z)
    rank, world = _world()
    local = call(z[shard_slice(z.shape[0], rank, world)])
    return _all_gather_rows(local, z.shape[0], world)


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
        self.rank, self.world_size = _world()
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
        eps = complex_normal(
            (B, self.model.latent_dim), self.model.dtype, xb.device, self.generator
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
        if not math.isfinite(loss_value):
            raise RuntimeError(
                f"training diverged at epoch {self.epoch + 1}: the loss is {loss_value}; "
                "lower the learning rate or the regulariser weight."
            )
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return loss_value, elbo_value, 0.0
