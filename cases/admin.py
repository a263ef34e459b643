"""Django admin for every cases model, plus a study overview and a bundle upload."""

from __future__ import annotations

import csv
import datetime as dt

from django import forms
from django.contrib import admin, messages
from django.contrib.auth.forms import SetPasswordForm
from django.core.exceptions import ValidationError
from django.db.models import Q
from django.forms.models import BaseInlineFormSet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import NoReverseMatch, path, reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join

from audit.models import AuditEvent
from audit.services import audit_log, client_ip
from cases.api import answers_csv_response
from cases.forms import StudyForm
from cases.importing import ImportRejected, cases_import
from cases.models import (
    PROFILE_FIELDS,
    Answer,
    AnswerChange,
    Case,
    CaseImage,
    Diagnosis,
    Enrolment,
    Invitation,
    ReaderProfile,
    Study,
    StudyChoice,
)
from cases.selectors import administered_studies, reader_progress_table, study_overview
from cases.services import (
    AccountError,
    invitations_create,
    reader_password_set,
    reader_unlock,
    staff_account_refusal,
)


class StudyScopedAdmin(admin.ModelAdmin):
    """Lists and pages limited to the studies the user administers (all for a superuser).

    ``study_path`` is the lookup from the model to its Study; None for Study itself.
    """

    study_path: str | None = "study"

    def get_queryset(self, request):
        queryset = super().get_queryset(request)
        if request.user.is_superuser:
            return queryset
        studies = administered_studies(user=request.user)
        if self.study_path is None:
            return queryset.filter(pk__in=studies)
        return queryset.filter(**{f"{self.study_path}__in": studies}).distinct()

    def get_list_filter(self, request):
        # A plain filter on a study lists every study in the sidebar; list only those
        # that occur in the (scoped) rows instead.
        return [
            (entry, admin.RelatedOnlyFieldListFilter)
            if isinstance(entry, str) and entry.split("__")[-1] == "study"
            else entry
            for entry in super().get_list_filter(request)
        ]

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        if db_field.related_model is Study and not request.user.is_superuser:
            kwargs["queryset"] = administered_studies(user=request.user)
        return super().formfield_for_foreignkey(db_field, request, **kwargs)


class AdministeredStudyFilter(admin.SimpleListFilter):
    """Diagnoses that are choices of one study, listing only the studies the user
    administers (a plain related filter would name every study)."""

    title = "choice of study"
    parameter_name = "study"

    def lookups(self, request, model_admin):
        return [(s.pk, s.title) for s in administered_studies(user=request.user).order_by("title")]

    def queryset(self, request, queryset):
        if not self.value():
            return queryset
        if not str(self.value()).isdigit():
            return queryset.none()
        studies = administered_studies(user=request.user).filter(pk=self.value())
        return queryset.filter(studies__in=studies).distinct()


@admin.register(Diagnosis)
class DiagnosisAdmin(admin.ModelAdmin):
    list_display = ["code", "name_en", "name_zh"]
    list_filter = [AdministeredStudyFilter]
    search_fields = ["code", "name_en", "name_zh"]


def choice_in_use(*, study_id: int, diagnosis_id: int) -> str:
    """Why a study's choice of ``diagnosis_id`` cannot be removed or replaced (the cases
    and answers of the study that use it), or '' when nothing uses it."""
    cases = Case.objects.filter(study_id=study_id, diagnosis_id=diagnosis_id).count()
    answers = (
        Answer.objects.filter(enrolment__study_id=study_id)
        .filter(
            Q(diagnosis_id=diagnosis_id)
            | Q(changes__previous_diagnosis_id=diagnosis_id)
            | Q(changes__new_diagnosis_id=diagnosis_id)
        )
        .distinct()
        .count()
    )
    if not cases and not answers:
        return ""
    code = Diagnosis.objects.get(pk=diagnosis_id).code
    return (
        f"{code} is used by {cases} case(s) and {answers} answer(s) of this study: "
        "it cannot be removed or replaced."
    )


