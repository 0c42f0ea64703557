"""Orthanc Explorer works through /pacs-admin/ in a real browser, for a PACS admin."""

from __future__ import annotations

import pytest
from playwright.sync_api import Browser

from tests.browser import log_in, save_screenshot
from tests.services import LivePortal

pytestmark = [pytest.mark.browser, pytest.mark.live]


def test_it_lists_the_demo_studies_and_opens_one(live_portal: LivePortal, browser: Browser) -> None:
    context = browser.new_context()
    page = context.new_page()
    try:
        log_in(page, live_portal, "carol")
        page.goto(f"{live_portal.url}/pacs-admin/")
        page.wait_for_url("**/pacs-admin/app/explorer.html**")
        page.get_by_text("All studies", exact=True).first.click()
        study = page.get_by_text("CT chest-abdomen (synthetic phantom)").first
        study.wait_for(timeout=30_000)
        for other in ("CompressedSamples^MR1", "CompressedSamples^US1"):
            page.get_by_text(other).first.wait_for(timeout=10_000)
        study.click()
        page.get_by_text("Axial 1.0 mm").first.wait_for(timeout=30_000)
        assert "#study" in page.url
    except Exception:
        print(f"screenshot: {save_screenshot(page, 'orthanc-explorer')}")
        raise
    finally:
        context.close()


def test_it_sends_a_clinician_away_from_orthanc_explorer(live_portal: LivePortal, browser: Browser) -> None:
    context = browser.new_context()
    page = context.new_page()
    try:
        log_in(page, live_portal, "alice")
        response = page.goto(f"{live_portal.url}/pacs-admin/app/explorer.html")
        assert response is not None and response.status == 403
    finally:
        context.close()
