"""Admin pages of the inference app and the staff-only Grad-CAM view."""

from __future__ import annotations

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from inference.models import InferenceRun, Prediction, RegisteredModel
from inference.services import inference_run_start, model_register
from inference.services.execution import inference_run_execute
from tests.inference.factories import make_inference_study, write_checkpoint

pytestmark = pytest.mark.django_db


@pytest.fixture
def predicted():
    """A 2-case study with predictions (and Grad-CAM overlays) of an untrained model."""
    study = make_inference_study(n=2)
    model = model_register(
        name="tiny", arch="efficientnet_b4_aux", classes="MN,SK,BCC", img_size=64
    )
    run = inference_run_start(model=model, study=study, enqueue=False)
    inference_run_execute(run_id=run.pk, batch_size=2)
    return Prediction.objects.select_related("case").first()


@pytest.fixture
def staff(client, admin_user):
    client.force_login(admin_user)
    return client


@pytest.fixture
def enqueued(monkeypatch):
    from inference.tasks import run_inference

    sent = []
    monkeypatch.setattr(run_inference, "apply_async", lambda **kw: sent.append(kw["kwargs"]))
    return sent


def test_changelists_and_detail_pages_render(staff, predicted):
    model = predicted.model
    page = staff.get(reverse("admin:inference_registeredmodel_changelist")).content.decode()
    assert "UNTRAINED" in page and "efficientnet_b4_aux" in page and "MN,SK,BCC" in page
    page = staff.get(reverse("admin:inference_inferencerun_changelist")).content.decode()
    assert "2 / 2" in page and "<progress" in page and "Run inference" in page
    page = staff.get(reverse("admin:inference_prediction_changelist")).content.decode()
    gradcam = reverse("inference:gradcam", args=[predicted.pk])
    assert predicted.case.public_id in page and gradcam in page
    page = staff.get(reverse("admin:inference_prediction_change", args=[predicted.pk]))
    assert page.status_code == 200 and gradcam in page.content.decode()
    for name in ("registeredmodel", "inferencerun"):
        obj = model if name == "registeredmodel" else InferenceRun.objects.get()
        assert (
            staff.get(reverse(f"admin:inference_{name}_change", args=[obj.pk])).status_code == 200
        )


def test_register_a_model_by_upload(staff, tmp_path):
    url = reverse("admin:inference_registeredmodel_add")
    assert staff.get(url).status_code == 200
    data = write_checkpoint(tmp_path / "c.pt").read_bytes()
    response = staff.post(
        url, {"name": "uploaded", "weights": SimpleUploadedFile("c.pt", data), "classes": ""}
    )
    assert response.status_code == 302
    model = RegisteredModel.objects.get(name="uploaded")
    assert model.trained and model.classes == ["MN", "SK", "BCC", "SD", "Pso"]


def test_a_bad_upload_shows_the_reason_and_stores_nothing(staff):
    response = staff.post(
        reverse("admin:inference_registeredmodel_add"),
        {"name": "bad", "arch": "efficientnet_b4", "classes": "MN,SK",
         "weights": SimpleUploadedFile("c.pt", b"junk")},
    )  # fmt: skip
    assert response.status_code == 200
    assert "not a PyTorch checkpoint" in response.content.decode()
    assert not RegisteredModel.objects.exists()


def test_run_inference_page_starts_a_run(staff, enqueued, django_capture_on_commit_callbacks):
    study = make_inference_study(n=1)
    model = model_register(name="tiny", arch="efficientnet_b4", classes="MN,SK,BCC")
    url = reverse("admin:inference_inferencerun_start")
    assert staff.get(url).status_code == 200
    with django_capture_on_commit_callbacks(execute=True):
        response = staff.post(url, {"study": study.pk, "model": model.pk})
    assert response.status_code == 302
    run = InferenceRun.objects.get()
    assert enqueued == [{"run_id": run.pk}]


def test_run_inference_page_shows_a_missing_choice(staff, enqueued):
    study = make_inference_study(n=1)
    model = model_register(name="two", arch="efficientnet_b4", classes="MN,SK")
    response = staff.post(
        reverse("admin:inference_inferencerun_start"), {"study": study.pk, "model": model.pk},
        follow=True,
    )  # fmt: skip
    assert "BCC" in response.content.decode() and not InferenceRun.objects.exists()


@pytest.mark.parametrize(
    ("persona", "status"), [("admin_user", 200), ("reader", 404), ("outsider", 404), (None, 404)]
)
def test_gradcam_view_is_for_staff_only(client, request, predicted, persona, status):
    if persona:
        client.force_login(request.getfixturevalue(persona))
    response = client.get(reverse("inference:gradcam", args=[predicted.pk]))
    assert response.status_code == status
    if status == 200:
        assert response["Content-Type"] == "image/png"
        assert response["Cache-Control"].startswith("private")
        assert response["X-Content-Type-Options"] == "nosniff"
        assert b"".join(response.streaming_content).startswith(b"\x89PNG")


def test_gradcam_of_an_unknown_prediction_is_404(staff):
    assert staff.get(reverse("inference:gradcam", args=[999999])).status_code == 404
