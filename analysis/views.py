"""Report files for staff. Thin: a file is found by report pk and one of the names the
report wrote, never by a path from the request, and streamed from the storage (the
media folder or a bucket: never a link to the bucket)."""

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
    "jpg": "image/jpeg",
    "svg": "image/svg+xml",
}
INLINE = {"html", "png", "jpg", "svg"}


@require_GET
def report_file(request: HttpRequest, pk: int, name: str) -> FileResponse:
    """One file of a done report, to the study's admins only; anyone else gets a 404 that does not
    confirm the report exists. HTML and SVG open in the browser under a sandboxing
    Content-Security-Policy (no scripts, no requests; the page embeds its figures)."""
    report = AnalysisReport.objects.filter(
        pk=pk, study__in=administered_studies(user=request.user)
    ).first()
    suffix = name.rpartition(".")[2]
    stored = report.file_open(name) if report is not None and suffix in CONTENT_TYPES else None
    if stored is None:
        raise Http404("No such report file.")
    response = FileResponse(
        stored,
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
