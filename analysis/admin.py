"""Admin for analysis reports. A study's Report page (compute / refresh, status, and
download links for every file of the newest done report) is the staff console's
(:mod:`console`); this admin mounts it."""

from __future__ import annotations

from django.contrib import admin
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html, format_html_join

from analysis.models import AnalysisReport
from cases.selectors import administered_studies
from console.urls import report_urls
from console.views import report_file_links
from readerstudy.admin import StudyScopedAdmin


@admin.register(AnalysisReport)
class AnalysisReportAdmin(StudyScopedAdmin):
    list_display = [
        "pk",
        "study",
        "status",
        "seed",
        "n_bootstrap",
        "created_at",
        "finished_at",
        "report_page",
        "html_link",
    ]
    list_filter = ["status", "study"]
    list_select_related = ["study"]
    search_fields = ["study__slug", "study__title", "fingerprint"]
    readonly_fields = [
        "study",
        "status",
        "seed",
        "n_bootstrap",
        "fingerprint",
        "inputs",
        "error",
        "folder",
        "downloads",
        "requested_by",
        "created_at",
        "started_at",
        "finished_at",
    ]
    exclude = ["files"]
    change_list_template = "analysis/admin/analysisreport_change_list.html"

    # Reports are made by the Report page (cached by fingerprint), never typed in.
    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    @admin.display(description="study report page")
    def report_page(self, report: AnalysisReport) -> str:
        return format_html(
            '<a href="{}">Report page</a>',
            reverse("admin:analysis_study_report", args=[report.study_id]),
        )

    @admin.display(description="report")
    def html_link(self, report: AnalysisReport) -> str:
        if report.status != AnalysisReport.Status.DONE or "report.html" not in report.files:
            return "-"
        return format_html(
            '<a href="{}">report.html</a>',
            reverse("analysis:report_file", args=[report.pk, "report.html"]),
        )

    @admin.display(description="files")
    def downloads(self, report: AnalysisReport) -> str:
        links = report_file_links(report)
        if not links:
            return "-"
        return format_html_join(" · ", '<a href="{}">{}</a>', ((url, name) for name, url in links))

    def get_urls(self):
        return report_urls(self.admin_site) + super().get_urls()

    def changelist_view(self, request: HttpRequest, extra_context=None):
        studies = [
            (study, reverse("admin:analysis_study_report", args=[study.pk]))
            for study in administered_studies(user=request.user).order_by("title")
        ]
        return super().changelist_view(request, {**(extra_context or {}), "studies": studies})
