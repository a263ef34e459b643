"""The study's dashboard (its Overview) and the Reader progress page: readers by step,
real and simulated apart; answers per day as an SVG chart with a table; the median
seconds per case of the real readers; the projected completion date; the progress
table sorted, filtered, paginated, real readers first, times with their time zone; a
bounded number of queries whatever the number of readers."""

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

from cases.models import Answer, Case, Enrolment, Invitation, Study
from cases.selectors import (
    PACE_DAYS,
    DayCount,
    ProjectionState,
    ReaderStep,
    StepCounts,
    answers_per_day,
    completion_projection,
    readers_by_step,
    study_dashboard,
)
from cases.services import invitations_create, study_admin_add
from console.views import CHART_MAX_DAYS, answers_chart
from tests.factories import UserFactory, build_study, enrol, ready_enrolment

pytestmark = [pytest.mark.django_db, pytest.mark.postgres]

UTC = dt.UTC
NOW = dt.datetime(2026, 3, 10, 12, 0, tzinfo=UTC)  # "today" is 2026-03-10 in UTC


@contextlib.contextmanager
def clock(moment: dt.datetime):
    """Django's clock stopped at ``moment``: what ``auto_now_add`` and the services
    stamp (no update of an answer's time afterwards, which PostgreSQL refuses)."""
    with mock.patch("django.utils.timezone.now", return_value=moment):
        yield


def answer(enrolment: Enrolment, case: Case, *, at: dt.datetime, seconds: float = 5) -> Answer:
    with clock(at):
        return Answer.objects.create(
            enrolment=enrolment, case=case, diagnosis=case.diagnosis, seconds=seconds
        )


def reader_at(study: Study, username: str, step: ReaderStep, *, simulated: bool = False):
    """An enrolment of a new reader at ``step``: invited (enrolled only), consented
    (consent and profile, no answer), in progress (the first two cases answered) or
    finished (every case answered)."""
    user = UserFactory(username=username)
    if step == ReaderStep.INVITED:
        return enrol(study=study, user=user)
    enrolment = ready_enrolment(study, user, serve=False, is_simulated=simulated)
    cases = [Case.objects.get(pk=pk) for pk in enrolment.case_order]
    if step == ReaderStep.IN_PROGRESS:
        for case in cases[:2]:
            answer(enrolment, case, at=NOW - dt.timedelta(days=1))
    if step == ReaderStep.FINISHED:
        for case in cases:
            answer(enrolment, case, at=NOW - dt.timedelta(days=2))
        Enrolment.objects.filter(pk=enrolment.pk).update(finished_at=NOW - dt.timedelta(days=2))
    return enrolment


@pytest.fixture
def staffed(study_admin):
    """An open study of 4 cases that ``study_admin`` administers."""
    study = build_study(4)
    study_admin_add(user=study_admin, study=study)
    return study


# --- readers by step -------------------------------------------------------------------------


def test_readers_are_counted_by_step_real_and_simulated_apart(staffed):
    for name, step in (
        ("inv1", ReaderStep.INVITED),
        ("inv2", ReaderStep.INVITED),
        ("con1", ReaderStep.CONSENTED),
        ("pro1", ReaderStep.IN_PROGRESS),
        ("fin1", ReaderStep.FINISHED),
        ("fin2", ReaderStep.FINISHED),
    ):
        reader_at(staffed, name, step)
    reader_at(staffed, "sim-pro", ReaderStep.IN_PROGRESS, simulated=True)
    reader_at(staffed, "sim-fin", ReaderStep.FINISHED, simulated=True)
    reader_at(staffed, "sim-fin2", ReaderStep.FINISHED, simulated=True)

    counts = readers_by_step(study=staffed)
    assert counts.real == StepCounts(invited=2, consented=1, in_progress=1, finished=2)
    assert counts.simulated == StepCounts(invited=0, consented=0, in_progress=1, finished=2)
    assert counts.real.enrolled == 6 and counts.simulated.enrolled == 3


