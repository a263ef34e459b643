"""Setting up a study's design in the admin as its study admin (staff, not a superuser):
the design and washout on the study's form, the reading conditions with the CNN whose
support a condition shows beside it, validated; a study that shows the CNN refused to
open until that CNN has predicted every case; the support fixed once the study opens,
in the admin, the model and the inline alike."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError
from django.urls import reverse

from cases.models import ReadingCondition, Study
from cases.services import study_admin_add
from inference.models import ConditionSupport, InferenceRun, Prediction, RegisteredModel
from tests.factories import build_study, study_change_post

pytestmark = pytest.mark.django_db

CODES = ["MN", "SK", "BCC"]


@pytest.fixture
def cnn():
    return RegisteredModel.objects.create(
        name="derm-cnn", arch="efficientnet_b4_aux", classes=CODES,
        preprocessing={"input_size": 64}, weights_source="random",
    )  # fmt: skip


@pytest.fixture
def draft(study_admin):
    """A draft of 3 cases (with their images and a consent text), administered by
    ``study_admin``."""
    study = build_study(3, slug="walk", status=Study.Status.DRAFT)
    study_admin_add(user=study_admin, study=study)
    return study


@pytest.fixture
def as_study_admin(client, study_admin):
    study_admin.refresh_from_db()  # staff and in the study-admin group now
    assert not study_admin.is_superuser
    client.force_login(study_admin)
    return client


def change_url(study: Study) -> str:
    return reverse("admin:cases_study_change", args=[study.pk])


def design_post(study: Study, *, design: str, washout: int | None = None, rows=()) -> dict:
    """The study's change form as it comes, with ``design`` and ``washout``, its
    conditions unchanged plus ``rows`` (new conditions: their fields, and for one that
    shows the CNN its ``support_model`` and ``support_top_k``)."""
    data = study_change_post(study)
    data["design"] = design
    if washout is not None:
        data["washout_days"] = str(washout)
    first = int(data["conditions-TOTAL_FORMS"])
    for offset, row in enumerate(rows):
        for name, value in row.items():
            data[f"conditions-{first + offset}-{name}"] = value
        data[f"conditions-{first + offset}-study"] = study.pk
    data["conditions-TOTAL_FORMS"] = str(first + len(rows))
    return data


def predict_every_case(study: Study, model: RegisteredModel) -> None:
    """What a finished run of ``model`` on ``study`` leaves: a prediction with
    probabilities for every case (the test plays the worker)."""
    run = InferenceRun.objects.create(model=model, study=study, status="done", total=3)
    for case in study.cases.select_related("diagnosis"):
        probabilities = {code: 0.8 if code == case.diagnosis.code else 0.1 for code in CODES}
        Prediction.objects.create(
            model=model, case=case, run=run, choice=case.diagnosis,
            probabilities=probabilities, choice_probabilities=probabilities,
        )  # fmt: skip


def condition_options(page: str) -> str:
    """The options of the support form's condition select."""
    start = page.index('<select name="condition"')
    return page[start : page.index("</select>", start)]


def lifecycle_open(client, study: Study):
    return client.post(
        reverse("admin:cases_study_lifecycle", args=[study.pk]), {"do": "open"}, follow=True
    )


