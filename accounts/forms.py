"""The log-in form, and the form that creates an access token."""

from __future__ import annotations

import re
from typing import Any

from django import forms
from django.conf import settings
from django.contrib.admin.forms import AdminAuthenticationForm
from django.contrib.auth.forms import AuthenticationForm
from django.contrib.auth.models import User
from django.core.validators import MaxValueValidator

from accounts.models import TOKEN_NAME_LENGTH, AccessToken, TokenScope, scopes_for

# Names appear in audit rows and logs as "token:<name>": letters, digits and a few separators.
NAME = re.compile(r"[\w .@+-]+")


class UsernameLength(AuthenticationForm):
    """A log-in form with its username length enforced. Django sets the field's
    max_length after the field is made, so no validator checks it, and the check of the
    password then hands django-axes a username longer than its column: PostgreSQL
    refuses the failed attempt's row (a 503 for bad input) where SQLite stores it."""

    def clean_username(self) -> str:
        username: str = self.cleaned_data["username"]
        limit = self.username_field.max_length
        if limit is not None and len(username) > limit:
            raise forms.ValidationError(
                "A username has at most %(limit)d characters.",
                params={"limit": limit},
            )
        return username


class LoginForm(UsernameLength):
    """The portal's log-in page."""


class AdminLoginForm(UsernameLength, AdminAuthenticationForm):
    """Django admin's own log-in page (staff only, as Django's)."""


class TokenForm(forms.Form):
    name = forms.CharField(
        max_length=TOKEN_NAME_LENGTH,
        help_text="What the token is for, e.g. 'research laptop' or 'nightly export'.",
    )
    scope = forms.ChoiceField(help_text="A token can never do more than your role allows.")
    days = forms.IntegerField(label="Expires in (days)", min_value=1)

    def __init__(self, user: User, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.user = user
        allowed = scopes_for(user)
        scope_field = self.fields["scope"]
        assert isinstance(scope_field, forms.ChoiceField)  # declared so below
        scope_field.choices = [(scope.value, scope.label) for scope in allowed]
        scope_field.initial = TokenScope.READ
        limit_days(self.fields["days"], settings.ACCESS_TOKEN_DEFAULT_DAYS, settings.ACCESS_TOKEN_MAX_DAYS)

    def clean_name(self) -> str:
        name = " ".join(self.cleaned_data["name"].split())
        if not NAME.fullmatch(name):
            raise forms.ValidationError("Use letters, digits, spaces and . @ + - _ only.")
        if AccessToken.objects.filter(user=self.user, name=name, revoked_at__isnull=True).exists():
            raise forms.ValidationError("You already have a token with this name; revoke it or pick another.")
        return name


def limit_days(field: forms.Field, default: int, most: int) -> None:
    """How long an issued secret may live: set as the form is made (the limits are settings)."""
    field.initial = default
    field.validators.append(MaxValueValidator(most))
    field.widget.attrs["max"] = most
    field.help_text = f"At most {most} days."
