from __future__ import annotations

from django.apps import AppConfig


class DevstackConfig(AppConfig):
    name = "devstack"
    verbose_name = "Local stack (make run, tests)"
