"""CNN versus readers, per class and overall, as one tidy table.

Every function returns the columns of :data:`COLUMNS`; ``difference`` is always
model - readers, and ``p_adjusted`` corrects the per-class p-values of one model x metric
x method for multiplicity (Holm by default, statsmodels ``multipletests``); class ``all``
keeps its own p.

Methods:
- ``z_kappa``: the reference paper's adjusted Z-test of kappas (Zhu et al. 2021);
- ``bootstrap``: paired bootstrap over cases and readers;
- ``mrmc_rrrc`` / ``mrmc_rrfc``: single-treatment MRMC (:func:`analysis.stats.mrmc.ai_from_jackknife`).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import numpy as np
import pandas as pd
from scipy import stats
from statsmodels.stats.multitest import multipletests

from analysis.stats.kappa import cohen_kappa, contingency_tables, one_vs_rest_tables
from analysis.stats.metrics import (
    MetricArrays,
    RatingMatrix,
    case_features,
    confusion_counts,
    counts_from_features,
    jackknife_counts,
    metrics_from_counts,
)
from analysis.stats.mrmc import WILCOXON, ai_from_jackknife

COLUMNS = [
    "model",
    "class",
    "metric",
    "method",
    "model_value",
    "readers_value",
    "difference",
    "ci_low",
    "ci_high",
    "statistic",
    "df",
    "p",
    "p_adjusted",
]
BOOTSTRAP_METRICS = ("kappa", "sensitivity", "specificity", "accuracy")


def holm(p: np.ndarray) -> np.ndarray:
    """Holm (1979) step-down adjusted p-values: max_{j<=i} (m - j + 1) p_(j), capped at 1.

    Same values as statsmodels ``multipletests(method="holm")``, written out because that
    function calls ``gc.collect()`` on every call (~0.1 s), too slow for hundreds of families.
    """
    p = np.asarray(p, dtype=float)
    order = np.argsort(p)
    adjusted = np.minimum(1.0, np.maximum.accumulate(p[order] * np.arange(len(p), 0, -1)))
    out = np.empty_like(adjusted)
    out[order] = adjusted
    return out


def _adjust(p: np.ndarray, method: str) -> np.ndarray:
    if method == "holm":
        return holm(p)
    return multipletests(p, method="bonferroni")[1]


def adjust_p(table: pd.DataFrame, *, adjust: str = "holm") -> pd.DataFrame:
    """Fill ``p_adjusted`` within each model x metric x method over the classes (class
    ``all`` excluded and left unadjusted); NaN p-values stay NaN. ``adjust`` is ``holm``
    (Holm 1979) or ``bonferroni`` (statsmodels ``multipletests``)."""
    if adjust not in ("holm", "bonferroni"):
        raise ValueError(f"adjust must be 'holm' or 'bonferroni', got {adjust!r}")
    out = table.copy()
    out["p_adjusted"] = out["p"].astype(float)
    per_class = (out["class"] != "all") & out["p"].notna()
    for _, idx in out[per_class].groupby(["model", "metric", "method"]).groups.items():
        out.loc[idx, "p_adjusted"] = _adjust(out.loc[idx, "p"].to_numpy(dtype=float), adjust)
    return out


def _class_values(metrics: MetricArrays, name: str) -> np.ndarray:
    """``(..., R, C+1)``: the per-class metric and, last, its class-``all`` value."""
    overall = metrics.top1_accuracy if name == "top1_accuracy" else metrics.overall(name)
    if name == "top1_accuracy":
        per_class = np.full((*overall.shape, 0), np.nan)
    else:
        per_class = getattr(metrics, name)
    return np.concatenate([per_class, overall[..., None]], axis=-1)


def _labels(choices: list[str], name: str) -> list[str]:
    return ["all"] if name == "top1_accuracy" else [*choices, "all"]


def z_kappa(
    readers: RatingMatrix, models: RatingMatrix, *, adjust: str = "holm", alpha: float = 0.05
) -> pd.DataFrame:
    """Adjusted Z-test of the CNN's kappa against the readers' kappa, per class and overall.

    z = (kappa_cnn - kappa_readers) / sqrt(SE_cnn^2 + SE_readers^2), two-sided normal p,
    CI = difference -/+ z_{1-alpha/2} sqrt(SE_cnn^2 + SE_readers^2). kappa_cnn is the
    model's Cohen kappa against the reference standard (one-vs-rest 2x2 table for a class,
    the C x C table for ``all``) and SE_cnn its Fleiss-Cohen-Everitt ASE. kappa_readers
    is the mean of the readers' individual kappas computed the same way and SE_readers
    the standard error of that mean over readers (SD / sqrt(number of readers)): the
    paper reports "the average level of the dermatologists", i.e. a typical reader, so
    its uncertainty is the spread of readers, not a pooled table that would treat 280
    readers' answers as independent cases. The test ignores the correlation from the
    shared cases; the MRMC methods account for it.
    """
    c = readers.n_classes
    rows = []
    reader_tables = contingency_tables(readers.answers, readers.truth[None, :], c)
    r_multi = cohen_kappa(reader_tables).kappa
    r_class = cohen_kappa(one_vs_rest_tables(reader_tables)).kappa
    reader_kappas = np.concatenate([r_class, r_multi[:, None]], axis=1)  # (R, C+1)
    # NaN kappas left out; SE_readers is NaN with fewer than two readers (no warning).
    ok = ~np.isnan(reader_kappas)
    n_ok = ok.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        r_mean = np.where(ok, reader_kappas, 0.0).sum(axis=0) / n_ok
        squares = (np.where(ok, reader_kappas - r_mean, 0.0) ** 2).sum(axis=0)
        r_se = np.sqrt(squares / (n_ok - 1) / n_ok)
    model_tables = contingency_tables(models.answers, models.truth[None, :], c)
    m_multi = cohen_kappa(model_tables)
    m_class = cohen_kappa(one_vs_rest_tables(model_tables))
    m_kappa = np.concatenate([m_class.kappa, m_multi.kappa[:, None]], axis=1)
    m_se = np.concatenate([m_class.ase, m_multi.ase[:, None]], axis=1)
    crit = stats.norm.ppf(1 - alpha / 2)
    labels = [*readers.choices, "all"]
    for i, model in enumerate(models.raters):
        with np.errstate(invalid="ignore", divide="ignore"):
            diff = m_kappa[i] - r_mean
            se = np.sqrt(m_se[i] ** 2 + r_se**2)
            z = diff / se
        for j, label in enumerate(labels):
            rows.append(
                (model, label, "kappa", "z_kappa", m_kappa[i, j], r_mean[j], diff[j],
                 diff[j] - crit * se[j], diff[j] + crit * se[j], z[j], np.nan,
                 2 * stats.norm.sf(abs(z[j])), np.nan)
            )  # fmt: skip
    return adjust_p(pd.DataFrame(rows, columns=COLUMNS), adjust=adjust)


def _nan_mean(values: np.ndarray) -> np.ndarray:
    """Mean over readers (axis 0) with NaN left out; NaN, without a warning, where every
    reader's value is NaN."""
    ok = ~np.isnan(values)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(ok, values, 0.0).sum(axis=0) / ok.sum(axis=0)


