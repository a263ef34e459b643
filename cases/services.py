"""Every write to studies, cases and the reader side. Keyword-only, transactional."""

from __future__ import annotations

import random
import secrets
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.db import IntegrityError, transaction
from django.db.models import F, QuerySet
from django.utils import timezone
from django.utils.translation import gettext as _

from audit.models import AuditEvent
from audit.services import audit_log
from cases import selectors
from cases.models import (
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
from readerstudy.errors import ServiceError


class StudyError(ValueError):
    """A study cannot be created or changed as asked; the message says why."""


@transaction.atomic
def study_create(
    *,
    slug: str,
    title: str,
    choices: Sequence[str],
    description: str = "",
    conditions: Sequence[dict] | None = None,
    **options: object,
) -> Study:
    """Create a draft study with ``choices`` (diagnosis codes, in display order) and
    its reading ``conditions`` (each the fields of a ReadingCondition; None: the default
    condition only, cases.signals)."""
    known = {d.code.lower(): d for d in Diagnosis.objects.all()}
    unknown = [code for code in choices if code.lower() not in known]
    if unknown:
        raise StudyError(f"unknown diagnosis code(s): {', '.join(unknown)}")
    diagnoses = [known[code.lower()] for code in choices]
    if len({d.pk for d in diagnoses}) != len(diagnoses):
        raise StudyError("the choices repeat a diagnosis")
    if len(diagnoses) < 2:
        raise StudyError("a study needs at least two choices")
    study = Study(slug=slug, title=title, description=description, **options)
    study.full_clean(exclude=["choices"])
    study.save()
    StudyChoice.objects.bulk_create(
        StudyChoice(study=study, diagnosis=diagnosis, position=position)
        for position, diagnosis in enumerate(diagnoses, start=1)
    )
    if conditions:
        study.conditions.all().delete()  # the default one, which nothing uses yet
        for fields in conditions:
            condition = ReadingCondition(study=study, **fields)
            condition.full_clean()
            condition.save()
    return study


def case_order_for(*, study: Study, seed: int) -> list[int]:
    """The case primary keys in the order a reader with ``seed`` sees them.

    Study order when the study does not shuffle; otherwise a permutation drawn from
    ``random.Random(seed)``, so it can be reproduced from the stored seed alone.
    """
    case_ids = list(study.cases.order_by("position").values_list("pk", flat=True))
    if study.shuffle_cases:
        random.Random(seed).shuffle(case_ids)
    return case_ids


@transaction.atomic
def enrolment_create(
    *,
    study: Study,
    reader: AbstractBaseUser,
    seed: int | None = None,
    consent: bool = False,
    actor: AbstractBaseUser | None = None,
) -> Enrolment:
    """Enrol ``reader`` in ``study``, fixing their case order; idempotent per reader."""
    existing = Enrolment.objects.filter(study=study, reader=reader).first()
    if existing is not None:
        return existing
    seed = secrets.randbits(62) if seed is None else seed
    crossover = {}
    if study.design == Study.Design.CROSSOVER:
        crossover = _crossover_assignment(study=study, seed=seed)
    enrolment = Enrolment.objects.create(
        study=study,
        reader=reader,
        order_seed=seed,
        case_order=case_order_for(study=study, seed=seed),
        consent_version=study.consent_version if consent else "",
        consented_at=timezone.now() if consent else None,
        **crossover,
    )
    after = {"reader_code": enrolment.reader_code, "order_seed": seed, "consented": consent}
    if crossover:
        after["arm"] = enrolment.arm
    audit_log(
        action=AuditEvent.Action.ENROLMENT_CREATE,
        actor=actor,
        study=study.slug,
        obj=enrolment,
        after=after,
    )
    return enrolment


def second_session_seed(seed: int) -> int:
    """The seed of a crossover reader's second case order, drawn from their order seed
    (so both orders come from the one stored seed, and differ)."""
    return random.Random(f"{seed}:session 2").getrandbits(62)


def crossover_arm(*, arm_seed: int, index: int) -> int:
    """The arm of a crossover study's ``index``-th reader (0-based, in enrolment order):
    permuted blocks of two drawn from the study's ``arm_seed``, so that the two arms
    never differ by more than one reader and the assignment can be reproduced (Altman &
    Bland 1999, "How to randomise", BMJ 319:703)."""
    block = [0, 1]
    random.Random(f"{arm_seed}:block {index // 2}").shuffle(block)
    return block[index % 2]


def _crossover_assignment(*, study: Study, seed: int) -> dict:
    """A new crossover reader's arm and second-session order. The study's row is locked
    so that two readers enrolling at once take consecutive places in the blocks."""
    locked = Study.objects.select_for_update().only("arm_seed").get(pk=study.pk)
    index = Enrolment.objects.filter(study=study, arm__isnull=False).count()
    return {
        "arm": crossover_arm(arm_seed=locked.arm_seed, index=index),
        "second_case_order": case_order_for(study=study, seed=second_session_seed(seed)),
    }


def _crossover_arms_assign(*, study: Study) -> int:
    """Give the enrolments of a crossover study that have no arm yet (enrolled while it
    was a draft, or of another design) their arm and second-session order, in enrolment
    order. Returns how many."""
    pending = list(
        Enrolment.objects.filter(study=study, arm__isnull=True).order_by("enrolled_at", "pk")
    )
    for enrolment in pending:
        assignment = _crossover_assignment(study=study, seed=enrolment.order_seed)
        Enrolment.objects.filter(pk=enrolment.pk).update(**assignment)
    return len(pending)


# --- invitations and registration ------------------------------------------------------


class InvitationInvalid(ValueError):
    """The invitation cannot be used; the message is safe to show to the visitor."""


INVITATION_MAX_USES = 100_000  # a group link for a whole society's congress, at most


def invitations_create(
    *,
    study: Study,
    count: int,
    max_uses: int = 1,
    expires_at=None,
    label: str = "",
    created_by: AbstractBaseUser | None = None,
) -> list[Invitation]:
    """Create ``count`` invitations to ``study`` at once."""
    if not 1 <= count <= 5000:
        raise StudyError("create between 1 and 5000 invitations at a time")
    if not 1 <= max_uses <= INVITATION_MAX_USES:
        raise StudyError(f"an invitation allows between 1 and {INVITATION_MAX_USES} uses")
    with transaction.atomic():
        audit_log(
            action=AuditEvent.Action.INVITATIONS_CREATE,
            actor=created_by,
            study=study.slug,
            after={"count": count, "max_uses": max_uses, "expires_at": expires_at, "label": label},
        )
        return Invitation.objects.bulk_create(
            Invitation(
                study=study,
                max_uses=max_uses,
                expires_at=expires_at,
                label=label,
                created_by=created_by,
            )
            for _ in range(count)
        )


def _usable_invitation(token: str) -> Invitation:
    """The invitation for ``token``, locked for update; raises ``InvitationInvalid``."""
    invitation = (
        Invitation.objects.select_for_update().select_related("study").filter(token=token).first()
    )
    if invitation is None or invitation.revoked:
        raise InvitationInvalid(_("This invitation link is not valid."))
    if invitation.expires_at is not None and invitation.expires_at <= timezone.now():
        raise InvitationInvalid(_("This invitation link has expired."))
    if invitation.uses >= invitation.max_uses:
        raise InvitationInvalid(_("This invitation link has already been used."))
    if not invitation.study.is_open():
        raise InvitationInvalid(_("This study is not open for new readers."))
    return invitation


# --- a study's lifecycle: draft -> open -> closed -----------------------------------------


def study_open_refusals(*, study: Study) -> list[str]:
    """Why ``study`` cannot open now (empty: it can): it must be a draft with choices,
    cases that all have a dermoscopic image, a consent text, and no closing date in
    the past."""
    reasons = []
    if study.status != Study.Status.DRAFT:
        reasons.append(f"it is {study.get_status_display().lower()}, not a draft")
    if not study.study_choices.exists():
        reasons.append("it has no choices")
    cases = study.cases.count()
    if not cases:
        reasons.append("it has no cases: import them first")
    else:
        without = study.cases.exclude(images__kind=CaseImage.Kind.DERMOSCOPIC).count()
        if without:
            reasons.append(f"{without} case(s) have no dermoscopic image")
    if not (study.consent_text or study.consent_text_zh):
        reasons.append("it has no consent text")
    if study.closes_at is not None and study.closes_at <= timezone.now():
        reasons.append("its closing date has passed")
    reasons += study_design_refusals(study=study)
    for check in _open_checks:
        reasons += check(study)
    return reasons


# Checks of other apps before a study opens (inference: a condition's CNN support is
# ready); each gives the reasons it refuses, as study_open_refusals does.
_open_checks: list[Callable[[Study], list[str]]] = []


def register_open_check(check: Callable[[Study], list[str]]) -> Callable[[Study], list[str]]:
    if check not in _open_checks:
        _open_checks.append(check)
    return check


def study_design_refusals(*, study: Study) -> list[str]:
    """Why ``study``'s reading conditions do not fit its design (empty: they fit). One
    condition: today's studies. Sequential: two, the unaided one first (no CNN
    support), then one with the CNN's support. Crossover: two conditions and a washout
    of at least a day. A study of several conditions takes no answer changes (an
    unaided answer is final once stored, and a session's answers once it ends). Cases
    must have the images a condition shows alone."""
    conditions = list(study.conditions.order_by("position"))
    reasons = []
    design = study.design
    if not conditions:
        return ["it has no reading condition"]
    if design == Study.Design.SINGLE and len(conditions) != 1:
        reasons.append(f"its design is one condition, but it has {len(conditions)}")
    if design == Study.Design.SEQUENTIAL and (
        len(conditions) != 2 or conditions[0].shows_cnn or not conditions[1].shows_cnn
    ):
        reasons.append(
            "a sequential design needs two conditions: first unaided (no CNN support), "
            "then one that shows the CNN's support"
        )
    if design == Study.Design.CROSSOVER and (len(conditions) != 2 or not study.washout_days):
        reasons.append(
            "a crossover needs two conditions (read as A then B or B then A) and a washout "
            "of at least one day"
        )
    if design != Study.Design.SINGLE and study.allow_answer_changes:
        reasons.append(
            "a study of several reading conditions takes no answer changes: turn off "
            "“allow answer changes” (an unaided answer is final once the CNN's support is "
            "shown, and a session's answers once it ends)"
        )
    if design == Study.Design.SINGLE and len(conditions) == 1:
        first = conditions[0]
        if first.shows_clinical != study.show_clinical_image:
            reasons.append(
                f"condition {first.code!r} "
                f"{'shows' if first.shows_clinical else 'hides'} the clinical photo but the "
                f"study's “show clinical image” is {'on' if study.show_clinical_image else 'off'}"
                ": make them agree"
            )
    if any(not c.shows_dermoscopic for c in conditions):
        without = study.cases.exclude(images__kind=CaseImage.Kind.CLINICAL).count()
        if without:
            codes = ", ".join(repr(c.code) for c in conditions if not c.shows_dermoscopic)
            reasons.append(
                f"condition {codes} shows only the clinical photo, but {without} case(s) have none"
            )
    return reasons


def _study_status_change(
    *,
    study: Study,
    status: str,
    refusal: Callable[[Study], str | None],
    action: str,
    actor: AbstractBaseUser | None,
    after: Callable[[Study], dict],
) -> Study:
    """Move ``study`` to ``status`` under its row lock, audited in the same transaction.
    ``refusal`` (of the locked row) says why it may not (``StudyError``), None if it
    may; ``after`` adds to the audit event's *after* beside the status."""
    with transaction.atomic():
        study = Study.objects.select_for_update().get(pk=study.pk)
        reason = refusal(study)
        if reason:
            raise StudyError(reason)
        before = study.status
        study.status = status
        study.save(update_fields=["status", "updated_at"])
        audit_log(
            action=action,
            actor=actor,
            study=study.slug,
            obj=study,
            before={"status": before},
            after={"status": status, **after(study)},
        )
    return study


def study_open(*, study: Study, actor: AbstractBaseUser) -> Study:
    """Open a draft study to readers (its cases and choices are fixed from then on),
    audited. ``StudyError`` naming every reason when it cannot open."""

    def refusal(locked: Study) -> str | None:
        reasons = study_open_refusals(study=locked)
        return f"{locked.title} cannot open: " + "; ".join(reasons) if reasons else None

    def opened(locked: Study) -> dict:
        after = {"closes_at": locked.closes_at}
        if locked.design == Study.Design.CROSSOVER:
            # Readers enrolled while it was a draft get their arms now, in their order.
            after["arms_assigned"] = _crossover_arms_assign(study=locked)
        return after

    return _study_status_change(
        study=study,
        status=Study.Status.OPEN,
        refusal=refusal,
        action=AuditEvent.Action.STUDY_OPEN,
        actor=actor,
        after=opened,
    )


def study_close(*, study: Study, actor: AbstractBaseUser | None, reason: str = "") -> Study:
    """Close an open study: no new reader, no answer from now on; what was answered
    stays, and finished readers keep their results. Audited (``actor`` None: the
    closing date). ``StudyError`` unless the study is open."""

    def refusal(locked: Study) -> str | None:
        if locked.status == Study.Status.OPEN:
            return None
        return f"{locked.title} is {locked.get_status_display().lower()}, not open"

    return _study_status_change(
        study=study,
        status=Study.Status.CLOSED,
        refusal=refusal,
        action=AuditEvent.Action.STUDY_CLOSE,
        actor=actor,
        after=lambda locked: {"reason": reason or "closed by an admin"},
    )


def study_closing_date_set(*, study: Study, closes_at, actor: AbstractBaseUser) -> Study:
    """Set (or, with None, clear) the date after which ``study`` closes itself; not for a
    closed study, nor in the past. Audited as a change of the study."""
    with transaction.atomic():
        study = Study.objects.select_for_update().get(pk=study.pk)
        if study.status == Study.Status.CLOSED or (
            study.status == Study.Status.OPEN and not study.is_open()
        ):
            # past its closing date, readers see it closed: a new date would reopen it
            raise StudyError(f"{study.title} is closed already")
        if closes_at is not None and closes_at <= timezone.now():
            raise StudyError("the closing date must be in the future")
        before = study.closes_at
        study.closes_at = closes_at
        study.save(update_fields=["closes_at", "updated_at"])
        audit_log(
            action=AuditEvent.Action.STUDY_CLOSING_DATE,
            actor=actor,
            study=study.slug,
            obj=study,
            before={"closes_at": before},
            after={"closes_at": closes_at},
        )
    return study


def study_admins_audit(*, study: Study, before: set[int], actor: AbstractBaseUser) -> None:
    """Audit who became, and who stopped being, an admin of ``study`` (the admin's study
    form saves the list; ``before``: the admins' keys before it did)."""
    after = set(study.admins.values_list("pk", flat=True))
    names = dict(
        get_user_model().objects.filter(pk__in=before | after).values_list("pk", "username")
    )
    for action, pks in (
        (AuditEvent.Action.STUDY_ADMIN_ADD, after - before),
        (AuditEvent.Action.STUDY_ADMIN_REMOVE, before - after),
    ):
        for pk in sorted(pks):
            audit_log(
                action=action,
                actor=actor,
                study=study.slug,
                obj=study,
                after={"admin": names.get(pk, str(pk))},
            )


def studies_close_due(*, now=None) -> list[str]:
    """Close every open study whose closing date has passed (Celery beat runs this each
    minute; readers see such a study as closed already, ``Study.is_open``). Idempotent.
    The slugs closed now."""
    now = now or timezone.now()
    closed = []
    due = Study.objects.filter(status=Study.Status.OPEN, closes_at__lte=now)
    for pk in due.values_list("pk", flat=True):
        with transaction.atomic():
            # checked again under the lock: an admin may have closed it or moved the date
            study = Study.objects.select_for_update().get(pk=pk)
            if study.status != Study.Status.OPEN or not (
                study.closes_at and study.closes_at <= now
            ):
                continue
            reason = f"closing date {study.closes_at:%Y-%m-%d %H:%M %Z}"
            study_close(study=study, actor=None, reason=reason)
        closed.append(study.slug)
    return closed


def invitations_revoke(*, study: Study, pks: Iterable[int], actor: AbstractBaseUser) -> int:
    """Revoke the invitations ``pks`` of ``study`` (their links stop working; readers
    who joined through them stay), in one transaction with its audit event; those
    already revoked are left as they are. The number revoked now. ``StudyError`` when a
    key is not an invitation of ``study``."""
    pks = sorted(set(pks))
    with transaction.atomic():
        found = Invitation.objects.select_for_update().filter(study=study, pk__in=pks)
        if found.count() != len(pks):
            raise StudyError("some of those invitations are not this study's")
        revoking = list(found.filter(revoked=False).values_list("pk", flat=True))
        if not revoking:
            return 0
        Invitation.objects.filter(pk__in=revoking).update(revoked=True)
        audit_log(
            action=AuditEvent.Action.INVITATIONS_REVOKE,
            actor=actor,
            study=study.slug,
            after={"invitations": revoking},
        )
    return len(revoking)


def invitation_check(*, token: str) -> Invitation:
    """Validate an invitation without using it up."""
    with transaction.atomic():
        return _usable_invitation(token)


@transaction.atomic
def invitation_accept(*, token: str, user: AbstractBaseUser) -> Enrolment:
    """Enrol ``user`` through an invitation. Someone already enrolled in its study gets
    their enrolment back and the invitation is not used up."""
    probe = Invitation.objects.select_related("study").filter(token=token).first()
    if probe is not None:
        existing = Enrolment.objects.filter(study=probe.study, reader=user).first()
        if existing is not None:
            return existing
    invitation = _usable_invitation(token)
    Invitation.objects.filter(pk=invitation.pk).update(uses=F("uses") + 1)
    enrolment = enrolment_create(study=invitation.study, reader=user, actor=user)
    Enrolment.objects.filter(pk=enrolment.pk).update(invitation=invitation)
    enrolment.invitation = invitation
    return enrolment


@transaction.atomic
def reader_register(
    *, token: str, username: str, email: str, password: str
) -> tuple[AbstractBaseUser, Enrolment]:
    """Create a reader account through an invitation and enrol it; all or nothing."""
    _usable_invitation(token)
    User = get_user_model()
    user = User.objects.create_user(username=username, email=email, password=password)
    ReaderProfile.objects.create(user=user)
    return user, invitation_accept(token=token, user=user)


@transaction.atomic
def consent_give(*, enrolment: Enrolment) -> Enrolment:
    """Record consent to the study's current consent text (its version and the time)."""
    enrolment = (
        Enrolment.objects.select_for_update().select_related("study", "reader").get(pk=enrolment.pk)
    )
    # A consent to an earlier version is replaced; the audit trail keeps it.
    before = {
        "consent_version": enrolment.consent_version,
        "consented_at": enrolment.consented_at,
    }
    enrolment.consent_version = enrolment.study.consent_version
    enrolment.consented_at = timezone.now()
    enrolment.save(update_fields=["consent_version", "consented_at"])
    audit_log(
        action=AuditEvent.Action.CONSENT_GIVE,
        actor=enrolment.reader,
        study=enrolment.study.slug,
        obj=enrolment,
        before=before if before["consented_at"] is not None else None,
        after={
            "consent_version": enrolment.consent_version,
            "consented_at": enrolment.consented_at,
        },
    )
    return enrolment


@transaction.atomic
def profile_save(*, user: AbstractBaseUser, **fields: object) -> ReaderProfile:
    """Create or update the reader's profile with ``fields``."""
    profile, _created = ReaderProfile.objects.get_or_create(user=user)
    before = {name: getattr(profile, name) for name in fields}
    for name, value in fields.items():
        setattr(profile, name, value)
    profile.full_clean(exclude=["user"])
    profile.save()
    audit_log(
        action=AuditEvent.Action.PROFILE_SAVE,
        actor=user,
        obj=profile,
        before=before,
        after=dict(fields),
    )
    return profile


# --- the questionnaire -----------------------------------------------------------------


class AnswerRejected(ServiceError):
    """A submission that cannot be accepted. ``status`` is the HTTP status to answer with
    and ``code`` a stable machine-readable reason."""


def answer_fields_check(*, sent: Iterable[str], allowed: Iterable[str]) -> None:
    """Refuse an answer that carries fields other than ``allowed`` (a forged ``reader``
    or ``enrolment``): the reader is always the logged-in user, so such a field is an
    error, not something to ignore. Raises ``AnswerRejected`` (400) naming them."""
    unexpected = sorted(set(sent) - set(allowed))
    if unexpected:
        raise AnswerRejected(
            _(
                "Unexpected field(s): %(fields)s. An answer is always recorded for the "
                "logged-in reader."
            )
            % {"fields": ", ".join(unexpected)},
            code="unexpected_field",
            status=400,
            field=unexpected[0],
        )


@dataclass(frozen=True)
class SubmitResult:
    """The stored answer; whether this call created or changed it, and finished the
    study; the enrolment as read and written under the lock, and its answered cases
    (``selectors.answered_case_ids``) afterwards, for the next screen."""

    answer: Answer
    created: bool
    changed: bool
    finished: bool
    enrolment: Enrolment
    answered: frozenset[int]


def answer_choice_check(*, study: Study, diagnosis_code: str) -> Diagnosis:
    """The study's diagnosis for ``diagnosis_code``; ``AnswerRejected`` (400) for a code
    that is not one of the study's choices. With ``confidence_check``, the one check of
    an answer's values: the answer form and ``answer_submit`` both call them."""
    choices = {d.code: d for d in selectors.study_diagnoses(study=study)}
    diagnosis = choices.get(diagnosis_code)
    if diagnosis is None:
        raise AnswerRejected(
            _("%(code)s is not one of this study's choices.") % {"code": diagnosis_code},
            code="invalid_choice",
            status=400,
            field="answer",
        )
    return diagnosis


def confidence_check(*, study: Study, confidence: int | None) -> None:
    """``AnswerRejected`` (400) for a missing confidence where the study asks for one,
    or a confidence outside 1 to 5."""
    if study.ask_confidence and confidence is None:
        raise AnswerRejected(
            _("Please give your confidence (1 to 5)."),
            code="confidence_required",
            status=400,
            field="confidence",
        )
    if confidence is not None and not 1 <= confidence <= 5:
        raise AnswerRejected(
            _("Confidence must be between 1 and 5."),
            code="invalid_confidence",
            status=400,
            field="confidence",
        )


def _refusal_at(*, step: selectors.Step, enrolment: Enrolment) -> AnswerRejected | None:
    """Why no answer is taken at ``step`` (None at ``case``, ``review`` and ``done``,
    where the answered case decides; a crossover's washout takes none)."""
    if step == selectors.Step.CONSENT:
        return AnswerRejected(_("Please give your consent first."), code="consent_required")
    if step == selectors.Step.PROFILE:
        missing = selectors.missing_profile_fields(enrolment=enrolment)
        return AnswerRejected(
            _("Please complete your profile first (missing: %(fields)s).")
            % {"fields": ", ".join(missing)},
            code="profile_required",
        )
    if step == selectors.Step.CLOSED:
        return AnswerRejected(_("This study is closed for answers."), code="study_closed")
    if step == selectors.Step.WASHOUT:
        return AnswerRejected(
            _("Your next session has not opened yet: the study's washout is still running."),
            code="washout",
        )
    return None


def case_serve(*, enrolment: Enrolment, case: Case, condition_id: int | None = None) -> None:
    """Remember when ``case`` was first shown (in the reading condition
    ``condition_id``), so the answer's time is measured by the server. Reloading the
    page keeps the first time."""
    if (
        enrolment.served_case_id == case.pk
        and enrolment.served_condition_id == condition_id
        and enrolment.served_at is not None
    ):
        return
    now = timezone.now()
    Enrolment.objects.filter(pk=enrolment.pk).update(
        served_case=case, served_condition_id=condition_id, served_at=now
    )
    enrolment.served_case, enrolment.served_condition_id = case, condition_id
    enrolment.served_at = now


def _seconds_on_case(enrolment: Enrolment) -> float:
    """Seconds from serving the case to now, capped at READERSTUDY_MAX_SECONDS_PER_CASE
    (a reader who leaves the page open counts as that many seconds, no more)."""
    cap = float(settings.READERSTUDY_MAX_SECONDS_PER_CASE)
    elapsed = (timezone.now() - enrolment.served_at).total_seconds()
    return round(min(max(elapsed, 0.0), cap), 3)


def answer_submit(
    *,
    enrolment: Enrolment | None = None,
    reader: AbstractBaseUser | None = None,
    study_slug: str | None = None,
    case_public_id: str,
    diagnosis_code: str,
    confidence: int | None = None,
    condition_code: str | None = None,
    revise: bool = True,
    serve_next: bool = False,
) -> SubmitResult:
    """Record the reader's answer for a case (in the reading condition
    ``condition_code``, which a study of several conditions requires: the read the
    reader's screen showed, so that an answer from a stale tab is never taken for
    another read).

    Refused where the reader's step (``selectors.reader_step``, the same state the pages
    and the API follow) takes no answer: consent, profile, closed. Only the next
    unanswered case of the reader's own order is accepted. Sending the
    same answer again (a double click, a second tab) returns the stored answer. A
    different answer to an answered case is a change: refused unless the study allows
    changes, in which case the previous value is appended to the history first.

    ``revise=False`` (the case page answering its next case): an answered case is never
    changed; a different answer is refused with ``answered_elsewhere`` (409), since the
    case was answered in another tab or on another device, and the stored answer stands.
    ``serve_next`` (the API's ``next``): the write that stores the answer also serves
    the case after it, starting its clock (``case_serve``).

    The enrolment: ``enrolment``, or where None the ``reader``'s in the study
    ``study_slug`` (``selectors.reader_enrolments``), found as it is locked, in one
    statement; ``Enrolment.DoesNotExist`` where there is none.
    """
    submission = {
        "found": (
            Enrolment.objects.filter(pk=enrolment.pk)
            if enrolment is not None
            else selectors.reader_enrolments(user=reader, slug=study_slug)
        ),
        "case_public_id": case_public_id,
        "diagnosis_code": diagnosis_code,
        "confidence": confidence,
        "condition_code": condition_code,
        "revise": revise,
        "serve_next": serve_next,
    }
    try:
        return _answer_submit(**submission)
    except IntegrityError:
        # One answer per case (the database's constraint): under the row lock only a
        # writer that bypasses this service can store it first. The transaction was
        # rolled back whole; once more, the stored answer is found and decides.
        return _answer_submit(**submission)


def _read_condition(
    *, enrolment: Enrolment, condition_code: str | None
) -> selectors.ConditionInfo | None:
    """The condition an answer is for: the one named (``AnswerRejected`` 400 for a code
    that is not one of the study's); where none is named, the study's only one, or None
    in a one-condition study (its first condition, from the locking statement);
    ``condition_required`` (400) in a study of several."""
    study = enrolment.study
    if condition_code is None:
        if study.design == Study.Design.SINGLE:
            return None
        raise AnswerRejected(
            _("Please say which reading condition this answer is for (condition)."),
            code="condition_required",
            status=400,
            field="condition",
        )
    conditions = selectors.study_conditions(study=study)
    found = next((c for c in conditions if c.code == condition_code), None)
    if found is None:
        raise AnswerRejected(
            _("%(code)s is not one of this study's reading conditions.") % {"code": condition_code},
            code="unknown_condition",
            status=400,
            field="condition",
        )
    return found


@transaction.atomic
def _answer_submit(
    *,
    found: QuerySet[Enrolment],
    case_public_id: str,
    diagnosis_code: str,
    confidence: int | None,
    condition_code: str | None,
    revise: bool,
    serve_next: bool,
) -> SubmitResult:
    # Row lock: two tabs of one reader are serialised here (PostgreSQL; SQLite
    # serialises every writer anyway). The enrolment is read again under it, with what
    # the checks need: the study, the profile (the step) and the case it served (the one
    # normally answered).
    enrolment = (
        found.select_for_update(of=("self",))
        .select_related("study", "reader__reader_profile", "served_case")
        .annotate(answer_condition_id=selectors.first_condition_id())
        .get()
    )
    study = enrolment.study
    answered = selectors.answered_reads(enrolment=enrolment)
    step = selectors.reader_step(enrolment=enrolment, answered=answered)
    refusal = _refusal_at(step=step, enrolment=enrolment)
    if refusal is not None:
        raise refusal
    diagnosis = answer_choice_check(study=study, diagnosis_code=diagnosis_code)
    confidence_check(study=study, confidence=confidence)
    named = _read_condition(enrolment=enrolment, condition_code=condition_code)
    condition_id = named.pk if named is not None else enrolment.answer_condition_id
    case = enrolment.served_case
    if case is None or case.public_id != case_public_id:
        case = Case.objects.filter(public_id=case_public_id, study_id=enrolment.study_id).first()
    if case is None or case.pk not in enrolment.case_order:
        raise AnswerRejected(
            _("This case is not part of your study."),
            code="unknown_case",
            status=404,
            field="case",
        )
    if (case.pk, condition_id) in answered:
        existing = Answer.objects.select_related("case", "diagnosis").get(
            enrolment=enrolment, case=case, condition_id=condition_id
        )
        same = existing.diagnosis_id == diagnosis.pk and (
            confidence is None or existing.confidence == confidence
        )
        if same:
            return SubmitResult(
                existing,
                created=False,
                changed=False,
                finished=enrolment.finished_at is not None,
                enrolment=enrolment,
                answered=answered,
            )
        if not revise:
            raise AnswerRejected(
                _(
                    "This case was already answered in another tab or on another device; "
                    "that answer stands. Here is your next case."
                ),
                code="answered_elsewhere",
            )
        if not study.allow_answer_changes or enrolment.finished_at is not None:
            # Also after finishing: the feedback may have shown the reference.
            raise AnswerRejected(
                _("This case has already been answered; answers are final."),
                code="already_answered",
            )
        before = {
            "case": case.public_id,
            "answer": existing.diagnosis.code,
            "confidence": existing.confidence,
        }
        AnswerChange.objects.create(
            answer=existing,
            previous_diagnosis=existing.diagnosis,
            previous_confidence=existing.confidence,
            new_diagnosis=diagnosis,
            new_confidence=confidence if confidence is not None else existing.confidence,
        )
        existing.diagnosis = diagnosis
        if confidence is not None:
            existing.confidence = confidence
        existing.changed_at = timezone.now()
        existing.save(update_fields=["diagnosis", "confidence", "changed_at"])
        audit_log(
            action=AuditEvent.Action.ANSWER_CHANGE,
            actor=enrolment.reader,
            study=study.slug,
            obj=existing,
            before=before,
            after={
                "case": case.public_id,
                "answer": diagnosis.code,
                "confidence": existing.confidence,
            },
        )
        return SubmitResult(
            existing,
            created=False,
            changed=True,
            finished=False,
            enrolment=enrolment,
            answered=answered,
        )
    plan = selectors.reading_plan(enrolment=enrolment)
    upcoming = selectors.next_read(enrolment=enrolment, answered=answered, plan=plan)
    if upcoming is None or upcoming.key != (case.pk, condition_id):
        raise AnswerRejected(_("This is not your next case."), code="not_next_case")
    # A one-condition study's case served before the served condition was recorded
    # (cases 0012) was served in its only condition.
    served_in = (condition_id, None) if study.design == Study.Design.SINGLE else (condition_id,)
    if (
        enrolment.served_case_id != case.pk
        or enrolment.served_at is None
        or enrolment.served_condition_id not in served_in
    ):
        # The time on a read runs from serving it; without that there is no time.
        raise AnswerRejected(
            _("This case has not been served to you yet: request your next case first."),
            code="case_not_served",
        )
    # No savepoint: under the row lock no other submission can store this answer first
    # (see answer_submit for one that bypasses the service).
    answer = Answer.objects.create(
        enrolment=enrolment,
        case=case,
        condition_id=condition_id,
        diagnosis=diagnosis,
        confidence=confidence,
        seconds=_seconds_on_case(enrolment),
    )
    after = {
        "case": case.public_id,
        "answer": diagnosis.code,
        "confidence": confidence,
        "seconds": answer.seconds,
    }
    if named is not None:
        after["condition"] = named.code
    audit_log(
        action=AuditEvent.Action.ANSWER_SUBMIT,
        actor=enrolment.reader,
        study=study.slug,
        obj=answer,
        after=after,
    )
    answered = answered | {(case.pk, condition_id)}
    following = selectors.next_read(enrolment=enrolment, answered=answered, plan=plan)
    # Where changes are allowed the reader reviews their answers and confirms
    # finishing (enrolment_finish); otherwise the last answer finishes the study.
    finished = following is None and not study.allow_answer_changes
    now = timezone.now()
    updates = {"served_case_id": None, "served_condition_id": None, "served_at": None}
    if finished:
        updates["finished_at"] = now
    elif (
        serve_next
        and following is not None
        and selectors.session_opens_at(enrolment=enrolment, read=following, plan=plan) is None
    ):
        updates.update(
            served_case_id=following.case_id,
            served_condition_id=following.condition.pk,
            served_at=now,
        )
    Enrolment.objects.filter(pk=enrolment.pk).update(**updates)
    for name, value in updates.items():
        setattr(enrolment, name, value)
    return SubmitResult(
        answer,
        created=True,
        changed=False,
        finished=finished,
        enrolment=enrolment,
        answered=answered,
    )


@transaction.atomic
def enrolment_finish(*, enrolment: Enrolment) -> Enrolment:
    """Confirm that the reader has finished (after reviewing their answers, in a study
    that allows changes): no answer can change afterwards. Idempotent."""
    enrolment = (
        Enrolment.objects.select_for_update().select_related("study", "reader").get(pk=enrolment.pk)
    )
    if enrolment.finished_at is not None:
        return enrolment
    if not enrolment.study.is_open():
        raise AnswerRejected(_("This study is closed for answers."), code="study_closed")
    if selectors.next_case_id(enrolment=enrolment) is not None:  # every read answered
        raise AnswerRejected(
            _("Please answer every case before finishing."), code="cases_unanswered"
        )
    enrolment.finished_at = timezone.now()
    enrolment.save(update_fields=["finished_at"])
    audit_log(
        action=AuditEvent.Action.ENROLMENT_FINISH,
        actor=enrolment.reader,
        study=enrolment.study.slug,
        obj=enrolment,
        after={"finished_at": enrolment.finished_at},
    )
    return enrolment


# --- study admins ----------------------------------------------------------------------

STUDY_ADMIN_GROUP = "Study admins"
# What a study admin may do in the admin, always within their own studies (the admin
# classes filter every list by study).
_STUDY_ADMIN_PERMISSIONS = {
    "cases": {
        "study": ("view", "change"),
        "studychoice": ("view", "add", "change", "delete"),
        # on the study's form while it is a draft (the admin fixes them from its opening)
        "readingcondition": ("view", "add", "change", "delete"),
        "case": ("view", "change"),
        "caseimage": ("view",),
        "diagnosis": ("view",),
        "readerprofile": ("view",),
        "enrolment": ("view",),
        "answer": ("view",),
        "answerchange": ("view",),
        "invitation": ("view", "add", "change"),
    },
    "inference": {
        "registeredmodel": ("view",),
        "inferencerun": ("view", "add"),
        "prediction": ("view",),
        "conditionsupport": ("view", "add", "change", "delete"),
    },
    "analysis": {"analysisreport": ("view", "add")},
    "audit": {"auditevent": ("view",)},
}


@transaction.atomic
def study_admin_add(*, user: AbstractBaseUser, study: Study) -> None:
    """Make ``user`` an admin of ``study``: staff, in the study-admin group, listed on the
    study. They see and manage that study only."""
    from django.contrib.auth.models import Group, Permission

    group, _ = Group.objects.get_or_create(name=STUDY_ADMIN_GROUP)
    wanted = [
        (app, f"{action}_{model}")
        for app, models in _STUDY_ADMIN_PERMISSIONS.items()
        for model, actions in models.items()
        for action in actions
    ]
    permissions = Permission.objects.filter(
        content_type__app_label__in=_STUDY_ADMIN_PERMISSIONS,
        codename__in=[codename for _, codename in wanted],
    )
    group.permissions.add(*permissions)
    if not user.is_staff:
        user.is_staff = True
        user.save(update_fields=["is_staff"])
    user.groups.add(group)
    study.admins.add(user)
    audit_log(
        action=AuditEvent.Action.STUDY_ADMIN_ADD,
        study=study.slug,
        obj=study,
        after={"admin": user.get_username()},
    )


# --- reader accounts, managed by a study admin ------------------------------------------


class AccountError(ValueError):
    """A study admin may not manage this account; the message says why."""


def _managed_reader(*, actor: AbstractBaseUser, enrolment: Enrolment) -> AbstractBaseUser:
    """The enrolment's reader, if ``actor`` administers its study and the reader is a
    plain reader account (staff accounts are managed by a superuser, not a study admin)."""
    from cases.selectors import can_admin_study

    if not can_admin_study(user=actor, study=enrolment.study):
        raise AccountError("you do not administer this reader's study")
    reader = enrolment.reader
    refusal = staff_account_refusal(reader)
    if refusal:
        raise AccountError(refusal)
    return reader


def staff_account_refusal(reader: AbstractBaseUser) -> str:
    """Why a study admin may not manage ``reader``'s account ('' when they may): staff
    accounts are managed by a superuser."""
    if reader.is_staff or reader.is_superuser:
        return (
            f"{reader.get_username()} is a staff account: only a superuser can change it, "
            "in the Users admin"
        )
    return ""


def _lockout_clear_audited(*, action: str, actor: AbstractBaseUser, enrolment: Enrolment) -> int:
    """Remove the failed-login records of the enrolment's reader (django-axes), which
    lifts their lockout from every address, and audit ``action``. Returns how many
    records were removed."""
    from axes.utils import reset

    reader = enrolment.reader
    cleared = reset(username=reader.get_username())
    audit_log(
        action=action,
        actor=actor,
        study=enrolment.study.slug,
        obj=reader,
        after={
            "reader": reader.get_username(),
            "reader_code": enrolment.reader_code,
            "lockout_records_cleared": cleared,
        },
    )
    return cleared


@transaction.atomic
def reader_password_set(
    *, actor: AbstractBaseUser, enrolment: Enrolment, password: str
) -> AbstractBaseUser:
    """Set a new password for the reader of ``enrolment``, chosen by a study admin.

    The password must pass the project's password validators (a ``ValidationError``
    lists every reason otherwise). The reader's other sessions end (Django ties a
    session to the password), their login lockout is lifted, and the change is audited
    (without the password).
    """
    from django.contrib.auth.password_validation import validate_password

    reader = _managed_reader(actor=actor, enrolment=enrolment)
    validate_password(password, user=reader)
    reader.set_password(password)
    reader.save(update_fields=["password"])
    _lockout_clear_audited(
        action=AuditEvent.Action.PASSWORD_RESET, actor=actor, enrolment=enrolment
    )
    return reader


@transaction.atomic
def reader_unlock(*, actor: AbstractBaseUser, enrolment: Enrolment) -> int:
    """Lift the login lockout of the reader of ``enrolment`` without touching the
    password. Audited; returns how many failed-login records were removed."""
    _managed_reader(actor=actor, enrolment=enrolment)
    return _lockout_clear_audited(
        action=AuditEvent.Action.LOCKOUT_RESET, actor=actor, enrolment=enrolment
    )


# --- a study's choices, edited by its admins ---------------------------------------------


def study_choice_refusal(
    *, study: Study, choice: StudyChoice | None, deleting: bool, changed: Sequence[str]
) -> str:
    """Why adding (``choice`` None), changing or deleting a choice of ``study`` must be
    refused, or '' when it may go ahead.

    The choices of a study that is not a draft are fixed (its readers answer with these
    buttons, in this order); a choice that cases or answers of the study use cannot be
    removed or replaced (:func:`study_choice_in_use_refusal`). The stored status counts,
    not one being submitted.
    """
    stored = Study.objects.filter(pk=study.pk).values_list("status", flat=True).first()
    if stored not in (None, Study.Status.DRAFT) and (choice is None or deleting or changed):
        return (
            f"the choices of a study that is {stored} are fixed: its readers answer with "
            "these buttons, in this order."
        )
    if choice is not None and (deleting or "diagnosis" in changed or "study" in changed):
        return study_choice_in_use_refusal(
            study_id=choice.study_id, diagnosis_id=choice.diagnosis_id
        )
    return ""


def study_choice_in_use_refusal(*, study_id: int, diagnosis_id: int) -> str:
    """Why a study's choice of ``diagnosis_id`` cannot be removed or replaced (the cases
    and answers of the study that use it), or '' when nothing uses it."""
    cases, answers = selectors.study_choice_uses(study_id=study_id, diagnosis_id=diagnosis_id)
    if not cases and not answers:
        return ""
    code = Diagnosis.objects.get(pk=diagnosis_id).code
    return (
        f"{code} is used by {cases} case(s) and {answers} answer(s) of this study: "
        "it cannot be removed or replaced."
    )


def case_diagnosis_refusal(*, study: Study, diagnosis: Diagnosis) -> str:
    """Why ``diagnosis`` cannot be the reference diagnosis of a case of ``study`` (it is
    not one of the study's choices), or '' when it can."""
    codes = study.choice_codes()
    if diagnosis.code in codes:
        return ""
    return (
        f"{diagnosis.code} is not one of the choices of {study.title!r} "
        f"({', '.join(codes) or 'none yet'})."
    )
