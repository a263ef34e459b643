"""The staff console's pages, thin: each opens its study through
:func:`console.access.study_for_staff` (or, where the study comes from a form,
:func:`console.access.studies_for_staff`), calls a service or a selector, and renders
an admin template. They are mounted in the Django admin by :mod:`console.urls`.
"""

from __future__ import annotations

import csv
import datetime as dt
import math
from dataclasses import dataclass

from django import forms
from django.contrib import admin, messages
from django.contrib.auth.forms import SetPasswordForm
from django.core.exceptions import ValidationError
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import timezone

from analysis.models import AnalysisReport
from analysis.selectors import latest_done_report, study_reports
from analysis.services import report_is_stale, report_parameters, report_request
from audit.models import AuditEvent
from audit.services import audit_log
from cases.api import answers_csv_response
from cases.importing import ImportRejected, cases_import
from cases.models import Study
from cases.selectors import (
    PROGRESS_DEFAULT_SORT,
    PROGRESS_SORTS,
    DayCount,
    lockout_state,
    reader_progress_query,
    reader_progress_rows,
    reader_steps,
    study_conditions,
    study_dashboard,
    study_invitations,
    study_overview,
)
from cases.services import (
    AccountError,
    StudyError,
    invitations_create,
    invitations_revoke,
    reader_password_set,
    reader_unlock,
    staff_account_refusal,
    study_close,
    study_closing_date_set,
    study_open,
    study_open_refusals,
)
from console.access import (
    REPORT_PAGES,
    RUN_PAGES,
    may_use,
    studies_for_staff,
    study_for_staff,
)
from console.forms import (
    CaseImportForm,
    InvitationCreateForm,
    ReportRequestForm,
    StudyClosingDateForm,
)
from inference.forms import ModelRegisterForm, RunStartForm
from inference.models import InferenceRun, RegisteredModel
from inference.selectors import study_runs
from inference.services import InferenceError, inference_run_start, model_register


def _page(request: HttpRequest, template: str, *, title: str, opts, **context) -> TemplateResponse:
    """An admin page: the admin's own context (sidebar, user links), its title, and the
    options of the model whose part of the admin it belongs to."""
    context = {**admin.site.each_context(request), "title": title, "opts": opts, **context}
    return TemplateResponse(request, template, context)


# --- a study: overview, readers, invitations, import, answers ---------------------------


def study_overview_page(request: HttpRequest, pk: int) -> HttpResponse:
    """The study's dashboard: cases per class, readers by step, answers per day (a
    chart), the median seconds per case and the projected completion date."""
    study, _ = study_for_staff(request, pk=pk)
    dashboard = study_dashboard(study=study)
    return _page(
        request,
        "admin/cases/study/overview.html",
        title=f"Overview: {study.title}",
        opts=Study._meta,
        study=study,
        overview=study_overview(study=study),
        dashboard=dashboard,
        chart=answers_chart(dashboard.days, timezone_name=dashboard.timezone),
        steps=study_steps(request, study=study),
    )


@dataclass(frozen=True)
class StudySteps:
    """What the dashboard's "Running the study" panel shows: every task of a study,
    from importing its cases to exporting its results, each linked to its own page
    (only those the user may open), so that no step needs a generic admin list; for a
    draft, every reason it cannot open yet (``refusals``, empty: it can)."""

    runs: list
    reports: list
    latest_report: AnalysisReport | None
    may_run: bool
    may_report: bool
    refusals: list[str]


def study_steps(request: HttpRequest, *, study: Study) -> StudySteps:
    reports = study_reports(study=study, limit=3)
    is_draft = study.status == Study.Status.DRAFT
    return StudySteps(
        runs=study_runs(study=study, limit=8),
        reports=reports,
        latest_report=latest_done_report(study=study, newest=reports),
        may_run=may_use(request.user, RUN_PAGES, write=True),
        may_report=may_use(request.user, REPORT_PAGES),
        refusals=study_open_refusals(study=study) if is_draft else [],
    )


