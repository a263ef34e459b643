"""Reads that encode who may see what. Views never build these querysets themselves."""

from __future__ import annotations

import datetime as dt
import statistics
import time
from collections.abc import Iterable, Set
from dataclasses import dataclass
from enum import StrEnum

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.db import models
from django.db.models import CharField, Count, Exists, F, Max, OuterRef, Q, QuerySet, Sum, Value
from django.db.models.functions import Coalesce, Greatest, TruncDate
from django.urls import reverse
from django.utils import timezone

from cases.feedback import (
    ReaderFeedback,
    accuracy_summary,
    model_feedback,
    reader_feedback_build,
)
from cases.models import (
    PROFILE_FIELDS,
    Answer,
    Case,
    CaseImage,
    Diagnosis,
    Enrolment,
    Invitation,
    ReaderProfile,
    ReadingCondition,
    Study,
)


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
    it (a clinical photo only where the study shows clinical photos)."""
    if not user.is_authenticated or not user.is_active:
        return None
    images = CaseImage.objects.filter(public_id=public_id).order_by()  # one at most
    shown_to_readers = ~Q(kind=CaseImage.Kind.CLINICAL) | Q(case__study__show_clinical_image=True)
    as_reader = Q(case__study__enrolments__reader=user) & shown_to_readers
    if not is_study_staff(user):
        # A reader's image (every request for one): the view needs nothing of its case.
        return images.filter(as_reader).first()
    return (
        images.filter(Q(case__study__in=administered_studies(user=user)) | as_reader)
        .select_related("case__study")
        .first()
    )


def reader_images(*, case: Case) -> list[CaseImage]:
    """The images of ``case`` that its study shows to readers (no clinical photo where
    the study hides it)."""
    return _shown_to_readers(case.images.all(), study=case.study)


def _shown_to_readers(images: Iterable[CaseImage], *, study: Study) -> list[CaseImage]:
    return [
        image
        for image in images
        if image.kind != CaseImage.Kind.CLINICAL or study.show_clinical_image
    ]


def may_download_original(*, user, image: CaseImage) -> bool:
    """Originals (with their metadata) go to the study's admins only."""
    return can_admin_study(user=user, study=image.case.study)


def study_overview(*, study: Study) -> dict[str, object]:
    """Counts an admin needs at a glance: cases per class, readers, answers.

    ``cases_per_class`` has one row per study choice, in the choices' order, with 0 for
    a choice that has no case yet (what an admin building a study needs to see), then
    a row flagged ``is_choice=False`` for any case whose diagnosis is not a choice.
    """
    counts = dict(
        Case.objects.filter(study=study)
        .values("diagnosis_id")
        .annotate(n=Count("id"))
        .values_list("diagnosis_id", "n")
    )
    per_class = [
        {
            "code": c.diagnosis.code,
            "name_en": c.diagnosis.name_en,
            "n": counts.pop(c.diagnosis_id, 0),
            "is_choice": True,
        }
        for c in study.study_choices.select_related("diagnosis").order_by("position")
    ]
    for diagnosis in Diagnosis.objects.filter(pk__in=counts).order_by("code"):
        per_class.append(
            {
                "code": diagnosis.code,
                "name_en": diagnosis.name_en,
                "n": counts[diagnosis.pk],
                "is_choice": False,
            }
        )
    enrolments = Enrolment.objects.filter(study=study)
    return {
        "n_cases": sum(row["n"] for row in per_class),
        "cases_per_class": per_class,
        "readers_enrolled": enrolments.count(),
        "readers_finished": enrolments.filter(finished_at__isnull=False).count(),
        "readers_started": enrolments.filter(answers__isnull=False, finished_at__isnull=True)
        .distinct()
        .count(),
        "answers": Answer.objects.filter(enrolment__study=study).count(),
        "images_missing": Case.objects.filter(study=study)
        .annotate(n=Count("images"))
        .filter(n__lt=2)
        .count(),
    }


def answers_frame(*, study: Study, language: str = "en", finished_only: bool = False):
    """Every answer of ``study`` as the tidy answers table, one row per reader x case.

    Columns ``analysis.stats.columns.ANSWERS_TABLE_COLUMNS``: ``reader`` (the
    pseudonymous reader code), ``case`` (public id), ``truth`` and ``answer`` (diagnosis
    codes), ``condition`` (the reading condition's code), ``truth_name`` and ``answer_name`` (in ``language``), the reader's profile
    fields renamed to ``READER_COLUMNS`` ("" for text and None otherwise without a
    profile), ``finished`` (whether the reader had finished the study), ``confidence``,
    ``seconds`` and ``answered_at`` (UTC, ISO 8601). This is what the admin's CSV export
    and the analysis read. Staff only: it contains the reference diagnoses.
    """
    import pandas as pd

    from analysis.stats.columns import ANSWERS_TABLE_COLUMNS, READER_COLUMNS

    # The renaming: READER_COLUMNS are PROFILE_FIELDS in the same order (strict: a field
    # added to one and not the other fails here, not in a shifted column).
    fields = dict(zip(PROFILE_FIELDS, READER_COLUMNS, strict=True))
    no_profile = tuple(
        "" if isinstance(ReaderProfile._meta.get_field(name), CharField) else None
        for name in fields
    )
    answers = (
        Answer.objects.filter(enrolment__study=study)
        .select_related(
            "enrolment__reader__reader_profile", "case__diagnosis", "diagnosis", "condition"
        )
        .order_by("enrolment__reader_code", "condition__position", "case__position")
    )
    if finished_only:
        answers = answers.filter(enrolment__finished_at__isnull=False)
    rows = []
    for a in answers.iterator(chunk_size=2000):
        profile = getattr(a.enrolment.reader, "reader_profile", None)
        rows.append(  # in the order of ANSWERS_TABLE_COLUMNS
            (
                a.enrolment.reader_code,
                a.case.public_id,
                a.case.diagnosis.code,
                a.diagnosis.code,
                a.condition.code,
                a.case.diagnosis.name_for(language),
                a.diagnosis.name_for(language),
                *(tuple(getattr(profile, name) for name in fields) if profile else no_profile),
                a.enrolment.finished_at is not None,
                a.confidence,
                a.seconds,
                a.answered_at.isoformat(),
            )
        )
    return pd.DataFrame(rows, columns=list(ANSWERS_TABLE_COLUMNS))


