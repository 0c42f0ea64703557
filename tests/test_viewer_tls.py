"""The viewer over HTTPS (gunicorn's own TLS, a self-signed certificate made here) with the CSP on."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from playwright.sync_api import Browser, ConsoleMessage

from devstack.orthanc_server import OrthancServer
from orthanc import demo
from tests.browser import log_in, save_screenshot, wait_for_image
from tests.conftest import start_portal
from tests.services import LivePortal, PostgresCluster, require_binary

pytestmark = [pytest.mark.browser, pytest.mark.live]


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    openssl = require_binary("openssl", "apt-get install openssl")
    directory = tmp_path_factory.mktemp("tls")
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        [
            openssl,
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1,DNS:localhost",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    return cert, key


@pytest.fixture(scope="module")
def tls_portal(
    certificate: tuple[Path, Path], orthanc: OrthancServer, postgres: PostgresCluster | None
) -> Iterator[LivePortal]:
    cert, key = certificate
    portal = start_portal(
        "tls_portal",
        orthanc.url,
        orthanc,
        postgres,
        TLS_CERT_FILE=str(cert),
        TLS_KEY_FILE=str(key),
        PORTAL_HTTPS="true",
    )
    yield portal
    portal.stop()


def test_it_serves_https_with_secure_cookies_and_hsts(tls_portal: LivePortal) -> None:
    login = requests.get(f"{tls_portal.url}/accounts/login/", verify=tls_portal.verify, timeout=30)
    assert login.status_code == 200
    assert login.headers["Strict-Transport-Security"].startswith("max-age=31536000")
    assert "default-src 'self'" in login.headers["Content-Security-Policy"]
    cookie = next(c for c in login.cookies if c.name == "csrftoken")
    assert cookie.secure
    session = tls_portal.login("alice")
    assert next(c for c in session.cookies if c.name == "sessionid").secure


@pytest.fixture(scope="module")
def proxied_portal(orthanc: OrthancServer, postgres: PostgresCluster | None) -> Iterator[LivePortal]:
    """Plain HTTP from a TLS-terminating site proxy on loopback, which says the scheme."""
    portal = start_portal(
        "proxied_portal",
        orthanc.url,
        orthanc,
        postgres,
        PORTAL_HTTPS="true",
        TRUST_PROXY_SSL_HEADER="true",
        FORWARDED_ALLOW_IPS="127.0.0.1",
    )
    yield portal
    portal.stop()


def test_it_redirects_http_to_https_behind_a_tls_proxy(proxied_portal: LivePortal) -> None:
    url = f"{proxied_portal.url}/portal/"
    plain = requests.get(url, headers={"X-Forwarded-Proto": "http"}, allow_redirects=False, timeout=30)
    assert plain.status_code == 301
    assert plain.headers["Location"] == f"https://127.0.0.1:{proxied_portal.port}/portal/"
    secure = requests.get(url, headers={"X-Forwarded-Proto": "https"}, allow_redirects=False, timeout=30)
    assert secure.status_code == 302
    assert secure.headers["Location"].startswith("/accounts/login/")
    assert "Strict-Transport-Security" in secure.headers
    health = requests.get(f"{proxied_portal.url}/healthz", headers={"X-Forwarded-Proto": "http"}, timeout=30)
    assert health.status_code == 200  # load balancers probe over plain HTTP


def test_it_renders_the_demo_ct_over_https_without_csp_violations(
    tls_portal: LivePortal, browser: Browser
) -> None:
    context = browser.new_context(ignore_https_errors=True, viewport={"width": 1400, "height": 900})
    page = context.new_page()
    violations: list[str] = []

    def watch(message: ConsoleMessage) -> None:
        if "Content Security Policy" in message.text or "Content-Security-Policy" in message.text:
            violations.append(message.text)

    page.on("console", watch)
    try:
        log_in(page, tls_portal, "alice")
        viewer = page.goto(f"{tls_portal.url}/viewer?StudyInstanceUIDs={demo.DEMO_CT_STUDY_UID}")
        assert viewer is not None
        policy = viewer.headers["content-security-policy"]
        assert "script-src 'self' 'wasm-unsafe-eval' 'sha256-" in policy
        assert "'unsafe-eval'" not in policy.replace("'wasm-unsafe-eval'", "")
        wait_for_image(page)
        assert page.evaluate("window.crossOriginIsolated") is True
        page.wait_for_load_state("networkidle")
        assert violations == []
    except Exception:
        print(f"screenshot: {save_screenshot(page, 'viewer-tls')}; CSP violations: {violations}")
        raise
    finally:
        context.close()
