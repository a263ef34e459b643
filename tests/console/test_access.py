"""The staff console has one door: every per-study page opens its study through
console.access.study_for_staff, another study's admin (or staff of no study) gets a
404 on every page and method, and a study admin without a page's permission is sent to
the admin index."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

import pytest
from django.contrib.auth.models import Permission
from django.urls import reverse

import console.access
import console.views
import inference.views
from analysis.models import AnalysisReport
from cases.models import Invitation, Study
from cases.services import study_admin_add
from console import urls as console_urls
from inference.models import InferenceRun, RegisteredModel
from tests.factories import CaseFactory, enrol, make_study

pytestmark = pytest.mark.django_db

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def world(reader, study_admin, other_study_admin):
    study = make_study(slug="console-a", status=Study.Status.OPEN)
    CaseFactory(study=study)
    elsewhere = make_study(slug="console-b", status=Study.Status.OPEN)
    study_admin_add(user=study_admin, study=study)
    study_admin_add(user=other_study_admin, study=elsewhere)
    return {"study": study, "enrolment": enrol(study=study, user=reader)}


def page_urls(world) -> dict[str, str]:
    """Every per-study page of the console, for the world's study."""
    study, enrolment = world["study"], world["enrolment"]
    return {
        "overview": reverse("admin:cases_study_overview", args=[study.pk]),
        "progress": reverse("admin:cases_study_progress", args=[study.pk]),
        "answers_csv": reverse("admin:cases_study_answers_csv", args=[study.pk]),
        "invitations": reverse("admin:cases_study_invitations", args=[study.pk]),
        "import": reverse("admin:cases_study_import", args=[study.pk]),
        "reader_account": reverse(
            "admin:cases_study_reader_account", args=[study.pk, enrolment.pk]
        ),
        "report": reverse("admin:analysis_study_report", args=[study.pk]),
        "predictions_csv": reverse("inference:predictions_csv", args=[study.slug]),
    }


# (page, whether the page writes to the study, methods it answers)
PAGES = [
    ("overview", False, ("get",)),
    ("progress", False, ("get",)),
    ("answers_csv", False, ("get",)),
    ("invitations", True, ("get", "post")),
    ("import", True, ("get", "post")),
    ("reader_account", True, ("get", "post")),
    ("report", False, ("get",)),
    ("report", True, ("post",)),
    ("predictions_csv", False, ("get",)),
]
POSTS = {
    "invitations": {"count": 1, "max_uses": 1, "expires_in_days": 7},
    "reader_account": {"unlock": "1"},
    "report": {"seed": 0, "n_bootstrap": 20},
}


def _rows():
    for page, _, methods in PAGES:
        for method in methods:
            for persona in ("other_study_admin", "plain_staff"):
                yield pytest.param(page, method, persona, id=f"{page}-{method}-{persona}")


@pytest.mark.parametrize("page, method, persona", list(_rows()))
def test_another_studys_admin_gets_a_404_on_every_console_page(
    client, request, world, page, method, persona
):
    client.force_login(request.getfixturevalue(persona))
    url = page_urls(world)[page]
    response = getattr(client, method)(url, POSTS.get(page, {}))
    assert response.status_code == 404, (url, method, response.status_code)
    assert not Invitation.objects.filter(study=world["study"]).exists()
    assert not AnalysisReport.objects.exists()


@pytest.fixture
def door_calls(monkeypatch):
    """Every call of the two doors, by the pages of the console and the inference
    views (the spy lets each call through to the real door)."""
    calls = []

    def spy(door):
        def wrapper(request, **kwargs):
            calls.append((door.__name__, kwargs))
            return door(request, **kwargs)

        return wrapper

    for module in (console.views, inference.views):
        for name in ("study_for_staff", "studies_for_staff"):
            if hasattr(module, name):
                monkeypatch.setattr(module, name, spy(getattr(console.access, name)))
    return calls


@pytest.mark.parametrize(
    "page, writes, method",
    [(page, writes, method) for page, writes, methods in PAGES for method in methods],
)
def test_every_console_page_opens_its_study_through_the_one_door(
    client, world, study_admin, door_calls, page, writes, method, enqueued_reports
):
    client.force_login(study_admin)
    study = world["study"]
    response = getattr(client, method)(page_urls(world)[page], POSTS.get(page, {}))
    assert response.status_code in (200, 302), response.status_code
    ((door, kwargs),) = door_calls
    assert door == "study_for_staff"
    assert kwargs.get("pk", study.pk) == study.pk and kwargs.get("slug", study.slug) == study.slug
    assert kwargs.get("write", False) is writes


