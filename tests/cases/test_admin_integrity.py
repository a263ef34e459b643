"""The admin keeps "the reference diagnosis is one of the study's choices": case forms,
read-only fields once a study is open, no image uploads, and protected study choices."""

from __future__ import annotations

import pytest
from django.urls import reverse

from cases.models import Answer, Case, CaseImage, Diagnosis, Study, StudyChoice
from tests.factories import CaseFactory, conditions_post, enrol, make_study

pytestmark = pytest.mark.django_db


def dx(code: str) -> Diagnosis:
    return Diagnosis.objects.get(code=code)


def case_post(case: Case, **changes) -> dict:
    data = {
        "study": case.study_id,
        "source_id": case.source_id,
        "position": case.position,
        "diagnosis": case.diagnosis_id,
        "age": "",
        "sex": "",
        "site": "",
        "histopathology": "unknown",
        "images-TOTAL_FORMS": "2",
        "images-INITIAL_FORMS": "2",
        "images-MIN_NUM_FORMS": "0",
        "images-MAX_NUM_FORMS": "1000",
    }
    for i, image in enumerate(case.images.order_by("kind")):
        data[f"images-{i}-id"] = image.pk
        data[f"images-{i}-case"] = case.pk
    data.update(changes)
    return data


# --- cases ------------------------------------------------------------------------------


def test_case_form_offers_only_the_studys_choices(admin_client):
    case = CaseFactory(study=make_study(choices=("MN", "SK", "BCC")))
    body = admin_client.get(reverse("admin:cases_case_change", args=[case.pk])).content.decode()
    select = body[body.index('name="diagnosis"') :]
    select = select[: select.index("</select>")]
    assert "MN (" in select and "SK (" in select and "BCC (" in select
    assert "DF (" not in select


def test_case_diagnosis_outside_the_choices_is_refused(admin_client):
    case = CaseFactory(study=make_study(choices=("MN", "SK", "BCC")))
    url = reverse("admin:cases_case_change", args=[case.pk])
    response = admin_client.post(url, case_post(case, diagnosis=dx("DF").pk))
    assert response.status_code == 200
    assert "Select a valid choice" in response.content.decode()
    assert Case.objects.get(pk=case.pk).diagnosis.code == "MN"


def test_case_moved_to_a_study_without_its_diagnosis_is_refused(admin_client):
    case = CaseFactory(study=make_study(slug="first", choices=("MN", "BCC")), diagnosis=dx("BCC"))
    other = make_study(slug="second", choices=("MN", "SK"))
    url = reverse("admin:cases_case_change", args=[case.pk])
    response = admin_client.post(url, case_post(case, study=other.pk))
    assert response.status_code == 200
    assert "BCC is not one of the choices of &#x27;Second&#x27; (MN, SK)." in (
        response.content.decode()
    )
    assert Case.objects.get(pk=case.pk).study_id == case.study_id


def test_case_diagnosis_can_change_within_the_choices_of_a_draft(admin_client):
    case = CaseFactory(study=make_study(choices=("MN", "SK")))
    url = reverse("admin:cases_case_change", args=[case.pk])
    response = admin_client.post(url, case_post(case, diagnosis=dx("SK").pk))
    assert response.status_code == 302
    assert Case.objects.get(pk=case.pk).diagnosis.code == "SK"


@pytest.mark.parametrize("status", [Study.Status.OPEN, Study.Status.CLOSED])
def test_case_diagnosis_and_study_are_read_only_once_the_study_is_not_a_draft(admin_client, status):
    case = CaseFactory(study=make_study(choices=("MN", "SK"), status=status))
    draft = make_study(slug="draft", choices=("MN", "SK"))
    url = reverse("admin:cases_case_change", args=[case.pk])
    body = admin_client.get(url).content.decode()
    assert 'name="diagnosis"' not in body and 'name="study"' not in body
    response = admin_client.post(url, case_post(case, diagnosis=dx("SK").pk, study=draft.pk))
    assert response.status_code == 302
    stored = Case.objects.get(pk=case.pk)
    assert stored.diagnosis.code == "MN" and stored.study_id == case.study_id


def test_case_diagnosis_is_read_only_once_a_reader_answered_it(admin_client, reader):
    case = CaseFactory(study=make_study(choices=("MN", "SK")))
    Answer.objects.create(
        enrolment=enrol(study=case.study, user=reader), case=case, diagnosis=dx("SK"), seconds=2
    )
    body = admin_client.get(reverse("admin:cases_case_change", args=[case.pk])).content.decode()
    assert 'name="diagnosis"' not in body


def test_cases_cannot_be_added_in_the_admin(admin_client):
    study = make_study()
    url = reverse("admin:cases_case_add")
    assert admin_client.get(url).status_code == 403
    data = {"study": study.pk, "source_id": "x", "position": 1, "diagnosis": dx("BCC").pk}
    assert admin_client.post(url, data).status_code == 403
    assert not Case.objects.exists()


# --- images -----------------------------------------------------------------------------


def test_images_cannot_be_added_in_the_admin(admin_client):
    case = CaseFactory()
    url = reverse("admin:cases_caseimage_add")
    assert admin_client.get(url).status_code == 403
    assert admin_client.post(url, {"case": case.pk, "kind": "clinical"}).status_code == 403
    assert CaseImage.objects.count() == 2


