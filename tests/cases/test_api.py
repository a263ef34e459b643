"""The REST API: the reader's flow, bad input, and the admin's reads and exports."""

from __future__ import annotations

import csv
import io

import pytest
from django.urls import reverse

from cases.models import Answer, AnswerChange, Case, Enrolment, Invitation
from tests.factories import build_study, ready_enrolment

pytestmark = pytest.mark.django_db


@pytest.fixture
def study():
    return build_study(3, ask_confidence=True)


@pytest.fixture
def reader_client(client, reader, study):
    ready_enrolment(study, reader)
    client.force_login(reader)
    return client


def next_case(client, study) -> dict:
    response = client.get(reverse("api-reader-next", args=[study.slug]))
    assert response.status_code == 200
    return response.json()


def submit(client, study, **body):
    return client.post(
        reverse("api-reader-answer", args=[study.slug]), body, content_type="application/json"
    )


def test_reader_answers_every_case_through_the_api(reader_client, study):
    for number in (1, 2, 3):
        data = next_case(reader_client, study)
        assert data["step"] == "case" and data["case"]["number"] == number
        assert [c["code"] for c in data["choices"]] == ["MN", "SK", "BCC"]
        assert set(data["case"]["images"]) == {"clinical", "dermoscopic"}
        response = submit(reader_client, study, case=data["case"]["id"], answer="SK", confidence=3)
        assert response.status_code == 201, response.json()
    assert response.json()["finished"] is True
    assert next_case(reader_client, study)["step"] == "done"
    progress = reader_client.get(reverse("api-reader-progress", args=[study.slug])).json()
    assert progress == {"answered": 3, "total": 3, "finished": True, "session": 1, "sessions": 1}
    studies = reader_client.get(reverse("api-reader-studies")).json()
    assert studies[0]["slug"] == study.slug and studies[0]["step"] == "done"


def test_an_answer_with_next_carries_the_next_case_already_served(reader_client, reader, study):
    enrolment = Enrolment.objects.get(reader=reader, study=study)
    order = [Case.objects.get(pk=pk) for pk in enrolment.case_order]
    first = next_case(reader_client, study)
    assert first["prefetch"] == {}  # only when asked for
    with_prefetch = reader_client.get(
        reverse("api-reader-next", args=[study.slug]) + "?prefetch=1"
    ).json()
    following = {i.kind: i.public_id for i in order[1].images.all()}
    assert {k: url.split("/")[-2] for k, url in with_prefetch["prefetch"].items()} == following
    for number in (1, 2):
        response = submit(
            reader_client,
            study,
            case=order[number - 1].public_id,
            answer="SK",
            confidence=2,
            next=True,
            revise=False,
        )
        assert response.status_code == 201, response.json()
        shown = response.json()["next"]
        assert shown["step"] == "case" and shown["case"]["id"] == order[number].public_id
        assert shown["case"]["number"] == number + 1
        assert shown["progress"]["answered"] == number
        enrolment.refresh_from_db()
        assert enrolment.served_case_id == order[number].pk  # its clock runs
        after = {i.kind: i.public_id for i in order[number + 1].images.all()} if number < 2 else {}
        assert {k: url.split("/")[-2] for k, url in shown["prefetch"].items()} == after
    last = submit(
        reader_client, study, case=order[2].public_id, answer="MN", confidence=1, next=True
    ).json()
    assert last["finished"] and last["next"]["step"] == "done" and last["next"]["case"] is None
    # without next, no next in the reply
    assert "next" not in submit(reader_client, study, case=order[2].public_id, answer="MN").json()


