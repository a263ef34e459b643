"""Locust users for ``bench/loadtest.py``: readers answering a study, and the ceiling.

``Reader`` does what a dermatologist's browser does: log in, then for every case GET the
case page, GET its two images, read the case for a while and POST the answer (a random
choice, and a confidence when the form asks for one), until it has answered its cases
or the submit redirects to the done page. Each simulated user takes the next account of
the plan file named by ``LOADTEST_PLAN`` (JSON: ``study``, ``password``, ``readers``,
and ``cases``: how many cases each reader answers, 0 for all of them; ``think``: the
seconds a reader looks at a case before submitting, on average, each case drawn
between 0.75 and 1.25 times that; ``together``: whether the readers start answering
only once every one of them has logged in), so there must be as many users as
accounts. Every answer the server acknowledges (a 302 to the next case or to done) is
counted; at the end the counts and the statistics per kind of request go to the JSON
file named by ``LOADTEST_RESULT``, which the driver compares with the database. Any
other response is a failure in locust's statistics and ends that reader, as it would
leave a real reader stuck. When every reader has stopped, locust quits.

With ``together``, the result also has ``window``: the study's requests (case pages,
images, submits) completed while every reader was answering, from the moment the last
one logged in to the moment the first one was done, that window's length, and the CPU
seconds that the stack's processes (the process group ``LOADTEST_STACK_PGID``: gunicorn,
Celery; not PostgreSQL) and this locust process used in it.

``Health`` hits the bare JSON view ``/health/`` as fast as it can: the ceiling of the
same stack in the same run. Pick the class on the command line:
``locust -f bench/locustfile.py --headless ... Reader`` (or ``Health``).
"""

from __future__ import annotations

import itertools
import json
import os
import random
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import NoReturn

import gevent
import gevent.event
from locust import FastHttpUser, constant, events, task
from locust.contrib.fasthttp import FastResponse
from locust.env import Environment
from locust.exception import StopUser
from locust.stats import StatsEntry

from bench.loadtest import stack_cpu_seconds

CSRF = re.compile(r'name="csrfmiddlewaretoken" value="([^"]+)"')
CASE = re.compile(r'name="case" value="([^"]+)"')
CHOICE = re.compile(r'name="answer" value="([^"]+)"')
CONFIDENCE = re.compile(r'name="confidence" value="([^"]+)"')
IMAGE = re.compile(r'<img src="(/images/[^"]+)"')

# The readers' plan (none for the ceiling's run).
PLAN: dict = (
    json.loads(Path(os.environ["LOADTEST_PLAN"]).read_text())
    if "LOADTEST_PLAN" in os.environ
    else {}
)
_accounts = itertools.count()
# What the driver checks against the database; written when locust quits.
RESULT = {
    "acknowledged": 0,
    "finished": 0,
    "stopped": 0,
    "started_at": None,
    "ended_at": None,
    "all_answering_at": None,  # the last reader logged in (``together``)
    "first_done_at": None,  # the first reader answered its cases
}
STUDY_REQUESTS = {"case page", "image", "submit"}
_logins_over = 0  # readers past their login, whether it worked or not
_all_logged_in = gevent.event.Event()
_study_requests_done: list[float] = []  # when each of the study's requests completed
_cpu_at: dict[str, tuple[float, float]] = {}  # (stack, locust) CPU seconds at a moment


def _mark_cpu(moment: str) -> None:
    pgid = int(os.environ.get("LOADTEST_STACK_PGID", "0"))
    _cpu_at[moment] = (stack_cpu_seconds(pgid) if pgid else 0.0, time.process_time())


@events.request.add_listener
def _tally(name: str, exception: object = None, **_kwargs: object) -> None:
    if name in STUDY_REQUESTS and exception is None:
        _study_requests_done.append(time.time())


