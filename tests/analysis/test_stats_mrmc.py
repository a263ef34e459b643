import json

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from analysis.stats.inputs import InputError
from analysis.stats.mrmc import WILCOXON, FigureOfMerit, mrmc_from_ratings, or_analysis


@pytest.fixture(scope="module")
def vandyke(reference_csv):
    return mrmc_from_ratings(reference_csv("vandyke_roc.csv"))


@pytest.fixture(scope="module")
def cad(reference_csv):
    return reference_csv("cad_vs_radiologists_roc.csv")


def row(table, **where):
    mask = np.ones(len(table), bool)
    for key, value in where.items():
        mask &= (table[key] == value).to_numpy()
    assert mask.sum() == 1
    return table[mask].iloc[0]


# Van Dyke et al. (1993): OR-DBM MRMC 2.51 output shipped with RJafroc (reference README)
def test_vandyke_reader_aucs(vandyke):
    assert vandyke.fom[0] == pytest.approx(
        [0.91964573, 0.85877617, 0.90386473, 0.97310789, 0.82979066], abs=5e-9
    )
    assert vandyke.fom[1] == pytest.approx(
        [0.94782609, 0.90531401, 0.92173913, 0.99935588, 0.92995169], abs=5e-9
    )
    assert vandyke.fom.mean(axis=1) == pytest.approx([0.89703704, 0.94083736], abs=5e-9)


def test_vandyke_mean_squares_and_covariances(vandyke):
    assert vandyke.ms_t == pytest.approx(0.00479617, abs=5e-9)
    assert vandyke.ms_r == pytest.approx(0.00383620, abs=5e-9)
    assert vandyke.ms_tr == pytest.approx(0.00055103, abs=5e-9)
    assert vandyke.var_error == pytest.approx(0.00080229, abs=5e-9)
    assert vandyke.cov1 == pytest.approx(0.00034661, abs=5e-9)
    assert vandyke.cov2 == pytest.approx(0.00034407, abs=5e-9)
    assert vandyke.cov3 == pytest.approx(0.00023903, abs=5e-9)


def test_vandyke_random_readers_random_cases(vandyke):
    test = row(vandyke.tests, analysis="rrrc")
    assert round(test.statistic, 2) == 4.46
    assert round(test.df2, 2) == 15.26
    assert round(test.p, 4) == 0.0517
    diff = row(vandyke.differences, analysis="rrrc")
    assert round(diff.difference, 5) == -0.04380
    assert round(diff.se, 5) == 0.02075
    assert round(diff.ci_low, 5) == -0.08796
    assert round(diff.ci_high, 5) == 0.00036


def test_vandyke_fixed_readers(vandyke):
    test = row(vandyke.tests, analysis="frrc")
    assert round(test.statistic, 5) == 5.47595
    assert round(test.p, 4) == 0.0193
    diff = row(vandyke.differences, analysis="frrc")
    assert (round(diff.ci_low, 5), round(diff.ci_high, 5)) == (-0.08049, -0.00711)


def test_vandyke_fixed_cases(vandyke):
    test = row(vandyke.tests, analysis="rrfc")
    assert round(test.statistic, 2) == 8.70
    assert (test.df1, test.df2) == (1, 4)
    assert round(test.p, 4) == 0.0420
    diff = row(vandyke.differences, analysis="rrfc")
    assert (round(diff.ci_low, 5), round(diff.ci_high, 5)) == (-0.08502, -0.00258)


def test_or_result_is_json_serialisable(vandyke):
    payload = json.loads(json.dumps(vandyke.to_dict()))
    assert payload["fom_name"] == "wilcoxon_auc"
    assert len(payload["differences"]) == 3


def test_closed_form_wilcoxon_jackknife_equals_leaving_cases_out(reference_csv):
    data = reference_csv("vandyke_roc.csv").query("treatment == 0")
    ratings = data.pivot(index="reader", columns="case", values="rating").to_numpy()
    truth = data.drop_duplicates("case").sort_values("case")["truth"].to_numpy()
    slow = FigureOfMerit("slow", WILCOXON.value)
    assert WILCOXON.leave_one_out(ratings, truth) == pytest.approx(
        slow.leave_one_out(ratings, truth)
    )


