"""Registering models and running them over a study (inference.services)."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pytest
import torch
from django.utils import timezone
from PIL import Image

from inference.checkpoints import sha256_file
from inference.models import InferenceRun, Prediction, RegisteredModel
from inference.services import (
    InferenceError,
    execution,
    inference_run_start,
    inference_runs_reconcile,
    model_register,
)
from inference.services.execution import inference_run_execute, model_load
from tests.inference.factories import (
    MODEL_CLASSES,
    STUDY_CHOICES,
    make_inference_study,
    write_checkpoint,
)

pytestmark = pytest.mark.django_db


@pytest.fixture
def checkpoint(tmp_path):
    return write_checkpoint(tmp_path / "ckpt.pt")


def stored_files(media_root) -> list:
    return [p for p in media_root.rglob("*") if p.is_file()] if media_root.exists() else []


def assert_nothing_written(media_root):
    assert RegisteredModel.objects.count() == 0
    assert stored_files(media_root / "models") == []


# --- registering ---------------------------------------------------------------------------


def test_register_our_checkpoint_takes_arch_classes_and_preprocessing_from_it(
    checkpoint, media_root
):
    model = model_register(name="effb4", arch=None, classes=None, weights=checkpoint)
    assert (model.arch, model.classes) == ("efficientnet_b4_aux", MODEL_CLASSES)
    assert model.preprocessing["input_size"] == 64
    assert model.trained and model.weights_source == "file"
    assert model.weights_sha256 == sha256_file(checkpoint)
    stored = media_root / model.weights.name
    assert stored.is_file() and sha256_file(stored) == model.weights_sha256


def test_register_from_an_open_file_object(checkpoint):
    with open(checkpoint, "rb") as f:
        model = model_register(name="from-file", arch=None, classes=None, weights=f)
    assert model.weights_sha256 == sha256_file(checkpoint)


def test_register_a_bare_state_dict_with_arch_and_classes_given(tmp_path):
    torch.manual_seed(0)
    from inference.nets import build_model

    net = build_model("efficientnet_b4", num_classes=3)
    torch.save(net.backbone.state_dict(), tmp_path / "plain_timm.pt")  # no "backbone." prefix
    model = model_register(
        name="plain",
        arch="efficientnet_b4",
        classes="mn, SK,bcc",
        weights=tmp_path / "plain_timm.pt",
        img_size=96,
    )
    assert model.classes == ["MN", "SK", "BCC"]
    assert model.preprocessing["input_size"] == 96
    assert model.trained


def test_register_a_training_script_dict(tmp_path):
    from inference.nets import build_model

    net = build_model("efficientnet_b4_aux", num_classes=3)
    torch.save(
        {"epoch": 12, "model_state_dict": {f"module.{k}": v for k, v in net.state_dict().items()}},
        tmp_path / "script.pt",
    )
    model = model_register(
        name="script",
        arch="efficientnet_b4_aux",
        classes=["MN", "SK", "BCC"],
        weights=tmp_path / "script.pt",
    )
    assert model.trained and len(model.classes) == 3


def test_wrong_shapes_name_the_first_mismatching_key_and_write_nothing(tmp_path, media_root):
    from inference.nets import build_model

    state = build_model("efficientnet_b4_aux", num_classes=5).state_dict()
    state["backbone.conv_stem.weight"] = torch.zeros(8, 3, 3, 3)
    torch.save(state, tmp_path / "bad.pt")
    with pytest.raises(InferenceError, match=r"backbone\.conv_stem\.weight.*\(8, 3, 3, 3\)"):
        model_register(
            name="bad",
            arch="efficientnet_b4_aux",
            classes=MODEL_CLASSES,
            weights=tmp_path / "bad.pt",
        )
    assert_nothing_written(media_root)


def test_class_count_mismatch_says_how_many_outputs(checkpoint, tmp_path, media_root):
    ckpt = torch.load(checkpoint, weights_only=True)
    torch.save(ckpt["state_dict"], tmp_path / "sd.pt")
    with pytest.raises(InferenceError, match=r"5 outputs .* 3 classes"):
        model_register(
            name="x", arch="efficientnet_b4_aux", classes="MN,SK,BCC", weights=tmp_path / "sd.pt"
        )
    assert_nothing_written(media_root)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"arch": "vgg16"}, "unknown architecture 'vgg16'"),
        ({"classes": "MN,XYZ"}, "unknown diagnosis code.*XYZ"),
        ({"classes": "MN,SK,MN"}, "distinct; repeated: MN"),
        ({"classes": None}, "give the classes"),
        ({"name": "Not a slug!"}, "must be a slug"),
    ],
)
def test_invalid_registrations_are_refused(kwargs, message, media_root):
    args = {"name": "m", "arch": "efficientnet_b4_aux", "classes": "MN,SK,BCC", **kwargs}
    with pytest.raises(InferenceError, match=message):
        model_register(**args)
    assert_nothing_written(media_root)


def test_checkpoint_metadata_conflicting_with_arguments_is_refused(checkpoint, media_root):
    with pytest.raises(InferenceError, match="is a efficientnet_b4_aux, not a resnet101"):
        model_register(name="m", arch="resnet101", classes=None, weights=checkpoint)
    with pytest.raises(InferenceError, match="checkpoint's classes are MN,SK,BCC,SD,Pso"):
        model_register(name="m", arch=None, classes="SK,MN,BCC,SD,Pso", weights=checkpoint)
    with pytest.raises(InferenceError, match="made for 64 px input, not 380"):
        model_register(name="m", arch=None, classes=None, weights=checkpoint, img_size=380)
    assert_nothing_written(media_root)


def test_not_a_checkpoint_is_refused(tmp_path, media_root):
    (tmp_path / "junk.pt").write_bytes(b"definitely not a checkpoint")
    with pytest.raises(InferenceError, match="not a PyTorch checkpoint"):
        model_register(
            name="m", arch="efficientnet_b4", classes="MN,SK", weights=tmp_path / "junk.pt"
        )
    assert_nothing_written(media_root)


def test_a_checkpoint_saying_untrained_registers_as_untrained(tmp_path):
    path = write_checkpoint(tmp_path / "c.pt", meta={"trained": False})
    model = model_register(name="m", arch=None, classes=None, weights=path)
    assert not model.trained and model.weights_source == "file"


def test_without_weights_the_model_is_untrained_and_rebuilds_identically():
    model = model_register(
        name="rand", arch="efficientnet_b4_aux", classes="MN,SK,BCC", img_size=64
    )
    assert (model.trained, model.weights_source, model.weights_sha256) == (False, "random", "")
    assert str(model) == "rand (untrained)"
    first, _ = model_load(model=model)
    second, _ = model_load(model=model)
    for (key, a), b in zip(first.state_dict().items(), second.state_dict().values(), strict=True):
        assert torch.equal(a, b), key


def test_duplicate_name_is_refused(checkpoint):
    model_register(name="m", arch=None, classes=None, weights=checkpoint)
    with pytest.raises(InferenceError, match="already registered"):
        model_register(name="m", arch=None, classes=None, weights=checkpoint)


# --- running -------------------------------------------------------------------------------


@pytest.fixture
def study():
    return make_inference_study()


@pytest.fixture
def favour_sd(tmp_path):
    """A model whose unrestricted top-1 is SD, which is not one of the study's choices."""
    path = write_checkpoint(tmp_path / "sd.pt", favour="SD")
    return model_register(name="favours-sd", arch=None, classes=None, weights=path)


