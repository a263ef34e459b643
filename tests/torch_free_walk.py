"""Run by tests/test_torch_free.py in a fresh interpreter: set Django up, walk every
page a web worker serves and run the light management commands, then print one JSON
line saying which heavy modules were imported and what was visited.

A page walk, not a list: starting from the admin index, the admin's every model and
each study's console pages (as a superuser), and the reader's home (as an enrolled
reader), it follows every same-site link of each HTML page, visiting each URL route
once (the first link that resolves to it), so a page added later is walked too.
"""

from __future__ import annotations

import io
import json
import os
import re
import sys
import tempfile
from pathlib import Path

os.environ["DJANGO_SETTINGS_MODULE"] = "readerstudy.settings_test"
os.environ["READERSTUDY_DATA_DIR"] = tempfile.mkdtemp(prefix="readerstudy-torchfree-")

import django

django.setup()

from django.contrib import admin  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.db import connection  # noqa: E402
from django.test import Client  # noqa: E402
from django.test.utils import setup_test_environment  # noqa: E402
from django.urls import Resolver404, resolve  # noqa: E402

HEAVY = ("torch", "torchvision", "timm", "pytorch_grad_cam")
# What only computing a report needs; serving a page loads none of it either.
STATISTICS = ("statsmodels", "sklearn", "matplotlib")
LINK = re.compile(r"""(?:href|src)="(/[^"#?]*)""")
# Links that end the session or only hand out static files.
NOT_WALKED = ("/static/", "/media/", "/accounts/logout/", "/i18n/")


def heavy_loaded(names=HEAVY) -> list[str]:
    return sorted(name for name in names if name in sys.modules)


def build_data():
    from cases.services import consent_give, profile_save
    from inference.services import inference_run_start, model_register
    from tests.factories import CaseFactory, UserFactory, enrol, make_study

    study = make_study(slug="walk", choices=("MN", "SK", "BCC"))
    for _ in range(3):
        CaseFactory(study=study)
    study.status = study.Status.OPEN
    study.save()
    superuser = UserFactory(username="root", is_staff=True, is_superuser=True)
    reader = UserFactory(username="walker")
    enrolment = enrol(study=study, user=reader)
    consent_give(enrolment=enrolment)
    profile_save(user=reader, level="attending", years_in_dermatology=5)
    # A randomly initialised model registers without torch; its run is only queued.
    model = model_register(name="walk-cnn", arch="efficientnet_b4_aux", classes="MN,SK,BCC")
    inference_run_start(model=model, study=study, enqueue=False)
    # A finished report (its files written by hand: computing one is the worker's job),
    # so that the report page lists its downloads and the walk fetches them.
    from analysis.models import AnalysisReport

    report = AnalysisReport.objects.create(
        study=study, fingerprint="0" * 64, status="done", files=["report.html", "per_class.csv"]
    )
    report.path.mkdir(parents=True)
    (report.path / "report.html").write_text("<html>report</html>")
    (report.path / "per_class.csv").write_text("rater,class,metric,estimate\n")
    return study, superuser, reader


def walk(client: Client, starts: list[str], limit: int = 400) -> tuple[dict, list[str]]:
    """GET each start page and every same-site link found, one URL per route."""
    seen_routes: dict[str, tuple[str, int]] = {}
    problems: list[str] = []
    queue = list(starts)
    visited: set[str] = set()
    while queue and len(visited) < limit:
        url = queue.pop(0)
        if url in visited or url.startswith(NOT_WALKED):
            continue
        try:
            match = resolve(url)
        except Resolver404:
            continue
        route = f"{match.view_name}:{match.route}"
        if route in seen_routes and url not in starts:
            continue
        visited.add(url)
        response = client.get(url)
        seen_routes[route] = (url, response.status_code)
        if response.status_code >= 500:
            problems.append(f"{url}: {response.status_code}")
        if "text/html" in response.get("Content-Type", "") and not response.streaming:
            queue.extend(LINK.findall(response.content.decode()))
    return seen_routes, problems


def main() -> None:
    out: dict[str, object] = {"after_setup": heavy_loaded()}
    setup_test_environment()
    connection.creation.create_test_db(verbosity=0, autoclobber=True)
    study, superuser, reader = build_data()
    out["after_data"] = heavy_loaded()

    staff = Client()
    staff.force_login(superuser)
    starts = ["/admin/", "/"]
    for model, model_admin in admin.site._registry.items():
        info = (model._meta.app_label, model._meta.model_name)
        starts.append(f"/admin/{info[0]}/{info[1]}/")
        if model_admin.has_add_permission(type("R", (), {"user": superuser})()):
            starts.append(f"/admin/{info[0]}/{info[1]}/add/")
    staff_routes, staff_problems = walk(staff, starts)

    readers = Client()
    readers.force_login(reader)
    reader_routes, reader_problems = walk(
        readers,
        [
            "/",
            f"/studies/{study.slug}/",
            f"/studies/{study.slug}/case/",
            f"/studies/{study.slug}/done/",
        ],
    )
    out["after_pages"] = heavy_loaded()
    out["statistics_after_pages"] = heavy_loaded(STATISTICS)

    with tempfile.TemporaryDirectory() as tmp:
        call_command("check", verbosity=0)
        call_command("reconcile_inference", "--dry-run", stdout=io.StringIO())
        call_command("export_cases", study.slug, str(Path(tmp) / "export.zip"), verbosity=0)
        call_command("import_cases", "walk-copy", str(Path(tmp) / "export.zip"), verbosity=0)
        call_command("add_study_admin", "root", "walk", verbosity=0)
        call_command("backup_study", study.slug, str(Path(tmp) / "backup.zip"), verbosity=0)
    out["after_commands"] = heavy_loaded()
    out["staff_routes"] = {route: list(v) for route, v in staff_routes.items()}
    out["reader_routes"] = {route: list(v) for route, v in reader_routes.items()}
    out["problems"] = staff_problems + reader_problems
    print("RESULT " + json.dumps(out))


if __name__ == "__main__":
    main()