def test_a_finished_reader_is_finished_and_a_consent_without_answers_is_consented(staffed):
    """The first step that applies wins: a finished reader is not "in progress", and a
    reader who consented but has not answered is not "invited"."""
    reader_at(staffed, "fin", ReaderStep.FINISHED)
    reader_at(staffed, "con", ReaderStep.CONSENTED)
    assert readers_by_step(study=staffed).real == StepCounts(consented=1, finished=1)


def test_the_overview_page_shows_readers_by_step(client, study_admin, staffed):
    reader_at(staffed, "inv", ReaderStep.INVITED)
    reader_at(staffed, "con", ReaderStep.CONSENTED)
    reader_at(staffed, "sim", ReaderStep.FINISHED, simulated=True)
    client.force_login(study_admin)
    body = client.get(reverse("admin:cases_study_overview", args=[staffed.pk])).content.decode()
    row = (
        r'<tr data-step="(\w+)"><th scope="row">.*?</th>'
        r'<td class="n">(\d+)</td><td class="n">(\d+)</td></tr>'
    )
    cells = {step: (int(real), int(sim)) for step, real, sim in re.findall(row, body)}
    assert cells == {
        "invited": (1, 0),
        "consented": (1, 0),
        "in_progress": (0, 0),
        "finished": (0, 1),
        "enrolled": (2, 1),
    }
    assert "Invited (enrolled, not consented)" in body


# --- the median and the projection -------------------------------------------------------------


def test_the_median_is_over_every_answer_of_the_real_readers_only(staffed):
    first = reader_at(staffed, "a", ReaderStep.CONSENTED)
    second = reader_at(staffed, "b", ReaderStep.CONSENTED)
    simulated = reader_at(staffed, "s", ReaderStep.CONSENTED, simulated=True)
    cases = list(staffed.cases.order_by("position"))
    for case, seconds in zip(cases, (2, 30, 6, 4), strict=True):
        answer(first, case, at=NOW, seconds=seconds)
    for case, seconds in zip(cases[:2], (10, 8), strict=True):
        answer(second, case, at=NOW, seconds=seconds)
    for case in cases:
        answer(simulated, case, at=NOW, seconds=1000)
    # real: 2 4 6 8 10 30 -> (6 + 8) / 2
    assert study_dashboard(study=staffed, now=NOW).median_seconds == 7
    answer(second, cases[2], at=NOW, seconds=9)  # 2 4 6 8 9 10 30 -> 8
    dashboard = study_dashboard(study=staffed, now=NOW)
    assert dashboard.median_seconds == 8
    assert (dashboard.answers_real, dashboard.answers_simulated) == (7, 4)


def test_no_median_without_an_answer_by_a_real_reader(staffed):
    simulated = reader_at(staffed, "s", ReaderStep.CONSENTED, simulated=True)
    answer(simulated, staffed.cases.first(), at=NOW, seconds=3)
    assert study_dashboard(study=staffed, now=NOW).median_seconds is None


