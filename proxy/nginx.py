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
from django.http import HttpRequest, HttpResponse, HttpResponseBase
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
    once, and worded as the Django door words it (`front_refusal`): nginx
    answers it from this answer's headers, without asking again.
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
        return front_refusal(errors.response(request, 503, "the portal's database is not available"))
    finally:
        # django-axes' middleware would answer its own 429 (the decision says 429 itself),
        # which auth_request takes for an error (500): nginx would then hand the request
        # to the Django door, deciding it twice.
        request.axes_locked_out = False  # type: ignore[attr-defined]
    if decision.identity.is_authenticated:
        request.user = decision.identity.user
    if not decision.allowed:
        if decision.status not in ANSWERED_BY_NGINX:
            return HttpResponse(status=500)  # nginx hands the request to the Django door
        return front_refusal(door.refused(request, decision))  # recorded here, once
    if method not in SAFE_METHODS:
        return HttpResponse(status=204)
    if not door.record_read(request, decision):
        unaudited = errors.response(request, 503, "the access could not be audited, so it was refused")
        return front_refusal(unaudited)
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


# The statuses nginx answers a refusal with itself (deploy/nginx/pacsportal.conf.template, its
# /_front/refused/ locations): `return` takes no status from a variable, so each has its own.
ANSWERED_BY_NGINX = frozenset({400, 401, 403, 404, 405, 409, 429, 503})


def front_refusal(answer: HttpResponseBase) -> HttpResponse:
    """The Django door's answer to a refusal, as nginx answers it itself.

    auth_request passes on a 401 or a 403 only (and a 401's WWW-Authenticate): the real
    status and the body travel in X-Pacs-* headers, every other header (Content-Type,
    Allow, Cache-Control, the middlewares' security headers) as the Django door sends it.
    """
    body = answer.content if isinstance(answer, HttpResponse) else b""
    refusal = HttpResponse(status=401 if answer.status_code == 401 else 403)
    for name, value in answer.items():
        refusal[name] = value
    refusal["X-Pacs-Status"] = str(answer.status_code)
    # A header holds one line: a page's final line break travels as a flag. Its UTF-8
    # bytes go as they are (latin-1 here is byte for byte), and nginx sends them on so.
    refusal["X-Pacs-Body"] = body.removesuffix(b"\n")
    if body.endswith(b"\n"):
        refusal["X-Pacs-Body-End"] = "newline"
    return refusal
