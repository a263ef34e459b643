"""Database invariants of the cases app; run on SQLite and on PostgreSQL."""

from __future__ import annotations

import pytest
from django.db import IntegrityError, transaction
from django.db.models import ProtectedError

from cases.models import Answer, AnswerChange, Case, Diagnosis, Enrolment, Study, StudyChoice
from cases.services import StudyError, case_order_for, enrolment_create, study_create
from tests.factories import CaseFactory, make_study

pytestmark = [pytest.mark.django_db, pytest.mark.postgres]


def test_the_fourteen_reference_diagnoses_exist_with_both_names():
    codes = set(Diagnosis.objects.values_list("code", flat=True))
    assert codes == {
        "LP",
        "Rosa",
        "VW",
        "AV",
        "KAHS",
        "EAD",
        "DF",
        "SD",
        "SK",
        "MN",
        "Hem",
        "Pso",
        "PWS",
        "BCC",
    }
    mn = Diagnosis.objects.get(code="MN")
    assert mn.name_en == "Melanocytic nevus" and mn.name_zh == "色素痣"
    assert mn.name_for("zh-hans") == "色素痣" and mn.name_for("en") == "Melanocytic nevus"


def test_one_answer_per_enrolment_and_case(reader):
    case = CaseFactory(with_images=False)
    enrolment = enrolment_create(study=case.study, reader=reader, seed=1)
    Answer.objects.create(enrolment=enrolment, case=case, diagnosis=case.diagnosis, seconds=3)
    with pytest.raises(IntegrityError), transaction.atomic():
        Answer.objects.create(enrolment=enrolment, case=case, diagnosis=case.diagnosis, seconds=4)


def test_one_enrolment_per_reader_and_study(reader):
    study = make_study()
    Enrolment.objects.create(study=study, reader=reader, order_seed=1)
    with pytest.raises(IntegrityError), transaction.atomic():
        Enrolment.objects.create(study=study, reader=reader, order_seed=2)


def test_enrolment_create_is_idempotent(reader):
    study = make_study()
    first = enrolment_create(study=study, reader=reader)
    assert enrolment_create(study=study, reader=reader) == first


def test_case_ids_unique_within_a_study_but_not_across():
    study, other = make_study(slug="a"), make_study(slug="b")
    mn = Diagnosis.objects.get(code="MN")
    Case.objects.create(study=study, source_id="x1", position=1, diagnosis=mn)
    Case.objects.create(study=other, source_id="x1", position=1, diagnosis=mn)
    with pytest.raises(IntegrityError), transaction.atomic():
        Case.objects.create(study=study, source_id="x1", position=2, diagnosis=mn)


def test_one_image_of_each_kind_per_case():
    case = CaseFactory()
    image = case.images.get(kind="clinical")
    image.pk, image.public_id = None, "another"
    with pytest.raises(IntegrityError), transaction.atomic():
        image.save()


@pytest.mark.parametrize("confidence", [0, 6])
def test_confidence_is_between_one_and_five(reader, confidence):
    case = CaseFactory(with_images=False)
    enrolment = enrolment_create(study=case.study, reader=reader, seed=1)
    with pytest.raises(IntegrityError), transaction.atomic():
        Answer.objects.create(
            enrolment=enrolment,
            case=case,
            diagnosis=case.diagnosis,
            seconds=1,
            confidence=confidence,
        )


def test_choice_appears_once_per_study():
    study = make_study(choices=("MN", "SK"))
    with pytest.raises(IntegrityError), transaction.atomic():
        StudyChoice.objects.create(
            study=study, diagnosis=Diagnosis.objects.get(code="MN"), position=9
        )


def test_consent_text_needs_a_version():
    with pytest.raises(IntegrityError), transaction.atomic():
        Study.objects.create(slug="s", title="S", consent_text="I agree", consent_version="")


def test_study_data_is_protected_from_deletion(reader):
    case = CaseFactory(with_images=False)
    enrolment = enrolment_create(study=case.study, reader=reader, seed=1)
    answer = Answer.objects.create(
        enrolment=enrolment, case=case, diagnosis=case.diagnosis, seconds=2
    )
    AnswerChange.objects.create(
        answer=answer, previous_diagnosis=case.diagnosis, new_diagnosis=case.diagnosis
    )
    for obj in (case.study, case, enrolment, answer, case.diagnosis):
        with pytest.raises(ProtectedError), transaction.atomic():
            obj.delete()


def test_study_create_rejects_unknown_and_repeated_choices():
    with pytest.raises(StudyError, match="unknown diagnosis code"):
        study_create(slug="s", title="S", choices=["MN", "QQ"])
    with pytest.raises(StudyError, match="repeat"):
        study_create(slug="s", title="S", choices=["MN", "mn"])


def test_case_order_is_reproducible_from_the_seed_and_differs_between_seeds():
    study = make_study()
    mn = Diagnosis.objects.get(code="MN")
    for i in range(20):
        Case.objects.create(study=study, source_id=f"c{i}", position=i + 1, diagnosis=mn)
    first = case_order_for(study=study, seed=7)
    assert first == case_order_for(study=study, seed=7)
    assert first != case_order_for(study=study, seed=8)
    assert sorted(first) == sorted(study.cases.values_list("pk", flat=True))
    study.shuffle_cases = False
    assert case_order_for(study=study, seed=7) == list(
        study.cases.order_by("position").values_list("pk", flat=True)
    )
