"""Several reading conditions: analysis.stats.conditions through analyze_tables."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from statsmodels.stats.contingency_tables import mcnemar
from statsmodels.stats.multitest import multipletests

from analysis.report.files import CONDITION_TABLES, TABLES
from analysis.stats import InputError, analyze_tables, load_answers
from analysis.stats.conditions import EXPERIENCE_EDGES, TABLE_COLUMNS, or_conditions
from analysis.stats.metrics import encode
from analysis.stats.mrmc import FigureOfMerit, or_analysis
from analysis.stats.power import or_variance_components, power_given_jk
from tests.analysis.factories import condition_tables

N_BOOT = 60


@pytest.fixture(scope="module")
def sequential():
    answers, predictions = condition_tables(n_readers=6, n_cases=24, seed=3)
    return answers, analyze_tables(answers, predictions, None, n_bootstrap=N_BOOT)


@pytest.fixture(scope="module")
def crossover():
    answers, predictions = condition_tables(
        design="crossover", n_readers=6, n_cases=24, seed=4, unfinished=2
    )
    tables = analyze_tables(answers, predictions, None, n_bootstrap=N_BOOT, readers="all")
    return answers, tables


def wide(answers: pd.DataFrame) -> pd.DataFrame:
    """reader x case with the answer of each condition and the CNN's answer shown."""
    a = answers.loc[answers["condition"] == "unaided", ["reader", "case", "truth", "answer"]]
    b = answers.loc[answers["condition"] == "aided", ["reader", "case", "answer", "ai_answer"]]
    both = a.merge(b, on=["reader", "case"], suffixes=("", "_b")).set_index(["reader", "case"])
    both = both.rename(columns={"answer": "unaided", "answer_b": "aided", "ai_answer": "ai"})
    return both.sort_index()


# --- shapes --------------------------------------------------------------------------------


def test_the_report_lists_every_table_of_the_conditions():
    assert tuple(TABLE_COLUMNS) == CONDITION_TABLES


@pytest.mark.parametrize("study", ["sequential", "crossover"])
def test_every_table_has_its_documented_columns_and_rows(study, request):
    _, tables = request.getfixturevalue(study)
    compared = tables.conditions
    assert compared.codes == ["unaided", "aided"] and compared.reference == "unaided"
    for name, columns in TABLE_COLUMNS.items():
        frame = getattr(compared, name)
        assert list(frame.columns) == columns, name
        assert len(frame), name
    for name in TABLES:  # the current tables, one block per condition
        frame = getattr(tables, name)
        assert frame.columns[0] == "condition", name
        if name != "auc_tests":  # one model: no pair of models to test
            assert list(pd.unique(frame["condition"])) == ["unaided", "aided"], name
    or_ = compared.condition_or
    labels = {("top1_accuracy", "all")} | {
        (m, c) for m in ("sensitivity", "specificity") for c in tables.summary.choices
    }
    assert set(zip(or_["metric"], or_["class"], strict=True)) == labels
    assert (
        or_.groupby(["metric", "class"])["analysis"].apply(sorted)
        == [["frrc", "rrfc", "rrrc"]] * len(labels)
    ).all()
    assert np.allclose(or_["difference"], or_["value_b"] - or_["value_a"])
    assert (or_["p_adjusted"] >= or_["p"] - 1e-12).all()
    assert set(compared.ai_vs_readers["condition"]) == {"unaided", "aided"}
    assert set(compared.ai_vs_readers["cnn_condition"]) == {"aided"}


def test_design_comes_from_the_sessions(sequential, crossover):
    assert sequential[1].conditions.design == "sequential"
    assert crossover[1].conditions.design == "crossover"
    sessions = crossover[1].conditions.conditions
    assert set(sessions["session"]) == {"all", "1", "2"}
    per = sessions[sessions["session"] != "all"].groupby("condition")["n_reads"].sum()
    total = sessions[sessions["session"] == "all"].set_index("condition")["n_reads"]
    assert per.to_dict() == total.to_dict()


