"""The reader's flow through the HTML views: invitation, consent, profile, cases, done."""

from __future__ import annotations

import datetime as dt
import re

import pytest
from django.core.exceptions import ValidationError
from django.urls import reverse
from django.utils import timezone

from audit.models import AuditEvent
from cases.models import Answer, AnswerChange, Case, Enrolment, Invitation, Study
from cases.services import (
    AnswerRejected,
    InvitationInvalid,
    answer_submit,
    case_serve,
    consent_give,
    enrolment_create,
    invitation_accept,
    invitations_create,
)
from tests.factories import CaseFactory, build_study, make_study, ready_enrolment

pytestmark = pytest.mark.django_db


def next_public_id(client, study) -> str:
    body = client.get(reverse("cases:case", args=[study.slug])).content.decode()
    return re.search(r'name="case" value="([0-9a-f]+)"', body).group(1)


def test_registration_through_an_invitation_then_consent_profile_cases_and_feedback(client):
    study = build_study(3, show_feedback=True)
    token = invitations_create(study=study, count=1)[0].token
    response = client.post(
        reverse("cases:join", args=[token]),
        {
            "username": "dr.li",
            "email": "li@example.org",
            "password1": "a-Long-pass-phrase-9",
            "password2": "a-Long-pass-phrase-9",
        },
    )
    assert response.status_code == 302 and response["Location"].endswith("/consent/")
    assert Invitation.objects.get(token=token).uses == 1

    response = client.post(reverse("cases:consent", args=[study.slug]), {"agree": "on"})
    enrolment = Enrolment.objects.get(study=study, reader__username="dr.li")
    assert enrolment.consent_version == "v1" and enrolment.consented_at is not None
    assert response["Location"].endswith("/profile/")

    response = client.post(
        reverse("cases:profile", args=[study.slug]),
        {"level": "resident", "years_in_dermatology": "2"},
    )
    assert response["Location"].endswith("/case/")

    for i in range(3):
        page = client.get(reverse("cases:case", args=[study.slug]))
        assert f"{i + 1} / 3" in page.content.decode()
        public_id = next_public_id(client, study)
        response = client.post(
            reverse("cases:case", args=[study.slug]), {"case": public_id, "answer": "MN"}
        )
        assert response.status_code == 302
    assert response["Location"].endswith("/done/")
    done = client.get(response["Location"]).content.decode()
    assert "You have answered all 3 cases" in done and "Your results" in done
    assert Answer.objects.filter(enrolment=enrolment).count() == 3


def test_invalid_invitations_are_refused(client, reader):
    study = build_study(1)
    expired, used, revoked = invitations_create(study=study, count=3)
    Invitation.objects.filter(pk=expired.pk).update(
        expires_at=timezone.now() - dt.timedelta(minutes=1)
    )
    Invitation.objects.filter(pk=used.pk).update(uses=1)
    Invitation.objects.filter(pk=revoked.pk).update(revoked=True)
    for invitation, text in [
        (expired, "expired"),
        (used, "already been used"),
        (revoked, "not valid"),
    ]:
        response = client.get(reverse("cases:join", args=[invitation.token]))
        assert response.status_code == 410 and text in response.content.decode()
    assert client.get(reverse("cases:join", args=["nope"])).status_code == 410
    with pytest.raises(InvitationInvalid):
        invitation_accept(token=used.token, user=reader)


def test_invitation_with_a_use_limit(django_user_model):
    study = build_study(1)
    invitation = invitations_create(study=study, count=1, max_uses=2)[0]
    users = [django_user_model.objects.create_user(f"u{i}") for i in range(3)]
    invitation_accept(token=invitation.token, user=users[0])
    invitation_accept(token=invitation.token, user=users[0])  # already enrolled: no use
    invitation_accept(token=invitation.token, user=users[1])
    with pytest.raises(InvitationInvalid, match="already been used"):
        invitation_accept(token=invitation.token, user=users[2])
    assert Invitation.objects.get(pk=invitation.pk).uses == 2


def test_draft_study_invitation_is_refused(client):
    study = build_study(1, status=Study.Status.DRAFT)
    token = invitations_create(study=study, count=1)[0].token
    assert client.get(reverse("cases:join", args=[token])).status_code == 410


