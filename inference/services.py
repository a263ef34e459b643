"""Every write of the inference app: registering models, starting, running and
reconciling inference runs.

A run reads only each case's DERMOSCOPIC image (the CNN of Zhu et al. 2021 saw only
that one), in its web-size derivative: the importer made it EXIF-rotated, in sRGB and at
most 1600 px (cases.imaging), so every model input is the image a reader saw, upright,
and decoding stays cheap even for 20-megapixel originals; the network input (380 px
for EfficientNet-b4) is far below 1600 px, so the derivative loses nothing the model
could use. The original is the fallback when a case has no derivative.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import secrets
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import BinaryIO

import numpy as np
import torch
from django.conf import settings
from django.core.files import File
from django.core.files.base import ContentFile
from django.db import IntegrityError, transaction
from django.db.models import Count, Q
from django.utils import timezone
from django.utils.text import slugify

from audit.models import AuditEvent
from audit.services import audit_log
from cases.models import Case, CaseImage, Diagnosis, Study
from inference.checkpoints import (
    Checkpoint,
    CheckpointError,
    apply_weights,
    load_checkpoint,
    save_checkpoint,
    sha256_file,
)
from inference.gradcam import gradcam, overlay_png
from inference.models import InferenceRun, Prediction, RegisteredModel
from inference.nets import Net, build_model, get_spec
from inference.predict import ImagePrediction, ImageReadError, iter_predictions
from inference.preprocessing import Preprocessing
from readerstudy.tasks import send_on_commit, send_pending

logger = logging.getLogger(__name__)

DEFAULT_BATCH_SIZE = 16
# Grad-CAM keeps every activation for the backward pass: a few images at a time bound
# the memory (about 0.3 GB per 380 px image for EfficientNet-b4).
GRADCAM_CHUNK = 4


class InferenceError(ValueError):
    """A model cannot be registered or run as asked; the message says why."""


def stale_after() -> timedelta:
    """How long a running run may go without a heartbeat before it counts as dead."""
    return timedelta(seconds=settings.READERSTUDY_INFERENCE_STALE_SECONDS)


# --- registering models --------------------------------------------------------------------


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

    ckpt: Checkpoint | None = None
    if weights_path is not None:
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


def model_load(*, model: RegisteredModel) -> tuple[Net, Preprocessing]:
    """The registered network in eval mode with frozen weights, and its preprocessing."""
    preprocessing = Preprocessing.from_dict(dict(model.preprocessing))
    if model.weights:
        with model.weights.open("rb") as f:
            data = f.read()
        if model.weights_sha256:
            digest = hashlib.sha256(data).hexdigest()
            if digest != model.weights_sha256:
                raise InferenceError(
                    f"the weights file of {model.name} changed since registration "
                    f"(sha256 {digest[:12]}..., registered {model.weights_sha256[:12]}...)"
                )
        ckpt = load_checkpoint(io.BytesIO(data))
        net = build_model(
            model.arch, num_classes=len(model.classes), img_size=preprocessing.input_size
        )
        apply_weights(net, ckpt.state_dict)
    else:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(model.meta.get("init_seed", 0)))
            net = build_model(
                model.arch, num_classes=len(model.classes), img_size=preprocessing.input_size
            )
    return net.eval().requires_grad_(False), preprocessing


# --- starting runs ---------------------------------------------------------------------------


def _check_choices(model: RegisteredModel, study: Study) -> list[str]:
    choices = study.choice_codes()
    missing = [c for c in choices if c not in model.classes]
    if not choices:
        raise InferenceError(f"study {study.slug!r} has no diagnosis choices")
    if missing:
        raise InferenceError(
            f"model {model.name!r} has no output for the study's choice(s) "
            f"{', '.join(missing)} (its classes: {', '.join(model.classes)})"
        )
    return choices


def _is_fresh(run: InferenceRun, now) -> bool:
    last = run.heartbeat_at or run.created_at
    return last >= now - stale_after()


def _enqueue(run: InferenceRun, batch_size: int | None) -> None:
    """Send the run's task when the transaction commits (an outbox: see
    :mod:`readerstudy.tasks`); while the broker is down the run waits as queued."""
    from inference.tasks import run_inference

    kwargs = {"run_id": run.pk}
    if batch_size:
        kwargs["batch_size"] = batch_size
    if run.sent_at is not None:
        run.sent_at = None
        InferenceRun.objects.filter(pk=run.pk).update(sent_at=None)
    send_on_commit(run_inference, kwargs=kwargs, row_model=InferenceRun, pk=run.pk)


def inference_runs_send_pending() -> list[InferenceRun]:
    """Send every queued run whose task the broker never took (it was down); returns
    the runs sent now. Called periodically by Celery beat and at each worker's start."""
    from inference.tasks import run_inference

    return send_pending(run_inference, row_model=InferenceRun, kwarg="run_id")