def test_the_run_page_offers_only_the_users_studies_through_the_door(
    client, world, other_study_admin, door_calls
):
    model = RegisteredModel.objects.create(
        name="m", arch="efficientnet_b4", classes=["MN", "SK", "BCC"], preprocessing={}
    )
    client.force_login(other_study_admin)
    url = reverse("admin:inference_inferencerun_start")
    page = client.get(url).content.decode()
    assert "console-b" in page.lower() and "console-a" not in page.lower()
    response = client.post(url, {"study": world["study"].pk, "model": model.pk})
    assert response.status_code == 200 and "Select a valid choice" in response.content.decode()
    assert not InferenceRun.objects.exists()
    assert [door for door, _ in door_calls] == ["studies_for_staff", "studies_for_staff"]
    assert all(kwargs["write"] is True for _, kwargs in door_calls)


# --- a study admin without a page's permission ----------------------------------------------


@pytest.fixture
def viewer(django_user_model, world):
    """Staff who administer the world's study but may only view it and its reports."""
    user = django_user_model.objects.create_user("viewer", password="pw-v-123", is_staff=True)
    user.user_permissions.add(
        *Permission.objects.filter(codename__in=["view_study", "view_analysisreport"])
    )
    world["study"].admins.add(user)
    return user


def test_a_viewer_reads_the_study_but_is_sent_away_from_its_write_pages(client, world, viewer):
    client.force_login(viewer)
    urls = page_urls(world)
    for page in ("overview", "progress", "answers_csv", "report", "predictions_csv"):
        assert client.get(urls[page]).status_code == 200, page
    for page in ("invitations", "import", "reader_account"):
        for method in ("get", "post"):
            response = getattr(client, method)(urls[page], POSTS.get(page, {}))
            assert response.status_code == 302, (page, method)
            assert response["Location"] == reverse("admin:index"), (page, method)
    report = client.get(urls["report"]).content.decode()
    assert "Compute / refresh report" not in report
    response = client.post(urls["report"], POSTS["report"])
    assert response.status_code == 302 and response["Location"] == reverse("admin:index")
    assert not Invitation.objects.filter(study=world["study"]).exists()
    assert not AnalysisReport.objects.exists()


def test_the_door_says_whether_the_user_may_write(rf, world, study_admin, viewer, admin_user):
    study = world["study"]
    for user, may_write in ((study_admin, True), (viewer, False), (admin_user, True)):
        request = rf.get("/")
        request.user = user
        assert console.access.study_for_staff(request, pk=study.pk) == (study, may_write)
        found = console.access.study_for_staff(request, slug=study.slug)
        assert found == (study, may_write)


def test_the_door_refuses_with_a_404_before_it_looks_at_permissions(rf, world, plain_staff):
    from django.http import Http404

    request = rf.get("/")
    request.user = plain_staff  # no permission at all, and no study
    with pytest.raises(Http404):
        console.access.study_for_staff(request, pk=world["study"].pk, write=True)
    request.user = type(plain_staff).objects.get(username="study-admin")
    with pytest.raises(Http404):
        console.access.study_for_staff(request, pk=999_999)


def test_the_door_raises_refused_for_a_missing_permission(rf, world, viewer):
    request = rf.get("/")
    request.user = viewer
    with pytest.raises(console.access.Refused):
        console.access.study_for_staff(request, pk=world["study"].pk, write=True)
    with pytest.raises(console.access.Refused):
        console.access.studies_for_staff(request, rights=console.access.RUN_PAGES)


# --- the structure that keeps it so -----------------------------------------------------------


def _calls(function) -> set[str]:
    tree = ast.parse(inspect.getsource(function).strip())
    return {
        node.func.id if isinstance(node.func, ast.Name) else node.func.attr
        for node in ast.walk(tree)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name | ast.Attribute)
    }


def _console_views():
    """The view behind every URL the console mounts in the admin."""
    from django.contrib import admin

    for patterns in (console_urls.study_urls, console_urls.report_urls, console_urls.run_urls):
        for pattern in patterns(admin.site):
            view = pattern.callback
            while hasattr(view, "__wrapped__"):
                view = view.__wrapped__
            yield pattern.name, view


@pytest.mark.parametrize(
    "name, view", list(_console_views()), ids=lambda v: getattr(v, "__name__", v)
)
def test_every_page_the_console_mounts_calls_one_door_and_no_check_of_its_own(name, view):
    calls = _calls(view)
    assert len(calls & {"study_for_staff", "studies_for_staff"}) == 1, name
    assert not calls & {"has_perm", "has_view_permission", "has_change_permission"}, name
    assert not calls & {"administered_studies", "can_admin_study", "get_queryset"}, name


def test_only_the_access_module_knows_the_staff_rule():
    """Outside console/access.py, no console module asks for permissions or the
    administered studies, and no ModelAdmin module renders a page of its own."""
    for path in (ROOT / "console").glob("*.py"):
        if path.name == "access.py":
            continue
        text = path.read_text()
        for word in ("has_perm", "administered_studies", "can_admin_study", "is_superuser"):
            assert word not in text, (path.name, word)
    for app in ("cases", "inference", "analysis"):
        text = (ROOT / app / "admin.py").read_text()
        assert "TemplateResponse" not in text and "get_object_or_404" not in text, app
