"""register_model, run_inference, train_model and reconcile_inference."""

from __future__ import annotations

import io
from datetime import timedelta

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from inference.models import InferenceRun, Prediction, RegisteredModel
from tests.inference.factories import make_inference_study, shape_image, write_checkpoint

pytestmark = pytest.mark.django_db


def call(*args) -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    call_command(*args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def test_register_model_with_a_checkpoint(tmp_path):
    path = write_checkpoint(tmp_path / "c.pt")
    out, _ = call("register_model", "effb4", "--weights", str(path), "--description", "test")
    assert "Registered effb4: efficientnet_b4_aux, 5 classes" in out and "UNTRAINED" not in out
    model = RegisteredModel.objects.get(name="effb4")
    assert model.description == "test" and model.trained


def test_register_model_without_weights_says_untrained():
    out, _ = call(
        "register_model",
        "rand",
        "--arch",
        "resnet101",
        "--classes",
        "MN,SK,BCC",
        "--img-size",
        "64",
    )
    assert "UNTRAINED" in out and "weights random" in out
    assert RegisteredModel.objects.get(name="rand").preprocessing["input_size"] == 64


def test_register_model_errors_are_command_errors(tmp_path):
    with pytest.raises(CommandError, match="unknown diagnosis code"):
        call("register_model", "m", "--arch", "resnet101", "--classes", "MN,NOPE")
    assert not RegisteredModel.objects.exists()


def test_run_inference_sync_shows_progress_and_stores_predictions():
    study = make_inference_study()
    call("register_model", "tiny", "--arch", "efficientnet_b4_aux", "--classes", "MN,SK,BCC,SD",
         "--img-size", "64")  # fmt: skip
    out, err = call("run_inference", study.slug, "tiny", "--sync", "--batch-size", "2")
    assert "5 / 5 cases (0 failed)" in out
    assert "5 / 5" in err and "UNTRAINED" in err  # the tqdm bar and the flag go to stderr
    assert Prediction.objects.filter(status="ok").count() == 5
    out, _ = call("run_inference", study.slug, "tiny", "--sync")
    assert Prediction.objects.count() == 5  # again: nothing new


def test_run_inference_queues_and_prints_the_run_id(
    monkeypatch, django_capture_on_commit_callbacks
):
    from inference.tasks import run_inference

    sent = []
    monkeypatch.setattr(run_inference, "apply_async", lambda **kw: sent.append(kw["kwargs"]))
    study = make_inference_study(n=1)
    call("register_model", "tiny", "--arch", "efficientnet_b4", "--classes", "MN,SK,BCC")
    with django_capture_on_commit_callbacks(execute=True):
        out, _ = call("run_inference", study.slug, "tiny")
    run = InferenceRun.objects.get()
    assert f"Queued inference run {run.pk}" in out
    assert sent == [{"run_id": run.pk, "batch_size": 16}]


def test_run_inference_refuses_a_model_lacking_a_choice():
    study = make_inference_study(n=1)
    call("register_model", "two", "--arch", "efficientnet_b4", "--classes", "MN,SK")
    with pytest.raises(CommandError, match="BCC"):
        call("run_inference", study.slug, "two", "--sync")
    with pytest.raises(CommandError, match="no study"):
        call("run_inference", "nope", "two")


def test_train_model_writes_a_checkpoint_that_register_model_accepts(tmp_path):
    data = tmp_path / "train"
    for code, kind in (("MN", "disc"), ("SK", "square")):
        (data / code).mkdir(parents=True)
        for i in range(3):
            shape_image(kind, seed=i).save(data / code / f"{i}.png")
    out_file = tmp_path / "model.pt"
    out, _ = call(
        "train_model", str(data), "--arch", "efficientnet_b4_aux", "--out", str(out_file),
        "--epochs-per-step", "1", "--steps", "2", "--batch-size", "3", "--img-size", "32",
    )  # fmt: skip
    assert "step 1/2 epoch 1/1" in out and "step 2/2 epoch 1/1" in out
    assert f"Wrote {out_file}" in out
    out, _ = call("register_model", "trained-tiny", "--weights", str(out_file))
    model = RegisteredModel.objects.get(name="trained-tiny")
    assert model.trained and model.classes == ["MN", "SK"]
    assert model.meta["checkpoint"]["steps"] == 2
    assert model.preprocessing["input_size"] == 32


def test_reconcile_inference_lists_and_requeues(monkeypatch, django_capture_on_commit_callbacks):
    from inference.tasks import run_inference

    sent = []
    monkeypatch.setattr(run_inference, "apply_async", lambda **kw: sent.append(kw["kwargs"]))
    study = make_inference_study(n=2)
    call("register_model", "tiny", "--arch", "efficientnet_b4", "--classes", "MN,SK,BCC")
    with django_capture_on_commit_callbacks(execute=True):
        call("run_inference", study.slug, "tiny")
    run = InferenceRun.objects.get()
    InferenceRun.objects.filter(pk=run.pk).update(
        status="running", heartbeat_at=timezone.now() - timedelta(hours=1)
    )
    out, _ = call("reconcile_inference", "--dry-run")
    assert f"run {run.pk} tiny on inf: stale" in out
    assert "tiny on inf: 2 case(s) without a prediction" in out
    with django_capture_on_commit_callbacks(execute=True):
        out, _ = call("reconcile_inference")
    assert f"run {run.pk} tiny on inf: re-queued" in out
    assert sent[-1] == {"run_id": run.pk}
