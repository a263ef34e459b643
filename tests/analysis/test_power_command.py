"""``manage.py power``: power and sample size of the next study (Hillis, Obuchowski &
Berbaum 2011) through the command's own output.

The Van Dyke numbers are RJafroc's, for ``dataset02`` (= shared ``vandyke_roc.csv``),
the same published values that ``test_stats_power.py`` checks on the library:
- [vig3], [vig4] RJafroc's pkgdown articles "Chapter 11, Vignette 3/4" (ROC sample size
  with the DBM / OR method, built 2020-12-04, RJafroc commit c2df3d93): ``str(power)``,
  ``str(ncases)`` and the ``SsPowerTable(dataset02, FOM = "Wilcoxon")`` table;
- [test] RJafroc ``tests/testthat/test-SsSampleSizeRoc.R``: ``expect_equivalent`` powers;
- [man] RJafroc ``R/SsPowerGivenJK.R`` example 4A: the OR components to 11 decimals.
"""

from __future__ import annotations

import io
import json

import numpy as np
import pandas as pd
import pytest
from django.core.management import CommandError, call_command

from tests.analysis.factories import CHOICES, build_db_study, reference_data_dir


def run(*args) -> str:
    out = io.StringIO()
    call_command("power", *args, stdout=out, stderr=io.StringIO())
    return out.getvalue()


def run_csv(*args) -> pd.DataFrame:
    return pd.read_csv(io.StringIO(run(*args, "--format", "csv")))


def run_json(*args) -> dict:
    return json.loads(run(*args, "--format", "json"))


def vandyke() -> str:
    return str(reference_data_dir() / "vandyke_roc.csv")


def signif(x: float, digits: int) -> float:
    """R's ``signif``: what RJafroc's ``str()`` and ``SsPowerTable`` print."""
    return float(f"{x:.{digits}g}")


def two_condition_answers(
    *, n_readers=6, n_cases=40, conditions=("unaided", "aided"), gain=0.15, seed=0
) -> pd.DataFrame:
    """Answers of every reader to every case in each condition, in that order in the file:
    reader skill 0.45-0.7 unaided, ``gain`` higher in each later condition; one latent
    draw per reader x case makes a reader's conditions correlated, as in a real study."""
    rng = np.random.default_rng(seed)
    truth = np.arange(n_cases) % len(CHOICES)
    rows = []
    for step, condition in enumerate(conditions):
        for r in range(n_readers):
            draw = np.random.default_rng([seed, r]).random(n_cases)
            p = 0.45 + 0.25 * r / max(n_readers - 1, 1) + gain * step
            for k in range(n_cases):
                wrong = (truth[k] + 1 + rng.integers(len(CHOICES) - 1)) % len(CHOICES)
                answer = truth[k] if draw[k] < p else wrong
                rows.append(
                    (f"R{r}", f"case{k:03d}", CHOICES[truth[k]], CHOICES[answer], condition)
                )
    return pd.DataFrame(rows, columns=["reader", "case", "truth", "answer", "condition"])


def write(tmp_path, frame: pd.DataFrame, name="answers.csv") -> str:
    path = tmp_path / name
    frame.to_csv(path, index=False)
    return str(path)


# --- the Van Dyke data against RJafroc -----------------------------------------------


@pytest.mark.parametrize(
    ("readers", "cases", "effect", "analysis", "expected", "tolerance"),
    [
        # [vig4] SsPowerGivenJK(dataset02, J = 6, K = 251, method = "OR"): "0.80054026"
        (6, 251, None, "RRRC", 0.80054026, 5e-9),
        # [vig3] SsPowerGivenJK(dataset02, J = 6, K = 112): "0.55557885"
        (6, 112, None, "RRRC", 0.55557885, 5e-9),
        # [test] SsPowerGivenJK(dataset02, FOM = "Wilcoxon", method = "OR", ...)
        (6, 111, None, "RRRC", 0.5526116, 5e-8),
        (10, 165, "-0.043800322", "RRRC", 0.80541995, 1e-8),
        (10, 131, "-0.043800322", "FRRC", 0.80091813, 1e-8),
        (10, 53, "-0.043800322", "RRFC", 0.80496663, 1e-8),
    ],
)
def test_van_dyke_power_reproduces_rjafroc(readers, cases, effect, analysis, expected, tolerance):
    args = ["--ratings", vandyke(), "--readers", str(readers), "--cases", str(cases)]
    args += ["--analysis", analysis] + (["--effect", effect] if effect else [])
    row = run_csv(*args).iloc[0]
    assert (row["analysis"], row["readers"], row["cases"]) == (analysis.lower(), readers, cases)
    assert row["power"] == pytest.approx(expected, abs=tolerance)


