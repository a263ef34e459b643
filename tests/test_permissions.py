"""The permission table: persona x (URL, method) -> status, for every URL of the site.

A URL name, or a method its view accepts, without a row here fails
`test_every_url_and_method_has_a_row`.
"""

from __future__ import annotations

import os
import re

import pytest
from django.core.files.base import ContentFile
from django.urls import URLPattern, URLResolver, get_resolver, reverse

from analysis.models import AnalysisReport
from cases.models import Case
from cases.services import answer_submit, case_serve, invitations_create, study_admin_add
from inference.models import Prediction, RegisteredModel
from tests.factories import build_study, make_study, ready_enrolment

pytestmark = pytest.mark.django_db

PERSONAS = (
    "anonymous",
    "outsider",  # logged in, in no study
    "plain_staff",  # staff, administers no study
    "reader",  # enrolled in the world's study, one answer given
    "other_reader",  # enrolled in another study
    "study_admin",  # administers the world's study
    "other_study_admin",  # staff who administers another study
    "admin_user",  # superuser
)
METHODS = ("get", "post", "put", "patch", "delete")


def walk(patterns, prefix="", namespace=None):
    """(route, name, view callback) of every URL pattern, admin included."""
    for pattern in patterns:
        if isinstance(pattern, URLResolver):
            yield from walk(
                pattern.url_patterns, prefix + str(pattern.pattern), pattern.namespace or namespace
            )
        elif isinstance(pattern, URLPattern):
            name = f"{namespace}:{pattern.name}" if namespace and pattern.name else pattern.name
            yield prefix + str(pattern.pattern), name, pattern.callback


def view_methods(callback) -> set[str]:
    """The methods a view answers with something other than 405. A class-based view
    (Django's or DRF's) says so through its handlers; a function view is tabled for GET
    and POST, the two methods a browser sends (its 405s are rows too)."""
    cls = getattr(callback, "view_class", None) or getattr(callback, "cls", None)
    if cls is None:
        return {"get", "post"}
    return {m for m in METHODS if m in cls.http_method_names and hasattr(cls, m)}


@pytest.fixture
def world(settings, reader, other_reader, study_admin, other_study_admin):
    """One open study that allows answer changes, with a reader who answered its first
    case and was served the second; another study with its own reader and admin; a
    prediction with a Grad-CAM file and a done analysis report with a file on disk."""
    study = build_study(3, allow_answer_changes=True)
    enrolment = ready_enrolment(study, reader)
    first, second = (Case.objects.get(pk=pk) for pk in enrolment.case_order[:2])
    case_serve(enrolment=enrolment, case=first)
    answer_submit(enrolment=enrolment, case_public_id=first.public_id, diagnosis_code="MN")
    enrolment.refresh_from_db()
    case_serve(enrolment=enrolment, case=second)
    elsewhere = make_study(slug="elsewhere", status="open", consent_text="x", consent_version="1")
    ready_enrolment(elsewhere, other_reader)
    study_admin_add(user=study_admin, study=study)
    study_admin_add(user=other_study_admin, study=elsewhere)

    model = RegisteredModel.objects.create(
        name="m", arch="efficientnet_b4_aux", classes=["MN", "SK", "BCC"], preprocessing={}
    )
    prediction = Prediction(model=model, case=first, choice=first.diagnosis)
    prediction.gradcam.save("cam.png", ContentFile(b"\x89PNG"), save=True)
    report = AnalysisReport.objects.create(
        study=study, fingerprint="0" * 64, status="done", files=["report.html"]
    )
    report.path.mkdir(parents=True)
    (report.path / "report.html").write_text("<html>report</html>")
    return {
        "slug": study.slug,
        "token": invitations_create(study=study, count=1)[0].token,
        "image": first.images.get(kind="dermoscopic").public_id,
        "prediction": prediction.pk,
        "report": report.pk,
        "first_case": first.public_id,
        "next_case": second.public_id,
    }


