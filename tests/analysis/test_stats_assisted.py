"""Sequential (unaided, then CNN-assisted) reads: every expected value below is counted or
worked by hand from the small tables built here, or follows from a distribution known in
closed form (binomial, chi-square), or from numpy's least squares on the same data."""

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from analysis.stats.assisted import (
    OUTCOMES,
    cnn_following,
    gain_by_experience,
    mcnemar_by_reader,
    paired_bootstrap,
    reader_gains,
    switching_table,
)
from analysis.stats.inputs import InputError

# 2 readers x 4 cases; truth c1, c2 = mel, c3 = nev, c4 = bcc; the CNN says mel on all
# four (right on c1, c2; wrong on c3, c4).
#   reader A: c1 mel->mel (unchanged correct), c2 nev->mel (incorrect -> correct),
#             c3 nev->mel (correct -> incorrect), c4 nev->mel (changed, still incorrect)
#   reader B: c1 mel->mel (unchanged correct), c2 nev->nev (unchanged incorrect),
#             c3 nev->nev (unchanged correct), c4 bcc->bcc (unchanged correct)
SMALL = pd.DataFrame(
    [
        ("A", "c1", "mel", "mel", "mel", "mel", 2, "resident"),
        ("A", "c2", "mel", "nev", "mel", "mel", 2, "resident"),
        ("A", "c3", "nev", "nev", "mel", "mel", 2, "resident"),
        ("A", "c4", "bcc", "nev", "mel", "mel", 2, "resident"),
        ("B", "c1", "mel", "mel", "mel", "mel", 10, "expert"),
        ("B", "c2", "mel", "nev", "nev", "mel", 10, "expert"),
        ("B", "c3", "nev", "nev", "nev", "mel", 10, "expert"),
        ("B", "c4", "bcc", "bcc", "bcc", "mel", 10, "expert"),
    ],
    columns=["reader", "case", "truth", "unaided", "aided", "ai", "years", "level"],
)


def counts(table, grouping, group):
    part = table[(table["grouping"] == grouping) & (table["group"] == group)]
    return dict(zip(part["outcome"], part["count"], strict=True)), part


def test_switching_table_overall_counts_by_hand():
    got, part = counts(switching_table(SMALL), "overall", "all")
    assert got == {
        "unchanged_correct": 4,
        "correct_to_incorrect": 1,
        "incorrect_to_correct": 1,
        "unchanged_incorrect": 1,
        "changed_still_incorrect": 1,
    }
    assert (part["reads"] == 8).all()
    assert part.set_index("outcome")["proportion"].to_dict() == {
        "unchanged_correct": 0.5,
        "correct_to_incorrect": 0.125,
        "incorrect_to_correct": 0.125,
        "unchanged_incorrect": 0.125,
        "changed_still_incorrect": 0.125,
    }


def test_switching_table_per_true_class_by_hand():
    table = switching_table(SMALL)
    zero = dict.fromkeys(OUTCOMES, 0)
    assert counts(table, "class", "mel")[0] == {
        **zero,
        "unchanged_correct": 2,
        "incorrect_to_correct": 1,
        "unchanged_incorrect": 1,
    }
    assert counts(table, "class", "nev")[0] == {
        **zero,
        "unchanged_correct": 1,
        "correct_to_incorrect": 1,
    }
    assert counts(table, "class", "bcc")[0] == {
        **zero,
        "unchanged_correct": 1,
        "changed_still_incorrect": 1,
    }
    assert counts(table, "class", "mel")[1]["proportion"].sum() == pytest.approx(1.0)


def test_switching_table_per_subgroup_by_hand():
    table = switching_table(SMALL, subgroups=["level", "years"])
    assert counts(table, "level", "resident")[0] == {
        "unchanged_correct": 1,
        "correct_to_incorrect": 1,
        "incorrect_to_correct": 1,
        "unchanged_incorrect": 0,
        "changed_still_incorrect": 1,
    }
    assert counts(table, "years", "10")[0] == {
        **dict.fromkeys(OUTCOMES, 0),
        "unchanged_correct": 3,
        "unchanged_incorrect": 1,
    }


