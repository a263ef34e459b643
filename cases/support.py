"""The CNN's support on a reader's screen, without importing inference.

``cases`` must not import ``inference`` (data flows one way), so the inference app
registers the one source of a prediction here at start-up
(``inference.selectors.support_prediction``). The reader side asks it only for a read
whose condition shows the CNN's support, once the reader is at that read
(``cases.selectors.case_screen``, ``cases.selectors.support_gradcam_for_reader``): in a
sequential study, only after the case's unaided answer is stored.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from django.db.models.fields.files import FieldFile


@dataclass(frozen=True)
class SupportPrediction:
    """What a model said about a case, as far as a reader may be shown it: its
    predicted class among the study's choices (``choice``, a code), its probabilities
    renormalised over the choices (``probabilities``, code -> p) and its Grad-CAM overlay
    (``gradcam``, None where it has none)."""

    choice: str
    probabilities: dict[str, float]
    gradcam: FieldFile | None


# (model pk, case pks) -> {case pk: what the model said}, for the cases it has a
# successful prediction for.
SupportSource = Callable[[int, Iterable[int]], dict[int, SupportPrediction]]
_sources: list[SupportSource] = []


def register_support_source(source: SupportSource) -> SupportSource:
    if source not in _sources:
        _sources[:] = [source]
    return source


def support_predictions(*, model_id: int, case_ids: Iterable[int]) -> dict[int, SupportPrediction]:
    """The successful predictions of ``model_id`` on ``case_ids``, by case (one query;
    empty where no source is registered)."""
    return _sources[0](model_id, case_ids) if _sources else {}


def support_prediction(*, model_id: int, case_id: int) -> SupportPrediction | None:
    """The successful prediction of ``model_id`` on ``case_id``, or None."""
    return support_predictions(model_id=model_id, case_ids=[case_id]).get(case_id)