def choice_edit_problem(
    *, study: Study, choice: StudyChoice | None, deleting: bool, changed: list[str]
) -> str:
    """Why adding (``choice`` None), changing or deleting a study choice must be refused,
    or '' when it may go ahead. The stored status counts, not one being submitted."""
    stored = Study.objects.filter(pk=study.pk).values_list("status", flat=True).first()
    if stored not in (None, Study.Status.DRAFT) and (choice is None or deleting or changed):
        return (
            f"the choices of a study that is {stored} are fixed: its readers answer with "
            "these buttons, in this order."
        )
    if choice is not None and (deleting or "diagnosis" in changed or "study" in changed):
        return choice_in_use(study_id=choice.study_id, diagnosis_id=choice.diagnosis_id)
    return ""


class StudyChoiceFormSet(BaseInlineFormSet):
    def clean(self):
        super().clean()
        problems = []
        for form in self.forms:
            if not form.has_changed() and not self._should_delete_form(form):
                continue
            if form.instance.pk is None and self._should_delete_form(form):
                continue  # a new row removed again: nothing happens
            original = (
                StudyChoice.objects.filter(pk=form.instance.pk).first()
                if form.instance.pk
                else None
            )
            problem = choice_edit_problem(
                study=self.instance,
                choice=original,
                deleting=self._should_delete_form(form),
                changed=form.changed_data,
            )
            if problem and problem not in problems:
                problems.append(problem)
        if problems:
            raise ValidationError(problems)


class StudyChoiceInline(admin.TabularInline):
    model = StudyChoice
    formset = StudyChoiceFormSet
    extra = 0
    ordering = ["position"]


class StudyChoiceForm(forms.ModelForm):
    class Meta:
        model = StudyChoice
        fields = ["study", "diagnosis", "position"]

    def clean(self):
        cleaned = super().clean()
        # Before _post_clean, self.instance still holds the stored values.
        original = self.instance if self.instance.pk else None
        study = original.study if original else cleaned.get("study")
        if study is not None:
            problem = choice_edit_problem(
                study=study, choice=original, deleting=False, changed=self.changed_data
            )
            if problem:
                raise ValidationError(problem)
        return cleaned


@admin.register(StudyChoice)
class StudyChoiceAdmin(StudyScopedAdmin):
    form = StudyChoiceForm
    list_display = ["study", "position", "diagnosis"]
    list_filter = ["study"]
    search_fields = ["study__slug", "diagnosis__code"]

    def get_readonly_fields(self, request, obj=None):
        fields = list(super().get_readonly_fields(request, obj))
        return [*fields, "study"] if obj is not None else fields

    def get_deleted_objects(self, objs, request):
        # Listing a choice as "protected" makes Django refuse the deletion with a page
        # that says why (the delete view and the bulk action both ask this).
        deleted, counts, perms_needed, protected = super().get_deleted_objects(objs, request)
        for choice in objs:
            problem = choice_edit_problem(
                study=choice.study, choice=choice, deleting=True, changed=[]
            )
            if problem:
                protected = [*protected, f"{choice}: {problem}"]
        return deleted, counts, perms_needed, protected


class InvitationCreateForm(forms.Form):
    count = forms.IntegerField(min_value=1, max_value=5000, initial=10)
    max_uses = forms.IntegerField(
        min_value=1, initial=1, help_text="1: a personal link. More: a link for a group."
    )
    expires_in_days = forms.IntegerField(
        min_value=1, max_value=3650, required=False, initial=30, help_text="Empty: never expires."
    )
    label = forms.CharField(
        max_length=200, required=False, help_text="Who the links are for (admins only see this)."
    )


def invitations_csv_response(request: HttpRequest, invitations, *, filename: str):
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


