"""Every audit event made in a request carries the request's client address and user
agent, set once for the whole request (audit.middleware); events of commands carry none.

Each action of ``AuditEvent.Action`` is in one of three tables below, and a test checks
that the tables cover them all: one made in a request has a test here driving it through
the real page or API endpoint.
"""

from __future__ import annotations

import datetime as dt
import io
import zipfile
from contextlib import contextmanager

import pytest
from django.core.management import call_command
from django.db.models import Max
from django.http import HttpResponse
from django.test import Client, RequestFactory
from django.urls import reverse
from django.utils import timezone
from rest_framework.test import APIClient

from audit.middleware import AuditOriginMiddleware, client_address, current_origin
from audit.models import AuditEvent
from audit.services import audit_log
from backups.services import DATA, backup_write
from cases.models import Case, Study
from cases.services import answer_submit, consent_give, invitations_create, study_admin_add
from inference.models import RegisteredModel
from tests.factories import (
    build_study,
    enrol,
    good_rows,
    make_study,
    ready_enrolment,
    study_change_post,
    write_bundle,
)

pytestmark = pytest.mark.django_db

A = AuditEvent.Action
IP, AGENT = "203.0.113.7", "Mozilla/5.0 (X11; Linux x86_64) audit-test/1.0"
ORIGIN = {"REMOTE_ADDR": IP, "HTTP_USER_AGENT": AGENT}

# Made by a page or an API call (each has a test below; some are made by commands too).
IN_REQUESTS = {
    A.ANSWER_SUBMIT,
    A.ANSWER_CHANGE,
    A.ENROLMENT_CREATE,
    A.CONSENT_GIVE,
    A.PROFILE_SAVE,
    A.INVITATIONS_CREATE,
    A.INVITATIONS_REVOKE,
    A.CASES_IMPORT,
    A.EXPORT_DOWNLOAD,
    A.MODEL_REGISTER,
    A.INFERENCE_RUN,
    A.LOGIN,
    A.LOGIN_FAILED,
    A.LOGOUT,
    A.USER_DEACTIVATED,
    A.PASSWORD_RESET,
    A.LOCKOUT_RESET,
    A.ENROLMENT_FINISH,
    A.STUDY_OPEN,
    A.STUDY_CLOSE,
    A.STUDY_CLOSING_DATE,
    A.STUDY_ADMIN_ADD,
    A.STUDY_ADMIN_REMOVE,
}
# Made only by management commands: restore_study.
OUTSIDE_REQUESTS = {A.BACKUP_RESTORE}
# Declared, but nothing logs it (a report request is not audited).
NOT_LOGGED = {A.REPORT_REQUEST}


def test_every_action_is_in_one_table():
    tables = [IN_REQUESTS, OUTSIDE_REQUESTS, NOT_LOGGED]
    assert sum(len(t) for t in tables) == len(set().union(*tables))  # disjoint
    assert set().union(*tables) == set(A)


@contextmanager
def logs(action: str):
    """Asserts that the block logs ``action``, every such event with the origin."""
    mark = AuditEvent.objects.aggregate(last=Max("id"))["last"] or 0
    yield
    events = AuditEvent.objects.filter(action=action, id__gt=mark)
    assert events.exists(), f"{action} was not logged"
    assert set(events.values_list("ip", "user_agent")) == {(IP, AGENT)}


def browser_of(user=None) -> Client:
    client = Client(**ORIGIN)
    if user is not None:
        client.force_login(user)
    return client


def api_of(user) -> APIClient:
    client = APIClient(**ORIGIN)
    client.force_authenticate(user)
    return client


def first_case(enrolment) -> Case:
    return Case.objects.get(pk=enrolment.case_order[0])


@pytest.fixture
def staff(admin_user) -> Client:
    return browser_of(admin_user)


# --- the reader ----------------------------------------------------------------------------


def test_registering_through_an_invitation_logs_the_enrolment_with_its_origin():
    study = build_study(2)
    (invitation,) = invitations_create(study=study, count=1)
    data = {"username": "newreader", "email": "n@example.org"}
    data |= {"password1": "violet-Harbour-91", "password2": "violet-Harbour-91"}
    with logs(A.ENROLMENT_CREATE), logs(A.LOGIN):
        response = browser_of().post(reverse("cases:join", args=[invitation.token]), data)
    assert response.status_code == 302


def test_joining_while_logged_in_logs_the_enrolment_with_its_origin(reader):
    (invitation,) = invitations_create(study=build_study(2), count=1)
    with logs(A.ENROLMENT_CREATE):
        browser_of(reader).post(reverse("cases:join", args=[invitation.token]))