def test_van_dyke_power_prints_rjafroc_ncp_and_df():
    # [vig4] J = 6, K = 251: ncpRRRC 8.91, df2RRRC 16.1, fRRRC 4.49; [vig3] K = 112: 4.8, 23.1,
    # 4.28; the observed effect is trt0 - trt1 = -0.043800322 ([test] effectSize)
    table = run_csv("--ratings", vandyke(), "--readers", "6", "--cases", "251,112")
    assert table["cases"].tolist() == [251, 112]
    assert [signif(v, 3) for v in table["ncp"]] == [8.91, 4.80]
    assert [signif(v, 3) for v in table["df2"]] == [16.1, 23.1]
    assert [signif(v, 3) for v in table["critical_value"]] == [4.49, 4.28]
    assert table["effect"].round(9).tolist() == [-0.043800322] * 2
    assert (table["df1"] == 1).all()


def test_van_dyke_target_power_gives_rjafroc_sample_sizes():
    # [vig4] SsSampleSizeKGivenJ(dataset02, J = 10, method = "OR", analysisOption = ...):
    # 163 cases / 0.80156249 (RRRC), 131 / 0.80091813 (FRRC), 53 / 0.80496663 (RRFC);
    # [test] J = 6: KRRRC 251; [vig4] SsPowerTable: 3 readers need ">2000" cases (RRRC)
    res = run_json("--ratings", vandyke(), "--readers", "3,6,10", "--target-power", "0.8",
                   "--analysis", "all")  # fmt: skip
    assert res["target_power"] == 0.8 and res["analyses"] == ["rrrc", "frrc", "rrfc"]
    found = {(r["analysis"], r["readers"]): r for r in res["rows"]}
    assert found["rrrc", 3]["cases"] is None and found["rrrc", 3]["power"] is None
    assert found["rrrc", 6]["cases"] == 251
    for analysis, cases, power in (("rrrc", 163, 0.80156249), ("frrc", 131, 0.80091813),
                                   ("rrfc", 53, 0.80496663)):  # fmt: skip
        assert found[analysis, 10]["cases"] == cases
        assert round(found[analysis, 10]["power"], 8) == power
    assert found["frrc", 10]["df2"] is None  # chi-square: infinite ddf, JSON has no inf


def test_van_dyke_target_power_is_the_default_and_matches_rjafroc_power_table():
    # [vig3]/[vig4] SsPowerTable(dataset02, FOM = "Wilcoxon"), J:K:power to 3 digits
    published = {4: (1089, 0.8), 5: (344, 0.801), 6: (251, 0.801), 7: (211, 0.801),
                 8: (188, 0.801), 10: (163, 0.802), 20: (126, 0.802), 50: (109, 0.803),
                 100: (103, 0.8)}  # fmt: skip
    table = run_csv("--ratings", vandyke(), "--readers", ",".join(map(str, published)))
    ours = {int(r.readers): (int(r.cases), signif(r.power, 3)) for r in table.itertuples()}
    assert ours == published


def test_table_names_the_method_and_the_components():
    text = run("--ratings", vandyke(), "--readers", "6", "--cases", "251")
    lines = text.splitlines()
    assert "Hillis, Obuchowski & Berbaum (2011)" in lines[0] and "SsPowerGivenJK" in lines[0]
    assert "random readers, random cases (RRRC); alpha 0.05" in text
    assert "5 readers, K* = 114 cases" in text
    # [man] example 4A, to the 8 decimals printed
    assert (
        "var_r 0.00153500, var_tr 0.00020040, cov1 0.00034661, cov2 0.00034407, "
        "cov3 0.00023903, var 0.00080229"
    ) in text
    assert "Effect: -0.04380, the pilot's observed difference (0 - 1)" in text
    assert lines[-2].split() == ["readers", "cases", "effect", "df", "ncp", "power"]
    assert lines[-1].split() == ["6", "251", "-0.04380", "16.13", "8.9105", "0.80054026"]


def test_table_of_the_target_power_marks_unreachable_cases():
    text = run("--ratings", vandyke(), "--readers", "3,10", "--analysis", "all")
    assert "Smallest number of cases with power >= 0.8" in text
    rows = [line.split() for line in text.splitlines()[-6:]]
    assert rows[0][:3] == ["RRRC", "3", ">2000"]
    assert rows[3][:3] == ["FRRC", "10", "131"] and rows[3][4] == "inf"


