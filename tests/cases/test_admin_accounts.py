"""A study admin sets a new password for (or only unlocks) a reader of their study."""

from __future__ import annotations

import pytest
from axes.models import AccessAttempt
from django.core.exceptions import ValidationError
from django.core.management import call_command
from django.urls import reverse

from audit.models import AuditEvent
from cases.services import AccountError, reader_password_set, reader_unlock
from tests.factories import enrol, make_study

pytestmark = pytest.mark.django_db

NEW_PASSWORD = "violet-Harbour-91"


@pytest.fixture
def world(django_user_model, reader):
    a, b = make_study(slug="study-a"), make_study(slug="study-b")
    admin_a = django_user_model.objects.create_user("admin-a", password="pw-admin-a-123")
    call_command("add_study_admin", "admin-a", "study-a")
    admin_b = django_user_model.objects.create_user("admin-b", password="pw-admin-b-123")
    call_command("add_study_admin", "admin-b", "study-b")
    return {
        "a": a,
        "b": b,
        "admin_a": django_user_model.objects.get(pk=admin_a.pk),
        "admin_b": django_user_model.objects.get(pk=admin_b.pk),
        "enrolment": enrol(study=a, user=reader),
    }


def account_url(study, enrolment) -> str:
    return reverse("admin:cases_study_reader_account", args=[study.pk, enrolment.pk])


def lock_out(client, username: str, settings) -> None:
    settings.AXES_FAILURE_LIMIT = 3
    for _ in range(3):
        client.post(reverse("login"), {"username": username, "password": "wrong"})


def can_log_in(client, username: str, password: str) -> bool:
    response = client.post(reverse("login"), {"username": username, "password": password})
    ok = response.status_code == 302 and "_auth_user_id" in client.session
    client.post(reverse("logout"))
    return ok


def test_study_admin_sets_a_new_password_audited_and_unlocking(client, world, reader, settings):
    lock_out(client, "reader", settings)
    assert not can_log_in(client, "reader", "pw-reader-123")
    client.force_login(world["admin_a"])
    url = account_url(world["a"], world["enrolment"])
    body = client.get(url).content.decode()
    # Three wrong passwords, then the right one refused while locked: four failures.
    assert "<strong>Locked out</strong>" in body and "4 failed login(s)" in body

    response = client.post(url, {"new_password1": NEW_PASSWORD, "new_password2": NEW_PASSWORD})
    assert response.status_code == 302
    assert response["Location"] == reverse("admin:cases_study_progress", args=[world["a"].pk])
    reader.refresh_from_db()
    assert reader.check_password(NEW_PASSWORD) and not reader.check_password("pw-reader-123")
    assert not AccessAttempt.objects.filter(username="reader").exists()

    event = AuditEvent.objects.get(action=AuditEvent.Action.PASSWORD_RESET)
    assert event.actor_id == world["admin_a"].pk and event.study == "study-a"
    assert (event.object_type, event.object_id) == ("auth.user", str(reader.pk))
    assert event.after == {
        "reader": "reader",
        "reader_code": world["enrolment"].reader_code,
        "lockout_records_cleared": 1,
    }
    assert NEW_PASSWORD not in str(event.before) + str(event.after)

    client.post(reverse("logout"))
    assert can_log_in(client, "reader", NEW_PASSWORD)


def test_a_new_password_ends_the_readers_other_sessions(client, world, reader):
    reader_client = type(client)()
    reader_client.force_login(reader)
    assert reader_client.get(reverse("password_change")).status_code == 200
    reader_password_set(actor=world["admin_a"], enrolment=world["enrolment"], password=NEW_PASSWORD)
    response = reader_client.get(reverse("password_change"))
    assert response.status_code == 302 and reverse("login") in response["Location"]


@pytest.mark.parametrize(
    "first, second, message",
    [
        ("violet-Harbour-91", "violet-Harbour-92", "The two password fields didn\u2019t match."),
        ("k3-Yz", "k3-Yz", "This password is too short. It must contain at least 8 characters."),
        ("password123", "password123", "This password is too common."),
        ("83927461503", "83927461503", "This password is entirely numeric."),
        ("reader12", "reader12", "The password is too similar to the username."),
    ],
)
def test_a_bad_new_password_is_refused_with_the_reason(
    client, world, reader, first, second, message
):
    client.force_login(world["admin_a"])
    response = client.post(
        account_url(world["a"], world["enrolment"]),
        {"new_password1": first, "new_password2": second},
    )
    assert response.status_code == 200
    assert message in response.content.decode().replace("&#x27;", "'")
    reader.refresh_from_db()
    assert reader.check_password("pw-reader-123")
    assert not AuditEvent.objects.filter(action=AuditEvent.Action.PASSWORD_RESET).exists()


def test_unlock_only_keeps_the_password(client, world, reader, settings):
    lock_out(client, "reader", settings)
    client.force_login(world["admin_a"])
    response = client.post(account_url(world["a"], world["enrolment"]), {"unlock": "1"})
    assert response.status_code == 302
    event = AuditEvent.objects.get(action=AuditEvent.Action.LOCKOUT_RESET)
    assert event.actor_id == world["admin_a"].pk and event.study == "study-a"
    assert event.after["lockout_records_cleared"] == 1
    client.post(reverse("logout"))
    assert can_log_in(client, "reader", "pw-reader-123")


