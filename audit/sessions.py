"""Sessions: the session engine where a cache is configured, and ending a user's
sessions on the server.

``SessionStore`` is Django's cached_db store (``SESSION_ENGINE = "audit.sessions"``; the
cache is ``SESSION_CACHE_ALIAS``, see the settings): each request reads its session from
the cache, and every session is kept in the database too, so it outlives a cache that
restarts or loses its data. Unlike Django's own, a cache that cannot be reached does
not fail the request that reads or creates a session: that falls back to the database
(readers keep answering while Redis is down). Deleting a session (logging out, a new
key at login) removes it from the cache first and fails, deleting nothing, while the
cache cannot be reached, so that no deleted session is left behind in it.
"""

from __future__ import annotations

import logging
from importlib import import_module

from django.conf import settings
from django.contrib.sessions.backends import cached_db
from django.contrib.sessions.models import Session
from django.utils import timezone

logger = logging.getLogger(__name__)


class SessionStore(cached_db.SessionStore):
    def load(self):
        try:
            data = self._cache.get(self.cache_key)
        except Exception as error:  # unreachable: the database has every session
            logger.warning("session cache unreachable, reading the database: %s", error)
            return self._load_from_database(cache=False)
        return self._load_from_database(cache=True) if data is None else data

    def _load_from_database(self, *, cache: bool) -> dict:
        stored = self._get_session_from_db()
        if stored is None:
            return {}
        data = self.decode(stored.session_data)
        if cache:
            try:
                self._cache.set(
                    self.cache_key, data, self.get_expiry_age(expiry=stored.expire_date)
                )
            except Exception as error:
                logger.warning("session cache unreachable, not caching: %s", error)
        return data

    def exists(self, session_key):
        try:
            if session_key and (self.cache_key_prefix + session_key) in self._cache:
                return True
        except Exception as error:
            logger.warning("session cache unreachable, checking the database: %s", error)
        return super(cached_db.SessionStore, self).exists(session_key)

    def delete(self, session_key=None):
        session_key = self.session_key if session_key is None else session_key
        if session_key is None:
            return
        self._cache.delete(self.cache_key_prefix + session_key)  # first: see above
        super(cached_db.SessionStore, self).delete(session_key)


def end_sessions_of(user) -> int:
    """Delete every unexpired session that belongs to ``user`` (from the database and
    from the session engine's cache, if it has one); returns how many.

    Sessions are signed blobs without a user column, so each live one is decoded; an
    admin deactivating an account is rare enough for that to be fine.
    """
    engine = import_module(settings.SESSION_ENGINE)
    ended = 0
    for session in Session.objects.filter(expire_date__gt=timezone.now()).iterator():
        if str(session.get_decoded().get("_auth_user_id")) == str(user.pk):
            engine.SessionStore(session_key=session.session_key).delete()
            ended += 1
    return ended
