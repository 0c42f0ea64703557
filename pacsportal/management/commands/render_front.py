from __future__ import annotations

from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from pacsportal import front
from pacsportal.env import env_str


class Command(BaseCommand):
    help = (
        "Write the configuration of compose.yaml's front container (nginx) into FRONT_CONFIG_DIR, "
        "a memory-backed volume the front mounts read-only: nginx's one template, rendered for "
        "the container, and the Orthanc service credential from this container's secret."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        directory = env_str("FRONT_CONFIG_DIR")
        if not directory:
            raise CommandError("FRONT_CONFIG_DIR is not set: it names the front's configuration volume")
        container = front.container_from_settings(Path(directory))
        try:
            path = container.write_config()
        except front.FrontStartError as error:
            raise CommandError(str(error)) from None
        tls = "HTTPS with HTTP/2" if container.tls_cert else "plain HTTP"
        self.stdout.write(
            f"front configuration written to {path} ({tls} on port {container.port}, "
            f"portal at {container.portal_upstream}, Orthanc at {container.orthanc_upstream})"
        )
