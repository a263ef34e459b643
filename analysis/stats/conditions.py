"""Several reading conditions of the same readers and cases: every table per condition,
and whether a condition (the CNN's support, the clinical photo) changes the readers'
diagnoses: :func:`analyze_conditions`.

The tidy answers table has one row per reader x case x condition
(:mod:`analysis.stats.columns`); its conditions come in the study's order. Designs:

- sequential (Tschandl et al. 2020, "Human-computer collaboration for skin cancer
  recognition", Nat Med 26:1229-1234): each case read unaided, then with the CNN's
  support, in one session;
- crossover (Haenssle et al. 2018, Ann Oncol 29:1836-1842): every case read in condition
  A in one session and in B in another after a washout, half of the readers in each
  order.

The design is read from the data: answers in more than one ``session`` make a
crossover. A condition is *aided* when its rows carry the CNN's answer (``ai_answer``).
Each other condition (b) is compared with the reference (a): the first condition that
shows no CNN (the unaided read; the first condition where each one shows it), on the
readers and cases that have both reads; every difference is b - a. The conditions are
taken in the order they first appear in the table (the study's order, as the loaders
write it), the reference moved first: a file whose first rows are of the aided
condition (a crossover reader who read it first, in a file sorted by session) is still
compared aided - unaided.

- the Obuchowski-Rockette two-treatment analysis (RRRC, FRRC, RRFC, jackknife
  covariances; :func:`or_conditions`) of top-1 accuracy and per-class sensitivity and
  specificity;
- the two-way paired bootstrap over readers and cases and McNemar's test per reader
  (:mod:`analysis.stats.assisted`);
- where b is aided and a is not: the switching table, how often the readers took the
  CNN's answer when it was right and when it was wrong, and aided accuracy split by the
  CNN right or wrong, overall, per class and per experience subgroup;
- each reader's gain and its regression on experience (years, level);
- the power and sample size of a next study of the same two conditions from this one's
  OR variance components of top-1 accuracy (Hillis, Obuchowski & Berbaum 2011;
  :mod:`analysis.stats.power`).

And the readers of each condition are compared with the CNN whose answers an aided
condition showed (single-treatment MRMC, 1T-RRRC and 1T-RRFC:
:func:`analysis.stats.compare.mrmc_compare`).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd
from statsmodels.regression.linear_model import OLS

from analysis.stats import assisted
from analysis.stats.columns import (
    AI_ANSWER_COLUMN,
    CONDITION_COLUMN,
    FINISHED_COLUMN,
    SESSION_COLUMN,
)
from analysis.stats.compare import COLUMNS as COMPARISON_COLUMNS
from analysis.stats.compare import adjust_p, mrmc_compare
from analysis.stats.inputs import READER_RULES, InputError, ReaderSelection, select_readers
from analysis.stats.metrics import (
    RatingMatrix,
    confusion_counts,
    encode,
    jackknife_counts,
    metrics_from_counts,
)
from analysis.stats.mrmc import ORResult, or_from_jackknife
from analysis.stats.pipeline import (
    AnalysisSummary,
    AnalysisTables,
    analyze_tables,
    subgroup_labels,
)
from analysis.stats.power import (
    cases_for_power,
    or_variance_components,
    power_given_jk,
)

DESIGNS = ("sequential", "crossover")
CNN = "CNN"
"""The rater name of the CNN whose answers an aided condition showed."""
EXPERIENCE_EDGES = (0.0, 3.0, 10.0)
"""Years in dermatology cut into [0,3), [3,10) and [10,inf): the experience subgroups
of the switching and following tables."""
YEARS_BAND = "years_band"
LEVEL_ORDER = ("resident", "attending", "associate_chief", "chief")
"""The reader levels in order of seniority (cases.models.ReaderProfile.Level): the first
one present is the reference level of the gain regression."""
UNKNOWN = "unknown"
POWER_EFFECT = 0.05
"""The stated difference of top-1 accuracy a next study is planned for by default."""
POWER_TARGET = 0.8
POWER_READERS = (5, 10, 20, 40)
POWER_CASES = (50, 100, 200, 500)
"""The readers x cases grid of the power table (with this study's numbers added)."""
FIT_POINTS = 25

CONDITIONS_COLUMNS = [
    "condition", "session", "position", "aided", "n_readers", "n_cases", "n_reads",
    "top1_accuracy", "readers_mean_accuracy", "cnn_accuracy",
]  # fmt: skip
PAIRS_COLUMNS = [
    "condition_a", "condition_b", "aided_a", "aided_b", "n_readers", "n_readers_left_out",
    "n_cases", "n_cases_left_out", "n_reads", "n_reads_left_out", "or_readers", "or_cases",
]  # fmt: skip
PAIR = ["condition_a", "condition_b"]
OR_COLUMNS = [
    *PAIR, "metric", "class", "analysis", "value_a", "value_b", "difference", "se", "df",
    "ci_low", "ci_high", "statistic", "p", "p_adjusted", "n_readers", "n_cases",
    "var_error", "cov1", "cov2", "cov3", "ms_tr",
]  # fmt: skip
BOOTSTRAP_COLUMNS = [
    *PAIR, "metric", "class", "value_a", "value_b", "difference", "se", "ci_low", "ci_high",
    "n_boot", "n_readers", "n_cases",
]  # fmt: skip
MCNEMAR_COLUMNS = [
    *PAIR, "reader", "reads", "accuracy_a", "accuracy_b", "difference",
    "correct_to_incorrect", "incorrect_to_correct", "discordant", "method", "statistic",
    "p", "p_holm", "reject_holm",
]  # fmt: skip
AI_COLUMNS = ["condition", "cnn_condition", *COMPARISON_COLUMNS]
SWITCHING_COLUMNS = [*PAIR, "grouping", "group", "outcome", "count", "reads", "proportion"]
FOLLOWING_COLUMNS = [
    *PAIR, "grouping", "group", "cnn_correct", "reads", "unaided_accuracy", "aided_accuracy",
    "disagreeing", "followed", "follow_rate",
]  # fmt: skip
GAINS_COLUMNS = [*PAIR, "reader", "reads", "accuracy_a", "accuracy_b", "gain", "level", "years"]
REGRESSION_COLUMNS = [
    *PAIR, "model", "term", "coefficient", "se", "t", "p", "ci_low", "ci_high", "n_readers",
    "df_resid", "r_squared",
]  # fmt: skip
FIT_COLUMNS = [*PAIR, "years", "fit", "ci_low", "ci_high"]
POWER_COLUMNS = [
    *PAIR, "metric", "analysis", "quantity", "effect", "effect_size", "readers", "cases",
    "power", "target_power", "alpha", "ncp", "df2",
]  # fmt: skip

TABLE_COLUMNS = {
    "conditions": CONDITIONS_COLUMNS,
    "condition_pairs": PAIRS_COLUMNS,
    "condition_or": OR_COLUMNS,
    "condition_bootstrap": BOOTSTRAP_COLUMNS,
    "condition_mcnemar": MCNEMAR_COLUMNS,
    "ai_vs_readers": AI_COLUMNS,
    "switching": SWITCHING_COLUMNS,
    "cnn_following": FOLLOWING_COLUMNS,
    "reader_gains": GAINS_COLUMNS,
    "gain_regression": REGRESSION_COLUMNS,
    "gain_fit": FIT_COLUMNS,
    "power": POWER_COLUMNS,
}
"""The tables of :class:`ConditionTables` and their columns, in report order."""


@dataclass(frozen=True)
class ConditionTables:
    """The reading conditions compared (see the module's docstring); ``a`` is the
    reference condition and ``b`` another one, every difference b - a.

    conditions          condition, session (``all``, or each session of a crossover),
                        position (1-based order of the tables: the reference first,
                        then the others in the study's order), aided, n_readers, n_cases,
                        n_reads, top1_accuracy (share of reads correct),
                        readers_mean_accuracy (mean of the readers' top-1 accuracies),
                        cnn_accuracy (the CNN's answers shown, on the condition's cases)
    condition_pairs     condition_a, condition_b, aided_a, aided_b; n_readers, n_cases
                        and n_reads with both reads, and how many of each were left out
                        (a read in only one of the two); or_readers, or_cases: the fully
                        crossed readers x cases the OR analysis used
    condition_or        Obuchowski-Rockette two-treatment analysis (:func:`or_conditions`):
                        per metric (``top1_accuracy`` class ``all``; ``sensitivity``,
                        ``specificity`` per class) x analysis (rrrc, frrc, rrfc) value_a,
                        value_b (readers' mean), difference, se, df, CI, statistic (t),
                        p, p_adjusted (over classes within pair x metric x analysis),
                        n_readers, n_cases and the error covariances
    condition_bootstrap the two-way paired bootstrap (:func:`assisted.paired_bootstrap`):
                        metric, class, value_a, value_b, difference, se, CI, n_boot
    condition_mcnemar   McNemar's test per reader (:func:`assisted.mcnemar_by_reader`)
    ai_vs_readers       the readers of ``condition`` against the CNN shown in
                        ``cnn_condition``: the columns of the comparisons table
                        (:data:`analysis.stats.compare.COLUMNS`, difference = CNN -
                        readers), methods mrmc_rrrc and mrmc_rrfc
    switching           :func:`assisted.switching_table` per grouping (overall, class,
                        level, years_band) for b aided against a unaided
    cnn_following       :func:`assisted.cnn_following` per grouping and CNN right/wrong
    reader_gains        each reader's accuracy in a and b, gain = b - a, level, years
    gain_regression     OLS of the gain on ``years`` (model ``years``) and on years and
                        level (``years + level``), :func:`assisted.gain_by_experience`
    gain_fit            the ``years`` model's line and its pointwise CI (the figure)
    power               power of a next study (quantity ``power``) over a readers x
                        cases grid, and the cases it needs for 80% power
                        (``cases_for_power``), at the observed and a stated effect
    by_condition        every current table of each condition (the blocks of the stacked
                        tables), keyed by condition
    notes               sentences for the report: who was left out of which comparison
    """

    design: str
    reference: str
    codes: list[str]
    conditions: pd.DataFrame
    condition_pairs: pd.DataFrame
    condition_or: pd.DataFrame
    condition_bootstrap: pd.DataFrame
    condition_mcnemar: pd.DataFrame
    ai_vs_readers: pd.DataFrame
    switching: pd.DataFrame
    cnn_following: pd.DataFrame
    reader_gains: pd.DataFrame
    gain_regression: pd.DataFrame
    gain_fit: pd.DataFrame
    power: pd.DataFrame
    by_condition: dict[str, AnalysisTables] = field(repr=False)
    notes: list[str] = field(default_factory=list)
    power_effect: float = POWER_EFFECT

    def aided(self) -> list[str]:
        """The aided conditions, in study order."""
        table = self.conditions[self.conditions["session"] == "all"]
        return list(table.loc[table["aided"].astype(bool), "condition"])

    def to_dict(self) -> dict:
        """What summary.json says of the conditions: the design, each condition, each
        pair and its RRRC result for top-1 accuracy (NaN as None)."""
        headline = self.condition_or[
            (self.condition_or["metric"] == "top1_accuracy")
            & (self.condition_or["analysis"] == "rrrc")
        ]
        return {
            "design": self.design,
            "reference": self.reference,
            "conditions": _records(self.conditions),
            "pairs": _records(self.condition_pairs),
            "top1_accuracy_rrrc": _records(headline),
            "power_effect": self.power_effect,
            "notes": list(self.notes),
        }


def _records(frame: pd.DataFrame) -> list[dict]:
    out = []
    for row in frame.to_dict(orient="records"):
        clean = {}
        for k, v in row.items():
            if isinstance(v, np.generic):
                v = v.item()
            if v is pd.NA or (isinstance(v, float) and not np.isfinite(v)):
                v = None
            clean[k] = v
        out.append(clean)
    return out


def _empty(columns: Sequence[str]) -> pd.DataFrame:
    return pd.DataFrame(columns=list(columns))


def _concat(parts: list[pd.DataFrame], columns: Sequence[str]) -> pd.DataFrame:
    """The non-empty parts stacked in ``columns`` (an empty table with them if none)."""
    parts = [p for p in parts if len(p)]
    if not parts:
        return _empty(columns)
    return pd.concat(parts, ignore_index=True)[list(columns)]


# --- the design and the readers -----------------------------------------------------------


def condition_codes(answers: pd.DataFrame) -> list[str]:
    """The reading conditions of a validated answers table in the study's order (as
    they first appear; :func:`analysis.stats.inputs.load_answers`); [] without them."""
    if "conditions" in answers.attrs:
        return list(answers.attrs["conditions"])
    if CONDITION_COLUMN not in answers.columns:
        return []
    return list(dict.fromkeys(answers[CONDITION_COLUMN].dropna().astype(str)))


def _shown(rows: pd.DataFrame) -> pd.Series:
    """Whether each row shows the CNN's answer."""
    if AI_ANSWER_COLUMN not in rows.columns:
        return pd.Series(False, index=rows.index)
    text = rows[AI_ANSWER_COLUMN].astype("string").str.strip()
    return (text.notna() & (text != "")).fillna(False).astype(bool)


def study_design(answers: pd.DataFrame) -> str:
    """``crossover`` when the answers were given in more than one session (the design's
    second condition after a washout), else ``sequential``."""
    if SESSION_COLUMN in answers.columns:
        sessions = pd.to_numeric(answers[SESSION_COLUMN], errors="coerce")
        if sessions.notna().any() and sessions.max() > 1:
            return "crossover"
    return "sequential"


def select_condition_readers(
    answers: pd.DataFrame, rule: str = "finished"
) -> tuple[pd.DataFrame, ReaderSelection]:
    """:func:`analysis.stats.inputs.select_readers` over all the conditions at once, so
    that every condition counts the same readers. With the ``finished`` column a reader
    counts as there; without it, a reader has finished who answered every case in every
    condition (every case x condition of the table)."""
    if FINISHED_COLUMN in answers.columns:
        return select_readers(answers, rule)
    key = answers["case"].astype(str) + "\x1f" + answers[CONDITION_COLUMN].astype(str)
    _, selection = select_readers(answers.assign(case=key), rule)
    kept = answers[~answers["reader"].isin(selection.left_out)].reset_index(drop=True)
    kept.attrs = dict(answers.attrs)
    note = selection.note.replace(
        "had not answered every case", "had not answered every case in every reading condition"
    )
    return kept, replace(selection, note=note)


def _reader_attributes(answers: pd.DataFrame) -> pd.DataFrame:
    """Per reader: ``level`` (text, :data:`UNKNOWN` where blank), ``years`` (a number,
    NaN where missing) and ``years_band`` (:data:`EXPERIENCE_EDGES`)."""
    per = answers.groupby("reader", sort=True)
    out = pd.DataFrame(index=pd.Index(sorted(answers["reader"].unique()), name="reader"))
    if "level" in answers.columns:
        level = per["level"].first().astype("string").str.strip()
        out["level"] = level.where(level.notna() & (level != ""), UNKNOWN).astype(str)
    if "years" in answers.columns:
        years = pd.to_numeric(per["years"].first(), errors="coerce").astype(float)
        out["years"] = years
        labels, _ = subgroup_labels(years.rename("years"), list(EXPERIENCE_EDGES))
        out[YEARS_BAND] = labels
    return out


def paired_reads(
    answers: pd.DataFrame, a: str, b: str, attributes: pd.DataFrame | None = None
) -> pd.DataFrame:
    """The reads of :mod:`analysis.stats.assisted` for condition ``b`` against ``a``: one
    row per reader x case read in both, ``reader, case, truth, unaided`` (the answer in
    a), ``aided`` (in b), ``ai`` (the CNN's answer shown in b, "" where none) and the
    reader ``attributes`` (:func:`_reader_attributes`)."""
    cond = answers[CONDITION_COLUMN]
    left = answers.loc[cond == a, ["reader", "case", "truth", "answer"]]
    right = answers.loc[cond == b, ["reader", "case", "answer"]]
    shown = _shown(answers.loc[cond == b])
    right = right.assign(ai="")
    if shown.any():
        right.loc[shown, "ai"] = (
            answers.loc[shown[shown].index, AI_ANSWER_COLUMN].astype(str).str.strip()
        )
    reads = left.merge(right, on=["reader", "case"], suffixes=("_a", "_b"), sort=True)
    reads = reads.rename(columns={"answer_a": "unaided", "answer_b": "aided"})
    reads = reads[["reader", "case", "truth", "unaided", "aided", "ai"]]
    if attributes is not None and len(attributes.columns):
        reads = reads.join(attributes, on="reader")
    return reads.reset_index(drop=True)


# --- Obuchowski-Rockette two-treatment analysis -------------------------------------------


def _foms(matrix: RatingMatrix) -> list[tuple[str, str, np.ndarray, np.ndarray]]:
    """(metric, class, FOM (R,), jackknife (K, R)) of one condition: top-1 accuracy and
    each class's sensitivity and specificity, the jackknife in closed form (the counts
    minus each case's contribution, :func:`analysis.stats.metrics.jackknife_counts`)."""
    c = matrix.n_classes
    full = metrics_from_counts(confusion_counts(matrix.answers, matrix.truth, c))
    jack = metrics_from_counts(jackknife_counts(matrix.answers, matrix.truth, c))
    out = [("top1_accuracy", "all", full.top1_accuracy, jack.top1_accuracy)]
    for name in ("sensitivity", "specificity"):
        values, leave_out = getattr(full, name), getattr(jack, name)
        for j, label in enumerate(matrix.choices):
            out.append((name, label, values[:, j], leave_out[:, :, j]))
    return out


def or_conditions(
    reference: RatingMatrix,
    other: RatingMatrix,
    *,
    names: tuple[str, str] = ("a", "b"),
    alpha: float = 0.05,
) -> tuple[pd.DataFrame, dict[tuple[str, str], ORResult]]:
    """Obuchowski-Rockette two-treatment analysis of condition b (``other``) against a
    (``reference``): the same readers (rows) and cases (columns), every reader having
    read every case in both.

    Figures of merit: top-1 accuracy (share of cases answered correctly) and each
    class's one-vs-rest sensitivity TP/(TP+FN) and specificity TN/(TN+FP), computed per
    reader x condition; their jackknife over cases in closed form. The OR analysis is
    :func:`analysis.stats.mrmc.or_from_jackknife` with the treatments in the order
    (b, a), so that each difference is b - a: random readers and cases (RRRC,
    Obuchowski & Rockette 1995 with the Hillis 2007/2008 denominator degrees of freedom),
    fixed readers (FRRC, normal) and fixed cases (RRFC, t on r-1 df). A figure of merit
    that is undefined for some reader or some jackknife sample (a class with fewer than
    two cases, or none of the other kind) is left out.

    Returns (the rows of :data:`OR_COLUMNS` without ``p_adjusted``, the
    :class:`~analysis.stats.mrmc.ORResult` of each (metric, class)).
    """
    if reference.raters != other.raters or reference.cases != other.cases:
        raise InputError("or_conditions: the two conditions need the same readers and cases")
    a, b = names
    rows, results = [], {}
    for (metric, label, fa, ja), (_, _, fb, jb) in zip(_foms(reference), _foms(other), strict=True):
        fom = np.stack([fb, fa])  # (2, R)
        jack = np.stack([jb, ja], axis=1)  # (K, 2, R)
        if not (np.isfinite(fom).all() and np.isfinite(jack).all()):
            continue
        result = or_from_jackknife(
            fom, jack, treatments=[b, a], readers=reference.raters, fom_name=metric, alpha=alpha
        )
        results[(metric, label)] = result
        means = result.fom.mean(axis=1)
        for d in result.differences.itertuples():
            rows.append(
                (a, b, metric, label, d.analysis, means[1], means[0], d.difference, d.se,
                 d.df, d.ci_low, d.ci_high, d.statistic, d.p, np.nan, len(reference.raters),
                 len(reference.cases), result.var_error, result.cov1, result.cov2,
                 result.cov3, result.ms_tr)
            )  # fmt: skip
    return pd.DataFrame(rows, columns=OR_COLUMNS), results


def _or_grid(reads: pd.DataFrame) -> tuple[list[str], list[str]]:
    """The fully crossed readers x cases of paired reads: the readers who have both
    reads of every case that any reader has; where fewer than two do, every reader on
    the cases that all of them have."""
    readers = sorted(reads["reader"].unique())
    cases = sorted(reads["case"].unique())
    per_reader = reads.groupby("reader")["case"].nunique()
    complete = sorted(per_reader.index[per_reader == len(cases)])
    if len(complete) >= 2:
        return complete, cases
    per_case = reads.groupby("case")["reader"].nunique()
    return readers, sorted(per_case.index[per_case == len(readers)])


def _matrices(
    reads: pd.DataFrame, readers: list[str], cases: list[str], choices: list[str]
) -> tuple[RatingMatrix, RatingMatrix]:
    grid = reads[reads["reader"].isin(readers) & reads["case"].isin(cases)]
    truth = grid.drop_duplicates("case").set_index("case")["truth"]
    kwargs = {"rater": "reader", "choices": choices, "cases": cases, "truth_by_case": truth}
    return (
        encode(grid.rename(columns={"unaided": "answer"}), **kwargs),
        encode(grid.rename(columns={"aided": "answer"}), **kwargs),
    )


# --- the pieces of one pair ---------------------------------------------------------------


def _bootstrap(reads, a, b, choices, *, n_bootstrap, seed, alpha) -> pd.DataFrame:
    table = assisted.paired_bootstrap(reads, n_boot=n_bootstrap, seed=seed, alpha=alpha)
    table = table.rename(columns={"unaided": "value_a", "aided": "value_b"})
    table["metric"] = table["metric"].replace({"accuracy": "top1_accuracy"})
    metric_order = {"top1_accuracy": 0, "sensitivity": 1, "specificity": 2}
    class_order = {label: i for i, label in enumerate(["all", *choices])}
    table = table.iloc[
        np.lexsort((table["class"].map(class_order), table["metric"].map(metric_order)))
    ]
    return table.assign(
        condition_a=a,
        condition_b=b,
        n_readers=reads["reader"].nunique(),
        n_cases=reads["case"].nunique(),
    )[BOOTSTRAP_COLUMNS].reset_index(drop=True)


def _mcnemar(reads, a, b, alpha) -> pd.DataFrame:
    table = assisted.mcnemar_by_reader(reads, alpha=alpha).rename(
        columns={
            "unaided_accuracy": "accuracy_a",
            "aided_accuracy": "accuracy_b",
            "gain": "difference",
        }
    )
    return table.assign(condition_a=a, condition_b=b)[MCNEMAR_COLUMNS]


def _groupings(reads: pd.DataFrame) -> list[tuple[str, str | None]]:
    """(grouping name, column) of the switching and following tables."""
    out = [("overall", None), ("class", "truth")]
    out += [(col, col) for col in ("level", YEARS_BAND) if col in reads.columns]
    return out


def _switching(reads, a, b) -> pd.DataFrame:
    subgroups = [col for name, col in _groupings(reads)[2:]]
    table = assisted.switching_table(reads, subgroups=subgroups)
    return table.assign(condition_a=a, condition_b=b)[SWITCHING_COLUMNS]


def _following(reads, a, b) -> pd.DataFrame:
    parts = []
    for name, col in _groupings(reads):
        table = assisted.cnn_following(reads, by=[] if col is None else [col])
        group = "all" if col is None else table[col].astype(str)
        parts.append(table.assign(grouping=name, group=group))
    return _concat(parts, FOLLOWING_COLUMNS[2:]).assign(condition_a=a, condition_b=b)[
        FOLLOWING_COLUMNS
    ]


def _level_categories(levels: pd.Series) -> pd.Categorical:
    """Levels in order of seniority (:data:`LEVEL_ORDER`), others after them sorted."""
    present = set(levels)
    order = [v for v in LEVEL_ORDER if v in present]
    order += sorted(present - set(order))
    return pd.Categorical(levels, categories=order)


def _gains(reads, a, b) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, list[str]]:
    """(reader_gains, gain_regression, gain_fit, notes) of one pair."""
    covariates = [c for c in ("level", "years") if c in reads.columns]
    gains = assisted.reader_gains(reads, covariates=covariates)
    gains = gains.rename(columns={"unaided_accuracy": "accuracy_a", "aided_accuracy": "accuracy_b"})
    for col in ("level", "years"):
        if col not in gains.columns:
            gains[col] = np.nan
    gains = gains.assign(condition_a=a, condition_b=b)[GAINS_COLUMNS]
    notes, fits, lines = [], [], []
    if "years" not in reads.columns:
        return gains, _empty(REGRESSION_COLUMNS), _empty(FIT_COLUMNS), notes
    known = gains[np.isfinite(gains["years"].to_numpy(dtype=float))]
    with_years = reads[reads["reader"].isin(known["reader"])]
    if known["years"].nunique() < 2 or len(known) < 3:
        notes.append(
            f"{b} vs {a}: the gain by experience needs at least three readers with their "
            f"years in dermatology, and two different values ({len(known)} reader(s) have "
            "them); no regression."
        )
        return gains, _empty(REGRESSION_COLUMNS), _empty(FIT_COLUMNS), notes
    fits.append(assisted.gain_by_experience(with_years, covariates=["years"]).assign(model="years"))
    x = known["years"].to_numpy(dtype=float)
    fit = OLS(known["gain"].to_numpy(dtype=float), np.column_stack([np.ones_like(x), x])).fit()
    grid = np.linspace(x.min(), x.max(), FIT_POINTS)
    band = fit.get_prediction(np.column_stack([np.ones_like(grid), grid])).summary_frame(alpha=0.05)
    lines.append(
        pd.DataFrame(
            {
                "years": grid,
                "fit": band["mean"].to_numpy(),
                "ci_low": band["mean_ci_lower"].to_numpy(),
                "ci_high": band["mean_ci_upper"].to_numpy(),
            }
        )
    )
    if "level" in reads.columns:
        levelled = known[known["level"] != UNKNOWN]
        if levelled["level"].nunique() >= 2 and len(levelled) > 2 + levelled["level"].nunique():
            sub = with_years[with_years["reader"].isin(levelled["reader"])].copy()
            sub["level"] = _level_categories(sub["level"])
            fits.append(
                assisted.gain_by_experience(sub, covariates=["years", "level"]).assign(
                    model="years + level"
                )
            )
    regression = pd.concat(fits, ignore_index=True).assign(condition_a=a, condition_b=b)
    line = lines[0].assign(condition_a=a, condition_b=b)
    return gains, regression[REGRESSION_COLUMNS], line[FIT_COLUMNS], notes


