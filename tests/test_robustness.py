"""Robustness at the edges: bad or extreme input gives a clear error or a correct number.

Table-driven, one table per class of cases (checkpoints, command line, data, numerics and
options). Oracles: the error type and its message (it must name the file, argument or field);
the model, optimiser and generator state compared bit for bit before and after a refused
resume (nothing is half loaded); closed forms evaluated in 50-digit mpmath for the far
Fubini–Study metric; the exit code and the single stderr line of the command line.
"""

from __future__ import annotations

import copy
import gc
import gzip
import math
import os
import struct
import warnings
import zipfile
import zlib

import mpmath as mp
import numpy as np
import pytest
import torch

import kahlergeom as kg
from kahlergeom._linalg import hermitian_logdet
from kahlergeom.cli import main
from kahlergeom.data import load_digits, load_mnist_idx, load_npz, to_complex
from kahlergeom.potentials import ComplexHyperbolic, Flat, FubiniStudy
from kahlergeom.vae import ComplexVAE, TrainConfig, Trainer, load_model
from kahlergeom.vae._checkpoint import FORMAT_VERSION, read_checkpoint

C128, C64 = torch.complex128, torch.complex64
RAW = (KeyError, IndexError, ZeroDivisionError, zlib.error, zipfile.BadZipFile, TypeError)


# -- fixtures ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def x_small():
    return to_complex(load_digits().images[:64], "identity", C128)


def make_model(latent=2, dtype=C128, **kw):
    torch.manual_seed(0)
    return ComplexVAE(64, latent, (8,), dtype=dtype, **kw)


def cfg(path, **kw):
    kw.setdefault("epochs", 1)
    kw.setdefault("batch_size", 32)
    return TrainConfig(progress=False, checkpoint_path=str(path), **kw)


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory, x_small):
    """A 1-epoch checkpoint of a (64 → 2, hidden 8, complex128) model on identity data."""
    path = tmp_path_factory.mktemp("ckpt") / "model.pt"
    Trainer(make_model(), x_small, cfg(path, data_transform="identity")).fit()
    return str(path)


def snapshot(trainer):
    return (
        {k: v.clone() for k, v in trainer.model.state_dict().items()},
        copy.deepcopy(trainer.optimizer.state_dict()),
        trainer.generator.get_state().clone(),
        trainer.epoch,
    )


def assert_unchanged(before, trainer):
    after = snapshot(trainer)
    assert before[0].keys() == after[0].keys()
    for k in before[0]:
        assert torch.equal(before[0][k], after[0][k]), k
    assert str(before[1]) == str(after[1])
    assert torch.equal(before[2], after[2]) and before[3] == after[3]


def edited(ckpt, tmp_path, edit, name="edited.pt"):
    state = torch.load(ckpt, weights_only=True)
    edit(state)
    path = str(tmp_path / name)
    torch.save(state, path)
    return path


def _drop(key):
    return lambda s: s.pop(key)


def _set(key, value):
    return lambda s: s.__setitem__(key, value)


# -- checkpoints -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "model_kw, config_kw, edit, match",
    [
        # another model configuration
        (dict(latent=3), {}, None, r"latent_dim=2, but this model has latent_dim=3"),
        (dict(decoder_variance="point"), {}, None, r"decoder_variance='learned'.*'point'"),
        (dict(covariance="full"), {}, None, r"covariance='diagonal'.*'full'"),
        # a complex128 checkpoint into a complex64 model
        (dict(dtype=C64), {}, None, r"dtype='complex128', but this model has dtype='complex64'"),
        # missing pieces, checked before anything is loaded
        ({}, {}, _drop("generator"), r"has no 'generator' entry; cannot resume"),
        ({}, {}, _drop("optimizer"), r"has no 'optimizer' entry"),
        ({}, {}, _drop("history"), r"has no 'history' entry"),
        ({}, {}, _set("generator", torch.zeros(3)), r"generator must be a torch.Generator"),
        ({}, {}, _set("epoch", -1), r"epoch must be an integer >= 0"),
        ({}, {}, _set("epoch", "1"), r"epoch must be an integer >= 0"),
        ({}, {}, _set("history", {"loss": []}), r"history must be a dict"),
        ({}, {}, _set("format_version", FORMAT_VERSION + 1), r"format_version 2; this kahlergeom"),
        ({}, {}, _set("format", "other"), r"is not a kahlergeom checkpoint \(format 'other'\)"),
        ({}, {}, _set("model_config", [1, 2]), r"model_config must be a dict"),
        ({}, {}, lambda s: s["model_config"].pop("dtype"), r"model_config has no 'dtype'"),
        (
            {},
            {},
            lambda s: s["model"].__setitem__(
                "decoder.log_var", torch.zeros(3, dtype=torch.float64)
            ),
            r"model weight 'decoder.log_var' is torch.float64 \(3,\); the model needs",
        ),
        (
            {},
            {},
            lambda s: s["model"].pop("decoder.log_var"),
            r"model weights do not fit: .*missing \['decoder.log_var'\]",
        ),
        # another run: data transform, learning rate, seed
        ({}, dict(data_transform="fft"), None, r"trained on 'identity'-transformed data"),
        ({}, dict(lr=0.01), None, r"lr=0.002, but this run has lr=0.01"),
        ({}, dict(seed=3), None, r"seed=0, but this run has seed=3"),
    ],
)
def test_refused_resume_changes_nothing(ckpt, x_small, tmp_path, model_kw, config_kw, edit, match):
    path = edited(ckpt, tmp_path, edit) if edit else ckpt
    model = make_model(**model_kw)
    dtype = model.dtype
    trainer = Trainer(model, x_small.to(dtype), cfg(path, epochs=3, **config_kw))
    before = snapshot(trainer)
    mtime = os.stat(path).st_mtime_ns
    with pytest.raises(ValueError, match=match) as err:
        trainer.fit()
    assert os.path.basename(path) in str(err.value)  # the message names the file
    assert_unchanged(before, trainer)
    assert os.stat(path).st_mtime_ns == mtime  # the checkpoint was not overwritten


