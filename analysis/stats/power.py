"""Power and sample size of the next two-treatment reader study from this one's variances.

Hillis, Obuchowski & Berbaum (2011), "Power estimation for multireader ROC methods: an
updated and unified approach", Acad Radiol 18:129-142, with the denominator degrees of
freedom of Hillis (2007, 2008); Hillis & Schartz (2018), J Med Imaging 5:045503, for the
program that implements it. The numbers reproduce RJafroc's ``SsPowerGivenJK``,
``SsSampleSizeKGivenJ`` and ``SsPowerTable`` (method ``"OR"``, the default): its
``SsPowerGivenJKOrVarCom`` and ``searchNumCasesOR``.

The pilot study (this one) supplies the Obuchowski-Rockette variance components on the
figure-of-merit scale, :class:`ORVarianceComponents`: from our OR analysis
(:func:`or_variance_components`, :func:`variance_components_from_ratings`) or from DBM
pseudovalue components (:func:`or_from_dbm`). The planned (pivotal) study has ``readers``
J and ``cases`` K; case variances scale by K*/K, K* being the pilot's number of cases.
Only two treatments (one numerator degree of freedom), as in RJafroc.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd
from scipy import stats

from analysis.stats.inputs import InputError
from analysis.stats.mrmc import ORResult, mrmc_from_ratings

ANALYSES = ("rrrc", "frrc", "rrfc")
"""Random readers and cases; fixed readers, random cases; random readers, fixed cases."""

MAX_CASES = 2000
"""Largest K searched, as RJafroc's ``searchNumCasesOR``."""


@dataclass(frozen=True)
class ORVarianceComponents:
    """OR variance components of a two-treatment pilot study (FOM scale).

    ``var_r``: reader variance sigma^2_R; ``var_tr``: treatment-by-reader variance
    sigma^2_TR as estimated (it can be negative; power uses max(sigma^2_TR, 0));
    ``cov1``, ``cov2``, ``cov3``, ``var``: the error covariances (same reader other
    treatment, same treatment other reader, both differ) and the error variance;
    ``cases``: K*, the pilot's number of cases; ``effect_size``: the pilot's observed
    difference of reader-averaged FOMs (first treatment - second; NaN if unknown).
    """

    var_r: float
    var_tr: float
    cov1: float
    cov2: float
    cov3: float
    var: float
    cases: int
    effect_size: float = float("nan")

    def to_dict(self) -> dict:
        """JSON-able dict (NaN as None)."""
        return {k: (None if v != v else v) for k, v in asdict(self).items()}


def or_variance_components(result: ORResult, *, cases: int) -> ORVarianceComponents:
    """OR variance components of a two-treatment :class:`~analysis.stats.mrmc.ORResult`.

    Hillis et al. (2011), eq. 9 (the "new" test-by-reader estimate):
    sigma^2_TR = MS(T*R) - Var + Cov1 + max(Cov2 - Cov3, 0); and from
    E[MS(R)] = t sigma^2_R + sigma^2_TR + Var - Cov2 + (t-1)(Cov1 - Cov3) (Obuchowski &
    Rockette 1995; Hillis 2007): sigma^2_R = (MS(R) - sigma^2_TR - Var + Cov2
    - (t-1)(Cov1 - Cov3)) / t. These are RJafroc's ``UtilORVarComp`` ``VarTR`` and ``VarR``.
    ``cases`` is the number of cases the analysis used (K*). The effect size is the mean
    FOM of the first treatment minus that of the second (RJafroc's ``trtMeanDiffs``).
    """
    t = len(result.treatments)
    if t != 2:
        raise InputError(f"power: the pilot study must have exactly two treatments, not {t}")
    if cases < 2:
        raise InputError("power: the pilot study needs at least two cases")
    cov_term = max(result.cov2 - result.cov3, 0.0)
    var_tr = result.ms_tr - result.var_error + result.cov1 + cov_term
    var_r = (
        result.ms_r
        - var_tr
        - result.var_error
        + result.cov2
        - (t - 1) * (result.cov1 - result.cov3)
    ) / t
    means = np.asarray(result.fom, dtype=float).mean(axis=1)
    return ORVarianceComponents(
        var_r=float(var_r),
        var_tr=float(var_tr),
        cov1=float(result.cov1),
        cov2=float(result.cov2),
        cov3=float(result.cov3),
        var=float(result.var_error),
        cases=int(cases),
        effect_size=float(means[0] - means[1]),
    )


def variance_components_from_ratings(df: pd.DataFrame) -> ORVarianceComponents:
    """OR variance components of a tidy two-treatment ratings table
    ``reader, case, truth, rating, treatment`` (Wilcoxon AUC, jackknife covariances), via
    :func:`~analysis.stats.mrmc.mrmc_from_ratings` and :func:`or_variance_components`."""
    result = mrmc_from_ratings(df)
    return or_variance_components(result, cases=int(df["case"].astype(str).nunique()))


