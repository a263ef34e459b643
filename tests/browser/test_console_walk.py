"""A study admin runs a whole study from its dashboard, in the browser, and never needs
one of the generic admin lists: from the admin's home ("Your studies") to the study's
overview, then import the cases, run a CNN (its progress follows on the overview without
a reload), create invitations, open the study, follow the readers, close it, compute the
report (its progress too) and download the answers.

The Celery worker is played by the test: the pages enqueue as they do in production
(recorded here instead of sent), and the test runs the enqueued run and report in its
own process while the browser waits on the page that shows them."""

from __future__ import annotations

import csv
import os
import re
from urllib.parse import urlparse

import pytest

from analysis.services import report_compute
from analysis.tasks import report_compute_task
from cases.models import Case, Study
from cases.services import answer_submit, case_serve, study_admin_add
from inference.services import model_register
from inference.services.execution import inference_run_execute
from inference.tasks import run_inference
from tests.factories import (
    UserFactory,
    good_rows,
    make_study,
    ready_enrolment,
    write_bundle,
    zip_folder,
)

# READERSTUDY_SCREENSHOTS=<folder>: also save the study's pages at four sizes, to look at.
SCREENSHOTS = os.environ.get("READERSTUDY_SCREENSHOTS")

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.browser, pytest.mark.slow]

# A changelist (/admin/cases/answer/), a change form (/admin/cases/study/3/change/) or
# the list of an app (/admin/cases/): the generic admin pages the walk must not need.
GENERIC_ADMIN = re.compile(r"^/admin/(?!login/|logout/)[a-z_]+/([a-z_]+/(\d+/(change/)?)?)?$")


@pytest.fixture
def worker_queue(monkeypatch):
    """The tasks the pages enqueue, recorded in order instead of sent to a broker."""
    sent: list[tuple[str, int]] = []
    monkeypatch.setattr(
        run_inference, "apply_async", lambda kwargs, **_: sent.append(("run", kwargs["run_id"]))
    )
    monkeypatch.setattr(
        report_compute_task,
        "apply_async",
        lambda kwargs, **_: sent.append(("report", kwargs["report_id"])),
    )
    return sent


def _answer_every_case(study: Study, username: str) -> None:
    enrolment = ready_enrolment(study, UserFactory(username=username), serve=False)
    for number, case_id in enumerate(enrolment.case_order):
        case = Case.objects.get(pk=case_id)
        case_serve(enrolment=enrolment, case=case)
        code = case.diagnosis.code if number % 2 else "MN"
        answer_submit(enrolment=enrolment, case_public_id=case.public_id, diagnosis_code=code)


