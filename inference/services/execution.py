"""Running a model over a study: the torch side of the inference app.

Imported only by the processes that run a model (the worker's task, ``run_inference``,
the demo's and the benchmark's model steps), never by the web tier.

A run reads only each case's DERMOSCOPIC image (the CNN of Zhu et al. 2021 saw only
that one), in its web-size derivative: the importer made it EXIF-rotated, in sRGB and at
most 1600 px (cases.importing.imaging), so every model input is the image a reader saw, upright,
and decoding stays cheap even for 20-megapixel originals; the network input (380 px
for EfficientNet-b4) is far below 1600 px, so the derivative loses nothing the model
could use. The original is the fallback when a case has no derivative.
"""

from __future__ import annotations

import hashlib
import io
import logging
import time
from collections.abc import Callable, Iterator, Sequence

import numpy as np
import torch
from django.core.files.base import ContentFile
from django.db import IntegrityError, transaction
from django.db.models import Count, Q
from django.utils import timezone

from cases.models import Case, CaseImage, Diagnosis
from inference.checkpoints import CheckpointError, apply_weights, load_checkpoint
from inference.gradcam import overlay_png
from inference.models import InferenceRun, Prediction, RegisteredModel
from inference.nets import Net, build_model
from inference.predict import ImagePrediction, ImageReadError, iter_predictions
from inference.preprocessing import Preprocessing
from inference.services.errors import InferenceError
from inference.services.runs import DEFAULT_BATCH_SIZE, run_is_fresh, study_choices_check

logger = logging.getLogger(__name__)


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


# --- running -----------------------------------------------------------------


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


def _gradcam_pngs(results: list) -> list[bytes | None]:
    """The Grad-CAM overlay of each successful result (its map explains its restricted
    top-1 and came from the prediction's own forward pass)."""
    return [
        overlay_png(r.pixels, r.cam) if isinstance(r, ImagePrediction) else None for r in results
    ]


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
        if run.status == InferenceRun.Status.RUNNING and elsewhere and run_is_fresh(run, now):
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
    if run.status == InferenceRun.Status.DONE:
        _tsne_store(run)
    return run


def _tsne_store(run: InferenceRun) -> None:
    """Store the t-SNE points of the finished run's embeddings for the reports; a
    failure leaves the run done (the first report fits and stores them instead)."""
    from inference.services.projection import tsne_projection_store

    try:
        tsne_projection_store(run=run)
        run.refresh_from_db(fields=["tsne"])
    except Exception:
        logger.exception("could not store the t-SNE points of inference run %s", run.pk)


def _execute(
    run: InferenceRun,
    *,
    batch_size: int,
    progress: Progress | None,
    with_gradcam: bool,
    num_workers: int | None,
) -> None:
    model, study = run.model, run.study
    choices = study_choices_check(model, study)
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
            with_gradcam=with_gradcam,
        )
        for cases in _chunks(pending, batch_size):
            started = time.perf_counter()
            results = [next(stream) for _ in cases]
            pngs = _gradcam_pngs(results) if with_gradcam else [None] * len(cases)
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
