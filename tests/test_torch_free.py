"""Only processes that run a model import torch, timm or pytorch-grad-cam (../shared/design.md).

A fresh interpreter (tests/torch_free_walk.py) sets Django up, loads the URLconf,
walks every admin and staff-console page and every reader page by following links,
and runs the light management commands; torch must not have been imported at any
point. The walk must also have reached the pages that matter, so that a broken walk
cannot pass by visiting nothing.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.processes import instance_env

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def walk() -> dict:
    done = subprocess.run(
        [sys.executable, "-m", "tests.torch_free_walk"],
        cwd=ROOT,
        env=instance_env(PYTHONPATH=str(ROOT)),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-6000:]
    line = next(x for x in done.stdout.splitlines() if x.startswith("RESULT "))
    return json.loads(line.removeprefix("RESULT "))


def test_setting_django_up_imports_no_torch(walk):
    assert walk["after_setup"] == []
    assert walk["after_data"] == []


def test_every_admin_console_and_reader_page_is_served_without_torch(walk):
    assert walk["problems"] == []
    assert walk["after_pages"] == []


def test_serving_pages_loads_no_statistics_or_plotting_stack(walk):
    # Only computing a report (the worker, the analyze command) needs them.
    assert walk["statistics_after_pages"] == []


def test_the_light_management_commands_import_no_torch(walk):
    assert walk["after_commands"] == []


def test_the_walk_reached_the_pages_that_matter(walk):
    staff = " ".join(walk["staff_routes"])
    for needle in (
        "admin:index",
        "admin:cases_study_changelist",
        "admin:cases_study_change",
        "admin:inference_registeredmodel_changelist",
        "admin:inference_inferencerun_change",
        "admin:analysis_analysisreport_changelist",
        "admin:audit_auditevent_changelist",
        # the staff console: every per-study page
        "admin:cases_study_overview",
        "admin:cases_study_progress",
        "admin:cases_study_invitations",
        "admin:cases_study_import",
        "admin:cases_study_answers_csv",
        "admin:cases_study_reader_account",
        "admin:analysis_study_report",
        "admin:inference_inferencerun_start",
        "admin:inference_registeredmodel_add",
        "inference:predictions_csv",
        "analysis:report_file",
    ):
        assert needle in staff, needle
    assert all(status == 200 for _url, status in walk["staff_routes"].values())
    readers = " ".join(walk["reader_routes"])
    for needle in ("cases:study", "cases:case", "cases:image", "home"):
        assert needle in readers, needle
    ok = [url for url, status in walk["reader_routes"].values() if status == 200]
    assert any("/case/" in url for url in ok)