def test_each_condition_block_is_that_condition_analysed_alone(sequential):
    answers, tables = sequential
    rows = answers[answers["condition"] == "aided"].drop(columns="condition")
    alone = analyze_tables(rows, condition_tables(n_readers=6, n_cases=24, seed=3)[1], None,
                           n_bootstrap=N_BOOT, readers="all")  # fmt: skip
    for name in ("per_class", "comparisons", "kappa", "agreement", "counts"):
        block = getattr(tables, name)
        block = block[block["condition"] == "aided"].drop(columns="condition")
        pd.testing.assert_frame_equal(
            block.reset_index(drop=True), getattr(alone, name).reset_index(drop=True)
        )


# --- the comparisons against independent computations --------------------------------------


def test_mcnemar_per_reader_is_statsmodels_on_the_paired_answers(sequential):
    answers, tables = sequential
    reads = wide(answers)
    table = tables.conditions.condition_mcnemar.set_index("reader")
    ps = []
    for reader, g in reads.groupby(level="reader"):
        u = (g["unaided"] == g["truth"]).to_numpy()
        a = (g["aided"] == g["truth"]).to_numpy()
        b, c = int((u & ~a).sum()), int((~u & a).sum())
        expected = mcnemar([[(u & a).sum(), b], [c, (~u & ~a).sum()]], exact=b + c < 25)
        row = table.loc[reader]
        assert (row["correct_to_incorrect"], row["incorrect_to_correct"]) == (b, c)
        assert row["p"] == pytest.approx(expected.pvalue)
        assert row["difference"] == pytest.approx(a.mean() - u.mean())
        ps.append(expected.pvalue)
    holm = multipletests(ps, method="holm")[1]
    assert table["p_holm"].to_numpy() == pytest.approx(holm)


def test_switching_and_following_count_the_paired_answers(sequential):
    answers, tables = sequential
    reads = wide(answers)
    u, a = reads["unaided"] == reads["truth"], reads["aided"] == reads["truth"]
    switching = tables.conditions.switching
    overall = switching[switching["grouping"] == "overall"].set_index("outcome")
    assert overall.loc["incorrect_to_correct", "count"] == (~u & a).sum()
    assert overall.loc["correct_to_incorrect", "count"] == (u & ~a).sum()
    for _, block in switching.groupby(["grouping", "group"]):
        assert block["count"].sum() == block["reads"].iloc[0]
    for grouping in ("class", "level", "years_band"):
        block = switching[switching["grouping"] == grouping]
        assert block["count"].sum() == len(reads), grouping
    bands = switching.loc[switching["grouping"] == "years_band", "group"]
    assert set(bands) <= {"[0,3)", "[3,10)", "[10,inf)"} and EXPERIENCE_EDGES == (0, 3, 10)

    following = tables.conditions.cnn_following
    top = following[following["grouping"] == "overall"].set_index("cnn_correct")
    right = reads["ai"] == reads["truth"]
    disagree = reads["unaided"] != reads["ai"]
    followed = disagree & (reads["aided"] == reads["ai"])
    for cnn_right in (True, False):
        mask = right == cnn_right
        assert top.loc[cnn_right, "reads"] == mask.sum()
        assert top.loc[cnn_right, "followed"] == (followed & mask).sum()
        assert top.loc[cnn_right, "aided_accuracy"] == pytest.approx(a[mask].mean())
    assert (following["followed"] <= following["disagreeing"]).all()


def fom(name: str) -> FigureOfMerit:
    """Binary ratings 1 = "says diseased": the metrics of the new path, written out."""

    def value(ratings, truth):
        truth = np.asarray(truth)
        if name == "sensitivity":
            return ratings[..., truth == 1].mean(axis=-1)
        if name == "specificity":
            return 1 - ratings[..., truth == 0].mean(axis=-1)
        return (ratings == truth).mean(axis=-1)

    return FigureOfMerit(name, value)


