"""The audit trail: what is logged, and that nothing can rewrite it."""

from __future__ import annotations

import pytest
from django.contrib.sessions.models import Session
from django.db import DatabaseError, connection, transaction
from django.urls import reverse

from audit.models import AppendOnlyError, AuditEvent
from audit.services import audit_log
from cases.models import Case
from cases.services import answer_submit, invitations_create
from tests.factories import build_study, good_rows, make_study, ready_enrolment, write_bundle

pytestmark = pytest.mark.django_db

A = AuditEvent.Action


def actions() -> list[str]:
    return list(AuditEvent.objects.order_by("id").values_list("action", flat=True))


def test_reader_actions_are_logged_with_before_and_after(reader):
    study = build_study(2, allow_answer_changes=True)
    enrolment = ready_enrolment(study, reader)
    first = Case.objects.get(pk=enrolment.case_order[0]).public_id
    answer_submit(enrolment=enrolment, case_public_id=first, diagnosis_code="MN")
    answer_submit(enrolment=enrolment, case_public_id=first, diagnosis_code="SK")
    assert actions() == [
        A.ENROLMENT_CREATE,
        A.CONSENT_GIVE,
        A.PROFILE_SAVE,
        A.ANSWER_SUBMIT,
        A.ANSWER_CHANGE,
    ]
    change = AuditEvent.objects.get(action=A.ANSWER_CHANGE)
    assert change.actor == reader and change.actor_name == "reader" and change.study == "study"
    assert change.before["answer"] == "MN" and change.after["answer"] == "SK"
    assert change.at.utcoffset().total_seconds() == 0


def test_a_rolled_back_answer_leaves_no_event(reader):
    study = build_study(2)
    enrolment = ready_enrolment(study, reader)
    first = Case.objects.get(pk=enrolment.case_order[0]).public_id
    before = AuditEvent.objects.count()
    with pytest.raises(RuntimeError), transaction.atomic():
        answer_submit(enrolment=enrolment, case_public_id=first, diagnosis_code="MN")
        raise RuntimeError("the request failed after the answer")
    assert AuditEvent.objects.count() == before


def test_import_export_and_invitations_are_logged(tmp_path, admin_client, admin_user):
    from django.core.management import call_command

    make_study()
    write_bundle(tmp_path / "b", good_rows(2))
    call_command("import_cases", "study", str(tmp_path / "b"))
    event = AuditEvent.objects.get(action=A.CASES_IMPORT)
    assert event.actor_name.startswith("cli") and event.after["cases"] == ["c000", "c001"]
    call_command("export_cases", "study", str(tmp_path / "out"))
    admin_client.get(reverse("api-admin-answers-csv", args=["study"]))
    downloads = AuditEvent.objects.filter(action=A.EXPORT_DOWNLOAD)
    assert downloads.count() == 2 and downloads.filter(actor=admin_user).exists()
    invitations_create(study=make_study(slug="s2"), count=3, created_by=admin_user)
    assert AuditEvent.objects.get(action=A.INVITATIONS_CREATE).after["count"] == 3


def test_login_logout_and_failed_login_are_logged(client, reader):
    client.post(reverse("login"), {"username": "reader", "password": "wrong"})
    client.post(reverse("login"), {"username": "reader", "password": "pw-reader-123"})
    client.post(reverse("logout"))
    assert actions() == [A.LOGIN_FAILED, A.LOGIN, A.LOGOUT]
    failed = AuditEvent.objects.get(action=A.LOGIN_FAILED)
    assert failed.actor_name == "reader" and failed.ip == "127.0.0.1"
    assert "wrong" not in str(failed.after)  # never the password


def test_events_cannot_be_updated_or_deleted():
    event = audit_log(action=A.LOGIN, actor_name="x")
    event.action = A.LOGOUT
    with pytest.raises(AppendOnlyError):
        event.save()
    with pytest.raises(AppendOnlyError):
        event.delete()
    with pytest.raises(AppendOnlyError):
        AuditEvent.objects.filter(pk=event.pk).update(action=A.LOGOUT)
    with pytest.raises(AppendOnlyError):
        AuditEvent.objects.all().delete()
    assert AuditEvent.objects.get(pk=event.pk).action == A.LOGIN


@pytest.mark.postgres
@pytest.mark.postgres_only
def test_the_database_refuses_raw_updates_and_deletes():
    event = audit_log(action=A.LOGIN, actor_name="x")
    for sql in (
        "UPDATE audit_auditevent SET action = 'auth.logout' WHERE id = %s",
        "DELETE FROM audit_auditevent WHERE id = %s",
    ):
        with (
            pytest.raises(DatabaseError, match="append-only"),
            transaction.atomic(),
            connection.cursor() as cursor,
        ):
            cursor.execute(sql, [event.pk])
    assert AuditEvent.objects.get(pk=event.pk).action == A.LOGIN


def test_admin_lists_and_exports_but_cannot_change(admin_client):
    audit_log(action=A.LOGIN, actor_name="someone")
    assert admin_client.get(reverse("admin:audit_auditevent_changelist")).status_code == 200
    event = AuditEvent.objects.first()
    response = admin_client.post(
        reverse("admin:audit_auditevent_changelist"),
        {"action": "export_csv", "_selected_action": [event.pk]},
    )
    assert response["Content-Type"].startswith("text/csv") and b"someone" in response.content
    assert admin_client.get(reverse("admin:audit_auditevent_add")).status_code == 403
    response = admin_client.post(
        reverse("admin:audit_auditevent_delete", args=[event.pk]), {"post": "yes"}
    )
    assert response.status_code == 403 and AuditEvent.objects.filter(pk=event.pk).exists()


def test_deactivating_a_user_ends_their_live_sessions(client, reader):
    client.post(reverse("login"), {"username": "reader", "password": "pw-reader-123"})
    assert Session.objects.count() == 1
    reader.is_active = False
    reader.save()
    assert Session.objects.count() == 0
    assert client.get(reverse("api-reader-studies")).status_code == 403
    event = AuditEvent.objects.get(action=A.USER_DEACTIVATED)
    assert event.after == {"sessions_ended": 1}


def test_login_gives_a_new_session_key(client, reader):
    client.get(reverse("login"))
    client.cookies["sessionid"] = "attacker-chosen-key"
    client.post(reverse("login"), {"username": "reader", "password": "pw-reader-123"})
    assert client.cookies["sessionid"].value != "attacker-chosen-key"
    assert Session.objects.filter(session_key="attacker-chosen-key").count() == 0


def test_invitation_use_is_logged_as_the_reader(client):
    study = build_study(1)
    token = invitations_create(study=study, count=1)[0].token
    client.post(
        reverse("cases:join", args=[token]),
        {
            "username": "dr.x",
            "email": "x@example.org",
            "password1": "a-Long-pass-phrase-9",
            "password2": "a-Long-pass-phrase-9",
        },
    )
    event = AuditEvent.objects.get(action=A.ENROLMENT_CREATE)
    assert event.actor_name == "dr.x"
