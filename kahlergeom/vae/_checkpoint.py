"""The checkpoint file format of `Trainer`: what it holds, how it is read and checked.

A checkpoint is a ``torch.save`` dictionary (read back with ``weights_only=True``)::

    format          "kahlergeom-checkpoint"
    format_version  1
    model_config    ComplexVAE.config (plain types; rebuilds the model)
    dtype           "complex64" or "complex128" (the model's dtype)
    data_transform  "identity", "fft" or None (unknown: the trainer was not told)
    train_config    {"seed", "batch_size", "lr", "kl_weight", "regulariser"} of the run
    model, optimizer, generator, epoch, history

Every reader validates the whole file *before* anything is loaded into a model, so a wrong
file never leaves a model or optimiser half overwritten: `read_checkpoint` checks the
structure, `check_compatible` compares a checkpoint with the model, data transform and run
it is about to be loaded into, and each problem is a ``ValueError`` naming the file and the
field. Files written before the format was versioned (no ``format`` entry but the training
keys) are read as version 0: their data transform is unknown.
"""

from __future__ import annotations

import os

import torch

FORMAT = "kahlergeom-checkpoint"
FORMAT_VERSION = 1
TRANSFORMS = ("identity", "fft")
_TRAINING_KEYS = ("model", "model_config", "optimizer", "generator", "epoch", "history")
_CONFIG_KEYS = ("data_dim", "latent_dim", "hidden", "dtype")


def _fail(path: str, what: str) -> ValueError:
    return ValueError(f"checkpoint {path!r}: {what}")


def atomic_save(obj, path: str) -> None:
    """``torch.save`` to a temporary file in the same folder, then ``os.replace``."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    tmp = f"{path}.tmp-{os.getpid()}"
    try:
        torch.save(obj, tmp)
        os.replace(tmp, path)
    except BaseException:
        # A failed or interrupted save leaves the old checkpoint and no partial temp file.
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def read_checkpoint(path, *, training: bool = True) -> dict:
    """Load and validate a checkpoint file; return its dictionary (nothing is applied).

    Args:
        path: the file.
        training: also require the optimiser, generator, epoch and history (needed to resume;
            `load_model` needs only the model and its configuration).

    Raises:
        ValueError: naming the file and the missing or malformed field, for a missing file,
            a file torch cannot read, a torch file that is not a kahlergeom checkpoint, an
            unknown format version, or a malformed entry.
    """
    if not isinstance(path, str | os.PathLike):
        raise ValueError(f"path must be a file path; got {type(path).__name__}.")
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ValueError(f"path: no checkpoint at {path!r}.")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # any failure of torch.load: not a readable torch file
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise _fail(path, f"is not a readable kahlergeom checkpoint ({first}).") from exc
    if not isinstance(state, dict):
        raise _fail(
            path, f"is not a kahlergeom checkpoint: it holds a {type(state).__name__}, not a dict."
        )
    if "format" in state:
        if state["format"] != FORMAT:
            raise _fail(path, f"is not a kahlergeom checkpoint (format {state['format']!r}).")
        version = state.get("format_version")
        if not isinstance(version, int) or not 0 <= version <= FORMAT_VERSION:
            raise _fail(
                path,
                f"has format_version {version!r}; this kahlergeom reads versions up to "
                f"{FORMAT_VERSION}. Upgrade kahlergeom or retrain.",
            )
    elif "model" in state and "model_config" in state:
        state = {**state, "format": FORMAT, "format_version": 0, "data_transform": None}
    else:
        raise _fail(
            path,
            "is not a kahlergeom checkpoint: it has no 'format' entry and no model; its keys "
            f"are {sorted(map(str, state))}.",
        )
    required = _TRAINING_KEYS if training else ("model", "model_config")
    missing = [k for k in required if k not in state]
    if missing:
        what = "resume training" if training else "load the model"
        raise _fail(path, f"has no {', '.join(repr(k) for k in missing)} entry; cannot {what}.")
    _check_model_entries(state, path)
    if training:
        _check_training_entries(state, path)
    transform = state.get("data_transform")
    if transform is not None and transform not in TRANSFORMS:
        raise _fail(path, f"data_transform must be one of {TRANSFORMS} or None; got {transform!r}.")
    state["path"] = path
    return state


def _check_model_entries(state: dict, path: str) -> None:
    cfg = state["model_config"]
    if not isinstance(cfg, dict):
        raise _fail(path, f"model_config must be a dict; got {type(cfg).__name__}.")
    missing = [k for k in _CONFIG_KEYS if k not in cfg]
    if missing:
        raise _fail(path, f"model_config has no {', '.join(map(repr, missing))} entry.")
    if cfg["dtype"] not in ("complex64", "complex128"):
        got = cfg["dtype"]
        raise _fail(path, f"model_config dtype must be complex64 or complex128; got {got!r}.")
    if state.get("dtype", cfg["dtype"]) != cfg["dtype"]:
        raise _fail(
            path, f"dtype {state['dtype']!r} disagrees with model_config dtype {cfg['dtype']!r}."
        )
    weights = state["model"]
    if not isinstance(weights, dict) or not all(
        isinstance(v, torch.Tensor) for v in weights.values()
    ):
        raise _fail(path, "model must be a state dict (names → tensors).")
    dtype = getattr(torch, cfg["dtype"])
    real = torch.float32 if dtype == torch.complex64 else torch.float64
    for key, value in weights.items():
        if value.is_floating_point() or value.is_complex():
            if value.dtype not in (dtype, real):
                raise _fail(
                    path,
                    f"model weight {key!r} is {value.dtype}, but the checkpoint's model is "
                    f"{cfg['dtype']}.",
                )


def _check_training_entries(state: dict, path: str) -> None:
    gen = state["generator"]
    if not (isinstance(gen, torch.Tensor) and gen.dtype == torch.uint8 and gen.ndim == 1):
        raise _fail(path, "generator must be a torch.Generator state (a uint8 tensor).")
    epoch = state["epoch"]
    if isinstance(epoch, bool) or not isinstance(epoch, int) or epoch < 0:
        raise _fail(path, f"epoch must be an integer >= 0; got {epoch!r}.")
    opt = state["optimizer"]
    if not (isinstance(opt, dict) and "state" in opt and "param_groups" in opt):
        raise _fail(path, "optimizer must be an optimiser state dict ('state', 'param_groups').")
    hist = state["history"]
    fields = ("loss", "elbo", "regulariser")
    if not (isinstance(hist, dict) and set(hist) == set(fields)):
        raise _fail(path, f"history must be a dict with keys {fields}.")
    for k in fields:
        if not isinstance(hist[k], list) or len(hist[k]) != epoch:
            raise _fail(path, f"history[{k!r}] must be a list of {epoch} numbers (one per epoch).")


def check_model_matches(state: dict, model) -> None:
    """The checkpoint's model configuration and weights fit ``model`` exactly, or ValueError."""
    path = state["path"]
    saved, ours = state["model_config"], model.config
    for key in sorted(set(saved) | set(ours)):
        if saved.get(key) != ours.get(key):
            raise _fail(
                path,
                f"was written for a model with {key}={saved.get(key)!r}, but this model has "
                f"{key}={ours.get(key)!r}. Build the model with the checkpoint's configuration "
                "(kahlergeom.vae.load_model) or start afresh (resume=False / --restart).",
            )
    expected = model.state_dict()
    weights = state["model"]
    if set(weights) != set(expected):
        extra = sorted(set(weights) - set(expected))
        lacking = sorted(set(expected) - set(weights))
        raise _fail(
            path, f"model weights do not fit: unexpected {extra[:5]}, missing {lacking[:5]}."
        )
    for key, value in expected.items():
        got = weights[key]
        if got.shape != value.shape or got.dtype != value.dtype:
            raise _fail(
                path,
                f"model weight {key!r} is {got.dtype} {tuple(got.shape)}; the model needs "
                f"{value.dtype} {tuple(value.shape)}.",
            )


