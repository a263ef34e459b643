import json

import numpy as np
import pandas as pd
import pytest

from analysis.stats import InputError, analyze_tables
from analysis.stats.pipeline import ALL_READERS, PER_CLASS_COLUMNS, SUBGROUP_TABLES
from tests.analysis.factories import CHOICES as FACTORY_CHOICES
from tests.analysis.factories import HAND, T_2, finished_flag_tables, no_positive_tables

CHOICES = ["MN", "SK", "BCC"]


def tables(seed=0):
    rng = np.random.default_rng(seed)
    truth = np.repeat(np.arange(3), 10)
    cases = [f"c{k}" for k in range(30)]
    rows = []
    for r in range(6):
        for k in range(30):
            if r == 5 and k >= 20:
                continue  # a reader with partial answers
            right = rng.random() < 0.7
            answer = truth[k] if right else (truth[k] + 1) % 3
            rows.append(
                (
                    f"r{r}",
                    cases[k],
                    CHOICES[truth[k]],
                    CHOICES[answer],
                    "senior" if r % 2 else "junior",
                )
            )
    answers = pd.DataFrame(rows, columns=["reader", "case", "truth", "answer", "level"])
    frames = []
    for m in range(2):
        probs = rng.dirichlet(np.ones(3), 30)
        probs[np.arange(30), truth] += 0.6
        probs /= probs.sum(1, keepdims=True)
        frame = pd.DataFrame({"model": f"cnn{m}", "case": cases,
                              "truth": np.array(CHOICES)[truth],
                              "answer": np.array(CHOICES)[probs.argmax(1)]})  # fmt: skip
        for j, code in enumerate(CHOICES):
            frame[f"prob_{code}"] = probs[:, j]
        frames.append(frame)
    return answers, pd.concat(frames, ignore_index=True)


def test_full_analysis_has_every_table():
    answers, predictions = tables()
    result = analyze_tables(answers, predictions, CHOICES, n_bootstrap=100, readers="all")
    assert list(result.per_class.columns) == PER_CLASS_COLUMNS
    assert set(result.per_class["rater_kind"]) == {"reader", "model", "readers"}
    assert set(result.comparisons["method"]) == {"z_kappa", "bootstrap", "mrmc_rrrc", "mrmc_rrfc"}
    assert {"fleiss_kappa", "cohen_kappa", "mean_cohen_kappa"} <= set(result.agreement["statistic"])
    assert set(result.auc["class"]) == {*CHOICES, "macro", "micro"}
    assert len(result.auc_tests) == 3
    assert result.readers.set_index("reader").loc["r5", "n_answers"] == 20
    assert not result.readers.set_index("reader").loc["r5", "complete"]
    assert result.confusion.groupby("rater")["count"].sum().to_dict() == {
        "cnn0": 30,
        "cnn1": 30,
        "readers": 170,
    }
    json.dumps(result.summary.to_dict())


def test_same_seed_same_numbers():
    answers, predictions = tables()
    a = analyze_tables(answers, predictions, CHOICES, n_bootstrap=100, seed=3)
    b = analyze_tables(answers, predictions, CHOICES, n_bootstrap=100, seed=3)
    pd.testing.assert_frame_equal(a.comparisons, b.comparisons)


def test_per_class_group_row_is_the_mean_of_readers():
    answers, predictions = tables()
    pc = analyze_tables(answers, predictions, CHOICES, n_bootstrap=50).per_class
    sel = (pc["class"] == "SK") & (pc["metric"] == "sensitivity")
    readers = pc[sel & (pc["rater_kind"] == "reader")]["estimate"]
    group = pc[sel & (pc["rater_kind"] == "readers")].iloc[0]
    assert group.estimate == pytest.approx(readers.mean())
    assert group.ci_low < group.estimate < group.ci_high


def test_models_only():
    _, predictions = tables()
    result = analyze_tables(None, predictions, CHOICES)
    assert set(result.per_class["rater_kind"]) == {"model"}
    assert result.comparisons.empty and len(result.auc) == 10