# (url name, args from the world, method, body (values from the world),
#  statuses for the PERSONAS in order:
#  anon, outsider, plain_staff, reader, other_reader, study_admin, other_study_admin, superuser)
S = "slug"
NO_METHOD = (405,) * 8  # a method the view does not accept: 405 for everyone
PROFILE = {"level": "attending", "years_in_dermatology": "4"}
NEXT_ANSWER = {"case": "next_case", "answer": "MN"}
TABLE = [
    ("home", [], "get", None, (200,) * 8),
    ("home", [], "post", None, (200,) * 8),
    ("health", [], "get", None, (200,) * 8),
    ("health", [], "post", None, (200,) * 8),
    ("favicon", [], "get", None, (302,) * 8),  # to the static SVG
    ("favicon", [], "post", None, NO_METHOD),
    ("login", [], "get", None, (200,) * 8),
    ("login", [], "post", None, (200,) * 8),  # empty form: shown again with its errors
    ("login", [], "put", None, (200,) * 8),
    ("logout", [], "get", None, NO_METHOD),
    ("logout", [], "post", None, (200,) * 8),
    ("password_change", [], "get", None, (302, 200, 200, 200, 200, 200, 200, 200)),
    ("password_change", [], "post", None, (302, 200, 200, 200, 200, 200, 200, 200)),
    ("password_change", [], "put", None, (302, 200, 200, 200, 200, 200, 200, 200)),
    ("password_change_done", [], "get", None, (302, 200, 200, 200, 200, 200, 200, 200)),
    ("password_change_done", [], "post", None, (302, 405, 405, 405, 405, 405, 405, 405)),
    ("set_language", [], "get", None, (302,) * 8),
    ("set_language", [], "post", None, (302,) * 8),
    # images: the study's readers and admins get the web size; the original is staff's
    ("cases:image", ["image", "web"], "get", None, (404, 404, 404, 200, 404, 200, 404, 200)),
    ("cases:image", ["image", "original"], "get", None, (404, 404, 404, 404, 404, 200, 404, 200)),
    ("cases:image", ["image", "web"], "post", None, NO_METHOD),
    # the CNN's Grad-CAM on a reader's current read: none in a condition that shows none
    # (tests/cases/test_reading_designs.py serves it where one does)
    (
        "cases:support_gradcam",
        [S, "next_case", "unaided"],
        "get",
        None,
        (302, 404, 404, 404, 404, 404, 404, 404),
    ),
    ("cases:support_gradcam", [S, "next_case", "unaided"], "post", None, NO_METHOD),
    # a reader already in the link's study goes on to their step
    ("cases:join", ["token"], "get", None, (200, 200, 200, 302, 200, 200, 200, 200)),
    # an empty registration form is a 400; a logged-in user who posts joins the study
    ("cases:join", ["token"], "post", None, (400, 302, 302, 302, 302, 302, 302, 302)),
    ("cases:study", [S], "get", None, (302, 404, 404, 302, 404, 404, 404, 404)),
    ("cases:study", [S], "post", None, (302, 404, 404, 302, 404, 404, 404, 404)),
    ("cases:consent", [S], "get", None, (302, 404, 404, 302, 404, 404, 404, 404)),
    ("cases:consent", [S], "post", {"agree": "on"}, (302, 404, 404, 302, 404, 404, 404, 404)),
    ("cases:profile", [S], "get", None, (302, 404, 404, 200, 404, 404, 404, 404)),
    ("cases:profile", [S], "post", PROFILE, (302, 404, 404, 302, 404, 404, 404, 404)),
    ("cases:case", [S], "get", None, (302, 404, 404, 200, 404, 404, 404, 404)),
    ("cases:case", [S], "post", NEXT_ANSWER, (302, 404, 404, 302, 404, 404, 404, 404)),
    ("cases:case_revise", [S, 1], "get", None, (302, 404, 404, 200, 404, 404, 404, 404)),
    (
        "cases:case_revise",
        [S, 1],
        "post",
        {"case": "first_case", "answer": "SK"},
        (302, 404, 404, 302, 404, 404, 404, 404),
    ),
    # a case not answered yet cannot be revised
    ("cases:case_revise", [S, 2], "get", None, (302, 404, 404, 404, 404, 404, 404, 404)),
    ("cases:done", [S], "get", None, (302, 404, 404, 302, 404, 404, 404, 404)),
    ("cases:done", [S], "post", None, (302, 404, 404, 302, 404, 404, 404, 404)),
    ("api-reader-studies", [], "get", None, (403, 200, 200, 200, 200, 200, 200, 200)),
    ("api-reader-studies", [], "post", None, (403, 405, 405, 405, 405, 405, 405, 405)),
    ("api-reader-next", [S], "get", None, (403, 404, 404, 200, 404, 404, 404, 404)),
    ("api-reader-next", [S], "post", None, (403, 405, 405, 405, 405, 405, 405, 405)),
    ("api-reader-progress", [S], "get", None, (403, 404, 404, 200, 404, 404, 404, 404)),
    ("api-reader-progress", [S], "post", None, (403, 405, 405, 405, 405, 405, 405, 405)),
    ("api-reader-consent", [S], "get", None, (403, 405, 405, 405, 405, 405, 405, 405)),
    ("api-reader-consent", [S], "post", None, (403, 404, 404, 200, 404, 404, 404, 404)),
    ("api-reader-answer", [S], "get", None, (403, 405, 405, 405, 405, 405, 405, 405)),
    ("api-reader-answer", [S], "post", NEXT_ANSWER, (403, 404, 404, 201, 404, 404, 404, 404)),
    # the admin API: staff only (403 otherwise); another study's admin gets a 404
    # finishing a study that allows changes: refused while cases are unanswered
    ("api-reader-finish", [S], "get", None, (403, 405, 405, 405, 405, 405, 405, 405)),
    ("api-reader-finish", [S], "post", None, (403, 404, 404, 409, 404, 404, 404, 404)),
    ("api-admin-studies", [], "get", None, (403, 403, 200, 403, 403, 200, 200, 200)),
    ("api-admin-studies", [], "post", None, (403, 403, 405, 403, 403, 405, 405, 405)),
    ("api-admin-study", [S], "get", None, (403, 403, 404, 403, 403, 200, 404, 200)),
    ("api-admin-study", [S], "post", None, (403, 403, 405, 403, 403, 405, 405, 405)),
    ("api-admin-cases", [S], "get", None, (403, 403, 404, 403, 403, 200, 404, 200)),
    ("api-admin-cases", [S], "post", None, (403, 403, 405, 403, 403, 405, 405, 405)),
    ("api-admin-enrolments", [S], "get", None, (403, 403, 404, 403, 403, 200, 404, 200)),
    ("api-admin-enrolments", [S], "post", None, (403, 403, 405, 403, 403, 405, 405, 405)),
    ("api-admin-answers", [S], "get", None, (403, 403, 404, 403, 403, 200, 404, 200)),
    ("api-admin-answers", [S], "post", None, (403, 403, 405, 403, 403, 405, 405, 405)),
    ("api-admin-answers-csv", [S], "get", None, (403, 403, 404, 403, 403, 200, 404, 200)),
    ("api-admin-answers-csv", [S], "post", None, (403, 403, 405, 403, 403, 405, 405, 405)),
    ("api-admin-invitations", [S], "get", None, (403, 403, 404, 403, 403, 200, 404, 200)),
    (
        "api-admin-invitations",
        [S],
        "post",
        {"count": 2},
        (403, 403, 404, 403, 403, 201, 404, 201),
    ),
    ("api-schema", [], "get", None, (403, 200, 200, 200, 200, 200, 200, 200)),
    ("api-schema", [], "post", None, (403, 405, 405, 405, 405, 405, 405, 405)),
    ("api-docs", [], "get", None, (403, 200, 200, 200, 200, 200, 200, 200)),
    ("api-docs", [], "post", None, (403, 405, 405, 405, 405, 405, 405, 405)),
    # report files and model output: the study's admins only, a 404 for anyone else
    (
        "analysis:report_file",
        ["report", "report.html"],
        "get",
        None,
        (404, 404, 404, 404, 404, 200, 404, 200),
    ),
    ("analysis:report_file", ["report", "report.html"], "post", None, NO_METHOD),
    ("inference:gradcam", ["prediction"], "get", None, (404, 404, 404, 404, 404, 200, 404, 200)),
    ("inference:gradcam", ["prediction"], "post", None, NO_METHOD),
    ("inference:predictions_csv", [S], "get", None, (404, 404, 404, 404, 404, 200, 404, 200)),
    ("inference:predictions_csv", [S], "post", None, NO_METHOD),
]


