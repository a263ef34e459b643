import pandas as pd
import pytest

from analysis.stats.inputs import (
    InputError,
    check_consistent_truth,
    load_answers,
    load_predictions,
)


def answers(**changes) -> pd.DataFrame:
    frame = pd.DataFrame(
        {
            "reader": ["r1", "r1", "r2", "r2"],
            "case": ["c1", "c2", "c1", "c2"],
            "truth": ["MN", "SK", "MN", "SK"],
            "answer": ["MN", "MN", "SK", "SK"],
        }
    )
    for column, values in changes.items():
        frame[column] = values
    return frame


def predictions(**changes) -> pd.DataFrame:
    frame = pd.DataFrame(
        {
            "model": ["cnn", "cnn"],
            "case": ["c1", "c2"],
            "truth": ["MN", "SK"],
            "answer": ["MN", "SK"],
            "prob_MN": [0.8, 0.3],
            "prob_SK": [0.2, 0.7],
        }
    )
    for column, values in changes.items():
        frame[column] = values
    return frame


def test_valid_answers_default_choices_are_sorted_truths():
    loaded = load_answers(answers())
    assert loaded.attrs["choices"] == ["MN", "SK"]


def test_answers_from_csv_path(tmp_path):
    path = tmp_path / "answers.csv"
    answers().to_csv(path, index=False)
    assert len(load_answers(path)) == 4


def test_partial_reader_is_kept():
    loaded = load_answers(answers().iloc[:3])
    assert loaded.groupby("reader").size().to_dict() == {"r1": 2, "r2": 1}


def test_answer_outside_choices_names_the_row():
    with pytest.raises(InputError, match=r"answer outside the choices.*row 3 \(reader='r2'.*'BCC'"):
        load_answers(answers(answer=["MN", "MN", "BCC", "SK"]))


def test_missing_column_is_named():
    with pytest.raises(InputError, match=r"lacks column.*answer"):
        load_answers(answers().drop(columns="answer"))


def test_case_without_truth_names_the_row():
    with pytest.raises(InputError, match=r"case without truth.*row 2"):
        load_answers(answers(truth=["MN", None, "MN", "SK"]))


def test_duplicate_reader_case_names_both_rows():
    frame = pd.concat([answers(), answers().iloc[[0]]], ignore_index=True)
    with pytest.raises(InputError, match=r"more than one row.*row 1 .*row 5 "):
        load_answers(frame)


def test_truth_differing_between_rows_names_the_rows():
    with pytest.raises(InputError, match=r"different truths.*row 1 .*row 3 "):
        load_answers(answers(truth=["MN", "SK", "SK", "SK"]))


def test_truth_outside_given_choices_names_the_row():
    with pytest.raises(InputError, match=r"truth outside the choices.*row 2"):
        load_answers(answers(), choices=["MN", "BCC"])


def test_probability_column_for_unknown_label():
    with pytest.raises(InputError, match="prob_BCC"):
        load_predictions(predictions(prob_BCC=[0.0, 0.0]), ["MN", "SK"])


def test_missing_probability_column():
    with pytest.raises(InputError, match=r"missing probability column.*prob_SK"):
        load_predictions(predictions().drop(columns="prob_SK"), ["MN", "SK"])


def test_non_numeric_probability_names_the_row():
    with pytest.raises(InputError, match=r"probability in row 2"):
        load_predictions(predictions(prob_SK=[0.2, "high"]), ["MN", "SK"])


def test_duplicate_model_case():
    frame = pd.concat([predictions(), predictions().iloc[[1]]], ignore_index=True)
    with pytest.raises(InputError, match=r"\(model, case\).*row 2 .*row 3 "):
        load_predictions(frame, ["MN", "SK"])


def test_predictions_without_probabilities_are_accepted():
    loaded = load_predictions(predictions().drop(columns=["prob_MN", "prob_SK"]), ["MN", "SK"])
    assert len(loaded) == 2


def test_truth_differing_between_tables_names_case_and_rows():
    a = load_answers(answers())
    p = load_predictions(predictions(truth=["SK", "SK"]), ["MN", "SK"])
    with pytest.raises(
        InputError, match=r"case 'c1': truth 'MN' in answers row 1, 'SK' in predictions row 1"
    ):
        check_consistent_truth(a, p)


def test_numeric_labels_are_compared_as_strings():
    loaded = load_answers(answers(truth=[0, 1, 0, 1], answer=[0, 0, 1, 1]), choices=["0", "1"])
    assert loaded["answer"].tolist() == ["0", "0", "1", "1"]


def test_numeric_labels_with_a_blank_answer_name_the_missing_row(tmp_path):
    # Read as floats, one blank cell would turn every label into "0.0"/"1.0" and every
    # row would be "outside the choices"; read as text only the blank row is wrong.
    path = tmp_path / "answers.csv"
    path.write_text("reader,case,truth,answer\nr1,1,0,0\nr1,2,1,\nr1,3,1,1\n")
    with pytest.raises(InputError) as caught:
        load_answers(path, choices=["0", "1"])
    assert str(caught.value) == (
        "answers: answer is missing in row 2 (reader='r1', case='2', truth='1', answer=None)"
    )
    path.write_text("reader,case,truth,answer\nr1,1,0,0\nr1,2,1,1\nr1,3,1,1\n")
    assert load_answers(path, choices=["0", "1"])["answer"].tolist() == ["0", "1", "1"]


def test_missing_answer_is_not_called_outside_the_choices():
    with pytest.raises(InputError, match=r"^answers: answer is missing in row 3 \(reader='r2'"):
        load_answers(answers(answer=["MN", "MN", "  ", "SK"]))


def test_missing_model_answer_names_the_row():
    with pytest.raises(InputError, match=r"^predictions: answer is missing in row 1 \("):
        load_predictions(predictions(answer=[None, "SK"]), ["MN", "SK"])


def test_case_without_truth_in_predictions_names_the_row():
    with pytest.raises(InputError, match=r"^predictions: case without truth in row 2 \("):
        load_predictions(predictions(truth=["MN", None]), ["MN", "SK"])


def test_probability_outside_zero_one_names_the_rows():
    with pytest.raises(InputError) as caught:
        load_predictions(predictions(prob_MN=[1.2, 0.3], prob_SK=[-0.2, 0.7]), ["MN", "SK"])
    assert str(caught.value) == (
        "predictions: probability outside [0, 1] in row 1 "
        "(model='cnn', case='c1', prob_MN=1.2, prob_SK=-0.2)"
    )


def test_probabilities_not_summing_to_one_are_a_warning_not_an_error():
    loaded = load_predictions(predictions(prob_MN=[0.8, 0.5], prob_SK=[0.2, 0.4]), ["MN", "SK"])
    assert loaded.attrs["warnings"] == [
        "predictions: probabilities do not sum to 1 (tolerance 0.001) in 1 row(s): "
        "row 2 (model='cnn', case='c2')"
    ]
    within = load_predictions(predictions(prob_MN=[0.8, 0.3005], prob_SK=[0.2, 0.7]), ["MN", "SK"])
    assert within.attrs["warnings"] == []
