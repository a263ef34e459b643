"""The inference runs' list in a browser: the progress refreshes by itself, without a
reload, and stays on screen at a laptop's width."""

from __future__ import annotations

import pytest

from inference.models import InferenceRun, RegisteredModel
from tests.factories import build_study


def a_run(study, *, status="running", done=3, total=10) -> InferenceRun:
    model = RegisteredModel.objects.create(
        name="cnn",
        arch="efficientnet_b4",
        classes=["MN", "SK", "BCC"],
        preprocessing={"input_size": 64},
        weights_source="random",
    )
    return InferenceRun.objects.create(
        model=model, study=study, status=status, done=done, total=total
    )


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_the_runs_list_refreshes_its_progress_by_itself(admin_page, live_server):
    page = admin_page
    study = build_study(1)
    run = a_run(study, done=2, total=8)
    page.goto(f"{live_server.url}/admin/inference/inferencerun/")
    cell = page.locator(f".live-run[data-run='{run.pk}']")
    assert "2 / 8 cases" in cell.inner_text()
    # the whole progress cell is on screen at a laptop's width
    box = cell.bounding_box()
    assert box["x"] + box["width"] <= 1366
    page.evaluate("window.stillTheSamePage = true")
    InferenceRun.objects.filter(pk=run.pk).update(done=8, status="done")
    page.wait_for_function(
        f"document.querySelector(\".live-run[data-run='{run.pk}'] .run-count\")"
        ".innerText.startsWith('8 / 8')"
    )
    assert cell.locator(".run-status").inner_text() == "done"
    assert cell.get_attribute("data-active") == ""  # it stops polling
    assert page.evaluate("window.stillTheSamePage") is True
