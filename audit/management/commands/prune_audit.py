from __future__ import annotations

from datetime import UTC, date, datetime, time
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import connection, transaction
from django.db.models import Count, Min
from django.utils import timezone

from audit.models import AccessSummary, Action, AuditEvent

RECOUNT_BATCH = 1000


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
            recount_summary(cutoff)
            AuditEvent.objects.record(
                Action.AUDIT_PRUNE,
                user=None,
                username="manage.py prune_audit",
                detail=f"removed {deleted} events before {before.isoformat()}",
            )
        self.stdout.write(f"Removed {deleted} audit events before {before.isoformat()} (UTC).")


def recount_summary(cutoff: datetime) -> None:
    """AccessSummary's lines as the rows left after a prune count them.

    Lines whose rows are all gone go; a line with rows on both sides of the cutoff is
    counted again from its rows left, a query each (a first prune of a large table
    recounts many: run it in quiet hours). Its lock (PostgreSQL) holds back a new row's
    trigger until this transaction ends, so that row is counted after, not lost.
    """
    AccessSummary.objects.filter(last__lt=cutoff).delete()
    straddling = AccessSummary.objects.select_for_update().filter(first__lt=cutoff).order_by("pk")
    after = 0
    # In batches by key, not one cursor: SQLite must not read a table it is changing.
    while batch := list(straddling.filter(pk__gt=after)[:RECOUNT_BATCH]):
        for line in batch:
            recount(line)
        after = batch[-1].pk


def recount(line: AccessSummary) -> None:
    rows = AuditEvent.objects.filter(
        patient_id=line.patient_id,
        study_uid=line.study_uid,
        username=line.username,
        credential=line.credential,
        action=line.action,
        success=True,
    )
    address = {"client_ip": line.client_ip} if line.client_ip else {"client_ip__isnull": True}
    left = rows.filter(**address).aggregate(first=Min("action_time"), rows=Count("id"))
    if left["rows"]:
        AccessSummary.objects.filter(pk=line.pk).update(first=left["first"], rows=left["rows"])
    else:
        AccessSummary.objects.filter(pk=line.pk).delete()
