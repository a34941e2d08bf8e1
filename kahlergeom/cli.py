"""Command line: ``kahlergeom {demo,train,geometry,sample,metric-field,bench}``."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys


def _ints(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(t) for t in text.split(",") if t.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated integers; got {text!r}"
        ) from None


def _add_model_args(p):
    p.add_argument(
        "--data", default=None, help="'digits' (default), a .npz path, or idx:IMAGES[,LABELS]"
    )
    p.add_argument("--transform", default="identity", choices=["identity", "fft"])
    p.add_argument("--latent-dim", type=int, default=1)
    p.add_argument("--hidden", type=_ints, default=(64,))
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")


def _cmd_demo(a):
    from kahlergeom.demo import DemoConfig, run_demo

    # Options left unset take --quick's small presets or DemoConfig's defaults; options given
    # explicitly always win.
    presets = dict(seeds=(0, 1), epochs=3, n_pairs=3, n_samples=64) if a.quick else {}
    given = dict(seeds=a.seeds, epochs=a.epochs, n_pairs=a.pairs, n_samples=a.samples)
    sized = {k: v if v is not None else presets.get(k) for k, v in given.items()}
    cfg = DemoConfig(
        out=a.out,
        data=a.data,
        transform=a.transform,
        latent_dim=a.latent_dim,
        hidden=a.hidden,
        batch_size=a.batch_size,
        lr=a.lr,
        reg_weight=a.reg_weight,
        reg_kind=a.reg_kind,
        progress=not a.quiet,
        figures=not a.no_figures,
        threads=a.threads,
        **{k: v for k, v in sized.items() if v is not None},
    )
    run_demo(cfg)
    return 0


def _cmd_train(a):
    import torch

    from kahlergeom.data import load_dataset, to_complex
    from kahlergeom.vae import ComplexVAE, GeometricRegulariser, TrainConfig, Trainer

    if a.threads:
        torch.set_num_threads(a.threads)
    if a.distributed:  # under torchrun: see docs/distributed.md
        from kahlergeom.distributed import init_distributed

        ctx = init_distributed()
    data = load_dataset(a.data)
    x = to_complex(data.images, a.transform, torch.complex128)
    torch.manual_seed(a.seed)
    model = ComplexVAE(x.shape[1], a.latent_dim, a.hidden, dtype=torch.complex128)
    if a.distributed:
        model = model.to(ctx.device)
    reg = GeometricRegulariser(weight=a.reg_weight, kind=a.reg_kind) if a.reg_weight > 0 else None
    cfg = TrainConfig(
        epochs=a.epochs,
        batch_size=a.batch_size,
        lr=a.lr,
        seed=a.seed,
        regulariser=reg,
        checkpoint_path=a.checkpoint,
        progress=not a.quiet,
    )
    if a.distributed:
        from kahlergeom.distributed import DistributedTrainer

        hist = DistributedTrainer(model, x, cfg).fit(resume=not a.restart)
        if ctx.rank != 0:
            return 0
    else:
        hist = Trainer(model, x, cfg).fit(resume=not a.restart)
    print(f"trained {cfg.epochs} epochs; final ELBO {hist.elbo[-1]:.3f}; checkpoint {a.checkpoint}")
    return 0


def _load(a):
    import torch

    from kahlergeom.data import load_dataset, to_complex
    from kahlergeom.vae import load_model

    model = load_model(a.checkpoint)
    data = load_dataset(a.data)
    x = to_complex(data.images, a.transform, model.dtype)
    if x.shape[1] != model.data_dim:
        raise ValueError(
            f"data: images have {x.shape[1]} values but the checkpoint's model expects "
            f"{model.data_dim}; use the data it was trained on."
        )
    with torch.no_grad():
        codes = model.encode(x).mean
    return model, data, codes


def _cmd_geometry(a):
    import torch

    from kahlergeom.manifolds import FisherManifold

    model, _data, codes = _load(a)
    z = codes[: a.points]
    M = FisherManifold(model.decoder, n=model.latent_dim)
    logdet = M.log_volume_density(z)
    rows = [
        ("points", f"{z.shape[0]}"),
        (
            "log det G: min / median / max",
            f"{logdet.min():.3f} / {logdet.median():.3f} / {logdet.max():.3f}",
        ),
        ("PSD rate", f"{M.is_psh(z).double().mean():.3f}"),
        ("holomorphy residual (median)", f"{M.holomorphy_residual(z).median():.3g}"),
    ]
    if model.latent_dim > 1:
        rows.append(("closedness residual (median)", f"{M.closedness_residual(z).median():.3g}"))
    else:
        rows.append(("closedness", "n = 1: every Hermitian metric is Kähler"))
    if M.is_kahler:
        v = torch.ones_like(z)
        H = M.holomorphic_sectional_curvature(z, v)
        rows.append(("holomorphic sectional curvature (median)", f"{H.median():.4g}"))
    print("| quantity | value |\n|---|---|")
    for k, v in rows:
        print(f"| {k} | {v} |")
    return 0


def _cmd_sample(a):
    import numpy as np
    import torch

    from kahlergeom.data import from_complex
    from kahlergeom.manifolds import FisherManifold
    from kahlergeom.sampling import ComplexNormal, sample_volume

    model, data, _ = _load(a)
    M = FisherManifold(model.decoder, n=model.latent_dim)
    res = sample_volume(
        M,
        a.n,
        log_prior=ComplexNormal(model.latent_dim),
        beta=a.beta,
        seed=a.seed,
        progress=not a.quiet,
    )
    with torch.no_grad():
        images = from_complex(
            model.decoder(res.samples.to(model.dtype))[0], data.shape, a.transform
        )
    np.savez(a.out, latents=res.samples.numpy(), images=images.numpy())
    status = "ok" if res.ok else "FAILED: " + ", ".join(res.failures)
    print(
        f"wrote {a.n} samples to {a.out} ({res.method}); min ESS {res.min_ess:.1f}; "
        f"diagnostics {status}"
    )
    return 0


def _cmd_metric_field(a):
    import torch

    from kahlergeom.distributed import evaluate_metric_field, init_distributed
    from kahlergeom.manifolds import FisherManifold

    if a.threads:
        torch.set_num_threads(a.threads)
    ctx = init_distributed()  # world of size 1 without torchrun
    model, _data, codes = _load(a)
    z = codes[: a.points]
    M = FisherManifold(model.to(ctx.device).decoder, n=model.latent_dim)
    G = evaluate_metric_field(M, z.to(ctx.device)).cpu()
    if ctx.rank == 0:
        from kahlergeom.vae._train import _atomic_save

        _atomic_save({"z": z.cpu(), "metric": G}, a.out)
        print(f"wrote the metric at {G.shape[0]} points to {a.out} ({ctx.world_size} process(es))")
    return 0


def _cmd_bench(a):
    here = os.path.abspath(a.dir)
    if not os.path.isdir(here):
        raise ValueError(f"--dir: no benchmarks folder at {here!r} (run from the repository root).")
    scripts = sorted(f for f in os.listdir(here) if f.startswith("bench_") and f.endswith(".py"))
    if a.only:
        scripts = [s for s in scripts if a.only in s]
    rc = 0
    for s in scripts:
        print(f"== {s}", flush=True)
        cmd = [sys.executable, os.path.join(here, s)] + (["--quick"] if a.quick else [])
        rc |= subprocess.call(cmd)
    return rc


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="kahlergeom", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("demo", help="the main job: train, geometry, sampling, report")
    _add_model_args(p)
    p.add_argument("--out", default="runs/demo")
    p.add_argument("--seeds", type=_ints, default=(0, 1, 2))
    p.add_argument("--reg-weight", type=float, default=50.0)
    p.add_argument("--reg-kind", default="variance", choices=["variance", "magnitude"])
    p.add_argument("--pairs", type=int, default=8)
    p.add_argument("--samples", type=int, default=256)
    p.add_argument(
        "--quick",
        action="store_true",
        help="tiny smoke run (2 seeds, 3 epochs, 3 pairs, 64 samples unless given explicitly)",
    )
    p.add_argument("--no-figures", action="store_true")
    p.add_argument("--quiet", action="store_true")
    # None = not given: resolved in _cmd_demo (--quick presets, else DemoConfig's defaults).
    p.set_defaults(func=_cmd_demo, seeds=None, epochs=None, pairs=None, samples=None)

    p = sub.add_parser("train", help="train a complex VAE and write a checkpoint")
    _add_model_args(p)
    p.add_argument("--checkpoint", default="runs/train/model.pt")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--reg-weight", type=float, default=0.0)
    p.add_argument("--reg-kind", default="variance", choices=["variance", "magnitude"])
    p.add_argument("--restart", action="store_true", help="ignore an existing checkpoint")
    p.add_argument("--quiet", action="store_true")
    p.add_argument(
        "--distributed",
        action="store_true",
        help="data-parallel under torchrun (gloo on CPU, NCCL on GPU); --batch-size is global",
    )
    p.set_defaults(func=_cmd_train)

    p = sub.add_parser(
        "metric-field",
        help="Fisher metric at encoded data points, sharded across torchrun processes",
    )
    p.add_argument("checkpoint")
    p.add_argument("--data", default=None)
    p.add_argument("--transform", default="identity", choices=["identity", "fft"])
    p.add_argument("--points", type=int, default=200)
    p.add_argument("--out", default="metric_field.pt")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    p.set_defaults(func=_cmd_metric_field)

    for name, func, helptext in (
        ("geometry", _cmd_geometry, "metric, volume and curvature summary of a trained decoder"),
        ("sample", _cmd_sample, "volume-weighted samples from a trained decoder"),
    ):
        p = sub.add_parser(name, help=helptext)
        p.add_argument("checkpoint")
        p.add_argument("--data", default=None)
        p.add_argument("--transform", default="identity", choices=["identity", "fft"])
        p.add_argument("--quiet", action="store_true")
        if name == "geometry":
            p.add_argument("--points", type=int, default=200)
        else:
            p.add_argument("--n", type=int, default=256)
            p.add_argument("--beta", type=float, default=1.0)
            p.add_argument("--seed", type=int, default=0)
            p.add_argument("--out", default="samples.npz")
        p.set_defaults(func=func)

    p = sub.add_parser("bench", help="run the benchmark scripts in benchmarks/")
    p.add_argument("--dir", default="benchmarks")
    p.add_argument("--only", default=None, help="substring of the script name")
    p.add_argument("--quick", action="store_true")
    p.set_defaults(func=_cmd_bench)
    return parser


def _group_started() -> bool:
    dist = sys.modules.get("torch.distributed")
    return bool(dist is not None and dist.is_available() and dist.is_initialized())


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    group_before = _group_started()
    try:
        return int(args.func(args) or 0)
    except ValueError as exc:
        print(f"kahlergeom {args.command}: error: {exc}", file=sys.stderr)
        return 2
    finally:
        if not group_before and _group_started():
            # A process group this command started (--distributed, metric-field) ends with it.
            sys.modules["torch.distributed"].destroy_process_group()


if __name__ == "__main__":
    sys.exit(main())
