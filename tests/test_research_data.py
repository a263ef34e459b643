"""Research data (answers and their history, consents, audit events, every stored
prediction) is never deleted or changed: not in the admin (superusers included), not
through the models, and on PostgreSQL not even by raw SQL. The demo's reset of its
synthetic study is the one erasure let through; a draft study without data can still be
deleted."""

from __future__ import annotations

import re

import pytest
from django.contrib import admin
from django.contrib.auth import get_user_model
from django.db import DatabaseError, connection, transaction
from django.db.models import ProtectedError
from django.urls import reverse
from django.utils import timezone

from audit.models import AuditEvent
from cases.models import (
    Answer,
    AnswerChange,
    Case,
    Diagnosis,
    Enrolment,
    ResearchDataError,
    Study,
    StudyChoice,
    synthetic_study_erasure,
)
from cases.services import answer_submit, consent_give, enrolment_create
from demo.services import demo_reset
from inference.models import InferenceRun, Prediction, RegisteredModel
from tests.factories import build_study, make_study, ready_enrolment

pytestmark = [pytest.mark.django_db, pytest.mark.postgres]


def _cnn(name: str) -> RegisteredModel:
    return RegisteredModel.objects.create(
        name=name,
        arch="efficientnet_b4_aux",
        classes=["MN", "SK", "BCC"],
        preprocessing={"input_size": 64},
        weights_source="random",
    )


def _world(reader, other_reader, **options) -> dict:
    """An open study with every kind of research data: a consented reader's answer, its
    change (history), a reader who enrolled without consenting, a finished CNN run with
    its predictions, and the audit events all of that wrote."""
    study = build_study(n_cases=3, allow_answer_changes=True, **options)
    enrolment = ready_enrolment(study, reader)
    first = Case.objects.get(pk=enrolment.case_order[0])
    answer_submit(enrolment=enrolment, case_public_id=first.public_id, diagnosis_code="MN")
    answer_submit(enrolment=enrolment, case_public_id=first.public_id, diagnosis_code="SK")
    unconsented = enrolment_create(study=study, reader=other_reader, seed=2)
    model = _cnn(f"cnn-{study.slug}")
    run = InferenceRun.objects.create(
        model=model, study=study, status="done", total=3, done=3, finished_at=timezone.now()
    )
    mn = Diagnosis.objects.get(code="MN")
    for case in study.cases.all():
        Prediction.objects.create(
            model=model, case=case, run=run, choice=mn, probabilities={"MN": 1.0}
        )
    return {
        "study": study,
        "enrolment": enrolment,
        "unconsented": unconsented,
        "answer": Answer.objects.get(enrolment=enrolment),
        "change": AnswerChange.objects.get(answer__enrolment=enrolment),
        "model": model,
        "run": run,
        "prediction": Prediction.objects.filter(run=run).first(),
    }


@pytest.fixture
def world(reader, other_reader) -> dict:
    return _world(reader, other_reader)


def research_snapshot() -> dict:
    """Every research row as stored, and the primary keys of the rows that carry it."""
    enrolment_fields = ["pk", "study", "reader", "reader_code", "consent_version", "consented_at"]
    return {
        "answers": list(Answer.objects.order_by("pk").values()),
        "history": list(AnswerChange.objects.order_by("pk").values()),
        "consents": list(Enrolment.objects.order_by("pk").values(*enrolment_fields)),
        "predictions": list(Prediction.objects.order_by("pk").values()),
        "runs": list(InferenceRun.objects.order_by("pk").values("pk", "status", "model", "study")),
        "studies": list(Study.objects.order_by("pk").values_list("pk", flat=True)),
        "cases": list(Case.objects.order_by("pk").values_list("pk", flat=True)),
        "users": list(get_user_model().objects.order_by("pk").values_list("pk", flat=True)),
        "models": list(RegisteredModel.objects.order_by("pk").values_list("pk", flat=True)),
    }


def audit_snapshot() -> list[dict]:
    # Actions may add events (an export is audited); none that was there may change.
    return list(AuditEvent.objects.order_by("pk").values())


