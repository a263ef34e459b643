"""``manage.py analyze`` on an answers file of several reading conditions."""

from __future__ import annotations

import io
import json

import pandas as pd
import pytest
from django.core.management import call_command

from analysis.report.files import CONDITION_TABLES, TABLES, is_report_file_name
from analysis.stats.conditions import TABLE_COLUMNS
from tests.analysis.factories import condition_tables


def analyze(folder, answers, predictions=None, *extra) -> str:
    answers.to_csv(folder / "answers.csv", index=False)
    args = ["--answers", str(folder / "answers.csv")]
    if predictions is not None:
        predictions.to_csv(folder / "predictions.csv", index=False)
        args += ["--predictions", str(folder / "predictions.csv")]
    out = io.StringIO()
    call_command(
        "analyze", *args, "--out", str(folder / "out"), "--bootstrap", "40", "--no-progress",
        *extra, stdout=out, stderr=io.StringIO(),
    )  # fmt: skip
    return out.getvalue()


@pytest.fixture(scope="module")
def sequential_report(tmp_path_factory):
    folder = tmp_path_factory.mktemp("sequential")
    answers, predictions = condition_tables(n_readers=5, n_cases=16, seed=1)
    analyze(folder, answers, predictions, "--power-effect", "0.1")
    return folder / "out"


def test_analyze_writes_every_table_of_the_conditions(sequential_report):
    out = sequential_report
    names = {p.name for p in out.iterdir()}
    assert {f"{t}.csv" for t in (*TABLES, *CONDITION_TABLES)} <= names
    assert all(is_report_file_name(n) for n in names)  # the download view serves each
    for name, columns in TABLE_COLUMNS.items():
        frame = pd.read_csv(out / f"{name}.csv")
        assert list(frame.columns) == columns, name
        assert len(frame), name
    assert pd.read_csv(out / "per_class.csv").columns[0] == "condition"
    sheets = pd.read_excel(out / "report.xlsx", sheet_name=None)
    assert {*TABLES, *CONDITION_TABLES} <= set(sheets)
    power = pd.read_csv(out / "power.csv")
    assert set(power.loc[power["effect"] == "stated", "effect_size"]) == {0.1}
    for stem in ("confusion_unaided_readers", "confusion_aided_readers", "confusion_cnn",
                 "roc_unaided_cnn", "roc_aided_cnn", "forest_aided", "gain_unaided_aided"):  # fmt: skip
        assert {f"{stem}.png", f"{stem}.svg"} <= names, stem


def test_report_page_has_a_section_for_each_comparison(sequential_report):
    html = (sequential_report / "report.html").read_text()
    for key in ("conditions", "condition_pairs", "unaided-headline", "aided-per_class",
                "condition_or", "condition_bootstrap", "condition_mcnemar", "ai_vs_readers",
                "switching", "cnn_following", "gain_regression", "power_cases", "power_grid",
                "methods-conditions", "fig-gain_unaided_aided"):  # fmt: skip
        assert f'id="{key}"' in html, key
    assert "sequential design" in html and "Hillis, Obuchowski" in html
    assert "McNemar" in html and "paired bootstrap" in html
    summary = json.loads((sequential_report / "summary.json").read_text())
    assert summary["conditions"]["design"] == "sequential"
    assert summary["n_readers"] == 5 and summary["facts"]["n_readers"] == 5
    assert [r["condition_b"] for r in summary["conditions"]["top1_accuracy_rrrc"]] == ["aided"]


def test_crossover_report_names_the_design_and_who_was_left_out(tmp_path):
    answers, _ = condition_tables(design="crossover", n_readers=6, n_cases=12, unfinished=1)
    analyze(tmp_path, answers, None, "--readers", "all")
    html = (tmp_path / "out" / "report.html").read_text()
    assert "crossover design" in html and "washout" in html
    assert "6 of 138 reads had no read in both conditions" in html
    conditions = pd.read_csv(tmp_path / "out" / "conditions.csv", dtype={"session": str})
    assert set(conditions["session"]) == {"all", "1", "2"}


def test_one_condition_file_writes_the_files_of_today(tmp_path):
    answers, predictions = condition_tables(n_readers=4, n_cases=12)
    one = answers[answers["condition"] == "unaided"]
    analyze(tmp_path, one, predictions)
    names = {p.name for p in (tmp_path / "out").iterdir()}
    assert {f"{t}.csv" for t in TABLES} <= names
    assert not {f"{t}.csv" for t in CONDITION_TABLES} & names
    assert not any(n.startswith("gain_") for n in names)
    assert "condition" not in pd.read_csv(tmp_path / "out" / "per_class.csv").columns
    assert 'id="methods-conditions"' not in (tmp_path / "out" / "report.html").read_text()


@pytest.mark.django_db
def test_analyze_study_of_two_conditions_from_the_database(tmp_path):
    from cases.models import Answer, ReadingCondition
    from tests.analysis.factories import build_db_study

    study = build_db_study(slug="levels", n_readers=3, per_class=4)
    second = ReadingCondition.objects.create(
        study=study, code="level2", position=2, label="Dermoscopy and clinical photo"
    )
    Answer.objects.bulk_create(
        Answer(enrolment=a.enrolment, case=a.case, condition=second, diagnosis=a.case.diagnosis,
               seconds=3.0)
        for a in Answer.objects.filter(enrolment__study=study).select_related("case")
    )  # fmt: skip
    out = io.StringIO()
    call_command("analyze", "--study", study.slug, "--out", str(tmp_path), "--bootstrap", "20",
                 "--no-progress", stdout=out, stderr=io.StringIO())  # fmt: skip
    conditions = pd.read_csv(tmp_path / "conditions.csv")
    assert list(conditions["condition"]) == [study.conditions.get(position=1).code, "level2"]
    assert conditions["top1_accuracy"].iloc[1] == 1.0  # every level2 answer is right
    mcnemar = pd.read_csv(tmp_path / "condition_mcnemar.csv")
    assert (mcnemar["correct_to_incorrect"] == 0).all() and len(mcnemar) == 3
    assert pd.read_csv(tmp_path / "switching.csv").empty  # no condition shows the CNN
    html = (tmp_path / "report.html").read_text()
    assert "Dermoscopy and clinical photo" in html and "sequential design" in html