@pytest.mark.parametrize(
    "content, match",
    [
        (b"", r"is not a readable kahlergeom checkpoint"),
        (b"PK\x03\x04 truncated zip", r"is not a readable kahlergeom checkpoint"),
        ({"z": torch.zeros(2), "metric": torch.zeros(2, 1, 1)}, r"is not a kahlergeom checkpoint"),
        ([1, 2, 3], r"holds a list, not a dict"),
        ({"format": "kahlergeom-checkpoint"}, r"format_version None"),
    ],
)
def test_not_a_checkpoint(tmp_path, content, match):
    path = tmp_path / "file.pt"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        torch.save(content, str(path))
    for reader in (load_model, read_checkpoint):
        with pytest.raises(ValueError, match=match) as err:
            reader(str(path))
        assert "file.pt" in str(err.value)


def test_checkpoint_records_version_config_dtype_transform(ckpt):
    state = torch.load(ckpt, weights_only=True)
    assert state["format"] == "kahlergeom-checkpoint" and state["format_version"] == 1
    assert state["dtype"] == "complex128" and state["data_transform"] == "identity"
    assert state["model_config"]["latent_dim"] == 2
    assert state["train_config"]["seed"] == 0 and state["train_config"]["regulariser"] is None
    model = load_model(ckpt)
    assert model.data_transform == "identity" and model.dtype == C128


def test_legacy_checkpoint_without_format_loads(ckpt, tmp_path):
    def legacy(s):
        for k in ("format", "format_version", "dtype", "data_transform", "train_config"):
            s.pop(k)

    model = load_model(edited(ckpt, tmp_path, legacy))
    assert model.data_transform is None  # unknown: readers fall back to what they are told
    ref = load_model(ckpt)
    for k, v in ref.state_dict().items():
        assert torch.equal(v, model.state_dict()[k])


def test_matching_resume_still_continues(ckpt, x_small, tmp_path):
    path = tmp_path / "copy.pt"
    with open(ckpt, "rb") as fh:
        path.write_bytes(fh.read())
    trainer = Trainer(make_model(), x_small, cfg(path, epochs=2))
    trainer.fit()
    assert trainer.epoch == 2 and trainer.config.data_transform == "identity"


# -- command line ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    d = load_digits()
    data = str(root / "tiny.npz")
    np.savez(data, images=d.images[:40])
    ckpt = str(root / "model.pt")
    argv = ["train", "--data", data, "--epochs", "1", "--hidden", "4", "--batch-size", "20"]
    assert main(argv + ["--checkpoint", ckpt, "--quiet", "--latent-dim", "1"]) == 0
    return root, data, ckpt


def _run(argv, capsys):
    """Exit code and stderr of the command line, whether argparse exits or main returns."""
    try:
        rc = main(argv)
    except SystemExit as exc:
        rc = exc.code
    return rc, capsys.readouterr().err


