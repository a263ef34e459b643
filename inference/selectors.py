"""Reads of predictions. Staff only: predictions are never shown to a reader who has
not finished (see cases.selectors for the reader side)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from cases.feedback import accuracy_summary
from cases.models import Study
from inference.models import Prediction, RegisteredModel


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
    records = []
    for p in rows.iterator(chunk_size=2000):
        record = {
            "model": p.model.name,
            "case": p.case.public_id,
            "truth": p.case.diagnosis.code,
            "answer": p.choice.code,
        }
        for code in choices:
            record[f"prob_{code}"] = float(p.choice_probabilities.get(code, np.nan))
        records.append(record)
    return pd.DataFrame(
        records, columns=["model", "case", "truth", "answer", *[f"prob_{c}" for c in choices]]
    )


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
    the feedback page a reader sees after finishing (see cases.feedback)."""
    rows = []
    for model in models_for_study(study=study).order_by("name"):
        predictions = Prediction.objects.filter(
            model=model, case__study=study, status=Prediction.Status.OK
        ).select_related("case__diagnosis")
        summary = accuracy_summary(
            ((p.case.diagnosis, p.choice_id == p.case.diagnosis_id) for p in predictions),
            order=study.choice_codes(),
            language=language,
        )
        rows.append({"name": model.name, "trained": model.trained, **summary})
    return rows
