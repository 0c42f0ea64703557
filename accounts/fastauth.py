"""Sessions and users loaded with plain SQL: the same rows, without the ORM's per-call cost.

OHIF makes hundreds of /pacs requests per study and each one loads its
session and its user. Building those two queries through the ORM cost about
0.7 ms of CPU per request on our 2-core machines, against 0.1 ms for the
same SELECTs sent as written (cProfile and py-spy, docs/performance.md). Nothing
is cached: logout, deactivation and password changes take effect on the next
request, exactly as with Django's own classes, which these extend.
"""

from __future__ import annotations

from typing import Any, cast

from django.contrib.auth import backends, get_user_model
from django.contrib.auth.models import User
from django.contrib.sessions.backends import db
from django.contrib.sessions.base_session import AbstractBaseSession
from django.db import connections, router
from django.utils import timezone


class SessionStore(db.SessionStore):
    """Django's database sessions; only the load is a hand-written SELECT."""

    def _get_session_from_db(self) -> AbstractBaseSession | None:
        session_key = self.session_key
        if session_key is None:  # never asked: Django loads only a session it has a key for
            return None
        model = self.model
        connection = connections[router.db_for_read(model)]
        quote = connection.ops.quote_name
        # Identifiers come from the model, quoted; every value is a parameter.
        table, data, key, expiry = (
            quote(name) for name in (model._meta.db_table, "session_data", "session_key", "expire_date")
        )
        sql = f"SELECT {data} FROM {table} WHERE {key} = %s AND {expiry} > %s"  # noqa: S608
        now = connection.ops.adapt_datetimefield_value(timezone.now())
        with connection.cursor() as cursor:
            cursor.execute(sql, [session_key, now])
            row = cursor.fetchone()
        if row is None:
            self._session_key = None
            return None
        return model(session_key=session_key, session_data=row[0])


class ModelBackend(backends.ModelBackend):
    """Django's ModelBackend; only get_user, run for every session request, is a raw SELECT."""

    def get_user(self, user_id: Any) -> User | None:
        user_model = get_user_model()
        quote = connections[router.db_for_read(user_model)].ops.quote_name
        # A concrete field always has a column (the stubs allow None for the others).
        table, pk = quote(user_model._meta.db_table), quote(cast(str, user_model._meta.pk.column))
        sql = f"SELECT * FROM {table} WHERE {pk} = %s"  # noqa: S608
        found = list(user_model._default_manager.raw(sql, [user_id]))
        if not found:
            return None
        return found[0] if self.user_can_authenticate(found[0]) else None