def check_optimizer_matches(state: dict, optimizer) -> None:
    """The saved optimiser state has the parameter groups of ``optimizer`` and right shapes."""
    path = state["path"]
    saved = state["optimizer"]
    ours = optimizer.state_dict()
    sizes = [len(g.get("params", ())) for g in saved["param_groups"]]
    if sizes != [len(g["params"]) for g in ours["param_groups"]]:
        raise _fail(path, "optimizer state does not fit this model's parameters.")
    params = [p for g in optimizer.param_groups for p in g["params"]]
    ids = [i for g in saved["param_groups"] for i in g["params"]]
    by_id = dict(zip(ids, params, strict=True))
    for pid, entry in saved["state"].items():
        p = by_id.get(pid)
        if p is None or not isinstance(entry, dict):
            raise _fail(path, f"optimizer state names an unknown parameter {pid!r}.")
        for name, value in entry.items():
            if not isinstance(value, torch.Tensor) or value.ndim == 0:
                continue
            if value.shape != p.shape or value.dtype != p.dtype:
                raise _fail(
                    path,
                    f"optimizer state {name!r} of parameter {pid} is {value.dtype} "
                    f"{tuple(value.shape)}; the parameter is {p.dtype} {tuple(p.shape)}.",
                )


def check_run_matches(state: dict, train_config: dict) -> None:
    """The saved run's seed, batch size, learning rate, KL weight and regulariser are ours."""
    saved = state.get("train_config")
    if saved is None:  # version 0: not recorded
        return
    for key in sorted(set(saved) | set(train_config)):
        if saved.get(key) != train_config.get(key):
            raise _fail(
                state["path"],
                f"was written by a run with {key}={saved.get(key)!r}, but this run has "
                f"{key}={train_config.get(key)!r}; a resumed run continues the saved one. Use "
                "the same options, or start afresh (resume=False / --restart).",
            )


def check_transform(state: dict, transform: str | None) -> str | None:
    """Compare the caller's data transform with the checkpoint's; return the one to use.

    ``transform=None`` means "use the checkpoint's" (``None`` when it is unknown).
    """
    saved = state.get("data_transform")
    if transform is None:
        return saved
    if transform not in TRANSFORMS:
        raise ValueError(f"transform must be one of {TRANSFORMS}; got {transform!r}.")
    if saved is not None and saved != transform:
        raise _fail(
            state["path"],
            f"the model was trained on {saved!r}-transformed data, not {transform!r}; pass "
            f"transform={saved!r} (or leave it unset to use the checkpoint's).",
        )
    return transform
