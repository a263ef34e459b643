"""Diagnoses, studies, cases and their images, and the reader side (profiles,
enrolments, answers).

Invariants live in the database: one answer per (enrolment, case), one image of each
kind per case, study data protected from deletion while anything refers to it.

Research data (answers and their history, consents; the audit trail and the predictions
live in their own apps) is never deleted or rewritten: the querysets
and models below refuse it, and on PostgreSQL triggers refuse it in the database itself
(migration 0007; inference 0003-0004 and audit 0002 for the others). The one exception is a
synthetic study, erased whole by the demo's reset inside :func:`synthetic_study_erasure`.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import connection, models, transaction
from django.db.models import ProtectedError, Q
from django.utils import timezone
from django.utils.translation import get_language
from django.utils.translation import gettext_lazy as _


def new_public_id() -> str:
    """An opaque, URL-safe identifier that says nothing about the case."""
    return secrets.token_hex(8)


def default_required_profile_fields() -> list[str]:
    return ["level", "years_in_dermatology"]


# The reader-profile fields a study may require (Study.required_profile_fields).
PROFILE_FIELDS = (
    "level",
    "years_in_dermatology",
    "dermoscopy_training_hours",
    "board_certified",
    "hospital_tier",
    "region",
)


def new_invitation_token() -> str:
    return secrets.token_urlsafe(24)


def new_seed() -> int:
    return secrets.randbits(62)


def new_reader_code() -> str:
    """A pseudonymous reader id used in exports instead of the user name."""
    return "R" + secrets.token_hex(5)


# --- research data -----------------------------------------------------------------------


class ResearchDataError(ProtectedError):
    """An attempt to delete or rewrite research data (a ProtectedError, so that code which
    handles a protected deletion handles this one too)."""

    def __init__(self, message: str, rows: Iterator[models.Model] | list = ()) -> None:
        super().__init__(message, list(rows))


# The synthetic study being erased in this context (its primary key), if any; the
# database side of the same permission is the transaction-local setting below, which the
# triggers read.
_ERASING: ContextVar[int | None] = ContextVar("erasing_synthetic_study", default=None)
ERASE_SETTING = "readerstudy.erase_synthetic_study"


def _erasure_flag(value: str) -> None:
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT set_config(%s, %s, true)", [ERASE_SETTING, value])


@contextmanager
def synthetic_study_erasure(*, study: Study) -> Iterator[None]:
    """Inside this block (its own transaction or savepoint), the research data of
    ``study`` may be deleted, and only of ``study``: the demo's reset. Refused with
    ResearchDataError unless the study is synthetic (generated images, simulated
    readers), which the database also checks on PostgreSQL."""
    with transaction.atomic():
        if not Study.objects.filter(pk=study.pk, is_synthetic=True).exists():
            raise ResearchDataError(
                f"study {study.slug!r} is not synthetic: its research data is never deleted",
                [study],
            )
        token = _ERASING.set(study.pk)
        try:
            _erasure_flag(str(study.pk))
            yield
            _erasure_flag("")  # on an error the rollback undoes the setting
        finally:
            _ERASING.reset(token)


def research_rows_refuse(rows: models.QuerySet, *, study_path: str | None, message: str) -> None:
    """Raise ResearchDataError with ``message`` if ``rows`` (the protected rows of a
    delete or an update) holds anything; ``study_path`` (the lookup to the row's study)
    leaves out the rows of a study being erased (None: nothing is left out)."""
    erasing = _ERASING.get()
    if erasing is not None and study_path is not None:
        rows = rows.exclude(**{study_path: erasing})
    protected = list(rows[:10])
    if protected:
        raise ResearchDataError(message, protected)


class DiagnosisManager(models.Manager):
    def get_by_natural_key(self, code: str) -> Diagnosis:
        return self.get(code=code)


class Diagnosis(models.Model):
    code = models.CharField(max_length=16, unique=True)
    name_en = models.CharField(_("English name"), max_length=120)
    name_zh = models.CharField(_("Chinese name"), max_length=120)

    objects = DiagnosisManager()

    class Meta:
        ordering = ["code"]
        verbose_name_plural = "diagnoses"

    def __str__(self) -> str:
        return f"{self.code} ({self.name_en})"

    def natural_key(self) -> tuple[str]:
        return (self.code,)

    def name_for(self, language: str | None) -> str:
        """The name in ``language`` (a Django language code), English by default."""
        if language and language.lower().startswith("zh"):
            return self.name_zh
        return self.name_en


class Study(models.Model):
    class Status(models.TextChoices):
        DRAFT = "draft", _("Draft")
        OPEN = "open", _("Open")
        CLOSED = "closed", _("Closed")

    class Design(models.TextChoices):
        SINGLE = "single", "one condition"
        SEQUENTIAL = "sequential", "sequential per case: unaided, then with the CNN's support"
        CROSSOVER = "crossover", "crossover: every case in each condition, sessions apart"

    title = models.CharField(max_length=200)
    title_zh = models.CharField(
        "title (Chinese)",
        max_length=200,
        blank=True,
        help_text="Shown to readers who use Chinese; empty: they see the title.",
    )
    slug = models.SlugField(max_length=64, unique=True)
    description = models.TextField(blank=True)
    description_zh = models.TextField(
        "description (Chinese)",
        blank=True,
        help_text="Shown to readers who use Chinese; empty: they see the description.",
    )
    choices = models.ManyToManyField(
        Diagnosis, through="StudyChoice", related_name="studies", blank=True
    )
    status = models.CharField(max_length=8, choices=Status.choices, default=Status.DRAFT)
    shuffle_cases = models.BooleanField(
        default=True, help_text="Each reader gets their own, reproducible case order."
    )
    show_clinical_image = models.BooleanField(default=True)
    allow_answer_changes = models.BooleanField(
        default=False, help_text="Readers may revise an answer; every change is kept."
    )
    show_feedback = models.BooleanField(
        default=False, help_text="After finishing, readers see their accuracy."
    )
    show_model_feedback = models.BooleanField(
        default=False, help_text="The feedback page also shows the CNN's accuracy."
    )
    ask_confidence = models.BooleanField(default=False)
    consent_text = models.TextField(blank=True)
    consent_text_zh = models.TextField(
        "consent text (Chinese)",
        blank=True,
        help_text="Shown to readers who use Chinese; empty: they see the consent text. "
        "Both versions belong to the same consent version.",
    )
    consent_version = models.CharField(max_length=32, blank=True)
    required_profile_fields = models.JSONField(
        default=default_required_profile_fields,
        blank=True,
        help_text="Reader profile fields a reader must fill before the first case.",
    )
    is_synthetic = models.BooleanField(
        default=False, help_text="Generated images: shown as synthetic wherever they appear."
    )
    admin_notes = models.TextField(
        blank=True,
        help_text="For the study's admins only (the admin and the console's overview); "
        "never shown to readers, unlike the description.",
    )
    closes_at = models.DateTimeField(
        "closes at",
        null=True,
        blank=True,
        help_text="Optional: the study closes itself at this time; no answer is taken "
        "after it. Empty: it stays open until an admin closes it.",
    )
    design = models.CharField(
        max_length=12,
        choices=Design.choices,
        default=Design.SINGLE,
        help_text="How the study's reading conditions are ordered (see Reading conditions).",
    )
    washout_days = models.PositiveSmallIntegerField(
        "washout (days)",
        null=True,
        blank=True,
        help_text="Crossover only: days between a reader's sessions, enforced by the server.",
    )
    arm_seed = models.BigIntegerField(
        default=new_seed,
        help_text="Crossover: the seed of the balanced arm assignment (permuted blocks of "
        "two), so that it can be reproduced.",
    )
    admins = models.ManyToManyField(
        settings.AUTH_USER_MODEL,
        blank=True,
        related_name="administered_studies",
        help_text="Staff who administer this study. Superusers administer every study.",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    TRANSLATED_FIELDS = ("title", "description", "consent_text")

    class Meta:
        ordering = ["-created_at"]
        verbose_name_plural = "studies"
        constraints = [
            models.CheckConstraint(
                condition=Q(consent_text="", consent_text_zh="") | ~Q(consent_version=""),
                name="consent_text_has_version",
                violation_error_message="A consent text (in either language) needs a "
                "consent version.",
            ),
        ]

    def __str__(self) -> str:
        return self.title

    def is_open(self, *, now=None) -> bool:
        """Open and not past its closing date: the study takes readers and answers. (A
        study past ``closes_at`` is closed at once; ``studies_close_due`` then records
        it, a minute later at most.)"""
        if self.status != self.Status.OPEN:
            return False
        return self.closes_at is None or self.closes_at > (now or timezone.now())

    def text_for(self, field: str, language: str | None) -> str:
        """The study's ``field`` ("title", "description" or "consent_text") for a reader
        using ``language`` (a Django language code): the Chinese version when the language
        is Chinese and that version is not empty, the default (English) text otherwise."""
        if field not in self.TRANSLATED_FIELDS:
            raise ValueError(f"{field!r} has no translation; one of {self.TRANSLATED_FIELDS}")
        if language and language.lower().startswith("zh"):
            return getattr(self, f"{field}_zh") or getattr(self, field)
        return getattr(self, field)

    # The reader-facing texts in the active language, for templates and serializers.
    @property
    def localized_title(self) -> str:
        return self.text_for("title", get_language())

    @property
    def localized_description(self) -> str:
        return self.text_for("description", get_language())

    @property
    def localized_consent_text(self) -> str:
        return self.text_for("consent_text", get_language())

    def clean(self) -> None:
        super().clean()
        # A name the profile form cannot fill would keep every reader on the profile
        # page, so the list is checked here, where the admin and study_create both pass.
        fields = self.required_profile_fields
        allowed = ", ".join(PROFILE_FIELDS)
        if not isinstance(fields, list) or not all(isinstance(name, str) for name in fields):
            raise ValidationError(
                {
                    "required_profile_fields": (
                        f"must be a list of profile field names (any of: {allowed}), not {fields!r}"
                    )
                }
            )
        unknown = [name for name in fields if name not in PROFILE_FIELDS]
        if unknown:
            raise ValidationError(
                {
                    "required_profile_fields": (
                        f"unknown profile field(s): {', '.join(unknown)}; choose from: {allowed}"
                    )
                }
            )
        if len(set(fields)) != len(fields):
            raise ValidationError({"required_profile_fields": "a profile field is listed twice"})

    def choice_codes(self) -> list[str]:
        """The study's diagnosis codes in their display order."""
        return list(
            self.study_choices.order_by("position").values_list("diagnosis__code", flat=True)
        )


class ReadingCondition(models.Model):
    """What a reader sees while answering: the images, the case's metadata and, in a
    condition that shows it, the CNN's support (its model and how much of its output:
    ``inference.models.ConditionSupport``). Every answer belongs to one condition; a
    study of one condition (the default, "unaided") is today's reader study.

    A condition with answers is never deleted (Answer.condition is PROTECT) and is fixed
    once its study opens (the admin shows it read-only). A draft study without answers
    may be deleted with its conditions (CASCADE, as its choices).
    """

    DEFAULT_CODE = "unaided"
    # What an admin sets (the study's form, study.json): every field but the study.
    SETTINGS = (
        "code",
        "position",
        "label",
        "label_zh",
        "shows_dermoscopic",
        "shows_clinical",
        "shows_metadata",
        "shows_cnn",
        "shows_gradcam",
    )

    study = models.ForeignKey(Study, on_delete=models.CASCADE, related_name="conditions")
    code = models.SlugField(
        max_length=32, help_text="Short name in exports and tables: unaided, aided, level1..."
    )
    position = models.PositiveSmallIntegerField(
        help_text="Order in the study: in a sequential design, the unaided condition first."
    )
    label = models.CharField(max_length=120, blank=True)
    label_zh = models.CharField("label (Chinese)", max_length=120, blank=True)
    shows_dermoscopic = models.BooleanField("shows the dermoscopic image", default=True)
    shows_clinical = models.BooleanField("shows the clinical photo", default=True)
    shows_metadata = models.BooleanField("shows age, sex and site", default=False)
    shows_cnn = models.BooleanField(
        "shows the CNN's support",
        default=False,
        help_text="Its top-k probabilities and predicted class: choose its CNN and top-k "
        "beside the condition, on the study's settings.",
    )
    shows_gradcam = models.BooleanField(
        "shows the CNN's Grad-CAM", default=False, help_text="Only with the CNN's support."
    )

    class Meta:
        ordering = ["study", "position"]
        constraints = [
            models.UniqueConstraint(fields=["study", "code"], name="condition_code_unique"),
            models.UniqueConstraint(fields=["study", "position"], name="condition_position_unique"),
            models.CheckConstraint(
                condition=Q(shows_dermoscopic=True) | Q(shows_clinical=True),
                name="condition_shows_an_image",
                violation_error_message="A condition shows at least one of the images.",
            ),
            models.CheckConstraint(
                condition=Q(shows_gradcam=False) | Q(shows_cnn=True),
                name="condition_gradcam_with_cnn",
                violation_error_message="The Grad-CAM is shown only with the CNN's support.",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.study.slug}: {self.code}"

    @classmethod
    def default_for(cls, study: Study) -> ReadingCondition:
        """The study's default condition (stored, or made now): what a one-condition
        study shows, the dermoscopic image and the clinical photo where it shows that."""
        condition, _ = cls.objects.get_or_create(
            study=study,
            code=cls.DEFAULT_CODE,
            defaults={
                "position": 1,
                "label": "Unaided",
                "label_zh": "独立阅片",
                "shows_clinical": study.show_clinical_image,
            },
        )
        return condition

    def label_for(self, language: str | None) -> str:
        if language and language.lower().startswith("zh") and self.label_zh:
            return self.label_zh
        return self.label or self.code


class StudyChoice(models.Model):
    """One of a study's answer options, in display order."""

    study = models.ForeignKey(Study, on_delete=models.CASCADE, related_name="study_choices")
    diagnosis = models.ForeignKey(Diagnosis, on_delete=models.PROTECT)
    position = models.PositiveSmallIntegerField()

    class Meta:
        ordering = ["study", "position"]
        constraints = [
            models.UniqueConstraint(fields=["study", "diagnosis"], name="choice_once_per_study"),
            models.UniqueConstraint(fields=["study", "position"], name="choice_position_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.study.slug}: {self.position}. {self.diagnosis.code}"


class Case(models.Model):
    class Sex(models.TextChoices):
        FEMALE = "F", _("Female")
        MALE = "M", _("Male")
        OTHER = "O", _("Other")
        UNKNOWN = "", _("Unknown")

    study = models.ForeignKey(Study, on_delete=models.PROTECT, related_name="cases")
    public_id = models.CharField(max_length=32, unique=True, default=new_public_id)
    source_id = models.CharField(
        max_length=100, help_text="The case_id from the import file; shown to staff only."
    )
    position = models.PositiveIntegerField(help_text="Order in the study (import order).")
    diagnosis = models.ForeignKey(
        Diagnosis, on_delete=models.PROTECT, related_name="cases", verbose_name="reference"
    )
    age = models.PositiveSmallIntegerField(null=True, blank=True)
    sex = models.CharField(max_length=1, choices=Sex.choices, blank=True, default="")
    site = models.CharField("body site", max_length=100, blank=True)
    histopathology = models.BooleanField("confirmed by histopathology", null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["study", "position"]
        constraints = [
            models.UniqueConstraint(fields=["study", "source_id"], name="case_id_unique_in_study"),
            models.UniqueConstraint(fields=["study", "position"], name="case_position_unique"),
            models.CheckConstraint(
                condition=Q(age__isnull=True) | Q(age__lte=130), name="case_age_plausible"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.study.slug}/{self.source_id}"


def _image_path(instance: CaseImage, filename: str) -> str:
    # The stored name is random: a file name must never hint at the diagnosis.
    suffix = filename.rsplit(".", 1)[-1].lower() if "." in filename else "bin"
    return f"cases/{secrets.token_hex(12)}.{suffix}"


class CaseImage(models.Model):
    class Kind(models.TextChoices):
        CLINICAL = "clinical", _("Clinical photo")
        DERMOSCOPIC = "dermoscopic", _("Dermoscopic image")

    case = models.ForeignKey(Case, on_delete=models.CASCADE, related_name="images")
    kind = models.CharField(max_length=12, choices=Kind.choices)
    public_id = models.CharField(max_length=32, unique=True, default=new_public_id)
    original = models.FileField(upload_to=_image_path, max_length=200)
    web = models.FileField(upload_to=_image_path, max_length=200)
    thumbnail = models.FileField(upload_to=_image_path, max_length=200)
    format = models.CharField(max_length=8, help_text="JPEG, PNG or TIFF")
    sha256 = models.CharField(max_length=64)
    width = models.PositiveIntegerField()
    height = models.PositiveIntegerField()
    size_bytes = models.PositiveBigIntegerField()

    class Meta:
        ordering = ["case", "kind"]
        constraints = [
            models.UniqueConstraint(fields=["case", "kind"], name="one_image_per_kind"),
            models.CheckConstraint(
                condition=Q(kind__in=["clinical", "dermoscopic"]), name="image_kind_valid"
            ),
            models.CheckConstraint(condition=Q(width__gt=0, height__gt=0), name="image_size_set"),
        ]

    def __str__(self) -> str:
        return f"{self.case} {self.kind}"


# --- the reader side -------------------------------------------------------------------


class ReaderProfile(models.Model):
    class Level(models.TextChoices):
        RESIDENT = "resident", _("Resident")
        ATTENDING = "attending", _("Attending")
        ASSOCIATE_CHIEF = "associate_chief", _("Associate chief")
        CHIEF = "chief", _("Chief")

    class HospitalTier(models.TextChoices):
        TERTIARY = "tertiary", _("Tertiary hospital")
        SECONDARY = "secondary", _("Secondary hospital")
        PRIMARY = "primary", _("Primary care")
        PRIVATE = "private", _("Private practice")
        OTHER = "other", _("Other")

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="reader_profile"
    )
    level = models.CharField(max_length=16, choices=Level.choices, blank=True)
    years_in_dermatology = models.PositiveSmallIntegerField(null=True, blank=True)
    dermoscopy_training_hours = models.PositiveIntegerField(null=True, blank=True)
    board_certified = models.BooleanField(null=True, blank=True)
    hospital_tier = models.CharField(max_length=16, choices=HospitalTier.choices, blank=True)
    region = models.CharField(max_length=100, blank=True)
    is_simulated = models.BooleanField(
        default=False, help_text="A simulated reader of the synthetic demo, not a person."
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=Q(years_in_dermatology__isnull=True) | Q(years_in_dermatology__lte=70),
                name="profile_years_plausible",
            ),
        ]

    def __str__(self) -> str:
        return f"profile of {self.user}"


_CONSENT_KEPT = (
    "a reader's consent is research data: an enrolment that has consented is never deleted"
)


class EnrolmentQuerySet(models.QuerySet):
    def delete(self):
        research_rows_refuse(
            self.filter(consented_at__isnull=False), study_path="study", message=_CONSENT_KEPT
        )
        return super().delete()


class Enrolment(models.Model):
    """A reader taking part in a study: their consent, case order and progress.

    The consent (version and time) is research data: a consented enrolment is never
    deleted, and only a new consent (``consent_give``) replaces it, the audit trail
    keeping the earlier one.
    """

    study = models.ForeignKey(Study, on_delete=models.PROTECT, related_name="enrolments")
    reader = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="enrolments"
    )
    reader_code = models.CharField(max_length=16, unique=True, default=new_reader_code)
    order_seed = models.BigIntegerField(help_text="Seed that reproduces the case order.")
    case_order = models.JSONField(
        default=list, help_text="Case primary keys in the order this reader sees them."
    )
    consent_version = models.CharField(max_length=32, blank=True)
    consented_at = models.DateTimeField(null=True, blank=True)
    enrolled_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    invitation = models.ForeignKey(
        "Invitation", on_delete=models.PROTECT, null=True, blank=True, related_name="enrolments"
    )
    # Crossover: the reader's arm (0: the conditions in their order, 1: reversed), drawn
    # at enrolment (cases.services.crossover_arm), and the case order of their second
    # session (a fresh permutation; the first is case_order).
    arm = models.PositiveSmallIntegerField(null=True, blank=True)
    second_case_order = models.JSONField(
        default=list,
        blank=True,
        help_text="Crossover: case primary keys in the order of the reader's second session.",
    )
    # The read last served (its case, and its condition where the study has several)
    # and when, so the server can time each answer.
    served_case = models.ForeignKey(
        Case, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    served_condition = models.ForeignKey(
        ReadingCondition, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    served_at = models.DateTimeField(null=True, blank=True)

    objects = EnrolmentQuerySet.as_manager()

    class Meta:
        ordering = ["study", "enrolled_at"]
        constraints = [
            models.UniqueConstraint(fields=["study", "reader"], name="one_enrolment_per_study"),
            models.CheckConstraint(
                condition=Q(arm__isnull=True) | Q(arm__in=[0, 1]), name="enrolment_arm_0_or_1"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.reader_code} in {self.study.slug}"

    @property
    def is_finished(self) -> bool:
        return self.finished_at is not None

    def delete(self, *args, **kwargs):
        research_rows_refuse(
            Enrolment.objects.filter(pk=self.pk, consented_at__isnull=False),
            study_path="study",
            message=_CONSENT_KEPT,
        )
        return super().delete(*args, **kwargs)


class Invitation(models.Model):
    """A link that lets people register for (or join) one study."""

    study = models.ForeignKey(Study, on_delete=models.PROTECT, related_name="invitations")
    token = models.CharField(max_length=64, unique=True, default=new_invitation_token)
    label = models.CharField(max_length=200, blank=True, help_text="Who it is for (admin only).")
    max_uses = models.PositiveIntegerField(default=1)
    uses = models.PositiveIntegerField(default=0)
    expires_at = models.DateTimeField(null=True, blank=True)
    revoked = models.BooleanField(default=False)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.CheckConstraint(condition=Q(max_uses__gte=1), name="invitation_max_uses"),
            models.CheckConstraint(
                condition=Q(uses__lte=models.F("max_uses")), name="invitation_uses_within_limit"
            ),
        ]

    def __str__(self) -> str:
        return f"invitation to {self.study.slug} ({self.uses}/{self.max_uses})"


_ANSWERS_KEPT = "answers are research data: they are never deleted"
_HISTORY_KEPT = "the history of an answer is append-only: it is never changed or deleted"


class AnswerQuerySet(models.QuerySet):
    def delete(self):
        research_rows_refuse(self, study_path="enrolment__study", message=_ANSWERS_KEPT)
        return super().delete()


class Answer(models.Model):
    """A reader's answer to a case. Never deleted; changed only by ``answer_submit``
    where the study allows it, which first appends the previous value to the history
    (AnswerChange); on PostgreSQL the database refuses any other change."""

    enrolment = models.ForeignKey(Enrolment, on_delete=models.PROTECT, related_name="answers")
    case = models.ForeignKey(Case, on_delete=models.PROTECT, related_name="answers")
    condition = models.ForeignKey(
        ReadingCondition, on_delete=models.PROTECT, related_name="answers"
    )
    diagnosis = models.ForeignKey(Diagnosis, on_delete=models.PROTECT, related_name="+")
    confidence = models.PositiveSmallIntegerField(null=True, blank=True)
    seconds = models.FloatField(help_text="Server-measured time from serving to answer.")
    answered_at = models.DateTimeField(auto_now_add=True)
    changed_at = models.DateTimeField(null=True, blank=True)

    objects = AnswerQuerySet.as_manager()

    class Meta:
        ordering = ["enrolment", "answered_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["enrolment", "case", "condition"], name="one_answer_per_case_condition"
            ),
            models.CheckConstraint(
                condition=Q(confidence__isnull=True) | Q(confidence__gte=1, confidence__lte=5),
                name="confidence_1_to_5",
            ),
            models.CheckConstraint(condition=Q(seconds__gte=0), name="seconds_not_negative"),
        ]

    def __str__(self) -> str:
        return f"{self.enrolment.reader_code} {self.case.public_id}"

    def save(self, *args, **kwargs):
        if self.condition_id is None and self._state.adding:
            # Where none is named (a one-condition study's answer, written outside
            # answer_submit), the study's first condition.
            self.condition_id = (
                ReadingCondition.objects.filter(study__enrolments=self.enrolment_id)
                .order_by("position")
                .values_list("pk", flat=True)
                .first()
            )
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        research_rows_refuse(
            Answer.objects.filter(pk=self.pk),
            study_path="enrolment__study",
            message=_ANSWERS_KEPT,
        )
        return super().delete(*args, **kwargs)


class AnswerChangeQuerySet(models.QuerySet):
    def update(self, **kwargs):
        raise ResearchDataError(_HISTORY_KEPT)

    def bulk_update(self, objs, fields, batch_size=None):
        raise ResearchDataError(_HISTORY_KEPT)

    def delete(self):
        research_rows_refuse(self, study_path="answer__enrolment__study", message=_HISTORY_KEPT)
        return super().delete()


class AnswerChange(models.Model):
    """The append-only history of a changed answer: the previous value is never lost."""

    answer = models.ForeignKey(Answer, on_delete=models.PROTECT, related_name="changes")
    previous_diagnosis = models.ForeignKey(Diagnosis, on_delete=models.PROTECT, related_name="+")
    previous_confidence = models.PositiveSmallIntegerField(null=True, blank=True)
    new_diagnosis = models.ForeignKey(Diagnosis, on_delete=models.PROTECT, related_name="+")
    new_confidence = models.PositiveSmallIntegerField(null=True, blank=True)
    changed_at = models.DateTimeField(auto_now_add=True)

    objects = AnswerChangeQuerySet.as_manager()

    class Meta:
        ordering = ["answer", "changed_at"]

    def __str__(self) -> str:
        return f"change of {self.answer}"

    def save(self, *args, **kwargs):
        if self.pk is not None and not self._state.adding:
            raise ResearchDataError(_HISTORY_KEPT, [self])
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        research_rows_refuse(
            AnswerChange.objects.filter(pk=self.pk),
            study_path="answer__enrolment__study",
            message=_HISTORY_KEPT,
        )
        return super().delete(*args, **kwargs)
