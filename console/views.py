"""The staff console's pages, thin: each opens its study through
:func:`console.access.study_for_staff` (or, where the study comes from a form,
:func:`console.access.studies_for_staff`), calls a service or a selector, and renders
an admin template. They are mounted in the Django admin by :mod:`console.urls`.
"""

from __future__ import annotations

import csv
import datetime as dt

from django.contrib import admin, messages
from django.contrib.auth.forms import SetPasswordForm
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import timezone

from analysis.models import AnalysisReport
from analysis.services import report_is_stale, report_parameters, report_request
from audit.models import AuditEvent
from audit.services import audit_log, client_ip
from cases.api import answers_csv_response
from cases.importing import ImportRejected, cases_import
from cases.models import Study
from cases.selectors import lockout_state, reader_progress_table, study_overview
from cases.services import (
    AccountError,
    invitations_create,
    reader_password_set,
    reader_unlock,
    staff_account_refusal,
)
from console.access import REPORT_PAGES, RUN_PAGES, studies_for_staff, study_for_staff
from console.forms import CaseImportForm, InvitationCreateForm, ReportRequestForm
from inference.forms import ModelRegisterForm, RunStartForm
from inference.models import InferenceRun, RegisteredModel
from inference.services import InferenceError, inference_run_start, model_register


def _page(request: HttpRequest, template: str, *, title: str, opts, **context) -> TemplateResponse:
    """An admin page: the admin's own context (sidebar, user links), its title, and the
    options of the model whose part of the admin it belongs to."""
    context = {**admin.site.each_context(request), "title": title, "opts": opts, **context}
    return TemplateResponse(request, template, context)


# --- a study: overview, readers, invitations, import, answers ---------------------------


def study_overview_page(request: HttpRequest, pk: int) -> HttpResponse:
    study, _ = study_for_staff(request, pk=pk)
    return _page(
        request,
        "admin/cases/study/overview.html",
        title=f"Overview: {study.title}",
        opts=Study._meta,
        study=study,
        overview=study_overview(study=study),
    )


def reader_progress_page(request: HttpRequest, pk: int) -> HttpResponse:
    study, _ = study_for_staff(request, pk=pk)
    return _page(
        request,
        "admin/cases/study/progress.html",
        title=f"Reader progress: {study.title}",
        opts=Study._meta,
        study=study,
        rows=reader_progress_table(study=study),
    )


def answers_csv(request: HttpRequest, pk: int) -> HttpResponse:
    study, _ = study_for_staff(request, pk=pk)
    return answers_csv_response(study, language=request.GET.get("language", "en"), request=request)


