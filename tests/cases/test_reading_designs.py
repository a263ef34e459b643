"""The designs of reading with the CNN (#14), end to end through the reader's API and
services: sequential (each case unaided, then at once with the CNN's support) and
crossover (every case in one condition, a washout of days, then in the other, arms
balanced from a stored seed). The support reaches a reader only on a read whose
condition shows it, and in a sequential study only once the case's unaided answer is
stored."""

from __future__ import annotations

import datetime as dt

import pytest
from django.urls import reverse
from django.utils import timezone

from cases import selectors
from cases.models import Answer, Case, Enrolment, Study
from cases.selectors import Step, answers_frame
from cases.services import (
    AnswerRejected,
    answer_submit,
    case_order_for,
    crossover_arm,
    enrolment_create,
    second_session_seed,
)
from tests.factories import UserFactory, ready_enrolment, supported_study

# Also on PostgreSQL (the second pass), where the research-data guards are triggers.
pytestmark = [
    pytest.mark.django_db,
    pytest.mark.postgres,
    pytest.mark.usefixtures("reference_diagnoses"),
]


def _next(client, study, **params):
    response = client.get(reverse("api-reader-next", args=[study.slug]), params)
    assert response.status_code == 200, response.content[:500]
    return response.json()


def _answer(client, study, case, answer, condition=None, *, status=201, **extra):
    body = {"case": case, "answer": answer, **extra}
    if condition is not None:
        body["condition"] = condition
    response = client.post(
        reverse("api-reader-answer", args=[study.slug]), body, content_type="application/json"
    )
    assert response.status_code == status, response.content[:500]
    return response.json()


def _gradcam(client, study, case, condition="aided"):
    return client.get(reverse("cases:support_gradcam", args=[study.slug, case, condition]))


@pytest.fixture
def sequential(client, reader):
    study = supported_study(3)
    enrolment = ready_enrolment(study, reader)
    client.force_login(reader)
    return study, enrolment


def _read_session(client, study, answer=lambda case: "MN") -> tuple[list[str], list[str], dict]:
    """Answer every read the API serves until it stops serving one, each with
    ``answer(case)`` (the API's ``case``); the cases and conditions in the order served,
    and the last screen."""
    cases, conditions = [], []
    screen = _next(client, study)
    while screen["case"] is not None:
        case = screen["case"]
        assert case["condition"]["session"] == screen["progress"]["session"]
        cases.append(case["id"])
        conditions.append(case["condition"]["code"])
        screen = _answer(
            client, study, case["id"], answer(case), case["condition"]["code"], next=True
        )["next"]
    return cases, conditions, screen


def _unaided_sk_aided_right(case) -> str:
    """ "SK" unaided; with the CNN (always right in ``supported_study``), the truth."""
    if case["condition"]["code"] == "aided":
        return Case.objects.get(public_id=case["id"]).diagnosis.code
    return "SK"


# --- sequential ----------------------------------------------------------------------


def test_a_sequential_reader_answers_unaided_then_with_the_support_then_moves_on(
    client, sequential
):
    study, enrolment = sequential
    screen = _next(client, study)
    case = screen["case"]
    assert screen["progress"] == {
        "answered": 0, "total": 6, "finished": False, "session": 1, "sessions": 1,
    }  # fmt: skip
    assert case["condition"]["code"] == "unaided" and case["support"] is None
    assert case["earlier_answer"] is None
    # the CNN's Grad-CAM is not served before the unaided answer is stored
    assert _gradcam(client, study, case["id"]).status_code == 404
    truth = Case.objects.get(public_id=case["id"]).diagnosis.code
    wrong = next(code for code in ("MN", "SK", "BCC") if code != truth)
    body = _answer(client, study, case["id"], wrong, "unaided", next=True)
    aided = body["next"]["case"]
    # the same case, now with the CNN's support and the reader's own first answer
    assert aided["id"] == case["id"] and aided["condition"]["code"] == "aided"
    assert aided["condition"]["label"] == "With the CNN"
    assert aided["earlier_answer"]["code"] == wrong
    support = aided["support"]
    assert support["predicted"]["code"] == truth and support["predicted"]["probability"] == 0.6
    assert [round(c["probability"], 2) for c in support["top"]] == [0.6, 0.3]  # top_k 2
    assert support["gradcam"].endswith(f"/support/{case['id']}/aided/gradcam")
    response = _gradcam(client, study, case["id"])
    assert response.status_code == 200 and response["Cache-Control"] == "private, no-store"
    # the final answer follows the CNN; the next screen is the next case, unaided
    body = _answer(client, study, case["id"], truth, "aided", next=True)
    following = body["next"]["case"]
    assert following["id"] != case["id"] and following["condition"]["code"] == "unaided"
    assert following["support"] is None
    # and the Grad-CAM of the case just answered is no longer served
    assert _gradcam(client, study, case["id"]).status_code == 404
    stored = Answer.objects.filter(enrolment=enrolment).order_by("answered_at")
    assert [(a.condition.code, a.diagnosis.code) for a in stored] == [
        ("unaided", wrong),
        ("aided", truth),
    ]
    assert all(a.seconds >= 0 for a in stored)


