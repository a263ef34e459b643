"""The SQL statements of a reader's requests, pinned: a change that adds one fails here.

Counted as production makes them: outside any test transaction (a transactional test),
so a service's transaction is its own BEGIN and COMMIT, which Django logs as statements
on SQLite and PostgreSQL alike. Sessions come from the test settings' engine,
``audit.sessions`` (Django's cached_db) over the file cache: a logged-in request reads
no session from the database, as with Redis in production (the db engine would add one
statement to each request). Each counted request is the first of its process to need
the study's choices and its reading conditions, which a process then keeps for a minute
(``selectors.study_diagnoses``, ``selectors.study_conditions``): the worst case, two
statements more than the requests after it (``WARM`` pins those). The
session is fresh, so the idle-timeout stamp (a session write at most once a minute,
``readerstudy.middleware``) is not due.

Budgets, cold (issue #13's targets: case page 8, image 2, submit 10): case page 7
(first showing, which serves the case; 6 to reload it), image 2, the form's submit 10
(the enrolment found as it is locked, read once), the page script's ``POST answers/``
with ``next`` 11 (the next case and its images included). Warm, as every request of a
process after its first in a minute: 5, 2, 8 and 9. The reading conditions (#14) added
the one statement that reads them, to cold requests only.
"""

from __future__ import annotations

import re

import pytest
from django.conf import settings
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from cases import selectors
from cases.models import Answer
from tests.factories import build_study, ready_enrolment

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("reference_diagnoses"),
]

CASE_PAGE, IMAGE, FORM_SUBMIT, API_SUBMIT = 7, 2, 10, 11
WARM = 2  # statements fewer once the study's choices and conditions are kept


@pytest.fixture
def reading(client, reader):
    """A reader logged in to an open study of 4 cases that asks for confidence, both
    images shown; their first case not served yet."""
    study = build_study(4, ask_confidence=True, show_clinical_image=True)
    ready_enrolment(study, reader, serve=False)
    # Through the login page, as a reader: that stamps the session's login time.
    response = client.post(reverse("login"), {"username": "reader", "password": "pw-reader-123"})
    assert response.status_code == 302
    return study


def _counted(request, *, warm: bool = False) -> list[str]:
    """The statements of one request, with the study's choices and conditions not yet
    read here (``warm``: read by an earlier request)."""
    if not warm:
        selectors._choices_read.clear()
        selectors._conditions_read.clear()
    with CaptureQueriesContext(connection) as queries:
        response = request()
    statements = [q["sql"] for q in queries.captured_queries]
    assert not [sql for sql in statements if "django_session" in sql], statements
    return response, statements


def _page(client, study) -> tuple[str, list[str]]:
    response, statements = _counted(lambda: client.get(reverse("cases:case", args=[study.slug])))
    assert response.status_code == 200
    return response.content.decode(), statements


def test_the_session_engine_is_the_cached_one():
    assert settings.SESSION_ENGINE == "audit.sessions"
    assert settings.CACHES[settings.SESSION_CACHE_ALIAS]["BACKEND"].endswith(
        ("FileBasedCache", "RedisCache")
    )


def test_a_case_page_and_its_images_stay_within_their_statements(client, reading):
    page, statements = _page(client, reading)
    assert len(statements) <= CASE_PAGE, "\n".join(statements)
    images = re.findall(r'<img src="(/images/[^"]+)"', page)
    assert len(images) == 2
    for url in images:
        response, statements = _counted(lambda url=url: client.get(url))
        assert response.status_code == 200 and len(statements) <= IMAGE, "\n".join(statements)
    # Reloading the page (the case served already) writes nothing.
    _, statements = _page(client, reading)
    assert len(statements) <= CASE_PAGE - 1, "\n".join(statements)
    response, statements = _counted(
        lambda: client.get(reverse("cases:case", args=[reading.slug])), warm=True
    )
    assert response.status_code == 200
    assert len(statements) <= CASE_PAGE - 1 - WARM, "\n".join(statements)
    assert not [sql for sql in statements if sql.startswith(("UPDATE", "INSERT"))]


def test_a_form_submit_stays_within_its_statements(client, reading):
    page, _ = _page(client, reading)
    case = re.search(r'name="case" value="([0-9a-f]+)"', page).group(1)
    response, statements = _counted(
        lambda: client.post(
            reverse("cases:case", args=[reading.slug]),
            {"case": case, "answer": "SK", "confidence": "4"},
        )
    )
    assert response.status_code == 302, response.content[:500]
    assert len(statements) <= FORM_SUBMIT, "\n".join(statements)
    assert Answer.objects.get(case__public_id=case).diagnosis.code == "SK"
    # the next case, its choices and conditions kept by this process: two fewer
    page, _ = _page(client, reading)
    case = re.search(r'name="case" value="([0-9a-f]+)"', page).group(1)
    response, statements = _counted(
        lambda: client.post(
            reverse("cases:case", args=[reading.slug]),
            {"case": case, "answer": "MN", "confidence": "2"},
        ),
        warm=True,
    )
    assert response.status_code == 302, response.content[:500]
    assert len(statements) <= FORM_SUBMIT - WARM, "\n".join(statements)


def test_an_answer_with_the_next_case_stays_within_its_statements(client, reading):
    page, _ = _page(client, reading)
    case = re.search(r'name="case" value="([0-9a-f]+)"', page).group(1)
    response, statements = _counted(
        lambda: client.post(
            reverse("api-reader-answer", args=[reading.slug]),
            {"case": case, "answer": "BCC", "confidence": 2, "next": True},
            content_type="application/json",
        )
    )
    assert response.status_code == 201, response.content[:500]
    assert len(statements) <= API_SUBMIT, "\n".join(statements)
    following = response.json()["next"]
    assert following["case"]["number"] == 2 and len(following["prefetch"]) == 2
    # The next case was served by the same write: answering it needs no GET next/.
    response, statements = _counted(
        lambda: client.post(
            reverse("api-reader-answer", args=[reading.slug]),
            {"case": following["case"]["id"], "answer": "MN", "confidence": 3, "next": True},
            content_type="application/json",
        ),
        warm=True,
    )
    assert response.status_code == 201, response.content[:500]
    assert len(statements) <= API_SUBMIT - WARM, "\n".join(statements)
