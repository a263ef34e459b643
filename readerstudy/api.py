"""Project-wide pieces of the REST API: one error shape for every 4xx, and its schema.

Every error under ``/api/`` answers ``{"detail", "code", "field"}``: ``detail`` one
readable message in the request's language, ``code`` a stable machine-readable reason,
``field`` the input at fault (None where the request as a whole is refused). A
validation error also carries ``errors``, every message by field. The shape is
documented by ``cases.api.ErrorOut``.
"""

from __future__ import annotations

from collections.abc import Iterator

from django.core.exceptions import PermissionDenied
from django.http import Http404
from rest_framework import exceptions
from rest_framework.response import Response
from rest_framework.settings import api_settings
from rest_framework.views import exception_handler as drf_exception_handler
from rest_framework.views import set_rollback

from readerstudy.errors import ServiceError


def _messages(detail, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], str]]:
    """Each message in DRF's error detail (a string, or lists and dicts of them for a
    serializer's errors) with the path of keys and list positions that leads to it."""
    if isinstance(detail, dict):
        for key, value in detail.items():
            yield from _messages(value, (*path, str(key)))
    elif isinstance(detail, list):
        for index, item in enumerate(detail):
            yield from _messages(item, path if isinstance(item, str) else (*path, str(index)))
    else:
        yield path, detail


def _field(path: tuple[str, ...]) -> str | None:
    """``"confidence"``, ``"items.0.name"`` for a nested one; None for the whole body."""
    if path and path[-1] == api_settings.NON_FIELD_ERRORS_KEY:
        path = path[:-1]
    return ".".join(path) or None


def error_body(exc: exceptions.APIException) -> dict:
    """``{"detail", "code", "field"}`` for DRF's exception, from its first message; a
    field's message is prefixed with the field's name, so it reads on its own. With any
    field at fault, ``errors`` maps each such field to its messages."""
    messages = list(_messages(exc.detail)) or [((), exc.default_detail)]
    path, first = messages[0]
    field = _field(path)
    body = {
        "detail": f"{field}: {first}" if field else str(first),
        "code": getattr(first, "code", None) or exc.default_code,
        "field": field,
    }
    errors: dict[str, list[str]] = {}
    for message_path, message in messages:
        if (name := _field(message_path)) is not None:
            errors.setdefault(name, []).append(str(message))
    if errors:
        body["errors"] = errors
    return body


def exception_handler(exc, context):
    """DRF's handler (status, headers such as ``Allow`` and ``Retry-After``, rollback)
    with every error reshaped to ``{"detail", "code", "field"}``. A service's refusal
    (``ServiceError``) answers with its own message, code, status and field, so no API
    view catches it by hand. Django's ``Http404`` and ``PermissionDenied`` answer with
    DRF's translated defaults: "No Study matches the given query." names a model and is
    not translated."""
    if isinstance(exc, ServiceError):
        set_rollback()
        return Response(
            {"detail": str(exc), "code": exc.code, "field": exc.field}, status=exc.status
        )
    if isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, PermissionDenied):
        exc = exceptions.PermissionDenied()
    response = drf_exception_handler(exc, context)
    if response is not None and isinstance(exc, exceptions.APIException):
        response.data = error_body(exc)
    return response


def error_responses(result: dict, generator, request, public) -> dict:
    """drf-spectacular postprocessing hook: every operation documents the errors any
    view can answer, as ``ErrorOut``, unless it declares them itself: 403 (not logged
    in, not staff, CSRF) and 405 everywhere, 404 where the path names an object, 400
    where the operation takes a body."""
    descriptions = {
        "400": "Invalid input: code names the check, field the input at fault.",
        "403": "Not logged in (not_authenticated), not allowed (permission_denied), or "
        "the CSRF check failed.",
        "404": "No such object, or one this user may not see (not_found).",
        "405": "Method not allowed (method_not_allowed).",
    }
    for path, operations in result.get("paths", {}).items():
        for operation in operations.values():
            codes = ["403", "405"]
            if "{" in path:
                codes.append("404")
            if "requestBody" in operation:
                codes.append("400")
            responses = operation.setdefault("responses", {})
            for code in codes:
                responses.setdefault(
                    code,
                    {
                        "content": {
                            "application/json": {
                                "schema": {"$ref": "#/components/schemas/ErrorOut"}
                            }
                        },
                        "description": descriptions[code],
                    },
                )
    return result
