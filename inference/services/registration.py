"""Registering a model: check it completely, then store its row and weights in one go.

Torch is imported only where a checkpoint is read or pretrained weights are fetched;
a randomly initialised model (a seed that rebuilds its weights in the worker) is
checked against the torch-free registry of :mod:`inference.archs`, so the admin and
the demo register one without loading the CNN runtime.
"""

from __future__ import annotations

import os
import secrets
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from django.core.files import File
from django.db import transaction
from django.utils.text import slugify

from audit.models import AuditEvent
from audit.services import audit_log
from cases.models import Diagnosis
from inference.archs import get_spec
from inference.models import RegisteredModel
from inference.preprocessing import Preprocessing
from inference.services.errors import InferenceError

if TYPE_CHECKING:
    from inference.nets import Net


def _parse_classes(classes: Sequence[str] | str | None) -> list[str] | None:
    if classes is None:
        return None
    if isinstance(classes, str):
        classes = [c for c in classes.split(",")]
    return [c.strip() for c in classes if c.strip()]


def _canonical_classes(classes: list[str]) -> list[str]:
    """The known diagnosis codes, spelt as stored; raises on unknown or repeated codes."""
    if not classes:
        raise InferenceError("classes: give at least two diagnosis codes")
    known = {d.code.lower(): d.code for d in Diagnosis.objects.all()}
    unknown = [c for c in classes if c.lower() not in known]
    if unknown:
        raise InferenceError(
            f"unknown diagnosis code(s): {', '.join(unknown)}; known: {', '.join(sorted(known.values()))}"
        )
    canonical = [known[c.lower()] for c in classes]
    repeated = sorted({c for c in canonical if canonical.count(c) > 1})
    if repeated:
        raise InferenceError(f"classes must be distinct; repeated: {', '.join(repeated)}")
    if len(canonical) < 2:
        raise InferenceError("classes: give at least two diagnosis codes")
    return canonical


def _classifier_key(model: Net) -> str:
    head = model.backbone.get_classifier()
    return next(name for name, module in model.named_modules() if module is head) + ".weight"


def _check_output_count(model: Net, state_dict: dict, classes: list[str]) -> None:
    """A clearer message than a shape mismatch when only the class count is wrong."""
    key = _classifier_key(model)
    tensor = state_dict.get(key, state_dict.get(key.removeprefix("backbone.")))
    if tensor is not None and tensor.ndim == 2 and tensor.shape[0] != len(classes):
        raise InferenceError(
            f"the checkpoint has {tensor.shape[0]} outputs ({key} has shape "
            f"{tuple(tensor.shape)}) but {len(classes)} classes were given"
        )


@dataclass
class _Validated:
    arch: str
    classes: list[str]
    preprocessing: Preprocessing
    weights_path: Path | None
    sha256: str
    source: str
    trained: bool
    meta: dict


def _copy_to_temp(weights: str | os.PathLike | BinaryIO, folder: str) -> Path:
    path = Path(folder) / "weights.pt"
    if isinstance(weights, str | os.PathLike):
        if not Path(weights).is_file():
            raise InferenceError(f"no such weights file: {weights}")
        shutil.copyfile(weights, path)
    else:
        if hasattr(weights, "seek"):
            weights.seek(0)
        with open(path, "wb") as out:
            if hasattr(weights, "chunks"):  # Django's UploadedFile
                for chunk in weights.chunks():
                    out.write(chunk)
            else:
                shutil.copyfileobj(weights, out, 1 << 20)
    return path


