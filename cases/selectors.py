"""Reads that encode who may see what. Views never build these querysets themselves."""

from __future__ import annotations

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.db.models import Count, Q, QuerySet

from cases.models import Answer, Case, CaseImage, Enrolment, Study


def is_study_staff(user: AbstractBaseUser | AnonymousUser) -> bool:
    """Staff users administer studies (per-study admin roles come with the audit issue)."""
    return bool(user.is_authenticated and user.is_active and user.is_staff)


def studies_for_user(*, user: AbstractBaseUser | AnonymousUser) -> QuerySet[Study]:
    """Staff see every study; a reader sees the studies they are enrolled in."""
    if not user.is_authenticated:
        return Study.objects.none()
    if is_study_staff(user):
        return Study.objects.all()
    return Study.objects.filter(enrolments__reader=user).distinct()


def image_for_user(*, user: AbstractBaseUser | AnonymousUser, public_id: str) -> CaseImage | None:
    """The image if ``user`` may see it (staff, or a reader enrolled in its study)."""
    if not user.is_authenticated or not user.is_active:
        return None
    images = CaseImage.objects.select_related("case__study").filter(public_id=public_id)
    if not is_study_staff(user):
        images = images.filter(case__study__enrolments__reader=user)
    return images.first()


def study_overview(*, study: Study) -> dict[str, object]:
    """Counts an admin needs at a glance: cases per class, readers, answers."""
    per_class = list(
        Case.objects.filter(study=study)
        .values("diagnosis__code", "diagnosis__name_en")
        .annotate(n=Count("id"))
        .order_by("diagnosis__code")
    )
    enrolments = Enrolment.objects.filter(study=study)
    n_cases = sum(row["n"] for row in per_class)
    return {
        "n_cases": n_cases,
        "cases_per_class": per_class,
        "readers_enrolled": enrolments.count(),
        "readers_finished": enrolments.filter(finished_at__isnull=False).count(),
        "readers_started": enrolments.filter(Q(answers__isnull=False) & Q(finished_at__isnull=True))
        .distinct()
        .count(),
        "answers": sum(enrolments.annotate(n=Count("answers")).values_list("n", flat=True)),
        "images_missing": Case.objects.filter(study=study)
        .annotate(n=Count("images"))
        .filter(n__lt=2)
        .count(),
    }


ANSWER_COLUMNS = ["reader", "case", "truth", "answer"]
PROFILE_COLUMNS = [
    "level",
    "years",
    "dermoscopy_hours",
    "board_certified",
    "hospital_tier",
    "region",
]


def answers_frame(*, study: Study, language: str = "en", finished_only: bool = False):
    """Every answer of ``study`` as a tidy table, one row per reader x case.

    Columns: ``reader`` (the pseudonymous reader code), ``case`` (public id), ``truth``
    and ``answer`` (diagnosis codes), ``truth_name`` and ``answer_name`` (in
    ``language``), the reader's profile fields, ``confidence``, ``seconds`` and
    ``answered_at`` (UTC, ISO 8601). This is what the admin's CSV export and the
    analysis read. Staff only: it contains the reference diagnoses.
    """
    import pandas as pd

    answers = (
        Answer.objects.filter(enrolment__study=study)
        .select_related("enrolment__reader__reader_profile", "case__diagnosis", "diagnosis")
        .order_by("enrolment__reader_code", "case__position")
    )
    if finished_only:
        answers = answers.filter(enrolment__finished_at__isnull=False)
    rows = []
    for a in answers.iterator(chunk_size=2000):
        profile = getattr(a.enrolment.reader, "reader_profile", None)
        rows.append(
            {
                "reader": a.enrolment.reader_code,
                "case": a.case.public_id,
                "truth": a.case.diagnosis.code,
                "answer": a.diagnosis.code,
                "truth_name": a.case.diagnosis.name_for(language),
                "answer_name": a.diagnosis.name_for(language),
                "level": profile.level if profile else "",
                "years": profile.years_in_dermatology if profile else None,
                "dermoscopy_hours": profile.dermoscopy_training_hours if profile else None,
                "board_certified": profile.board_certified if profile else None,
                "hospital_tier": profile.hospital_tier if profile else "",
                "region": profile.region if profile else "",
                "confidence": a.confidence,
                "seconds": a.seconds,
                "answered_at": a.answered_at.isoformat(),
            }
        )
    columns = [
        *ANSWER_COLUMNS,
        "truth_name",
        "answer_name",
        *PROFILE_COLUMNS,
        "confidence",
        "seconds",
        "answered_at",
    ]
    return pd.DataFrame(rows, columns=columns)
