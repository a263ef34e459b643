"""Report files for staff. Thin: a file is found by report pk and one of the names the
report wrote, never by a path from the request."""

from __future__ import annotations

from django.http import FileResponse, Http404, HttpRequest
from django.views.decorators.http import require_GET

from analysis.models import AnalysisReport
from cases.selectors import administered_studies

CONTENT_TYPES = {
    "csv": "text/csv; charset=utf-8",
    "json": "application/json",
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    "html": "text/html; charset=utf-8",
    "png": "image/png",
    "svg": "image/svg+xml",
}
INLINE = {"html", "png", "svg"}


@require_GET
def report_file(request: HttpRequest, pk: int, name: str) -> FileResponse:
    """One file of a done report, to the study's admins only; anyone else gets a 404 that does not
    confirm the report exists. HTML and SVG open in the browser under a sandboxing
    Content-Security-Policy (no scripts, no requests; the page embeds its figures)."""
    report = AnalysisReport.objects.filter(
        pk=pk, study__in=administered_studies(user=request.user)
    ).first()
    path = report.file_path(name) if report is not None else None
    suffix = name.rpartition(".")[2]
    if path is None or suffix not in CONTENT_TYPES:
        raise Http404("No such report file.")
    response = FileResponse(
        path.open("rb"),
        content_type=CONTENT_TYPES[suffix],
        as_attachment=suffix not in INLINE,
        filename=f"report-{report.pk}-{name}",
    )
    response["Cache-Control"] = "private, no-cache"
    response["X-Content-Type-Options"] = "nosniff"
    if suffix in ("html", "svg"):
        response["Content-Security-Policy"] = (
            "default-src 'none'; img-src data:; style-src 'unsafe-inline'; sandbox"
        )
    return response