@pytest.mark.parametrize(
    "argv, match",
    [
        (["geometry", "{ckpt}", "--points", "-5"], r"argument --points: must be an integer >= 1"),
        (["geometry", "{ckpt}", "--points", "0"], r"argument --points: must be an integer >= 1"),
        (["geometry", "{ckpt}", "--points", "x"], r"argument --points: expected an integer"),
        (["metric-field", "{ckpt}", "--points", "0"], r"--points: must be an integer >= 1"),
        (["train", "--batch-size", "1"], r"argument --batch-size: must be an integer >= 2"),
        (["train", "--lr", "nan"], r"argument --lr: must be a finite number"),
        (["train", "--lr", "0"], r"argument --lr: must be a number > 0"),
        (
            ["train", "--hidden", "8,0"],
            r"argument --hidden: expected comma-separated integers >= 1",
        ),
        (["train", "--latent-dim", "0"], r"argument --latent-dim: must be an integer >= 1"),
        (["sample", "{ckpt}", "--n", "0"], r"argument --n: must be an integer >= 1"),
        (["sample", "{ckpt}", "--beta", "-1"], r"argument --beta: must be a number >= 0"),
        (["demo", "--seeds", "-1"], r"argument --seeds: expected comma-separated integers >= 0"),
        (["frobnicate"], r"argument COMMAND: invalid choice"),
        # bad input found before any work: exit 2, one line
        (
            ["geometry", "{ckpt}", "--transform", "fft"],
            r"--transform: the checkpoint .* 'identity'",
        ),
        (["train", "--checkpoint", "{file}/model.pt"], r"--checkpoint: cannot write .* is a file"),
        (["train", "--checkpoint", "{root}"], r"--checkpoint: .* is a folder; give a file path"),
        (["sample", "{ckpt}", "--out", "{root}/x.txt"], r"--out must be a .npz path"),
        (["sample", "{ckpt}", "--out", "{file}/s.npz"], r"--out: cannot write .* is a file"),
        (["metric-field", "{ckpt}", "--out", "{file}/m.pt"], r"--out: cannot write .* is a file"),
        (["demo", "--out", "{file}"], r"--out: .* exists and is not a folder"),
        (["geometry", "{root}/missing.pt"], r"path: no checkpoint at"),
    ],
)
def test_usage_errors_exit_2_with_one_line(tiny, capsys, argv, match):
    root, data, ckpt = tiny
    file = root / "plain.txt"
    file.write_text("x")
    argv = [a.format(ckpt=ckpt, root=root, file=file) for a in argv]
    if argv[0] in ("geometry", "sample", "metric-field", "train"):
        argv += ["--data", data]
    rc, err = _run(argv, capsys)
    assert rc == 2
    assert err.count("\n") == 1 and err.startswith("kahlergeom"), err
    assert "Traceback" not in err
    import re

    assert re.search(match, err), err


def test_output_path_checked_before_training(tiny, capsys, monkeypatch):
    root, data, _ = tiny
    calls = []
    monkeypatch.setattr(Trainer, "fit", lambda self, resume=True: calls.append(1))
    file = root / "plain2.txt"
    file.write_text("x")
    rc, err = _run(["train", "--data", data, "--checkpoint", f"{file}/m.pt", "--quiet"], capsys)
    assert rc == 2 and not calls


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write into read-only folders")
def test_unwritable_folder_refused(tiny, capsys, tmp_path):
    _, data, _ = tiny
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        rc, err = _run(["train", "--data", data, "--checkpoint", f"{locked}/m.pt"], capsys)
    finally:
        locked.chmod(0o700)
    assert rc == 2 and "is not writable" in err


def test_runtime_error_exit_1_one_line_and_debug_traceback(tiny, capsys, monkeypatch):
    root, data, _ = tiny

    def boom(self, resume=True):
        raise RuntimeError("the disk caught fire\nsecond line")

    monkeypatch.setattr(Trainer, "fit", boom)
    argv = ["train", "--data", data, "--checkpoint", str(root / "r.pt"), "--quiet"]
    rc, err = _run(argv, capsys)
    assert rc == 1
    assert err == (
        "kahlergeom train: error: RuntimeError: the disk caught fire second line "
        "(run with --debug for the traceback)\n"
    )
    with pytest.raises(RuntimeError, match="the disk caught fire"):
        main(["--debug", *argv])


def test_geometry_uses_the_checkpoint_transform(tiny, capsys):
    _, data, ckpt = tiny
    assert main(["geometry", ckpt, "--data", data, "--points", "5", "--quiet"]) == 0
    assert "| points | 5 |" in capsys.readouterr().out


@pytest.mark.parametrize(
    "command", [None, "demo", "train", "geometry", "sample", "metric-field", "bench"]
)
def test_help_texts_and_defaults(command):
    from kahlergeom.cli import _Formatter, build_parser

    parser = build_parser()
    if command is not None:
        parser = parser._subparsers._group_actions[0].choices[command]
    text = parser.format_help()
    assert "``" not in text and ":class:" not in text and ".. " not in text  # no raw RST
    assert parser.formatter_class is _Formatter
    for action in parser._actions:
        if action.dest in ("help",) or not action.option_strings and action.dest == "command":
            continue
        assert action.help, f"{command}: {action.dest} has no help text"
        shows_default = "default" in action.help or action.default in (None, False)
        assert shows_default or "%(default)" in parser._get_formatter()._get_help_string(action)


# -- data --------------------------------------------------------------------------------------
def _npz(tmp_path, images, name="d.npz"):
    path = str(tmp_path / name)
    np.savez(path, images=images)
    return path


def _idx(images: np.ndarray) -> bytes:
    header = struct.pack(">BBBB", 0, 0, 0x08, 3) + struct.pack(">3I", *images.shape)
    return header + images.astype(np.uint8).tobytes()


