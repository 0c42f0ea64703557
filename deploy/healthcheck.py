"""Container health check: GET /healthz on the portal itself, as an allowed host."""

from __future__ import annotations

import os
import ssl
import sys
import urllib.request

hosts = [host.strip() for host in os.environ.get("ALLOWED_HOSTS", "").split(",") if host.strip()]
host = next((h for h in hosts if not h.startswith(".") and h != "*"), "localhost")
tls = bool(os.environ.get("TLS_CERT_FILE"))
url = f"{'https' if tls else 'http'}://127.0.0.1:{os.environ.get('PORT', '8000')}/healthz"
# Checking our own certificate against our own loopback address proves nothing: skip it.
context = ssl._create_unverified_context() if tls else None  # noqa: S323
request = urllib.request.Request(url, headers={"Host": host})  # noqa: S310  (our own http(s) URL)
try:
    with urllib.request.urlopen(request, timeout=5, context=context) as response:  # noqa: S310
        sys.exit(0 if response.status == 200 else 1)
except Exception as error:  # any failure is "unhealthy"
    print(f"unhealthy: {error}", file=sys.stderr)
    sys.exit(1)
