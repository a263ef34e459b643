"""The console for a study of several reading conditions: the Overview lists the design
and each condition with what it shows (and its CNN), and says precisely why a draft
cannot open yet; the dashboard and the reader progress count answers per condition and,
in a crossover, where each reader is in their sessions (arm, session, the end of their
washout), readers in washout among the readers by step; a few queries, however many
readers."""

from __future__ import annotations

import contextlib
import datetime as dt
import re
from unittest import mock

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from cases.models import Answer, Case, Enrolment, ReadingCondition, Study
from cases.selectors import (
    Step,
    crossover_order,
    crossover_progress,
    reader_progress_query,
    reader_step,
    readers_by_step,
    study_conditions,
)
from cases.services import study_admin_add
from tests.factories import UserFactory, build_study, ready_enrolment, supported_study

pytestmark = pytest.mark.django_db

WASHOUT = 7  # supported_study's crossover


@contextlib.contextmanager
def clock(moment: dt.datetime):
    with mock.patch("django.utils.timezone.now", return_value=moment):
        yield


def answer(enrolment: Enrolment, case: Case, condition_id: int, *, at: dt.datetime) -> Answer:
    with clock(at):
        return Answer.objects.create(
            enrolment=enrolment,
            case=case,
            condition_id=condition_id,
            diagnosis=case.diagnosis,
            seconds=4,
        )


def crossover_reader(study: Study, name: str, *, first: int, second: int, now, ago=WASHOUT + 3):
    """A crossover reader with ``first`` answers in the first condition of their arm
    (given ``ago`` days before ``now``) and ``second`` in the other (a day before
    ``now``); finished once both are complete."""
    enrolment = ready_enrolment(study, UserFactory(username=name), serve=False)
    enrolment.study = study
    one, other = crossover_order(study_conditions(study=study), arm=enrolment.arm)
    cases = [Case.objects.get(pk=pk) for pk in enrolment.case_order]
    for case in cases[:first]:
        answer(enrolment, case, one.pk, at=now - dt.timedelta(days=ago))
    for case in cases[:second]:
        answer(enrolment, case, other.pk, at=now - dt.timedelta(days=1))
    if first == second == len(cases):
        Enrolment.objects.filter(pk=enrolment.pk).update(finished_at=now)
    return enrolment


@pytest.fixture
def now():
    return timezone.now().replace(microsecond=0)


@pytest.fixture
def crossover(study_admin, now):
    """An open crossover of 2 cases (unaided, then aided with the CNN; a washout of 7
    days) with a reader at each place: not started, in session 1, in washout (5 days
    to go), in session 2 before its first answer and after it, done."""
    study = supported_study(2, design=Study.Design.CROSSOVER, slug="cross", gradcam=False)
    study_admin_add(user=study_admin, study=study)
    readers = {
        "new": crossover_reader(study, "new", first=0, second=0, now=now),
        "s1": crossover_reader(study, "s1", first=1, second=0, now=now),
        "wash": crossover_reader(study, "wash", first=2, second=0, now=now, ago=2),
        "s2-open": crossover_reader(study, "s2-open", first=2, second=0, now=now),
        "s2": crossover_reader(study, "s2", first=2, second=1, now=now),
        "done": crossover_reader(study, "done", first=2, second=2, now=now),
    }
    return study, readers


def overview(client, study) -> str:
    response = client.get(reverse("admin:cases_study_overview", args=[study.pk]))
    assert response.status_code == 200
    return response.content.decode()


def progress(client, study, **params) -> str:
    response = client.get(reverse("admin:cases_study_progress", args=[study.pk]), params)
    assert response.status_code == 200
    return response.content.decode()


def table_rows(body: str, testid: str, key: str) -> dict[str, tuple[int, ...]]:
    """The rows of the table ``testid``: each row's ``data-<key>`` and its numbers."""
    table = body[body.index(f'data-testid="{testid}"') :]
    table = table[: table.index("</table>")]
    return {
        found: tuple(int(n) for n in re.findall(r'<td class="n">(\d+)</td>', row))
        for found, row in re.findall(rf'<tr data-{key}="([^"]+)">(.*?)</tr>', table, re.S)
    }


# --- the Overview: the design, the conditions, why a draft cannot open -----------------------