def test_consent_on_the_page_and_by_the_api_carries_the_origin(reader, other_reader):
    study = build_study(2)
    enrol(study=study, user=reader)
    enrol(study=study, user=other_reader, seed=2)
    with logs(A.CONSENT_GIVE):
        browser_of(reader).post(reverse("cases:consent", args=[study.slug]), {"agree": "on"})
    with logs(A.CONSENT_GIVE):
        api_of(other_reader).post(reverse("api-reader-consent", args=[study.slug]))


def test_saving_the_profile_carries_the_origin(reader):
    study = build_study(2)
    consent_give(enrolment=enrol(study=study, user=reader))
    with logs(A.PROFILE_SAVE):
        response = browser_of(reader).post(
            reverse("cases:profile", args=[study.slug]),
            {"level": "attending", "years_in_dermatology": 4},
        )
    assert response.status_code == 302


def test_an_answer_on_the_case_page_carries_the_origin(reader):
    study = build_study(2)
    enrolment = ready_enrolment(study, reader)
    with logs(A.ANSWER_SUBMIT):
        response = browser_of(reader).post(
            reverse("cases:case", args=[study.slug]),
            {"case": first_case(enrolment).public_id, "answer": "MN"},
        )
    assert response.status_code == 302


def test_an_answer_by_the_api_carries_the_origin(reader):
    study = build_study(2)
    enrolment = ready_enrolment(study, reader)
    with logs(A.ANSWER_SUBMIT):
        response = api_of(reader).post(
            reverse("api-reader-answer", args=[study.slug]),
            {"case": first_case(enrolment).public_id, "answer": "MN"},
            format="json",
        )
    assert response.status_code == 201


def test_a_revised_answer_on_the_page_and_by_the_api_carries_the_origin(reader):
    study = build_study(3, allow_answer_changes=True)
    enrolment = ready_enrolment(study, reader)
    case = first_case(enrolment).public_id
    answer_submit(enrolment=enrolment, case_public_id=case, diagnosis_code="MN")
    with logs(A.ANSWER_CHANGE):
        response = browser_of(reader).post(
            reverse("cases:case_revise", args=[study.slug, 1]), {"case": case, "answer": "SK"}
        )
    assert response.status_code == 302
    with logs(A.ANSWER_CHANGE):
        response = api_of(reader).post(
            reverse("api-reader-answer", args=[study.slug]),
            {"case": case, "answer": "BCC", "revise": True},
            format="json",
        )
    assert response.status_code == 200


@pytest.mark.parametrize("path", ["page", "api"])
def test_confirming_the_finish_carries_the_origin(reader, path):
    study = build_study(1, allow_answer_changes=True)
    enrolment = ready_enrolment(study, reader)
    case = first_case(enrolment).public_id
    answer_submit(enrolment=enrolment, case_public_id=case, diagnosis_code="MN")
    with logs(A.ENROLMENT_FINISH):
        if path == "page":
            response = browser_of(reader).post(reverse("cases:done", args=[study.slug]))
            assert response.status_code == 302
        else:
            response = api_of(reader).post(reverse("api-reader-finish", args=[study.slug]))
            assert response.status_code == 200


def test_login_failed_login_and_logout_carry_the_origin(reader):
    browser = browser_of()
    with logs(A.LOGIN_FAILED):
        browser.post(reverse("login"), {"username": "reader", "password": "wrong"})
    with logs(A.LOGIN):
        browser.post(reverse("login"), {"username": "reader", "password": "pw-reader-123"})
    with logs(A.LOGOUT):
        browser.post(reverse("logout"))


# --- the staff ------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["console", "api"])
def test_creating_invitations_carries_the_origin(staff, admin_user, path):
    study = make_study()
    with logs(A.INVITATIONS_CREATE):
        if path == "console":
            response = staff.post(
                reverse("admin:cases_study_invitations", args=[study.pk]),
                {"count": 2, "max_uses": 1, "expires_in_days": 7, "label": ""},
            )
            assert response.status_code == 302
        else:
            response = api_of(admin_user).post(
                reverse("api-admin-invitations", args=[study.slug]), {"count": 2}, format="json"
            )
            assert response.status_code == 201


@pytest.mark.parametrize("path", ["console", "admin action"])
def test_revoking_invitations_carries_the_origin(staff, path):
    study = make_study()
    (invitation,) = invitations_create(study=study, count=1)
    with logs(A.INVITATIONS_REVOKE):
        if path == "console":
            response = staff.post(
                reverse("admin:cases_study_invitations", args=[study.pk]),
                {"revoke": invitation.pk},
            )
        else:
            response = staff.post(
                reverse("admin:cases_invitation_changelist"),
                {"action": "revoke", "_selected_action": [invitation.pk]},
            )
    assert response.status_code == 302


