"""The same-origin rule: unsafe requests must come from the portal's own pages.

OHIF and Orthanc Explorer send no CSRF token, so same-origin is proven by
Sec-Fetch-Site or Origin; a session request proving neither is refused.
API clients (Basic, no cookies) cannot be forged by another site's page.
"""

from __future__ import annotations

SAFE_METHODS = frozenset({"GET", "HEAD"})


def is_cross_site(
    method: str, sec_fetch_site: str | None, origin: str | None, own_origin: str, session: bool
) -> bool:
    if method in SAFE_METHODS:
        return False
    if sec_fetch_site is not None and sec_fetch_site not in ("same-origin", "none"):
        return True
    if origin is not None and origin != own_origin:
        return True
    return session and sec_fetch_site is None and origin is None
