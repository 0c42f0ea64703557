"""The audit trail: append-only rows for logins and for every access to patient data.

Modelled on django.contrib.admin's LogEntry: immutable fields, one write path
(`AuditEvent.objects.record`), newest first, indexes for the questions people
ask: who opened this study or patient, what did this user see.

Reads are recorded the way IHE ATNA records study access: one row per user,
credential, client address, patient, study and action per time bucket
(AUDIT_BUCKET_SECONDS), written before the first byte of that access is
served; the bucket's later requests are covered by it. A unique key makes the
database keep one row per bucket however many workers race to write it.
Refusals, writes, logins and audit views stay one row per event.
"""

from __future__ import annotations

import contextlib
import hashlib
import threading
import time
from collections.abc import Iterable, Sequence
from typing import Any, cast

from django.conf import settings
from django.db import DatabaseError, connections, models, router
from django.http import HttpRequest
from django.utils import timezone

from audit.groupcommit import GroupCommit, NotWritten
from core.clientip import client_ip
from core.ttlcache import TTLCache

USER_AGENT_LENGTH = 256
TEXT_FIELDS = (
    "username",
    "credential",
    "user_agent",
    "path",
    "query",
    "study_uid",
    "series_uid",
    "sop_uid",
    "patient_id",
    "detail",
)
PATH_LENGTH = 2048


class Action(models.TextChoices):
    LOGIN = "login", "login"
    LOGIN_FAILED = "login-failed", "failed login"
    LOGOUT = "logout", "logout"
    LOCKOUT = "lockout", "lockout"
    QUERY = "query", "query (QIDO-RS)"
    RETRIEVE = "retrieve", "retrieve (WADO)"
    STORE = "store", "store (STOW-RS)"
    ADMIN_READ = "admin-read", "PACS admin read"
    ADMIN_WRITE = "admin-write", "PACS admin write"
    AUDIT_VIEW = "audit-view", "audit log viewed"
    AUDIT_EXPORT = "audit-export", "audit log exported"
    AUDIT_PRUNE = "audit-prune", "audit log pruned"
    TOKEN_CREATED = "token-created", "access token created"
    TOKEN_REVOKED = "token-revoked", "access token revoked"
    SHARE_CREATED = "share-created", "shared link created"
    SHARE_OPENED = "share-opened", "shared link opened"
    SHARE_REVOKED = "share-revoked", "shared link revoked"


FROM_REQUEST: Any = object()
# SQLite takes one writer at a time. A worker's threads queue here rather than
# in SQLite's busy handler, which sleeps and retries: threads inserting at once
# cost more CPU per row without it (docs/departures.md).
_sqlite_writes = threading.Lock()
# Bucket keys this process has written (or found written), until their bucket
# ends: a viewer's hundreds of frame requests then cost a dictionary look-up.
_MAX_REMEMBERED_BUCKETS = 50_000
_written_buckets: TTLCache[bool] = TTLCache(_MAX_REMEMBERED_BUCKETS, lambda: settings.AUDIT_BUCKET_SECONDS)


def _write_bucketed(events: Sequence[AuditEvent]) -> None:
    # Rows in one order in every worker: two statements locking the same bucket keys and
    # summary lines (the trigger's) in opposite orders would deadlock.
    ordered = sorted(events, key=lambda event: (summary_key(event), event.bucket_key or ""))
    AuditEvent.objects.insert_rows(ordered, if_absent=True)


_bucketed_rows: GroupCommit[AuditEvent] = GroupCommit(
    _write_bucketed, lambda event: AuditEvent.objects.insert(event, if_absent=True)
)


