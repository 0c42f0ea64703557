"""Content-Security-Policy and session idle timeout.

Django 5.2 has no CSP support; the policy is one header. Views that need a
different policy (the OHIF page) set their own and this middleware leaves it;
Orthanc Explorer under /pacs-admin/ gets the portal's policy plus the one
inline event handler it needs.
"""

from __future__ import annotations

import base64
import hashlib
import time
from collections.abc import Callable

from django.conf import settings
from django.contrib.auth import logout
from django.core.exceptions import MiddlewareNotUsed
from django.http import HttpRequest, HttpResponseBase

PORTAL_POLICY = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self' 'unsafe-inline'",
        "img-src 'self' data:",
        "font-src 'self' data:",
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'self'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ]
)
# Orthanc Explorer's explorer.html (Orthanc 1.10.1 here, the same in later
# sources) runs all its code from files but for one attribute, the upload
# button's onclick. 'unsafe-hashes' with that
# text's hash lets exactly this handler run (hashes never cover event handlers
# without it); in script-src-attr, not script-src, so the hash cannot also
# allow an inline <script> of the same text. Everything else Explorer loads
# (scripts, styles, icons, previews, REST calls) is same-origin and within
# the portal's policy, as measured in Chromium (tests/test_proxy_explorer.py).
EXPLORER_UPLOAD_HANDLER = "$('#fileupload').click()"
EXPLORER_HANDLER_HASH = base64.b64encode(hashlib.sha256(EXPLORER_UPLOAD_HANDLER.encode()).digest()).decode()
PACS_ADMIN_POLICY = f"{PORTAL_POLICY}; script-src-attr 'unsafe-hashes' 'sha256-{EXPLORER_HANDLER_HASH}'"
PACS_ADMIN_PREFIX = "/pacs-admin/"
LAST_SEEN = "portal_last_seen"


class ContentSecurityPolicyMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponseBase]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponseBase:
        response = self.get_response(request)
        if "Content-Security-Policy" not in response:
            admin = request.path.startswith(PACS_ADMIN_PREFIX)
            response["Content-Security-Policy"] = PACS_ADMIN_POLICY if admin else PORTAL_POLICY
        return response


class SessionIdleTimeoutMiddleware:
    """Logs out a session left idle for SESSION_IDLE_TIMEOUT seconds.

    The last-seen mark is rewritten at most once a minute, so a viewer making
    hundreds of /pacs requests does not write its session hundreds of times.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponseBase]) -> None:
        if not settings.SESSION_IDLE_TIMEOUT:
            raise MiddlewareNotUsed
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponseBase:
        if request.user.is_authenticated and "_auth_user_id" in request.session:
            now = int(time.time())
            last_seen = request.session.get(LAST_SEEN, now)
            if now - last_seen > settings.SESSION_IDLE_TIMEOUT:
                logout(request)
            elif now - last_seen >= 60 or LAST_SEEN not in request.session:
                request.session[LAST_SEEN] = now
        return self.get_response(request)