@dataclass(frozen=True)
class AnswersState:
    """What an analysis of a study depends on among its answers and cases (the report
    fingerprint hashes it): the number of answers and the latest answer and change
    times; ``(reader_code, *PROFILE_FIELDS, finished_at)`` of every reader who answered,
    by code (finishing changes which readers a report counts);
    ``(case pk, diagnosis pk)`` of every case, by pk."""

    n_answers: int
    latest_answered_at: dt.datetime | None
    latest_changed_at: dt.datetime | None
    readers: list[tuple]
    cases: list[tuple[int, int]]


def answers_state(*, study: Study) -> AnswersState:
    """The :class:`AnswersState` of ``study`` now. Staff only (reference diagnoses)."""
    answers = Answer.objects.filter(enrolment__study=study).aggregate(
        n=Count("id"), latest=Max("answered_at"), changed=Max("changed_at")
    )
    profile = "reader__reader_profile__"
    readers = (
        Enrolment.objects.filter(study=study, answers__isnull=False)
        .distinct()
        .order_by("reader_code")
        .values_list("reader_code", *(f"{profile}{name}" for name in PROFILE_FIELDS), "finished_at")
    )
    cases = Case.objects.filter(study=study).order_by("pk").values_list("pk", "diagnosis_id")
    return AnswersState(
        n_answers=answers["n"],
        latest_answered_at=answers["latest"],
        latest_changed_at=answers["changed"],
        readers=list(readers),
        cases=list(cases),
    )


# --- the reader side -------------------------------------------------------------------

READER_VISIBLE_STATUSES = (Study.Status.OPEN, Study.Status.CLOSED)


def reader_enrolments(*, user, slug: str) -> QuerySet[Enrolment]:
    """The user's own enrolment in the study ``slug`` (never anyone else's), as a query:
    empty for a study they are not enrolled in, one that is still a draft, or a visitor
    who is not logged in."""
    if not user.is_authenticated:
        return Enrolment.objects.none()
    return Enrolment.objects.filter(
        reader=user, study__slug=slug, study__status__in=READER_VISIBLE_STATUSES
    )


def enrolment_for_reader(*, user, slug: str) -> Enrolment | None:
    """The user's own enrolment in the study ``slug`` (``reader_enrolments``), or None.
    One query, with the study, the reader and their profile (``missing_profile_fields``
    reads it from there: after saving the profile, read the enrolment again)."""
    return (
        reader_enrolments(user=user, slug=slug)
        .select_related("study", "reader__reader_profile")
        .order_by()
        .first()
    )


def enrolment_for_invitation(*, user, token: str) -> Enrolment | None:
    """The user's own enrolment in the study an invitation ``token`` is for, whatever
    the invitation's state (used up, expired): reopening one's own link leads back to
    one's study."""
    if not user.is_authenticated:
        return None
    study_slug = (
        Invitation.objects.filter(token=token).values_list("study__slug", flat=True).first()
    )
    if study_slug is None:
        return None
    return enrolment_for_reader(user=user, slug=study_slug)


def enrolments_for_reader(*, user) -> QuerySet[Enrolment]:
    if not user.is_authenticated:
        return Enrolment.objects.none()
    return (
        Enrolment.objects.select_related("study", "reader__reader_profile")
        .filter(reader=user, study__status__in=READER_VISIBLE_STATUSES)
        .annotate(n_answers=Count("answers"))
    )


def missing_profile_fields(*, enrolment: Enrolment) -> list[str]:
    """Required profile fields (per study) that the reader has not filled yet. The
    profile comes with the enrolment where its query joined it (``enrolment_for_reader``),
    else from one query."""
    # A reverse one-to-one: None without a profile (its DoesNotExist is an AttributeError).
    profile = getattr(enrolment.reader, "reader_profile", None)
    required = enrolment.study.required_profile_fields
    if not isinstance(required, list):  # Study.clean refuses this; a raw DB edit may not
        return [str(required)]
    missing = []
    for name in required:
        value = getattr(profile, name, None) if profile else None
        if value is None or value == "":
            missing.append(name)
    return missing


def needs_consent(*, enrolment: Enrolment) -> bool:
    """Whether the reader must (again) consent: never consented, or consented to an
    older version of the study's consent text."""
    return (
        enrolment.consented_at is None
        or enrolment.consent_version != enrolment.study.consent_version
    )


