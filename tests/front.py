"""The portal's nginx in front of a test portal: gunicorn moves to a unix socket, nginx takes its port."""

from __future__ import annotations

from typing import TypedDict

import pytest

from devstack.nginx import FrontNotInstalled, NativeFront
from devstack.orthanc_server import OrthancServer
from tests.services import LivePortal


def start_front(portal: LivePortal, orthanc: OrthancServer, workers: int = 1) -> NativeFront:
    """Render and start nginx on the portal's port; the portal then starts behind it."""
    socket_path = portal.work_dir / "gunicorn.sock"
    portal.env["GUNICORN_BIND"] = f"unix:{socket_path}"
    portal.env["TRUST_PROXY_SSL_HEADER"] = "true"  # only nginx reaches the socket
    front = NativeFront(
        work_dir=portal.work_dir / "nginx",
        port=portal.port,
        portal_upstream=f"unix:{socket_path}",
        orthanc_upstream=orthanc.url.removeprefix("http://"),
        orthanc_user=orthanc.user,
        orthanc_password=orthanc.password,
        tls_cert=portal.env.get("TLS_CERT_FILE", ""),
        tls_key=portal.env.get("TLS_KEY_FILE", ""),
        workers=workers,
        site_proxies=tuple(filter(None, portal.env.get("SITE_PROXIES", "").split(","))),
        gzip=portal.env.get("NGINX_GZIP") == "true",
        **upload_limits(portal.env),
    )
    portal.env["NGINX_DECISION_CACHE_DIR"] = str(front.decision_cache)  # as manage.py serve sets it
    try:
        front.start()
    except FrontNotInstalled as error:
        pytest.fail(str(error), pytrace=False)
    portal.front = front  # type: ignore[attr-defined]  # only a fronted portal has one, set here
    return front


class UploadLimits(TypedDict):
    max_uploads: int
    max_uploads_per_client: int


def upload_limits(env: dict[str, str]) -> UploadLimits:
    """NGINX_MAX_UPLOADS and NGINX_MAX_UPLOADS_PER_CLIENT as the portal's settings read them."""
    threads = int(env.get("WEB_WORKERS", "2")) * int(env.get("WEB_THREADS", "8"))
    total = int(env.get("NGINX_MAX_UPLOADS") or max(threads // 2, 1))
    return {
        "max_uploads": total,
        "max_uploads_per_client": int(env.get("NGINX_MAX_UPLOADS_PER_CLIENT") or min(4, total)),
    }
