"""whitenoise serving the OHIF build from the site root, next to Django's static files.

The build hard-codes `/` as its public path, so its files are served at the
root. `index.html` and `app-config.js` are left to Django views (login and
per-user config); `sw.js` is not served at all, so no service worker can keep
copies of anything on a shared workstation.
"""

from __future__ import annotations

import re
from typing import Any

from django.conf import settings as django_settings
from whitenoise.middleware import WhiteNoiseMiddleware

from viewer import bundle

NOT_SERVED = ("index.html", "app-config.js", "sw.js", "serve.json", "_headers", "_redirects")
# Webpack's content hashes: 16 hex digits in `name.bundle.<hash>.js` and `<hash>.wasm`.
HASHED_NAME = re.compile(r"(?:\.[0-9a-f]{16}\.js|^/[0-9a-f]{16}\.(?:wasm|woff2?|ttf|svg|png))$")


def add_isolation_headers(headers: Any, path: str, url: str) -> None:
    # The viewer page is cross-origin isolated (COEP require-corp) for MPR's
    # SharedArrayBuffer: its workers must be too, and every asset says it may
    # be embedded by this origin.
    headers["Cross-Origin-Resource-Policy"] = "same-origin"
    headers["Cross-Origin-Embedder-Policy"] = "require-corp"


class ViewerAssetsMiddleware(WhiteNoiseMiddleware):
    def __init__(self, get_response: Any = None, settings: Any = django_settings) -> None:
        super().__init__(get_response, settings)
        self.add_headers_function = add_isolation_headers
        dist = bundle.dist_dir()
        if bundle.is_installed():
            self.add_files(str(dist), prefix="/")
            for name in NOT_SERVED:
                self.files.pop(f"/{name}", None)

    def immutable_file_test(self, path: str, url: str) -> bool:
        return bool(HASHED_NAME.search(url)) or super().immutable_file_test(path, url)

    def add_cache_headers(self, headers: Any, path: str, url: str) -> None:
        if self.immutable_file_test(path, url):
            # One year, the longest lifetime caches honour (whitenoise says ten).
            headers["Cache-Control"] = "public, max-age=31536000, immutable"
        else:
            super().add_cache_headers(headers, path, url)
