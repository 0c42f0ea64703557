from __future__ import annotations

from django.apps import AppConfig


class OrthancConfig(AppConfig):
    name = "orthanc"
    verbose_name = "Orthanc archive"