@pytest.mark.parametrize(
    "build, match",
    [
        (
            lambda p: load_npz(_npz(p, np.full((2, 4, 4), 254.0))),
            r"must lie in \[0, 1\]; got .*254",
        ),
        (
            lambda p: load_npz(_npz(p, -np.ones((2, 4, 4)))),
            r"must lie in \[0, 1\]; got values in \[-1",
        ),
        (lambda p: load_npz(_npz(p, np.ones((2, 4, 4))), value_range=(1, 0)), r"value_range"),
        (lambda p: load_npz(_npz(p, np.ones((2, 4, 4), np.int32))), r"uint8 or float"),
        (
            lambda p: to_complex(np.ones((2, 4, 4)) * (1 + 1j)),
            r"images must be real; got a complex",
        ),
        (
            lambda p: to_complex(torch.ones(2, 4, 4, dtype=C64)),
            r"images must be real; got a torch.complex64",
        ),
        (lambda p: to_complex(np.ones((2, 4, 4)), dtype=torch.float64), r"dtype must be torch.c"),
        (lambda p: to_complex(np.array([[["a"]]])), r"images must be a real numeric array"),
        (lambda p: to_complex(np.full((1, 2, 2), np.nan)), r"images contain NaN"),
        (lambda p: kg.data.from_complex(torch.ones(2, 4), (3, 3)), r"x must be a complex"),
        (
            lambda p: kg.data.from_complex(torch.ones(2, 4, dtype=C64), (3, 3)),
            r"does not match x's 4 values",
        ),
    ],
)
def test_data_values_and_types(tmp_path, build, match):
    with pytest.raises(ValueError, match=match):
        build(tmp_path)


def test_value_range_option_rescales(tmp_path):
    images = np.arange(2 * 4 * 4, dtype=np.float64).reshape(2, 4, 4) * 254 / 31
    data = load_npz(_npz(tmp_path, images), value_range=(0, 254))
    np.testing.assert_allclose(data.images, images / 254)
    assert data.images.max() == 1.0


def _gz_corrupt(p):
    raw = bytearray(gzip.compress(_idx(np.zeros((3, 4, 4)))))
    raw[12:20] = b"\xff" * 8
    p.write_bytes(bytes(raw))


def _gz_truncated(p):
    p.write_bytes(gzip.compress(_idx(np.zeros((3, 4, 4))))[:-12])


def _npz_truncated(p):
    np.savez(str(p), images=np.zeros((3, 4, 4)))
    p.write_bytes(p.read_bytes()[:-40])


def _npz_half(p):
    np.savez(str(p), images=np.zeros((3, 4, 4)))
    p.write_bytes(p.read_bytes()[:100])


def _npz_bad_member(p):
    np.savez(str(p), images=np.zeros((30, 4, 4)))
    raw = bytearray(p.read_bytes())
    raw[200:260] = b"\x00" * 60  # corrupt the array's bytes inside the archive
    p.write_bytes(bytes(raw))