def assert_unchanged(before: dict, events: list[dict]) -> None:
    assert research_snapshot() == before
    still = AuditEvent.objects.filter(pk__in=[e["id"] for e in events]).order_by("pk")
    assert list(still.values()) == events


def offered_actions(page: str) -> list[str]:
    select = re.search(r'<select name="action".*?</select>', page, re.S)
    if select is None:
        return []
    return [v for v in re.findall(r'<option value="([^"]*)"', select.group(0)) if v]


def admin_url(model, view: str, *args) -> str:
    return reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_{view}", args=args)


# The models whose rows are research data (Enrolment: its consent), and the parents whose
# deletion would take research data with it.
RESEARCH_MODELS = [Answer, AnswerChange, Enrolment, AuditEvent, Prediction]
PARENTS = {
    Study: lambda w: w["study"],
    Case: lambda w: w["answer"].case,
    Enrolment: lambda w: w["enrolment"],
    get_user_model(): lambda w: w["enrolment"].reader,
    RegisteredModel: lambda w: w["model"],
    InferenceRun: lambda w: w["run"],
    Diagnosis: lambda w: w["answer"].diagnosis,
}


def test_every_research_model_is_in_the_admin():
    assert all(model in admin.site._registry for model in [*RESEARCH_MODELS, *PARENTS])


def test_superuser_runs_every_changelist_action_and_nothing_changes(admin_client, world):
    """Every action the superuser is offered on the lists of research data, confirmed
    where it asks, and Django's delete_selected posted to every list whether offered or
    not: no row of research data is deleted or changed."""
    before, events = research_snapshot(), audit_snapshot()
    for model in RESEARCH_MODELS:
        url = admin_url(model, "changelist")
        page = admin_client.get(url)
        assert page.status_code == 200, url
        offered = offered_actions(page.content.decode())
        if model is not Enrolment:  # an unconsented enrolment can still be deleted
            assert "delete_selected" not in offered, url
        pks = [str(pk) for pk in model._default_manager.values_list("pk", flat=True)]
        assert pks, model
        for action in {*offered, "delete_selected"}:
            for confirm in ({}, {"post": "yes"}):
                data = {"action": action, "_selected_action": pks, "index": 0, **confirm}
                response = admin_client.post(url, data)
                assert response.status_code in (200, 302), (url, action)
                assert_unchanged(before, events)


def test_no_research_row_has_a_save_or_delete_button(admin_client, world):
    rows = [
        world["answer"],
        world["change"],
        world["enrolment"],
        world["prediction"],
        *AuditEvent.objects.all(),
    ]
    before, events = research_snapshot(), audit_snapshot()
    for row in rows:
        model = type(row)
        url = admin_url(model, "change", row.pk)
        page = admin_client.get(url)
        assert page.status_code == 200, url
        body = page.content.decode()
        for button in ('name="_save"', 'name="_continue"', 'name="_addanother"', "deletelink"):
            assert button not in body, (url, button)
        assert '-DELETE"' not in body and "add-row" not in body, url  # inlines, too
        assert admin_client.post(url, {}).status_code == 403, url
        delete = admin_url(model, "delete", row.pk)
        assert admin_client.get(delete).status_code == 403, delete
        assert admin_client.post(delete, {"post": "yes"}).status_code == 403, delete
        assert admin_client.get(admin_url(model, "add")).status_code == 403, model
    assert_unchanged(before, events)


@pytest.mark.parametrize("model", list(PARENTS), ids=lambda m: m._meta.label)
def test_a_parent_of_research_data_cannot_be_deleted(admin_client, world, model):
    """Django's "Cannot delete" page (its own page and the bulk action), never a 500."""
    before, events = research_snapshot(), audit_snapshot()
    obj = PARENTS[model](world)
    if model is not Enrolment:  # a consented enrolment offers no delete page at all
        response = admin_client.post(admin_url(model, "delete", obj.pk), {"post": "yes"})
        assert response.status_code == 200 and "Cannot delete" in response.content.decode()
    response = admin_client.post(
        admin_url(model, "changelist"),
        {"action": "delete_selected", "_selected_action": [obj.pk], "post": "yes"},
    )
    assert response.status_code == 200 and "Cannot delete" in response.content.decode()
    assert_unchanged(before, events)