def lockout_state(username: str) -> dict[str, object]:
    """The failed logins django-axes holds for ``username``: how many, from how many
    addresses, and whether one of those addresses is locked out now."""
    from axes.helpers import get_cool_off
    from axes.models import AccessAttempt
    from django.conf import settings

    attempts = AccessAttempt.objects.filter(username=username)
    cool_off = get_cool_off()
    live = attempts.filter(attempt_time__gte=timezone.now() - cool_off) if cool_off else attempts
    return {
        "failures": sum(a.failures_since_start for a in attempts),
        "addresses": attempts.count(),
        "locked": live.filter(failures_since_start__gte=settings.AXES_FAILURE_LIMIT).exists(),
    }


class CaseImportForm(forms.Form):
    bundle = forms.FileField(
        help_text="A .zip holding cases.csv and the images it names (JPEG, PNG or TIFF)."
    )


@admin.register(Study)
class StudyAdmin(StudyScopedAdmin):
    study_path = None
    form = StudyForm
    list_display = ["title", "slug", "status", "case_count", "is_synthetic", "created_at"]
    list_filter = ["status", "is_synthetic", "shuffle_cases", "show_feedback"]
    search_fields = ["title", "slug", "description"]
    prepopulated_fields = {"slug": ["title"]}
    inlines = [StudyChoiceInline]
    readonly_fields = ["links"]
    fieldsets = [
        (
            None,
            {
                "fields": [
                    "title",
                    "title_zh",
                    "slug",
                    "description",
                    "description_zh",
                    "status",
                    "is_synthetic",
                    "links",
                ]
            },
        ),
        (
            "Questionnaire",
            {
                "fields": [
                    "shuffle_cases",
                    "show_clinical_image",
                    "allow_answer_changes",
                    "ask_confidence",
                    "show_feedback",
                    "show_model_feedback",
                ]
            },
        ),
        ("Consent", {"fields": ["consent_text", "consent_text_zh", "consent_version"]}),
        ("Readers and admins", {"fields": ["required_profile_fields", "admins"]}),
    ]
    filter_horizontal = ["admins"]

    def get_readonly_fields(self, request, obj=None):
        # Only superusers decide who administers a study.
        fields = list(super().get_readonly_fields(request, obj))
        return fields if request.user.is_superuser else [*fields, "admins"]

    def save_related(self, request, form, formsets, change):
        super().save_related(request, form, formsets, change)
        if not change and not request.user.is_superuser:
            form.instance.admins.add(request.user)  # who creates a study administers it

    @admin.display(description="cases")
    def case_count(self, study: Study) -> int:
        return study.cases.count()

    @admin.display(description="tools")
    def links(self, study: Study) -> str:
        if not study.pk:
            return "-"
        return format_html(
            '<a href="{}">Overview</a> · <a href="{}">Reader progress</a> · '
            '<a href="{}">Invitations</a> · <a href="{}">Import cases</a> · '
            '<a href="{}">Export answers (CSV)</a>',
            reverse("admin:cases_study_overview", args=[study.pk]),
            reverse("admin:cases_study_progress", args=[study.pk]),
            reverse("admin:cases_study_invitations", args=[study.pk]),
            reverse("admin:cases_study_import", args=[study.pk]),
            reverse("admin:cases_study_answers_csv", args=[study.pk]),
        ) + self._report_link(study)

    @staticmethod
    def _report_link(study: Study) -> str:
        # The analysis and inference apps add these pages; cases does not import them.
        links = [
            ("admin:analysis_study_report", [study.pk], "Analysis report"),
            ("inference:predictions_csv", [study.slug], "Export predictions (CSV)"),
        ]
        present = []
        for name, args, label in links:
            try:
                present.append((reverse(name, args=args), label))
            except NoReverseMatch:
                continue
        return format_html_join("", ' · <a href="{}">{}</a>', present)

    def get_urls(self):
        own = [
            path(
                "<int:pk>/overview/",
                self.admin_site.admin_view(self.overview_view),
                name="cases_study_overview",
            ),
            path(
                "<int:pk>/import/",
                self.admin_site.admin_view(self.import_view),
                name="cases_study_import",
            ),
            path(
                "<int:pk>/progress/",
                self.admin_site.admin_view(self.progress_view),
                name="cases_study_progress",
            ),
            path(
                "<int:pk>/answers.csv",
                self.admin_site.admin_view(self.answers_csv_view),
                name="cases_study_answers_csv",
            ),
            path(
                "<int:pk>/invitations/",
                self.admin_site.admin_view(self.invitations_view),
                name="cases_study_invitations",
            ),
            path(
                "<int:pk>/readers/<int:enrolment_pk>/account/",
                self.admin_site.admin_view(self.reader_account_view),
                name="cases_study_reader_account",
            ),
        ]
        return own + super().get_urls()

    def overview_view(self, request: HttpRequest, pk: int) -> HttpResponse:
        study = get_object_or_404(self.get_queryset(request), pk=pk)
        if not self.has_view_permission(request, study):
            return HttpResponseRedirect(reverse("admin:index"))
        context = {
            **self.admin_site.each_context(request),
            "title": f"Overview: {study.title}",
            "study": study,
            "opts": self.model._meta,
            "overview": study_overview(study=study),
        }
        return TemplateResponse(request, "admin/cases/study/overview.html", context)

    def progress_view(self, request: HttpRequest, pk: int) -> HttpResponse:
        study = get_object_or_404(self.get_queryset(request), pk=pk)
        if not self.has_view_permission(request, study):
            return HttpResponseRedirect(reverse("admin:index"))
        context = {
            **self.admin_site.each_context(request),
            "title": f"Reader progress: {study.title}",
            "study": study,
            "opts": self.model._meta,
            "rows": reader_progress_table(study=study),
        }
        return TemplateResponse(request, "admin/cases/study/progress.html", context)

    def answers_csv_view(self, request: HttpRequest, pk: int) -> HttpResponse:
        study = get_object_or_404(self.get_queryset(request), pk=pk)
        if not self.has_view_permission(request, study):
            return HttpResponseRedirect(reverse("admin:index"))
        return answers_csv_response(
            study, language=request.GET.get("language", "en"), request=request
        )

    def invitations_view(self, request: HttpRequest, pk: int) -> HttpResponse:
        study = get_object_or_404(self.get_queryset(request), pk=pk)
        if not self.has_change_permission(request, study):
            return HttpResponseRedirect(reverse("admin:index"))
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
        context = {
            **self.admin_site.each_context(request),
            "title": f"Invitations: {study.title}",
            "study": study,
            "opts": self.model._meta,
            "form": form,
            "invitations": study.invitations.all()[:200],
            "total": study.invitations.count(),
        }
        return TemplateResponse(request, "admin/cases/study/invitations.html", context)

    def reader_account_view(self, request: HttpRequest, pk: int, enrolment_pk: int) -> HttpResponse:
        """A study admin sets a new password for a reader of the study, or only lifts
        their login lockout. Staff accounts are refused (a superuser manages those)."""
        study = get_object_or_404(self.get_queryset(request), pk=pk)
        if not self.has_change_permission(request, study):
            return HttpResponseRedirect(reverse("admin:index"))
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
                    self.message_user(
                        request,
                        f"{reader.get_username()} is unlocked "
                        f"({cleared} failed-login record(s) removed).",
                        messages.SUCCESS,
                    )
                    return HttpResponseRedirect(progress)
                if form.is_valid():
                    reader_password_set(
                        actor=request.user,
                        enrolment=enrolment,
                        password=form.cleaned_data["new_password1"],
                        ip=client_ip(request),
                    )
                    self.message_user(
                        request,
                        f"New password set for {reader.get_username()}; any lockout is "
                        "lifted. Give them the password over a safe channel.",
                        messages.SUCCESS,
                    )
                    return HttpResponseRedirect(progress)
            except AccountError as exc:
                refused = str(exc)
            except ValidationError as exc:
                form.add_error("new_password2", exc)
        context = {
            **self.admin_site.each_context(request),
            "title": f"Reader account: {reader.get_username()}",
            "study": study,
            "enrolment": enrolment,
            "reader": reader,
            "opts": self.model._meta,
            "form": form,
            "refused": refused,
            "lockout": lockout_state(reader.get_username()),
        }
        return TemplateResponse(request, "admin/cases/study/reader_account.html", context)

    def import_view(self, request: HttpRequest, pk: int) -> HttpResponse:
        study = get_object_or_404(self.get_queryset(request), pk=pk)
        if not self.has_change_permission(request, study):
            return HttpResponseRedirect(reverse("admin:index"))
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
                self.message_user(
                    request, f"{result.cases_created} case(s) imported.", messages.SUCCESS
                )
                return HttpResponseRedirect(reverse("admin:cases_study_overview", args=[pk]))
        context = {
            **self.admin_site.each_context(request),
            "title": f"Import cases into {study.title}",
            "study": study,
            "opts": self.model._meta,
            "form": form,
            "problems": problems,
        }
        return TemplateResponse(request, "admin/cases/study/import.html", context)


