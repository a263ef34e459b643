import numpy as np
import pytest
from statsmodels.stats import inter_rater

from analysis.stats.kappa import (
    cohen_kappa,
    contingency_tables,
    fleiss_kappa,
    one_vs_rest_tables,
)


def test_cohen_kappa_reproduces_sas_fleiss_cohen_everitt_vector():
    # SAS PROC FREQ output, reproduced in statsmodels' test suite (reference README)
    res = cohen_kappa(np.array([[0, 4, 1], [0, 8, 0], [0, 1, 5]]))
    assert res.kappa == pytest.approx(0.4842, abs=5e-5)
    assert res.ase == pytest.approx(0.1380, abs=5e-5)
    assert res.ci_low == pytest.approx(0.2137, abs=5e-5)
    assert res.ci_high == pytest.approx(0.7547, abs=5e-5)
    assert res.ase0 == pytest.approx(0.1484, abs=5e-5)
    assert res.z == pytest.approx(3.2626, abs=5e-5)


def test_batched_cohen_kappa_matches_statsmodels_table_by_table():
    rng = np.random.default_rng(3)
    tables = rng.integers(0, 30, (6, 4, 4))
    res = cohen_kappa(tables)
    for i, table in enumerate(tables):
        expected = inter_rater.cohens_kappa(table)
        assert res.kappa[i] == pytest.approx(expected.kappa)
        assert res.ase[i] == pytest.approx(expected.std_kappa)
        assert res.ase0[i] == pytest.approx(expected.std_kappa0)


def test_rater_against_itself_has_kappa_one():
    answers = np.array([0, 1, 2, 2, 1, 0, 0, 2])
    table = contingency_tables(answers, answers, 3)
    assert cohen_kappa(table).kappa == pytest.approx(1.0)
    assert cohen_kappa(one_vs_rest_tables(table)).kappa == pytest.approx(np.ones(3))


def test_hand_computed_two_by_two_kappa():
    # po = (20 + 15) / 50 = 0.7; pe = (25*30 + 25*20) / 2500 = 0.5; kappa = 0.4
    assert cohen_kappa(np.array([[20, 5], [10, 15]])).kappa == pytest.approx(0.4)


def test_contingency_tables_leave_out_missing_answers():
    table = contingency_tables(np.array([0, 1, -1, 1]), np.array([0, 1, 1, -1]), 2)
    assert table.tolist() == [[1, 0], [0, 1]]


def test_one_vs_rest_tables_split_each_class():
    table = np.array([[5, 1, 0], [2, 6, 1], [0, 3, 7]])
    two = one_vs_rest_tables(table)
    assert two[0].tolist() == [[5, 1], [2, 17]]
    assert two[2].tolist() == [[7, 3], [1, 14]]


def test_fleiss_kappa_reproduces_fleiss_1971(reference_csv):
    data = reference_csv("fleiss1971_diagnoses.csv")
    wide = data.pivot(index="subject", columns="rater", values="category").to_numpy()
    counts, _ = inter_rater.aggregate_raters(wide)
    res = fleiss_kappa(counts)
    # irr::kappam.fleiss / statsmodels fleiss_kappa (reference README)
    assert res.kappa == pytest.approx(0.4302445, abs=5e-8)
    assert res.se0 == pytest.approx(0.0243739, abs=5e-8)
    assert res.z == pytest.approx(17.65183, abs=5e-6)
    assert res.kappa == pytest.approx(inter_rater.fleiss_kappa(counts))


def test_fleiss_kappa_category_kappas_average_to_overall_when_weighted():
    rng = np.random.default_rng(0)
    counts = rng.multinomial(6, [0.5, 0.3, 0.2], size=40)
    res = fleiss_kappa(counts)
    p = counts.sum(axis=0) / counts.sum()
    weights = p * (1 - p)
    # Fleiss (1971): overall kappa is the p_j q_j-weighted mean of the category kappas
    assert res.kappa == pytest.approx((weights * res.category_kappa).sum() / weights.sum())


def test_perfect_agreement_fleiss_kappa_is_one():
    counts = np.array([[4, 0], [0, 4], [4, 0], [0, 4]])
    assert fleiss_kappa(counts).kappa == pytest.approx(1.0)


def test_kappa_table_reports_the_sas_ase_ci_and_test_of_each_rater():
    # The SAS PROC FREQ table above as 19 cases: rater answer i (rows) against truth j.
    from analysis.stats.metrics import RatingMatrix
    from analysis.stats.pipeline import KAPPA_COLUMNS, kappa_table

    table = np.array([[0, 4, 1], [0, 8, 0], [0, 1, 5]])
    answer, truth = np.nonzero(table)
    repeats = table[answer, truth]
    answer, truth = np.repeat(answer, repeats), np.repeat(truth, repeats)
    matrix = RatingMatrix(
        ["sas"], [str(k) for k in range(19)], ["A", "B", "C"], answer[None, :], truth
    )
    out = kappa_table(matrix, rater_kind="reader")
    assert list(out.columns) == KAPPA_COLUMNS
    assert out["class"].tolist() == ["A", "B", "C", "all"]
    row = out.set_index("class").loc["all"]
    assert row["kappa"] == pytest.approx(0.4842, abs=5e-5)
    assert row["ase"] == pytest.approx(0.1380, abs=5e-5)
    assert row["ci_low"] == pytest.approx(0.2137, abs=5e-5)
    assert row["ci_high"] == pytest.approx(0.7547, abs=5e-5)
    assert row["ase0"] == pytest.approx(0.1484, abs=5e-5)
    assert row["z"] == pytest.approx(3.2626, abs=5e-5)
    assert row["n"] == 19 and row["rater_kind"] == "reader"
    # class B: the 2x2 table "says B" x "is B" = [[8, 0], [5, 6]]
    two = cohen_kappa(np.array([[8, 0], [5, 6]]))
    b = out.set_index("class").loc["B"]
    assert (b["kappa"], b["ase"], b["p"]) == pytest.approx((two.kappa, two.ase, two.p))
