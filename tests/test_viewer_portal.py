"""A clinician's day in the real OHIF bundle, in headless Chromium: the portal around
the viewer (site name, user, log out), sessions that end while OHIF is open, a
study the user may not see, and no onboarding tour unless the setting asks.

Every test watches the page for CSP violations (the DOM event and Chromium's
console report) and for uncaught script errors (viewer/portal.js runs inside OHIF).
"""

from __future__ import annotations

import re
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from urllib.parse import parse_qs, urlsplit

import pytest
from playwright.sync_api import Browser, BrowserContext, ConsoleMessage, Error, Page, Request

from devstack.orthanc_server import OrthancServer
from orthanc import demo
from tests.browser import save_screenshot, wait_for_image
from tests.conftest import start_portal
from tests.services import LivePortal, PostgresCluster

pytestmark = [pytest.mark.browser, pytest.mark.live]
VIEWER_URL = f"/viewer?StudyInstanceUIDs={demo.DEMO_CT_STUDY_UID}"
CT_ROW = "CT chest-abdomen (synthetic phantom)"
QIDO = "/pacs/dicom-web/studies?limit=1"
# Shepherd.js draws OHIF's tour: a dialog per step over a dimmed page.
TOUR = ".shepherd-element"
REPORT_VIOLATIONS = """
document.addEventListener("securitypolicyviolation", (event) => {
    window.reportCspViolation(
        `${event.effectiveDirective} blocked ${event.blockedURI || "(inline)"}` +
        ` at ${event.sourceFile}:${event.lineNumber} sample=${JSON.stringify(event.sample)}`
    );
});
"""


@dataclass
class Watched:
    """A browser context whose CSP violations and uncaught script errors are collected."""

    context: BrowserContext
    violations: list[str] = field(default_factory=list)
    script_errors: list[str] = field(default_factory=list)

    def page(self) -> Page:
        page = self.context.new_page()
        page.on("pageerror", lambda error: self.script_errors.append(f"{page.url}: {error}"))
        return page

    def assert_clean(self) -> None:
        assert self.violations == [], "the viewer tripped the CSP:\n" + "\n".join(self.violations)
        assert self.script_errors == [], "uncaught script errors:\n" + "\n".join(self.script_errors)


@pytest.fixture
def watched(browser: Browser) -> Iterator[Watched]:
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    watch = Watched(context)

    def on_console(message: ConsoleMessage) -> None:
        if "Content Security Policy" in message.text or "Content-Security-Policy" in message.text:
            watch.violations.append(f"console: {message.text}")

    def on_report(text: str) -> None:
        watch.violations.append(text)

    context.expose_function("reportCspViolation", on_report)
    context.add_init_script(REPORT_VIOLATIONS)
    context.on("console", on_console)
    yield watch
    context.close()


def log_in_here(page: Page, portal: LivePortal, username: str) -> None:
    """Fill the login form the browser is on."""
    page.fill("#id_username", username)
    page.fill("#id_password", portal.passwords[username])
    page.click("button[type=submit]")


def log_in(page: Page, portal: LivePortal, username: str) -> None:
    page.goto(f"{portal.url}/accounts/login/")
    log_in_here(page, portal, username)
    page.wait_for_url(f"{portal.url}/portal/")


def pacs_status(page: Page, portal: LivePortal) -> int:
    """What /pacs answers this browser's cookies now."""
    return page.request.get(f"{portal.url}{QIDO}", headers={"Accept": "application/dicom+json"}).status


def open_viewer(page: Page, portal: LivePortal) -> None:
    page.goto(f"{portal.url}{VIEWER_URL}")
    wait_for_image(page)


def wait_for_quiet_pacs(page: Page, quiet: float = 3, timeout: float = 90) -> None:
    """Until the page makes no /pacs request for `quiet` seconds: OHIF goes on fetching
    the frames of a study for a while after the viewer is left for the study list."""
    last = [time.monotonic()]

    def seen(request: Request) -> None:
        if "/pacs/" in request.url:
            last[0] = time.monotonic()

    page.on("request", seen)
    deadline = time.monotonic() + timeout
    while time.monotonic() - last[0] < quiet:
        assert time.monotonic() < deadline, "the viewer never stopped fetching from /pacs"
        page.wait_for_timeout(250)


def assert_no_tour(page: Page) -> None:
    # OHIF starts its tour when the viewer route mounts; give it time to appear.
    page.wait_for_timeout(1500)
    assert page.locator(TOUR).count() == 0, "OHIF's onboarding tour is showing"


def test_it_shows_the_site_name_and_the_user_and_logs_out_from_the_viewer(
    live_portal: LivePortal, watched: Watched
) -> None:
    # Users of their own in this module: audit buckets that other tests count stay untouched.
    live_portal.add_user("nora", "clinician")
    page = watched.page()
    try:
        log_in(page, live_portal, "nora")
        page.goto(f"{live_portal.url}/")
        page.get_by_text(CT_ROW).first.wait_for(timeout=60_000)
        home = page.locator("[data-cy=pacsportal-home]")
        assert home.inner_text() == "PACS portal"
        assert home.get_attribute("href") == "/portal/"
        home.click()
        page.wait_for_url(f"{live_portal.url}/portal/")

        open_viewer(page, live_portal)
        assert page.locator("[data-cy=pacsportal-home]").inner_text() == "PACS portal"
        assert page.locator("[data-cy=pacsportal-user]").inner_text() == "nora"
        assert_no_tour(page)
        save_screenshot(page, "viewer-portal-header")
        assert pacs_status(page, live_portal) == 200

        page.locator("[data-cy=pacsportal-logout]").click()
        page.wait_for_url(f"{live_portal.url}/accounts/login/")
        assert pacs_status(page, live_portal) == 401, "the session outlived the viewer's log-out"
        page.goto(f"{live_portal.url}{VIEWER_URL}")
        assert urlsplit(page.url).path == "/accounts/login/"
        watched.assert_clean()
    except (AssertionError, Error):
        print(f"screenshot: {save_screenshot(page, 'viewer-portal-logout')}")
        raise


