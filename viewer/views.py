"""The viewer's page and config: Django serves them, to logged-in users only, never cached."""

from __future__ import annotations

import functools

from django.http import HttpRequest, HttpResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_safe

from viewer import bundle
from viewer.config import app_config_js

ISOLATION_HEADERS = {
    # OHIF's volume (MPR) views need SharedArrayBuffer, hence cross-origin isolation.
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Embedder-Policy": "require-corp",
}


@functools.lru_cache(maxsize=1)
def index_html(version: str) -> bytes:
    return (bundle.dist_dir() / "index.html").read_bytes()


def isolated(response: HttpResponse) -> HttpResponse:
    for name, value in ISOLATION_HEADERS.items():
        response[name] = value
    return response


@require_safe
@never_cache
def index(request: HttpRequest, route: str = "") -> HttpResponse:
    """OHIF's single page, for every viewer route (study list, /viewer?..., /segmentation...)."""
    if not bundle.is_installed():
        return HttpResponse(
            "The viewer is not installed. Run `make run` (or `.venv/bin/python -m viewer.bundle`).",
            status=503,
            content_type="text/plain",
        )
    return isolated(HttpResponse(index_html(bundle.VERSION), content_type="text/html; charset=utf-8"))


@require_safe
@never_cache
def app_config(request: HttpRequest) -> HttpResponse:
    return isolated(HttpResponse(app_config_js(request.user), content_type="text/javascript; charset=utf-8"))