def test_steps_are_enforced_in_order(client, reader):
    study = build_study(2)
    enrolment_create(study=study, reader=reader)
    client.force_login(reader)
    assert client.get(reverse("cases:case", args=[study.slug]))["Location"].endswith("/consent/")
    client.post(reverse("cases:consent", args=[study.slug]), {"agree": "on"})
    assert client.get(reverse("cases:case", args=[study.slug]))["Location"].endswith("/profile/")
    response = client.post(reverse("cases:consent", args=[study.slug]), {})
    assert response.status_code == 302  # consent given already: moves on


def test_profile_requires_the_studys_required_fields(client, reader):
    study = build_study(1, required_profile_fields=["level", "hospital_tier"])
    enrolment = enrolment_create(study=study, reader=reader)
    consent_give(enrolment=enrolment)
    client.force_login(reader)
    response = client.post(reverse("cases:profile", args=[study.slug]), {"level": "chief"})
    assert response.status_code == 200 and "This field is required" in response.content.decode()
    response = client.post(
        reverse("cases:profile", args=[study.slug]), {"level": "chief", "hospital_tier": "tertiary"}
    )
    assert response["Location"].endswith("/case/")


PROFILE_VALUES = {
    "level": "chief",
    "years_in_dermatology": "0",
    "dermoscopy_training_hours": "40",
    "board_certified": "false",
    "hospital_tier": "tertiary",
    "region": "Zhejiang",
}


@pytest.mark.parametrize("field", list(PROFILE_VALUES))
def test_each_profile_field_can_be_required(client, reader, field):
    study = build_study(1, required_profile_fields=[field])
    enrolment = enrolment_create(study=study, reader=reader)
    consent_give(enrolment=enrolment)
    client.force_login(reader)
    url = reverse("cases:profile", args=[study.slug])
    # "unknown" is what the board-certification select sends for "Unknown".
    missing = {"board_certified": "unknown"} if field == "board_certified" else {}
    response = client.post(url, missing)
    assert response.status_code == 200
    errors = response.context["form"].errors
    assert list(errors) == [field] and errors[field] == ["This field is required."]
    response = client.post(url, {field: PROFILE_VALUES[field]})
    assert response.status_code == 302 and response["Location"].endswith("/case/")


def test_board_certified_is_optional_unless_required(client, reader):
    study = build_study(1, required_profile_fields=["level"])
    enrolment = enrolment_create(study=study, reader=reader)
    consent_give(enrolment=enrolment)
    client.force_login(reader)
    response = client.post(
        reverse("cases:profile", args=[study.slug]),
        {"level": "chief", "board_certified": "unknown"},
    )
    assert response["Location"].endswith("/case/")


@pytest.mark.parametrize(
    "value, message",
    [
        (
            ["level", "years"],
            "unknown profile field(s): years; choose from: level, years_in_dermatology, "
            "dermoscopy_training_hours, board_certified, hospital_tier, region",
        ),
        (
            "level",
            "must be a list of profile field names (any of: level, years_in_dermatology, "
            "dermoscopy_training_hours, board_certified, hospital_tier, region), not 'level'",
        ),
        (["level", "level"], "a profile field is listed twice"),
    ],
)
def test_an_invalid_required_fields_list_is_refused(value, message):
    with pytest.raises(ValidationError) as error:
        make_study(slug="bad", required_profile_fields=value)
    assert error.value.message_dict == {"required_profile_fields": [message]}
    assert not Study.objects.filter(slug="bad").exists()
    study = build_study(1)
    study.required_profile_fields = value
    with pytest.raises(ValidationError):
        study.full_clean()


def test_a_misconfigured_study_shows_an_error_instead_of_a_profile_loop(client, reader):
    study = build_study(1)
    Study.objects.filter(pk=study.pk).update(required_profile_fields=["level", "years"])
    enrolment = enrolment_create(study=study, reader=reader)
    consent_give(enrolment=enrolment)
    client.force_login(reader)
    response = client.post(reverse("cases:profile", args=[study.slug]), {"level": "chief"})
    assert response.status_code == 409
    assert response.context["form"].non_field_errors() == [
        "This study requires profile information that cannot be entered here (years). "
        "Please tell the study's administrator."
    ]


