"""Grad-CAM overlays for staff. Thin: the file is found by the prediction's pk, never by
a path from the request; model output is never shown to a reader here."""

from __future__ import annotations

from django.http import FileResponse, Http404, HttpRequest, HttpResponse
from django.views.decorators.http import require_GET

from audit.services import audited_csv_download
from cases.selectors import administered_studies
from console.access import STUDY_FILES, study_for_staff
from inference.models import Prediction
from inference.selectors import predictions_frame


@require_GET
def gradcam(request: HttpRequest, pk: int) -> FileResponse:
    """The Grad-CAM overlay PNG of one prediction, to its study's admins only; anyone else gets a 404
    that does not confirm the prediction exists."""
    prediction = (
        Prediction.objects.filter(pk=pk, case__study__in=administered_studies(user=request.user))
        .exclude(gradcam="")
        .first()
    )
    if prediction is None:
        raise Http404("No such image.")
    try:
        handle = prediction.gradcam.open("rb")
    except FileNotFoundError:
        raise Http404("No such image.") from None
    response = FileResponse(handle, content_type="image/png")
    response["Cache-Control"] = "private, max-age=3600"
    response["X-Content-Type-Options"] = "nosniff"
    return response


@require_GET
def predictions_csv(request: HttpRequest, slug: str) -> HttpResponse:
    """A study's predictions as CSV (``model, case, truth, answer, prob_<CODE>...``), the
    file ``manage.py analyze --predictions`` reads; to the study's admins only."""
    study, _ = study_for_staff(request, slug=slug, rights=STUDY_FILES)
    frame = predictions_frame(study=study)
    return audited_csv_download(request=request, study=study, frame=frame, export="predictions.csv")