def test_the_projection_is_the_pace_of_the_last_seven_days_against_what_is_left(staffed):
    """4 real readers x 4 cases = 16 answers expected; 6 given, 10 left. In the last 7
    days (2026-03-04 to 2026-03-10, today included) 3 were given: 3/7 a day, so
    ceil(10 / (3/7)) = ceil(23.3) = 24 days: 2026-03-10 + 24 days = 2026-04-03."""
    reader_at(staffed, "inv", ReaderStep.INVITED)
    reader_at(staffed, "con", ReaderStep.CONSENTED)
    busy = reader_at(staffed, "busy", ReaderStep.CONSENTED)
    done = reader_at(staffed, "done", ReaderStep.CONSENTED)
    cases = [Case.objects.get(pk=pk) for pk in done.case_order]
    before_window = dt.datetime(2026, 3, 3, 23, 59, tzinfo=UTC)
    for case in cases[:3]:
        answer(done, case, at=before_window)
    answer(done, cases[3], at=dt.datetime(2026, 3, 4, 0, 0, tzinfo=UTC))  # the first day in
    answer(busy, cases[0], at=dt.datetime(2026, 3, 9, 8, 0, tzinfo=UTC))
    answer(busy, cases[1], at=dt.datetime(2026, 3, 10, 9, 0, tzinfo=UTC))
    Enrolment.objects.filter(pk=done.pk).update(finished_at=NOW)
    reader_at(staffed, "sim", ReaderStep.IN_PROGRESS, simulated=True)  # not in the pace

    projection = study_dashboard(study=staffed, now=NOW).projection
    assert projection.state == ProjectionState.PROJECTED
    assert (projection.real_readers, projection.n_cases, projection.answered) == (4, 4, 6)
    assert (projection.expected, projection.remaining, projection.recent_answers) == (16, 10, 3)
    assert projection.window_start == dt.date(2026, 3, 4)
    assert projection.window_end == dt.date(2026, 3, 10)
    assert projection.date == dt.date(2026, 4, 3)


@pytest.mark.parametrize(
    "readers, cases, answered, recent, state, date",
    [
        (2, 10, 6, 7, ProjectionState.PROJECTED, dt.date(2026, 3, 24)),  # 14 left, 1 a day
        (2, 10, 6, 28, ProjectionState.PROJECTED, dt.date(2026, 3, 14)),  # 4 a day: 3.5 -> 4
        (2, 10, 20, 5, ProjectionState.COMPLETE, None),
        (2, 10, 6, 0, ProjectionState.NO_PACE, None),
        (0, 10, 0, 0, ProjectionState.NO_READERS, None),
        (3, 0, 0, 0, ProjectionState.NO_READERS, None),
    ],
)
def test_completion_projection(readers, cases, answered, recent, state, date):
    projection = completion_projection(
        real_readers=readers,
        n_cases=cases,
        answered=answered,
        recent_answers=recent,
        today=dt.date(2026, 3, 10),
    )
    assert (projection.state, projection.date) == (state, date)
    assert projection.per_day == recent / PACE_DAYS


def test_the_overview_page_states_the_projection_and_its_basis(client, study_admin, staffed):
    today = timezone.localdate()
    first = reader_at(staffed, "a", ReaderStep.CONSENTED)
    reader_at(staffed, "b", ReaderStep.CONSENTED)
    cases = list(staffed.cases.order_by("position"))
    for case in cases[:2]:  # 2 in the last 7 days: 6 left at 2/7 a day -> 21 days
        answer(first, case, at=timezone.now() - dt.timedelta(hours=1))
    client.force_login(study_admin)
    body = " ".join(
        client.get(reverse("admin:cases_study_overview", args=[staffed.pk]))
        .content.decode()
        .split()
    )
    expected = (today + dt.timedelta(days=21)).isoformat()
    assert f'<div class="figure" data-testid="projection">{expected}</div>' in body
    assert "In 21 days, at the pace of the last 7 days" in body
    assert "2 real readers × 4 cases − 2 answered" in body  # noqa: RUF001
    assert "Over all 2 answers of the real readers" in body


def test_no_projection_without_answers_in_the_last_seven_days(client, study_admin, staffed):
    first = reader_at(staffed, "a", ReaderStep.CONSENTED)
    answer(first, staffed.cases.first(), at=timezone.now() - dt.timedelta(days=8))
    client.force_login(study_admin)
    body = client.get(reverse("admin:cases_study_overview", args=[staffed.pk])).content.decode()
    assert '<div class="figure" data-testid="projection">No projection</div>' in body
    assert "No answer by a real reader in the last 7 days" in body


# --- answers per day ----------------------------------------------------------------------------


