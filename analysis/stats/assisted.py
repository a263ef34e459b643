"""Sequential reads: each reader answers a case unaided, sees the CNN's support, answers again.

The design of Tschandl et al. (2020), "Human-computer collaboration for skin cancer
recognition", Nat Med 26:1229-1234. Input: a tidy table with one row per reader x case,

    reader, case, truth, unaided, aided, ai [, years, level, other reader columns]

``unaided`` and ``aided`` are the reader's answers before and after the support, ``ai``
the CNN's answer shown; all are class codes, compared as strings (``1`` equals ``"1"``).
Every function validates the table (:class:`~analysis.stats.inputs.InputError` naming the
rows) and returns a tidy DataFrame.

- :func:`switching_table`: how answers changed, overall, per true class, per subgroup;
- :func:`cnn_following`: how often readers took the CNN's answer when it was right/wrong;
- :func:`mcnemar_by_reader`: McNemar's test of unaided vs aided correctness, Holm-adjusted;
- :func:`paired_bootstrap`: two-way (readers x cases) bootstrap of aided - unaided
  accuracy, sensitivity and specificity;
- :func:`reader_gains`, :func:`gain_by_experience`: each reader's accuracy gain, and its
  OLS regression on experience.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from statsmodels.regression.linear_model import OLS
from statsmodels.stats.contingency_tables import mcnemar
from statsmodels.stats.multitest import multipletests

from analysis.stats.inputs import InputError

READ_COLUMNS = ("reader", "case", "truth", "unaided", "aided", "ai")
OUTCOMES = (
    "unchanged_correct",
    "correct_to_incorrect",
    "incorrect_to_correct",
    "unchanged_incorrect",
    "changed_still_incorrect",
)
"""Per read: correct both times; correct, then wrong; wrong, then correct; the same wrong
answer twice; a wrong answer changed to another wrong one."""

EXACT_BELOW = 25
"""McNemar: exact binomial test when fewer discordant pairs than this, else chi-square."""

_MAX_LISTED = 10


def _rows(mask: np.ndarray) -> str:
    return ", ".join(str(i + 1) for i in np.flatnonzero(mask)[:_MAX_LISTED])


def _reads(reads: pd.DataFrame) -> pd.DataFrame:
    """Validated copy: labels as strings, one row per (reader, case), one truth per case,
    plus boolean ``unaided_correct``, ``aided_correct``, ``ai_correct`` and the
    :data:`OUTCOMES` label of each read in ``outcome``."""
    missing = [c for c in READ_COLUMNS if c not in reads.columns]
    if missing:
        raise InputError(f"sequential reads table lacks column(s) {', '.join(missing)}")
    frame = reads.reset_index(drop=True).copy()
    if frame.empty:
        raise InputError("the sequential reads table has no rows")
    blank = frame[list(READ_COLUMNS)].isna().any(axis=1).to_numpy()
    if blank.any():
        raise InputError(f"sequential reads: missing values in rows {_rows(blank)}")
    for col in READ_COLUMNS:
        frame[col] = frame[col].astype(str)
    dup = frame.duplicated(["reader", "case"], keep=False).to_numpy()
    if dup.any():
        raise InputError(
            f"sequential reads: more than one row per reader x case in rows {_rows(dup)}"
        )
    truths = frame.groupby("case")["truth"].nunique()
    if (truths > 1).any():
        bad = list(truths[truths > 1].index[:_MAX_LISTED])
        raise InputError(f"sequential reads: cases with different truths: {bad}")
    u = frame["unaided"].to_numpy() == frame["truth"].to_numpy()
    a = frame["aided"].to_numpy() == frame["truth"].to_numpy()
    frame["unaided_correct"] = u
    frame["aided_correct"] = a
    frame["ai_correct"] = frame["ai"].to_numpy() == frame["truth"].to_numpy()
    same = frame["aided"].to_numpy() == frame["unaided"].to_numpy()
    frame["outcome"] = np.select(
        [u & a, u & ~a, ~u & a, ~u & same],
        list(OUTCOMES[:4]),
        default=OUTCOMES[4],
    )
    return frame


def switching_table(reads: pd.DataFrame, *, subgroups: Sequence[str] = ()) -> pd.DataFrame:
    """How answers changed with the CNN's support (the switches of Tschandl et al. 2020).

    One row per grouping x group x outcome of :data:`OUTCOMES`, with ``count`` (reads),
    ``reads`` (the group's reads) and ``proportion`` = count / reads. Groupings:
    ``overall`` (group ``all``), ``class`` (the true class), and each column of
    ``subgroups`` (e.g. ``level``, ``reader``; groups as strings). Outcomes with no read
    are listed with count 0.
    """
    frame = _reads(reads)
    missing = [c for c in subgroups if c not in frame.columns]
    if missing:
        raise InputError(f"sequential reads table lacks subgroup column(s) {', '.join(missing)}")
    keys = [("overall", pd.Series("all", index=frame.index)), ("class", frame["truth"])]
    keys += [(col, frame[col].astype(str)) for col in subgroups]
    parts = []
    for grouping, group in keys:
        counts = pd.crosstab(group, frame["outcome"]).reindex(columns=list(OUTCOMES), fill_value=0)
        long = counts.stack().rename("count").reset_index()
        long.columns = ["group", "outcome", "count"]
        long["reads"] = long["group"].map(counts.sum(axis=1))
        long.insert(0, "grouping", grouping)
        parts.append(long)
    table = pd.concat(parts, ignore_index=True)
    table["proportion"] = table["count"] / table["reads"]
    return table


def cnn_following(reads: pd.DataFrame, *, by: Sequence[str] = ()) -> pd.DataFrame:
    """Whether readers followed the CNN, split by whether the CNN was right.

    One row per ``by`` group x ``cnn_correct`` (True, False) with: ``reads``; unaided and
    aided accuracy over those reads; ``disagreeing``: reads whose unaided answer differed
    from the CNN's; ``followed``: of those, reads whose aided answer is the CNN's;
    ``follow_rate`` = followed / disagreeing (NaN where no read disagreed): the switch to
    the CNN's answer when it was right and when it was wrong (Tschandl et al. 2020).
    """
    frame = _reads(reads)
    by = list(by)
    missing = [c for c in by if c not in frame.columns]
    if missing:
        raise InputError(f"sequential reads table lacks column(s) {', '.join(missing)}")
    frame["disagreeing"] = frame["unaided"] != frame["ai"]
    frame["followed"] = frame["disagreeing"] & (frame["aided"] == frame["ai"])
    frame["cnn_correct"] = frame["ai_correct"]
    keys = [*by, "cnn_correct"]
    table = (
        frame.groupby(keys, sort=True)
        .agg(
            reads=("case", "size"),
            unaided_accuracy=("unaided_correct", "mean"),
            aided_accuracy=("aided_correct", "mean"),
            disagreeing=("disagreeing", "sum"),
            followed=("followed", "sum"),
        )
        .reset_index()
    )
    with np.errstate(invalid="ignore", divide="ignore"):
        table["follow_rate"] = table["followed"] / table["disagreeing"].replace(0, np.nan)
    return table.sort_values(keys, ascending=[True] * len(by) + [False], ignore_index=True)


def mcnemar_by_reader(
    reads: pd.DataFrame, *, exact_below: int = EXACT_BELOW, alpha: float = 0.05
) -> pd.DataFrame:
    """McNemar's test per reader of unaided vs aided correctness, Holm-adjusted.

    For each reader the paired 2x2 table [[both correct, b], [c, both wrong]] with
    b = correct -> incorrect, c = incorrect -> correct (McNemar 1947). With b + c <
    ``exact_below``: exact test, statistic min(b, c), p = min(1, 2 P(X <= min(b, c))),
    X ~ Bin(b + c, 1/2) (``method`` ``exact``); otherwise chi-square with continuity
    correction, (|b - c| - 1)^2 / (b + c) on 1 df (``chi2_cc``). statsmodels
    ``contingency_tables.mcnemar``. ``p_holm``: Holm (1979) step-down across readers
    (statsmodels ``multipletests(method="holm")``), ``reject_holm`` at ``alpha``.
    """
    frame = _reads(reads)
    rows = []
    for reader, g in frame.groupby("reader", sort=True):
        u, a = g["unaided_correct"].to_numpy(), g["aided_correct"].to_numpy()
        both, b, c, neither = (u & a).sum(), (u & ~a).sum(), (~u & a).sum(), (~u & ~a).sum()
        exact = b + c < exact_below
        res = mcnemar([[both, b], [c, neither]], exact=exact, correction=True)
        rows.append(
            (reader, len(g), u.mean(), a.mean(), a.mean() - u.mean(), int(b), int(c),
             int(b + c), "exact" if exact else "chi2_cc", float(res.statistic),
             float(res.pvalue))
        )  # fmt: skip
    table = pd.DataFrame(
        rows,
        columns=[
            "reader",
            "reads",
            "unaided_accuracy",
            "aided_accuracy",
            "gain",
            "correct_to_incorrect",
            "incorrect_to_correct",
            "discordant",
            "method",
            "statistic",
            "p",
        ],
    )
    reject, p_holm, _, _ = multipletests(table["p"].to_numpy(), alpha=alpha, method="holm")
    table["p_holm"] = p_holm
    table["reject_holm"] = reject
    return table


def _cube(frame: pd.DataFrame, classes: list[str]):
    """Readers x cases arrays: observed mask, truth index per case, unaided/aided index
    (-1 for an answer outside ``classes``)."""
    readers = sorted(frame["reader"].unique())
    cases = sorted(frame["case"].unique())
    r = pd.Index(readers).get_indexer(frame["reader"])
    k = pd.Index(cases).get_indexer(frame["case"])
    index = pd.Index(classes)
    observed = np.zeros((len(readers), len(cases)), dtype=bool)
    observed[r, k] = True
    truth = np.empty(len(cases), dtype=int)
    truth[k] = index.get_indexer(frame["truth"])
    answers = {}
    for col in ("unaided", "aided"):
        m = np.full(observed.shape, -1)
        m[r, k] = index.get_indexer(frame[col])
        answers[col] = m
    return observed, truth, answers["unaided"], answers["aided"]


def _features(observed, truth, unaided, aided, n_classes) -> np.ndarray:
    """``(R, K, F)`` read indicators whose weighted sums give every metric: read, correct
    (unaided, aided), then per class: positive, TP (u, a), negative, TN (u, a)."""
    pos = (truth[None, :, None] == np.arange(n_classes)) & observed[..., None]
    neg = (truth[None, :, None] != np.arange(n_classes)) & observed[..., None]
    said = {n: m[..., None] == np.arange(n_classes) for n, m in (("u", unaided), ("a", aided))}
    correct = [(m == truth[None, :]) & observed for m in (unaided, aided)]
    return np.concatenate(
        [
            observed[..., None],
            correct[0][..., None],
            correct[1][..., None],
            pos,
            pos & said["u"],
            pos & said["a"],
            neg,
            neg & ~said["u"],
            neg & ~said["a"],
        ],
        axis=-1,
    ).astype(float)


def _metrics(sums: np.ndarray, c: int):
    """From feature sums ``(..., F)``: (unaided, aided) arrays ``(..., 1 + 2C)`` of
    accuracy, sensitivity per class, specificity per class."""
    read, cu, ca = sums[..., 0:1], sums[..., 1:2], sums[..., 2:3]
    blocks = [sums[..., 3 + i * c : 3 + (i + 1) * c] for i in range(6)]
    pos, tp_u, tp_a, neg, tn_u, tn_a = blocks
    with np.errstate(invalid="ignore", divide="ignore"):
        unaided = np.concatenate([cu / read, tp_u / pos, tn_u / neg], axis=-1)
        aided = np.concatenate([ca / read, tp_a / pos, tn_a / neg], axis=-1)
    return unaided, aided


def paired_bootstrap(
    reads: pd.DataFrame,
    *,
    n_boot: int = 2000,
    seed: int | np.random.Generator = 0,
    alpha: float = 0.05,
    chunk: int = 500,
) -> pd.DataFrame:
    """Two-way paired bootstrap of aided - unaided top-1 accuracy and per-class
    sensitivity and specificity (one-vs-rest).

    Each resample draws the readers with replacement and, independently, the cases with
    replacement (Efron & Tibshirani 1993; two-way MRMC resampling, Beiden, Wagner &
    Campbell 2000); a read keeps both its answers, so the difference is paired. A metric
    is pooled over the resampled reads, sum_rk w_r w_k x_rk / sum_rk w_r w_k n_rk with
    multiplicities w (in a fully crossed design this is the mean of the readers'
    values). CI: percentile interval at ``alpha`` of the resampled differences, NaN ones
    (a class with no resampled case) left out, ``n_boot`` counting the others. Seeded
    numpy Generator: cases' weights drawn first, then readers'.

    One row per metric x class (``accuracy`` has class ``all``): ``unaided``, ``aided``,
    ``difference`` (point estimates), ``se`` (bootstrap SD), ``ci_low``, ``ci_high``,
    ``n_boot``. Classes are the true classes present, sorted as strings.
    """
    frame = _reads(reads)
    classes = sorted(frame["truth"].unique())
    c = len(classes)
    observed, truth, unaided, aided = _cube(frame, classes)
    x = _features(observed, truth, unaided, aided, c)  # (R, K, F)
    n_readers, n_cases, _ = x.shape
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    case_w = rng.multinomial(n_cases, np.full(n_cases, 1 / n_cases), size=n_boot)
    reader_w = rng.multinomial(n_readers, np.full(n_readers, 1 / n_readers), size=n_boot)
    xt = np.ascontiguousarray(x.transpose(0, 2, 1))  # (R, F, K)
    diffs = []
    for start in range(0, n_boot, chunk):
        wk = case_w[start : start + chunk].astype(float)
        wr = reader_w[start : start + chunk].astype(float)
        per_reader = xt @ wk.T  # (R, F, b): case-weighted sums per reader
        sums = np.einsum("rfb,br->bf", per_reader, wr)
        u, a = _metrics(sums, c)
        diffs.append(a - u)
    d = np.concatenate(diffs, axis=0)  # (B, 1 + 2C)
    point_u, point_a = _metrics(x.sum(axis=(0, 1)), c)
    valid = ~np.isnan(d)
    n_valid = valid.sum(axis=0)
    lo = np.full(d.shape[1], np.nan)
    hi = np.full(d.shape[1], np.nan)
    se = np.full(d.shape[1], np.nan)
    for i in np.flatnonzero(n_valid):
        lo[i], hi[i] = np.quantile(d[valid[:, i], i], [alpha / 2, 1 - alpha / 2])
        se[i] = d[valid[:, i], i].std(ddof=1) if n_valid[i] > 1 else np.nan
    labels = [("accuracy", "all")] + [("sensitivity", k) for k in classes]
    labels += [("specificity", k) for k in classes]
    return pd.DataFrame(
        {
            "metric": [m for m, _ in labels],
            "class": [k for _, k in labels],
            "unaided": point_u,
            "aided": point_a,
            "difference": point_a - point_u,
            "se": se,
            "ci_low": lo,
            "ci_high": hi,
            "n_boot": n_valid,
        }
    )


def reader_gains(reads: pd.DataFrame, *, covariates: Sequence[str] = ()) -> pd.DataFrame:
    """One row per reader: ``reads``, ``unaided_accuracy``, ``aided_accuracy``, ``gain``
    (aided - unaided), and each column of ``covariates`` (which must be constant within a
    reader)."""
    frame = _reads(reads)
    covariates = list(covariates)
    missing = [c for c in covariates if c not in frame.columns]
    if missing:
        raise InputError(f"sequential reads table lacks column(s) {', '.join(missing)}")
    per_reader = frame.groupby("reader")
    varying = [c for c in covariates if (per_reader[c].nunique(dropna=False) > 1).any()]
    if varying:
        raise InputError(
            f"sequential reads: {', '.join(varying)} must be the same on all of a reader's rows"
        )
    table = (
        frame.groupby("reader", sort=True)
        .agg(
            reads=("case", "size"),
            unaided_accuracy=("unaided_correct", "mean"),
            aided_accuracy=("aided_correct", "mean"),
        )
        .reset_index()
    )
    table["gain"] = table["aided_accuracy"] - table["unaided_accuracy"]
    if covariates:
        first = frame.groupby("reader", sort=True)[covariates].first().reset_index()
        table = table.merge(first, on="reader", how="left")
    return table


def _design(gains: pd.DataFrame, covariates: list[str]) -> pd.DataFrame:
    """Intercept, numeric covariates as they are, others as treatment dummies against
    their first level (categorical order, else sorted), named like patsy: ``level[T.x]``."""
    columns = {"intercept": np.ones(len(gains))}
    for col in covariates:
        values = gains[col]
        if pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values):
            columns[col] = values.to_numpy(dtype=float)
            continue
        if isinstance(values.dtype, pd.CategoricalDtype):
            levels = [str(v) for v in values.cat.categories if v in set(values)]
        else:
            levels = sorted(values.astype(str).unique())
        text = values.astype(str)
        for level in levels[1:]:
            columns[f"{col}[T.{level}]"] = (text == level).to_numpy(dtype=float)
    return pd.DataFrame(columns)


def gain_by_experience(
    reads: pd.DataFrame,
    *,
    covariates: Sequence[str] | None = None,
    alpha: float = 0.05,
) -> pd.DataFrame:
    """OLS regression of each reader's accuracy gain (aided - unaided, :func:`reader_gains`)
    on their experience: gain_j = b0 + b' x_j + e_j, one observation per reader.

    ``covariates`` default: ``years``, and ``level`` if the table has it; non-numeric
    columns enter as treatment dummies against their first level. Ordinary least
    squares, b = (X'X)^-1 X'y, SE from s^2 (X'X)^-1 with s^2 = RSS / (n - p), t tests and
    CIs on n - p df (statsmodels ``OLS``). One row per term with ``coefficient``, ``se``,
    ``t``, ``p``, ``ci_low``, ``ci_high``, ``n_readers``, ``df_resid``, ``r_squared``.
    """
    if covariates is None:
        covariates = ["years", *(["level"] if "level" in reads.columns else [])]
    covariates = list(covariates)
    gains = reader_gains(reads, covariates=covariates)
    blank = gains[covariates].isna().any(axis=1).to_numpy() if covariates else None
    if blank is not None and blank.any():
        listed = ", ".join(gains.loc[blank, "reader"].astype(str)[:_MAX_LISTED])
        raise InputError(f"gain by experience: readers without {', '.join(covariates)}: {listed}")
    design = _design(gains, covariates)
    n, p = design.shape
    if n <= p:
        raise InputError(
            f"gain by experience: {n} readers cannot estimate {p} coefficients (need more readers)"
        )
    fit = OLS(gains["gain"].to_numpy(dtype=float), design.to_numpy()).fit()
    ci = np.asarray(fit.conf_int(alpha=alpha))
    return pd.DataFrame(
        {
            "term": list(design.columns),
            "coefficient": fit.params,
            "se": fit.bse,
            "t": fit.tvalues,
            "p": fit.pvalues,
            "ci_low": ci[:, 0],
            "ci_high": ci[:, 1],
            "n_readers": n,
            "df_resid": fit.df_resid,
            "r_squared": fit.rsquared,
        }
    )
