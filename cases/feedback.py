"""Results on a finished reader's feedback page, without importing inference.

``cases`` must not import ``inference`` (data flows one way), so the inference app
registers a provider here at start-up. The provider is called only after the reader
has finished and only for studies that show model feedback.

A web page imports this module: the confidence interval is computed here with the
standard library, not with statsmodels (which loads only where a report is computed).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from statistics import NormalDist

from django.utils.translation import gettext as _

from cases.models import Study

ModelFeedback = Callable[[Study, str], list[dict]]
_providers: list[ModelFeedback] = []


def register_model_feedback(provider: ModelFeedback) -> ModelFeedback:
    if provider not in _providers:
        _providers.append(provider)
    return provider


def model_feedback(*, study: Study, language: str) -> list[dict]:
    """Each registered provider's rows: ``name``, ``trained``, ``accuracy``, ``per_class``."""
    rows: list[dict] = []
    for provider in _providers:
        rows.extend(provider(study, language))
    return rows


def wilson_interval(successes: int, n: int, *, confidence: float = 0.95) -> tuple[float, float]:
    """The Wilson score interval of a binomial proportion ``successes / n``, as fractions.

    With z the standard normal quantile at 1 - (1 - confidence) / 2 and p = successes / n:

        centre    = (p + z^2 / (2n)) / (1 + z^2 / n)
        half-width = z * sqrt(p (1 - p) / n + z^2 / (4 n^2)) / (1 + z^2 / n)

    clipped to [0, 1] (Wilson, J. Am. Stat. Assoc. 1927; method 3 of Newcombe, Stat.
    Med. 1998). It reproduces ``statsmodels.stats.proportion.proportion_confint(
    successes, n, alpha=1 - confidence, method="wilson")``. Unlike the normal (Wald)
    interval it stays inside [0, 1] and is not empty at 0 or n successes.
    """
    if n <= 0:
        raise ValueError(f"a proportion needs at least one trial, not n={n}")
    if not 0 <= successes <= n:
        raise ValueError(f"successes must lie in 0..{n}, not {successes}")
    z = NormalDist().inv_cdf(1 - (1 - confidence) / 2)
    p = successes / n
    denominator = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    return max(0.0, centre - half), min(1.0, centre + half)


DASH = "\N{EN DASH}"  # between an interval's bounds, and for a value that has none


def format_percent(fraction: float) -> str:
    """``fraction`` as a percentage with one decimal: 0.195 -> "19.5%"."""
    return f"{100 * fraction:.1f}%"


@dataclass(frozen=True)
class Proportion:
    """``correct`` of ``total`` cases, with its Wilson 95% confidence interval. The
    estimate and interval are None where ``total`` is 0."""

    correct: int
    total: int

    @property
    def estimate(self) -> float | None:
        return self.correct / self.total if self.total else None

    @property
    def interval(self) -> tuple[float, float] | None:
        return wilson_interval(self.correct, self.total) if self.total else None

    @property
    def percent(self) -> str:
        """The estimate, e.g. "19.5%"; a dash without cases."""
        return DASH if self.estimate is None else format_percent(self.estimate)

    @property
    def interval_text(self) -> str:
        """The interval, e.g. "14.6-25.5%" (with an en dash); "" without cases."""
        if self.interval is None:
            return ""
        low, high = self.interval
        return f"{100 * low:.1f}{DASH}{format_percent(high)}"

    @property
    def text(self) -> str:
        """The estimate with its interval, e.g. "19.5% (95% CI 14.6-25.5%)" (with an
        en dash)."""
        if self.interval is None:
            return self.percent
        return _("%(estimate)s (95%% CI %(interval)s)") % {
            "estimate": self.percent,
            "interval": self.interval_text,
        }

    @property
    def short_text(self) -> str:
        """The estimate with its interval for a table cell under a "(95% CI)" heading,
        e.g. "19.5% (14.6-25.5%)" (with an en dash)."""
        if self.interval is None:
            return self.percent
        return f"{self.percent} ({self.interval_text})"