class AuditEventManager(models.Manager["AuditEvent"]):
    def record(
        self,
        action: str,
        *,
        request: HttpRequest | None = None,
        user: Any = FROM_REQUEST,
        username: str = "",
        credential: str = "",
        status: int | None = None,
        success: bool = True,
        study_uid: str = "",
        series_uid: str = "",
        sop_uid: str = "",
        patient_id: str = "",
        stored_uids: Iterable[str] = (),
        detail: str = "",
        bucketed: bool = False,
        path: str | None = None,
        query: str | None = None,
        method: str | None = None,
        client: str | None = None,
        user_agent: str | None = None,
    ) -> AuditEvent | None:
        """The only way audit rows are written. Raises if the row cannot be stored.

        `user` defaults to the request's user; pass None for events with no
        authenticated user (a failed login names its username instead). A
        `bucketed` read returns None when this bucket's row already exists.
        `path`, `query`, `method`, `client` and `user_agent` replace the request's:
        the proxy passes what its doors read once, and no request.
        """
        if request is not None:
            client = client_ip(request) if client is None else client
            user_agent = request.META.get("HTTP_USER_AGENT", "") if user_agent is None else user_agent
            method = method or request.method
            path = request.path if path is None else path
            query = request.META.get("QUERY_STRING", "") if query is None else query
        if user is FROM_REQUEST:
            user = getattr(request, "user", None)
        if user is not None and not user.is_authenticated:
            user = None
        event = self.model(
            action=action,
            user=user,
            username=(user.get_username() if user is not None else username)[:150],
            credential=credential[:64],
            client_ip=client,
            user_agent=(user_agent or "")[:USER_AGENT_LENGTH],
            method=(method or "")[:10],
            path=(path or "")[:PATH_LENGTH],
            query=(query or "")[:PATH_LENGTH],
            status=status,
            success=success,
            study_uid=study_uid[:64],
            series_uid=series_uid[:64],
            sop_uid=sop_uid[:64],
            patient_id=patient_id[:64],
            stored_uids=list(stored_uids),
            detail=detail[:1000],
        )
        for field in TEXT_FIELDS:
            # PostgreSQL refuses NUL in text; a hostile path must not cost its audit row.
            setattr(event, field, getattr(event, field).replace("\x00", "\ufffd"))
        if not bucketed:
            self.insert(event)
            return event
        event.bucket_key, bucket_end = bucket_key(event)
        if _written_buckets.get(event.bucket_key):
            return None
        self.insert_bucketed(event)
        _written_buckets.set(event.bucket_key, True, bucket_end - time.time())
        return event if event.pk is not None else None

    def insert(self, event: AuditEvent, if_absent: bool = False) -> None:
        """INSERT one row as written: the ORM's save() cost 0.4 ms of CPU per /pacs request."""
        self.insert_rows([event], if_absent)

    def insert_rows(self, events: Sequence[AuditEvent], if_absent: bool = False) -> None:
        """INSERT the rows in one statement, as written. A single event gets its pk when
        inserted; of several, each bucketed event inserted (the only kind written so).

        Values go through each field's own get_db_prep_save, so every database
        gets what save() would have sent it.
        """
        connection = connections[router.db_for_write(self.model)]
        quote = connection.ops.quote_name
        fields = [field for field in self.model._meta.concrete_fields if not field.primary_key]
        # Identifiers come from the model, quoted; every value is a parameter. A concrete
        # field always has a column (the stubs allow None for the others).
        table, pk = quote(self.model._meta.db_table), quote(cast(str, self.model._meta.pk.column))
        columns = ", ".join(quote(cast(str, field.column)) for field in fields)
        row = f"({', '.join(['%s'] * len(fields))})"
        # A bucketed read whose row another request or worker already wrote adds nothing.
        key = quote("bucket_key")
        conflict = f" ON CONFLICT ({key}) DO NOTHING" if if_absent else ""
        sql = (
            f"INSERT INTO {table} ({columns}) VALUES {', '.join([row] * len(events))}{conflict}"  # noqa: S608
            f" RETURNING {pk}, {key}"
        )
        values = [
            field.get_db_prep_save(field.pre_save(event, add=True), connection)
            for event in events
            for field in fields
        ]
        writes = _sqlite_writes if connection.vendor == "sqlite" else contextlib.nullcontext()
        with writes, connection.cursor() as cursor:
            cursor.execute(sql, values)
            written = cursor.fetchall()
        # RETURNING's order is not promised, but each bucketed row has its own key, and a
        # row without one is written alone.
        by_key = {bucket: pk_value for pk_value, bucket in written}
        if len(events) == 1 and written:
            by_key = {events[0].bucket_key: written[0][0]}
        for event in events:
            if (pk_value := by_key.pop(event.bucket_key, None)) is not None:
                event.pk = pk_value
                event._state.adding = False
                event._state.db = connection.alias

    def insert_bucketed(self, event: AuditEvent) -> None:
        """A bucketed read's row, written together with other threads' (audit.groupcommit)
        unless this thread is inside a transaction, which the others' rows must not join."""
        if connections[router.db_for_write(self.model)].in_atomic_block:
            self.insert_rows([event], if_absent=True)
            return
        try:
            _bucketed_rows.write(event)
        except NotWritten as error:  # refused as a failed write is (proxy/accesses.py)
            raise DatabaseError(str(error)) from error


def summary_key(event: AuditEvent) -> tuple[str, ...]:
    """The access summary's line for a row (audit/migrations/0006_access_summary.py)."""
    fields = (event.patient_id, event.study_uid, event.username, event.credential, event.client_ip)
    return (*(str(value or "") for value in fields), event.action)


