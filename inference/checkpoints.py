"""Reading, checking and writing model weights.

Our own format is a dict saved with ``torch.save``::

    {"format": "readerstudy-checkpoint/1", "arch": "efficientnet_b4_aux",
     "classes": ["LP", ...], "preprocessing": Preprocessing.to_dict(),
     "meta": {"trained": True, "epochs": ..., ...}, "state_dict": {...}}

:func:`load_checkpoint` also accepts a bare state_dict or the usual training-script
dicts (``state_dict``/``model``/``model_state_dict``), so a researcher can register
weights trained elsewhere and supply arch, classes and preprocessing by hand. Loading
uses ``weights_only=True``: a checkpoint cannot run code.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import torch
from torch import nn

from inference.nets import Net, build_model
from inference.preprocessing import Preprocessing

FORMAT = "readerstudy-checkpoint/1"
_STATE_DICT_KEYS = ("state_dict", "model_state_dict", "model", "net", "weights")
_STRIP_PREFIXES = ("module.", "_orig_mod.")  # DataParallel/DDP and torch.compile wrappers
_LIST_AT_MOST = 5


class CheckpointError(ValueError):
    """The file is not a usable checkpoint, or its weights do not fit the model."""


@dataclass
class Checkpoint:
    """A loaded checkpoint. Fields other than ``state_dict`` are None when the file lacks them."""

    state_dict: dict[str, torch.Tensor]
    arch: str | None = None
    classes: list[str] | None = None
    preprocessing: dict | None = None
    meta: dict = field(default_factory=dict)

    @property
    def trained(self) -> bool:
        """False only when the checkpoint says so (``meta["trained"] is False``)."""
        return self.meta.get("trained", True) is not False


def load_checkpoint(source: str | os.PathLike | BinaryIO) -> Checkpoint:
    """Read a checkpoint from a path or a binary file object; raises :class:`CheckpointError`."""
    try:
        obj = torch.load(source, map_location="cpu", weights_only=True)
    except OSError as exc:
        raise CheckpointError(f"cannot read checkpoint: {exc}") from exc
    except Exception as exc:  # arbitrary bytes fail the unpickler in arbitrary ways
        if "Unsupported global" in str(exc):
            reason = "it holds pickled Python objects (e.g. a whole model); save a state_dict"
        else:
            reason = f"{type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}"
        raise CheckpointError(
            f"not a PyTorch checkpoint that can be loaded safely ({reason})"
        ) from exc
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"not a checkpoint: the file holds a {type(obj).__name__}")

    state_dict = _find_state_dict(obj)
    is_wrapper = state_dict is not obj
    state_dict = _strip_prefixes(state_dict)
    if not is_wrapper:
        return Checkpoint(state_dict=state_dict)
    classes = obj.get("classes")
    return Checkpoint(
        state_dict=state_dict,
        arch=obj.get("arch"),
        classes=list(classes) if classes is not None else None,
        preprocessing=obj.get("preprocessing"),
        meta=dict(obj.get("meta") or {}),
    )


def _is_state_dict(obj) -> bool:
    return (
        isinstance(obj, Mapping)
        and len(obj) > 0
        and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items())
    )


def _find_state_dict(obj: Mapping) -> Mapping:
    if _is_state_dict(obj):
        return obj
    for key in _STATE_DICT_KEYS:
        if _is_state_dict(obj.get(key)):
            return obj[key]
    raise CheckpointError(
        "not a checkpoint: no state_dict found (expected a mapping of parameter names to "
        f"tensors, or one under any of {list(_STATE_DICT_KEYS)}); top-level keys: "
        f"{_few(sorted(map(str, obj)))}"
    )


def _strip_prefixes(state_dict: Mapping) -> dict[str, torch.Tensor]:
    out = {}
    for key, value in state_dict.items():
        for prefix in _STRIP_PREFIXES:
            while key.startswith(prefix):
                key = key[len(prefix) :]
        out[key] = value
    return out


def _few(keys: list[str]) -> str:
    shown = ", ".join(keys[:_LIST_AT_MOST])
    more = len(keys) - _LIST_AT_MOST
    return f"{shown}, ... ({more} more)" if more > 0 else shown


def _align_to_wrapper(model: nn.Module, state_dict: dict) -> dict:
    """Map a plain timm state_dict onto our ``Net`` wrapper (``backbone.`` prefix).

    Only when none of the given keys match the model but all of them do with the prefix.
    """
    expected = model.state_dict().keys()
    if not isinstance(model, Net) or any(k in expected for k in state_dict):
        return state_dict
    prefixed = {f"backbone.{k}": v for k, v in state_dict.items()}
    return prefixed if all(k in expected for k in prefixed) else state_dict


def apply_weights(model: nn.Module, state_dict: Mapping[str, torch.Tensor]) -> None:
    """Load ``state_dict`` into ``model`` strictly, or raise :class:`CheckpointError`.

    The message names the first key (in the model's order) whose shape differs, with
    both shapes, and lists a few missing and unexpected keys. BatchNorm's
    ``num_batches_tracked`` counters may be absent (older checkpoints lack them).
    """
    state_dict = _align_to_wrapper(model, _strip_prefixes(state_dict))
    expected = model.state_dict()
    problems = []
    for key, tensor in expected.items():
        if key in state_dict and tuple(state_dict[key].shape) != tuple(tensor.shape):
            problems.append(
                f"shape mismatch for {key}: checkpoint has {tuple(state_dict[key].shape)}, "
                f"model expects {tuple(tensor.shape)}"
            )
            break
    missing = [k for k in expected if k not in state_dict and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in state_dict if k not in expected]
    if missing:
        problems.append(f"{len(missing)} missing key(s): {_few(missing)}")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected key(s): {_few(unexpected)}")
    if problems:
        raise CheckpointError("weights do not fit the model: " + "; ".join(problems))
    model.load_state_dict(state_dict, strict=False)


def sha256_file(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file's bytes, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def save_checkpoint(
    path: str | os.PathLike,
    *,
    model: nn.Module,
    arch: str,
    classes: list[str],
    preprocessing: Preprocessing | dict,
    meta: dict | None = None,
) -> str:
    """Write our checkpoint format atomically; returns the file's SHA-256."""
    if isinstance(preprocessing, Preprocessing):
        preprocessing = preprocessing.to_dict()
    num_classes = getattr(model, "num_classes", None)
    if num_classes is not None and num_classes != len(classes):
        raise ValueError(f"model has {num_classes} outputs but {len(classes)} classes were given")
    state_dict = {
        k: v.detach().to("cpu", memory_format=torch.contiguous_format).clone()
        for k, v in model.state_dict().items()
    }
    payload = {
        "format": FORMAT,
        "arch": arch,
        "classes": list(classes),
        "preprocessing": dict(preprocessing),
        "meta": dict(meta or {}),
        "state_dict": state_dict,
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(payload, f)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return sha256_file(path)


@dataclass
class LoadedModel:
    model: Net
    arch: str
    classes: list[str]
    preprocessing: Preprocessing
    meta: dict


def load_model(
    source: str | os.PathLike | BinaryIO | Checkpoint,
    *,
    arch: str | None = None,
    classes: list[str] | None = None,
    preprocessing: Preprocessing | dict | None = None,
) -> LoadedModel:
    """Build the checkpoint's architecture and load its weights, in eval mode.

    Keyword arguments fill in (or override) what a foreign checkpoint does not carry;
    preprocessing defaults to the architecture's registered one.
    """
    ckpt = source if isinstance(source, Checkpoint) else load_checkpoint(source)
    arch = arch or ckpt.arch
    classes = classes or ckpt.classes
    if arch is None or classes is None:
        raise CheckpointError("the checkpoint does not say its architecture and classes; pass them")
    if preprocessing is None:
        preprocessing = ckpt.preprocessing
    if isinstance(preprocessing, Mapping):
        preprocessing = Preprocessing.from_dict(dict(preprocessing))
    if preprocessing is None:
        preprocessing = Preprocessing.for_arch(arch)
    model = build_model(arch, num_classes=len(classes), img_size=preprocessing.input_size)
    apply_weights(model, ckpt.state_dict)
    return LoadedModel(model.eval(), arch, list(classes), preprocessing, dict(ckpt.meta))


def checkpoint_bytes(**kwargs) -> bytes:
    """The bytes :func:`save_checkpoint` would write (for uploads and tests)."""
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "model.pt"
        save_checkpoint(path, **kwargs)
        return path.read_bytes()
