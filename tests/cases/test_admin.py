"""The admin: every model registered, the study overview and the bundle upload."""

from __future__ import annotations

import io
import zipfile

import pytest
from django.apps import apps
from django.contrib import admin
from django.urls import reverse

from cases.models import Case, Study
from tests.cases.test_importing import good_rows, snapshot, write_bundle
from tests.factories import CaseFactory, enrol, make_study

pytestmark = pytest.mark.django_db


def test_every_cases_model_is_registered():
    for model in apps.get_app_config("cases").get_models():
        assert admin.site.is_registered(model), model.__name__


@pytest.mark.parametrize(
    "model",
    [
        "diagnosis",
        "study",
        "studychoice",
        "case",
        "caseimage",
        "readerprofile",
        "enrolment",
        "answer",
        "answerchange",
    ],
)
def test_changelists_render_with_filters_and_search(admin_client, model):
    CaseFactory()
    response = admin_client.get(reverse(f"admin:cases_{model}_changelist") + "?q=x")
    assert response.status_code == 200


def test_study_overview_counts(admin_client, reader):
    case = CaseFactory()
    enrol(study=case.study, user=reader)
    response = admin_client.get(reverse("admin:cases_study_overview", args=[case.study.pk]))
    body = response.content.decode()
    assert response.status_code == 200
    assert "Melanocytic nevus" in body and "Enrolled" in body


def test_overview_needs_staff(client, reader):
    study = make_study()
    client.force_login(reader)
    response = client.get(reverse("admin:cases_study_overview", args=[study.pk]))
    assert response.status_code == 302 and "/admin/login/" in response["Location"]


def _zip(folder) -> io.BytesIO:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for path in folder.rglob("*"):
            if path.is_file():
                archive.write(path, path.relative_to(folder).as_posix())
    buffer.seek(0)
    buffer.name = "bundle.zip"
    return buffer


def test_admin_upload_imports_a_good_bundle(admin_client, tmp_path):
    study = make_study()
    write_bundle(tmp_path / "b", good_rows(3))
    response = admin_client.post(
        reverse("admin:cases_study_import", args=[study.pk]), {"bundle": _zip(tmp_path / "b")}
    )
    assert response.status_code == 302
    assert Case.objects.filter(study=study).count() == 3


def test_admin_upload_lists_problems_and_writes_nothing(admin_client, tmp_path, media_root):
    study = make_study()
    rows = good_rows(3)
    rows[1]["diagnosis"] = "XYZ"
    write_bundle(tmp_path / "b", rows)
    before = snapshot(media_root)
    response = admin_client.post(
        reverse("admin:cases_study_import", args=[study.pk]), {"bundle": _zip(tmp_path / "b")}
    )
    body = response.content.decode()
    assert response.status_code == 200
    assert "Import refused, nothing was written" in body and "unknown diagnosis code" in body
    assert snapshot(media_root) == before
    assert Study.objects.get(pk=study.pk).cases.count() == 0


def test_progress_page_and_answers_export(admin_client, reader):
    from tests.cases.test_questionnaire import build_study, ready_enrolment

    study = build_study(2)
    ready_enrolment(study, reader)
    response = admin_client.get(reverse("admin:cases_study_progress", args=[study.pk]))
    body = response.content.decode()
    assert response.status_code == 200 and "0 / 2" in body and reader.username in body
    response = admin_client.get(reverse("admin:cases_study_answers_csv", args=[study.pk]))
    assert response.status_code == 200
    assert response.content.decode("utf-8-sig").startswith("reader,case,truth,answer")


def test_invitations_created_in_bulk_and_downloaded(admin_client):
    study = make_study(status=Study.Status.OPEN)
    url = reverse("admin:cases_study_invitations", args=[study.pk])
    assert admin_client.get(url).status_code == 200
    response = admin_client.post(
        url, {"count": 3, "max_uses": 1, "expires_in_days": 7, "label": "ward 5"}
    )
    lines = response.content.decode().strip().splitlines()
    assert response["Content-Type"].startswith("text/csv") and len(lines) == 4
    assert "/join/" in lines[1] and "ward 5" in lines[1]
    assert study.invitations.count() == 3
    assert len(admin_client.get(url + "?format=csv").content.decode().strip().splitlines()) == 4
