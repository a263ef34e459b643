from django.db import connection
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.views.decorators.cache import never_cache

from cases.selectors import enrolments_for_reader, is_study_staff, studies_for_user


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
