"""nginx's door: the authorization sub-request (auth_request) for a request under /pacs.

nginx holds the request; it asks here with the request line in X-Original-*
headers and the client's own headers. The same decision as the Django door
(`proxy.views`) judges it; a read's access is recorded here, before nginx
streams it from Orthanc itself.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from urllib.parse import unquote_to_bytes

from django.conf import settings
from django.contrib.auth.decorators import login_not_required
from django.db import DatabaseError
from django.http import HttpRequest, HttpResponse
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_safe

from accounts.authentication import SESSION, Identity
from proxy import errors, rules
from proxy.decision import Original, decide
from proxy.origin import SAFE_METHODS
from proxy.views import PacsProxyView

logger = logging.getLogger("proxy")


@dataclass(frozen=True)
class FrontOriginal(Original):
    path: str = ""


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
    uri = request.META.get("HTTP_X_ORIGINAL_URI", "")
    method = request.META.get("HTTP_X_ORIGINAL_METHOD", "")
    prefix = f"/{rules.PACS}/"
    if mount != rules.PACS or not method or not uri.startswith(prefix):
        return HttpResponse(status=403)
    raw_path, _, query_string = uri.partition("?")
    try:
        path = unquote_to_bytes(raw_path[len(prefix) :]).decode("utf-8")
    except UnicodeDecodeError:
        return HttpResponse(status=403)  # the door answers the 400
    original = FrontOriginal(method, uri, query_string, path=raw_path)
    request.pacs_original = original  # type: ignore[attr-defined]
    door = PacsProxyView()
    door.started = time.monotonic()
    try:
        decision = decide(request, rules.PACS, path, original=original)
    except DatabaseError as error:
        logger.error("database unavailable: %s", error)
        return front_refusal(503, "the portal's database is not available")
    finally:
        # django-axes' middleware would answer its own 429 (the decision says 429 itself),
        # which auth_request takes for an error (500): nginx would then hand the request
        # to the Django door, deciding it twice.
        request.axes_locked_out = False  # type: ignore[attr-defined]
    if decision.identity.is_authenticated:
        request.user = decision.identity.user
    if not decision.allowed:
        refusal = door.refused(request, decision)  # recorded here, once; nginx has Django word it
        return front_refusal(refusal.status_code, decision.reason, decision.allow)
    if method not in SAFE_METHODS:
        return HttpResponse(status=204)
    if not door.record_read(request, decision):
        return front_refusal(503, "the access could not be audited, so it was refused")
    response = HttpResponse(status=204)
    response["X-Pacs-Target"] = decision.target
    response["X-Pacs-User"] = f"{decision.identity.user.get_username()} ({decision.identity.credential})"
    # Counted from before the session and user were read (proxy.middleware, which must run).
    took = time.monotonic() - request.pacs_started  # type: ignore[attr-defined]
    reuse = reuse_seconds(decision.identity, took)
    if reuse is not None:
        response["X-Accel-Expires"] = str(reuse)
    return response


# A decision slower than this is never reused: one made from state that changed
# meanwhile could otherwise reach nginx's cache after accounts.revocation's sweeps.
FRESH_DECISION_SECONDS = 0.5


def reuse_seconds(identity: Identity, took: float) -> int | None:
    """How long nginx may reuse this allowed read's decision (None: NGINX_DECISION_SECONDS)."""
    if identity.share is not None or took > FRESH_DECISION_SECONDS:
        return 0  # a share is never reused: revoking it ends it on the next request
    if identity.credential == SESSION:
        return None
    # nginx keeps entries up to a second longer than asked, as for sessions (pacsportal/front.py).
    seconds = max(settings.NGINX_API_DECISION_SECONDS - 1, 0)
    if identity.expires_at is not None:
        seconds = min(seconds, max(int((identity.expires_at - timezone.now()).total_seconds()) - 1, 0))
    return seconds


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
