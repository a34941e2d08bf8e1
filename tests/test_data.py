"""Data loading (IDX raw and gzipped, .npz, bundled digits) and the real ↔ complex transforms.

Oracles: IDX and .npz files written byte by byte in this file from known arrays, numpy's
orthonormal FFT, Parseval (norms and inner products preserved), and set algebra for splits.
"""

from __future__ import annotations

import gzip
import struct

import numpy as np
import pytest
import torch

from kahlergeom.data import (
    ImageDataset,
    from_complex,
    load_dataset,
    load_digits,
    load_mnist_idx,
    load_npz,
    to_complex,
)


# -- IDX writer (the format: 2 zero bytes, type code, ndim, big-endian uint32 dims, data) --
def idx_bytes(array: np.ndarray, code: int = 0x08) -> bytes:
    dtypes = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
    header = bytes([0, 0, code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + np.ascontiguousarray(array, dtype=dtypes[code]).tobytes()


def write(path, data: bytes, gz: bool = False):
    if gz:
        with gzip.open(path, "wb") as fh:
            fh.write(data)
    else:
        path.write_bytes(data)
    return str(path)


@pytest.fixture
def mnist_like():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(7, 5, 5), dtype=np.uint8)
    labels = rng.integers(0, 10, size=7, dtype=np.uint8)
    return images, labels


@pytest.mark.parametrize("gz", [False, True])
def test_load_mnist_idx(tmp_path, mnist_like, gz):
    images, labels = mnist_like
    ext = ".gz" if gz else ""
    ip = write(tmp_path / f"imgs-idx3-ubyte{ext}", idx_bytes(images), gz)
    lp = write(tmp_path / f"labels-idx1-ubyte{ext}", idx_bytes(labels), gz)
    ds = load_mnist_idx(ip, lp)
    assert isinstance(ds, ImageDataset)
    assert ds.images.shape == (7, 5, 5) and ds.images.dtype == np.float64
    np.testing.assert_array_equal(ds.images, images / 255.0)
    np.testing.assert_array_equal(ds.labels, labels.astype(np.int64))
    assert ds.labels.dtype == np.int64
    assert ds.shape == (5, 5) and len(ds) == 7
    # Through the dataset spec, and without labels.
    ds2 = load_dataset(f"idx:{ip},{lp}")
    np.testing.assert_array_equal(ds2.images, ds.images)
    assert load_dataset(f"idx:{ip}").labels is None


def test_load_idx_float_images_are_not_rescaled(tmp_path):
    images = np.linspace(0, 1, 2 * 3 * 3).reshape(2, 3, 3)
    ip = write(tmp_path / "f.idx", idx_bytes(images, 0x0E))
    np.testing.assert_array_equal(load_mnist_idx(ip).images, images)


@pytest.mark.parametrize("gz", [False, True])
def test_idx_errors(tmp_path, mnist_like, gz):
    images, labels = mnist_like
    good = idx_bytes(images)
    ip = write(tmp_path / "good", good, gz)
    with pytest.raises(ValueError, match="images_path: no such file .*missing"):
        load_mnist_idx(str(tmp_path / "missing"))
    with pytest.raises(ValueError, match="labels_path: no such file"):
        load_mnist_idx(ip, str(tmp_path / "missing"))
    bad_magic = write(tmp_path / "magic", b"\x01\x02" + good[2:], gz)
    with pytest.raises(ValueError, match=r"images_path: .*magic.* is not an IDX file"):
        load_mnist_idx(bad_magic)
    bad_code = write(tmp_path / "code", good[:2] + b"\x07" + good[3:], gz)
    with pytest.raises(ValueError, match="images_path: .* unknown IDX type code 0x7"):
        load_mnist_idx(bad_code)
    truncated = write(tmp_path / "trunc", good[:-10], gz)
    with pytest.raises(ValueError, match="images_path: .*trunc.* is truncated or corrupt"):
        load_mnist_idx(truncated)
    short_header = write(tmp_path / "short", good[:9], gz)  # dims cut off mid-way
    with pytest.raises(ValueError, match="images_path: .*short.* is truncated or corrupt"):
        load_mnist_idx(short_header)
    empty = write(tmp_path / "empty", b"", gz)
    with pytest.raises(ValueError, match="images_path: .*empty"):
        load_mnist_idx(empty)
    flat = write(tmp_path / "flat", idx_bytes(images.reshape(7, 25)), gz)
    with pytest.raises(ValueError, match=r"images_path: expected a 3-D IDX array"):
        load_mnist_idx(flat)
    few = write(tmp_path / "few", idx_bytes(labels[:5]), gz)
    with pytest.raises(ValueError, match=r"labels_path: expected 7 labels; got shape \(5,\)"):
        load_mnist_idx(ip, few)


def test_truncated_gzip_stream(tmp_path, mnist_like):
    images, _ = mnist_like
    raw = gzip.compress(idx_bytes(images))
    path = tmp_path / "cut.gz"
    path.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(ValueError, match="images_path: .*cut.gz"):
        load_mnist_idx(str(path))


# -- .npz --------------------------------------------------------------------------------
def test_load_npz_variants(tmp_path):
    rng = np.random.default_rng(1)
    u8 = rng.integers(0, 256, size=(4, 3, 3), dtype=np.uint8)
    labels = np.arange(4)
    p = tmp_path / "u8.npz"
    np.savez(p, images=u8, labels=labels)
    ds = load_npz(str(p))
    np.testing.assert_array_equal(ds.images, u8 / 255.0)
    np.testing.assert_array_equal(ds.labels, labels)
    assert ds.name == "u8.npz"

    f32 = rng.random((4, 3, 3)).astype(np.float32)
    p = tmp_path / "flat.npz"
    np.savez(p, pixels=f32.reshape(4, 9))
    ds = load_npz(str(p), images_key="pixels", labels_key=None)
    assert ds.images.dtype == np.float64 and ds.labels is None
    np.testing.assert_array_equal(ds.images, f32.astype(np.float64))
    with pytest.raises(ValueError, match="images_key"):
        load_dataset(str(p))  # default key "images" is absent


@pytest.mark.parametrize(
    "arrays, kw, match",
    [
        (dict(pixels=np.zeros((2, 4, 4))), {}, r"images_key: .* has no array 'images'"),
        (dict(images=np.zeros((2, 10))), {}, r"images in .*bad.npz.* flat rows must be square"),
        (dict(images=np.zeros((2, 3, 3), np.int32)), {}, "must be uint8 or float; got int32"),
        (dict(images=np.full((2, 3, 3), np.nan)), {}, r"bad.npz.* contain NaN or inf in 2"),
        (dict(images=np.zeros((0, 3, 3))), {}, "must be non-empty"),
        (dict(images=np.zeros((2, 3, 3)), labels=np.arange(3)), {}, r"labels of bad.npz"),
        (dict(images=np.zeros(9)), {}, r"bad.npz.* must be an array of shape \(N, H, W\)"),
    ],
)
def test_npz_errors(tmp_path, arrays, kw, match):
    p = tmp_path / "bad.npz"
    np.savez(p, **arrays)
    with pytest.raises(ValueError, match=match):
        load_npz(str(p), **kw)


def test_npz_unreadable_files(tmp_path):
    with pytest.raises(ValueError, match="path: no such file .*nope.npz"):
        load_npz(str(tmp_path / "nope.npz"))
    junk = tmp_path / "junk.npz"
    junk.write_bytes(b"this is not a zip archive at all")
    with pytest.raises(ValueError, match="path: cannot read .*junk.npz"):
        load_npz(str(junk))
    with pytest.raises(ValueError, match="data must be 'digits'"):
        load_dataset(str(tmp_path / "images.csv"))


# -- bundled digits and the split --------------------------------------------------------
def test_load_digits():
    ds = load_digits()
    assert ds.images.shape == (1797, 8, 8) and ds.images.dtype == np.float64
    assert ds.images.min() == 0.0 and ds.images.max() == 1.0
    assert ds.labels.shape == (1797,) and set(ds.labels.tolist()) == set(range(10))
    assert load_dataset().images.shape == (1797, 8, 8)
    assert load_dataset("digits").name == "digits"


def tagged_dataset(N=50):
    images = np.arange(N, dtype=np.float64)[:, None, None] / N * np.ones((1, 2, 2))
    return ImageDataset(images, np.arange(N), "tagged")


def test_split_is_seeded_disjoint_and_complete():
    ds = tagged_dataset()
    tr, te = ds.split(0.2, seed=3)
    assert len(tr) == 40 and len(te) == 10
    a, b = set(tr.labels.tolist()), set(te.labels.tolist())
    assert not a & b and a | b == set(range(50))
    # Images travel with their labels.
    np.testing.assert_array_equal(np.rint(tr.images[:, 0, 0] * 50), tr.labels)
    tr2, te2 = ds.split(0.2, seed=3)
    np.testing.assert_array_equal(te.labels, te2.labels)
    _, te3 = ds.split(0.2, seed=4)
    assert not np.array_equal(te.labels, te3.labels)
    assert tr.name == "tagged:train" and te.name == "tagged:test"
    _, tiny = ds.split(0.001)
    assert len(tiny) == 1


@pytest.mark.parametrize("frac", [0.0, 1.0, -0.5, 2])
def test_split_fraction_errors(frac):
    with pytest.raises(ValueError, match="test_fraction must be in"):
        tagged_dataset().split(frac)


def test_image_dataset_errors():
    with pytest.raises(ValueError, match=r"images of x must be floating point .* got uint8"):
        ImageDataset(np.zeros((2, 3, 3), np.uint8), None, "x")
    with pytest.raises(ValueError, match=r"labels of x must have shape \(2,\)"):
        ImageDataset(np.zeros((2, 3, 3)), np.zeros(3), "x")


# -- real ↔ complex ----------------------------------------------------------------------
@pytest.fixture
def images():
    return np.random.default_rng(2).random((5, 4, 6))


def test_identity_round_trip(images):
    x = to_complex(images, "identity", torch.complex128)
    assert x.shape == (5, 24) and x.dtype == torch.complex128
    assert torch.equal(x.imag, torch.zeros_like(x.imag))
    np.testing.assert_array_equal(x.real.numpy(), images.reshape(5, -1))
    np.testing.assert_array_equal(from_complex(x, (4, 6)).numpy(), images)
    assert to_complex(images).dtype == torch.complex64  # default
    assert to_complex(torch.from_numpy(images)).shape == (5, 24)


def test_fft_is_orthonormal_and_round_trips(images):
    x = to_complex(images, "fft", torch.complex128)
    ref = np.fft.fft2(images, norm="ortho").reshape(5, -1)
    np.testing.assert_allclose(x.numpy(), ref, rtol=1e-12, atol=1e-12)
    flat = torch.from_numpy(images.reshape(5, -1))
    # Parseval: norms and inner products are preserved.
    torch.testing.assert_close(
        torch.linalg.vector_norm(x, dim=-1),
        torch.linalg.vector_norm(flat, dim=-1),
        rtol=1e-12,
        atol=1e-12,
    )
    gram = x @ x.mH
    torch.testing.assert_close(gram.real, flat @ flat.T, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(
        gram.imag, torch.zeros(5, 5, dtype=torch.float64), atol=1e-12, rtol=0
    )
    back = from_complex(x, (4, 6), "fft")
    np.testing.assert_allclose(back.numpy(), images, rtol=1e-12, atol=1e-12)
    # The image's mean lives in the DC coefficient: sum / sqrt(HW).
    np.testing.assert_allclose(x[:, 0].real.numpy(), images.sum((1, 2)) / np.sqrt(24), rtol=1e-12)


def test_transform_errors(images):
    with pytest.raises(ValueError, match="transform must be one of"):
        to_complex(images, "dct")
    with pytest.raises(ValueError, match="transform must be one of"):
        from_complex(torch.zeros(1, 4, dtype=torch.complex128), (2, 2), "dct")
    with pytest.raises(ValueError, match=r"images must have shape \(N, H, W\); got \(5, 24\)"):
        to_complex(images.reshape(5, 24))


def test_npz_with_unloadable_contents(tmp_path):
    p = tmp_path / "obj.npz"
    np.savez(p, images=np.array([np.zeros((2, 2)), "text"], dtype=object))
    with pytest.raises(ValueError, match="path: cannot read .*obj.npz.* as .npz: Object arrays"):
        load_npz(str(p))
    single = tmp_path / "single.npz"
    with open(single, "wb") as fh:
        np.save(fh, np.zeros((2, 3, 3)))
    with pytest.raises(ValueError, match=r"path: .*single.npz.* single array \(.npy\)"):
        load_npz(str(single))