def _cases():
    for name, args, method, data, statuses in TABLE:
        for persona, status in zip(PERSONAS, statuses, strict=True):
            yield pytest.param(
                name,
                args,
                method,
                data,
                persona,
                status,
                id=f"{name}{args}-{method}-{persona}",
            )


def _from_world(world, value):
    return world.get(value, value) if isinstance(value, str) else value


@pytest.mark.parametrize("name, args, method, data, persona, expected", list(_cases()))
def test_permission_table(client, request, world, name, args, method, data, persona, expected):
    if persona != "anonymous":
        client.force_login(request.getfixturevalue(persona))
    url = reverse(name, args=[_from_world(world, a) for a in args])
    body = {key: _from_world(world, value) for key, value in (data or {}).items()}
    if name.startswith("api-") and method != "get":
        response = getattr(client, method)(url, body, content_type="application/json")
    else:
        response = getattr(client, method)(url, body)
    if os.environ.get("PERMISSION_DUMP"):
        with open(os.environ["PERMISSION_DUMP"], "a") as dump:
            dump.write(f"{name}|{args}|{method}|{persona}|{response.status_code}\n")
        return
    assert response.status_code == expected, (url, method, persona, response.status_code)


def test_the_revise_row_is_a_real_change(client, reader, world):
    """The table's revise POST writes: the first answer becomes SK, and the history keeps
    the old one."""
    client.force_login(reader)
    url = reverse("cases:case_revise", args=[world["slug"], 1])
    response = client.post(url, {"case": world["first_case"], "answer": "SK"})
    assert response.status_code == 302
    answer = reader.enrolments.get(study__slug=world["slug"]).answers.get()
    assert answer.diagnosis.code == "SK" and answer.changes.get().previous_diagnosis.code == "MN"


