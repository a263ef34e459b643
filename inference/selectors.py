"""Reads of predictions. Staff only: predictions are never shown to a reader who has
not finished (see cases.selectors for the reader side)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np
import pandas as pd
from django.db.models import Count, Max, Q

from analysis.stats.columns import PREDICTION_COLUMNS, prob_column
from cases.feedback import accuracy_summary
from cases.models import Study
from cases.support import SupportPrediction
from inference.models import InferenceRun, Prediction, RegisteredModel


def models_for_study(*, study: Study):
    """Registered models with at least one successful prediction on ``study``."""
    return RegisteredModel.objects.filter(
        predictions__case__study=study, predictions__status=Prediction.Status.OK
    ).distinct()


def predictions_frame(*, study: Study, models: list[str] | None = None) -> pd.DataFrame:
    """Successful predictions on ``study`` as a tidy table: ``model, case, truth, answer``
    and ``prob_<CODE>`` for each of the study's choices (probabilities renormalised over
    the choices; ``answer`` is the top-1 restricted to them)."""
    choices = study.choice_codes()
    rows = Prediction.objects.filter(case__study=study, status=Prediction.Status.OK)
    if models:
        rows = rows.filter(model__name__in=models)
    rows = rows.select_related("model", "case__diagnosis", "choice").order_by(
        "model__name", "case__position"
    )
    columns = [*PREDICTION_COLUMNS, *(prob_column(c) for c in choices)]
    records = [
        (  # in the order of PREDICTION_COLUMNS
            p.model.name,
            p.case.public_id,
            p.case.diagnosis.code,
            p.choice.code,
            *(float(p.choice_probabilities.get(code, np.nan)) for code in choices),
        )
        for p in rows.iterator(chunk_size=2000)
    ]
    return pd.DataFrame(records, columns=columns)


def embeddings_frame(*, study: Study, model: str) -> tuple[pd.DataFrame, np.ndarray]:
    """(cases with ``case`` and ``truth``, an n x d float32 matrix) for one model."""
    rows = list(
        Prediction.objects.filter(
            case__study=study,
            model__name=model,
            status=Prediction.Status.OK,
            embedding__isnull=False,
        )
        .select_related("case__diagnosis")
        .order_by("case__position")
    )
    meta = pd.DataFrame(
        {"case": [p.case.public_id for p in rows], "truth": [p.case.diagnosis.code for p in rows]}
    )
    matrix = (
        np.stack([p.embedding_array() for p in rows])
        if rows
        else np.empty((0, 0), dtype=np.float32)
    )
    return meta, matrix


def gradcam_predictions(*, study: Study, model: str, limit: int | None = None):
    """Successful predictions of ``model`` on ``study`` that have a Grad-CAM overlay."""
    rows = (
        Prediction.objects.filter(case__study=study, model__name=model, status=Prediction.Status.OK)
        .exclude(gradcam="")
        .select_related("case__diagnosis", "choice")
        .order_by("case__position")
    )
    return list(rows[:limit] if limit else rows)


def model_feedback_rows(study: Study, language: str) -> list[dict]:
    """Each model's accuracy on ``study``, overall and per class (its sensitivity), for
    the feedback page a reader sees after finishing (see cases.feedback); ``predicted``
    and ``study_cases`` say how far its predictions are while a run goes on."""
    rows = []
    n_cases = study.cases.count()
    for model in models_for_study(study=study).order_by("name"):
        predictions = Prediction.objects.filter(
            model=model, case__study=study, status=Prediction.Status.OK
        ).select_related("case__diagnosis")
        summary = accuracy_summary(
            ((p.case.diagnosis, p.choice_id == p.case.diagnosis_id) for p in predictions),
            order=study.choice_codes(),
            language=language,
        )
        # Predictions fill in while a run goes on (the demo serves from the start).
        predicted = Prediction.objects.filter(model=model, case__study=study).count()
        rows.append(
            {
                "name": model.name,
                "trained": model.trained,
                **summary,
                "predicted": predicted,
                "study_cases": n_cases,
            }
        )
    return rows


@dataclass(frozen=True)
class PredictionsState:
    """What an analysis of a study depends on among its predictions (the report
    fingerprint hashes it): their number, latest creation time and number with an
    embedding; ``(pk, model pk, case pk, status, choice pk, gradcam)`` of every
    prediction, by pk; ``(name, trained)`` of every model that predicted, by name."""

    n_predictions: int
    latest_created_at: dt.datetime | None
    n_embeddings: int
    rows: list[tuple]
    models: list[tuple[str, bool]]


def predictions_state(*, study: Study) -> PredictionsState:
    """The :class:`PredictionsState` of ``study`` now, every status included."""
    predictions = Prediction.objects.filter(case__study=study)
    counts = predictions.aggregate(
        n=Count("id"),
        latest=Max("created_at"),
        embeddings=Count("id", filter=Q(embedding__isnull=False)),
    )
    rows = predictions.order_by("pk").values_list(
        "pk", "model_id", "case_id", "status", "choice_id", "gradcam"
    )
    models = (
        RegisteredModel.objects.filter(predictions__case__study=study)
        .distinct()
        .values_list("name", "trained")
    )
    return PredictionsState(
        n_predictions=counts["n"],
        latest_created_at=counts["latest"],
        n_embeddings=counts["embeddings"],
        rows=list(rows),
        models=sorted(models),
    )


def study_runs(*, study: Study, limit: int = 10) -> list:
    """The newest inference runs on ``study`` (newest first), with their models, for the
    study's dashboard."""
    return list(
        InferenceRun.objects.filter(study=study)
        .select_related("model")
        .order_by("-created_at", "-pk")[:limit]
    )