def test_or_of_the_conditions_is_mrmc_on_the_van_dyke_two_treatment_data(reference_csv):
    # Van Dyke et al. (1993), 5 readers x 114 cases x 2 treatments; a rating of 3 or more
    # (of 5) read as "diseased" makes a two-class answer per reader x case x treatment.
    data = reference_csv("vandyke_roc.csv")
    said = (data["rating"] >= 3).astype(int)
    answers = pd.DataFrame(
        {
            "reader": data["reader"].astype(str),
            "case": data["case"].astype(str).str.zfill(3),
            "truth": data["truth"].astype(str),
            "answer": said.astype(str),
            "condition": "t" + data["treatment"].astype(str),
        }
    ).sort_values(["condition", "reader", "case"], kind="stable")
    tables = analyze_tables(answers, None, ["0", "1"], n_bootstrap=20)
    table = tables.conditions.condition_or
    assert set(table["n_readers"]) == {5} and set(table["n_cases"]) == {114}
    cube = (
        data.assign(said=said)
        .pivot_table(index=["treatment", "reader"], columns="case", values="said")
        .to_numpy(dtype=float)
        .reshape(2, 5, 114)
    )
    truth = data.drop_duplicates("case").sort_values("case")["truth"].to_numpy()
    checks = {("top1_accuracy", "all"): "accuracy", ("sensitivity", "1"): "sensitivity",
              ("specificity", "1"): "specificity", ("sensitivity", "0"): "specificity"}  # fmt: skip
    for (metric, label), name in checks.items():
        # mrmc directly, cases left out one at a time: treatments t0, t1, difference t0 - t1
        direct = or_analysis(cube, truth, fom=fom(name), treatments=["t0", "t1"])
        rows = table[(table["metric"] == metric) & (table["class"] == label)].set_index("analysis")
        for d in direct.differences.itertuples():
            row = rows.loc[d.analysis]
            assert row["difference"] == pytest.approx(-d.difference, abs=1e-12)
            assert row["se"] == pytest.approx(d.se, rel=1e-9)
            assert row["df"] == pytest.approx(d.df, rel=1e-9)
            assert (row["ci_low"], row["ci_high"]) == pytest.approx(
                (-d.ci_high, -d.ci_low), rel=1e-9
            )
            assert row["p"] == pytest.approx(d.p, rel=1e-9)
        for key in ("var_error", "cov1", "cov2", "cov3", "ms_tr"):
            assert rows[key].iloc[0] == pytest.approx(getattr(direct, key), rel=1e-9)


def test_or_conditions_needs_the_same_readers_and_cases():
    answers, _ = condition_tables(n_readers=3, n_cases=8)
    a = answers[answers["condition"] == "unaided"]
    choices = sorted(answers["truth"].unique())
    m = encode(a, rater="reader", choices=choices)
    fewer = encode(a[a["reader"] != "R0"], rater="reader", choices=choices)
    with pytest.raises(InputError, match="same readers and cases"):
        or_conditions(m, fewer)


def test_bootstrap_point_estimates_are_the_paired_accuracies(sequential):
    answers, tables = sequential
    reads = wide(answers)
    boot = tables.conditions.condition_bootstrap.set_index(["metric", "class"])
    top1 = boot.loc[("top1_accuracy", "all")]
    assert top1["value_a"] == pytest.approx((reads["unaided"] == reads["truth"]).mean())
    assert top1["value_b"] == pytest.approx((reads["aided"] == reads["truth"]).mean())
    assert top1["n_boot"] == N_BOOT
    assert top1["ci_low"] <= top1["ci_high"]
    or_top1 = tables.conditions.condition_or
    or_top1 = or_top1[(or_top1["metric"] == "top1_accuracy") & (or_top1["analysis"] == "rrrc")]
    assert or_top1["difference"].iloc[0] == pytest.approx(top1["difference"])  # fully crossed


