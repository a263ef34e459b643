"""The AI-assisted demo study: the demo's synthetic cases read unaided and then with the
demo CNN's support (sequential), its CNN run before its simulated readers answer, so
that every table of the AI-assisted analysis has data. Small builds (1 case a class):
each runs the untrained CNN on 8 cases here, on the CPU."""

from __future__ import annotations

import functools
from unittest import mock

import pytest
from django.core.management import call_command

from cases.models import Answer, Enrolment, Study
from cases.services import StudyError
from demo.images import DEMO_CHOICES
from demo.readers import simulate_aided_answers, simulate_readers
from demo.services import (
    AIDED_SLUG,
    DEMO_CNN,
    demo_aided_open,
    demo_build,
    demo_cases,
    demo_reset,
)

pytestmark = [pytest.mark.django_db, pytest.mark.slow]


def _simulated(study: Study):
    return Enrolment.objects.filter(study=study, reader__reader_profile__is_simulated=True)


def _answers(study: Study, condition: str) -> dict[tuple[int, str], str]:
    """{(reader number, case id): diagnosis code} of the simulated readers' answers in
    ``condition``."""
    rows = Answer.objects.filter(
        enrolment__in=_simulated(study), condition__code=condition
    ).values_list("enrolment__reader__username", "case__source_id", "diagnosis__code")
    return {(int(user[-3:]), case): code for user, case, code in rows}


def test_the_demo_builds_an_ai_assisted_sequential_study_on_the_same_cases(tmp_path):
    # Needs the lead's change to cases.services.study_design_refusals (#14): until then
    # study_open refuses a sequential study ("readers cannot be served this design yet").
    from inference.models import Prediction

    result = demo_build(seed=2, n_readers=3, per_class=1, data_dir=tmp_path, aided=True)
    assert result.aided_created and result.aided_study.status == Study.Status.DRAFT
    study = demo_aided_open(study=result.aided_study, n_readers=3)
    study.refresh_from_db()

    assert study.slug == AIDED_SLUG and study.status == Study.Status.OPEN
    assert study.design == Study.Design.SEQUENTIAL and not study.allow_answer_changes
    assert study.is_synthetic and "UNTRAINED" in study.description
    conditions = list(study.conditions.order_by("position"))
    assert [(c.code, c.position) for c in conditions] == [("unaided", 0), ("aided", 1)]
    unaided, aided = conditions
    assert unaided.shows_dermoscopic and unaided.shows_clinical
    assert not (unaided.shows_cnn or unaided.shows_gradcam or unaided.shows_metadata)
    assert (aided.label, aided.label_zh) == ("With the CNN's support", "有CNN辅助")
    assert aided.shows_cnn and aided.shows_gradcam
    assert (aided.cnn_support.model.name, aided.cnn_support.top_k) == (DEMO_CNN, 3)

    # The demo study's cases, with the same images.
    def cases(s: Study):
        return {
            c.source_id: (c.diagnosis.code, sorted(c.images.values_list("kind", "sha256")))
            for c in s.cases.select_related("diagnosis")
        }

    assert cases(study) == cases(result.study) and len(cases(study)) == 8

    # The CNN predicted every case, with probabilities and a Grad-CAM map.
    predictions = Prediction.objects.filter(case__study=study, model__name=DEMO_CNN)
    assert predictions.count() == 8
    assert all(p.status == "ok" and p.choice_id and p.choice_probabilities for p in predictions)
    assert all(p.gradcam for p in predictions)

    # Every simulated reader read every case unaided and then aided, and finished.
    simulated = _simulated(study)
    assert simulated.count() == 3 and all(e.finished_at for e in simulated)
    for enrolment in simulated:
        answers = enrolment.answers.order_by("answered_at", "pk")
        assert answers.count() == 16
        codes = list(answers.values_list("case__source_id", "condition__code"))
        assert codes[::2] == [(case, "unaided") for case, _ in codes[::2]]
        assert codes[1::2] == [(case, "aided") for case, _ in codes[::2]]
        assert all(a.confidence in range(1, 6) and a.seconds > 0 for a in answers)
        assert enrolment.consented_at <= answers.last().answered_at <= enrolment.finished_at

    # The unaided reads are the demo study's readers' answers (the same pool and seed),
    # and the aided ones are drawn from what the CNN said about each case.
    first = _answers(study, "unaided")
    assert first == _answers(result.study, "unaided")
    order = demo_cases(seed=2, per_class=1)
    truth = [c.code for c in order]
    readers = simulate_readers(truth, choices=DEMO_CHOICES, n_readers=3, seed=2)
    cnn = dict(predictions.values_list("case__source_id", "choice__code"))
    expected = simulate_aided_answers(
        readers,
        truth=truth,
        cnn_answers=[cnn[c.case_id] for c in order],
        choices=DEMO_CHOICES,
        seed=2,
    )
    second = _answers(study, "aided")
    assert second == {
        (r + 1, c.case_id): str(expected[r, k]) for r in range(3) for k, c in enumerate(order)
    }
    # The demo reader may take it too.
    assert study.enrolments.filter(reader__username="reader").exists()

    # Again: kept as it is, the CNN not run again.
    again = demo_build(seed=2, n_readers=3, per_class=1, data_dir=tmp_path, aided=True)
    assert not again.aided_created and again.aided_study.pk == study.pk
    with mock.patch("demo.services._predict_inline") as predict:
        assert demo_aided_open(study=again.aided_study, n_readers=3).pk == study.pk
    predict.assert_not_called()
    assert Answer.objects.filter(enrolment__study=study).count() == 3 * 16

    # The reset deletes it with its predictions and support, and leaves the demo study.
    assert demo_reset(slug=AIDED_SLUG) is True
    assert not Study.objects.filter(slug=AIDED_SLUG).exists()
    assert not Prediction.objects.filter(case__study__slug=AIDED_SLUG).exists()
    assert Answer.objects.filter(enrolment__study=result.study).count() == 3 * 8


