import numpy as np
import pandas as pd
import pytest

from analysis.stats.metrics import (
    confusion_counts,
    confusion_matrix,
    encode,
    group_summary,
    jackknife_counts,
    metrics_from_counts,
    metrics_table,
)

# Hand-computed: 10 cases, truth A A A A B B B C C C; one rater answers
#                                  A A B C B B A C C A
TRUTH = np.array([0, 0, 0, 0, 1, 1, 1, 2, 2, 2])
ANSWER = np.array([[0, 0, 1, 2, 1, 1, 0, 2, 2, 0]])


def test_hand_computed_one_vs_rest_metrics():
    counts = confusion_counts(ANSWER, TRUTH, 3)
    # class A: TP 2, FP 2 (cases 7, 10), FN 2, TN 4
    assert (counts.tp[0, 0], counts.fp[0, 0], counts.fn[0, 0], counts.tn[0, 0]) == (2, 2, 2, 4)
    m = metrics_from_counts(counts)
    assert m.sensitivity[0, 0] == pytest.approx(0.5)
    assert m.specificity[0, 0] == pytest.approx(4 / 6)
    assert m.ppv[0, 0] == pytest.approx(0.5)
    assert m.npv[0, 0] == pytest.approx(4 / 6)
    assert m.accuracy[0, 0] == pytest.approx(0.6)
    assert m.f1[0, 0] == pytest.approx(0.5)
    # kappa A: po 0.6, pe (4*4 + 6*6)/100 = 0.52 -> 0.08/0.48
    assert m.kappa[0, 0] == pytest.approx(0.08 / 0.48)
    # top-1: 6 of 10 right; multi-class pe = (4*4 + 3*3 + 3*3)/100 = 0.34
    assert m.top1_accuracy[0] == pytest.approx(0.6)
    assert m.kappa_all[0] == pytest.approx((0.6 - 0.34) / 0.66)
    assert m.macro("sensitivity")[0] == pytest.approx((0.5 + 2 / 3 + 2 / 3) / 3)


def test_missing_answers_are_left_out_per_rater():
    answers = np.vstack([ANSWER, ANSWER])
    answers[1, 0] = -1  # second rater skipped a case it had right
    m = metrics_from_counts(confusion_counts(answers, TRUTH, 3))
    assert m.sensitivity[1, 0] == pytest.approx(1 / 3)
    assert m.top1_accuracy[1] == pytest.approx(5 / 9)


def test_swapping_the_positive_class_swaps_sensitivity_and_specificity():
    rng = np.random.default_rng(0)
    truth = rng.integers(0, 2, 40)
    answers = rng.integers(0, 2, (5, 40))
    m = metrics_from_counts(confusion_counts(answers, truth, 2))
    assert m.sensitivity[:, 0] == pytest.approx(m.specificity[:, 1])
    assert m.specificity[:, 0] == pytest.approx(m.sensitivity[:, 1])
    assert m.kappa[:, 0] == pytest.approx(m.kappa[:, 1])


def test_weighted_counts_equal_counts_of_repeated_cases():
    weights = np.array([2, 0, 1, 1, 3, 0, 1, 1, 0, 1])
    repeated = np.repeat(np.arange(10), weights)
    a = confusion_counts(ANSWER, TRUTH, 3, case_weights=weights[None, :])
    b = confusion_counts(ANSWER[:, repeated], TRUTH[repeated], 3)
    assert a.tp[0] == pytest.approx(b.tp) and a.tn[0] == pytest.approx(b.tn)


def test_jackknife_counts_leave_each_case_out():
    jack = jackknife_counts(ANSWER, TRUTH, 3)
    direct = confusion_counts(np.delete(ANSWER, 3, axis=1), np.delete(TRUTH, 3), 3)
    assert jack.fn[3] == pytest.approx(direct.fn) and jack.fp[3] == pytest.approx(direct.fp)


