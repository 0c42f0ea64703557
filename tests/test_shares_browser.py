"""Shared links in headless Chromium: a clinician shares the demo CT from the portal home;
a fresh browser with no account opens the link, the CT renders in OHIF, and the
study list holds that study only."""

from __future__ import annotations

import re

import pytest
import requests
from playwright.sync_api import Browser

from devstack.orthanc_server import OrthancServer
from orthanc import demo
from tests.browser import log_in, save_screenshot, wait_for_image
from tests.dicom import unique_ct_instance
from tests.services import LivePortal

pytestmark = [pytest.mark.browser, pytest.mark.live]
CT_ROW = "CT chest-abdomen (synthetic phantom)"
LINK_SHAPE = re.compile(r"https?://[^/]+/share/#pacsshare_[0-9A-Za-z]{43}")


def test_a_visitor_with_no_account_sees_the_shared_ct_and_nothing_else(
    live_portal: LivePortal, browser: Browser, orthanc: OrthancServer, request: pytest.FixtureRequest
) -> None:
    # Another patient's study in the archive, which the visitor's study list must not show.
    data, _, _ = unique_ct_instance(label="share-browser-other")
    auth = (orthanc.user, orthanc.password)
    assert requests.post(f"{orthanc.url}/instances", data=data, auth=auth, timeout=30).status_code == 200
    if "sharer" not in live_portal.passwords:
        live_portal.add_user("sharer", "clinician")

    owner = browser.new_context()
    page = owner.new_page()
    try:
        log_in(page, live_portal, "sharer")
        row = page.locator("tr", has_text=CT_ROW).first
        row.get_by_role("link", name="Share").click()
        page.wait_for_url(re.compile(r".*/shares/new/\?study=.*"))
        assert page.input_value("#id_study") == demo.DEMO_CT_STUDY_UID
        assert page.input_value("#id_days") == "7"
        assert not page.is_checked("#id_allow_download")
        page.fill("#id_note", "Dr Visitor, referring")
        page.get_by_role("button", name="Create link").click()
        link = page.locator("#share-link").inner_text(timeout=10_000).strip()
        assert LINK_SHAPE.fullmatch(link), link
        save_screenshot(page, "share-created")
        page.goto(f"{live_portal.url}/shares/")
        listed = page.locator("tr", has_text="Dr Visitor, referring")
        assert "active" in listed.inner_text() and "viewer only" in listed.inner_text()
        assert link.split("#")[1] not in page.content()
    finally:
        owner.close()

    visitor = browser.new_context(viewport={"width": 1400, "height": 900})
    seen: list[str] = []
    page = visitor.new_page()
    page.on("request", lambda sent: seen.append(sent.url + " " + (sent.headers.get("referer") or "")))
    try:
        page.goto(link)
        page.wait_for_url(re.compile(r".*/viewer\?StudyInstanceUIDs=.*"), timeout=30_000)
        assert "pacsshare_" not in page.url
        wait_for_image(page)
        save_screenshot(page, "share-visitor-viewer")
        assert page.locator("[data-cy=pacsportal-user]").inner_text() == "Visitor of a shared link"

        page.goto(f"{live_portal.url}/")
        page.get_by_text(CT_ROW).first.wait_for(timeout=60_000)
        page.wait_for_load_state("networkidle")
        # OHIF's own count of what the archive answered, and the rows it shows.
        page.get_by_text("1-1 of 1").wait_for(timeout=10_000)
        texts = page.locator("table tbody tr").all_inner_texts()
        studies = [text for text in texts if "Reset" not in text]  # not the filters' row
        assert len(studies) == 1 and CT_ROW in studies[0], texts
        save_screenshot(page, "share-visitor-study-list")

        page.goto(f"{live_portal.url}/portal/")
        assert "opens one study in the viewer" in page.content()
    except Exception:
        print(f"screenshot: {save_screenshot(page, request.node.name)}")
        raise
    finally:
        visitor.close()
    secret = link.split("#")[1]
    # The fragment never left the browser: in no request line, Referer, log or audit row.
    assert not any(secret in line for line in seen)
    assert secret not in live_portal.log_path.read_text()
    assert all(secret not in repr(row) for row in live_portal.audit_events())