class Step(StrEnum):
    """Where a reader is in a study: the one state machine of the reader's flow. The
    pages redirect by it, the API reports it, ``answer_submit`` refuses by it."""

    CONSENT = "consent"
    PROFILE = "profile"
    CASE = "case"
    # Every case answered in a study that allows changes, not yet confirmed as finished.
    REVIEW = "review"
    CLOSED = "closed"
    DONE = "done"


def answered_case_ids(*, enrolment: Enrolment) -> frozenset[int]:
    """The primary keys of the cases the reader has answered. One query; the callers
    below take it as ``answered`` where they have it, instead of counting again."""
    # order_by(): the model's ordering (enrolment, then the enrolment's own) only joins.
    return frozenset(
        Answer.objects.filter(enrolment=enrolment).order_by().values_list("case_id", flat=True)
    )


def reader_step(*, enrolment: Enrolment, answered: Set[int] | None = None) -> Step:
    """Where the reader is (see ``Step``). The first that applies: done once finished,
    then consent, profile, closed (a study no longer open), review, case. ``answered``:
    the reader's ``answered_case_ids``, where the caller has them."""
    if enrolment.finished_at is not None:
        return Step.DONE
    if needs_consent(enrolment=enrolment):
        return Step.CONSENT
    if missing_profile_fields(enrolment=enrolment):
        return Step.PROFILE
    if not enrolment.study.is_open():
        return Step.CLOSED
    # Only a study that allows changes has a review step (elsewhere the last answer
    # finishes), so only there is this count worth a query on every case page.
    if enrolment.study.allow_answer_changes and enrolment.case_order:
        n_answered = (
            len(answered)
            if answered is not None
            else Answer.objects.filter(enrolment=enrolment).count()
        )
        if n_answered >= len(enrolment.case_order):
            return Step.REVIEW
    return Step.CASE


def may_open_case(*, step: Step, number: int | None = None) -> bool:
    """Whether a case screen opens at ``step``: the next case at step ``case``; an
    answered case by its ``number`` also while reviewing."""
    return step == Step.CASE or (step == Step.REVIEW and number is not None)


def reader_answers(*, enrolment: Enrolment, language: str = "en") -> list[dict]:
    """The reader's own answers in their case order, for reviewing them before
    finishing: ``number``, ``answer`` (the diagnosis name in ``language``) and
    ``confidence``. Nothing about the reference."""
    answers = {
        a.case_id: a for a in Answer.objects.filter(enrolment=enrolment).select_related("diagnosis")
    }
    return [
        {
            "number": number,
            "answer": answers[pk].diagnosis.name_for(language),
            "confidence": answers[pk].confidence,
        }
        for number, pk in enumerate(enrolment.case_order, start=1)
        if pk in answers
    ]


def reader_progress(
    *, enrolment: Enrolment, answered: Set[int] | None = None
) -> dict[str, int | bool]:
    """``answered`` and ``total`` cases, and whether the reader has finished.
    ``answered``: the reader's ``answered_case_ids``, where the caller has them."""
    n_answered = (
        len(answered)
        if answered is not None
        else Answer.objects.filter(enrolment=enrolment).count()
    )
    return {
        "answered": n_answered,
        "total": len(enrolment.case_order),
        "finished": enrolment.finished_at is not None,
    }


def next_case_id(*, enrolment: Enrolment, answered: Set[int] | None = None) -> int | None:
    """The first case of the reader's order that has no answer, or None when done.
    ``answered``: the reader's ``answered_case_ids``, where the caller has them."""
    if answered is None:
        answered = answered_case_ids(enrolment=enrolment)
    return next((pk for pk in enrolment.case_order if pk not in answered), None)


def case_id_for_reader(
    *, enrolment: Enrolment, number: int | None = None, answered: Set[int] | None = None
) -> int | None:
    """The primary key of the case a reader may see: the next unanswered one, or (only
    where the study allows changes and the reader has not finished) an answered one by
    its 1-based ``number`` in the reader's order; None where there is none."""
    if answered is None:
        answered = answered_case_ids(enrolment=enrolment)
    if number is None:
        return next_case_id(enrolment=enrolment, answered=answered)
    if not (enrolment.study.allow_answer_changes and enrolment.finished_at is None):
        return None
    if not 1 <= number <= len(enrolment.case_order):
        return None
    pk = enrolment.case_order[number - 1]
    return pk if pk in answered else None


def case_number(*, enrolment: Enrolment, case: Case) -> int:
    return enrolment.case_order.index(case.pk) + 1


def following_case_id(*, enrolment: Enrolment, case_id: int) -> int | None:
    """The case after ``case_id`` in the reader's order (its images are loaded ahead)."""
    index = enrolment.case_order.index(case_id)
    return enrolment.case_order[index + 1] if index + 1 < len(enrolment.case_order) else None


@dataclass(frozen=True)
class Choice:
    """A diagnosis the reader may pick."""

    code: str
    name: str  # in the reader's language
    key: str  # the key that picks it on the case page: 1 to 9, then A, B, C...


# The choices of studies that readers see, by (study pk, created_at): (when read,
# diagnoses). Such a study's choices are fixed (``services.study_choice_refusal``), so a
# page or an answer need not read them again; the minute bounds how long an edited
# diagnosis name takes to show. created_at tells a new study from a removed one that had
# the same key (SQLite may reuse it).
_CHOICES_SECONDS = 60.0
_choices_read: dict[tuple[int, dt.datetime], tuple[float, tuple[Diagnosis, ...]]] = {}