def accuracy_summary(pairs, *, order: list[str], language: str) -> dict:
    """Accuracy overall and per true class from ``(truth Diagnosis, correct)`` pairs.

    Returns ``correct``, ``total``, ``accuracy`` (None without pairs) and ``per_class``
    rows (``code, name, cases, correct, accuracy``; the accuracy of a class is its
    sensitivity, one-vs-rest), in ``order`` first, then any other class alphabetically.
    """
    per_class: dict[str, dict] = {}
    for truth, is_correct in pairs:
        row = per_class.setdefault(
            truth.code,
            {"code": truth.code, "name": truth.name_for(language), "cases": 0, "correct": 0},
        )
        row["cases"] += 1
        row["correct"] += int(is_correct)
    rows = [per_class[c] for c in order if c in per_class]
    rows += [row for code, row in sorted(per_class.items()) if code not in order]
    for row in rows:
        row["accuracy"] = row["correct"] / row["cases"]
    correct = sum(row["correct"] for row in rows)
    total = sum(row["cases"] for row in rows)
    return {
        "correct": correct,
        "total": total,
        "accuracy": correct / total if total else None,
        "per_class": rows,
    }


# --- the done page's shapes --------------------------------------------------------------


@dataclass(frozen=True)
class ModelResult:
    """A CNN's result on the study, for a finished reader: its accuracy over the cases
    it has predicted so far (``predicted`` of ``study_cases``)."""

    name: str
    trained: bool
    overall: Proportion
    predicted: int
    study_cases: int

    @property
    def in_progress(self) -> bool:
        return self.predicted < self.study_cases


@dataclass(frozen=True)
class FeedbackRow:
    """One diagnosis of the done page's table: the reader's correct answers among the
    study's ``cases`` of it, their sensitivity, and each CNN's (None where a CNN has no
    prediction for a case of it yet), in the order of ``ReaderFeedback.models``."""

    code: str
    name: str
    cases: int
    correct: int
    reader: Proportion
    models: tuple[Proportion | None, ...]


@dataclass(frozen=True)
class ReaderFeedback:
    """What a finished reader is shown: their accuracy, one row per diagnosis, and the
    CNNs' results where the study shows them (``models`` empty otherwise)."""

    overall: Proportion
    rows: list[FeedbackRow]
    models: list[ModelResult]
    # A study of several reading conditions: the reader's results in each, by the
    # condition's label (each without the CNNs, which ``models`` has once).
    by_condition: list[tuple[str, ReaderFeedback]] = field(default_factory=list)


def reader_feedback_build(*, reader: dict, models: list[dict]) -> ReaderFeedback:
    """The done page's :class:`ReaderFeedback` from the reader's ``accuracy_summary``
    and the model providers' rows (``model_feedback``). The rows are the reader's
    diagnoses, in the summary's order."""
    per_model = [{row["code"]: row for row in model["per_class"]} for model in models]
    rows = [
        FeedbackRow(
            code=row["code"],
            name=row["name"],
            cases=row["cases"],
            correct=row["correct"],
            reader=Proportion(row["correct"], row["cases"]),
            models=tuple(
                Proportion(by_code[row["code"]]["correct"], by_code[row["code"]]["cases"])
                if row["code"] in by_code
                else None
                for by_code in per_model
            ),
        )
        for row in reader["per_class"]
    ]
    return ReaderFeedback(
        overall=Proportion(reader["correct"], reader["total"]),
        rows=rows,
        models=[
            ModelResult(
                name=model["name"],
                trained=bool(model["trained"]),
                overall=Proportion(model["correct"], model["total"]),
                predicted=model.get("predicted", model["total"]),
                study_cases=model.get("study_cases", model["total"]),
            )
            for model in models
        ],
    )
