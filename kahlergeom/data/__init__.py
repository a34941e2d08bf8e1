r"""Data: the bundled digits, MNIST IDX and ``.npz`` loaders, and real ↔ complex transforms.

Nothing is downloaded: the default data set is scikit-learn's bundled ``load_digits``
(1797 images of 8×8 pixels); other data come from local files.

Real images enter the complex VAE as complex vectors, either as ``x + 0i`` (``"identity"``) or
through the orthonormal 2-D FFT (``"fft"``, an isometry of $\mathbb C^{H\times W}$, so Gaussian
likelihoods keep their meaning); `from_complex` maps back to images for pictures.
"""

from __future__ import annotations

import gzip
import os
import struct
import zipfile
import zlib
from dataclasses import dataclass

import numpy as np
import torch

__all__ = [
    "ImageDataset",
    "from_complex",
    "load_dataset",
    "load_digits",
    "load_mnist_idx",
    "load_npz",
    "to_complex",
]

_TRANSFORMS = ("identity", "fft")


@dataclass
class ImageDataset:
    """Images in [0, 1], float ``(N, H, W)``, with optional integer labels ``(N,)``."""

    images: np.ndarray
    labels: np.ndarray | None
    name: str

    def __post_init__(self):
        check_images(self.images, f"images of {self.name}")
        if self.labels is not None:
            self.labels = np.asarray(self.labels)
            if self.labels.shape != (self.images.shape[0],):
                raise ValueError(
                    f"labels of {self.name} must have shape ({self.images.shape[0]},); got "
                    f"{self.labels.shape}."
                )

    @property
    def shape(self) -> tuple[int, int]:
        return self.images.shape[1], self.images.shape[2]

    def __len__(self) -> int:
        return self.images.shape[0]

    def split(self, test_fraction: float = 0.2, seed: int = 0):
        """Seeded train/test split → (train, test) datasets."""
        if not 0 < test_fraction < 1:
            raise ValueError(f"test_fraction must be in (0, 1); got {test_fraction!r}.")
        rng = np.random.default_rng(seed)
        perm = rng.permutation(len(self))
        n_test = max(1, int(round(test_fraction * len(self))))
        te, tr = perm[:n_test], perm[n_test:]
        lab = self.labels
        return (
            ImageDataset(self.images[tr], None if lab is None else lab[tr], self.name + ":train"),
            ImageDataset(self.images[te], None if lab is None else lab[te], self.name + ":test"),
        )


def check_images(images, name: str = "images") -> np.ndarray:
    if not isinstance(images, np.ndarray) or images.ndim != 3:
        raise ValueError(
            f"{name} must be an array of shape (N, H, W); got "
            f"{getattr(images, 'shape', type(images).__name__)}."
        )
    if images.shape[0] < 1 or images.shape[1] < 1 or images.shape[2] < 1:
        raise ValueError(f"{name} must be non-empty; got shape {images.shape}.")
    if not np.issubdtype(images.dtype, np.floating):
        raise ValueError(f"{name} must be floating point in [0, 1]; got {images.dtype}.")
    if not np.isfinite(images).all():
        bad = int((~np.isfinite(images)).any(axis=(1, 2)).sum())
        raise ValueError(f"{name} contain NaN or inf in {bad} image(s); clean the data first.")
    lo, hi = float(images.min()), float(images.max())
    if lo < 0 or hi > 1:
        raise ValueError(
            f"{name} must lie in [0, 1]; got values in [{lo:g}, {hi:g}]. Rescale them first "
            "(load_npz(..., value_range=(low, high)) maps [low, high] onto [0, 1]; uint8 "
            "images are divided by 255 automatically)."
        )
    return images


def load_digits() -> ImageDataset:
    """scikit-learn's bundled 8×8 digits, scaled to [0, 1] (no download)."""
    from sklearn.datasets import load_digits as _sk_load_digits

    d = _sk_load_digits()
    images = (d.images / 16.0).astype(np.float64)
    return ImageDataset(images, d.target.astype(np.int64), "digits")


def _open_maybe_gzip(path: str):
    with open(path, "rb") as fh:
        magic = fh.read(2)
    return gzip.open(path, "rb") if magic == b"\x1f\x8b" else open(path, "rb")


