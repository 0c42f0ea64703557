"""The client's address, honouring X-Forwarded-For only from configured proxies."""

from __future__ import annotations

import ipaddress

from django.conf import settings
from django.http import HttpRequest


def _is_trusted(address: str) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in settings.TRUSTED_PROXIES)


def client_ip(request: HttpRequest) -> str | None:
    """REMOTE_ADDR, or behind trusted proxies the right-most address they did not add."""
    address = request.META.get("REMOTE_ADDR") or None
    if address is None or not _is_trusted(address):
        return address
    forwarded = [
        hop.strip() for hop in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",") if hop.strip()
    ]
    for hop in reversed(forwarded):
        try:
            ipaddress.ip_address(hop)
        except ValueError:
            return address  # a malformed chain proves nothing; keep the proxy's address
        if not _is_trusted(hop):
            return hop
        address = hop
    return address
