"""Shared links in Django admin: every user's, read-only, revocable; never the secret."""

from __future__ import annotations

from django.contrib import admin

from accounts.admin import IssuedSecretAdmin
from shares.models import Share


@admin.register(Share)
class ShareAdmin(IssuedSecretAdmin):
    """Every user's shared links, read-only, revocable; never the secret."""

    list_display = ["__str__", "owner", "note", "allow_download", "created_at", "expires_at", "status"]
    list_filter = [("revoked_at", admin.EmptyFieldListFilter), "allow_download", "expires_at"]
    search_fields = ["study_uid", "owner__username", "note"]
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
