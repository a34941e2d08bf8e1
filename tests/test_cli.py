"""The command line: train → geometry → sample on a tiny data set, error exits, the demo.

Oracles: the files the commands write (checkpoint loadable by `load_model`, the samples .npz
with the expected arrays), exit codes and the stderr message format
``kahlergeom <cmd>: error: ...``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from kahlergeom.cli import main
from kahlergeom.data import load_digits
from kahlergeom.vae import ComplexVAE, load_model


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A tiny labelled .npz data set (8×8 digits) and a 1-epoch checkpoint trained on it."""
    root = tmp_path_factory.mktemp("cli")
    d = load_digits()
    data = str(root / "tiny.npz")
    np.savez(data, images=d.images[:80], labels=d.labels[:80])
    ckpt = str(root / "ckpt" / "model.pt")
    threads = torch.get_num_threads()
    try:
        rc = main(
            ["train", "--data", data, "--epochs", "1", "--hidden", "8", "--batch-size", "40"]
            + ["--checkpoint", ckpt, "--quiet", "--threads", "1", "--latent-dim", "2"]
        )
    finally:
        torch.set_num_threads(threads)
    assert rc == 0
    return root, data, ckpt


def test_train_writes_checkpoint(tiny, capsys):
    _, data, ckpt = tiny
    assert os.path.isfile(ckpt)
    model = load_model(ckpt)
    assert isinstance(model, ComplexVAE)
    assert model.config["hidden"] == [8] and model.latent_dim == 2 and model.data_dim == 64
    assert model.dtype == torch.complex128
    state = torch.load(ckpt, weights_only=True)
    assert state["epoch"] == 1 and len(state["history"]["elbo"]) == 1
    assert os.listdir(os.path.dirname(ckpt)) == ["model.pt"]