class CaseImageInline(admin.TabularInline):
    model = CaseImage
    extra = 0
    can_delete = False
    fields = ["preview", "kind", "format", "width", "height", "size_bytes", "sha256"]
    readonly_fields = fields

    @admin.display(description="image")
    def preview(self, image: CaseImage) -> str:
        url = reverse("cases:image", args=[image.public_id, "thumb"])
        return format_html('<img src="{}" alt="{}" style="max-height:120px">', url, image.kind)

    def has_add_permission(self, request, obj=None) -> bool:
        return False


class CaseAdminForm(forms.ModelForm):
    """Keeps the invariant the importer keeps: the reference diagnosis is one of the
    study's choices."""

    class Meta:
        model = Case
        fields = [
            "study",
            "source_id",
            "position",
            "diagnosis",
            "age",
            "sex",
            "site",
            "histopathology",
        ]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if "diagnosis" in self.fields and self.instance.pk:
            self.fields["diagnosis"].queryset = Diagnosis.objects.filter(
                studychoice__study=self.instance.study_id
            ).order_by("studychoice__position")
        if "study" in self.fields:
            # A case may only move between draft studies: readers never see it change.
            self.fields["study"].queryset = self.fields["study"].queryset.filter(
                status=Study.Status.DRAFT
            )

    def clean(self):
        cleaned = super().clean()
        # Read-only fields are not in cleaned_data; the instance still holds them.
        study = cleaned.get("study") or (self.instance.study if self.instance.pk else None)
        diagnosis = cleaned.get("diagnosis") or (
            self.instance.diagnosis if self.instance.pk else None
        )
        if study is not None and diagnosis is not None:
            codes = study.choice_codes()
            if diagnosis.code not in codes:
                message = (
                    f"{diagnosis.code} is not one of the choices of {study.title!r} "
                    f"({', '.join(codes) or 'none yet'})."
                )
                self.add_error("diagnosis" if "diagnosis" in self.fields else None, message)
        return cleaned