def test_order_is_shuffled_per_reader_and_reproducible(reader, other_reader):
    study = build_study(12)
    a = enrolment_create(study=study, reader=reader, seed=1)
    b = enrolment_create(study=study, reader=other_reader, seed=2)
    assert a.case_order != b.case_order and sorted(a.case_order) == sorted(b.case_order)
    from cases.services import case_order_for

    assert case_order_for(study=study, seed=a.order_seed) == a.case_order


def test_resume_exactly_where_the_reader_left_off(client, reader):
    study = build_study(4)
    enrolment = ready_enrolment(study, reader)
    client.force_login(reader)
    for _ in range(2):
        client.post(
            reverse("cases:case", args=[study.slug]),
            {"case": next_public_id(client, study), "answer": "SK"},
        )
    client.logout()
    client.force_login(reader)  # another device, another session
    body = client.get(reverse("cases:case", args=[study.slug])).content.decode()
    third = enrolment.case_order[2]
    assert "3 / 4" in body
    from cases.models import Case

    assert Case.objects.get(pk=third).public_id in body


def test_time_is_measured_by_the_server_and_capped(client, reader, settings):
    settings.READERSTUDY_MAX_SECONDS_PER_CASE = 30
    study = build_study(2)
    enrolment = ready_enrolment(study, reader)
    client.force_login(reader)
    public_id = next_public_id(client, study)
    Enrolment.objects.filter(pk=enrolment.pk).update(
        served_at=timezone.now() - dt.timedelta(seconds=12)
    )
    client.post(reverse("cases:case", args=[study.slug]), {"case": public_id, "answer": "MN"})
    assert 11.5 < Answer.objects.get(enrolment=enrolment).seconds < 20
    public_id = next_public_id(client, study)
    Enrolment.objects.filter(pk=enrolment.pk).update(
        served_at=timezone.now() - dt.timedelta(hours=3)
    )
    client.post(reverse("cases:case", args=[study.slug]), {"case": public_id, "answer": "MN"})
    assert Answer.objects.filter(enrolment=enrolment).order_by("-answered_at")[0].seconds == 30


def test_reloading_the_page_keeps_the_first_serving_time(client, reader):
    study = build_study(2)
    enrolment = ready_enrolment(study, reader)
    client.force_login(reader)
    client.get(reverse("cases:case", args=[study.slug]))
    first = Enrolment.objects.get(pk=enrolment.pk).served_at
    client.get(reverse("cases:case", args=[study.slug]))
    assert Enrolment.objects.get(pk=enrolment.pk).served_at == first


def test_an_answer_needs_the_case_to_have_been_served(reader):
    study = build_study(2)
    enrolment = ready_enrolment(study, reader)
    Enrolment.objects.filter(pk=enrolment.pk).update(served_case=None, served_at=None)
    enrolment.refresh_from_db()
    first = Case.objects.get(pk=enrolment.case_order[0])
    with pytest.raises(AnswerRejected) as rejected:
        answer_submit(enrolment=enrolment, case_public_id=first.public_id, diagnosis_code="MN")
    assert (rejected.value.code, rejected.value.status) == ("case_not_served", 409)
    assert str(rejected.value) == (
        "This case has not been served to you yet: request your next case first."
    )
    case_serve(enrolment=enrolment, case=first)
    assert answer_submit(
        enrolment=enrolment, case_public_id=first.public_id, diagnosis_code="MN"
    ).created


def test_an_answer_needs_the_required_profile(reader):
    study = build_study(2, required_profile_fields=["level", "region"])
    enrolment = ready_enrolment(study, reader)
    first = Case.objects.get(pk=enrolment.case_order[0]).public_id
    with pytest.raises(AnswerRejected) as rejected:
        answer_submit(enrolment=enrolment, case_public_id=first, diagnosis_code="MN")
    assert (rejected.value.code, rejected.value.status) == ("profile_required", 409)
    assert str(rejected.value) == "Please complete your profile first (missing: region)."
    assert Answer.objects.count() == 0


