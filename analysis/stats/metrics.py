"""Per-rater x class diagnostic metrics from label answers, vectorised with numpy.

A study is encoded once as a raters x cases matrix of label indices (-1 = no answer);
one-vs-rest confusion counts for every rater and class come from one matrix product of
case weights with one-hot case features, so the same code serves the point estimates
(weights 1), the jackknife (weights 1 - I) and the bootstrap (multinomial weights).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass, fields

import numpy as np
import pandas as pd
from scipy import stats

from analysis.stats.inputs import PROB_PREFIX, prob_columns
from analysis.stats.kappa import contingency_tables

METRICS = ("accuracy", "sensitivity", "specificity", "ppv", "npv", "f1", "kappa")


@dataclass(frozen=True)
class RatingMatrix:
    """Answers of several raters on a common list of cases, as label indices."""

    raters: list[str]
    cases: list[str]
    choices: list[str]
    answers: np.ndarray  # (R, K) int, -1 where the rater gave no answer
    truth: np.ndarray  # (K,) int
    probs: np.ndarray | None = None  # (R, K, C) float, NaN where missing

    @property
    def n_classes(self) -> int:
        return len(self.choices)


def encode(
    frame: pd.DataFrame,
    *,
    rater: str,
    choices: Sequence[str],
    cases: Sequence[str] | None = None,
    truth_by_case: pd.Series | None = None,
) -> RatingMatrix:
    """Validated tidy answers/predictions -> :class:`RatingMatrix`.

    ``rater`` is the rater column (``reader`` or ``model``); ``cases`` fixes the case
    order (default: sorted cases of the table) and ``truth_by_case`` (a Series indexed
    by case, default the table's own truths) must know the truth of each case.
    Probabilities are kept when the table has ``prob_<CODE>`` columns.
    """
    choices = list(choices)
    code = {c: i for i, c in enumerate(choices)}
    raters = sorted(frame[rater].unique())
    if truth_by_case is None:
        truth_by_case = frame.drop_duplicates("case").set_index("case")["truth"]
    cases = sorted(truth_by_case.index) if cases is None else list(cases)
    r_idx = pd.Index(raters).get_indexer(frame[rater])
    k_idx = pd.Index(cases).get_indexer(frame["case"])
    keep = k_idx >= 0
    answers = np.full((len(raters), len(cases)), -1, dtype=np.int64)
    answers[r_idx[keep], k_idx[keep]] = frame["answer"].map(code).to_numpy()[keep]
    truth = truth_by_case.reindex(cases).map(code).to_numpy()
    if np.isnan(truth.astype(float)).any():
        missing = [c for c, t in zip(cases, truth, strict=True) if pd.isna(t)]
        raise ValueError(f"no truth for case(s) {missing[:10]}")
    probs = None
    if prob_columns(frame):
        probs = np.full((len(raters), len(cases), len(choices)), np.nan)
        values = frame[[PROB_PREFIX + c for c in choices]].to_numpy(dtype=float)
        probs[r_idx[keep], k_idx[keep]] = values[keep]
    return RatingMatrix(raters, cases, choices, answers, truth.astype(np.int64), probs)


@dataclass(frozen=True)
class Counts:
    """One-vs-rest confusion counts, shape ``(..., R, C)``; ``n`` is ``(..., R)``."""

    tp: np.ndarray
    fp: np.ndarray
    fn: np.ndarray
    tn: np.ndarray
    n: np.ndarray


def case_features(answers: np.ndarray, truth: np.ndarray, n_classes: int) -> np.ndarray:
    """Per-case one-hot features ``(K, 3*R*C + R)``: [answer=c, truth=c & answered,
    answer=c=truth, answered], float32 (exact for counts below 2**24)."""
    answered = answers >= 0
    classes = np.arange(n_classes)
    said = (answers[..., None] == classes).transpose(1, 0, 2)  # (K, R, C)
    is_c = (truth[:, None] == classes)[:, None, :]  # (K, 1, C)
    truth_c = is_c & answered.T[..., None]
    k = answers.shape[1]
    return np.concatenate(
        [
            said.reshape(k, -1),
            truth_c.reshape(k, -1),
            (said & is_c).reshape(k, -1),
            answered.T,
        ],
        axis=1,
    ).astype(np.float32)


def counts_from_features(summed: np.ndarray, n_raters: int, n_classes: int) -> Counts:
    """Unpack weighted sums of :func:`case_features` ``(..., 3*R*C + R)`` into counts."""
    rc = n_raters * n_classes
    shape = (*summed.shape[:-1], n_raters, n_classes)
    said = summed[..., :rc].reshape(shape).astype(float)
    truth_c = summed[..., rc : 2 * rc].reshape(shape).astype(float)
    tp = summed[..., 2 * rc : 3 * rc].reshape(shape).astype(float)
    n = summed[..., 3 * rc :].astype(float)
    fp = said - tp
    fn = truth_c - tp
    return Counts(tp=tp, fp=fp, fn=fn, tn=n[..., None] - said - fn, n=n)


def confusion_counts(
    answers: np.ndarray, truth: np.ndarray, n_classes: int, *, case_weights=None
) -> Counts:
    """TP/FP/FN/TN per rater x class (one-vs-rest), unanswered cases left out per rater.

    ``case_weights`` (``(K,)`` or ``(B, K)``) multiplies each case's contribution: ones
    give the counts, bootstrap multiplicities give resampled counts ``(B, R, C)``.
    """
    features = case_features(np.asarray(answers), np.asarray(truth), n_classes)
    if case_weights is None:
        summed = features.sum(axis=0)
    else:
        summed = np.asarray(case_weights, dtype=np.float32) @ features
    return counts_from_features(summed, answers.shape[0], n_classes)


def jackknife_counts(answers: np.ndarray, truth: np.ndarray, n_classes: int) -> Counts:
    """Leave-one-case-out counts ``(K, R, C)``: totals minus each case's features."""
    features = case_features(np.asarray(answers), np.asarray(truth), n_classes)
    summed = features.sum(axis=0)[None, :] - features
    return counts_from_features(summed, answers.shape[0], n_classes)


@dataclass(frozen=True)
class MetricArrays:
    """Per-rater x class metrics ``(..., R, C)`` and per-rater overall values ``(..., R)``.

    One-vs-rest for class c: sensitivity TP/(TP+FN), specificity TN/(TN+FP), PPV
    TP/(TP+FP), NPV TN/(TN+FN), accuracy (TP+TN)/n, F1 2TP/(2TP+FP+FN), kappa Cohen's
    kappa of the 2x2 table "rater says c" x "truth is c". NaN where a denominator is 0.
    Overall: ``top1_accuracy`` = sum TP / n; ``kappa_all`` = multi-class Cohen's kappa;
    :meth:`macro` = unweighted mean over the classes with a positive case.
    ``positives`` = TP + FN, the cases of each class the rater answered.
    """

    accuracy: np.ndarray
    sensitivity: np.ndarray
    specificity: np.ndarray
    ppv: np.ndarray
    npv: np.ndarray
    f1: np.ndarray
    kappa: np.ndarray
    top1_accuracy: np.ndarray
    kappa_all: np.ndarray
    positives: np.ndarray

    def macro(self, metric: str) -> np.ndarray:
        """Macro average ``(..., R)``: the unweighted mean over classes of ``metric``,
        leaving out each class with no positive case among the cases the rater answered
        (and classes where the metric is NaN): scikit-learn's ``average="macro"`` with
        ``labels`` = the classes present in the truth. A class without positives would
        otherwise enter with trivial one-vs-rest values (specificity and NPV 1 when
        nobody names it, accuracy near 1) and pull the averages towards them. Within a
        bootstrap or jackknife resample the rule applies to the resampled counts."""
        values = np.where(self.positives > 0, getattr(self, metric), np.nan)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN rows give NaN
            return np.nanmean(values, axis=-1)

    def overall(self, metric: str) -> np.ndarray:
        """The class-``all`` value: multi-class kappa for kappa, else the macro average."""
        return self.kappa_all if metric == "kappa" else self.macro(metric)


def metrics_from_counts(c: Counts) -> MetricArrays:
    """All metrics of :class:`MetricArrays` from confusion counts (any leading shape)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        n = c.n[..., None]
        po = (c.tp + c.tn) / n
        pe = ((c.tp + c.fp) * (c.tp + c.fn) + (c.fn + c.tn) * (c.fp + c.tn)) / n**2
        said = c.tp + c.fp
        truth = c.tp + c.fn
        po_all = c.tp.sum(axis=-1) / c.n
        pe_all = (said * truth).sum(axis=-1) / c.n**2
        return MetricArrays(
            accuracy=po,
            sensitivity=c.tp / truth,
            specificity=c.tn / (c.tn + c.fp),
            ppv=c.tp / said,
            npv=c.tn / (c.tn + c.fn),
            f1=2 * c.tp / (2 * c.tp + c.fp + c.fn),
            kappa=(po - pe) / (1 - pe),
            top1_accuracy=po_all,
            kappa_all=(po_all - pe_all) / (1 - pe_all),
            positives=truth,
        )


def metrics_table(
    matrix: RatingMatrix, *, metrics: MetricArrays | None = None, rater_kind: str = "reader"
) -> pd.DataFrame:
    """Tidy ``rater, rater_kind, class, metric, estimate``: every metric per class and,
    with class ``all``, the macro averages, multi-class kappa and ``top1_accuracy``."""
    if metrics is None:
        metrics = metrics_from_counts(
            confusion_counts(matrix.answers, matrix.truth, matrix.n_classes)
        )
    r, c = len(matrix.raters), matrix.n_classes
    parts = []
    for name in METRICS:
        per_class = getattr(metrics, name)
        parts.append(
            pd.DataFrame(
                {
                    "rater": np.repeat(matrix.raters, c),
                    "class": np.tile(matrix.choices, r),
                    "metric": name,
                    "estimate": per_class.reshape(-1),
                }
            )
        )
        parts.append(
            pd.DataFrame(
                {
                    "rater": matrix.raters,
                    "class": "all",
                    "metric": name,
                    "estimate": metrics.overall(name),
                }
            )
        )
    parts.append(
        pd.DataFrame(
            {
                "rater": matrix.raters,
                "class": "all",
                "metric": "top1_accuracy",
                "estimate": metrics.top1_accuracy,
            }
        )
    )
    out = pd.concat(parts, ignore_index=True)
    out.insert(1, "rater_kind", rater_kind)
    return out


def counts_table(matrix: RatingMatrix, *, rater_kind: str = "reader") -> pd.DataFrame:
    """Tidy ``rater, rater_kind, class, tp, fp, fn, tn, n`` (one-vs-rest, answered cases)."""
    c = confusion_counts(matrix.answers, matrix.truth, matrix.n_classes)
    r, k = len(matrix.raters), matrix.n_classes
    out = pd.DataFrame(
        {
            "rater": np.repeat(matrix.raters, k),
            "rater_kind": rater_kind,
            "class": np.tile(matrix.choices, r),
        }
    )
    for f in fields(c):
        values = getattr(c, f.name)
        values = np.repeat(values, k) if f.name == "n" else values.reshape(-1)
        out[f.name] = values.astype(np.int64)
    return out


def group_summary(table: pd.DataFrame, *, alpha: float = 0.05) -> pd.DataFrame:
    """Summary over raters of a tidy metrics table, one row per class x metric.

    Columns ``class, metric, n_raters, mean, sd, median, min, max, ci_low, ci_high``:
    SD with n-1, CI of the mean = mean -/+ t_{n-1, 1-alpha/2} SD / sqrt(n) (NaN raters
    left out).
    """
    grouped = table.dropna(subset=["estimate"]).groupby(["class", "metric"], sort=False)
    out = grouped["estimate"].agg(
        n_raters="count", mean="mean", sd="std", median="median", min="min", max="max"
    )
    out = out.reset_index()
    with np.errstate(invalid="ignore", divide="ignore"):
        half = (
            stats.t.ppf(1 - alpha / 2, out["n_raters"] - 1) * out["sd"] / np.sqrt(out["n_raters"])
        )
    out["ci_low"] = out["mean"] - half
    out["ci_high"] = out["mean"] + half
    return out


def confusion_matrix(matrix: RatingMatrix) -> np.ndarray:
    """Pooled confusion matrix ``(C, C)``, rows truth, columns answer, over all raters."""
    return contingency_tables(matrix.truth[None, :], matrix.answers, matrix.n_classes).sum(axis=0)
