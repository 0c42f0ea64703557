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

from accounts.authentication import Identity
from orthanc.lookups import LookupFailed
from proxy import origin, paths, query, rules, shares, subjects
from proxy.asked import Asked
from proxy.subjects import Subject


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
        scope = shares.Scope(identity.share.study_uid, identity.share.allow_download)
        confined = shares.confine(scope, mount, method, clean_path, clean_query)
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
        refusal = shares.check_subject(scope, subject)
        if refusal is not None:
            return refuse(dataclasses.replace(verdict, subject=subject), refusal.status, refusal.reason)
    return dataclasses.replace(verdict, subject=subject)


def refuse(verdict: Decision, status: int, reason: str, allow: str = "") -> Decision:
    return dataclasses.replace(verdict, status=status, reason=reason, allow=allow)
