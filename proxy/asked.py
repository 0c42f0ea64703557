"""A request to /pacs or /pacs-admin, read once: what the decision judges,
the doors act on and the audit records.

Both doors build one `Asked` and pass it on; nothing below reads the Django
request again for what was asked. The Django door reads the request it
received; nginx's door the request nginx holds, from the request line nginx
sends (X-Original-Method, X-Original-URI) and the client's own headers.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass
from urllib.parse import unquote_to_bytes

from django.http import HttpRequest

from accounts.authentication import ANONYMOUS, AmbiguousCredentials, BadCredentials, Identity, identify
from core.clientip import client_ip


class NotAsked(ValueError):
    """nginx's sub-request does not carry a request to decide."""


@dataclass(frozen=True)
class Asked:
    mount: str
    method: str
    path: str  # below the mount, percent-decoded
    raw_uri: str | None  # the request line's target as received, when known
    query_string: str
    logged_path: str  # the path as the audit trail and access log show it
    client: str | None
    user_agent: str
    sec_fetch_site: str | None
    origin: str | None
    own_origin: str
    identity: Identity
    credential_status: int = 0  # 400 or 401 when the credentials were refused
    credential_problem: str = ""
    locked_out: bool = False
    started: float = 0.0


def of_django(request: HttpRequest, mount: str, path: str) -> Asked:
    """The request the Django door received."""
    return read(
        request,
        mount,
        path,
        request.META.get("RAW_URI"),
        request.method or "GET",
        request.META.get("QUERY_STRING", ""),
        request.path,
    )


def of_nginx(request: HttpRequest, mount: str, started: float) -> Asked:
    """The request nginx holds, as its sub-request to the decision carries it."""
    uri = request.META.get("HTTP_X_ORIGINAL_URI", "")
    method = request.META.get("HTTP_X_ORIGINAL_METHOD", "")
    prefix = f"/{mount}/"
    if not method or not uri.startswith(prefix):
        raise NotAsked("no request under the mount")
    raw_path, _, query_string = uri.partition("?")
    try:
        path = unquote_to_bytes(raw_path[len(prefix) :]).decode("utf-8")
    except UnicodeDecodeError as error:
        raise NotAsked("the path is not UTF-8") from error
    held = as_held(request, method, raw_path, query_string)
    return read(held, mount, path, uri, method, query_string, raw_path, started)


def as_held(request: HttpRequest, method: str, path: str, query_string: str) -> HttpRequest:
    """The decision sub-request as the request nginx holds: its method, path and query.

    Authentication reads it (and its signals audit failed logins and lockouts from
    it), so those rows name the path that was asked for, not the sub-request's; and
    django-axes marks a lockout on it, not on the sub-request, whose middleware would
    otherwise answer its own 429 (auth_request takes anything but 2xx, 401, 403 for 500).
    """
    held = copy.copy(request)
    held.method = method
    held.path = path
    held.META = {**request.META, "REQUEST_METHOD": method, "QUERY_STRING": query_string}
    for cached in ("GET", "COOKIES"):
        held.__dict__.pop(cached, None)
    return held


def read(
    request: HttpRequest,
    mount: str,
    path: str,
    raw_uri: str | None,
    method: str,
    query_string: str,
    logged_path: str,
    started: float | None = None,
) -> Asked:
    started = time.monotonic() if started is None else started
    status, problem = 0, ""
    try:
        identity = identify(request)
    except AmbiguousCredentials as error:
        # Nobody is named: which of the credentials was meant is exactly what is unknown.
        identity, status, problem = ANONYMOUS, 400, f"ambiguous credentials: {error}"
    except BadCredentials as error:
        identity, status, problem = Identity(request.user, ""), 401, str(error)
    return Asked(
        mount=mount,
        method=method,
        path=path,
        raw_uri=raw_uri,
        query_string=query_string,
        logged_path=logged_path,
        client=client_ip(request),
        user_agent=request.META.get("HTTP_USER_AGENT", ""),
        sec_fetch_site=request.META.get("HTTP_SEC_FETCH_SITE"),
        origin=request.META.get("HTTP_ORIGIN"),
        own_origin=f"{request.scheme}://{request.get_host()}",
        identity=identity,
        credential_status=status,
        credential_problem=problem,
        locked_out=bool(getattr(request, "axes_locked_out", False)),
        started=started,
    )