def test_readers_with_the_cnn_against_the_cnn_shown(sequential):
    answers, tables = sequential
    aided = answers[answers["condition"] == "aided"]
    cnn = aided.drop_duplicates("case")
    ai = tables.conditions.ai_vs_readers
    row = ai[(ai["condition"] == "aided") & (ai["metric"] == "top1_accuracy")
             & (ai["method"] == "mrmc_rrrc")].iloc[0]  # fmt: skip
    assert row["model"] == "CNN"
    assert row["model_value"] == pytest.approx((cnn["ai_answer"] == cnn["truth"]).mean())
    per_reader = (aided["answer"] == aided["truth"]).groupby(aided["reader"]).mean()
    assert row["readers_value"] == pytest.approx(per_reader.mean())
    assert row["difference"] == pytest.approx(row["model_value"] - row["readers_value"])
    shown = tables.conditions.conditions.set_index("condition")
    assert shown.loc["aided", "cnn_accuracy"] == pytest.approx(row["model_value"])
    assert np.isnan(shown.loc["unaided", "cnn_accuracy"])


def test_gain_by_experience_is_least_squares_on_the_readers_gains(sequential):
    answers, tables = sequential
    reads = wide(answers).reset_index()
    gain = ((reads["aided"] == reads["truth"]).groupby(reads["reader"]).mean()
            - (reads["unaided"] == reads["truth"]).groupby(reads["reader"]).mean())  # fmt: skip
    gains = tables.conditions.reader_gains.set_index("reader")
    assert gains["gain"].to_numpy() == pytest.approx(gain.sort_index().to_numpy())
    slope, intercept = np.polyfit(gains["years"].astype(float), gains["gain"], 1)
    regression = tables.conditions.gain_regression
    years = regression[regression["model"] == "years"].set_index("term")["coefficient"]
    assert (years["intercept"], years["years"]) == pytest.approx((intercept, slope))
    assert "years + level" in set(regression["model"])
    fit = tables.conditions.gain_fit
    assert fit["fit"].to_numpy() == pytest.approx(intercept + slope * fit["years"].to_numpy())
    assert (fit["ci_low"] <= fit["fit"]).all() and (fit["fit"] <= fit["ci_high"]).all()


def test_power_table_is_hillis_power_of_this_studys_variance_components(sequential):
    answers, tables = sequential
    power = tables.conditions.power
    grid = power[(power["quantity"] == "power") & (power["effect"] == "stated")]
    assert set(grid["effect_size"]) == {0.05}
    by_cases = grid[grid["readers"] == 10].sort_values("cases")["power"].to_numpy()
    assert (np.diff(by_cases) > 0).all()  # more cases, more power
    by_readers = grid[grid["cases"] == 200].sort_values("readers")["power"].to_numpy()
    assert (np.diff(by_readers) > 0).all()
    # Rebuild the OR result of top-1 accuracy from the answers and check one row.
    reads = wide(answers).reset_index()
    choices = tables.summary.choices
    a = encode(reads.rename(columns={"unaided": "answer"}), rater="reader", choices=choices)
    b = encode(reads.rename(columns={"aided": "answer"}), rater="reader", choices=choices)
    _, results = or_conditions(a, b, names=("unaided", "aided"))
    components = or_variance_components(results[("top1_accuracy", "all")], cases=24)
    expected = power_given_jk(components, readers=10, cases=200, effect_size=0.05)
    row = grid[(grid["readers"] == 10) & (grid["cases"] == 200)].iloc[0]
    assert row["power"] == pytest.approx(expected.power)
    needed = power[(power["quantity"] == "cases_for_power") & (power["effect"] == "stated")]
    for r in needed.itertuples():
        if pd.isna(r.cases):
            continue
        assert r.power >= 0.8
        before = power_given_jk(components, readers=r.readers, cases=r.cases - 1, effect_size=0.05)
        assert before.power < 0.8


# --- crossover: unfinished readers ---------------------------------------------------------


