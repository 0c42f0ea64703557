"""What crosses the proxy, in both directions, seen by a recording upstream."""

from __future__ import annotations

import time

import pytest
import requests

from tests.recorder import Recorder
from tests.services import LivePortal

pytestmark = pytest.mark.live
QIDO = "/pacs/dicom-web/studies"


def alice(portal: LivePortal) -> tuple[str, str]:
    return ("alice", portal.passwords["alice"])


def last_request_to(recorder: Recorder, path: str) -> dict[str, str]:
    matching = [request for request in recorder.requests if request.path.startswith(path)]
    assert matching, f"nothing reached {path}"
    return matching[-1].headers


def test_it_sends_orthanc_the_service_credential_and_nothing_of_the_clients(
    recording_portal: LivePortal, recorder: Recorder
) -> None:
    response = requests.get(
        f"{recording_portal.url}{QIDO}?StudyDescription=hygiene",
        auth=alice(recording_portal),
        headers={
            "Cookie": "sessionid=stolen; csrftoken=x",
            "Connection": "keep-alive, X-Secret",
            "X-Secret": "hop",
            "TE": "trailers",
            "Forwarded": "for=6.6.6.6;host=evil.example",
            "X-Forwarded-For": "6.6.6.6",
            "X-Forwarded-Host": "evil.example",
            "X-Forwarded-Proto": "https",
            "Proxy-Authorization": "Basic Zm9vOmJhcg==",
            "Remote-User": "root",
            "Accept": "application/dicom+json",
        },
        timeout=30,
    )
    assert response.status_code == 200
    sent = last_request_to(recorder, "/dicom-web/studies?00081030=hygiene")
    service = requests.auth._basic_auth_str(
        recording_portal.env["ORTHANC_USER"], recording_portal.env["ORTHANC_PASSWORD"]
    )
    assert sent["authorization"] == service
    for name in ("cookie", "x-secret", "te", "proxy-authorization", "remote-user"):
        assert name not in sent, name
    assert sent["forwarded"] == f"host=127.0.0.1:{recording_portal.port}/pacs;proto=http"
    assert sent["x-forwarded-for"] == "127.0.0.1"
    # DICOMweb 1.14+ would prefer these over Forwarded, and drop the mount from its URLs.
    assert "x-forwarded-host" not in sent
    assert "x-forwarded-proto" not in sent
    assert sent["accept"] == "application/dicom+json"


def test_it_keeps_orthancs_credentials_challenge_and_cookies_from_the_client(
    recording_portal: LivePortal,
) -> None:
    response = requests.get(f"{recording_portal.url}{QIDO}", auth=alice(recording_portal), timeout=30)
    assert response.status_code == 200
    assert "WWW-Authenticate" not in response.headers
    assert "orthanc-session" not in response.headers.get("Set-Cookie", "")
    assert "X-Upstream-Private" not in response.headers
    assert response.headers["Cache-Control"] == "no-store, private"
    assert response.json() == {"recorded": True}


def test_it_challenges_api_clients_but_not_browsers(recording_portal: LivePortal) -> None:
    api = requests.get(f"{recording_portal.url}{QIDO}", timeout=30)
    assert api.status_code == 401
    assert api.headers["WWW-Authenticate"].startswith("Basic ")
    browser = requests.get(
        f"{recording_portal.url}{QIDO}",
        headers={"Sec-Fetch-Mode": "cors", "Sec-Fetch-Site": "same-origin"},
        timeout=30,
    )
    assert browser.status_code == 401
    assert "WWW-Authenticate" not in browser.headers


def test_it_creates_no_session_for_basic_auth(recording_portal: LivePortal) -> None:
    response = requests.get(f"{recording_portal.url}{QIDO}", auth=alice(recording_portal), timeout=30)
    assert response.status_code == 200
    assert "sessionid" not in response.cookies


def test_it_answers_504_when_orthanc_is_too_slow(recording_portal: LivePortal) -> None:
    started = time.monotonic()
    response = requests.get(
        f"{recording_portal.url}/pacs/dicom-web/studies?StudyDescription=slow",
        auth=alice(recording_portal),
        timeout=30,
    )
    assert response.status_code == 504
    assert response.json() == {"error": "the archive did not answer in time", "status": 504}
    assert time.monotonic() - started < 4.5  # ORTHANC_READ_TIMEOUT=2, no retry of a timed-out read


def test_it_answers_502_when_orthanc_is_down_and_recovers(
    recording_portal: LivePortal, recorder: Recorder
) -> None:
    recorder.stop()
    try:
        down = requests.get(
            f"{recording_portal.url}{QIDO}",
            auth=alice(recording_portal),
            headers={"Accept": "text/html"},
            timeout=30,
        )
        assert down.status_code == 502
        assert down.headers["Content-Type"].startswith("text/html")
        assert "the archive is not reachable" in down.text
        health = requests.get(f"{recording_portal.url}/healthz", timeout=30)
        assert health.status_code == 503
        assert health.json()["orthanc"] == "down"
    finally:
        recorder.start()
    again = requests.get(f"{recording_portal.url}{QIDO}", auth=alice(recording_portal), timeout=30)
    assert again.status_code == 200


def test_it_refuses_cross_site_writes_under_a_session(
    recording_portal: LivePortal, recorder: Recorder
) -> None:
    # A write that reaches the stand-in Orthanc as sent (a STOW body would be checked first).
    session = recording_portal.login("carol")
    url = f"{recording_portal.url}/pacs-admin/instances"
    headers = {"Content-Type": "application/dicom"}
    before = len(recorder.requests)
    cross_site = session.post(
        url, data=b"--x--", headers={**headers, "Sec-Fetch-Site": "cross-site"}, timeout=30
    )
    wrong_origin = session.post(
        url, data=b"--x--", headers={**headers, "Origin": "http://evil.example"}, timeout=30
    )
    unproven = session.post(url, data=b"--x--", headers=headers, timeout=30)
    assert [cross_site.status_code, wrong_origin.status_code, unproven.status_code] == [403, 403, 403]
    assert len(recorder.requests) == before
    same_origin = session.post(
        url,
        data=b"--x--",
        headers={**headers, "Sec-Fetch-Site": "same-origin", "Origin": recording_portal.url},
        timeout=30,
    )
    assert same_origin.status_code == 200
    assert recorder.requests[-1].method == "POST"


def test_it_locks_out_basic_auth_after_repeated_failures(recording_portal: LivePortal) -> None:
    recording_portal.add_user("mallory-target", "clinician")
    url = f"{recording_portal.url}{QIDO}"
    failures = [requests.get(url, auth=("mallory-target", "wrong"), timeout=30).status_code for _ in range(3)]
    assert failures[:2] == [401, 401]
    locked = requests.get(
        url, auth=("mallory-target", recording_portal.passwords["mallory-target"]), timeout=30
    )
    assert locked.status_code == 429


def test_it_passes_orthancs_refusals_on_but_reports_its_own_rejected_credential(
    recording_portal: LivePortal,
) -> None:
    carol = ("carol", recording_portal.passwords["carol"])
    refused = requests.post(
        f"{recording_portal.url}/pacs-admin/tools/forbidden", auth=carol, data=b"x", timeout=30
    )
    assert refused.status_code == 403  # Orthanc's own answer, e.g. Lua execution disabled
    misconfigured = requests.get(f"{recording_portal.url}/pacs-admin/unauthorized", auth=carol, timeout=30)
    assert misconfigured.status_code == 502
    assert misconfigured.json()["error"] == "the archive refused the portal's service credential"
    assert "WWW-Authenticate" not in misconfigured.headers