def test_cnn_following_by_hand():
    table = cnn_following(SMALL).set_index("cnn_correct")
    right, wrong = table.loc[True], table.loc[False]
    # CNN right (c1, c2): unaided A c1, B c1 correct of 4; aided A c1, A c2, B c1;
    # disagreeing A c2, B c2 (said nev); only A then took mel
    assert (right.reads, right.unaided_accuracy, right.aided_accuracy) == (4, 0.5, 0.75)
    assert (right.disagreeing, right.followed, right.follow_rate) == (2, 1, 0.5)
    # CNN wrong (c3, c4): unaided correct A c3, B c3, B c4; aided B c3, B c4;
    # all four disagreed with mel, A followed twice
    assert (wrong.reads, wrong.unaided_accuracy, wrong.aided_accuracy) == (4, 0.75, 0.5)
    assert (wrong.disagreeing, wrong.followed, wrong.follow_rate) == (4, 2, 0.5)
    assert table.index.tolist() == [True, False]


def test_cnn_following_per_reader():
    table = cnn_following(SMALL, by=["reader"])
    b_wrong = table[(table["reader"] == "B") & ~table["cnn_correct"]].iloc[0]
    assert (b_wrong.disagreeing, b_wrong.followed) == (2, 0)
    b_right = table[(table["reader"] == "B") & table["cnn_correct"]].iloc[0]
    assert (b_right.disagreeing, b_right.followed, b_right.follow_rate) == (1, 0, 0.0)


def test_labels_compare_as_strings():
    numeric = SMALL.replace({"mel": 0, "nev": 1, "bcc": 2})
    # truth "0" against answers 0: the same label
    mixed = numeric.assign(truth=numeric["truth"].astype(str))
    names = {"all": "all", "0": "mel", "1": "nev", "2": "bcc"}
    ours = switching_table(mixed).assign(group=lambda t: t["group"].map(names))
    keys = ["grouping", "group", "outcome"]
    expected = switching_table(SMALL).sort_values(keys, ignore_index=True)
    pd.testing.assert_frame_equal(ours.sort_values(keys, ignore_index=True), expected)


def reads_from_table(reader: str, both: int, b: int, c: int, neither: int) -> pd.DataFrame:
    """One reader's binary reads with the given paired 2x2 table (rows: unaided correct /
    wrong; columns: aided correct / wrong)."""
    cells = [(1, 1)] * both + [(1, 0)] * b + [(0, 1)] * c + [(0, 0)] * neither
    return pd.DataFrame(
        {
            "reader": reader,
            "case": [f"k{i}" for i in range(len(cells))],
            "truth": "1",
            "unaided": ["1" if u else "0" for u, _ in cells],
            "aided": ["1" if a else "0" for _, a in cells],
            "ai": "1",
        }
    )


def test_mcnemar_per_reader_against_hand_binomial_and_chi_square():
    reads = pd.concat(
        [
            reads_from_table("R1", 20, 2, 8, 5),  # 10 discordant: exact
            reads_from_table("R2", 20, 10, 20, 5),  # 30 discordant: chi-square
            reads_from_table("R3", 20, 0, 6, 5),  # 6 discordant: exact
        ]
    )
    table = mcnemar_by_reader(reads).set_index("reader")
    r1, r2, r3 = table.loc["R1"], table.loc["R2"], table.loc["R3"]
    # exact: p = 2 P(X <= 2), X ~ Bin(10, 1/2) = 2 (1 + 10 + 45) / 1024
    assert (r1.method, r1.correct_to_incorrect, r1.incorrect_to_correct) == ("exact", 2, 8)
    assert r1.statistic == 2
    assert r1.p == pytest.approx(2 * 56 / 1024, abs=1e-12)
    # chi-square with continuity correction: (|10 - 20| - 1)^2 / 30 = 2.7 on 1 df,
    # P(chi2_1 > x) = erfc(sqrt(x / 2))
    assert r2.method == "chi2_cc"
    assert r2.statistic == pytest.approx(2.7)
    assert r2.p == pytest.approx(math.erfc(math.sqrt(2.7 / 2)), abs=1e-12)
    # exact: 2 P(X <= 0), X ~ Bin(6, 1/2) = 2 / 64
    assert r3.p == pytest.approx(2 / 64, abs=1e-12)
    # Holm by hand: sorted p3 < p2 < p1 -> 3 p3, max(3 p3, 2 p2), max(.., p1)
    p1, p2, p3 = 2 * 56 / 1024, math.erfc(math.sqrt(1.35)), 2 / 64
    assert r3.p_holm == pytest.approx(3 * p3)
    assert r2.p_holm == pytest.approx(max(3 * p3, 2 * p2))
    assert r1.p_holm == pytest.approx(max(3 * p3, 2 * p2, p1))
    assert not table["reject_holm"].any()
    assert (r1.unaided_accuracy, r1.aided_accuracy) == (22 / 35, 28 / 35)