def test_a_draft_study_without_answers_can_be_deleted(admin_client, world):
    draft = make_study(slug="draft", choices=("MN", "SK"))
    assert draft.status == Study.Status.DRAFT
    page = admin_client.get(admin_url(Study, "delete", draft.pk)).content.decode()
    assert "Cannot delete" not in page
    response = admin_client.post(admin_url(Study, "delete", draft.pk), {"post": "yes"})
    assert response.status_code == 302
    assert not Study.objects.filter(pk=draft.pk).exists()
    assert not StudyChoice.objects.filter(study_id=draft.pk).exists()
    # ...and by the bulk action, too.
    again = make_study(slug="draft-2", choices=("MN", "SK"))
    response = admin_client.post(
        admin_url(Study, "changelist"),
        {"action": "delete_selected", "_selected_action": [again.pk], "post": "yes"},
    )
    assert response.status_code == 302 and not Study.objects.filter(pk=again.pk).exists()
    assert Study.objects.filter(pk=world["study"].pk).exists()


def test_an_enrolment_without_consent_or_answers_can_be_deleted(admin_client, world):
    unconsented = world["unconsented"]
    response = admin_client.post(admin_url(Enrolment, "delete", unconsented.pk), {"post": "yes"})
    assert response.status_code == 302
    assert not Enrolment.objects.filter(pk=unconsented.pk).exists()


def test_is_synthetic_is_read_only_once_a_study_has_readers(admin_client, world):
    page = admin_client.get(admin_url(Study, "change", world["study"].pk)).content.decode()
    assert 'name="is_synthetic"' not in page
    draft = make_study(slug="draft", choices=("MN", "SK"))
    page = admin_client.get(admin_url(Study, "change", draft.pk)).content.decode()
    assert 'name="is_synthetic"' in page


# --- the models refuse, on any database ---------------------------------------------------


def test_answers_and_their_history_are_never_deleted(world):
    with pytest.raises(ResearchDataError, match="never deleted"):
        world["answer"].delete()
    with pytest.raises(ResearchDataError, match="never deleted"):
        Answer.objects.all().delete()
    with pytest.raises(ResearchDataError, match="append-only"):
        AnswerChange.objects.all().delete()
    with pytest.raises(ResearchDataError, match="append-only"):
        world["change"].delete()
    with pytest.raises(ResearchDataError, match="append-only"):
        AnswerChange.objects.update(new_confidence=5)
    change = world["change"]
    change.new_confidence = 5
    with pytest.raises(ResearchDataError, match="append-only"):
        change.save()


def test_a_consent_is_never_deleted(world):
    before = research_snapshot()
    with pytest.raises(ResearchDataError, match="consent"):
        Enrolment.objects.filter(pk=world["enrolment"].pk).delete()
    with pytest.raises(ResearchDataError, match="consent"):
        Enrolment.objects.get(pk=world["enrolment"].pk).delete()  # no answer protects it
    assert research_snapshot() == before


def _prediction_attempts(prediction):
    return (
        lambda: Prediction.objects.all().delete(),
        lambda: Prediction.objects.update(seconds=9),
        lambda: Prediction.objects.bulk_update([prediction], ["seconds"]),
        lambda: prediction.delete(),
        lambda: prediction.save(),
    )


def test_the_predictions_of_a_finished_run_are_never_changed_or_deleted(world):
    prediction = world["prediction"]
    for attempt in _prediction_attempts(prediction):
        with pytest.raises(ResearchDataError, match="never changed or deleted"):
            attempt()
    # A run with predictions cannot be deleted either (it would rewrite their run).
    with pytest.raises(ProtectedError):
        world["run"].delete()
    assert Prediction.objects.filter(run=world["run"]).count() == 3


