"""Reading conditions, the data model under every answer (#14, item 1 in part): every
study has at least its default condition, every answer belongs to one, the database
keeps one answer per reader, case and condition, the existing answers migrate into
their study's default condition, the admin fixes the conditions once a study opens,
and the answers table names each answer's condition."""

from __future__ import annotations

import pandas as pd
import pytest
from django.db import IntegrityError, connection, transaction
from django.db.migrations.executor import MigrationExecutor
from django.urls import reverse

from analysis.stats.inputs import InputError, load_answers
from cases.models import Answer, Case, Enrolment, ReadingCondition, Study
from cases.selectors import answers_frame
from cases.services import answer_submit, study_create
from tests.factories import CaseFactory, build_study, make_study, ready_enrolment

pytestmark = pytest.mark.django_db


def test_a_new_study_has_its_default_condition_showing_what_it_shows():
    study = make_study(slug="plain", show_clinical_image=False)
    (condition,) = study.conditions.all()
    assert (condition.code, condition.position) == ("unaided", 1)
    assert condition.shows_dermoscopic and not condition.shows_clinical
    assert not condition.shows_cnn and condition.label_for("zh-hans") == "独立阅片"


def test_a_study_created_with_conditions_has_those_only():
    study = study_create(
        slug="two",
        title="Two",
        choices=["MN", "SK"],
        conditions=[
            {"code": "unaided", "position": 1},
            {"code": "aided", "position": 2, "shows_cnn": True, "shows_gradcam": True},
        ],
    )
    assert list(study.conditions.values_list("code", "shows_cnn")) == [
        ("unaided", False),
        ("aided", True),
    ]


