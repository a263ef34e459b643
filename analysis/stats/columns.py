"""The column names of the two tidy input tables: the one definition every loader uses.

answers:      one row per reader x case. :data:`ANSWER_COLUMNS` are required; the rest of
              :data:`ANSWERS_TABLE_COLUMNS` is what the database loader adds (the
              reading condition, :data:`CONDITION_COLUMN`, the diagnoses' names, the
              reader attributes of :data:`READER_COLUMNS`,
              :data:`FINISHED_COLUMN` and ``confidence, seconds, answered_at``). A file
              may bring other attributes.
predictions:  one row per model x case: :data:`PREDICTION_COLUMNS` plus, optionally,
              one :func:`prob_column` per choice.

The loaders rename their sources' fields to these names; nothing else spells them out.
"""

from __future__ import annotations

ANSWER_COLUMNS = ("reader", "case", "truth", "answer")
PREDICTION_COLUMNS = ("model", "case", "truth", "answer")
PROB_PREFIX = "prob_"
LABEL_NAME_COLUMNS = ("truth_name", "answer_name")
# The reader-profile fields (cases.models.PROFILE_FIELDS, in that order) as answers columns.
READER_COLUMNS = (
    "level",
    "years",
    "dermoscopy_hours",
    "board_certified",
    "hospital_tier",
    "region",
)
# Whether the reader had finished the study (True/False, the same on each of their rows):
# which readers a report counts by default (analysis.stats.inputs.select_readers).
FINISHED_COLUMN = "finished"
ANSWER_DETAIL_COLUMNS = ("confidence", "seconds", "answered_at")
# The reading condition an answer was given in (cases.models.ReadingCondition.code): a
# table of several conditions is analysed one condition at a time.
CONDITION_COLUMN = "condition"
ANSWERS_TABLE_COLUMNS = (
    *ANSWER_COLUMNS,
    CONDITION_COLUMN,
    *LABEL_NAME_COLUMNS,
    *READER_COLUMNS,
    FINISHED_COLUMN,
    *ANSWER_DETAIL_COLUMNS,
)


def prob_column(code: str) -> str:
    """The predictions column of the probability of choice ``code``: ``prob_<CODE>``."""
    return f"{PROB_PREFIX}{code}"