def test_opening_closing_and_the_closing_date_carry_the_origin(staff):
    study = build_study(1, status=Study.Status.DRAFT)
    url = reverse("admin:cases_study_lifecycle", args=[study.pk])
    with logs(A.STUDY_CLOSING_DATE):
        when = (timezone.now() + dt.timedelta(days=3)).strftime("%Y-%m-%dT%H:%M")
        assert staff.post(url, {"closes_at": when}).status_code == 302
    with logs(A.STUDY_OPEN):
        assert staff.post(url, {"do": "open"}).status_code == 302
    with logs(A.STUDY_CLOSE):
        assert staff.post(url, {"do": "close"}).status_code == 302


def test_adding_and_removing_a_study_admin_in_the_admin_carries_the_origin(
    staff, django_user_model
):
    study = build_study(1)
    helper = django_user_model.objects.create_user("helper-admin", is_staff=True)
    url = reverse("admin:cases_study_change", args=[study.pk])
    form = study_change_post(study)
    with logs(A.STUDY_ADMIN_ADD):
        response = staff.post(url, {**form, "admins": [helper.pk]})
        assert response.status_code == 302, response.content.decode()[:3000]
    with logs(A.STUDY_ADMIN_REMOVE):
        assert staff.post(url, {**form, "admins": []}).status_code == 302


def test_an_import_through_the_console_carries_the_origin(staff, tmp_path):
    study = make_study()
    folder = write_bundle(tmp_path / "b", good_rows(2))
    bundle = io.BytesIO()
    with zipfile.ZipFile(bundle, "w") as archive:
        for path in folder.rglob("*"):
            if path.is_file():
                archive.write(path, path.relative_to(folder).as_posix())
    bundle.seek(0)
    bundle.name = "bundle.zip"
    with logs(A.CASES_IMPORT):
        url = reverse("admin:cases_study_import", args=[study.pk])
        response = staff.post(url, {"bundle": bundle})
    assert response.status_code == 302


@pytest.mark.parametrize(
    "export",
    ["api answers.csv", "console answers.csv", "predictions.csv", "invitations.csv",
     "invitations admin action"],
)  # fmt: skip
def test_every_export_download_carries_the_origin(staff, admin_user, export):
    study = build_study(2)
    (invitation,) = invitations_create(study=study, count=1)
    with logs(A.EXPORT_DOWNLOAD):
        if export == "api answers.csv":
            response = api_of(admin_user).get(reverse("api-admin-answers-csv", args=[study.slug]))
        elif export == "console answers.csv":
            response = staff.get(reverse("admin:cases_study_answers_csv", args=[study.pk]))
        elif export == "predictions.csv":
            response = staff.get(reverse("inference:predictions_csv", args=[study.slug]))
        elif export == "invitations.csv":
            url = reverse("admin:cases_study_invitations", args=[study.pk])
            response = staff.get(url + "?format=csv")
        else:
            response = staff.post(
                reverse("admin:cases_invitation_changelist"),
                {"action": "export_csv", "_selected_action": [invitation.pk]},
            )
    assert response.status_code == 200 and response["Content-Type"].startswith("text/csv")


def test_registering_a_model_in_the_admin_carries_the_origin(staff):
    with logs(A.MODEL_REGISTER):
        response = staff.post(
            reverse("admin:inference_registeredmodel_add"),
            {"name": "random-cnn", "arch": "efficientnet_b4", "classes": "MN,SK,BCC",
             "img_size": 64},
        )  # fmt: skip
    assert response.status_code == 302


def test_starting_an_inference_run_carries_the_origin(staff):
    study = build_study(2)
    model = RegisteredModel.objects.create(
        name="cnn", arch="efficientnet_b4", classes=["MN", "SK", "BCC"],
        preprocessing={"input_size": 64}, weights_source="random",
    )  # fmt: skip
    # The task would be sent when the transaction commits, which a test never does.
    with logs(A.INFERENCE_RUN):
        response = staff.post(
            reverse("admin:inference_inferencerun_start"), {"study": study.pk, "model": model.pk}
        )
    assert response.status_code == 302


def test_a_password_set_and_an_unlock_by_the_study_admin_carry_the_origin(staff, reader):
    study = make_study()
    url = reverse(
        "admin:cases_study_reader_account", args=[study.pk, enrol(study=study, user=reader).pk]
    )
    with logs(A.PASSWORD_RESET):
        response = staff.post(
            url, {"new_password1": "violet-Harbour-91", "new_password2": "violet-Harbour-91"}
        )
    assert response.status_code == 302
    with logs(A.LOCKOUT_RESET):
        assert staff.post(url, {"unlock": "1"}).status_code == 302


def test_deactivating_a_user_in_the_admin_carries_the_origin(staff, reader):
    url = reverse("admin:auth_user_change", args=[reader.pk])
    data = {
        "username": reader.username,
        "date_joined_0": reader.date_joined.strftime("%Y-%m-%d"),
        "date_joined_1": reader.date_joined.strftime("%H:%M:%S"),
        "is_active": "",
    }
    with logs(A.USER_DEACTIVATED):
        response = staff.post(url, data)
    assert response.status_code == 302