def test_crossover_compares_the_reads_both_sessions_have(crossover):
    _, tables = crossover
    pairs = tables.conditions.condition_pairs.iloc[0]
    # the last two readers read half the cases in their second session
    assert pairs["n_readers"] == 6 and pairs["n_readers_left_out"] == 0
    assert pairs["n_reads"] == 4 * 24 + 2 * 12
    assert pairs["n_reads_left_out"] == 2 * 12
    assert (pairs["or_readers"], pairs["or_cases"]) == (4, 24)
    or_ = tables.conditions.condition_or
    assert set(or_["n_readers"]) == {4}
    assert set(tables.conditions.condition_bootstrap["n_readers"]) == {6}
    assert len(tables.conditions.condition_mcnemar) == 6
    notes = " ".join(tables.conditions.notes)
    assert "24 of 264 reads had no read in both conditions" in notes
    assert "it uses 4 readers and 24 cases" in notes


def test_crossover_counts_only_finished_readers_by_default():
    answers, _ = condition_tables(design="crossover", n_readers=6, n_cases=24, seed=4, unfinished=2)
    tables = analyze_tables(answers, None, None, n_bootstrap=N_BOOT)
    pairs = tables.conditions.condition_pairs.iloc[0]
    assert (pairs["n_readers"], pairs["n_reads_left_out"], pairs["or_readers"]) == (4, 0, 4)
    assert tables.summary.readers.n_left_out == 2
    assert set(tables.per_class.loc[tables.per_class["rater_kind"] == "reader", "rater"]) == {
        "R0", "R1", "R2", "R3",
    }  # fmt: skip


def test_without_a_finished_column_a_reader_must_read_every_case_in_every_condition():
    answers, _ = condition_tables(design="crossover", n_readers=5, n_cases=16, unfinished=1)
    tables = analyze_tables(answers.drop(columns="finished"), None, None, n_bootstrap=N_BOOT)
    assert tables.summary.readers.left_out == ["R4"]
    assert "every case in every reading condition" in tables.summary.readers.note


# --- two conditions without the CNN, and one condition --------------------------------------


def test_two_unaided_conditions_have_no_switching_and_no_cnn():
    answers, _ = condition_tables(n_readers=5, n_cases=16, seed=5)
    answers = answers.assign(
        ai_answer="", condition=answers["condition"].map({"unaided": "level1", "aided": "level2"})
    )
    compared = analyze_tables(answers, None, None, n_bootstrap=N_BOOT).conditions
    assert compared.aided() == []
    assert compared.switching.empty and compared.cnn_following.empty
    assert compared.ai_vs_readers.empty
    assert len(compared.condition_or) and len(compared.condition_mcnemar)


def test_one_condition_file_gives_exactly_the_tables_of_today():
    answers, predictions = condition_tables(n_readers=5, n_cases=16, seed=6)
    one = answers[answers["condition"] == "aided"]
    today = one.drop(columns=["condition", "session", "ai_answer", "ai_top_probability",
                              "changed"])  # fmt: skip
    new = analyze_tables(one, predictions, None, n_bootstrap=N_BOOT)
    old = analyze_tables(today, predictions, None, n_bootstrap=N_BOOT)
    assert new.conditions is None
    for name in (*TABLES, "roc", "cases"):
        frame = getattr(new, name)
        if name == "readers":  # the condition is a constant reader attribute, as today
            frame = frame.drop(columns="condition")
        pd.testing.assert_frame_equal(frame, getattr(old, name), check_dtype=False)
    assert new.summary == old.summary


def test_load_answers_keeps_a_reader_x_case_once_per_condition():
    answers, _ = condition_tables(n_readers=2, n_cases=8)
    loaded = load_answers(answers)
    assert loaded.attrs["conditions"] == ["unaided", "aided"]
    assert str(loaded["session"].dtype) == "Int64"
    assert str(loaded["changed"].dtype) == "boolean"
    doubled = pd.concat([answers, answers.iloc[[0]]], ignore_index=True)
    with pytest.raises(InputError, match=r"more than one row per \(reader, case, condition\)"):
        load_answers(doubled)
    bad = answers.copy()
    bad.loc[bad["condition"] == "aided", "ai_answer"] = "XX"
    with pytest.raises(InputError, match="ai_answer outside the choices"):
        load_answers(bad)
    missing = answers.copy()
    missing.loc[3, "condition"] = None
    with pytest.raises(InputError, match="condition is missing in row 4"):
        load_answers(missing)