def test_an_ai_assisted_study_that_cannot_open_stays_a_draft_with_its_predictions(tmp_path):
    from inference.models import ConditionSupport, Prediction

    study = demo_build(seed=3, n_readers=2, per_class=1, data_dir=tmp_path, aided=True).aided_study
    with (
        mock.patch("demo.services.study_open", side_effect=StudyError("refused")),
        pytest.raises(StudyError, match="refused"),
    ):
        demo_aided_open(study=study, n_readers=2)
    study.refresh_from_db()
    assert study.status == Study.Status.DRAFT
    assert not study.enrolments.exists()
    assert not ConditionSupport.objects.filter(condition__study=study).exists()
    # ... its CNN's predictions are kept: the next start opens it without running it again.
    assert Prediction.objects.filter(case__study=study).count() == 8


def test_make_demo_builds_the_ai_assisted_study_beside_a_kept_demo_study(
    settings, tmp_path, capsys
):
    # The command's path, on a small kept demo study (its 8 cases and seed are reused).
    # Needs the lead's change to study_design_refusals, as the first test.
    settings.DATA_DIR = tmp_path
    demo_build(seed=4, n_readers=2, per_class=1, data_dir=tmp_path)
    call_command("demo", "--no-serve", "--readers", "2")
    out = capsys.readouterr().out
    assert (
        "Built AI-assisted demo study 'demo-aided': the same 8 synthetic cases, read unaided "
        "and then with the support of the UNTRAINED demo CNN, 2 simulated readers."
    ) in out
    study = Study.objects.get(slug=AIDED_SLUG)
    assert study.status == Study.Status.OPEN
    assert sorted(study.cases.values_list("source_id", flat=True)) == sorted(
        c.case_id for c in demo_cases(seed=4, per_class=1)
    )
    per_condition = (
        Answer.objects.filter(enrolment__study=study)
        .values_list("condition__code", flat=True)
        .order_by()
    )
    assert sorted(set(per_condition)) == ["aided", "unaided"] and len(per_condition) == 32

    # --reset deletes both studies; --no-aided (as --no-models) leaves this one out. (The
    # rebuilt demo study small: 1 case a class.)
    small = functools.partial(demo_build, per_class=1)
    with mock.patch("demo.management.commands.demo.demo_build", small):
        call_command("demo", "--no-serve", "--readers", "2", "--reset", "--no-aided")
    out = capsys.readouterr().out
    assert "Deleted the previous demo study 'demo'." in out
    assert "Deleted the previous demo study 'demo-aided'." in out
    assert not Study.objects.filter(slug=AIDED_SLUG).exists()
    assert "AI-assisted" not in out
