"""Access tokens in Django admin: every user's, read-only, revocable; never the secret."""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from accounts.forms import AdminLoginForm
from accounts.models import AccessToken

# Django admin's log-in page checks passwords too: the same username limit as the portal's.
admin.site.login_form = AdminLoginForm


@admin.register(AccessToken)
class AccessTokenAdmin(admin.ModelAdmin):
    list_display = [
        "name",
        "user",
        "scope",
        "created_at",
        "expires_at",
        "last_used_at",
        "last_used_ip",
        "status",
    ]
    list_filter = ["scope", ("revoked_at", admin.EmptyFieldListFilter), "expires_at"]
    search_fields = ["name", "user__username"]
    exclude = ["digest"]
    readonly_fields = [
        "user",
        "name",
        "scope",
        "created_at",
        "expires_at",
        "revoked_at",
        "last_used_at",
        "last_used_ip",
    ]
    list_select_related = ["user"]
    actions = ["revoke"]

    @admin.display(description="status")
    def status(self, token: AccessToken) -> str:
        return token.status

    @admin.action(description="Revoke selected tokens")
    def revoke(self, request: HttpRequest, queryset: QuerySet[AccessToken]) -> None:
        revoked = sum(token.revoke(request) for token in queryset.select_related("user"))
        self.message_user(request, f"Revoked {revoked} token(s).", messages.SUCCESS)

    def has_add_permission(self, request: HttpRequest) -> bool:
        # A token's secret is shown once, to its owner, on the portal's token page.
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # Revoked tokens stay, so audit rows naming "token:<name>" can be traced.
        return False
