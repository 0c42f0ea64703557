"""Orthanc Explorer works through /pacs-admin/ in a real browser, for a PACS admin, under its CSP."""

from __future__ import annotations

import pytest
import requests
from playwright.sync_api import Browser, BrowserContext, ConsoleMessage

from pacsportal.security import PACS_ADMIN_POLICY, PORTAL_POLICY
from tests.browser import log_in, save_screenshot
from tests.services import LivePortal

pytestmark = [pytest.mark.browser, pytest.mark.live]

# Chromium fires `securitypolicyviolation` at the document for every report;
# exposed functions outlive navigations, so each new document reports too.
REPORT_VIOLATIONS = """
document.addEventListener("securitypolicyviolation", (event) => {
    window.reportCspViolation(
        `${event.effectiveDirective} blocked ${event.blockedURI || "(inline)"}` +
        ` at ${event.sourceFile}:${event.lineNumber} sample=${JSON.stringify(event.sample)}`
    );
});
"""


def watch_csp(context: BrowserContext) -> list[str]:
    """Every CSP violation in the context: the DOM event and Chromium's console message."""
    violations: list[str] = []

    def on_report(text: str) -> None:
        violations.append(text)

    def on_console(message: ConsoleMessage) -> None:
        if "Content Security Policy" in message.text or "Content-Security-Policy" in message.text:
            violations.append(f"console: {message.text}")

    context.expose_function("reportCspViolation", on_report)
    context.add_init_script(REPORT_VIOLATIONS)
    context.on("console", on_console)
    return violations


def test_it_lists_the_demo_studies_and_opens_one_without_csp_violations(
    live_portal: LivePortal, browser: Browser
) -> None:
    context = browser.new_context()
    violations = watch_csp(context)
    page = context.new_page()
    try:
        log_in(page, live_portal, "carol")
        explorer = page.goto(f"{live_portal.url}/pacs-admin/")
        assert explorer is not None
        assert explorer.headers["content-security-policy"] == PACS_ADMIN_POLICY
        page.wait_for_url("**/pacs-admin/app/explorer.html**")
        page.get_by_text("All studies", exact=True).first.click()
        study = page.get_by_text("CT chest-abdomen (synthetic phantom)").first
        study.wait_for(timeout=30_000)
        for other in ("CompressedSamples^MR1", "CompressedSamples^US1"):
            page.get_by_text(other).first.wait_for(timeout=10_000)
        study.click()
        page.get_by_text("Axial 1.0 mm").first.wait_for(timeout=30_000)
        assert "#study" in page.url
        page.wait_for_load_state("networkidle")
        assert violations == [], "Orthanc Explorer tripped the CSP:\n" + "\n".join(violations)
        # The one inline handler the policy allows by its hash: the upload button opens the file chooser.
        page.goto(f"{live_portal.url}/pacs-admin/app/explorer.html#upload")
        with page.expect_file_chooser(timeout=10_000):
            page.locator("#fileupload-proxy").click()
        assert violations == [], "Orthanc Explorer's upload page tripped the CSP:\n" + "\n".join(violations)
    except Exception:
        print(f"screenshot: {save_screenshot(page, 'orthanc-explorer')}; CSP violations: {violations}")
        raise
    finally:
        context.close()


def test_it_reports_a_violation_the_policy_forbids(live_portal: LivePortal, browser: Browser) -> None:
    """The watcher can fail: an inline script the policy does not allow is reported."""
    context = browser.new_context()
    violations = watch_csp(context)
    page = context.new_page()
    try:
        log_in(page, live_portal, "carol")
        page.goto(f"{live_portal.url}/pacs-admin/app/explorer.html")
        page.evaluate(
            "() => { const s = document.createElement('script');"
            " s.textContent = 'window.injected = 1'; document.body.appendChild(s); }"
        )
        page.wait_for_timeout(500)
        assert page.evaluate("window.injected") is None
        assert any("script-src" in violation for violation in violations), violations
    finally:
        context.close()


def test_it_keeps_the_portal_policy_outside_pacs_admin(live_portal: LivePortal) -> None:
    session = live_portal.login("carol")
    portal = session.get(f"{live_portal.url}/portal/", timeout=30)
    assert portal.headers["Content-Security-Policy"] == PORTAL_POLICY
    explorer = session.get(f"{live_portal.url}/pacs-admin/app/explorer.html", timeout=30)
    assert explorer.status_code == 200
    assert explorer.headers["Content-Security-Policy"] == PACS_ADMIN_POLICY
    login = requests.get(f"{live_portal.url}/accounts/login/", params={"next": "/pacs-admin/"}, timeout=30)
    assert login.headers["Content-Security-Policy"] == PORTAL_POLICY


def test_it_sends_a_clinician_away_from_orthanc_explorer(live_portal: LivePortal, browser: Browser) -> None:
    context = browser.new_context()
    page = context.new_page()
    try:
        log_in(page, live_portal, "alice")
        response = page.goto(f"{live_portal.url}/pacs-admin/app/explorer.html")
        assert response is not None and response.status == 403
    finally:
        context.close()