def study_diagnoses(*, study: Study) -> tuple[Diagnosis, ...]:
    """The study's choices as diagnoses, in display order. A draft's (its admins may
    still change them) are read each time; those of a study readers see are kept in
    this process for a minute (one query a minute instead of one a page)."""
    key = (study.pk, study.created_at)
    now = time.monotonic()
    if study.status != Study.Status.DRAFT:
        kept = _choices_read.get(key)
        if kept is not None and now - kept[0] < _CHOICES_SECONDS:
            return kept[1]
    diagnoses = tuple(
        c.diagnosis for c in study.study_choices.select_related("diagnosis").order_by("position")
    )
    if study.status != Study.Status.DRAFT:
        _choices_read[key] = (now, diagnoses)
    return diagnoses


def answer_choices(*, study: Study, language: str = "en") -> list[Choice]:
    """The study's choices in display order."""
    return [
        Choice(code=d.code, name=d.name_for(language), key=choice_key(index))
        for index, d in enumerate(study_diagnoses(study=study))
    ]


def choice_key(index: int) -> str:
    """The key of the ``index``-th choice (0-based): 1 to 9, then A to Z. A 36th choice
    and later have none: the arrow keys reach them, as every choice."""
    keys = "123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"
    return keys[index] if index < len(keys) else ""


def _image_urls(images: Iterable[CaseImage], study: Study) -> dict[str, str]:
    return {
        image.kind: reverse("cases:image", args=[image.public_id, "web"])
        for image in _shown_to_readers(images, study=study)
    }


def _cases_with_images(pks: list[int]) -> dict[int, tuple[Case, list[CaseImage]]]:
    """The cases ``pks`` with their images, by primary key: one query, from the images
    with their cases (one more for a case without any image, which no open study has)."""
    found: dict[int, tuple[Case, list[CaseImage]]] = {}
    images = CaseImage.objects.filter(case_id__in=pks).select_related("case")
    for image in images.order_by("case_id", "kind"):  # the model's order joins the case
        found.setdefault(image.case_id, (image.case, []))[1].append(image)
    if missing := [pk for pk in pks if pk not in found]:
        found.update((case.pk, (case, [])) for case in Case.objects.filter(pk__in=missing))
    return found


@dataclass(frozen=True)
class CaseScreen:
    """What a reader is shown for one case, the same for the case page and the API.
    Nothing about the reference diagnosis or model output."""

    step: Step
    case: Case | None  # None where no case opens at this step
    number: int | None  # 1-based position of ``case`` in the reader's order
    images: dict[str, str]  # image URL (a path) by kind, without a hidden clinical photo
    prefetch: dict[str, str]  # image URL by kind of the following case: loaded ahead
    choices: list[Choice]
    ask_confidence: bool
    show_clinical_image: bool
    progress: dict[str, int | bool]
    revising: bool  # an answered case opened by its number
    previous_answer: tuple[str, int | None] | None  # (diagnosis code, confidence) if revising


def case_screen(
    *,
    enrolment: Enrolment,
    number: int | None = None,
    language: str = "en",
    step: Step | None = None,
    with_prefetch: bool = True,
    answered: Set[int] | None = None,
) -> CaseScreen:
    """The reader's next case, or (``number``) an answered case they may revise, with
    everything shown beside it. ``case`` is None where no case opens (see
    ``may_open_case``). ``step`` and ``answered`` (``answered_case_ids``): where the
    caller has them already. ``with_prefetch=False`` leaves ``prefetch`` empty (the API
    sends it only when asked). Two queries (the answered cases where not given; the case
    and the one after it with their images) and one more for a revised case's answer.
    Reading only: serving the case (which starts its clock) is ``case_serve``'s job."""
    if answered is None:
        answered = answered_case_ids(enrolment=enrolment)
    step = reader_step(enrolment=enrolment, answered=answered) if step is None else step
    study = enrolment.study
    case, images, prefetch, previous_answer = None, {}, {}, None
    pk = (
        case_id_for_reader(enrolment=enrolment, number=number, answered=answered)
        if may_open_case(step=step, number=number)
        else None
    )
    if pk is not None:
        after = following_case_id(enrolment=enrolment, case_id=pk) if with_prefetch else None
        # The case and the one after it with their images, in one query.
        shown = _cases_with_images([pk] if after is None else [pk, after])
        case, case_images = shown[pk]
        images = _image_urls(case_images, study)
        prefetch = _image_urls(shown[after][1], study) if after is not None else {}
        if number is not None:
            previous_answer = (
                case.answers.filter(enrolment=enrolment)
                .values_list("diagnosis__code", "confidence")
                .first()
            )
    return CaseScreen(
        step=step,
        case=case,
        number=case_number(enrolment=enrolment, case=case) if case is not None else None,
        images=images,
        prefetch=prefetch,
        choices=answer_choices(study=study, language=language),
        ask_confidence=study.ask_confidence,
        show_clinical_image=study.show_clinical_image,
        progress=reader_progress(enrolment=enrolment, answered=answered),
        revising=case is not None and number is not None,
        previous_answer=previous_answer,
    )


def reader_feedback(*, enrolment: Enrolment, language: str = "en") -> ReaderFeedback | None:
    """The reader's own accuracy, overall and per class (their sensitivity), against the
    reference, with the CNNs' where the study shows model feedback.

    None unless the reader has finished and the study enables feedback: this is the
    only reader-facing read that touches reference diagnoses.
    """
    if not reader_has_feedback(enrolment=enrolment):
        return None
    study = enrolment.study
    answers = Answer.objects.filter(enrolment=enrolment).select_related("case__diagnosis")
    reader = accuracy_summary(
        ((a.case.diagnosis, a.diagnosis_id == a.case.diagnosis_id) for a in answers),
        order=study.choice_codes(),
        language=language,
    )
    models = model_feedback(study=study, language=language) if study.show_model_feedback else []
    return reader_feedback_build(reader=reader, models=models)


