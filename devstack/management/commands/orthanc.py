from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from devstack import orthanc_server
from orthanc import client


class Command(BaseCommand):
    help = "Manage the local Orthanc of the embedded default: config, start, stop or status."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("action", choices=["config", "start", "stop", "status"])

    def handle(self, *args: Any, action: str, **options: Any) -> None:
        server = orthanc_server.from_settings()
        if action == "config":
            self.stdout.write(f"wrote {server.write_config()}")
        elif action == "start":
            try:
                server.start()
            except (orthanc_server.OrthancNotInstalled, orthanc_server.OrthancStartError) as error:
                raise CommandError(str(error)) from None
            # Detach: this command returns, Orthanc keeps running until `orthanc stop`.
            server.process = None
            self.stdout.write(f"Orthanc is up on {server.url} (log: {server.log_path})")
        elif action == "stop":
            self.stop(server)
        else:
            state = "up" if client.is_up() else "down"
            self.stdout.write(f"Orthanc at {server.url} is {state}")

    def stop(self, server: orthanc_server.OrthancServer) -> None:
        """Stop the Orthanc this checkout started, and say what really happened."""
        try:
            pid = int(server.pid_path.read_text())
        except (OSError, ValueError):
            pid = 0
        running = bool(pid) and orthanc_server._is_orthanc(pid)
        server.stop_stale()
        if running and not orthanc_server._is_orthanc(pid):
            self.stdout.write(f"Orthanc stopped (pid {pid})")
        elif running:
            raise CommandError(f"Orthanc (pid {pid}) did not stop")
        elif client.is_up():
            raise CommandError(
                f"an Orthanc answers on {server.url}, but not one this checkout started "
                f"(no live pid in {server.pid_path}): stop it where it was started"
            )
        else:
            self.stdout.write("Orthanc was not running")