@admin.register(Case)
class CaseAdmin(StudyScopedAdmin):
    list_display = [
        "source_id",
        "public_id",
        "study",
        "diagnosis",
        "age",
        "sex",
        "site",
        "histopathology",
    ]
    list_filter = ["study", "diagnosis", "sex", "histopathology"]
    search_fields = ["source_id", "public_id", "site"]
    list_select_related = ["study", "diagnosis"]
    readonly_fields = ["public_id"]
    inlines = [CaseImageInline]
    form = CaseAdminForm

    def get_readonly_fields(self, request, obj=None):
        # Once readers can see the study (or have answered the case), its reference
        # diagnosis and its study are fixed: changing them would rewrite the results.
        fields = list(super().get_readonly_fields(request, obj))
        if obj is not None and (obj.study.status != Study.Status.DRAFT or obj.answers.exists()):
            fields += ["study", "diagnosis"]
        return fields

    def has_add_permission(self, request) -> bool:
        # Cases come from the importer (Import cases), which makes their images too.
        return False


@admin.register(CaseImage)
class CaseImageAdmin(StudyScopedAdmin):
    study_path = "case__study"
    list_display = ["case", "kind", "format", "width", "height", "sha256"]
    list_filter = ["kind", "format", "case__study"]
    search_fields = ["case__source_id", "case__public_id", "public_id", "sha256"]
    list_select_related = ["case__study"]
    readonly_fields = ["public_id", "sha256", "width", "height", "size_bytes", "format"]

    # Images come from the importer, which checks them, hashes them and makes their
    # derivatives: the admin only shows them.
    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False


