"""The t-SNE points of a model's embeddings on a study, stored on its inference run.

A report draws each model's embeddings in two dimensions
(:func:`analysis.stats.projection.tsne_points`). The fit takes seconds (1.5 s for 200
cases on a 2-core machine, minutes for thousands) and the same embeddings and seed give
the same points, so they are computed once: when a run is done
(:func:`tsne_projection_store`, seed 0, the reports' default) or by the first report
that asks for them (:func:`tsne_projection_ensure`, any seed; runs done before the
points were stored), and kept in the run's ``tsne`` field with the primary keys of the
predictions they belong to, in order. A later report whose predictions and seed match
reads them and fits nothing. The predictions themselves are never touched.

No torch here: a report's worker calls it too (scikit-learn loads inside the fit).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import pandas as pd
from django.db import transaction

from analysis.stats.projection import (
    TSNE_MIN_POINTS,
    tsne_method,
    tsne_perplexity,
    tsne_points,
)
from cases.models import Study
from inference.models import FINISHED_RUN_STATUSES, InferenceRun, Prediction, RegisteredModel

logger = logging.getLogger(__name__)

# Entries kept per run (one per seed and set of predictions, about 10 kB for 200 cases);
# an older one is fitted again if a report asks for it.
MAX_ENTRIES = 4


@dataclass(frozen=True)
class TsneProjection:
    """The t-SNE points of one model on one study: ``cases`` (``case``, ``truth``; in
    case order), ``points`` (n x 2, one row per case), the ``seed``, and the run they are
    stored on (``None``: fitted now and kept nowhere, as for predictions without a
    finished run)."""

    cases: pd.DataFrame
    points: np.ndarray
    seed: int
    run_id: int | None


def _embedded(*, study: Study, model: RegisteredModel):
    return Prediction.objects.filter(
        case__study=study, model=model, status=Prediction.Status.OK, embedding__isnull=False
    ).order_by("case__position", "pk")


def has_embeddings(*, study: Study, model: RegisteredModel) -> bool:
    """Whether ``model`` has a successful prediction with an embedding on ``study``."""
    return _embedded(study=study, model=model).exists()


def _cases(rows) -> pd.DataFrame:
    return pd.DataFrame(
        {"case": [p.case.public_id for p in rows], "truth": [p.case.diagnosis.code for p in rows]}
    )


def _stored(*, study: Study, model: RegisteredModel, ids: list[int], seed: int):
    """(run pk, points) of a stored entry for exactly these predictions and seed."""
    runs = InferenceRun.objects.filter(study=study, model=model).order_by("-pk")
    for run_id, entries in runs.values_list("pk", "tsne"):
        for entry in entries or []:
            if entry.get("seed") == seed and entry.get("predictions") == ids:
                return run_id, np.asarray(entry["points"], dtype=np.float64).reshape(-1, 2)
    return None


def _fit(*, study: Study, model: RegisteredModel, ids: list[int], seed: int):
    by_pk = {p.pk: p for p in _embedded(study=study, model=model).filter(pk__in=ids)}
    matrix = np.stack([by_pk[pk].embedding_array() for pk in ids])
    return tsne_points(matrix, seed=seed)


def _keep(*, run_id: int, ids: list[int], seed: int, points: np.ndarray) -> None:
    import sklearn

    n = len(ids)
    entry = {
        "seed": seed,
        "predictions": ids,
        "points": np.asarray(points, dtype=np.float64).tolist(),
        "perplexity": tsne_perplexity(n),
        "method": tsne_method(n),
        "init": "pca",
        "scikit_learn": sklearn.__version__,
    }
    with transaction.atomic():
        run = InferenceRun.objects.select_for_update().only("tsne").get(pk=run_id)
        entries = [
            e for e in run.tsne or [] if (e.get("seed"), e.get("predictions")) != (seed, ids)
        ] + [entry]
        # update(), not save(): the run's other fields are the worker's.
        InferenceRun.objects.filter(pk=run_id).update(tsne=entries[-MAX_ENTRIES:])


def tsne_projection_ensure(
    *, study: Study, model: RegisteredModel, seed: int = 0, run: InferenceRun | None = None
) -> TsneProjection | None:
    """The t-SNE points of ``model``'s embeddings on ``study`` (every successful
    prediction with an embedding) for ``seed``: the stored ones when some run of the
    model on the study holds them for exactly these predictions, else fitted now and
    stored on ``run`` (default: the model's latest finished run on the study; none: not
    stored). ``None`` for fewer than 5 embeddings."""
    rows = list(
        _embedded(study=study, model=model).select_related("case__diagnosis").defer("embedding")
    )
    if len(rows) < TSNE_MIN_POINTS:
        return None
    ids = [p.pk for p in rows]
    found = _stored(study=study, model=model, ids=ids, seed=seed)
    if found is not None:
        run_id, points = found
        return TsneProjection(cases=_cases(rows), points=points, seed=seed, run_id=run_id)
    points = _fit(study=study, model=model, ids=ids, seed=seed)
    if run is None:
        run = (
            InferenceRun.objects.filter(study=study, model=model, status__in=FINISHED_RUN_STATUSES)
            .order_by("-pk")
            .first()
        )
    if run is not None:
        _keep(run_id=run.pk, ids=ids, seed=seed, points=points)
    return TsneProjection(
        cases=_cases(rows), points=points, seed=seed, run_id=run.pk if run else None
    )


def tsne_projection_store(*, run: InferenceRun, seed: int = 0) -> TsneProjection | None:
    """Fit and store the t-SNE points of ``run``'s model on its study once the run is
    done (:func:`tsne_projection_ensure` on this run): the reports of the study then draw
    them without fitting. Nothing to do when they are already stored."""
    return tsne_projection_ensure(study=run.study, model=run.model, seed=seed, run=run)