def test_the_overview_lists_the_design_and_what_each_condition_shows(client, study_admin):
    study = supported_study(2, slug="seq", open_it=False)
    study_admin_add(user=study_admin, study=study)
    client.force_login(study_admin)
    body = overview(client, study)
    assert "Sequential per case: unaided, then with the CNN" in body
    rows = dict(re.findall(r'data-condition="(\w+)"><td class="n">\d</td>(.*?)</tr>', body, re.S))
    assert "the dermoscopic image, the clinical photo</td>" in rows["unaided"]
    assert (
        "the dermoscopic image, the clinical photo, the CNN&#x27;s top 2 probabilities and its "
        "class, its Grad-CAM" in rows["aided"]
    )
    assert "sup-cnn <em>(untrained)</em>, top 2" in rows["aided"]
    assert 'data-testid="ready"' in body  # its CNN predicted every case
    assert f'href="{reverse("admin:cases_study_change", args=[study.pk])}#conditions-group"' in body


def test_the_overview_says_precisely_why_a_draft_cannot_open(client, study_admin):
    study = build_study(2, slug="nomodel", status=Study.Status.DRAFT, design="sequential")
    ReadingCondition.objects.create(study=study, code="aided", position=2, shows_cnn=True)
    study.allow_answer_changes = True
    study.save()
    study_admin_add(user=study_admin, study=study)
    client.force_login(study_admin)
    body = overview(client, study)
    reasons = re.findall(r"<li>(.*?)</li>", body[body.index('data-testid="open-refusals"') :])
    assert any("takes no answer changes" in reason for reason in reasons)
    assert any(
        "Condition &#x27;aided&#x27; shows the CNN&#x27;s support but names no model" in reason
        for reason in reasons
    )
    assert '<strong class="errornote-inline">none set</strong>' in body
    assert 'data-testid="ready"' not in body


# --- a crossover's sessions -----------------------------------------------------------------


def test_crossover_readers_are_counted_by_session_and_arm(crossover, now):
    study, _ = crossover
    sessions = crossover_progress(study=study, n_cases=2, now=now)
    assert {c.place.key: (c.real, c.simulated) for c in sessions.places} == {
        "not_started": (1, 0),
        "session-1": (1, 0),
        "washout-2": (1, 0),
        "session-2": (2, 0),
        "done": (1, 0),
    }
    arms = {arm: real for arm, real, _ in sessions.arms}
    assert arms == {"unaided → aided": 3, "aided → unaided": 3}  # balanced blocks of two
    counts = readers_by_step(study=study, now=now).real
    assert (counts.consented, counts.in_progress, counts.washout, counts.finished) == (1, 3, 1, 1)


def test_the_console_s_washout_is_the_reader_s_washout(crossover, now):
    """The SQL step of the console and the reader's own flow (``reader_step``) agree on
    who is in washout, at two moments: now, and after the washout has passed."""
    study, readers = crossover
    for moment in (now, now + dt.timedelta(days=6)):
        with clock(moment):
            in_washout = set(
                reader_progress_query(study=study, step="washout").values_list("pk", flat=True)
            )
            flow = {
                e.pk
                for e in readers.values()
                if reader_step(enrolment=Enrolment.objects.get(pk=e.pk)) == Step.WASHOUT
            }
        assert in_washout == flow
    assert flow == set() and len(in_washout) == 0
    with clock(now):
        assert set(
            reader_progress_query(study=study, step="washout").values_list("pk", flat=True)
        ) == {readers["wash"].pk}


def test_the_dashboard_shows_sessions_answers_per_condition_and_the_washout_step(
    client, study_admin, crossover
):
    study, _ = crossover
    client.force_login(study_admin)
    body = overview(client, study)
    assert table_rows(body, "crossover-sessions", "place") == {
        "not_started": (1, 0),
        "session-1": (1, 0),
        "washout-2": (1, 0),
        "session-2": (2, 0),
        "done": (1, 0),
    }
    assert table_rows(body, "crossover-sessions", "arm") == {
        "unaided → aided": (3, 0),
        "aided → unaided": (3, 0),
    }
    # answers: 1 + 2 + 2 + 2 + 2 in the readers' first conditions, 1 + 2 in their second
    per_condition = table_rows(body, "answers-per-condition", "condition")
    assert sum(real for real, _, _ in per_condition.values()) == 12
    assert {expected for _, expected, _ in per_condition.values()} == {12}  # 6 readers x 2
    steps = table_rows(body, "readers-by-step", "step")
    assert steps["washout"] == (1, 0) and steps["enrolled"] == (6, 0)
    assert f'href="{reverse("admin:cases_study_progress", args=[study.pk])}?step=washout"' in body
    assert "every case in each condition" in body  # the projection counts reads


