"""The token page in headless Chromium: create (the secret shown once), list, revoke."""

from __future__ import annotations

import re

import pytest
import requests
from playwright.sync_api import Browser

from tests.browser import log_in, save_screenshot
from tests.services import LivePortal

pytestmark = [pytest.mark.browser, pytest.mark.live]
QIDO = "/pacs/dicom-web/studies?limit=1"


def test_it_creates_shows_once_lists_and_revokes_a_token(live_portal: LivePortal, browser: Browser) -> None:
    context = browser.new_context()
    page = context.new_page()
    seen: list[str] = []
    page.on("response", lambda response: seen.append(response.url))
    try:
        log_in(page, live_portal, "bob")
        page.get_by_role("link", name=re.compile("Access tokens")).click()
        page.wait_for_url(f"{live_portal.url}/accounts/tokens/")
        page.fill("#id_name", "browser upload script")
        page.select_option("#id_scope", "read")
        assert page.input_value("#id_days") == "90"
        page.get_by_role("button", name="Create token").click()
        secret = page.locator("#new-token").inner_text(timeout=10_000).strip()
        assert re.fullmatch(r"pacs_[0-9A-Za-z]{43}", secret)
        save_screenshot(page, "token-created")

        url = f"{live_portal.url}{QIDO}"
        assert requests.get(url, headers={"Authorization": f"Bearer {secret}"}, timeout=30).status_code == 200

        # Shown once: the list, reloaded, names the token but never shows its secret again.
        page.goto(f"{live_portal.url}/accounts/tokens/")
        row = page.locator("tr", has_text="browser upload script")
        assert "read studies" in row.inner_text()
        assert "active" in row.inner_text()
        assert "127.0.0.1" in row.inner_text()  # last address, from the request above
        assert secret not in page.content()
        assert page.locator("#new-token").count() == 0

        row.get_by_role("button", name="Revoke").click()
        page.wait_for_url(f"{live_portal.url}/accounts/tokens/")
        assert "revoked" in page.locator("tr", has_text="browser upload script").inner_text()
        assert secret not in page.content()
        save_screenshot(page, "token-revoked")
        assert requests.get(url, headers={"Authorization": f"Bearer {secret}"}, timeout=30).status_code == 401

        page.goto(f"{live_portal.url}/portal/")
        assert secret not in page.content()
    finally:
        context.close()
    assert not any(secret in address for address in seen)
    assert secret not in live_portal.log_path.read_text()
    assert all(secret not in repr(row) for row in live_portal.audit_events())
    created = [row for row in live_portal.audit_events() if row["action"] == "token-created"]
    assert any("token:browser upload script" in str(row["detail"]) for row in created)
