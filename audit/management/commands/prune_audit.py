from __future__ import annotations

from datetime import UTC, date, datetime, time
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import connection, transaction
from django.utils import timezone

from audit.models import Action, AuditEvent


class Command(BaseCommand):
    help = (
        "Delete audit events older than a date (retention). The pruning itself is recorded "
        "as an audit event. DATE is YYYY-MM-DD, midnight UTC."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--before", required=True, type=date.fromisoformat, help="YYYY-MM-DD")

    def handle(self, *args: Any, before: date, **options: Any) -> None:
        cutoff = datetime.combine(before, time.min, tzinfo=UTC)
        if cutoff > timezone.now():
            raise CommandError(f"--before {before} is in the future: that would delete today's events")
        with transaction.atomic():
            if connection.vendor == "postgresql":
                with connection.cursor() as cursor:
                    cursor.execute("SET LOCAL pacsportal.audit_prune = 'on'")
            deleted, _ = AuditEvent.objects.filter(action_time__lt=cutoff).delete()
            AuditEvent.objects.record(
                Action.AUDIT_PRUNE,
                user=None,
                username="manage.py prune_audit",
                detail=f"removed {deleted} events before {before.isoformat()}",
            )
        self.stdout.write(f"Removed {deleted} audit events before {before.isoformat()} (UTC).")