def test_a_study_admin_sets_up_a_sequential_study_that_opens_once_its_cnn_predicted(
    as_study_admin, draft, cnn
):
    page = as_study_admin.get(change_url(draft)).content.decode()
    # the design, explained, and the CNN's columns beside each condition
    assert 'name="design"' in page and 'name="washout_days"' in page
    assert "Sequential per case" in page and "choose its CNN and top-k there" in page
    assert 'name="conditions-0-support_model"' in page
    assert 'name="conditions-0-support_top_k"' in page

    aided = {
        "code": "aided", "position": "2", "label": "With the CNN", "shows_dermoscopic": "on",
        "shows_clinical": "on", "shows_cnn": "on", "support_model": cnn.pk, "support_top_k": "3",
    }  # fmt: skip
    response = as_study_admin.post(
        change_url(draft), design_post(draft, design="sequential", rows=[aided]), follow=True
    )
    assert response.status_code == 200
    body = response.content.decode()
    assert "errornote" not in body, body[:3000]
    draft.refresh_from_db()
    assert draft.design == Study.Design.SEQUENTIAL
    condition = draft.conditions.get(code="aided")
    support = ConditionSupport.objects.get(condition=condition)
    assert (support.model, support.top_k) == (cnn, 3)
    # saved, and told at once what keeps it from opening: the CNN has not run yet
    assert "Saved as a draft. It cannot open yet:" in body
    assert "derm-cnn has predictions with probabilities for 0 of 3 cases" in body

    # the form shows the support beside its condition
    page = as_study_admin.get(change_url(draft)).content.decode()
    assert f'<option value="{cnn.pk}" selected>' in page

    refused = lifecycle_open(as_study_admin, draft).content.decode()
    assert "cannot open" in refused and "derm-cnn has predictions" in refused
    draft.refresh_from_db()
    assert draft.status == Study.Status.DRAFT

    predict_every_case(draft, cnn)
    opened = lifecycle_open(as_study_admin, draft).content.decode()
    assert "is open: readers can join and answer" in opened
    draft.refresh_from_db()
    assert draft.status == Study.Status.OPEN


def test_a_study_admin_sets_up_a_crossover_with_its_washout(as_study_admin, draft):
    level2 = {
        "code": "level2", "position": "2", "label": "With the clinical information",
        "shows_dermoscopic": "on", "shows_clinical": "on", "shows_metadata": "on",
    }  # fmt: skip
    ReadingCondition.objects.filter(study=draft).update(shows_clinical=False)
    Study.objects.filter(pk=draft.pk).update(show_clinical_image=False)
    draft.refresh_from_db()
    # without a washout: refused on the form, with the reason beside the field
    page = as_study_admin.post(
        change_url(draft), design_post(draft, design="crossover", rows=[level2])
    ).content.decode()
    assert "A crossover needs a washout of at least one day" in page
    assert not draft.conditions.filter(code="level2").exists()

    response = as_study_admin.post(
        change_url(draft),
        design_post(draft, design="crossover", washout=14, rows=[level2]),
        follow=True,
    )
    body = response.content.decode()
    assert "Saved as a draft" not in body  # nothing keeps it from opening
    draft.refresh_from_db()
    assert (draft.design, draft.washout_days) == (Study.Design.CROSSOVER, 14)
    assert list(draft.conditions.values_list("code", flat=True)) == ["unaided", "level2"]
    assert "is open" in lifecycle_open(as_study_admin, draft).content.decode()

    # once open, the design and the conditions are shown, not editable
    page = as_study_admin.get(change_url(draft)).content.decode()
    assert 'name="design"' not in page and 'name="washout_days"' not in page
    assert 'name="conditions-0-code"' not in page and "level2" in page


@pytest.mark.parametrize(
    "design, washout, row, message",
    [
        (
            "sequential",
            None,
            {"code": "aided", "position": "2", "shows_dermoscopic": "on", "support_top_k": "3"},
            "does not show the CNN&#x27;s support: tick",
        ),
        ("single", 7, None, "Only a crossover has a washout"),
    ],
)
def test_the_design_form_refuses_what_does_not_fit(
    as_study_admin, draft, cnn, design, washout, row, message
):
    rows = []
    if row is not None:
        rows = [{**row, "support_model": cnn.pk}]
    page = as_study_admin.post(
        change_url(draft), design_post(draft, design=design, washout=washout, rows=rows)
    ).content.decode()
    assert message in page
    assert not ConditionSupport.objects.exists()
    draft.refresh_from_db()
    assert (draft.design, draft.washout_days) == (Study.Design.SINGLE, None)