def test_the_admin_add_form_gives_a_new_study_its_default_condition(admin_client):
    response = admin_client.post(
        reverse("admin:cases_study_add"),
        {
            "title": "From the form",
            "slug": "from-form",
            "status": "draft",
            "design": "single",
            "consent_version": "v1",
            "study_choices-TOTAL_FORMS": "0",
            "study_choices-INITIAL_FORMS": "0",
        },
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    study = Study.objects.get(slug="from-form")
    assert list(study.conditions.values_list("code", flat=True)) == ["unaided"]


@pytest.mark.parametrize(
    "fields",
    [
        {"shows_dermoscopic": False, "shows_clinical": False},  # no image at all
        {"shows_gradcam": True},  # a Grad-CAM without the CNN's support
    ],
)
def test_the_database_refuses_a_condition_that_cannot_be_shown(fields):
    study = make_study(slug="bad")
    with pytest.raises(IntegrityError), transaction.atomic():
        ReadingCondition.objects.create(study=study, code="x", position=2, **fields)


def test_an_answer_belongs_to_its_study_s_condition_once_per_case(reader):
    study = build_study(2)
    enrolment = ready_enrolment(study, reader)
    first = Case.objects.get(pk=enrolment.case_order[0])
    answer = answer_submit(
        enrolment=enrolment, case_public_id=first.public_id, diagnosis_code="MN"
    ).answer
    default = study.conditions.get()
    assert answer.condition == default
    with pytest.raises(IntegrityError), transaction.atomic():
        Answer.objects.create(
            enrolment=enrolment,
            case=first,
            condition=default,
            diagnosis=answer.diagnosis,
            seconds=1,
        )
    aided = ReadingCondition.objects.create(study=study, code="aided", position=2, shows_cnn=True)
    Answer.objects.create(
        enrolment=enrolment, case=first, condition=aided, diagnosis=answer.diagnosis, seconds=1
    )  # the same case in another condition
    assert Answer.objects.filter(enrolment=enrolment, case=first).count() == 2


def test_the_answers_table_names_the_condition_and_the_analysis_takes_them_in_order(reader):
    study = build_study(2)
    enrolment = ready_enrolment(study, reader)
    first = Case.objects.get(pk=enrolment.case_order[0])
    answer_submit(enrolment=enrolment, case_public_id=first.public_id, diagnosis_code="MN")
    frame = answers_frame(study=study)
    assert list(frame["condition"]) == ["unaided"]
    load_answers(frame, choices=["MN", "SK", "BCC"])  # one condition: analysed as before
    two = frame.assign(condition="aided")
    both = type(frame)(list(frame.itertuples(index=False)) + list(two.itertuples(index=False)))
    both.columns = frame.columns
    assert load_answers(both, choices=["MN", "SK", "BCC"]).attrs["conditions"] == [
        "unaided",
        "aided",
    ]
    # one reader, one case, one condition: a duplicate row is refused
    with pytest.raises(InputError, match="more than one row per \\(reader, case, condition\\)"):
        load_answers(pd.concat([both, both]), choices=["MN", "SK", "BCC"])


def test_the_conditions_of_an_open_study_are_fixed_in_the_admin(admin_client):
    study = build_study(1)
    page = admin_client.get(reverse("admin:cases_study_change", args=[study.pk])).content.decode()
    assert "conditions-0-code" not in page  # shown, not editable
    assert "Unaided" in page
    draft = make_study(slug="draft")
    page = admin_client.get(reverse("admin:cases_study_change", args=[draft.pk])).content.decode()
    assert 'name="conditions-0-code"' in page


@pytest.mark.postgres  # and on PostgreSQL, where the answers' guard must let it through
@pytest.mark.django_db(transaction=True)
def test_the_migration_puts_every_existing_answer_in_its_study_s_default_condition():
    """From the schema before conditions (cases 0008): a study with an answer, then 0009
    to 0011 give the study its "unaided" condition (showing the clinical photo as the
    study did) and the answer that condition; 0012 gives each study its own crossover arm
    seed and leaves the enrolment without an arm (a one-condition study has none)."""
    executor = MigrationExecutor(connection)
    before = [("cases", "0008_study_closes_at")]
    executor.migrate(before)
    old = executor.loader.project_state(before).apps
    mn = old.get_model("cases", "Diagnosis").objects.get(code="MN")
    user = old.get_model("auth", "User").objects.create(username="old-reader")
    study = old.get_model("cases", "Study").objects.create(
        slug="old", title="Old", show_clinical_image=False
    )
    other = old.get_model("cases", "Study").objects.create(slug="old-2", title="Old 2")
    case = old.get_model("cases", "Case").objects.create(
        study=study, source_id="c1", position=1, diagnosis=mn
    )
    enrolment = old.get_model("cases", "Enrolment").objects.create(
        study=study, reader=user, order_seed=1, case_order=[case.pk]
    )
    old.get_model("cases", "Answer").objects.create(
        enrolment=enrolment, case=case, diagnosis=mn, seconds=3
    )
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(executor.loader.graph.leaf_nodes())
    answer = Answer.objects.get(enrolment_id=enrolment.pk)
    assert answer.condition.code == "unaided" and answer.condition.study_id == study.pk
    assert not answer.condition.shows_clinical
    seeds = set(
        Study.objects.filter(pk__in=[study.pk, other.pk]).values_list("arm_seed", flat=True)
    )
    assert len(seeds) == 2
    migrated = Enrolment.objects.get(pk=enrolment.pk)
    assert (migrated.arm, migrated.second_case_order, migrated.served_condition) == (None, [], None)


@pytest.mark.parametrize(
    "design, conditions, washout, reasons",
    [
        ("single", [{}], None, []),
        (
            "single",
            [{}, {"code": "b"}],
            None,
            ["its design is one condition, but it has 2"],
        ),
        (
            "sequential",
            [{"shows_cnn": True}, {"code": "aided"}],
            None,
            ["a sequential design needs two conditions"],
        ),
        ("sequential", [{}, {"code": "aided", "shows_cnn": True}], None, []),
        (
            "sequential",
            [{}, {"code": "aided", "shows_cnn": True}, {"code": "c"}],
            None,
            ["a sequential design needs two conditions"],
        ),
        (
            "crossover",
            [{}, {"code": "b"}],
            None,
            ["a crossover needs two conditions (read as A then B or B then A) and a washout"],
        ),
        ("crossover", [{}, {"code": "b"}], 14, []),
        (
            "crossover",
            [{}, {"code": "b"}, {"code": "c"}],
            14,
            ["a crossover needs two conditions"],
        ),
        (
            "crossover",
            [{}, {"code": "b", "shows_dermoscopic": False}],
            14,
            ["condition 'b' shows only the clinical photo, but 2 case(s) have none"],
        ),
    ],
)
def test_a_study_opens_only_with_conditions_that_fit_its_design_and_can_be_served(
    design, conditions, washout, reasons
):
    from cases.services import study_design_refusals, study_open_refusals

    rows = [{"code": "unaided", "position": n, **fields} for n, fields in enumerate(conditions, 1)]
    study = study_create(
        slug="d", title="D", choices=["MN", "SK"], conditions=rows, design=design,
        washout_days=washout,
    )  # fmt: skip
    for position in (1, 2):  # two cases with their dermoscopic image only
        CaseFactory(study=study, position=position).images.filter(kind="clinical").delete()
    found = study_design_refusals(study=study)
    assert len(found) == len(reasons)
    for reason, expected in zip(found, reasons, strict=True):
        assert reason.startswith(expected)
    assert set(found) <= set(study_open_refusals(study=study))


def test_a_condition_showing_the_cnn_opens_only_once_its_model_predicted_every_case():
    """inference.selectors.support_refusals, run with the opening's checks: no model
    named, then a model with predictions for some cases only, then for all."""
    from cases.services import study_open_refusals
    from inference.models import ConditionSupport, InferenceRun, Prediction, RegisteredModel

    study = build_study(
        3, slug="supported", status=Study.Status.DRAFT, design=Study.Design.SEQUENTIAL
    )
    aided = ReadingCondition.objects.create(study=study, code="aided", position=2, shows_cnn=True)
    reasons = study_open_refusals(study=study)
    assert any("'aided' shows the CNN's support but names no model" in r for r in reasons)
    model = RegisteredModel.objects.create(
        name="sup-cnn", arch="efficientnet_b4_aux", classes=["MN", "SK", "BCC"],
        preprocessing={"input_size": 64}, weights_source="random",
    )  # fmt: skip
    ConditionSupport.objects.create(condition=aided, model=model, top_k=2)
    run = InferenceRun.objects.create(model=model, study=study, status="running", total=3)
    cases = list(study.cases.order_by("position"))
    for case in cases[:2]:
        Prediction.objects.create(
            model=model, case=case, run=run, choice=case.diagnosis,
            probabilities={"MN": 0.5, "SK": 0.3, "BCC": 0.2},
            choice_probabilities={"MN": 0.5, "SK": 0.3, "BCC": 0.2},
        )  # fmt: skip
    reasons = study_open_refusals(study=study)
    assert any("sup-cnn has predictions with probabilities for 2 of 3 cases" in r for r in reasons)
    Prediction.objects.create(
        model=model, case=cases[2], run=run, choice=cases[2].diagnosis,
        probabilities={"MN": 0.5, "SK": 0.3, "BCC": 0.2},
        choice_probabilities={"MN": 0.5, "SK": 0.3, "BCC": 0.2},
    )  # fmt: skip
    reasons = study_open_refusals(study=study)
    assert not any("sup-cnn" in r or "names no model" in r for r in reasons)
    # a condition that also shows the Grad-CAM needs one for every case
    ReadingCondition.objects.filter(pk=aided.pk).update(shows_gradcam=True)
    reasons = study_open_refusals(study=study)
    assert any("shows the Grad-CAM, but sup-cnn has one for 0 of 3 cases" in r for r in reasons)
    ReadingCondition.objects.filter(pk=aided.pk).update(shows_gradcam=False)
    study.allow_answer_changes = True
    study.save()
    assert any("takes no answer changes" in r for r in study_open_refusals(study=study))
    study.allow_answer_changes = False
    study.save()
    assert study_open_refusals(study=study) == []


def test_a_one_condition_study_shows_what_its_condition_says_or_does_not_open():
    from cases.services import study_design_refusals

    study = build_study(1, slug="clin", status=Study.Status.DRAFT)
    assert study_design_refusals(study=study) == []
    # a draft's setting carries over to its condition when the study is saved
    study.show_clinical_image = False
    study.save()
    assert study.conditions.get().shows_clinical is False
    # a condition changed apart from it; the metadata is the condition's to show
    ReadingCondition.objects.filter(study=study).update(shows_clinical=True, shows_metadata=True)
    reasons = study_design_refusals(study=study)
    assert len(reasons) == 1 and "shows the clinical photo but the study's" in reasons[0]
