"""The predictions export is the file `analyze --predictions` reads."""

from __future__ import annotations

import io

import pandas as pd
import pytest
from django.urls import reverse

from analysis.stats import load_predictions
from cases.models import Diagnosis
from inference.models import Prediction, RegisteredModel
from tests.factories import CaseFactory, make_study

pytestmark = pytest.mark.django_db


def test_admin_exports_predictions_that_the_analysis_reads(admin_client):
    study = make_study(choices=("MN", "SK", "BCC"))
    model = RegisteredModel.objects.create(
        name="cnn", arch="efficientnet_b4_aux", classes=["MN", "SK", "BCC"], preprocessing={}
    )
    mn = Diagnosis.objects.get(code="MN")
    for i, code in enumerate(["MN", "SK", "BCC"]):
        case = CaseFactory(
            study=study,
            source_id=f"c{i}",
            position=i + 1,
            diagnosis=Diagnosis.objects.get(code=code),
            with_images=False,
        )
        Prediction.objects.create(
            model=model,
            case=case,
            choice=mn,
            choice_probabilities={"MN": 0.6, "SK": 0.3, "BCC": 0.1},
        )
    response = admin_client.get(reverse("inference:predictions_csv", args=[study.slug]))
    assert response.status_code == 200 and response["Cache-Control"] == "private, no-store"
    frame = pd.read_csv(io.StringIO(response.content.decode()))
    assert list(frame.columns) == [
        "model",
        "case",
        "truth",
        "answer",
        "prob_MN",
        "prob_SK",
        "prob_BCC",
    ]
    loaded = load_predictions(frame, ["MN", "SK", "BCC"])
    assert len(loaded) == 3 and set(loaded["answer"]) == {"MN"}