@pytest.mark.parametrize(("discordant", "method"), [(24, "exact"), (25, "chi2_cc")])
def test_mcnemar_switches_to_chi_square_at_25_discordant_pairs(discordant, method):
    assert mcnemar_by_reader(reads_from_table("R", 5, 0, discordant, 5))["method"][0] == method


def test_mcnemar_with_no_discordant_pair_is_p_one():
    assert mcnemar_by_reader(reads_from_table("R", 5, 0, 0, 5))["p"][0] == 1.0


def test_bootstrap_point_estimates_by_hand():
    table = paired_bootstrap(SMALL, n_boot=200, seed=1).set_index(["metric", "class"])
    expected = {
        ("accuracy", "all"): (5 / 8, 5 / 8),
        ("sensitivity", "mel"): (2 / 4, 3 / 4),
        ("sensitivity", "nev"): (2 / 2, 1 / 2),
        ("sensitivity", "bcc"): (1 / 2, 1 / 2),
        ("specificity", "mel"): (4 / 4, 2 / 4),
        ("specificity", "nev"): (3 / 6, 5 / 6),
        ("specificity", "bcc"): (6 / 6, 6 / 6),
    }
    for key, (unaided, aided) in expected.items():
        row = table.loc[key]
        assert (row.unaided, row.aided) == pytest.approx((unaided, aided)), key
        assert row.difference == pytest.approx(aided - unaided), key


def test_bootstrap_of_identical_reads_is_zero_with_zero_width_ci():
    same = SMALL.assign(aided=SMALL["unaided"])
    table = paired_bootstrap(same, n_boot=5000, seed=3)
    assert (table["difference"] == 0).all()
    assert (table["ci_low"] == 0).all() and (table["ci_high"] == 0).all()
    assert (table["se"] == 0).all()


def test_bootstrap_when_every_read_improves_is_one():
    better = SMALL.assign(unaided="zzz", aided=SMALL["truth"])
    row = paired_bootstrap(better, n_boot=1000, seed=0).iloc[0]
    assert (row.metric, row.difference, row.ci_low, row.ci_high) == ("accuracy", 1, 1, 1)


def test_bootstrap_over_cases_matches_the_binomial():
    # one reader, 100 cases, 30 improve and 70 stay correct: a case resample's difference
    # is Bin(100, 0.3) / 100, SD sqrt(0.21 / 100), 2.5% / 97.5% quantiles 21 / 39 cases
    reads = reads_from_table("R", 70, 0, 30, 0)
    row = paired_bootstrap(reads, n_boot=20000, seed=7).iloc[0]
    assert row.difference == pytest.approx(0.3)
    assert row.se == pytest.approx(math.sqrt(0.21 / 100), rel=0.03)
    assert stats.binom.ppf([0.025, 0.975], 100, 0.3).tolist() == [21, 39]
    assert (row.ci_low, row.ci_high) == pytest.approx((0.21, 0.39), abs=1e-12)
    assert row.n_boot == 20000


def test_bootstrap_resamples_readers():
    # reader A improves on every case, reader B on none: the difference of a resample is
    # the share of A among 2 readers drawn with replacement, 0, 1/2 or 1 with
    # probabilities 1/4, 1/2, 1/4, whatever cases are drawn
    a = reads_from_table("A", 0, 0, 40, 0)
    b = reads_from_table("B", 40, 0, 0, 0)
    row = paired_bootstrap(pd.concat([a, b]), n_boot=4000, seed=11).iloc[0]
    assert row.difference == 0.5
    assert (row.ci_low, row.ci_high) == (0.0, 1.0)
    assert row.se == pytest.approx(math.sqrt(0.125), rel=0.05)


def test_bootstrap_is_reproducible_with_a_seed():
    first = paired_bootstrap(SMALL, n_boot=300, seed=5)
    again = paired_bootstrap(SMALL, n_boot=300, seed=np.random.default_rng(5))
    pd.testing.assert_frame_equal(first, again)


def test_reader_gains_by_hand():
    gains = reader_gains(SMALL, covariates=["years"]).set_index("reader")
    assert gains.loc["A"].tolist() == [4, 0.5, 0.5, 0.0, 2]
    assert gains.loc["B"].tolist() == [4, 0.75, 0.75, 0.0, 10]