def bucket_key(event: AuditEvent) -> tuple[str, float]:
    """The key of the read's time bucket, and when that bucket ends (epoch seconds)."""
    width = settings.AUDIT_BUCKET_SECONDS
    bucket = int(event.action_time.timestamp() // width)
    parts = (
        bucket,
        event.user_id,
        event.username,
        event.credential,
        event.client_ip,
        event.patient_id,
        event.study_uid,
        event.action,
    )
    digest = hashlib.sha256(repr(parts).encode()).hexdigest()
    return digest, float((bucket + 1) * width)


class AuditEvent(models.Model):
    action_time = models.DateTimeField("time (UTC)", default=timezone.now, editable=False)
    # PROTECT: a user who has audit events is deactivated, never deleted, so
    # "what did this user see" keeps its answer.
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, models.PROTECT, null=True, blank=True, editable=False, related_name="+"
    )
    username = models.CharField("username at the time", max_length=150, blank=True, editable=False)
    credential = models.CharField(
        "authenticated by",
        max_length=64,
        blank=True,
        default="",
        db_default="",
        editable=False,
        help_text="session, basic, ...",
    )
    client_ip = models.GenericIPAddressField("client address", null=True, blank=True, editable=False)
    user_agent = models.CharField(max_length=USER_AGENT_LENGTH, blank=True, editable=False)
    action = models.CharField(max_length=20, choices=Action.choices, editable=False)
    status = models.PositiveSmallIntegerField("HTTP status", null=True, blank=True, editable=False)
    success = models.BooleanField(editable=False)
    method = models.CharField(max_length=10, blank=True, editable=False)
    path = models.CharField(max_length=PATH_LENGTH, blank=True, editable=False)
    query = models.CharField("query string", max_length=PATH_LENGTH, blank=True, editable=False)
    study_uid = models.CharField("Study Instance UID", max_length=64, blank=True, editable=False)
    series_uid = models.CharField("Series Instance UID", max_length=64, blank=True, editable=False)
    sop_uid = models.CharField("SOP Instance UID", max_length=64, blank=True, editable=False)
    patient_id = models.CharField("Patient ID", max_length=64, blank=True, editable=False)
    stored_uids = models.JSONField("stored SOP Instance UIDs", default=list, blank=True, editable=False)
    detail = models.CharField(max_length=1000, blank=True, editable=False)
    # Set on bucketed reads only: one row per user, credential, address, patient,
    # study, action and bucket (NULLs never collide).
    bucket_key = models.CharField(max_length=64, null=True, blank=True, unique=True, editable=False)

    objects = AuditEventManager()

    class Meta:
        ordering = ["-action_time", "-id"]
        indexes = [
            models.Index(fields=["-action_time"], name="audit_time"),
            models.Index(fields=["study_uid", "-action_time"], name="audit_study_time"),
            models.Index(fields=["patient_id", "-action_time"], name="audit_patient_time"),
            models.Index(fields=["user", "-action_time"], name="audit_user_time"),
            models.Index(fields=["username", "-action_time"], name="audit_username_time"),
        ]

    def __str__(self) -> str:
        when = f"{self.action_time:%Y-%m-%d %H:%M:%S}"
        return f"{when} {self.username or '-'} {self.action} {self.status or ''}".strip()

    def save(self, *args: Any, **kwargs: Any) -> None:
        if self.pk is not None and not kwargs.get("force_insert"):
            raise AuditImmutable("audit events cannot be changed")
        super().save(*args, **kwargs)

    def delete(self, *args: Any, **kwargs: Any) -> tuple[int, dict[str, int]]:
        raise AuditImmutable("audit events are removed only by `manage.py prune_audit`")


class AccessSummary(models.Model):
    """One line per patient, study, user, credential, address and action that read or wrote
    patient data, with its first and last time and how many audit rows it stands for.

    A database trigger keeps it as audit rows arrive, whoever inserts them (migration
    0006), and `prune_audit` recounts the lines it touches: the auditor's "accesses by
    patient" then reads this table, not ten million rows.
    """

    patient_id = models.CharField("Patient ID", max_length=64, editable=False)
    study_uid = models.CharField("Study Instance UID", max_length=64, editable=False)
    username = models.CharField(max_length=150, editable=False)
    credential = models.CharField(max_length=64, editable=False)
    client_ip = models.CharField("client address", max_length=45, editable=False)  # "" when unknown
    action = models.CharField(max_length=20, choices=Action.choices, editable=False)
    first = models.DateTimeField(editable=False)
    last = models.DateTimeField(editable=False)
    rows = models.PositiveBigIntegerField(editable=False)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["patient_id", "study_uid", "username", "credential", "client_ip", "action"],
                name="audit_access_summary_key",
            )
        ]
        # The page's order (patient, study, latest first) within each filter it takes.
        indexes = [
            models.Index(fields=["study_uid", "-last"], name="audit_access_study_last"),
            models.Index(
                fields=["username", "patient_id", "study_uid", "-last"], name="audit_access_username"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.username or '-'} {self.action} {self.patient_id} {self.study_uid} x{self.rows}"


# The actions AccessSummary counts, as the audit trail's "accesses" are: successful
# reads and writes of patient data that name a patient or a study.
ACCESS_ACTIONS = (Action.QUERY, Action.RETRIEVE, Action.ADMIN_READ, Action.STORE, Action.ADMIN_WRITE)


class AuditImmutable(Exception):
    pass