def test_revise_false_never_changes_an_answer_even_where_changes_are_allowed(client, reader):
    study = build_study(2, allow_answer_changes=True)
    ready_enrolment(study, reader)
    client.force_login(reader)
    case = next_case(client, study)["case"]["id"]
    assert submit(client, study, case=case, answer="MN").status_code == 201
    # the same answer again (a retry): 200, nothing new
    response = submit(client, study, case=case, answer="MN", revise=False)
    assert response.status_code == 200 and response.json()["created"] is False
    # another answer from a stale tab: refused, the stored one stands
    response = submit(client, study, case=case, answer="SK", revise=False)
    assert response.status_code == 409
    assert response.json()["code"] == "answered_elsewhere"
    assert Answer.objects.get().diagnosis.code == "MN" and not AnswerChange.objects.exists()
    # revise (the default) changes it, where the study allows changes
    assert submit(client, study, case=case, answer="SK").json()["changed"] is True


def test_reader_next_says_which_step_comes_first(client, reader, study):
    from cases.services import enrolment_create

    enrolment_create(study=study, reader=reader)
    client.force_login(reader)
    assert next_case(client, study) | {"choices": None} == next_case(client, study) | {
        "choices": None
    }
    assert next_case(client, study)["step"] == "consent"
    client.post(reverse("api-reader-consent", args=[study.slug]))
    assert next_case(client, study)["step"] == "profile"


def test_double_submit_is_harmless(reader_client, study):
    case = next_case(reader_client, study)["case"]["id"]
    first = submit(reader_client, study, case=case, answer="MN", confidence=2)
    second = submit(reader_client, study, case=case, answer="MN", confidence=2)
    assert (first.status_code, second.status_code) == (201, 200)
    assert second.json()["created"] is False and Answer.objects.count() == 1


@pytest.mark.parametrize(
    "body, status, code",
    [
        ({"answer": "Pso", "confidence": 3}, 400, "invalid_choice"),
        ({"answer": "MN"}, 400, "confidence_required"),
        ({"answer": "MN", "confidence": 7}, 400, "invalid_confidence"),
    ],
)
def test_bad_answers_are_4xx_with_a_code(reader_client, study, body, status, code):
    case = next_case(reader_client, study)["case"]["id"]
    response = submit(reader_client, study, case=case, **body)
    assert response.status_code == status and response.json()["code"] == code
    assert Answer.objects.count() == 0


def test_not_the_next_case_and_a_forged_case(reader_client, reader, study):
    from cases.models import Case, Enrolment

    enrolment = Enrolment.objects.get(reader=reader)
    third = Case.objects.get(pk=enrolment.case_order[2]).public_id
    response = submit(reader_client, study, case=third, answer="MN", confidence=1)
    assert response.status_code == 409 and response.json()["code"] == "not_next_case"
    response = submit(reader_client, study, case="0123456789abcdef", answer="MN", confidence=1)
    assert response.status_code == 404 and response.json()["code"] == "unknown_case"
    assert Answer.objects.count() == 0


def test_malformed_json_is_a_400(reader_client, study):
    response = reader_client.post(
        reverse("api-reader-answer", args=[study.slug]),
        "{not json",
        content_type="application/json",
    )
    assert response.status_code == 400 and "JSON parse error" in response.json()["detail"]
    response = submit(reader_client, study, answer="MN")
    assert response.status_code == 400
    assert (response.json()["code"], response.json()["field"]) == ("required", "case")


@pytest.mark.parametrize(
    "forged, named",
    [
        ({"reader": "other"}, "reader"),
        ({"enrolment": "other"}, "enrolment"),
        ({"user": "other"}, "user"),
        ({"reader": "other", "enrolment": "other"}, "enrolment, reader"),
        ({"seconds": 0.5}, "seconds"),
    ],
)
def test_a_forged_reader_or_enrolment_in_the_body_is_a_400(
    reader_client, other_reader, study, forged, named
):
    other = ready_enrolment(build_study_for_other(), other_reader)
    ids = {"reader": other_reader.pk, "enrolment": other.pk, "user": other_reader.pk}
    body = {key: ids.get(key, value) for key, value in forged.items()}
    case = next_case(reader_client, study)["case"]["id"]
    response = submit(reader_client, study, case=case, answer="MN", confidence=2, **body)
    assert response.status_code == 400
    assert response.json() == {
        "detail": f"Unexpected field(s): {named}. "
        "An answer is always recorded for the logged-in reader.",
        "code": "unexpected_field",
        "field": named.split(", ")[0],
    }
    assert Answer.objects.count() == 0


