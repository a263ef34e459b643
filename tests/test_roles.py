"""Study admins are scoped per study: an admin of study A cannot see study B."""

from __future__ import annotations

import pytest
from django.core.management import call_command
from django.urls import reverse

from audit.models import AuditEvent
from audit.services import audit_log
from cases.models import Study
from tests.factories import CaseFactory, make_study

pytestmark = pytest.mark.django_db


@pytest.fixture
def studies():
    a, b = make_study(slug="study-a"), make_study(slug="study-b")
    CaseFactory(study=a, source_id="only-in-study-a")
    CaseFactory(study=b, source_id="only-in-study-b")
    return a, b


@pytest.fixture
def admin_a(django_user_model, studies):
    user = django_user_model.objects.create_user("admin-a", password="pw-admin-a-123")
    call_command("add_study_admin", "admin-a", "study-a")
    user.refresh_from_db()
    return user


def test_add_study_admin_makes_a_scoped_staff_user(admin_a, studies):
    a, _ = studies
    assert admin_a.is_staff and not admin_a.is_superuser
    assert list(admin_a.administered_studies.all()) == [a]
    assert admin_a.has_perm("cases.view_case") and not admin_a.has_perm("cases.delete_answer")


@pytest.mark.parametrize(
    "url_name, study_in_body",
    [
        ("admin:cases_study_changelist", True),
        ("admin:cases_case_changelist", True),
        ("admin:cases_caseimage_changelist", True),
    ],
)
def test_admin_lists_show_only_the_admins_studies(client, admin_a, url_name, study_in_body):
    client.force_login(admin_a)
    body = client.get(reverse(url_name)).content.decode()
    # Markers long enough never to occur by chance (a two-letter source id once
    # matched a CSRF token).
    assert "study-a" in body or "only-in-study-a" in body or "Study-A" in body
    assert "study-b" not in body and "only-in-study-b" not in body and "Study-B" not in body


@pytest.mark.parametrize(
    "view", ["overview", "progress", "invitations", "import", "answers_csv", "change"]
)
def test_another_studys_admin_pages_are_404(client, admin_a, studies, view):
    a, b = studies
    client.force_login(admin_a)
    assert client.get(reverse(f"admin:cases_study_{view}", args=[a.pk])).status_code == 200
    assert client.get(reverse(f"admin:cases_study_{view}", args=[b.pk])).status_code in (302, 404)


def test_api_admin_endpoints_are_scoped(client, admin_a):
    client.force_login(admin_a)
    slugs = [s["slug"] for s in client.get(reverse("api-admin-studies")).json()["results"]]
    assert slugs == ["study-a"]
    for name in (
        "api-admin-study",
        "api-admin-cases",
        "api-admin-answers-csv",
        "api-admin-enrolments",
        "api-admin-invitations",
    ):
        assert client.get(reverse(name, args=["study-a"])).status_code == 200, name
        assert client.get(reverse(name, args=["study-b"])).status_code == 404, name


def test_images_are_scoped(client, admin_a, studies):
    a, b = studies
    client.force_login(admin_a)
    for study, status in ((a, 200), (b, 404)):
        image = study.cases.get().images.get(kind="dermoscopic")
        for variant in ("web", "original"):
            url = reverse("cases:image", args=[image.public_id, variant])
            assert client.get(url).status_code == status


def test_audit_events_are_scoped(client, admin_a):
    audit_log(action=AuditEvent.Action.CASES_IMPORT, study="study-a", actor_name="x")
    audit_log(action=AuditEvent.Action.CASES_IMPORT, study="study-b", actor_name="y")
    client.force_login(admin_a)
    body = client.get(reverse("admin:audit_auditevent_changelist")).content.decode()
    assert "study-a" in body and "study-b" not in body


def test_a_study_admin_who_creates_a_study_administers_it(client, admin_a):
    from django.contrib.auth.models import Permission

    admin_a.user_permissions.add(Permission.objects.get(codename="add_study"))
    client.force_login(admin_a)
    response = client.post(
        reverse("admin:cases_study_add"),
        {
            "title": "New",
            "slug": "new",
            "status": "draft",
            "shuffle_cases": "on",
            "show_clinical_image": "on",
            "consent_text": "",
            "consent_version": "",
            "required_profile_fields": ["level"],
            "study_choices-TOTAL_FORMS": "0",
            "study_choices-INITIAL_FORMS": "0",
        },
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    assert Study.objects.get(slug="new").admins.filter(pk=admin_a.pk).exists()


def test_superuser_sees_both_studies(admin_client, studies):
    body = admin_client.get(reverse("admin:cases_study_changelist")).content.decode()
    assert "Study-A" in body and "Study-B" in body


def test_reader_account_page_is_scoped(client, admin_a, studies, django_user_model, reader):
    from tests.factories import enrol

    a, b = studies
    urls = {
        study: reverse(
            "admin:cases_study_reader_account", args=[study.pk, enrol(study=study, user=reader).pk]
        )
        for study in (a, b)
    }
    client.force_login(admin_a)
    assert client.get(urls[a]).status_code == 200
    assert client.get(urls[b]).status_code == 404
    # Staff who administer no study see no reader at all.
    plain = django_user_model.objects.create_user("plain-staff", password="x", is_staff=True)
    client.force_login(plain)
    assert client.get(urls[a]).status_code == 404
    assert client.post(urls[a], {"unlock": "1"}).status_code == 404
    assert not AuditEvent.objects.filter(action=AuditEvent.Action.LOCKOUT_RESET).exists()
