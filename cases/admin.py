"""Django admin for every cases model. The study's own pages (overview, reader progress,
invitations, import, answers export, reader accounts) are the staff console's
(:mod:`console`); the study's admin mounts them."""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.db.models import Q
from django.forms.models import BaseInlineFormSet
from django.http import HttpResponseRedirect
from django.urls import NoReverseMatch, reverse
from django.utils.html import format_html, format_html_join

from cases.forms import StudyForm
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
    ReadingCondition,
    Study,
    StudyChoice,
)
from cases.selectors import administered_studies, case_reference_fixed, studies_open_to_cases
from cases.services import (
    case_diagnosis_refusal,
    invitations_revoke,
    study_admins_audit,
    study_choice_refusal,
    study_open_refusals,
)
from console.forms import ReadingConditionForm
from console.urls import study_urls
from console.views import invitations_csv_response
from readerstudy.admin import ResearchDataAdmin, StudyScopedAdmin


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
            problem = study_choice_refusal(
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
            problem = study_choice_refusal(
                study=study, choice=original, deleting=False, changed=self.changed_data
            )
            if problem:
                raise ValidationError(problem)
        return cleaned


CONDITION_FIELDS = list(ReadingCondition.SETTINGS)


# Beside a condition on the study's form: the CNN whose support it shows and its top-k
# (inference.ConditionSupport, through console.forms.ReadingConditionForm).
SUPPORT_FIELDS = ["support_model", "support_top_k"]


def _condition_rows(support: list[str]) -> list[tuple[str, ...]]:
    """The lines of a condition's box: its names, its images and metadata, the CNN."""
    return [
        ("code", "position"),
        ("label", "label_zh"),
        ("shows_dermoscopic", "shows_clinical", "shows_metadata"),
        ("shows_cnn", "shows_gradcam"),
        tuple(support),
    ]


class ReadingConditionInline(admin.StackedInline):
    """The study's reading conditions, one box each, with the CNN whose support it shows
    under "shows the CNN's support" (a box, not a table row: eleven columns do not fit
    beside the sidebar). Set while the study is a draft; from opening on, what
    each condition showed is what its answers were given with, so they are fixed (shown,
    not editable)."""

    model = ReadingCondition
    form = ReadingConditionForm
    extra = 0
    ordering = ["position"]

    def _fixed(self, obj) -> bool:
        return obj is not None and obj.status != Study.Status.DRAFT

    def get_fieldsets(self, request, obj=None):
        support = ["cnn_support_shown"] if self._fixed(obj) else SUPPORT_FIELDS
        return [(None, {"fields": _condition_rows(support)})]

    def get_readonly_fields(self, request, obj=None):
        return [*CONDITION_FIELDS, "cnn_support_shown"] if self._fixed(obj) else []

    def get_formset(self, request, obj=None, **kwargs):
        if self._fixed(obj):
            # Nothing of a fixed condition is in the form: not its support either.
            kwargs["form"] = forms.ModelForm
        return super().get_formset(request, obj, **kwargs)

    def has_add_permission(self, request, obj=None) -> bool:
        return not self._fixed(obj) and super().has_add_permission(request, obj)

    def has_change_permission(self, request, obj=None) -> bool:
        return not self._fixed(obj) and super().has_change_permission(request, obj)

    def has_delete_permission(self, request, obj=None) -> bool:
        return not self._fixed(obj) and super().has_delete_permission(request, obj)

    @admin.display(description="its CNN")
    def cnn_support_shown(self, condition: ReadingCondition) -> str:
        if not condition.shows_cnn:
            return "-"
        support = getattr(condition, "cnn_support", None)
        if support is None:
            return "none set"
        return f"{support.model} (top {support.top_k})"


@admin.register(ReadingCondition)
class ReadingConditionAdmin(StudyScopedAdmin):
    """Every study's conditions, to look up; they are set on the study's own form."""

    list_display = ["study", "position", "code", "label", "shows_clinical", "shows_cnn"]
    list_filter = ["study", "shows_cnn", "shows_clinical", "shows_metadata"]
    search_fields = ["study__slug", "code", "label", "label_zh"]
    readonly_fields = ["study", *CONDITION_FIELDS]

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        # Only with its draft study (which the Study admin deletes with its conditions).
        return (
            obj is not None
            and obj.study.status == Study.Status.DRAFT
            and super().has_delete_permission(request, obj)
        )


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
            problem = study_choice_refusal(
                study=choice.study, choice=choice, deleting=True, changed=[]
            )
            if problem:
                protected = [*protected, f"{choice}: {problem}"]
        return deleted, counts, perms_needed, protected


class StudyAdminForm(StudyForm):
    """The study form with its design: a washout only for a crossover, and one there."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if "design" in self.fields:
            # A form sent without it (a script's) keeps the study's design; the page
            # always sends one (its select has no empty choice).
            self.fields["design"].required = False

    def clean_design(self) -> str:
        return self.cleaned_data.get("design") or self.instance.design or Study.Design.SINGLE

    def clean(self):
        cleaned = super().clean()
        if "washout_days" not in self.fields:
            return cleaned
        design, washout = cleaned.get("design"), cleaned.get("washout_days")
        if design == Study.Design.CROSSOVER and not washout:
            self.add_error(
                "washout_days",
                "A crossover needs a washout of at least one day between a reader's sessions.",
            )
        elif design != Study.Design.CROSSOVER and washout is not None:
            self.add_error(
                "washout_days", "Only a crossover has a washout: leave it empty for this design."
            )
        return cleaned


DESIGN_HELP = (
    "<b>One condition</b>: today's reader study (its condition below shows the images). "
    "<b>Sequential per case</b>: two conditions, first unaided, then one that shows the "
    "CNN's support (tick “shows the CNN's support” on the second condition under <i>Reading "
    "conditions</i> and choose its CNN and top-k there); each case is answered "
    "unaided, then again with the CNN. <b>Crossover</b>: two conditions, every case read in "
    "each, in two sessions a washout apart (half the readers in each order, drawn "
    "balanced). Both need “allow answer changes” off. A CNN's support can be shown only once "
    "that CNN has predicted every case (<i>Run a CNN on this study</i>, on the Overview), "
    "and the Overview says what still keeps the study from opening. Fixed once it opens."
)


@admin.register(Study)
class StudyAdmin(StudyScopedAdmin):
    study_path = None
    form = StudyAdminForm
    list_display = [
        "title",
        "slug",
        "status",
        "case_count",
        "is_synthetic",
        "created_at",
        "overview_link",
    ]
    list_filter = ["status", "is_synthetic", "shuffle_cases", "show_feedback"]
    search_fields = ["title", "slug", "description"]
    prepopulated_fields = {"slug": ["title"]}
    inlines = [StudyChoiceInline, ReadingConditionInline]

    def get_inlines(self, request, obj):
        # A new study gets its default condition as it is saved (cases.signals); its
        # conditions are then set on its change form.
        inlines = super().get_inlines(request, obj)
        return (
            inlines if obj is not None else [i for i in inlines if i is not ReadingConditionInline]
        )

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
                    "admin_notes",
                    "status",
                    "closes_at",
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
        (
            "Design: reading conditions",
            {"fields": ["design", "washout_days"], "description": DESIGN_HELP},
        ),
        ("Consent", {"fields": ["consent_text", "consent_text_zh", "consent_version"]}),
        ("Readers and admins", {"fields": ["required_profile_fields", "admins"]}),
    ]
    filter_horizontal = ["admins"]

    def get_readonly_fields(self, request, obj=None):
        # Opening and closing (and the closing date) go through the study's "Open or
        # close" page, which checks, confirms and audits them; a new study is a draft.
        fields = [*super().get_readonly_fields(request, obj), "status", "closes_at"]
        if obj is not None and obj.status != Study.Status.DRAFT:
            # What its readers' answers were given under.
            fields += ["design", "washout_days"]
        if obj is not None and obj.enrolments.exists():
            # What the demo's reset may erase: never relabelled once readers took part.
            fields.append("is_synthetic")
        # Only superusers decide who administers a study.
        return fields if request.user.is_superuser else [*fields, "admins"]

    def formfield_for_manytomany(self, db_field, request, **kwargs):
        if db_field.name == "admins":
            # Only staff can use the console: offer staff, and this study's admins (one
            # who is no longer staff then meets StudyForm's error, which names them).
            current = Q()
            object_id = request.resolver_match.kwargs.get("object_id")
            if object_id and str(object_id).isdigit():
                current = Q(administered_studies__pk=int(object_id))
            kwargs["queryset"] = (
                get_user_model()
                .objects.filter(Q(is_staff=True, is_active=True) | current)
                .distinct()
                .order_by("username")
            )
        return super().formfield_for_manytomany(db_field, request, **kwargs)

    def save_related(self, request, form, formsets, change):
        study = form.instance
        before = set(study.admins.values_list("pk", flat=True)) if change else set()
        super().save_related(request, form, formsets, change)
        if not change and not request.user.is_superuser:
            study.admins.add(request.user)  # who creates a study administers it
        study_admins_audit(study=study, before=before, actor=request.user)
        if change and study.status == Study.Status.DRAFT:
            reasons = study_open_refusals(study=study)
            if reasons:
                messages.warning(
                    request,
                    "Saved as a draft. It cannot open yet: " + "; ".join(reasons) + ".",
                )

    @admin.display(description="cases")
    def case_count(self, study: Study) -> int:
        return study.cases.count()

    @admin.display(description="dashboard")
    def overview_link(self, study: Study) -> str:
        return format_html(
            '<a href="{}">Overview</a>', reverse("admin:cases_study_overview", args=[study.pk])
        )

    def response_add(self, request, obj, post_url_continue=None):
        # A new study's next steps (import, invitations, open) start from its overview.
        if "_addanother" in request.POST or "_continue" in request.POST or "_popup" in request.POST:
            return super().response_add(request, obj, post_url_continue)
        messages.success(request, f"Study “{obj.title}” added. Import its cases next.")
        return HttpResponseRedirect(reverse("admin:cases_study_overview", args=[obj.pk]))

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
        # The analysis and inference apps mount these pages; linked by URL name only,
        # and left out where an app (its URLs) is not installed.
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
        return study_urls(self.admin_site) + super().get_urls()


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
            self.fields["study"].queryset = self.fields["study"].queryset & (
                studies_open_to_cases()
            )

    def clean(self):
        cleaned = super().clean()
        # Read-only fields are not in cleaned_data; the instance still holds them.
        study = cleaned.get("study") or (self.instance.study if self.instance.pk else None)
        diagnosis = cleaned.get("diagnosis") or (
            self.instance.diagnosis if self.instance.pk else None
        )
        if study is not None and diagnosis is not None:
            refusal = case_diagnosis_refusal(study=study, diagnosis=diagnosis)
            if refusal:
                self.add_error("diagnosis" if "diagnosis" in self.fields else None, refusal)
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
        fields = list(super().get_readonly_fields(request, obj))
        if obj is not None and case_reference_fixed(case=obj):
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
    """Enrolments come from invitations and carry the reader's consent (research data):
    shown, never added or changed here; one is deleted only while it has neither a
    consent nor an answer (Django's "cannot delete" page says why otherwise)."""

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

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        if obj is not None and (obj.consented_at is not None or obj.answers.exists()):
            return False
        return super().has_delete_permission(request, obj)

    def get_deleted_objects(self, objs, request):
        # The answers protect their enrolment already (PROTECT); a consent alone is named
        # here, so that the bulk action refuses it with the same page.
        deleted, counts, perms_needed, protected = super().get_deleted_objects(objs, request)
        consented = [f"{e}: the reader has consented" for e in objs if e.consented_at]
        return deleted, counts, perms_needed, [*protected, *consented]

    @admin.display(description="reader account")
    def account(self, enrolment: Enrolment) -> str:
        if not enrolment.pk:
            return "-"
        return format_html(
            '<a href="{}">Set a new password or unlock</a>',
            reverse("admin:cases_study_reader_account", args=[enrolment.study_id, enrolment.pk]),
        )


class AnswerChangeInline(ResearchDataAdmin, admin.TabularInline):
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
        count = 0
        for study_id in queryset.values_list("study_id", flat=True).distinct():
            count += invitations_revoke(
                study=Study.objects.get(pk=study_id),
                pks=queryset.filter(study_id=study_id).values_list("pk", flat=True),
                actor=request.user,
            )
        self.message_user(request, f"{count} invitation(s) revoked.", messages.SUCCESS)


# Answers and their history are research data: the admin shows them, nothing more.
@admin.register(Answer)
class AnswerAdmin(ResearchDataAdmin, StudyScopedAdmin):
    study_path = "enrolment__study"
    list_display = ["enrolment", "case", "diagnosis", "confidence", "seconds", "answered_at"]
    list_filter = ["enrolment__study", "diagnosis"]
    search_fields = ["enrolment__reader_code", "case__public_id", "case__source_id"]
    list_select_related = ["enrolment", "case", "diagnosis"]
    inlines = [AnswerChangeInline]


@admin.register(AnswerChange)
class AnswerChangeAdmin(ResearchDataAdmin, StudyScopedAdmin):
    study_path = "answer__enrolment__study"
    list_display = ["answer", "previous_diagnosis", "new_diagnosis", "changed_at"]
    list_filter = ["answer__enrolment__study", "previous_diagnosis", "new_diagnosis"]
    search_fields = [
        "answer__enrolment__reader_code",
        "answer__case__public_id",
        "answer__case__source_id",
    ]
