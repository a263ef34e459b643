import numpy as np
import pandas as pd
import pytest
from statsmodels.stats.multitest import multipletests

from analysis.stats.compare import (
    COLUMNS,
    bootstrap_compare,
    holm,
    mrmc_compare,
    z_kappa,
)
from analysis.stats.kappa import cohen_kappa, contingency_tables, one_vs_rest_tables
from analysis.stats.metrics import RatingMatrix
from analysis.stats.mrmc import ai_vs_readers


def study(seed=0, n_readers=12, n_cases=60, n_classes=3):
    rng = np.random.default_rng(seed)
    truth = np.repeat(np.arange(n_classes), n_cases // n_classes)
    right = rng.random((n_readers, len(truth))) < rng.uniform(0.5, 0.9, (n_readers, 1))
    answers = np.where(right, truth, (truth + rng.integers(1, n_classes, right.shape)) % n_classes)
    answers[0, :3] = -1
    choices = [f"D{c}" for c in range(n_classes)]
    cases = [str(k) for k in range(len(truth))]
    readers = RatingMatrix([f"r{i}" for i in range(n_readers)], cases, choices, answers, truth)
    logits = rng.normal(size=(2, len(truth), n_classes))
    logits[:, np.arange(len(truth)), truth] += 1.5
    probs = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    models = RatingMatrix(["m1", "m2"], cases, choices, probs.argmax(-1), truth, probs)
    return readers, models


def test_holm_matches_statsmodels():
    p = np.array([0.01, 0.04, 0.03, 0.2, 0.005])
    assert holm(p) == pytest.approx(multipletests(p, method="holm")[1])


def test_z_kappa_follows_its_formula():
    readers, models = study()
    table = z_kappa(readers, models)
    assert list(table.columns) == COLUMNS
    row = table[(table["model"] == "m1") & (table["class"] == "D1")].iloc[0]
    reader_k = cohen_kappa(
        one_vs_rest_tables(contingency_tables(readers.answers, readers.truth[None], 3))
    ).kappa[:, 1]
    model = cohen_kappa(one_vs_rest_tables(contingency_tables(models.answers[0], models.truth, 3)))
    se = np.sqrt(model.ase[1] ** 2 + reader_k.var(ddof=1) / len(reader_k))
    assert row.readers_value == pytest.approx(reader_k.mean())
    assert row.statistic == pytest.approx((model.kappa[1] - reader_k.mean()) / se)
    classes = table[(table["model"] == "m1") & (table["class"] != "all")]
    assert classes["p_adjusted"].to_numpy() == pytest.approx(holm(classes["p"].to_numpy()))


def test_bonferroni_on_request():
    readers, models = study()
    table = z_kappa(readers, models, adjust="bonferroni")
    classes = table[(table["model"] == "m2") & (table["class"] != "all")]
    assert classes["p_adjusted"].to_numpy() == pytest.approx(
        np.minimum(1, classes["p"].to_numpy() * 3)
    )


def test_seeded_bootstrap_repeats_exactly_and_seed_matters():
    readers, models = study()
    a = bootstrap_compare(readers, models, n_bootstrap=200, seed=7)
    b = bootstrap_compare(readers, models, n_bootstrap=200, seed=7)
    c = bootstrap_compare(readers, models, n_bootstrap=200, seed=8)
    pd.testing.assert_frame_equal(a, b)
    assert not np.allclose(a["ci_low"], c["ci_low"], equal_nan=True)


def test_bootstrap_ci_contains_the_point_difference():
    readers, models = study()
    table = bootstrap_compare(readers, models, n_bootstrap=500, seed=1)
    assert set(table["metric"]) == {
        "kappa",
        "sensitivity",
        "specificity",
        "accuracy",
        "top1_accuracy",
    }
    inside = (table["ci_low"] <= table["difference"]) & (table["difference"] <= table["ci_high"])
    assert inside.mean() > 0.9


def test_mrmc_compare_auc_matches_direct_single_treatment_analysis():
    readers, models = study()
    table = mrmc_compare(readers, models)
    row = table[(table["model"] == "m2") & (table["class"] == "D0") & (table["metric"] == "auc")
                & (table["method"] == "mrmc_rrrc")].iloc[0]  # fmt: skip
    said = np.where(readers.answers >= 0, (readers.answers == 0).astype(float), np.nan)
    direct = ai_vs_readers(said, models.probs[1, :, 0], (readers.truth == 0).astype(int))
    rrrc = direct.analyses.set_index("analysis").loc["rrrc"]
    assert row.difference == pytest.approx(-direct.difference)
    assert row.ci_low == pytest.approx(-rrrc.ci_high)
    assert row.p == pytest.approx(rrrc.p)
    assert set(table["method"]) == {"mrmc_rrrc", "mrmc_rrfc"}