def run_once(model, study, **kwargs) -> InferenceRun:
    run = inference_run_start(model=model, study=study, enqueue=False)
    return inference_run_execute(run_id=run.pk, batch_size=2, **kwargs)


def test_run_stores_the_restricted_top1_probabilities_embedding_and_gradcam(
    study, favour_sd, media_root
):
    seen = []
    run = run_once(favour_sd, study, progress=lambda done, total: seen.append((done, total)))
    assert (run.status, run.done, run.failed, run.total) == ("done", 5, 0, 5)
    assert seen[-1] == (5, 5)
    predictions = list(Prediction.objects.filter(model=favour_sd).select_related("choice"))
    assert len(predictions) == 5
    for p in predictions:
        assert p.status == "ok" and p.run_id == run.pk
        assert max(p.probabilities, key=p.probabilities.get) == "SD"  # not a study choice
        assert p.choice.code in STUDY_CHOICES
        assert list(p.choice_probabilities) == list(STUDY_CHOICES)
        assert p.choice.code == max(p.choice_probabilities, key=p.choice_probabilities.get)
        assert sum(p.choice_probabilities.values()) == pytest.approx(1.0)
        # renormalising over the choices keeps the ratios of the full softmax
        a, b = STUDY_CHOICES[:2]
        assert p.choice_probabilities[a] / p.choice_probabilities[b] == pytest.approx(
            p.probabilities[a] / p.probabilities[b], rel=1e-6
        )
        assert p.embedding_array().dtype == np.dtype("<f4")
        assert p.embedding_array().shape == (1792,)
        with Image.open(media_root / p.gradcam.name) as png:
            assert (png.format, png.size) == ("PNG", (64, 64))
        assert p.seconds > 0