def test_a_study_admin_runs_a_whole_study_from_the_dashboard(
    browser, live_server, study_admin, tmp_path, worker_queue
):
    study = make_study(
        slug="walk", status=Study.Status.DRAFT, consent_text="I agree.", consent_version="v1"
    )
    study_admin_add(user=study_admin, study=study)
    model_register(name="tiny-cnn", arch="efficientnet_b4_aux", classes="MN,SK,BCC", img_size=64)
    bundle = zip_folder(write_bundle(tmp_path / "bundle", good_rows(6)), tmp_path / "cases.zip")

    context = browser.new_context(viewport={"width": 1366, "height": 768}, accept_downloads=True)
    page = context.new_page()
    page.set_default_timeout(20_000)
    visited: list[str] = []
    page.on(
        "framenavigated",
        lambda frame: frame == page.main_frame and visited.append(urlparse(frame.url).path),
    )
    steps = page.get_by_test_id("study-steps")

    # The admin's home lists the study; its title opens the dashboard.
    page.goto(f"{live_server.url}/admin/login/?next=/admin/")
    page.fill("input[name=username]", study_admin.username)
    page.fill("input[name=password]", "pw-sa-123")
    with page.expect_navigation():
        page.keyboard.press("Enter")
    page.get_by_test_id("your-studies").get_by_role("link", name="Walk").click()
    page.wait_for_url(f"**/admin/cases/study/{study.pk}/overview/")
    assert "0 cases" in page.get_by_test_id("step-cases").inner_text()

    # 1. Import the cases.
    page.get_by_test_id("step-cases").get_by_role("link", name="Import cases").click()
    page.set_input_files("input[name=bundle]", str(bundle))
    with page.expect_navigation():
        page.get_by_role("button", name="Check and import").click()
    page.wait_for_url(f"**/admin/cases/study/{study.pk}/overview/")
    assert "6 cases" in page.get_by_test_id("step-cases").inner_text()

    # 2. Run the CNN: the study is picked already; the overview follows the run.
    page.get_by_role("link", name="Run a CNN on this study…").click()
    assert page.locator("select[name=study]").input_value() == str(study.pk)
    page.select_option("select[name=model]", label="tiny-cnn (untrained)")
    with page.expect_navigation():
        page.get_by_role("button", name="Run inference").click()
    page.wait_for_url(f"**/admin/cases/study/{study.pk}/overview/")
    run = page.get_by_test_id("run")
    assert run.locator(".run-status").inner_text() == "queued"
    ((kind, run_id),) = worker_queue
    assert kind == "run"
    inference_run_execute(run_id=run_id, batch_size=4)
    page.wait_for_function(
        "document.querySelector('[data-testid=run] .run-status').textContent === 'done'"
    )
    assert run.locator(".run-count").inner_text() == "6 / 6 cases"

    # 3. Invitations, then open the study.
    steps.get_by_role("link", name="Invitations").click()
    page.fill("input[name=count]", "2")
    with page.expect_navigation():
        page.get_by_role("button", name="Create invitations").click()
    assert page.locator("tr[data-testid=invitation]").count() == 2
    page.locator(".breadcrumbs").get_by_role("link", name="Walk").click()
    steps.get_by_role("link", name="Open the study…").click()
    with page.expect_navigation():
        page.get_by_test_id("confirm-open").click()
    assert "is open" in page.locator("ul.messagelist").inner_text()

    # Two readers answer every case (the reader's side has its own browser tests).
    _answer_every_case(study, "walk-reader-1")
    _answer_every_case(study, "walk-reader-2")

    # 4. Follow the readers, then close the study.
    page.goto(f"{live_server.url}/admin/cases/study/{study.pk}/overview/")
    assert "2 real readers enrolled, 2 finished" in page.get_by_test_id("step-readers").inner_text()
    assert page.get_by_test_id("answers-chart").is_visible()
    finished = page.get_by_test_id("readers-by-step").locator("tr[data-step=finished]")
    assert finished.locator("td").first.inner_text() == "2"
    finished.get_by_role("link").click()  # the reader progress, filtered to that step
    page.wait_for_url("**/progress/?step=finished")
    assert page.locator("table.progress-table tbody tr[data-testid=reader-row]").count() == 2
    page.locator(".breadcrumbs").get_by_role("link", name="Walk").click()
    steps.get_by_role("link", name="Reader progress").click()
    assert page.locator("table.progress-table tbody tr[data-testid=reader-row]").count() == 2
    page.locator(".breadcrumbs").get_by_role("link", name="Walk").click()
    steps.get_by_role("link", name="Close or set a closing date…").click()
    with page.expect_navigation():
        page.get_by_test_id("confirm-close").click()
    assert "is closed" in page.locator("ul.messagelist").inner_text()

    # 5. The report: requested on its page, computed by the "worker", followed there.
    page.wait_for_url(f"**/admin/cases/study/{study.pk}/overview/")
    steps.get_by_role("link", name="Report…").click()
    page.fill("input[name=n_bootstrap]", "50")
    with page.expect_navigation():
        page.get_by_role("button", name="Compute / refresh report").click()
    kind, report_id = worker_queue[-1]
    assert kind == "report"
    report_compute(report_id=report_id)
    link = page.locator(".live-run .run-count a", has_text="open report.html")
    link.wait_for()
    with page.expect_navigation():
        link.click()
    assert page.title().strip()  # report.html, served
    page.go_back()

    # 6. Back on the dashboard: the report's step links it; the answers download.
    page.locator(".breadcrumbs").get_by_role("link", name="Walk").click()
    assert "open report.html" in page.get_by_test_id("step-report").inner_text()
    with page.expect_download() as download:
        steps.get_by_role("link", name="Answers (CSV)").click()
    with open(download.value.path(), encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 12

    if SCREENSHOTS:
        for width, height in [(1366, 768), (1024, 768), (768, 1024), (390, 844)]:
            page.set_viewport_size({"width": width, "height": height})
            for name in ("overview", "invitations", "progress"):
                page.goto(f"{live_server.url}/admin/cases/study/{study.pk}/{name}/")
                page.screenshot(path=f"{SCREENSHOTS}/walk-{name}-{width}x{height}.png")

    generic = [path for path in visited if GENERIC_ADMIN.match(path)]
    assert generic == [], f"the walk went through generic admin pages: {generic}"
    assert f"/admin/cases/study/{study.pk}/overview/" in visited
    context.close()
