"""A password validator: no password may look like an access token."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError

from accounts.models import TOKEN_PREFIX


class NotATokenValidator:
    """A Basic password starting with the token prefix is read as a token, so it could never log in."""

    def validate(self, password: str, user: Any = None) -> None:
        if password.startswith(TOKEN_PREFIX):
            raise ValidationError(
                f"Passwords may not start with {TOKEN_PREFIX!r}: that is how access tokens start.",
                code="password_looks_like_token",
            )

    def get_help_text(self) -> str:
        return f"Your password can't start with {TOKEN_PREFIX!r}."