def or_from_dbm(
    *,
    var_r: float,
    var_c: float,
    var_tr: float,
    var_tc: float,
    var_rc: float,
    var_err: float,
    cases: int,
    effect_size: float = float("nan"),
) -> ORVarianceComponents:
    """OR variance components from DBM pseudovalue components of a pilot with K* cases.

    Hillis et al. (2011), Table 1 (and Hillis, Berbaum & Metz 2008, Acad Radiol
    15:647-661): sigma^2_R and sigma^2_TR carry over; Var = (sigma^2_C + sigma^2_TC +
    sigma^2_RC + sigma^2_err) / K*, Cov1 = (sigma^2_C + sigma^2_RC) / K*,
    Cov2 = (sigma^2_C + sigma^2_TC) / K*, Cov3 = sigma^2_C / K*. RJafroc's
    ``UtilDBM2ORVarCom``.
    """
    if cases < 2:
        raise InputError("power: the pilot study needs at least two cases")
    return ORVarianceComponents(
        var_r=float(var_r),
        var_tr=float(var_tr),
        cov1=(var_c + var_rc) / cases,
        cov2=(var_c + var_tc) / cases,
        cov3=var_c / cases,
        var=(var_c + var_tc + var_rc + var_err) / cases,
        cases=int(cases),
        effect_size=float(effect_size),
    )


@dataclass(frozen=True)
class Power:
    """Predicted power of a planned study of ``readers`` J and ``cases`` K.

    ``ncp``: non-centrality parameter; the test is F on (``df1``, ``df2``) degrees of
    freedom, or, for ``frrc`` (``df2`` infinite), chi-square on ``df1``;
    ``critical_value``: its 1 - alpha quantile under the null hypothesis.
    """

    analysis: str
    readers: int
    cases: int
    effect_size: float
    alpha: float
    ncp: float
    df1: int
    df2: float
    critical_value: float
    power: float

    def to_dict(self) -> dict:
        """JSON-able dict (an infinite ``df2`` as None)."""
        return {
            k: None if isinstance(v, float) and not np.isfinite(v) else v
            for k, v in asdict(self).items()
        }


def _check(components: ORVarianceComponents, analysis: str, alpha: float, effect_size):
    if analysis not in ANALYSES:
        raise InputError(f"power: analysis must be one of {', '.join(ANALYSES)}, not {analysis!r}")
    if not 0 < alpha < 1:
        raise InputError(f"power: alpha must lie between 0 and 1, not {alpha}")
    d = components.effect_size if effect_size is None else float(effect_size)
    if not np.isfinite(d):
        raise InputError("power: give an effect size (the components carry no observed one)")
    return d


