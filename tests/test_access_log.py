"""gunicorn's access log leaves out successful /pacs requests (each is an audit row) and keeps the rest."""

from __future__ import annotations

import secrets
import time

import pytest

from tests.services import LivePortal

pytestmark = pytest.mark.live


def test_it_logs_refused_pacs_requests_and_portal_pages_but_not_audited_reads(
    live_portal: LivePortal,
) -> None:
    session = live_portal.login("alice")
    marker = secrets.token_hex(6)
    json = {"Accept": "application/dicom+json"}
    read = session.get(
        f"{live_portal.url}/pacs/dicom-web/studies?limit=1&StudyDescription={marker}read",
        headers=json,
        timeout=30,
    )
    refused = session.get(f"{live_portal.url}/pacs/tools/reset?m={marker}refused", timeout=30)
    page = session.get(f"{live_portal.url}/portal/?m={marker}page", timeout=30)
    assert (read.status_code, refused.status_code, page.status_code) == (200, 404, 200)
    time.sleep(0.5)  # the worker's log line reaches the file after the response
    log = live_portal.log_path.read_text()
    assert f"{marker}refused" in log
    assert f"{marker}page" in log
    assert f"{marker}read" not in log
