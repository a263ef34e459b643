"""Every table of a reader study in one call: :func:`analyze_tables`."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from statsmodels.stats.proportion import proportion_confint

from analysis.stats.agreement import agreement_table
from analysis.stats.compare import COLUMNS as COMPARISON_COLUMNS
from analysis.stats.compare import adjust_p, compare_models_with_readers
from analysis.stats.inputs import (
    ANSWER_COLUMNS,
    InputError,
    check_consistent_truth,
    load_answers,
    load_predictions,
)
from analysis.stats.kappa import cohen_kappa, contingency_tables, one_vs_rest_tables
from analysis.stats.metrics import (
    METRICS,
    RatingMatrix,
    confusion_counts,
    counts_table,
    encode,
    group_summary,
    metrics_from_counts,
    metrics_table,
)
from analysis.stats.roc import auc_table, delong_test

PER_CLASS_COLUMNS = ["rater", "rater_kind", "class", "metric", "estimate", "ci_low", "ci_high"]


@dataclass(frozen=True)
class AnalysisTables:
    """Tidy results of :func:`analyze_tables`.

    per_class   rater, rater_kind (reader/model/readers), class (code or ``all``),
                metric, estimate, ci_low, ci_high [, subgroup]
    counts      rater, rater_kind, class, tp, fp, fn, tn, n
    comparisons model - readers, see :data:`analysis.stats.compare.COLUMNS`
    agreement   see :data:`analysis.stats.agreement.COLUMNS`
    auc         model, class (code, ``macro``, ``micro``), auc, se, ci_low, ci_high, n_pos, n_neg
    auc_tests   model_a, model_b, class, auc_a, auc_b, difference, se, z, p, ci_low,
                ci_high, p_adjusted (DeLong, Holm/Bonferroni over classes per pair)
    confusion   rater (``readers`` pooled, or a model), truth, answer, count
    readers     reader, n_answers, n_cases, complete, + reader attributes
    summary     JSON-able dict of headline numbers
    timings     step, seconds
    """

    per_class: pd.DataFrame
    counts: pd.DataFrame
    comparisons: pd.DataFrame
    agreement: pd.DataFrame
    auc: pd.DataFrame
    auc_tests: pd.DataFrame
    confusion: pd.DataFrame
    readers: pd.DataFrame
    summary: dict
    timings: pd.DataFrame = field(repr=False)


def _proportion_ci(success: np.ndarray, total: np.ndarray, alpha: float):
    """Wilson score interval (statsmodels ``proportion_confint``); NaN where total = 0."""
    success = np.asarray(success, dtype=float)
    total = np.asarray(total, dtype=float)
    ok = total > 0
    lo = np.full(success.shape, np.nan)
    hi = np.full(success.shape, np.nan)
    if ok.any():
        lo[ok], hi[ok] = proportion_confint(success[ok], total[ok], alpha=alpha, method="wilson")
    return lo, hi


def rater_metrics(matrix: RatingMatrix, *, rater_kind: str, alpha: float = 0.05) -> pd.DataFrame:
    """Per-rater rows of ``per_class`` with CIs: Wilson for the proportions (accuracy,
    sensitivity, specificity, PPV, NPV, top-1 accuracy), Fleiss-Cohen-Everitt Wald CI for
    kappa, none for F1 and for the macro averages of a single rater."""
    c = matrix.n_classes
    counts = confusion_counts(matrix.answers, matrix.truth, c)
    metrics = metrics_from_counts(counts)
    table = metrics_table(matrix, metrics=metrics, rater_kind=rater_kind)
    n = np.broadcast_to(counts.n[:, None], counts.tp.shape)
    fractions = {
        "accuracy": (counts.tp + counts.tn, n),
        "sensitivity": (counts.tp, counts.tp + counts.fn),
        "specificity": (counts.tn, counts.tn + counts.fp),
        "ppv": (counts.tp, counts.tp + counts.fp),
        "npv": (counts.tn, counts.tn + counts.fn),
    }
    r = len(matrix.raters)
    lows, highs = [], []
    full_tables = contingency_tables(matrix.answers, matrix.truth[None, :], c)
    kappa_class = cohen_kappa(one_vs_rest_tables(full_tables), alpha=alpha)
    kappa_all = cohen_kappa(full_tables, alpha=alpha)
    nan_r = np.full(r, np.nan)
    for name in METRICS:  # same order as metrics_table: per-class block then ``all`` block
        if name in fractions:
            lo, hi = _proportion_ci(*fractions[name], alpha)
            lows += [lo.reshape(-1), nan_r]
            highs += [hi.reshape(-1), nan_r]
        elif name == "kappa":
            lows += [kappa_class.ci_low.reshape(-1), kappa_all.ci_low]
            highs += [kappa_class.ci_high.reshape(-1), kappa_all.ci_high]
        else:
            lows += [np.full(r * c, np.nan), nan_r]
            highs += [np.full(r * c, np.nan), nan_r]
    lo, hi = _proportion_ci(counts.tp.sum(axis=1), counts.n, alpha)
    table["ci_low"] = np.concatenate([*lows, lo])
    table["ci_high"] = np.concatenate([*highs, hi])
    return table


def _per_class(
    readers: RatingMatrix | None, models: RatingMatrix | None, alpha: float
) -> pd.DataFrame:
    parts = []
    if readers is not None:
        table = rater_metrics(readers, rater_kind="reader", alpha=alpha)
        summary = group_summary(table, alpha=alpha)
        group = summary.rename(columns={"mean": "estimate"})[
            ["class", "metric", "estimate", "ci_low", "ci_high"]
        ].assign(rater="readers", rater_kind="readers")
        parts += [table, group]
    if models is not None:
        parts.append(rater_metrics(models, rater_kind="model", alpha=alpha))
    return pd.concat(parts, ignore_index=True)[PER_CLASS_COLUMNS]


def _subset(matrix: RatingMatrix, keep: np.ndarray) -> RatingMatrix:
    return RatingMatrix(
        raters=[r for r, k in zip(matrix.raters, keep, strict=True) if k],
        cases=matrix.cases,
        choices=matrix.choices,
        answers=matrix.answers[keep],
        truth=matrix.truth,
        probs=None if matrix.probs is None else matrix.probs[keep],
    )


def _readers_table(answers: pd.DataFrame, n_cases: int) -> pd.DataFrame:
    per = answers.groupby("reader", sort=True).size().rename("n_answers").reset_index()
    per["n_cases"] = n_cases
    per["complete"] = per["n_answers"] == n_cases
    attributes = [c for c in answers.columns if c not in ANSWER_COLUMNS]
    constant = [
        c for c in attributes if (answers.groupby("reader")[c].nunique(dropna=False) <= 1).all()
    ]
    if constant:
        per = per.merge(answers.groupby("reader")[constant].first().reset_index(), on="reader")
    return per


def _confusion(matrix: RatingMatrix, rater: str, pooled: bool) -> pd.DataFrame:
    tables = contingency_tables(matrix.truth[None, :], matrix.answers, matrix.n_classes)
    frames = (
        [(rater, tables.sum(axis=0))] if pooled else list(zip(matrix.raters, tables, strict=True))
    )
    c = matrix.n_classes
    return pd.concat(
        [
            pd.DataFrame(
                {
                    "rater": name,
                    "truth": np.repeat(matrix.choices, c),
                    "answer": np.tile(matrix.choices, c),
                    "count": table.reshape(-1).astype(np.int64),
                }
            )
            for name, table in frames
        ],
        ignore_index=True,
    )


def _auc_tables(models: RatingMatrix, adjust: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    aucs, tests = [], []
    for i, model in enumerate(models.raters):
        aucs.append(auc_table(models.truth, models.probs[i], models.choices).assign(model=model))
    ok = ~np.isnan(models.probs).any(axis=(0, 2))
    for a in range(len(models.raters)):
        for b in range(a + 1, len(models.raters)):
            for j, label in enumerate(models.choices):
                pos = models.truth[ok] == j
                if pos.all() or not pos.any():
                    continue
                t = delong_test(pos, models.probs[a, ok, j], models.probs[b, ok, j])
                tests.append(
                    (models.raters[a], models.raters[b], label, t.auc1, t.auc2, t.difference,
                     t.se, t.z, t.p, t.ci_low, t.ci_high)
                )  # fmt: skip
    auc = pd.concat(aucs, ignore_index=True)
    auc = auc[["model", *[c for c in auc.columns if c != "model"]]]
    columns = ["model_a", "model_b", "class", "auc_a", "auc_b", "difference", "se", "z", "p",
               "ci_low", "ci_high"]  # fmt: skip
    auc_tests = pd.DataFrame(tests, columns=columns)
    if len(auc_tests):
        adjusted = adjust_p(
            auc_tests.rename(columns={"model_a": "model"})
            .assign(metric="auc", method="delong", p_adjusted=np.nan)
            .assign(model=auc_tests["model_a"] + "|" + auc_tests["model_b"]),
            adjust=adjust,
        )
        auc_tests["p_adjusted"] = adjusted["p_adjusted"].to_numpy()
    else:
        auc_tests["p_adjusted"] = []
    return auc, auc_tests


def _headline(per_class: pd.DataFrame) -> list[dict]:
    overall = per_class[(per_class["class"] == "all") & (per_class["rater_kind"] != "reader")]
    wide = overall.pivot_table(index=["rater", "rater_kind"], columns="metric", values="estimate")
    return [
        {k: (None if isinstance(v, float) and np.isnan(v) else v) for k, v in row.items()}
        for row in wide.reset_index().to_dict(orient="records")
    ]


def analyze_tables(
    answers: pd.DataFrame | str | Path | None,
    predictions: pd.DataFrame | str | Path | None,
    choices: Sequence[str] | None,
    *,
    seed: int = 0,
    n_bootstrap: int = 2000,
    adjust: str = "holm",
    subgroup: str | None = None,
    progress: bool = False,
    alpha: float = 0.05,
) -> AnalysisTables:
    """Validate the readers' answers and the models' predictions and compute every table.

    Either table may be None (a study without readers, or without models); ``choices``
    default to the sorted truths. ``subgroup`` names a reader attribute column (constant
    per reader): ``per_class`` is then computed for each of its values (readers of that
    subgroup, models unchanged) with a ``subgroup`` column. Deterministic for a given
    ``seed``. See :class:`AnalysisTables` for the tables and the modules for the formulas.
    """
    if answers is None and predictions is None:
        raise InputError("nothing to analyse: neither answers nor predictions were given")
    timings = []
    clock = time.perf_counter()
    steps = None
    if progress:
        from tqdm import tqdm

        steps = tqdm(total=8, desc="analysis", unit="step")

    def done(step: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        timings.append((step, now - clock))
        clock = now
        if steps is not None:
            steps.set_postfix_str(step)
            steps.update()

    ans = load_answers(answers, choices) if answers is not None else None
    if ans is not None and choices is None:
        choices = ans.attrs["choices"]
    pred = load_predictions(predictions, choices) if predictions is not None else None
    if pred is not None and choices is None:
        choices = pred.attrs["choices"]
    if ans is not None and pred is not None:
        check_consistent_truth(ans, pred)
    if subgroup is not None:
        if ans is None or subgroup not in ans.columns:
            raise InputError(f"subgroup column {subgroup!r} is not in the answers table")
        varies = ans.groupby("reader")[subgroup].nunique(dropna=False) > 1
        if varies.any():
            raise InputError(
                f"subgroup column {subgroup!r} differs within reader(s) "
                f"{', '.join(varies[varies].index[:10])}"
            )
    tables = [t for t in (ans, pred) if t is not None]
    truth_by_case = pd.concat(t[["case", "truth"]] for t in tables).drop_duplicates("case")
    truth_by_case = truth_by_case.set_index("case")["truth"].sort_index()
    cases = list(truth_by_case.index)
    readers = encode(ans, rater="reader", choices=choices, cases=cases, truth_by_case=truth_by_case) if ans is not None else None  # fmt: skip
    models = encode(pred, rater="model", choices=choices, cases=cases, truth_by_case=truth_by_case) if pred is not None else None  # fmt: skip
    done("validate")

    per_class = _per_class(readers, models, alpha)
    if subgroup is not None:
        attribute = ans.groupby("reader")[subgroup].first().reindex(readers.raters)
        parts = []
        for value in pd.unique(attribute):
            keep = (
                (attribute == value).to_numpy()
                if not pd.isna(value)
                else attribute.isna().to_numpy()
            )
            parts.append(_per_class(_subset(readers, keep), models, alpha).assign(subgroup=value))
        per_class = pd.concat([per_class.assign(subgroup="all readers"), *parts], ignore_index=True)
    done("per_class")

    counts = pd.concat(
        [counts_table(m, rater_kind=kind) for m, kind in ((readers, "reader"), (models, "model")) if m is not None],
        ignore_index=True,
    )  # fmt: skip
    done("counts")

    if readers is not None and models is not None:
        comparisons = compare_models_with_readers(
            readers, models, n_bootstrap=n_bootstrap, seed=seed, adjust=adjust, alpha=alpha
        )
    else:
        comparisons = pd.DataFrame(columns=COMPARISON_COLUMNS)
    done("comparisons")

    agreement = agreement_table(readers, models, alpha=alpha)
    done("agreement")

    if models is not None and models.probs is not None:
        auc, auc_tests = _auc_tables(models, adjust)
    else:
        auc = pd.DataFrame(
            columns=["model", "class", "auc", "se", "ci_low", "ci_high", "n_pos", "n_neg"]
        )
        auc_tests = pd.DataFrame(columns=["model_a", "model_b", "class", "auc_a", "auc_b", "difference", "se", "z", "p", "ci_low", "ci_high", "p_adjusted"])  # fmt: skip
    done("auc")

    confusion = pd.concat(
        ([_confusion(readers, "readers", pooled=True)] if readers is not None else [])
        + ([_confusion(models, "", pooled=False)] if models is not None else []),
        ignore_index=True,
    )
    readers_table = (
        _readers_table(ans, len(cases))
        if ans is not None
        else pd.DataFrame(columns=["reader", "n_answers", "n_cases", "complete"])
    )
    done("confusion_readers")

    summary = {
        "choices": list(choices),
        "n_cases": len(cases),
        "n_readers": 0 if readers is None else len(readers.raters),
        "n_complete_readers": int(readers_table["complete"].sum()) if len(readers_table) else 0,
        "n_models": 0 if models is None else len(models.raters),
        "models": [] if models is None else list(models.raters),
        "seed": seed,
        "n_bootstrap": n_bootstrap,
        "adjust": adjust,
        "alpha": alpha,
        "subgroup": subgroup,
        "overall": _headline(per_class if subgroup is None else per_class[per_class["subgroup"] == "all readers"]),
    }  # fmt: skip
    done("summary")
    if steps is not None:
        steps.close()
    return AnalysisTables(
        per_class=per_class,
        counts=counts,
        comparisons=comparisons,
        agreement=agreement,
        auc=auc,
        auc_tests=auc_tests,
        confusion=confusion,
        readers=readers_table,
        summary=summary,
        timings=pd.DataFrame(timings, columns=["step", "seconds"]),
    )