def invitations_csv_response(request: HttpRequest, invitations, *, filename: str) -> HttpResponse:
    """``invitations`` as a CSV download (one join URL a row), audited as an export."""
    invitations = list(invitations)
    audit_log(
        action=AuditEvent.Action.EXPORT_DOWNLOAD,
        actor=request.user,
        study=invitations[0].study.slug if invitations else "",
        after={"export": filename, "rows": len(invitations)},
        ip=client_ip(request),
    )
    response = HttpResponse(content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    response["Cache-Control"] = "private, no-store"
    writer = csv.writer(response)
    writer.writerow(["url", "token", "label", "max_uses", "uses", "expires_at", "revoked"])
    for invitation in invitations:
        writer.writerow(
            [
                request.build_absolute_uri(reverse("cases:join", args=[invitation.token])),
                invitation.token,
                invitation.label,
                invitation.max_uses,
                invitation.uses,
                invitation.expires_at.isoformat() if invitation.expires_at else "",
                invitation.revoked,
            ]
        )
    return response


def invitations_page(request: HttpRequest, pk: int) -> HttpResponse:
    study, _ = study_for_staff(request, pk=pk, write=True)
    if request.GET.get("format") == "csv":
        return invitations_csv_response(
            request, study.invitations.all(), filename=f"{study.slug}-invitations.csv"
        )
    form = InvitationCreateForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        days = form.cleaned_data["expires_in_days"]
        created = invitations_create(
            study=study,
            count=form.cleaned_data["count"],
            max_uses=form.cleaned_data["max_uses"],
            label=form.cleaned_data["label"],
            expires_at=timezone.now() + dt.timedelta(days=days) if days else None,
            created_by=request.user,
        )
        return invitations_csv_response(
            request, created, filename=f"{study.slug}-new-invitations.csv"
        )
    return _page(
        request,
        "admin/cases/study/invitations.html",
        title=f"Invitations: {study.title}",
        opts=Study._meta,
        study=study,
        form=form,
        invitations=study.invitations.all()[:200],
        total=study.invitations.count(),
    )


def reader_account_page(request: HttpRequest, pk: int, enrolment_pk: int) -> HttpResponse:
    """A study admin sets a new password for a reader of the study, or only lifts
    their login lockout. Staff accounts are refused (a superuser manages those)."""
    study, _ = study_for_staff(request, pk=pk, write=True)
    enrolment = get_object_or_404(study.enrolments.select_related("reader"), pk=enrolment_pk)
    reader = enrolment.reader
    refusal = staff_account_refusal(reader)
    refused = f"{refusal}." if refusal else ""
    wants_unlock = request.method == "POST" and "unlock" in request.POST
    form = SetPasswordForm(
        reader, request.POST if request.method == "POST" and not wants_unlock else None
    )
    if request.method == "POST" and not refused:
        progress = reverse("admin:cases_study_progress", args=[study.pk])
        try:
            if wants_unlock:
                cleared = reader_unlock(
                    actor=request.user, enrolment=enrolment, ip=client_ip(request)
                )
                messages.success(
                    request,
                    f"{reader.get_username()} is unlocked "
                    f"({cleared} failed-login record(s) removed).",
                )
                return HttpResponseRedirect(progress)
            if form.is_valid():
                reader_password_set(
                    actor=request.user,
                    enrolment=enrolment,
                    password=form.cleaned_data["new_password1"],
                    ip=client_ip(request),
                )
                messages.success(
                    request,
                    f"New password set for {reader.get_username()}; any lockout is "
                    "lifted. Give them the password over a safe channel.",
                )
                return HttpResponseRedirect(progress)
        except AccountError as exc:
            refused = str(exc)
        except ValidationError as exc:
            form.add_error("new_password2", exc)
    return _page(
        request,
        "admin/cases/study/reader_account.html",
        title=f"Reader account: {reader.get_username()}",
        opts=Study._meta,
        study=study,
        enrolment=enrolment,
        reader=reader,
        form=form,
        refused=refused,
        lockout=lockout_state(username=reader.get_username()),
    )


def cases_import_page(request: HttpRequest, pk: int) -> HttpResponse:
    study, _ = study_for_staff(request, pk=pk, write=True)
    problems = []
    form = CaseImportForm(request.POST or None, request.FILES or None)
    if request.method == "POST" and form.is_valid():
        try:
            result = cases_import(
                slug=study.slug, source=request.FILES["bundle"], actor=request.user
            )
        except ImportRejected as exc:
            problems = exc.problems
        else:
            messages.success(request, f"{result.cases_created} case(s) imported.")
            return HttpResponseRedirect(reverse("admin:cases_study_overview", args=[study.pk]))
    return _page(
        request,
        "admin/cases/study/import.html",
        title=f"Import cases into {study.title}",
        opts=Study._meta,
        study=study,
        form=form,
        problems=problems,
    )


# --- a study's analysis report -----------------------------------------------------------


def report_file_links(report: AnalysisReport) -> list[tuple[str, str]]:
    """(name, download URL) of every file of a done report."""
    if report.status != AnalysisReport.Status.DONE:
        return []
    return [
        (name, reverse("analysis:report_file", args=[report.pk, name])) for name in report.files
    ]


def study_report_page(request: HttpRequest, study_id: int) -> HttpResponse:
    """Compute or refresh a study's report, its status, and the files of the newest
    done one."""
    study, can_compute = study_for_staff(
        request, pk=study_id, write=request.method == "POST", rights=REPORT_PAGES
    )
    form = ReportRequestForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
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
        messages.success(request, f"Report {report.pk} {state}.")
        return HttpResponseRedirect(request.path)
    reports = list(study.analysis_reports.order_by("-created_at", "-pk")[:10])
    latest_done = next((r for r in reports if r.status == AnalysisReport.Status.DONE), None)
    if latest_done is None:
        latest_done = (
            study.analysis_reports.filter(status=AnalysisReport.Status.DONE)
            .order_by("-created_at", "-pk")
            .first()
        )
    return _page(
        request,
        "analysis/admin/study_report.html",
        title=f"Report: {study.title}",
        opts=AnalysisReport._meta,
        study=study,
        form=form,
        can_compute=can_compute,
        reports=reports,
        pending=any(
            r.status in (AnalysisReport.Status.QUEUED, AnalysisReport.Status.RUNNING)
            for r in reports
        ),
        latest=latest_done,
        latest_parameters=report_parameters(latest_done) if latest_done else {},
        stale=latest_done is not None and report_is_stale(report=latest_done),
        links=report_file_links(latest_done) if latest_done else [],
    )


# --- inference: register a model, run one over a study -------------------------------------


def inference_run_start_with_message(
    request: HttpRequest, *, model: RegisteredModel, study: Study
) -> InferenceRun | None:
    """Start (or find the active) run of ``model`` over ``study`` and tell the user how
    it stands; None, with the reason as an error message, when it cannot start."""
    try:
        run = inference_run_start(model=model, study=study, actor=request.user)
    except InferenceError as exc:
        messages.error(request, str(exc))
        return None
    state = "" if model.trained else " (UNTRAINED model)"
    run.refresh_from_db()
    if run.waits_for_broker:
        messages.warning(
            request,
            f"Run {run.pk}: {model.name} on {study.slug} is queued{state}, but the task "
            "broker is unreachable: it waits and is sent when the broker is back.",
        )
        return run
    messages.success(request, f"Run {run.pk}: {model.name} on {study.slug} is {run.status}{state}.")
    return run


def inference_run_start_page(request: HttpRequest) -> HttpResponse:
    """Pick a study and a model; starts (or returns the active) run."""
    studies = studies_for_staff(request, write=True, rights=RUN_PAGES)
    form = RunStartForm(request.POST or None)
    form.fields["study"].queryset = studies.order_by("title")
    if request.method == "POST" and form.is_valid():
        run = inference_run_start_with_message(
            request, model=form.cleaned_data["model"], study=form.cleaned_data["study"]
        )
        if run is not None:
            return HttpResponseRedirect(reverse("admin:inference_inferencerun_changelist"))
    return _page(
        request,
        "inference/admin/run_start.html",
        title="Run inference",
        opts=InferenceRun._meta,
        form=form,
    )


def model_register_page(request: HttpRequest) -> HttpResponse:
    """Registration by upload, through the same service as `register_model`. Not a
    study's page: the Registered models admin lets only who may add one in."""
    form = ModelRegisterForm(request.POST or None, request.FILES or None)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            model = model_register(
                name=data["name"],
                arch=data["arch"] or None,
                classes=data["classes"] or None,
                weights=data["weights"],
                pretrained=data["pretrained"],
                description=data["description"],
                img_size=data["img_size"],
                actor=request.user,
            )
        except InferenceError as exc:
            form.add_error(None, str(exc))
        else:
            state = "" if model.trained else " (UNTRAINED)"
            messages.success(request, f"Registered {model.name}{state}.")
            return HttpResponseRedirect(
                reverse("admin:inference_registeredmodel_change", args=[model.pk])
            )
    return _page(
        request,
        "inference/admin/register_model.html",
        title="Register a model",
        opts=RegisteredModel._meta,
        form=form,
    )