def test_a_new_consent_version_asks_for_consent_again(client, reader):
    study = build_study(2)
    enrolment = ready_enrolment(study, reader)
    client.force_login(reader)
    client.post(
        reverse("cases:case", args=[study.slug]),
        {"case": next_public_id(client, study), "answer": "MN"},
    )
    Study.objects.filter(pk=study.pk).update(consent_text="New text.", consent_version="v2")
    response = client.get(reverse("cases:case", args=[study.slug]))
    assert response["Location"].endswith("/consent/")
    page = client.get(response["Location"])
    assert 'data-testid="consent-renewal"' in page.content.decode()
    second = Case.objects.get(pk=enrolment.case_order[1]).public_id
    with pytest.raises(AnswerRejected, match="consent"):
        answer_submit(enrolment=enrolment, case_public_id=second, diagnosis_code="MN")
    response = client.post(reverse("cases:consent", args=[study.slug]), {"agree": "on"})
    assert response["Location"].endswith("/case/")
    assert Enrolment.objects.get(pk=enrolment.pk).consent_version == "v2"
    assert second in client.get(reverse("cases:case", args=[study.slug])).content.decode()


def test_a_reader_reopening_their_own_used_link_goes_to_their_study(client, reader):
    study = build_study(2)
    invitation = invitations_create(study=study, count=1)[0]
    invitation_accept(token=invitation.token, user=reader)
    assert Invitation.objects.get(pk=invitation.pk).uses == 1
    client.force_login(reader)
    response = client.get(reverse("cases:join", args=[invitation.token]))
    assert response.status_code == 302 and response["Location"].endswith("/consent/")
    # Someone else with the used link is still told it is used.
    client.logout()
    assert client.get(reverse("cases:join", args=[invitation.token])).status_code == 410


# --- bad input --------------------------------------------------------------------------


def test_a_choice_outside_the_study_is_a_400(client, reader):
    study = build_study(2)
    ready_enrolment(study, reader)
    client.force_login(reader)
    response = client.post(
        reverse("cases:case", args=[study.slug]),
        {"case": next_public_id(client, study), "answer": "Pso"},
    )
    assert (
        response.status_code == 400 and "Pso is not one of this study" in response.content.decode()
    )
    assert Answer.objects.count() == 0


def test_not_the_next_case_is_a_409(client, reader):
    study = build_study(3)
    enrolment = ready_enrolment(study, reader)
    client.force_login(reader)
    from cases.models import Case

    later = Case.objects.get(pk=enrolment.case_order[2]).public_id
    response = client.post(
        reverse("cases:case", args=[study.slug]), {"case": later, "answer": "MN"}
    )
    assert response.status_code == 409 and "not your next case" in response.content.decode()
    assert Answer.objects.count() == 0


def test_a_case_outside_the_enrolment_is_a_404(client, reader):
    study = build_study(2)
    other = CaseFactory(study=make_study(slug="other"), with_images=False)
    ready_enrolment(study, reader)
    client.force_login(reader)
    response = client.post(
        reverse("cases:case", args=[study.slug]), {"case": other.public_id, "answer": "MN"}
    )
    assert response.status_code == 404 and Answer.objects.count() == 0


@pytest.mark.parametrize("field", ["reader", "enrolment", "seconds"])
def test_a_forged_field_in_the_answer_form_is_a_400(client, reader, other_reader, field):
    study = build_study(2)
    ready_enrolment(study, reader)
    client.force_login(reader)
    response = client.post(
        reverse("cases:case", args=[study.slug]),
        {"case": next_public_id(client, study), "answer": "MN", field: str(other_reader.pk)},
    )
    assert response.status_code == 400
    assert response.context["error"] == (
        f"Unexpected field(s): {field}. An answer is always recorded for the logged-in reader."
    )
    assert Answer.objects.count() == 0


def status_box(client, url: str) -> str:
    """The text of the case page's message box (not the script's strings)."""
    page = client.get(url).content.decode()
    return re.search(r'<div class="status" id="case-status"[^>]*>(.*?)</div>', page, re.S).group(1)


