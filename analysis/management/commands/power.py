"""``manage.py power``: power and sample size of the next two-treatment reader study.

The variance components of a pilot (this study) feed Hillis, Obuchowski & Berbaum (2011),
Acad Radiol 18:129-142, through :mod:`analysis.stats.power` (RJafroc's ``SsPowerGivenJK``
and ``SsSampleSizeKGivenJ``, method ``"OR"``). The pilot comes from one of:

- ``--ratings FILE``: a tidy two-treatment ratings CSV ``reader, case, truth, rating,
  treatment`` (truth 0/1; Wilcoxon AUC, jackknife covariances), e.g. the Van Dyke data;
- ``--answers FILE`` or ``--study SLUG``: the answers table (``answers.csv`` or the
  database), two reading conditions compared by top-1 accuracy, the first condition in
  the table the reference; the effect is the other condition minus the reference;
- the components themselves: ``--var-r --var-tr --cov1 --cov2 --cov3 --var`` and
  ``--cases-in-pilot`` (``--effect`` is then required).

With ``--cases`` it prints the power of each planned number of readers; otherwise (or
with ``--target-power``) the smallest number of cases that reaches the target power.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd
from django.core.management.base import BaseCommand, CommandError

from analysis.stats.columns import ANSWER_COLUMNS, CONDITION_COLUMN
from analysis.stats.inputs import InputError, load_answers
from analysis.stats.mrmc import FigureOfMerit, mrmc_from_ratings
from analysis.stats.power import (
    ANALYSES,
    MAX_CASES,
    ORVarianceComponents,
    Power,
    cases_for_power,
    or_variance_components,
    power_given_jk,
)

ANALYSIS_NAMES = {
    "rrrc": "random readers, random cases",
    "frrc": "fixed readers, random cases",
    "rrfc": "random readers, fixed cases",
}
COMPONENT_HELP = {
    "var_r": "OR reader variance sigma^2_R",
    "var_tr": "OR treatment-by-reader variance sigma^2_TR (negative counts as 0)",
    "cov1": "OR error covariance Cov1: same reader, other treatment",
    "cov2": "OR error covariance Cov2: same treatment, other reader",
    "cov3": "OR error covariance Cov3: other treatment, other reader",
    "var": "OR error variance Var (all on the figure-of-merit scale of K* cases)",
}
COMPONENTS = tuple(COMPONENT_HELP)
"""The fields of :class:`ORVarianceComponents` given on the command line, in its order."""
COLUMNS = ("analysis", "readers", "cases", "effect", "df1", "df2", "ncp", "critical_value")
METHOD = (
    "Power of a two-treatment reader study: the Obuchowski-Rockette method of Hillis, "
    'Obuchowski & Berbaum (2011), as RJafroc SsPowerGivenJK / SsSampleSizeKGivenJ (method "OR")'
)
_MAX_LISTED = 10


@dataclass(frozen=True)
class Pilot:
    """The pilot study behind the variance components: where they came from, its figure
    of merit, its readers (None where the components were given) and the two treatments
    whose difference (``treatments[0] - treatments[1]``) is the observed effect."""

    components: ORVarianceComponents
    source: str
    figure_of_merit: str | None = None
    readers: int | None = None
    treatments: tuple[str, str] | None = None
    note: str = ""


def _top1_value(correct: np.ndarray, truth: np.ndarray) -> np.ndarray:
    return correct.mean(axis=-1)


def _top1_jackknife(correct: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """Leave-one-case-out accuracy ``(K, ...)`` in closed form: (sum - x_k) / (K - 1)."""
    k = correct.shape[-1]
    return np.moveaxis((correct.sum(axis=-1, keepdims=True) - correct) / (k - 1), -1, 0)


_TOP1_ACCURACY = FigureOfMerit("top1_accuracy", _top1_value, _top1_jackknife)
"""Share of a reader's answers equal to the truth; ratings are 1 (correct) or 0."""


