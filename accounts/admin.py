"""Access tokens in Django admin: every user's, read-only, revocable; never the secret."""

from __future__ import annotations

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from accounts.forms import AdminLoginForm
from accounts.models import AccessToken, IssuedSecret
from core.admin import ReadOnlyAdmin

# Django admin's log-in page checks passwords too: the same username limit as the portal's.
admin.site.login_form = AdminLoginForm


class IssuedSecretAdmin(ReadOnlyAdmin):
    """Tokens and shared links: every user's, read-only, revocable (each revocation audited);
    never the secret, which is shown once, to its owner, on the portal's pages."""

    exclude = ["digest"]
    actions = ["revoke"]

    @admin.display(description="status")
    def status(self, issued: IssuedSecret) -> str:
        return issued.status

    @admin.action(description="Revoke the selected %(verbose_name_plural)s")
    def revoke(self, request: HttpRequest, queryset: QuerySet[IssuedSecret]) -> None:
        revoked = sum(issued.revoke(request) for issued in queryset.select_related())
        self.message_user(request, f"Revoked {revoked} {self.opts.verbose_name_plural}.", messages.SUCCESS)


@admin.register(AccessToken)
class AccessTokenAdmin(IssuedSecretAdmin):
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
