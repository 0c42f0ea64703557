"""Behind the site's own proxy (SITE_PROXIES): nginx names the client the proxy names, nobody else does.

Here the tests' loopback plays the site proxy: requests come from 127.0.0.1 with
the X-Forwarded-For a proxy would send, a client's own forged entry first and
the address the proxy saw last.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import requests

from devstack.orthanc_server import OrthancServer
from orthanc import demo
from tests.conftest import start_portal
from tests.services import LivePortal, PostgresCluster
from tests.test_front import frame_url, nginx_lines, sops

pytestmark = pytest.mark.live
FORGED = "203.0.113.9"  # what the client itself wrote
CLIENT = "198.51.100.23"  # the address the site proxy saw and appended
CHAIN = f"{FORGED}, {CLIENT}"


@pytest.fixture(scope="module")
def site_proxied(orthanc: OrthancServer, postgres: PostgresCluster | None) -> Iterator[LivePortal]:
    portal = start_portal(
        "site-proxied", orthanc.url, orthanc, postgres, front=True, SITE_PROXIES="127.0.0.0/8"
    )
    yield portal
    portal.stop()


@pytest.fixture(scope="module")
def unproxied(orthanc: OrthancServer, postgres: PostgresCluster | None) -> Iterator[LivePortal]:
    portal = start_portal("unproxied", orthanc.url, orthanc, postgres, front=True)
    yield portal
    portal.stop()


def visit(portal: LivePortal, orthanc: OrthancServer) -> list[tuple[str, str]]:
    """A login, a frame read by its session and a wrong Basic password, each with CHAIN;
    the (action, client address) of the audit rows they wrote."""
    start = portal.last_audit_id()
    session = requests.Session()
    session.headers["X-Forwarded-For"] = CHAIN
    login_url = f"{portal.url}/accounts/login/"
    session.get(login_url, timeout=10)
    logged_in = session.post(
        login_url,
        data={
            "username": "alice",
            "password": portal.passwords["alice"],
            "csrfmiddlewaretoken": session.cookies["csrftoken"],
        },
        headers={"Referer": login_url},
        timeout=10,
        allow_redirects=False,
    )
    assert logged_in.status_code == 302
    frame = session.get(
        frame_url(portal, sops(orthanc)[0]),
        headers={"Accept": "multipart/related; type=application/octet-stream"},
        timeout=30,
    )
    assert frame.status_code == 200
    wrong = requests.get(
        f"{portal.url}/pacs/dicom-web/studies?StudyInstanceUID={demo.DEMO_CT_STUDY_UID}",
        auth=("bob", "not bob's password"),
        headers={"X-Forwarded-For": CHAIN},
        timeout=30,
    )
    assert wrong.status_code == 401
    return [(str(row["action"]), str(row["client_ip"])) for row in portal.audit_events(start)]


def test_behind_a_site_proxy_audit_and_the_log_name_the_client_it_saw(
    site_proxied: LivePortal, orthanc: OrthancServer
) -> None:
    rows = visit(site_proxied, orthanc)
    assert {action for action, _ in rows} >= {"login", "retrieve", "login-failed"}, rows
    assert {address for _, address in rows} == {CLIENT}, rows
    logged = {line["client"] for line in nginx_lines(site_proxied) if "/pacs/" in str(line["path"])}
    assert logged == {CLIENT}


def test_without_site_proxies_nobodys_forwarded_for_is_believed(
    unproxied: LivePortal, orthanc: OrthancServer
) -> None:
    rows = visit(unproxied, orthanc)
    assert {action for action, _ in rows} >= {"login", "retrieve", "login-failed"}, rows
    assert {address for _, address in rows} == {"127.0.0.1"}, rows
    logged = {line["client"] for line in nginx_lines(unproxied) if "/pacs/" in str(line["path"])}
    assert logged == {"127.0.0.1"}
