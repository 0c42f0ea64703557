from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from types import FrameType
from typing import Any

from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError

from orthanc import server as orthanc_server
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
        gunicorn = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-c", str(BASE_DIR / "gunicorn.conf.py"), "pacsportal.wsgi"],
            cwd=BASE_DIR,
        )
        self.stdout.write(self.style.SUCCESS(f"Portal: {scheme}://127.0.0.1:{port}/  (Ctrl-C stops it)"))
        self.stdout.flush()

        def forward(signum: int, frame: FrameType | None) -> None:
            gunicorn.send_signal(signal.SIGTERM)

        signal.signal(signal.SIGINT, forward)
        signal.signal(signal.SIGTERM, forward)
        code = self.supervise(server, gunicorn)
        if code not in (0, -signal.SIGTERM):
            raise CommandError(f"gunicorn exited with {code}")
        self.stdout.write("Portal stopped.")

    def supervise(self, server: orthanc_server.OrthancServer, gunicorn: subprocess.Popen[bytes]) -> int:
        """Wait for gunicorn to end, restarting Orthanc whenever it dies meanwhile.

        The portal answers 502 while Orthanc is down; restarts back off from 1 s
        to 30 s while Orthanc keeps dying, and reset once it has stayed up a minute.
        """
        backoff, up_since = RESTART_BACKOFF[0], time.monotonic()
        while True:
            try:
                return gunicorn.wait(timeout=1)
            except subprocess.TimeoutExpired:
                pass
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