@admin.register(ReaderProfile)
class ReaderProfileAdmin(StudyScopedAdmin):
    study_path = "user__enrolments__study"
    list_display = ["user", *PROFILE_FIELDS, "is_simulated"]
    list_filter = ["level", "board_certified", "hospital_tier", "is_simulated"]
    search_fields = ["user__username", "user__email", "region"]


@admin.register(Enrolment)
class EnrolmentAdmin(StudyScopedAdmin):
    list_display = ["reader_code", "reader", "study", "consented_at", "enrolled_at", "finished_at"]
    list_filter = ["study", ("finished_at", admin.EmptyFieldListFilter)]
    search_fields = ["reader_code", "reader__username", "reader__email"]
    list_select_related = ["reader", "study"]
    readonly_fields = [
        "account",
        "reader_code",
        "order_seed",
        "case_order",
        "served_case",
        "served_at",
    ]

    @admin.display(description="reader account")
    def account(self, enrolment: Enrolment) -> str:
        if not enrolment.pk:
            return "-"
        return format_html(
            '<a href="{}">Set a new password or unlock</a>',
            reverse("admin:cases_study_reader_account", args=[enrolment.study_id, enrolment.pk]),
        )


class AnswerChangeInline(admin.TabularInline):
    model = AnswerChange
    extra = 0
    can_delete = False
    readonly_fields = [
        "previous_diagnosis",
        "previous_confidence",
        "new_diagnosis",
        "new_confidence",
        "changed_at",
    ]

    def has_add_permission(self, request, obj=None) -> bool:
        return False


@admin.register(Invitation)
class InvitationAdmin(StudyScopedAdmin):
    list_display = ["study", "label", "uses", "max_uses", "expires_at", "revoked", "created_at"]
    list_filter = ["study", "revoked"]
    search_fields = ["label", "token"]
    readonly_fields = ["token", "uses", "created_by", "created_at"]
    actions = ["export_csv", "revoke"]

    @admin.action(description="Download the selected invitations as CSV")
    def export_csv(self, request, queryset):
        return invitations_csv_response(request, queryset, filename="invitations.csv")

    @admin.action(description="Revoke the selected invitations")
    def revoke(self, request, queryset):
        count = queryset.update(revoked=True)
        self.message_user(request, f"{count} invitation(s) revoked.", messages.SUCCESS)


@admin.register(Answer)
class AnswerAdmin(StudyScopedAdmin):
    study_path = "enrolment__study"
    list_display = ["enrolment", "case", "diagnosis", "confidence", "seconds", "answered_at"]
    list_filter = ["enrolment__study", "diagnosis"]
    search_fields = ["enrolment__reader_code", "case__public_id", "case__source_id"]
    list_select_related = ["enrolment", "case", "diagnosis"]
    inlines = [AnswerChangeInline]

    # Answers are research data: the admin shows them but never edits them.
    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_add_permission(self, request) -> bool:
        return False


@admin.register(AnswerChange)
class AnswerChangeAdmin(StudyScopedAdmin):
    study_path = "answer__enrolment__study"
    list_display = ["answer", "previous_diagnosis", "new_diagnosis", "changed_at"]
    list_filter = ["answer__enrolment__study", "previous_diagnosis", "new_diagnosis"]
    search_fields = [
        "answer__enrolment__reader_code",
        "answer__case__public_id",
        "answer__case__source_id",
    ]

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_add_permission(self, request) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False