def test_readers_only():
    answers, _ = tables()
    result = analyze_tables(answers, None, None)
    assert set(result.per_class["rater_kind"]) == {"reader", "readers"}
    assert result.auc.empty and result.summary.choices == sorted(CHOICES)


def test_subgroups_repeat_the_per_class_table():
    answers, predictions = tables()
    pc = analyze_tables(answers, predictions, CHOICES, n_bootstrap=50, subgroup="level").per_class
    assert set(pc["subgroup"]) == {"all readers", "junior", "senior"}
    juniors = pc[(pc["subgroup"] == "junior") & (pc["rater_kind"] == "reader")]
    assert set(juniors["rater"]) == {"r0", "r2", "r4"}


def test_unknown_subgroup_column_is_an_input_error():
    answers, predictions = tables()
    with pytest.raises(InputError, match="subgroup"):
        analyze_tables(answers, predictions, CHOICES, subgroup="hospital")


def test_truth_conflict_between_tables_is_an_input_error():
    answers, predictions = tables()
    predictions.loc[predictions["case"] == "c0", "truth"] = "SK"
    with pytest.raises(InputError, match="case 'c0'"):
        analyze_tables(answers, predictions, CHOICES)


# --- readers as a group -------------------------------------------------------------------


def hand_readers_summary() -> pd.DataFrame:
    from analysis.stats.pipeline import READERS_SUMMARY_COLUMNS

    result = analyze_tables(HAND, None, None)
    assert list(result.readers_summary.columns) == READERS_SUMMARY_COLUMNS
    return result


def test_readers_summary_has_sd_median_range_and_t_ci_over_readers():
    result = hand_readers_summary()
    rs = result.readers_summary.set_index(["class", "metric"])
    sens = rs.loc[("A", "sensitivity")]
    assert sens["n_raters"] == 3
    assert (sens["mean"], sens["sd"], sens["median"]) == pytest.approx((0.5, 0.5, 0.5))
    assert (sens["min"], sens["max"]) == (0.0, 1.0)
    half = T_2 * 0.5 / np.sqrt(3)
    assert (sens["ci_low"], sens["ci_high"]) == pytest.approx((0.5 - half, 0.5 + half))
    top1 = rs.loc[("all", "top1_accuracy")]
    sd = np.sqrt(((1 - 2 / 3) ** 2 + (0.75 - 2 / 3) ** 2 + (0.25 - 2 / 3) ** 2) / 2)
    assert (top1["mean"], top1["sd"], top1["median"]) == pytest.approx((2 / 3, sd, 0.75))
    assert (top1["min"], top1["max"]) == (0.25, 1.0)
    # the group rows of per_class are this table's mean and CI
    group = result.per_class[result.per_class["rater_kind"] == "readers"]
    row = group[(group["class"] == "A") & (group["metric"] == "sensitivity")].iloc[0]
    assert (row.estimate, row.ci_low) == pytest.approx((0.5, 0.5 - half))
    overall = {r["metric"]: r for r in result.summary.readers_overall}
    assert overall["top1_accuracy"]["median"] == pytest.approx(0.75)
    json.dumps(result.summary.to_dict(), allow_nan=False)


def test_kappa_table_lists_every_rater_and_class():
    answers, predictions = tables()
    kappa = analyze_tables(answers, predictions, CHOICES, n_bootstrap=20, readers="all").kappa
    assert len(kappa) == (6 + 2) * (len(CHOICES) + 1)
    assert set(kappa["rater_kind"]) == {"reader", "model"}
    r5 = kappa[(kappa["rater"] == "r5") & (kappa["class"] == "all")].iloc[0]
    assert r5.n == 20  # the partial reader: answered cases only
    assert r5.ci_low < r5.kappa < r5.ci_high and r5.ase > 0


# --- top-1 versus macro accuracy ----------------------------------------------------------