def test_encode_metrics_table_and_group_summary():
    frame = pd.DataFrame(
        {
            "reader": ["r1"] * 3 + ["r2"] * 3,
            "case": ["1", "2", "3"] * 2,
            "truth": ["A", "B", "B"] * 2,
            "answer": ["A", "B", "A", "A", "A", "B"],
        }
    )
    matrix = encode(frame, rater="reader", choices=["A", "B"])
    table = metrics_table(matrix)
    top1 = table[table["metric"] == "top1_accuracy"].set_index("rater")["estimate"]
    assert top1.to_dict() == pytest.approx({"r1": 2 / 3, "r2": 2 / 3})
    summary = group_summary(table).set_index(["class", "metric"])
    assert summary.loc[("A", "sensitivity"), "mean"] == pytest.approx(1.0)
    assert summary.loc[("B", "sensitivity"), "sd"] == pytest.approx(0.0)
    # rows truth, columns answer, pooled over readers
    assert confusion_matrix(matrix).tolist() == [[2, 0], [2, 2]]


def test_class_all_accuracy_is_the_macro_one_vs_rest_accuracy_not_top1():
    # per class (TP + TN) / n on the hand example: A 6/10, B 8/10, C 8/10 -> 22/30; each
    # wrong answer is one FP and one FN, so the macro value is 1 - 2 (1 - top1) / C.
    m = metrics_from_counts(confusion_counts(ANSWER, TRUTH, 3))
    assert m.accuracy[0] == pytest.approx([0.6, 0.8, 0.8])
    assert m.overall("accuracy")[0] == pytest.approx(22 / 30)
    assert m.overall("accuracy")[0] == pytest.approx(1 - 2 * (1 - 0.6) / 3)
    assert m.top1_accuracy[0] == pytest.approx(0.6)


# --- macro averages leave out a class with no positive case ------------------------------


def test_macro_averages_leave_out_a_class_without_positives_as_scikit_learn():
    # No case is EAD, but readers answer EAD now and then: the macro averages are
    # scikit-learn's over the labels present in the truth (MN, SK, BCC).
    from sklearn.metrics import f1_score, multilabel_confusion_matrix, precision_score, recall_score

    from tests.analysis.factories import CHOICES, no_positive_tables

    answers, _ = no_positive_tables()
    matrix = encode(answers, rater="reader", choices=CHOICES)
    m = metrics_from_counts(confusion_counts(matrix.answers, matrix.truth, matrix.n_classes))
    present = [0, 1, 2]  # MN, SK, BCC; EAD (3) has no positive case
    assert CHOICES[3] == "EAD" and not (matrix.truth == 3).any()
    for r in range(len(matrix.raters)):
        y_true, y_pred = matrix.truth, matrix.answers[r]
        assert (y_pred == 3).any()  # the reader does name EAD
        kw = {"labels": present, "average": "macro", "zero_division": np.nan}
        assert m.macro("sensitivity")[r] == pytest.approx(recall_score(y_true, y_pred, **kw))
        assert m.macro("ppv")[r] == pytest.approx(precision_score(y_true, y_pred, **kw))
        assert m.macro("f1")[r] == pytest.approx(f1_score(y_true, y_pred, **kw))
        mcm = multilabel_confusion_matrix(y_true, y_pred, labels=present)  # [[tn fp] [fn tp]]
        tn, fp, fn, tp = mcm[:, 0, 0], mcm[:, 0, 1], mcm[:, 1, 0], mcm[:, 1, 1]
        assert m.macro("specificity")[r] == pytest.approx(np.mean(tn / (tn + fp)))
        assert m.macro("npv")[r] == pytest.approx(np.mean(tn / (tn + fn)))
        assert m.macro("accuracy")[r] == pytest.approx(np.mean((tp + tn) / len(y_true)))
        # with EAD the average would be different (its trivial one-vs-rest accuracy)
        with_ead = np.mean(m.accuracy[r])
        assert with_ead != pytest.approx(m.macro("accuracy")[r])


def test_a_reader_without_a_positive_of_a_class_leaves_it_out_of_their_own_macro():
    # Two raters on the hand example; the second skipped every C case (7, 8, 9).
    answers = np.vstack([ANSWER, ANSWER])
    answers[1, 7:] = -1
    m = metrics_from_counts(confusion_counts(answers, TRUTH, 3))
    assert m.positives[1].tolist() == [4, 3, 0]
    assert m.macro("specificity")[1] == pytest.approx(np.nanmean(m.specificity[1, :2]))
    assert m.macro("specificity")[0] == pytest.approx(np.mean(m.specificity[0]))