def test_answers_per_day_fill_the_days_between_in_the_sites_time_zone(staffed, settings):
    first = reader_at(staffed, "a", ReaderStep.CONSENTED)
    simulated = reader_at(staffed, "s", ReaderStep.CONSENTED, simulated=True)
    cases = list(staffed.cases.order_by("position"))
    answer(first, cases[0], at=dt.datetime(2026, 3, 1, 10, 0, tzinfo=UTC))
    answer(first, cases[1], at=dt.datetime(2026, 3, 3, 20, 0, tzinfo=UTC))
    answer(simulated, cases[0], at=dt.datetime(2026, 3, 3, 21, 0, tzinfo=UTC))
    days = answers_per_day(study=staffed, tz=UTC, until=dt.date(2026, 3, 5))
    assert [(d.day.day, d.real, d.simulated) for d in days] == [
        (1, 1, 0),
        (2, 0, 0),
        (3, 1, 1),
        (4, 0, 0),
        (5, 0, 0),
    ]
    # 20:00 UTC is 04:00 the next day in Shanghai (UTC+8)
    settings.TIME_ZONE = "Asia/Shanghai"
    dashboard = study_dashboard(study=Study.objects.get(pk=staffed.pk), now=NOW)
    assert dashboard.timezone == "Asia/Shanghai"
    by_day = {d.day: (d.real, d.simulated) for d in dashboard.days}
    assert by_day[dt.date(2026, 3, 1)] == (1, 0) and by_day[dt.date(2026, 3, 4)] == (1, 1)
    assert max(by_day) == dt.date(2026, 3, 10)  # an open study's chart runs to today


def test_a_closed_studys_days_end_with_its_last_answer(staffed):
    first = reader_at(staffed, "a", ReaderStep.CONSENTED)
    answer(first, staffed.cases.first(), at=dt.datetime(2026, 3, 2, 10, 0, tzinfo=UTC))
    Study.objects.filter(pk=staffed.pk).update(status=Study.Status.CLOSED)
    days = study_dashboard(study=Study.objects.get(pk=staffed.pk), now=NOW).days
    assert [d.day for d in days] == [dt.date(2026, 3, 2)]


def test_the_chart_is_an_svg_with_one_bar_per_day_a_title_each_and_a_table(
    client, study_admin, staffed
):
    today = timezone.localdate()
    first = reader_at(staffed, "a", ReaderStep.CONSENTED)
    simulated = reader_at(staffed, "s", ReaderStep.CONSENTED, simulated=True)
    cases = list(staffed.cases.order_by("position"))
    three_days_ago = timezone.now() - dt.timedelta(days=3)
    answer(first, cases[0], at=three_days_ago)
    answer(first, cases[1], at=three_days_ago)
    answer(simulated, cases[0], at=three_days_ago)
    answer(first, cases[2], at=timezone.now())
    client.force_login(study_admin)
    body = client.get(reverse("admin:cases_study_overview", args=[staffed.pk])).content.decode()

    svg = re.search(r'<svg class="answers-chart".*?</svg>', body, re.S).group(0)
    assert 'role="img"' in svg and "<title id=" in svg
    bars = re.findall(r'<g class="bar" data-day="([\d-]+)"><title>([^<]+)</title>', svg)
    days = [(today - dt.timedelta(days=n)).isoformat() for n in (3, 2, 1, 0)]
    assert [day for day, _ in bars] == days  # the days without answers are there, at 0
    assert bars[0][1] == f"{days[0]}: 3 answers (2 by real readers, 1 by simulated readers)"
    assert bars[1][1] == f"{days[1]}: 0 answers" and bars[3][1] == f"{days[3]}: 1 answer"
    assert ">Answers</text>" in svg and ">Day (UTC)</text>" in svg  # both axes labelled
    assert svg.count('class="real"') == 2 and svg.count('class="simulated"') == 1

    table = re.search(r'<details data-testid="answers-table">.*?</details>', body, re.S).group(0)
    rows = re.findall(
        r'<tr><td>([\d-]+)</td><td class="n">(\d+)</td><td class="n">(\d+)</td>'
        r'<td class="n">(\d+)</td></tr>',
        table,
    )
    assert rows == [
        (days[0], "2", "1", "3"),
        (days[1], "0", "0", "0"),
        (days[2], "0", "0", "0"),
        (days[3], "1", "0", "1"),
    ]
    assert 'data-testid="timezone">UTC<' in body


