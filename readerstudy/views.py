from django.db import connection
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.views.decorators.cache import never_cache

from cases.selectors import studies_for_user


def home(request: HttpRequest) -> HttpResponse:
    """The landing page: the studies the user may see, or a login prompt."""
    studies = studies_for_user(user=request.user) if request.user.is_authenticated else []
    return render(request, "home.html", {"studies": studies})


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