def test_image_files_are_read_only(admin_client, tmp_path):
    image = CaseFactory().images.get(kind="dermoscopic")
    url = reverse("admin:cases_caseimage_change", args=[image.pk])
    response = admin_client.get(url)
    assert response.status_code == 200
    assert 'type="file"' not in response.content.decode()
    (tmp_path / "new.jpg").write_bytes(b"not an image")
    with open(tmp_path / "new.jpg", "rb") as upload:
        response = admin_client.post(url, {"kind": "clinical", "original": upload})
    assert response.status_code == 403
    stored = CaseImage.objects.get(pk=image.pk)
    assert stored.kind == "dermoscopic" and stored.original.name == image.original.name


# --- study choices ----------------------------------------------------------------------


def study_post(study: Study, choices: list[dict], extra_forms: int = 0) -> dict:
    data = {
        "title": study.title,
        "slug": study.slug,
        "description": study.description,
        "status": study.status,
        "shuffle_cases": "on",
        "show_clinical_image": "on",
        "consent_text": study.consent_text,
        "consent_version": study.consent_version,
        "required_profile_fields": list(study.required_profile_fields),
        "study_choices-TOTAL_FORMS": str(len(choices)),
        "study_choices-INITIAL_FORMS": str(len(choices) - extra_forms),
        "study_choices-MIN_NUM_FORMS": "0",
        "study_choices-MAX_NUM_FORMS": "1000",
    }
    for i, row in enumerate(choices):
        for key, value in row.items():
            data[f"study_choices-{i}-{key}"] = value
        data[f"study_choices-{i}-study"] = study.pk
    data.update(conditions_post(study))
    return data


def choice_rows(study: Study) -> list[dict]:
    return [
        {"id": c.pk, "diagnosis": c.diagnosis_id, "position": c.position}
        for c in study.study_choices.order_by("position")
    ]


def test_a_used_choice_cannot_be_removed_from_a_study(admin_client):
    study = make_study(choices=("MN", "SK", "BCC"))
    CaseFactory(study=study, diagnosis=dx("SK"))
    rows = choice_rows(study)
    rows[1]["DELETE"] = "on"
    response = admin_client.post(
        reverse("admin:cases_study_change", args=[study.pk]), study_post(study, rows)
    )
    assert response.status_code == 200
    assert (
        "SK is used by 1 case(s) and 0 answer(s) of this study: it cannot be removed or "
        "replaced." in response.content.decode()
    )
    assert study.choice_codes() == ["MN", "SK", "BCC"]


def test_a_used_choice_cannot_be_replaced_by_another_diagnosis(admin_client):
    study = make_study(choices=("MN", "SK", "BCC"))
    CaseFactory(study=study, diagnosis=dx("MN"))
    rows = choice_rows(study)
    rows[0]["diagnosis"] = dx("DF").pk
    response = admin_client.post(
        reverse("admin:cases_study_change", args=[study.pk]), study_post(study, rows)
    )
    assert response.status_code == 200
    assert "MN is used by 1 case(s) and 0 answer(s)" in response.content.decode()
    assert study.choice_codes() == ["MN", "SK", "BCC"]


def test_an_unused_choice_of_a_draft_can_be_removed(admin_client):
    study = make_study(choices=("MN", "SK", "BCC"))
    CaseFactory(study=study, diagnosis=dx("MN"))
    rows = choice_rows(study)
    rows[2]["DELETE"] = "on"
    response = admin_client.post(
        reverse("admin:cases_study_change", args=[study.pk]), study_post(study, rows)
    )
    assert response.status_code == 302, response.content.decode()[-3000:]
    assert study.choice_codes() == ["MN", "SK"]


def test_the_choices_of_an_open_study_are_fixed(admin_client):
    study = make_study(choices=("MN", "SK"), status=Study.Status.OPEN)
    rows = [*choice_rows(study), {"id": "", "diagnosis": dx("BCC").pk, "position": 3}]
    response = admin_client.post(
        reverse("admin:cases_study_change", args=[study.pk]), study_post(study, rows, 1)
    )
    assert response.status_code == 200
    assert (
        "the choices of a study that is open are fixed: its readers answer with these "
        "buttons, in this order." in response.content.decode()
    )
    assert study.choice_codes() == ["MN", "SK"]


def test_a_used_choice_cannot_be_deleted_from_its_own_page(admin_client, reader):
    study = make_study(choices=("MN", "SK"))
    case = CaseFactory(study=study, diagnosis=dx("MN"))
    Answer.objects.create(
        enrolment=enrol(study=study, user=reader), case=case, diagnosis=dx("SK"), seconds=2
    )
    choice = study.study_choices.get(diagnosis__code="SK")
    url = reverse("admin:cases_studychoice_delete", args=[choice.pk])
    response = admin_client.post(url, {"post": "yes"})
    assert response.status_code == 200
    assert "SK is used by 0 case(s) and 1 answer(s) of this study" in response.content.decode()
    assert StudyChoice.objects.filter(pk=choice.pk).exists()
    # The bulk action asks the same question.
    response = admin_client.post(
        reverse("admin:cases_studychoice_changelist"),
        {"action": "delete_selected", "_selected_action": [choice.pk], "post": "yes"},
    )
    assert response.status_code == 200
    assert StudyChoice.objects.filter(pk=choice.pk).exists()


def test_a_used_choice_cannot_change_diagnosis_from_its_own_page(admin_client):
    study = make_study(choices=("MN", "SK"))
    CaseFactory(study=study, diagnosis=dx("MN"))
    choice = study.study_choices.get(diagnosis__code="MN")
    url = reverse("admin:cases_studychoice_change", args=[choice.pk])
    response = admin_client.post(url, {"diagnosis": dx("DF").pk, "position": 1})
    assert response.status_code == 200
    assert "MN is used by 1 case(s) and 0 answer(s)" in response.content.decode()
    assert study.choice_codes() == ["MN", "SK"]