def support_refusals(study: Study) -> list[str]:
    """Why the CNN support of ``study``'s conditions cannot be shown (empty: it can):
    each condition that shows it names a model (ConditionSupport) that has a successful
    prediction with probabilities for every case of the study. A check before opening
    (registered with ``cases.services.register_open_check``)."""
    reasons = []
    n_cases = study.cases.count()
    conditions = study.conditions.filter(shows_cnn=True).select_related("cnn_support__model")
    for condition in conditions.order_by("position"):
        support = getattr(condition, "cnn_support", None)
        if support is None:
            reasons.append(
                f"condition {condition.code!r} shows the CNN's support but names no model "
                "(choose its CNN beside the condition, on the study's settings)"
            )
            continue
        ready = Prediction.objects.filter(
            model=support.model, case__study=study, status=Prediction.Status.OK
        ).exclude(choice_probabilities={})
        n_ready = ready.count()
        if n_ready < n_cases:
            reasons.append(
                f"condition {condition.code!r}: {support.model.name} has predictions with "
                f"probabilities for {n_ready} of {n_cases} cases; run it on the study first"
            )
        elif condition.shows_gradcam:
            with_cam = ready.exclude(gradcam="").count()
            if with_cam < n_cases:
                reasons.append(
                    f"condition {condition.code!r} shows the Grad-CAM, but {support.model.name} "
                    f"has one for {with_cam} of {n_cases} cases; run it with Grad-CAM first"
                )
    return reasons


def support_predictions(model_id: int, case_ids) -> dict[int, SupportPrediction]:
    """What a reader may be shown of ``model_id``'s successful predictions on
    ``case_ids``, by case (``cases.support``): one query. The reader side asks only for
    a read whose condition shows the CNN's support; the answers export for every read
    of such a condition."""
    predictions = (
        Prediction.objects.filter(
            model_id=model_id, case_id__in=list(case_ids), status=Prediction.Status.OK
        )
        .select_related("choice")
        .only("case_id", "choice__code", "choice_probabilities", "gradcam")
        .order_by()
    )
    return {
        p.case_id: SupportPrediction(
            choice=p.choice.code,
            probabilities={code: float(v) for code, v in p.choice_probabilities.items()},
            gradcam=p.gradcam or None,
        )
        for p in predictions
        if p.choice is not None
    }
