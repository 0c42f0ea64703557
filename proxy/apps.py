from __future__ import annotations

from django.apps import AppConfig


class ProxyConfig(AppConfig):
    name = "proxy"
    verbose_name = "Orthanc proxy"

    def ready(self) -> None:
        from proxy import orthanc

        orthanc.install_header_parser()