def test_double_submit_stores_one_answer(client, reader):
    study = build_study(3)
    ready_enrolment(study, reader)
    client.force_login(reader)
    public_id = next_public_id(client, study)
    for _ in range(2):
        response = client.post(
            reverse("cases:case", args=[study.slug]), {"case": public_id, "answer": "MN"}
        )
        assert response.status_code == 302
    assert Answer.objects.count() == 1
    # the second press is told why the page moved on without storing anything new
    assert "already been answered with the same diagnosis" in status_box(client, response.url)
    # The same case with a different answer (a second tab): refused, and the next case
    # says so; a reload does not send it again.
    response = client.post(
        reverse("cases:case", args=[study.slug]), {"case": public_id, "answer": "SK"}
    )
    assert response.status_code == 302
    status = status_box(client, response.url)
    assert "answered in another tab or on another device" in status
    assert "already been answered with the same" not in status
    assert Answer.objects.get().diagnosis.code == "MN"


def test_a_stale_tab_never_changes_an_answer_where_changes_are_allowed(client, reader):
    study = build_study(3, allow_answer_changes=True)
    ready_enrolment(study, reader)
    client.force_login(reader)
    public_id = next_public_id(client, study)
    client.post(reverse("cases:case", args=[study.slug]), {"case": public_id, "answer": "MN"})
    # the stale tab still shows that case and sends another diagnosis to the next-case page
    response = client.post(
        reverse("cases:case", args=[study.slug]), {"case": public_id, "answer": "SK"}
    )
    assert response.status_code == 302
    assert "answered in another tab" in status_box(client, response.url)
    assert Answer.objects.get().diagnosis.code == "MN" and not AnswerChange.objects.exists()


def test_changes_when_allowed_keep_the_old_answer(client, reader):
    study = build_study(3, allow_answer_changes=True)
    enrolment = ready_enrolment(study, reader)
    client.force_login(reader)
    public_id = next_public_id(client, study)
    client.post(reverse("cases:case", args=[study.slug]), {"case": public_id, "answer": "MN"})
    page = client.get(reverse("cases:case_revise", args=[study.slug, 1]))
    assert page.status_code == 200 and public_id in page.content.decode()
    client.post(
        reverse("cases:case_revise", args=[study.slug, 1]), {"case": public_id, "answer": "BCC"}
    )
    answer = Answer.objects.get(enrolment=enrolment)
    assert answer.diagnosis.code == "BCC" and answer.changed_at is not None
    change = AnswerChange.objects.get(answer=answer)
    assert (change.previous_diagnosis.code, change.new_diagnosis.code) == ("MN", "BCC")
    # Unanswered cases cannot be opened by number: no skipping ahead.
    assert client.get(reverse("cases:case_revise", args=[study.slug, 3])).status_code == 404


def test_with_changes_allowed_the_reader_reviews_and_may_revise_the_last_case(client, reader):
    study = build_study(3, allow_answer_changes=True)
    enrolment = ready_enrolment(study, reader)
    client.force_login(reader)
    for _ in range(3):
        response = client.post(
            reverse("cases:case", args=[study.slug]),
            {"case": next_public_id(client, study), "answer": "MN"},
        )
    assert Enrolment.objects.get(pk=enrolment.pk).finished_at is None
    review = client.get(reverse("cases:case", args=[study.slug]))
    assert review["Location"].endswith("/done/")
    page = client.get(review["Location"])
    assert page.templates[0].name == "cases/review.html"
    assert [row["number"] for row in page.context["answers"]] == [1, 2, 3]
    assert reverse("cases:case_revise", args=[study.slug, 3]) in page.content.decode()

    last = Case.objects.get(pk=enrolment.case_order[2]).public_id
    assert client.get(reverse("cases:case_revise", args=[study.slug, 3])).status_code == 200
    response = client.post(
        reverse("cases:case_revise", args=[study.slug, 3]), {"case": last, "answer": "SK"}
    )
    assert response.status_code == 302
    answer = Answer.objects.get(enrolment=enrolment, case__public_id=last)
    assert answer.diagnosis.code == "SK" and answer.changes.count() == 1

    response = client.post(reverse("cases:done", args=[study.slug]))
    assert response["Location"].endswith("/done/")
    finished_at = Enrolment.objects.get(pk=enrolment.pk).finished_at
    assert finished_at is not None
    (event,) = AuditEvent.objects.filter(action=AuditEvent.Action.ENROLMENT_FINISH)
    assert (event.actor, event.study) == (reader, study.slug)
    # confirming again (a second click) neither moves the time nor logs twice
    client.post(reverse("cases:done", args=[study.slug]))
    assert Enrolment.objects.get(pk=enrolment.pk).finished_at == finished_at
    assert AuditEvent.objects.filter(action=AuditEvent.Action.ENROLMENT_FINISH).count() == 1
    assert "You have answered all 3 cases" in client.get(response["Location"]).content.decode()
    # Finished: answers are final now.
    assert client.get(reverse("cases:case_revise", args=[study.slug, 3])).status_code == 302
    with pytest.raises(AnswerRejected, match="answers are final"):
        answer_submit(enrolment=enrolment, case_public_id=last, diagnosis_code="BCC")


