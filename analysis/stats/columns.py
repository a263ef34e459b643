"""The column names of the two tidy input tables: the one definition every loader uses.

answers:      one row per reader x case. :data:`ANSWER_COLUMNS` are required; the rest of
              :data:`ANSWERS_TABLE_COLUMNS` is what the database loader adds (the
              reading condition, :data:`CONDITION_COLUMN`, and :data:`READING_COLUMNS`,
              the diagnoses' names, the
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
# table of several conditions is analysed condition by condition, and the conditions are
# compared (analysis.stats.conditions).
CONDITION_COLUMN = "condition"
# Where the design has more than one reading condition (cases.models.Study.design):
# ``session``, the 1-based session the answer was given in (a crossover's second
# condition is read in session 2, after the washout; sequential and one-condition
# studies have one session); ``ai_answer`` and ``ai_top_probability``, the CNN's
# predicted class and its probability as the condition showed them to the reader ("" and
# empty where the condition shows no CNN support); ``changed``, whether the answer
# differs from the same reader's earlier answer to the same case in another condition
# (True/False; empty for a case's first read).
SESSION_COLUMN = "session"
AI_ANSWER_COLUMN = "ai_answer"
AI_PROBABILITY_COLUMN = "ai_top_probability"
CHANGED_COLUMN = "changed"
READING_COLUMNS = (SESSION_COLUMN, AI_ANSWER_COLUMN, AI_PROBABILITY_COLUMN, CHANGED_COLUMN)
ANSWERS_TABLE_COLUMNS = (
    *ANSWER_COLUMNS,
    CONDITION_COLUMN,
    *READING_COLUMNS,
    *LABEL_NAME_COLUMNS,
    *READER_COLUMNS,
    FINISHED_COLUMN,
    *ANSWER_DETAIL_COLUMNS,
)


def prob_column(code: str) -> str:
    """The predictions column of the probability of choice ``code``: ``prob_<CODE>``."""
    return f"{PROB_PREFIX}{code}"
