import warnings

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score
from sklearn.preprocessing import label_binarize

from analysis.stats.roc import auc_table, delong_covariance, delong_test, roc_curves, wilcoxon_auc

# pROC tests/testthat/test-roc.test.R (xrobin/pROC): roc.test(r.wfns, r.s100b) etc.
PROC = {
    ("wfns", "s100b"): (
        2.20898359144091,
        0.0271757822291882,
        0.0104061769564846,
        0.174214419249478,
    ),
    ("wfns", "ndka"): (
        2.79777591868904,
        0.00514557970691098,
        0.0634011709339876,
        0.3600405634833566,
    ),
    ("ndka", "s100b"): (
        -1.39077002573558,
        0.164295175223054,
        -0.2876917446341914,
        0.0488706064228094,
    ),
}


@pytest.fixture(scope="module")
def asah(reference_csv):
    return reference_csv("asah.csv")


@pytest.mark.parametrize(("first", "second"), list(PROC))
def test_delong_test_reproduces_proc_roc_test(asah, first, second):
    positive = (asah["outcome"] == "Poor").to_numpy()
    res = delong_test(positive, asah[first].to_numpy(float), asah[second].to_numpy(float))
    z, p, lo, hi = PROC[(first, second)]
    assert res.z == pytest.approx(z, rel=1e-9)
    assert res.p == pytest.approx(p, rel=1e-9)
    assert res.ci_low == pytest.approx(lo, rel=1e-9)
    assert res.ci_high == pytest.approx(hi, rel=1e-9)


def test_delong_test_prints_the_documented_proc_example(asah):
    # pROC's roc.test documentation: AUCs 0.8237 and 0.7314, Z = 2.209, p-value = 0.02718
    positive = (asah["outcome"] == "Poor").to_numpy()
    res = delong_test(positive, asah["wfns"].to_numpy(float), asah["s100b"].to_numpy(float))
    assert round(res.auc1, 4) == 0.8237
    assert round(res.auc2, 4) == 0.7314
    assert round(res.z, 3) == 2.209
    assert round(res.p, 5) == 0.02718


def test_identical_curves_give_z_zero_and_p_one(asah):
    positive = (asah["outcome"] == "Poor").to_numpy()
    res = delong_test(positive, asah["wfns"].to_numpy(float), asah["wfns"].to_numpy(float))
    assert res.z == 0 and res.p == 1


def test_wilcoxon_auc_matches_sklearn_and_skips_missing():
    rng = np.random.default_rng(1)
    truth = rng.random(60) < 0.4
    scores = rng.normal(size=(3, 60)) + truth
    scores[1, :5] = np.nan
    auc = wilcoxon_auc(scores, truth)
    assert auc[0] == pytest.approx(roc_auc_score(truth, scores[0]))
    assert auc[1] == pytest.approx(roc_auc_score(truth[5:], scores[1, 5:]))


def test_hand_computed_auc_with_ties():
    # positives 2, 3; negatives 1, 2: pairs (2>1)=1, (2=2)=0.5, (3>1)=1, (3>2)=1 -> 3.5/4
    assert wilcoxon_auc(np.array([2.0, 3.0, 1.0, 2.0]), np.array([1, 1, 0, 0], bool)) == 0.875


def test_delong_variance_of_single_auc_is_positive_and_symmetric():
    rng = np.random.default_rng(2)
    truth = rng.random(80) < 0.5
    scores = rng.normal(size=(2, 80)) + truth
    _, cov = delong_covariance(scores, truth)
    assert np.allclose(cov, cov.T) and (np.diag(cov) > 0).all()


def test_auc_table_has_classes_macro_and_micro():
    rng = np.random.default_rng(4)
    truth = np.repeat(np.arange(3), 20)
    probs = rng.dirichlet(np.ones(3), 60)
    probs[np.arange(60), truth] += 0.5
    table = auc_table(truth, probs, ["A", "B", "C"])
    assert table["class"].tolist() == ["A", "B", "C", "macro", "micro"]
    assert table.loc[0, "auc"] == pytest.approx(roc_auc_score(truth == 0, probs[:, 0]))
    assert table.loc[3, "auc"] == pytest.approx(table.loc[:2, "auc"].mean())
    assert set(roc_curves(truth, probs, ["A", "B", "C"])["class"]) == {"A", "B", "C"}