def test_top1_accuracy_is_compared_by_bootstrap_and_mrmc():
    answers, predictions = tables()
    comparisons = analyze_tables(
        answers, predictions, CHOICES, n_bootstrap=50, readers="all"
    ).comparisons
    top1 = comparisons[comparisons["metric"] == "top1_accuracy"]
    assert set(top1["method"]) == {"bootstrap", "mrmc_rrrc", "mrmc_rrfc"}
    assert set(top1["class"]) == {"all"}
    boot = top1[(top1["method"] == "bootstrap") & (top1["model"] == "cnn0")].iloc[0]
    right = (answers["truth"] == answers["answer"]).groupby(answers["reader"]).mean()
    assert boot.readers_value == pytest.approx(right.mean())


# --- majority ties ------------------------------------------------------------------------


def test_tied_majorities_are_counted_and_broken_by_choice_order():
    # two readers; c1 both A, c2 A/B tied, c3 B/A tied, c4 only one answer (B)
    answers = pd.DataFrame(
        [("r1", "c1", "A", "A"), ("r2", "c1", "A", "A"), ("r1", "c2", "A", "A"),
         ("r2", "c2", "A", "B"), ("r1", "c3", "B", "B"), ("r2", "c3", "B", "A"),
         ("r1", "c4", "B", "B")],
        columns=["reader", "case", "truth", "answer"],
    )  # fmt: skip
    predictions = pd.DataFrame(
        {"model": "m", "case": ["c1", "c2", "c3", "c4"], "truth": list("AABB"),
         "answer": list("AAAB")}
    )  # fmt: skip
    result = analyze_tables(answers, predictions, None, n_bootstrap=20, readers="all")
    ties = result.agreement[result.agreement["statistic"] == "majority_ties"].iloc[0]
    assert (ties.estimate, ties.n) == (2, 4)
    assert result.summary.majority_ties.n_tied == 2
    assert "first in the choices" in result.summary.majority_ties.rule
    # majority A A A B: the model's answers agree on every case -> kappa 1
    vs = result.agreement[
        (result.agreement["standard"] == "readers_majority") & (result.agreement["class"] == "all")
    ]
    assert vs["estimate"].iloc[0] == pytest.approx(1.0)


# --- subgroups ----------------------------------------------------------------------------


def test_every_reader_table_is_split_by_subgroup():
    answers, predictions = tables()
    result = analyze_tables(
        answers, predictions, CHOICES, n_bootstrap=50, subgroup="level", readers="all"
    )
    for name in SUBGROUP_TABLES:
        frame = getattr(result, name)
        assert frame.columns[0] == "subgroup", name
        assert list(pd.unique(frame["subgroup"])) == [ALL_READERS, "junior", "senior"], name
    assert result.summary.to_dict()["subgroups"] == [
        {"subgroup": "junior", "n_readers": 3},
        {"subgroup": "senior", "n_readers": 3},
    ]
    assert result.readers.set_index("reader")["subgroup"].to_dict()["r1"] == "senior"


def test_a_subgroup_block_equals_the_analysis_of_its_readers_alone():
    answers, predictions = tables()
    split = analyze_tables(answers, predictions, CHOICES, n_bootstrap=50, subgroup="level", seed=2)
    alone = analyze_tables(
        answers[answers["level"] == "senior"], predictions, CHOICES, n_bootstrap=50, seed=2
    )
    for name in ("comparisons", "agreement", "readers_summary", "kappa", "counts", "confusion"):
        block = getattr(split, name)
        block = block[block["subgroup"] == "senior"].drop(columns="subgroup")
        pd.testing.assert_frame_equal(
            block.reset_index(drop=True), getattr(alone, name), check_dtype=False, obj=name
        )
    everyone = split.for_subgroup()
    plain = analyze_tables(answers, predictions, CHOICES, n_bootstrap=50, seed=2)
    pd.testing.assert_frame_equal(
        everyone.comparisons.drop(columns="subgroup"), plain.comparisons, check_dtype=False
    )


