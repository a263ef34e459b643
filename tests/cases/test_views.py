"""Case images are served only through the permission-checked view."""

from __future__ import annotations

import pytest
from django.urls import reverse

from tests.factories import CaseFactory, enrol, make_study

pytestmark = pytest.mark.django_db


@pytest.fixture
def image(reader):
    case = CaseFactory()
    enrol(study=case.study, user=reader)
    return case.images.get(kind="dermoscopic")


@pytest.mark.parametrize(
    "persona, variant, status",
    [
        ("anonymous", "web", 404),
        ("outsider", "web", 404),
        ("other_reader", "web", 404),
        ("reader", "web", 200),
        ("reader", "thumb", 200),
        ("reader", "original", 404),
        ("admin_user", "web", 200),
        ("admin_user", "original", 200),
        ("admin_user", "bogus", 404),
    ],
)
def test_image_permission_table(client, request, image, other_reader, persona, variant, status):
    if persona == "other_reader":
        enrol(study=make_study(slug="elsewhere"), user=other_reader)
    if persona != "anonymous":
        client.force_login(request.getfixturevalue(persona))
    response = client.get(reverse("cases:image", args=[image.public_id, variant]))
    assert response.status_code == status
    if status == 200:
        assert response["Cache-Control"] == "private, max-age=3600"
        assert response["X-Content-Type-Options"] == "nosniff"
        assert image.case.diagnosis.code not in response["Content-Disposition"]


def test_unknown_image_is_404(client, admin_user):
    client.force_login(admin_user)
    assert client.get(reverse("cases:image", args=["nope", "web"])).status_code == 404


def test_health_check(client):
    response = client.get("/health/")
    assert response.status_code == 200 and response.json()["database"] == "ok"


def test_home_anonymous_and_logged_in(client, admin_user):
    assert client.get("/").status_code == 200
    make_study(slug="s1", is_synthetic=True)
    client.force_login(admin_user)
    body = client.get("/").content.decode()
    assert "S1" in body and "synthetic" in body


def test_a_hidden_clinical_photo_is_refused_to_readers(client, reader, admin_user):
    case = CaseFactory(study=make_study(slug="dermoscopy-only", show_clinical_image=False))
    enrol(study=case.study, user=reader)
    clinical = case.images.get(kind="clinical").public_id
    dermoscopic = case.images.get(kind="dermoscopic").public_id
    client.force_login(reader)
    assert client.get(reverse("cases:image", args=[clinical, "web"])).status_code == 404
    assert client.get(reverse("cases:image", args=[clinical, "thumb"])).status_code == 404
    assert client.get(reverse("cases:image", args=[dermoscopic, "web"])).status_code == 200
    client.force_login(admin_user)  # the study's staff still see it
    assert client.get(reverse("cases:image", args=[clinical, "web"])).status_code == 200
