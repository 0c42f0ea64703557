"""The portal's settings with proxy auditing off: `make bench` only, to measure what auditing costs."""

from __future__ import annotations

from pacsportal.settings import *  # noqa: F403

AUDIT_PROXY_REQUESTS = False
