"""Where a request comes from, set once for everything the audit trail logs during it.

:class:`AuditOriginMiddleware` puts the request's client address and user agent in a
context variable for as long as the request is handled; :func:`audit.services.audit_log`
reads it, so no view or service passes them on. Celery tasks and management commands
handle no request: their events carry no address (except a task run eagerly inside a
request, CELERY_TASK_ALWAYS_EAGER, which the request started: it carries the request's
origin, and that is who caused it). The variable is reset when the
response is returned (or the request fails), so a thread that serves the next request,
or a task run in it, never sees a stale origin.
"""

from __future__ import annotations

import ipaddress
from contextvars import ContextVar
from dataclasses import dataclass

from django.conf import settings


@dataclass(frozen=True)
class Origin:
    """The client of one request: its address (None where unknown) and user agent."""

    ip: str | None
    user_agent: str


_origin: ContextVar[Origin | None] = ContextVar("audit_origin", default=None)


def current_origin() -> Origin | None:
    """The origin of the request being handled; None outside a request."""
    return _origin.get()


def _valid_ip(value: str) -> str | None:
    try:
        return str(ipaddress.ip_address(value.strip()))
    except ValueError:
        return None


def client_address(request) -> str | None:
    """The client's address: REMOTE_ADDR, or, behind the trusted reverse proxy
    (``READERSTUDY_CLIENT_ADDRESS_FROM_PROXY``), the last address of X-Forwarded-For,
    the one that proxy appended; the addresses before it are whatever the client sent.
    None where the value is not an IP address (a Unix socket, a malformed header)."""
    if settings.READERSTUDY_CLIENT_ADDRESS_FROM_PROXY:
        forwarded = request.META.get("HTTP_X_FORWARDED_FOR", "")
        if forwarded.strip():
            return _valid_ip(forwarded.rsplit(",", 1)[-1])
    return _valid_ip(request.META.get("REMOTE_ADDR", ""))


class AuditOriginMiddleware:
    """Sets :func:`current_origin` for the whole request, the other middleware
    included (it comes first in ``MIDDLEWARE``); not for the body of a streaming
    response, which is produced after it returns (no audited action streams)."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        origin = Origin(
            ip=client_address(request), user_agent=request.META.get("HTTP_USER_AGENT", "")
        )
        token = _origin.set(origin)
        try:
            return self.get_response(request)
        finally:
            _origin.reset(token)
