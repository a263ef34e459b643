"""The ``mrmc`` and ``analyze`` management commands."""

from __future__ import annotations

import io
import json
import re

import numpy as np
import pandas as pd
import pytest
from django.core.management import CommandError, call_command

from analysis.stats.pipeline import (
    KAPPA_COLUMNS,
    PER_CLASS_COLUMNS,
    READERS_SUMMARY_COLUMNS,
)
from tests.analysis.factories import CHOICES, build_db_study, reference_data_dir, synthetic_tables


def run(*args) -> str:
    out = io.StringIO()
    call_command(*args, stdout=out, stderr=io.StringIO())
    return out.getvalue()


def mrmc_json(*args) -> dict:
    return json.loads(run("mrmc", *args, "--json"))


def one(records: list[dict], **where) -> dict:
    found = [r for r in records if all(r[k] == v for k, v in where.items())]
    assert len(found) == 1, where
    return found[0]


# --- mrmc ------------------------------------------------------------------------------


def test_mrmc_json_reproduces_van_dyke_published_analysis():
    # OR-DBM MRMC 2.51 output for Van Dyke et al. (1993), see reference-data/README.md
    res = mrmc_json(str(reference_data_dir() / "vandyke_roc.csv"))
    assert res["analysis"] == "or"
    assert np.round(res["fom"], 8).tolist() == [
        [0.91964573, 0.85877617, 0.90386473, 0.97310789, 0.82979066],
        [0.94782609, 0.90531401, 0.92173913, 0.99935588, 0.92995169],
    ]
    assert round(res["ms_t"], 8) == 0.00479617
    assert round(res["ms_r"], 8) == 0.00383620
    assert round(res["ms_tr"], 8) == 0.00055103
    assert round(res["var_error"], 8) == 0.00080229
    assert round(res["cov1"], 8) == 0.00034661
    assert round(res["cov2"], 8) == 0.00034407
    assert round(res["cov3"], 8) == 0.00023903
    rrrc = one(res["tests"], analysis="rrrc")
    assert (round(rrrc["statistic"], 2), round(rrrc["df2"], 2), round(rrrc["p"], 4)) == (
        4.46,
        15.26,
        0.0517,
    )
    diff = one(res["differences"], analysis="rrrc")
    assert round(diff["difference"], 5) == -0.04380
    assert round(diff["se"], 5) == 0.02075
    assert (round(diff["ci_low"], 5), round(diff["ci_high"], 5)) == (-0.08796, 0.00036)
    frrc = one(res["tests"], analysis="frrc")
    assert (round(frrc["statistic"], 5), round(frrc["p"], 4)) == (5.47595, 0.0193)
    assert frrc["df2"] is None  # infinite: JSON has no inf
    frrc_ci = one(res["differences"], analysis="frrc")
    assert (round(frrc_ci["ci_low"], 5), round(frrc_ci["ci_high"], 5)) == (-0.08049, -0.00711)
    rrfc = one(res["tests"], analysis="rrfc")
    assert (round(rrfc["statistic"], 2), rrfc["df1"], rrfc["df2"], round(rrfc["p"], 4)) == (
        8.70,
        1,
        4,
        0.0420,
    )
    rrfc_ci = one(res["differences"], analysis="rrfc")
    assert (round(rrfc_ci["ci_low"], 5), round(rrfc_ci["ci_high"], 5)) == (-0.08502, -0.00258)


def test_mrmc_json_reproduces_rjafroc_cad_versus_radiologists():
    # RJafroc StSignificanceTestingCadVsRad(dataset09), Chakraborty's RJafrocBook
    res = mrmc_json(str(reference_data_dir() / "cad_vs_radiologists_roc.csv"), "--ai-reader", "CAD")
    assert res["analysis"] == "ai_vs_readers" and res["ai_reader"] == "CAD"
    assert round(res["fom_ai"], 3) == 0.817
    assert round(res["readers_mean"], 3) == 0.849
    assert round(res["difference"], 4) == 0.0317
    assert round(res["var_readers"], 6) == 0.000878
    assert round(res["cov2"], 6) == 0.000924
    rrrc = one(res["analyses"], analysis="rrrc")
    assert (round(rrrc["statistic"], 2), round(rrrc["df"]), round(rrrc["p"], 4)) == (
        0.99,
        878,
        0.3210,
    )
    assert (round(rrrc["ci_low"], 3), round(rrrc["ci_high"], 3)) == (-0.031, 0.094)
    rrfc = one(res["analyses"], analysis="rrfc")
    assert (round(rrfc["statistic"]), rrfc["df"], round(rrfc["p"], 3)) == (10, 8, 0.012)