def _ratings_pilot(path: str) -> Pilot:
    try:
        frame = pd.read_csv(path, dtype={"reader": str, "case": str, "treatment": str})
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise CommandError(f"cannot read the ratings table {path}: {exc}") from exc
    if "treatment" not in frame.columns:
        raise CommandError(
            f"the ratings table {path} lacks column treatment; power needs two treatments"
        )
    result = mrmc_from_ratings(frame)
    if len(result.readers) < 2:
        raise CommandError(
            f"the ratings table {path} has {len(result.readers)} reader; the variance "
            "components need at least 2 readers"
        )
    components = or_variance_components(result, cases=int(frame["case"].nunique()))
    treatments = tuple(result.treatments)  # two: or_variance_components checks
    return Pilot(components, f"ratings {path}", result.fom_name, len(result.readers), treatments)


def _answers_pilot(frame: pd.DataFrame, source: str, conditions: list[str] | None) -> Pilot:
    """The OR components of two reading conditions of a tidy answers table, by top-1
    accuracy (binary correctness per reader x case x condition, jackknife over cases).

    Readers count who answered every case of the table in both conditions (the OR analysis
    needs the full reader x case x condition cross); the others are named in the note.
    """
    missing = [c for c in (*ANSWER_COLUMNS, CONDITION_COLUMN) if c not in frame.columns]
    if missing:
        raise CommandError(
            f"the answers table lacks column(s) {', '.join(missing)}; it has "
            f"{', '.join(map(str, frame.columns))}"
        )
    if frame.empty:
        raise CommandError("the answers table has no rows")
    frame = frame.reset_index(drop=True)
    frame[CONDITION_COLUMN] = frame[CONDITION_COLUMN].astype("string").str.strip()
    blank = (frame[CONDITION_COLUMN].isna() | (frame[CONDITION_COLUMN] == "")).to_numpy()
    if blank.any():
        rows = ", ".join(str(i + 1) for i in np.flatnonzero(blank)[:_MAX_LISTED])
        raise CommandError(f"answers: condition is missing in rows {rows}")
    frame[CONDITION_COLUMN] = frame[CONDITION_COLUMN].astype(str)
    present = list(pd.unique(frame[CONDITION_COLUMN]))  # file order: the first is the reference
    if conditions is None:
        if len(present) != 2:
            what = "one condition only" if len(present) == 1 else f"{len(present)} conditions"
            raise CommandError(
                f"answers: power compares exactly two reading conditions; the table has "
                f"{what} ({', '.join(present)})"
                + ("; choose two with --conditions A,B" if len(present) > 2 else "")
            )
        conditions = present
    unknown = [c for c in conditions if c not in present]
    if unknown:
        raise CommandError(
            f"answers: no condition {', '.join(unknown)}; the table has {', '.join(present)}"
        )
    reference, other = conditions
    frame = frame[frame[CONDITION_COLUMN].isin(conditions)]
    labels = pd.concat([frame["truth"], frame["answer"]]).dropna().astype(str).str.strip()
    choices = sorted(set(labels) - {""})
    try:
        parts = [
            load_answers(frame[frame[CONDITION_COLUMN] == c], choices=choices) for c in conditions
        ]
    except InputError as exc:
        raise CommandError(str(exc)) from exc
    reads = pd.concat(parts, ignore_index=True)
    truths = reads.groupby("case")["truth"].nunique()
    if (truths > 1).any():
        bad = ", ".join(map(str, truths[truths > 1].index[:_MAX_LISTED]))
        raise CommandError(f"answers: the truth of case(s) {bad} differs between conditions")

    n_cases = reads["case"].nunique()
    per_reader = reads.groupby("reader").size()
    complete = sorted(per_reader.index[per_reader == 2 * n_cases])
    left_out = sorted(set(per_reader.index) - set(complete))
    if len(complete) < 2:
        raise CommandError(
            f"answers: {len(complete)} reader(s) answered all {n_cases} cases in both "
            f"conditions {reference} and {other}; the variance components need at least "
            "2 readers"
        )
    reads = reads[reads["reader"].isin(complete)]
    ratings = pd.DataFrame(
        {
            "reader": reads["reader"],
            "case": reads["case"],
            "truth": reads["truth"],
            "rating": (reads["answer"] == reads["truth"]).astype(float),
            "treatment": reads[CONDITION_COLUMN],
        }
    )
    result = mrmc_from_ratings(ratings, fom=_TOP1_ACCURACY)
    components = or_variance_components(result, cases=n_cases)
    # mrmc sorts the treatments; the effect is the other condition minus the reference.
    means = dict(zip(result.treatments, result.fom.mean(axis=1), strict=True))
    components = replace(components, effect_size=float(means[other] - means[reference]))
    note = ""
    if left_out:
        more = " ..." if len(left_out) > _MAX_LISTED else ""
        note = (
            f"{len(left_out)} reader(s) left out (not every case in both conditions): "
            f"{', '.join(left_out[:_MAX_LISTED])}{more}"
        )
    return Pilot(components, source, "top-1 accuracy", len(complete), (other, reference), note)


