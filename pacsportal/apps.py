from __future__ import annotations

from django.apps import AppConfig


class PortalConfig(AppConfig):
    name = "pacsportal"
    verbose_name = "PACS portal"

    def ready(self) -> None:
        from pacsportal import checks  # noqa: F401  (registers the checks)