def test_every_url_and_method_has_a_row():
    covered = {(name, method) for name, _, method, *_ in TABLE}
    missing = sorted(
        f"{method.upper()} {route} ({name})"
        for route, name, callback in walk(get_resolver().url_patterns)
        if not route.startswith("admin/")
        for method in view_methods(callback) | {"get", "post"}
        if (name, method) not in covered
    )
    assert not missing, f"URLs and methods without a permission row: {missing}"


def test_the_guard_sees_the_methods_a_view_allows():
    """`view_methods` reads a class-based view's handlers, so a new PUT would need a row."""
    callbacks = {name: cb for _, name, cb in walk(get_resolver().url_patterns)}
    assert view_methods(callbacks["api-admin-invitations"]) == {"get", "post"}
    assert view_methods(callbacks["logout"]) == {"post"}
    assert view_methods(callbacks["api-reader-answer"]) == {"post"}
    assert view_methods(callbacks["cases:case"]) == {"get", "post"}


# --- the admin ----------------------------------------------------------------------------


def _admin_routes():
    for route, name, _ in walk(get_resolver().url_patterns):
        if not route.startswith("admin/") or name in {"admin:login", "admin:logout"}:
            continue
        if route.startswith("admin/^") or "(?P<url>" in route:
            continue  # the admin's catch-all redirect
        yield pytest.param(route, id=name or route)


