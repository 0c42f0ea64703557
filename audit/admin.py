from __future__ import annotations

from django.contrib import admin

from audit.models import AuditEvent
from core.admin import ReadOnlyAdmin


@admin.register(AuditEvent)
class AuditEventAdmin(ReadOnlyAdmin):
    """Read-only, even for superusers: the audit trail is append-only."""

    list_display = [
        "action_time",
        "username",
        "action",
        "status",
        "client_ip",
        "study_uid",
        "patient_id",
        "path",
    ]
    list_filter = ["action", "success", "action_time"]
    search_fields = ["username", "study_uid", "series_uid", "sop_uid", "patient_id", "client_ip"]
    date_hierarchy = "action_time"
    show_full_result_count = False
