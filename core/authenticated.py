"""The request a login-required view receives: LoginRequiredMiddleware let only users through."""

from __future__ import annotations

from typing import TYPE_CHECKING

from django.http import HttpRequest

if TYPE_CHECKING:
    from django.contrib.auth.models import User


class AuthenticatedRequest(HttpRequest):
    """For annotations only (the django-stubs pattern): Django passes an HttpRequest
    whose user LoginRequiredMiddleware has checked; this says so to the type checker."""

    user: User