def test_mrmc_text_report_prints_the_published_van_dyke_figures():
    # The strings of the OR-DBM MRMC 2.51 analysis in reference-data/README.md, to the
    # printed precision (AUCs 8 decimals, chi-square 5; F to 4 where 4.46 is printed).
    text = run("mrmc", str(reference_data_dir() / "vandyke_roc.csv"))
    for reader, (auc0, auc1) in enumerate(
        [
            ("0.91964573", "0.94782609"),
            ("0.85877617", "0.90531401"),
            ("0.90386473", "0.92173913"),
            ("0.97310789", "0.99935588"),
            ("0.82979066", "0.92995169"),
        ]
    ):
        assert re.search(rf"^  {reader} +{auc0} {auc1}$", text, flags=re.MULTILINE), reader
    assert re.search(r"^  mean +0\.89703704 0\.94083736$", text, flags=re.MULTILINE)
    for expected in (
        "F(1, 15.26) = 4.4563, p = 0.0517",
        "0 - 1: -0.04380 (SE 0.02075, df 15.26), 95% CI -0.08796 to 0.00036, p = 0.0517",
        "chi2(1) = 5.47595, p = 0.0193",
        "95% CI -0.08049 to -0.00711, p = 0.0193",
        "F(1, 4.00) = 8.7040, p = 0.0420",
        "95% CI -0.08502 to -0.00258, p = 0.0420",
        "Var(Error) 0.00080229",
        "Cov1       0.00034661",
        "Cov2       0.00034407",
        "Cov3       0.00023903",
        "MS(T)      0.00479617",
        "MS(R)      0.00383620",
        "MS(T*R)    0.00055103",
    ):
        assert expected in text, expected


def test_mrmc_text_report_of_an_algorithm_against_readers():
    # RJafroc StSignificanceTestingCadVsRad(dataset09): the printed values, 3-4 decimals.
    text = run(
        "mrmc", str(reference_data_dir() / "cad_vs_radiologists_roc.csv"), "--ai-reader", "CAD"
    )
    assert re.search(r"^  readers +0\.8486\d{4} \(mean\)$", text, flags=re.MULTILINE)
    assert re.search(r"^  CAD +0\.8169\d{4}$", text, flags=re.MULTILINE)
    assert "Difference readers - CAD: 0.03174" in text
    ddf, f, p = re.search(r"F\(1, ([\d.]+)\) = ([\d.]+), p = ([\d.]+)", text).groups()
    assert (round(float(ddf)), round(float(f), 2), p) == (878, 0.99, "0.3210")


def test_mrmc_alpha_changes_the_confidence_level():
    text = run(
        "mrmc",
        str(reference_data_dir() / "cad_vs_radiologists_roc.csv"),
        "--ai-reader",
        "CAD",
        "--alpha",
        "0.1",
    )
    assert "90% CI" in text and "95% CI" not in text


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("reader,case,rating\nA,1,3\n", "lacks column"),
        ("reader,case,truth,rating\nA,1,0,3\nA,1,0,4\n", "more than one rating"),
        ("reader,case,truth,rating\nA,1,0,3\nA,2,1,4\n", "at least two treatments"),
        ("reader,case,truth,rating\nA,1,0,3\nA,2,2,4\n", "truth must be 0 or 1"),
    ],
)
def test_mrmc_bad_ratings_give_a_command_error(tmp_path, content, message):
    path = tmp_path / "ratings.csv"
    path.write_text(content)
    with pytest.raises(CommandError, match=message):
        run("mrmc", str(path))


