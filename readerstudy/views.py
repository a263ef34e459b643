"""Project-wide views: home, health check and the error handlers."""

import logging
import sys

from django.db import InterfaceError, OperationalError, connection
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.template import loader
from django.templatetags.static import static
from django.utils.translation import gettext as _
from django.views import defaults
from django.views.decorators.cache import cache_control, never_cache
from django.views.decorators.http import require_safe
from rest_framework.exceptions import NotFound

from cases.selectors import is_study_staff, reader_study_entries, studies_for_user

logger = logging.getLogger(__name__)

DATABASE_ERRORS = (OperationalError, InterfaceError)
DATABASE_DOWN = (
    "The database is unavailable (restarting or unreachable). Each write is saved whole or "
    "not at all: check the state and repeat the request in a minute."
)


def home(request: HttpRequest) -> HttpResponse:
    """The landing page: a reader's studies (each with where the reader is in it), an
    admin's studies, or a login prompt."""
    context = {"studies": [], "entries": []}
    if is_study_staff(request.user):
        context["studies"] = studies_for_user(user=request.user)
    if request.user.is_authenticated:
        context["entries"] = reader_study_entries(user=request.user)
    return render(request, "home.html", context)


@require_safe
@cache_control(max_age=86400, public=True)
def favicon(request: HttpRequest) -> HttpResponse:
    """``/favicon.ico``, which browsers ask for on their own: the SVG icon that every
    page links to (the static URL is looked up per request: it carries a hash in
    production)."""
    return redirect(static("favicon.svg"))


@never_cache
def health(request: HttpRequest) -> JsonResponse:
    """Liveness and database reachability, for load balancers and monitoring."""
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        database = "ok"
    except Exception:  # any database failure is reported, not raised
        database = "unavailable"
    status = 200 if database == "ok" else 503
    return JsonResponse(
        {"status": "ok" if status == 200 else "degraded", "database": database}, status=status
    )


def _api_error(detail: str, code: str, status: int) -> JsonResponse:
    """The API's error shape (``readerstudy.api.exception_handler``), for the errors
    Django answers before a DRF view runs."""
    return JsonResponse({"detail": detail, "code": code, "field": None}, status=status)


def bad_request(request: HttpRequest, exception: Exception) -> HttpResponse:
    """The 400 handler (a body with too many fields or too large, a forbidden host
    name): JSON under /api/, else Django's page."""
    if request.path.startswith("/api/"):
        return _api_error(_("Bad request"), "bad_request", 400)
    return defaults.bad_request(request, exception)


def page_not_found(request: HttpRequest, exception: Exception) -> HttpResponse:
    """The 404 handler: JSON under /api/ (an address no endpoint has), else the page."""
    if request.path.startswith("/api/"):
        return _api_error(str(NotFound.default_detail), NotFound.default_code, 404)
    return defaults.page_not_found(request, exception)


def server_error(request: HttpRequest) -> HttpResponse:
    """The 500 handler. A database error (the server restarting, a dropped connection)
    answers 503 with ``Retry-After`` and a page or JSON body saying so (each write is one
    transaction, so it is saved whole or not at all); any other error the generic 500
    page. Rendered without a context, so the page itself
    needs no database."""
    error = sys.exc_info()[1]
    status = 503 if isinstance(error, DATABASE_ERRORS) else 500
    if request.path.startswith("/api/"):
        detail = DATABASE_DOWN if status == 503 else "Server error; it has been logged."
        response = JsonResponse({"detail": detail}, status=status)
    else:
        body = loader.get_template(f"{status}.html").render()
        response = HttpResponse(body, status=status)
    if status == 503:
        response["Retry-After"] = "30"
        logger.warning("database unavailable: %s %s answered 503", request.method, request.path)
    return response
