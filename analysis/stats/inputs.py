"""Validation of the two tidy input tables of a reader study (their columns are in
:mod:`analysis.stats.columns`).

answers:      one row per reader x case (x reading condition, ``condition``):
              ``reader, case, truth, answer`` plus optional reader/answer attributes
              (``level``, ``years``, ``confidence``, ``seconds``, ``session``,
              ``ai_answer``...).
predictions:  one row per model x case: ``model, case, truth, answer`` plus, optionally,
              one ``prob_<CODE>`` column per choice.

Labels (truth, answer, choices) are compared as strings, so ``1`` and ``"1"`` are the same
label; from a CSV file they are read as text, so numeric labels keep their spelling even
when a cell is blank. Every error is an :class:`InputError` whose message names the
offending rows: row numbers count data rows from 1 (the header is not counted), i.e. CSV
line = row + 1. Problems that do not stop the analysis (probabilities of a row that do
not sum to 1) are returned as messages in ``attrs["warnings"]`` of the loaded table.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from analysis.stats.columns import (
    AI_ANSWER_COLUMN,
    AI_PROBABILITY_COLUMN,
    ANSWER_COLUMNS,
    CHANGED_COLUMN,
    CONDITION_COLUMN,
    FINISHED_COLUMN,
    PREDICTION_COLUMNS,
    PROB_PREFIX,
    SESSION_COLUMN,
)

PROB_SUM_TOLERANCE = 1e-3
_MAX_LISTED = 10
# Read as text from a file, so "0"/"1" labels stay "0"/"1" when a blank cell would
# otherwise turn the whole column into floats ("0.0").
_TEXT_COLUMNS = tuple(
    dict.fromkeys((*ANSWER_COLUMNS, *PREDICTION_COLUMNS, CONDITION_COLUMN, AI_ANSWER_COLUMN))
)


class InputError(ValueError):
    """A reader-study table that cannot be analysed; the message names the rows."""


def _read(df_or_path: pd.DataFrame | str | Path, what: str) -> pd.DataFrame:
    if isinstance(df_or_path, pd.DataFrame):
        frame = df_or_path.copy()
    else:
        try:
            frame = pd.read_csv(df_or_path, dtype=dict.fromkeys(_TEXT_COLUMNS, str))
        except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
            raise InputError(f"cannot read the {what} table {df_or_path}: {exc}") from exc
    if frame.empty:
        raise InputError(f"the {what} table has no rows")
    return frame.reset_index(drop=True)


def _plain(value):
    """The Python value for a message: ``0.5``, not ``np.float64(0.5)``; a missing value
    (None, NaN, pd.NA) is None."""
    if value is pd.NA or (isinstance(value, float | np.floating) and np.isnan(value)):
        return None
    return value.item() if isinstance(value, np.generic) else value


def _rows(mask: np.ndarray | pd.Series, frame: pd.DataFrame, columns: Sequence[str]) -> str:
    """'row 3 (reader=r1, case=7, answer=XX), ...': 1-based data rows, at most 10 listed."""
    positions = np.flatnonzero(np.asarray(mask))
    parts = []
    for pos in positions[:_MAX_LISTED]:
        values = ", ".join(
            f"{c}={_plain(frame[c].iloc[pos])!r}" for c in columns if c in frame.columns
        )
        parts.append(f"row {pos + 1} ({values})")
    more = len(positions) - _MAX_LISTED
    if more > 0:
        parts.append(f"and {more} more")
    return "; ".join(parts)


def _label(series: pd.Series) -> pd.Series:
    """Labels as strings; missing stays missing (NaN) so it can be reported."""
    text = series.astype("string").str.strip()
    return text.where(text.notna() & (text != ""), None).astype(object)


def _require_columns(frame: pd.DataFrame, required: Sequence[str], what: str) -> None:
    missing = [c for c in required if c not in frame.columns]
    if missing:
        raise InputError(
            f"the {what} table lacks column(s) {', '.join(missing)}; "
            f"it has {', '.join(map(str, frame.columns))}"
        )


def _validate_common(
    frame: pd.DataFrame,
    rater: str,
    choices: Sequence[str] | None,
    what: str,
    within: Sequence[str] = (),
) -> tuple[pd.DataFrame, list[str]]:
    """``within``: further key columns of a row (the reading condition), so that a
    reader answers a case once per condition."""
    ident = [rater, "case", *within, "truth", "answer"]
    frame[rater] = frame[rater].astype("string").astype(object)
    frame["case"] = frame["case"].astype("string").astype(object)
    for column in (rater, "case"):
        missing = frame[column].isna().to_numpy()
        if missing.any():
            raise InputError(f"{what}: {column} is missing in " + _rows(missing, frame, ident))
    frame["truth"] = _label(frame["truth"])
    frame["answer"] = _label(frame["answer"])

    no_truth = frame["truth"].isna().to_numpy()
    if no_truth.any():
        raise InputError(f"{what}: case without truth in " + _rows(no_truth, frame, ident))

    if choices is None:
        choices = sorted(frame["truth"].unique())
    else:
        choices = [str(c).strip() for c in choices]
        if len(set(choices)) != len(choices):
            raise InputError(f"choices contain duplicates: {choices}")
    if len(choices) < 2:
        raise InputError(f"{what}: at least two choices are needed, got {choices}")
    allowed = set(choices)

    bad_truth = ~frame["truth"].isin(allowed).to_numpy()
    if bad_truth.any():
        raise InputError(
            f"{what}: truth outside the choices {choices} in " + _rows(bad_truth, frame, ident)
        )
    no_answer = frame["answer"].isna().to_numpy()
    if no_answer.any():
        raise InputError(f"{what}: answer is missing in " + _rows(no_answer, frame, ident))
    bad_answer = ~frame["answer"].isin(allowed).to_numpy()
    if bad_answer.any():
        raise InputError(
            f"{what}: answer outside the choices {choices} in " + _rows(bad_answer, frame, ident)
        )

    keys = [rater, "case", *within]
    duplicated = frame.duplicated(keys, keep=False).to_numpy()
    if duplicated.any():
        raise InputError(
            f"{what}: more than one row per ({', '.join(keys)}) in "
            + _rows(duplicated, frame, ident)
        )

    n_truths = frame.groupby("case", sort=False)["truth"].transform("nunique").to_numpy()
    conflicting = n_truths > 1
    if conflicting.any():
        raise InputError(
            f"{what}: a case has different truths in " + _rows(conflicting, frame, ident)
        )
    return frame, list(choices)


_TRUE = frozenset({"true", "1", "yes"})
_FALSE = frozenset({"false", "0", "no"})


def _finished_flags(frame: pd.DataFrame) -> None:
    """Parse the optional ``finished`` column in place to booleans: True/False, 1/0 or
    yes/no in any case; anything else (a blank too) or a value that differs within a
    reader is an :class:`InputError` naming the rows or readers."""
    raw = frame[FINISHED_COLUMN]
    text = raw.map(lambda v: str(_plain(v)).strip().lower() if _plain(v) is not None else "")
    text = text.replace({"1.0": "1", "0.0": "0"})
    bad = ~text.isin(_TRUE | _FALSE).to_numpy()
    if bad.any():
        raise InputError(
            f"answers: {FINISHED_COLUMN} must be True or False in "
            + _rows(bad, frame, ["reader", "case", FINISHED_COLUMN])
        )
    frame[FINISHED_COLUMN] = text.isin(_TRUE).to_numpy()
    varies = frame.groupby("reader")[FINISHED_COLUMN].nunique() > 1
    if varies.any():
        raise InputError(
            f"answers: {FINISHED_COLUMN} differs within reader(s) "
            + ", ".join(map(str, varies[varies].index[:_MAX_LISTED]))
        )


def _conditions(frame: pd.DataFrame) -> list[str]:
    """The reading conditions of a table with a ``condition`` column, as text, in the
    order they first appear (the study's order: the loaders sort by it); a condition
    missing on some rows of a table of several conditions is an :class:`InputError`."""
    text = _label(frame[CONDITION_COLUMN])
    conditions = list(dict.fromkeys(text.dropna()))
    if len(conditions) > 1:
        missing = text.isna().to_numpy()
        if missing.any():
            raise InputError(
                f"answers: {CONDITION_COLUMN} is missing in "
                + _rows(missing, frame, ["reader", "case", CONDITION_COLUMN])
            )
        frame[CONDITION_COLUMN] = text
    return conditions


def _reading_columns(frame: pd.DataFrame, choices: Sequence[str]) -> None:
    """Parse the optional :data:`~analysis.stats.columns.READING_COLUMNS` in place:
    ``session`` to a nullable integer >= 1, ``ai_answer`` to a label among the choices
    (missing where the condition showed no CNN), ``ai_top_probability`` to a number in
    [0, 1] and ``changed`` to a nullable boolean; anything else is an
    :class:`InputError` naming the rows. Parsing twice gives the same table."""
    ident = ["reader", "case", CONDITION_COLUMN]
    if SESSION_COLUMN in frame.columns:
        raw = frame[SESSION_COLUMN]
        number = pd.to_numeric(raw, errors="coerce")
        blank = raw.isna() | (raw.astype("string").str.strip() == "")
        bad = (~blank & (number.isna() | (number < 1) | (number != np.round(number)))).to_numpy()
        if bad.any():
            raise InputError(
                f"answers: {SESSION_COLUMN} must be a whole number from 1 in "
                + _rows(bad, frame, [*ident, SESSION_COLUMN])
            )
        frame[SESSION_COLUMN] = number.round().astype("Int64")
    if AI_ANSWER_COLUMN in frame.columns:
        frame[AI_ANSWER_COLUMN] = _label(frame[AI_ANSWER_COLUMN])
        shown = frame[AI_ANSWER_COLUMN].notna()
        bad = (shown & ~frame[AI_ANSWER_COLUMN].isin(set(choices))).to_numpy()
        if bad.any():
            raise InputError(
                f"answers: {AI_ANSWER_COLUMN} outside the choices {list(choices)} in "
                + _rows(bad, frame, [*ident, AI_ANSWER_COLUMN])
            )
    if AI_PROBABILITY_COLUMN in frame.columns:
        raw = frame[AI_PROBABILITY_COLUMN]
        number = pd.to_numeric(raw, errors="coerce")
        blank = raw.isna() | (raw.astype("string").str.strip() == "")
        bad = (~blank & (number.isna() | (number < 0) | (number > 1))).to_numpy()
        if bad.any():
            raise InputError(
                f"answers: {AI_PROBABILITY_COLUMN} must be a probability in [0, 1] in "
                + _rows(bad, frame, [*ident, AI_PROBABILITY_COLUMN])
            )
        frame[AI_PROBABILITY_COLUMN] = number.astype(float)
    if CHANGED_COLUMN in frame.columns:
        text = frame[CHANGED_COLUMN].map(
            lambda v: str(_plain(v)).strip().lower() if _plain(v) is not None else ""
        )
        text = text.replace({"1.0": "1", "0.0": "0"})
        bad = ~text.isin(_TRUE | _FALSE | {""}).to_numpy()
        if bad.any():
            raise InputError(
                f"answers: {CHANGED_COLUMN} must be True, False or empty in "
                + _rows(bad, frame, [*ident, CHANGED_COLUMN])
            )
        frame[CHANGED_COLUMN] = pd.array(
            [None if t == "" else t in _TRUE for t in text], dtype="boolean"
        )


def load_answers(
    df_or_path: pd.DataFrame | str | Path, choices: Sequence[str] | None = None
) -> pd.DataFrame:
    """Validated readers' answers: ``reader, case, truth, answer`` (+ attribute columns).

    ``choices`` defaults to the sorted distinct truth values. Every reader is kept here
    (which ones a report counts is :func:`select_readers`). An optional ``finished``
    column is parsed to booleans, and the optional reading columns (``session``,
    ``ai_answer``, ``ai_top_probability``, ``changed``) to their types. A table may hold
    several reading conditions (``condition``): a reader then answers a case once per
    condition, and ``attrs["conditions"]`` lists the conditions in the order they first
    appear (the study's order). Returns a copy with reader, case and labels as strings
    and ``attrs["choices"]`` (and an empty ``attrs["warnings"]``) set; raises
    :class:`InputError` naming the offending rows for a missing column, a case without
    truth, a missing answer, an answer or truth outside the choices, a duplicate
    (reader, case[, condition]), a case whose truth differs between rows, a ``finished``
    value that is not True/False or differs within a reader, a row without a condition
    in a table of several, or a reading column that does not parse.
    """
    frame = _read(df_or_path, "answers")
    _require_columns(frame, ANSWER_COLUMNS, "answers")
    conditions = _conditions(frame) if CONDITION_COLUMN in frame.columns else []
    within = [CONDITION_COLUMN] if len(conditions) > 1 else []
    frame, choices = _validate_common(frame, "reader", choices, "answers", within)
    if FINISHED_COLUMN in frame.columns:
        _finished_flags(frame)
    _reading_columns(frame, choices)
    frame.attrs["choices"] = choices
    frame.attrs["warnings"] = []
    if conditions:
        frame.attrs["conditions"] = conditions
    return frame


READER_RULES = ("finished", "all")


@dataclass(frozen=True)
class ReaderSelection:
    """Which readers an analysis counts, and who was left out and why.

    ``rule``: ``finished`` (the default: only readers who had finished, as in the
    reference study, where every dermatologist read all 200 cases) or ``all`` (every
    reader, on the cases they answered). ``basis``: how "finished" was known,
    ``finished`` (the answers table's ``finished`` column: the reader confirmed the end
    of the study) or ``complete`` (no such column: answered every case that any reader
    answered). ``n_answered``: readers with at least one answer; ``n_counted`` of them
    are analysed and ``n_left_out`` are not (their codes in ``left_out``);
    ``n_not_finished`` counts the readers who had not finished, whether counted or not.
    ``note``: one sentence for the report saying how many were left out and why (empty
    when every reader had finished).
    """

    rule: str
    basis: str
    n_answered: int
    n_counted: int
    n_left_out: int
    n_not_finished: int
    left_out: list[str]
    note: str


def select_readers(
    answers: pd.DataFrame, rule: str = "finished"
) -> tuple[pd.DataFrame, ReaderSelection]:
    """(the answers of the readers who count, the :class:`ReaderSelection`) of a table
    validated by :func:`load_answers`.

    A reader has finished when the table's ``finished`` column says so or, in a table
    without that column (a hand-made file), when they answered every case of the table.
    ``rule="finished"`` keeps only those readers; ``rule="all"`` keeps everyone. The
    returned table keeps the input's ``attrs``; it is empty when nobody counts.
    """
    if rule not in READER_RULES:
        raise InputError(f"readers must be one of {', '.join(READER_RULES)}, got {rule!r}")
    per_reader = answers.groupby("reader", sort=True)
    if FINISHED_COLUMN in answers.columns:
        basis = "finished"
        finished = per_reader[FINISHED_COLUMN].first().astype(bool)
    else:
        basis = "complete"
        finished = per_reader["case"].nunique() == answers["case"].nunique()
    not_finished = sorted(map(str, finished.index[~finished.to_numpy()]))
    left_out = not_finished if rule == "finished" else []
    kept = answers[~answers["reader"].isin(left_out)].reset_index(drop=True)
    kept.attrs = dict(answers.attrs)
    why = (
        "had not finished the study"
        if basis == "finished"
        else "had not answered every case (the answers table has no finished column)"
    )
    n_all, n_not = len(finished), len(not_finished)
    of = f"{n_not} of {n_all} {'reader' if n_all == 1 else 'readers'}"
    if rule == "finished" and n_not:
        note = (
            f"{of} {why} and {'was' if n_not == 1 else 'were'} left out (readers: finished, "
            "the default: finished readers only, as in the reference study; readers: all "
            "counts every reader on the cases they answered)."
        )
    elif rule == "all" and n_not:
        note = (
            f"Every reader is counted (readers: all), on the cases they answered: {of} {why}. "
            "The default counts finished readers only, as in the reference study."
        )
    else:
        note = ""
    return kept, ReaderSelection(
        rule=rule,
        basis=basis,
        n_answered=n_all,
        n_counted=n_all - len(left_out),
        n_left_out=len(left_out),
        n_not_finished=n_not,
        left_out=left_out,
        note=note,
    )


def prob_columns(frame: pd.DataFrame) -> list[str]:
    """The ``prob_<CODE>`` columns of a predictions table, in table order."""
    return [c for c in frame.columns if str(c).startswith(PROB_PREFIX)]


def load_predictions(
    df_or_path: pd.DataFrame | str | Path, choices: Sequence[str] | None
) -> pd.DataFrame:
    """Validated model predictions: ``model, case, truth, answer`` + ``prob_<CODE>``.

    Probability columns are optional, but when present there must be exactly one per
    choice (``prob_MN`` for choice ``MN``) with values in [0, 1] (else an
    :class:`InputError` naming the rows). A row whose probabilities do not sum to 1
    within :data:`PROB_SUM_TOLERANCE` is kept and named in ``attrs["warnings"]``: the
    AUCs use each class's score on its own, so scores need not be normalised. Same
    checks as :func:`load_answers` otherwise; ``choices`` default to the sorted truths.
    """
    frame = _read(df_or_path, "predictions")
    _require_columns(frame, PREDICTION_COLUMNS, "predictions")
    frame, choices = _validate_common(frame, "model", choices, "predictions")
    warnings: list[str] = []
    probs = prob_columns(frame)
    if probs:
        codes = [c[len(PROB_PREFIX) :] for c in probs]
        unknown = [c for c in codes if c not in choices]
        if unknown:
            raise InputError(
                "predictions: probability column(s) for label(s) outside the choices "
                f"{choices}: {', '.join(PROB_PREFIX + c for c in unknown)}"
            )
        missing = [c for c in choices if c not in codes]
        if missing:
            raise InputError(
                "predictions: missing probability column(s) "
                f"{', '.join(PROB_PREFIX + c for c in missing)}"
            )
        values = frame[[PROB_PREFIX + c for c in choices]].apply(pd.to_numeric, errors="coerce")
        bad = ~np.isfinite(values.to_numpy(dtype=float)).all(axis=1)
        if bad.any():
            raise InputError(
                "predictions: missing or non-numeric probability in "
                + _rows(bad, frame, ["model", "case", *probs])
            )
        numbers = values.to_numpy(dtype=float)
        outside = ((numbers < 0) | (numbers > 1)).any(axis=1)
        if outside.any():
            raise InputError(
                "predictions: probability outside [0, 1] in "
                + _rows(outside, frame, ["model", "case", *probs])
            )
        frame[values.columns] = values.astype(float)
        off = np.abs(numbers.sum(axis=1) - 1) > PROB_SUM_TOLERANCE
        if off.any():
            warnings.append(
                f"predictions: probabilities do not sum to 1 (tolerance {PROB_SUM_TOLERANCE:g}) "
                f"in {off.sum()} row(s): " + _rows(off, frame, ["model", "case"])
            )
    frame.attrs["choices"] = choices
    frame.attrs["warnings"] = warnings
    return frame


def check_consistent_truth(answers: pd.DataFrame, predictions: pd.DataFrame) -> None:
    """Raise :class:`InputError` if a case's truth differs between the two tables.

    The message names each conflicting case with both truths and the first row of each
    table (1-based data rows) where that case appears.
    """
    a = answers.reset_index(drop=True)
    p = predictions.reset_index(drop=True)
    first_a = a.assign(row=np.arange(1, len(a) + 1)).drop_duplicates("case")
    first_p = p.assign(row=np.arange(1, len(p) + 1)).drop_duplicates("case")
    merged = first_a[["case", "truth", "row"]].merge(
        first_p[["case", "truth", "row"]], on="case", suffixes=("_answers", "_predictions")
    )
    bad = merged[merged["truth_answers"] != merged["truth_predictions"]]
    if len(bad):
        parts = [
            f"case {r.case!r}: truth {r.truth_answers!r} in answers row {r.row_answers}, "
            f"{r.truth_predictions!r} in predictions row {r.row_predictions}"
            for r in bad.head(_MAX_LISTED).itertuples()
        ]
        if len(bad) > _MAX_LISTED:
            parts.append(f"and {len(bad) - _MAX_LISTED} more")
        raise InputError("truth differs between answers and predictions: " + "; ".join(parts))


def parse_subgroup(spec: str, columns: Sequence[str]) -> tuple[str, list[float] | None]:
    """``"level"`` -> (``level``, None); ``"years:0,5,10"`` -> (``years``, [0, 5, 10]).

    A name that is itself a column is taken whole (so a column may contain ``:``).
    Raises :class:`InputError` for an unknown column or edges that are not strictly
    increasing finite numbers.
    """
    if spec in columns:
        return spec, None
    column, sep, edges_text = spec.rpartition(":")
    if not sep or column not in columns:
        raise InputError(f"subgroup column {(column or spec)!r} is not in the answers table")
    try:
        edges = [float(e) for e in edges_text.split(",")]
    except ValueError:
        edges = []
    if not edges or not np.isfinite(edges).all() or np.any(np.diff(edges) <= 0):
        raise InputError(
            f"subgroup bands for {column!r} must be strictly increasing numbers separated "
            f"by commas (e.g. {column}:0,5,10), got {edges_text!r}"
        )
    return column, edges
