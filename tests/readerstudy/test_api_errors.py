"""Every 4xx under /api/ is ``{"detail", "code", "field"}`` (readerstudy.api)."""

from __future__ import annotations

import json

import pytest
from django.urls import reverse
from rest_framework import exceptions

from cases.services import study_admin_add
from readerstudy.api import exception_handler
from tests.factories import build_study, ready_enrolment

pytestmark = pytest.mark.django_db

ZH = {"HTTP_ACCEPT_LANGUAGE": "zh-hans"}
SERVED = "<the case next/ served>"


@pytest.fixture
def study():
    return build_study(3, ask_confidence=True)


@pytest.fixture
def reader_client(client, reader, study):
    ready_enrolment(study, reader)
    client.force_login(reader)
    return client


def served_case(client, study) -> str:
    return client.get(reverse("api-reader-next", args=[study.slug])).json()["case"]["id"]


def post_answer(client, study, body, **headers):
    url = reverse("api-reader-answer", args=[study.slug])
    return client.post(url, json.dumps(body), content_type="application/json", **headers)


@pytest.mark.parametrize(
    "body, code, field, detail",
    [
        (
            {"case": SERVED, "answer": "MN", "confidence": "3.5"},
            "invalid",
            "confidence",
            "confidence: A valid integer is required.",
        ),
        (
            {"answer": "MN", "confidence": 2, "case": "x" * 40},
            "max_length",
            "case",
            "case: Ensure this field has no more than 32 characters.",
        ),
        ({"answer": "MN"}, "required", "case", "case: This field is required."),
        ({"case": None, "answer": "MN"}, "null", "case", "case: This field may not be null."),
        (
            [{"answer": "MN"}],
            "invalid",
            None,
            "Invalid data. Expected a dictionary, but got list.",
        ),
        ("MN", "invalid", None, "Invalid data. Expected a dictionary, but got str."),
        (
            {"case": SERVED, "answer": "Pso", "confidence": 3},
            "invalid_choice",
            "answer",
            "Pso is not one of this study's choices.",
        ),
        (
            {"case": SERVED, "answer": "MN", "confidence": 7},
            "invalid_confidence",
            "confidence",
            "Confidence must be between 1 and 5.",
        ),
    ],
)
def test_invalid_answers_have_one_message_a_code_and_the_field(
    reader_client, study, body, code, field, detail
):
    if isinstance(body, dict) and body.get("case") == SERVED:
        body = {**body, "case": served_case(reader_client, study)}
    response = post_answer(reader_client, study, body)
    assert response.status_code == 400
    data = response.json()
    assert (data["detail"], data["code"], data["field"]) == (detail, code, field)


def test_a_validation_error_lists_every_field_at_fault(reader_client, study):
    response = post_answer(reader_client, study, {"case": "x" * 40, "confidence": "a"})
    assert response.json() == {
        "detail": "case: Ensure this field has no more than 32 characters.",
        "code": "max_length",
        "field": "case",
        "errors": {
            "case": ["Ensure this field has no more than 32 characters."],
            "answer": ["This field is required."],
            "confidence": ["A valid integer is required."],
        },
    }


def test_errors_are_in_the_readers_language(reader_client, study):
    case = served_case(reader_client, study)
    data = post_answer(
        reader_client, study, {"case": case, "answer": "MN", "confidence": "3.5"}, **ZH
    )
    assert data.json()["detail"] == "confidence: 请填写合法的整数值。"
    assert data.json()["code"] == "invalid"
    data = post_answer(reader_client, study, [], **ZH).json()
    assert data["detail"] == "无效数据。期待为字典类型，得到的是 list 。"  # noqa: RUF001


def test_invalid_invitations_name_the_field(client, study_admin, study):
    study_admin_add(user=study_admin, study=study)
    client.force_login(study_admin)
    url = reverse("api-admin-invitations", args=[study.slug])
    response = client.post(url, {"count": 0}, content_type="application/json")
    assert response.status_code == 400
    assert response.json()["code"] == "min_value" and response.json()["field"] == "count"