def reader_progress_table(*, study: Study) -> list[dict]:
    """Per reader of ``study``, in enrolment order: code, progress, median seconds per
    case, last activity (the rows of :func:`reader_progress_rows`).

    Staff only. Medians are computed per reader from the stored server-side times.
    Last activity is the latest of an answer, an answer change, and the serving of a
    case (a reader sitting on a case is active), else consent, else enrolment.
    """
    return reader_progress_rows(enrolments_progress(study=study).order_by("enrolled_at", "pk"))


def study_choice_uses(*, study_id: int, diagnosis_id: int) -> tuple[int, int]:
    """(cases, answers) of the study that use ``diagnosis_id``: cases with it as their
    reference diagnosis, and answers that give it now or gave it before a change."""
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
    return cases, answers


def lockout_state(*, username: str) -> dict[str, object]:
    """The failed logins django-axes holds for ``username``: how many (``failures``),
    from how many addresses (``addresses``), and whether one of those addresses is
    locked out now (``locked``)."""
    from axes.helpers import get_cool_off
    from axes.models import AccessAttempt
    from django.conf import settings
    from django.utils import timezone

    attempts = AccessAttempt.objects.filter(username=username)
    cool_off = get_cool_off()
    live = attempts.filter(attempt_time__gte=timezone.now() - cool_off) if cool_off else attempts
    return {
        "failures": sum(a.failures_since_start for a in attempts),
        "addresses": attempts.count(),
        "locked": live.filter(failures_since_start__gte=settings.AXES_FAILURE_LIMIT).exists(),
    }


def case_reference_fixed(*, case: Case) -> bool:
    """Whether ``case``'s study and reference diagnosis are fixed: once readers can see
    the study, or have answered the case, changing them would rewrite the results."""
    return case.study.status != Study.Status.DRAFT or case.answers.exists()


def studies_open_to_cases() -> QuerySet[Study]:
    """The studies a case may be moved to: drafts only, so readers never see it change."""
    return Study.objects.filter(status=Study.Status.DRAFT)


def reader_has_feedback(*, enrolment: Enrolment) -> bool:
    """Whether the reader may see their results: finished, in a study that shows them."""
    return enrolment.finished_at is not None and enrolment.study.show_feedback


@dataclass(frozen=True)
class StudyEntry:
    """A study on the reader's home page: where the reader is (``step``), how far they
    got, whether the study is closed, and whether their results wait on the done page."""

    enrolment: Enrolment
    step: Step
    answered: int
    total: int
    closed: bool
    has_feedback: bool

    @property
    def may_continue(self) -> bool:
        """Whether there is anything left to do in the study (never once it is closed)."""
        return not self.closed and self.step != Step.DONE


def reader_study_entries(*, user) -> list[StudyEntry]:
    """The studies ``user`` reads, for their home page, in enrolment order."""
    return [
        StudyEntry(
            enrolment=enrolment,
            step=reader_step(enrolment=enrolment),
            answered=enrolment.n_answers,
            total=len(enrolment.case_order),
            # also a study past its closing date that the beat has not closed yet
            closed=enrolment.study.status != Study.Status.DRAFT and not enrolment.study.is_open(),
            has_feedback=reader_has_feedback(enrolment=enrolment),
        )
        for enrolment in enrolments_for_reader(user=user).order_by("enrolled_at")
    ]


# --- invitations (staff) -----------------------------------------------------------------


@dataclass(frozen=True)
class InvitationRow:
    """An invitation as the console lists it; ``status`` is what its link does now."""

    invitation: Invitation
    status: str  # "active", "used up", "expired" or "revoked"

    @property
    def usable(self) -> bool:
        return self.status == "active"


def invitation_status(invitation: Invitation, *, now=None) -> str:
    now = now or timezone.now()
    if invitation.revoked:
        return "revoked"
    if invitation.uses >= invitation.max_uses:
        return "used up"
    if invitation.expires_at is not None and invitation.expires_at <= now:
        return "expired"
    return "active"


def study_invitations(*, study: Study, pks: Iterable[int] | None = None, limit: int = 200):
    """The study's invitations, newest first (only ``pks`` where given), at most
    ``limit``, each with its status. Staff only: the caller checks the study."""
    rows = study.invitations.order_by("-created_at", "-pk")
    if pks is not None:
        rows = rows.filter(pk__in=list(pks))
    now = timezone.now()
    return [InvitationRow(i, invitation_status(i, now=now)) for i in rows[:limit]]


# --- the study's dashboard and reader progress (staff) -----------------------------------


class ReaderStep(StrEnum):
    """Where an enrolled reader stands, as the console counts readers (the reader's own
    flow is :class:`Step`). The first that applies: finished; in progress (at least one
    answer); consented (no answer yet); invited (enrolled, through an invitation or by an
    admin, but not consented yet)."""

    INVITED = "invited"
    CONSENTED = "consented"
    IN_PROGRESS = "in_progress"
    FINISHED = "finished"

    @property
    def label(self) -> str:
        return READER_STEP_LABELS[self][0]

    @property
    def short_label(self) -> str:
        return READER_STEP_LABELS[self][1]