def _power(result: ORResult, a, b, n_cases, *, effect, alpha) -> pd.DataFrame:
    """Power over :data:`POWER_READERS` x :data:`POWER_CASES` (and this study's numbers)
    and the cases for :data:`POWER_TARGET`, RRRC, at the observed and the stated effect
    (:func:`analysis.stats.power.power_given_jk`, :func:`cases_for_power`)."""
    components = or_variance_components(result, cases=n_cases)
    readers = sorted({len(result.readers), *POWER_READERS})
    cases = sorted({n_cases, *POWER_CASES})
    rows = []
    for label, size in (("observed", components.effect_size), ("stated", float(effect))):
        if not np.isfinite(size):
            continue
        for j in readers:
            for k in cases:
                p = power_given_jk(components, readers=j, cases=k, effect_size=size, alpha=alpha)
                rows.append(
                    (a, b, "top1_accuracy", "rrrc", "power", label, size, j, k, p.power,
                     np.nan, alpha, p.ncp, p.df2)
                )  # fmt: skip
            found = cases_for_power(
                components, readers=j, power=POWER_TARGET, effect_size=size, alpha=alpha
            )
            rows.append(
                (a, b, "top1_accuracy", "rrrc", "cases_for_power", label, size, j,
                 pd.NA if found is None else found.cases,
                 np.nan if found is None else found.power, POWER_TARGET, alpha,
                 np.nan if found is None else found.ncp, np.nan if found is None else found.df2)
            )  # fmt: skip
    table = pd.DataFrame(rows, columns=POWER_COLUMNS)
    table["cases"] = table["cases"].astype("Int64")
    return table