def inference_runs_recover(*, worker: str) -> list[InferenceRun]:
    """Re-queue the runs that worker node ``worker`` was running when it died.

    Called when a worker starts: a node name runs one process at a time, so a run still
    marked running by the same name was cut off by a crash (SIGKILL, power loss) and
    resumes now, without waiting for the heartbeat to go stale.
    """
    with transaction.atomic():
        runs = list(
            InferenceRun.objects.select_for_update().filter(
                status=InferenceRun.Status.RUNNING, worker=worker
            )
        )
        for run in runs:
            run.status = InferenceRun.Status.QUEUED
            run.sent_at = None  # sent below, with whatever else waits
            run.error = f"re-queued at {timezone.now():%Y-%m-%d %H:%M:%S}: {worker} restarted"
            run.save(update_fields=["status", "sent_at", "error"])
            logger.warning("inference run %s was cut off on %s; re-queued", run.pk, worker)
    if runs:
        inference_runs_send_pending()
    return runs


def inference_run_start(
    *,
    model: RegisteredModel,
    study: Study,
    batch_size: int | None = None,
    enqueue: bool = True,
    actor=None,
    actor_name: str | None = None,
) -> InferenceRun:
    """Queue a run of ``model`` over ``study`` (the task is sent when the transaction
    commits). An active run of the same pair (queued or running, heard from within
    :func:`stale_after`) is returned instead of a second one; older ones that went
    silent are marked failed. ``enqueue=False`` only creates the row (for ``--sync``).
    Raises :class:`InferenceError` when the model lacks one of the study's choices.
    """
    _check_choices(model, study)
    now = timezone.now()
    with transaction.atomic():
        RegisteredModel.objects.select_for_update().filter(pk=model.pk).first()
        active = InferenceRun.objects.filter(
            model=model,
            study=study,
            status__in=[InferenceRun.Status.QUEUED, InferenceRun.Status.RUNNING],
        ).order_by("-created_at", "-pk")
        for run in active:
            if _is_fresh(run, now):
                return run
        # Without a task (``--sync``) the caller runs it: nothing waits to be sent.
        run = InferenceRun.objects.create(
            model=model, study=study, total=study.cases.count(), sent_at=None if enqueue else now
        )
        audit_log(
            action=AuditEvent.Action.INFERENCE_RUN,
            actor=actor,
            actor_name=actor_name,
            study=study.slug,
            obj=run,
            after={"model": model.name, "trained": model.trained, "cases": run.total},
        )
        active.exclude(pk=run.pk).update(
            status=InferenceRun.Status.FAILED,
            error=f"no heartbeat for {stale_after()}; superseded by run {run.pk}",
            finished_at=now,
        )
        if enqueue:
            _enqueue(run, batch_size)
    return run


# --- running ---------------------------------------------------------------------------------


def _image_source(image: CaseImage) -> str | bytes:
    f = image.web if image.web else image.original
    try:
        return f.path
    except NotImplementedError:  # object storage: no local path
        with f.open("rb") as handle:
            return handle.read()


def _chunks(items: Sequence, size: int) -> Iterator[Sequence]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _gradcam_pngs(
    net: Net, preprocessing: Preprocessing, results: list, classes: list[str]
) -> list[bytes | None]:
    """A Grad-CAM overlay for each successful result, explaining its restricted top-1."""
    pngs: list[bytes | None] = [None] * len(results)
    ok = [i for i, r in enumerate(results) if isinstance(r, ImagePrediction)]
    for part in _chunks(ok, GRADCAM_CHUNK):
        pixels = torch.from_numpy(np.stack([results[i].pixels for i in part]))
        x = preprocessing.normalize_batch(pixels).contiguous(memory_format=torch.channels_last)
        cams, _ = gradcam(net, x, class_index=[classes.index(results[i].top1) for i in part])
        for i, cam in zip(part, cams, strict=True):
            pngs[i] = overlay_png(results[i].pixels, cam)
    return pngs


