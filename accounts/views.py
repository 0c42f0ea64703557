"""The access token page: create (the secret shown once), list and revoke one's own tokens."""

from __future__ import annotations

from django.core.exceptions import PermissionDenied
from django.http import HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_http_methods, require_POST

from accounts import tokens
from accounts.forms import TokenForm
from accounts.models import AccessToken, IssuedSecret
from accounts.permissions import has_perm
from core import roles
from core.authenticated import AuthenticatedRequest


def require_token_role(request: AuthenticatedRequest) -> None:
    # Tokens read studies at least: clinicians and up.
    if not has_perm(request.user, roles.READ_STUDIES):
        raise PermissionDenied("your role does not allow access tokens")


@never_cache
@require_http_methods(["GET", "HEAD", "POST"])
def token_list(request: AuthenticatedRequest) -> HttpResponse:
    require_token_role(request)
    form = TokenForm(request.user, request.POST if request.method == "POST" else None)
    created: AccessToken | None = None
    secret = ""
    status = 200
    if form.is_bound:
        if form.is_valid():
            created, secret = tokens.create(
                request, form.cleaned_data["name"], form.cleaned_data["scope"], form.cleaned_data["days"]
            )
            form = TokenForm(request.user)
            status = 201
        else:
            status = 400
    # Answered, not redirected: the secret exists in this one response only
    # (a redirect would have to park it in the session or a cookie).
    context = {
        "form": form,
        "created": created,
        "secret": secret,
        "tokens": AccessToken.objects.filter(user=request.user),
    }
    return render(request, "accounts/tokens.html", context, status=status)


@require_POST
def token_revoke(request: AuthenticatedRequest, pk: int) -> HttpResponse:
    require_token_role(request)
    return revoke_own(request, AccessToken, pk, "accounts:tokens")


def revoke_own(request: AuthenticatedRequest, issued: type[IssuedSecret], pk: int, then: str) -> HttpResponse:
    """Revoke one of the user's own tokens or links (another's is a 404), then go back to the list."""
    get_object_or_404(issued, pk=pk, **{issued.OWNER: request.user}).revoke(request)
    return redirect(then)
