"""Ending a user's sessions on the server (database session backend)."""

from __future__ import annotations

from django.contrib.sessions.models import Session
from django.utils import timezone


def end_sessions_of(user) -> int:
    """Delete every unexpired session that belongs to ``user``; returns how many.

    Sessions are signed blobs without a user column, so each live one is decoded; an
    admin deactivating an account is rare enough for that to be fine.
    """
    ended = 0
    for session in Session.objects.filter(expire_date__gt=timezone.now()).iterator():
        if str(session.get_decoded().get("_auth_user_id")) == str(user.pk):
            session.delete()
            ended += 1
    return ended