def _store(
    *,
    run: InferenceRun,
    cases: Sequence[Case],
    results: Sequence[ImagePrediction | ImageReadError | str],
    pngs: Sequence[bytes | None],
    seconds: float | None,
    diagnoses: dict[str, Diagnosis],
) -> int:
    """Write one batch in one transaction; returns how many rows were new. A case that
    already has a prediction of this model keeps it (the constraint decides)."""
    created = 0
    with transaction.atomic():
        for case, result, png in zip(cases, results, pngs, strict=True):
            prediction = Prediction(model_id=run.model_id, case=case, run=run, seconds=seconds)
            if isinstance(result, ImagePrediction):
                prediction.probabilities = result.probabilities
                prediction.choice = diagnoses[result.top1]
                prediction.choice_probabilities = result.choice_probabilities
                prediction.embedding = np.asarray(result.embedding, dtype="<f4").tobytes()
            else:
                prediction.status = Prediction.Status.FAILED
                prediction.error = str(result)[:2000]
            if png is not None:
                prediction.gradcam.save("cam.png", ContentFile(png), save=False)
            try:
                with transaction.atomic():
                    prediction.save(force_insert=True)
                created += 1
            except IntegrityError:
                if png is not None:
                    prediction.gradcam.storage.delete(prediction.gradcam.name)
    return created


def _counts(run: InferenceRun) -> tuple[int, int]:
    counts = Prediction.objects.filter(
        model_id=run.model_id, case__study_id=run.study_id
    ).aggregate(
        ok=Count("pk", filter=Q(status=Prediction.Status.OK)),
        failed=Count("pk", filter=Q(status=Prediction.Status.FAILED)),
    )
    return counts["ok"], counts["failed"]


def _beat(run: InferenceRun) -> None:
    run.done, run.failed = _counts(run)
    run.heartbeat_at = timezone.now()
    InferenceRun.objects.filter(pk=run.pk).update(
        done=run.done, failed=run.failed, heartbeat_at=run.heartbeat_at
    )


Progress = Callable[[int, int], object]


def inference_run_execute(
    *,
    run_id: int,
    batch_size: int = DEFAULT_BATCH_SIZE,
    progress: Progress | None = None,
    with_gradcam: bool = True,
    num_workers: int | None = None,
    worker: str = "",
) -> InferenceRun:
    """Predict every case of the run's study that has no prediction of its model yet.

    Per case: probabilities over the model's classes, the top-1 restricted to the
    study's choices with probabilities renormalised over them, the embedding (float32)
    and a Grad-CAM overlay PNG of that top-1 class. ``seconds`` is the wall time of the
    case's batch (waiting for decoding, forward, Grad-CAM, storing) per image. An image
    that cannot be read gives a failed prediction for its case; the others go on.
    ``progress(processed, total)`` is called after each batch. A done run is returned
    unchanged. Errors in the model or the data mark the run failed and return it;
    others (e.g. the database went away) mark it failed and propagate, for a retry.
    ``worker`` names the Celery worker node (empty on the command line); a run that
    another live worker is running (fresh heartbeat) is returned unchanged, so a
    duplicate message never runs it twice at once.
    """
    with transaction.atomic():
        run = (
            InferenceRun.objects.select_for_update().select_related("model", "study").get(pk=run_id)
        )
        if run.status == InferenceRun.Status.DONE:
            return run
        now = timezone.now()
        elsewhere = run.worker and run.worker != worker
        if run.status == InferenceRun.Status.RUNNING and elsewhere and _is_fresh(run, now):
            logger.info("inference run %s is running on %s; not starting it again", run.pk,
                        run.worker)  # fmt: skip
            return run
        run.worker = worker
        run.sent_at = run.sent_at or now
        run.status = InferenceRun.Status.RUNNING
        run.started_at = run.started_at or now
        run.heartbeat_at = now
        run.finished_at = None
        run.error = ""
        run.total = run.study.cases.count()
        run.save(
            update_fields=[
                "status",
                "started_at",
                "heartbeat_at",
                "finished_at",
                "error",
                "total",
                "worker",
                "sent_at",
            ]
        )
    try:
        _execute(run, batch_size=batch_size, progress=progress, with_gradcam=with_gradcam,
                 num_workers=num_workers)  # fmt: skip
    except Exception as exc:
        expected = isinstance(exc, InferenceError | CheckpointError)
        message = str(exc) if expected else f"{type(exc).__name__}: {exc}"
        try:
            InferenceRun.objects.filter(pk=run.pk).update(
                status=InferenceRun.Status.FAILED, error=message[:4000], finished_at=timezone.now()
            )
        except Exception:  # the database itself may be what failed
            logger.exception("could not mark inference run %s failed", run.pk)
        if not expected:
            raise
    run.refresh_from_db()
    return run


