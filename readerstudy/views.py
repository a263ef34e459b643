"""Project-wide views: home, health check and the server error handler."""

import logging
import sys

from django.db import InterfaceError, OperationalError, connection
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.template import loader
from django.views.decorators.cache import never_cache

from cases.selectors import enrolments_for_reader, is_study_staff, studies_for_user

logger = logging.getLogger(__name__)

DATABASE_ERRORS = (OperationalError, InterfaceError)
DATABASE_DOWN = (
    "The database is unavailable (restarting or unreachable). Each write is saved whole or "
    "not at all: check the state and repeat the request in a minute."
)


def home(request: HttpRequest) -> HttpResponse:
    """The landing page: a reader's enrolments, an admin's studies, or a login prompt."""
    context = {"studies": [], "enrolments": []}
    if is_study_staff(request.user):
        context["studies"] = studies_for_user(user=request.user)
    if request.user.is_authenticated:
        context["enrolments"] = enrolments_for_reader(user=request.user)
    return render(request, "home.html", context)


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
