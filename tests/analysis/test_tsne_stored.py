"""The t-SNE points of a run's embeddings: fitted once, stored on the run, reused by every
later report; fitted again only for another seed or other predictions."""

from __future__ import annotations

import numpy as np
import pytest
import sklearn.manifold

from analysis.services import study_report_write
from inference.models import InferenceRun, Prediction
from inference.services.projection import tsne_projection_ensure, tsne_projection_store
from tests.analysis.factories import build_run_study

pytestmark = pytest.mark.django_db


@pytest.fixture
def fits(monkeypatch):
    """The t-SNE fits made while the test runs (scikit-learn's TSNE, counted)."""
    made = []
    real = sklearn.manifold.TSNE

    class Counted(real):
        def fit_transform(self, X, y=None):
            made.append(X.shape)
            return super().fit_transform(X, y)

    monkeypatch.setattr(sklearn.manifold, "TSNE", Counted)
    return made


def refuse_fits(monkeypatch) -> None:
    """From now on, a t-SNE fit fails the test."""

    class Refused:
        def __init__(self, *args, **kwargs):
            raise AssertionError("t-SNE was fitted again")

    monkeypatch.setattr(sklearn.manifold, "TSNE", Refused)


def report(study, out, **parameters):
    return study_report_write(study=study, out_dir=out, n_bootstrap=5, **parameters)


def test_a_second_report_draws_the_stored_points_without_fitting(tmp_path, fits, monkeypatch):
    study, run = build_run_study()
    first = report(study, tmp_path / "first")
    assert fits == [(9, 8)]  # fitted once, by the first report (the run predates them)
    run.refresh_from_db()
    (entry,) = run.tsne
    ids = Prediction.objects.filter(run=run).order_by("case__position").values_list("pk", flat=True)
    assert entry["seed"] == 0 and entry["predictions"] == list(ids)
    assert np.asarray(entry["points"]).shape == (9, 2)

    refuse_fits(monkeypatch)
    second = report(study, tmp_path / "second")
    stem = f"tsne_{run.model.name}"
    assert {f"{stem}.png", f"{stem}.svg"} <= set(second.names()) == set(first.names())
    png = f"{stem}.png"  # the same points, the same pixels
    assert (tmp_path / "first" / png).read_bytes() == (tmp_path / "second" / png).read_bytes()
    run.refresh_from_db()
    assert len(run.tsne) == 1


def test_points_stored_when_the_run_was_done_serve_the_first_report(tmp_path, monkeypatch):
    study, run = build_run_study()
    stored = tsne_projection_store(run=run)  # what a worker does once the run is done
    assert stored.run_id == run.pk and stored.points.shape == (9, 2)
    refuse_fits(monkeypatch)
    files = report(study, tmp_path)
    assert f"tsne_{run.model.name}.png" in files.names()


def test_another_seed_is_fitted_once_and_kept_beside_the_first(tmp_path, fits):
    study, run = build_run_study()
    report(study, tmp_path / "a")
    report(study, tmp_path / "b", seed=1)
    report(study, tmp_path / "c", seed=1)
    assert len(fits) == 2
    run.refresh_from_db()
    assert sorted(entry["seed"] for entry in run.tsne) == [0, 1]


def test_other_predictions_are_fitted_again_and_stored_on_the_latest_run(fits):
    from tests.factories import CaseFactory

    study, run = build_run_study()
    assert tsne_projection_ensure(study=study, model=run.model).run_id == run.pk
    late_case = CaseFactory(study=study, diagnosis=Prediction.objects.first().case.diagnosis,
                            with_images=False)  # fmt: skip
    later = InferenceRun.objects.create(model=run.model, study=study, status="done")
    Prediction.objects.create(
        model=run.model,
        case=late_case,
        run=later,
        choice=late_case.diagnosis,
        embedding=np.ones(8, dtype="<f4").tobytes(),
    )
    again = tsne_projection_ensure(study=study, model=run.model)
    assert len(fits) == 2 and again.run_id == later.pk and again.points.shape == (10, 2)
    assert again.cases["case"].iloc[-1] == late_case.public_id
    assert tsne_projection_ensure(study=study, model=run.model).run_id == later.pk
    assert len(fits) == 2


def test_predictions_of_no_finished_run_are_fitted_and_kept_nowhere(fits):
    study, run = build_run_study(status="running")
    first = tsne_projection_ensure(study=study, model=run.model)
    second = tsne_projection_ensure(study=study, model=run.model)
    assert first.run_id is second.run_id is None and len(fits) == 2
    run.refresh_from_db()
    assert run.tsne == []
    np.testing.assert_array_equal(first.points, second.points)  # same data, same seed


def test_fewer_than_five_embeddings_have_no_points(fits):
    study, run = build_run_study(per_class=1)
    assert tsne_projection_ensure(study=study, model=run.model) is None and fits == []
