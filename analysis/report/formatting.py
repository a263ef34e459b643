"""Numbers and tables as the report shows them: counts as integers in every file
(:func:`with_integers`), and on the page escaped HTML with fixed decimals."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from analysis.stats.metrics import METRICS
from analysis.stats.pipeline import ALL_READERS

METRIC_ORDER = (*METRICS, "top1_accuracy")
DASH = "\u2013"  # shown for a missing value and between CI bounds
# Columns that hold counts, and the reader attributes the database keeps as integers.
# A float column of counts (one with a missing value, as n_pos of the macro AUC row)
# would print as 25.0 in a CSV file and 25.000 on the page.
INTEGER_COLUMNS = frozenset(
    {
        "n", "n_pos", "n_neg", "n_raters", "n_answers", "n_cases",
        "tp", "fp", "fn", "tn", "count", "years", "dermoscopy_hours",
    }
)  # fmt: skip
# Agreement rows whose ``estimate`` is a number of cases, not a kappa.
COUNT_STATISTICS = frozenset({"majority_ties"})


def _whole(values: pd.Series) -> bool:
    numbers = pd.to_numeric(values, errors="coerce")
    present = numbers.notna()
    if present.sum() != values.notna().sum():  # text: not a number column
        return False
    finite = numbers[present].to_numpy(dtype=float)
    return bool(np.isfinite(finite).all() and (finite == np.round(finite)).all())


def with_integers(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with its counts as integers, for the CSV files, the workbook and the
    page alike: each column of :data:`INTEGER_COLUMNS` whose values are all whole
    numbers (or missing, which stays empty) becomes pandas' nullable ``Int64``, and the
    ``estimate`` of an agreement row of :data:`COUNT_STATISTICS` an ``int`` (the
    column's other rows keep their floats). Booleans are left alone."""
    out = frame.copy()
    for column in out.columns:
        values = out[column]
        if (
            str(column) in INTEGER_COLUMNS
            and not pd.api.types.is_bool_dtype(values)
            and not pd.api.types.is_integer_dtype(values)
            and len(values)
            and _whole(values)
        ):
            out[column] = pd.to_numeric(values).round().astype("Int64")
    if {"statistic", "estimate"} <= set(map(str, out.columns)):
        counts = out["statistic"].isin(COUNT_STATISTICS) & out["estimate"].notna()
        if counts.any():
            estimate = out["estimate"].astype(object)
            estimate.loc[counts] = [round(float(v)) for v in out.loc[counts, "estimate"]]
            out["estimate"] = estimate
    return out


def _fmt_p(p) -> str:
    if pd.isna(p):
        return DASH
    return "<0.0001" if p < 1e-4 else f"{p:.4f}"


def _fmt_num(x, digits: int = 3) -> str:
    if pd.isna(x):
        return DASH
    if isinstance(x, (bool, np.bool_)):
        return "yes" if x else "no"
    if isinstance(x, (int, np.integer)):
        return str(int(x))
    if isinstance(x, (float, np.floating)):
        if np.isinf(x):
            return "∞"
        return f"{x:.{digits}f}"
    return str(x)


def html_table(frame: pd.DataFrame, *, index: bool = False) -> str:
    """Escaped HTML of ``frame`` with counts as integers (:func:`with_integers`),
    p-values to 4 decimals, df to 1 and other floats to 3."""
    shown = with_integers(frame)
    for column in shown.columns:
        name = str(column)
        if name in ("p", "p_adjusted"):
            shown[column] = shown[column].map(_fmt_p)
        elif name in ("df", "df1", "df2"):
            shown[column] = shown[column].map(lambda x: _fmt_num(x, 1))
        else:
            shown[column] = shown[column].map(_fmt_num)
    return shown.to_html(index=index, border=0, classes="data", escape=True, na_rep=DASH)


def _interval(est, lo, hi) -> str:
    if pd.isna(est):
        return DASH
    if pd.isna(lo) or pd.isna(hi):
        return f"{est:.3f}"
    return f"{est:.3f} ({lo:.3f}{DASH}{hi:.3f})"


def group_metrics_table(per_class: pd.DataFrame, choices: Sequence[str]) -> pd.DataFrame:
    """Readers' mean and each model, one column each, rows class x metric, cells
    'estimate (CI)': the per-reader rows are in per_class.csv."""
    if "subgroup" in per_class.columns:
        per_class = per_class[per_class["subgroup"] == ALL_READERS]
    rows = per_class[per_class["rater_kind"] != "reader"].copy()
    if rows.empty:
        return pd.DataFrame()
    rows["cell"] = [
        _interval(e, lo, hi)
        for e, lo, hi in zip(rows["estimate"], rows["ci_low"], rows["ci_high"], strict=True)
    ]
    wide = rows.pivot_table(
        index=["class", "metric"], columns="rater", values="cell", aggfunc="first"
    )
    order = [(c, m) for c in [*choices, "all"] for m in METRIC_ORDER if (c, m) in wide.index]
    raters = ["readers", *sorted(r for r in wide.columns if r != "readers")]
    wide = wide.reindex(index=order, columns=[r for r in raters if r in wide.columns]).fillna(DASH)
    wide.columns.name = None
    return wide.reset_index()


def subgroup_table(per_class: pd.DataFrame) -> pd.DataFrame:
    """Readers' mean overall metrics per subgroup value (empty without a subgroup)."""
    if "subgroup" not in per_class.columns:
        return pd.DataFrame()
    rows = per_class[(per_class["rater_kind"] == "readers") & (per_class["class"] == "all")]
    rows = rows.assign(
        cell=[
            _interval(e, lo, hi)
            for e, lo, hi in zip(rows["estimate"], rows["ci_low"], rows["ci_high"], strict=True)
        ]
    )
    wide = rows.pivot_table(index="subgroup", columns="metric", values="cell", aggfunc="first")
    wide = wide.reindex(columns=[m for m in METRIC_ORDER if m in wide.columns])
    wide.columns.name = None
    return wide.reset_index()


def subgroup_rows(frame: pd.DataFrame, *, all_readers: bool) -> pd.DataFrame:
    """The rows of all readers (``all_readers``) or of the subgroup values (otherwise);
    the frame as it is without a subgroup."""
    if "subgroup" not in frame.columns:
        return frame if all_readers else frame.iloc[0:0]
    keep = frame["subgroup"] == ALL_READERS
    return frame[keep if all_readers else ~keep].reset_index(drop=True)