@pytest.mark.parametrize("status", ["queued", "running"])
def test_a_resumed_failed_run_does_not_make_its_stored_predictions_editable(world, status):
    """A failed run is resumed by going back to queued, then running: what it stored
    before it failed stays as it was."""
    model = _cnn("resumed-cnn")
    run = InferenceRun.objects.create(
        model=model, study=world["study"], status="failed", total=3, done=1
    )
    case = Case.objects.filter(study=world["study"]).order_by("pk").first()
    stored = Prediction.objects.create(model=model, case=case, run=run, status="failed", error="x")
    InferenceRun.objects.filter(pk=run.pk).update(status=status)
    for attempt in _prediction_attempts(stored):
        with pytest.raises(ResearchDataError, match="never changed or deleted"):
            attempt()
    assert Prediction.objects.get(pk=stored.pk).error == "x"


def test_only_a_synthetic_study_can_be_erased(world):
    with (
        pytest.raises(ResearchDataError, match="not synthetic"),
        synthetic_study_erasure(study=world["study"]),
    ):
        pass
    assert demo_reset(slug=world["study"].slug) is False
    assert Answer.objects.filter(enrolment__study=world["study"]).exists()


def test_the_demo_reset_erases_a_synthetic_study_and_nothing_else(reader, other_reader, world):
    synthetic = _world(reader, other_reader, slug="synthetic", is_synthetic=True)["study"]
    assert demo_reset(slug="synthetic") is True
    assert not Study.objects.filter(pk=synthetic.pk).exists()
    assert not Answer.objects.filter(enrolment__study_id=synthetic.pk).exists()
    assert Answer.objects.filter(enrolment__study=world["study"]).count() == 1
    assert Prediction.objects.filter(run=world["run"]).count() == 3


# --- PostgreSQL: the database itself refuses ------------------------------------------------


def refused(sql: str, params: list) -> None:
    """Run one raw statement and assert that the database refuses it as research data."""
    with (
        pytest.raises(DatabaseError, match="research data"),
        transaction.atomic(),
        connection.cursor() as cursor,
    ):
        cursor.execute(sql, params)


def execute(sql: str, params: list) -> int:
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.rowcount


@pytest.mark.postgres_only
def test_the_database_refuses_to_delete_or_rewrite_answers_and_their_history(world):
    answer, change = world["answer"], world["change"]
    before = research_snapshot()
    mn = Diagnosis.objects.get(code="MN").pk
    for sql, params in [
        ("DELETE FROM cases_answer WHERE id = %s", [answer.pk]),
        ("UPDATE cases_answer SET diagnosis_id = %s WHERE id = %s", [mn, answer.pk]),
        ("UPDATE cases_answer SET changed_at = now() WHERE id = %s", [answer.pk]),
        ("UPDATE cases_answer SET seconds = 0 WHERE id = %s", [answer.pk]),
        ("UPDATE cases_answer SET answered_at = now() WHERE id = %s", [answer.pk]),
        ("DELETE FROM cases_answerchange WHERE id = %s", [change.pk]),
        ("UPDATE cases_answerchange SET new_confidence = 5 WHERE id = %s", [change.pk]),
    ]:
        refused(sql, params)
    assert research_snapshot() == before


@pytest.mark.postgres_only
def test_the_database_lets_an_answer_change_only_with_its_history(world):
    """answer_submit's change path writes the history first: the database lets it through
    (the change back from SK to MN, after the first one in the world)."""
    enrolment, answer = world["enrolment"], world["answer"]
    result = answer_submit(
        enrolment=enrolment, case_public_id=answer.case.public_id, diagnosis_code="MN"
    )
    assert result.changed and AnswerChange.objects.filter(answer=answer).count() == 2
    answer.refresh_from_db()
    assert answer.diagnosis.code == "MN"
    # A history row that records another change does not let a change through.
    sk, bcc = (Diagnosis.objects.get(code=c).pk for c in ("SK", "BCC"))
    with transaction.atomic():
        AnswerChange.objects.create(answer=answer, previous_diagnosis_id=sk, new_diagnosis_id=bcc)
    sql = "UPDATE cases_answer SET diagnosis_id = %s, changed_at = now() WHERE id = %s"
    refused(sql, [bcc, answer.pk])