class Reader(FastHttpUser):
    """One dermatologist taking the whole study without pausing."""

    # No reading time: the study goes as fast as the stack allows. One connection per
    # reader, as one browser tab.
    wait_time = constant(0)
    concurrency = 1

    def on_start(self) -> None:
        self.index = next(_accounts)
        if self.index >= len(PLAN["readers"]):
            raise StopUser()  # more users than accounts: nothing to do
        RESULT["started_at"] = RESULT["started_at"] or time.time()
        self.case_url = f"/studies/{PLAN['study']}/case/"
        self.done_url = f"/studies/{PLAN['study']}/done/"
        self.answered = 0
        try:
            page = self._request("GET", f"/accounts/login/?next={self.case_url}", name="login page")
            self._request(
                "POST",
                "/accounts/login/",
                name="login",
                data={
                    "username": PLAN["readers"][self.index],
                    "password": PLAN["password"],
                    "csrfmiddlewaretoken": _field(CSRF, page),
                    "next": self.case_url,
                },
                expect=_redirect_to(self.case_url),
            )
        finally:
            global _logins_over
            _logins_over += 1
            if _logins_over == len(PLAN["readers"]):
                RESULT["all_answering_at"] = time.time()
                _mark_cpu("start")
                _all_logged_in.set()
        if PLAN.get("together"):
            _all_logged_in.wait()

    @task
    def answer_one_case(self) -> None:
        page = self._request("GET", self.case_url, name="case page")
        body = page.text or ""
        images = IMAGE.findall(body)
        if len(images) != 2:
            _unusable(f"expected 2 images, found {len(images)}")
        for url in images:
            self._request("GET", url, name="image", expect=_jpeg)
        choices = CHOICE.findall(body)
        if not choices:
            _unusable("no diagnosis to choose from")
        form = {
            "csrfmiddlewaretoken": _field(CSRF, page),
            "case": _field(CASE, page),
            "answer": random.choice(choices),
        }
        levels = CONFIDENCE.findall(body)
        if levels:
            form["confidence"] = random.choice(levels)
        if PLAN.get("think"):
            gevent.sleep(PLAN["think"] * random.uniform(0.75, 1.25))  # reading the case
        submitted = self._request(
            "POST",
            self.case_url,
            name="submit",
            data=form,
            expect=_redirect_to(self.case_url, self.done_url),
        )
        RESULT["acknowledged"] += 1
        self.answered += 1
        done = submitted.headers["Location"] == self.done_url
        if done:
            self._request("GET", self.done_url, name="done page")
            RESULT["finished"] += 1
        if done or self.answered == PLAN.get("cases"):
            RESULT["ended_at"] = time.time()
            if RESULT["first_done_at"] is None:
                RESULT["first_done_at"] = RESULT["ended_at"]
                _mark_cpu("end")
            raise StopUser()

    def on_stop(self) -> None:
        RESULT["stopped"] += 1
        if RESULT["stopped"] == self.environment.parsed_options.num_users:
            # Not from this greenlet: quitting kills every user, this one included.
            gevent.spawn(self.environment.runner.quit)

    def _request(
        self,
        method: str,
        path: str,
        *,
        name: str,
        expect: Callable[[FastResponse], str | None] | None = None,
        data: dict | None = None,
    ) -> FastResponse:
        """One request without following redirects, so each is timed on its own;
        ``expect`` returns why the response is wrong (default: anything but a 200)."""
        check = expect or _status(200)
        with self.client.request(
            method, path, name=name, data=data, allow_redirects=False, catch_response=True
        ) as response:
            problem = check(response)
            if problem is None:
                response.success()
            else:
                response.failure(problem)
        if problem is not None:
            raise StopUser()
        return response


class Health(FastHttpUser):
    """The ceiling: the bare JSON view (one ``SELECT 1``) on the same stack."""

    concurrency = 1

    @task
    def health(self) -> None:
        self.client.get("/health/", name="health")


def _status(code: int) -> Callable[[FastResponse], str | None]:
    return lambda response: None if response.status_code == code else f"HTTP {response.status_code}"


def _jpeg(response: FastResponse) -> str | None:
    if response.status_code != 200:
        return f"HTTP {response.status_code}"
    if response.headers.get("Content-Type") != "image/jpeg" or not response.content:
        return "not a JPEG"
    return None


def _redirect_to(*paths: str) -> Callable[[FastResponse], str | None]:
    """A 302 to one of ``paths``: how the login and a submit say they succeeded."""

    def check(response: FastResponse) -> str | None:
        if response.status_code != 302:
            return f"HTTP {response.status_code}, expected a redirect"
        location = response.headers.get("Location")
        return None if location in paths else f"redirect to {location}"

    return check


def _field(pattern: re.Pattern, response: FastResponse) -> str:
    """A form value from a page."""
    match = pattern.search(response.text or "")
    if match is None:
        _unusable(f"no match for {pattern.pattern}")
    return match.group(1)


def _unusable(problem: str) -> NoReturn:
    """A page that passed its status check but cannot be used: a failure in the
    statistics, and this reader stops."""
    events.request.fire(
        request_type="PARSE",
        name="unusable page",
        response_time=0,
        response_length=0,
        exception=ValueError(problem),
        context={},
    )
    raise StopUser()


def _summary(entry: StatsEntry) -> dict[str, float]:
    return {
        "requests": entry.num_requests,
        "failures": entry.num_failures,
        "p50": entry.get_response_time_percentile(0.5),
        "p95": entry.get_response_time_percentile(0.95),
        "p99": entry.get_response_time_percentile(0.99),
        "per_second": entry.total_rps,
    }


@events.quitting.add_listener
def _write_result(environment: Environment, **_kwargs: object) -> None:
    """The counts and the statistics per request name, as they stand at the very end
    (locust's own CSV files are written periodically and can miss the last second)."""
    path = os.environ.get("LOADTEST_RESULT")
    if path:
        runner = environment.runner
        exceptions = sum(row["count"] for row in runner.exceptions.values()) if runner else 0
        stats = {entry.name: _summary(entry) for entry in environment.stats.entries.values()}
        stats["all"] = _summary(environment.stats.total)
        window = None
        start, end = RESULT["all_answering_at"], RESULT["first_done_at"]
        if PLAN.get("together") and start and end and end > start:
            inside = sum(start <= at <= end for at in _study_requests_done)
            (stack_0, locust_0), (stack_1, locust_1) = _cpu_at["start"], _cpu_at["end"]
            window = {
                "requests": inside,
                "seconds": end - start,
                "stack_cpu_seconds": stack_1 - stack_0,
                "locust_cpu_seconds": locust_1 - locust_0,
            }
        Path(path).write_text(
            json.dumps({**RESULT, "exceptions": exceptions, "stats": stats, "window": window})
        )