def test_mrmc_unknown_ai_reader_and_missing_file(tmp_path):
    with pytest.raises(CommandError, match="no reader 'CNN'"):
        run("mrmc", str(reference_data_dir() / "cad_vs_radiologists_roc.csv"), "--ai-reader", "CNN")
    with pytest.raises(CommandError, match="cannot read"):
        run("mrmc", str(tmp_path / "missing.csv"))


# --- analyze on files ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def csv_report(tmp_path_factory):
    """``analyze --answers --predictions`` once: 6 readers x 24 cases x 2 models."""
    folder = tmp_path_factory.mktemp("analyze")
    answers, predictions = synthetic_tables()
    answers.to_csv(folder / "answers.csv", index=False)
    predictions.to_csv(folder / "predictions.csv", index=False)
    out = folder / "out"
    text = run(
        "analyze",
        "--answers",
        str(folder / "answers.csv"),
        "--predictions",
        str(folder / "predictions.csv"),
        "--out",
        str(out),
        "--bootstrap",
        "50",
        "--seed",
        "7",
        "--choices",
        ",".join(CHOICES),
        "--no-progress",
    )
    return out, text


def test_analyze_files_writes_every_table_figure_and_the_page(csv_report):
    out, text = csv_report
    names = {p.name for p in out.iterdir()}
    assert {
        "per_class.csv",
        "comparisons.csv",
        "agreement.csv",
        "auc.csv",
        "auc_tests.csv",
        "summary.json",
        "report.xlsx",
        "report.html",
    } <= names
    for stem in (
        "confusion_readers",
        "confusion_cnn-0",
        "confusion_cnn-1",
        "roc_cnn-0",
        "roc_cnn-1",
        "forest",
    ):
        assert {f"{stem}.png", f"{stem}.svg"} <= names, stem
    for name in names:  # it says where each file went
        assert str(out / name) in text
    html = (out / "report.html").read_text()
    assert "not recorded" in html and "UNTRAINED" not in html  # files: status unknown


def test_analyze_files_tables_have_the_documented_columns(csv_report):
    out, _ = csv_report
    per_class = pd.read_csv(out / "per_class.csv")
    assert list(per_class.columns) == PER_CLASS_COLUMNS
    raters = set(per_class["rater"])
    # R5 answered 20 of 24 cases: left out by default (finished readers only)
    assert {"readers", "cnn-0", "cnn-1", *(f"R{r}" for r in range(5))} == raters
    comparisons = pd.read_csv(out / "comparisons.csv")
    assert list(comparisons.columns) == [
        "model",
        "class",
        "metric",
        "method",
        "model_value",
        "readers_value",
        "difference",
        "ci_low",
        "ci_high",
        "statistic",
        "df",
        "p",
        "p_adjusted",
    ]
    assert set(comparisons["method"]) == {"z_kappa", "bootstrap", "mrmc_rrrc", "mrmc_rrfc"}
    auc = pd.read_csv(out / "auc.csv")
    assert set(auc["class"]) == {*CHOICES, "macro", "micro"}
    assert len(pd.read_csv(out / "auc_tests.csv")) == len(CHOICES)  # one pair of models
    assert {"fleiss_kappa", "cohen_kappa"} <= set(pd.read_csv(out / "agreement.csv")["statistic"])
    summary = json.loads((out / "summary.json").read_text())
    assert (summary["seed"], summary["n_bootstrap"], summary["choices"]) == (7, 50, CHOICES)