def _validate_registration(
    *,
    name: str,
    arch: str | None,
    classes: list[str] | None,
    weights_path: Path | None,
    pretrained: bool,
    img_size: int | None,
    tmp: str,
) -> _Validated:
    if not name or slugify(name) != name:
        raise InferenceError(
            f"name {name!r} must be a slug (letters, digits, hyphens, underscores)"
        )
    if RegisteredModel.objects.filter(name=name).exists():
        raise InferenceError(f"a model named {name!r} is already registered")
    if img_size is not None and img_size < 32:
        raise InferenceError("img_size must be at least 32 pixels")
    if weights_path is not None and pretrained:
        raise InferenceError("give either weights or pretrained, not both")

    ckpt = None
    if weights_path is not None:
        from inference.checkpoints import CheckpointError, load_checkpoint

        try:
            ckpt = load_checkpoint(weights_path)
        except CheckpointError as exc:
            raise InferenceError(str(exc)) from exc
        if ckpt.arch is not None and arch is not None and ckpt.arch != arch:
            raise InferenceError(f"the checkpoint is a {ckpt.arch}, not a {arch}")
        arch = arch or ckpt.arch
    if arch is None:
        raise InferenceError("give the architecture (the checkpoint does not say it)")
    try:
        get_spec(arch)
    except ValueError as exc:
        raise InferenceError(str(exc)) from None

    if ckpt is not None and ckpt.classes is not None:
        ckpt_classes = _canonical_classes(list(ckpt.classes))
        if classes is not None and _canonical_classes(classes) != ckpt_classes:
            raise InferenceError(
                f"the checkpoint's classes are {','.join(ckpt_classes)}, not {','.join(classes)}"
            )
        classes = ckpt_classes
    if classes is None:
        raise InferenceError("give the classes (the checkpoint does not list them)")
    classes = _canonical_classes(classes)

    if ckpt is not None and ckpt.preprocessing is not None:
        try:
            preprocessing = Preprocessing.from_dict(dict(ckpt.preprocessing))
        except (TypeError, ValueError) as exc:
            raise InferenceError(f"the checkpoint's preprocessing is not valid: {exc}") from None
        if img_size is not None and img_size != preprocessing.input_size:
            raise InferenceError(
                f"the checkpoint was made for {preprocessing.input_size} px input, not {img_size}"
            )
    else:
        preprocessing = Preprocessing.for_arch(arch, img_size=img_size)

    meta: dict = {}
    if ckpt is not None:
        from inference.checkpoints import CheckpointError, apply_weights, sha256_file
        from inference.nets import build_model

        model = build_model(arch, num_classes=len(classes), img_size=preprocessing.input_size)
        _check_output_count(model, ckpt.state_dict, classes)
        try:
            apply_weights(model, ckpt.state_dict)
        except CheckpointError as exc:
            raise InferenceError(str(exc)) from exc
        meta["checkpoint"] = {k: v for k, v in ckpt.meta.items() if k != "history"}
        return _Validated(
            arch, classes, preprocessing, weights_path, sha256_file(weights_path), "file",
            ckpt.trained, meta,
        )  # fmt: skip
    if pretrained:
        # ImageNet backbone with fresh heads, pinned as a file: later runs need no
        # network and give the same numbers.
        from inference.checkpoints import save_checkpoint
        from inference.nets import build_model

        model = build_model(
            arch, num_classes=len(classes), pretrained=True, img_size=preprocessing.input_size
        )
        path = Path(tmp) / "imagenet.pt"
        sha = save_checkpoint(
            path,
            model=model,
            arch=arch,
            classes=classes,
            preprocessing=preprocessing,
            meta={"trained": False, "pretrained": True},
        )
        return _Validated(arch, classes, preprocessing, path, sha, "imagenet", False, meta)
    # Random initialisation: a seed rebuilds exactly these weights in every worker.
    meta["init_seed"] = secrets.randbelow(2**31)
    return _Validated(arch, classes, preprocessing, None, "", "random", False, meta)


def model_register(
    *,
    name: str,
    arch: str | None,
    classes: Sequence[str] | str | None,
    weights: str | os.PathLike | BinaryIO | None = None,
    pretrained: bool = False,
    description: str = "",
    img_size: int | None = None,
    actor=None,
    actor_name: str | None = None,
) -> RegisteredModel:
    """Check a model completely, then store it (row and weights file) in one go.

    ``weights``: a path or binary file object holding our checkpoint format, a bare
    state_dict or a training-script dict. Arch, classes and preprocessing come from our
    checkpoint format where it has them (a conflicting argument is an error); otherwise
    from the arguments and the architecture's defaults (``img_size`` overrides the input
    size). Without weights the model is ``pretrained`` (timm's ImageNet backbone, saved
    as the weights file; needs network access once) or randomly initialised from a
    stored seed; either way it is flagged untrained. Raises :class:`InferenceError`.
    """
    with tempfile.TemporaryDirectory(prefix="readerstudy-register-") as tmp:
        weights_path = _copy_to_temp(weights, tmp) if weights is not None else None
        v = _validate_registration(
            name=name,
            arch=arch,
            classes=_parse_classes(classes),
            weights_path=weights_path,
            pretrained=pretrained,
            img_size=img_size,
            tmp=tmp,
        )
        registered = RegisteredModel(
            name=name,
            arch=v.arch,
            classes=v.classes,
            preprocessing=v.preprocessing.to_dict(),
            weights_sha256=v.sha256,
            weights_source=v.source,
            trained=v.trained,
            description=description,
            meta=v.meta,
        )
        stored = None
        try:
            with transaction.atomic():
                if v.weights_path is not None:
                    with open(v.weights_path, "rb") as f:
                        registered.weights.save(f"{name}.pt", File(f), save=False)
                    stored = registered.weights.name
                registered.save()
                audit_log(
                    action=AuditEvent.Action.MODEL_REGISTER,
                    actor=actor,
                    actor_name=actor_name,
                    obj=registered,
                    after={
                        "name": name,
                        "arch": v.arch,
                        "classes": v.classes,
                        "weights_sha256": v.sha256,
                        "weights_source": v.source,
                        "trained": v.trained,
                    },
                )
        except BaseException:
            if stored:
                registered.weights.storage.delete(stored)
            raise
    return registered
