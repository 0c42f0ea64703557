"""Hand-written HTTP requests, for input no well-behaved client library would send."""

from __future__ import annotations

import base64
import socket


def basic(username: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()


def send(port: int, request: bytes, *, half_close: bool = False, timeout: float = 20) -> int:
    """Send raw bytes, return the response's status code (0 if the server just closed)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(request)
        if half_close:
            sock.shutdown(socket.SHUT_WR)
        received = b""
        while b"\r\n" not in received:
            chunk = sock.recv(4096)
            if not chunk:
                break
            received += chunk
    if not received.startswith(b"HTTP/1."):
        return 0
    return int(received.split(b" ", 2)[1])


def request(
    method: str, target: str, headers: dict[str, str] | list[tuple[str, str]] | None = None, body: bytes = b""
) -> bytes:
    items = headers.items() if isinstance(headers, dict) else (headers or [])
    lines = [f"{method} {target} HTTP/1.1", "Host: 127.0.0.1", "Connection: close"]
    lines += [f"{name}: {value}" for name, value in items]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body
