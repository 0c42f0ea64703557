"""Who is asking: the session's user, or the user behind an access token or a Basic password.

A browser (OHIF, Orthanc Explorer) comes with its Django session. API clients
(dicomweb-client, curl, scripts) send a personal access token, as
`Authorization: Bearer pacs_...` or as the password of HTTP Basic (with the
owner's username), or a username and password with HTTP Basic. None of them
creates a session.

Django's password hasher costs about 0.5 s of CPU per check (PBKDF2, 1,000,000
iterations), so a worker remembers a Basic (username, password) pair it has
checked for BASIC_AUTH_CACHE_SECONDS, under an HMAC of the pair with a key
drawn at process start (never the password itself). The memory is bound to
the user's current password hash, active flag and django-axes lockout state,
all read again on every request, so a password change, deactivation or
lockout ends it on the next request. Failed attempts always go through
django-axes and the hasher, and count towards lockout.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import logging
import re
import secrets
from dataclasses import dataclass
from datetime import datetime

from axes.handlers.proxy import AxesProxyHandler
from axes.helpers import get_credentials
from axes.models import AccessAttempt
from django.conf import settings
from django.contrib.auth import authenticate, get_user_model
from django.contrib.auth.models import AnonymousUser, User
from django.db import DatabaseError, connections, router
from django.http import HttpRequest

from accounts.fastauth import ModelBackend
from accounts.models import AccessToken, looks_like_token
from accounts.permissions import has_perm
from core.clientip import client_ip
from core.ttlcache import TTLCache
from core.turns import OneAtATime
from shares.links import VISITOR_PERMISSIONS, visit_of
from shares.models import Share

logger = logging.getLogger(__name__)
SESSION = "session"
BASIC = "basic"
MAX_REMEMBERED_PASSWORDS = 10_000


class BadCredentials(ValueError):
    pass


class AmbiguousCredentials(BadCredentials):
    """Credentials that two parsers could read differently: refused (400), never guessed at."""


# nginx splits cookies at "," as well as ";" and matches names in any case; Django splits
# at ";" only and takes a name as written, keeping the last of a repeated one.
COOKIE_SEPARATORS = re.compile(r"[;,]")


def ambiguity(request: HttpRequest) -> str:
    """Why this request's credentials could be read two ways ('' when they cannot).

    The session cookie must appear at most once under any spelling and be the one
    Django reads; several Authorization headers (joined by "," on their way to us)
    are refused too: nginx refuses them itself, the Django door must as well.
    """
    name = settings.SESSION_COOKIE_NAME
    spellings = [
        chunk.partition("=")[0].strip()
        for chunk in COOKIE_SEPARATORS.split(request.META.get("HTTP_COOKIE", ""))
    ]
    found = [spelling for spelling in spellings if spelling.lower() == name.lower()]
    if len(found) > 1:
        return f"more than one {name} cookie (in one spelling or another)"
    if found and (found[0] != name or name not in request.COOKIES):
        return f"a {name} cookie that could be read two ways"
    if "," in request.META.get("HTTP_AUTHORIZATION", ""):
        return "more than one Authorization header"
    return ""


@dataclass(frozen=True)
class Identity:
    """A user, the credential they proved it with ('' when anonymous, `token:<name>` for a
    token, `share:<id>` for a shared link's visitor, whose user is the share's owner), and
    the most it may do (None: whatever the user may); `share`, the shared link, if any."""

    user: User | AnonymousUser
    credential: str
    scope: frozenset[str] | None = None
    share: Share | None = None
    expires_at: datetime | None = None  # a token's expiry

    @property
    def is_authenticated(self) -> bool:
        return bool(self.user.is_authenticated)

    def can(self, permission: str) -> bool:
        """The user's permission, narrowed to the token's scope when a token proved it."""
        if self.scope is not None and permission not in self.scope:
            return False
        return has_perm(self.user, permission)


ANONYMOUS = Identity(AnonymousUser(), "")


def authorization(request: HttpRequest) -> tuple[str, str] | None:
    """The Authorization header as ("basic", "user:password") or ("bearer", token); None if absent."""
    header = request.META.get("HTTP_AUTHORIZATION", "")
    if not header:
        return None
    scheme, _, value = header.partition(" ")
    scheme, value = scheme.lower(), value.strip()
    if scheme == "bearer" and value:
        return scheme, value
    if scheme != "basic" or not value:
        raise BadCredentials("use HTTP Basic or a Bearer token")
    try:
        decoded = base64.b64decode(value, validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        raise BadCredentials("malformed Basic credentials") from None
    username, colon, _ = decoded.partition(":")
    if not colon or not username or not decoded.isprintable():
        raise BadCredentials("malformed Basic credentials")
    return scheme, decoded


def identify(request: HttpRequest) -> Identity:
    """The session's user, else a shared link's visitor, else the owner of a valid token,
    else the user of a valid Basic password, else anonymous.

    Raises BadCredentials for an Authorization header that is neither Basic nor
    Bearer, is malformed, or carries a token that is unknown, revoked, expired,
    or whose owner is inactive or not the Basic username; and for a visit whose
    share has been revoked, has expired, or whose owner may no longer share.
    Raises AmbiguousCredentials, before reading any, for credentials that could be
    read two ways.
    """
    ambiguous = ambiguity(request)
    if ambiguous:
        raise AmbiguousCredentials(ambiguous)
    if request.user.is_authenticated:
        return Identity(request.user, SESSION)
    visit = visit_of(request)
    if visit is not None:
        if visit.ended or visit.share is None or visit.owner is None:
            raise BadCredentials(visit.ended)
        return Identity(visit.owner, visit.share.credential, VISITOR_PERMISSIONS, share=visit.share)
    found = authorization(request)
    if found is None:
        return ANONYMOUS
    scheme, value = found
    if scheme == "bearer":
        return token_identity(request, value, username=None)
    username, _, password = value.partition(":")
    # A password shaped like a token is a token (the password validators refuse such passwords).
    if looks_like_token(password):
        return token_identity(request, password, username=username)
    return password_identity(request, username, password)


def token_identity(request: HttpRequest, secret: str, username: str | None) -> Identity:
    token = AccessToken.objects.for_secret(secret)
    if token is None or token.revoked_at is not None:
        raise BadCredentials("unknown or revoked access token")
    if token.is_expired:
        raise BadCredentials("this access token has expired; create a new one on the portal")
    # Loaded afresh on every request: deactivating the owner ends their tokens at once.
    user = ModelBackend().get_user(token.user_id)
    if user is None:
        raise BadCredentials("unknown or revoked access token")
    if username is not None and username != user.get_username():
        raise BadCredentials("with HTTP Basic, a token's username must be its owner's")
    try:
        token.touch(client_ip(request))
    except DatabaseError as error:
        # "Last used" is a convenience: the request itself is still audited, or refused.
        logger.warning("could not record the use of %s: %s", token.credential, error)
    return Identity(user, token.credential, token.permissions, expires_at=token.expires_at)


@dataclass(frozen=True)
class Remembered:
    user_id: object
    password_hash: str


class RememberedPasswords:
    """Basic (username, password) pairs this process has checked, by keyed digest, each
    for BASIC_AUTH_CACHE_SECONDS."""

    def __init__(self) -> None:
        self.key = secrets.token_bytes(32)
        self.entries: TTLCache[Remembered] = TTLCache(
            MAX_REMEMBERED_PASSWORDS, lambda: settings.BASIC_AUTH_CACHE_SECONDS
        )

    def digest(self, username: str, password: str) -> bytes:
        # Unambiguous: a Basic username cannot contain ':'.
        return hmac.new(self.key, f"{username}:{password}".encode(), hashlib.sha256).digest()

    def get(self, digest: bytes) -> Remembered | None:
        return self.entries.get(digest)

    def remember(self, digest: bytes, user: User, seconds: int) -> None:
        self.entries.set(digest, Remembered(user.pk, user.password), seconds)

    def forget(self, digest: bytes) -> None:
        self.entries.pop(digest)

    def clear(self) -> None:
        self.entries.clear()


remembered_passwords = RememberedPasswords()
# An API client opening 8 connections at once would otherwise run the hasher up to 8
# times per worker: 0.7-1.6 s for each of its first requests on 2 cores, against
# 0.3 s with one run (docs/performance.md). Failed checks are each made, for django-axes.
_checking = OneAtATime(wait_seconds=5)


def password_identity(request: HttpRequest, username: str, password: str) -> Identity:
    user_model = get_user_model()
    # The username field is a CharField, so a field with a max_length, not a relation nor None.
    if len(username) > user_model._meta.get_field(user_model.USERNAME_FIELD).max_length:  # type: ignore[operator,union-attr]
        return ANONYMOUS  # no such user; django-axes' column could not even record the attempt
    digest = remembered_passwords.digest(username, password)
    identity = remembered_identity(request, digest, username)
    if identity is not None:
        return identity
    if not settings.BASIC_AUTH_CACHE_SECONDS:
        return checked_identity(request, digest, username, password)  # nothing to wait for
    with _checking.turn(digest):
        # Checked by the thread whose turn came first, if it was the right password.
        identity = remembered_identity(request, digest, username)
        if identity is not None:
            return identity
        return checked_identity(request, digest, username, password)


def remembered_identity(request: HttpRequest, digest: bytes, username: str) -> Identity | None:
    entry = remembered_passwords.get(digest)
    if entry is None:
        return None
    user = still_valid(request, entry, username)
    if user is not None:
        return Identity(user, BASIC)
    remembered_passwords.forget(digest)
    return None


def checked_identity(request: HttpRequest, digest: bytes, username: str, password: str) -> Identity:
    """The full check: django-axes (lockout, failure counting) and the hasher."""
    user = authenticate(request, username=username, password=password)
    if user is None:
        return ANONYMOUS
    seconds = settings.BASIC_AUTH_CACHE_SECONDS
    if seconds:
        remembered_passwords.remember(digest, user, seconds)
    return Identity(user, BASIC)


def still_valid(request: HttpRequest, entry: Remembered, username: str) -> User | None:
    """The remembered user, if still active, with the same username and password hash,
    and not locked out (django-axes' own check, for this username and address)."""
    user = ModelBackend().get_user(entry.user_id)
    if user is None or user.get_username() != username:
        return None
    if not hmac.compare_digest(user.password, entry.password_hash):
        return None
    if locked_out(request, username):
        return None
    return user


def locked_out(request: HttpRequest, username: str) -> bool:
    """django-axes' own verdict, asked only when axes holds a failed attempt for this username
    or this address: its check costs 0.45 ms of CPU per request (an aggregate built by the
    ORM), the look for any attempt 0.05 ms. Without one, nothing can be locked out."""
    if axes_counts_by_username_or_address() and not attempts_on_record(username, client_ip(request)):
        return False
    return not AxesProxyHandler.is_allowed(request, get_credentials(username))


def axes_counts_by_username_or_address() -> bool:
    """True when every lockout axes can reach needs a stored attempt naming the username or
    the address, as with this portal's settings; anything else gets axes' full check."""
    parameters = settings.AXES_LOCKOUT_PARAMETERS
    # The three below are axes' own defaults (axes/conf.py sets them), not in settings.py.
    return (
        settings.AXES_HANDLER == "axes.handlers.database.AxesDatabaseHandler"  # type: ignore[misc]
        and not settings.AXES_IP_BLACKLIST  # type: ignore[misc]
        and settings.AXES_USERNAME_CALLABLE is None  # type: ignore[misc]
        and isinstance(parameters, list | tuple)
        and all(
            {"username", "ip_address"} & ({group} if isinstance(group, str) else set(group))
            for group in parameters
        )
    )


def attempts_on_record(username: str, address: str | None) -> bool:
    connection = connections[router.db_for_read(AccessAttempt)]
    quote = connection.ops.quote_name
    # Identifiers come from axes' model, quoted; every value is a parameter.
    meta = AccessAttempt._meta
    table = quote(meta.db_table)
    user_column, address_column = (quote(meta.get_field(name).column) for name in ("username", "ip_address"))
    sql = f"SELECT 1 FROM {table} WHERE {user_column} = %s OR {address_column} = %s LIMIT 1"  # noqa: S608
    with connection.cursor() as cursor:
        cursor.execute(sql, [username, connection.ops.adapt_ipaddressfield_value(address)])
        return cursor.fetchone() is not None