def test_every_read_is_timed_from_its_own_serving(sequential, reader):
    study, enrolment = sequential
    first = Case.objects.get(pk=enrolment.case_order[0])
    start = timezone.now()
    Enrolment.objects.filter(pk=enrolment.pk).update(served_at=start - dt.timedelta(seconds=30))
    answer_submit(
        reader=reader, study_slug=study.slug, case_public_id=first.public_id,
        diagnosis_code="SK", condition_code="unaided", serve_next=True,
    )  # fmt: skip
    enrolment.refresh_from_db()
    # the aided read of the same case was served by that write: its clock started then
    assert (enrolment.served_case_id, enrolment.served_condition.code) == (first.pk, "aided")
    Enrolment.objects.filter(pk=enrolment.pk).update(served_at=start - dt.timedelta(seconds=4))
    answer_submit(
        reader=reader, study_slug=study.slug, case_public_id=first.public_id,
        diagnosis_code="MN", condition_code="aided",
    )  # fmt: skip
    unaided, aided = Answer.objects.filter(enrolment=enrolment).order_by("answered_at")
    assert 29 < unaided.seconds < 40 and 3 < aided.seconds < 15


def test_a_sequential_answer_names_its_condition_and_a_stale_tab_is_refused(client, sequential):
    study, enrolment = sequential
    case = _next(client, study)["case"]["id"]
    refused = _answer(client, study, case, "MN", status=400)
    assert (refused["code"], refused["field"]) == ("condition_required", "condition")
    refused = _answer(client, study, case, "MN", "nope", status=400)
    assert refused["code"] == "unknown_condition"
    # the aided read before the unaided answer: not the reader's next read
    assert _answer(client, study, case, "MN", "aided", status=409)["code"] == "not_next_case"
    _answer(client, study, case, "SK", "unaided")
    # the same unaided answer again (a double click): the stored one, 200
    assert _answer(client, study, case, "SK", "unaided", status=200)["created"] is False
    # a second tab that still shows the unaided read, with another answer: refused,
    # never taken for the aided read the reader has not seen
    refused = _answer(client, study, case, "BCC", "unaided", status=409, revise=False)
    assert refused["code"] == "answered_elsewhere"
    assert Answer.objects.filter(enrolment=enrolment).count() == 1


def test_the_aided_read_is_refused_until_it_is_served(sequential, reader):
    study, enrolment = sequential
    first = Case.objects.get(pk=enrolment.case_order[0])
    answer_submit(
        reader=reader, study_slug=study.slug, case_public_id=first.public_id,
        diagnosis_code="SK", condition_code="unaided",
    )  # fmt: skip
    with pytest.raises(AnswerRejected) as refused:  # its support was never shown
        answer_submit(
            reader=reader, study_slug=study.slug, case_public_id=first.public_id,
            diagnosis_code="MN", condition_code="aided",
        )  # fmt: skip
    assert refused.value.code == "case_not_served"


