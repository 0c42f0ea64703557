"""A recording stand-in for Orthanc: remembers every request that reaches it.

Used where the test must see exactly what the proxy sends upstream (header
hygiene, paths that must never arrive) or must make the upstream misbehave
(slow, down, hostile response headers).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Recorded:
    method: str
    path: str
    headers: dict[str, str]
    body_length: int


@dataclass
class Recorder:
    port: int
    requests: list[Recorded] = field(default_factory=list)
    server: ThreadingHTTPServer | None = None
    slow_seconds: float = 5.0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:
                return

            def handle_any(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                if len(body) < length:
                    return  # an aborted upload is not a request that arrived
                recorder.requests.append(
                    Recorded(
                        self.command, self.path, {k.lower(): v for k, v in self.headers.items()}, len(body)
                    )
                )
                if "slow" in self.path:
                    time.sleep(recorder.slow_seconds)
                payload = b'{"recorded": true}'
                # Paths naming a status make the stand-in answer with it.
                self.send_response(
                    403 if "forbidden" in self.path else 401 if "unauthorized" in self.path else 200
                )
                self.send_header("Content-Type", "application/dicom+json")
                self.send_header("Content-Length", str(len(payload)))
                self.send_header("WWW-Authenticate", 'Basic realm="Orthanc Secure Area"')
                self.send_header("Set-Cookie", "orthanc-session=leak; Path=/")
                self.send_header("Server", "Orthanc-recorder")
                self.send_header("X-Upstream-Private", "1")
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(payload)

            do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = do_PATCH = do_OPTIONS = handle_any

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None

    def paths(self) -> list[str]:
        return [request.path for request in self.requests]
