"""gunicorn's access log, without the successful /pacs requests the audit trail already records.

A study opened in OHIF is hundreds of /pacs requests, each one an audit row
with user, address and UIDs. Formatting and writing an access line for each
as well took 4-7% of a frame request's time (py-spy, docs/performance.md).
Refused and failed /pacs requests, and everything else, are still logged.
"""

from __future__ import annotations

from typing import Any

from gunicorn import glogging


class AccessLogger(glogging.Logger):
    def access(self, resp: Any, req: Any, environ: dict[str, Any], request_time: Any) -> None:
        # gunicorn's own error answers (a malformed request) carry no status_code:
        # any exception here would drop the connection instead of answering 400.
        status = getattr(resp, "status_code", None)
        if isinstance(status, int) and status < 400 and str(getattr(req, "path", "")).startswith("/pacs/"):
            return
        super().access(resp, req, environ, request_time)
