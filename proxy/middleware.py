"""When Django began a request, for the front decision's freshness rule."""

from __future__ import annotations

import time
from collections.abc import Callable

from django.http import HttpRequest, HttpResponse

STARTED = "pacsportal.started"


class DecisionClockMiddleware:
    """Notes the time before any other middleware reads the session or the user.

    A front decision made from state read long ago is never reused
    (core.revocation_table.FRESH_DECISION_SECONDS): its age counts from here, not from
    the view, so a request that waited between the session middleware and the
    view cannot reach nginx's cache after a revocation's sweeps.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        # In the WSGI environ, the place the WSGI spec gives middleware to hand the app
        # a value (under a prefix of its own): proxy/nginx.py reads it.
        request.META[STARTED] = time.monotonic()
        return self.get_response(request)