READER_STEP_LABELS = {  # (label, short label for a table cell)
    ReaderStep.INVITED: ("Invited (enrolled, not consented)", "Invited"),
    ReaderStep.CONSENTED: ("Consented, no answer yet", "Consented"),
    ReaderStep.IN_PROGRESS: ("In progress", "In progress"),
    ReaderStep.FINISHED: ("Finished", "Finished"),
}


def _is_simulated(reader: str = "reader__") -> Coalesce:
    """Whether the reader's profile marks them simulated; False without a profile."""
    return Coalesce(
        f"{reader}reader_profile__is_simulated", Value(False), output_field=models.BooleanField()
    )


def _reader_step(*, as_rank: bool = False) -> models.Case:
    """The :class:`ReaderStep` of an enrolment in SQL: its value, or with ``as_rank``
    its position among the steps, to sort by (``models.Case`` is SQL's CASE, not a
    study's case)."""

    def then(step: ReaderStep) -> Value:
        return Value(list(ReaderStep).index(step) if as_rank else step.value)

    return models.Case(
        models.When(finished_at__isnull=False, then=then(ReaderStep.FINISHED)),
        models.When(
            Exists(Answer.objects.filter(enrolment=OuterRef("pk"))),
            then=then(ReaderStep.IN_PROGRESS),
        ),
        models.When(consented_at__isnull=False, then=then(ReaderStep.CONSENTED)),
        default=then(ReaderStep.INVITED),
        output_field=models.IntegerField() if as_rank else CharField(),
    )


def _last_activity() -> Coalesce:
    """The latest of an enrolment's answers, answer changes and serving of a case, else
    its consent, else its enrolment. Each missing one is replaced by one that exists
    before taking the greatest: SQLite's MAX(a, b) is NULL when any is NULL."""
    moments = (Max("answers__answered_at"), Max("answers__changed_at"), F("served_at"))
    present = Coalesce(*moments)
    return Coalesce(
        Greatest(*(Coalesce(moment, present) for moment in moments)),
        "consented_at",
        "enrolled_at",
    )


def enrolments_progress(*, study: Study) -> QuerySet[Enrolment]:
    """The enrolments of ``study`` with ``n_answered``, ``simulated``, ``step`` (a
    :class:`ReaderStep` value) and ``last_activity`` (see :func:`_last_activity`), and
    the reader and their profile: one query for any number of readers. Staff only."""
    return (
        Enrolment.objects.filter(study=study)
        .select_related("reader__reader_profile")
        .annotate(
            n_answered=Count("answers"),
            simulated=_is_simulated(),
            step=_reader_step(),
            last_activity=_last_activity(),
        )
    )


# The reader progress page's sort keys (``?sort=KEY``, ``-KEY`` descending) and the
# enrolment field or annotation each sorts by. The median is not among them: it is taken
# per page (SQLite has no median aggregate).
PROGRESS_SORTS = {
    "reader": "reader_code",
    "user": "reader__username",
    "step": "step_rank",
    "answered": "n_answered",
    "consented": "consented_at",
    "finished": "finished_at",
    "last_activity": "last_activity",
    "enrolled": "enrolled_at",
}
PROGRESS_DEFAULT_SORT = "enrolled"


def reader_progress_query(
    *, study: Study, sort: str = PROGRESS_DEFAULT_SORT, step: str = "", text: str = ""
) -> QuerySet[Enrolment]:
    """The enrolments of ``study`` for the reader progress page (see
    :func:`enrolments_progress`): only those at ``step`` (a :class:`ReaderStep` value;
    "" for all) whose reader code or user name contains ``text`` (any case). Real
    readers first, then simulated ones; within each by ``sort`` (a key of
    ``PROGRESS_SORTS``, prefixed by "-" for descending; empty values last either way),
    then by enrolment. ValueError for another sort or step."""
    key = sort.removeprefix("-")
    if key not in PROGRESS_SORTS:
        raise ValueError(f"unknown sort {sort!r}")
    rows = enrolments_progress(study=study).annotate(step_rank=_reader_step(as_rank=True))
    if step:
        rows = rows.filter(step=ReaderStep(step).value)
    if text:
        rows = rows.filter(Q(reader_code__icontains=text) | Q(reader__username__icontains=text))
    field = F(PROGRESS_SORTS[key])
    order = field.desc(nulls_last=True) if sort.startswith("-") else field.asc(nulls_last=True)
    return rows.order_by("simulated", order, "enrolled_at", "pk")


def median_seconds_by_enrolment(*, enrolment_ids: Iterable[int]) -> dict[int, float]:
    """Median server-measured seconds per case of each of ``enrolment_ids`` that has an
    answer. One query; the medians are taken here because SQLite has no median
    aggregate, so callers pass a page of readers, not a whole study."""
    seconds: dict[int, list[float]] = {}
    for enrolment_id, secs in Answer.objects.filter(
        enrolment_id__in=list(enrolment_ids)
    ).values_list("enrolment_id", "seconds"):
        seconds.setdefault(enrolment_id, []).append(secs)
    return {pk: statistics.median(times) for pk, times in seconds.items()}


