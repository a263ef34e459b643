"""Power and sample size (Hillis, Obuchowski & Berbaum 2011) against RJafroc's published
numbers for the Van Dyke data (RJafroc ``dataset02`` = shared ``vandyke_roc.csv``).

Sources of the expected values:
- [man] RJafroc ``R/SsPowerGivenJK.R`` (roxygen examples 4A and 5A, the man page
  ``SsPowerGivenJK.Rd``): the Van Dyke OR and DBM variance components, K* = 114.
- [test] RJafroc ``tests/testthat/test-SsSampleSizeRoc.R``: ``expect_equivalent`` powers.
- [vig2], [vig3], [vig4] RJafroc's pkgdown articles "Chapter 11, Vignette 2/3/4" (ROC
  sample size from first principles / with the DBM / OR method),
  ``docs/articles/Ch11Vig{2,3,4}SampleSize.html`` as built on
  2020-12-04 (RJafroc commit c2df3d93): ``str(power)`` / ``str(ncases)`` output, the
  inline values, and the ``SsPowerTable(dataset02, FOM = "Wilcoxon")`` table.
"""

import json

import numpy as np
import pandas as pd
import pytest

from analysis.stats.inputs import InputError
from analysis.stats.power import (
    ORVarianceComponents,
    cases_for_power,
    or_from_dbm,
    or_variance_components,
    power_given_jk,
    power_table,
    variance_components_from_ratings,
)


@pytest.fixture(scope="module")
def vandyke(reference_csv):
    return variance_components_from_ratings(reference_csv("vandyke_roc.csv"))


def signif(x: float, digits: int) -> float:
    """R's ``signif``: what RJafroc's ``str()`` and ``SsPowerTable`` print."""
    return float(f"{x:.{digits}g}")


# [man] example 4A: VarTR, Cov1, Cov2, Cov3, Var printed to 11 decimals; [man] example 5A:
# DBM VarR (= OR VarR, carried over unchanged by UtilDBM2ORVarCom)
def test_vandyke_or_variance_components(vandyke):
    assert vandyke.cases == 114
    assert vandyke.var_tr == pytest.approx(0.00020040252, abs=5e-12)
    assert vandyke.cov1 == pytest.approx(0.00034661371, abs=5e-12)
    assert vandyke.cov2 == pytest.approx(0.00034407483, abs=5e-12)
    assert vandyke.cov3 == pytest.approx(0.00023902837, abs=5e-12)
    assert vandyke.var == pytest.approx(0.00080228827, abs=5e-12)
    assert vandyke.var_r == pytest.approx(0.00153499935, abs=5e-12)
    # [test]: effectSize = -0.043800322, the observed difference trt0 - trt1
    assert vandyke.effect_size == pytest.approx(-0.043800322, abs=5e-10)


def test_dbm_components_convert_to_the_or_ones():
    # [man] example 5A (DBM) is documented to give the same power as 4A (OR): the
    # conversion of one printed set must give the other (both rounded to 11 decimals)
    c = or_from_dbm(
        var_r=0.00153499935,
        var_c=0.02724923428,
        var_tr=0.00020040252,
        var_tc=0.01197529621,
        var_rc=0.01226472859,
        var_err=0.03997160319,
        cases=114,
        effect_size=0.05,
    )
    assert c.var_tr == 0.00020040252
    assert c.cov1 == pytest.approx(0.00034661371, abs=1e-11)
    assert c.cov2 == pytest.approx(0.00034407483, abs=1e-11)
    assert c.cov3 == pytest.approx(0.00023902837, abs=1e-11)
    assert c.var == pytest.approx(0.00080228827, abs=1e-11)


def test_power_j6_k251_rrrc(vandyke):
    # [vig4] SsPowerGivenJK(dataset02, J = 6, K = 251, method = "OR"): str() prints
    # powerRRRC 0.801, ncpRRRC 8.91, df2RRRC 16.1, fRRRC 4.49; inline "0.80054026"
    res = power_given_jk(vandyke, readers=6, cases=251)
    assert round(res.power, 8) == 0.80054026
    assert signif(res.ncp, 3) == 8.91
    assert signif(res.df2, 3) == 16.1
    assert signif(res.critical_value, 3) == 4.49
    assert (res.df1, res.analysis) == (1, "rrrc")


