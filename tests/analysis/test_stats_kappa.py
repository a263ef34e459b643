import math
from fractions import Fraction

import numpy as np
import pytest
from statsmodels.stats import inter_rater

from analysis.stats.kappa import (
    ASE0_TOLERANCE,
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


# --- the test of kappa = 0 where ASE0 is 0 ------------------------------------------------


def exact_null_bracket(table) -> Fraction:
    """v0 = pe + pe^2 - sum_i p_i. p_.i (p_i. + p_.i) in exact rational arithmetic."""
    t = [[int(x) for x in row] for row in table]
    n = sum(map(sum, t))
    rows = [Fraction(sum(r), n) for r in t]
    cols = [Fraction(sum(c), n) for c in zip(*t, strict=True)]
    pe = sum(r * c for r, c in zip(rows, cols, strict=True))
    return pe + pe**2 - sum(r * c * (r + c) for r, c in zip(rows, cols, strict=True))


# Tables whose ASE0 is 0 in exact arithmetic: a rater who never names the class (the
# first two used to give z = 0, p = 1 from a rounding residue of ASE0 ~ 1e-7, the third
# z = NaN), a class with no positive case, and a 3x3 table whose rater names one label.
ZERO_ASE0 = [
    [[0, 0], [3, 197]],
    [[0, 0], [2, 55]],
    [[0, 0], [25, 175]],
    [[0, 7], [0, 193]],
    [[0, 0, 0], [40, 90, 70], [0, 0, 0]],
]


@pytest.mark.parametrize("table", ZERO_ASE0)
def test_a_kappa_whose_ase0_is_exactly_zero_has_no_test(table):
    assert exact_null_bracket(table) == 0
    res = cohen_kappa(np.array(table))
    assert res.ase0 == 0.0
    assert np.isnan(res.z) and np.isnan(res.p)
    assert res.kappa == pytest.approx(0.0, abs=1e-12)


def test_every_zero_ase0_in_a_batch_gives_nan_whatever_the_rounding():
    # Raters who never say the class, over many sizes: rounding leaves ASE0 anywhere from
    # 0 to ~1e-7; every one must come out the same way.
    tables = np.array([[[0, 0], [pos, n - pos]] for n in (57, 200, 1000) for pos in range(1, 50)])
    assert all(exact_null_bracket(t) == 0 for t in tables)
    res = cohen_kappa(tables)
    assert (res.ase0 == 0).all() and np.isnan(res.z).all() and np.isnan(res.p).all()


def test_a_small_but_genuine_ase0_keeps_its_test_as_statsmodels():
    # The rater names the class once in 1000 cases: v0 = 4 p1. p2. p.1 p.2 > 0, far above
    # the tolerance; z and p are statsmodels' (the SAS PROC FREQ test).
    for table in ([[1, 0], [24, 975]], [[1, 0], [0, 99_999]], [[0, 1], [25, 974]]):
        assert exact_null_bracket(table) > 0
        res = cohen_kappa(np.array(table))
        expected = inter_rater.cohens_kappa(np.array(table))
        assert res.ase0 == pytest.approx(expected.std_kappa0)
        assert res.z == pytest.approx(expected.z_value)
        assert res.p == pytest.approx(expected.pvalue_two_sided)


def test_the_tolerance_is_far_below_the_smallest_genuine_ase0_and_above_the_residue():
    # The smallest nonzero v0 of a 2x2 table with n cases is 4 (n - 1)^2 / n^4 (one
    # case in each margin's rare cell); at n = 10^5 its square root is still 10 times
    # the tolerance, while the residues of the zero tables above stay 70 times below it.
    n = 10**5
    assert exact_null_bracket([[1, 0], [0, n - 1]]) == Fraction(4 * (n - 1) ** 2, n**4)
    assert math.sqrt(4 * (n - 1) ** 2 / n**4) > 10 * ASE0_TOLERANCE
    tables = np.array([[[0, 0], [pos, 1000 - pos]] for pos in range(1, 999)], dtype=float)
    p = tables / 1000
    row, col = p.sum(-1), p.sum(-2)
    pe = (row * col).sum(-1)
    residue = np.sqrt(np.abs(pe + pe**2 - (row * col * (row + col)).sum(-1)))
    assert residue.max() < ASE0_TOLERANCE / 50


def test_a_class_without_positives_has_no_kappa_test_for_any_rater():
    from analysis.stats.metrics import encode
    from analysis.stats.pipeline import kappa_table
    from tests.analysis.factories import CHOICES, no_positive_tables

    answers, _ = no_positive_tables()
    matrix = encode(answers, rater="reader", choices=CHOICES)
    ead = kappa_table(matrix, rater_kind="reader").query("`class` == 'EAD'")
    assert len(ead) == 4
    assert (ead["ase0"] == 0).all() and ead["z"].isna().all() and ead["p"].isna().all()