def reader_progress_rows(enrolments: Iterable[Enrolment]) -> list[dict]:
    """One row per enrolment of :func:`enrolments_progress` (in their order): its
    ``enrolment_id``, ``reader_code``, ``username``, ``simulated``, ``level``, ``step``
    (a :class:`ReaderStep`), ``answered`` / ``total``, ``consented_at``,
    ``finished_at``, ``median_seconds`` (None without an answer) and ``last_activity``.
    Two queries: the enrolments and their answers' times."""
    enrolments = list(enrolments)
    medians = median_seconds_by_enrolment(enrolment_ids=[e.pk for e in enrolments])
    rows = []
    for enrolment in enrolments:
        profile = getattr(enrolment.reader, "reader_profile", None)
        rows.append(
            {
                "enrolment_id": enrolment.pk,
                "reader_code": enrolment.reader_code,
                "username": enrolment.reader.get_username(),
                "simulated": enrolment.simulated,
                "level": profile.get_level_display() if profile and profile.level else "",
                "step": ReaderStep(enrolment.step),
                "answered": enrolment.n_answered,
                "total": len(enrolment.case_order),
                "consented_at": enrolment.consented_at,
                "finished_at": enrolment.finished_at,
                "median_seconds": medians.get(enrolment.pk),
                "last_activity": enrolment.last_activity,
            }
        )
    return rows


@dataclass(frozen=True)
class StepCounts:
    """Readers at each :class:`ReaderStep`."""

    invited: int = 0
    consented: int = 0
    in_progress: int = 0
    finished: int = 0

    @property
    def enrolled(self) -> int:
        return self.invited + self.consented + self.in_progress + self.finished

    def at(self, step: ReaderStep) -> int:
        return getattr(self, step.value)


@dataclass(frozen=True)
class ReadersByStep:
    real: StepCounts
    simulated: StepCounts

    def rows(self) -> list[tuple[ReaderStep, int, int]]:
        """(step, real readers, simulated readers), in the steps' order."""
        return [(s, self.real.at(s), self.simulated.at(s)) for s in ReaderStep]


def readers_by_step(*, study: Study) -> ReadersByStep:
    """The readers of ``study`` at each :class:`ReaderStep`, real and simulated ones
    apart. One query."""
    counts: dict[bool, dict[str, int]] = {False: {}, True: {}}
    for simulated, step, n in (
        Enrolment.objects.filter(study=study)
        .annotate(simulated=_is_simulated(), step=_reader_step())
        .values("simulated", "step")
        .annotate(n=Count("pk"))
        .values_list("simulated", "step", "n")
        .order_by()
    ):
        counts[bool(simulated)][step] = n
    return ReadersByStep(real=StepCounts(**counts[False]), simulated=StepCounts(**counts[True]))


@dataclass(frozen=True)
class DayCount:
    """Answers given on one calendar day, by real and by simulated readers."""

    day: dt.date
    real: int
    simulated: int

    @property
    def total(self) -> int:
        return self.real + self.simulated


def answers_per_day(*, study: Study, tz: dt.tzinfo, until: dt.date | None = None) -> list[DayCount]:
    """The answers of ``study`` per calendar day in ``tz``, by when each was first given
    (a later change does not count again): every day from the first with an answer to
    ``until`` (the last with an answer where None, or where that is later), days
    without answers as zeros; [] without answers. One query."""
    counts: dict[dt.date, dict[bool, int]] = {}
    for day, simulated, n in (
        Answer.objects.filter(enrolment__study=study)
        .annotate(
            day=TruncDate("answered_at", tzinfo=tz), simulated=_is_simulated("enrolment__reader__")
        )
        .values("day", "simulated")
        .annotate(n=Count("pk"))
        .values_list("day", "simulated", "n")
        .order_by("day")
    ):
        counts.setdefault(day, {})[bool(simulated)] = n
    if not counts:
        return []
    first, last = min(counts), max(counts)
    if until is not None and until > last:
        last = until
    span = (first + dt.timedelta(days=i) for i in range((last - first).days + 1))
    return [
        DayCount(day, counts.get(day, {}).get(False, 0), counts.get(day, {}).get(True, 0))
        for day in span
    ]