@pytest.mark.parametrize(
    "write, name, load",
    [
        (_gz_corrupt, "bad.gz", load_mnist_idx),
        (_gz_truncated, "short.gz", load_mnist_idx),
        (_npz_truncated, "short.npz", load_npz),
        (_npz_half, "half.npz", load_npz),
        (_npz_bad_member, "member.npz", load_npz),
    ],
)
def test_corrupt_files_clear_error_and_closed(tmp_path, write, name, load):
    path = tmp_path / name
    write(path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            load(str(path))
        except ValueError as err:
            assert name in str(err) and ("corrupt" in str(err) or "cannot read" in str(err))
        else:  # a corruption the format cannot see must still give valid images
            pass
        gc.collect()
    assert not [w for w in caught if issubclass(w.category, ResourceWarning)]


# -- numerics and options ----------------------------------------------------------------------
def _fs_oracle(z):
    """G_FS in 50-digit arithmetic: ((1+|z|²) δ_ab − conj(z_a) z_b) / (1+|z|²)²."""
    with mp.workdps(50):
        zs = [mp.mpc(complex(v)) for v in z]
        s = sum(abs(v) ** 2 for v in zs)
        G = [
            [((1 + s) * (a == b) - mp.conj(zs[a]) * zs[b]) / (1 + s) ** 2 for b in range(len(zs))]
            for a in range(len(zs))
        ]
        logdet = -(len(zs) + 1) * mp.log(1 + s)
        return torch.tensor([[complex(g) for g in row] for row in G], dtype=C128), float(logdet)


@pytest.mark.parametrize(
    "z",
    [
        [1e8, 0],
        [0, 1e8j],
        [0.6e8, 0.8e8],
        [1e8 * (0.3 + 0.4j), 0.5e8 - 0.5e8j],
        [1e8, 1.0],
        [3e75, 1e75j],
        [1e-200, 0],
        [1.0, -2.0j],
    ],
)
def test_fubini_study_far_from_the_origin(z):
    M = kg.KahlerManifold(FubiniStudy(2))
    zt = torch.tensor([z], dtype=C128)
    G_true, logdet_true = _fs_oracle(z)
    G = M.metric(zt)[0]
    scale = G_true.abs().max()
    assert float((G - G_true).abs().max() / scale) < 1e-13  # entrywise, relative to ‖G‖
    assert float(M.log_volume_density(zt)[0]) == pytest.approx(logdet_true, rel=1e-13)
    assert float(M.volume_density(zt)[0]) == pytest.approx(np.exp(logdet_true), rel=1e-12)
    if z[1] == 0 or z[0] == 0:  # axis-aligned: G is diagonal, Cholesky is exact too
        assert float(hermitian_logdet(G)) == pytest.approx(logdet_true, rel=1e-13)


def test_fubini_study_log_det_at_1e8_is_minus_110_5():
    M = kg.KahlerManifold(FubiniStudy(2))
    z = torch.tensor([[0.6e8, 0.8e8j]], dtype=C128)
    assert float(M.log_volume_density(z)[0]) == pytest.approx(-3 * np.log1p(1e16), rel=1e-14)
    assert float(M.log_volume_density(z)[0]) == pytest.approx(-110.524, abs=1e-3)
    assert M.metric(z).abs().max() < 1e-16 and M.metric(z).abs().max() > 0


@pytest.mark.parametrize(
    "call",
    [
        lambda M, z: M.metric(z),
        lambda M, z: M.log_volume_density(z),
        lambda M, z: M.volume_density(z),
        lambda M, z: kg.ddbar(M.potential, z),
    ],
)
def test_fubini_study_complex64_far_point_refused(call):
    M = kg.KahlerManifold(FubiniStudy(2))
    z = torch.tensor([[1e20, 0]], dtype=C64)
    with pytest.raises(ValueError, match=r"z: 1 point\(s\) lie outside the domain .*complex64"):
        call(M, z)
    # complex128 represents the same point
    assert torch.isfinite(M.log_volume_density(z.to(C128))).all()


def test_fubini_study_complex64_at_1e8_is_accurate():
    M = kg.KahlerManifold(FubiniStudy(2))
    z = torch.tensor([[1e8, 0]], dtype=C64)
    G_true, logdet_true = _fs_oracle([1e8, 0])
    torch.testing.assert_close(M.metric(z)[0].to(C128), G_true, rtol=1e-5, atol=0)
    assert float(M.log_volume_density(z)[0]) == pytest.approx(logdet_true, rel=1e-6)


@pytest.mark.parametrize("potential", [FubiniStudy(3), ComplexHyperbolic(3), Flat(3)])
def test_closed_form_log_det_matches_cholesky(potential):
    g = torch.Generator().manual_seed(1)
    z = 0.3 * torch.randn(20, 3, dtype=C128, generator=g)
    z = z[potential.contains(z)]
    assert z.shape[0] >= 10
    M = kg.KahlerManifold(potential)
    torch.testing.assert_close(
        M.log_volume_density(z), hermitian_logdet(kg.ddbar(potential, z)), rtol=1e-12, atol=1e-12
    )


@pytest.mark.parametrize(
    "build, match",
    [
        (lambda: ComplexVAE(4, 2, (0,)), r"hidden must hold integer layer widths >= 1"),
        (lambda: ComplexVAE(4, 2, (8, -1)), r"hidden must hold integer layer widths >= 1"),
        (lambda: ComplexVAE(4, 2, (True,)), r"hidden must hold integer layer widths >= 1"),
        (lambda: ComplexVAE(4, 2, "64"), r"hidden must be a sequence of layer widths"),
        (lambda: ComplexVAE(4, 2, min_variance=float("nan")), r"min_variance must be a finite"),
        (lambda: ComplexVAE(4, 2, decoder_variance=0.0), r"decoder_variance must be"),
        (lambda: ComplexVAE(4, 2, encoder_activation="relu"), r"encoder_activation must be one"),
        (lambda: ComplexVAE.from_config({"latent_dim": 2}), r"config has no 'data_dim'"),
        (lambda: ComplexVAE.from_config({**make_model().config, "dtype": "x"}), r"config dtype"),
        (lambda: TrainConfig(batch_size=1), r"batch_size must be an integer >= 2"),
        (lambda: TrainConfig(kl_weight=float("inf")), r"kl_weight must be a finite number"),
        (lambda: TrainConfig(regulariser="variance"), r"regulariser must be a GeometricReg"),
        (lambda: TrainConfig(checkpoint_path=3), r"checkpoint_path must be a path string"),
        (
            lambda: Trainer(make_model(), torch.zeros(1, 64, dtype=C128)),
            r"x must hold at least 2 examples",
        ),
        (lambda: Trainer(make_model(), torch.zeros(4, 64, dtype=C128), {}), r"config must be a"),
    ],
)
def test_options_validated_in_constructors(build, match):
    with pytest.raises(ValueError, match=match):
        build()


# -- no raw exception escapes ------------------------------------------------------------------
def _bad_files(tmp_path, ckpt):
    """(description, callable) pairs that feed malformed files and values to public readers."""
    torch_dict = str(tmp_path / "dict.pt")
    torch.save({"model": {}, "model_config": {}}, torch_dict)
    weird = str(tmp_path / "weird.pt")
    torch.save({"format": "kahlergeom-checkpoint", "format_version": 1, "model": 3}, weird)
    empty_npz = str(tmp_path / "empty.npz")
    np.savez(empty_npz)
    one_d = str(tmp_path / "oned.npz")
    np.savez(one_d, images=np.zeros(5))
    npy = str(tmp_path / "a.npy")
    np.save(npy, np.zeros((2, 2, 2)))
    bad_idx = tmp_path / "bad.idx"
    bad_idx.write_bytes(b"\x00\x00\x08\x09" + b"\x00" * 8)
    gz = tmp_path / "x.gz"
    gz.write_bytes(b"\x1f\x8b" + os.urandom(40))
    zipped = tmp_path / "z.npz"
    with zipfile.ZipFile(zipped, "w") as zf:
        zf.writestr("images.npy", b"garbage")
    return [
        ("load_model on dict without fields", lambda: load_model(torch_dict)),
        ("load_model on malformed weights", lambda: load_model(weird)),
        (
            "resume from malformed",
            lambda: Trainer(make_model(), torch.zeros(4, 64, dtype=C128), cfg(weird)).fit(),
        ),
        ("npz without arrays", lambda: load_npz(empty_npz)),
        ("npz of 1-d images", lambda: load_npz(one_d)),
        ("npy instead of npz", lambda: load_npz(npy)),
        ("npz with garbage member", lambda: load_npz(str(zipped))),
        ("npz, labels key missing images", lambda: load_npz(empty_npz, images_key="x")),
        ("IDX with too many dims", lambda: load_mnist_idx(str(bad_idx))),
        ("random gzip", lambda: load_mnist_idx(str(gz))),
        ("dataset spec", lambda: kg.data.load_dataset("idx:")),
        ("split", lambda: load_digits().split(1.5)),
        ("from_config empty", lambda: ComplexVAE.from_config({})),
        ("from_config list", lambda: ComplexVAE.from_config([])),
        ("to_complex 2-d", lambda: to_complex(np.zeros((2, 2)))),
        ("from_complex bad shape", lambda: kg.data.from_complex(torch.ones(2, 4, dtype=C64), "ab")),
        (
            "symbolic arg",
            lambda: kg.symbolic.levi_matrix(
                __import__("sympy").arg(kg.symbolic.symbols(1)[0][0]), *kg.symbolic.symbols(1)
            ),
        ),
        ("points strategy", lambda: kg.testing.points(0)),
        ("domain_points", lambda: kg.testing.domain_points(FubiniStudy(1), scale=-1)),
    ]


def test_no_raw_exception_escapes(tmp_path, ckpt):
    escaped = []
    for name, call in _bad_files(tmp_path, ckpt):
        try:
            call()
        except ValueError:
            continue
        except RAW as exc:
            escaped.append(f"{name}: {type(exc).__name__}: {exc}")
        except Exception as exc:  # any other type is a finding too
            escaped.append(f"{name}: {type(exc).__name__}: {exc}")
        else:
            escaped.append(f"{name}: accepted")
    assert not escaped, "\n".join(escaped)


@pytest.mark.parametrize(
    "argv",
    [
        ["train", "--data", "idx:{root}/none"],
        ["train", "--data", "{root}/junk.npz", "--checkpoint", "{root}/j.pt"],
        ["geometry", "{root}/junk.npz"],
        ["sample", "{root}/dict.pt", "--out", "{root}/s.npz"],
        ["metric-field", "{root}/junk.npz", "--out", "{root}/m.pt"],
        ["bench", "--dir", "{root}/nothing"],
        ["train", "--data", "{root}/float255.npz", "--checkpoint", "{root}/f.pt"],
    ],
)
def test_command_line_never_shows_a_traceback(tmp_path, capsys, argv):
    (tmp_path / "junk.npz").write_bytes(b"PK\x03\x04" + b"\x00" * 30)
    torch.save({"x": 1}, str(tmp_path / "dict.pt"))
    np.savez(str(tmp_path / "float255.npz"), images=np.full((4, 4, 4), 200.0))
    rc, err = _run(
        [a.format(root=tmp_path) for a in argv]
        + ["--quiet"] * (argv[0] != "bench" and argv[0] != "metric-field"),
        capsys,
    )
    assert rc in (1, 2)
    assert err.count("\n") == 1 and "Traceback" not in err, err


# -- a metric field that is not finite inside the domain ---------------------------------------
# Oracles: constant metrics (flat, and the Fisher metric of a linear holomorphic decoder), whose
# geodesics are straight lines, exp_z(v) = z + v and dist = |w − z|_G; a rotation ODE with
# solution (cos t, sin t). The field is NaN only away from the checked points, so every input
# passes validation and the NaN is met only where a trajectory goes.
class NaNBeyond(kg.HermitianManifold):
    """Flat metric on all of C^n whose field is NaN where a < |z| < b (counts its calls)."""

    def __init__(self, n=2, a=1.0, b=math.inf, kahler=True, domain=None):
        super().__init__(n)
        self.a, self.b, self.is_kahler, self.domain, self.calls = a, b, kahler, domain, 0

    def metric_field(self, z):
        self.calls += 1
        s = (z.real**2 + z.imag**2).sum(-1)
        eye = torch.eye(self.n, dtype=z.dtype, device=z.device) * (1 + 0 * s)[..., None, None]
        bad = (s > self.a**2) & (s < self.b**2)
        return torch.where(bad[..., None, None], torch.full_like(eye, math.nan), eye)

    def contains(self, z):
        s = (z.real**2 + z.imag**2).sum(-1)
        return s < self.domain**2 if self.domain is not None else s == s


class NaNDecoder:
    """Linear holomorphic decoder z ↦ z Wᵀ (variance 0.7) that returns NaN where |z| > 1."""

    def __init__(self):
        self.W = torch.tensor([[1.0, 0.5j], [0.0, 2.0], [0.3, -1.0j]], dtype=C128)
        self.calls = 0

    def __call__(self, z):
        self.calls += 1
        s = (z.real**2 + z.imag**2).sum(-1, keepdim=True)
        mean = z @ self.W.T
        return torch.where(s > 1, torch.full_like(mean, math.nan), mean), 0.7


def _fisher_nan():
    M = kg.FisherManifold(NaNDecoder(), n=2)
    M.calls_of = lambda: M.decoder.calls
    return M


def _flat_nan(**kw):
    M = NaNBeyond(**kw)
    M.calls_of = lambda: M.calls
    return M


Z2 = torch.tensor([[0.1, 0.0], [0.1, 0.0]], dtype=C128)
V2 = torch.tensor([[2.0, 0.0], [0.3, 0.2j]], dtype=C128)  # row 0 meets |z| = 1 at t = 0.45


@pytest.mark.parametrize(
    "make, integrator, max_calls",
    [
        # Calls measured: 75 / 148 / 148 (Dopri5); the former shrinking of the step to
        # underflow took 495 / 988 / 988 and reported left_domain.
        (lambda: _flat_nan(kahler=True), kg.geodesics.Dopri5(), 150),
        (lambda: _flat_nan(kahler=False), kg.geodesics.Dopri5(), 300),
        (_fisher_nan, kg.geodesics.Dopri5(), 300),
        # Dop853 (12 stages a step): 147 / 293 calls measured.
        (lambda: _flat_nan(kahler=True), kg.geodesics.Dop853(), 150),
        (_fisher_nan, kg.geodesics.Dop853(), 300),
        (lambda: _flat_nan(kahler=True), kg.geodesics.RK4(steps=64), None),
        (lambda: _flat_nan(kahler=False), kg.geodesics.RK4(steps=64), None),
    ],
    ids=[
        "kahler-dopri5",
        "levi-civita-dopri5",
        "fisher-dopri5",
        "kahler-dop853",
        "fisher-dop853",
        "kahler-rk4",
        "lc-rk4",
    ],
)
def test_exp_into_a_non_finite_field_stops_with_non_finite(make, integrator, max_calls):
    M = make()
    expected = Z2 + V2  # the closed form where the field is finite: a straight line
    if isinstance(M, kg.FisherManifold):
        M.check_point(Z2)  # decoder validated at the start point (finite there)
    before = M.calls_of()
    r = kg.geodesics.exp(M, Z2, V2, integrator=integrator)
    calls = M.calls_of() - before
    assert r.status.tolist() == [8, 1] and r.reasons == {"non_finite": 1, "success": 1}
    assert kg.geodesics.STATUS_NAMES[8] == "non_finite"
    torch.testing.assert_close(r.point[1], expected[1], rtol=0, atol=1e-12)
    # Stopped at the edge of the NaN region (|z| = 1), not before and not beyond.
    assert 0.9 < float(r.point[0].abs().norm()) <= 1.0
    if max_calls is not None:
        assert calls <= max_calls, calls
    else:  # RK4: the first step with a non-finite stage stops that row (28 of 64 steps taken)
        assert int(r.n_steps[0]) < 32 and int(r.n_steps[1]) == 64
    with pytest.warns(kg.geodesics.GeodesicWarning, match=r"exp: 1 of 2.*'non_finite': 1"):
        out = M.exp(Z2, V2, integrator=integrator)
    assert torch.isnan(out[0]).all()
    torch.testing.assert_close(out[1], expected[1], rtol=0, atol=1e-12)


@pytest.mark.parametrize(
    "integrator", [kg.geodesics.Dopri5(), kg.geodesics.Dop853(), kg.geodesics.RK4(steps=64)]
)
def test_a_domain_exit_is_still_left_domain(integrator):
    """Negative control: the same NaN field, but declared outside the domain (the unit ball)."""
    M = _flat_nan(domain=1.0)
    r = kg.geodesics.exp(M, Z2, V2, integrator=integrator)
    assert r.reasons == {"left_domain": 1, "success": 1} and r.status.tolist() == [2, 1]


def _rotation(blob, radius, calls):
    """ẏ = (−y₁, y₀) (solution (cos t, sin t) from (1, 0)), NaN in a disc around ``blob``;
    ``calls`` collects the number of rows in the disc at each evaluation."""
    centre = torch.tensor(blob, dtype=torch.float64)

    def f(y):
        bad = (y - centre).square().sum(-1) < radius**2
        calls.append(int(bad.sum()))
        out = torch.stack([-y[:, 1], y[:, 0]], -1)
        return torch.where(bad[:, None], torch.full_like(out, math.nan), out)

    return f


ON_PATH = (math.cos(2.0), math.sin(2.0))


@pytest.mark.parametrize(
    "integrator, blob, radius, status, t_stop",
    [
        # A disc of NaN on the path at t = 2 (entered at t ≈ 1.95): stopped just before it
        # (RK4: at the start of the step of length 6/64 that enters it).
        (kg.geodesics.Dopri5(), ON_PATH, 0.05, "non_finite", (1.9, 1.95)),
        (kg.geodesics.RK4(steps=64), ON_PATH, 0.05, "non_finite", (1.95 - 6 / 64, 1.95)),
        (kg.geodesics.Dop853(), ON_PATH, 0.05, "non_finite", (1.9, 1.95)),
        # NaN at the initial state: stopped before any step.
        (kg.geodesics.Dopri5(), (1.0, 0.0), 0.01, "non_finite", (0, 0)),
        (kg.geodesics.Dop853(), (1.0, 0.0), 0.01, "non_finite", (0, 0)),
        (kg.geodesics.RK4(steps=64), (1.0, 0.0), 0.01, "non_finite", (0, 0)),
        # Off the path (0.2 inside the circle), where a long trial step of a loose Dopri5 lands
        # (measured: a stage point at (−0.450, −0.449)): one rejection, then the trajectory goes
        # past it and ends where it does without the disc.
        (kg.geodesics.Dopri5(rtol=1e-3, atol=1e-3), (-0.45, -0.45), 0.15, "success", (6, 6)),
    ],
    ids=[
        "dopri5-on-path",
        "rk4-on-path",
        "dop853-on-path",
        "dopri5-at-start",
        "dop853-at-start",
        "rk4-at-start",
        "dopri5-off-path",
    ],
)
def test_integrators_stop_on_a_non_finite_field_not_beside_it(
    integrator, blob, radius, status, t_stop
):
    y0 = torch.tensor([[1.0, 0.0], [0.25, 0.0]], dtype=torch.float64)  # row 1 misses the disc
    calls = []
    r = integrator.integrate(_rotation(blob, radius, calls), y0, 6.0)
    names = [kg.geodesics.STATUS_NAMES[int(s)] for s in r.status]
    assert names[0] == status
    assert t_stop[0] <= float(r.t[0]) <= t_stop[1]
    assert names[1] == "success" and float(r.t[1]) == 6.0
    exact = torch.tensor([math.cos(6.0), math.sin(6.0)], dtype=torch.float64)
    tol = 5e-3 if integrator == kg.geodesics.Dopri5(rtol=1e-3, atol=1e-3) else 1e-6
    torch.testing.assert_close(r.y[1], 0.25 * exact, rtol=0, atol=tol)
    if status == "success":
        torch.testing.assert_close(r.y[0], exact, rtol=0, atol=tol)
        assert sum(calls) >= 1 and int(r.n_rejected[0]) >= 1  # the disc was hit, and passed
    adaptive = (kg.geodesics.Dopri5, kg.geodesics.Dop853)
    if isinstance(integrator, adaptive) and status == "non_finite" and t_stop[0]:
        assert int(r.n_rejected[0]) == 3  # NON_FINITE_REJECTS, not a shrinking to underflow


@pytest.mark.parametrize(
    "solver, method",
    [
        (kg.geodesics.EnergyMinimisation(), None),  # every start ends non_finite
        (kg.geodesics.Shooting(), "dist"),
        (kg.geodesics.Shooting(), "log"),
    ],
    ids=["energy-solve_log", "shooting-dist", "shooting-log"],
)
def test_log_dist_through_a_non_finite_field(solver, method):
    """Every path from 0.1 to 0.9 crosses the NaN annulus 0.5 < |z| < 0.8: ``non_finite``
    (bounded work, no hang); the other pair, inside |z| < 0.5, is solved exactly in the same
    batch (straight line)."""
    M = _flat_nan(n=1, a=0.5, b=0.8)
    z = torch.tensor([[0.1], [0.1]], dtype=C128)
    w = torch.tensor([[0.9], [0.3 + 0.1j]], dtype=C128)
    if method is None:
        r = kg.geodesics.solve_log(M, z, w, solver=solver)
        assert r.status.tolist() == [8, 1] and r.reasons == {"non_finite": 1, "success": 1}
        assert not bool(r.converged[0]) and bool(torch.isnan(r.residual[0]))
        torch.testing.assert_close(r.velocity[1], w[1] - z[1], rtol=0, atol=1e-8)
        return
    value = {"dist": (w - z).abs()[1, 0], "log": (w - z)[1]}[method]
    with pytest.warns(kg.geodesics.GeodesicWarning, match=rf"{method}: 1 of 2.*'non_finite': 1"):
        out = getattr(M, method)(z, w, solver=solver)
    assert torch.isnan(out[0]).all()
    torch.testing.assert_close(out[1], value, rtol=0, atol=1e-8)
