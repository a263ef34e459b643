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