# --- the CNN shown ------------------------------------------------------------------------


def cnn_answers(rows: pd.DataFrame) -> tuple[pd.Series, int]:
    """(the CNN's answer per case among ``rows`` of one aided condition, the number of
    cases where the readers were shown different answers): the most frequent answer
    shown, ties to the one that comes first in sorted order."""
    shown = rows[_shown(rows)]
    text = shown[AI_ANSWER_COLUMN].astype(str).str.strip()
    counts = pd.crosstab(shown["case"], text)
    if counts.empty:
        return pd.Series(dtype=object), 0
    answer = counts.idxmax(axis=1)
    return answer.rename("answer"), int(((counts > 0).sum(axis=1) > 1).sum())


def _ai_vs_readers(answers, codes, aided, choices, truth_by_case, *, alpha, adjust):
    parts, notes = [], []
    for shown_in in aided:
        cnn, varied = cnn_answers(answers[answers[CONDITION_COLUMN] == shown_in])
        if varied:
            notes.append(
                f"In {shown_in}, readers were shown different CNN answers for {varied} "
                "case(s); the CNN compared with the readers gives each case the answer "
                "shown most often."
            )
        cnn_frame = pd.DataFrame({"model": CNN, "case": cnn.index, "answer": cnn.to_numpy()})
        for code in codes:
            rows = answers[answers[CONDITION_COLUMN] == code]
            cases = sorted(set(rows["case"]) & set(cnn.index))
            if rows["reader"].nunique() < 2 or not cases:
                continue
            kwargs = {"choices": choices, "cases": cases, "truth_by_case": truth_by_case}
            readers = encode(rows, rater="reader", **kwargs)
            model = encode(cnn_frame, rater="model", **kwargs)
            table = mrmc_compare(readers, model, alpha=alpha, adjust=adjust)
            parts.append(table.assign(condition=code, cnn_condition=shown_in))
    return _concat(parts, AI_COLUMNS), notes


