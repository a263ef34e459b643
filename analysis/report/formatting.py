"""Numbers and tables as the report page shows them (escaped HTML, fixed decimals)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from analysis.stats.metrics import METRICS
from analysis.stats.pipeline import ALL_READERS

METRIC_ORDER = (*METRICS, "top1_accuracy")
DASH = "\u2013"  # shown for a missing value and between CI bounds


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
    """Escaped HTML of ``frame`` with p-values to 4 decimals, df to 1, other floats to 3."""
    shown = frame.copy()
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
