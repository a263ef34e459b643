"""Admin for analysis reports, and a "Report" page per study: compute / refresh, status,
and download links for every file of the newest done report."""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html, format_html_join

from analysis.models import AnalysisReport
from analysis.services import report_is_stale, report_parameters, report_request
from cases.admin import StudyScopedAdmin
from cases.selectors import PROFILE_COLUMNS, administered_studies


class ReportRequestForm(forms.Form):
    seed = forms.IntegerField(initial=0, min_value=0)
    n_bootstrap = forms.IntegerField(
        label="bootstrap resamples", initial=2000, min_value=1, max_value=100_000
    )
    adjust = forms.ChoiceField(
        label="p-value adjustment",
        choices=[("holm", "Holm"), ("bonferroni", "Bonferroni")],
        initial="holm",
        required=False,  # left out: Holm, the default of analyze
    )
    subgroup = forms.CharField(
        required=False,
        max_length=200,
        help_text=(
            "Optional: a reader attribute ("
            + ", ".join(PROFILE_COLUMNS)
            + ") to split every reader table by; COLUMN:E0,E1,... cuts a numeric one into "
            "bands, e.g. years:0,5,10."
        ),
    )
    force = forms.BooleanField(
        required=False, help_text="Compute again even if the data have not changed."
    )

    def clean_adjust(self) -> str:
        return self.cleaned_data["adjust"] or "holm"

    def clean_subgroup(self) -> str | None:
        from analysis.stats import InputError
        from analysis.stats.pipeline import parse_subgroup

        spec = self.cleaned_data["subgroup"].strip()
        if not spec:
            return None
        try:
            parse_subgroup(spec, PROFILE_COLUMNS)
        except InputError as exc:
            raise forms.ValidationError(str(exc)) from None
        return spec


def file_links(report: AnalysisReport) -> list[tuple[str, str]]:
    """(name, download URL) of every file of a done report."""
    if report.status != AnalysisReport.Status.DONE:
        return []
    return [
        (name, reverse("analysis:report_file", args=[report.pk, name])) for name in report.files
    ]


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
        links = file_links(report)
        if not links:
            return "-"
        return format_html_join(" · ", '<a href="{}">{}</a>', ((url, name) for name, url in links))

    def get_urls(self):
        own = [
            path(
                "study/<int:study_id>/",
                self.admin_site.admin_view(self.study_report_view),
                name="analysis_study_report",
            ),
        ]
        return own + super().get_urls()

    def changelist_view(self, request: HttpRequest, extra_context=None):
        studies = [
            (study, reverse("admin:analysis_study_report", args=[study.pk]))
            for study in administered_studies(user=request.user).order_by("title")
        ]
        return super().changelist_view(request, {**(extra_context or {}), "studies": studies})

    def study_report_view(self, request: HttpRequest, study_id: int) -> HttpResponse:
        study = get_object_or_404(administered_studies(user=request.user), pk=study_id)
        if not self.has_view_permission(request):
            return HttpResponseRedirect(reverse("admin:index"))
        can_compute = request.user.has_perm("analysis.add_analysisreport")
        form = ReportRequestForm(request.POST or None)
        if request.method == "POST":
            if not can_compute:
                return HttpResponseRedirect(reverse("admin:index"))
            if form.is_valid():
                report = report_request(
                    study=study,
                    seed=form.cleaned_data["seed"],
                    n_bootstrap=form.cleaned_data["n_bootstrap"],
                    adjust=form.cleaned_data["adjust"],
                    subgroup=form.cleaned_data["subgroup"],
                    requested_by=request.user,
                    force=form.cleaned_data["force"],
                )
                state = (
                    "is up to date"
                    if report.status == AnalysisReport.Status.DONE
                    else f"is {report.get_status_display().lower()}"
                )
                self.message_user(request, f"Report {report.pk} {state}.", messages.SUCCESS)
                return HttpResponseRedirect(request.path)
        reports = list(study.analysis_reports.order_by("-created_at", "-pk")[:10])
        latest_done = next((r for r in reports if r.status == AnalysisReport.Status.DONE), None)
        if latest_done is None:
            latest_done = (
                study.analysis_reports.filter(status=AnalysisReport.Status.DONE)
                .order_by("-created_at", "-pk")
                .first()
            )
        context = {
            **self.admin_site.each_context(request),
            "title": f"Report: {study.title}",
            "study": study,
            "opts": self.model._meta,
            "form": form,
            "can_compute": can_compute,
            "reports": reports,
            "pending": any(
                r.status in (AnalysisReport.Status.QUEUED, AnalysisReport.Status.RUNNING)
                for r in reports
            ),
            "latest": latest_done,
            "latest_parameters": report_parameters(latest_done) if latest_done else {},
            "stale": latest_done is not None and report_is_stale(report=latest_done),
            "links": file_links(latest_done) if latest_done else [],
        }
        return TemplateResponse(request, "analysis/admin/study_report.html", context)
