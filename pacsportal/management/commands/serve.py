from __future__ import annotations

import os
import signal
import subprocess
import sys
from types import FrameType
from typing import Any

from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError

from orthanc import server as orthanc_server
from pacsportal.localenv import BASE_DIR


class Command(BaseCommand):
    help = (
        "Run the embedded default: start the local Orthanc, load the demo studies once, "
        "and serve the portal with gunicorn until Ctrl-C, which stops Orthanc too."
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
            self.serve()
        finally:
            server.stop()
            self.stdout.write("Orthanc stopped.")

    def serve(self) -> None:
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
        code = gunicorn.wait()
        if code not in (0, -signal.SIGTERM):
            raise CommandError(f"gunicorn exited with {code}")
        self.stdout.write("Portal stopped.")