def test_auc_table_reproduces_proc_ci_auc_of_ndka(asah):
    # pROC tests/testthat/test-ci.auc.R: ci.auc(r.ndka) (DeLong) on aSAH, outcome Poor
    # positive: 0.501244999271703, 0.611957994579946, 0.722670989888189
    truth = (asah["outcome"] == "Poor").to_numpy().astype(int)
    ndka = asah["ndka"].to_numpy(float)
    table = auc_table(truth, np.column_stack([-ndka, ndka]), ["Good", "Poor"])
    poor = table.set_index("class").loc["Poor"]
    assert poor["ci_low"] == pytest.approx(0.501244999271703, rel=1e-9)
    assert poor["auc"] == pytest.approx(0.611957994579946, rel=1e-9)
    assert poor["ci_high"] == pytest.approx(0.722670989888189, rel=1e-9)
    assert (poor["n_pos"], poor["n_neg"]) == (41, 72)


def test_auc_ci_is_clipped_to_zero_one_like_proc():
    # 3 positives, AUC 0.95: the Wald interval 0.95 + 1.96 SE passes 1; pROC's
    # ci_auc_delong sets ci[ci > 1] <- 1 (R/delong.R), and so do we.
    truth = np.array([1] * 3 + [0] * 10)
    score = np.array([0.9, 0.8, 0.35, *np.linspace(0.0, 0.5, 10)])
    probs = np.column_stack([1 - score, score])
    _, cov = delong_covariance(score, truth.astype(bool))
    auc = wilcoxon_auc(score, truth.astype(bool))
    assert auc + 1.959963984540054 * np.sqrt(cov[0, 0]) > 1  # the unclipped bound
    row = auc_table(truth, probs, ["neg", "pos"]).set_index("class").loc["pos"]
    assert row["auc"] == pytest.approx(auc) and row["ci_high"] == 1.0
    assert row["ci_low"] == pytest.approx(auc - 1.959963984540054 * row["se"])


def test_auc_se_and_ci_are_nan_without_warnings_for_a_single_positive():
    truth = np.array([0, 0, 0, 0, 1, 2, 2, 2])
    probs = np.full((8, 3), 0.2)
    probs[np.arange(8), truth] = 0.6
    probs[4, 1] = 0.5  # class 1 has one positive: an AUC, but no sample covariance
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        table = auc_table(truth, probs, ["A", "B", "C"]).set_index("class")
        test = delong_test(truth == 1, probs[:, 1], probs[:, 0])
    assert table.loc["B", "auc"] == 1.0
    assert np.isnan(table.loc["B", ["se", "ci_low", "ci_high"]].to_numpy(float)).all()
    assert not np.isnan(table.loc["A", "se"])
    assert np.isnan([test.se, test.z, test.p, test.ci_low, test.ci_high]).all()


def test_macro_and_micro_auc_match_sklearn_and_have_no_class_counts():
    rng = np.random.default_rng(5)
    truth = rng.integers(0, 4, 80)
    probs = rng.dirichlet(np.ones(4), 80)
    probs[np.arange(80), truth] += rng.uniform(0, 0.6, 80)
    probs /= probs.sum(axis=1, keepdims=True)
    onehot = label_binarize(truth, classes=[0, 1, 2, 3])
    table = auc_table(truth, probs, ["A", "B", "C", "D"]).set_index("class")
    assert table.loc["macro", "auc"] == pytest.approx(roc_auc_score(onehot, probs, average="macro"))
    assert table.loc["micro", "auc"] == pytest.approx(roc_auc_score(onehot, probs, average="micro"))
    assert np.isnan(table.loc[["macro", "micro"], ["n_pos", "n_neg"]].to_numpy(float)).all()
