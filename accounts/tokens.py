"""Creating an access token: one transaction with its audit row (its revocation is `AccessToken.revoke`)."""

from __future__ import annotations

from django.db import transaction

from accounts.models import AccessToken
from audit.models import Action, AuditEvent
from core.authenticated import AuthenticatedRequest


def create(request: AuthenticatedRequest, name: str, scope: str, days: int) -> tuple[AccessToken, str]:
    """A new token for the request's user, and its secret (to show once, never to store)."""
    with transaction.atomic():
        token, secret = AccessToken.objects.issue(request.user, name, scope, days)
        AuditEvent.objects.record(
            Action.TOKEN_CREATED,
            request=request,
            credential="session",
            status=201,
            detail=f"{token.credential}, scope {token.scope}, expires {token.expires_at:%Y-%m-%d %H:%M} UTC",
        )
    return token, secret
