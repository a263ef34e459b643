"""Idle and absolute session timeouts.

Django's session age alone is either an absolute lifetime or (saving the session on
every request) an idle timeout that costs a database write per request. This keeps
both: the login time and the last activity live in the session, and the session is
written at most once a minute to record activity.
"""

from __future__ import annotations

import time

from django.conf import settings
from django.contrib.auth import logout
from django.contrib.auth.signals import user_logged_in
from django.dispatch import receiver

LOGIN_AT = "_readerstudy_login_at"
SEEN_AT = "_readerstudy_seen_at"
SEEN_RESOLUTION = 60


@receiver(user_logged_in)
def _stamp_login(sender, request, user, **kwargs):
    if request is not None and hasattr(request, "session"):
        now = int(time.time())
        request.session[LOGIN_AT] = now
        request.session[SEEN_AT] = now


class SessionTimeoutMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        user = getattr(request, "user", None)
        if user is not None and user.is_authenticated:
            now = int(time.time())
            session = request.session
            login_at = session.get(LOGIN_AT, now)
            seen_at = session.get(SEEN_AT, now)
            if (
                now - seen_at > settings.READERSTUDY_SESSION_IDLE_SECONDS
                or now - login_at > settings.READERSTUDY_SESSION_ABSOLUTE_SECONDS
            ):
                logout(request)  # flushes the session on the server
            elif now - seen_at >= SEEN_RESOLUTION or LOGIN_AT not in session:
                session[SEEN_AT] = now
                session.setdefault(LOGIN_AT, login_at)
        return self.get_response(request)