def _conditions_table(answers, codes, design, truth_by_case) -> pd.DataFrame:
    rows = []
    for position, code in enumerate(codes, start=1):
        block = answers[answers[CONDITION_COLUMN] == code]
        aided = bool(_shown(block).any())
        cnn = cnn_answers(block)[0] if aided else None
        splits = [("all", block)]
        if design == "crossover" and SESSION_COLUMN in block.columns:
            sessions = pd.to_numeric(block[SESSION_COLUMN], errors="coerce")
            splits += [
                (str(int(s)), block[sessions == s]) for s in sorted(sessions.dropna().unique())
            ]
        for session, part in splits:
            correct = part["answer"].to_numpy() == part["truth"].to_numpy()
            per_reader = pd.Series(correct).groupby(part["reader"].to_numpy()).mean()
            cnn_accuracy = np.nan
            if cnn is not None:
                on = cnn.reindex(sorted(set(part["case"]))).dropna()
                if len(on):
                    cnn_accuracy = float((on == truth_by_case.reindex(on.index)).mean())
            rows.append(
                (code, session, position, aided, part["reader"].nunique(),
                 part["case"].nunique(), len(part), correct.mean() if len(part) else np.nan,
                 per_reader.mean() if len(per_reader) else np.nan, cnn_accuracy)
            )  # fmt: skip
    return pd.DataFrame(rows, columns=CONDITIONS_COLUMNS)