def test_the_progress_page_shows_each_reader_s_arm_session_and_washout_end(
    client, study_admin, crossover, now
):
    study, readers = crossover
    client.force_login(study_admin)
    body = progress(client, study)
    places = dict(re.findall(r'data-reader="(\w+)".*?data-place="([\w-]+)"', body, re.S))
    code = {name: e.reader_code for name, e in readers.items()}
    assert places == {
        code["new"]: "not_started",
        code["s1"]: "session-1",
        code["wash"]: "washout-2",
        code["s2-open"]: "session-2",
        code["s2"]: "session-2",
        code["done"]: "done",
    }
    opens = (now - dt.timedelta(days=2) + dt.timedelta(days=WASHOUT)).strftime("%Y-%m-%d %H:%M")
    assert f'title="In washout before session 2">until {opens} UTC</span>' in body
    arms = dict(re.findall(r'data-reader="(\w+)".*?data-testid="arm">([^<]*)<', body, re.S))
    assert set(arms.values()) == {"unaided → aided", "aided → unaided"}
    # reads: every case in each condition, and per condition under the bar
    assert "2 / 4" in body
    assert 'data-testid="by-condition"' in body
    washout = progress(client, study, step="washout")
    assert re.findall(r'data-reader="(\w+)"', washout) == [code["wash"]]
    assert '<option value="washout">In washout (between sessions)</option>' in body


def test_a_sequential_study_shows_answers_per_condition_without_sessions(client, study_admin):
    study = supported_study(2, slug="seq")
    study_admin_add(user=study_admin, study=study)
    enrolment = ready_enrolment(study, UserFactory(username="seq-reader"), serve=False)
    unaided, aided = study_conditions(study=study)
    first, second = (Case.objects.get(pk=pk) for pk in enrolment.case_order)
    at = timezone.now() - dt.timedelta(hours=1)
    answer(enrolment, first, unaided.pk, at=at)
    answer(enrolment, first, aided.pk, at=at)
    answer(enrolment, second, unaided.pk, at=at)
    client.force_login(study_admin)
    body = overview(client, study)
    assert table_rows(body, "answers-per-condition", "condition") == {
        "unaided": (2, 2, 0),
        "aided": (1, 2, 0),
    }
    assert 'data-testid="crossover-sessions"' not in body
    assert "washout" not in table_rows(body, "readers-by-step", "step")
    page = progress(client, study)
    assert "3 / 4" in page
    assert '<span data-condition="unaided">unaided 2/2</span>' in page
    assert '<span data-condition="aided">aided 1/2</span>' in page
    assert 'value="washout"' not in page and 'data-testid="arm"' not in page


# --- a bounded number of queries --------------------------------------------------------------


def plain_crossover(slug: str) -> Study:
    """An open crossover of 2 cases without the CNN: level I (the images), then level II
    (with age, sex and site), a washout of 7 days."""
    from cases.services import study_open

    study = build_study(
        2, slug=slug, status=Study.Status.DRAFT, design=Study.Design.CROSSOVER, washout_days=7
    )
    ReadingCondition.objects.create(study=study, code="level2", position=2, shows_metadata=True)
    return study_open(study=study, actor=None)


def _crossover_world(study: Study, n_readers: int, now) -> None:
    shapes = [(0, 0), (1, 0), (2, 0), (2, 1), (2, 2)]
    for i in range(n_readers):
        first, second = shapes[i % len(shapes)]
        crossover_reader(study, f"{study.slug}-{i}", first=first, second=second, now=now)


def _queries(client, url) -> int:
    with CaptureQueriesContext(connection) as queries:
        assert client.get(url).status_code == 200
    return len(queries)


@pytest.mark.parametrize("page", ["admin:cases_study_overview", "admin:cases_study_progress"])
def test_crossover_pages_make_as_many_queries_for_thirty_readers_as_for_three(
    client, study_admin, now, page
):
    small, large = plain_crossover("small"), plain_crossover("large")
    for study in (small, large):
        study_admin_add(user=study_admin, study=study)
    _crossover_world(small, 3, now)
    _crossover_world(large, 30, now)
    client.force_login(study_admin)
    for study in (small, large):  # warm the session and the kept conditions
        _queries(client, reverse(page, args=[study.pk]))
    few = _queries(client, reverse(page, args=[small.pk]))
    assert _queries(client, reverse(page, args=[large.pk])) == few
    # 22 and 7 now: the dashboard's (test_dashboard's count) with the conditions and
    # the sessions' one query each; the progress's, its washout step in the same query.
    assert few <= (24 if page.endswith("overview") else 9)
