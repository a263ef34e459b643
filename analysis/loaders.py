"""Study data -> the input of one report, from the database or from files.

Each path gives a :class:`StudyData`: the tidy answers and predictions tables (a missing
one is ``None``: :func:`analysis.stats.analyze_tables` accepts either being absent, so a
study without readers still gets its model tables and vice versa), the choices, and the
:class:`~analysis.report.ReportMeta` the report shows beside the tables. The tables'
columns are those of :mod:`analysis.stats.columns`; the database selectors
(``cases.selectors.answers_frame``, ``inference.selectors.predictions_frame``) rename
the models' fields to them. Everything here is staff-only data: the tables hold the
reference diagnoses.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from analysis.report import ReportMeta
from analysis.stats import InputError, load_answers, load_predictions
from analysis.stats.columns import CONDITION_COLUMN

Tables = tuple[pd.DataFrame | None, pd.DataFrame | None, list[str]]


@dataclass(frozen=True)
class StudyData:
    """The input of one report (see the module's docstring)."""

    answers: pd.DataFrame | None
    predictions: pd.DataFrame | None
    choices: list[str] | None
    meta: ReportMeta


def study_tables(study, *, language: str = "en") -> Tables:
    """Answers and successful predictions of ``study`` (``None`` where there are none) and
    the study's choice codes in display order. The answers come condition by condition
    in the study's order (otherwise as ``answers_frame`` orders them): the analysis
    takes the conditions in the order they first appear, and a crossover's rows, by
    each reader's sessions, may start with any condition."""
    from cases.selectors import answers_frame
    from inference.selectors import predictions_frame

    answers = answers_frame(study=study, language=language)
    if len(answers) and CONDITION_COLUMN in answers.columns:
        rank = dict(study.conditions.values_list("code", "position"))
        order = answers[CONDITION_COLUMN].map(rank).to_numpy()
        answers = answers.iloc[order.argsort(kind="stable")].reset_index(drop=True)
    predictions = predictions_frame(study=study)
    return (
        answers if len(answers) else None,
        predictions if len(predictions) else None,
        study.choice_codes(),
    )


def study_report_meta(study, *, title: str | None = None, gradcam_limit: int = 16) -> ReportMeta:
    """The title, facts, t-SNE points and Grad-CAM overlays of ``study`` from the
    database. The points are those stored with each model's inference run, fitted and
    stored on first use for runs done before they were (the report asks for them with
    its seed); each overlay comes with the address of the view that serves it."""
    from inference.selectors import gradcam_predictions, models_for_study
    from inference.services.projection import has_embeddings
    from readerstudy.storage import stored_image

    models = list(models_for_study(study=study).order_by("name"))
    details = {
        "source": "database",
        "study": study.slug,
        "study_title": study.title,
        "synthetic": bool(study.is_synthetic),
        "conditions": [
            {"code": c.code, "label": c.label, "shows_cnn": bool(c.shows_cnn)}
            for c in study.conditions.order_by("position")
        ],
        "models": [
            {
                "name": m.name,
                "arch": m.arch,
                "trained": bool(m.trained),
                "weights_source": m.weights_source,
            }
            for m in models
        ],
    }
    projections = {}
    gradcams = []
    for m in models:
        if has_embeddings(study=study, model=m):
            projections[m.name] = _stored_projection(study, m)
        for p in gradcam_predictions(study=study, model=m.name, limit=gradcam_limit):
            gradcams.append(
                {
                    "model": m.name,
                    "case": p.case.public_id,
                    "truth": p.case.diagnosis.code,
                    "answer": p.choice.code if p.choice else "",
                    # its local path, or its bytes from object storage
                    "image": stored_image(p.gradcam),
                    "url": _gradcam_url(p.pk),
                }
            )
    return ReportMeta(
        title=title or f"{study.title} — reader study analysis",
        details=details,
        projections=projections,
        gradcams=gradcams,
    )


def _stored_projection(study, model):
    """``seed -> (cases, points)``: the stored t-SNE points of ``model`` on ``study``
    (:func:`inference.services.projection.tsne_projection_ensure`)."""

    def project(seed: int):
        from inference.services.projection import tsne_projection_ensure

        found = tsne_projection_ensure(study=study, model=model, seed=seed)
        return None if found is None else (found.cases, found.points)

    return project


def _gradcam_url(pk: int) -> str | None:
    """The permission-checked address of a prediction's overlay (study admins only)."""
    from django.urls import NoReverseMatch, reverse

    try:
        return reverse("inference:gradcam", args=[pk])
    except NoReverseMatch:  # a URLconf without the inference app
        return None


def study_data(
    study, *, choices: Sequence[str] | None = None, title: str | None = None
) -> StudyData:
    """Everything a report of ``study`` needs from the database; ``choices`` default to
    the study's."""
    answers, predictions, study_choices = study_tables(study)
    return StudyData(
        answers=answers,
        predictions=predictions,
        choices=list(choices or study_choices) or None,
        meta=study_report_meta(study, title=title),
    )


def file_tables(
    answers_csv: str | Path | None,
    predictions_csv: str | Path | None,
    choices: Sequence[str] | None = None,
) -> Tables:
    """Validated answers / predictions read from CSV files (either may be ``None``).

    ``choices`` default to the sorted union of the truths in both files. Raises
    :class:`~analysis.stats.InputError` naming the offending rows.
    """
    if answers_csv is None and predictions_csv is None:
        raise InputError("nothing to analyse: give an answers file, a predictions file or both")
    answers = load_answers(answers_csv, choices) if answers_csv is not None else None
    predictions = (
        load_predictions(predictions_csv, choices) if predictions_csv is not None else None
    )
    if choices is None:
        found = sorted(
            {c for t in (answers, predictions) if t is not None for c in t.attrs["choices"]}
        )
        if answers is not None and answers.attrs["choices"] != found:
            answers = load_answers(answers, found)
        if predictions is not None and predictions.attrs["choices"] != found:
            predictions = load_predictions(predictions, found)
        choices = found
    return answers, predictions, list(choices)


def file_report_meta(
    answers_csv, predictions_csv, predictions: pd.DataFrame | None, *, title: str | None = None
) -> ReportMeta:
    """The title and facts of the files path: models' training status is not recorded
    there, and there are no embeddings or Grad-CAM overlays."""
    return ReportMeta(
        title=title or "Reader study analysis",
        details={
            "source": "files",
            "answers_file": str(answers_csv) if answers_csv is not None else None,
            "predictions_file": str(predictions_csv) if predictions_csv is not None else None,
            "synthetic": None,
            "models": [
                {"name": name, "arch": None, "trained": None, "weights_source": None}
                for name in (
                    sorted(predictions["model"].unique()) if predictions is not None else []
                )
            ],
        },
    )


def file_data(
    answers_csv: str | Path | None,
    predictions_csv: str | Path | None,
    *,
    choices: Sequence[str] | None = None,
    title: str | None = None,
) -> StudyData:
    """Everything a report of exported CSV files needs (see :func:`file_tables`)."""
    answers, predictions, choices = file_tables(answers_csv, predictions_csv, choices)
    return StudyData(
        answers=answers,
        predictions=predictions,
        choices=choices,
        meta=file_report_meta(answers_csv, predictions_csv, predictions, title=title),
    )