def test_numeric_subgroup_is_cut_into_bands_and_missing_is_unknown():
    answers, predictions = tables()
    years = {"r0": 0, "r1": 4.5, "r2": 5, "r3": None, "r4": 12, "r5": -1}
    answers["years"] = answers["reader"].map(years)
    result = analyze_tables(
        answers, predictions, CHOICES, n_bootstrap=20, subgroup="years:0,5,10", readers="all"
    )
    bands = result.readers.set_index("reader")["subgroup"].to_dict()
    assert bands == {
        "r0": "[0,5)",
        "r1": "[0,5)",
        "r2": "[5,10)",
        "r3": "unknown",
        "r4": "[10,inf)",
        "r5": "(-inf,0)",
    }
    order = list(pd.unique(result.comparisons["subgroup"]))
    assert order == [ALL_READERS, "(-inf,0)", "[0,5)", "[5,10)", "[10,inf)", "unknown"]
    # a one-reader band: no SD over readers, no MRMC, and a warning that says so
    single = result.readers_summary[result.readers_summary["subgroup"] == "[5,10)"]
    assert single["n_raters"].max() == 1 and single["sd"].isna().all()
    methods = set(result.comparisons[result.comparisons["subgroup"] == "[5,10)"]["method"])
    assert methods == {"z_kappa", "bootstrap"}
    assert "subgroup '[5,10)' has 1 reader: no SD or CI" in " ".join(result.summary.warnings)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("years:5,0", r"subgroup bands for 'years' must be strictly increasing numbers .*'5,0'"),
        ("years:a,b", r"subgroup bands for 'years' must be strictly increasing"),
        ("years:", r"subgroup bands for 'years'"),
        ("age:0,5", r"subgroup column 'age' is not in the answers table"),
        ("level:0,5", r"subgroup column 'level' must be numeric to make bands; .*r0 \('junior'\)"),
    ],
)
def test_bad_subgroup_bands_are_input_errors(spec, message):
    answers, predictions = tables()
    answers["years"] = 3
    with pytest.raises(InputError, match=message):
        analyze_tables(answers, predictions, CHOICES, n_bootstrap=10, subgroup=spec)


def test_input_warnings_reach_the_summary():
    answers, predictions = tables()
    predictions.loc[3, "prob_MN"] = predictions.loc[3, "prob_MN"] / 2
    summary = analyze_tables(answers, predictions, CHOICES, n_bootstrap=10).summary.to_dict()
    assert len(summary["warnings"]) == 1
    assert "do not sum to 1" in summary["warnings"][0] and "row 4 (" in summary["warnings"][0]


# --- which readers count ------------------------------------------------------------------


def test_only_finished_readers_count_by_default_and_every_reader_with_all():
    answers, predictions = finished_flag_tables()
    default = analyze_tables(answers, predictions, FACTORY_CHOICES, n_bootstrap=20)
    assert sorted(default.readers["reader"]) == ["R0", "R1", "R2", "R3"]
    selection = default.summary.readers
    assert (selection.rule, selection.basis) == ("finished", "finished")
    assert (selection.n_answered, selection.n_counted, selection.n_left_out) == (6, 4, 2)
    assert selection.left_out == ["R4", "R5"]  # R4 answered every case but never finished
    assert selection.note.startswith("2 of 6 readers had not finished the study and were left")
    assert "as in the reference study" in selection.note
    assert default.summary.n_readers == 4
    # the group row is the mean over the finished readers only
    finished = answers[answers["finished"]]
    right = (finished["truth"] == finished["answer"]).groupby(finished["reader"]).mean()
    group = default.per_class.query("rater == 'readers' and metric == 'top1_accuracy'")
    assert group["estimate"].iloc[0] == pytest.approx(right.mean())
    assert set(default.kappa.query("rater_kind == 'reader'")["rater"]) == set(right.index)

    everyone = analyze_tables(answers, predictions, FACTORY_CHOICES, n_bootstrap=20, readers="all")
    assert sorted(everyone.readers["reader"]) == [f"R{r}" for r in range(6)]
    assert everyone.summary.readers.left_out == [] and everyone.summary.readers.n_not_finished == 2
    assert everyone.summary.readers.note.startswith("Every reader is counted (readers: all)")


