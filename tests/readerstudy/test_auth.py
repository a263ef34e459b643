"""Authentication hardening: lockout after failed logins, idle and absolute timeouts."""

from __future__ import annotations

import time

import pytest
from django.urls import reverse

from audit.models import AuditEvent
from readerstudy.middleware import LOGIN_AT, SEEN_AT

pytestmark = pytest.mark.django_db


def login(client, password):
    return client.post(reverse("login"), {"username": "reader", "password": password})


def test_lockout_after_repeated_failed_logins(client, reader, settings):
    settings.AXES_FAILURE_LIMIT = 3
    for _ in range(3):
        login(client, "wrong")
    response = login(client, "pw-reader-123")  # right password, but locked
    assert response.status_code == 429
    assert "Too many failed logins" in response.content.decode()
    assert "_auth_user_id" not in client.session
    assert AuditEvent.objects.filter(action=AuditEvent.Action.LOGIN_FAILED).count() >= 3


def test_a_success_before_the_limit_resets_the_count(client, reader, settings):
    settings.AXES_FAILURE_LIMIT = 3
    login(client, "wrong")
    login(client, "wrong")
    assert login(client, "pw-reader-123").status_code == 302
    client.post(reverse("logout"))
    login(client, "wrong")
    assert login(client, "pw-reader-123").status_code == 302


def _age_session(client, *, login_ago: int, seen_ago: int) -> None:
    session = client.session
    now = int(time.time())
    session[LOGIN_AT] = now - login_ago
    session[SEEN_AT] = now - seen_ago
    session.save()


def test_idle_timeout_logs_out_on_the_server(client, reader, settings):
    settings.READERSTUDY_SESSION_IDLE_SECONDS = 600
    login(client, "pw-reader-123")
    _age_session(client, login_ago=700, seen_ago=30)
    assert client.get(reverse("api-reader-studies")).status_code == 200
    _age_session(client, login_ago=1400, seen_ago=601)
    assert client.get(reverse("api-reader-studies")).status_code == 403
    assert client.get(reverse("password_change")).status_code == 302


def test_absolute_timeout_even_when_active(client, reader, settings):
    settings.READERSTUDY_SESSION_ABSOLUTE_SECONDS = 3600
    login(client, "pw-reader-123")
    _age_session(client, login_ago=3601, seen_ago=5)
    assert client.get(reverse("api-reader-studies")).status_code == 403


def test_logout_ends_the_session_on_the_server(client, reader):
    from django.contrib.sessions.models import Session

    login(client, "pw-reader-123")
    key = client.session.session_key
    client.post(reverse("logout"))
    assert not Session.objects.filter(session_key=key).exists()
