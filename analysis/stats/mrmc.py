"""Multi-reader multi-case (MRMC) analysis: Obuchowski-Rockette with jackknife covariances.

Hand-written because no Python package implements it; it reproduces OR-DBM MRMC 2.51 /
RJafroc / MRMCaov on the Van Dyke data and RJafroc's standalone-CAD analyses.

- :func:`or_analysis`: two or more treatments, the same readers and cases; figures of
  merit per treatment x reader, error covariances Var, Cov1, Cov2, Cov3 from the
  jackknife over cases, and the three generalisations: random readers and cases
  (Obuchowski & Rockette 1995 with Hillis 2007/2008 denominator degrees of freedom),
  fixed readers (chi-square), fixed cases (F on (t-1), (t-1)(r-1) df).
- :func:`ai_vs_readers`: one algorithm against a panel of readers in a single treatment
  (Hillis 2007 single-treatment analysis applied to the difference FOM reader - AI, i.e.
  Chakraborty's "1T-RRRC" and "1T-RRFC", RJafroc ``StSignificanceTestingCadVsRad``).

A figure of merit is any function ``value(ratings (..., K), truth (K,)) -> (...)``
vectorised over readers (and treatments); supply ``jackknife`` for a closed-form
leave-one-case-out ``(K, ...)``, otherwise cases are left out one at a time.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd
from scipy import stats

from analysis.stats.inputs import InputError
from analysis.stats.roc import placements


@dataclass(frozen=True)
class FigureOfMerit:
    """A named figure of merit, optionally with a closed-form jackknife."""

    name: str
    value: Callable[[np.ndarray, np.ndarray], np.ndarray]
    jackknife: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None

    def leave_one_out(self, ratings: np.ndarray, truth: np.ndarray) -> np.ndarray:
        """FOM with each case left out, ``(K, ...)``."""
        if self.jackknife is not None:
            return self.jackknife(ratings, truth)
        k = ratings.shape[-1]
        keep = ~np.eye(k, dtype=bool)
        return np.stack([self.value(ratings[..., keep[i]], truth[keep[i]]) for i in range(k)])


def _wilcoxon_value(ratings: np.ndarray, truth: np.ndarray) -> np.ndarray:
    return placements(ratings, np.asarray(truth) == 1).auc


def _wilcoxon_jackknife(ratings: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """Leave-one-out Wilcoxon AUC from placement values, without recomputing:
    without positive i, (m AUC - V10_i) / (m - 1); without negative j, (n AUC - V01_j) / (n - 1)."""
    pos = np.asarray(truth) == 1
    pl = placements(ratings, pos)
    auc = pl.auc[..., None]
    with np.errstate(invalid="ignore", divide="ignore"):
        without_pos = (pl.m[..., None] * auc - pl.v10) / (pl.m[..., None] - 1)
        without_neg = (pl.n[..., None] * auc - pl.v01) / (pl.n[..., None] - 1)
    out = np.empty((*ratings.shape[:-1], ratings.shape[-1]))
    out[..., pos] = np.where(np.isnan(pl.v10), auc, without_pos)
    out[..., ~pos] = np.where(np.isnan(pl.v01), auc, without_neg)
    return np.moveaxis(out, -1, 0)


WILCOXON = FigureOfMerit("wilcoxon_auc", _wilcoxon_value, _wilcoxon_jackknife)
"""Empirical ROC area (Mann-Whitney, ties 1/2) of ratings against truth 0/1."""


def jackknife_covariance(jack: np.ndarray) -> np.ndarray:
    """(K-1)/K sum_k (theta_(k) - mean)(theta_(k) - mean)^T of ``jack`` ``(K, P)``."""
    k = jack.shape[0]
    centred = jack - jack.mean(axis=0)
    return centred.T @ centred * (k - 1) / k


def _records(frame: pd.DataFrame) -> list[dict]:
    return [
        {k: (None if isinstance(v, float) and not np.isfinite(v) else v) for k, v in r.items()}
        for r in frame.to_dict(orient="records")
    ]


def _jsonable(value):
    if isinstance(value, pd.DataFrame):
        return _records(value)
    if isinstance(value, np.ndarray):
        return _jsonable(value.tolist())
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not np.isfinite(value):
        return None
    return value


@dataclass(frozen=True)
class ORResult:
    """Obuchowski-Rockette analysis of treatments x readers.

    ``fom``: ``(T, R)`` figures of merit. ``tests``: one row per analysis
    (``rrrc``, ``frrc``, ``rrfc``) with the global test of equal treatments.
    ``differences``: each pair of treatments (a - b) per analysis with SE, df, CI, p.
    ``treatment_estimates``: each treatment's reader-averaged FOM with its CI per analysis.
    """

    fom_name: str
    treatments: list[str]
    readers: list[str]
    fom: np.ndarray
    var_error: float
    cov1: float
    cov2: float
    cov3: float
    ms_t: float
    ms_r: float
    ms_tr: float
    tests: pd.DataFrame = field(repr=False)
    differences: pd.DataFrame = field(repr=False)
    treatment_estimates: pd.DataFrame = field(repr=False)

    def to_dict(self) -> dict:
        """JSON-able dict (arrays as lists, tables as lists of records, NaN as None)."""
        return {k: _jsonable(getattr(self, k)) for k in asdict(self)}


def _off_mean(values: np.ndarray, mask: np.ndarray) -> float:
    return float(values[mask].mean()) if mask.any() else float("nan")


def or_from_jackknife(
    fom: np.ndarray,
    jack: np.ndarray,
    *,
    treatments: list[str] | None = None,
    readers: list[str] | None = None,
    fom_name: str = "fom",
    alpha: float = 0.05,
) -> ORResult:
    """OR analysis from figures of merit ``(T, R)`` and their jackknife ``(K, T, R)``.

    Var, Cov1 (same reader, other treatment), Cov2 (same treatment, other reader),
    Cov3 (both differ) are averages of the jackknife covariance matrix entries.
    MS(T) = r/(t-1) sum_i (th_i. - th..)^2, MS(R) = t/(r-1) sum_j (th_.j - th..)^2,
    MS(T*R) = sum (th_ij - th_i. - th_.j + th..)^2 / ((t-1)(r-1)).
    Random readers and cases: F = MS(T) / (MS(T*R) + r max(Cov2 - Cov3, 0)),
    ddf = (MS(T*R) + r max(Cov2 - Cov3, 0))^2 / (MS(T*R)^2 / ((t-1)(r-1))) (Hillis 2008);
    fixed readers: chi2 = (t-1) MS(T) / (Var - Cov1 + (r-1) max(Cov2 - Cov3, 0)) on t-1 df;
    fixed cases: F = MS(T) / MS(T*R) on (t-1), (t-1)(r-1) df. Pairwise differences use the
    same denominators: SE^2 = 2/r x (denominator), with t (RRRC, RRFC) or normal (FRRC)
    quantiles. Per-treatment CIs use the single-treatment forms (Hillis 2007):
    SE^2 = MS(R)_i / r + max(Cov2_i, 0), df_i = (MS(R)_i + r max(Cov2_i, 0))^2 /
    (MS(R)_i^2 / (r-1)) (RRRC); (Var_i + (r-1) max(Cov2_i, 0)) / r, normal (FRRC);
    MS(R)_i / r on r-1 df (RRFC).
    """
    fom = np.asarray(fom, dtype=float)
    t, r = fom.shape
    treatments = [str(x) for x in (treatments or range(t))]
    readers = [str(x) for x in (readers or range(r))]
    cov = jackknife_covariance(jack.reshape(jack.shape[0], t * r))
    ti, ri = np.divmod(np.arange(t * r), r)
    same_t = ti[:, None] == ti[None, :]
    same_r = ri[:, None] == ri[None, :]
    var_error = float(np.diag(cov).mean())
    cov1 = _off_mean(cov, ~same_t & same_r)
    cov2 = _off_mean(cov, same_t & ~same_r)
    cov3 = _off_mean(cov, ~same_t & ~same_r)

    grand = fom.mean()
    t_means, r_means = fom.mean(axis=1), fom.mean(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        ms_t = r * ((t_means - grand) ** 2).sum() / (t - 1)
        ms_r = t * ((r_means - grand) ** 2).sum() / (r - 1)
        resid = fom - t_means[:, None] - r_means[None, :] + grand
        ms_tr = (resid**2).sum() / ((t - 1) * (r - 1))

    df_num = t - 1
    df_tr = (t - 1) * (r - 1)
    cov_term = max(cov2 - cov3, 0.0) if t > 1 else float("nan")
    den_rrrc = ms_tr + r * cov_term
    den_frrc = var_error - cov1 + (r - 1) * cov_term
    with np.errstate(invalid="ignore", divide="ignore"):
        ddf_rrrc = den_rrrc**2 / (ms_tr**2 / df_tr) if ms_tr > 0 else np.inf
        f_rrrc = ms_t / den_rrrc
        chi2 = df_num * ms_t / den_frrc
        f_rrfc = ms_t / ms_tr
    tests = pd.DataFrame(
        [
            ("rrrc", "F", f_rrrc, df_num, ddf_rrrc, stats.f.sf(f_rrrc, df_num, ddf_rrrc)),
            ("frrc", "chi2", chi2, df_num, np.inf, stats.chi2.sf(chi2, df_num)),
            ("rrfc", "F", f_rrfc, df_num, df_tr, stats.f.sf(f_rrfc, df_num, df_tr)),
        ],
        columns=["analysis", "statistic_name", "statistic", "df1", "df2", "p"],
    )

    rows = []
    for a in range(t):
        for b in range(a + 1, t):
            diff = t_means[a] - t_means[b]
            for analysis, den, df in (
                ("rrrc", den_rrrc, ddf_rrrc),
                ("frrc", den_frrc, np.inf),
                ("rrfc", ms_tr, df_tr),
            ):
                rows.append(
                    (
                        treatments[a],
                        treatments[b],
                        analysis,
                        diff,
                        *_t_ci(diff, 2 / r * den, df, alpha),
                    )
                )
    differences = pd.DataFrame(
        rows,
        columns=[
            "treatment_a",
            "treatment_b",
            "analysis",
            "difference",
            "se",
            "df",
            "ci_low",
            "ci_high",
            "statistic",
            "p",
        ],
    )

    est = []
    for i in range(t):
        block = cov[np.ix_(ti == i, ti == i)]
        var_i = float(np.diag(block).mean())
        cov2_i = _off_mean(block, ~np.eye(r, dtype=bool))
        msr_i = float(fom[i].var(ddof=1)) if r > 1 else float("nan")
        c2 = max(cov2_i, 0.0)
        with np.errstate(invalid="ignore", divide="ignore"):
            df_i = (msr_i + r * c2) ** 2 / (msr_i**2 / (r - 1)) if msr_i > 0 else np.inf
        for analysis, var_mean, df in (
            ("rrrc", msr_i / r + c2, df_i),
            ("frrc", (var_i + (r - 1) * c2) / r, np.inf),
            ("rrfc", msr_i / r, r - 1),
        ):
            se, df_, lo, hi, _, _ = _t_ci(t_means[i], var_mean, df, alpha)
            est.append((treatments[i], analysis, t_means[i], se, df_, lo, hi))
    treatment_estimates = pd.DataFrame(
        est, columns=["treatment", "analysis", "estimate", "se", "df", "ci_low", "ci_high"]
    )
    return ORResult(
        fom_name=fom_name,
        treatments=treatments,
        readers=readers,
        fom=fom,
        var_error=var_error,
        cov1=cov1,
        cov2=cov2,
        cov3=cov3,
        ms_t=float(ms_t),
        ms_r=float(ms_r),
        ms_tr=float(ms_tr),
        tests=tests,
        differences=differences,
        treatment_estimates=treatment_estimates,
    )


def _t_ci(estimate: float, variance: float, df: float, alpha: float):
    """(se, df, ci_low, ci_high, statistic t, two-sided p); normal when df is infinite."""
    se = float(np.sqrt(variance)) if variance >= 0 else float("nan")
    dist = stats.norm if not np.isfinite(df) else stats.t(df)
    crit = dist.ppf(1 - alpha / 2)
    with np.errstate(invalid="ignore", divide="ignore"):
        stat = estimate / se if se > 0 else np.nan
    return se, float(df), estimate - crit * se, estimate + crit * se, stat, 2 * dist.sf(abs(stat))


def or_analysis(
    ratings: np.ndarray,
    truth: np.ndarray,
    *,
    fom: FigureOfMerit = WILCOXON,
    treatments: list[str] | None = None,
    readers: list[str] | None = None,
    alpha: float = 0.05,
) -> ORResult:
    """OR analysis of ratings ``(T, R, K)`` against ``truth`` ``(K,)``; see
    :func:`or_from_jackknife` for the formulas."""
    ratings = np.asarray(ratings, dtype=float)
    truth = np.asarray(truth)
    return or_from_jackknife(
        fom.value(ratings, truth),
        fom.leave_one_out(ratings, truth),
        treatments=treatments,
        readers=readers,
        fom_name=fom.name,
        alpha=alpha,
    )


@dataclass(frozen=True)
class AIResult:
    """Single-treatment comparison of one algorithm with a panel of readers.

    ``difference`` = readers' mean FOM - algorithm FOM (Chakraborty's psi).
    ``analyses``: one row per analysis (``rrrc`` = 1T-RRRC, ``rrfc`` = 1T-RRFC) with
    the difference's SE, df, CI, F = t^2 on (1, df), p, and the CI of the readers' mean.
    ``var_error`` and ``cov2`` are the jackknife Var and Cov2 of the difference FOMs;
    ``var_readers`` the sample variance of the readers' FOMs (= MS(R) of the differences).
    """

    fom_name: str
    readers: list[str]
    fom_readers: np.ndarray
    fom_ai: float
    readers_mean: float
    difference: float
    var_error: float
    cov2: float
    var_readers: float
    analyses: pd.DataFrame = field(repr=False)

    def to_dict(self) -> dict:
        """JSON-able dict (arrays as lists, tables as lists of records, NaN as None)."""
        return {k: _jsonable(getattr(self, k)) for k in asdict(self)}


def _single_treatment(values: np.ndarray, jack: np.ndarray) -> tuple[float, float, float]:
    """(MS(R), Var, Cov2) of one treatment: sample variance over readers and the mean
    diagonal / off-diagonal of the jackknife covariance, without forming the R x R matrix."""
    k, r = jack.shape
    centred = jack - jack.mean(axis=0)
    scale = (k - 1) / k
    diag = scale * (centred**2).sum(axis=0)
    total = scale * (centred.sum(axis=1) ** 2).sum()
    cov2 = (total - diag.sum()) / (r * (r - 1)) if r > 1 else float("nan")
    ms_r = float(values.var(ddof=1)) if r > 1 else float("nan")
    return ms_r, float(diag.mean()), float(cov2)


def ai_from_jackknife(
    fom_readers: np.ndarray,
    jack_readers: np.ndarray,
    fom_ai: float,
    jack_ai: np.ndarray,
    *,
    readers: list[str] | None = None,
    fom_name: str = "fom",
    alpha: float = 0.05,
) -> AIResult:
    """AI versus readers from FOMs ``(R,)``, ``()`` and jackknives ``(K, R)``, ``(K,)``.

    psi_j = theta_j - theta_AI; its jackknife psi_j(k) = theta_j(k) - theta_AI(k).
    1T-RRRC (Hillis 2007 single treatment, NH: mean psi = 0): SE^2 = MS(R)/r +
    max(Cov2, 0), ddf = (MS(R) + r max(Cov2, 0))^2 / (MS(R)^2 / (r-1)), F = psi^2/SE^2.
    1T-RRFC: SE^2 = MS(R)/r on r-1 df. The readers' mean FOM gets the same two CIs from
    the readers' own jackknife (theta instead of psi).
    """
    fom_readers = np.asarray(fom_readers, dtype=float)
    r = fom_readers.size
    psi = fom_readers - fom_ai
    jack_psi = jack_readers - np.asarray(jack_ai)[:, None]
    ms_r, var_error, cov2 = _single_treatment(psi, jack_psi)
    ms_r_theta, _, cov2_theta = _single_treatment(fom_readers, jack_readers)
    diff = float(psi.mean())
    mean = float(fom_readers.mean())
    rows = []
    for analysis, var_d, var_m, df_d, df_m in (
        (
            "rrrc",
            ms_r / r + max(cov2, 0.0),
            ms_r_theta / r + max(cov2_theta, 0.0),
            _hillis_df(ms_r, cov2, r),
            _hillis_df(ms_r_theta, cov2_theta, r),
        ),
        ("rrfc", ms_r / r, ms_r_theta / r, r - 1, r - 1),
    ):
        se, df, lo, hi, t_stat, p = _t_ci(diff, var_d, df_d, alpha)
        _, _, m_lo, m_hi, _, _ = _t_ci(mean, var_m, df_m, alpha)
        rows.append((analysis, diff, se, df, lo, hi, t_stat**2, p, m_lo, m_hi))
    analyses = pd.DataFrame(
        rows,
        columns=[
            "analysis",
            "difference",
            "se",
            "df",
            "ci_low",
            "ci_high",
            "statistic",
            "p",
            "readers_ci_low",
            "readers_ci_high",
        ],
    )
    return AIResult(
        fom_name=fom_name,
        readers=[str(x) for x in (readers or range(r))],
        fom_readers=fom_readers,
        fom_ai=float(fom_ai),
        readers_mean=mean,
        difference=diff,
        var_error=var_error,
        cov2=cov2,
        var_readers=ms_r,
        analyses=analyses,
    )


def _hillis_df(ms_r: float, cov2: float, r: int) -> float:
    if not ms_r > 0:
        return np.inf
    return (ms_r + r * max(cov2, 0.0)) ** 2 / (ms_r**2 / (r - 1))


def ai_vs_readers(
    reader_ratings: np.ndarray,
    ai_ratings: np.ndarray,
    truth: np.ndarray,
    *,
    fom: FigureOfMerit = WILCOXON,
    readers: list[str] | None = None,
    alpha: float = 0.05,
) -> AIResult:
    """1T-RRRC / 1T-RRFC analysis of readers ``(R, K)`` against one algorithm ``(K,)``;
    see :func:`ai_from_jackknife` for the formulas."""
    reader_ratings = np.asarray(reader_ratings, dtype=float)
    ai_ratings = np.asarray(ai_ratings, dtype=float)
    truth = np.asarray(truth)
    return ai_from_jackknife(
        fom.value(reader_ratings, truth),
        fom.leave_one_out(reader_ratings, truth),
        float(fom.value(ai_ratings, truth)),
        fom.leave_one_out(ai_ratings, truth),
        readers=readers,
        fom_name=fom.name,
        alpha=alpha,
    )


def mrmc_from_ratings(
    df: pd.DataFrame,
    ai_reader: str | None = None,
    *,
    fom: FigureOfMerit = WILCOXON,
    alpha: float = 0.05,
) -> ORResult | AIResult:
    """MRMC analysis of a tidy table ``reader, case, truth, rating[, treatment]``.

    With ``ai_reader`` (one treatment only): that reader is the algorithm, compared with
    the others by :func:`ai_vs_readers`. Otherwise at least two treatments, analysed by
    :func:`or_analysis`. The design must be fully crossed (every reader rates every case
    in every treatment); for the Wilcoxon FOM truth must be 0/1.
    """
    required = ["reader", "case", "truth", "rating"]
    missing = [c for c in required if c not in df.columns]
    if missing:
        raise InputError(f"ratings table lacks column(s) {', '.join(missing)}")
    frame = df.copy()
    if "treatment" not in frame.columns:
        frame["treatment"] = "1"
    for col in ("reader", "case", "treatment"):
        frame[col] = frame[col].astype(str)
    keys = ["treatment", "reader", "case"]
    dup = frame.duplicated(keys, keep=False).to_numpy()
    if dup.any():
        rows = ", ".join(str(i + 1) for i in np.flatnonzero(dup)[:10])
        raise InputError(
            f"ratings: more than one rating per (treatment, reader, case) in rows {rows}"
        )
    if frame.groupby("case")["truth"].nunique().max() > 1:
        bad = frame.groupby("case")["truth"].nunique()
        raise InputError(f"ratings: cases with different truths: {list(bad[bad > 1].index[:10])}")
    if fom is WILCOXON and not set(pd.unique(frame["truth"])) <= {0, 1}:
        raise InputError("ratings: truth must be 0 or 1 for the Wilcoxon figure of merit")
    treatments = sorted(frame["treatment"].unique())
    readers = sorted(frame["reader"].unique())
    cases = sorted(frame["case"].unique())
    cube = (
        frame.set_index(keys)["rating"]
        .reindex(pd.MultiIndex.from_product([treatments, readers, cases], names=keys))
        .to_numpy(dtype=float)
        .reshape(len(treatments), len(readers), len(cases))
    )
    if np.isnan(cube).any():
        t, r, k = np.nonzero(np.isnan(cube))
        listed = ", ".join(
            f"(treatment={treatments[a]}, reader={readers[b]}, case={cases[c]})"
            for a, b, c in list(zip(t, r, k, strict=True))[:10]
        )
        raise InputError(f"ratings: {len(t)} missing rating(s), e.g. {listed}")
    truth = frame.drop_duplicates("case").set_index("case")["truth"].reindex(cases).to_numpy()
    if ai_reader is not None:
        if len(treatments) != 1:
            raise InputError("ratings: the AI-versus-readers analysis needs a single treatment")
        if str(ai_reader) not in readers:
            raise InputError(f"ratings: no reader {ai_reader!r}")
        ai = readers.index(str(ai_reader))
        others = [i for i in range(len(readers)) if i != ai]
        return ai_vs_readers(
            cube[0, others],
            cube[0, ai],
            truth,
            fom=fom,
            readers=[readers[i] for i in others],
            alpha=alpha,
        )
    if len(treatments) < 2:
        raise InputError("ratings: the OR analysis needs at least two treatments (or ai_reader)")
    return or_analysis(cube, truth, fom=fom, treatments=treatments, readers=readers, alpha=alpha)