def median_seconds_of_real_readers(*, study: Study, n_answers: int) -> float | None:
    """The median server-measured seconds per case over every answer of the real
    readers of ``study`` (``n_answers`` of them, which the caller counted); None
    without one. One query for the middle one or two values, taken in SQL order."""
    if n_answers == 0:
        return None
    seconds = (
        Answer.objects.filter(enrolment__study=study)
        .alias(simulated=_is_simulated("enrolment__reader__"))
        .filter(simulated=False)
        .order_by("seconds")
        .values_list("seconds", flat=True)
    )
    middle = list(seconds[(n_answers - 1) // 2 : n_answers // 2 + 1])
    return sum(middle) / len(middle)


PACE_DAYS = 7  # the projection's pace: real readers' answers over the last 7 days


class ProjectionState(StrEnum):
    PROJECTED = "projected"
    COMPLETE = "complete"  # every enrolled real reader has answered every case
    NO_READERS = "no_readers"  # no real reader enrolled, or no case
    NO_PACE = "no_pace"  # no answer by a real reader in the last PACE_DAYS days


@dataclass(frozen=True)
class Projection:
    """When the answers still expected from the enrolled real readers are in, at the
    pace of the last ``PACE_DAYS`` days (today included, in the site's time zone).

    ``expected`` = real readers x cases, ``answered`` = their answers so far,
    ``remaining`` = expected - answered (never below 0); the pace is
    ``recent_answers / PACE_DAYS`` answers a day, and ``date`` = ``window_end`` +
    ceil(remaining / pace) days, None unless ``state`` is PROJECTED."""

    state: ProjectionState
    real_readers: int
    n_cases: int
    answered: int
    recent_answers: int
    window_start: dt.date
    window_end: dt.date
    date: dt.date | None

    @property
    def expected(self) -> int:
        return self.real_readers * self.n_cases

    @property
    def remaining(self) -> int:
        return max(self.expected - self.answered, 0)

    @property
    def per_day(self) -> float:
        return self.recent_answers / PACE_DAYS

    @property
    def days_to_go(self) -> int | None:
        return (self.date - self.window_end).days if self.date else None


def completion_projection(
    *, real_readers: int, n_cases: int, answered: int, recent_answers: int, today: dt.date
) -> Projection:
    """The :class:`Projection` for these counts (``recent_answers``: real readers'
    answers on ``today`` and the ``PACE_DAYS`` - 1 days before)."""
    remaining = max(real_readers * n_cases - answered, 0)
    date = None
    if real_readers == 0 or n_cases == 0:
        state = ProjectionState.NO_READERS
    elif remaining == 0:
        state = ProjectionState.COMPLETE
    elif recent_answers == 0:
        state = ProjectionState.NO_PACE
    else:
        state = ProjectionState.PROJECTED
        # ceil(remaining / (recent / PACE_DAYS)) in integers: no rounding residue.
        date = today + dt.timedelta(days=-(-remaining * PACE_DAYS // recent_answers))
    return Projection(
        state=state,
        real_readers=real_readers,
        n_cases=n_cases,
        answered=answered,
        recent_answers=recent_answers,
        window_start=today - dt.timedelta(days=PACE_DAYS - 1),
        window_end=today,
        date=date,
    )


@dataclass(frozen=True)
class InvitationUse:
    """The study's invitation links: how many, how often used to join, and how many
    joins the links that work now (not revoked, not expired) still allow."""

    links: int
    uses: int
    places_left: int


@dataclass(frozen=True)
class StudyDashboard:
    """A running study at a glance (the console's Overview). Days and dates are in
    ``timezone`` (the site's, ``settings.TIME_ZONE``)."""

    timezone: str
    today: dt.date
    readers: ReadersByStep
    days: list[DayCount]
    answers_real: int
    answers_simulated: int
    median_seconds: float | None  # over every answer of the real readers
    projection: Projection
    invitations: InvitationUse


def study_dashboard(*, study: Study, now: dt.datetime | None = None) -> StudyDashboard:
    """The :class:`StudyDashboard` of ``study`` at ``now`` (the present where None).
    The chart's days run to today while the study is open. Staff only; five queries,
    whatever the numbers of readers and answers."""
    now = now or timezone.now()
    tz = timezone.get_current_timezone()
    today = timezone.localdate(now, tz)
    readers = readers_by_step(study=study)
    days = answers_per_day(study=study, tz=tz, until=today if study.is_open(now=now) else None)
    answers_real = sum(d.real for d in days)
    window_start = today - dt.timedelta(days=PACE_DAYS - 1)
    active = Q(revoked=False) & (Q(expires_at__isnull=True) | Q(expires_at__gt=now))
    links = Invitation.objects.filter(study=study).aggregate(
        n_links=Count("pk"),
        n_uses=Coalesce(Sum("uses"), 0),
        n_left=Coalesce(Sum(F("max_uses") - F("uses"), filter=active), 0),
    )
    return StudyDashboard(
        timezone=timezone.get_current_timezone_name(),
        today=today,
        readers=readers,
        days=days,
        answers_real=answers_real,
        answers_simulated=sum(d.simulated for d in days),
        median_seconds=median_seconds_of_real_readers(study=study, n_answers=answers_real),
        projection=completion_projection(
            real_readers=readers.real.enrolled,
            n_cases=Case.objects.filter(study=study).count(),
            answered=answers_real,
            recent_answers=sum(d.real for d in days if window_start <= d.day <= today),
            today=today,
        ),
        invitations=InvitationUse(
            links=links["n_links"], uses=links["n_uses"], places_left=links["n_left"]
        ),
    )


def studies_index(*, user: AbstractBaseUser | AnonymousUser) -> QuerySet[Study]:
    """The studies ``user`` administers, for the admin's home page: open ones first,
    then drafts, then closed, newest first within each, with ``n_cases``, ``n_readers``
    and ``n_finished`` (enrolments, simulated readers included)."""

    def count(model, **filters):
        rows = model.objects.filter(study=OuterRef("pk"), **filters).values("study")
        return Coalesce(models.Subquery(rows.annotate(n=Count("pk")).values("n")[:1]), Value(0))

    rank = models.Case(
        models.When(status=Study.Status.OPEN, then=0),
        models.When(status=Study.Status.DRAFT, then=1),
        default=2,
        output_field=models.IntegerField(),
    )
    return (
        administered_studies(user=user)
        .annotate(
            n_cases=count(Case),
            n_readers=count(Enrolment),
            n_finished=count(Enrolment, finished_at__isnull=False),
            rank=rank,
        )
        .order_by("rank", "-created_at", "pk")
    )


def first_condition_id(study: str = "study") -> models.Subquery:
    """The key of the study's first reading condition (by position), as a subquery on
    the row whose study is at ``study``: the condition every answer of a one-condition
    study belongs to, read in the statement that reads that row."""
    conditions = ReadingCondition.objects.filter(study=OuterRef(study)).order_by("position")
    return models.Subquery(conditions.values("pk")[:1])