def test_components_given_directly_reproduce_the_published_power():
    # [man] example 4A: the OR components printed to 11 decimals, K* = 114
    args = ["--var-r", "0.00153499935", "--var-tr", "0.00020040252", "--cov1", "0.00034661371",
            "--cov2", "0.00034407483", "--cov3", "0.00023902837", "--var-error", "0.00080228827",
            "--cases-in-pilot", "114", "--effect", "-0.043800322"]  # fmt: skip
    row = run_csv(*args, "--readers", "6", "--cases", "251").iloc[0]
    assert row["power"] == pytest.approx(0.80054026, abs=1e-7)
    assert run_csv(*args, "--readers", "10")["cases"].tolist() == [163]
    res = run_json(*args, "--readers", "6", "--cases", "251")
    assert res["pilot"]["readers"] is None and res["components"]["cases"] == 114


# --- the answers table: two reading conditions by top-1 accuracy ------------------------


def test_answers_power_rises_with_readers(tmp_path):
    answers = two_condition_answers(gain=0.05)
    path = write(tmp_path, answers)
    res = run_json("--answers", path, "--readers", "2,3,4,6", "--cases", "30")
    powers = [r["power"] for r in res["rows"]]
    assert 0.05 < powers[0] < powers[1] < powers[2] < powers[3] < 0.95
    assert res["pilot"]["figure_of_merit"] == "top-1 accuracy"
    assert res["pilot"]["readers"] == 6 and res["components"]["cases"] == 40
    # the first condition in the file (unaided) is the reference, though "aided" sorts first
    assert res["pilot"]["treatments"] == ["aided", "unaided"]
    correct = answers.assign(ok=answers["answer"] == answers["truth"])
    accuracy = correct.groupby("condition")["ok"].mean()
    assert res["effect"] == pytest.approx(accuracy["aided"] - accuracy["unaided"], abs=1e-12)
    assert res["effect"] > 0


def test_answers_components_are_the_jackknife_of_the_accuracy(tmp_path):
    # Independent of mrmc: the leave-one-case-out accuracy (S - x_k) / (K - 1) has jackknife
    # covariance (K-1)/K sum (.)(.) = cov0(x, y) / (K - 1), cov0 the population covariance;
    # Var averages it over reader x condition, Cov1 over readers across the conditions, Cov2
    # over reader pairs within a condition.
    answers = two_condition_answers(n_readers=4, n_cases=30, seed=3)
    res = run_json("--answers", write(tmp_path, answers), "--readers", "4", "--cases", "30")
    x = (
        answers.assign(ok=(answers["answer"] == answers["truth"]).astype(float))
        .pivot_table(index="case", columns=["condition", "reader"], values="ok")
        .to_numpy()
        .T
    )  # (condition x reader, case), condition outer
    k = x.shape[1]
    cov = np.cov(x, ddof=0) / (k - 1)
    same_reader = np.tile(np.eye(4, dtype=bool), (2, 2)) & ~np.eye(8, dtype=bool)
    same_condition = np.kron(np.eye(2, dtype=bool), np.ones((4, 4), dtype=bool))
    same_condition &= ~np.eye(8, dtype=bool)
    c = res["components"]
    assert c["var"] == pytest.approx(np.diag(cov).mean(), rel=1e-12)
    assert c["cov1"] == pytest.approx(cov[same_reader].mean(), rel=1e-12)
    assert c["cov2"] == pytest.approx(cov[same_condition].mean(), rel=1e-12)


def test_answers_leave_out_readers_who_missed_a_case(tmp_path):
    answers = two_condition_answers(n_readers=5)
    skipped = (answers["reader"] == "R4") & (answers["case"] == "case007")
    skipped &= answers["condition"] == "aided"
    res = run_json("--answers", write(tmp_path, answers[~skipped]), "--readers", "4")
    assert res["pilot"]["readers"] == 4
    assert "1 reader(s) left out" in res["pilot"]["note"] and "R4" in res["pilot"]["note"]


def test_answers_conditions_choose_two_of_three(tmp_path):
    answers = two_condition_answers(conditions=("level1", "level2", "level3"))
    path = write(tmp_path, answers)
    res = run_json("--answers", path, "--conditions", "level3,level1", "--cases", "100")
    assert res["pilot"]["treatments"] == ["level1", "level3"]  # level1 - level3 (reference)
    assert res["effect"] < 0
    with pytest.raises(CommandError, match=r"3 conditions .*choose two with --conditions"):
        run("--answers", path)


# --- bad input ----------------------------------------------------------------------------


def _components(*leave_out: str) -> list[str]:
    given = {"--var-r": "0.0015", "--var-tr": "0.0002", "--cov1": "0.00035",
             "--cov2": "0.00034", "--cov3": "0.00024", "--var": "0.0008",
             "--cases-in-pilot": "114"}  # fmt: skip
    return [v for k, x in given.items() if k not in leave_out for v in (k, x)]


