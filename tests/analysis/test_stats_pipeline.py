import json

import numpy as np
import pandas as pd
import pytest

from analysis.stats import InputError, analyze_tables
from analysis.stats.pipeline import PER_CLASS_COLUMNS

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
    result = analyze_tables(answers, predictions, CHOICES, n_bootstrap=100)
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
    json.dumps(result.summary)


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
    assert result.auc.empty and result.summary["choices"] == sorted(CHOICES)


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
