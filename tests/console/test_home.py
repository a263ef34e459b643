"""The admin's home page lists the studies the user administers, each linked to its
dashboard; Run inference, opened from a dashboard, has the study picked and goes back to
it. Someone else's study is never listed or picked."""

from __future__ import annotations

import re

import pytest
from django.urls import reverse

from cases.models import Study
from cases.services import study_admin_add
from inference.models import InferenceRun
from inference.services import model_register
from tests.factories import build_study

pytestmark = pytest.mark.django_db


def _rows(html: str) -> list[str]:
    return re.findall(
        r'<tr data-testid="study-row"><th scope="row"><a href="[^"]+">([^<]+)</a>', html
    )


def test_home_lists_my_studies_open_first_then_drafts_then_closed(client, study_admin):
    studies = {
        "closed": build_study(1, slug="closed", status=Study.Status.CLOSED),
        "draft": build_study(1, slug="draft", status=Study.Status.DRAFT),
        "open": build_study(2, slug="open"),
    }
    for study in studies.values():
        study_admin_add(user=study_admin, study=study)
    build_study(1, slug="not-mine")
    client.force_login(study_admin)
    html = client.get(reverse("admin:index")).content.decode()
    assert _rows(html) == ["Open", "Draft", "Closed"]
    assert reverse("admin:cases_study_overview", args=[studies["open"].pk]) in html
    assert "Not-Mine" not in html


def test_home_of_staff_without_a_study_says_so(client, plain_staff):
    client.force_login(plain_staff)
    html = client.get(reverse("admin:index")).content.decode()
    assert "You administer no study yet." in html and _rows(html) == []


def test_run_inference_from_the_dashboard_picks_the_study_and_returns_to_it(
    client, study_admin, monkeypatch
):
    from inference.tasks import run_inference

    monkeypatch.setattr(run_inference, "apply_async", lambda *a, **k: None)
    mine, theirs = build_study(1, slug="mine"), build_study(1, slug="theirs")
    study_admin_add(user=study_admin, study=mine)
    model = model_register(name="tiny", arch="efficientnet_b4_aux", classes="MN,SK,BCC",
                           img_size=64)  # fmt: skip
    client.force_login(study_admin)
    url = reverse("admin:inference_inferencerun_start")
    page = client.get(f"{url}?study={mine.pk}").content.decode()
    assert re.search(rf'<option value="{mine.pk}" selected>', page)
    assert reverse("admin:cases_study_overview", args=[mine.pk]) in page  # its breadcrumb
    # someone else's study is not picked (nor named)
    other = client.get(f"{url}?study={theirs.pk}").content.decode()
    assert "selected>Mine" not in other and "Theirs" not in other
    response = client.post(url, {"study": mine.pk, "model": model.pk})
    assert response.status_code == 302
    assert response["Location"] == reverse("admin:cases_study_overview", args=[mine.pk])
    run = InferenceRun.objects.get(study=mine)
    overview = client.get(response["Location"]).content.decode()
    assert f'data-run="{run.pk}" data-active="1"' in overview


def test_a_new_study_opens_on_its_overview(admin_client):
    response = admin_client.post(
        reverse("admin:cases_study_add"),
        {
            "title": "New one",
            "slug": "new-one",
            "status": "draft",
            "consent_version": "v1",
            "study_choices-TOTAL_FORMS": "0",
            "study_choices-INITIAL_FORMS": "0",
        },
    )
    study = Study.objects.filter(slug="new-one").first()
    assert study is not None, response.content.decode()[:3000]
    assert response["Location"] == reverse("admin:cases_study_overview", args=[study.pk])