# --- every table --------------------------------------------------------------------------


def _stacked(
    by_condition: dict[str, AnalysisTables],
    selection: ReaderSelection | None,
    timings: pd.DataFrame,
) -> dict:
    """The current tables of every condition, one block each, a ``condition`` column
    first; the combined summary."""
    skip = {"summary", "conditions", "timings"}
    names = [f.name for f in dataclasses.fields(AnalysisTables) if f.name not in skip]
    out = {}
    for name in names:
        parts = [
            getattr(t, name).assign(**{CONDITION_COLUMN: code}) for code, t in by_condition.items()
        ]
        columns = list(dict.fromkeys(c for p in parts for c in p.columns if c != CONDITION_COLUMN))
        out[name] = _concat(parts, [CONDITION_COLUMN, *columns])
    summaries = {code: t.summary for code, t in by_condition.items()}
    first = next(iter(summaries.values()))
    per_condition_warnings = {code: s.warnings for code, s in summaries.items()}
    everywhere = set.intersection(*(set(w) for w in per_condition_warnings.values()))
    warnings = [w for w in first.warnings if w in everywhere]
    for code, found in per_condition_warnings.items():
        warnings += [f"condition {code}: {w}" for w in found if w not in everywhere]
    readers = out["readers"]
    complete = (
        readers.groupby("reader")["complete"].all().sum()
        if len(readers) and readers["reader"].nunique()
        else 0
    )
    no_positives = sorted(
        {c for s in summaries.values() for c in s.classes_without_positives},
        key=first.choices.index,
    )
    out["summary"] = AnalysisSummary(
        choices=list(first.choices),
        n_cases=int(out["cases"]["case"].nunique()) if len(out["cases"]) else 0,
        readers=selection,
        n_readers=int(readers["reader"].nunique()) if len(readers) else 0,
        n_complete_readers=int(complete),
        n_models=first.n_models,
        models=list(first.models),
        seed=first.seed,
        n_bootstrap=first.n_bootstrap,
        adjust=first.adjust,
        alpha=first.alpha,
        subgroup=first.subgroup,
        subgroups=list(first.subgroups),
        overall=[{"condition": c, **r} for c, s in summaries.items() for r in s.overall],
        readers_overall=[
            {"condition": c, **r} for c, s in summaries.items() for r in s.readers_overall
        ],
        majority_ties=None,
        classes_without_positives=no_positives,
        warnings=warnings,
    )
    out["timings"] = timings
    return out