def test_no_chart_before_the_first_answer(client, study_admin, staffed):
    client.force_login(study_admin)
    body = client.get(reverse("admin:cases_study_overview", args=[staffed.pk])).content.decode()
    assert '<svg class="answers-chart"' not in body and "No answers yet." in body


def test_the_chart_draws_the_latest_days_of_a_long_study_on_a_round_scale():
    start = dt.date(2026, 1, 1)
    days = [DayCount(start + dt.timedelta(days=i), i % 7, 0) for i in range(130)]
    days[-1] = DayCount(days[-1].day, 130, 6)  # the busiest day: 136 answers
    chart = answers_chart(days, timezone_name="UTC")
    assert len(chart.bars) == CHART_MAX_DAYS == 120 and chart.days_left_out == 10
    assert chart.first_day == start + dt.timedelta(days=10) and chart.last_day == days[-1].day
    assert [value for _, value in chart.y_ticks] == [0, 50, 100, 150]
    top = chart.bars[-1]
    assert top.real_height + top.simulated_height == pytest.approx(
        (chart.bottom - chart.top) * 136 / 150, abs=0.2
    )
    assert answers_chart([], timezone_name="UTC") is None


def test_the_invitation_links_say_how_many_joins_are_left(staffed):
    usable, revoked, expired = invitations_create(study=staffed, count=3, max_uses=3)
    Invitation.objects.filter(pk=usable.pk).update(uses=1)
    Invitation.objects.filter(pk=revoked.pk).update(revoked=True)
    Invitation.objects.filter(pk=expired.pk).update(expires_at=NOW - dt.timedelta(seconds=1))
    links = study_dashboard(study=staffed, now=NOW).invitations
    assert (links.links, links.uses, links.places_left) == (3, 1, 2)


# --- the reader progress page -------------------------------------------------------------------


def _progress(client, study, **params) -> str:
    response = client.get(reverse("admin:cases_study_progress", args=[study.pk]), params)
    assert response.status_code == 200
    return response.content.decode()


def _codes(body: str) -> list[str]:
    return re.findall(r'<tr data-testid="reader-row" data-reader="(\w+)"', body)


@pytest.fixture
def progress_world(staffed):
    """Readers with 0, 2 and 4 answers (the finished one), a consented one and two
    simulated readers enrolled first (so that only the rule puts them last)."""
    enrolments = {
        "sim-fin": reader_at(staffed, "sim-fin", ReaderStep.FINISHED, simulated=True),
        "sim-pro": reader_at(staffed, "sim-pro", ReaderStep.IN_PROGRESS, simulated=True),
        "alice": reader_at(staffed, "alice", ReaderStep.INVITED),
        "bob": reader_at(staffed, "bob", ReaderStep.IN_PROGRESS),
        "carol": reader_at(staffed, "carol", ReaderStep.FINISHED),
        "dave": reader_at(staffed, "dave", ReaderStep.CONSENTED),
    }
    return {name: e.reader_code for name, e in enrolments.items()}


def test_real_readers_come_before_simulated_ones(client, study_admin, staffed, progress_world):
    client.force_login(study_admin)
    body = _progress(client, staffed)
    codes = _codes(body)
    names = {code: name for name, code in progress_world.items()}
    assert [names[c] for c in codes] == ["alice", "bob", "carol", "dave", "sim-fin", "sim-pro"]
    assert body.index(">Real readers</th>") < body.index(">Simulated readers</th>")
    for sort in ("-answered", "reader", "-last_activity"):
        order = [names[c] for c in _codes(_progress(client, staffed, sort=sort))]
        assert {n for n in order[:4]} == {"alice", "bob", "carol", "dave"}, sort