def _weighted_mean(values: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Mean over readers (axis -2) of ``(B, R, X)`` with weights ``(B, R)``, NaN skipped."""
    ok = ~np.isnan(values)
    w = weights[..., None] * ok
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.einsum("brx,brx->bx", np.where(ok, values, 0.0), w) / w.sum(axis=1)


def _multinomial_weights(rng: np.random.Generator, n_draws: int, size: int) -> np.ndarray:
    """``(n_draws, size)`` multiplicities of ``size`` indices drawn with replacement."""
    idx = rng.integers(0, size, (n_draws, size))
    flat = (np.arange(n_draws)[:, None] * size + idx).ravel()
    return np.bincount(flat, minlength=n_draws * size).reshape(n_draws, size)


def bootstrap_compare(
    readers: RatingMatrix,
    models: RatingMatrix,
    *,
    n_bootstrap: int = 2000,
    seed: int = 0,
    alpha: float = 0.05,
    adjust: str = "holm",
    chunk: int = 250,
    progress: Callable[[int], object] | None = None,
) -> pd.DataFrame:
    """Paired bootstrap of model - readers for kappa, sensitivity, specificity, accuracy.

    Each resample draws the cases with replacement (the same cases for the models and the
    readers: paired) and, independently, the readers with replacement (Efron & Tibshirani
    1993; two-way resampling for MRMC as in Beiden, Wagner & Campbell 2000). The readers'
    value is the mean of the resampled readers' metrics. CI: percentile interval of the
    differences; p: two-sided, 2 x min(P*(diff <= 0), P*(diff >= 0)). Seeded numpy
    Generator, so the same seed repeats exactly. Vectorised: the multinomial case weights
    ``(B, K)`` times the one-hot case features give every resample's confusion counts in
    one matrix product per chunk of ``chunk`` resamples.
    """
    rng = np.random.default_rng(seed)
    k = len(readers.cases)
    n_readers, n_models, c = len(readers.raters), len(models.raters), readers.n_classes
    case_w = _multinomial_weights(rng, n_bootstrap, k)
    reader_w = _multinomial_weights(rng, n_bootstrap, n_readers).astype(float)
    x_readers = case_features(readers.answers, readers.truth, c)
    x_models = case_features(models.answers, models.truth, c)
    names = (*BOOTSTRAP_METRICS, "top1_accuracy")
    diffs = {name: [] for name in names}
    for start in range(0, n_bootstrap, chunk):
        w = case_w[start : start + chunk].astype(np.float32)
        m_r = metrics_from_counts(counts_from_features(w @ x_readers, n_readers, c))
        m_m = metrics_from_counts(counts_from_features(w @ x_models, n_models, c))
        for name in names:
            group = _weighted_mean(_class_values(m_r, name), reader_w[start : start + chunk])
            diffs[name].append(_class_values(m_m, name) - group[:, None, :])
        if progress is not None:  # e.g. a progress bar's update: resamples done
            progress(len(w))
    point_r = metrics_from_counts(confusion_counts(readers.answers, readers.truth, c))
    point_m = metrics_from_counts(confusion_counts(models.answers, models.truth, c))
    rows = []
    for name in names:
        d = np.concatenate(diffs[name], axis=0)  # (B, M, C+1)
        readers_value = _nan_mean(_class_values(point_r, name))
        model_value = _class_values(point_m, name)
        valid = ~np.isnan(d)
        n_valid = valid.sum(axis=0)
        with np.errstate(invalid="ignore", divide="ignore"), warnings.catch_warnings():
            # a class no resample could score (e.g. a lone reader's undefined PPV) is NaN
            warnings.simplefilter("ignore", RuntimeWarning)
            lo, hi = (
                np.nanpercentile(d, [100 * alpha / 2, 100 * (1 - alpha / 2)], axis=0)
                if valid.any()
                else (np.full(d.shape[1:], np.nan),) * 2
            )
            below = np.sum(valid & (d <= 0), axis=0) / n_valid
            above = np.sum(valid & (d >= 0), axis=0) / n_valid
        p = np.minimum(1.0, 2 * np.minimum(below, above))
        for i, model in enumerate(models.raters):
            for j, label in enumerate(_labels(readers.choices, name)):
                rows.append(
                    (model, label, name, "bootstrap", model_value[i, j], readers_value[j],
                     model_value[i, j] - readers_value[j], lo[i, j], hi[i, j], np.nan,
                     np.nan, p[i, j], np.nan)
                )  # fmt: skip
    return adjust_p(pd.DataFrame(rows, columns=COLUMNS), adjust=adjust)


def mrmc_compare(
    readers: RatingMatrix, models: RatingMatrix, *, alpha: float = 0.05, adjust: str = "holm"
) -> pd.DataFrame:
    """Single-treatment MRMC (1T-RRRC ``mrmc_rrrc`` and 1T-RRFC ``mrmc_rrfc``) per model.

    Figures of merit: per class accuracy, sensitivity, specificity and kappa (one-vs-rest)
    and, where the model has probabilities, the Wilcoxon AUC (the model's class
    probability against the readers' binary "said c" ratings); overall ``top1_accuracy``
    and the multi-class ``kappa``. Jackknife over cases in closed form (counts minus each
    case's contribution). Readers whose FOM is undefined (NaN) are left out of that FOM.
    ``statistic`` is F = t^2 on (1, df); the difference and CI are model - readers.
    """
    c = readers.n_classes
    full_r = metrics_from_counts(confusion_counts(readers.answers, readers.truth, c))
    jack_r = metrics_from_counts(jackknife_counts(readers.answers, readers.truth, c))
    full_m = metrics_from_counts(confusion_counts(models.answers, models.truth, c))
    jack_m = metrics_from_counts(jackknife_counts(models.answers, models.truth, c))
    foms = []  # (metric, label, readers (R,), readers jack (K,R), models (M,), models jack (K,M))
    for name in ("accuracy", "sensitivity", "specificity", "kappa", "top1_accuracy"):
        fr, jr = _class_values(full_r, name), _class_values(jack_r, name)
        fm, jm = _class_values(full_m, name), _class_values(jack_m, name)
        for j, label in enumerate(_labels(readers.choices, name)):
            foms.append((name, label, fr[:, j], jr[:, :, j], fm[:, j], jm[:, :, j]))
    if models.probs is not None:
        ratings = np.where(readers.answers >= 0, 0.0, np.nan)
        for j, label in enumerate(readers.choices):
            said = np.where(readers.answers == j, 1.0, ratings)
            truth = (readers.truth == j).astype(int)
            probs = models.probs[:, :, j]
            foms.append(
                ("auc", label, WILCOXON.value(said, truth), WILCOXON.jackknife(said, truth),
                 WILCOXON.value(probs, truth), WILCOXON.jackknife(probs, truth))
            )  # fmt: skip
    rows = []
    for name, label, fr, jr, fm, jm in foms:
        ok = ~np.isnan(fr) & ~np.isnan(jr).any(axis=0)
        for i, model in enumerate(models.raters):
            if ok.sum() < 2 or np.isnan(fm[i]) or np.isnan(jm[:, i]).any():
                continue
            res = ai_from_jackknife(fr[ok], jr[:, ok], fm[i], jm[:, i], fom_name=name, alpha=alpha)
            for a in res.analyses.itertuples():
                rows.append(
                    (model, label, name, f"mrmc_{a.analysis}", res.fom_ai, res.readers_mean,
                     -a.difference, -a.ci_high, -a.ci_low, a.statistic, a.df, a.p, np.nan)
                )  # fmt: skip
    return adjust_p(pd.DataFrame(rows, columns=COLUMNS), adjust=adjust)


def compare_models_with_readers(
    readers: RatingMatrix,
    models: RatingMatrix,
    *,
    methods: tuple[str, ...] = ("z_kappa", "bootstrap", "mrmc_rrrc", "mrmc_rrfc"),
    n_bootstrap: int = 2000,
    seed: int = 0,
    adjust: str = "holm",
    alpha: float = 0.05,
    progress: Callable[[int], object] | None = None,
) -> pd.DataFrame:
    """All requested methods stacked into one table of :data:`COLUMNS`; ``progress`` is
    called with the number of bootstrap resamples done after each chunk."""
    parts = []
    if "z_kappa" in methods:
        parts.append(z_kappa(readers, models, adjust=adjust, alpha=alpha))
    if "bootstrap" in methods:
        parts.append(
            bootstrap_compare(
                readers,
                models,
                n_bootstrap=n_bootstrap,
                seed=seed,
                alpha=alpha,
                adjust=adjust,
                progress=progress,
            )
        )
    if {"mrmc_rrrc", "mrmc_rrfc"} & set(methods):
        mrmc = mrmc_compare(readers, models, alpha=alpha, adjust=adjust)
        parts.append(mrmc[mrmc["method"].isin(methods)])
    if not parts:
        return pd.DataFrame(columns=COLUMNS)
    return pd.concat(parts, ignore_index=True)
