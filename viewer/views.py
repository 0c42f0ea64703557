"""The viewer's page and config: Django serves them, to logged-in users only, never cached."""

from __future__ import annotations

import base64
import functools
import hashlib
import re

from django.http import HttpRequest, HttpResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_safe

from shares.middleware import share_visitors_allowed
from viewer import bundle
from viewer.config import app_config_js

ISOLATION_HEADERS = {
    # OHIF's volume (MPR) views need SharedArrayBuffer, hence cross-origin isolation.
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Embedder-Policy": "require-corp",
}


INLINE_SCRIPT = re.compile(rb"<script>(.*?)</script>", re.DOTALL)


@functools.lru_cache(maxsize=1)
def index_html(version: str) -> bytes:
    return (bundle.dist_dir() / "index.html").read_bytes()


@functools.lru_cache(maxsize=1)
def viewer_policy(version: str) -> str:
    """The smallest policy OHIF runs under: its two inline scripts by hash,
    WebAssembly compilation, workers from blob: URLs, images from blob: and data:."""
    hashes = " ".join(
        "'sha256-" + base64.b64encode(hashlib.sha256(script).digest()).decode() + "'"
        for script in INLINE_SCRIPT.findall(index_html(version))
    )
    return "; ".join(
        [
            "default-src 'self'",
            f"script-src 'self' 'wasm-unsafe-eval' {hashes}",
            "worker-src 'self' blob:",
            "style-src 'self' 'unsafe-inline'",
            "img-src 'self' data: blob:",
            "font-src 'self' data:",
            "connect-src 'self' data: blob:",
            "media-src 'self' blob:",
            "object-src 'none'",
            "base-uri 'self'",
            "form-action 'self'",
            "frame-ancestors 'none'",
        ]
    )


def isolated(response: HttpResponse) -> HttpResponse:
    for name, value in ISOLATION_HEADERS.items():
        response[name] = value
    if bundle.is_installed():
        response["Content-Security-Policy"] = viewer_policy(bundle.VERSION)
    return response


@share_visitors_allowed
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


@share_visitors_allowed
@require_safe
@never_cache
def app_config(request: HttpRequest) -> HttpResponse:
    response = isolated(HttpResponse(app_config_js(request), content_type="text/javascript; charset=utf-8"))
    # It carries the user's name and a CSRF token: no other site may load it as a script.
    response["Cross-Origin-Resource-Policy"] = "same-origin"
    return response
