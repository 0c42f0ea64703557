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
    """REMOTE_ADDR, or behind trusted proxies the right-most address they did not add.

    An empty REMOTE_ADDR is a peer on gunicorn's unix socket: the portal's own
    nginx, which sets X-Forwarded-For to the client's address.
    """
    address = request.META.get("REMOTE_ADDR")
    if address == "":
        return _last_hop(request) or None
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


def _last_hop(request: HttpRequest) -> str:
    hops = [hop.strip() for hop in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",") if hop.strip()]
    if not hops:
        return ""
    try:
        return str(ipaddress.ip_address(hops[-1]))
    except ValueError:
        return ""
