"""The permission table: persona x URL -> status, for every URL pattern of the site.

A new URL without a row here fails `test_every_url_has_a_row`.
"""

from __future__ import annotations

import re

import pytest
from django.urls import URLPattern, URLResolver, get_resolver, reverse

from cases.models import Case
from cases.services import answer_submit, invitations_create
from tests.cases.test_questionnaire import build_study, ready_enrolment
from tests.factories import make_study

pytestmark = pytest.mark.django_db

PERSONAS = ("anonymous", "outsider", "reader", "other_reader", "admin_user")


def walk(patterns, prefix="", namespace=None):
    for pattern in patterns:
        if isinstance(pattern, URLResolver):
            yield from walk(
                pattern.url_patterns, prefix + str(pattern.pattern), pattern.namespace or namespace
            )
        elif isinstance(pattern, URLPattern):
            name = f"{namespace}:{pattern.name}" if namespace and pattern.name else pattern.name
            yield prefix + str(pattern.pattern), name


@pytest.fixture
def world(reader, other_reader):
    study = build_study(3)
    enrolment = ready_enrolment(study, reader)
    first = Case.objects.get(pk=enrolment.case_order[0])
    answer_submit(enrolment=enrolment, case_public_id=first.public_id, diagnosis_code="MN")
    ready_enrolment(
        make_study(slug="elsewhere", status="open", consent_text="x", consent_version="1"),
        other_reader,
    )
    from django.core.files.base import ContentFile

    from inference.models import Prediction, RegisteredModel

    model = RegisteredModel.objects.create(
        name="m", arch="efficientnet_b4_aux", classes=["MN", "SK", "BCC"], preprocessing={}
    )
    prediction = Prediction(model=model, case=first, choice=first.diagnosis)
    prediction.gradcam.save("cam.png", ContentFile(b"\x89PNG"), save=True)
    return {
        "prediction": prediction.pk,
        "slug": study.slug,
        "token": invitations_create(study=study, count=1)[0].token,
        "image": first.images.get(kind="dermoscopic").public_id,
    }


# (url name, args from the world, method, statuses for
#  anonymous, outsider, reader, other_reader, admin_user)
S = "slug"
TABLE = [
    ("home", [], "get", (200, 200, 200, 200, 200)),
    ("health", [], "get", (200, 200, 200, 200, 200)),
    ("login", [], "get", (200, 200, 200, 200, 200)),
    ("logout", [], "post", (200, 200, 200, 200, 200)),
    ("password_change", [], "get", (302, 200, 200, 200, 200)),
    ("password_change_done", [], "get", (302, 200, 200, 200, 200)),
    ("set_language", [], "post", (302, 302, 302, 302, 302)),
    ("cases:image", ["image", "web"], "get", (404, 404, 200, 404, 200)),
    ("cases:image", ["image", "original"], "get", (404, 404, 404, 404, 200)),
    ("cases:join", ["token"], "get", (200, 200, 200, 200, 200)),
    ("cases:study", [S], "get", (302, 404, 302, 404, 404)),
    ("cases:consent", [S], "get", (302, 404, 302, 404, 404)),
    ("cases:profile", [S], "get", (302, 404, 200, 404, 404)),
    ("cases:case", [S], "get", (302, 404, 200, 404, 404)),
    ("cases:case_revise", [S, 1], "get", (302, 404, 404, 404, 404)),
    ("cases:done", [S], "get", (302, 404, 302, 404, 404)),
    ("api-reader-studies", [], "get", (403, 200, 200, 200, 200)),
    ("api-reader-next", [S], "get", (403, 404, 200, 404, 404)),
    ("api-reader-progress", [S], "get", (403, 404, 200, 404, 404)),
    ("api-reader-consent", [S], "post", (403, 404, 200, 404, 404)),
    ("api-reader-answer", [S], "post", (403, 404, 400, 404, 404)),
    ("api-admin-studies", [], "get", (403, 403, 403, 403, 200)),
    ("api-admin-study", [S], "get", (403, 403, 403, 403, 200)),
    ("api-admin-cases", [S], "get", (403, 403, 403, 403, 200)),
    ("api-admin-enrolments", [S], "get", (403, 403, 403, 403, 200)),
    ("api-admin-answers", [S], "get", (403, 403, 403, 403, 200)),
    ("api-admin-answers-csv", [S], "get", (403, 403, 403, 403, 200)),
    ("api-admin-invitations", [S], "get", (403, 403, 403, 403, 200)),
    ("api-schema", [], "get", (403, 200, 200, 200, 200)),
    ("api-docs", [], "get", (403, 200, 200, 200, 200)),
    # report files: staff only (tests/analysis/test_admin_reports.py serves real ones)
    ("analysis:report_file", [999, "report.html"], "get", (404, 404, 404, 404, 404)),
    ("inference:gradcam", ["prediction"], "get", (404, 404, 404, 404, 200)),
    ("inference:predictions_csv", [S], "get", (404, 404, 404, 404, 200)),
]


def _cases():
    for name, args, method, statuses in TABLE:
        for persona, status in zip(PERSONAS, statuses, strict=True):
            yield pytest.param(
                name, args, method, persona, status, id=f"{name}{args}-{method}-{persona}"
            )


@pytest.mark.parametrize("name, args, method, persona, expected", list(_cases()))
def test_permission_table(client, request, world, name, args, method, persona, expected):
    if persona != "anonymous":
        client.force_login(request.getfixturevalue(persona))
    url = reverse(name, args=[world.get(a, a) if isinstance(a, str) else a for a in args])
    response = getattr(client, method)(url)
    assert response.status_code == expected, (url, persona, response.status_code)


def test_every_url_has_a_row():
    covered = {name for name, *_ in TABLE}
    missing = sorted(
        f"{route} ({name})"
        for route, name in walk(get_resolver().url_patterns)
        if not route.startswith("admin/") and name not in covered
    )
    assert not missing, f"URLs without a permission row: {missing}"


def _admin_routes():
    for route, name in walk(get_resolver().url_patterns):
        if not route.startswith("admin/") or name in {"admin:login", "admin:logout"}:
            continue
        if route.startswith("admin/^") or "(?P<url>" in route:
            continue  # the admin's catch-all redirect
        yield pytest.param(route, id=name or route)


def _fill(route: str) -> str:
    route = re.sub(r"<int:[^>]+>", "1", route)
    return "/" + re.sub(r"<(?:path:|str:|slug:)?[^>]+>", "x", route)


@pytest.mark.parametrize("route", list(_admin_routes()))
@pytest.mark.parametrize("persona", ["anonymous", "reader"])
def test_every_admin_url_needs_staff(client, request, route, persona):
    if persona != "anonymous":
        client.force_login(request.getfixturevalue(persona))
    response = client.get(_fill(route))
    assert response.status_code == 302 and "/admin/login/" in response["Location"], route