def test_an_answer_before_the_required_profile_is_a_409(client, reader):
    from cases.services import consent_give, enrolment_create

    study = build_study(2, required_profile_fields=["level"])
    enrolment = enrolment_create(study=study, reader=reader)
    consent_give(enrolment=enrolment)
    client.force_login(reader)
    data = next_case(client, study)
    assert data["step"] == "profile" and data["case"] is None
    from cases.models import Case

    first = Case.objects.get(pk=enrolment.case_order[0]).public_id
    response = submit(client, study, case=first, answer="MN")
    assert response.status_code == 409
    assert response.json() == {
        "detail": "Please complete your profile first (missing: level).",
        "code": "profile_required",
        "field": None,
    }
    assert Answer.objects.count() == 0


def test_an_answer_to_a_case_not_served_is_a_409_until_next_is_fetched(
    reader_client, reader, study
):
    from cases.models import Case, Enrolment

    enrolment = Enrolment.objects.get(reader=reader)
    Enrolment.objects.filter(pk=enrolment.pk).update(served_case=None, served_at=None)
    first = Case.objects.get(pk=enrolment.case_order[0]).public_id
    response = submit(reader_client, study, case=first, answer="MN", confidence=2)
    assert response.status_code == 409
    assert response.json() == {
        "detail": "This case has not been served to you yet: request your next case first.",
        "code": "case_not_served",
        "field": None,
    }
    assert Answer.objects.count() == 0
    assert next_case(reader_client, study)["case"]["id"] == first
    assert submit(reader_client, study, case=first, answer="MN", confidence=2).status_code == 201


def test_next_leaves_out_a_hidden_clinical_image(client, reader):
    study = build_study(2, show_clinical_image=False)
    ready_enrolment(study, reader)
    client.force_login(reader)
    data = next_case(client, study)
    assert data["show_clinical_image"] is False
    assert list(data["case"]["images"]) == ["dermoscopic"]


def test_with_changes_allowed_the_reader_reviews_then_finishes(client, reader):
    study = build_study(2, allow_answer_changes=True)
    ready_enrolment(study, reader)
    client.force_login(reader)
    finish = reverse("api-reader-finish", args=[study.slug])
    response = client.post(finish)
    assert response.status_code == 409 and response.json() == {
        "detail": "Please answer every case before finishing.",
        "code": "cases_unanswered",
        "field": None,
    }
    cases = []
    for _ in range(2):
        cases.append(next_case(client, study)["case"]["id"])
        response = submit(client, study, case=cases[-1], answer="MN")
        assert response.status_code == 201 and response.json()["finished"] is False
    assert next_case(client, study)["step"] == "review"
    response = submit(client, study, case=cases[-1], answer="BCC")  # revise the last case
    assert response.status_code == 200 and response.json()["changed"] is True
    response = client.post(finish)
    assert response.status_code == 200
    assert response.json() == {
        "answered": 2,
        "total": 2,
        "finished": True,
        "session": 1,
        "sessions": 1,
    }
    assert next_case(client, study)["step"] == "done"
    response = submit(client, study, case=cases[-1], answer="SK")
    assert response.status_code == 409 and response.json()["code"] == "already_answered"


def test_a_new_consent_version_asks_for_consent_again(reader_client, study):
    from cases.models import Study

    Study.objects.filter(pk=study.pk).update(consent_version="v2")
    assert next_case(reader_client, study)["step"] == "consent"
    response = reader_client.post(reverse("api-reader-consent", args=[study.slug]))
    assert response.json() == {"consent_version": "v2"}
    assert next_case(reader_client, study)["step"] == "case"


