"""A study's lifecycle in the console: open and close after a confirmation, a closing
date after which it closes itself, import only into a draft, admins only from staff."""

from __future__ import annotations

import datetime as dt

import pytest
from django.urls import reverse
from django.utils import timezone

from audit.models import AuditEvent
from cases.models import Answer, Case, Study
from cases.selectors import Step, reader_step
from cases.services import (
    AnswerRejected,
    InvitationInvalid,
    answer_submit,
    invitation_check,
    invitations_create,
    studies_close_due,
)
from tests.factories import build_study, make_study, ready_enrolment, study_change_post

pytestmark = pytest.mark.django_db
A = AuditEvent.Action


def lifecycle(study) -> str:
    return reverse("admin:cases_study_lifecycle", args=[study.pk])


def test_a_draft_opens_only_when_ready_and_after_a_confirmation(admin_client, admin_user):
    empty = make_study(slug="empty", consent_text="")
    page = admin_client.get(lifecycle(empty)).content.decode()
    assert "It cannot open yet: it has no cases: import them first; it has no consent text" in page
    assert 'data-testid="confirm-open"' not in page
    response = admin_client.post(lifecycle(empty), {"do": "open"}, follow=True)
    assert "cannot open" in response.content.decode()
    empty.refresh_from_db()
    assert empty.status == Study.Status.DRAFT

    study = build_study(2, status=Study.Status.DRAFT)
    page = admin_client.get(lifecycle(study)).content.decode()
    assert "The cases and the choices are then fixed" in page and "confirm-open" in page
    overview = admin_client.post(lifecycle(study), {"do": "open"}, follow=True)
    assert "is open: readers can join and answer" in overview.content.decode()
    study.refresh_from_db()
    assert study.status == Study.Status.OPEN
    (event,) = AuditEvent.objects.filter(action=A.STUDY_OPEN)
    assert event.actor == admin_user and event.after["status"] == "open"


def test_closing_says_what_follows_and_stops_every_reader(admin_client, reader):
    study = build_study(2)
    enrolment = ready_enrolment(study, reader)
    page = admin_client.get(lifecycle(study)).content.decode()
    assert "1 of 1 reader(s) have not finished" in page
    admin_client.post(lifecycle(study), {"do": "close"})
    study.refresh_from_db()
    assert study.status == Study.Status.CLOSED
    enrolment.refresh_from_db()
    assert reader_step(enrolment=enrolment) == Step.CLOSED
    assert AuditEvent.objects.filter(action=A.STUDY_CLOSE).count() == 1
    # a closed study is not opened again, nor closed twice
    response = admin_client.post(lifecycle(study), {"do": "close"}, follow=True)
    assert "not open" in response.content.decode()
    assert "confirm-open" not in admin_client.get(lifecycle(study)).content.decode()