def test_progress_sorts_by_a_column_either_way(client, study_admin, staffed, progress_world):
    client.force_login(study_admin)
    names = {code: name for name, code in progress_world.items()}
    order = [names[c] for c in _codes(_progress(client, staffed, sort="-answered"))]
    assert order[:4] == ["carol", "bob", "alice", "dave"]  # 4, 2, 0, 0 (then enrolment)
    assert order[4:] == ["sim-fin", "sim-pro"]
    order = [names[c] for c in _codes(_progress(client, staffed, sort="answered"))]
    assert order[:4] == ["alice", "dave", "bob", "carol"]
    order = [names[c] for c in _codes(_progress(client, staffed, sort="-finished"))]
    assert order[0] == "carol"  # the only real reader who finished; empty values last
    order = [names[c] for c in _codes(_progress(client, staffed, sort="step"))]
    assert order[:4] == [
        "alice",
        "dave",
        "bob",
        "carol",
    ]  # invited, consented, in progress, finished
    body = _progress(client, staffed, sort="-answered")
    assert re.search(r'<th scope="col" aria-sort="descending"><a href="\?sort=answered">', body)


def test_an_unknown_sort_is_ignored_and_said_so(client, study_admin, staffed, progress_world):
    client.force_login(study_admin)
    body = _progress(client, staffed, sort="reader__password")
    assert 'data-testid="ignored"' in body and "sort (" in body
    assert len(_codes(body)) == 6


def test_progress_filters_by_step_and_by_text(client, study_admin, staffed, progress_world):
    client.force_login(study_admin)
    finished = _codes(_progress(client, staffed, step="finished"))
    assert finished == [progress_world["carol"], progress_world["sim-fin"]]
    assert _codes(_progress(client, staffed, q="BO")) == [progress_world["bob"]]  # user name
    code = progress_world["dave"]
    assert _codes(_progress(client, staffed, q=code[2:8].lower())) == [code]  # reader code
    assert _codes(_progress(client, staffed, q="sim", step="in_progress")) == [
        progress_world["sim-pro"]
    ]
    body = _progress(client, staffed, q="nobody-like-this")
    assert "No reader matches." in body and "0 readers match" in body


def test_progress_shows_times_with_their_time_zone(client, study_admin, staffed, settings):
    with clock(dt.datetime(2026, 3, 4, 9, 30, tzinfo=UTC)):
        enrolment = ready_enrolment(staffed, UserFactory(username="tz"), serve=False)
    answer(enrolment, staffed.cases.first(), at=dt.datetime(2026, 3, 5, 14, 3, tzinfo=UTC))
    client.force_login(study_admin)
    body = _progress(client, staffed)
    assert '<td class="when">2026-03-04 09:30 UTC</td>' in body  # consented
    assert '<td class="when">2026-03-05 14:03 UTC</td>' in body  # last activity
    assert "Times in UTC" in body
    settings.TIME_ZONE = "Asia/Shanghai"
    body = _progress(client, staffed)
    assert '<td class="when">2026-03-04 17:30 CST</td>' in body and "Times in Asia/Shanghai" in body


def test_progress_is_paginated_fifty_a_page_keeping_sort_and_filter(client, study_admin, staffed):
    real = [enrol(study=staffed, user=UserFactory(username=f"r{i:02d}")) for i in range(53)]
    simulated = reader_at(staffed, "sim", ReaderStep.CONSENTED, simulated=True)
    client.force_login(study_admin)
    first = _progress(client, staffed, sort="user")
    assert _codes(first) == [e.reader_code for e in real[:50]]
    assert "page 1 of 2, 1–50" in first and "54 readers" in first  # noqa: RUF001
    assert 'href="?sort=user&amp;page=2"' in first
    second = _progress(client, staffed, sort="user", page=2)
    assert _codes(second) == [e.reader_code for e in real[50:]] + [simulated.reader_code]
    assert _codes(_progress(client, staffed, sort="user", page=99)) == _codes(second)
    only_invited = _progress(client, staffed, step="invited", sort="-user")
    assert _codes(only_invited)[0] == real[-1].reader_code
    assert 'href="?step=invited&amp;sort=-user&amp;page=2"' in only_invited


