"""Who is asking, and may they: authentication and authorization for the mounts.

A browser (OHIF, Orthanc Explorer) comes with its Django session; API clients
(dicomweb-client, curl, scripts) send HTTP Basic credentials checked against
Django users, through django-axes so failures count towards lockout. Basic
auth never creates a session.
"""

from __future__ import annotations

import base64
import binascii
import time

from django.contrib.auth import authenticate
from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.http import HttpRequest

SAFE_METHODS = frozenset({"GET", "HEAD"})
# A viewer opening a study makes hundreds of requests; loading the user's group
# permissions for each one was 30% of a frame request's time (measured with
# py-spy, docs/performance.md). Group changes reach open sessions within this
# many seconds; deactivating a user or logging out takes effect at once.
PERMISSION_TTL = 10.0
_permissions: dict[int, tuple[float, frozenset[str]]] = {}


class BadCredentials(ValueError):
    pass


def basic_credentials(request: HttpRequest) -> tuple[str, str] | None:
    header = request.META.get("HTTP_AUTHORIZATION", "")
    if not header:
        return None
    scheme, _, encoded = header.partition(" ")
    if scheme.lower() != "basic" or not encoded.strip():
        raise BadCredentials("only HTTP Basic authentication is supported")
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        raise BadCredentials("malformed Basic credentials") from None
    username, colon, password = decoded.partition(":")
    if not colon or not username or not decoded.isprintable():
        raise BadCredentials("malformed Basic credentials")
    return username, password


def authenticated_user(request: HttpRequest) -> AbstractBaseUser | AnonymousUser:
    """The session's user, else the user of valid Basic credentials, else anonymous."""
    if request.user.is_authenticated:
        return request.user
    credentials = basic_credentials(request)
    if credentials is None:
        return AnonymousUser()
    user = authenticate(request, username=credentials[0], password=credentials[1])
    return user if user is not None else AnonymousUser()


def uses_session(request: HttpRequest) -> bool:
    return request.user.is_authenticated


def is_browser(request: HttpRequest) -> bool:
    """Browsers send Fetch Metadata on every request; API clients do not."""
    return "HTTP_SEC_FETCH_MODE" in request.META or "HTTP_SEC_FETCH_SITE" in request.META


def is_cross_site(request: HttpRequest, session: bool) -> bool:
    """Whether an unsafe request may have been forged by another site.

    OHIF and Orthanc Explorer send no CSRF token, so same-origin is proven by
    Sec-Fetch-Site or Origin; a session request proving neither is refused.
    """
    if request.method in SAFE_METHODS:
        return False
    site = request.META.get("HTTP_SEC_FETCH_SITE")
    origin = request.META.get("HTTP_ORIGIN")
    if site is not None and site not in ("same-origin", "none"):
        return True
    if origin is not None and origin != f"{request.scheme}://{request.get_host()}":
        return True
    return session and site is None and origin is None


def has_perm(user: AbstractBaseUser | AnonymousUser, permission: str) -> bool:
    """user.has_perm, with the user's permission set cached for PERMISSION_TTL seconds."""
    if not user.is_active:
        return False
    if getattr(user, "is_superuser", False):
        return True
    now = time.monotonic()
    cached = _permissions.get(user.pk)
    if cached is None or cached[0] < now:
        if len(_permissions) > 10_000:
            _permissions.clear()
        cached = (now + PERMISSION_TTL, frozenset(user.get_all_permissions()))
        _permissions[user.pk] = cached
    return permission in cached[1]
