from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import FrameType
from typing import Any

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError

from devstack import nginx as front
from devstack import orthanc_server
from pacsportal.front import FrontStartError
from pacsportal.localenv import BASE_DIR

# Seconds before restarting a dead Orthanc: the first wait, and the longest.
RESTART_BACKOFF = (1, 30)


class Command(BaseCommand):
    help = (
        "Run the embedded default: start the local Orthanc, load the demo studies once, "
        "and serve the portal with gunicorn until Ctrl-C, which stops Orthanc too. "
        "Orthanc is restarted if it dies meanwhile."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        server = orthanc_server.from_settings()
        try:
            server.start()
        except (orthanc_server.OrthancNotInstalled, orthanc_server.OrthancStartError) as error:
            raise CommandError(str(error)) from None
        self.stdout.write(f"Orthanc is up on {server.url} (loopback only; log: {server.log_path})")
        try:
            call_command("load_demo", stdout=self.stdout)
            self.serve(server)
        finally:
            server.stop()
            self.stdout.write("Orthanc stopped.")

    def serve(self, server: orthanc_server.OrthancServer) -> None:
        scheme = "https" if os.environ.get("TLS_CERT_FILE") else "http"
        port = os.environ.get("PORT", "8000")
        environment, nginx = dict(os.environ), None
        if settings.PORTAL_FRONT == "nginx":
            sockets = settings.VAR_DIR / "run"
            sockets.mkdir(mode=0o700, exist_ok=True)
            nginx = front.from_settings(int(port), sockets / "gunicorn.sock")
            # Only nginx reaches the socket, and it sets X-Forwarded-Proto itself.
            # The portal empties nginx's decision cache when access changes (accounts/revocation.py).
            environment.update(
                GUNICORN_BIND=f"unix:{sockets / 'gunicorn.sock'}",
                TRUST_PROXY_SSL_HEADER="true",
                NGINX_DECISION_CACHE_DIR=str(nginx.decision_cache),
            )
        gunicorn = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-c", str(BASE_DIR / "gunicorn.conf.py"), "pacsportal.wsgi"],
            cwd=BASE_DIR,
            env=environment,
        )
        if nginx is not None:
            try:
                # gunicorn first: nginx must never answer 502 for a portal still booting.
                wait_for_socket(sockets / "gunicorn.sock", gunicorn)
                nginx.start()
            except (front.FrontNotInstalled, FrontStartError) as error:
                gunicorn.terminate()
                gunicorn.wait()
                raise CommandError(str(error)) from None
            self.stdout.write(f"nginx is the front on port {port} (log: {nginx.log_path})")
            if nginx.http_redirect_port:
                self.stdout.write(f"plain HTTP on port {nginx.http_redirect_port} only redirects to it")
        self.stdout.write(self.style.SUCCESS(f"Portal: {scheme}://127.0.0.1:{port}/  (Ctrl-C stops it)"))
        self.stdout.flush()
        try:
            self.run_until_stopped(server, gunicorn, nginx)
        finally:
            if nginx is not None:
                nginx.stop()

    def run_until_stopped(
        self,
        server: orthanc_server.OrthancServer,
        gunicorn: subprocess.Popen[bytes],
        nginx: front.NativeFront | None,
    ) -> None:
        def forward(signum: int, frame: FrameType | None) -> None:
            gunicorn.send_signal(signal.SIGTERM)

        signal.signal(signal.SIGINT, forward)
        signal.signal(signal.SIGTERM, forward)
        code = self.supervise(server, gunicorn, nginx)
        if code not in (0, -signal.SIGTERM):
            raise CommandError(f"gunicorn exited with {code}")
        self.stdout.write("Portal stopped.")

    def supervise(
        self,
        server: orthanc_server.OrthancServer,
        gunicorn: subprocess.Popen[bytes],
        nginx: front.NativeFront | None,
    ) -> int:
        """Wait for gunicorn to end, restarting Orthanc (and nginx) whenever one dies meanwhile.

        The portal answers 502 while Orthanc is down; restarts back off from 1 s
        to 30 s while Orthanc keeps dying, and reset once it has stayed up a minute.
        """
        backoff, up_since = RESTART_BACKOFF[0], time.monotonic()
        while True:
            try:
                return gunicorn.wait(timeout=1)
            except subprocess.TimeoutExpired:
                pass
            if nginx is not None and nginx.process is not None and nginx.process.poll() is not None:
                self.stderr.write(f"nginx exited with {nginx.process.returncode}; restarting it")
                nginx.start()
            if server.process is None or server.process.poll() is None:
                continue
            code = server.process.returncode
            if time.monotonic() - up_since > 60:
                backoff = RESTART_BACKOFF[0]
            self.stderr.write(
                f"Orthanc exited with {code}; restarting it in {backoff} s (log: {server.log_path})"
            )
            time.sleep(backoff)
            backoff = min(backoff * 2, RESTART_BACKOFF[1])
            try:
                server.start()
            except orthanc_server.OrthancStartError as error:
                self.stderr.write(f"Orthanc did not come back: {error}")
                continue
            up_since = time.monotonic()
            self.stdout.write(f"Orthanc is up again on {server.url}")


def wait_for_socket(path: Path, process: subprocess.Popen[bytes], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise FrontStartError(f"gunicorn exited with {process.returncode} before listening")
        with socket.socket(socket.AF_UNIX) as probe:
            if probe.connect_ex(str(path)) == 0:
                return
        time.sleep(0.1)
    raise FrontStartError(f"gunicorn did not listen on {path} within {timeout:.0f} s")
