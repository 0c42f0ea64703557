"""The decision: one function turns a request into who, what, which subject, and the verdict.

Every door uses it: the Django proxy views (`proxy.views`) and nginx's
authorization endpoint. The rules it applies each live in their own module:
path rules (`paths`), query rules (`query`), role rules (`rules`), the
same-origin rule (`origin`), subject resolution (`subjects`), the last one
asking Orthanc's index, and a shared link's narrower scope (`shares`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from django.http import HttpRequest

from accounts.authentication import ANONYMOUS, AmbiguousCredentials, BadCredentials, Identity, identify
from orthanc.lookups import LookupFailed
from proxy import origin, paths, query, rules, subjects
from proxy.subjects import Subject
from shares import confinement


@dataclass(frozen=True)
class Original:
    """The request line being decided: the one Django received, or the one nginx holds."""

    method: str
    raw_uri: str | None
    query_string: str


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


def decide(
    request: HttpRequest,
    mount: str,
    path: str,
    body: Any = None,
    original: Original | None = None,
) -> Decision:
    """Decide one request to `mount` ("pacs" or "pacs-admin") for `path` below it.

    `body` is a /pacs-admin request's parsed JSON body, when it has one;
    `original` the request nginx holds, when nginx asks (its credentials and
    cookies are those of `request`, which nginx forwards to us).
    """
    original = original or Original(
        request.method or "GET", request.META.get("RAW_URI"), request.META.get("QUERY_STRING", "")
    )
    method = original.method
    verdict = Decision(mount, rules.action(mount, method, path), Identity(request.user, ""))
    # Who first, then the path: the audit trail names who tried a hostile path.
    try:
        identity = identify(request)
    except AmbiguousCredentials as error:
        # Nobody is named: which of the credentials was meant is exactly what is unknown.
        unnamed = dataclasses.replace(verdict, identity=ANONYMOUS)
        return refuse(unnamed, 400, f"ambiguous credentials: {error}")
    except BadCredentials as error:
        return refuse(verdict, 401, str(error))
    verdict = Decision(mount, verdict.action, identity)
    if getattr(request, "axes_locked_out", False):
        return refuse(verdict, 429, "too many failed logins; try again later")
    if not identity.is_authenticated:
        return refuse(verdict, 401, "authentication required")
    try:
        clean_path = paths.clean(path, original.raw_uri)
        clean_query = query.parse(
            original.query_string, wado_uri=paths.is_wado_uri(clean_path), qido=paths.is_qido(clean_path)
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

    def can(permission: str) -> bool:
        return identity.can(permission)

    refusal = rules.BY_MOUNT[mount](method, clean_path, can)
    if refusal is not None:
        return refuse(verdict, refusal.status, refusal.reason, allow=refusal.allow)
    if origin.is_cross_site(
        method,
        request.META.get("HTTP_SEC_FETCH_SITE"),
        request.META.get("HTTP_ORIGIN"),
        f"{request.scheme}://{request.get_host()}",
        session=identity.credential == "session" or identity.share is not None,
    ):
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
    return Decision(mount, verdict.action, identity, path=clean_path, query=clean_query.text, subject=subject)


def refuse(verdict: Decision, status: int, reason: str, allow: str = "") -> Decision:
    return dataclasses.replace(verdict, status=status, reason=reason, allow=allow)
