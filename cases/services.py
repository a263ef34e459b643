"""Every write to studies, cases and the reader side. Keyword-only, transactional."""

from __future__ import annotations

import random
import secrets
from collections.abc import Sequence

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.utils import timezone

from cases.models import Diagnosis, Enrolment, Study, StudyChoice


class StudyError(ValueError):
    """A study cannot be created or changed as asked; the message says why."""


@transaction.atomic
def study_create(
    *,
    slug: str,
    title: str,
    choices: Sequence[str],
    description: str = "",
    **options: object,
) -> Study:
    """Create a draft study with ``choices`` (diagnosis codes, in display order)."""
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
    *, study: Study, reader: AbstractBaseUser, seed: int | None = None, consent: bool = False
) -> Enrolment:
    """Enrol ``reader`` in ``study``, fixing their case order; idempotent per reader."""
    existing = Enrolment.objects.filter(study=study, reader=reader).first()
    if existing is not None:
        return existing
    seed = secrets.randbits(62) if seed is None else seed
    enrolment = Enrolment.objects.create(
        study=study,
        reader=reader,
        order_seed=seed,
        case_order=case_order_for(study=study, seed=seed),
        consent_version=study.consent_version if consent else "",
        consented_at=timezone.now() if consent else None,
    )
    return enrolment
