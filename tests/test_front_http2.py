"""The browser's protocol through the portal's nginx: HTTP/2 over TLS, HTTP/1.1 without.

Chromium itself says which protocol it spoke (Navigation and Resource Timing's
`nextHopProtocol`), for the page and for a /pacs read that nginx streams from
Orthanc. The certificate is a throwaway self-signed one, which Chromium is told
to accept. The HTTP/2 directive follows the installed nginx's version.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, Playwright

from devstack.nginx import FrontNotInstalled, NativeFront, nginx_binary, nginx_version
from devstack.orthanc_server import OrthancServer
from pacsportal.front import tls_listen
from tests.browser import CHROMIUM, FLAGS, log_in
from tests.conftest import start_portal
from tests.services import LivePortal, PostgresCluster
from tests.test_viewer_tls import certificate  # noqa: F401  (the module's self-signed certificate)

QIDO = "/pacs/dicom-web/studies?PatientID=DEMO-CT-0001"
# A read's entry joins Resource Timing once its body has arrived, after fetch() resolves.
READ_PROTOCOL = """async (path) => {
  const response = await fetch(path, { headers: { Accept: 'application/dicom+json' } });
  await response.text();
  for (let tries = 0; tries < 50; tries++) {
    const entry = performance.getEntriesByType('resource').find((e) => e.name.endsWith(path));
    if (entry) return [response.status, entry.nextHopProtocol];
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  return [response.status, 'no Resource Timing entry'];
}"""


def test_it_puts_http2_on_listen_before_nginx_1_25_1() -> None:
    assert tls_listen(8443, (1, 22, 1)) == ("8443 ssl http2", "")
    assert tls_listen(8443, (1, 25, 0)) == ("8443 ssl http2", "")


def test_it_turns_http2_on_by_its_own_directive_from_nginx_1_25_1() -> None:
    assert tls_listen(8443, (1, 25, 1)) == ("8443 ssl", "http2 on; ")
    assert tls_listen(8443, (1, 27, 3)) == ("8443 ssl", "http2 on; ")


def a_front(tmp_path: Path, version: tuple[int, ...] | None, cert: str = "", key: str = "") -> NativeFront:
    return NativeFront(
        work_dir=tmp_path / "nginx",
        port=8443,
        portal_upstream="unix:/nonexistent/gunicorn.sock",
        orthanc_upstream="127.0.0.1:8042",
        orthanc_user="orthanc",
        orthanc_password="secret",
        tls_cert=cert,
        tls_key=key,
        version=version,
    )


def test_it_renders_the_http2_directive_for_the_nginx_it_is_given(tmp_path: Path) -> None:
    old = a_front(tmp_path, (1, 22, 1), "/certs/cert.pem", "/certs/key.pem").values()
    new = a_front(tmp_path, (1, 25, 1), "/certs/cert.pem", "/certs/key.pem").values()
    assert old["NGINX_LISTEN"] == "8443 ssl http2" and "http2" not in old["NGINX_TLS"]
    assert new["NGINX_LISTEN"] == "8443 ssl" and new["NGINX_TLS"].startswith("http2 on; ")
    plain = a_front(tmp_path, None).values()
    assert plain["NGINX_LISTEN"] == "8443" and plain["NGINX_TLS"] == ""


def test_the_installed_nginx_takes_its_tls_config_without_a_warning(
    tmp_path: Path,
    certificate: tuple[Path, Path],  # noqa: F811
) -> None:
    cert, key = certificate
    front = a_front(tmp_path, None, str(cert), str(key))
    try:
        binary = nginx_binary()
    except FrontNotInstalled as error:
        pytest.fail(str(error), pytrace=False)
    try:
        config = front.write_config()
        result = subprocess.run(
            [binary, "-t", "-c", str(config), "-p", str(front.work_dir)],
            capture_output=True,
            text=True,
            timeout=30,
        )
    finally:
        shutil.rmtree(front.decision_cache, ignore_errors=True)
    assert front.version == nginx_version()
    assert result.returncode == 0, result.stderr
    assert "[warn]" not in result.stderr and "deprecated" not in result.stderr, result.stderr


@pytest.fixture(scope="module")
def chromium(playwright_driver: Playwright) -> Iterator[Browser]:
    launched = playwright_driver.chromium.launch(
        executable_path=CHROMIUM,
        args=[*FLAGS, "--disable-quic", "--ignore-certificate-errors"],
        headless=True,
    )
    yield launched
    launched.close()


@pytest.fixture(scope="module")
def tls_front(
    certificate: tuple[Path, Path],  # noqa: F811
    orthanc: OrthancServer,
    postgres: PostgresCluster | None,
) -> Iterator[LivePortal]:
    cert, key = certificate
    portal = start_portal(
        "http2_tls",
        orthanc.url,
        orthanc,
        postgres,
        front=True,
        TLS_CERT_FILE=str(cert),
        TLS_KEY_FILE=str(key),
        PORTAL_HTTPS="true",
    )
    yield portal
    portal.stop()


@pytest.fixture(scope="module")
def plain_front(orthanc: OrthancServer, postgres: PostgresCluster | None) -> Iterator[LivePortal]:
    portal = start_portal("http2_plain", orthanc.url, orthanc, postgres, front=True)
    yield portal
    portal.stop()


def protocols(chromium: Browser, portal: LivePortal) -> tuple[str, str]:
    """What Chromium spoke for a page of the portal and for a /pacs read from it."""
    context = chromium.new_context()
    try:
        page: Page = context.new_page()
        log_in(page, portal, "alice")
        page_protocol = page.evaluate("performance.getEntriesByType('navigation')[0].nextHopProtocol")
        status, read_protocol = page.evaluate(READ_PROTOCOL, QIDO)
        assert status == 200
        return page_protocol, read_protocol
    finally:
        context.close()


@pytest.mark.live
@pytest.mark.browser
def test_the_browser_speaks_http2_over_tls(chromium: Browser, tls_front: LivePortal) -> None:
    assert tls_front.url.startswith("https://")
    assert protocols(chromium, tls_front) == ("h2", "h2")


@pytest.mark.live
@pytest.mark.browser
def test_the_browser_speaks_http1_1_without_tls(chromium: Browser, plain_front: LivePortal) -> None:
    assert plain_front.url.startswith("http://")
    assert protocols(chromium, plain_front) == ("http/1.1", "http/1.1")