def test_the_dermoscopic_image_is_the_input(study, favour_sd, tmp_path):
    """Swapping in a different clinical photo does not change any prediction (of the same
    weights registered again: a finished run's predictions are never deleted)."""
    first = run_once(favour_sd, study)
    before = dict(Prediction.objects.filter(run=first).values_list("case_id", "probabilities"))
    for case in study.cases.all():
        clinical = case.images.get(kind="clinical")
        with clinical.web.open("wb") as f:
            f.write(b"broken")
    checkpoint = tmp_path / "sd.pt"  # favour_sd's
    again = model_register(name="favours-sd-again", arch=None, classes=None, weights=checkpoint)
    second = run_once(again, study)
    after = dict(Prediction.objects.filter(run=second).values_list("case_id", "probabilities"))
    assert after == before


def test_rerunning_is_a_no_op_for_finished_cases(study, favour_sd):
    first = run_once(favour_sd, study)
    rows = list(Prediction.objects.order_by("pk").values_list("pk", "created_at"))
    # the same run again: done, untouched
    assert inference_run_execute(run_id=first.pk).finished_at == first.finished_at
    second = run_once(favour_sd, study)
    assert second.pk != first.pk and second.status == "done"
    assert list(Prediction.objects.order_by("pk").values_list("pk", "created_at")) == rows
    assert not Prediction.objects.filter(run=second).exists()


def test_a_new_case_is_the_only_work_of_the_next_run(study, favour_sd):
    from tests.factories import CaseFactory

    run_once(favour_sd, study)
    late = CaseFactory(study=study, source_id="late", position=99)
    second = run_once(favour_sd, study)
    assert list(Prediction.objects.filter(run=second).values_list("case_id", flat=True)) == [
        late.pk
    ]
    assert (second.done, second.total) == (6, 6)


def test_an_unreadable_image_fails_only_its_case(study, favour_sd):
    broken = study.cases.order_by("position")[2]
    image = broken.images.get(kind="dermoscopic")
    with image.web.open("wb") as f:
        f.write(b"\xff\xd8 not really a JPEG")
    run = run_once(favour_sd, study)
    assert (run.status, run.done, run.failed) == ("done", 4, 1)
    failed = Prediction.objects.get(case=broken)
    assert failed.status == "failed" and "could not be read" in failed.error
    assert failed.choice is None and not failed.gradcam
    assert Prediction.objects.filter(status="ok").count() == 4