def test_progress_keeps_its_export_buttons(client, study_admin, staffed):
    client.force_login(study_admin)
    body = _progress(client, staffed)
    csv = reverse("admin:cases_study_answers_csv", args=[staffed.pk])
    assert f'href="{csv}"' in body and f'href="{csv}?language=zh-hans"' in body


# --- a bounded number of queries ------------------------------------------------------------------


def _world_of(study: Study, n_readers: int) -> None:
    cases = list(study.cases.order_by("position"))
    for i in range(n_readers):
        enrolment = ready_enrolment(study, UserFactory(username=f"q{i}"), serve=False)
        for case in cases[: i % 5]:
            answer(enrolment, case, at=NOW - dt.timedelta(days=i % 9), seconds=i + 1)
        if i % 5 == 4:
            Enrolment.objects.filter(pk=enrolment.pk).update(finished_at=NOW)
    for i in range(2):
        ready_enrolment(study, UserFactory(username=f"qs{i}"), serve=False, is_simulated=True)


def _queries(client, url) -> int:
    with CaptureQueriesContext(connection) as queries:
        assert client.get(url).status_code == 200
    return len(queries)


@pytest.mark.parametrize(
    "page, most",
    # now 21 for the overview: 5 for the dashboard, 7 for the cases per class and
    # study_overview's counts, 1 for the choices, 5 for the session, the user, the study
    # and the permissions, 3 for "Running the study" (its runs, its newest reports, the
    # newest finished one); 8 for the progress: those 5, the count, a page of readers
    # and their answers' times. Two spare for the study's boxes; the equality below is
    # the real check.
    [("admin:cases_study_overview", 23), ("admin:cases_study_progress", 10)],
)
def test_the_pages_make_as_many_queries_for_sixty_readers_as_for_three(
    client, study_admin, django_assert_max_num_queries, page, most
):
    small, large = build_study(4), build_study(4, slug="large")
    for study in (small, large):
        study_admin_add(user=study_admin, study=study)
    _world_of(small, 3)
    _world_of(large, 60)
    client.force_login(study_admin)
    _queries(client, reverse(page, args=[small.pk]))  # warm the session and caches
    few = _queries(client, reverse(page, args=[small.pk]))
    with django_assert_max_num_queries(most):
        assert client.get(reverse(page, args=[large.pk])).status_code == 200
    assert _queries(client, reverse(page, args=[large.pk])) == few


# --- who may see them ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "persona, expected",
    [
        ("anonymous", 302),
        ("reader", 302),
        ("plain_staff", 404),
        ("other_study_admin", 404),
        ("study_admin", 200),
        ("admin_user", 200),
    ],
)
@pytest.mark.parametrize(
    "page, params",
    [
        ("admin:cases_study_overview", {}),
        ("admin:cases_study_progress", {"sort": "-answered", "step": "finished", "q": "x"}),
    ],
)
def test_who_sees_the_dashboard_and_the_progress(
    client, request, staffed, other_study_admin, persona, expected, page, params
):
    study_admin_add(user=other_study_admin, study=build_study(1, slug="elsewhere"))
    if persona != "anonymous":
        client.force_login(request.getfixturevalue(persona))
    response = client.get(reverse(page, args=[staffed.pk]), params)
    assert response.status_code == expected
    if expected == 302:
        assert "/admin/login/" in response["Location"]
    if expected == 200:
        marker = "readers-by-step" if page.endswith("overview") else "progress-filter"
        assert f'data-testid="{marker}"' in response.content.decode()