def experience_reads() -> pd.DataFrame:
    """8 readers, 10 binary cases each; reader j gains (c_j - b_j) / 10."""
    readers = [
        # name, years, level, both correct, correct->incorrect, incorrect->correct, both wrong
        ("r1", 1, "resident", 4, 0, 5, 1),
        ("r2", 2, "resident", 5, 1, 3, 1),
        ("r3", 3, "resident", 6, 0, 3, 1),
        ("r4", 5, "specialist", 6, 1, 2, 1),
        ("r5", 8, "specialist", 7, 0, 2, 1),
        ("r6", 12, "specialist", 8, 1, 1, 0),
        ("r7", 15, "expert", 8, 0, 1, 1),
        ("r8", 20, "expert", 9, 1, 0, 0),
    ]
    parts = [
        reads_from_table(name, both, b, c, n).assign(years=years, level=level)
        for name, years, level, both, b, c, n in readers
    ]
    return pd.concat(parts, ignore_index=True)


def test_gain_by_experience_matches_least_squares():
    reads = experience_reads()
    table = gain_by_experience(reads).set_index("term")
    terms = ["intercept", "years", "level[T.resident]", "level[T.specialist]"]
    assert table.index.tolist() == terms
    # by hand: the same design, numpy least squares, s^2 (X'X)^-1, t on n - p df
    gains = np.array([0.5, 0.2, 0.3, 0.1, 0.2, 0.0, 0.1, -0.1])
    years = np.array([1, 2, 3, 5, 8, 12, 15, 20], dtype=float)
    resident = np.array([1, 1, 1, 0, 0, 0, 0, 0], dtype=float)
    specialist = np.array([0, 0, 0, 1, 1, 1, 0, 0], dtype=float)
    x = np.column_stack([np.ones(8), years, resident, specialist])
    beta, rss, *_ = np.linalg.lstsq(x, gains, rcond=None)
    s2 = rss[0] / (8 - 4)
    se = np.sqrt(np.diag(s2 * np.linalg.inv(x.T @ x)))
    t = beta / se
    assert table["coefficient"].to_numpy() == pytest.approx(beta)
    assert table["se"].to_numpy() == pytest.approx(se)
    assert table["t"].to_numpy() == pytest.approx(t)
    assert table["p"].to_numpy() == pytest.approx(2 * stats.t.sf(np.abs(t), 4))
    q = stats.t.ppf(0.975, 4)
    assert table["ci_low"].to_numpy() == pytest.approx(beta - q * se)
    assert table["ci_high"].to_numpy() == pytest.approx(beta + q * se)
    assert (table["n_readers"] == 8).all() and (table["df_resid"] == 4).all()


def test_gain_on_years_alone_is_the_simple_regression_slope():
    reads = experience_reads()
    table = gain_by_experience(reads, covariates=["years"]).set_index("term")
    gains = np.array([0.5, 0.2, 0.3, 0.1, 0.2, 0.0, 0.1, -0.1])
    years = np.array([1, 2, 3, 5, 8, 12, 15, 20], dtype=float)
    slope = np.cov(years, gains)[0, 1] / years.var(ddof=1)
    assert table.loc["years", "coefficient"] == pytest.approx(slope)
    intercept = gains.mean() - slope * years.mean()
    assert table.loc["intercept", "coefficient"] == pytest.approx(intercept)
    r = np.corrcoef(years, gains)[0, 1]
    assert table["r_squared"].iloc[0] == pytest.approx(r**2)


def test_categorical_level_uses_its_category_order():
    reads = experience_reads()
    reads["level"] = pd.Categorical(reads["level"], ["resident", "specialist", "expert"])
    terms = gain_by_experience(reads)["term"].tolist()
    assert terms == ["intercept", "years", "level[T.specialist]", "level[T.expert]"]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d.drop(columns="ai"), "lacks column"),
        (lambda d: pd.concat([d, d.iloc[:1]]), "more than one row"),
        (lambda d: d.assign(truth=["mel", "nev", *d["truth"][2:]]), "different truths"),
        (lambda d: d.assign(aided=[None, *d["aided"][1:]]), "missing values in rows 1"),
    ],
)
def test_bad_reads_raise_input_error(change, message):
    with pytest.raises(InputError, match=message):
        switching_table(change(SMALL))


def test_covariate_must_be_constant_within_a_reader():
    bad = SMALL.assign(years=[2, 3, 2, 2, 10, 10, 10, 10])
    with pytest.raises(InputError, match="years must be the same"):
        reader_gains(bad, covariates=["years"])


def test_regression_needs_more_readers_than_coefficients():
    with pytest.raises(InputError, match="2 readers cannot estimate 3"):
        gain_by_experience(SMALL)