def test_analyze_answers_only_and_predictions_only(tmp_path):
    answers, predictions = synthetic_tables(n_readers=3, n_cases=8, n_models=1)
    answers.to_csv(tmp_path / "a.csv", index=False)
    predictions.to_csv(tmp_path / "p.csv", index=False)
    run(
        "analyze",
        "--answers",
        str(tmp_path / "a.csv"),
        "--out",
        str(tmp_path / "readers"),
        "--bootstrap",
        "10",
        "--subgroup",
        "level",
        "--no-progress",
    )
    per_class = pd.read_csv(tmp_path / "readers" / "per_class.csv")
    assert set(per_class["rater_kind"]) == {"reader", "readers"}
    assert set(per_class["subgroup"]) == {"all readers", "chief", "resident"}
    assert pd.read_csv(tmp_path / "readers" / "auc.csv").empty
    run(
        "analyze",
        "--predictions",
        str(tmp_path / "p.csv"),
        "--out",
        str(tmp_path / "models"),
        "--no-progress",
    )
    per_class = pd.read_csv(tmp_path / "models" / "per_class.csv")
    assert set(per_class["rater"]) == {"cnn-0"}
    assert not pd.read_csv(tmp_path / "models" / "auc.csv").empty
    assert (tmp_path / "models" / "roc_cnn-0.png").is_file()


def test_analyze_bad_csv_names_the_rows(tmp_path):
    answers, _ = synthetic_tables(n_readers=2, n_cases=8)
    answers.loc[2, "answer"] = "XX"
    answers.to_csv(tmp_path / "a.csv", index=False)
    with pytest.raises(CommandError, match=r"answer outside the choices .* row 3 \(reader='R0'"):
        run(
            "analyze",
            "--answers",
            str(tmp_path / "a.csv"),
            "--out",
            str(tmp_path / "o"),
            "--choices",
            ",".join(CHOICES),
        )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "give --study SLUG, or --answers"),
        (["--study", "x", "--answers", "a.csv"], "not both"),
        (["--answers", "nowhere.csv"], "no such file"),
        (["--answers", "{a}", "--bootstrap", "0"], "at least 1"),
        (["--answers", "{a}", "--subgroup", "shoe_size"], "subgroup column 'shoe_size'"),
        (["--answers", "{a}", "--readers", "some"], "invalid choice: 'some'"),
    ],
)
def test_analyze_rejects_bad_arguments(tmp_path, args, message):
    answers, _ = synthetic_tables(n_readers=2, n_cases=8)
    answers.to_csv(tmp_path / "a.csv", index=False)
    args = [a.format(a=tmp_path / "a.csv") for a in args]
    with pytest.raises(CommandError, match=message):
        run("analyze", *args, "--out", str(tmp_path / "o"))


def test_analyze_writes_the_readers_summary_and_kappa_tables(tmp_path, csv_report):
    # readers_summary: the hand example of test_stats_pipeline (3 readers, 4 cases)
    from tests.analysis.factories import HAND, T_2

    HAND.to_csv(tmp_path / "hand.csv", index=False)
    run("analyze", "--answers", str(tmp_path / "hand.csv"), "--out", str(tmp_path / "hand"),
        "--no-progress")  # fmt: skip
    summary = pd.read_csv(tmp_path / "hand" / "readers_summary.csv")
    assert list(summary.columns) == READERS_SUMMARY_COLUMNS
    sens = summary[(summary["class"] == "A") & (summary["metric"] == "sensitivity")].iloc[0]
    half = T_2 * 0.5 / np.sqrt(3)
    columns = ["n_raters", "mean", "sd", "median", "min", "max"]
    assert sens[columns].tolist() == [3, 0.5, 0.5, 0.5, 0.0, 1.0]
    assert (sens["ci_low"], sens["ci_high"]) == pytest.approx((0.5 - half, 0.5 + half))
    written = json.loads((tmp_path / "hand" / "summary.json").read_text())
    top1 = one(written["readers_overall"], metric="top1_accuracy")
    assert (top1["median"], top1["min"], top1["max"]) == (0.75, 0.25, 1.0)
    # kappa: the SAS PROC FREQ table [[0, 4, 1], [0, 8, 0], [0, 1, 5]] (answer x truth)
    table = [[0, 4, 1], [0, 8, 0], [0, 1, 5]]
    pairs = [
        (truth, answer)
        for answer, counts in zip("ABC", table, strict=True)
        for truth, n in zip("ABC", counts, strict=True)
        for _ in range(n)
    ]
    pd.DataFrame(
        [("sas", f"k{k}", truth, answer) for k, (truth, answer) in enumerate(pairs)],
        columns=["reader", "case", "truth", "answer"],
    ).to_csv(tmp_path / "sas.csv", index=False)
    run("analyze", "--answers", str(tmp_path / "sas.csv"), "--out", str(tmp_path / "sas"),
        "--choices", "A,B,C", "--no-progress")  # fmt: skip
    kappa = pd.read_csv(tmp_path / "sas" / "kappa.csv")
    assert list(kappa.columns) == KAPPA_COLUMNS
    row = kappa[kappa["class"] == "all"].iloc[0]
    assert (row.rater, row.rater_kind, row.n) == ("sas", "reader", 19)
    assert [round(row[c], 4) for c in ("kappa", "ase", "ci_low", "ci_high", "ase0", "z")] == [
        0.4842, 0.1380, 0.2137, 0.7547, 0.1484, 3.2626
    ]  # fmt: skip
    # both tables are also sheets of the workbook of the full report
    out, _ = csv_report
    sheets = pd.read_excel(out / "report.xlsx", sheet_name=None)
    assert {"readers_summary", "kappa"} <= set(sheets)
    assert len(sheets["kappa"]) == len(pd.read_csv(out / "kappa.csv")) == (5 + 2) * 5


