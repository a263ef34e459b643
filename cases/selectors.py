"""Reads that encode who may see what. Views never build these querysets themselves."""

from __future__ import annotations

import dataclasses
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
    it, where one of the study's reading conditions shows images of its kind (a study
    that never shows the clinical photo never serves it to a reader)."""
    if not user.is_authenticated or not user.is_active:
        return None
    images = CaseImage.objects.filter(public_id=public_id).order_by()  # one at most
    # A join, not EXISTS subqueries: this runs for every image a reader loads, and the
    # subqueries cost twice the CPU to build.
    shown_to_readers = Q(
        kind=CaseImage.Kind.DERMOSCOPIC, case__study__conditions__shows_dermoscopic=True
    ) | Q(kind=CaseImage.Kind.CLINICAL, case__study__conditions__shows_clinical=True)
    as_reader = Q(case__study__enrolments__reader=user) & shown_to_readers
    if not is_study_staff(user):
        # A reader's image (every request for one): the view needs nothing of its case.
        return images.filter(as_reader).first()
    return (
        images.filter(Q(case__study__in=administered_studies(user=user)) | as_reader)
        .select_related("case__study")
        .first()
    )


def reader_images(*, case: Case, condition: ConditionInfo | None = None) -> list[CaseImage]:
    """The images of ``case`` that ``condition`` (by default its study's first) shows to
    readers."""
    if condition is None:
        condition = study_conditions(study=case.study)[0]
    return _shown_to_readers(case.images.all(), condition=condition)


def _shown_to_readers(images: Iterable[CaseImage], *, condition: ConditionInfo) -> list[CaseImage]:
    return [image for image in images if image.kind in condition.image_kinds]


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
    """Every answer of ``study`` as the tidy answers table, one row per reader x case x
    reading condition.

    Columns ``analysis.stats.columns.ANSWERS_TABLE_COLUMNS``: ``reader`` (the
    pseudonymous reader code), ``case`` (public id), ``truth`` and ``answer`` (diagnosis
    codes), ``condition`` (the reading condition's code), ``session`` (1-based: a
    crossover reader's second condition is session 2), ``ai_answer`` and
    ``ai_top_probability`` (the CNN's predicted class and its probability as the
    condition showed them; "" and None where it shows no CNN support), ``changed``
    (whether the answer differs from the reader's earlier read of the case in another
    condition; None for a case's first read), ``truth_name`` and ``answer_name`` (in
    ``language``), the reader's profile fields renamed to ``READER_COLUMNS`` ("" for
    text and None otherwise without a profile), ``finished`` (whether the reader had
    finished the study), ``confidence``, ``seconds`` and ``answered_at`` (UTC, ISO
    8601). Rows by reader, then condition (in the study's order), then case. This is what the admin's CSV export and the analysis read. Staff only: it
    contains the reference diagnoses.
    """
    import pandas as pd

    from analysis.stats.columns import ANSWERS_TABLE_COLUMNS, READER_COLUMNS
    from cases.support import support_predictions

    # The renaming: READER_COLUMNS are PROFILE_FIELDS in the same order (strict: a field
    # added to one and not the other fails here, not in a shifted column).
    fields = dict(zip(PROFILE_FIELDS, READER_COLUMNS, strict=True))
    no_profile = tuple(
        "" if isinstance(ReaderProfile._meta.get_field(name), CharField) else None
        for name in fields
    )
    conditions = {c.pk: c for c in study.conditions.select_related("cnn_support")}
    crossover = study.design == Study.Design.CROSSOVER
    positions = sorted(c.position for c in conditions.values())
    # The CNN each condition that shows support showed: its predictions by case.
    shown = {
        pk: support_predictions(
            model_id=c.cnn_support.model_id, case_ids=study.cases.values_list("pk", flat=True)
        )
        for pk, c in conditions.items()
        if c.shows_cnn and getattr(c, "cnn_support", None) is not None
    }
    answers = (
        Answer.objects.filter(enrolment__study=study)
        .select_related("enrolment__reader__reader_profile", "case__diagnosis", "diagnosis")
        .order_by("enrolment__reader_code", "answered_at", "pk")
    )
    if finished_only:
        answers = answers.filter(enrolment__finished_at__isnull=False)
    rows, earlier = [], {}
    for a in answers.iterator(chunk_size=2000):
        profile = getattr(a.enrolment.reader, "reader_profile", None)
        condition = conditions[a.condition_id]
        session = 1
        if crossover:
            order = positions[::-1] if a.enrolment.arm == 1 else positions
            session = order.index(condition.position) + 1
        ai = shown.get(a.condition_id, {}).get(a.case_id)
        before = earlier.get((a.enrolment_id, a.case_id))
        earlier[(a.enrolment_id, a.case_id)] = a.diagnosis_id
        rows.append(  # in the order of ANSWERS_TABLE_COLUMNS
            (
                a.enrolment.reader_code,
                a.case.public_id,
                a.case.diagnosis.code,
                a.diagnosis.code,
                condition.code,
                session,
                ai.choice if ai is not None else "",
                ai.probabilities.get(ai.choice) if ai is not None else None,
                None if before is None else before != a.diagnosis_id,
                a.case.diagnosis.name_for(language),
                a.diagnosis.name_for(language),
                *(tuple(getattr(profile, name) for name in fields) if profile else no_profile),
                a.enrolment.finished_at is not None,
                a.confidence,
                a.seconds,
                a.answered_at.isoformat(),
            )
        )
    frame = pd.DataFrame(rows, columns=list(ANSWERS_TABLE_COLUMNS))
    # The tidy order: by reader, then condition in the study's order (so the analysis,
    # which takes the conditions in the order they first appear, takes the study's), then
    # the study's case order ("changed" was fixed above in the order of answering).
    if len(frame):
        rank = {c.code: c.position for c in conditions.values()}
        case_rank = dict(study.cases.values_list("public_id", "position"))
        frame = (
            frame.assign(_c=frame["condition"].map(rank), _k=frame["case"].map(case_rank))
            .sort_values(["reader", "_c", "_k"], kind="stable")
            .drop(columns=["_c", "_k"])
            .reset_index(drop=True)
        )
    return frame


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
    # A crossover between its sessions: the reader's next session opens once the
    # study's washout has passed since their last answer of the one before.
    WASHOUT = "washout"
    CLOSED = "closed"
    DONE = "done"


# --- reading conditions and the reads of a reader --------------------------------------


@dataclass(frozen=True)
class ConditionInfo:
    """A reading condition as the reader's side needs it (``ReadingCondition`` and its
    CNN support, ``inference.ConditionSupport``: ``support_model_id`` and ``top_k``)."""

    pk: int
    code: str
    position: int
    label: str
    label_zh: str
    shows_dermoscopic: bool
    shows_clinical: bool
    shows_metadata: bool
    shows_cnn: bool
    shows_gradcam: bool
    support_model_id: int | None
    top_k: int

    @property
    def image_kinds(self) -> frozenset[str]:
        """The kinds of case image this condition shows."""
        kinds = {CaseImage.Kind.DERMOSCOPIC: self.shows_dermoscopic}
        kinds[CaseImage.Kind.CLINICAL] = self.shows_clinical
        return frozenset(kind for kind, shown in kinds.items() if shown)

    def label_for(self, language: str | None) -> str:
        if language and language.lower().startswith("zh") and self.label_zh:
            return self.label_zh
        return self.label or self.code


# What a study that readers see keeps fixed (its choices, ``services.
# study_choice_refusal``; its conditions, read-only from its opening), by (study pk,
# created_at): (when read, value). A page or an answer need not read them again; the
# minute bounds how long an edited diagnosis name takes to show. created_at tells a new
# study from a removed one that had the same key (SQLite may reuse it).
_CHOICES_SECONDS = 60.0
_choices_read: dict[tuple[int, dt.datetime], tuple[float, tuple[Diagnosis, ...]]] = {}
_conditions_read: dict[tuple[int, dt.datetime], tuple[float, tuple[ConditionInfo, ...]]] = {}


def _kept(store: dict, study: Study, read):
    """``read()``, or for a study readers see what it gave less than a minute ago in this
    process (kept in ``store``); a draft's (its admins may still change it) every time."""
    key = (study.pk, study.created_at)
    now = time.monotonic()
    if study.status != Study.Status.DRAFT:
        kept = store.get(key)
        if kept is not None and now - kept[0] < _CHOICES_SECONDS:
            return kept[1]
    value = read()
    if study.status != Study.Status.DRAFT:
        store[key] = (now, value)
    return value


def study_conditions(*, study: Study) -> tuple[ConditionInfo, ...]:
    """The study's reading conditions in their order, with their CNN support: one query,
    kept for a minute as the choices are (``study_diagnoses``)."""

    def read() -> tuple[ConditionInfo, ...]:
        conditions = study.conditions.select_related("cnn_support").order_by("position")
        found = []
        for c in conditions:
            support = getattr(c, "cnn_support", None)
            found.append(
                ConditionInfo(
                    pk=c.pk,
                    code=c.code,
                    position=c.position,
                    label=c.label,
                    label_zh=c.label_zh,
                    shows_dermoscopic=c.shows_dermoscopic,
                    shows_clinical=c.shows_clinical,
                    shows_metadata=c.shows_metadata,
                    shows_cnn=c.shows_cnn,
                    shows_gradcam=c.shows_gradcam,
                    support_model_id=support.model_id if support is not None else None,
                    top_k=support.top_k if support is not None else 0,
                )
            )
        return tuple(found)

    return _kept(_conditions_read, study, read)


def reader_conditions(*, enrolment: Enrolment) -> tuple[ConditionInfo, ...]:
    """The study's conditions in the order this reader reads them: the study's order,
    reversed for a crossover reader of arm 1 (B, then A)."""
    conditions = study_conditions(study=enrolment.study)
    if enrolment.study.design == Study.Design.CROSSOVER and enrolment.arm == 1:
        return tuple(reversed(conditions))
    return conditions


@dataclass(frozen=True, slots=True, eq=False)
class Read:
    """One answer a reader owes: a case in a condition, in a session; ``number`` is the
    case's 1-based place in that session's order."""

    case_id: int
    condition: ConditionInfo
    session: int
    number: int

    @property
    def key(self) -> tuple[int, int]:
        """(case, condition): what ``answered_reads`` holds."""
        return (self.case_id, self.condition.pk)


def reading_plan(*, enrolment: Enrolment) -> list[Read]:
    """Every read of the reader, in the order they are served. One condition: each case
    of ``case_order`` once. Sequential: each case in the first condition (unaided), then
    at once in the second (with the CNN's support). Crossover: every case in the
    reader's first condition (session 1, ``case_order``), then, after the washout, every
    case in the other (session 2, the fresh order ``second_case_order``)."""
    study = enrolment.study
    conditions = reader_conditions(enrolment=enrolment)
    # Built once per request: kept on the enrolment while its study's conditions are
    # the same (kept) ones. Its orders and arm do not change once it is enrolled.
    kept = getattr(enrolment, "_reading_plan", None)
    if kept is not None and kept[0] == conditions:
        return kept[1]
    order = enrolment.case_order
    if study.design == Study.Design.SEQUENTIAL:
        reads = [
            Read(pk, condition, 1, number)
            for number, pk in enumerate(order, start=1)
            for condition in conditions
        ]
    else:
        reads = [Read(pk, conditions[0], 1, number) for number, pk in enumerate(order, start=1)]
    if study.design == Study.Design.CROSSOVER:
        later = enrolment.second_case_order or order
        reads += [
            Read(pk, condition, session, number)
            for session, condition in enumerate(conditions[1:], start=2)
            for number, pk in enumerate(later, start=1)
        ]
    enrolment._reading_plan = (conditions, reads)
    return reads


def n_sessions(study: Study, n_conditions: int) -> int:
    return n_conditions if study.design == Study.Design.CROSSOVER else 1


def answered_reads(*, enrolment: Enrolment) -> frozenset[tuple[int, int]]:
    """The (case, condition) pairs the reader has answered. One query; the callers below
    take it as ``answered`` where they have it, instead of reading it again."""
    # order_by(): the model's ordering (enrolment, then the enrolment's own) only joins.
    return frozenset(
        Answer.objects.filter(enrolment=enrolment).order_by().values_list("case_id", "condition_id")
    )


def _n_reads(enrolment: Enrolment) -> int:
    """How many answers the reader owes in all (no query for a one-condition study)."""
    study = enrolment.study
    if study.design == Study.Design.SINGLE:
        return len(enrolment.case_order)
    return len(reading_plan(enrolment=enrolment))


def next_read(
    *, enrolment: Enrolment, answered: Set[tuple[int, int]], plan: list[Read] | None = None
) -> Read | None:
    """The first read of the reader's plan that has no answer, or None when done."""
    plan = reading_plan(enrolment=enrolment) if plan is None else plan
    return next((read for read in plan if read.key not in answered), None)


def session_opens_at(
    *, enrolment: Enrolment, read: Read, plan: list[Read] | None = None
) -> dt.datetime | None:
    """When the session of ``read`` opens for the reader, while that is still to come:
    a crossover's later session opens the study's washout (in days) after the reader's
    last answer of the session before. None where it is open (the first session, a
    later one past its washout)."""
    if read.session == 1 or enrolment.study.design != Study.Design.CROSSOVER:
        return None
    plan = reading_plan(enrolment=enrolment) if plan is None else plan
    before = next(r.condition.pk for r in plan if r.session == read.session - 1)
    last = (
        Answer.objects.filter(enrolment=enrolment, condition_id=before)
        .order_by()
        .aggregate(last=Max("answered_at"))["last"]
    )
    if last is None:
        return None
    opens = last + dt.timedelta(days=enrolment.study.washout_days or 0)
    return opens if opens > timezone.now() else None


def reader_step(*, enrolment: Enrolment, answered: Set[tuple[int, int]] | None = None) -> Step:
    """Where the reader is (see ``Step``). The first that applies: done once finished,
    then consent, profile, closed (a study no longer open), review, washout, case.
    ``answered``: the reader's ``answered_reads``, where the caller has them."""
    if enrolment.finished_at is not None:
        return Step.DONE
    if needs_consent(enrolment=enrolment):
        return Step.CONSENT
    if missing_profile_fields(enrolment=enrolment):
        return Step.PROFILE
    study = enrolment.study
    if not study.is_open():
        return Step.CLOSED
    # Only a study that allows changes has a review step (elsewhere the last answer
    # finishes), so only there is this count worth a query on every case page.
    if study.allow_answer_changes and enrolment.case_order:
        n_answered = (
            len(answered)
            if answered is not None
            else Answer.objects.filter(enrolment=enrolment).count()
        )
        if n_answered >= _n_reads(enrolment):
            return Step.REVIEW
    if study.design == Study.Design.CROSSOVER:
        if answered is None:
            answered = answered_reads(enrolment=enrolment)
        plan = reading_plan(enrolment=enrolment)
        read = next_read(enrolment=enrolment, answered=answered, plan=plan)
        if read is not None and session_opens_at(enrolment=enrolment, read=read, plan=plan):
            return Step.WASHOUT
    return Step.CASE


def may_open_case(*, step: Step, number: int | None = None) -> bool:
    """Whether a case screen opens at ``step``: the next case at step ``case``; an
    answered case by its ``number`` also while reviewing."""
    return step == Step.CASE or (step == Step.REVIEW and number is not None)


def reader_answers(*, enrolment: Enrolment, language: str = "en") -> list[dict]:
    """The reader's own answers in their case order, for reviewing them before
    finishing (a one-condition study that allows changes): ``number``, ``answer`` (the
    diagnosis name in ``language``) and ``confidence``. Nothing about the reference."""
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
    *, enrolment: Enrolment, answered: Set[tuple[int, int]] | None = None
) -> dict[str, int | bool]:
    """``answered`` and ``total`` answers (cases times the conditions each is read in),
    whether the reader has finished, and the ``session`` they are in of ``sessions``.
    ``answered``: the reader's ``answered_reads``, where the caller has them."""
    n_answered = (
        len(answered)
        if answered is not None
        else Answer.objects.filter(enrolment=enrolment).count()
    )
    progress = {
        "answered": n_answered,
        "total": _n_reads(enrolment),
        "finished": enrolment.finished_at is not None,
        "session": 1,
        "sessions": 1,
    }
    if enrolment.study.design == Study.Design.CROSSOVER:
        conditions = study_conditions(study=enrolment.study)
        cases = len(enrolment.case_order)
        progress["sessions"] = n_sessions(enrolment.study, len(conditions))
        progress["session"] = min(1 + n_answered // max(cases, 1), progress["sessions"])
    return progress


def _answered_cases(answered: Set[tuple[int, int]]) -> frozenset[int]:
    return frozenset(case_id for case_id, _ in answered)


def case_id_for_reader(
    *,
    enrolment: Enrolment,
    number: int | None = None,
    answered: Set[tuple[int, int]] | None = None,
) -> int | None:
    """The primary key of the case a reader may see: that of their next read, or (only
    where the study allows changes and the reader has not finished) an answered one by
    its 1-based ``number`` in the reader's order; None where there is none."""
    if answered is None:
        answered = answered_reads(enrolment=enrolment)
    if number is None:
        read = next_read(enrolment=enrolment, answered=answered)
        return read.case_id if read is not None else None
    if not (enrolment.study.allow_answer_changes and enrolment.finished_at is None):
        return None
    if not 1 <= number <= len(enrolment.case_order):
        return None
    pk = enrolment.case_order[number - 1]
    return pk if pk in _answered_cases(answered) else None


def next_case_id(
    *, enrolment: Enrolment, answered: Set[tuple[int, int]] | None = None
) -> int | None:
    """The case of the reader's next read, or None when every read is answered."""
    return case_id_for_reader(enrolment=enrolment, answered=answered)


def case_number(*, enrolment: Enrolment, case: Case) -> int:
    return enrolment.case_order.index(case.pk) + 1


@dataclass(frozen=True)
class Choice:
    """A diagnosis the reader may pick."""

    code: str
    name: str  # in the reader's language
    key: str  # the key that picks it on the case page: 1 to 9, then A, B, C...


def study_diagnoses(*, study: Study) -> tuple[Diagnosis, ...]:
    """The study's choices as diagnoses, in display order. A draft's (its admins may
    still change them) are read each time; those of a study readers see are kept in
    this process for a minute (one query a minute instead of one a page)."""
    return _kept(
        _choices_read,
        study,
        lambda: tuple(
            c.diagnosis
            for c in study.study_choices.select_related("diagnosis").order_by("position")
        ),
    )


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


def _image_urls(images: Iterable[CaseImage], condition: ConditionInfo) -> dict[str, str]:
    return {
        image.kind: reverse("cases:image", args=[image.public_id, "web"])
        for image in _shown_to_readers(images, condition=condition)
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
class SupportClass:
    """One of the CNN's most probable classes, as the reader sees it."""

    code: str
    name: str  # in the reader's language
    probability: float  # over the study's choices, 0 to 1


@dataclass(frozen=True)
class CnnSupport:
    """The CNN's support on a read whose condition shows it: its predicted class, its
    ``top_k`` most probable classes (most probable first) and, where the condition shows
    it, the address of its Grad-CAM overlay (``support_gradcam_for_reader`` checks it)."""

    predicted: SupportClass
    top: list[SupportClass]
    gradcam: str | None


def _cnn_support(
    *, enrolment: Enrolment, case: Case, condition: ConditionInfo, choices: list[Choice]
) -> CnnSupport | None:
    """The CNN's support for ``case`` in ``condition`` (None where the condition shows
    none, or its model has no prediction for the case, which no open study allows)."""
    from cases.support import support_prediction

    if not condition.shows_cnn or condition.support_model_id is None:
        return None
    prediction = support_prediction(model_id=condition.support_model_id, case_id=case.pk)
    if prediction is None:
        return None
    names = {choice.code: choice.name for choice in choices}
    rank = {choice.code: index for index, choice in enumerate(choices)}
    ranked = sorted(
        ((code, p) for code, p in prediction.probabilities.items() if code in names),
        key=lambda item: (-item[1], rank[item[0]]),
    )
    top = [SupportClass(code, names[code], float(p)) for code, p in ranked[: condition.top_k]]
    predicted = next(
        (c for c in top if c.code == prediction.choice),
        SupportClass(
            prediction.choice,
            names.get(prediction.choice, prediction.choice),
            float(prediction.probabilities.get(prediction.choice, 0.0)),
        ),
    )
    gradcam = None
    if condition.shows_gradcam and prediction.gradcam:
        gradcam = reverse(
            "cases:support_gradcam", args=[enrolment.study.slug, case.public_id, condition.code]
        )
    return CnnSupport(predicted=predicted, top=top, gradcam=gradcam)


@dataclass(frozen=True)
class CaseMetadata:
    """What a condition that shows the case's metadata shows: age, sex and body site
    (None or "" where the case has none)."""

    age: int | None
    sex: str  # the display name in the reader's language, "" where unknown
    site: str


@dataclass(frozen=True)
class CaseScreen:
    """What a reader is shown for one read, the same for the case page and the API.
    Nothing about the reference diagnosis; the CNN's output only where the read's
    condition shows it (``support``), and so in a sequential study only on the case's
    second read, once its unaided answer is stored."""

    step: Step
    case: Case | None  # None where no case opens at this step
    number: int | None  # 1-based position of ``case`` in the reader's order (its session's)
    images: dict[str, str]  # image URL (a path) by kind: those the condition shows
    prefetch: dict[str, str]  # image URL by kind of the following case: loaded ahead
    choices: list[Choice]
    ask_confidence: bool
    show_clinical_image: bool  # whether ``images`` has the clinical photo
    progress: dict[str, int | bool]
    revising: bool  # an answered case opened by its number
    previous_answer: tuple[str, int | None] | None  # (diagnosis code, confidence) if revising
    read: Read | None = None  # the read shown (its condition and session)
    conditions: int = 1  # how many conditions the reader reads each case in
    support: CnnSupport | None = None
    metadata: CaseMetadata | None = None
    # Sequential, on a case's second read: the reader's own answer of its first.
    earlier_answer: Choice | None = None
    opens_at: dt.datetime | None = None  # at step washout: when the next session opens
    # The read's condition among the reader's (1-based: a sequential study's step of the
    # case, a crossover's session), and the cases per session.
    position: int | None = None
    n_cases: int = 0


def _following(plan: list[Read], read: Read) -> Read | None:
    """The next read of another case in the same session (whose images load ahead)."""
    index = next(i for i, r in enumerate(plan) if r is read)
    return next(
        (r for r in plan[index + 1 :] if r.session == read.session and r.case_id != read.case_id),
        None,
    )


def case_screen(
    *,
    enrolment: Enrolment,
    number: int | None = None,
    language: str = "en",
    step: Step | None = None,
    with_prefetch: bool = True,
    answered: Set[tuple[int, int]] | None = None,
) -> CaseScreen:
    """The reader's next read, or (``number``) an answered case they may revise, with
    everything shown beside it. ``case`` is None where no case opens (see
    ``may_open_case``). ``step`` and ``answered`` (``answered_reads``): where the
    caller has them already. ``with_prefetch=False`` leaves ``prefetch`` empty (the API
    sends it only when asked). Two queries (the answered reads where not given; the case
    and the one after it with their images), the study's conditions where not kept, one
    more for a revised case's answer, for the unaided answer beside a sequential
    study's second read, and for the CNN's support where the condition shows it.
    Reading only: serving the read (which starts its clock) is ``case_serve``'s job."""
    if answered is None:
        answered = answered_reads(enrolment=enrolment)
    step = reader_step(enrolment=enrolment, answered=answered) if step is None else step
    study = enrolment.study
    choices = answer_choices(study=study, language=language)
    plan = reading_plan(enrolment=enrolment)
    read = None
    if may_open_case(step=step, number=number):
        if number is None:
            read = next_read(enrolment=enrolment, answered=answered, plan=plan)
        else:
            pk = case_id_for_reader(enrolment=enrolment, number=number, answered=answered)
            read = next((r for r in plan if r.case_id == pk), None) if pk is not None else None
    case, images, prefetch, previous_answer = None, {}, {}, None
    support = metadata = earlier = opens_at = None
    if read is not None:
        after = _following(plan, read) if with_prefetch else None
        # The case and the one after it with their images, in one query.
        shown = _cases_with_images(
            [read.case_id] if after is None else [read.case_id, after.case_id]
        )
        case, case_images = shown[read.case_id]
        images = _image_urls(case_images, read.condition)
        prefetch = _image_urls(shown[after.case_id][1], after.condition) if after else {}
        if number is not None:
            previous_answer = (
                case.answers.filter(enrolment=enrolment, condition_id=read.condition.pk)
                .values_list("diagnosis__code", "confidence")
                .first()
            )
        if (
            study.design == Study.Design.SEQUENTIAL
            and read.condition.position != plan[0].condition.position
        ):
            before = plan[next(i for i, r in enumerate(plan) if r is read) - 1]
            code = (
                case.answers.filter(enrolment=enrolment, condition_id=before.condition.pk)
                .values_list("diagnosis__code", flat=True)
                .first()
            )
            earlier = next((c for c in choices if c.code == code), None)
        support = _cnn_support(
            enrolment=enrolment, case=case, condition=read.condition, choices=choices
        )
        if read.condition.shows_metadata:
            metadata = CaseMetadata(
                age=case.age, sex=case.get_sex_display() if case.sex else "", site=case.site
            )
    elif step == Step.WASHOUT:
        upcoming = next_read(enrolment=enrolment, answered=answered, plan=plan)
        if upcoming is not None:
            opens_at = session_opens_at(enrolment=enrolment, read=upcoming, plan=plan)
    return CaseScreen(
        step=step,
        case=case,
        number=read.number if read is not None else None,
        images=images,
        prefetch=prefetch,
        choices=choices,
        ask_confidence=study.ask_confidence,
        show_clinical_image=CaseImage.Kind.CLINICAL in images,
        progress=reader_progress(enrolment=enrolment, answered=answered),
        revising=case is not None and number is not None,
        previous_answer=previous_answer,
        read=read,
        conditions=len({r.condition.pk for r in plan})
        if study.design == Study.Design.SEQUENTIAL
        else 1,
        support=support,
        metadata=metadata,
        earlier_answer=earlier,
        opens_at=opens_at,
        position=(
            [c.pk for c in reader_conditions(enrolment=enrolment)].index(read.condition.pk) + 1
            if read is not None
            else None
        ),
        n_cases=len(enrolment.case_order),
    )


def read_data(screen: CaseScreen, *, language: str, absolute=None) -> dict:
    """The read of ``screen`` as the API's ``case`` gives it beside the case (and the case
    page hands its script): ``condition`` (code, label in ``language``, session,
    shows_cnn), ``support``, ``metadata``, ``earlier_answer`` (plain data, None where
    not shown). ``absolute``: makes an address absolute (the API's), else kept as a path."""
    read = screen.read
    support = dataclasses.asdict(screen.support) if screen.support is not None else None
    if support is not None and support["gradcam"] is not None and absolute is not None:
        support["gradcam"] = absolute(support["gradcam"])
    return {
        "condition": {
            "code": read.condition.code,
            "label": read.condition.label_for(language),
            "session": read.session,
            "shows_cnn": read.condition.shows_cnn,
        },
        "support": support,
        "metadata": dataclasses.asdict(screen.metadata) if screen.metadata else None,
        "earlier_answer": (
            dataclasses.asdict(screen.earlier_answer) if screen.earlier_answer else None
        ),
    }


def plan_data(*, enrolment: Enrolment, reads_per_case: int, language: str) -> dict:
    """What the case page's script needs to know of the reader's conditions, in their
    order, to show the reads it is sent without a reload."""
    return {
        "conditions": [
            {
                "code": c.code,
                "label": c.label_for(language),
                "shows_cnn": c.shows_cnn,
                "shows_metadata": c.shows_metadata,
                "shows_gradcam": c.shows_gradcam,
            }
            for c in reader_conditions(enrolment=enrolment)
        ],
        "reads_per_case": reads_per_case,
    }


def support_gradcam_for_reader(*, user, slug: str, case_public_id: str, condition_code: str):
    """The Grad-CAM overlay (a stored file) of the CNN's support that ``user`` is being
    shown now, or None: only the reader's next read, only where its condition shows the
    Grad-CAM, only while the study is open. So in a sequential study it is not served
    before the case's unaided answer is stored, and never to anyone else."""
    from cases.support import support_prediction

    enrolment = enrolment_for_reader(user=user, slug=slug)
    if enrolment is None:
        return None
    answered = answered_reads(enrolment=enrolment)
    if reader_step(enrolment=enrolment, answered=answered) != Step.CASE:
        return None
    read = next_read(enrolment=enrolment, answered=answered)
    if read is None or not read.condition.shows_gradcam or read.condition.code != condition_code:
        return None
    case = Case.objects.filter(pk=read.case_id, public_id=case_public_id).first()
    if case is None or read.condition.support_model_id is None:
        return None
    prediction = support_prediction(model_id=read.condition.support_model_id, case_id=case.pk)
    return prediction.gradcam if prediction is not None and prediction.gradcam else None


def reader_feedback(*, enrolment: Enrolment, language: str = "en") -> ReaderFeedback | None:
    """The reader's own accuracy, overall and per class (their sensitivity), against the
    reference, with the CNNs' where the study shows model feedback.

    None unless the reader has finished and the study enables feedback: this is the
    only reader-facing read that touches reference diagnoses.
    """
    if not reader_has_feedback(enrolment=enrolment):
        return None
    study = enrolment.study
    answers = list(Answer.objects.filter(enrolment=enrolment).select_related("case__diagnosis"))
    order = study.choice_codes()

    def summary(of: list[Answer]) -> dict:
        return accuracy_summary(
            ((a.case.diagnosis, a.diagnosis_id == a.case.diagnosis_id) for a in of),
            order=order,
            language=language,
        )

    models = model_feedback(study=study, language=language) if study.show_model_feedback else []
    conditions = study_conditions(study=study)
    if len(conditions) == 1:
        return reader_feedback_build(reader=summary(answers), models=models)
    # Several conditions: the results of each (a case once per condition), the first's
    # also as the whole (the table beside the CNNs).
    by_condition = [
        (c.label_for(language), summary([a for a in answers if a.condition_id == c.pk]))
        for c in conditions
    ]
    return dataclasses.replace(
        reader_feedback_build(reader=by_condition[0][1], models=models),
        by_condition=[
            (label, reader_feedback_build(reader=results, models=[]))
            for label, results in by_condition
        ],
    )


def reader_progress_table(*, study: Study) -> list[dict]:
    """Per reader of ``study``, in enrolment order: code, progress, median seconds per
    case, last activity (the rows of :func:`reader_progress_rows`).

    Staff only. Medians are computed per reader from the stored server-side times.
    Last activity is the latest of an answer, an answer change, and the serving of a
    case (a reader sitting on a case is active), else consent, else enrolment.
    """
    return reader_progress_rows(
        enrolments_progress(study=study).order_by("enrolled_at", "pk"), study=study
    )


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
    answered: int  # answers given
    total: int  # answers owed: the cases times the conditions each is read in
    closed: bool
    has_feedback: bool
    cases: int = 0  # the cases of a session
    opens_at: dt.datetime | None = None  # at step washout: when the next session opens

    @property
    def reads_per_case(self) -> int:
        return self.total // self.cases if self.cases else 1

    @property
    def may_continue(self) -> bool:
        """Whether there is anything left to do in the study (never once it is closed)."""
        return not self.closed and self.step != Step.DONE


def reader_study_entries(*, user) -> list[StudyEntry]:
    """The studies ``user`` reads, for their home page, in enrolment order."""
    entries = []
    for enrolment in enrolments_for_reader(user=user).order_by("enrolled_at"):
        # A crossover's step needs its answered reads (the washout): read them once.
        answered = (
            answered_reads(enrolment=enrolment)
            if enrolment.study.design == Study.Design.CROSSOVER
            else None
        )
        step = reader_step(enrolment=enrolment, answered=answered)
        opens_at = None
        if step == Step.WASHOUT:
            upcoming = next_read(enrolment=enrolment, answered=answered)
            opens_at = session_opens_at(enrolment=enrolment, read=upcoming)
        entries.append(
            StudyEntry(
                enrolment=enrolment,
                step=step,
                answered=enrolment.n_answers,
                total=_n_reads(enrolment),
                # also a study past its closing date that the beat has not closed yet
                closed=enrolment.study.status != Study.Status.DRAFT
                and not enrolment.study.is_open(),
                has_feedback=reader_has_feedback(enrolment=enrolment),
                cases=len(enrolment.case_order),
                opens_at=opens_at,
            )
        )
    return entries


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
    flow is :class:`Step`). The first that applies: finished; in washout (a crossover
    reader between sessions, as :class:`Step` ``washout``: every case of the first
    session answered, none of the next, and the study's washout not yet over since the
    last answer of the first); in progress (at least one answer); consented (no answer
    yet); invited (enrolled, through an invitation or by an admin, but not consented
    yet)."""

    INVITED = "invited"
    CONSENTED = "consented"
    IN_PROGRESS = "in_progress"
    WASHOUT = Step.WASHOUT.value
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
    ReaderStep.WASHOUT: ("In washout (between sessions)", "Washout"),
    ReaderStep.FINISHED: ("Finished", "Finished"),
}


def _is_simulated(reader: str = "reader__") -> Coalesce:
    """Whether the reader's profile marks them simulated; False without a profile."""
    return Coalesce(
        f"{reader}reader_profile__is_simulated", Value(False), output_field=models.BooleanField()
    )


def _reader_step(*, as_rank: bool = False, washout: Washout | None = None) -> models.Case:
    """The :class:`ReaderStep` of an enrolment in SQL: its value, or with ``as_rank``
    its position among the steps, to sort by (``models.Case`` is SQL's CASE, not a
    study's case). ``washout``: the study's (:func:`study_washout`), None where it has
    none (then no reader is in washout)."""

    def then(step: ReaderStep) -> Value:
        return Value(list(ReaderStep).index(step) if as_rank else step.value)

    in_washout = []
    if washout is not None:
        in_washout = [models.When(washout.waiting(), then=then(ReaderStep.WASHOUT))]
    return models.Case(
        models.When(finished_at__isnull=False, then=then(ReaderStep.FINISHED)),
        *in_washout,
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


def enrolments_progress(*, study: Study, washout: Washout | None = None) -> QuerySet[Enrolment]:
    """The enrolments of ``study`` with ``n_answered``, ``simulated``, ``step`` (a
    :class:`ReaderStep` value) and ``last_activity`` (see :func:`_last_activity`), and
    the reader and their profile: one query for any number of readers. Staff only.
    ``washout``: the study's (:func:`study_washout`), where the caller has it."""
    washout = washout if washout is not None else study_washout(study=study)
    return (
        Enrolment.objects.filter(study=study)
        .select_related("reader__reader_profile")
        .annotate(
            n_answered=Count("answers"),
            simulated=_is_simulated(),
            step=_reader_step(washout=washout),
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
    washout = study_washout(study=study)
    rows = enrolments_progress(study=study, washout=washout).annotate(
        step_rank=_reader_step(as_rank=True, washout=washout)
    )
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
    return {
        pk: reads.median_seconds
        for pk, reads in answers_by_enrolment(enrolment_ids=enrolment_ids).items()
    }


def reader_progress_rows(
    enrolments: Iterable[Enrolment], *, study: Study | None = None
) -> list[dict]:
    """One row per enrolment of :func:`enrolments_progress` (in their order, all of
    ``study``; None: the first one's): its ``enrolment_id``, ``reader_code``,
    ``username``, ``simulated``, ``level``, ``step`` (a :class:`ReaderStep`),
    ``answered`` / ``total`` (reads: cases times the conditions each is read in),
    ``consented_at``, ``finished_at``, ``median_seconds`` (None without an answer) and
    ``last_activity``; in a study of several conditions ``by_condition`` (per
    condition in the study's order: (code, answered, cases)), and in a crossover
    ``arm`` (the reader's conditions in their order, "" before the study assigns it at
    opening) and ``place`` (a :class:`SessionPlace`: their session, or when their
    washout ends). Two queries: the enrolments and their answers (the conditions are
    the study's kept ones, :func:`study_conditions`)."""
    enrolments = list(enrolments)
    if not enrolments:
        return []
    study = study if study is not None else enrolments[0].study
    conditions = study_conditions(study=study)
    several = study.design != Study.Design.SINGLE
    crossover = study.design == Study.Design.CROSSOVER
    answers = answers_by_enrolment(enrolment_ids=[e.pk for e in enrolments])
    now = timezone.now()
    rows = []
    for enrolment in enrolments:
        profile = getattr(enrolment.reader, "reader_profile", None)
        reads = answers.get(enrolment.pk, NO_ANSWERS)
        n_cases = len(enrolment.case_order)
        row = {
            "enrolment_id": enrolment.pk,
            "reader_code": enrolment.reader_code,
            "username": enrolment.reader.get_username(),
            "simulated": enrolment.simulated,
            "level": profile.get_level_display() if profile and profile.level else "",
            "step": ReaderStep(enrolment.step),
            "answered": enrolment.n_answered,
            "total": n_cases * (len(conditions) if several else 1),
            "consented_at": enrolment.consented_at,
            "finished_at": enrolment.finished_at,
            "median_seconds": reads.median_seconds,
            "last_activity": enrolment.last_activity,
            "by_condition": [(c.code, reads.counts.get(c.pk, 0), n_cases) for c in conditions]
            if several
            else [],
            "arm": "",
            "place": None,
        }
        if crossover:
            order = crossover_order(conditions, arm=enrolment.arm)
            row["arm"] = " → ".join(c.code for c in order) if enrolment.arm is not None else ""
            row["place"] = session_place(
                order=[c.pk for c in order],
                reads=reads,
                n_cases=n_cases,
                washout_days=study.washout_days or 0,
                finished=enrolment.finished_at is not None,
                now=now,
            )
        rows.append(row)
    return rows


@dataclass(frozen=True)
class StepCounts:
    """Readers at each :class:`ReaderStep`."""

    invited: int = 0
    consented: int = 0
    in_progress: int = 0
    finished: int = 0
    washout: int = 0

    @property
    def enrolled(self) -> int:
        return self.invited + self.consented + self.in_progress + self.washout + self.finished

    def at(self, step: ReaderStep) -> int:
        return getattr(self, step.value)


@dataclass(frozen=True)
class ReadersByStep:
    real: StepCounts
    simulated: StepCounts
    # The steps the study's readers can be at: in washout only in a crossover.
    steps: tuple[ReaderStep, ...] = tuple(s for s in ReaderStep if s != ReaderStep.WASHOUT)

    def rows(self) -> list[tuple[ReaderStep, int, int]]:
        """(step, real readers, simulated readers), in the steps' order."""
        return [(s, self.real.at(s), self.simulated.at(s)) for s in self.steps]


def reader_steps(study: Study) -> tuple[ReaderStep, ...]:
    """The :class:`ReaderStep` values a reader of ``study`` can be at, in their order:
    in washout only in a crossover."""
    if study.design == Study.Design.CROSSOVER:
        return tuple(ReaderStep)
    return tuple(s for s in ReaderStep if s != ReaderStep.WASHOUT)


def readers_by_step(*, study: Study, now: dt.datetime | None = None) -> ReadersByStep:
    """The readers of ``study`` at each :class:`ReaderStep`, real and simulated ones
    apart (in washout at ``now``, the present where None). One query."""
    counts: dict[bool, dict[str, int]] = {False: {}, True: {}}
    for simulated, step, n in (
        Enrolment.objects.filter(study=study)
        .annotate(
            simulated=_is_simulated(),
            step=_reader_step(washout=study_washout(study=study, now=now)),
        )
        .values("simulated", "step")
        .annotate(n=Count("pk"))
        .values_list("simulated", "step", "n")
        .order_by()
    ):
        counts[bool(simulated)][step] = n
    return ReadersByStep(
        real=StepCounts(**counts[False]),
        simulated=StepCounts(**counts[True]),
        steps=reader_steps(study),
    )


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
    # The study's reading conditions with their answers, and in a crossover where its
    # readers are in their sessions.
    conditions: tuple[ConditionProgress, ...] = ()
    sessions: CrossoverProgress | None = None

    @property
    def several_conditions(self) -> bool:
        return len(self.conditions) > 1


def study_dashboard(*, study: Study, now: dt.datetime | None = None) -> StudyDashboard:
    """The :class:`StudyDashboard` of ``study`` at ``now`` (the present where None).
    The chart's days run to today while the study is open; the projection counts reads
    (every case in each condition where the design has several). Staff only; six
    queries (seven for a crossover), whatever the numbers of readers and answers."""
    now = now or timezone.now()
    tz = timezone.get_current_timezone()
    today = timezone.localdate(now, tz)
    readers = readers_by_step(study=study, now=now)
    conditions = condition_progress(study=study)
    n_cases = Case.objects.filter(study=study).count()
    reads_per_case = len(conditions) if study.design != Study.Design.SINGLE else 1
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
            n_cases=n_cases * reads_per_case,
            answered=answers_real,
            recent_answers=sum(d.real for d in days if window_start <= d.day <= today),
            today=today,
        ),
        invitations=InvitationUse(
            links=links["n_links"], uses=links["n_uses"], places_left=links["n_left"]
        ),
        conditions=tuple(conditions),
        sessions=crossover_progress(study=study, n_cases=n_cases, now=now)
        if study.design == Study.Design.CROSSOVER
        else None,
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


# --- reading conditions and crossover sessions, for the console (staff) --------------------


@dataclass(frozen=True)
class Washout:
    """A crossover study's washout as the console's progress reads it: its two
    conditions in the study's order (a reader of arm 1 reads them reversed), its length
    in days and the moment the progress is read at."""

    first: int
    second: int
    days: int
    now: dt.datetime

    def waiting(self) -> Q:
        """The enrolments in washout at ``now``, as a condition on Enrolment rows: every
        case of the study answered in the reader's first condition, none in the other,
        and an answer in the first within the last ``days`` days (the last one's time
        plus the washout still to come, the rule of ``session_opens_at``)."""
        since = self.now - dt.timedelta(days=self.days)
        cases = Case.objects.filter(study=OuterRef("study")).order_by().values("study")
        n_cases = models.Subquery(cases.annotate(n=Count("pk")).values("n")[:1])

        def waits(first: int, then: int) -> Q:
            answers = Answer.objects.filter(enrolment=OuterRef("pk")).order_by()
            in_first = answers.filter(condition_id=first).values("enrolment")
            n_first = models.Subquery(in_first.annotate(n=Count("pk")).values("n")[:1])
            return (
                Q(models.lookups.GreaterThanOrEqual(n_first, n_cases))
                & Q(Exists(answers.filter(condition_id=first, answered_at__gt=since)))
                & ~Q(Exists(answers.filter(condition_id=then)))
            )

        arm_1 = Q(arm=1)
        return (arm_1 & waits(self.second, self.first)) | (~arm_1 & waits(self.first, self.second))


def study_washout(*, study: Study, now: dt.datetime | None = None) -> Washout | None:
    """The :class:`Washout` of a crossover ``study`` of two conditions at ``now`` (the
    present where None); None for any other study (no reader of it is in washout)."""
    if study.design != Study.Design.CROSSOVER or not study.washout_days:
        return None
    conditions = study_conditions(study=study)
    if len(conditions) != 2:
        return None
    return Washout(
        first=conditions[0].pk,
        second=conditions[1].pk,
        days=study.washout_days,
        now=now or timezone.now(),
    )


@dataclass(frozen=True)
class EnrolmentAnswers:
    """A reader's answers summed up: per condition (its key) how many and when the last
    one was given, and the median server-measured seconds over all (None without one)."""

    counts: dict[int, int]
    last: dict[int, dt.datetime]
    median_seconds: float | None


NO_ANSWERS = EnrolmentAnswers(counts={}, last={}, median_seconds=None)


def answers_by_enrolment(*, enrolment_ids: Iterable[int]) -> dict[int, EnrolmentAnswers]:
    """The :class:`EnrolmentAnswers` of each of ``enrolment_ids`` that has an answer.
    One query over their answers, summed up here (SQLite has no median aggregate), so
    callers pass a page of readers, not a whole study."""
    seconds: dict[int, list[float]] = {}
    counts: dict[int, dict[int, int]] = {}
    last: dict[int, dict[int, dt.datetime]] = {}
    for enrolment_id, condition_id, secs, at in (
        Answer.objects.filter(enrolment_id__in=list(enrolment_ids))
        .order_by()
        .values_list("enrolment_id", "condition_id", "seconds", "answered_at")
    ):
        seconds.setdefault(enrolment_id, []).append(secs)
        by_condition = counts.setdefault(enrolment_id, {})
        by_condition[condition_id] = by_condition.get(condition_id, 0) + 1
        latest = last.setdefault(enrolment_id, {})
        if condition_id not in latest or at > latest[condition_id]:
            latest[condition_id] = at
    return {
        pk: EnrolmentAnswers(
            counts=counts[pk], last=last[pk], median_seconds=statistics.median(times)
        )
        for pk, times in seconds.items()
    }


def crossover_order(
    conditions: tuple[ConditionInfo, ...], *, arm: int | None
) -> tuple[ConditionInfo, ...]:
    """A crossover reader's conditions in the order they read them (the rule of
    ``reader_conditions``): the study's order, reversed for arm 1."""
    return tuple(reversed(conditions)) if arm == 1 else conditions


@dataclass(frozen=True)
class SessionPlace:
    """Where a crossover reader is in their sessions: ``stage`` "not_started" (no answer
    yet), "session" (reading session ``session``), "washout" (waiting for session
    ``session``, which opens at ``opens_at``) or "done"."""

    stage: str
    session: int = 0
    opens_at: dt.datetime | None = None

    @property
    def key(self) -> str:
        return f"{self.stage}-{self.session}" if self.session else self.stage

    @property
    def label(self) -> str:
        return {
            "not_started": "Not started",
            "session": f"In session {self.session}",
            "washout": f"In washout before session {self.session}",
            "done": "Done",
        }[self.stage]

    @property
    def short_label(self) -> str:
        """The label for a table cell (the column says it is a session)."""
        if self.stage == "washout":
            return "Washout"
        return self.label.removeprefix("In ").capitalize()


def session_place(
    *,
    order: list[int],
    reads: EnrolmentAnswers,
    n_cases: int,
    washout_days: int,
    finished: bool,
    now: dt.datetime,
) -> SessionPlace:
    """The :class:`SessionPlace` of a crossover reader whose conditions (their keys)
    come in ``order``, from their answers at ``now``: done once finished or with every
    session answered; not started before their first answer; otherwise the first
    session with a case unanswered, or the washout before it while it has no answer
    yet and ``washout_days`` have not passed since the last answer of the session
    before (``session_opens_at``'s rule)."""
    if finished:
        return SessionPlace("done")
    if not any(reads.counts.values()):
        return SessionPlace("not_started")
    for index, pk in enumerate(order):
        answered = reads.counts.get(pk, 0)
        if answered >= n_cases:
            continue
        before = reads.last.get(order[index - 1]) if index else None
        if answered == 0 and before is not None:
            opens = before + dt.timedelta(days=washout_days)
            if opens > now:
                return SessionPlace("washout", index + 1, opens)
        return SessionPlace("session", index + 1)
    return SessionPlace("done")


@dataclass(frozen=True)
class SessionCount:
    place: SessionPlace  # the place counted (its key and label; no opening time)
    real: int
    simulated: int


@dataclass(frozen=True)
class CrossoverProgress:
    """Where a crossover study's readers are in their sessions: how many at each
    :class:`SessionPlace` (in the order a reader passes them) and in each arm (the
    conditions in the order its readers read them; "" for readers enrolled while the
    study was a draft, who get their arm as it opens), real and simulated apart."""

    washout_days: int
    places: tuple[SessionCount, ...]
    arms: tuple[tuple[str, int, int], ...]


def crossover_progress(
    *, study: Study, n_cases: int, now: dt.datetime | None = None
) -> CrossoverProgress:
    """The :class:`CrossoverProgress` of ``study`` (of ``n_cases`` cases) at ``now``
    (the present where None). One query: each enrolment with its answers counted and
    the last one's time per condition; the places are found here (``session_place``)."""
    now = now or timezone.now()
    conditions = study_conditions(study=study)
    per_condition = {}
    for index, condition in enumerate(conditions):
        in_it = Q(answers__condition_id=condition.pk)
        per_condition[f"n_{index}"] = Count("answers", filter=in_it)
        per_condition[f"last_{index}"] = Max("answers__answered_at", filter=in_it)
    rows = (
        Enrolment.objects.filter(study=study)
        .annotate(simulated=_is_simulated(), **per_condition)
        .order_by()
        .values("arm", "finished_at", "simulated", *per_condition)
    )
    keys = ["not_started"]
    for session in range(1, len(conditions) + 1):
        keys += [f"washout-{session}", f"session-{session}"] if session > 1 else ["session-1"]
    keys.append("done")
    places = {key: [0, 0] for key in keys}
    arms: dict[int | None, list[int]] = {0: [0, 0], 1: [0, 0]}
    for row in rows:
        reads = EnrolmentAnswers(
            counts={c.pk: row[f"n_{i}"] for i, c in enumerate(conditions)},
            last={c.pk: row[f"last_{i}"] for i, c in enumerate(conditions) if row[f"last_{i}"]},
            median_seconds=None,
        )
        order = crossover_order(conditions, arm=row["arm"])
        place = session_place(
            order=[c.pk for c in order],
            reads=reads,
            n_cases=n_cases,
            washout_days=study.washout_days or 0,
            finished=row["finished_at"] is not None,
            now=now,
        )
        places[place.key][1 if row["simulated"] else 0] += 1
        arms.setdefault(row["arm"], [0, 0])[1 if row["simulated"] else 0] += 1

    def place_of(key: str) -> SessionPlace:
        stage, _, session = key.partition("-")
        return SessionPlace(stage, int(session or 0))

    def arm_name(arm: int | None) -> str:
        return (
            "" if arm is None else " → ".join(c.code for c in crossover_order(conditions, arm=arm))
        )

    return CrossoverProgress(
        washout_days=study.washout_days or 0,
        places=tuple(
            SessionCount(place=place_of(key), real=real, simulated=simulated)
            for key, (real, simulated) in places.items()
        ),
        arms=tuple((arm_name(arm), real, sim) for arm, (real, sim) in arms.items()),
    )


@dataclass(frozen=True)
class ConditionProgress:
    """A reading condition as the console shows it: what the reader sees in it, the CNN
    whose support it shows (``model`` "" where it names none; ``inference.
    ConditionSupport``) and how many answers were given in it, by real and simulated
    readers."""

    pk: int
    code: str
    position: int
    label: str
    shows: tuple[str, ...]
    shows_cnn: bool
    shows_gradcam: bool
    model: str
    model_trained: bool
    top_k: int | None
    answers_real: int
    answers_simulated: int

    @property
    def answers(self) -> int:
        return self.answers_real + self.answers_simulated


def condition_progress(*, study: Study) -> list[ConditionProgress]:
    """The :class:`ConditionProgress` of each of ``study``'s conditions, in their
    order. One query."""
    simulated = Q(answers__enrolment__reader__reader_profile__is_simulated=True)
    rows = (
        study.conditions.select_related("cnn_support__model")
        .annotate(n_answers=Count("answers"), n_simulated=Count("answers", filter=simulated))
        .order_by("position")
    )
    found = []
    for condition in rows:
        support = getattr(condition, "cnn_support", None)
        shows = [
            text
            for shown, text in (
                (condition.shows_dermoscopic, "the dermoscopic image"),
                (condition.shows_clinical, "the clinical photo"),
                (condition.shows_metadata, "age, sex and site"),
                (
                    condition.shows_cnn,
                    f"the CNN's top {support.top_k if support else 'k'} probabilities "
                    "and its class",
                ),
                (condition.shows_gradcam, "its Grad-CAM"),
            )
            if shown
        ]
        found.append(
            ConditionProgress(
                pk=condition.pk,
                code=condition.code,
                position=condition.position,
                label=condition.label,
                shows=tuple(shows),
                shows_cnn=condition.shows_cnn,
                shows_gradcam=condition.shows_gradcam,
                model=support.model.name if support else "",
                model_trained=bool(support and support.model.trained),
                top_k=support.top_k if support else None,
                answers_real=condition.n_answers - condition.n_simulated,
                answers_simulated=condition.n_simulated,
            )
        )
    return found