def test_reader_aucs_match_sklearn(cad):
    res = mrmc_from_ratings(cad, ai_reader="CAD")
    for reader, value in zip(res.readers, res.fom_readers, strict=True):
        one = cad[cad["reader"] == reader]
        assert value == pytest.approx(roc_auc_score(one["truth"], one["rating"]))


# RJafroc StSignificanceTestingCadVsRad(dataset09, FOM = "Wilcoxon"), printed in
# Chakraborty's RJafrocBook, chapter "Standalone CAD vs. Radiologists", tables 2 and 3
def test_cad_vs_radiologists_1t_rrrc(cad):
    res = mrmc_from_ratings(cad, ai_reader="CAD")
    assert round(res.fom_ai, 3) == 0.817
    assert round(res.readers_mean, 3) == 0.849
    assert round(res.difference, 4) == 0.0317
    assert round(res.var_readers, 6) == 0.000878
    assert round(res.cov2, 6) == 0.000924
    assert round(res.var_error, 4) == 0.0014
    rrrc = row(res.analyses, analysis="rrrc")
    assert round(rrrc.statistic, 2) == 0.99
    assert round(rrrc.df) == 878
    assert round(rrrc.p, 4) == 0.3210
    assert (round(rrrc.ci_low, 3), round(rrrc.ci_high, 3)) == (-0.031, 0.094)


def test_cad_vs_radiologists_1t_rrfc(cad):
    rrfc = row(mrmc_from_ratings(cad, ai_reader="CAD").analyses, analysis="rrfc")
    assert round(rrfc.statistic) == 10
    assert rrfc.df == 8
    assert round(rrfc.p, 3) == 0.012
    assert (round(rrfc.ci_low, 3), round(rrfc.ci_high, 3)) == (0.009, 0.055)
    assert (round(rrfc.readers_ci_low, 2), round(rrfc.readers_ci_high, 2)) == (0.83, 0.87)


def test_cad_replicated_as_a_treatment_gives_the_same_test(cad):
    # Chakraborty: 2T-RRRC (CAD replicated once per radiologist) and 1T-RRRC agree
    radiologists = cad[cad["reader"] != "CAD"].assign(treatment="rad")
    algorithm = cad[cad["reader"] == "CAD"]
    replicated = pd.concat(
        [algorithm.assign(reader=r, treatment="cad") for r in radiologists["reader"].unique()]
    )
    two = mrmc_from_ratings(pd.concat([radiologists, replicated]))
    one = mrmc_from_ratings(cad, ai_reader="CAD")
    test = row(two.tests, analysis="rrrc")
    rrrc = row(one.analyses, analysis="rrrc")
    assert test.statistic == pytest.approx(rrrc.statistic)
    assert test.df2 == pytest.approx(rrrc.df)
    assert test.p == pytest.approx(rrrc.p)
    # published 2T-RRRC covariances and the readers' mean CI (0.81, 0.89)
    assert round(two.var_error, 6) == 0.000962
    assert round(two.cov1, 6) == 0.000262
    assert round(two.cov2, 6) == 0.000724
    assert round(two.cov3, 6) == 0.000262
    rad = row(two.treatment_estimates, treatment="rad", analysis="rrrc")
    assert (round(rad.ci_low, 2), round(rad.ci_high, 2)) == (0.81, 0.89)
    ours = row(one.analyses, analysis="rrrc")
    assert (round(ours.readers_ci_low, 2), round(ours.readers_ci_high, 2)) == (0.81, 0.89)


def test_or_analysis_accepts_any_vectorised_figure_of_merit():
    rng = np.random.default_rng(0)
    truth = np.repeat([0, 1], 20)
    ratings = rng.normal(size=(2, 3, 40)) + truth

    def sensitivity_at_zero(r, t):
        return (r[..., t == 1] > 0).mean(axis=-1)

    res = or_analysis(ratings, truth, fom=FigureOfMerit("se0", sensitivity_at_zero))
    assert res.fom == pytest.approx(sensitivity_at_zero(ratings, truth))
    assert res.var_error >= 0


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d.drop(columns="rating"), "lacks column"),
        (lambda d: d.iloc[1:], "missing rating"),
        (lambda d: pd.concat([d, d.iloc[:1]]), "more than one rating"),
    ],
)
def test_bad_ratings_raise_input_error(cad, change, message):
    with pytest.raises(InputError, match=message):
        mrmc_from_ratings(change(cad), ai_reader="CAD")
