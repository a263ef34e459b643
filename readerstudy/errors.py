"""The application error that services raise when they refuse a request.

A service says why it refuses (the message, safe to show, in the user's language), a
stable machine-readable ``code``, the HTTP ``status`` that answers it and, where one
input is at fault, that ``field``. The API turns it into ``{"detail", "code", "field"}``
in one place (``readerstudy.api.exception_handler``); an HTML view shows the message on
its page.
"""

from __future__ import annotations


class ServiceError(ValueError):
    """A refusal by a service. ``code`` is a stable reason, ``status`` the HTTP status,
    ``field`` the input at fault (None where the request as a whole is refused)."""

    def __init__(
        self, message: str, *, code: str, status: int = 409, field: str | None = None
    ) -> None:
        super().__init__(message)
        self.code = code
        self.status = status
        self.field = field
