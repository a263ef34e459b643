"""Registered CNNs, inference runs over a study, and one prediction per (model, case).

A stored prediction is research data: never deleted or changed, whatever its run's
status (a failed run that is resumed only adds the predictions it lacks). The queryset
and the model refuse; on PostgreSQL a trigger (migrations 0003 and 0004); a run with
predictions is never deleted.
"""

from __future__ import annotations

import secrets

import numpy as np
from django.core.exceptions import ObjectDoesNotExist, ValidationError
from django.db import models
from django.db.models import Q

from cases.models import Case, Diagnosis, ReadingCondition, Study, research_rows_refuse
from readerstudy.tasks import BROKER_DOWN_PREFIX


def _weights_path(instance: RegisteredModel, filename: str) -> str:
    return f"models/{secrets.token_hex(8)}.pt"


def _cam_path(instance: Prediction, filename: str) -> str:
    return f"gradcam/{secrets.token_hex(12)}.png"


class RegisteredModel(models.Model):
    """A CNN with its weights, class order and the preprocessing it was trained with."""

    name = models.SlugField(max_length=64, unique=True)
    arch = models.CharField(max_length=64, help_text="Architecture name in inference.nets.")
    classes = models.JSONField(help_text="Diagnosis codes in the order of the outputs.")
    preprocessing = models.JSONField(help_text="Input size, normalisation, colour constancy.")
    weights = models.FileField(upload_to=_weights_path, max_length=200, blank=True)
    weights_sha256 = models.CharField(max_length=64, blank=True)
    weights_source = models.CharField(
        max_length=32,
        default="file",
        help_text="file (a checkpoint), imagenet (timm's pretrained backbone), random",
    )
    trained = models.BooleanField(
        default=False, help_text="False: untrained for this task; flagged wherever shown."
    )
    description = models.TextField(blank=True)
    meta = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.CheckConstraint(
                condition=Q(weights_source__in=["file", "imagenet", "random"]),
                name="weights_source_valid",
            ),
        ]

    def __str__(self) -> str:
        return self.name if self.trained else f"{self.name} (untrained)"


class InferenceRun(models.Model):
    """A model run over a study's cases; resumable, so re-running finishes the rest."""

    class Status(models.TextChoices):
        QUEUED = "queued"
        RUNNING = "running"
        DONE = "done"
        FAILED = "failed"

    model = models.ForeignKey(RegisteredModel, on_delete=models.PROTECT, related_name="runs")
    study = models.ForeignKey(Study, on_delete=models.PROTECT, related_name="inference_runs")
    status = models.CharField(max_length=8, choices=Status.choices, default=Status.QUEUED)
    total = models.PositiveIntegerField(default=0)
    done = models.PositiveIntegerField(default=0)
    failed = models.PositiveIntegerField(default=0)
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    sent_at = models.DateTimeField(
        null=True, blank=True, help_text="When the broker took the task; empty while it waits."
    )
    worker = models.CharField(
        max_length=200, blank=True, help_text="The Celery worker (node name) running it."
    )
    # Derived from the predictions, never edited by hand (editable=False keeps it off the
    # admin's forms); written by inference.services.projection.
    tsne = models.JSONField(
        default=list,
        blank=True,
        editable=False,
        help_text="t-SNE points of the model's embeddings on the study, stored when the run "
        "is done (or by the first report after) so that reports reuse them: one entry per "
        "seed and set of predictions.",
    )

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.model.name} on {self.study.slug} ({self.status})"

    @property
    def processed(self) -> int:
        """Cases done so far, with a prediction or a failure."""
        return self.done + self.failed

    @property
    def is_active(self) -> bool:
        return self.status in (self.Status.QUEUED, self.Status.RUNNING)

    @property
    def waits_for_broker(self) -> bool:
        """Queued, and the last try to send its task found the broker down."""
        return self.status == self.Status.QUEUED and self.error.startswith(BROKER_DOWN_PREFIX)


# A run that has finished, one way or the other.
FINISHED_RUN_STATUSES = (InferenceRun.Status.DONE, InferenceRun.Status.FAILED)
_PREDICTIONS_KEPT = (
    "the predictions of an inference run are research data: once stored they are never "
    "changed or deleted (a resumed run only adds the missing ones)"
)


class PredictionQuerySet(models.QuerySet):
    def _stored(self) -> models.QuerySet:
        """Every row is final once stored: its run's status does not make it editable
        again (a failed run that is resumed is queued and running again)."""
        return self.all()

    def update(self, **kwargs):
        research_rows_refuse(self._stored(), study_path=None, message=_PREDICTIONS_KEPT)
        return super().update(**kwargs)

    def bulk_update(self, objs, fields, batch_size=None):
        objs = list(objs)
        research_rows_refuse(
            Prediction.objects.filter(pk__in=[o.pk for o in objs])._stored(),
            study_path=None,
            message=_PREDICTIONS_KEPT,
        )
        return super().bulk_update(objs, fields, batch_size=batch_size)

    def delete(self):
        research_rows_refuse(self._stored(), study_path="case__study", message=_PREDICTIONS_KEPT)
        return super().delete()


