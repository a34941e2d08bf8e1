r"""Process-group plumbing for ``torch.distributed`` (lowest layer: imports nothing of ours).

`init_distributed` reads ``RANK``/``WORLD_SIZE``/``LOCAL_RANK`` (set by torchrun) and starts
the process group with **NCCL** when CUDA is available and **gloo** otherwise. Without those
variables everything runs as one process (world size 1), so the same code is used either way.
The users of these helpers are `kahlergeom.manifolds.evaluate_metric_field` (sharded metric
fields) and `kahlergeom.vae.DistributedTrainer` (data-parallel training); the public façade is
`kahlergeom.distributed`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


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
    """Destroy the process group if one is initialised (safe to call in any case).

    All ranks meet at a barrier first: rank 0 hosts the rendezvous store, and a rank still
    talking to it when rank 0 tears it down aborts at exit ("terminate called without an active
    exception", seen with gloo).
    """
    if dist.is_available() and dist.is_initialized():
        if dist.get_world_size() > 1:
            dist.barrier()
        dist.destroy_process_group()


def world() -> tuple[int, int]:
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


def all_gather_rows(local: torch.Tensor, n_total: int, world: int) -> torch.Tensor:
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