def build_study_for_other():
    from tests.factories import make_study

    return make_study(slug="other-study", status="open", consent_text="x", consent_version="1")


def test_another_study_is_a_404(reader_client, study):
    other = build_study_for_other()
    assert reader_client.get(reverse("api-reader-next", args=[other.slug])).status_code == 404
    assert submit(reader_client, other, case="x", answer="MN").status_code == 404


def test_admin_endpoints_and_csv_export(admin_client, reader_client, reader, study):
    case = next_case(reader_client, study)["case"]["id"]
    submit(reader_client, study, case=case, answer="BCC", confidence=5)
    study.title_zh, study.consent_text_zh = "中文标题", "中文知情同意"
    study.save(update_fields=["title_zh", "consent_text_zh"])
    studies = admin_client.get(reverse("api-admin-studies")).json()["results"]
    assert studies[0]["choices"] == ["MN", "SK", "BCC"] and studies[0]["cases"] == 3
    assert (studies[0]["title_zh"], studies[0]["consent_text_zh"]) == ("中文标题", "中文知情同意")
    cases = admin_client.get(reverse("api-admin-cases", args=[study.slug])).json()["results"]
    assert {c["diagnosis"] for c in cases} == {"MN", "SK", "BCC"}
    enrolments = admin_client.get(reverse("api-admin-enrolments", args=[study.slug])).json()
    assert enrolments[0]["answered"] == 1 and enrolments[0]["total"] == 3
    answers = admin_client.get(reverse("api-admin-answers", args=[study.slug])).json()
    assert answers["results"][0]["answer"] == "BCC"

    response = admin_client.get(reverse("api-admin-answers-csv", args=[study.slug]))
    assert response.status_code == 200 and response["Content-Type"].startswith("text/csv")
    assert response.content.startswith("\ufeff".encode())  # a BOM, for Excel: read utf-8-sig
    rows = list(csv.DictReader(io.StringIO(response.content.decode("utf-8-sig"))))
    assert list(rows[0]) == [
        "reader",
        "case",
        "truth",
        "answer",
        "condition",
        "session",
        "ai_answer",
        "ai_top_probability",
        "changed",
        "truth_name",
        "answer_name",
        "level",
        "years",
        "dermoscopy_hours",
        "board_certified",
        "hospital_tier",
        "region",
        "finished",
        "confidence",
        "seconds",
        "answered_at",
    ]
    assert rows[0]["case"] == case and rows[0]["answer"] == "BCC"
    assert rows[0]["answer_name"] == "Basal cell carcinoma"
    assert rows[0]["finished"] == "False"  # 1 of 3 cases answered: the analysis leaves it out
    # pseudonymous: the reader code, never the account name
    assert rows[0]["reader"].startswith("R")
    assert all(reader.username not in value for row in rows for value in row.values())


def test_admin_creates_invitations_in_bulk(admin_client, study):
    response = admin_client.post(
        reverse("api-admin-invitations", args=[study.slug]),
        {"count": 5, "max_uses": 2, "label": "dept"},
        content_type="application/json",
    )
    assert response.status_code == 201 and len(response.json()) == 5
    assert "/join/" in response.json()[0]["url"]
    assert Invitation.objects.filter(study=study, max_uses=2).count() == 5
    response = admin_client.post(
        reverse("api-admin-invitations", args=[study.slug]),
        {"count": 0},
        content_type="application/json",
    )
    assert response.status_code == 400


def test_openapi_schema_and_docs(admin_client):
    schema = admin_client.get(reverse("api-schema"))
    assert schema.status_code == 200 and b"/api/reader/studies/{slug}/answers/" in schema.content
    docs = admin_client.get(reverse("api-docs"))
    assert docs.status_code == 200 and b"swagger" in docs.content.lower()