class Prediction(models.Model):
    """What one model said about one case. One row per (model, case), by constraint."""

    class Status(models.TextChoices):
        OK = "ok"
        FAILED = "failed"

    model = models.ForeignKey(RegisteredModel, on_delete=models.PROTECT, related_name="predictions")
    case = models.ForeignKey(Case, on_delete=models.PROTECT, related_name="predictions")
    # PROTECT: deleting a run would otherwise rewrite its predictions (run = NULL).
    run = models.ForeignKey(
        InferenceRun, on_delete=models.PROTECT, null=True, blank=True, related_name="predictions"
    )
    status = models.CharField(max_length=8, choices=Status.choices, default=Status.OK)
    error = models.TextField(blank=True)
    probabilities = models.JSONField(
        default=dict, help_text="Softmax over the model's own classes: {code: p}."
    )
    choice = models.ForeignKey(
        Diagnosis,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
        help_text="Top-1 restricted to the study's choices.",
    )
    choice_probabilities = models.JSONField(
        default=dict, help_text="Probabilities renormalised over the study's choices."
    )
    embedding = models.BinaryField(
        null=True, blank=True, help_text="Last hidden layer, float32 little-endian."
    )
    gradcam = models.FileField(upload_to=_cam_path, max_length=200, blank=True)
    seconds = models.FloatField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    objects = PredictionQuerySet.as_manager()

    class Meta:
        ordering = ["model", "case"]
        constraints = [
            models.UniqueConstraint(fields=["model", "case"], name="one_prediction_per_case"),
            models.CheckConstraint(
                condition=Q(status="failed") | Q(choice__isnull=False),
                name="ok_prediction_has_choice",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.model.name} {self.case.public_id}"

    def save(self, *args, **kwargs):
        if self.pk is not None and not self._state.adding:
            research_rows_refuse(
                Prediction.objects.filter(pk=self.pk)._stored(),
                study_path=None,
                message=_PREDICTIONS_KEPT,
            )
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        research_rows_refuse(
            Prediction.objects.filter(pk=self.pk)._stored(),
            study_path="case__study",
            message=_PREDICTIONS_KEPT,
        )
        return super().delete(*args, **kwargs)

    def embedding_array(self) -> np.ndarray | None:
        if self.embedding is None:
            return None
        return np.frombuffer(bytes(self.embedding), dtype="<f4")


class ConditionSupport(models.Model):
    """The CNN whose support a reading condition shows (``ReadingCondition.shows_cnn``):
    its ``top_k`` probabilities over the study's choices and its predicted class (and
    its Grad-CAM where the condition shows that), from the predictions of a complete
    run of ``model`` on the study. Set while the study is a draft; a study cannot open
    until ``model`` has a successful prediction with probabilities for every case
    (``inference.selectors.support_refusals``). From its opening on the support is
    fixed: ``clean`` and ``delete`` refuse, as the admin does."""

    condition = models.OneToOneField(
        ReadingCondition, on_delete=models.CASCADE, related_name="cnn_support"
    )
    model = models.ForeignKey(RegisteredModel, on_delete=models.PROTECT, related_name="+")
    top_k = models.PositiveSmallIntegerField(
        default=3, help_text="How many of the CNN's most probable classes the reader sees."
    )

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=Q(top_k__gte=1, top_k__lte=26), name="support_top_k_1_to_26"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.condition}: {self.model.name} (top {self.top_k})"

    def _condition(self) -> ReadingCondition | None:
        try:
            return self.condition
        except ObjectDoesNotExist:  # not set yet
            return None

    def _fixed_refusal(self) -> str:
        """Why this support may not be set, changed or removed now ("" where it may):
        from its study's opening on, the support is what its answers were given with."""
        condition = self._condition()
        if condition is None or condition.study_id is None:
            return ""
        status = (
            Study.objects.filter(pk=condition.study_id).values_list("status", flat=True).first()
        )
        if status in (None, Study.Status.DRAFT):
            return ""
        return (
            f"the CNN support of condition {condition.code!r} is fixed: its study is "
            f"{Study.Status(status).label.lower()}, not a draft (readers answer with it)"
        )

    def clean(self) -> None:
        super().clean()
        refusal = self._fixed_refusal()
        if refusal:
            raise ValidationError(refusal, code="support_fixed")
        condition = self._condition()
        if condition is not None and not condition.shows_cnn:
            raise ValidationError(
                {"condition": f"condition {condition.code!r} does not show the CNN's support"}
            )

    def delete(self, *args, **kwargs):
        refusal = self._fixed_refusal()
        if refusal:
            raise ValidationError(refusal, code="support_fixed")
        return super().delete(*args, **kwargs)
