"""Creating and revoking access tokens: each one a single transaction with its audit row."""

from __future__ import annotations

from django.db import transaction
from django.http import HttpRequest
from django.utils import timezone

from accounts import revocation
from accounts.models import AccessToken
from audit.models import Action, AuditEvent


def create(request: HttpRequest, name: str, scope: str, days: int) -> tuple[AccessToken, str]:
    """A new token for the request's user, and its secret (to show once, never to store)."""
    with transaction.atomic():
        token, secret = AccessToken.objects.issue(request.user, name, scope, days)  # type: ignore[arg-type]
        AuditEvent.objects.record(
            Action.TOKEN_CREATED,
            request=request,
            credential="session",
            status=201,
            detail=f"{token.credential}, scope {token.scope}, expires {token.expires_at:%Y-%m-%d %H:%M} UTC",
        )
    return token, secret


def revoke(request: HttpRequest, token: AccessToken) -> bool:
    """Revoke the token (by its owner, or an admin); False if it already was."""
    with transaction.atomic():
        revoked = AccessToken.objects.filter(pk=token.pk, revoked_at__isnull=True).update(
            revoked_at=timezone.now()
        )
        if revoked:
            revocation.forget_decisions()
            owner = token.user.get_username()
            AuditEvent.objects.record(
                Action.TOKEN_REVOKED,
                request=request,
                credential="session",
                status=200,
                detail=f"{token.credential} of {owner}, scope {token.scope}",
            )
    return bool(revoked)