def test_a_duplicate_can_never_be_stored(study, favour_sd, media_root):
    run = run_once(favour_sd, study)
    case = study.cases.first()
    existing = Prediction.objects.get(case=case)
    fake = execution.ImagePrediction(
        logits=np.zeros(5),
        probabilities={},
        top1="MN",
        choice_probabilities={},
        embedding=np.zeros(3),
    )
    before = set(stored_files(media_root / "gradcam"))
    created = execution._store(
        run=run,
        cases=[case],
        results=[fake],
        pngs=[b"\x89PNG fake"],
        seconds=1.0,
        diagnoses={"MN": case.diagnosis},
    )
    assert created == 0
    assert Prediction.objects.filter(case=case).count() == 1
    assert Prediction.objects.get(case=case).pk == existing.pk
    assert set(stored_files(media_root / "gradcam")) == before  # the loser's file is gone


def test_a_model_without_one_of_the_choices_is_refused_at_start(study):
    model = model_register(name="two", arch="efficientnet_b4", classes="MN,SK", img_size=64)
    with pytest.raises(InferenceError, match=r"no output for the study's choice.*BCC"):
        inference_run_start(model=model, study=study)
    assert not InferenceRun.objects.exists()


def test_start_returns_the_active_run_and_replaces_a_silent_one(study, favour_sd):
    first = inference_run_start(model=favour_sd, study=study, enqueue=False)
    assert inference_run_start(model=favour_sd, study=study, enqueue=False) == first
    InferenceRun.objects.filter(pk=first.pk).update(
        status="running", heartbeat_at=timezone.now() - timedelta(hours=2)
    )
    second = inference_run_start(model=favour_sd, study=study, enqueue=False)
    assert second.pk != first.pk
    first.refresh_from_db()
    assert first.status == "failed" and f"superseded by run {second.pk}" in first.error


def test_start_enqueues_the_task_after_commit(
    study, favour_sd, monkeypatch, django_capture_on_commit_callbacks
):
    from inference.tasks import run_inference

    sent = []
    monkeypatch.setattr(run_inference, "apply_async", lambda **kw: sent.append(kw))
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        run = inference_run_start(model=favour_sd, study=study, batch_size=4)
    assert sent == []  # nothing before the commit
    for callback in callbacks:
        callback()
    assert [kw["kwargs"] for kw in sent] == [{"run_id": run.pk, "batch_size": 4}]
    assert InferenceRun.objects.get(pk=run.pk).sent_at is not None


def test_reconcile_requeues_stale_runs_only(
    study, favour_sd, monkeypatch, django_capture_on_commit_callbacks
):
    from inference.tasks import run_inference

    sent = []
    monkeypatch.setattr(run_inference, "apply_async", lambda **kw: sent.append(kw["kwargs"]))
    other = make_inference_study(slug="other", n=2)
    stale = inference_run_start(model=favour_sd, study=study, enqueue=False)
    fresh = inference_run_start(model=favour_sd, study=other, enqueue=False)
    old = timezone.now() - timedelta(hours=1)
    InferenceRun.objects.filter(pk=stale.pk).update(status="running", heartbeat_at=old)
    InferenceRun.objects.filter(pk=fresh.pk).update(status="running", heartbeat_at=timezone.now())

    report = inference_runs_reconcile(dry_run=True)
    assert [r.pk for r in report.stale_runs] == [stale.pk]
    assert {(m.name, s.slug, n) for m, s, n in report.missing} == {
        ("favours-sd", "inf", 5),
        ("favours-sd", "other", 2),
    }
    assert InferenceRun.objects.get(pk=stale.pk).status == "running"  # dry run

    with django_capture_on_commit_callbacks(execute=True):
        report = inference_runs_reconcile()
    assert sent == [{"run_id": stale.pk}]
    assert InferenceRun.objects.get(pk=stale.pk).status == "queued"
    assert InferenceRun.objects.get(pk=fresh.pk).status == "running"
