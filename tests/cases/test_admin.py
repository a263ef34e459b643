"""The admin: every model registered, the study overview and the bundle upload."""

from __future__ import annotations

import datetime as dt
import io
import re
import zipfile

import pytest
from django.apps import apps
from django.contrib import admin
from django.urls import reverse
from django.utils import timezone

from cases.models import Answer, AnswerChange, Case, Diagnosis, Enrolment, Study
from cases.selectors import reader_progress_table, study_overview
from cases.services import invitations_create
from tests.factories import CaseFactory, enrol, good_rows, make_study, snapshot, write_bundle

pytestmark = pytest.mark.django_db


PROJECT_APPS = ["cases", "inference", "analysis", "audit", "backups"]
PROJECT_MODELS = [
    model
    for label in PROJECT_APPS
    if apps.is_installed(label)
    for model in apps.get_app_config(label).get_models()
]


@pytest.mark.parametrize("model", PROJECT_MODELS, ids=lambda m: m._meta.label_lower)
def test_every_project_model_is_registered_with_filters_and_search(model):
    assert admin.site.is_registered(model), f"{model._meta.label} is not in the admin"
    model_admin = admin.site._registry[model]
    assert model_admin.list_filter, f"{model._meta.label} has no list_filter"
    assert model_admin.search_fields, f"{model._meta.label} has no search_fields"


@pytest.mark.parametrize("model", PROJECT_MODELS, ids=lambda m: m._meta.label_lower)
def test_changelists_render_with_filters_and_search(admin_client, model):
    CaseFactory()
    CaseFactory(study=make_study(slug="second"))
    opts = model._meta
    url = reverse(f"admin:{opts.app_label}_{opts.model_name}_changelist")
    # The filter sidebar is on the page, and a search runs.
    response = admin_client.get(url)
    assert response.status_code == 200 and 'id="changelist-filter"' in response.content.decode()
    response = admin_client.get(url + "?q=x")
    assert response.status_code == 200 and 'id="searchbar"' in response.content.decode()


def test_search_narrows_the_study_changelist(admin_client):
    make_study(slug="melanoma-panel")
    make_study(slug="psoriasis-panel")
    url = reverse("admin:cases_study_changelist")
    body = admin_client.get(url + "?q=Melanoma").content.decode()
    assert "Melanoma-Panel" in body and "Psoriasis-Panel" not in body
    assert "1 result" in body


def test_search_narrows_the_answer_change_changelist(admin_client, reader, other_reader):
    study = make_study()
    case = CaseFactory(study=study)
    mn, sk = Diagnosis.objects.get(code="MN"), Diagnosis.objects.get(code="SK")
    codes = []
    for user in (reader, other_reader):
        enrolment = enrol(study=study, user=user)
        answer = Answer.objects.create(enrolment=enrolment, case=case, diagnosis=sk, seconds=3)
        AnswerChange.objects.create(answer=answer, previous_diagnosis=mn, new_diagnosis=sk)
        codes.append(enrolment.reader_code)
    url = reverse("admin:cases_answerchange_changelist")
    body = admin_client.get(url + f"?q={codes[0]}").content.decode()
    assert codes[0] in body and codes[1] not in body


def test_diagnosis_filter_lists_the_choices_of_one_study(admin_client):
    study = make_study(choices=("MN", "SK"))
    body = admin_client.get(
        reverse("admin:cases_diagnosis_changelist") + f"?study={study.pk}"
    ).content.decode()
    assert "Melanocytic nevus" in body and "Basal cell carcinoma" not in body
    assert "2 results" in body


def _overview_world(reader, other_reader):
    """Choices MN, SK, BCC with 3, 2 and 0 cases; one finished reader who answered all 5
    cases, one unfinished who answered 2: 7 answers."""
    study = make_study(choices=("MN", "SK", "BCC"))
    cases = [
        CaseFactory(study=study, diagnosis=Diagnosis.objects.get(code=code))
        for code in ("MN", "MN", "MN", "SK", "SK")
    ]
    mn = Diagnosis.objects.get(code="MN")
    finished, unfinished = enrol(study=study, user=reader), enrol(study=study, user=other_reader)
    for case in cases:
        Answer.objects.create(enrolment=finished, case=case, diagnosis=mn, seconds=4)
    for case in cases[:2]:
        Answer.objects.create(enrolment=unfinished, case=case, diagnosis=mn, seconds=4)
    Enrolment.objects.filter(pk=finished.pk).update(finished_at=timezone.now())
    return study