def test_a_study_closes_itself_at_its_closing_date(admin_client, reader):
    study = build_study(3)
    enrolment = ready_enrolment(study, reader)
    (invitation,) = invitations_create(study=study, count=1)
    # in the past: refused by the form
    past = (timezone.now() - dt.timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M")
    page = admin_client.post(lifecycle(study), {"closes_at": past}).content.decode()
    assert "The closing date must be in the future." in page
    soon = timezone.now() + dt.timedelta(days=2)
    admin_client.post(lifecycle(study), {"closes_at": soon.strftime("%Y-%m-%dT%H:%M")})
    study.refresh_from_db()
    assert study.closes_at is not None and study.is_open()
    assert AuditEvent.objects.filter(action=A.STUDY_CLOSING_DATE).count() == 1
    overview = admin_client.get(reverse("admin:cases_study_overview", args=[study.pk]))
    assert "it closes itself on" in overview.content.decode()
    # the date passes: closed to readers at once, before the beat records it
    Study.objects.filter(pk=study.pk).update(closes_at=timezone.now() - dt.timedelta(seconds=1))
    enrolment.refresh_from_db()
    assert reader_step(enrolment=enrolment) == Step.CLOSED
    first = Case.objects.get(pk=enrolment.case_order[0])
    with pytest.raises(AnswerRejected) as refused:
        answer_submit(enrolment=enrolment, case_public_id=first.public_id, diagnosis_code="MN")
    assert refused.value.code == "study_closed" and not Answer.objects.exists()
    with pytest.raises(InvitationInvalid):
        invitation_check(token=invitation.token)
    # the beat's task records it, once, as the system
    assert studies_close_due() == [study.slug]
    assert studies_close_due() == []
    study.refresh_from_db()
    assert study.status == Study.Status.CLOSED
    event = AuditEvent.objects.get(action=A.STUDY_CLOSE)
    assert event.actor is None and event.after["reason"].startswith("closing date")


def test_the_beat_closes_due_studies_every_minute(settings):
    entry = settings.CELERY_BEAT_SCHEDULE["close-due-studies"]
    assert entry["task"] == "cases.tasks.close_due_studies" and entry["schedule"] == 60.0
    from cases.tasks import close_due_studies

    study = build_study(1)
    Study.objects.filter(pk=study.pk).update(closes_at=timezone.now() - dt.timedelta(minutes=1))
    assert close_due_studies() == [study.slug]


def test_import_is_offered_only_for_a_draft(admin_client):
    draft = make_study(slug="draft")
    study = build_study(1)  # open
    url = reverse("admin:cases_study_import", args=[study.pk])
    page = admin_client.get(url).content.decode()
    assert "Cases can be imported only into a draft study" in page
    assert 'type="file"' not in page
    assert (
        'type="file"'
        in admin_client.get(reverse("admin:cases_study_import", args=[draft.pk])).content.decode()
    )
    overview = admin_client.get(reverse("admin:cases_study_overview", args=[study.pk]))
    assert reverse("admin:cases_study_import", args=[study.pk]) not in overview.content.decode()


def test_the_admin_form_opens_nothing_and_takes_only_staff_as_admins(
    admin_client, django_user_model, reader
):
    study = build_study(1, status=Study.Status.DRAFT)
    url = reverse("admin:cases_study_change", args=[study.pk])
    form = study_change_post(study)
    # the status is not the form's: opening goes through the lifecycle page
    response = admin_client.post(url, {**form, "status": "open"})
    assert response.status_code == 302
    study.refresh_from_db()
    assert study.status == Study.Status.DRAFT
    # a reader (not staff) is not offered, and refused if sent; nothing is saved
    page = admin_client.get(url).content.decode()
    assert f'value="{reader.pk}"' not in page.split('name="admins"')[1].split("</select>")[0]
    response = admin_client.post(url, {**form, "admins": [reader.pk]})
    assert response.status_code == 200 and "is not one of the available choices" in (
        response.content.decode()
    )
    assert not study.admins.exists()
    assert not AuditEvent.objects.filter(action=A.STUDY_ADMIN_ADD).exists()
    # an admin who is no longer staff is named when the form is saved
    demoted = django_user_model.objects.create_user("was-staff", is_staff=True)
    study.admins.add(demoted)
    django_user_model.objects.filter(pk=demoted.pk).update(is_staff=False)
    response = admin_client.post(url, {**form, "admins": [demoted.pk]})
    assert "Only active staff users can administer a study; not: was-staff" in (
        response.content.decode()
    )
    study.admins.clear()
    staff = django_user_model.objects.create_user("co-admin", is_staff=True)
    assert admin_client.post(url, {**form, "admins": [staff.pk]}).status_code == 302
    assert list(study.admins.all()) == [staff]
    assert AuditEvent.objects.get(action=A.STUDY_ADMIN_ADD).after == {"admin": "co-admin"}


def test_a_study_past_its_closing_date_is_closed_everywhere_before_the_beat(admin_client, reader):
    from cases.selectors import reader_study_entries

    study = build_study(2)
    ready_enrolment(study, reader)
    Study.objects.filter(pk=study.pk).update(closes_at=timezone.now() - dt.timedelta(minutes=1))
    (entry,) = reader_study_entries(user=reader)
    assert entry.closed
    # a new date would reopen it without a word: refused
    later = (timezone.now() + dt.timedelta(days=1)).strftime("%Y-%m-%dT%H:%M")
    page = admin_client.post(lifecycle(study), {"closes_at": later}, follow=True)
    assert "is closed already" in page.content.decode()
    study.refresh_from_db()
    assert study.closes_at < timezone.now()


def test_odd_query_strings_on_the_invitations_page_are_ignored(admin_client):
    study = make_study(status=Study.Status.OPEN)
    invitations_create(study=study, count=2)
    url = reverse("admin:cases_study_invitations", args=[study.pk])
    for new in ("1-9999999999", "²-3", "5-1", "x"):
        response = admin_client.get(f"{url}?new={new}")
        assert response.status_code == 200 and 'class="new"' not in response.content.decode()
    progress = reverse("admin:inference_inferencerun_progress")
    assert admin_client.get(f"{progress}?ids=²,1").json() == {"runs": []}