def test_finishing_a_sequential_study_and_its_answers_table(client, sequential):
    study, enrolment = sequential
    *_, screen = _read_session(client, study, _unaided_sk_aided_right)
    assert screen["step"] == "done" and screen["progress"]["answered"] == 6
    enrolment.refresh_from_db()
    assert enrolment.finished_at is not None
    frame = answers_frame(study=study)
    assert list(frame["condition"]) == ["unaided"] * 3 + ["aided"] * 3
    assert set(frame["session"]) == {1}
    unaided, aided = frame[frame.condition == "unaided"], frame[frame.condition == "aided"]
    assert list(unaided["ai_answer"]) == ["", "", ""] and unaided["changed"].isna().all()
    assert list(aided["ai_answer"]) == list(aided["truth"])  # what the CNN showed
    assert list(aided["ai_top_probability"]) == [0.6, 0.6, 0.6]
    assert list(aided["changed"]) == [truth != "SK" for truth in aided["truth"]]


def test_the_page_takes_the_unaided_answer_then_shows_the_same_case_with_support(
    client, sequential
):
    study, enrolment = sequential
    url = reverse("cases:case", args=[study.slug])
    page = client.get(url).content.decode()
    assert 'name="condition" value="unaided"' in page and "/gradcam" not in page
    first = Case.objects.get(pk=enrolment.case_order[0])
    response = client.post(url, {"case": first.public_id, "answer": "SK", "condition": "unaided"})
    assert response.status_code == 302
    page = client.get(url).content.decode()
    assert 'name="condition" value="aided"' in page and f'value="{first.public_id}"' in page
    assert f"/support/{first.public_id}/aided/gradcam" in page


# --- crossover -------------------------------------------------------------------------


def test_crossover_arms_are_balanced_permuted_blocks_from_the_stored_seed():
    for seed in (1, 2, 3, 99):
        arms = [crossover_arm(arm_seed=seed, index=i) for i in range(40)]
        assert all(sorted(arms[i : i + 2]) == [0, 1] for i in range(0, 40, 2))
        assert arms == [crossover_arm(arm_seed=seed, index=i) for i in range(40)]
    assert len({tuple(crossover_arm(arm_seed=s, index=i) for i in range(8)) for s in range(20)}) > 1


def test_crossover_readers_get_their_arms_in_enrolment_order_and_a_fresh_second_order():
    study = supported_study(6, design=Study.Design.CROSSOVER, shuffle_cases=True)
    readers = [UserFactory(username=f"x{i}") for i in range(5)]
    enrolments = [
        enrolment_create(study=study, reader=r, seed=10 + i) for i, r in enumerate(readers)
    ]
    assert [e.arm for e in enrolments] == [
        crossover_arm(arm_seed=study.arm_seed, index=i) for i in range(5)
    ]
    assert sorted(e.arm for e in enrolments[:4]) == [0, 0, 1, 1]
    for e in enrolments:
        assert e.second_case_order == case_order_for(
            study=study, seed=second_session_seed(e.order_seed)
        )
        assert sorted(e.second_case_order) == sorted(e.case_order)
    assert any(e.second_case_order != e.case_order for e in enrolments)


def test_readers_enrolled_in_a_crossover_draft_get_their_arms_when_it_opens(reader, other_reader):
    study = supported_study(3, design=Study.Design.CROSSOVER, open_it=False)
    first = enrolment_create(study=study, reader=reader, seed=1)
    assert first.arm is not None  # a crossover draft assigns at enrolment already
    Enrolment.objects.filter(pk=first.pk).update(arm=None, second_case_order=[])
    from cases.services import study_open

    study_open(study=study, actor=None)
    first.refresh_from_db()
    assert first.arm == crossover_arm(arm_seed=study.arm_seed, index=0)
    assert sorted(first.second_case_order) == sorted(first.case_order)