def test_emptying_a_conditions_cnn_removes_its_support_while_a_draft(as_study_admin, draft, cnn):
    aided = ReadingCondition.objects.create(study=draft, code="aided", position=2, shows_cnn=True)
    ConditionSupport.objects.create(condition=aided, model=cnn, top_k=2)
    Study.objects.filter(pk=draft.pk).update(design=Study.Design.SEQUENTIAL)
    draft.refresh_from_db()
    data = design_post(draft, design="sequential")
    assert data["conditions-1-code"] == "aided"
    data["conditions-1-support_top_k"] = "2"
    response = as_study_admin.post(change_url(draft), data, follow=True)
    assert "names no model" in response.content.decode()
    assert not ConditionSupport.objects.exists()


def test_the_support_list_offers_only_the_admins_own_draft_conditions(
    as_study_admin, draft, other_study_admin
):
    mine = ReadingCondition.objects.create(study=draft, code="aided", position=2, shows_cnn=True)
    elsewhere = build_study(1, slug="elsewhere", status=Study.Status.DRAFT)
    study_admin_add(user=other_study_admin, study=elsewhere)
    theirs = ReadingCondition.objects.create(
        study=elsewhere, code="aided", position=2, shows_cnn=True
    )
    page = as_study_admin.get(reverse("admin:inference_conditionsupport_add")).content.decode()
    assert f'<option value="{mine.pk}">' in condition_options(page)
    assert f'<option value="{theirs.pk}">' not in condition_options(page)


def test_the_cnn_support_is_fixed_once_the_study_opens(as_study_admin, draft, cnn):
    aided = ReadingCondition.objects.create(study=draft, code="aided", position=2, shows_cnn=True)
    support = ConditionSupport.objects.create(condition=aided, model=cnn, top_k=2)
    Study.objects.filter(pk=draft.pk).update(design=Study.Design.SEQUENTIAL)
    predict_every_case(draft, cnn)
    assert "is open" in lifecycle_open(as_study_admin, draft).content.decode()
    other = RegisteredModel.objects.create(
        name="other-cnn", arch="efficientnet_b4_aux", classes=CODES,
        preprocessing={"input_size": 64}, weights_source="random",
    )  # fmt: skip

    # the admin: view only, no deletion, no new support for its conditions
    change = reverse("admin:inference_conditionsupport_change", args=[support.pk])
    page = as_study_admin.get(change).content.decode()
    assert 'name="model"' not in page and "derm-cnn" in page
    assert as_study_admin.post(change, {"model": other.pk, "top_k": "5"}).status_code == 403
    delete = reverse("admin:inference_conditionsupport_delete", args=[support.pk])
    assert as_study_admin.post(delete, {"post": "yes"}).status_code == 403
    bulk = as_study_admin.post(
        reverse("admin:inference_conditionsupport_changelist"),
        {"action": "delete_selected", "_selected_action": [support.pk], "post": "yes"},
    )
    assert bulk.status_code == 403
    add = as_study_admin.get(reverse("admin:inference_conditionsupport_add")).content.decode()
    assert f'<option value="{aided.pk}">' not in condition_options(add)

    # the study's form shows the support beside its condition, read-only
    page = as_study_admin.get(change_url(draft)).content.decode()
    assert "support_model" not in page and "derm-cnn (untrained) (top 2)" in page
    data = study_change_post(draft)
    data.update({"conditions-1-support_model": other.pk, "conditions-1-support_top_k": "5"})
    as_study_admin.post(change_url(draft), data)

    # the model itself refuses, whatever path comes to it
    support.refresh_from_db()
    assert (support.model, support.top_k) == (cnn, 2)
    support.model = other
    with pytest.raises(ValidationError, match="is fixed: its study is open, not a draft"):
        support.full_clean()
    with pytest.raises(ValidationError, match="is fixed"):
        ConditionSupport(condition=aided, model=other, top_k=1).full_clean()
    with pytest.raises(ValidationError, match="is fixed"):
        ConditionSupport.objects.get(pk=support.pk).delete()
    assert ConditionSupport.objects.filter(pk=support.pk, model=cnn).exists()


def test_a_support_of_a_condition_that_hides_the_cnn_is_refused_by_the_model(draft, cnn):
    unaided = draft.conditions.get()
    with pytest.raises(ValidationError, match="does not show the CNN's support"):
        ConditionSupport(condition=unaided, model=cnn, top_k=3).full_clean()
