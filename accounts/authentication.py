"""Who is asking: the session's user, or the user of HTTP Basic credentials.

A browser (OHIF, Orthanc Explorer) comes with its Django session; API clients
(dicomweb-client, curl, scripts) send HTTP Basic credentials checked against
Django users, through django-axes so failures count towards lockout. Basic
auth never creates a session.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass

from django.contrib.auth import authenticate
from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.http import HttpRequest

SESSION = "session"
BASIC = "basic"


class BadCredentials(ValueError):
    pass


@dataclass(frozen=True)
class Identity:
    """A user and the credential they proved it with ('' when anonymous)."""

    user: AbstractBaseUser | AnonymousUser
    credential: str

    @property
    def is_authenticated(self) -> bool:
        return bool(self.user.is_authenticated)


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


def identify(request: HttpRequest) -> Identity:
    """The session's user, else the user of valid Basic credentials, else anonymous.

    Raises BadCredentials for an Authorization header that is not Basic or is malformed.
    """
    if request.user.is_authenticated:
        return Identity(request.user, SESSION)
    credentials = basic_credentials(request)
    if credentials is None:
        return Identity(AnonymousUser(), "")
    user = authenticate(request, username=credentials[0], password=credentials[1])
    if user is None:
        return Identity(AnonymousUser(), "")
    return Identity(user, BASIC)
