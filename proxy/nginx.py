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
from django.http import HttpRequest, HttpResponse, HttpResponseBase
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_safe

from accounts.authentication import SESSION, Identity
from core.revocation_table import FRESH_DECISION_SECONDS, nginx_cache_seconds
from proxy import accesses, errors, rules
from proxy.decision import NotAsked, decide, of_nginx
from proxy.middleware import STARTED
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
    once, and worded as the Django door words it (`front_refusal`): nginx
    answers it from this answer's headers, without asking again.
    """
    if mount != rules.PACS or settings.PORTAL_FRONT != "nginx":
        # Without nginx in front, gunicorn listens to clients, who must not ask for decisions.
        return HttpResponse(status=404)
    # Counted from before the session and user were read (proxy.middleware, which must run).
    started = float(request.META[STARTED])
    try:
        asked = of_nginx(request, mount, started)
        decision = decide(asked)
    except NotAsked as error:
        return front_refusal(errors.response(request, 400, str(error)))
    except DatabaseError as error:
        logger.error("database unavailable: %s", error)
        return front_refusal(errors.response(request, 503, "the portal's database is not available"))
    if not decision.allowed:
        if decision.status not in ANSWERED_BY_NGINX:
            return HttpResponse(status=500)  # nginx hands the request to the Django door
        answer = errors.refusal(request, decision.status, decision.reason, decision.allow)
        accesses.record_refusal(asked, decision, answer.status_code)
        return front_refusal(answer)
    if asked.method not in SAFE_METHODS:
        return HttpResponse(status=204)
    if not accesses.record_read(asked, decision):
        unaudited = errors.response(request, 503, "the access could not be audited, so it was refused")
        return front_refusal(unaudited)
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
