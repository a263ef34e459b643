"""The analysis path's contract: one set of column names, tables that carry everything a
report draws, one service for both data sources, tasks that import services one way."""

from __future__ import annotations

import ast
import dataclasses
import inspect
import io
import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from django.core.management import CommandError, call_command

from analysis import services
from analysis.report import ReportMeta, write_report
from analysis.stats import AnalysisSummary, analyze_tables
from analysis.stats.columns import ANSWERS_TABLE_COLUMNS, READER_COLUMNS
from analysis.stats.pipeline import MajorityTies, SubgroupSize
from analysis.stats.roc import roc_curves
from tests.analysis.factories import CHOICES, synthetic_tables

ROOT = Path(__file__).resolve().parents[2]


def test_the_statistics_core_imports_no_django():
    code = (
        "import sys, analysis.stats, analysis.stats.columns;"
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'django'))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert done.stdout.strip() == "[]"


def test_analyze_tables_returns_the_roc_points_of_each_model():
    answers, predictions = synthetic_tables(n_readers=3, n_cases=12)
    tables = analyze_tables(answers, predictions, CHOICES, n_bootstrap=10)
    assert list(tables.roc.columns) == ["model", "class", "fpr", "tpr", "threshold"]
    assert sorted(tables.roc["model"].unique()) == ["cnn-0", "cnn-1"]
    part = predictions[predictions["model"] == "cnn-1"]
    truth = part["truth"].map({c: i for i, c in enumerate(CHOICES)}).to_numpy()
    expected = roc_curves(truth, part[[f"prob_{c}" for c in CHOICES]].to_numpy(), CHOICES)
    got = tables.roc[tables.roc["model"] == "cnn-1"].drop(columns="model")
    pd.testing.assert_frame_equal(got.reset_index(drop=True), expected)
    assert tables.cases.set_index("case")["truth"].to_dict() == dict(
        zip(part["case"], part["truth"], strict=True)
    )


def test_analyze_tables_without_probabilities_has_no_roc_points():
    answers, predictions = synthetic_tables(n_readers=2, n_cases=8)
    tables = analyze_tables(answers, predictions[["model", "case", "truth", "answer"]], CHOICES)
    assert tables.roc.empty and tables.auc.empty


def test_the_summary_is_a_typed_dataclass_with_plain_json():
    answers, predictions = synthetic_tables(n_readers=4, n_cases=8)
    tables = analyze_tables(
        answers, predictions, CHOICES, n_bootstrap=10, subgroup="level", readers="all"
    )
    summary = tables.summary
    assert isinstance(summary, AnalysisSummary)
    assert isinstance(summary.majority_ties, MajorityTies)
    assert summary.subgroups == [
        SubgroupSize(subgroup="chief", n_readers=2),
        SubgroupSize(subgroup="resident", n_readers=2),
    ]
    plain = summary.to_dict()
    assert list(plain) == [f.name for f in dataclasses.fields(AnalysisSummary)]
    assert plain["subgroups"][0] == {"subgroup": "chief", "n_readers": 2}
    json.dumps(plain)


def test_write_report_takes_tables_and_meta_only(tmp_path):
    assert list(inspect.signature(write_report).parameters) == [
        "tables",
        "out_dir",
        "meta",
        "progress",
        "on_step",
    ]
    answers, predictions = synthetic_tables(n_readers=3, n_cases=8)
    tables = analyze_tables(answers, predictions, CHOICES, n_bootstrap=10)
    files = write_report(tables, tmp_path, ReportMeta(title="From tables"))
    assert {"roc_cnn-0", "roc_cnn-1"} <= {p.stem for p in files.figures}
    facts = json.loads(files.summary.read_text())["facts"]
    assert facts["cases_per_class"] == [{"class": c, "n": 2} for c in CHOICES]


@pytest.mark.django_db
def test_the_files_path_and_the_study_path_call_one_service(tmp_path, monkeypatch):
    from tests.factories import make_study

    calls = []

    def report_write(*, data, out_dir, **parameters):
        calls.append((data, parameters))
        return write_report(
            analyze_tables(data.answers, data.predictions, data.choices, n_bootstrap=5),
            out_dir,
            data.meta,
        )

    monkeypatch.setattr(services, "report_write", report_write)
    answers, predictions = synthetic_tables(n_readers=2, n_cases=8)
    answers.to_csv(tmp_path / "a.csv", index=False)
    predictions.to_csv(tmp_path / "p.csv", index=False)
    quiet = {"stdout": io.StringIO(), "stderr": io.StringIO()}
    call_command(
        "analyze", "--answers", str(tmp_path / "a.csv"), "--out", str(tmp_path / "f"), **quiet
    )
    study = make_study(slug="models", choices=("MN", "SK"))
    with pytest.raises(CommandError, match="nothing to analyse"):
        call_command("analyze", "--study", study.slug, "--out", str(tmp_path / "s"), **quiet)
    (files, _), (database, _) = calls
    assert files.meta.details["source"] == "files" and files.choices == sorted(CHOICES)
    assert database.meta.details["source"] == "database" and database.choices == ["MN", "SK"]


@pytest.mark.django_db
def test_the_database_loader_names_its_columns_as_the_statistics_core():
    from cases.models import PROFILE_FIELDS
    from cases.selectors import answers_frame
    from tests.factories import make_study

    assert len(READER_COLUMNS) == len(PROFILE_FIELDS)
    frame = answers_frame(study=make_study(slug="columns"))
    assert tuple(frame.columns) == ANSWERS_TABLE_COLUMNS


def test_services_never_import_tasks_and_every_task_uses_the_project_decorator():
    from analysis import tasks
    from readerstudy.tasks import TRANSIENT_ERRORS, task_named

    imported = set()
    for node in ast.walk(ast.parse(Path(services.__file__).read_text())):
        if isinstance(node, ast.Import):
            imported |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            imported |= {f"{node.module}.{alias.name}" for alias in node.names}
    assert not any(name.startswith("analysis.tasks") for name in imported)
    for task in (tasks.report_compute_task, tasks.send_pending_reports):
        assert task.acks_late and task.reject_on_worker_lost
        assert tuple(task.autoretry_for) == TRANSIENT_ERRORS and task.max_retries == 5
    assert (
        task_named(services.REPORT_COMPUTE_TASK) is tasks.report_compute_task._get_current_object()
    )
