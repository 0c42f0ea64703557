"""A clinician reads the demo CT in the real OHIF bundle, in headless Chromium."""

from __future__ import annotations

import re
from collections.abc import Iterator
from urllib.parse import urlparse

import pytest
from playwright.sync_api import Browser, BrowserContext, Page

from orthanc import demo
from tests.browser import NetworkLog, log_in, save_screenshot, wait_for_image
from tests.services import LivePortal
from viewer import bundle

pytestmark = [pytest.mark.browser, pytest.mark.live]
VIEWER_URL = f"/viewer?StudyInstanceUIDs={demo.DEMO_CT_STUDY_UID}"


def gzip_equivalent(log: NetworkLog) -> int:
    """What the same first visit would have cost with gzip instead of brotli (files' .gz sizes)."""
    total = 0
    for url, size in log.viewer_files().items():
        gz = bundle.dist_dir() / (urlparse(url).path.lstrip("/") + ".gz")
        total += (
            gz.stat().st_size
            if gz.is_file() and log.headers_by_url.get(url, {}).get("content-encoding") == "br"
            else size
        )
    return total


@pytest.fixture
def clinician_page(live_portal: LivePortal, browser: Browser) -> Iterator[tuple[Page, BrowserContext]]:
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    page = context.new_page()
    # A user of its own, so its study reads write their own audit rows whatever ran before.
    if "viola" not in live_portal.passwords:
        live_portal.add_user("viola", "clinician")
    log_in(page, live_portal, "viola")
    yield page, context
    context.close()


def test_it_opens_the_demo_ct_from_the_study_list_and_shows_pixels(
    live_portal: LivePortal, clinician_page: tuple[Page, BrowserContext], request: pytest.FixtureRequest
) -> None:
    page, context = clinician_page
    network = NetworkLog()
    network.attach(context.new_cdp_session(page))
    start = live_portal.last_audit_id()
    try:
        page.goto(f"{live_portal.url}/")
        row = page.get_by_text("CT chest-abdomen (synthetic phantom)").first
        row.wait_for(timeout=60_000)
        row.click()
        page.get_by_role("button", name=re.compile("Basic Viewer", re.I)).first.click(timeout=30_000)
        page.wait_for_url(re.compile(r".*/viewer\?.*StudyInstanceUIDs=.*"), timeout=30_000)
        seconds = wait_for_image(page)
        page.wait_for_load_state("networkidle")
        save_screenshot(page, "viewer-demo-ct")
        first = network.viewer_bytes()
        gzip = gzip_equivalent(network)
        print(
            f"\nfirst image after {seconds:.1f} s; first visit: {first / 1e6:.2f} MB of viewer files (brotli)"
        )
        print(f"the same files with gzip instead: {gzip / 1e6:.2f} MB")

        pacs = network.pacs_urls()
        assert pacs, "the viewer made no /pacs requests"
        for url in pacs:
            assert network.headers_by_url[url].get("cache-control") == "no-store, private", url
        assert_a_handful_of_study_rows(live_portal, start, requests_made=len(pacs))

        network.reset()
        page.goto(f"{live_portal.url}{VIEWER_URL}")
        wait_for_image(page)
        page.wait_for_load_state("networkidle")
        repeat = network.viewer_bytes()
        print(
            f"repeat visit: {repeat / 1e3:.1f} kB of viewer files ({100 * repeat / first:.2f}% of the first)"
        )
        assert repeat < 0.05 * first
    except Exception:
        print(f"screenshot: {save_screenshot(page, request.node.name)}")
        raise


def assert_a_handful_of_study_rows(portal: LivePortal, start: int, requests_made: int) -> None:
    """Hundreds of /pacs requests, a few rows: one per action and bucket, naming the right patient."""
    rows = [row for row in portal.audit_events(start) if str(row["path"]).startswith("/pacs/")]
    study_rows = [row for row in rows if row["study_uid"] == demo.DEMO_CT_STUDY_UID]
    print(f"{requests_made} /pacs requests seen by the page, {len(rows)} audit rows for them")
    assert study_rows, rows
    assert {row["patient_id"] for row in study_rows} == {"DEMO-CT-0001"}
    keys = [(row["action"], row["study_uid"], row["patient_id"]) for row in rows]
    assert len(rows) <= 2 * len(set(keys)), keys  # one per action and bucket (two if a bucket ended)
    assert len(rows) <= 8


def test_it_runs_the_viewer_cross_origin_isolated(
    live_portal: LivePortal, clinician_page: tuple[Page, BrowserContext]
) -> None:
    page, _ = clinician_page
    page.goto(f"{live_portal.url}{VIEWER_URL}")
    assert page.evaluate("window.crossOriginIsolated") is True
    assert page.evaluate("typeof SharedArrayBuffer") == "function"