def test_admin_of_another_study_cannot_reach_the_reader(client, world, reader):
    client.force_login(world["admin_b"])
    enrolment = world["enrolment"]
    for study in (world["a"], world["b"]):  # their own study id does not help either
        url = account_url(study, enrolment)
        assert client.get(url).status_code == 404
        data = {"new_password1": NEW_PASSWORD, "new_password2": NEW_PASSWORD}
        assert client.post(url, data).status_code == 404
        assert client.post(url, {"unlock": "1"}).status_code == 404
    reader.refresh_from_db()
    assert reader.check_password("pw-reader-123")
    with pytest.raises(AccountError, match=r"^you do not administer this reader's study$"):
        reader_password_set(actor=world["admin_b"], enrolment=enrolment, password=NEW_PASSWORD)
    with pytest.raises(AccountError, match=r"^you do not administer this reader's study$"):
        reader_unlock(actor=world["admin_b"], enrolment=enrolment)


def test_a_staff_account_is_refused(client, world):
    # admin-b is enrolled as a reader of study A: admin-a still may not change them.
    enrolment = enrol(study=world["a"], user=world["admin_b"])
    message = "admin-b is a staff account: only a superuser can change it, in the Users admin"
    client.force_login(world["admin_a"])
    url = account_url(world["a"], enrolment)
    response = client.get(url)
    assert response.status_code == 200 and message in response.content.decode()
    response = client.post(url, {"new_password1": NEW_PASSWORD, "new_password2": NEW_PASSWORD})
    assert response.status_code == 200 and message in response.content.decode()
    response = client.post(url, {"unlock": "1"})
    assert response.status_code == 200 and message in response.content.decode()
    world["admin_b"].refresh_from_db()
    assert world["admin_b"].check_password("pw-admin-b-123")
    with pytest.raises(AccountError, match=f"^{message}$"):
        reader_password_set(actor=world["admin_a"], enrolment=enrolment, password=NEW_PASSWORD)
    assert not AuditEvent.objects.filter(
        action__in=[AuditEvent.Action.PASSWORD_RESET, AuditEvent.Action.LOCKOUT_RESET]
    ).exists()


def test_a_reader_cannot_reach_the_page(client, world, reader, other_reader):
    enrol(study=world["a"], user=other_reader)
    client.force_login(reader)
    url = account_url(world["a"], world["enrolment"])
    response = client.get(url)
    assert response.status_code == 302 and "/admin/login/" in response["Location"]
    response = client.post(url, {"new_password1": NEW_PASSWORD, "new_password2": NEW_PASSWORD})
    assert response.status_code == 302 and "/admin/login/" in response["Location"]
    reader.refresh_from_db()
    assert reader.check_password("pw-reader-123")


def test_the_service_validates_the_password(world):
    with pytest.raises(ValidationError) as caught:
        reader_password_set(actor=world["admin_a"], enrolment=world["enrolment"], password="abc")
    assert "This password is too short. It must contain at least 8 characters." in (
        caught.value.messages
    )


def test_progress_and_enrolment_pages_link_to_the_account_page(client, world):
    client.force_login(world["admin_a"])
    url = account_url(world["a"], world["enrolment"])
    progress = client.get(reverse("admin:cases_study_progress", args=[world["a"].pk]))
    assert f'href="{url}"' in progress.content.decode()
    change = client.get(reverse("admin:cases_enrolment_change", args=[world["enrolment"].pk]))
    assert f'href="{url}"' in change.content.decode()


def test_superuser_may_reset_any_reader(admin_client, world, reader):
    url = account_url(world["a"], world["enrolment"])
    response = admin_client.post(
        url, {"new_password1": NEW_PASSWORD, "new_password2": NEW_PASSWORD}
    )
    assert response.status_code == 302
    reader.refresh_from_db()
    assert reader.check_password(NEW_PASSWORD)


@pytest.mark.parametrize("from_proxy", [False, True])
def test_lockouts_count_the_address_the_audit_trail_records(client, reader, settings, from_proxy):
    """Behind the trusted proxy, failures from one reader's address do not lock out the
    same user name from another address that comes through the same proxy; without a
    proxy, X-Forwarded-For is whatever the client sent and is ignored."""
    settings.READERSTUDY_CLIENT_ADDRESS_FROM_PROXY = from_proxy
    settings.AXES_FAILURE_LIMIT = 3
    via_proxy = {"REMOTE_ADDR": "10.0.0.2"}
    for _ in range(3):
        client.post(
            reverse("login"),
            {"username": "reader", "password": "wrong"},
            HTTP_X_FORWARDED_FOR="198.51.100.7",
            **via_proxy,
        )
    attempt = AccessAttempt.objects.get(username="reader")
    assert attempt.ip_address == ("198.51.100.7" if from_proxy else "10.0.0.2")
    response = client.post(
        reverse("login"),
        {"username": "reader", "password": "pw-reader-123"},
        HTTP_X_FORWARDED_FOR="203.0.113.9",
        **via_proxy,
    )
    logged_in = response.status_code == 302 and "_auth_user_id" in client.session
    assert logged_in is from_proxy
