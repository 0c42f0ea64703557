"""Logins, logouts, failed logins and lockouts, from Django's and django-axes' signals."""

from __future__ import annotations

from typing import Any

from axes.signals import user_locked_out
from django.contrib.auth.signals import user_logged_in, user_logged_out, user_login_failed
from django.dispatch import receiver
from django.http import HttpRequest

from audit.models import Action, AuditEvent


@receiver(user_logged_in)
def record_login(sender: Any, request: HttpRequest | None, user: Any, **kwargs: Any) -> None:
    AuditEvent.objects.record(Action.LOGIN, request=request, user=user, status=200)


@receiver(user_logged_out)
def record_logout(sender: Any, request: HttpRequest | None, user: Any, **kwargs: Any) -> None:
    AuditEvent.objects.record(Action.LOGOUT, request=request, user=user, status=200)


@receiver(user_login_failed)
def record_login_failed(
    sender: Any, credentials: dict[str, Any], request: HttpRequest | None = None, **kwargs: Any
) -> None:
    username = str(credentials.get("username", ""))
    AuditEvent.objects.record(
        Action.LOGIN_FAILED, request=request, user=None, username=username, status=401, success=False
    )


@receiver(user_locked_out)
def record_lockout(sender: Any, request: HttpRequest | None, username: str | None, **kwargs: Any) -> None:
    AuditEvent.objects.record(
        Action.LOCKOUT, request=request, user=None, username=username or "", status=429, success=False
    )
