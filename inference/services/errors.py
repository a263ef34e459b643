"""The inference services' one refusal."""

from __future__ import annotations


class InferenceError(ValueError):
    """A model cannot be registered or run as asked; the message says why."""