def test_train_prints_summary(tmp_path, capsys):
    d = load_digits()
    data = str(tmp_path / "d.npz")
    np.savez(data, images=d.images[:30])
    ckpt = str(tmp_path / "m.pt")
    args = ["train", "--data", data, "--epochs", "1", "--hidden", "4", "--quiet"]
    assert main(args + ["--checkpoint", ckpt]) == 0
    out = capsys.readouterr().out
    assert "trained 1 epochs; final ELBO" in out and ckpt in out
    # Running again resumes: already at 1 epoch, the checkpoint is unchanged.
    before = torch.load(ckpt, weights_only=True)["model"]
    assert main(args + ["--checkpoint", ckpt]) == 0
    after = torch.load(ckpt, weights_only=True)["model"]
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_geometry_prints_table(tiny, capsys):
    _, data, ckpt = tiny
    assert main(["geometry", ckpt, "--data", data, "--points", "10", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("| quantity | value |")
    assert "| points | 10 |" in out
    for key in ("log det G", "PSD rate", "holomorphy residual", "closedness residual"):
        assert key in out
    # The default decoder (tanh, learned variance) is holomorphic: residual ~ 0.
    row = next(line for line in out.splitlines() if "holomorphy residual" in line)
    assert float(row.split("|")[2]) < 1e-8
    psd = next(line for line in out.splitlines() if "PSD rate" in line)
    assert float(psd.split("|")[2]) == 1.0


# A 1-epoch model on 80 images is a hard, barely trained target: the sampler may report poor
# mixing diagnostics (that is its job); this test checks the command's plumbing only.
@pytest.mark.filterwarnings("default::kahlergeom.sampling.SamplingWarning")
def test_sample_writes_npz(tiny, capsys, tmp_path):
    _, data, ckpt = tiny
    out_path = str(tmp_path / "s.npz")
    args = ["sample", ckpt, "--data", data, "--n", "16", "--out", out_path, "--quiet"]
    assert main(args) == 0
    assert "wrote 16 samples to" in capsys.readouterr().out
    with np.load(out_path) as f:
        assert f["latents"].shape == (16, 2) and np.iscomplexobj(f["latents"])
        assert f["images"].shape == (16, 8, 8) and np.isfinite(f["images"]).all()


@pytest.mark.parametrize("cmd", ["geometry", "sample"])
def test_unreadable_checkpoint_exit_code(tiny, tmp_path, capsys, cmd):
    _, data, _ = tiny
    missing = str(tmp_path / "nope.pt")
    assert main([cmd, missing, "--data", data, "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"kahlergeom {cmd}: error: path: no checkpoint at")
    assert "nope.pt" in err
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"garbage")
    assert main([cmd, str(junk), "--data", data, "--quiet"]) == 2
    assert "is not a readable kahlergeom checkpoint" in capsys.readouterr().err


def test_unreadable_data_exit_code(tiny, tmp_path, capsys):
    _, _, ckpt = tiny
    missing = str(tmp_path / "none.npz")
    assert main(["geometry", ckpt, "--data", missing, "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("kahlergeom geometry: error: path: no such file") and "none.npz" in err
    junk = tmp_path / "junk.npz"
    junk.write_bytes(b"not a zip")
    assert main(["geometry", ckpt, "--data", str(junk)]) == 2
    assert "cannot read" in capsys.readouterr().err
    assert main(["train", "--data", "pictures.csv", "--epochs", "1", "--quiet"]) == 2
    assert "kahlergeom train: error: data must be 'digits'" in capsys.readouterr().err
    # Data of the wrong size for the checkpoint's model.
    wrong = str(tmp_path / "wrong.npz")
    np.savez(wrong, images=np.zeros((3, 4, 4)))
    assert main(["sample", ckpt, "--data", wrong, "--n", "4", "--quiet"]) == 2
    assert "data: images have 16 values but the checkpoint's model expects 64" in (
        capsys.readouterr().err
    )


def test_bad_training_option_exit_code(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["train", "--epochs", "0", "--checkpoint", str(tmp_path / "m.pt"), "--quiet"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err == (
        "kahlergeom train: error: argument --epochs: must be an integer >= 1; got 0 "
        "(see 'kahlergeom train --help')\n"
    )
    assert not os.path.exists(tmp_path / "m.pt")


def test_argparse_rejects_unknown_command():
    with pytest.raises(SystemExit) as exc:
        main(["frobnicate"])
    assert exc.value.code == 2


def test_subprocess_smoke(tmp_path):
    """The installed entry point: an error exit through a real process."""
    proc = subprocess.run(
        [sys.executable, "-m", "kahlergeom.cli", "geometry", str(tmp_path / "x.pt")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert proc.stderr.startswith("kahlergeom geometry: error: path: no checkpoint at")
    assert proc.stdout == ""


@pytest.mark.slow
def test_demo_end_to_end(tmp_path, capsys):
    out = str(tmp_path / "demo")
    threads = torch.get_num_threads()
    t0 = time.perf_counter()
    try:
        rc = main(
            ["demo", "--quick", "--no-figures", "--quiet", "--seeds", "0,1", "--epochs", "1"]
            + ["--pairs", "2", "--samples", "16", "--hidden", "8", "--threads", "1"]
            + ["--out", out]
        )
    finally:
        torch.set_num_threads(threads)
    elapsed = time.perf_counter() - t0
    assert rc == 0
    with open(os.path.join(out, "report.md")) as fh:
        report = fh.read()
    assert report.startswith("# Does it work?") and "test ELBO" in report
    for words in (
        "smoother representations",
        "fewer semantic outliers",
        "at the exchange of sample variation",
    ):
        assert f"## “{words}”: " in report
    with open(os.path.join(out, "report.html")) as fh:
        assert "<h2>" in fh.read()
    with open(os.path.join(out, "results.json")) as fh:
        results = json.load(fh)
    # Explicit flags win over --quick's presets.
    assert results["config"]["epochs"] == 1
    assert results["config"]["n_pairs"] == 2 and results["config"]["n_samples"] == 16
    assert list(results["per_seed"]) == ["baseline", "fisher", "fitted"]
    assert len(results["per_seed"]["baseline"]) == 2
    for name in ("baseline", "fisher", "fitted"):
        load_model(os.path.join(out, "checkpoints", f"{name}-seed0.pt"))
    assert elapsed < 120, f"the tiny demo took {elapsed:.0f} s"


def test_reg_kind_choices_match_the_regulariser():
    """The CLI spells the regulariser kinds itself (no torch import for --help): they must be
    exactly the kinds `GeometricRegulariser` accepts."""
    from kahlergeom.cli import REG_KINDS
    from kahlergeom.vae._train import _KINDS

    assert tuple(REG_KINDS) == tuple(_KINDS)