def test_study_overview_counts_every_choice_in_order_with_zeros(reader, other_reader):
    study = _overview_world(reader, other_reader)
    overview = study_overview(study=study)
    assert [(r["code"], r["n"], r["is_choice"]) for r in overview["cases_per_class"]] == [
        ("MN", 3, True),
        ("SK", 2, True),
        ("BCC", 0, True),
    ]
    assert overview["n_cases"] == 5
    assert overview["readers_enrolled"] == 2
    assert overview["readers_finished"] == 1
    assert overview["readers_started"] == 1
    assert overview["answers"] == 7
    assert overview["images_missing"] == 0


def test_study_overview_flags_a_case_outside_the_choices():
    study = make_study(choices=("MN", "SK"))
    CaseFactory(study=study, diagnosis=Diagnosis.objects.get(code="DF"), with_images=False)
    rows = study_overview(study=study)["cases_per_class"]
    assert [(r["code"], r["n"], r["is_choice"]) for r in rows] == [
        ("MN", 0, True),
        ("SK", 0, True),
        ("DF", 1, False),
    ]
    assert study_overview(study=study)["images_missing"] == 1


def test_study_overview_page_shows_the_numbers(admin_client, reader, other_reader):
    study = _overview_world(reader, other_reader)
    response = admin_client.get(reverse("admin:cases_study_overview", args=[study.pk]))
    body = " ".join(response.content.decode().split())
    assert response.status_code == 200
    names = {d.code: d.name_en for d in Diagnosis.objects.filter(code__in=["MN", "SK", "BCC"])}
    rows = re.findall(
        r'<tr class="class-row"><td>(\w+)</td><td>([^<]+)</td><td class="n">(\d+)</td>', body
    )
    assert rows == [("MN", names["MN"], "3"), ("SK", names["SK"], "2"), ("BCC", names["BCC"], "0")]
    assert "Cases per class (5)" in body
    steps = {"invited": 0, "consented": 0, "in_progress": 1, "finished": 1, "enrolled": 2}
    for step, real in steps.items():
        row = (
            rf'<tr data-step="{step}"><th scope="row">.*?</th><td class="n">{real}</td>'
            r'<td class="n">0</td></tr>'
        )
        assert re.search(row, body), step
    assert '<td class="n">7</td></tr></tfoot>' in body


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
    from tests.factories import build_study, ready_enrolment

    study = build_study(2)
    ready_enrolment(study, reader)
    response = admin_client.get(reverse("admin:cases_study_progress", args=[study.pk]))
    body = response.content.decode()
    assert response.status_code == 200 and "0 / 2" in body and reader.username in body
    response = admin_client.get(reverse("admin:cases_study_answers_csv", args=[study.pk]))
    assert response.status_code == 200
    assert response.content.decode("utf-8-sig").startswith("reader,case,truth,answer")


def _at(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text).replace(tzinfo=dt.UTC)


def test_progress_median_seconds_and_last_activity(admin_client, reader, other_reader):
    from tests.factories import build_study

    study = build_study(3)
    cases = list(study.cases.order_by("position"))
    mn = Diagnosis.objects.get(code="MN")
    busy, sitting = enrol(study=study, user=reader), enrol(study=study, user=other_reader)
    # busy: 10, 60 and 20 seconds (median 20); its last answer was changed later.
    for case, seconds, at in zip(
        cases,
        (10, 60, 20),
        ("2026-01-02T03:00:00", "2026-01-02T03:04:05", "2026-01-02T03:02:00"),
        strict=True,
    ):
        answer = Answer.objects.create(enrolment=busy, case=case, diagnosis=mn, seconds=seconds)
        Answer.objects.filter(pk=answer.pk).update(answered_at=_at(at))
    Answer.objects.filter(enrolment=busy, case=cases[0]).update(
        changed_at=_at("2026-01-02T05:06:07")
    )
    # sitting: answered 5 and 8 seconds (median 6.5), then was served a case later on.
    for case, seconds in zip(cases[:2], (5, 8), strict=True):
        answer = Answer.objects.create(enrolment=sitting, case=case, diagnosis=mn, seconds=seconds)
        Answer.objects.filter(pk=answer.pk).update(answered_at=_at("2026-01-03T08:00:00"))
    Enrolment.objects.filter(pk=sitting.pk).update(
        served_case=cases[2], served_at=_at("2026-01-03T09:10:11")
    )

    rows = {row["username"]: row for row in reader_progress_table(study=study)}
    assert rows[reader.username]["median_seconds"] == 20
    assert rows[reader.username]["last_activity"] == _at("2026-01-02T05:06:07")
    assert rows[other_reader.username]["median_seconds"] == 6.5
    assert rows[other_reader.username]["last_activity"] == _at("2026-01-03T09:10:11")

    body = admin_client.get(reverse("admin:cases_study_progress", args=[study.pk])).content
    body = body.decode()
    assert "<td>20.0</td>" in body and "<td>6.5</td>" in body
    assert '<td class="when">2026-01-02 05:06 UTC</td>' in body
    assert '<td class="when">2026-01-03 09:10 UTC</td>' in body
    assert "3 / 3" in body and "2 / 3" in body