@pytest.mark.parametrize(
    "persona, method, name, status, code",
    [
        (None, "get", "api-reader-studies", 403, "not_authenticated"),
        ("reader", "get", "api-admin-studies", 403, "permission_denied"),
        ("reader", "get", "api-reader-next:other", 404, "not_found"),
        ("study_admin", "get", "api-admin-study:other", 404, "not_found"),
        ("study_admin", "get", "api-admin-cases:other", 404, "not_found"),
        ("reader", "put", "api-reader-answer", 405, "method_not_allowed"),
        ("reader", "delete", "api-reader-next", 405, "method_not_allowed"),
    ],
)
def test_refusals_have_the_error_shape(
    client, reader, study_admin, study, persona, method, name, status, code
):
    ready_enrolment(study, reader)
    study_admin_add(user=study_admin, study=study)
    if persona is not None:
        client.force_login({"reader": reader, "study_admin": study_admin}[persona])
    name, _, slug = name.partition(":")
    args = [] if name.endswith("studies") else [slug or study.slug]
    response = getattr(client, method)(reverse(name, args=args))
    assert response.status_code == status
    assert response.json() == {"detail": response.json()["detail"], "code": code, "field": None}
    assert response.json()["detail"]


def test_a_missing_object_does_not_name_its_model(client, study_admin, study):
    study_admin_add(user=study_admin, study=study)
    client.force_login(study_admin)
    response = client.get(reverse("api-admin-study", args=["nope"]), **ZH)
    assert response.json() == {"detail": "未找到。", "code": "not_found", "field": None}


def test_malformed_json_and_other_media_types(reader_client, study):
    url = reverse("api-reader-answer", args=[study.slug])
    data = reader_client.post(url, "{bad", content_type="application/json").json()
    assert data["code"] == "parse_error" and data["field"] is None
    assert data["detail"].startswith("JSON parse error at line 1, column 2")
    response = reader_client.post(url, "case=x", content_type="text/plain")
    assert response.status_code == 415
    assert response.json()["code"] == "unsupported_media_type"


def test_an_address_no_endpoint_has_is_a_json_404(reader_client):
    response = reader_client.get("/api/reader/nothing-here/", **ZH)
    assert response.status_code == 404
    assert response.json() == {"detail": "未找到。", "code": "not_found", "field": None}
    assert reader_client.get("/no-such-page/").headers["Content-Type"].startswith("text/html")


def test_a_body_with_too_many_fields_is_a_json_400(reader_client, study):
    url = reverse("api-reader-answer", args=[study.slug])
    response = reader_client.post(url, {f"f{i}": "x" for i in range(1001)})
    assert response.status_code == 400
    assert response.json() == {"detail": "Bad request", "code": "bad_request", "field": None}


def test_throttled_keeps_retry_after():
    response = exception_handler(exceptions.Throttled(wait=7), {})
    assert response.status_code == 429 and response["Retry-After"] == "7"
    assert response.data["code"] == "throttled" and response.data["field"] is None
    assert "7 seconds" in response.data["detail"]


def test_the_schema_documents_the_errors(admin_client):
    schema = admin_client.get(reverse("api-schema"), {"format": "json"}).json()
    error = schema["components"]["schemas"]["ErrorOut"]
    assert set(error["required"]) == {"detail", "code", "field"}
    answers = schema["paths"]["/api/reader/studies/{slug}/answers/"]["post"]["responses"]
    assert {"400", "403", "404", "405", "409"} <= set(answers)
    studies = schema["paths"]["/api/reader/studies/"]["get"]["responses"]
    assert {"403", "405"} <= set(studies) and "404" not in studies
    ref = studies["403"]["content"]["application/json"]["schema"]["$ref"]
    assert ref == "#/components/schemas/ErrorOut"