def test_without_a_finished_column_a_reader_has_finished_when_they_answered_every_case():
    answers, predictions = tables()  # r5 answered 20 of 30 cases
    result = analyze_tables(answers, predictions, CHOICES, n_bootstrap=20)
    selection = result.summary.readers
    assert (selection.basis, selection.left_out) == ("complete", ["r5"])
    assert "had not answered every case" in selection.note
    assert "r5" not in set(result.per_class["rater"])


@pytest.mark.parametrize("value", ["maybe", None, 2])
def test_a_finished_value_that_is_not_true_or_false_is_an_input_error(value):
    answers, predictions = finished_flag_tables()
    answers["finished"] = answers["finished"].astype(object)
    answers.loc[0, "finished"] = value  # R0's first row
    with pytest.raises(InputError, match=r"finished must be True or False in row 1 \(reader='R0'"):
        analyze_tables(answers, predictions, FACTORY_CHOICES, n_bootstrap=10)


def test_finished_flags_are_read_from_text_and_must_not_differ_within_a_reader():
    answers, predictions = finished_flag_tables()
    answers["finished"] = answers["finished"].map({True: "TRUE", False: "0"})
    result = analyze_tables(answers, predictions, FACTORY_CHOICES, n_bootstrap=10)
    assert result.summary.readers.left_out == ["R4", "R5"]
    answers.loc[answers.index[0], "finished"] = "0"  # R0's first row only
    with pytest.raises(InputError, match="finished differs within reader"):
        analyze_tables(answers, predictions, FACTORY_CHOICES, n_bootstrap=10)


def test_when_no_reader_has_finished_the_models_are_analysed_alone_or_nothing_is():
    answers, predictions = finished_flag_tables()
    answers["finished"] = False
    result = analyze_tables(answers, predictions, FACTORY_CHOICES, n_bootstrap=10)
    assert result.summary.n_readers == 0 and result.summary.readers.n_left_out == 6
    assert set(result.per_class["rater_kind"]) == {"model"} and result.comparisons.empty
    with pytest.raises(InputError, match="no reader counts: 6 of 6 readers had not finished"):
        analyze_tables(answers, None, FACTORY_CHOICES)
    with pytest.raises(InputError, match="readers must be one of finished, all"):
        analyze_tables(answers, predictions, FACTORY_CHOICES, readers="some")


# --- a class without positive cases -------------------------------------------------------


def test_a_class_without_positives_is_left_out_of_every_macro_average_and_named():
    answers, predictions = no_positive_tables()
    result = analyze_tables(answers, predictions, FACTORY_CHOICES, n_bootstrap=20)
    assert result.summary.classes_without_positives == ["EAD"]
    assert any(
        w.startswith("class(es) EAD have no positive case") and "macro averages" in w
        for w in result.summary.warnings
    )
    per_class = result.per_class.set_index(["rater", "class", "metric"])["estimate"]
    for rater in ("R0", "cnn"):
        for metric in ("accuracy", "sensitivity", "specificity", "npv"):
            present = [per_class[(rater, c, metric)] for c in ("MN", "SK", "BCC")]
            assert per_class[(rater, "all", metric)] == pytest.approx(np.mean(present))
        assert not np.isnan(per_class[(rater, "EAD", "specificity")])  # its own row is kept
    # the comparisons use the same macro value
    cmp = result.comparisons.query(
        "metric == 'accuracy' and `class` == 'all' and method == 'bootstrap'"
    )
    assert cmp["model_value"].iloc[0] == pytest.approx(per_class[("cnn", "all", "accuracy")])