def test_power_j6_k112_rrrc(vandyke):
    # [vig3] SsPowerGivenJK(dataset02, J = 6, K = 112): powerRRRC 0.556 ("0.55557885"),
    # ncpRRRC 4.8, df2RRRC 23.1, fRRRC 4.28
    res = power_given_jk(vandyke, readers=6, cases=112)
    assert round(res.power, 8) == 0.55557885
    assert signif(res.ncp, 3) == 4.80
    assert signif(res.df2, 3) == 23.1
    assert signif(res.critical_value, 3) == 4.28


@pytest.mark.parametrize(
    ("readers", "cases", "effect_size", "analysis", "expected", "tolerance"),
    [
        (6, 111, None, "rrrc", 0.5526116, 5e-8),
        (10, 165, -0.043800322, "rrrc", 0.80541995, 1e-8),
        (10, 131, -0.043800322, "frrc", 0.80091813, 1e-8),
        (10, 53, -0.043800322, "rrfc", 0.80496663, 1e-8),
    ],
)
def test_power_matches_rjafroc_tests(
    vandyke, readers, cases, effect_size, analysis, expected, tolerance
):
    # [test] SsPowerGivenJK(dataset02, FOM = "Wilcoxon", method = "OR", ...)
    res = power_given_jk(
        vandyke, readers=readers, cases=cases, effect_size=effect_size, analysis=analysis
    )
    assert res.power == pytest.approx(expected, abs=tolerance)


def test_fixed_readers_is_a_chi_square_test(vandyke):
    # Hillis et al. 2011: FRRC uses chi-square(1) (infinite ddf), RJafroc df2FRRC = NA
    res = power_given_jk(vandyke, readers=10, cases=131, analysis="frrc")
    assert np.isinf(res.df2)
    assert res.critical_value == pytest.approx(1.959963984540054**2)
    assert json.loads(json.dumps(res.to_dict()))["df2"] is None


def test_fixed_cases_has_j_minus_1_df(vandyke):
    res = power_given_jk(vandyke, readers=10, cases=53, analysis="rrfc")
    assert res.df2 == 9
    # [vig2] (DBM first principles, RRFC, J = 10): "ddf = 9, FCrit = 5.11735503"
    assert round(res.critical_value, 8) == 5.11735503


@pytest.mark.parametrize(
    ("analysis", "cases", "power"),
    [("rrrc", 163, 0.80156249), ("frrc", 131, 0.80091813), ("rrfc", 53, 0.80496663)],
)
def test_cases_for_80_percent_power_with_10_readers(vandyke, analysis, cases, power):
    # [vig4] SsSampleSizeKGivenJ(dataset02, J = 10, method = "OR", analysisOption = ...):
    # "The required number of cases is 163 and expected power is 0.80156249", 131 /
    # 0.80091813, 53 / 0.80496663
    res = cases_for_power(vandyke, readers=10, analysis=analysis)
    assert res.cases == cases
    assert round(res.power, 8) == power


def test_cases_for_power_with_6_readers(vandyke):
    # [test] SsSampleSizeKGivenJ(dataset02, J = 6, FOM = "Wilcoxon", method = "OR")$KRRRC
    assert cases_for_power(vandyke, readers=6).cases == 251


def test_cases_for_power_is_the_first_k_that_reaches_it(vandyke):
    res = cases_for_power(vandyke, readers=10)
    below = power_given_jk(vandyke, readers=10, cases=res.cases - 1)
    assert below.power < 0.8 <= res.power


def test_unreachable_power_gives_none(vandyke):
    # [vig4] SsPowerTable: 3 readers need ">2000" cases
    assert cases_for_power(vandyke, readers=3) is None


