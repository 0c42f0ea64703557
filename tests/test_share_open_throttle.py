"""Guessing shared links' secrets: after a few failed opens from one address, that address is
refused for a while, with one audit row for the whole refusal, not one per guess.

Through real HTTP on a portal of its own (two gunicorn workers, so that the count
is seen to be shared between them), which believes the X-Forwarded-For of the
tests' loopback: each test guesses from documentation addresses of its own, and
the session's portal keeps 127.0.0.1 unthrottled for the other tests.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
import requests

from devstack.orthanc_server import OrthancServer
from shares.views import OPEN_FAILURES, OPEN_WINDOW, open_throttle
from tests.conftest import start_portal
from tests.services import LivePortal, PostgresCluster
from tests.test_live_shares import create_share

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
WINDOW_SECONDS = int(OPEN_WINDOW.total_seconds())


@pytest.fixture(scope="module")
def portal(orthanc: OrthancServer, postgres: PostgresCluster | None) -> Iterator[LivePortal]:
    started = start_portal(
        "share-throttle",
        orthanc.url,
        orthanc,
        postgres,
        WEB_WORKERS="2",
        TRUSTED_PROXIES="127.0.0.0/8",
        SITE_PROXIES="127.0.0.0/8",
    )
    yield started
    started.stop()


def guess(portal: LivePortal, address: str, secret: str = "") -> requests.Response:
    """One attempt to open a link from `address`, on a connection of its own (any worker may take it)."""
    session = requests.Session()
    session.headers.update({"X-Forwarded-For": address, "Connection": "close"})
    session.get(f"{portal.url}/share/", timeout=10)
    return session.post(
        f"{portal.url}/share/open/",
        data={
            "secret": secret or "pacsshare_" + secrets.token_hex(22)[:43],
            "csrfmiddlewaretoken": session.cookies["csrftoken"],
        },
        headers={"Referer": f"{portal.url}/share/"},
        allow_redirects=False,
        timeout=30,
    )


def opens_from(portal: LivePortal, address: str, after: int) -> list[dict[str, object]]:
    return [
        row
        for row in portal.audit_events(after)
        if row["action"] == "share-opened" and str(row["client_ip"]) == address
    ]


@pytest.mark.live
def test_it_refuses_an_address_after_its_failed_guesses_with_one_audit_row_for_the_window(
    portal: LivePortal,
) -> None:
    address, after = "198.51.100.10", portal.last_audit_id()
    assert [guess(portal, address).status_code for _ in range(OPEN_FAILURES)] == [404] * OPEN_FAILURES
    throttled = [guess(portal, address) for _ in range(3 * OPEN_FAILURES)]
    assert {answer.status_code for answer in throttled} == {429}
    assert all(0 < int(answer.headers["Retry-After"]) <= WINDOW_SECONDS for answer in throttled)
    assert "Too many attempts" in throttled[-1].text and "Traceback" not in throttled[-1].text
    rows = opens_from(portal, address, after)
    assert [row["status"] for row in rows] == [404] * OPEN_FAILURES + [429]
    detail = str(rows[-1]["detail"])
    assert f"{OPEN_FAILURES} failed" in detail and "refused" in detail, detail
    assert not rows[-1]["success"] and rows[-1]["credential"] == "share:unknown"


@pytest.mark.live
def test_it_refuses_even_the_right_secret_from_a_throttled_address_but_not_from_another(
    portal: LivePortal,
) -> None:
    _, secret = create_share(portal, "alice")
    address, after = "198.51.100.11", portal.last_audit_id()
    for _ in range(OPEN_FAILURES):
        guess(portal, address)
    refused = guess(portal, address, secret)
    assert refused.status_code == 429 and "sessionid" not in refused.cookies
    assert guess(portal, address, secret).status_code == 429
    assert [row["status"] for row in opens_from(portal, address, after)][OPEN_FAILURES:] == [429]
    assert guess(portal, "198.51.100.12", secret).status_code == 302


def test_it_lets_an_address_try_until_its_failures_reach_the_limit() -> None:
    assert not open_throttle(OPEN_FAILURES - 1, None, NOW).refused
    throttle = open_throttle(OPEN_FAILURES, None, NOW)
    assert throttle.refused and throttle.starts and throttle.retry_after == WINDOW_SECONDS


def test_it_refuses_unrecorded_until_the_window_after_the_first_refusal_ends() -> None:
    started = NOW - timedelta(seconds=100)
    throttle = open_throttle(OPEN_FAILURES, started, NOW)
    assert throttle.refused and not throttle.starts
    assert throttle.retry_after == WINDOW_SECONDS - 100
    # Its guesses no longer recorded, an attacker may have fewer failures in the window.
    assert open_throttle(0, started, NOW).refused
    assert open_throttle(0, started, started + OPEN_WINDOW - timedelta(milliseconds=1)).retry_after == 1


def test_it_lets_an_address_try_again_once_its_window_is_over() -> None:
    # The query asks for the last window's rows only: an older throttle is not passed in.
    assert not open_throttle(0, None, NOW).refused
    assert not open_throttle(0, NOW - OPEN_WINDOW, NOW).refused