def _fill(route: str) -> str:
    route = re.sub(r"<int:[^>]+>", "1", route)
    return "/" + re.sub(r"<(?:path:|str:|slug:)?[^>]+>", "x", route)


@pytest.mark.parametrize("route", list(_admin_routes()))
@pytest.mark.parametrize("persona", ["anonymous", "reader"])
def test_every_admin_url_needs_staff(client, request, route, persona):
    if persona != "anonymous":
        client.force_login(request.getfixturevalue(persona))
    response = client.get(_fill(route))
    assert response.status_code == 302 and "/admin/login/" in response["Location"], route


def _study_objects(world) -> dict[str, int]:
    """Primary keys of the world study's objects, by the admin URL that shows each."""
    from cases.models import Answer, CaseImage, Enrolment, Invitation, Study

    study = Study.objects.get(slug=world["slug"])
    return {
        "admin:cases_study_change": study.pk,
        "admin:cases_study_overview": study.pk,
        "admin:cases_study_progress": study.pk,
        "admin:cases_study_invitations": study.pk,
        "admin:cases_study_import": study.pk,
        "admin:cases_study_lifecycle": study.pk,
        "admin:cases_study_answers_csv": study.pk,
        "admin:analysis_study_report": study.pk,
        "admin:cases_case_change": study.cases.first().pk,
        "admin:cases_caseimage_change": CaseImage.objects.filter(case__study=study).first().pk,
        "admin:cases_enrolment_change": Enrolment.objects.get(study=study).pk,
        "admin:cases_answer_change": Answer.objects.get(enrolment__study=study).pk,
        "admin:cases_invitation_change": Invitation.objects.get(study=study).pk,
        "admin:analysis_analysisreport_change": world["report"],
        "admin:inference_prediction_change": world["prediction"],
    }


ANOTHER_STUDYS_OBJECTS = [
    "admin:cases_study_change",
    "admin:cases_study_overview",
    "admin:cases_study_progress",
    "admin:cases_study_invitations",
    "admin:cases_study_import",
    "admin:cases_study_lifecycle",
    "admin:cases_study_answers_csv",
    "admin:analysis_study_report",
    "admin:cases_case_change",
    "admin:cases_caseimage_change",
    "admin:cases_enrolment_change",
    "admin:cases_answer_change",
    "admin:cases_invitation_change",
    "admin:analysis_analysisreport_change",
    "admin:inference_prediction_change",
]


@pytest.mark.parametrize("url_name", ANOTHER_STUDYS_OBJECTS)
@pytest.mark.parametrize(
    "persona", ["anonymous", "reader", "plain_staff", "other_study_admin", "study_admin"]
)
def test_admin_pages_of_a_studys_objects(client, request, world, url_name, persona):
    """Another study's admin (and staff with no study) never see the object: a 404, a 403,
    or the admin's redirect to its index ("does not exist"); readers and anonymous users
    go to the admin login. The study's own admin opens the page."""
    if persona != "anonymous":
        client.force_login(request.getfixturevalue(persona))
    url = reverse(url_name, args=[_study_objects(world)[url_name]])
    response = client.get(url)
    if persona in ("anonymous", "reader"):
        assert response.status_code == 302 and "/admin/login/" in response["Location"], url
    elif persona == "study_admin":
        assert response.status_code == 200, url
    else:
        assert response.status_code in (403, 404) or (
            response.status_code == 302 and "/admin/login/" not in response["Location"]
        ), (url, response.status_code)
        if response.status_code == 302:
            assert response["Location"] == reverse("admin:index"), url
