from __future__ import annotations

import os
import secrets
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = (
        "Create the superuser PORTAL_ADMIN_USER (default admin) if it does not exist, with "
        "PORTAL_ADMIN_PASSWORD or a generated password printed once. An existing user is left as it is."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        username = os.environ.get("PORTAL_ADMIN_USER", "").strip() or "admin"
        User = get_user_model()
        if User.objects.filter(username=username).exists():
            self.stdout.write(f"Admin account: {username} (exists; password unchanged)")
            return
        given = given_password()
        password = given or secrets.token_urlsafe(12)
        User.objects.create_superuser(username=username, password=password, email="")
        if given:
            self.stdout.write(f"Admin account: {username} (password from PORTAL_ADMIN_PASSWORD)")
        else:
            self.stdout.write(self.style.WARNING(f"Admin account: {username}  password: {password}"))
            self.stdout.write("This password is shown once; change it at /accounts/password_change/.")


def given_password() -> str:
    """PORTAL_ADMIN_PASSWORD, or the first line of the file PORTAL_ADMIN_PASSWORD_FILE names."""
    path = os.environ.get("PORTAL_ADMIN_PASSWORD_FILE", "")
    if path:
        with open(path, encoding="utf-8") as secret:
            return secret.readline().rstrip("\r\n")
    return os.environ.get("PORTAL_ADMIN_PASSWORD", "")