def test_analyze_splits_every_reader_table_by_experience_band(tmp_path):
    answers, predictions = synthetic_tables(n_readers=4, n_cases=12, n_models=1)
    answers["years"] = answers["reader"].map({"R0": 1, "R1": 3, "R2": 8, "R3": None})
    answers.to_csv(tmp_path / "a.csv", index=False)
    predictions.to_csv(tmp_path / "p.csv", index=False)
    run("analyze", "--answers", str(tmp_path / "a.csv"), "--predictions", str(tmp_path / "p.csv"),
        "--out", str(tmp_path / "o"), "--bootstrap", "20", "--subgroup", "years:0,5",
        "--readers", "all", "--no-progress")  # fmt: skip
    bands = ["all readers", "[0,5)", "[5,inf)", "unknown"]
    for name in ("per_class", "readers_summary", "kappa", "counts", "comparisons", "agreement",
                 "confusion"):  # fmt: skip
        table = pd.read_csv(tmp_path / "o" / f"{name}.csv")
        assert table.columns[0] == "subgroup", name
        assert list(pd.unique(table["subgroup"])) == bands, name
    comparisons = pd.read_csv(tmp_path / "o" / "comparisons.csv")
    two = comparisons[comparisons["subgroup"] == "[0,5)"]
    assert {"z_kappa", "bootstrap", "mrmc_rrrc", "mrmc_rrfc"} == set(two["method"])
    readers = pd.read_csv(tmp_path / "o" / "readers.csv").set_index("reader")
    assert readers["subgroup"].to_dict() == {
        "R0": "[0,5)", "R1": "[0,5)", "R2": "[5,inf)", "R3": "unknown"
    }  # fmt: skip
    summary = json.loads((tmp_path / "o" / "summary.json").read_text())
    assert summary["subgroup"] == "years:0,5"
    assert [s["n_readers"] for s in summary["subgroups"]] == [2, 1, 1]


def test_analyze_prints_and_records_input_warnings(tmp_path):
    _, predictions = synthetic_tables(n_readers=2, n_cases=8, n_models=1)
    predictions.loc[2, "prob_MN"] += 0.01
    predictions.to_csv(tmp_path / "p.csv", index=False)
    err = io.StringIO()
    call_command("analyze", "--predictions", str(tmp_path / "p.csv"), "--out",
                 str(tmp_path / "o"), "--no-progress", stdout=io.StringIO(), stderr=err)  # fmt: skip
    expected = (
        "predictions: probabilities do not sum to 1 (tolerance 0.001) in 1 row(s): "
        "row 3 (model='cnn-0', case='case002')"
    )
    assert f"warning: {expected}" in err.getvalue()
    assert json.loads((tmp_path / "o" / "summary.json").read_text())["warnings"] == [expected]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("reader,case,truth,answer\nr1,1,0,0\nr1,2,1,\nr1,3,1,1\n",
         r"^answers: answer is missing in row 2 \(reader='r1', case='2', truth='1', answer=None\)$"),
        ("reader,case,truth,answer\nr1,1,0,0\nr1,2,1,2\nr1,3,1,1\n",
         r"^answers: answer outside the choices \['0', '1'\] in row 2 \(.*answer='2'\)$"),
    ],
)  # fmt: skip
def test_analyze_numeric_labels_missing_versus_outside_the_choices(tmp_path, content, message):
    (tmp_path / "a.csv").write_text(content)
    with pytest.raises(CommandError, match=message):
        run("analyze", "--answers", str(tmp_path / "a.csv"), "--out", str(tmp_path / "o"),
            "--choices", "0,1")  # fmt: skip