@pytest.mark.postgres_only
def test_the_database_refuses_to_delete_withdraw_or_backdate_a_consent(world):
    enrolment = world["enrolment"]
    before = research_snapshot()
    for sql, params in [
        ("DELETE FROM cases_enrolment WHERE id = %s", [enrolment.pk]),
        ("UPDATE cases_enrolment SET consented_at = NULL WHERE id = %s", [enrolment.pk]),
        ("UPDATE cases_enrolment SET consent_version = 'v0' WHERE id = %s", [enrolment.pk]),
        (
            "UPDATE cases_enrolment SET consented_at = consented_at - interval '1 day' "
            "WHERE id = %s",
            [enrolment.pk],
        ),
        ("UPDATE cases_enrolment SET reader_code = 'Rforged' WHERE id = %s", [enrolment.pk]),
        (
            "UPDATE cases_enrolment SET reader_id = %s WHERE id = %s",
            [world["unconsented"].reader_id, enrolment.pk],
        ),
    ]:
        refused(sql, params)
    assert research_snapshot() == before
    # What the platform does is let through: progress, a later consent (a new version),
    # and deleting an enrolment that never consented.
    assert execute("UPDATE cases_enrolment SET served_at = now() WHERE id = %s", [enrolment.pk])
    Study.objects.filter(pk=enrolment.study_id).update(consent_version="v2")
    assert consent_give(enrolment=enrolment).consent_version == "v2"
    unconsented = world["unconsented"].pk
    assert execute("DELETE FROM cases_enrolment WHERE id = %s", [unconsented]) == 1


@pytest.mark.postgres_only
def test_the_database_refuses_to_change_or_delete_the_predictions_of_a_finished_run(world):
    prediction, run = world["prediction"], world["run"]
    before = research_snapshot()
    for sql, params in [
        ("DELETE FROM inference_prediction WHERE id = %s", [prediction.pk]),
        ("UPDATE inference_prediction SET seconds = 9 WHERE id = %s", [prediction.pk]),
        ("UPDATE inference_prediction SET run_id = NULL WHERE id = %s", [prediction.pk]),
        ("UPDATE inference_inferencerun SET status = 'running' WHERE id = %s", [run.pk]),
        ("UPDATE inference_inferencerun SET study_id = %s WHERE id = %s", [0, run.pk]),
    ]:
        refused(sql, params)
    assert research_snapshot() == before
    # A run that has not finished moves on as the worker runs it, and a failed run
    # may be resumed, but what either stored stays as it is.
    queued = InferenceRun.objects.create(model=world["model"], study=world["study"])
    sql = "UPDATE inference_inferencerun SET status = 'running' WHERE id = %s"
    assert execute(sql, [queued.pk]) == 1
    running_row = Prediction.objects.create(
        model=_cnn("resumed-cnn"),
        case=prediction.case,
        run=queued,
        status="failed",
        error="x",
    )
    refused("UPDATE inference_prediction SET error = 'y' WHERE id = %s", [running_row.pk])
    refused("DELETE FROM inference_prediction WHERE id = %s", [running_row.pk])


@pytest.mark.postgres_only
def test_the_database_refuses_to_relabel_a_study_with_readers_as_synthetic(world):
    refused("UPDATE cases_study SET is_synthetic = true WHERE id = %s", [world["study"].pk])
    draft = make_study(slug="draft", choices=("MN", "SK"))
    assert execute("UPDATE cases_study SET is_synthetic = true WHERE id = %s", [draft.pk]) == 1


@pytest.mark.postgres_only
def test_the_erasure_setting_lets_through_only_a_synthetic_study(world):
    """Setting the flag by hand for a real study does not open it."""
    answer = world["answer"]
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT set_config('readerstudy.erase_synthetic_study', %s, true)",
                [str(world["study"].pk)],
            )
        refused("DELETE FROM cases_answer WHERE id = %s", [answer.pk])
    assert Answer.objects.filter(pk=answer.pk).exists()