def test_progress_last_activity_without_answers_is_the_serving_or_consent(reader):
    from tests.factories import build_study, ready_enrolment

    study = build_study(2)
    enrolment = ready_enrolment(study, reader, serve=False)
    (row,) = reader_progress_table(study=study)
    assert row["last_activity"] == enrolment.consented_at and row["median_seconds"] is None
    Enrolment.objects.filter(pk=enrolment.pk).update(served_at=_at("2030-05-06T07:08:09"))
    (row,) = reader_progress_table(study=study)
    assert row["last_activity"] == _at("2030-05-06T07:08:09")


def test_invitations_created_in_bulk_listed_at_once_and_downloaded(admin_client):
    study = make_study(status=Study.Status.OPEN)
    url = reverse("admin:cases_study_invitations", args=[study.pk])
    assert admin_client.get(url).status_code == 200
    invitations_create(study=study, count=1, label="earlier")
    response = admin_client.post(
        url, {"count": 3, "max_uses": 1, "expires_in_days": 7, "label": "ward 5"}, follow=True
    )
    page = response.content.decode()
    # the page itself says so and lists the three new ones, marked, each with its link
    assert "3 invitation(s) created" in page and "Invitations (4)" in page
    new = sorted(study.invitations.filter(label="ward 5").values_list("pk", flat=True))
    assert response.redirect_chain[-1][0].endswith(f"?new={new[0]}-{new[-1]}")
    assert page.count('<tr class="new"') == 3
    for invitation in study.invitations.all():
        assert reverse("cases:join", args=[invitation.token]) in page
    # the new ones as CSV, and all of them
    csv_new = admin_client.get(f"{url}?format=csv&new={new[0]}-{new[-1]}").content.decode()
    lines = csv_new.strip().splitlines()
    assert len(lines) == 4 and all("ward 5" in line and "/join/" in line for line in lines[1:])
    assert len(admin_client.get(url + "?format=csv").content.decode().strip().splitlines()) == 5


def test_an_invitation_revoked_from_its_row_is_audited_and_stops_working(
    admin_client, admin_user, client
):
    from audit.models import AuditEvent

    study = make_study(status=Study.Status.OPEN)
    keep, revoke = invitations_create(study=study, count=2)
    url = reverse("admin:cases_study_invitations", args=[study.pk])
    response = admin_client.post(url, {"revoke": revoke.pk}, follow=True)
    page = response.content.decode()
    assert "1 invitation(s) revoked" in page
    revoke.refresh_from_db()
    keep.refresh_from_db()
    assert revoke.revoked and not keep.revoked
    assert client.get(reverse("cases:join", args=[revoke.token])).status_code == 410
    (event,) = AuditEvent.objects.filter(action=AuditEvent.Action.INVITATIONS_REVOKE)
    assert event.after == {"invitations": [revoke.pk]} and event.actor == admin_user
    # a revoked row has no link to copy and no revoke button; a second revoke is a no-op
    assert f'value="{revoke.pk}" class="revoke"' not in page
    assert f'value="{keep.pk}" class="revoke"' in page
    admin_client.post(url, {"revoke": revoke.pk})
    assert AuditEvent.objects.filter(action=AuditEvent.Action.INVITATIONS_REVOKE).count() == 1
    # another study's invitation is refused, and nothing is revoked
    other = invitations_create(study=make_study(slug="other"), count=1)[0]
    page = admin_client.post(url, {"revoke": [keep.pk, other.pk]}, follow=True).content.decode()
    assert "Nothing was revoked" in page
    keep.refresh_from_db()
    other.refresh_from_db()
    assert not keep.revoked and not other.revoked
