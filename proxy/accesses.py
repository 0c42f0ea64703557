"""What both doors record of a request: its audit rows and its access-log line.

Every function takes what the door read (`Asked`) and what was decided
(`Decision`); none reads the Django request.
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db import DatabaseError
from django.http import HttpResponseBase

from audit.models import AuditEvent
from proxy import stow
from proxy.decision import Asked, Decision
from proxy.subjects import Subject

logger = logging.getLogger("proxy")
# Per-request detail for forensics (who, what path, status, bytes), one JSON
# line each; the audit trail holds one row per study access instead.
access_log = logging.getLogger("pacsportal.access")


@dataclass(frozen=True)
class Written:
    """What a write did: the answer for the client, and what its audit row says."""

    response: HttpResponseBase
    stored_uids: tuple[str, ...] = ()
    subject: Subject | None = None  # whose data was stored, when Orthanc's answer says
    detail: str = ""
    refused_parts: tuple[stow.Part, ...] = ()


def record(
    asked: Asked,
    decision: Decision,
    status: int | None,
    bucketed: bool,
    subject: Subject | None = None,
    **extra: Any,
) -> None:
    if not settings.AUDIT_PROXY_REQUESTS:
        return
    subject = subject or decision.subject
    AuditEvent.objects.record(
        decision.action,
        # The decision's identity, not the request's user: an ambiguous credential names nobody.
        user=decision.identity.user,
        credential=decision.identity.credential,
        status=status,
        success=status is None or status < 400,
        patient_id=subject.patient_id,
        study_uid=subject.study_uid,
        series_uid=subject.series_uid,
        sop_uid=subject.sop_uid,
        bucketed=bucketed,
        method=asked.method,
        path=asked.logged_path,
        query=asked.query_string,
        client=asked.client,
        user_agent=asked.user_agent,
        **extra,
    )


def record_refusal(asked: Asked, decision: Decision, status: int) -> None:
    """A refusal's row, once; a database outage costs the row, not the answer."""
    try:
        record(asked, decision, status, bucketed=False)
    except DatabaseError as error:
        logger.error("audit write failed for a refused %s %s: %s", asked.method, asked.logged_path, error)
    log_access(asked, decision, status, 0)


def record_read(asked: Asked, decision: Decision, export: str = "") -> bool:
    """Record the access before serving it; False if it could not be recorded.

    An export (`export`: what its body asked for) gets a row of its own; other
    reads one per bucket.
    """
    detail = f"export granted: {export}" if export else "granted; covers this bucket's reads"
    try:
        record(asked, decision, None, bucketed=not export, detail=detail)
    except DatabaseError as error:
        logger.error("audit write failed, refusing %s %s: %s", asked.method, asked.logged_path, error)
        return False
    return True


def record_write(asked: Asked, decision: Decision, written: Written) -> None:
    for part in written.refused_parts:
        record_refused_part(asked, decision, part)
    try:
        record(
            asked,
            decision,
            written.response.status_code,
            bucketed=False,
            subject=written.subject,
            stored_uids=written.stored_uids,
            detail=written.detail,
        )
    except DatabaseError as error:
        # Orthanc has already applied the write: hiding that would make the
        # client retry or give up on data that is stored. Say so loudly instead.
        user = decision.identity.user.get_username()
        logger.critical("UNAUDITED %s %s by %s: %s", asked.method, asked.logged_path, user, error)


def record_refused_part(asked: Asked, decision: Decision, part: stow.Part) -> None:
    """A STOW part the portal refused: its own row, naming whose data it claimed to be."""
    try:
        record(
            asked,
            decision,
            409 if part.conflict else 400,
            bucketed=False,
            subject=Subject(part.patient_id, part.study_uid, part.series_uid, part.sop_uid),
            detail=f"STOW part refused: {part.refusal}",
        )
    except DatabaseError as error:
        logger.error("audit write failed for a refused STOW part: %s", error)


def log_access(asked: Asked, decision: Decision, status: int, sent: int) -> None:
    identity = decision.identity
    access_log.info(
        json.dumps(
            {
                "user": identity.user.get_username() if identity.is_authenticated else "",
                "credential": identity.credential,
                "client": asked.client,
                "method": asked.method,
                "path": asked.logged_path,
                "status": status,
                "bytes": sent,
                "ms": round((time.monotonic() - asked.started) * 1000, 1),
                "pid": os.getpid(),
            }
        )
    )
