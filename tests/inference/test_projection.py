"""A run that is done stores the t-SNE points of its model's embeddings on the study, for
the reports (inference.services.projection); a failure there leaves the run done."""

from __future__ import annotations

import numpy as np
import pytest

from inference.models import Prediction
from inference.services import inference_run_start, model_register, projection
from inference.services.execution import inference_run_execute
from tests.inference.factories import make_inference_study, write_checkpoint

pytestmark = pytest.mark.django_db


@pytest.fixture
def model(tmp_path):
    path = write_checkpoint(tmp_path / "c.pt")
    return model_register(name="projected", arch=None, classes=None, weights=path)


def run_once(model, study):
    run = inference_run_start(model=model, study=study, enqueue=False)
    return inference_run_execute(run_id=run.pk, batch_size=5, with_gradcam=False)


def test_a_done_run_stores_the_points_of_its_embeddings(model):
    study = make_inference_study(n=5)
    run = run_once(model, study)
    assert run.status == "done"
    (entry,) = run.tsne
    ids = Prediction.objects.filter(run=run).order_by("case__position").values_list("pk", flat=True)
    assert entry["seed"] == 0 and entry["predictions"] == list(ids)
    assert np.isfinite(np.asarray(entry["points"])).all()
    assert np.asarray(entry["points"]).shape == (5, 2)


def test_a_run_that_cannot_store_its_points_is_still_done(model, monkeypatch, caplog):
    def broken(**kwargs):
        raise RuntimeError("no scikit-learn today")

    monkeypatch.setattr(projection, "tsne_projection_store", broken)
    run = run_once(model, make_inference_study(n=5))
    assert (run.status, run.done, run.tsne) == ("done", 5, [])
    assert "could not store the t-SNE points" in caplog.text