def _power_arrays(
    c: ORVarianceComponents,
    readers: np.ndarray,
    cases: np.ndarray,
    effect_size: float,
    analysis: str,
    alpha: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(ncp, df2, critical value, power), broadcast over ``readers`` and ``cases``; the
    formulas of :func:`power_given_jk`."""
    j = np.asarray(readers, dtype=float)
    s = c.cases / np.asarray(cases, dtype=float)
    var_tr = max(c.var_tr, 0.0)
    cov_term = max(c.cov2 - c.cov3, 0.0)
    within = c.var - c.cov1 - cov_term
    with np.errstate(invalid="ignore", divide="ignore"):
        if analysis == "rrrc":
            den = var_tr + s * (c.var - c.cov1 + (j - 1) * cov_term)
            df2 = den**2 * (j - 1) / (var_tr + s * within) ** 2
        elif analysis == "frrc":
            den = s * (c.var - c.cov1 + (j - 1) * cov_term)
            df2 = np.full(np.broadcast(j, s).shape, np.inf)
        else:
            den = var_tr + s * within
            df2 = np.broadcast_to(j - 1, np.broadcast(j, s).shape).astype(float)
        ncp = j * effect_size**2 / 2 / den
        if analysis == "frrc":
            crit = np.full(df2.shape, stats.chi2.ppf(1 - alpha, 1))
            power = stats.ncx2.sf(crit, 1, ncp)
        else:
            crit = stats.f.ppf(1 - alpha, 1, df2)
            power = stats.ncf.sf(crit, 1, df2, ncp)
    return np.broadcast_arrays(ncp, df2, crit, power)


def _result(analysis, readers, cases, d, alpha, ncp, df2, crit, power) -> Power:
    return Power(
        analysis=analysis,
        readers=int(readers),
        cases=int(cases),
        effect_size=d,
        alpha=alpha,
        ncp=float(ncp),
        df1=1,
        df2=float(df2),
        critical_value=float(crit),
        power=float(power),
    )


def power_given_jk(
    components: ORVarianceComponents,
    *,
    readers: int,
    cases: int,
    effect_size: float | None = None,
    analysis: str = "rrrc",
    alpha: float = 0.05,
) -> Power:
    """Power of a study of ``readers`` J and ``cases`` K to detect ``effect_size`` d
    (default: the pilot's observed difference; it enters squared) at level ``alpha``.

    Hillis, Obuchowski & Berbaum (2011), eq. 10 (RRRC) and Table 2 (FRRC, RRFC), as
    RJafroc ``SsPowerGivenJK(..., method = "OR")`` / ``SsPowerGivenJKOrVarCom``. With
    s = K*/K, sigma^2_TR+ = max(sigma^2_TR, 0), C = max(Cov2 - Cov3, 0):

    - RRRC: D = sigma^2_TR+ + s (Var - Cov1 + (J-1) C), ncp = J d^2 / (2 D),
      ddf = D^2 (J-1) / (sigma^2_TR+ + s (Var - Cov1 - C))^2 (Hillis 2007/2008 ddf),
      F(1, ddf, ncp);
    - FRRC: D = s (Var - Cov1 + (J-1) C), ncp as above, chi-square(1, ncp), ddf infinite;
    - RRFC: D = sigma^2_TR+ + s (Var - Cov1 - C), ncp as above, F(1, J-1, ncp).

    Power = P(statistic > its null 1 - alpha quantile), the ``critical_value``.
    """
    d = _check(components, analysis, alpha, effect_size)
    if readers < 2 and analysis != "frrc":
        raise InputError("power: random readers need at least two readers")
    if readers < 1 or cases < 1:
        raise InputError("power: readers and cases must be positive")
    values = _power_arrays(components, np.array(readers), np.array(cases), d, analysis, alpha)
    return _result(analysis, readers, cases, d, alpha, *(v.item() for v in values))


def _smallest_cases(
    components: ORVarianceComponents,
    readers: list[int],
    target: float,
    effect_size: float | None,
    analysis: str,
    alpha: float,
    max_cases: int,
) -> list[Power | None]:
    """For each J, the first K in 2..``max_cases`` whose power reaches ``target`` (None
    where none does): every (J, K) of the grid evaluated at once, then the first hit."""
    d = _check(components, analysis, alpha, effect_size)
    if not 0 < target < 1:
        raise InputError(f"power: the target power must lie between 0 and 1, not {target}")
    if min(readers, default=2) < (1 if analysis == "frrc" else 2):
        raise InputError("power: random readers need at least two readers")
    if max_cases < 2:
        raise InputError("power: max_cases must be at least 2")
    j = np.asarray(readers, dtype=float)[:, None]
    k = np.arange(2, max_cases + 1, dtype=float)[None, :]
    ncp, df2, crit, power = _power_arrays(components, j, k, d, analysis, alpha)
    reached = power >= target
    out: list[Power | None] = []
    for i, n_readers in enumerate(readers):
        if not reached[i].any():
            out.append(None)
            continue
        f = int(reached[i].argmax())
        at = (ncp[i, f], df2[i, f], crit[i, f], power[i, f])
        out.append(_result(analysis, n_readers, f + 2, d, alpha, *at))
    return out


def cases_for_power(
    components: ORVarianceComponents,
    *,
    readers: int,
    power: float = 0.8,
    effect_size: float | None = None,
    analysis: str = "rrrc",
    alpha: float = 0.05,
    max_cases: int = MAX_CASES,
) -> Power | None:
    """The smallest K (2 <= K <= ``max_cases``) whose predicted power for ``readers`` J
    reaches ``power``, with that power; None if no K up to ``max_cases`` does.

    RJafroc ``SsSampleSizeKGivenJ`` / ``searchNumCasesOR``: K = 2, 3, ... scanned in turn
    (here all at once), power from :func:`power_given_jk` (Hillis, Obuchowski & Berbaum
    2011, eq. 10 and Table 2). RJafroc stops RRRC at power strictly above the target and the
    others at or above it; here all stop at or above (the two differ only where a power
    equals the target exactly).
    """
    return _smallest_cases(
        components, [int(readers)], power, effect_size, analysis, alpha, max_cases
    )[0]


def power_table(
    components: ORVarianceComponents,
    *,
    readers: Iterable[int] = range(3, 101),
    power: float = 0.8,
    effect_size: float | None = None,
    analysis: str = "rrrc",
    alpha: float = 0.05,
    max_cases: int = MAX_CASES,
) -> pd.DataFrame:
    """Smallest K for each number of readers J to reach ``power``: one row per J with
    ``analysis, readers, cases, power, ncp, df2, critical_value`` (``cases`` missing and
    the rest NaN where no K up to ``max_cases`` reaches it).

    RJafroc ``SsPowerTable`` (J = 3, 4, ...; it prints power to 3 significant digits);
    each row is :func:`cases_for_power`.
    """
    readers = [int(j) for j in readers]
    found = _smallest_cases(components, readers, power, effect_size, analysis, alpha, max_cases)
    rows = [
        (j, pd.NA, np.nan, np.nan, np.nan, np.nan)
        if r is None
        else (j, r.cases, r.power, r.ncp, r.df2, r.critical_value)
        for j, r in zip(readers, found, strict=True)
    ]
    table = pd.DataFrame(
        rows, columns=["readers", "cases", "power", "ncp", "df2", "critical_value"]
    )
    table["cases"] = table["cases"].astype("Int64")
    table.insert(0, "analysis", analysis)
    return table
