"""Distributed metric fields and data-parallel training (torch.distributed, gloo on the CPU).

Oracles: the single-process results. `evaluate_metric_field` must equal ``manifold.metric``
exactly (torch.equal: every point goes through the same ops, gathering copies bits). Training
on 2 ranks must match 1 rank up to floating-point summation order (1e-10 in complex128): the
2-rank gradient is the sum of two partial sums combined by DDP's all-reduce, the 1-rank one a
single sum over the batch, so the last bits may differ.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from conftest import assert_close

from kahlergeom.cli import main
from kahlergeom.data import load_digits, to_complex
from kahlergeom.distributed import (
    DistributedTrainer,
    evaluate_metric_field,
    init_distributed,
    is_distributed,
    shard_slice,
)
from kahlergeom.manifolds import FisherManifold
from kahlergeom.vae import ComplexVAE, GeometricRegulariser, TrainConfig, Trainer, load_model

C128 = torch.complex128
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def make_model(seed=0):
    torch.manual_seed(seed)
    return ComplexVAE(64, 2, (8,), dtype=C128)


@pytest.fixture(scope="module")
def x_small():
    return to_complex(load_digits().images[:40], "identity", C128)


# -- sharding ---------------------------------------------------------------------------------
@pytest.mark.parametrize("n_items", [0, 1, 5, 7, 16])
@pytest.mark.parametrize("world", [1, 2, 3])
def test_shard_slice_partitions_like_tensor_split(n_items, world):
    items = torch.arange(n_items)
    shards = [items[shard_slice(n_items, r, world)] for r in range(world)]
    assert torch.equal(torch.cat(shards), items)
    for mine, ref in zip(shards, torch.tensor_split(items, world), strict=True):
        assert torch.equal(mine, ref)


def test_shard_slice_rejects_bad_rank():
    with pytest.raises(ValueError, match="rank"):
        shard_slice(4, 2, 2)


# -- one process (no process group) -----------------------------------------------------------
def test_no_group_is_a_world_of_one(monkeypatch):
    for name in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR"):
        monkeypatch.delenv(name, raising=False)
    ctx = init_distributed(backend="gloo")
    assert (ctx.rank, ctx.world_size, ctx.backend, ctx.is_main) == (0, 1, None, True)
    assert not is_distributed()


def test_metric_field_single_process_equals_metric():
    model = make_model().eval()
    z = torch.randn(9, 2, dtype=C128, generator=torch.Generator().manual_seed(1))
    M = FisherManifold(model.decoder, n=2)
    assert torch.equal(evaluate_metric_field(M, z), M.metric(z))
    # A factory (each rank builds its own manifold) and another per-point method.
    G = evaluate_metric_field(lambda: FisherManifold(model.decoder, n=2), z)
    assert torch.equal(G, M.metric(z))
    assert torch.equal(
        evaluate_metric_field(M, z, method="log_volume_density"), M.log_volume_density(z)
    )


def test_metric_field_rejects_bad_input():
    M = FisherManifold(make_model().decoder, n=2)
    with pytest.raises(ValueError, match="manifold"):
        evaluate_metric_field(object(), torch.zeros(2, 2, dtype=C128))
    with pytest.raises(ValueError, match="z must"):
        evaluate_metric_field(M, torch.zeros(2, dtype=C128))
    with pytest.raises(ValueError, match="method"):
        evaluate_metric_field(M, torch.zeros(2, 2, dtype=C128), method="nope")


def test_distributed_trainer_world_one_is_bit_identical(x_small, tmp_path):
    """Same batches, same noise, same loss scaling (sum · 1/B == mean) as `Trainer`."""
    cfg = dict(epochs=2, batch_size=16, seed=3, progress=False)
    a, b = make_model(), make_model()
    ha = Trainer(a, x_small, TrainConfig(**cfg, checkpoint_path=str(tmp_path / "a.pt"))).fit()
    hb = DistributedTrainer(
        b, x_small, TrainConfig(**cfg, checkpoint_path=str(tmp_path / "b.pt"))
    ).fit()
    for (k, va), vb in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        assert torch.equal(va, vb), k
    assert ha.elbo == pytest.approx(hb.elbo, rel=1e-13)
    assert ha.loss == pytest.approx(hb.loss, rel=1e-13)
    # The checkpoint is the single-process format.
    loaded = load_model(str(tmp_path / "b.pt"))
    for k, v in loaded.state_dict().items():
        assert torch.equal(v, b.state_dict()[k]), k
    assert sorted(os.listdir(tmp_path)) == ["a.pt", "b.pt"]


def test_distributed_trainer_rejects_regulariser(x_small):
    cfg = TrainConfig(epochs=1, progress=False, regulariser=GeometricRegulariser(weight=1.0))
    with pytest.raises(ValueError, match="regulariser"):
        DistributedTrainer(make_model(), x_small, cfg)


def test_cli_metric_field_single_process(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("KAHLERGEOM_DIST_BACKEND", "gloo")  # the CPU even where CUDA is present
    data = str(tmp_path / "d.npz")
    np.savez(data, images=load_digits().images[:30])
    ckpt, out = str(tmp_path / "m.pt"), str(tmp_path / "G.pt")
    base = ["--data", data, "--threads", "1"]
    assert main(["train", *base, "--epochs", "1", "--hidden", "8", "--latent-dim", "2"]
                + ["--checkpoint", ckpt, "--quiet"]) == 0  # fmt: skip
    assert main(["metric-field", ckpt, *base, "--points", "7", "--out", out]) == 0
    assert "wrote the metric at 7 points" in capsys.readouterr().out
    res = torch.load(out, weights_only=True)
    model = load_model(ckpt)
    assert torch.equal(res["metric"], FisherManifold(model.decoder, n=2).metric(res["z"]))


@pytest.fixture
def gloo_group_of_one(tmp_path):
    """A one-rank gloo process group in this process: the collective code paths (DDP, all_gather,
    all_reduce, barrier) run, cheaply, without spawning processes."""
    import torch.distributed as dist

    store = dist.FileStore(str(tmp_path / "store"), 1)
    dist.init_process_group("gloo", store=store, rank=0, world_size=1)
    try:
        yield
    finally:
        dist.destroy_process_group()


def test_group_of_one_matches_plain_runs(gloo_group_of_one, x_small, tmp_path):
    assert is_distributed()
    ctx = init_distributed(backend="gloo")
    assert (ctx.rank, ctx.world_size, ctx.backend) == (0, 1, "gloo")
    model = make_model().eval()
    z = torch.randn(5, 2, dtype=C128, generator=torch.Generator().manual_seed(2))
    M = FisherManifold(model.decoder, n=2)
    assert torch.equal(evaluate_metric_field(M, z), M.metric(z))  # through all_gather

    cfg = dict(epochs=1, batch_size=16, seed=3, progress=False)
    a, b = make_model(), make_model()
    ha = Trainer(a, x_small, TrainConfig(**cfg)).fit()
    trainer = DistributedTrainer(
        b, x_small, TrainConfig(**cfg, checkpoint_path=str(tmp_path / "c.pt"))
    )
    assert type(trainer._elbo).__name__ == "DistributedDataParallel"
    hb = trainer.fit()
    for (k, va), vb in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        assert torch.equal(vb, va), k  # DDP's average over one rank divides by 1
    assert hb.elbo == pytest.approx(ha.elbo, rel=1e-12)
    assert load_model(str(tmp_path / "c.pt")).config == a.config


# -- two processes on localhost (torchrun, gloo) ---------------------------------------------
WORKER = textwrap.dedent(
    """
    import sys

    from kahlergeom.cli import main
    from kahlergeom.distributed import init_distributed, shutdown_distributed

    data, root, single = sys.argv[1:4]
    ctx = init_distributed(backend="gloo")
    assert ctx.world_size == 2, ctx
    common = ["--data", data, "--threads", "1"]
    rc = main(["train", "--distributed", *common, "--epochs", "1", "--hidden", "8"]
              + ["--latent-dim", "2", "--batch-size", "16", "--seed", "3"]
              + ["--checkpoint", root + "/ddp/model.pt", "--quiet"])
    rc |= main(["metric-field", single, *common, "--points", "9", "--out", root + "/G2.pt"])
    shutdown_distributed()
    sys.exit(rc)
    """
)


@pytest.mark.slow
def test_two_processes_match_one(tmp_path, capsys, monkeypatch):
    """torchrun --standalone --nproc_per_node=2: training (3 steps) and the metric field."""
    monkeypatch.setenv("KAHLERGEOM_DIST_BACKEND", "gloo")  # the CPU even where CUDA is present
    root = str(tmp_path)
    data = os.path.join(root, "d.npz")
    np.savez(data, images=load_digits().images[:40] / 16.0)  # in [0, 1]; batches 16, 16, 8
    common = ["--data", data, "--threads", "1"]
    single = os.path.join(root, "one", "model.pt")
    assert main(["train", *common, "--epochs", "1", "--hidden", "8", "--latent-dim", "2"]
                + ["--batch-size", "16", "--seed", "3", "--checkpoint", single, "--quiet"]
                ) == 0  # fmt: skip
    assert main(["metric-field", single, *common, "--points", "9", "--out", root + "/G1.pt"]) == 0
    worker = os.path.join(root, "worker.py")
    with open(worker, "w") as f:
        f.write(WORKER)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(name, None)
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc_per_node=2",
            "--tee",
            "3",
        ]
        + [worker, data, root, single],
        capture_output=True,
        text=True,
        timeout=240,
        cwd=REPO,
        env=env,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert proc.stdout.count("trained 1 epochs") == 1  # rank 0 only prints
    assert proc.stdout.count("wrote the metric at 9 points") == 1

    # (a) metric field: exactly the one-process result.
    G1 = torch.load(root + "/G1.pt", weights_only=True)
    G2 = torch.load(root + "/G2.pt", weights_only=True)
    assert torch.equal(G1["z"], G2["z"]) and torch.equal(G1["metric"], G2["metric"])

    # (b) training: same parameters, optimiser state and history up to summation order.
    one = torch.load(single, weights_only=True)
    two = torch.load(root + "/ddp/model.pt", weights_only=True)
    assert os.listdir(root + "/ddp") == ["model.pt"]  # written once, atomically, no temp left
    assert two["epoch"] == one["epoch"] == 1
    for k, v in one["model"].items():
        assert_close(two["model"][k], v, msg=k)
    assert torch.equal(two["generator"], one["generator"])
    for s1, s2 in zip(
        one["optimizer"]["state"].values(), two["optimizer"]["state"].values(), strict=True
    ):
        assert_close(s2["exp_avg"], s1["exp_avg"])
        assert_close(s2["exp_avg_sq"], s1["exp_avg_sq"])
    assert two["history"]["elbo"] == pytest.approx(one["history"]["elbo"], rel=1e-12)
