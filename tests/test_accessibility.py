"""The portal's own pages pass axe-core's WCAG 2.1 A and AA rules in the real headless Chromium.

axe-core's script comes from the axe-playwright-python wheel (requirements-dev.txt):
nothing is fetched at test time. Each page is checked at a desktop width and at a
phone's, where the wide tables scroll and must be reachable from the keyboard.
OHIF's viewer and Django's admin are other projects' pages and are not checked here.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest
import requests
from axe_playwright_python.sync_playwright import Axe
from playwright.sync_api import Browser, BrowserContext, Page, ViewportSize

from orthanc import demo
from tests.browser import log_in, save_screenshot
from tests.services import LivePortal
from tests.test_live_shares import create_share, visit
from tests.test_live_tokens import bearer, create_token

pytestmark = [pytest.mark.browser, pytest.mark.live]
# WCAG 2.0 and 2.1, levels A and AA: what the portal promises, not axe's best practices.
WCAG_21_AA = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]
VIEWPORTS: dict[str, ViewportSize] = {
    "desktop": {"width": 1280, "height": 800},
    "phone": {"width": 390, "height": 844},
}
STUDY = demo.DEMO_CT_STUDY_UID
CLINICIAN = "a11y-clinician"  # a user of its own: no other test sees its tokens and links
AXE = Axe()


@dataclass(frozen=True)
class Shown:
    """A page as one user sees it (None: nobody logged in), the status it answers with,
    and words that show its table has rows in it."""

    user: str | None
    path: str
    status: int = 200
    holds: str = ""


PAGES = {
    "login": Shown(None, "/accounts/login/"),
    "share landing, link cut short": Shown(None, "/share/", holds="This link is not complete"),
    "share ended": Shown(None, "/share/ended/", holds="Your visit through this link has ended"),
    "home": Shown(CLINICIAN, "/portal/", holds="Patient ID"),
    "home, no role yet": Shown("eve", "/portal/", holds="no role yet"),
    "tokens": Shown(CLINICIAN, "/accounts/tokens/", holds="a11y laptop"),
    "shares": Shown(CLINICIAN, "/shares/", holds="a11y, referring"),
    "new share": Shown(CLINICIAN, f"/shares/new/?study={STUDY}"),
    "password change": Shown(CLINICIAN, "/accounts/password_change/"),
    "audit events": Shown("dave", "/audit/", holds="visitor of shared link #"),
    "audit accesses": Shown("dave", "/audit/accesses/", holds="visitor of shared link #"),
    "audit, invalid filter": Shown("dave", "/audit/?start=2025-02-01&end=2025-01-01", 400),
    "forbidden": Shown("eve", "/audit/", 403),
    "not found": Shown(CLINICIAN, "/no-such-page/", 404),
    "archive refusal": Shown(CLINICIAN, "/pacs-admin/", 403),
}


def wcag_violations(page: Page) -> str:
    """axe-core's report of the page's WCAG 2.1 A and AA violations ('' when there are none)."""
    results = AXE.run(page, options={"runOnly": {"type": "tag", "values": WCAG_21_AA}})
    return results.generate_report() if results.violations_count else ""


@pytest.fixture(scope="module")
def seeded(live_portal: LivePortal) -> None:
    """Rows in every table: a clinician's token and link, and reads by their session, token and visitor."""
    if CLINICIAN not in live_portal.passwords:
        live_portal.add_user(CLINICIAN, "clinician")
    create_token(live_portal, CLINICIAN, name="a11y laptop")
    _, secret = create_share(live_portal, CLINICIAN, note="a11y, referring")
    _, token = create_token(live_portal, CLINICIAN, name="a11y script")
    series = f"{live_portal.url}/pacs/dicom-web/studies/{STUDY}/series"
    assert requests.get(series, headers=bearer(token), timeout=30).status_code == 200
    assert visit(live_portal, secret).get(series, timeout=30).status_code == 200
    assert live_portal.login(CLINICIAN).get(series, timeout=30).status_code == 200


@pytest.fixture(scope="module", params=list(VIEWPORTS))
def contexts(
    request: pytest.FixtureRequest, browser: Browser, live_portal: LivePortal, seeded: None
) -> Iterator[Callable[[str | None], BrowserContext]]:
    """A browser context per user at one viewport, logged in once."""
    made: dict[str | None, BrowserContext] = {}

    def context_of(user: str | None) -> BrowserContext:
        if user not in made:
            made[user] = browser.new_context(viewport=VIEWPORTS[request.param])
            if user is not None:
                page = made[user].new_page()
                log_in(page, live_portal, user)
                page.close()
        return made[user]

    yield context_of
    for context in made.values():
        context.close()


def check(page: Page, name: str) -> None:
    """No violation; else the report, and a screenshot in test-artifacts/ to see it by."""
    found = wcag_violations(page)
    if found:
        print(f"screenshot: {save_screenshot(page, 'a11y-' + re.sub(r'[^a-z0-9]+', '-', name))}")
    assert found == "", found


@pytest.mark.parametrize("name", list(PAGES))
def test_it_shows_each_page_with_no_wcag_21_aa_violation(
    name: str, contexts: Callable[[str | None], BrowserContext], live_portal: LivePortal
) -> None:
    shown = PAGES[name]
    page = contexts(shown.user).new_page()
    try:
        response = page.goto(f"{live_portal.url}{shown.path}")
        assert response is not None and response.status == shown.status
        assert shown.holds in page.inner_text("body")
        check(page, name)
    finally:
        page.close()


def test_it_answers_forms_with_pages_that_have_no_wcag_21_aa_violation(
    contexts: Callable[[str | None], BrowserContext], live_portal: LivePortal
) -> None:
    """The pages a submitted form answers with: a refused login, a lockout, a form without its
    CSRF cookie, and a token and a link shown once."""
    page = contexts(None).new_page()
    nobody = f"a11y-{secrets.token_hex(4)}"  # locked out with this address only: nobody else is
    try:
        for attempt in range(int(live_portal.env["AXES_FAILURE_LIMIT"]) + 1):
            page.goto(f"{live_portal.url}/accounts/login/")
            page.fill("#id_username", nobody)
            page.fill("#id_password", "not a password")
            page.click("button[type=submit]")
            page.get_by_role("alert").wait_for()
            check(page, f"login refused {attempt}")
        assert "Too many failed logins" in page.content()
        page.goto(f"{live_portal.url}/accounts/login/")
        page.context.clear_cookies()  # the CSRF cookie gone: Django's CSRF failure page
        page.fill("#id_username", nobody)
        page.fill("#id_password", "not a password")
        with page.expect_response(f"{live_portal.url}/accounts/login/") as answer:
            page.click("button[type=submit]")
        assert answer.value.status == 403
        check(page, "CSRF failure")
    finally:
        page.close()
    page = contexts(CLINICIAN).new_page()
    try:
        page.goto(f"{live_portal.url}/accounts/tokens/")
        page.fill("#id_name", f"a11y {secrets.token_hex(4)}")
        page.get_by_role("button", name="Create token").click()
        page.locator("#new-token").wait_for()
        check(page, "token created")
        page.goto(f"{live_portal.url}/shares/new/?study={STUDY}")
        page.get_by_role("button", name="Create link").click()
        page.locator("#share-link").wait_for()
        check(page, "share created")
    finally:
        page.close()
