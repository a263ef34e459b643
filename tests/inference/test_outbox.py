"""Sending tasks as an outbox: a broker that is down never fails the request, the row
waits as queued with a note, and it is sent once the broker is back (beat, a worker's
start). A worker that restarts resumes the runs it was running when it died."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.management import call_command
from django.urls import reverse
from django.utils import timezone
from kombu.exceptions import OperationalError as BrokerError

from analysis.models import AnalysisReport
from analysis.services import report_request, reports_send_pending
from analysis.tasks import report_compute_task
from inference.models import InferenceRun
from inference.services import (
    inference_run_start,
    inference_runs_recover,
    inference_runs_send_pending,
    model_register,
)
from inference.services.execution import inference_run_execute
from inference.tasks import resume_on_worker_start, run_inference
from readerstudy.celery import app
from tests.inference.factories import make_inference_study

pytestmark = pytest.mark.django_db


class Broker:
    """Stands in for apply_async: down (raises as kombu does) or up (records)."""

    def __init__(self):
        self.up, self.sent = False, []

    def __call__(self, kwargs, **options):
        if not self.up:
            raise BrokerError("Error 111 connecting to 127.0.0.1:6379. Connection refused.")
        assert options["retry_policy"]["max_retries"] <= 3  # a request never hangs long
        self.sent.append(kwargs)


@pytest.fixture
def broker(monkeypatch):
    broker = Broker()
    monkeypatch.setattr(run_inference, "apply_async", broker)
    monkeypatch.setattr(report_compute_task, "apply_async", broker)
    return broker


@pytest.fixture
def model():
    return model_register(name="tiny", arch="efficientnet_b4_aux", classes="MN,SK,BCC",
                          img_size=64)  # fmt: skip


def test_a_run_started_while_the_broker_is_down_waits_then_goes(
    broker, model, django_capture_on_commit_callbacks
):
    study = make_inference_study(n=2)
    with django_capture_on_commit_callbacks(execute=True):
        run = inference_run_start(model=model, study=study)
    run.refresh_from_db()
    assert (run.status, run.sent_at, broker.sent) == ("queued", None, [])
    assert run.error.startswith("waiting for the task broker (unreachable at ")

    assert inference_runs_send_pending() == []  # still down
    broker.up = True
    assert [r.pk for r in inference_runs_send_pending()] == [run.pk]
    run.refresh_from_db()
    assert broker.sent == [{"run_id": run.pk}]
    assert run.sent_at is not None and run.error == ""
    assert inference_runs_send_pending() == []  # sent once, not again


def test_a_run_for_the_command_line_is_never_sent(broker, model):
    broker.up = True
    run = inference_run_start(model=model, study=make_inference_study(n=2), enqueue=False)
    assert run.sent_at is not None
    assert inference_runs_send_pending() == [] and broker.sent == []


@pytest.mark.django_db(transaction=True)  # commit callbacks run as in production
@pytest.mark.usefixtures("reference_diagnoses")
def test_the_command_and_the_admin_say_the_run_waits_for_the_broker(
    broker, model, client, admin_user, capsys
):
    study = make_inference_study(n=2)
    call_command("run_inference", study.slug, model.name)
    assert "the task broker is unreachable: the run waits" in capsys.readouterr().err

    other = make_inference_study(slug="other", n=2)
    client.force_login(admin_user)
    response = client.post(
        reverse("admin:inference_inferencerun_start"),
        {"study": other.pk, "model": model.pk},
        follow=True,
    )
    assert response.status_code == 200
    assert "broker is unreachable: it waits and is sent when the broker is back" in (
        response.content.decode()
    )


def test_a_restarted_worker_resumes_only_its_own_running_runs(broker, model,
                                                              django_capture_on_commit_callbacks):  # fmt: skip
    broker.up = True
    mine = inference_run_start(model=model, study=make_inference_study(slug="a", n=1),
                               enqueue=False)  # fmt: skip
    theirs = inference_run_start(model=model, study=make_inference_study(slug="b", n=1),
                                 enqueue=False)  # fmt: skip
    InferenceRun.objects.filter(pk=mine.pk).update(status="running", worker="w1@host")
    InferenceRun.objects.filter(pk=theirs.pk).update(status="running", worker="w2@host")

    class Consumer:
        hostname = "w1@host"

    with django_capture_on_commit_callbacks(execute=True):
        resume_on_worker_start(sender=Consumer())
    mine.refresh_from_db()
    theirs.refresh_from_db()
    assert (mine.status, theirs.status) == ("queued", "running")
    assert "w1@host restarted" in mine.error and mine.sent_at is not None
    assert broker.sent == [{"run_id": mine.pk}]
    assert inference_runs_recover(worker="w1@host") == []  # nothing left to resume


def test_a_run_live_on_another_worker_is_not_started_twice(model):
    run = inference_run_start(model=model, study=make_inference_study(n=1), enqueue=False)
    InferenceRun.objects.filter(pk=run.pk).update(
        status="running", worker="w2@host", heartbeat_at=timezone.now()
    )
    assert inference_run_execute(run_id=run.pk, worker="w1@host").done == 0  # left alone
    InferenceRun.objects.filter(pk=run.pk).update(
        heartbeat_at=timezone.now() - timedelta(hours=1)
    )  # silent for an hour: that worker is gone
    run = inference_run_execute(run_id=run.pk, worker="w1@host", with_gradcam=False)
    assert (run.status, run.done, run.worker) == ("done", 1, "w1@host")


def test_a_report_requested_while_the_broker_is_down_waits_then_goes(
    broker, django_capture_on_commit_callbacks
):
    study = make_inference_study(n=2)
    with django_capture_on_commit_callbacks(execute=True):
        report = report_request(study=study, n_bootstrap=10)
    report.refresh_from_db()
    assert (report.status, report.sent_at) == ("queued", None)
    assert report.error.startswith("waiting for the task broker")
    broker.up = True
    assert [r.pk for r in reports_send_pending()] == [report.pk]
    report.refresh_from_db()
    assert report.sent_at is not None and broker.sent == [{"report_id": report.pk}]
    assert AnalysisReport.objects.filter(sent_at__isnull=True).count() == 0


def test_beat_sends_pending_work_with_registered_tasks(settings):
    app.loader.import_default_modules()
    names = [entry["task"] for entry in settings.CELERY_BEAT_SCHEDULE.values()]
    assert sorted(names) == ["analysis.tasks.send_pending_reports",
                             "cases.tasks.close_due_studies",
                             "inference.tasks.send_pending_runs"]  # fmt: skip
    assert all(name in app.tasks for name in names)


def test_a_run_whose_message_went_with_a_stopped_worker_is_sent_again(
    broker, model, django_capture_on_commit_callbacks
):
    """The demo's restart: the run was sent (the worker took the message) but never
    marked running; resending makes the next worker start send it again, once."""
    from inference.services.runs import inference_runs_resend

    broker.up = True
    study = make_inference_study(n=2)
    with django_capture_on_commit_callbacks(execute=True):
        run = inference_run_start(model=model, study=study)
    assert broker.sent == [{"run_id": run.pk}]
    done = inference_run_start(model=model, study=make_inference_study(slug="other", n=1),
                               enqueue=False)  # fmt: skip
    InferenceRun.objects.filter(pk=done.pk).update(status="done")
    assert inference_runs_send_pending() == []  # sent already: nothing to send
    assert inference_runs_resend(study=study) == 1
    assert [r.pk for r in inference_runs_send_pending()] == [run.pk]
    assert broker.sent == [{"run_id": run.pk}, {"run_id": run.pk}]
    assert inference_runs_resend(study=done.study) == 0  # a done run stays as it is
