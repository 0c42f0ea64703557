from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from audit.models import AuditEvent


@admin.register(AuditEvent)
class AuditEventAdmin(admin.ModelAdmin):
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

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
