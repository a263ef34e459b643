"""Admin for registered models (register by upload), inference runs (progress, "Run
inference") and predictions (with their Grad-CAM overlays, served by a staff-only view).
The register and run pages are the staff console's (:mod:`console`).

Every write goes through inference.services; rows here are otherwise read-only.
Predictions are research data: never changed or deleted here, by anyone. A run or a
model with predictions cannot be deleted either (PROTECT: Django's "cannot delete" page).
"""

from __future__ import annotations

from django.contrib import admin
from django.http import HttpRequest, HttpResponseRedirect
from django.template.loader import render_to_string
from django.urls import NoReverseMatch, reverse
from django.utils.html import format_html

from cases.models import ReadingCondition, Study
from cases.selectors import administered_studies
from console.urls import run_urls
from console.views import inference_run_start_with_message, model_register_page
from inference.models import ConditionSupport, InferenceRun, Prediction, RegisteredModel
from readerstudy.admin import ResearchDataAdmin, StudyScopedAdmin


def gradcam_url(prediction: Prediction) -> str | None:
    if not prediction.gradcam:
        return None
    try:
        return reverse("inference:gradcam", args=[prediction.pk])
    except NoReverseMatch:  # inference.urls not included in this URLconf
        return None


class ReadOnlyMixin:
    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False


@admin.register(RegisteredModel)
class RegisteredModelAdmin(admin.ModelAdmin):
    list_display = [
        "name",
        "untrained_flag",
        "arch",
        "classes_list",
        "input_size",
        "weights_source",
        "sha256_short",
        "created_at",
    ]
    list_filter = ["arch", "trained", "weights_source"]
    search_fields = ["name", "description", "weights_sha256"]
    readonly_fields = [
        "name",
        "untrained_flag",
        "arch",
        "classes",
        "preprocessing",
        "weights",
        "weights_sha256",
        "weights_source",
        "trained",
        "description",
        "meta",
        "created_at",
    ]

    def has_change_permission(self, request, obj=None) -> bool:
        # The registration is what the predictions were made with: it never changes.
        return False

    @admin.display(description="trained")
    def untrained_flag(self, model: RegisteredModel) -> str:
        if model.trained:
            return "trained"
        return format_html(
            '<strong style="color:#b00" title="{}">UNTRAINED</strong>',
            f"{model.weights_source} weights: not trained for this task",
        )

    @admin.display(description="classes")
    def classes_list(self, model: RegisteredModel) -> str:
        return ",".join(model.classes)

    @admin.display(description="input")
    def input_size(self, model: RegisteredModel) -> str:
        return f"{model.preprocessing.get('input_size', '?')} px"

    @admin.display(description="sha256")
    def sha256_short(self, model: RegisteredModel) -> str:
        return model.weights_sha256[:12] or "-"

    def add_view(self, request: HttpRequest, form_url: str = "", extra_context=None):
        """Registration by upload, through the same service as `register_model`."""
        if not self.has_add_permission(request):
            return HttpResponseRedirect(reverse("admin:index"))
        return model_register_page(request)


@admin.register(InferenceRun)
class InferenceRunAdmin(ReadOnlyMixin, StudyScopedAdmin):
    # Few columns, so that the progress stays on screen at 1366 px; it refreshes by
    # itself while a run is queued or running (static/js/live-progress.js).
    list_display = ["pk", "model", "study", "progress", "short_error", "created_at"]
    list_filter = ["status", "model", "study"]
    search_fields = ["model__name", "study__slug", "study__title", "worker", "error"]
    list_select_related = ["model", "study"]
    readonly_fields = [
        "model",
        "study",
        "status",
        "progress",
        "total",
        "done",
        "failed",
        "error",
        "worker",
        "created_at",
        "sent_at",
        "started_at",
        "heartbeat_at",
        "finished_at",
    ]
    actions = ["run_again"]
    change_list_template = "inference/admin/inferencerun_change_list.html"

    @admin.display(description="status and progress")
    def progress(self, run: InferenceRun) -> str:
        # The same markup as on the study's dashboard; static/js/live-progress.js
        # refreshes it.
        return render_to_string("inference/admin/_run_progress.html", {"run": run})

    @admin.display(description="error")
    def short_error(self, run: InferenceRun) -> str:
        return (run.error[:80] + "...") if len(run.error) > 80 else (run.error or "-")

    @admin.action(description="Run again (finishes cases without a prediction)")
    def run_again(self, request: HttpRequest, queryset) -> None:
        for run in queryset.select_related("model", "study"):
            inference_run_start_with_message(request, model=run.model, study=run.study)

    def get_urls(self):
        return run_urls(self.admin_site) + super().get_urls()


