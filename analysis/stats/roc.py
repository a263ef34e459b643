"""ROC curves, AUCs and DeLong's test of correlated AUCs.

Curves and micro AUC come from scikit-learn. DeLong's covariance is hand-written
(scikit-learn and statsmodels have none): the placement values of DeLong, DeLong &
Clarke-Pearson (1988) computed with midranks as in Sun & Xu (2014), vectorised over
predictors/readers and tolerant of missing ratings (NaN), which the MRMC jackknife reuses.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats
from sklearn.metrics import roc_auc_score, roc_curve


@dataclass(frozen=True)
class Placements:
    """Wilcoxon AUC and placement values of scores ``(..., K)`` against binary truth.

    ``v10`` ``(..., m)``: for each positive case the fraction of negatives it beats
    (ties 1/2); ``v01`` ``(..., n)``: for each negative the fraction of positives that
    beat it. NaN where the score is missing. ``m``/``n`` count non-missing positives and
    negatives per row.
    """

    auc: np.ndarray
    v10: np.ndarray
    v01: np.ndarray
    m: np.ndarray
    n: np.ndarray


def _midranks(x: np.ndarray) -> np.ndarray:
    return stats.rankdata(x, axis=-1, nan_policy="omit")


def placements(scores: np.ndarray, positive: np.ndarray) -> Placements:
    """Placement values by midranks (Sun & Xu 2014, eq. 5-6), O(K log K) per row.

    V10_i = (rank of x_i among all - rank of x_i among positives) / n;
    V01_j = 1 - (rank of y_j among all - rank of y_j among negatives) / m;
    AUC = mean_i V10_i = mean_j V01_j (Mann-Whitney with ties counted 1/2).
    """
    x = np.asarray(scores, dtype=float)
    pos = np.asarray(positive, dtype=bool)
    rank_all = _midranks(x)
    pos_x, neg_x = x[..., pos], x[..., ~pos]
    m = np.sum(~np.isnan(pos_x), axis=-1)
    n = np.sum(~np.isnan(neg_x), axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        v10 = (rank_all[..., pos] - _midranks(pos_x)) / n[..., None]
        v01 = 1 - (rank_all[..., ~pos] - _midranks(neg_x)) / m[..., None]
        auc = np.nansum(v10, axis=-1) / m
    return Placements(auc=auc, v10=v10, v01=v01, m=m, n=n)


def wilcoxon_auc(scores: np.ndarray, positive: np.ndarray) -> np.ndarray:
    """Empirical (Wilcoxon/Mann-Whitney) AUC of each row of ``scores`` ``(..., K)``."""
    return placements(scores, positive).auc


def delong_covariance(scores: np.ndarray, positive: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """AUCs ``(P,)`` and DeLong covariance ``(P, P)`` of P predictors ``(P, K)``.

    S = S10 / m + S01 / n with S10, S01 the sample covariances (n-1) of the placement
    values over positives and negatives (DeLong et al. 1988, eq. 4-5). No missing scores.
    The covariance is NaN when there are fewer than two positives or two negatives (a
    sample covariance needs two values; pROC's ``ci.auc`` returns NA there too).
    """
    pl = placements(np.atleast_2d(scores), positive)
    m, n = pl.v10.shape[-1], pl.v01.shape[-1]
    if m < 2 or n < 2:
        p = pl.auc.shape[0]
        return pl.auc, np.full((p, p), np.nan)
    s10 = np.atleast_2d(np.cov(pl.v10))
    s01 = np.atleast_2d(np.cov(pl.v01))
    return pl.auc, s10 / m + s01 / n


@dataclass(frozen=True)
class DeLongTest:
    """DeLong's test of two correlated AUCs, as pROC's ``roc.test(method="delong")``."""

    auc1: float
    auc2: float
    difference: float  # auc1 - auc2
    se: float
    z: float
    p: float
    ci_low: float
    ci_high: float


def delong_test(
    positive: np.ndarray, score1: np.ndarray, score2: np.ndarray, *, alpha: float = 0.05
) -> DeLongTest:
    """z = (AUC1 - AUC2) / sqrt(V1 + V2 - 2 C12) with DeLong's covariance; two-sided p
    from N(0, 1); CI = difference -/+ z_{1-alpha/2} SE (DeLong et al. 1988; pROC).

    Higher scores indicate the positive class (pROC's ``direction="<"``). The CI is not
    clipped (pROC's ``ci_delong_paired`` does not clip it either). SE, z, p and CI are
    NaN with fewer than two positives or two negatives.
    """
    aucs, cov = delong_covariance(np.vstack([score1, score2]), positive)
    diff = aucs[0] - aucs[1]
    variance = cov[0, 0] + cov[1, 1] - 2 * cov[0, 1]
    se = float(np.sqrt(max(variance, 0.0))) if not np.isnan(variance) else np.nan
    if np.isnan(se):
        z = np.nan
    else:
        z = diff / se if se > 0 else (0.0 if diff == 0 else np.copysign(np.inf, diff))
    crit = stats.norm.ppf(1 - alpha / 2)
    return DeLongTest(
        auc1=float(aucs[0]),
        auc2=float(aucs[1]),
        difference=float(diff),
        se=se,
        z=float(z),
        p=float(2 * stats.norm.sf(abs(z))),
        ci_low=float(diff - crit * se),
        ci_high=float(diff + crit * se),
    )


def roc_curves(truth: np.ndarray, probs: np.ndarray, choices: Sequence[str]) -> pd.DataFrame:
    """One-vs-rest ROC curves ``class, fpr, tpr, threshold`` (sklearn ``roc_curve``).

    ``truth`` holds label indices ``(K,)``, ``probs`` the class scores ``(K, C)``.
    """
    parts = []
    for c, code in enumerate(choices):
        positive = truth == c
        if positive.all() or not positive.any():
            continue
        fpr, tpr, thr = roc_curve(positive, probs[:, c])
        parts.append(pd.DataFrame({"class": code, "fpr": fpr, "tpr": tpr, "threshold": thr}))
    return (
        pd.concat(parts, ignore_index=True)
        if parts
        else pd.DataFrame(columns=["class", "fpr", "tpr", "threshold"])
    )


def auc_table(
    truth: np.ndarray, probs: np.ndarray, choices: Sequence[str], *, alpha: float = 0.05
) -> pd.DataFrame:
    """Per-class one-vs-rest AUC with DeLong SE and Wald CI, plus macro and micro AUC.

    Columns ``class, auc, se, ci_low, ci_high, n_pos, n_neg``. A class's CI is
    AUC -/+ z_{1-alpha/2} SE clipped to [0, 1], as pROC's ``ci_auc_delong`` (R/delong.R:
    ``ci[ci > 1] <- 1; ci[ci < 0] <- 0``); the AUC is NaN for a class without positives
    or without negatives, and SE and CI are NaN with fewer than two of either (pROC
    returns NA). Class ``macro`` is the unweighted mean of the class AUCs (sklearn
    ``roc_auc_score(label_binarize(truth), probs, average="macro")``), ``micro`` the AUC
    of all class scores pooled against the one-hot truth (``average="micro"``); both
    have no SE, and ``n_pos``/``n_neg`` are NaN on these rows (they count the cases of
    one class). Cases with missing scores are left out.
    """
    ok = ~np.isnan(probs).any(axis=1)
    truth, probs = truth[ok], probs[ok]
    onehot = truth[:, None] == np.arange(len(choices))
    crit = stats.norm.ppf(1 - alpha / 2)
    rows = []
    for c, code in enumerate(choices):
        pos = onehot[:, c]
        if pos.all() or not pos.any():
            rows.append((code, np.nan, np.nan, np.nan, np.nan, pos.sum(), (~pos).sum()))
            continue
        auc, cov = delong_covariance(probs[:, c], pos)
        se = float(np.sqrt(cov[0, 0]))
        a = float(auc[0])
        low, high = np.clip([a - crit * se, a + crit * se], 0.0, 1.0)
        rows.append((code, a, se, low, high, pos.sum(), (~pos).sum()))
    out = pd.DataFrame(rows, columns=["class", "auc", "se", "ci_low", "ci_high", "n_pos", "n_neg"])
    macro = out["auc"].mean()
    present = onehot.any(axis=0) & ~onehot.all(axis=0)
    micro = (
        roc_auc_score(onehot[:, present], probs[:, present], average="micro")
        if present.sum() >= 2
        else np.nan
    )
    extra = pd.DataFrame(
        {
            "class": ["macro", "micro"],
            "auc": [macro, micro],
            "n_pos": [np.nan, np.nan],
            "n_neg": [np.nan, np.nan],
        }
    )
    return pd.concat([out, extra], ignore_index=True)
