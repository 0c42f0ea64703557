"""System checks: fail early, with a clear message, on a missing state directory."""

from __future__ import annotations

import os
from typing import Any

from django.conf import settings
from django.core.checks import CheckMessage, Error, register


@register()
def var_dir_is_writable(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    var_dir = settings.VAR_DIR
    if var_dir.is_dir() and os.access(var_dir, os.W_OK):
        return []
    return [
        Error(
            f"the state directory {var_dir} does not exist or is not writable",
            hint="run `make run` once, create it, or point PORTAL_VAR_DIR at a writable directory",
            id="pacsportal.E001",
        )
    ]