def _read_idx(path: str, name: str) -> np.ndarray:
    if not os.path.isfile(path):
        raise ValueError(f"{name}: no such file {path!r}.")
    try:
        with _open_maybe_gzip(path) as fh:
            header = fh.read(4)
            if len(header) != 4 or header[0] != 0 or header[1] != 0:
                raise ValueError(f"{name}: {path!r} is not an IDX file (bad magic number).")
            dtype_code, ndim = header[2], header[3]
            dtypes = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
            if dtype_code not in dtypes:
                raise ValueError(f"{name}: {path!r} has unknown IDX type code {dtype_code:#x}.")
            dims_bytes = fh.read(4 * ndim)
            if len(dims_bytes) != 4 * ndim:
                raise ValueError(
                    f"{name}: {path!r} is truncated or corrupt: the header announces {ndim} "
                    f"dimensions but ends after {len(dims_bytes)} of their {4 * ndim} bytes."
                )
            dims = struct.unpack(f">{ndim}I", dims_bytes)
            data = np.frombuffer(fh.read(), dtype=dtypes[dtype_code])
    except (OSError, EOFError, zlib.error) as exc:  # gzip.BadGzipFile is an OSError
        raise ValueError(
            f"{name}: cannot read {path!r}: the file is corrupt or truncated ({exc})."
        ) from exc
    expected = int(np.prod(dims)) if dims else 0
    if data.size != expected:
        raise ValueError(
            f"{name}: {path!r} is truncated or corrupt: header says {dims} "
            f"({expected} values), found {data.size}."
        )
    return data.reshape(dims)


def load_mnist_idx(images_path: str, labels_path: str | None = None) -> ImageDataset:
    """MNIST-style IDX files (optionally gzipped) from local paths; pixels scaled to [0, 1]."""
    raw = _read_idx(images_path, "images_path")
    if raw.ndim != 3:
        raise ValueError(f"images_path: expected a 3-D IDX array (N, H, W); got shape {raw.shape}.")
    images = raw.astype(np.float64)
    if raw.dtype.kind in "ui":
        images = images / 255.0
    labels = None
    if labels_path is not None:
        labels = _read_idx(labels_path, "labels_path")
        if labels.shape != (raw.shape[0],):
            raise ValueError(
                f"labels_path: expected {raw.shape[0]} labels; got shape {labels.shape}."
            )
        labels = labels.astype(np.int64)
    return ImageDataset(images, labels, os.path.basename(images_path))


def load_npz(
    path: str,
    images_key: str = "images",
    labels_key: str | None = "labels",
    *,
    value_range: tuple[float, float] | None = None,
) -> ImageDataset:
    """Images (N, H, W) (or (N, H*W) square) from a ``.npz`` file, as floats in [0, 1].

    Args:
        path: the ``.npz`` file.
        images_key / labels_key: names of the arrays (labels optional).
        value_range: ``(low, high)``: the images' value range, mapped linearly onto [0, 1]
            (e.g. ``(0, 255)`` for float images stored as 0..255). Default: uint8 images are
            divided by 255 and float images must already lie in [0, 1]; anything else
            (negative values, 0..254 floats, ...) is refused with a ``ValueError``.

    Raises:
        ValueError: naming the file, for a missing, corrupt or truncated file, a missing
            array, a wrong shape or dtype, or values outside the range.
    """
    if not os.path.isfile(path):
        raise ValueError(f"path: no such file {path!r}.")
    if value_range is not None:
        ok = (
            isinstance(value_range, tuple | list)
            and len(value_range) == 2
            and all(isinstance(v, int | float) and np.isfinite(v) for v in value_range)
            and value_range[0] < value_range[1]
        )
        if not ok:
            raise ValueError(
                f"value_range must be (low, high) with finite low < high; got {value_range!r}."
            )
    # Read everything while the file is open: it is closed whatever happens.
    try:
        with open(path, "rb") as fh:
            archive = np.load(fh, allow_pickle=False)
            if not hasattr(archive, "files"):
                raise ValueError(
                    f"path: {path!r} holds a single array (.npy), not an .npz archive."
                )
            with archive as f:
                if images_key not in f.files:
                    raise ValueError(
                        f"images_key: {path!r} has no array {images_key!r}; it has {f.files}."
                    )
                images = np.asarray(f[images_key])
                labels = np.asarray(f[labels_key]) if labels_key and labels_key in f.files else None
    except ValueError as exc:
        if str(exc).startswith(("path:", "images_key:")):
            raise
        raise ValueError(f"path: cannot read {path!r} as .npz: {exc}") from exc
    except (OSError, EOFError, zipfile.BadZipFile, zlib.error, KeyError) as exc:
        raise ValueError(
            f"path: cannot read {path!r} as .npz: the file is corrupt or truncated ({exc})."
        ) from exc
    if images.ndim == 2:
        side = int(round(np.sqrt(images.shape[1])))
        if side * side != images.shape[1]:
            raise ValueError(
                f"images in {path!r} have shape {images.shape}: flat rows must be square images."
            )
        images = images.reshape(-1, side, side)
    if value_range is not None:
        if not (
            np.issubdtype(images.dtype, np.floating) or np.issubdtype(images.dtype, np.integer)
        ):
            raise ValueError(f"images in {path!r} must be numbers; got {images.dtype}.")
        lo, hi = (float(v) for v in value_range)
        images = (images.astype(np.float64) - lo) / (hi - lo)
    elif images.dtype == np.uint8:
        images = images.astype(np.float64) / 255.0
    elif np.issubdtype(images.dtype, np.floating):
        images = images.astype(np.float64)
    else:
        raise ValueError(
            f"images in {path!r} must be uint8 or float; got {images.dtype}. Pass "
            "value_range=(low, high) to map other integer images onto [0, 1]."
        )
    return ImageDataset(images, labels, os.path.basename(path))