def _execute(
    run: InferenceRun,
    *,
    batch_size: int,
    progress: Progress | None,
    with_gradcam: bool,
    num_workers: int | None,
) -> None:
    model, study = run.model, run.study
    choices = _check_choices(model, study)
    pending = list(
        Case.objects.filter(study=study)
        .exclude(predictions__model=model)
        .order_by("position")
        .prefetch_related("images")
    )
    diagnoses = {d.code: d for d in Diagnosis.objects.filter(code__in=model.classes)}
    if pending:
        net, preprocessing = model_load(model=model)
        dermoscopic = {
            case.pk: next(
                (i for i in case.images.all() if i.kind == CaseImage.Kind.DERMOSCOPIC), None
            )
            for case in pending
        }
        missing = [c for c in pending if dermoscopic[c.pk] is None]
        if missing:
            _store(run=run, cases=missing, results=["the case has no dermoscopic image"] * len(missing),
                   pngs=[None] * len(missing), seconds=None, diagnoses=diagnoses)  # fmt: skip
        pending = [c for c in pending if dermoscopic[c.pk] is not None]
        stream = iter_predictions(
            net,
            preprocessing,
            (_image_source(dermoscopic[c.pk]) for c in pending),
            classes=model.classes,
            choices=choices,
            batch_size=batch_size,
            num_workers=num_workers,
            on_error="yield",
            keep_pixels=with_gradcam,
        )
        for cases in _chunks(pending, batch_size):
            started = time.perf_counter()
            results = [next(stream) for _ in cases]
            pngs = (
                _gradcam_pngs(net, preprocessing, results, model.classes)
                if with_gradcam
                else [None] * len(cases)
            )
            seconds = (time.perf_counter() - started) / len(cases)
            _store(run=run, cases=cases, results=results, pngs=pngs, seconds=seconds,
                   diagnoses=diagnoses)  # fmt: skip
            _beat(run)
            if progress is not None:
                progress(run.done + run.failed, run.total)
    _beat(run)
    if progress is not None:
        progress(run.done + run.failed, run.total)
    InferenceRun.objects.filter(pk=run.pk).update(
        status=InferenceRun.Status.DONE, finished_at=timezone.now()
    )


# --- reconciling -----------------------------------------------------------------------------


@dataclass
class Reconciliation:
    """What :func:`inference_runs_reconcile` found (and re-queued unless ``dry_run``)."""

    stale_runs: list[InferenceRun] = field(default_factory=list)
    missing: list[tuple[RegisteredModel, Study, int]] = field(default_factory=list)
    started: list[InferenceRun] = field(default_factory=list)


def inference_runs_reconcile(
    *, dry_run: bool = False, start_missing: bool = False, older_than: timedelta | None = None
) -> Reconciliation:
    """Find runs a dead worker left behind and send them again.

    Stale: queued or running with no heartbeat (or, if queued, no start) for
    ``older_than`` (default :func:`stale_after`). Each is set back to queued and
    enqueued; the task resumes where the predictions stop. Also lists each
    (model, study) pair that has had a run and still has cases without a prediction;
    ``start_missing`` starts a run for those with no active run.
    """
    older_than = stale_after() if older_than is None else older_than
    report = Reconciliation()
    now = timezone.now()
    cutoff = now - older_than
    with transaction.atomic():
        candidates = InferenceRun.objects.select_for_update().filter(
            status__in=[InferenceRun.Status.QUEUED, InferenceRun.Status.RUNNING]
        )
        for run in candidates.select_related("model", "study"):
            last = run.heartbeat_at or run.created_at
            if last > cutoff:
                continue
            report.stale_runs.append(run)
            if not dry_run:
                run.status = InferenceRun.Status.QUEUED
                run.heartbeat_at = now  # time of re-queueing: not stale again at once
                run.error = (
                    f"re-queued at {now:%Y-%m-%d %H:%M:%S} (no heartbeat since {last:%H:%M:%S})"
                )
                run.save(update_fields=["status", "heartbeat_at", "error"])
                _enqueue(run, None)
    pairs = InferenceRun.objects.values_list("model_id", "study_id").distinct()
    for model_id, study_id in sorted(set(pairs)):
        model = RegisteredModel.objects.get(pk=model_id)
        study = Study.objects.get(pk=study_id)
        n = Case.objects.filter(study=study).exclude(predictions__model=model).count()
        if not n:
            continue
        report.missing.append((model, study, n))
        if start_missing and not dry_run:
            busy = InferenceRun.objects.filter(
                model=model,
                study=study,
                status__in=[InferenceRun.Status.QUEUED, InferenceRun.Status.RUNNING],
            ).exists()
            if not busy:
                try:
                    report.started.append(inference_run_start(model=model, study=study))
                except InferenceError as exc:
                    logger.warning("not starting %s on %s: %s", model.name, study.slug, exc)
    return report
