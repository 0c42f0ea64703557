"""Shared links: create them (`Share.revoke` revokes one), open one (its secret exchanged for a visitor's
session), and the visit a request carries.

A visitor's session holds only the share's id and when the visit ends: no user
is logged in. Every request reads the share again (`visit_of`), so revoking it,
its expiry and the owner's deactivation end the visit on the next request.
Accesses through a share are recorded under its owner, with the credential
`share:<id>`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.contrib.auth.models import User
from django.db import transaction
from django.http import HttpRequest
from django.middleware.csrf import rotate_token
from django.utils import timezone

from accounts.fastauth import ModelBackend
from accounts.permissions import has_perm
from audit.models import Action, AuditEvent
from core import roles
from core.authenticated import AuthenticatedRequest
from core.clientip import client_ip
from shares.models import Share

SESSION_SHARE = "portal_share"
SESSION_UNTIL = "portal_share_until"
# What a share's visitor may do at most: read (the decision narrows it to the one study).
VISITOR_PERMISSIONS = frozenset({roles.READ_STUDIES})

UNKNOWN = "This link is not valid: it may have been mistyped or cut short."
REVOKED = "This link was revoked by the person who shared it."
EXPIRED = "This link has expired."
VISIT_OVER = "Your visit through this link has ended. Open the link again to go on."
OWNER_GONE = "This link no longer works: the person who shared it may no longer share studies."
STUDY_GONE = "The shared study is no longer in the archive."


@dataclass(frozen=True)
class Visit:
    """A request from a share's visitor: the share and its owner, or why the visit has ended."""

    share: Share | None
    owner: User | None
    ended: str = ""


def can_share(user: User) -> bool:
    return has_perm(user, roles.SHARE_STUDIES) and has_perm(user, roles.READ_STUDIES)


def problem_with(share: Share | None) -> tuple[str, User | None]:
    """Why the share cannot be used now ('' if it can), and its owner, loaded afresh."""
    if share is None:
        return UNKNOWN, None
    if share.revoked_at is not None:
        return REVOKED, None
    if share.is_expired:
        return EXPIRED, None
    owner = ModelBackend().get_user(share.owner_id)
    if owner is None or not can_share(owner):
        return OWNER_GONE, None
    return "", owner


def visit_of(request: HttpRequest) -> Visit | None:
    """The visit this request's session carries; None if it is not a share's visitor.

    Read afresh each time it is asked (the middleware, then the decision): a link
    revoked in between is refused by the later reading.
    """
    session = getattr(request, "session", None)
    if session is None or "_auth_user_id" in session:
        return None
    share_id = session.get(SESSION_SHARE)
    if share_id is None:
        return None
    share = Share.objects.filter(pk=share_id).first()
    ended, owner = problem_with(share)
    if not ended and session.get(SESSION_UNTIL, 0) <= time.time():
        ended, owner = VISIT_OVER, None
    return Visit(share, owner, ended)


def create(
    request: AuthenticatedRequest, study_uid: str, patient_id: str, days: int, note: str, allow_download: bool
) -> tuple[Share, str]:
    """A new share of the study for the request's user, and its secret (to show once, never to store)."""
    with transaction.atomic():
        share, secret = Share.objects.issue(
            request.user,
            study_uid,
            days,
            note=note,
            allow_download=allow_download,
        )
        AuditEvent.objects.record(
            Action.SHARE_CREATED,
            request=request,
            credential="session",
            status=201,
            study_uid=study_uid,
            patient_id=patient_id,
            detail=(
                f"shared link #{share.pk}, expires {share.expires_at:%Y-%m-%d %H:%M} UTC, "
                f"{'download allowed' if allow_download else 'viewer only'}"
                + (f", note: {note}" if note else "")
            ),
        )
    return share, secret


def record_open(
    request: HttpRequest, share: Share | None, status: int, patient_id: str = "", problem: str = ""
) -> None:
    """An attempt to open a link, under the share's owner when the link is known (a throttled
    address's attempts write one row per throttled window: shares.views)."""
    AuditEvent.objects.record(
        Action.SHARE_OPENED,
        request=request,
        user=share.owner if share is not None else None,
        credential=share.credential if share is not None else "share:unknown",
        status=status,
        success=not problem,
        study_uid=share.study_uid if share is not None else "",
        patient_id=patient_id,
        detail=f"by a visitor from {client_ip(request) or 'an unknown address'}"
        + (f": {problem}" if problem else ""),
    )


def start_visit(request: HttpRequest, share: Share) -> None:
    """A fresh session that holds only the share: whoever was logged in here is logged out."""
    request.session.flush()
    rotate_token(request)
    until = min(
        timezone.now() + timedelta(minutes=settings.SHARE_SESSION_MINUTES),
        share.expires_at,
    )
    request.session[SESSION_SHARE] = share.pk
    request.session[SESSION_UNTIL] = until.timestamp()
    request.session.set_expiry(max(1, int((until - timezone.now()).total_seconds())))


def created_in_the_last_hour(user: User) -> int:
    return Share.objects.created_since(user, timezone.now() - timedelta(hours=1))
