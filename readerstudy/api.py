"""Project-wide pieces of the REST API."""

from __future__ import annotations

from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler
from rest_framework.views import set_rollback

from readerstudy.errors import ServiceError


def exception_handler(exc, context):
    """DRF's handler, plus: a service's refusal (``ServiceError``) becomes
    ``{"detail": message, "code": code}`` with the error's HTTP status, so no API view
    catches it by hand."""
    if isinstance(exc, ServiceError):
        set_rollback()
        return Response({"detail": str(exc), "code": exc.code}, status=exc.status)
    return drf_exception_handler(exc, context)