def load_dataset(spec: str | None = None) -> ImageDataset:
    """``None``/``"digits"``: the bundled digits; a ``.npz`` path; or ``"idx:IMAGES[,LABELS]"``."""
    if spec is None or spec == "digits":
        return load_digits()
    if spec.startswith("idx:"):
        parts = spec[4:].split(",")
        return load_mnist_idx(parts[0], parts[1] if len(parts) > 1 else None)
    if spec.endswith(".npz"):
        return load_npz(spec)
    raise ValueError(
        f"data must be 'digits', a path to a .npz file, or 'idx:IMAGES[,LABELS]'; got {spec!r}."
    )


_COMPLEX = (torch.complex64, torch.complex128)


def to_complex(
    images: np.ndarray | torch.Tensor, transform: str = "identity", dtype=torch.complex64
) -> torch.Tensor:
    """Real images ``(N, H, W)`` → complex vectors ``(N, H*W)`` (identity or orthonormal FFT).

    ``"identity"``: $x + 0i$; ``"fft"``: the orthonormal 2-D FFT of each image. The result is
    always complex (``dtype``: ``torch.complex64`` or ``torch.complex128``). Complex input is
    refused (its imaginary part would be lost): data that are already complex need no
    transform.
    """
    if transform not in _TRANSFORMS:
        raise ValueError(f"transform must be one of {_TRANSFORMS}; got {transform!r}.")
    if dtype not in _COMPLEX:
        raise ValueError(
            f"dtype must be torch.complex64 or torch.complex128 (the result is complex); "
            f"got {dtype!r}."
        )
    if not isinstance(images, torch.Tensor):
        images = np.asarray(images)
        if images.dtype == object or not (
            np.issubdtype(images.dtype, np.number) or images.dtype == bool
        ):
            raise ValueError(f"images must be a real numeric array; got dtype {images.dtype}.")
        if np.iscomplexobj(images):
            raise ValueError(
                "images must be real; got a complex array. Complex data need no to_complex "
                "(pass them to the model as they are)."
            )
    x = torch.as_tensor(images)
    if x.is_complex():
        raise ValueError(
            f"images must be real; got a {x.dtype} tensor. Complex data need no to_complex "
            "(pass them to the model as they are)."
        )
    if x.ndim != 3:
        raise ValueError(f"images must have shape (N, H, W); got {tuple(x.shape)}.")
    x = x.to(torch.float64)
    if not bool(torch.isfinite(x).all()):
        raise ValueError("images contain NaN or inf; clean the data first.")
    xc = torch.fft.fft2(x, norm="ortho") if transform == "fft" else torch.complex(x, 0 * x)
    return xc.reshape(x.shape[0], -1).to(dtype)


def from_complex(x: torch.Tensor, shape: tuple[int, int], transform: str = "identity"):
    """Inverse of `to_complex` for pictures: complex ``(N, H*W)`` → real images ``(N, H, W)``.

    For ``"identity"`` the real part is returned (a decoder's imaginary part is dropped on
    purpose: pictures are real).
    """
    if transform not in _TRANSFORMS:
        raise ValueError(f"transform must be one of {_TRANSFORMS}; got {transform!r}.")
    if not isinstance(x, torch.Tensor) or not x.is_complex() or x.ndim != 2:
        raise ValueError(
            f"x must be a complex tensor of shape (N, H*W); got "
            f"{getattr(x, 'dtype', type(x).__name__)} {tuple(getattr(x, 'shape', ()))}."
        )
    try:
        H, W = (int(v) for v in shape)
    except (TypeError, ValueError):
        raise ValueError(f"shape must be (H, W); got {shape!r}.") from None
    if H < 1 or W < 1 or H * W != x.shape[1]:
        raise ValueError(f"shape {shape!r} does not match x's {x.shape[1]} values per row.")
    img = x.reshape(x.shape[0], H, W)
    if transform == "fft":
        img = torch.fft.ifft2(img, norm="ortho")
    return img.real
