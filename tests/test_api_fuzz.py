"""schemathesis against the live app's /api/schema/, as a reader and as a study admin.

Each operation of the schema gets up to 25 generated requests (derandomised: the same
ones on every run), sent through Django's WSGI handler with the persona's session, and
every response must be no 5xx and match the schema: its status documented, its body
the documented shape (``ErrorOut`` for every 4xx).

A plain Hypothesis loop over the schema's operations rather than schemathesis's pytest
plugin: a schema loaded in a fixture (per test, with its database) needs the plugin's
``from_fixture``, which reads a pytest internal (``Node._nodeid``) that pytest 9.2 no
longer has.
"""

from __future__ import annotations

import pytest
import schemathesis
from django.conf import settings
from django.core.handlers.wsgi import WSGIHandler
from django.test import Client
from django.utils.crypto import get_random_string
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import (
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from cases.models import Case, Enrolment
from cases.selectors import next_case_id
from cases.services import answer_submit, case_serve, study_admin_add
from tests.factories import build_study, ready_enrolment

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

SLUG = "fuzz"  # every {slug} in the schema is this study's
CODES = ["MN", "SK", "BCC"]  # its choices
CHECKS = [not_a_server_error, status_code_conformance, response_schema_conformance]


def _study():
    return build_study(6, slug=SLUG, ask_confidence=True, allow_answer_changes=True)


def _schema_for(user):
    """The schema as ``user`` loads it from /api/schema/, and every request of the run
    sent as their browser would: with their session cookie and a CSRF token (the API's
    session authentication asks one of every POST)."""
    client = Client()
    client.force_login(user)
    session = client.cookies[settings.SESSION_COOKIE_NAME].value
    csrf = get_random_string(32)  # a CSRF secret as Django makes them: 32 letters or digits
    handler = WSGIHandler()

    def app(environ, start_response):
        environ["HTTP_COOKIE"] = (
            f"{settings.SESSION_COOKIE_NAME}={session}; {settings.CSRF_COOKIE_NAME}={csrf}"
        )
        environ["HTTP_X_CSRFTOKEN"] = csrf
        return handler(environ, start_response)

    return schemathesis.openapi.from_wsgi("/api/schema/?format=json", app)


@pytest.fixture
def reader_schema(transactional_db, reference_diagnoses, reader):
    """A reader enrolled in an open study with cases: consented, profile filled, their
    first case served."""
    ready_enrolment(_study(), reader)
    return _schema_for(reader)


@pytest.fixture
def study_admin_schema(transactional_db, reference_diagnoses, study_admin, reader):
    """A study admin (staff) of a study that a reader has started answering."""
    study = _study()
    study_admin_add(user=study_admin, study=study)
    enrolment = ready_enrolment(study, reader)
    first = Case.objects.get(pk=enrolment.case_order[0])
    answer_submit(
        enrolment=enrolment, case_public_id=first.public_id, diagnosis_code="MN", confidence=3
    )
    case_serve(
        enrolment=Enrolment.objects.get(pk=enrolment.pk),
        case=Case.objects.get(pk=enrolment.case_order[1]),
    )
    return _schema_for(study_admin)


FUZZ_SETTINGS = hypothesis_settings(
    max_examples=25,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=list(HealthCheck),
)


def _answerable(operation):
    """Generated answers for the reader's next case, served first as ``GET next/``
    serves it (once every case is answered: a revision of the last), with one of the
    study's codes and a confidence of 1 to 5, the other fields as generated: so the
    answered paths (201, 200, 409, the next screen) are fuzzed too, not only refusals."""

    def aim(drawn):
        case, code, confidence = drawn
        enrolment = Enrolment.objects.get(study__slug=SLUG)
        pk = next_case_id(enrolment=enrolment)
        if pk is not None:
            case_serve(enrolment=enrolment, case=Case.objects.get(pk=pk))
        target = Case.objects.get(pk=pk or enrolment.case_order[-1]).public_id
        if isinstance(case.body, dict):
            case.body = {**case.body, "case": target, "answer": code, "confidence": confidence}
        return case

    generated = operation.as_strategy(GenerationMode.POSITIVE, path_parameters={"slug": SLUG})
    return st.tuples(generated, st.sampled_from(CODES), st.integers(1, 5)).map(aim)


def _fuzz(schema, *, answers: bool = False) -> list[str]:
    """Send each operation up to 25 generated requests, valid and invalid ones mixed
    (with ``answers``, 25 more answers a reader could send); the failures, one entry per
    run (the smallest failing request, as curl)."""
    failures = []
    for result in schema.get_all_operations():
        operation = result.ok()
        fixed = {"slug": SLUG} if "{slug}" in operation.path else None
        runs = [
            st.one_of(
                operation.as_strategy(mode, path_parameters=fixed)
                for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
            )
        ]
        if answers and operation.path.endswith("/answers/") and operation.method == "post":
            runs.append(_answerable(operation))
        for cases in runs:

            @FUZZ_SETTINGS
            @given(case=cases)
            def check(case):
                case.call_and_validate(checks=CHECKS)

            try:
                check()
            # schemathesis's failures (an exception group) for hypothesis's smallest case
            except (Exception, BaseExceptionGroup) as failure:
                failures.append(f"{operation.label}: {failure}")
    return failures


def test_api_as_a_reader(reader_schema):
    failures = _fuzz(reader_schema, answers=True)
    assert not failures, "\n\n".join(failures)


def test_api_as_a_study_admin(study_admin_schema):
    failures = _fuzz(study_admin_schema)
    assert not failures, "\n\n".join(failures)
