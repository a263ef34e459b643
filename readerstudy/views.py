"""Project-wide views: home, health check and the server error handler."""

import logging
import sys

from django.db import InterfaceError, OperationalError, connection
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.template import loader
from django.templatetags.static import static
from django.views.decorators.cache import cache_control, never_cache
from django.views.decorators.http import require_safe

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
