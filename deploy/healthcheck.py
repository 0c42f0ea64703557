"""Container health check: GET /healthz on the portal itself, as a host it allows."""

from __future__ import annotations

import os
import ssl
import sys
import urllib.request


def allowed_host(allowed_hosts: str) -> str:
    """A Host header Django accepts: the first name in ALLOWED_HOSTS; for a
    `.example.org` entry, `example.org` itself (the entry allows the domain and
    every subdomain); localhost when only `*` is allowed."""
    for entry in (item.strip() for item in allowed_hosts.split(",")):
        if entry and entry != "*":
            return entry.lstrip(".")
    return "localhost"


def main() -> int:
    host = allowed_host(os.environ.get("ALLOWED_HOSTS", ""))
    # Behind compose's front (FRONT_CONFIG_DIR), the certificate is nginx's: gunicorn speaks plain HTTP.
    tls = bool(os.environ.get("TLS_CERT_FILE")) and not os.environ.get("FRONT_CONFIG_DIR")
    url = f"{'https' if tls else 'http'}://127.0.0.1:{os.environ.get('PORT', '8000')}/healthz"
    # Checking our own certificate against our own loopback address proves nothing: skip it.
    context = ssl._create_unverified_context() if tls else None  # noqa: S323
    request = urllib.request.Request(url, headers={"Host": host})  # noqa: S310  (our own http(s) URL)
    try:
        with urllib.request.urlopen(request, timeout=5, context=context) as response:  # noqa: S310
            return 0 if response.status == 200 else 1
    except Exception as error:  # any failure is "unhealthy"
        print(f"unhealthy: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
