"""kahlergeom: complex latent spaces of VAEs and decoders as Kähler manifolds.

Subcommands: demo (the main job: train, geometry, sampling, report), train, geometry,
sample, metric-field, bench. Run "kahlergeom COMMAND --help" for the options of one.

Exit codes: 0 success; 2 bad usage or bad input (an option, a missing or unreadable file,
an output path that cannot be written), reported before any work starts; 1 a failure during
the work. Errors are one line on stderr, "kahlergeom COMMAND: error: ..."; --debug shows the
full traceback instead.
"""

from __future__ import annotations

import argparse
import math
import os
import subprocess
import sys
import textwrap

_TRANSFORMS = ("identity", "fft")


class _Formatter(argparse.RawDescriptionHelpFormatter):
    """Plain-text descriptions, and every option's default shown after its help.

    (Like ``ArgumentDefaultsHelpFormatter``, but a default of None or False, for options
    whose help says what happens when they are unset, is not printed.)
    """

    def _get_help_string(self, action):
        text = action.help or ""
        if (
            "%(default)" in text
            or "default:" in text
            or action.default is None
            or action.default is False
        ):
            return text
        if action.default is argparse.SUPPRESS or not action.option_strings:
            return text
        return text + " (default: %(default)s)"


class _Parser(argparse.ArgumentParser):
    """Usage errors as one line on stderr (exit code 2), pointing to --help."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def _int_at_least(low: int):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected an integer >= {low}; got {text!r}"
            ) from None
        if value < low:
            raise argparse.ArgumentTypeError(f"must be an integer >= {low}; got {value}")
        return value

    parse.__name__ = f"integer >= {low}"
    return parse


def _finite_float(low: float | None = None, *, strict: bool = False):
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number; got {text!r}") from None
        if not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"must be a finite number; got {text!r}")
        if low is not None and (value <= low if strict else value < low):
            raise argparse.ArgumentTypeError(
                f"must be a number {'>' if strict else '>='} {low:g}; got {value:g}"
            )
        return value

    parse.__name__ = "number"
    return parse


def _ints(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(t) for t in text.split(",") if t.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated integers; got {text!r}"
        ) from None
    if not values or any(v < 1 for v in values):
        raise argparse.ArgumentTypeError(f"expected comma-separated integers >= 1; got {text!r}")
    return values


def _seeds(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(t) for t in text.split(",") if t.strip())
    except ValueError:
        values = ()
    if not values or any(v < 0 for v in values):
        raise argparse.ArgumentTypeError(f"expected comma-separated integers >= 0; got {text!r}")
    return values


def check_output_path(path: str, name: str, *, directory: bool = False) -> str:
    """Refuse an output path that cannot be written, before any work starts.

    The path must not be an existing folder (or, with ``directory``, an existing file), and
    its nearest existing ancestor must be a writable folder (missing folders are created when
    the output is written).
    """
    if not path:
        raise ValueError(f"{name}: the output path is empty.")
    full = os.path.abspath(path)
    if directory:
        if os.path.exists(full) and not os.path.isdir(full):
            raise ValueError(f"{name}: {path!r} exists and is not a folder.")
    elif os.path.isdir(full):
        raise ValueError(f"{name}: {path!r} is a folder; give a file path.")
    probe = full if directory else os.path.dirname(full)
    while not os.path.exists(probe):
        parent = os.path.dirname(probe)
        if parent == probe:
            break
        probe = parent
    if not os.path.isdir(probe):
        raise ValueError(f"{name}: cannot write {path!r}: {probe!r} is a file, not a folder.")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise ValueError(f"{name}: cannot write {path!r}: the folder {probe!r} is not writable.")
    if not directory and os.path.exists(full) and not os.access(full, os.W_OK):
        raise ValueError(f"{name}: cannot write {path!r}: the file is read-only.")
    return path


def _add_data_args(p, *, from_checkpoint: bool):
    p.add_argument(
        "--data",
        default=None,
        help="the images: 'digits' (scikit-learn's bundled 8x8 digits, used when unset), a "
        ".npz path (array 'images' of shape (N, H, W) in [0, 1] or uint8), or "
        "idx:IMAGES[,LABELS] (MNIST IDX files, optionally gzipped)",
    )
    if from_checkpoint:
        p.add_argument(
            "--transform",
            default=None,
            choices=_TRANSFORMS,
            help="real -> complex transform of the images (default: the one stored in the "
            "checkpoint; a different one is refused)",
        )
    else:
        p.add_argument(
            "--transform",
            default="identity",
            choices=_TRANSFORMS,
            help="real -> complex transform of the images: x + 0i, or the orthonormal 2-D FFT",
        )


def _add_checkpoint_args(p):
    p.add_argument("checkpoint", help="a checkpoint written by 'kahlergeom train'")
    _add_data_args(p, from_checkpoint=True)


def _add_points_arg(p):
    p.add_argument(
        "--points", type=_int_at_least(1), default=200, help="number of data points (>= 1)"
    )


#: `GeometricRegulariser` kinds (kahlergeom.vae; spelled here so that `--help` does not import
#: torch; tests/test_cli.py checks they agree).
REG_KINDS = ("variance", "magnitude")


def _add_reg_kind(p):
    p.add_argument(
        "--reg-kind",
        default="variance",
        choices=REG_KINDS,
        help="regulariser: variance of log det G, or mean of its square",
    )


def _add_model_args(p):
    _add_data_args(p, from_checkpoint=False)
    p.add_argument(
        "--latent-dim", type=_int_at_least(1), default=1, help="complex latent dimension n"
    )
    p.add_argument(
        "--hidden",
        type=_ints,
        default="64",
        help="hidden layer widths, comma-separated (encoder; reversed for the decoder)",
    )
    p.add_argument("--epochs", type=_int_at_least(1), default=30, help="training epochs")
    p.add_argument(
        "--batch-size", type=_int_at_least(2), default=64, help="examples per batch (>= 2)"
    )
    p.add_argument(
        "--lr", type=_finite_float(0.0, strict=True), default=1e-3, help="Adam learning rate"
    )
    p.add_argument(
        "--threads", type=_int_at_least(0), default=1, help="torch CPU threads (0: torch's choice)"
    )


def _cmd_demo(a):
    from kahlergeom.demo import DemoConfig, run_demo

    # Options left unset take --quick's small presets or DemoConfig's defaults; options given
    # explicitly always win.
    check_output_path(a.out, "--out", directory=True)
    presets = (
        dict(seeds=(0, 1), epochs=3, n_pairs=3, n_samples=64, fit_steps=50, path_iterations=20)
        if a.quick
        else {}
    )
    given = dict(
        seeds=a.seeds,
        epochs=a.epochs,
        n_pairs=a.pairs,
        n_samples=a.samples,
        latent_dim=a.latent_dim,
        hidden=a.hidden,
    )
    sized = {k: v if v is not None else presets.get(k) for k, v in given.items()}
    sized.update({k: v for k, v in presets.items() if k not in given})
    base = DemoConfig.full if a.full else DemoConfig
    cfg = base(
        out=a.out,
        data=a.data,
        transform=a.transform,
        batch_size=a.batch_size,
        lr=a.lr,
        reg_weight=a.reg_weight,
        reg_kind=a.reg_kind,
        progress=not a.quiet,
        figures=not a.no_figures,
        threads=a.threads,
        jobs=a.jobs,
        **{k: v for k, v in sized.items() if v is not None},
    )
    run_demo(cfg)
    return 0


def _cmd_train(a):
    import torch

    from kahlergeom.data import load_dataset, to_complex
    from kahlergeom.vae import ComplexVAE, GeometricRegulariser, TrainConfig, Trainer

    check_output_path(a.checkpoint, "--checkpoint")
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
        data_transform=a.transform,
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
    saved = model.data_transform
    if a.transform is None:
        a.transform = saved or "identity"
    elif saved is not None and a.transform != saved:
        raise ValueError(
            f"--transform: the checkpoint {a.checkpoint!r} was trained on {saved!r}-transformed "
            f"data, not {a.transform!r}; leave --transform unset to use the checkpoint's."
        )
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

    if not a.out.endswith(".npz"):
        raise ValueError(f"--out must be a .npz path; got {a.out!r}.")
    check_output_path(a.out, "--out")
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
    os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
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

    check_output_path(a.out, "--out")
    if a.threads:
        torch.set_num_threads(a.threads)
    ctx = init_distributed()  # world of size 1 without torchrun
    model, _data, codes = _load(a)
    z = codes[: a.points]
    M = FisherManifold(model.to(ctx.device).decoder, n=model.latent_dim)
    G = evaluate_metric_field(M, z.to(ctx.device)).cpu()
    if ctx.rank == 0:
        from kahlergeom.vae._checkpoint import atomic_save

        atomic_save({"z": z.cpu(), "metric": G}, a.out)
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
    parser = _Parser(prog="kahlergeom", description=__doc__, formatter_class=_Formatter)
    parser.add_argument("--debug", action="store_true", help="show the full traceback of an error")
    sub = parser.add_subparsers(
        dest="command", required=True, metavar="COMMAND", parser_class=_Parser
    )

    def add(name, helptext, description):
        return sub.add_parser(
            name,
            help=helptext,
            description=textwrap.fill(description, 88),
            formatter_class=_Formatter,
        )

    p = add(
        "demo",
        "the main job: train, geometry, sampling, report",
        "Train complex VAEs (baseline, regularised with the exact Fisher metric, regularised "
        "with a fitted Kähler surrogate) on several seeds, measure geodesic vs straight "
        "interpolation and volume vs prior sampling, and write a report with a verdict per "
        "claim of the paper (report.md and report.html) to --out.",
    )
    _add_model_args(p)
    p.add_argument("--out", default="runs/demo", help="output folder (report, checkpoints)")
    p.add_argument(
        "--seeds",
        type=_seeds,
        help="comma-separated seeds (default: 0,1,2,3,4; --full: 0..9; --quick: 0,1)",
    )
    p.add_argument(
        "--reg-weight",
        type=_finite_float(0.0),
        default=50.0,
        help="weight of the log-det regulariser in the regularised variant",
    )
    _add_reg_kind(p)
    p.add_argument(
        "--pairs", type=_int_at_least(1), help="geodesic pairs per model (default: 6; --quick: 3)"
    )
    p.add_argument(
        "--samples",
        type=_int_at_least(1),
        help="volume samples per model (default: 256; --quick: 64)",
    )
    p.add_argument(
        "--quick",
        action="store_true",
        help="tiny smoke run (2 seeds, 3 epochs, 3 pairs, 64 samples unless given explicitly)",
    )
    p.add_argument(
        "--full",
        action="store_true",
        help="the larger preset of docs/does-it-work.md (10 seeds, latent C^4, two β)",
    )
    p.add_argument(
        "--jobs",
        type=_int_at_least(1),
        default=1,
        help="run the seeds in this many worker processes (one torch thread each)",
    )
    p.add_argument("--no-figures", action="store_true", help="skip the figures")
    p.add_argument("--quiet", action="store_true", help="no progress output")
    # None = not given: resolved in _cmd_demo (--quick presets, else DemoConfig's defaults).
    p.set_defaults(
        func=_cmd_demo,
        seeds=None,
        epochs=None,
        pairs=None,
        samples=None,
        latent_dim=None,
        hidden=None,
    )
    helps = {
        "epochs": "training epochs (default: 30; --quick: 3)",
        "latent_dim": "complex latent dimension n (default: 2; --full: 4)",
        "hidden": "hidden layer widths, comma-separated (default: 64)",
    }
    for action in p._actions:
        if action.dest in helps:
            action.help = helps[action.dest]

    p = add(
        "train",
        "train a complex VAE and write a checkpoint",
        "Train a complex VAE on the images and write an atomic, resumable checkpoint after "
        "each epoch. An existing checkpoint is resumed when its model and options match.",
    )
    _add_model_args(p)
    p.add_argument(
        "--checkpoint", default="runs/train/model.pt", help="checkpoint file (read and written)"
    )
    p.add_argument("--seed", type=_int_at_least(0), default=0, help="random seed")
    p.add_argument(
        "--reg-weight",
        type=_finite_float(0.0),
        default=0.0,
        help="weight of the log-det regulariser (0: off)",
    )
    _add_reg_kind(p)
    p.add_argument("--restart", action="store_true", help="ignore an existing checkpoint")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument(
        "--distributed",
        action="store_true",
        help="data-parallel under torchrun (gloo on CPU, NCCL on GPU); --batch-size is global",
    )
    p.set_defaults(func=_cmd_train)

    p = add(
        "metric-field",
        "Fisher metric at encoded data points, sharded across torchrun processes",
        "Evaluate the decoder's Fisher metric at the encoder means of the first --points "
        "images and save {'z', 'metric'} with torch.save.",
    )
    _add_checkpoint_args(p)
    _add_points_arg(p)
    p.add_argument("--out", default="metric_field.pt", help="output file (torch.save)")
    p.add_argument(
        "--threads", type=_int_at_least(0), default=1, help="torch CPU threads (0: torch's choice)"
    )
    p.set_defaults(func=_cmd_metric_field)

    p = add(
        "geometry",
        "metric, volume and curvature summary of a trained decoder",
        "Print a table of the decoder's Fisher geometry at the encoder means of the first "
        "--points images: log det G, PSD rate, holomorphy and closedness residuals, curvature.",
    )
    _add_checkpoint_args(p)
    p.add_argument("--quiet", action="store_true", help="no progress output")
    _add_points_arg(p)
    p.set_defaults(func=_cmd_geometry)

    p = add(
        "sample",
        "volume-weighted samples from a trained decoder",
        "Draw latents with density proportional to prior x (det G)^beta under the decoder's "
        "Fisher metric, decode them, and save {'latents', 'images'} to a .npz file.",
    )
    _add_checkpoint_args(p)
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--n", type=_int_at_least(1), default=256, help="number of samples")
    p.add_argument(
        "--beta", type=_finite_float(0.0), default=1.0, help="volume exponent beta (>= 0)"
    )
    p.add_argument("--seed", type=_int_at_least(0), default=0, help="random seed")
    p.add_argument("--out", default="samples.npz", help="output .npz file")
    p.set_defaults(func=_cmd_sample)

    p = add(
        "bench",
        "run the benchmark scripts in benchmarks/",
        "Run benchmarks/bench_*.py; each prints a table of ratios against its peer.",
    )
    p.add_argument("--dir", default="benchmarks", help="folder of the benchmark scripts")
    p.add_argument("--only", default=None, help="run only scripts whose name contains this")
    p.add_argument("--quick", action="store_true", help="short runs")
    p.set_defaults(func=_cmd_bench)
    return parser


def _group_started() -> bool:
    dist = sys.modules.get("torch.distributed")
    return bool(dist is not None and dist.is_available() and dist.is_initialized())


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text or type(exc).__name__


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit code (see the module docstring)."""
    args = build_parser().parse_args(argv)
    group_before = _group_started()
    try:
        return int(args.func(args) or 0)
    except ValueError as exc:  # bad input: options, files, data
        if args.debug:
            raise
        print(f"kahlergeom {args.command}: error: {_one_line(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        if args.debug:
            raise
        print(f"kahlergeom {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # a failure during the work
        if args.debug:
            raise
        print(
            f"kahlergeom {args.command}: error: {type(exc).__name__}: {_one_line(exc)} "
            "(run with --debug for the traceback)",
            file=sys.stderr,
        )
        return 1
    finally:
        if not group_before and _group_started():
            # A process group this command started (--distributed, metric-field) ends with it.
            sys.modules["torch.distributed"].destroy_process_group()


if __name__ == "__main__":
    sys.exit(main())
