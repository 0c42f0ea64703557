"""The decision: a request read once (`Asked`), and one function that turns it into
who, what, which subject, and the verdict.

Both doors use it: the Django proxy views (`proxy.views`) read the request they
received, nginx's authorization endpoint (`proxy.nginx`) the request nginx holds;
the decision and the audit look at nothing else (the Django door still reads the
request's body and its own headers to forward them). The rules it applies each
live in their own module: path rules (`paths`), query rules (`query`), role
rules (`rules`), the same-origin rule (`origin`), subject resolution
(`subjects`), the last one asking Orthanc's index, and a shared link's narrower
scope (`shares.confinement`).
"""

from __future__ import annotations

import copy
import dataclasses
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote_to_bytes

from django.http import HttpRequest
from django.utils.encoding import repercent_broken_unicode

from accounts.authentication import ANONYMOUS, AmbiguousCredentials, BadCredentials, Identity, identify
from core.clientip import client_ip
from orthanc.lookups import LookupFailed
from proxy import origin, paths, query, rules, subjects
from proxy.subjects import Subject
from shares import confinement


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
    held = as_held(request, method, raw_path, query_string)
    # The path as the Django door reads it, for the rules and the audit trail alike.
    return read(held, mount, held.path[len(prefix) :], uri, method, query_string, held.path, started)


def as_held(request: HttpRequest, method: str, raw_path: str, query_string: str) -> HttpRequest:
    """The decision sub-request as the request nginx holds: its method, path and query.

    Authentication reads it (and its signals audit failed logins and lockouts from
    it), so those rows name the path that was asked for, not the sub-request's; and
    django-axes marks a lockout on it, not on the sub-request, whose middleware would
    otherwise answer its own 429 (auth_request takes anything but 2xx, 401, 403 for 500).
    """
    held = copy.copy(request)
    # One environ, as Django's WSGIRequest has: its query (GET), cookies and path are read from it.
    path_info = unquote_to_bytes(raw_path).decode("latin-1")  # as a WSGI server hands PATH_INFO on
    environ = {**request.META, "REQUEST_METHOD": method, "QUERY_STRING": query_string, "PATH_INFO": path_info}
    held.environ = held.META = environ  # type: ignore[attr-defined]  # HttpRequest declares META only
    held.method = method
    # As Django reads the path it receives (django.core.handlers.wsgi.get_path_info): bytes
    # that are not UTF-8 stay percent-encoded, for the path rules to judge.
    held.path = held.path_info = repercent_broken_unicode(unquote_to_bytes(raw_path)).decode()
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


@dataclass(frozen=True)
class Decision:
    mount: str
    action: str
    identity: Identity
    status: int = 200
    reason: str = "allowed"
    path: str = ""
    query: str = ""
    subject: Subject = field(default_factory=Subject)
    allow: str = ""  # the Allow header of a 405

    @property
    def allowed(self) -> bool:
        return self.status < 300

    @property
    def is_read(self) -> bool:
        return self.action in (rules.QUERY, rules.RETRIEVE, rules.ADMIN_READ)

    @property
    def target(self) -> str:
        """The path and query to ask Orthanc for, as Orthanc will read them."""
        return "/" + paths.quoted(self.path) + (f"?{self.query}" if self.query else "")


def decide(asked: Asked, body: Any = None) -> Decision:
    """Decide one request read by a door; `body` is a /pacs-admin request's parsed JSON body."""
    mount, method = asked.mount, asked.method
    verdict = Decision(mount, rules.action(mount, method, asked.path), asked.identity)
    # Who first, then the path: the audit trail names who tried a hostile path.
    if asked.credential_status:
        return refuse(verdict, asked.credential_status, asked.credential_problem)
    identity = asked.identity
    if asked.locked_out:
        return refuse(verdict, 429, "too many failed logins; try again later")
    if not identity.is_authenticated:
        return refuse(verdict, 401, "authentication required")
    try:
        clean_path = paths.clean(asked.path, asked.raw_uri)
        clean_query = query.parse(
            asked.query_string, wado_uri=paths.is_wado_uri(clean_path), qido=paths.is_qido(clean_path)
        )
    except (paths.UnsafePath, query.UnsafeQuery) as error:
        return refuse(verdict, 400, str(error))
    scope = None
    if identity.share is not None:
        scope = confinement.Scope(identity.share.study_uid, identity.share.allow_download)
        confined = confinement.confine(scope, mount, method, clean_path, clean_query)
        if isinstance(confined, rules.Refusal):
            return refuse(verdict, confined.status, confined.reason)
        clean_path, clean_query = confined.path, confined.query
    verdict = Decision(
        mount, rules.action(mount, method, clean_path), identity, path=clean_path, query=clean_query.text
    )
    refusal = rules.BY_MOUNT[mount](method, clean_path, identity.can)
    if refusal is not None:
        return refuse(verdict, refusal.status, refusal.reason, allow=refusal.allow)
    session = identity.credential == "session" or identity.share is not None
    if origin.is_cross_site(method, asked.sec_fetch_site, asked.origin, asked.own_origin, session=session):
        return refuse(verdict, 403, "cross-site request refused")
    try:
        if mount == rules.PACS:
            subject = subjects.of_pacs(method, clean_path, clean_query)
        else:
            subject = subjects.of_admin(method, clean_path, clean_query, body)
    except subjects.Refused as refused:
        return refuse(verdict, refused.status, refused.reason)
    except LookupFailed:
        return refuse(verdict, 503, "the archive could not say whose data this is, so it was not served")
    if scope is not None:
        refusal = confinement.check_subject(scope, subject)
        if refusal is not None:
            return refuse(dataclasses.replace(verdict, subject=subject), refusal.status, refusal.reason)
    return dataclasses.replace(verdict, subject=subject)


def refuse(verdict: Decision, status: int, reason: str, allow: str = "") -> Decision:
    return dataclasses.replace(verdict, status=status, reason=reason, allow=allow)