def analyze_conditions(
    answers: pd.DataFrame | str | Path,
    predictions: pd.DataFrame | str | Path | None = None,
    choices: Sequence[str] | None = None,
    *,
    seed: int = 0,
    n_bootstrap: int = 2000,
    adjust: str = "holm",
    subgroup: str | None = None,
    readers: str = "finished",
    progress: bool = False,
    alpha: float = 0.05,
    power_effect: float = POWER_EFFECT,
) -> AnalysisTables:
    """Every table of a study of several reading conditions (see the module's docstring).

    Which readers count is decided once for all conditions
    (:func:`select_condition_readers`, rule ``readers``); each condition's rows then go
    through :func:`analysis.stats.pipeline.analyze_tables` (the same choices, models,
    seed and options), and the returned :class:`AnalysisTables` holds those tables
    stacked (a ``condition`` column first, one block per condition, the reference first)
    and, in ``conditions``, the :class:`ConditionTables`. Each comparison of a
    condition b with the reference a uses the readers and cases with both reads (readers
    of a crossover who had not read both are left out of it, and ``condition_pairs``
    and the notes say how many); the OR analysis needs them fully crossed and at least
    two readers. ``power_effect``: the stated difference of top-1 accuracy of the power
    table. A table of one condition is :func:`analyze_tables` itself.
    """
    from analysis.stats.inputs import load_answers

    if readers not in READER_RULES:
        raise InputError(f"readers must be one of {', '.join(READER_RULES)}, got {readers!r}")
    ans = load_answers(answers, choices)
    choices = list(choices) if choices is not None else list(ans.attrs["choices"])
    codes = condition_codes(ans)
    options = {
        "seed": seed,
        "n_bootstrap": n_bootstrap,
        "adjust": adjust,
        "subgroup": subgroup,
        "progress": progress,
        "alpha": alpha,
    }
    if len(codes) < 2:
        return analyze_tables(ans, predictions, choices, readers=readers, **options)
    kept, selection = select_condition_readers(ans, readers)
    if kept.empty:
        if predictions is None:
            raise InputError(
                f"no reader counts: {selection.note} With no model predictions either, "
                "there is nothing to analyse."
            )
        tables = analyze_tables(None, predictions, choices, readers=readers, **options)
        return replace(tables, summary=replace(tables.summary, readers=selection))
    design = study_design(kept)
    shown = {c for c in codes if _shown(kept[kept[CONDITION_COLUMN] == c]).any()}
    reference = next((c for c in codes if c not in shown), codes[0])
    codes = [reference, *(c for c in codes if c != reference)]
    notes = []
    by_condition: dict[str, AnalysisTables] = {}
    for code in codes:
        rows = kept[kept[CONDITION_COLUMN] == code]
        if rows.empty:
            notes.append(f"No reader who counts answered in condition {code}: it is left out.")
            continue
        tables = analyze_tables(rows, predictions, choices, readers="all", **options)
        by_condition[code] = replace(tables, summary=replace(tables.summary, readers=selection))
    codes = list(by_condition)

    clock = time.perf_counter()
    truth_by_case = kept.drop_duplicates("case").set_index("case")["truth"]
    attributes = _reader_attributes(kept)
    conditions = _conditions_table(kept, codes, design, truth_by_case)
    aided = list(
        conditions.loc[(conditions["session"] == "all") & conditions["aided"], "condition"]
    )
    reference = codes[0]  # the reference, unless no counted reader answered in it
    pairs, ors, boots, mcnemars, switches, follows = [], [], [], [], [], []
    gains, regressions, lines, powers = [], [], [], []
    for other in codes[1:]:
        a, b = reference, other
        reads = paired_reads(kept, a, b, attributes)
        in_either = kept[kept[CONDITION_COLUMN].isin([a, b])]
        n_readers_any = in_either["reader"].nunique()
        n_cases_any = in_either["case"].nunique()
        n_reads_any = len(in_either)
        grid_readers, grid_cases = _or_grid(reads) if len(reads) else ([], [])
        can_or = len(grid_readers) >= 2 and len(grid_cases) >= 2
        pairs.append(
            (a, b, a in aided, b in aided, reads["reader"].nunique(),
             n_readers_any - reads["reader"].nunique(), reads["case"].nunique(),
             n_cases_any - reads["case"].nunique(), len(reads), n_reads_any - 2 * len(reads),
             len(grid_readers) if can_or else 0, len(grid_cases) if can_or else 0)
        )  # fmt: skip
        left = pairs[-1]
        if left[5] or left[9]:
            notes.append(
                f"{b} vs {a}: {left[5]} of {n_readers_any} readers, {left[7]} of "
                f"{n_cases_any} cases and {left[9]} of {n_reads_any} reads had no read in "
                "both conditions and are left out of the paired comparisons."
            )
        if reads.empty:
            notes.append(f"{b} vs {a}: no reader read a case in both; no comparison.")
            continue
        if can_or:
            matrix_a, matrix_b = _matrices(reads, grid_readers, grid_cases, choices)
            table, results = or_conditions(matrix_a, matrix_b, names=(a, b), alpha=alpha)
            ors.append(table)
            if (
                len(grid_readers) < reads["reader"].nunique()
                or len(grid_cases) < reads["case"].nunique()
            ):
                notes.append(
                    f"{b} vs {a}: the OR analysis needs every reader to have read every case "
                    f"in both conditions; it uses {len(grid_readers)} readers and "
                    f"{len(grid_cases)} cases."
                )
            top1 = results.get(("top1_accuracy", "all"))
            if top1 is not None:
                powers.append(_power(top1, a, b, len(grid_cases), effect=power_effect, alpha=alpha))
        else:
            notes.append(
                f"{b} vs {a}: the OR analysis and the power table need at least two readers "
                "who read the same two or more cases in both conditions; omitted."
            )
        boots.append(
            _bootstrap(reads, a, b, choices, n_bootstrap=n_bootstrap, seed=seed, alpha=alpha)
        )
        mcnemars.append(_mcnemar(reads, a, b, alpha))
        if b in aided and a not in aided:
            with_ai = reads[reads["ai"] != ""]
            if len(with_ai):
                switches.append(_switching(with_ai, a, b))
                follows.append(_following(with_ai, a, b))
        g, r, line, why = _gains(reads, a, b)
        gains.append(g)
        regressions.append(r)
        lines.append(line)
        notes += why
    condition_or = _concat(ors, OR_COLUMNS)
    if len(condition_or):
        adjusted = adjust_p(
            condition_or.assign(
                model=condition_or["condition_a"] + "|" + condition_or["condition_b"],
                method=condition_or["analysis"],
            ),
            adjust=adjust,
        )
        condition_or["p_adjusted"] = adjusted["p_adjusted"].to_numpy()
    ai_table, why = _ai_vs_readers(
        kept, codes, aided, choices, truth_by_case, alpha=alpha, adjust=adjust
    )
    notes += why
    compared = ConditionTables(
        design=design,
        reference=reference,
        codes=codes,
        conditions=conditions,
        condition_pairs=pd.DataFrame(pairs, columns=PAIRS_COLUMNS),
        condition_or=condition_or,
        condition_bootstrap=_concat(boots, BOOTSTRAP_COLUMNS),
        condition_mcnemar=_concat(mcnemars, MCNEMAR_COLUMNS),
        ai_vs_readers=ai_table,
        switching=_concat(switches, SWITCHING_COLUMNS),
        cnn_following=_concat(follows, FOLLOWING_COLUMNS),
        reader_gains=_concat(gains, GAINS_COLUMNS),
        gain_regression=_concat(regressions, REGRESSION_COLUMNS),
        gain_fit=_concat(lines, FIT_COLUMNS),
        power=_concat(powers, POWER_COLUMNS),
        by_condition=by_condition,
        notes=notes,
        power_effect=float(power_effect),
    )
    timings = pd.concat(
        [
            *(t.timings.assign(condition=code) for code, t in by_condition.items()),
            pd.DataFrame(
                {
                    "step": ["conditions"],
                    "seconds": [time.perf_counter() - clock],
                    "condition": [""],
                }
            ),
        ],
        ignore_index=True,
    )[["condition", "step", "seconds"]]
    return AnalysisTables(**_stacked(by_condition, selection, timings), conditions=compared)
