"""Every table of a reader study in one call: :func:`analyze_tables`."""

from __future__ import annotations

import dataclasses
import itertools
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from statsmodels.stats.proportion import proportion_confint

from analysis.stats.agreement import COLUMNS as AGREEMENT_COLUMNS
from analysis.stats.agreement import agreement_table, majority_ties
from analysis.stats.columns import READING_COLUMNS
from analysis.stats.compare import COLUMNS as COMPARISON_COLUMNS
from analysis.stats.compare import adjust_p, compare_models_with_readers
from analysis.stats.inputs import (
    ANSWER_COLUMNS,
    READER_RULES,
    InputError,
    ReaderSelection,
    check_consistent_truth,
    load_answers,
    load_predictions,
    parse_subgroup,
    select_readers,
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
from analysis.stats.roc import auc_table, delong_test, roc_curves

if TYPE_CHECKING:
    from analysis.stats.conditions import ConditionTables

PER_CLASS_COLUMNS = ["rater", "rater_kind", "class", "metric", "estimate", "ci_low", "ci_high"]
READERS_SUMMARY_COLUMNS = [
    "class", "metric", "n_raters", "mean", "sd", "median", "min", "max", "ci_low", "ci_high",
]  # fmt: skip
KAPPA_COLUMNS = [
    "rater", "rater_kind", "class", "kappa", "ase", "ci_low", "ci_high", "ase0", "z", "p", "n",
]  # fmt: skip
AUC_COLUMNS = ["model", "class", "auc", "se", "ci_low", "ci_high", "n_pos", "n_neg"]
AUC_TEST_COLUMNS = [
    "model_a", "model_b", "class", "auc_a", "auc_b", "difference", "se", "z", "p", "ci_low",
    "ci_high", "p_adjusted",
]  # fmt: skip
ROC_COLUMNS = ["model", "class", "fpr", "tpr", "threshold"]
CASES_COLUMNS = ["case", "truth"]
# The value of the ``subgroup`` column on the rows computed from every reader.
ALL_READERS = "all readers"
UNKNOWN_SUBGROUP = "unknown"
# Tables that depend on which readers are in; with a subgroup they get a ``subgroup``
# column (first) and one block of rows per subgroup value after the ALL_READERS block.
SUBGROUP_TABLES = (
    "per_class", "readers_summary", "kappa", "counts", "comparisons", "agreement", "confusion",
)  # fmt: skip


@dataclass(frozen=True)
class SubgroupSize:
    """How many readers one subgroup value has."""

    subgroup: str
    n_readers: int


@dataclass(frozen=True)
class MajorityTies:
    """Cases whose majority answer among the readers was tied, of the cases answered."""

    n_tied: int
    n_cases: int
    rule: str


@dataclass(frozen=True)
class AnalysisSummary:
    """Headline numbers of an analysis; :meth:`to_dict` is what summary.json starts with.

    ``overall``: one record per rater that is not a single reader (the readers' mean,
    each model) with ``rater, rater_kind`` and each metric of class ``all`` (None for
    NaN). ``readers_overall``: the rows of class ``all`` of ``readers_summary`` (metric,
    n_raters, mean, sd, ...; None for NaN). ``majority_ties`` is None without readers.
    ``readers``: which readers were counted, who was left out and why (None without
    reader answers); ``n_readers`` counts the readers analysed.
    ``classes_without_positives``: the choices that no case has as its reference
    diagnosis (left out of the macro averages).
    ``warnings``: problems of the input that did not stop the analysis.
    """

    choices: list[str]
    n_cases: int
    readers: ReaderSelection | None
    n_readers: int
    n_complete_readers: int
    n_models: int
    models: list[str]
    seed: int
    n_bootstrap: int
    adjust: str
    alpha: float
    subgroup: str | None
    subgroups: list[SubgroupSize]
    overall: list[dict]
    readers_overall: list[dict]
    majority_ties: MajorityTies | None
    classes_without_positives: list[str]
    warnings: list[str]

    def to_dict(self) -> dict:
        """Plain JSON-able data (lists and dicts), fields in their declared order."""
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class AnalysisTables:
    """Tidy results of :func:`analyze_tables`.

    per_class       rater, rater_kind (reader/model/readers), class (code or ``all``),
                    metric, estimate, ci_low, ci_high
    readers_summary the readers as a group: class, metric, n_raters, mean, sd, median,
                    min, max, ci_low, ci_high (t-CI of the mean over readers)
    kappa           rater, rater_kind, class, kappa, ase, ci_low, ci_high, ase0, z, p, n:
                    Cohen's kappa against the truth with the Fleiss-Cohen-Everitt ASE
    counts          rater, rater_kind, class, tp, fp, fn, tn, n
    comparisons     model - readers, see :data:`analysis.stats.compare.COLUMNS`
    agreement       see :data:`analysis.stats.agreement.COLUMNS`
    auc             model, class (code, ``macro``, ``micro``), auc, se, ci_low, ci_high,
                    n_pos, n_neg
    auc_tests       model_a, model_b, class, auc_a, auc_b, difference, se, z, p, ci_low,
                    ci_high, p_adjusted (DeLong, Holm/Bonferroni over classes per pair)
    confusion       rater (``readers`` pooled, or a model), truth, answer, count
    readers         reader, n_answers, n_cases, complete, + reader attributes
                    [, subgroup: the reader's subgroup value or band]
    roc             model, class, fpr, tpr, threshold: each model's one-vs-rest ROC
                    curve points (empty without probabilities)
    cases           case, truth: every case of either table, once
    summary         :class:`AnalysisSummary`, the headline numbers
    timings         step, seconds
    conditions      None for a study of one reading condition; with several, the
                    comparisons of the conditions
                    (:class:`~analysis.stats.conditions.ConditionTables`), and every
                    table above starts with a ``condition`` column (one block of rows
                    per condition, in the study's order)

    With a subgroup, each table of :data:`SUBGROUP_TABLES` starts with a ``subgroup``
    column: the rows of value :data:`ALL_READERS` use every reader, and each other value's
    rows are the same table computed as if only that subgroup's readers had taken part
    (model-only rows repeat unchanged in each block).
    """

    per_class: pd.DataFrame
    counts: pd.DataFrame
    comparisons: pd.DataFrame
    agreement: pd.DataFrame
    auc: pd.DataFrame
    auc_tests: pd.DataFrame
    confusion: pd.DataFrame
    readers: pd.DataFrame
    readers_summary: pd.DataFrame
    kappa: pd.DataFrame
    roc: pd.DataFrame
    cases: pd.DataFrame
    summary: AnalysisSummary
    timings: pd.DataFrame = field(repr=False)
    conditions: ConditionTables | None = field(default=None, repr=False)

    def for_subgroup(self, value: str = ALL_READERS) -> AnalysisTables:
        """The same tables with only the rows of one subgroup value in each of
        :data:`SUBGROUP_TABLES` (a no-op without a subgroup): what a figure of "the
        readers" should draw."""
        if "subgroup" not in self.per_class.columns:
            return self
        changes = {}
        for name in SUBGROUP_TABLES:
            frame = getattr(self, name)
            changes[name] = frame[frame["subgroup"] == value].reset_index(drop=True)
        return replace(self, **changes)


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


def kappa_table(matrix: RatingMatrix, *, rater_kind: str, alpha: float = 0.05) -> pd.DataFrame:
    """Columns :data:`KAPPA_COLUMNS`: each rater's Cohen kappa against the truth per class
    (2x2 "says c" x "is c") and over all classes (class ``all``, the C x C table), with
    the Fleiss-Cohen-Everitt ASE, Wald CI, ASE under H0, z = kappa / ASE0, two-sided p
    and n = cases answered (:func:`analysis.stats.kappa.cohen_kappa`, SAS PROC FREQ)."""
    c = matrix.n_classes
    tables = contingency_tables(matrix.answers, matrix.truth[None, :], c)
    per_class = cohen_kappa(one_vs_rest_tables(tables), alpha=alpha)
    overall = cohen_kappa(tables, alpha=alpha)
    r = len(matrix.raters)
    out = pd.DataFrame(
        {
            "rater": np.repeat(matrix.raters, c + 1),
            "rater_kind": rater_kind,
            "class": np.tile([*matrix.choices, "all"], r),
        }
    )
    for name in KAPPA_COLUMNS[3:]:
        values = np.concatenate([getattr(per_class, name), getattr(overall, name)[:, None]], axis=1)
        out[name] = values.reshape(-1)
    out["n"] = out["n"].astype(np.int64)
    return out


def _per_class(
    readers: RatingMatrix | None, model_rows: pd.DataFrame | None, alpha: float
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(per_class, readers_summary): the readers' own rows, the group rows (mean and
    t-CI over readers) and the models' rows; the group summary in full."""
    parts = []
    summary = pd.DataFrame(columns=READERS_SUMMARY_COLUMNS)
    if readers is not None:
        table = rater_metrics(readers, rater_kind="reader", alpha=alpha)
        summary = group_summary(table, alpha=alpha)[READERS_SUMMARY_COLUMNS]
        group = summary.rename(columns={"mean": "estimate"})[
            ["class", "metric", "estimate", "ci_low", "ci_high"]
        ].assign(rater="readers", rater_kind="readers")
        parts += [table, group]
    if model_rows is not None:
        parts.append(model_rows)
    return pd.concat(parts, ignore_index=True)[PER_CLASS_COLUMNS], summary


def _subset(matrix: RatingMatrix, keep: np.ndarray) -> RatingMatrix:
    return RatingMatrix(
        raters=[r for r, k in zip(matrix.raters, keep, strict=True) if k],
        cases=matrix.cases,
        choices=matrix.choices,
        answers=matrix.answers[keep],
        truth=matrix.truth,
        probs=None if matrix.probs is None else matrix.probs[keep],
    )


def _band_label(low: float, high: float) -> str:
    return f"[{low:g},{high:g})" if np.isfinite(low) else f"(-inf,{high:g})"


def subgroup_labels(attribute: pd.Series, edges: list[float] | None) -> tuple[pd.Series, list]:
    """(label per reader, subgroup values in order) for a reader attribute.

    Without ``edges`` the label is the value as text, values sorted. With ``edges``
    e_0 < ... < e_n a number x falls in the band "[e_i,e_{i+1})" that holds it, below
    e_0 in "(-inf,e_0)" and from e_n on in "[e_n,inf)"; bands in numeric order. A
    missing value is :data:`UNKNOWN_SUBGROUP` (listed last); with ``edges`` a value that
    is not a number is an :class:`InputError` naming the readers.
    """
    missing = attribute.isna() | (attribute.astype("string").str.strip() == "")
    if edges is None:
        labels = attribute.astype("string").str.strip().astype(object)
        values = sorted(labels[~missing].unique())
    else:
        numbers = pd.to_numeric(attribute.where(~missing), errors="coerce")
        bad = numbers.isna() & ~missing
        if bad.any():
            listed = ", ".join(f"{r} ({v!r})" for r, v in attribute[bad].head(10).items())
            raise InputError(
                f"subgroup column {attribute.name!r} must be numeric to make bands; "
                f"not a number for reader(s) {listed}"
            )
        bounds = np.array([-np.inf, *edges, np.inf])
        names = [_band_label(lo, hi) for lo, hi in itertools.pairwise(bounds)]
        position = np.searchsorted(bounds, numbers.fillna(0).to_numpy(), side="right") - 1
        labels = pd.Series(np.array(names, dtype=object)[position], index=attribute.index)
        values = [n for i, n in enumerate(names) if (position[~missing.to_numpy()] == i).any()]
    labels = labels.where(~missing, UNKNOWN_SUBGROUP)
    if missing.any():
        values.append(UNKNOWN_SUBGROUP)
    return labels, values


def _readers_table(answers: pd.DataFrame, n_cases: int) -> pd.DataFrame:
    per = answers.groupby("reader", sort=True).size().rename("n_answers").reset_index()
    per["n_cases"] = n_cases
    per["complete"] = per["n_answers"] == n_cases
    # The reading columns describe an answer (its session, the CNN's answer shown), not
    # the reader, even where they happen to be the same on all of a reader's rows.
    attributes = [
        c for c in answers.columns if c not in ANSWER_COLUMNS and c not in READING_COLUMNS
    ]
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
    auc = pd.concat(aucs, ignore_index=True)[AUC_COLUMNS]
    auc_tests = pd.DataFrame(tests, columns=AUC_TEST_COLUMNS[:-1])
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


def _roc_table(models: RatingMatrix) -> pd.DataFrame:
    """Columns :data:`ROC_COLUMNS`: each model's one-vs-rest ROC curves over the cases it
    scored (:func:`analysis.stats.roc.roc_curves`)."""
    parts = []
    for i, model in enumerate(models.raters):
        ok = ~np.isnan(models.probs[i]).any(axis=1)
        curves = roc_curves(models.truth[ok], models.probs[i, ok], models.choices)
        parts.append(curves.assign(model=model))
    return pd.concat(parts, ignore_index=True)[ROC_COLUMNS]


def _headline(per_class: pd.DataFrame) -> list[dict]:
    overall = per_class[(per_class["class"] == "all") & (per_class["rater_kind"] != "reader")]
    wide = overall.pivot_table(index=["rater", "rater_kind"], columns="metric", values="estimate")
    return [
        {k: (None if isinstance(v, float) and np.isnan(v) else v) for k, v in row.items()}
        for row in wide.reset_index().to_dict(orient="records")
    ]


def _records(frame: pd.DataFrame) -> list[dict]:
    """Rows as dicts with NaN as None (strict JSON)."""
    return [
        {k: (None if isinstance(v, float) and np.isnan(v) else v) for k, v in row.items()}
        for row in frame.to_dict(orient="records")
    ]


def _stack(blocks: list[tuple[str | None, pd.DataFrame]], columns: Sequence[str]) -> pd.DataFrame:
    """One table from per-subgroup blocks; a ``subgroup`` column first unless the only
    block is the study without subgroups (label None)."""
    frames = [b for _, b in blocks if len(b)]
    if len(blocks) == 1 and blocks[0][0] is None:
        return blocks[0][1].reset_index(drop=True) if frames else pd.DataFrame(columns=columns)
    if not frames:
        return pd.DataFrame(columns=["subgroup", *columns])
    return pd.concat(
        [b.assign(subgroup=label) for label, b in blocks if len(b)], ignore_index=True
    )[["subgroup", *columns]]


def analyze_tables(
    answers: pd.DataFrame | str | Path | None,
    predictions: pd.DataFrame | str | Path | None,
    choices: Sequence[str] | None,
    *,
    seed: int = 0,
    n_bootstrap: int = 2000,
    adjust: str = "holm",
    subgroup: str | None = None,
    readers: str = "finished",
    progress: bool = False,
    alpha: float = 0.05,
    power_effect: float | None = None,
) -> AnalysisTables:
    """Validate the readers' answers and the models' predictions and compute every table.

    Either table may be None (a study without readers, or without models); ``choices``
    default to the sorted truths. ``readers`` is ``finished`` (the default: only the
    readers who had finished count, as in the reference study) or ``all`` (every reader,
    on the cases they answered); see :func:`analysis.stats.inputs.select_readers`, and
    the summary's ``readers`` for who was left out. A class that no case has as its
    reference diagnosis is left out of the macro averages and named in the warnings
    (:meth:`analysis.stats.metrics.MetricArrays.macro`). ``subgroup`` names a reader attribute column (constant
    per reader), optionally with band edges for a numeric one (``"years:0,5,10"``, see
    :func:`parse_subgroup` and :func:`subgroup_labels`): every table of
    :data:`SUBGROUP_TABLES` is then also computed for the readers of each subgroup value
    (models unchanged), with a ``subgroup`` column. Deterministic for a given ``seed``
    (each subgroup's bootstrap uses the same seed). See :class:`AnalysisTables` for the
    tables and the modules for the formulas.

    Answers of more than one reading condition (the ``condition`` column) are analysed
    by :func:`analysis.stats.conditions.analyze_conditions`: every table per condition
    and the conditions compared (``power_effect``: the stated difference of top-1
    accuracy the next study's sample size is planned for; ignored with one condition).
    """
    if answers is None and predictions is None:
        raise InputError("nothing to analyse: neither answers nor predictions were given")
    if readers not in READER_RULES:
        raise InputError(f"readers must be one of {', '.join(READER_RULES)}, got {readers!r}")
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
    if ans is not None and len(ans.attrs.get("conditions", [])) > 1:
        from analysis.stats.conditions import POWER_EFFECT, analyze_conditions

        return analyze_conditions(
            ans,
            predictions,
            choices,
            seed=seed,
            n_bootstrap=n_bootstrap,
            adjust=adjust,
            subgroup=subgroup,
            readers=readers,
            progress=progress,
            alpha=alpha,
            power_effect=POWER_EFFECT if power_effect is None else power_effect,
        )
    if ans is not None and choices is None:
        choices = ans.attrs["choices"]
    pred = load_predictions(predictions, choices) if predictions is not None else None
    if pred is not None and choices is None:
        choices = pred.attrs["choices"]
    if ans is not None and pred is not None:
        check_consistent_truth(ans, pred)
    notes = [w for t in (ans, pred) if t is not None for w in t.attrs.get("warnings", [])]
    column = edges = None
    if subgroup is not None:
        if ans is None:
            raise InputError(f"subgroup column {subgroup!r} is not in the answers table")
        column, edges = parse_subgroup(subgroup, list(ans.columns))
        varies = ans.groupby("reader")[column].nunique(dropna=False) > 1
        if varies.any():
            raise InputError(
                f"subgroup column {column!r} differs within reader(s) "
                f"{', '.join(varies[varies].index[:10])}"
            )
    selection = None
    if ans is not None:
        ans, selection = select_readers(ans, readers)
        if ans.empty:
            if pred is None:
                raise InputError(
                    f"no reader counts: {selection.note} With no model predictions either, "
                    "there is nothing to analyse."
                )
            ans = column = None
    tables = [t for t in (ans, pred) if t is not None]
    truth_by_case = pd.concat(t[["case", "truth"]] for t in tables).drop_duplicates("case")
    truth_by_case = truth_by_case.set_index("case")["truth"].sort_index()
    cases = list(truth_by_case.index)
    no_positives = [c for c in choices if not (truth_by_case == c).any()]
    if no_positives:
        notes.append(
            f"class(es) {', '.join(no_positives)} have no positive case (no case has that "
            "reference diagnosis): left out of the macro averages (class all of accuracy, "
            "sensitivity, specificity, PPV, NPV and F1); their own rows are kept"
        )
    reader_matrix = encode(ans, rater="reader", choices=choices, cases=cases, truth_by_case=truth_by_case) if ans is not None else None  # fmt: skip
    models = encode(pred, rater="model", choices=choices, cases=cases, truth_by_case=truth_by_case) if pred is not None else None  # fmt: skip

    # Panels of readers: everyone, then each subgroup value (label None: no subgroups).
    panels: list[tuple[str | None, RatingMatrix | None]] = [(None, reader_matrix)]
    reader_subgroup = None
    if column is not None:
        attribute = ans.groupby("reader")[column].first().reindex(reader_matrix.raters)
        reader_subgroup, values = subgroup_labels(attribute, edges)
        panels = [(ALL_READERS, reader_matrix)]
        for value in values:
            keep = (reader_subgroup == value).to_numpy()
            panels.append((value, _subset(reader_matrix, keep)))
            if keep.sum() < 2:
                notes.append(
                    f"subgroup {value!r} has {keep.sum()} reader: no SD or CI over its "
                    "readers, no Fleiss kappa and no MRMC comparison"
                )
    done("validate")

    model_rows = (
        rater_metrics(models, rater_kind="model", alpha=alpha) if models is not None else None
    )
    model_kappa = (
        kappa_table(models, rater_kind="model", alpha=alpha) if models is not None else None
    )
    per_class, readers_summary, kappa = [], [], []
    for label, panel in panels:
        pc, rs = _per_class(panel, model_rows, alpha)
        per_class.append((label, pc))
        readers_summary.append((label, rs))
        parts = [kappa_table(panel, rater_kind="reader", alpha=alpha)] if panel is not None else []
        parts += [model_kappa] if model_kappa is not None else []
        kappa.append((label, pd.concat(parts, ignore_index=True)))
    per_class = _stack(per_class, PER_CLASS_COLUMNS)
    readers_summary = _stack(readers_summary, READERS_SUMMARY_COLUMNS)
    kappa = _stack(kappa, KAPPA_COLUMNS)
    done("per_class")

    model_counts = [counts_table(models, rater_kind="model")] if models is not None else []
    counts = []
    for label, panel in panels:
        parts = [counts_table(panel, rater_kind="reader")] if panel is not None else []
        counts.append((label, pd.concat([*parts, *model_counts], ignore_index=True)))
    counts = _stack(counts, ["rater", "rater_kind", "class", "tp", "fp", "fn", "tn", "n"])
    done("counts")

    resamples = None  # one bar for the bootstrap of every panel, advanced per chunk
    if steps is not None and models is not None:
        n_panels = sum(panel is not None for _, panel in panels)
        resamples = tqdm(total=n_bootstrap * n_panels, desc="bootstrap", unit="resample")
    comparisons = _stack(
        [
            (
                label,
                compare_models_with_readers(
                    panel,
                    models,
                    n_bootstrap=n_bootstrap,
                    seed=seed,
                    adjust=adjust,
                    alpha=alpha,
                    progress=None if resamples is None else resamples.update,
                )
                if panel is not None and models is not None
                else pd.DataFrame(columns=COMPARISON_COLUMNS),
            )
            for label, panel in panels
        ],
        COMPARISON_COLUMNS,
    )
    if resamples is not None:
        resamples.close()
    done("comparisons")

    agreement = _stack(
        [(label, agreement_table(panel, models, alpha=alpha)) for label, panel in panels],
        AGREEMENT_COLUMNS,
    )
    done("agreement")

    if models is not None and models.probs is not None:
        auc, auc_tests = _auc_tables(models, adjust)
        roc = _roc_table(models)
    else:
        auc = pd.DataFrame(columns=AUC_COLUMNS)
        auc_tests = pd.DataFrame(columns=AUC_TEST_COLUMNS)
        roc = pd.DataFrame(columns=ROC_COLUMNS)
    done("auc")

    model_confusion = [_confusion(models, "", pooled=False)] if models is not None else []
    confusion = []
    for label, panel in panels:
        parts = [_confusion(panel, "readers", pooled=True)] if panel is not None else []
        confusion.append((label, pd.concat([*parts, *model_confusion], ignore_index=True)))
    confusion = _stack(confusion, ["rater", "truth", "answer", "count"])
    readers_table = (
        _readers_table(ans, len(cases))
        if ans is not None
        else pd.DataFrame(columns=["reader", "n_answers", "n_cases", "complete"])
    )
    if reader_subgroup is not None:
        readers_table["subgroup"] = reader_subgroup.reindex(readers_table["reader"]).to_numpy()
    done("confusion_readers")

    everyone = per_class if column is None else per_class[per_class["subgroup"] == ALL_READERS]
    overall_summary = readers_summary
    if column is not None:
        overall_summary = readers_summary[readers_summary["subgroup"] == ALL_READERS]
    tied = majority_ties(reader_matrix) if reader_matrix is not None else None
    summary = AnalysisSummary(
        choices=list(choices),
        n_cases=len(cases),
        readers=selection,
        n_readers=0 if reader_matrix is None else len(reader_matrix.raters),
        n_complete_readers=int(readers_table["complete"].sum()) if len(readers_table) else 0,
        n_models=0 if models is None else len(models.raters),
        models=[] if models is None else list(models.raters),
        seed=seed,
        n_bootstrap=n_bootstrap,
        adjust=adjust,
        alpha=alpha,
        subgroup=subgroup,
        subgroups=(
            []
            if reader_subgroup is None
            else [
                SubgroupSize(subgroup=v, n_readers=int((reader_subgroup == v).sum()))
                for v in [label for label, _ in panels[1:]]
            ]
        ),
        overall=_headline(everyone),
        readers_overall=_records(
            overall_summary[overall_summary["class"] == "all"][READERS_SUMMARY_COLUMNS[1:]]
        ),
        majority_ties=None
        if tied is None
        else MajorityTies(
            n_tied=int(tied.sum()),
            n_cases=int((reader_matrix.answers >= 0).any(axis=0).sum()),
            rule="a tie goes to the tied label that comes first in the choices",
        ),
        classes_without_positives=no_positives,
        warnings=notes,
    )
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
        readers_summary=readers_summary,
        kappa=kappa,
        roc=roc,
        cases=truth_by_case.rename_axis("case").reset_index()[CASES_COLUMNS],
        summary=summary,
        timings=pd.DataFrame(timings, columns=["step", "seconds"]),
    )
