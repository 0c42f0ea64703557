from __future__ import annotations

import sys
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction


class Command(BaseCommand):
    help = (
        "Create a user, or update an existing one, and add it to portal groups. "
        "The password is read from the first line of standard input with --password-stdin."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("username")
        parser.add_argument(
            "--group",
            action="append",
            default=[],
            dest="groups",
            help="group to add the user to (clinician, uploader, pacs-admin, auditor); repeatable",
        )
        parser.add_argument(
            "--password-stdin",
            action="store_true",
            help="set the password to the first line read from standard input",
        )

    def handle(
        self, *args: Any, username: str, groups: list[str], password_stdin: bool, **options: Any
    ) -> None:
        found = {group.name: group for group in Group.objects.filter(name__in=groups)}
        unknown = sorted(set(groups) - set(found))
        if unknown:
            known = ", ".join(Group.objects.order_by("name").values_list("name", flat=True))
            raise CommandError(f"unknown group(s): {', '.join(unknown)}; known groups: {known}")
        password = self.read_password() if password_stdin else None

        User = get_user_model()
        with transaction.atomic():
            user, created = User.objects.get_or_create(username=username)
            if password is not None:
                try:
                    validate_password(password, user)
                except ValidationError as error:
                    raise CommandError("password rejected: " + " ".join(error.messages)) from None
                user.set_password(password)
            elif created:
                user.set_unusable_password()
            user.is_active = True
            user.save()
            user.groups.add(*found.values())

        member_of = ", ".join(user.groups.order_by("name").values_list("name", flat=True)) or "no group"
        verb = "created" if created else "updated"
        note = "" if password is not None or not created else " (no password set: cannot log in yet)"
        self.stdout.write(f"{verb} user {username}, member of: {member_of}{note}")

    def read_password(self) -> str:
        line = sys.stdin.readline()
        password = line.rstrip("\r\n")
        if not password:
            raise CommandError("--password-stdin: standard input held no password")
        return password
