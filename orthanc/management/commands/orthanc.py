from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from orthanc import client
from orthanc import server as orthanc_server


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
            server.stop_stale()
            self.stdout.write("Orthanc stopped")
        else:
            state = "up" if client.is_up() else "down"
            self.stdout.write(f"Orthanc at {server.url} is {state}")