def test_a_crossover_reader_reads_every_case_then_waits_the_washout_then_reads_them_again(
    client, reader, monkeypatch
):
    study = supported_study(4, design=Study.Design.CROSSOVER, shuffle_cases=True)
    enrolment = ready_enrolment(study, reader)
    client.force_login(reader)
    first, second = ("unaided", "aided") if enrolment.arm == 0 else ("aided", "unaided")
    cases, conditions, screen = _read_session(client, study)
    by_id = dict(Case.objects.filter(study=study).values_list("public_id", "pk"))
    assert [by_id[c] for c in cases] == enrolment.case_order and set(conditions) == {first}
    # session 1 done: the washout, for a week from the last answer
    assert screen["step"] == "washout" and screen["case"] is None
    last = Answer.objects.filter(enrolment=enrolment).latest("answered_at").answered_at
    assert dt.datetime.fromisoformat(screen["opens_at"]) == last + dt.timedelta(days=7)
    assert screen["progress"] == {
        "answered": 4, "total": 8, "finished": False, "session": 2, "sessions": 2,
    }  # fmt: skip
    enrolment.refresh_from_db()
    assert selectors.reader_step(enrolment=enrolment) == Step.WASHOUT
    assert enrolment.served_case_id is None  # nothing of session 2 served early
    with pytest.raises(AnswerRejected) as refused:
        answer_submit(
            reader=reader, study_slug=study.slug, case_public_id=cases[0],
            diagnosis_code="MN", condition_code=second,
        )  # fmt: skip
    assert refused.value.code == "washout"
    page = client.get(reverse("cases:case", args=[study.slug]))
    assert page.status_code == 302 and page["Location"] == reverse("cases:done", args=[study.slug])
    # a day short of the washout: still waiting
    real_now = timezone.now
    monkeypatch.setattr(timezone, "now", lambda: real_now() + dt.timedelta(days=6))
    assert _next(client, study)["step"] == "washout"
    # past it: session 2, every case again in the other condition, in a fresh order
    monkeypatch.setattr(timezone, "now", lambda: real_now() + dt.timedelta(days=7, minutes=1))
    cases2, conditions2, screen = _read_session(client, study)
    assert [by_id[c] for c in cases2] == enrolment.second_case_order
    assert set(conditions2) == {second} and screen["step"] == "done"
    enrolment.refresh_from_db()
    assert enrolment.finished_at is not None
    frame = answers_frame(study=study)
    sessions = dict(zip(frame["condition"], frame["session"], strict=False))
    assert sessions == {first: 1, second: 2}
    assert frame[frame.session == 2]["changed"].eq(False).all()  # "MN" both times


def test_a_crossover_cnn_first_reader_sees_the_support_in_session_one(client, reader, other_reader):
    study = supported_study(2, design=Study.Design.CROSSOVER)
    ready_enrolment(study, reader)
    ready_enrolment(study, other_reader)
    arms = dict(Enrolment.objects.filter(study=study).values_list("reader__username", "arm"))
    assert sorted(arms.values()) == [0, 1]
    cnn_first = reader if arms["reader"] == 1 else other_reader
    client.force_login(cnn_first)
    case = _next(client, study)["case"]
    assert case["condition"]["code"] == "aided" and case["support"] is not None
    assert case["earlier_answer"] is None  # no unaided answer is shown across sessions


def test_the_reader_s_home_page_counts_answers_and_says_when_the_next_session_opens(client, reader):
    study = supported_study(2, design=Study.Design.CROSSOVER)
    ready_enrolment(study, reader)
    client.force_login(reader)
    home = client.get("/").content.decode()
    assert "0 of 4 answers given (2 cases, each read 2 times)." in home
    _read_session(client, study)
    home = client.get("/").content.decode()
    assert "2 of 4 answers given" in home and "Your next session opens on" in home
    client.defaults["HTTP_ACCEPT_LANGUAGE"] = "zh-hans"
    home = client.get("/").content.decode()
    assert "已作答 4 次中的 2 次" in home and "您的下一阶段将于" in home


def test_a_finished_sequential_reader_sees_their_results_in_each_condition(client, reader):
    study = supported_study(3, show_feedback=True)
    ready_enrolment(study, reader)
    client.force_login(reader)
    # wrong unaided ("SK" is right for one case of three), right with the CNN
    _read_session(client, study, _unaided_sk_aided_right)
    page = client.get(reverse("cases:done", args=[study.slug])).content.decode()
    assert "You have given all 6 answers." in page
    unaided, aided = page.split("Your results: ")[1:3]
    assert unaided.startswith("Unaided") and "1 of 3 cases correct" in unaided
    assert aided.startswith("With the CNN") and "3 of 3 cases correct" in aided
