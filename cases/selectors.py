"""Reads that encode who may see what. Views never build these querysets themselves."""

from __future__ import annotations

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.db.models import Count, Q, QuerySet

from cases.models import Answer, Case, CaseImage, Enrolment, ReaderProfile, Study


def is_study_staff(user: AbstractBaseUser | AnonymousUser) -> bool:
    """Whether ``user`` may use the admin side at all (staff, active)."""
    return bool(user.is_authenticated and user.is_active and user.is_staff)


def administered_studies(*, user: AbstractBaseUser | AnonymousUser) -> QuerySet[Study]:
    """The studies ``user`` administers: every study for a superuser, the studies that
    list them as admins for other staff, none for anyone else."""
    if not is_study_staff(user):
        return Study.objects.none()
    if user.is_superuser:
        return Study.objects.all()
    return Study.objects.filter(admins=user)


def can_admin_study(*, user: AbstractBaseUser | AnonymousUser, study: Study) -> bool:
    return administered_studies(user=user).filter(pk=study.pk).exists()


def studies_for_user(*, user: AbstractBaseUser | AnonymousUser) -> QuerySet[Study]:
    """Staff see the studies they administer; a reader those they are enrolled in."""
    if not user.is_authenticated:
        return Study.objects.none()
    if is_study_staff(user):
        return administered_studies(user=user)
    return Study.objects.filter(enrolments__reader=user).distinct()


def image_for_user(*, user: AbstractBaseUser | AnonymousUser, public_id: str) -> CaseImage | None:
    """The image if ``user`` may see it: an admin of its study, or a reader enrolled in
    it."""
    if not user.is_authenticated or not user.is_active:
        return None
    images = CaseImage.objects.select_related("case__study").filter(public_id=public_id)
    return images.filter(
        Q(case__study__in=administered_studies(user=user)) | Q(case__study__enrolments__reader=user)
    ).first()


def may_download_original(*, user, image: CaseImage) -> bool:
    """Originals (with their metadata) go to the study's admins only."""
    return can_admin_study(user=user, study=image.case.study)


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


# --- the reader side -------------------------------------------------------------------

READER_VISIBLE_STATUSES = (Study.Status.OPEN, Study.Status.CLOSED)


def enrolment_for_reader(*, user, slug: str) -> Enrolment | None:
    """The user's own enrolment in the study ``slug`` (never anyone else's); None for a
    study they are not enrolled in or one that is still a draft."""
    if not user.is_authenticated:
        return None
    return (
        Enrolment.objects.select_related("study", "reader")
        .filter(reader=user, study__slug=slug, study__status__in=READER_VISIBLE_STATUSES)
        .first()
    )


def enrolments_for_reader(*, user) -> QuerySet[Enrolment]:
    if not user.is_authenticated:
        return Enrolment.objects.none()
    return (
        Enrolment.objects.select_related("study")
        .filter(reader=user, study__status__in=READER_VISIBLE_STATUSES)
        .annotate(n_answers=Count("answers"))
    )


def missing_profile_fields(*, enrolment: Enrolment) -> list[str]:
    """Required profile fields (per study) that the reader has not filled yet."""
    profile = ReaderProfile.objects.filter(user=enrolment.reader).first()
    missing = []
    for name in enrolment.study.required_profile_fields or []:
        value = getattr(profile, name, None) if profile else None
        if value is None or value == "":
            missing.append(name)
    return missing


def reader_step(*, enrolment: Enrolment) -> str:
    """Where the reader is: ``consent``, ``profile``, ``case``, ``closed`` or ``done``."""
    if enrolment.finished_at is not None:
        return "done"
    if enrolment.consented_at is None:
        return "consent"
    if missing_profile_fields(enrolment=enrolment):
        return "profile"
    if enrolment.study.status != Study.Status.OPEN:
        return "closed"
    return "case"


def reader_progress(*, enrolment: Enrolment) -> dict[str, int | bool]:
    answered = Answer.objects.filter(enrolment=enrolment).count()
    return {
        "answered": answered,
        "total": len(enrolment.case_order),
        "finished": enrolment.finished_at is not None,
    }


def case_for_reader(*, enrolment: Enrolment, number: int | None = None) -> Case | None:
    """The case a reader may see: the next unanswered one, or (only where the study
    allows changes and the reader has not finished) an answered one by its 1-based
    ``number`` in the reader's order."""
    answered = set(Answer.objects.filter(enrolment=enrolment).values_list("case_id", flat=True))
    if number is None:
        pk = next((pk for pk in enrolment.case_order if pk not in answered), None)
    else:
        if not (enrolment.study.allow_answer_changes and enrolment.finished_at is None):
            return None
        if not 1 <= number <= len(enrolment.case_order):
            return None
        pk = enrolment.case_order[number - 1]
        if pk not in answered:
            return None
    if pk is None:
        return None
    return Case.objects.prefetch_related("images").get(pk=pk)


def case_number(*, enrolment: Enrolment, case: Case) -> int:
    return enrolment.case_order.index(case.pk) + 1


def following_case(*, enrolment: Enrolment, case: Case) -> Case | None:
    """The case after ``case`` in the reader's order, for prefetching its images."""
    index = enrolment.case_order.index(case.pk)
    if index + 1 >= len(enrolment.case_order):
        return None
    return (
        Case.objects.prefetch_related("images").filter(pk=enrolment.case_order[index + 1]).first()
    )


def reader_feedback(*, enrolment: Enrolment, language: str = "en") -> dict | None:
    """The reader's own accuracy, overall and per class, against the reference.

    None unless the reader has finished and the study enables feedback: this is the
    only reader-facing read that touches reference diagnoses.
    """
    if enrolment.finished_at is None or not enrolment.study.show_feedback:
        return None
    from cases.feedback import accuracy_summary

    answers = Answer.objects.filter(enrolment=enrolment).select_related("case__diagnosis")
    return accuracy_summary(
        ((a.case.diagnosis, a.diagnosis_id == a.case.diagnosis_id) for a in answers),
        order=enrolment.study.choice_codes(),
        language=language,
    )


def reader_progress_table(*, study: Study) -> list[dict]:
    """Per reader of ``study``: code, progress, median seconds per case, last activity.

    Staff only. Medians are computed per reader from the stored server-side times.
    """
    import statistics

    seconds: dict[int, list[float]] = {}
    last: dict[int, object] = {}
    for enrolment_id, secs, answered_at, changed_at in Answer.objects.filter(
        enrolment__study=study
    ).values_list("enrolment_id", "seconds", "answered_at", "changed_at"):
        seconds.setdefault(enrolment_id, []).append(secs)
        moment = max(filter(None, (answered_at, changed_at)))
        if enrolment_id not in last or moment > last[enrolment_id]:
            last[enrolment_id] = moment
    rows = []
    for enrolment in (
        Enrolment.objects.filter(study=study)
        .select_related("reader__reader_profile")
        .order_by("enrolled_at")
    ):
        times = seconds.get(enrolment.pk, [])
        profile = getattr(enrolment.reader, "reader_profile", None)
        rows.append(
            {
                "reader_code": enrolment.reader_code,
                "username": enrolment.reader.get_username(),
                "simulated": bool(profile and profile.is_simulated),
                "level": profile.get_level_display() if profile and profile.level else "",
                "answered": len(times),
                "total": len(enrolment.case_order),
                "consented_at": enrolment.consented_at,
                "finished_at": enrolment.finished_at,
                "median_seconds": statistics.median(times) if times else None,
                "last_activity": last.get(enrolment.pk)
                or enrolment.consented_at
                or enrolment.enrolled_at,
            }
        )
    return rows
