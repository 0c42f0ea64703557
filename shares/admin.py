"""Shared links in Django admin: every user's, read-only, revocable; never the secret."""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from shares.models import Share


@admin.register(Share)
class ShareAdmin(admin.ModelAdmin):
    """Every user's shared links, read-only, revocable; never the secret."""

    list_display = ["__str__", "owner", "note", "allow_download", "created_at", "expires_at", "status"]
    list_filter = [("revoked_at", admin.EmptyFieldListFilter), "allow_download", "expires_at"]
    search_fields = ["study_uid", "owner__username", "note"]
    exclude = ["digest"]
    readonly_fields = [
        "owner",
        "study_uid",
        "note",
        "allow_download",
        "created_at",
        "expires_at",
        "revoked_at",
    ]
    list_select_related = ["owner"]
    actions = ["revoke"]

    @admin.display(description="status")
    def status(self, share: Share) -> str:
        return share.status

    @admin.action(description="Revoke selected links")
    def revoke(self, request: HttpRequest, queryset: QuerySet[Share]) -> None:
        revoked = sum(share.revoke(request) for share in queryset.select_related("owner"))
        self.message_user(request, f"Revoked {revoked} link(s).", messages.SUCCESS)

    def has_add_permission(self, request: HttpRequest) -> bool:
        # A link's secret is shown once, to its owner, when created from the portal.
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # Revoked links stay, so audit rows naming "share:<id>" can be traced.
        return False
