"""Locust users for ``bench/loadtest.py``: readers taking a whole study, and the ceiling.

``Reader`` does what a dermatologist's browser does: log in, then for every case GET the
case page, GET its two images and POST the answer (a random choice, and a confidence
when the form asks for one), until the submit redirects to the done page. Each
simulated user takes the next account of the plan file named by ``LOADTEST_PLAN``
(JSON: ``study``, ``password``, ``readers``), so there must be as many users as
accounts. Every answer the server acknowledges (a 302 to the next case or to done) is
counted; at the end the counts and the statistics per kind of request go to the JSON
file named by ``LOADTEST_RESULT``, which the driver compares with the database. Any
other response is a failure in locust's statistics and ends that reader, as it would
leave a real reader stuck. When every reader has stopped, locust quits.

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
from locust import FastHttpUser, constant, events, task
from locust.contrib.fasthttp import FastResponse
from locust.env import Environment
from locust.exception import StopUser
from locust.stats import StatsEntry

CSRF = re.compile(r'name="csrfmiddlewaretoken" value="([^"]+)"')
CASE = re.compile(r'name="case" value="([^"]+)"')
CHOICE = re.compile(r'name="answer" value="([^"]+)"')
CONFIDENCE = re.compile(r'name="confidence" value="([^"]+)"')
IMAGE = re.compile(r'<img src="(/images/[^"]+)"')

PLAN: dict = json.loads(Path(os.environ["LOADTEST_PLAN"]).read_text())
_accounts = itertools.count()
# What the driver checks against the database; written when locust quits.
RESULT = {"acknowledged": 0, "finished": 0, "stopped": 0, "started_at": None, "ended_at": None}


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
        submitted = self._request(
            "POST",
            self.case_url,
            name="submit",
            data=form,
            expect=_redirect_to(self.case_url, self.done_url),
        )
        RESULT["acknowledged"] += 1
        if submitted.headers["Location"] == self.done_url:
            self._request("GET", self.done_url, name="done page")
            RESULT["finished"] += 1
            RESULT["ended_at"] = time.time()
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
        Path(path).write_text(json.dumps({**RESULT, "exceptions": exceptions, "stats": stats}))