def test_finishing_is_refused_while_cases_are_unanswered(reader):
    from cases.services import enrolment_finish

    study = build_study(2, allow_answer_changes=True)
    enrolment = ready_enrolment(study, reader)
    with pytest.raises(AnswerRejected, match="answer every case") as rejected:
        enrolment_finish(enrolment=enrolment)
    assert rejected.value.code == "cases_unanswered"
    assert Enrolment.objects.get(pk=enrolment.pk).finished_at is None


def test_revising_is_not_possible_when_the_study_forbids_it(client, reader):
    study = build_study(2)
    ready_enrolment(study, reader)
    client.force_login(reader)
    client.post(
        reverse("cases:case", args=[study.slug]),
        {"case": next_public_id(client, study), "answer": "MN"},
    )
    assert client.get(reverse("cases:case_revise", args=[study.slug, 1])).status_code == 404


def test_confidence_required_and_bounded_when_asked(reader):
    study = build_study(2, ask_confidence=True)
    enrolment = ready_enrolment(study, reader)
    from cases.models import Case
    from cases.services import AnswerRejected

    first = Case.objects.get(pk=enrolment.case_order[0]).public_id
    with pytest.raises(AnswerRejected, match="confidence"):
        answer_submit(enrolment=enrolment, case_public_id=first, diagnosis_code="MN")
    with pytest.raises(AnswerRejected, match="between 1 and 5"):
        answer_submit(enrolment=enrolment, case_public_id=first, diagnosis_code="MN", confidence=9)
    result = answer_submit(
        enrolment=enrolment, case_public_id=first, diagnosis_code="MN", confidence=4
    )
    assert result.created and result.answer.confidence == 4


def test_closed_study_accepts_no_answers(client, reader):
    study = build_study(2)
    enrolment = ready_enrolment(study, reader)
    Study.objects.filter(pk=study.pk).update(status=Study.Status.CLOSED)
    client.force_login(reader)
    response = client.get(reverse("cases:case", args=[study.slug]))
    assert response["Location"].endswith("/done/")
    from cases.models import Case
    from cases.services import AnswerRejected

    with pytest.raises(AnswerRejected, match="closed"):
        answer_submit(
            enrolment=enrolment,
            diagnosis_code="MN",
            case_public_id=Case.objects.get(pk=enrolment.case_order[0]).public_id,
        )


def test_another_readers_study_is_a_404(client, reader, other_reader):
    study = build_study(2)
    ready_enrolment(study, other_reader)
    client.force_login(reader)
    for name in ("cases:study", "cases:consent", "cases:profile", "cases:case", "cases:done"):
        assert client.get(reverse(name, args=[study.slug])).status_code == 404


def test_the_admin_study_form_offers_the_profile_fields_as_choices():
    from cases.forms import StudyForm

    form = StudyForm(data={"required_profile_fields": ["region", "board_certified"]})
    assert form.is_valid(), form.errors
    assert form.cleaned_data["required_profile_fields"] == ["region", "board_certified"]
    form = StudyForm(data={"required_profile_fields": ["level", "years"]})
    assert form.errors["required_profile_fields"] == [
        "Select a valid choice. years is not one of the available choices."
    ]