def delete_session_row(portal: LivePortal, page: Page) -> None:
    (session_key,) = [cookie["value"] for cookie in page.context.cookies() if cookie["name"] == "sessionid"]
    portal.manage(
        "shell",
        "-c",
        "from django.contrib.sessions.models import Session; "
        f"assert Session.objects.filter(session_key='{session_key}').delete()[0] == 1",
    )


def log_out_in_another_tab(portal: LivePortal, page: Page) -> None:
    other = page.context.new_page()
    other.goto(f"{portal.url}/portal/")
    other.get_by_role("button", name="Log out").click()
    other.wait_for_url(f"{portal.url}/accounts/login/")
    other.close()


@pytest.mark.parametrize(
    "end_session", [delete_session_row, log_out_in_another_tab], ids=lambda end: end.__name__
)
def test_it_brings_the_user_back_to_the_study_after_the_session_ends(
    live_portal: LivePortal, watched: Watched, end_session: Callable[[LivePortal, Page], None]
) -> None:
    username = f"kim-{end_session.__name__.replace('_', '-')}"
    live_portal.add_user(username, "clinician")
    page = watched.page()
    try:
        log_in(page, live_portal, username)
        open_viewer(page, live_portal)
        page.locator("[data-cy=return-to-work-list] svg").first.click()  # OHIF's arrow back to the list
        page.wait_for_url(f"{live_portal.url}/")
        row = page.get_by_text(CT_ROW).first
        row.wait_for(timeout=60_000)
        wait_for_quiet_pacs(page)

        end_session(live_portal, page)
        assert pacs_status(page, live_portal) == 401
        row.click()

        page.wait_for_url(re.compile(r".*/accounts/login/\?next=.*"), timeout=30_000)
        assert parse_qs(urlsplit(page.url).query)["next"] == [VIEWER_URL]
        log_in_here(page, live_portal, username)
        page.wait_for_url(f"{live_portal.url}{VIEWER_URL}", timeout=30_000)
        wait_for_image(page)
        assert_no_tour(page)
        watched.assert_clean()
    except (AssertionError, Error):
        print(f"screenshot: {save_screenshot(page, f'viewer-session-{end_session.__name__}')}")
        raise


def test_it_keeps_the_viewer_url_when_the_session_ends_on_a_viewer_route(
    live_portal: LivePortal, watched: Watched
) -> None:
    """The first /pacs request of a viewer route is refused: the login page brings back that route."""
    live_portal.add_user("lee", "clinician")
    page = watched.page()
    try:
        log_in(page, live_portal, "lee")
        page.goto(f"{live_portal.url}/")
        page.get_by_text(CT_ROW).first.wait_for(timeout=60_000)
        wait_for_quiet_pacs(page)
        delete_session_row(live_portal, page)
        # OHIF's own navigation (no page load, so Django's login redirect cannot act).
        page.evaluate(
            "url => { history.pushState({}, '', url); dispatchEvent(new PopStateEvent('popstate')); }",
            VIEWER_URL,
        )
        page.wait_for_url(re.compile(r".*/accounts/login/\?next=.*"), timeout=30_000)
        assert parse_qs(urlsplit(page.url).query)["next"] == [VIEWER_URL]
        log_in_here(page, live_portal, "lee")
        page.wait_for_url(f"{live_portal.url}{VIEWER_URL}", timeout=30_000)
        wait_for_image(page)
        watched.assert_clean()
    except (AssertionError, Error):
        print(f"screenshot: {save_screenshot(page, 'viewer-session-viewer-route')}")
        raise


def test_it_tells_a_user_without_access_that_they_may_not_see_the_study(
    live_portal: LivePortal, watched: Watched
) -> None:
    page = watched.page()
    try:
        log_in(page, live_portal, "eve")  # no role: /pacs answers 403
        page.goto(f"{live_portal.url}{VIEWER_URL}")
        page.get_by_text("You may not see this study").wait_for(timeout=60_000)
        assert page.get_by_text("You may not see this study").count() == 1
        assert urlsplit(page.url).path != "/accounts/login/"
        watched.assert_clean()
    except (AssertionError, Error):
        print(f"screenshot: {save_screenshot(page, 'viewer-refused')}")
        raise


@pytest.fixture(scope="module")
def tour_portal(orthanc: OrthancServer, postgres: PostgresCluster | None) -> Iterator[LivePortal]:
    portal = start_portal("tour_portal", orthanc.url, orthanc, postgres, VIEWER_SHOW_TOUR="true")
    yield portal
    portal.stop()
    shutil.rmtree(portal.work_dir, ignore_errors=True)


def test_it_shows_the_onboarding_tour_when_the_setting_asks(
    tour_portal: LivePortal, watched: Watched
) -> None:
    page = watched.page()
    try:
        log_in(page, tour_portal, "alice")
        page.goto(f"{tour_portal.url}{VIEWER_URL}")
        page.locator(TOUR).first.wait_for(timeout=60_000)
        watched.assert_clean()
    except (AssertionError, Error):
        print(f"screenshot: {save_screenshot(page, 'viewer-tour')}")
        raise
