"""Deny by default, for accounts and for shared links' visitors alike.

Django's LoginRequiredMiddleware sends anonymous users to the login page; a
shared link's visitor is anonymous too, and reaches only the views marked
`share_visitors_allowed`: the viewer's page and config, /pacs (where the
decision confines them to the shared study), nginx's decision and refusal
endpoints, and the shared-link pages. Every other page (the portal's home,
audit, admin, tokens, shares) is refused with a page that says why.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from django.contrib.auth import middleware
from django.http import HttpRequest, HttpResponse, HttpResponseBase
from django.template.response import TemplateResponse
from django.urls import URLPattern

from shares.links import visit_of

View = TypeVar("View", bound=Callable[..., Any])
CONFINED = "A shared link opens one study in the viewer; the rest of the portal needs an account."


def share_visitors_allowed(view: View | None = None, *, decides_itself: bool = False) -> Any:
    """Mark a view a shared link's visitor may reach.

    `decides_itself`: the view answers an ended visit itself (the proxy's decision
    refuses it, the shared-link pages explain it); other marked views get the
    page that says the visit has ended.
    """

    def mark(function: View) -> View:
        # A mark on the view, as Django's login_not_required makes: functions declare no such attribute.
        function.share_visitors = "decides" if decides_itself else "page"  # type: ignore[attr-defined]
        return function

    return mark(view) if view is not None else mark


def decided_for_visitors(patterns: list[URLPattern]) -> list[URLPattern]:
    """Routes a visitor may reach whose views answer an ended visit themselves."""
    for pattern in patterns:
        share_visitors_allowed(pattern.callback, decides_itself=True)
    return patterns


def visit_refused(request: HttpRequest, reason: str, status: int = 403) -> HttpResponse:
    response = TemplateResponse(
        request, "shares/ended.html", {"reason": reason, "visitor": True}, status=status
    )
    response["Cache-Control"] = "no-store, private"
    return response.render()


class LoginRequiredMiddleware(middleware.LoginRequiredMiddleware):
    def process_view(
        self,
        request: HttpRequest,
        view_func: Callable[..., HttpResponseBase],
        view_args: tuple[Any, ...],
        view_kwargs: dict[str, Any],
    ) -> HttpResponseBase | None:
        if request.user.is_authenticated:
            return None
        visit = visit_of(request)
        if visit is None:
            return super().process_view(request, view_func, view_args, view_kwargs)
        allowed = getattr(view_func, "share_visitors", "")
        if not allowed:
            return visit_refused(request, CONFINED)
        if visit.ended and allowed == "page":
            return visit_refused(request, visit.ended)
        return None
