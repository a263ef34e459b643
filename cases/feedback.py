"""Model results for a finished reader's feedback page, without importing inference.

``cases`` must not import ``inference`` (data flows one way), so the inference app
registers a provider here at start-up. The provider is called only after the reader
has finished and only for studies that show model feedback.
"""

from __future__ import annotations

from collections.abc import Callable

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


def accuracy_summary(pairs, *, order: list[str], language: str) -> dict:
    """Accuracy overall and per true class from ``(truth Diagnosis, correct)`` pairs.

    Returns ``correct``, ``total``, ``accuracy`` (None without pairs) and ``per_class``
    rows (``code, name, cases, correct, accuracy``), in ``order`` first, then any other
    class alphabetically.
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