# [vig3]/[vig4] SsPowerTable(dataset02, FOM = "Wilcoxon", analysisOption = "RRRC"):
# numReaders:numCases:power (power to 3 significant digits), J = 4..100; J = 3 is ">2000"
PUBLISHED_POWER_TABLE = """
4:1089:0.8 5:344:0.801 6:251:0.801 7:211:0.801 8:188:0.801 9:173:0.801 10:163:0.802
11:155:0.801 12:149:0.802 13:144:0.801 14:140:0.802 15:137:0.802 16:134:0.802 17:131:0.801
18:129:0.801 19:127:0.801 20:126:0.802 21:124:0.801 22:123:0.802 23:122:0.802 24:121:0.803
25:120:0.802 26:119:0.802 27:118:0.802 28:117:0.801 29:117:0.803 30:116:0.802 31:115:0.801
32:115:0.803 33:114:0.801 34:114:0.803 35:113:0.801 36:113:0.802 37:112:0.8 38:112:0.802
39:112:0.803 40:111:0.801 41:111:0.802 42:111:0.803 43:110:0.801 44:110:0.802 45:110:0.802
46:110:0.803 47:109:0.801 48:109:0.802 49:109:0.802 50:109:0.803 51:108:0.8 52:108:0.801
53:108:0.802 54:108:0.802 55:108:0.803 56:107:0.8 57:107:0.801 58:107:0.801 59:107:0.802
60:107:0.802 61:107:0.803 62:107:0.803 63:106:0.8 64:106:0.801 65:106:0.801 66:106:0.802
67:106:0.802 68:106:0.802 69:106:0.803 70:106:0.803 71:106:0.804 72:105:0.8 73:105:0.801
74:105:0.801 75:105:0.801 76:105:0.802 77:105:0.802 78:105:0.802 79:105:0.803 80:105:0.803
81:105:0.803 82:105:0.803 83:104:0.8 84:104:0.8 85:104:0.801 86:104:0.801 87:104:0.801
88:104:0.801 89:104:0.802 90:104:0.802 91:104:0.802 92:104:0.802 93:104:0.802 94:104:0.803
95:104:0.803 96:104:0.803 97:104:0.803 98:104:0.804 99:104:0.804 100:103:0.8
"""


def test_power_table_matches_rjafroc(vandyke):
    published = {
        int(j): (int(k), float(p))
        for j, k, p in (item.split(":") for item in PUBLISHED_POWER_TABLE.split())
    }
    table = power_table(vandyke, readers=range(3, 101))
    assert table["readers"].tolist() == list(range(3, 101))
    first = table.iloc[0]
    assert first["cases"] is pd.NA and np.isnan(first["power"])
    ours = {int(r.readers): (int(r.cases), signif(r.power, 3)) for r in table.iloc[1:].itertuples()}
    assert ours == published


def test_effect_size_overrides_the_observed_one(vandyke):
    # a larger effect needs fewer cases; its sign does not matter (it enters squared)
    plus = cases_for_power(vandyke, readers=6, effect_size=0.05)
    minus = cases_for_power(vandyke, readers=6, effect_size=-0.05)
    assert (plus.cases, plus.power) == (minus.cases, minus.power)
    assert plus.effect_size == 0.05
    assert plus.cases < 251


def test_components_without_effect_size_need_one():
    c = ORVarianceComponents(
        var_r=0.0015, var_tr=0.0002, cov1=0.00035, cov2=0.00034, cov3=0.00024, var=0.0008,
        cases=114,
    )  # fmt: skip
    with pytest.raises(InputError, match="effect size"):
        power_given_jk(c, readers=6, cases=100)
    assert power_given_jk(c, readers=6, cases=100, effect_size=0.05).power > 0


def test_negative_treatment_by_reader_variance_counts_as_zero(vandyke):
    # RJafroc SsPowerGivenJKOrVarCom: VarTR <- max(VarTR, 0)
    negative = ORVarianceComponents(**{**vandyke.__dict__, "var_tr": -0.001})
    zero = ORVarianceComponents(**{**vandyke.__dict__, "var_tr": 0.0})
    a = power_given_jk(negative, readers=6, cases=100)
    b = power_given_jk(zero, readers=6, cases=100)
    assert a.power == b.power and a.df2 == b.df2


def test_or_variance_components_need_two_treatments(reference_csv):
    from analysis.stats.mrmc import mrmc_from_ratings

    data = reference_csv("vandyke_roc.csv")
    third = data[data["treatment"] == 1].assign(treatment=2)
    result = mrmc_from_ratings(pd.concat([data, third]))
    with pytest.raises(InputError, match="exactly two treatments"):
        or_variance_components(result, cases=114)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"analysis": "xyz"}, "analysis must be"),
        ({"alpha": 1.5}, "alpha"),
        ({"readers": 1}, "at least two readers"),
    ],
)
def test_bad_arguments_raise_input_error(vandyke, kwargs, message):
    args = {"readers": 6, "cases": 100, **kwargs}
    with pytest.raises(InputError, match=message):
        power_given_jk(vandyke, **args)
