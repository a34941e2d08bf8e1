r"""Scale-out with ``torch.distributed``: sharded metric fields and data-parallel training.

Launch with ``torchrun`` (one process per GPU, or several CPU processes):

    torchrun --standalone --nproc_per_node=2 -m kahlergeom.cli train --distributed ...

This module gathers the public names; they live beside what they distribute:

* `init_distributed`, `DistContext`, `shard_slice`, ... (``kahlergeom._dist``): the process
  group, started with **NCCL** when CUDA is available and **gloo** otherwise; without torchrun's
  variables everything runs as one process (world size 1).
* `evaluate_metric_field` (``kahlergeom.manifolds``) splits the points into contiguous shards
  (``torch.tensor_split``), evaluates ``manifold.metric`` on each rank's shard and all-gathers
  the full ``(N, n, n)`` field on every rank. Each point goes through the same operations as in
  one process.
* `DistributedTrainer` (``kahlergeom.vae``) is a `Trainer` whose model is wrapped in
  ``DistributedDataParallel``; each global batch is sharded across ranks (see its docstring).
"""

from kahlergeom._dist import (
    DistContext,
    init_distributed,
    is_distributed,
    shard_slice,
    shutdown_distributed,
)
from kahlergeom.manifolds._sharded import evaluate_metric_field
from kahlergeom.vae._distributed import DistributedTrainer

__all__ = [
    "DistContext",
    "DistributedTrainer",
    "evaluate_metric_field",
    "init_distributed",
    "is_distributed",
    "shard_slice",
    "shutdown_distributed",
]
