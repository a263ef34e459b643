"""``manage.py mrmc RATINGS.csv``: Obuchowski-Rockette MRMC analysis of a ratings file.

RATINGS is tidy CSV ``reader, case, truth, rating[, treatment]`` (truth 0/1). With two or
more treatments: the OR analysis with random readers and cases, fixed readers and fixed
cases; with ``--ai-reader NAME`` (one treatment): that reader is an algorithm compared
with the others (1T-RRRC / 1T-RRFC). ``--json`` prints one JSON object with every figure.
"""

from __future__ import annotations

import json

import pandas as pd
from django.core.management.base import BaseCommand, CommandError

from analysis.stats import InputError
from analysis.stats.mrmc import AIResult, ORResult, mrmc_from_ratings

ANALYSIS_NAMES = {
    "rrrc": "random readers, random cases",
    "frrc": "fixed readers, random cases",
    "rrfc": "random readers, fixed cases",
}


def _f(x, digits: int = 5) -> str:
    if x is None or pd.isna(x):
        return "-"
    if x == float("inf"):
        return "inf"
    return f"{x:.{digits}f}"


def _p(p) -> str:
    return "-" if p is None or pd.isna(p) else ("<0.0001" if p < 1e-4 else f"{p:.4f}")


def or_report(res: ORResult, alpha: float) -> str:
    """Readable OR report: AUCs per treatment x reader, each analysis' test and CI,
    covariance components and mean squares, to the precision OR-DBM MRMC 2.51 prints
    (FOMs, variances and mean squares 8 decimals, chi-square 5, F 4, differences and
    CIs 5)."""
    level = f"{100 * (1 - alpha):g}%"
    lines = [f"Obuchowski-Rockette MRMC analysis, figure of merit {res.fom_name}", ""]
    lines.append("Figures of merit (rows readers, columns treatments)")
    fom = pd.DataFrame(res.fom.T, index=res.readers, columns=res.treatments)
    fom.loc["mean"] = fom.mean()
    lines += ["  " + line for line in fom.to_string(float_format=lambda x: f"{x:.8f}").splitlines()]
    lines += ["", "Variance components (jackknife over cases)"]
    for name, value in (
        ("Var(Error)", res.var_error),
        ("Cov1", res.cov1),
        ("Cov2", res.cov2),
        ("Cov3", res.cov3),
        ("MS(T)", res.ms_t),
        ("MS(R)", res.ms_r),
        ("MS(T*R)", res.ms_tr),
    ):
        lines.append(f"  {name:<11}{_f(value, 8)}")
    for test in res.tests.itertuples():
        lines += ["", f"{ANALYSIS_NAMES[test.analysis]} ({test.analysis.upper()})"]
        df2 = "" if pd.isna(test.df2) or test.df2 == float("inf") else f", {_f(test.df2, 2)}"
        # The published precision: chi-square to 5 decimals, F to 4 (OR-DBM MRMC 2.51).
        digits = 5 if test.statistic_name == "chi2" else 4
        lines.append(
            f"  {test.statistic_name}({test.df1:g}{df2}) = {_f(test.statistic, digits)}, "
            f"p = {_p(test.p)}"
        )
        for d in res.differences[res.differences["analysis"] == test.analysis].itertuples():
            lines.append(
                f"  {d.treatment_a} - {d.treatment_b}: {_f(d.difference)} (SE {_f(d.se)}, "
                f"df {_f(d.df, 2)}), {level} CI {_f(d.ci_low)} to {_f(d.ci_high)}, "
                f"p = {_p(d.p)}"
            )
        for e in res.treatment_estimates[
            res.treatment_estimates["analysis"] == test.analysis
        ].itertuples():
            lines.append(
                f"  treatment {e.treatment}: {_f(e.estimate)} (SE {_f(e.se)}), "
                f"{level} CI {_f(e.ci_low)} to {_f(e.ci_high)}"
            )
    return "\n".join(lines)


def ai_report(res: AIResult, ai_reader: str, alpha: float) -> str:
    """Readable single-treatment report of one algorithm against the readers."""
    level = f"{100 * (1 - alpha):g}%"
    lines = [
        f"Algorithm {ai_reader} versus {len(res.readers)} readers, figure of merit "
        f"{res.fom_name} (single-treatment OR, Hillis 2007)",
        "",
        "Figures of merit",
    ]
    for reader, value in zip(res.readers, res.fom_readers, strict=True):
        lines.append(f"  {reader:<12}{_f(value, 8)}")
    lines += [
        f"  {'readers':<12}{_f(res.readers_mean, 8)} (mean)",
        f"  {ai_reader:<12}{_f(res.fom_ai, 8)}",
        "",
        f"Difference readers - {ai_reader}: {_f(res.difference)}",
        "",
        "Variance components of the difference (jackknife over cases)",
        f"  Var(Error) {_f(res.var_error, 8)}",
        f"  Cov2       {_f(res.cov2, 8)}",
        f"  Var(R)     {_f(res.var_readers, 8)}",
    ]
    for a in res.analyses.itertuples():
        lines += [
            "",
            f"{ANALYSIS_NAMES[a.analysis]} (1T-{a.analysis.upper()})",
            f"  F(1, {_f(a.df, 2)}) = {_f(a.statistic, 4)}, p = {_p(a.p)}",
            f"  difference {_f(a.difference)} (SE {_f(a.se)}), {level} CI {_f(a.ci_low)} "
            f"to {_f(a.ci_high)}",
            f"  readers' mean {level} CI {_f(a.readers_ci_low)} to {_f(a.readers_ci_high)}",
        ]
    return "\n".join(lines)


class Command(BaseCommand):
    help = "MRMC ROC analysis (Obuchowski-Rockette, Hillis 2007) of a tidy ratings CSV."

    def add_arguments(self, parser):
        parser.add_argument("ratings", help="CSV with reader, case, truth, rating[, treatment]")
        parser.add_argument("--ai-reader", help="the reader that is an algorithm (1 treatment)")
        parser.add_argument("--json", action="store_true", help="print one JSON object")
        parser.add_argument("--alpha", type=float, default=0.05, help="1 - confidence level")

    def handle(
        self, *args, ratings: str, ai_reader: str | None, json: bool, alpha: float, **options
    ):
        if not 0 < alpha < 1:
            raise CommandError(f"--alpha must be between 0 and 1, got {alpha}")
        try:
            frame = pd.read_csv(ratings, dtype={"reader": str, "case": str, "treatment": str})
        except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
            raise CommandError(f"cannot read {ratings}: {exc}") from exc
        try:
            result = mrmc_from_ratings(frame, ai_reader=ai_reader, alpha=alpha)
        except (InputError, ValueError) as exc:
            raise CommandError(str(exc)) from exc
        if json:
            payload = {
                "analysis": "ai_vs_readers" if isinstance(result, AIResult) else "or",
                "ai_reader": ai_reader,
                "alpha": alpha,
                **result.to_dict(),
            }
            self.stdout.write(_dumps(payload))
        elif isinstance(result, AIResult):
            self.stdout.write(ai_report(result, ai_reader, alpha))
        else:
            self.stdout.write(or_report(result, alpha))


def _dumps(payload: dict) -> str:
    return json.dumps(payload, indent=2, allow_nan=False)