# --- outside a request ------------------------------------------------------------------------


def no_origin(action: str) -> None:
    events = AuditEvent.objects.filter(action=action)
    assert events.exists() and set(events.values_list("ip", "user_agent")) == {(None, "")}


def test_events_of_commands_carry_no_origin(tmp_path, django_user_model):
    make_study()
    write_bundle(tmp_path / "b", good_rows(2))
    browser_of().get(reverse("login"))  # a request before them leaves nothing behind
    call_command("import_cases", "study", str(tmp_path / "b"))
    call_command("export_cases", "study", str(tmp_path / "out"))
    call_command("backup_study", "study", str(tmp_path / "backup.zip"))
    django_user_model.objects.create_user("helper", password="pw-helper-123")
    call_command("add_study_admin", "helper", "study")
    call_command("register_model", "cli-cnn", "--arch", "efficientnet_b4", "--classes", "MN,SK,BCC")
    for action in (A.CASES_IMPORT, A.EXPORT_DOWNLOAD, A.STUDY_ADMIN_ADD, A.MODEL_REGISTER):
        no_origin(action)


def test_a_service_called_outside_a_request_logs_no_origin(admin_user):
    study_admin_add(user=admin_user, study=make_study())
    no_origin(A.STUDY_ADMIN_ADD)


# --- the middleware itself ----------------------------------------------------------------


def test_the_origin_is_set_during_the_request_and_reset_after_it():
    seen = []

    def view(request):
        seen.append(current_origin())
        return HttpResponse()

    AuditOriginMiddleware(view)(RequestFactory().get("/", **ORIGIN))
    assert [(o.ip, o.user_agent) for o in seen] == [(IP, AGENT)]
    assert current_origin() is None


def test_the_origin_is_reset_when_the_request_fails():
    def view(request):
        raise RuntimeError("the view failed")

    with pytest.raises(RuntimeError):
        AuditOriginMiddleware(view)(RequestFactory().get("/", **ORIGIN))
    assert current_origin() is None
    assert audit_log(action=A.LOGIN, actor_name="x").ip is None


def test_an_event_after_a_request_in_the_same_thread_has_no_origin(reader):
    browser_of(reader).get(reverse("home"))
    event = audit_log(action=A.LOGIN, actor_name="x")
    assert (event.ip, event.user_agent) == (None, "")


def test_explicit_values_win_and_the_user_agent_is_cut_to_the_field():
    length = AuditEvent._meta.get_field("user_agent").max_length

    def view(request):
        audit_log(action=A.LOGIN, actor_name="x", ip="198.51.100.1")
        return HttpResponse()

    request = RequestFactory().get("/", REMOTE_ADDR=IP, HTTP_USER_AGENT="a" * (length + 50))
    AuditOriginMiddleware(view)(request)
    event = AuditEvent.objects.get()
    assert event.ip == "198.51.100.1" and event.user_agent == "a" * length


@pytest.mark.parametrize(
    ("from_proxy", "meta", "expected"),
    [
        (False, {"REMOTE_ADDR": IP, "HTTP_X_FORWARDED_FOR": "198.51.100.9"}, IP),
        (True, {"REMOTE_ADDR": "127.0.0.1", "HTTP_X_FORWARDED_FOR": "10.0.0.1, 198.51.100.9"},
         "198.51.100.9"),
        (True, {"REMOTE_ADDR": IP}, IP),  # no header: the peer itself
        (True, {"REMOTE_ADDR": "127.0.0.1", "HTTP_X_FORWARDED_FOR": "bogus"}, None),
        (False, {"REMOTE_ADDR": ""}, None),  # a Unix socket
        (False, {"REMOTE_ADDR": "2001:db8::1"}, "2001:db8::1"),
    ],
)  # fmt: skip
def test_the_client_address_honours_the_trusted_proxy_only(settings, from_proxy, meta, expected):
    settings.READERSTUDY_CLIENT_ADDRESS_FROM_PROXY = from_proxy
    assert client_address(RequestFactory().get("/", **meta)) == expected


def test_a_backup_leaves_the_origin_out(reader, tmp_path):
    study = build_study(2)
    enrolment = ready_enrolment(study, reader)
    with logs(A.ANSWER_SUBMIT):
        api_of(reader).post(
            reverse("api-reader-answer", args=[study.slug]),
            {"case": first_case(enrolment).public_id, "answer": "MN"},
            format="json",
        )
    backup_write(study=study, destination=tmp_path / "b.zip")
    with zipfile.ZipFile(tmp_path / "b.zip") as archive:
        data = archive.read(DATA).decode()
    assert IP not in data and AGENT not in data
