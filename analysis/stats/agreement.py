"""Agreement among readers and between each model and the readers.

Tidy output, columns :data:`COLUMNS`; ``standard`` says what the rater is compared with:
``readers`` (Fleiss' kappa among the readers themselves), ``readers_majority`` (the
readers' most frequent answer per case) or ``each_reader`` (mean over readers of the
model's kappa against that reader: "dermatologists as standard", Zhu et al. 2021).
A tied majority goes to the label that comes first in the choices; the row with
statistic ``majority_ties`` says for how many cases that happened.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats

from analysis.stats.kappa import cohen_kappa, contingency_tables, fleiss_kappa, one_vs_rest_tables
from analysis.stats.metrics import RatingMatrix

COLUMNS = [
    "rater", "standard", "class", "statistic", "estimate", "se", "ci_low", "ci_high", "z", "p", "n",
]  # fmt: skip


def answer_counts(matrix: RatingMatrix) -> np.ndarray:
    """Cases x classes table ``(K, C)`` of how many raters gave each answer."""
    k, c = len(matrix.cases), matrix.n_classes
    ok = matrix.answers >= 0
    index = (np.broadcast_to(np.arange(k), matrix.answers.shape) * c + matrix.answers)[ok]
    return np.bincount(index, minlength=k * c).reshape(k, c)


def majority_answer(matrix: RatingMatrix) -> np.ndarray:
    """Most frequent answer per case ``(K,)``, -1 where nobody answered; a tie goes to
    the label that comes first in the choices (:func:`majority_ties` counts them)."""
    counts = answer_counts(matrix)
    return np.where(counts.sum(axis=1) > 0, counts.argmax(axis=1), -1)


def majority_ties(matrix: RatingMatrix) -> np.ndarray:
    """``(K,)`` bool: cases whose most frequent answer is shared by two or more labels
    (so :func:`majority_answer` took the first of them in choice order)."""
    counts = answer_counts(matrix)
    top = counts.max(axis=1)
    return (top > 0) & ((counts == top[:, None]).sum(axis=1) > 1)


def majority_ties_row(readers: RatingMatrix) -> pd.DataFrame:
    """One agreement row, statistic ``majority_ties``: ``estimate`` = number of cases
    whose readers' majority answer is tied (broken by choice order), ``n`` = cases with
    at least one reader's answer."""
    tied = majority_ties(readers)
    answered = int((readers.answers >= 0).any(axis=0).sum())
    return pd.DataFrame(
        [("readers", "readers", "all", "majority_ties", float(tied.sum()), np.nan, np.nan,
          np.nan, np.nan, np.nan, answered)],
        columns=COLUMNS,
    )  # fmt: skip


def readers_fleiss(readers: RatingMatrix) -> pd.DataFrame:
    """Fleiss' kappa among readers, overall and per class, with the Fleiss-Nee-Landis
    (1979) null SE, z and p (see :func:`analysis.stats.kappa.fleiss_kappa`)."""
    res = fleiss_kappa(answer_counts(readers))
    rows = [("readers", "readers", "all", "fleiss_kappa", res.kappa, res.se0, np.nan, np.nan,
             res.z, res.p, res.n_subjects)]  # fmt: skip
    for j, label in enumerate(readers.choices):
        rows.append(
            ("readers", "readers", label, "fleiss_kappa", res.category_kappa[j],
             res.category_se0[j], np.nan, np.nan, res.category_z[j], res.category_p[j],
             res.n_subjects)
        )  # fmt: skip
    return pd.DataFrame(rows, columns=COLUMNS)


def models_vs_majority(
    readers: RatingMatrix, models: RatingMatrix, *, alpha: float = 0.05
) -> pd.DataFrame:
    """Each model's Cohen kappa against the readers' majority answer (rows model, columns
    majority), multi-class and per class (2x2 "says c"), with Fleiss-Cohen-Everitt ASE,
    Wald CI and the z-test under H0 (:func:`analysis.stats.kappa.cohen_kappa`)."""
    majority = majority_answer(readers)
    tables = contingency_tables(models.answers, majority[None, :], readers.n_classes)
    overall = cohen_kappa(tables, alpha=alpha)
    per_class = cohen_kappa(one_vs_rest_tables(tables), alpha=alpha)
    rows = []
    for i, model in enumerate(models.raters):
        rows.append((model, "readers_majority", "all", "cohen_kappa", overall.kappa[i],
                     overall.ase[i], overall.ci_low[i], overall.ci_high[i], overall.z[i],
                     overall.p[i], overall.n[i]))  # fmt: skip
        for j, label in enumerate(readers.choices):
            rows.append((model, "readers_majority", label, "cohen_kappa", per_class.kappa[i, j],
                         per_class.ase[i, j], per_class.ci_low[i, j], per_class.ci_high[i, j],
                         per_class.z[i, j], per_class.p[i, j], per_class.n[i, j]))  # fmt: skip
    return pd.DataFrame(rows, columns=COLUMNS)


def models_vs_each_reader(
    readers: RatingMatrix, models: RatingMatrix, *, alpha: float = 0.05
) -> pd.DataFrame:
    """Mean over readers of each model's Cohen kappa against that reader (cases both
    answered), multi-class and per class; SE = SD / sqrt(n readers), t-CI on n-1 df,
    z = mean / SE with a t p-value. ``n`` counts the readers."""
    rows = []
    for i, model in enumerate(models.raters):
        tables = contingency_tables(models.answers[i][None, :], readers.answers, readers.n_classes)
        kappas = np.concatenate(
            [cohen_kappa(one_vs_rest_tables(tables)).kappa, cohen_kappa(tables).kappa[:, None]],
            axis=1,
        )
        for j, label in enumerate([*readers.choices, "all"]):
            values = kappas[:, j][~np.isnan(kappas[:, j])]
            n = len(values)
            mean = values.mean() if n else np.nan
            se = values.std(ddof=1) / np.sqrt(n) if n > 1 else np.nan
            with np.errstate(invalid="ignore", divide="ignore"):
                crit = stats.t.ppf(1 - alpha / 2, n - 1) if n > 1 else np.nan
                t_stat = mean / se
                p = 2 * stats.t.sf(abs(t_stat), n - 1) if n > 1 else np.nan
            rows.append((model, "each_reader", label, "mean_cohen_kappa", mean, se,
                         mean - crit * se, mean + crit * se, t_stat, p, n))  # fmt: skip
    return pd.DataFrame(rows, columns=COLUMNS)


def agreement_table(
    readers: RatingMatrix | None, models: RatingMatrix | None, *, alpha: float = 0.05
) -> pd.DataFrame:
    """All agreement statistics available for the given raters, as one tidy table:
    Fleiss' kappa among two or more readers and, with models, the number of tied
    majority answers (:func:`majority_ties_row`), each model against the majority and
    against each reader."""
    parts = []
    if readers is not None and len(readers.raters) >= 2:
        parts.append(readers_fleiss(readers))
    if readers is not None and models is not None:
        parts.append(majority_ties_row(readers))
        parts.append(models_vs_majority(readers, models, alpha=alpha))
        parts.append(models_vs_each_reader(readers, models, alpha=alpha))
    if not parts:
        return pd.DataFrame(columns=COLUMNS)
    return pd.concat(parts, ignore_index=True)