# --- analyze on a study in the database ---------------------------------------------------


@pytest.mark.django_db
def test_analyze_study_from_the_database(tmp_path):
    study = build_db_study(embeddings=True)
    text = run(
        "analyze",
        "--study",
        study.slug,
        "--out",
        str(tmp_path),
        "--bootstrap",
        "20",
        "--no-progress",
    )
    assert "files written" in text
    per_class = pd.read_csv(tmp_path / "per_class.csv")
    assert set(per_class["rater_kind"]) == {"reader", "readers", "model"}
    assert "small-cnn" in set(per_class["rater"])
    readers = pd.read_csv(tmp_path / "readers.csv")
    assert len(readers) == 3 and readers["complete"].all() and "level" in readers.columns
    assert (tmp_path / "tsne_small-cnn.png").is_file()
    html = (tmp_path / "report.html").read_text()
    assert "UNTRAINED" in html and "Synthetic study" in html
    assert "Small — reader study analysis" in html


@pytest.mark.django_db
def test_analyze_counts_finished_readers_by_default_and_every_reader_with_readers_all(tmp_path):
    from cases.selectors import answers_frame

    study = build_db_study(slug="partial", n_readers=4, unfinished=1)  # reader3: 6 of 12
    args = ["--study", study.slug, "--bootstrap", "10", "--no-progress"]
    run("analyze", *args, "--out", str(tmp_path / "default"))
    readers = pd.read_csv(tmp_path / "default" / "readers.csv")
    assert len(readers) == 3 and readers["finished"].all()
    summary = json.loads((tmp_path / "default" / "summary.json").read_text())
    left_out = summary["readers"]
    assert (left_out["rule"], left_out["basis"], left_out["n_left_out"]) == (
        "finished", "finished", 1
    )  # fmt: skip
    assert summary["n_readers"] == 3 and summary["facts"]["n_readers_left_out"] == 1
    note = "1 of 4 readers had not finished the study and was left out"
    assert left_out["note"].startswith(note)
    assert note in (tmp_path / "default" / "report.html").read_text()

    run("analyze", *args, "--readers", "all", "--out", str(tmp_path / "all"))
    readers = pd.read_csv(tmp_path / "all" / "readers.csv").set_index("reader")
    assert len(readers) == 4 and readers["n_answers"].min() == 6
    assert not readers["finished"].all()
    assert json.loads((tmp_path / "all" / "summary.json").read_text())["readers"]["rule"] == "all"

    # the admin's answers export carries the flag: the files give the same readers
    answers_frame(study=study).to_csv(tmp_path / "answers.csv", index=False)
    run("analyze", "--answers", str(tmp_path / "answers.csv"), "--bootstrap", "10",
        "--no-progress", "--out", str(tmp_path / "files"))  # fmt: skip
    from_files = json.loads((tmp_path / "files" / "summary.json").read_text())["readers"]
    assert from_files == left_out


@pytest.mark.django_db
def test_analyze_unknown_study_and_empty_study(tmp_path):
    from tests.factories import make_study

    with pytest.raises(CommandError, match="no study with slug 'nope'"):
        run("analyze", "--study", "nope", "--out", str(tmp_path))
    make_study(slug="empty")
    with pytest.raises(CommandError, match="nothing to analyse"):
        run("analyze", "--study", "empty", "--out", str(tmp_path))