@admin.register(Prediction)
class PredictionAdmin(ResearchDataAdmin, StudyScopedAdmin):
    study_path = "case__study"
    list_display = ["case_id_public", "model", "choice", "status", "thumbnail", "time"]
    list_filter = ["status", "model", "case__study"]
    list_select_related = ["case", "model", "choice"]
    search_fields = ["case__public_id", "case__source_id", "model__name"]
    readonly_fields = [
        "case_id_public",
        "model",
        "run",
        "status",
        "error",
        "choice",
        "choice_probabilities",
        "probabilities",
        "embedding_size",
        "overlay",
        "time",
        "created_at",
    ]
    exclude = ["case", "embedding", "gradcam", "seconds"]

    @admin.display(description="seconds", ordering="seconds")
    def time(self, prediction: Prediction) -> str:
        """The model's time on the case, to the millisecond ("7.016", not 7.01581504433337)."""
        return "-" if prediction.seconds is None else f"{prediction.seconds:.3f}"

    @admin.display(description="case", ordering="case__public_id")
    def case_id_public(self, prediction: Prediction) -> str:
        return prediction.case.public_id

    @admin.display(description="Grad-CAM")
    def thumbnail(self, prediction: Prediction) -> str:
        url = gradcam_url(prediction)
        if url is None:
            return "-"
        return format_html('<img src="{}" alt="Grad-CAM" width="48" height="48">', url)

    @admin.display(description="Grad-CAM overlay (the predicted class)")
    def overlay(self, prediction: Prediction) -> str:
        url = gradcam_url(prediction)
        if url is None:
            return "-"
        return format_html(
            '<img src="{}" alt="Grad-CAM of {}" style="width:380px;max-width:100%;'
            'image-rendering:auto">',
            url,
            prediction.choice.code if prediction.choice else "",
        )

    @admin.display(description="embedding")
    def embedding_size(self, prediction: Prediction) -> str:
        array = prediction.embedding_array()
        return "-" if array is None else f"{array.size} float32 values"


@admin.register(ConditionSupport)
class ConditionSupportAdmin(StudyScopedAdmin):
    """Which CNN a reading condition that shows the CNN's support shows, and how many of
    its classes. Usually set beside the condition on its study's form (Reading
    conditions); here too, for the conditions of the user's draft studies. Fixed from
    the study's opening on: view only, no deletion (the model refuses the same)."""

    study_path = "condition__study"
    list_display = ["condition", "model", "top_k"]
    list_filter = ["condition__study", "model", "condition__shows_gradcam"]
    list_select_related = ["condition__study", "model"]
    search_fields = ["condition__code", "condition__study__slug", "model__name"]

    def _fixed(self, obj) -> bool:
        return obj is not None and obj.condition.study.status != obj.condition.study.Status.DRAFT

    def has_change_permission(self, request, obj=None) -> bool:
        return not self._fixed(obj) and super().has_change_permission(request, obj)

    def has_delete_permission(self, request, obj=None) -> bool:
        return not self._fixed(obj) and super().has_delete_permission(request, obj)

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        if db_field.name == "condition":
            conditions = ReadingCondition.objects.filter(
                shows_cnn=True, study__status=Study.Status.DRAFT
            )
            if not request.user.is_superuser:
                conditions = conditions.filter(study__in=administered_studies(user=request.user))
            kwargs["queryset"] = conditions.select_related("study")
        return super().formfield_for_foreignkey(db_field, request, **kwargs)