def _int_list(text: str, option: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        values = []
    if not values:
        raise CommandError(f"{option} must be whole numbers separated by commas, got {text!r}")
    return values


def _analyses(text: str) -> list[str]:
    name = text.strip().lower()
    if name == "all":
        return list(ANALYSES)
    if name not in ANALYSES:
        raise CommandError(
            f"unknown analysis {text!r}: use one of {', '.join(a.upper() for a in ANALYSES)} or all"
        )
    return [name]


def _row(res: Power | None, analysis: str, readers: int, effect: float) -> dict:
    """One output row, :data:`COLUMNS` and ``power``; where no K up to ``--max-cases``
    reaches the target power, ``cases`` and what follows from it are None."""
    row = {"analysis": analysis, "readers": readers, "cases": None, "effect": effect, "df1": 1}
    for name in ("df2", "ncp", "critical_value", "power"):
        row[name] = None if res is None else getattr(res, name)
    if res is not None:
        row["cases"] = res.cases
    return row


def _power_rows(
    components: ORVarianceComponents,
    *,
    analyses: list[str],
    readers: list[int],
    cases: list[int] | None,
    target: float | None,
    effect: float,
    alpha: float,
    max_cases: int,
) -> list[dict]:
    """One :func:`_row` per analysis x readers (x cases): the power of each planned
    (J, K) with ``cases`` (:func:`power_given_jk`), else the smallest K that reaches
    ``target`` (:func:`cases_for_power`)."""
    rows = []
    for analysis in analyses:
        for j in readers:
            if cases is None:
                found = cases_for_power(
                    components,
                    readers=j,
                    power=target,
                    effect_size=effect,
                    analysis=analysis,
                    alpha=alpha,
                    max_cases=max_cases,
                )
                rows.append(_row(found, analysis, j, effect))
                continue
            for k in cases:
                res = power_given_jk(
                    components,
                    readers=j,
                    cases=k,
                    effect_size=effect,
                    analysis=analysis,
                    alpha=alpha,
                )
                rows.append(_row(res, analysis, j, effect))
    return rows


def _json_value(value):
    """JSON has no infinity or NaN: an infinite df2 (FRRC) and a missing value are None."""
    if isinstance(value, float | np.floating) and not np.isfinite(value):
        return None
    return value.item() if isinstance(value, np.generic) else value


def _fmt(value, spec: str) -> str:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return "-"
    return format(value, spec)


class Command(BaseCommand):
    help = (
        "Power and sample size of the next two-treatment reader study from a pilot's "
        "Obuchowski-Rockette variance components (Hillis, Obuchowski & Berbaum 2011; "
        "RJafroc SsPowerGivenJK / SsSampleSizeKGivenJ)."
    )

    def add_arguments(self, parser):
        source = parser.add_argument_group(
            "the pilot study (one of --ratings, --answers, --study, or the components)"
        )
        source.add_argument(
            "--ratings",
            metavar="FILE",
            help="two-treatment ratings CSV: reader, case, truth (0/1), rating, "
            "treatment (Wilcoxon AUC)",
        )
        source.add_argument(
            "--answers",
            metavar="FILE",
            help="answers CSV with a condition column: two conditions compared "
            "by top-1 accuracy, the first in the file the reference",
        )
        source.add_argument(
            "--study", metavar="SLUG", help="slug of a study in the database (as --answers)"
        )
        source.add_argument(
            "--conditions",
            metavar="A,B",
            help="the two conditions to compare, A the reference (needed when "
            "the answers have more than two)",
        )
        for name, meaning in COMPONENT_HELP.items():
            flags = [f"--{name.replace('_', '-')}"] + (["--var-error"] if name == "var" else [])
            source.add_argument(*flags, dest=name, type=float, metavar="X", help=meaning)
        source.add_argument(
            "--cases-in-pilot",
            type=int,
            metavar="K",
            help="K*, the pilot's number of cases (with the components)",
        )
        plan = parser.add_argument_group("the planned study")
        plan.add_argument(
            "--effect",
            type=float,
            metavar="D",
            help="difference of figures of merit to detect (default: "
            "the pilot's observed difference)",
        )
        plan.add_argument(
            "--readers",
            default="4,6,8,10",
            metavar="J,J,...",
            help="numbers of readers, comma-separated (default 4,6,8,10)",
        )
        size = plan.add_mutually_exclusive_group()
        size.add_argument(
            "--cases",
            metavar="K,K,...",
            help="numbers of cases, comma-separated: print the power of each",
        )
        size.add_argument(
            "--target-power",
            type=float,
            metavar="P",
            help="print the smallest number of cases that "
            "reaches this power (the default, 0.8, when --cases is not given)",
        )
        plan.add_argument(
            "--alpha",
            type=float,
            default=0.05,
            metavar="A",
            help="significance level (default 0.05)",
        )
        plan.add_argument(
            "--analysis",
            default="RRRC",
            metavar="NAME",
            help="RRRC (random readers and cases, the default), FRRC (fixed readers), RRFC "
            "(fixed cases) or all",
        )
        plan.add_argument(
            "--max-cases",
            type=int,
            default=MAX_CASES,
            metavar="K",
            help="largest number of cases "
            f"searched for --target-power (default {MAX_CASES}, as RJafroc)",
        )
        parser.add_argument("--format", choices=["table", "csv", "json"], default="table")

    def handle(self, *args, **options):
        analyses = _analyses(options["analysis"])
        readers = _int_list(options["readers"], "--readers")
        cases = _int_list(options["cases"], "--cases") if options["cases"] else None
        target = None if cases else options["target_power"]
        if cases is None and target is None:
            target = 0.8
        try:
            pilot = self._pilot(options)
            effect = options["effect"]
            if effect is None:
                effect = pilot.components.effect_size
                if not np.isfinite(effect):
                    raise CommandError(
                        "give --effect: the variance components carry no observed difference"
                    )
            rows = _power_rows(
                pilot.components,
                analyses=analyses,
                readers=readers,
                cases=cases,
                target=target,
                effect=effect,
                alpha=options["alpha"],
                max_cases=options["max_cases"],
            )
        except InputError as exc:
            raise CommandError(str(exc)) from exc
        table = pd.DataFrame(rows, columns=[*COLUMNS, "power"])
        table["cases"] = table["cases"].astype("Int64")  # None where the target is not reached
        fmt = options["format"]
        if fmt == "csv":
            self.stdout.write(table.to_csv(index=False, lineterminator="\n"), ending="")
        elif fmt == "json":
            payload = {
                "method": METHOD,
                "analyses": analyses,
                "alpha": options["alpha"],
                "target_power": target,
                "max_cases": None if target is None else options["max_cases"],
                "effect": effect,
                "pilot": {
                    "source": pilot.source,
                    "figure_of_merit": pilot.figure_of_merit,
                    "readers": pilot.readers,
                    "treatments": list(pilot.treatments) if pilot.treatments else None,
                    "note": pilot.note,
                },
                "components": pilot.components.to_dict(),
                "rows": [{k: _json_value(v) for k, v in r.items()} for r in rows],
            }
            self.stdout.write(json.dumps(payload, indent=2, allow_nan=False))
        else:
            header = self._header(pilot, analyses, effect, options["alpha"], target, options)
            body = self._table(table, target, analyses, options["max_cases"])
            self.stdout.write("\n".join([*header, "", body]))

    def _pilot(self, options) -> Pilot:
        given = {name: options[name] for name in COMPONENTS}
        files = [o for o in ("ratings", "answers", "study") if options[o]]
        by_hand = any(v is not None for v in given.values()) or options["cases_in_pilot"]
        if len(files) + bool(by_hand) != 1:
            raise CommandError(
                "give one pilot: --ratings FILE, --answers FILE, --study SLUG, or the variance "
                "components (--var-r --var-tr --cov1 --cov2 --cov3 --var --cases-in-pilot)"
            )
        if options["conditions"] and not (options["answers"] or options["study"]):
            raise CommandError("--conditions applies to --answers or --study only")
        conditions = None
        if options["conditions"]:
            conditions = [c.strip() for c in options["conditions"].split(",") if c.strip()]
            if len(conditions) != 2 or conditions[0] == conditions[1]:
                raise CommandError(
                    f"--conditions must name two different conditions, got "
                    f"{options['conditions']!r}"
                )
        if options["ratings"]:
            return _ratings_pilot(options["ratings"])
        if options["answers"]:
            path = options["answers"]
            text = dict.fromkeys((*ANSWER_COLUMNS, CONDITION_COLUMN), str)
            try:
                frame = pd.read_csv(path, dtype=text)
            except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
                raise CommandError(f"cannot read the answers table {path}: {exc}") from exc
            return _answers_pilot(frame, f"answers {path}", conditions)
        if options["study"]:
            from cases.models import Study
            from cases.selectors import answers_frame

            study = Study.objects.filter(slug=options["study"]).first()
            if study is None:
                raise CommandError(f"no study with slug {options['study']!r}")
            frame = answers_frame(study=study)
            if frame.empty:
                raise CommandError(f"study {study.slug!r} has no answers")
            return _answers_pilot(frame, f"study {study.slug}", conditions)
        missing = [f"--{n.replace('_', '-')}" for n, v in given.items() if v is None]
        if options["cases_in_pilot"] is None:
            missing.append("--cases-in-pilot")
        if missing:
            raise CommandError(f"variance components: missing {', '.join(missing)}")
        if options["cases_in_pilot"] < 2:
            raise CommandError("--cases-in-pilot must be at least 2")
        components = ORVarianceComponents(**given, cases=options["cases_in_pilot"])
        return Pilot(components, "variance components given on the command line")

    def _header(self, pilot, analyses, effect, alpha, target, options) -> list[str]:
        c = pilot.components
        which = "; ".join(f"{ANALYSIS_NAMES[a]} ({a.upper()})" for a in analyses)
        lines = [METHOD, f"Analysis: {which}; alpha {alpha:g}"]
        pilot_line = f"Pilot: {pilot.source}; "
        if pilot.figure_of_merit:
            pilot_line += f"figure of merit {pilot.figure_of_merit}; "
        if pilot.readers is not None:
            pilot_line += f"{pilot.readers} readers, "
        lines.append(pilot_line + f"K* = {c.cases} cases")
        lines.append(
            "Variance components: " + ", ".join(f"{n} {getattr(c, n):.8f}" for n in COMPONENTS)
        )
        if pilot.note:
            lines.append(f"Note: {pilot.note}")
        observed = c.effect_size
        diff = f" ({pilot.treatments[0]} - {pilot.treatments[1]})" if pilot.treatments else ""
        if options["effect"] is None:
            lines.append(f"Effect: {effect:.5f}, the pilot's observed difference{diff}")
        elif np.isfinite(observed):
            lines.append(f"Effect: {effect:.5f} (given; the pilot observed {observed:.5f}{diff})")
        else:
            lines.append(f"Effect: {effect:.5f} (given)")
        if target is not None:
            lines.append(
                f"Smallest number of cases with power >= {target:g} for each number of "
                f"readers (searched up to {options['max_cases']} cases)"
            )
        return lines

    def _table(self, table: pd.DataFrame, target, analyses, max_cases: int) -> str:
        shown = pd.DataFrame({"analysis": table["analysis"].str.upper()})
        unreached = "-" if target is None else f">{max_cases}"
        shown["readers"] = table["readers"]
        shown["cases"] = [unreached if pd.isna(k) else str(int(k)) for k in table["cases"]]
        shown["effect"] = [_fmt(v, ".5f") for v in table["effect"]]
        shown["df"] = [_fmt(v, ".2f") for v in table["df2"]]  # FRRC: inf (chi-square)
        shown["ncp"] = [_fmt(v, ".4f") for v in table["ncp"]]
        shown["power"] = [_fmt(v, ".8f") for v in table["power"]]
        columns = ["readers", "cases", "effect", "df", "ncp", "power"]
        if len(analyses) > 1:
            columns.insert(0, "analysis")
        return shown[columns].to_string(index=False)
