from __future__ import annotations

from django.apps import AppConfig


class PortalConfig(AppConfig):
    name = "pacsportal"
    verbose_name = "PACS portal"