def reader_progress_page(request: HttpRequest, pk: int) -> HttpResponse:
    """Every reader of the study, real readers first, sorted by ``?sort=`` (a column,
    "-" first for descending), filtered by ``?step=`` and by ``?q=`` (part of a reader
    code or user name), ``PROGRESS_PAGE_SIZE`` a page (``?page=``)."""
    study, _ = study_for_staff(request, pk=pk)
    form = ReaderProgressFilter(request.GET, steps=reader_steps(study))
    chosen = form.chosen()
    page = Paginator(reader_progress_query(study=study, **chosen), PROGRESS_PAGE_SIZE).get_page(
        request.GET.get("page")
    )
    return _page(
        request,
        "admin/cases/study/progress.html",
        title=f"Reader progress: {study.title}",
        opts=Study._meta,
        study=study,
        form=form,
        rows=reader_progress_rows(page.object_list, study=study),
        conditions=study_conditions(study=study) if study.design != Study.Design.SINGLE else (),
        page=page,
        sorts=sort_links(request, current=chosen["sort"]),
        page_query=_query(request, drop=("page",)),
        filtered=bool(chosen["step"] or chosen["text"]),
        timezone_name=timezone.get_current_timezone_name(),
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


def _new_batch(request: HttpRequest) -> tuple[int, int] | None:
    """The ``?new=FIRST-LAST`` range of the invitations just created, if any."""
    first, _, last = request.GET.get("new", "").partition("-")
    if not (_digits(first) and _digits(last)):
        return None
    first, last = int(first), int(last)
    # at most one creation's worth (5000): anything else is not a batch just made
    return (first, last) if 0 <= last - first < 5000 else None


def _digits(value: str) -> bool:
    """ASCII digits only (str.isdigit takes "²", which int() refuses)."""
    return value.isascii() and value.isdigit()


def invitations_page(request: HttpRequest, pk: int) -> HttpResponse:
    """Create invitations (then shown at once, with their CSV a click away), list them
    with their links and status, revoke them."""
    study, _ = study_for_staff(request, pk=pk, write=True)
    here = reverse("admin:cases_study_invitations", args=[study.pk])
    batch = _new_batch(request)
    batch_pks = range(batch[0], batch[1] + 1) if batch else None
    if request.GET.get("format") == "csv":
        rows = study.invitations.all()
        if batch_pks is not None:
            rows = rows.filter(pk__in=batch_pks)
        name = f"{study.slug}-new-invitations.csv" if batch else f"{study.slug}-invitations.csv"
        return invitations_csv_response(request, rows, filename=name)
    if request.method == "POST" and "revoke" in request.POST:
        try:
            revoked = invitations_revoke(
                study=study,
                pks=[int(v) for v in request.POST.getlist("revoke")],
                actor=request.user,
            )
        except (ValueError, StudyError) as error:
            messages.error(request, f"Nothing was revoked: {error}.")
        else:
            messages.success(
                request,
                f"{revoked} invitation(s) revoked: their links no longer work."
                if revoked
                else "Those invitations were revoked already.",
            )
        return HttpResponseRedirect(here)
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
        pks = sorted(invitation.pk for invitation in created)
        messages.success(
            request,
            f"{len(pks)} invitation(s) created; they are marked new below. Download their "
            "links as CSV to send them, or copy a link from the list.",
        )
        return HttpResponseRedirect(f"{here}?new={pks[0]}-{pks[-1]}")
    rows = study_invitations(study=study)
    return _page(
        request,
        "admin/cases/study/invitations.html",
        title=f"Invitations: {study.title}",
        opts=Study._meta,
        study=study,
        form=form,
        rows=rows,
        batch=batch,
        batch_pks=set(batch_pks or ()),
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
                cleared = reader_unlock(actor=request.user, enrolment=enrolment)
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
    """Import a case bundle into a draft study; any other study's page says why not and
    offers no upload."""
    study, _ = study_for_staff(request, pk=pk, write=True)
    problems = []
    is_draft = study.status == Study.Status.DRAFT
    form = CaseImportForm(request.POST or None, request.FILES or None) if is_draft else None
    if request.method == "POST" and form is not None and form.is_valid():
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


def study_lifecycle_page(request: HttpRequest, pk: int) -> HttpResponse:
    """Open a draft study or close an open one, after a confirmation that says what
    follows; set or clear the closing date."""
    study, _ = study_for_staff(request, pk=pk, write=True)
    overview = reverse("admin:cases_study_overview", args=[study.pk])
    form = StudyClosingDateForm(
        request.POST if "closes_at" in request.POST else None, instance=study
    )
    if request.method == "POST":
        try:
            if request.POST.get("do") == "open":
                study_open(study=study, actor=request.user)
                messages.success(request, f"{study.title} is open: readers can join and answer.")
                return HttpResponseRedirect(overview)
            if request.POST.get("do") == "close":
                study_close(study=study, actor=request.user)
                messages.success(
                    request, f"{study.title} is closed: no reader can join or answer any more."
                )
                return HttpResponseRedirect(overview)
            if form.is_bound and form.is_valid():
                study_closing_date_set(
                    study=study, closes_at=form.cleaned_data["closes_at"], actor=request.user
                )
                messages.success(request, "The closing date is saved.")
                return HttpResponseRedirect(overview)
        except StudyError as error:
            messages.error(request, str(error))
            return HttpResponseRedirect(request.path)
    return _page(
        request,
        "admin/cases/study/lifecycle.html",
        title=f"Open or close: {study.title}",
        opts=Study._meta,
        study=study,
        form=form,
        refusals=study_open_refusals(study=study) if study.status == Study.Status.DRAFT else [],
        readers=study.enrolments.count(),
        unfinished=study.enrolments.filter(finished_at__isnull=True).count(),
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
            readers=form.cleaned_data["readers"],
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
    reports = study_reports(study=study)
    latest_done = latest_done_report(study=study, newest=reports)
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
    """Pick a study (``?study=`` picks it in advance, as the study's dashboard does) and
    a model; starts (or returns the active) run, then shows the study's dashboard, where
    the run's progress follows by itself."""
    studies = studies_for_staff(request, write=True, rights=RUN_PAGES)
    initial = {}
    if _digits(request.GET.get("study", "")):
        initial["study"] = studies.filter(pk=int(request.GET["study"])).first()
    form = RunStartForm(request.POST or None, initial=initial)
    form.fields["study"].queryset = studies.order_by("title")
    if request.method == "POST" and form.is_valid():
        study = form.cleaned_data["study"]
        run = inference_run_start_with_message(
            request, model=form.cleaned_data["model"], study=study
        )
        if run is not None:
            return HttpResponseRedirect(reverse("admin:cases_study_overview", args=[study.pk]))
    return _page(
        request,
        "inference/admin/run_start.html",
        title="Run inference",
        opts=InferenceRun._meta,
        form=form,
        study=initial.get("study"),
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


# --- the dashboard's chart and the reader progress page's controls -------------------------

PROGRESS_PAGE_SIZE = 50


class ReaderProgressFilter(forms.Form):
    """The reader progress page's ``?sort=``, ``?step=`` (one of ``steps``, the study's:
    ``cases.selectors.reader_steps``) and ``?q=``."""

    sort = forms.ChoiceField(
        required=False,
        choices=[(key, key) for name in PROGRESS_SORTS for key in (name, f"-{name}")],
    )
    step = forms.ChoiceField(required=False)
    q = forms.CharField(required=False, max_length=100, label="Reader code or user name")

    def __init__(self, *args, steps, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["step"].choices = [
            ("", "Every step"),
            *((step.value, step.label) for step in steps),
        ]

    def chosen(self) -> dict[str, str]:
        """``sort``, ``step`` and ``text`` for :func:`cases.selectors.reader_progress_query`:
        the valid part of the input, the defaults for the rest (an edited or stale link
        still shows the page; the template names what it ignored)."""
        self.is_valid()
        data = self.cleaned_data
        return {
            "sort": data.get("sort") or PROGRESS_DEFAULT_SORT,
            "step": data.get("step") or "",
            "text": data.get("q") or "",
        }


def _query(request: HttpRequest, *, drop: tuple[str, ...] = (), **values: str) -> str:
    """The request's query string without ``drop`` and with ``values`` set."""
    params = request.GET.copy()
    for name in drop:
        params.pop(name, None)
    for name, value in values.items():
        params[name] = value
    return params.urlencode()


@dataclass(frozen=True)
class SortLink:
    query: str  # the query string that sorts by the column (filters kept, page 1)
    direction: str  # how the page is sorted by it now: "ascending", "descending", "none"


def sort_links(request: HttpRequest, *, current: str) -> dict[str, SortLink]:
    """A link per sortable column: ascending, or descending where the page is sorted
    ascending by that column already."""
    links = {}
    for name in PROGRESS_SORTS:
        direction = {name: "ascending", f"-{name}": "descending"}.get(current, "none")
        target = f"-{name}" if direction == "ascending" else name
        links[name] = SortLink(_query(request, drop=("page",), sort=target), direction)
    return links


CHART_MAX_DAYS = 120  # a longer study shows its latest days; the table lists them all


@dataclass(frozen=True)
class ChartBar:
    """One day's column of the answers chart: the whole slot (to hover), the real
    readers' part from the axis up and the simulated readers' part on top of it."""

    day: dt.date
    title: str
    slot_x: float
    slot_width: float
    x: float
    width: float
    real_y: float
    real_height: float
    simulated_y: float
    simulated_height: float


@dataclass(frozen=True)
class Chart:
    """The geometry of the answers-per-day chart, in SVG user units."""

    bars: list[ChartBar]
    y_ticks: list[tuple[float, int]]  # (y, answers)
    x_labels: list[tuple[float, str]]  # (x, day)
    timezone_name: str
    days_left_out: int  # earlier days not drawn (CHART_MAX_DAYS)
    has_simulated: bool
    width: int = 760
    height: int = 240
    left: int = 52
    top: int = 12
    right: int = 748
    bottom: int = 196

    @property
    def first_day(self) -> dt.date:
        return self.bars[0].day

    @property
    def last_day(self) -> dt.date:
        return self.bars[-1].day

    @property
    def plot_height(self) -> int:
        return self.bottom - self.top

    @property
    def middle_x(self) -> float:
        return (self.left + self.right) / 2

    @property
    def middle_y(self) -> float:
        return (self.top + self.bottom) / 2


def _tick_step(top: int) -> int:
    """The smallest 1, 2 or 5 x 10^k that reaches ``top`` in at most five ticks."""
    scale = 1
    while True:
        for factor in (1, 2, 5):
            if math.ceil(top / (factor * scale)) <= 5:
                return factor * scale
        scale *= 10


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def answers_chart(days: list[DayCount], *, timezone_name: str) -> Chart | None:
    """The bar chart of ``days`` (the latest ``CHART_MAX_DAYS``), one bar per day,
    stacked real / simulated; None without a day."""
    if not days:
        return None
    shown = days[-CHART_MAX_DAYS:]
    most = max(max(d.total for d in shown), 1)
    step = _tick_step(most)
    y_max = step * math.ceil(most / step)
    left, bottom = Chart.left, Chart.bottom  # the plot's corner (the class's defaults)
    slot = (Chart.right - left) / len(shown)

    def y(value: float) -> float:
        return round(bottom - (bottom - Chart.top) * value / y_max, 1)

    bars = []
    for index, day in enumerate(shown):
        slot_x = left + index * slot
        title = f"{day.day.isoformat()}: {_plural(day.total, 'answer')}"
        if day.simulated:
            title += f" ({day.real} by real readers, {day.simulated} by simulated readers)"
        bars.append(
            ChartBar(
                day=day.day,
                title=title,
                slot_x=round(slot_x, 1),
                slot_width=round(slot, 1),
                x=round(slot_x + slot * 0.1, 1),
                width=round(slot * 0.8, 1),
                real_y=y(day.real),
                real_height=round(bottom - y(day.real), 1),
                simulated_y=y(day.total),
                simulated_height=round(y(day.real) - y(day.total), 1),
            )
        )
    every = math.ceil(len(shown) / 8)
    return Chart(
        bars=bars,
        y_ticks=[(y(value), value) for value in range(0, y_max + 1, step)],
        x_labels=[
            (round(left + (i + 0.5) * slot, 1), f"{d.day:%b} {d.day.day}")
            for i, d in enumerate(shown)
            if (len(shown) - 1 - i) % every == 0
        ],
        timezone_name=timezone_name,
        days_left_out=len(days) - len(shown),
        has_simulated=any(d.simulated for d in shown),
    )


# --- live progress: the small JSON the console's pages poll ------------------------------


def inference_runs_progress_json(request: HttpRequest) -> JsonResponse:
    """``?ids=1,2``: the status and progress of those inference runs, of the studies the
    user administers (others are left out), for the pages that show them to refresh
    their progress bars without a reload (static/js/live-progress.js)."""
    studies = studies_for_staff(request, rights=RUN_PAGES)
    ids = [int(v) for v in request.GET.get("ids", "").split(",") if _digits(v.strip())][:200]
    runs = InferenceRun.objects.filter(pk__in=ids, study__in=studies).only(
        "pk", "status", "done", "failed", "total", "error"
    )
    return JsonResponse(
        {
            "runs": [
                {
                    "id": run.pk,
                    "status": run.status,
                    "processed": run.processed,
                    "failed": run.failed,
                    "total": run.total,
                    "active": run.is_active,
                    "error": (run.error or "")[:200],
                }
                for run in runs
            ]
        },
        headers={"Cache-Control": "no-store"},
    )


def reports_progress_json(request: HttpRequest) -> JsonResponse:
    """``?ids=1,2``: the status and last step of those analysis reports, of the studies
    the user administers, for the Report page's progress (static/js/live-progress.js);
    a done report comes with the address of its report.html."""
    studies = studies_for_staff(request, rights=REPORT_PAGES)
    ids = [int(v) for v in request.GET.get("ids", "").split(",") if _digits(v.strip())][:50]
    reports = AnalysisReport.objects.filter(pk__in=ids, study__in=studies)
    rows = []
    for report in reports:
        step = report.progress or {}
        done = report.status == AnalysisReport.Status.DONE
        rows.append(
            {
                "id": report.pk,
                "status": report.status,
                "step": "done" if done else step.get("step", "waiting for a worker"),
                "processed": step.get("total", 0) if done else step.get("done", 0),
                "total": step.get("total", 0),
                "active": report.status
                in (AnalysisReport.Status.QUEUED, AnalysisReport.Status.RUNNING),
                "error": report.error[:200],
                "html": reverse("analysis:report_file", args=[report.pk, "report.html"])
                if done and "report.html" in report.files
                else "",
            }
        )
    return JsonResponse({"runs": rows}, headers={"Cache-Control": "no-store"})
