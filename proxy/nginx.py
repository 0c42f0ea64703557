"""nginx's door: the authorization sub-request (auth_request) for a request under /pacs.

nginx holds the request; it asks here with the request line in X-Original-*
headers and the client's own headers. The same decision as the Django door
(`proxy.views`) judges it; a read's access is recorded here, before nginx
streams it from Orthanc itself.
"""

from __future__ import annotations

import logging
import time

from django.conf import settings
from django.contrib.auth.decorators import login_not_required
from django.db import DatabaseError
from django.http import HttpRequest, HttpResponse
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_safe

from accounts.authentication import SESSION, Identity
from core.revocation_table import FRESH_DECISION_SECONDS, nginx_cache_seconds
from proxy import accesses, errors, rules
from proxy.decision import NotAsked, decide, of_nginx
from proxy.origin import SAFE_METHODS

logger = logging.getLogger("proxy")


@login_not_required
@require_safe
@never_cache
def front_decision(request: HttpRequest, mount: str) -> HttpResponse:
    """nginx's authorization sub-request (auth_request) for a request under /pacs.

    The same decision as the proxy view, for the request nginx holds: for a
    GET or HEAD, 204 with the path and query Orthanc should be asked for once
    the access is recorded; for a write, 204 and nginx passes the body on to
    the proxy view, which records what it stored. A refusal is recorded here,
    once, and answered as a bodiless 401 or 403 carrying its real status and
    reason in headers, which nginx has `front_refusal_page` word.
    """
    if mount != rules.PACS:
        return HttpResponse(status=403)
    # Counted from before the session and user were read (proxy.middleware, which must run).
    started = request.pacs_started  # type: ignore[attr-defined]
    try:
        asked = of_nginx(request, mount, started)
        decision = decide(asked)
    except NotAsked:
        return HttpResponse(status=403)  # the Django door answers the 400
    except DatabaseError as error:
        logger.error("database unavailable: %s", error)
        return front_refusal(503, "the portal's database is not available")
    if not decision.allowed:
        accesses.record_refusal(asked, decision, decision.status)
        return front_refusal(decision.status, decision.reason, decision.allow)
    if asked.method not in SAFE_METHODS:
        return HttpResponse(status=204)
    if not accesses.record_read(asked, decision):
        return front_refusal(503, "the access could not be audited, so it was refused")
    response = HttpResponse(status=204)
    response["X-Pacs-Target"] = decision.target
    response["X-Pacs-User"] = f"{decision.identity.user.get_username()} ({decision.identity.credential})"
    reuse = reuse_seconds(decision.identity, time.monotonic() - started)
    if reuse is not None:
        response["X-Accel-Expires"] = str(reuse)
    return response


def reuse_seconds(identity: Identity, took: float) -> int | None:
    """How long nginx may reuse this allowed read's decision (None: as configured for sessions)."""
    if identity.share is not None or took > FRESH_DECISION_SECONDS:
        return 0  # a share is never reused: revoking it ends it on the next request
    if identity.credential == SESSION:
        return None
    seconds: float = settings.NGINX_API_DECISION_SECONDS
    if identity.expires_at is not None:
        seconds = min(seconds, (identity.expires_at - timezone.now()).total_seconds())
    return nginx_cache_seconds(seconds)


def front_refusal(status: int, reason: str, allow: str = "") -> HttpResponse:
    """A refusal for nginx: 401 or 403 (all auth_request passes on), the real status in headers."""
    response = HttpResponse(status=401 if status == 401 else 403)
    response["X-Pacs-Status"] = str(status)
    response["X-Pacs-Reason"] = reason.encode("ascii", "replace").decode()
    if allow:
        response["X-Pacs-Allow"] = allow
    return response


@login_not_required
@never_cache
def front_refusal_page(request: HttpRequest) -> HttpResponse:
    """The answer to a refusal nginx met, worded as the Django door words its own.

    Reached only through nginx's internal @pacs_refusal location: either the
    decision refused (and recorded it), or Orthanc itself answered 401 or 403.
    """
    status = request.META.get("HTTP_X_PACS_STATUS", "")
    if not status.isdigit():
        upstream = request.META.get("HTTP_X_PACS_UPSTREAM_STATUS", "").split(",")[-1].strip()
        if upstream == "401":
            return errors.response(request, 502, "the archive refused the portal's service credential")
        return errors.response(request, 403, "the archive refused the request")
    code, reason = int(status), request.META.get("HTTP_X_PACS_REASON", "refused")
    if code == 401:
        return errors.unauthorized(request, reason)
    response = errors.response(request, code, reason)
    if request.META.get("HTTP_X_PACS_ALLOW"):
        response["Allow"] = request.META["HTTP_X_PACS_ALLOW"]
    return response