BAD_ANSWERS = {
    "no condition column": (
        lambda a: a.drop(columns="condition"),
        "answers table lacks column.*condition",
    ),
    "no answer column": (lambda a: a.drop(columns="answer"), "lacks column.*answer"),
    "one condition only": (
        lambda a: a[a["condition"] == "unaided"],
        "exactly two reading conditions.*one condition",
    ),
    "one reader": (lambda a: a[a["reader"] == "R0"], "1 reader.*at least 2 readers"),
    "missing answer": (
        lambda a: a.assign(answer=a["answer"].where(a.index != 3)),
        "answer is missing",
    ),
    "blank condition": (
        lambda a: a.assign(condition=a["condition"].where(a.index != 5)),
        "condition is missing in rows 6",
    ),
}


@pytest.mark.parametrize("problem", list(BAD_ANSWERS))
def test_bad_answers_table_names_the_problem(tmp_path, problem):
    change, message = BAD_ANSWERS[problem]
    path = write(tmp_path, change(two_condition_answers()))
    with pytest.raises(CommandError, match=message):
        run("--answers", path)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--analysis", "XYZ"], "unknown analysis 'XYZ': use one of RRRC, FRRC, RRFC"),
        (["--readers", "1"], "at least two readers"),
        (["--readers", "4,x"], "--readers must be whole numbers"),
        (["--cases", "0"], "readers and cases must be positive"),
        (["--alpha", "1.5"], "alpha must lie between 0 and 1"),
        (["--target-power", "1.2"], "target power must lie between 0 and 1"),
        (["--conditions", "a,b"], "--conditions applies to --answers or --study only"),
        (["--answers", "x.csv"], "give one pilot"),
    ],
)
def test_bad_options_name_the_problem(args, message):
    with pytest.raises(CommandError, match=message):
        run("--ratings", vandyke(), *args)


def test_bad_ratings_and_components_name_the_problem(tmp_path):
    ratings = pd.read_csv(vandyke())
    with pytest.raises(CommandError, match="lacks column treatment"):
        run("--ratings", write(tmp_path, ratings.drop(columns="treatment")))
    with pytest.raises(CommandError, match="at least two treatments"):
        run("--ratings", write(tmp_path, ratings[ratings["treatment"] == 0]))
    with pytest.raises(CommandError, match=r"1 reader; .*at least 2 readers"):
        run("--ratings", write(tmp_path, ratings[ratings["reader"] == 0]))
    with pytest.raises(CommandError, match="cannot read the ratings table"):
        run("--ratings", str(tmp_path / "missing.csv"))
    with pytest.raises(CommandError, match="give one pilot"):
        run()
    with pytest.raises(CommandError, match="missing --cov3, --cases-in-pilot"):
        run(*_components("--cov3", "--cases-in-pilot"), "--effect", "0.05")
    with pytest.raises(CommandError, match="give --effect"):
        run(*_components())
    with pytest.raises(CommandError, match="not allowed with argument"):
        run(*_components(), "--effect", "0.05", "--cases", "100", "--target-power", "0.9")


# --- a study in the database ----------------------------------------------------------


@pytest.mark.django_db
def test_study_with_two_conditions_from_the_database():
    from cases.models import Answer, Diagnosis

    study = build_db_study(slug="twoconds", n_readers=3)
    unaided = study.conditions.get()
    aided = study.conditions.create(code="aided", position=unaided.position + 1)
    mn = Diagnosis.objects.get(code="MN")
    Answer.objects.bulk_create(
        Answer(enrolment=a.enrolment, case=a.case, condition=aided,
               diagnosis=a.case.diagnosis if a.case.diagnosis.code != "SK" else mn, seconds=3.0)
        for a in Answer.objects.filter(enrolment__study=study).select_related("case__diagnosis")
    )  # fmt: skip
    res = run_json("--study", study.slug, "--readers", "3,6", "--cases", "50")
    assert res["pilot"]["source"] == "study twoconds"
    assert res["pilot"]["readers"] == 3 and res["components"]["cases"] == 12
    assert res["pilot"]["treatments"] == ["aided", unaided.code]
    assert res["rows"][0]["power"] < res["rows"][1]["power"]


@pytest.mark.django_db
def test_study_unknown_or_with_one_condition():
    with pytest.raises(CommandError, match="no study with slug 'nope'"):
        run("--study", "nope")
    study = build_db_study(slug="onecond")
    with pytest.raises(CommandError, match="one condition only"):
        run("--study", study.slug)
