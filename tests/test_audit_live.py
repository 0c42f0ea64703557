"""Audit rows written by the portal under gunicorn, read back from its database."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

import pytest
import requests

from devstack.orthanc_server import OrthancServer
from orthanc import demo
from tests import rawhttp
from tests.conftest import start_portal
from tests.dicom import stow_body, unique_ct_instance
from tests.services import LivePortal, PostgresCluster

pytestmark = pytest.mark.live
STUDY = demo.DEMO_CT_STUDY_UID
SERIES = demo.DEMO_CT_SERIES_UID


def browser_headers(portal: LivePortal) -> dict[str, str]:
    return {
        "Sec-Fetch-Site": "same-origin",
        "Sec-Fetch-Mode": "cors",
        "User-Agent": "Mozilla/5.0 (OHIF test)",
    }


def test_it_records_an_ohif_style_reading_session(live_portal: LivePortal, orthanc: OrthancServer) -> None:
    # A user of its own: another test's reads of the demo CT in this bucket would cover these.
    live_portal.add_user("olive", "clinician")
    start = live_portal.last_audit_id()
    session = live_portal.login("olive")
    base = f"{live_portal.url}/pacs/dicom-web"
    headers = browser_headers(live_portal)
    assert session.get(f"{base}/studies?PatientID=DEMO-CT-0001", headers=headers).status_code == 200
    assert session.get(f"{base}/studies/{STUDY}/series", headers=headers).status_code == 200
    metadata = session.get(f"{base}/studies/{STUDY}/series/{SERIES}/metadata", headers=headers)
    assert metadata.status_code == 200
    sop = metadata.json()[0]["00080018"]["Value"][0]
    frame = session.get(
        f"{base}/studies/{STUDY}/series/{SERIES}/instances/{sop}/frames/1",
        headers={**headers, "Accept": "multipart/related; type=application/octet-stream"},
    )
    assert frame.status_code == 200

    # A frame of a study whose metadata was just read is covered by the metadata's row.
    events = [event for event in live_portal.audit_events(start) if str(event["path"]).startswith("/pacs/")]
    assert [(event["action"], event["status"], event["study_uid"]) for event in events] == [
        ("query", None, ""),
        ("query", None, STUDY),
        ("retrieve", None, STUDY),
    ]
    for event in events:
        assert event["username"] == "olive"
        assert event["credential"] == "session"
        assert event["user_id"] is not None
        assert str(event["client_ip"]) == "127.0.0.1"
        assert event["user_agent"] == "Mozilla/5.0 (OHIF test)"
        assert event["patient_id"] == "DEMO-CT-0001"  # from the query, then from Orthanc's index
        assert event["bucket_key"]
    login = [event for event in live_portal.audit_events(start) if event["action"] == "login"]
    assert [event["username"] for event in login] == ["olive"]


def test_it_records_the_uids_a_stow_stored(live_portal: LivePortal) -> None:
    start = live_portal.last_audit_id()
    first, study_uid, sop_one = unique_ct_instance(label="audit-stow", patient_id="AUDIT-STOW")
    second, _, sop_two = unique_ct_instance(study_uid=study_uid, patient_id="AUDIT-STOW")
    body, content_type = stow_body([first, second])
    response = requests.post(
        f"{live_portal.url}/pacs/dicom-web/studies",
        data=body,
        headers={"Content-Type": content_type},
        auth=("bob", live_portal.passwords["bob"]),
        timeout=60,
    )
    assert response.status_code == 200
    (event,) = live_portal.audit_events(start)
    assert event["action"] == "store"
    assert event["username"] == "bob"
    assert (event["patient_id"], event["study_uid"]) == ("AUDIT-STOW", study_uid)
    stored = event["stored_uids"]
    assert sorted(json.loads(stored) if isinstance(stored, str) else stored) == sorted([sop_one, sop_two])


def test_it_records_refusals_failed_logins_and_lockouts(live_portal: LivePortal) -> None:
    live_portal.add_user("trudy", "clinician")
    start = live_portal.last_audit_id()
    url = f"{live_portal.url}/pacs/dicom-web/studies"
    assert requests.get(url, timeout=30).status_code == 401
    for _ in range(3):
        assert requests.get(url, auth=("trudy", "wrong"), timeout=30).status_code in (401, 429)
    assert requests.get(url, auth=("trudy", live_portal.passwords["trudy"]), timeout=30).status_code == 429
    actions = [
        (event["action"], event["username"], event["status"]) for event in live_portal.audit_events(start)
    ]
    assert actions[0] == ("query", "", 401)
    assert actions.count(("login-failed", "trudy", 401)) >= 3
    assert ("lockout", "trudy", 429) in actions


def test_it_audits_a_hostile_path_even_with_a_nul_in_it(live_portal: LivePortal) -> None:
    start = live_portal.last_audit_id()
    raw = rawhttp.request(
        "GET",
        "/pacs/dicom-web/studies/%00",
        {"Authorization": rawhttp.basic("alice", live_portal.passwords["alice"])},
    )
    assert rawhttp.send(live_portal.port, raw) == 400
    front = getattr(live_portal, "front", None)
    if front is not None:
        # nginx refuses a NUL in the request line itself: the request never reaches
        # Django, and nginx's access log is its record.
        assert live_portal.audit_events(start) == []
        deadline = time.monotonic() + 5  # nginx writes its log line once the answer is sent
        while '"path":"","status":400' not in front.access_log_path.read_text():
            assert time.monotonic() < deadline, "nginx did not log the refused request"
            time.sleep(0.1)
        return
    (event,) = live_portal.audit_events(start)
    assert (event["action"], event["status"], event["username"]) == ("retrieve", 400, "alice")
    assert event["path"] == "/pacs/dicom-web/studies/\ufffd"


@pytest.fixture(scope="module")
def two_worker_portal(orthanc: OrthancServer, postgres: PostgresCluster | None) -> Iterator[LivePortal]:
    portal = start_portal("two_workers", orthanc.url, orthanc, postgres, WEB_WORKERS="2", WEB_THREADS="8")
    yield portal
    portal.stop()


def test_two_workers_opening_one_study_at_once_write_one_row_per_bucket(
    two_worker_portal: LivePortal,
) -> None:
    portal = two_worker_portal
    start = portal.last_audit_id()
    url = f"{portal.url}/pacs/dicom-web/studies/{STUDY}/series"
    auth = ("alice", portal.passwords["alice"])

    def fetch(index: int) -> int:
        # A new connection each time, so both workers take requests.
        headers = {"Accept": "application/dicom+json", "Connection": "close"}
        return requests.get(
            f"{url}?SeriesDescription=n{index}", auth=auth, headers=headers, timeout=60
        ).status_code

    with ThreadPoolExecutor(max_workers=16) as pool:
        statuses = list(pool.map(fetch, range(64)))
    assert statuses == [200] * 64
    rows = [event for event in portal.audit_events(start) if str(event["path"]).startswith("/pacs/")]
    buckets = {bucket_of(event) for event in rows}
    assert len(rows) == len(buckets) <= 2, rows  # one row per bucket (two if the test straddled one)
    assert {(event["patient_id"], event["study_uid"]) for event in rows} == {("DEMO-CT-0001", STUDY)}
    if getattr(portal, "front", None) is None:  # through nginx, only the decisions reach the workers
        path = url.split(str(portal.port))[1]
        served_by = {line["pid"] for line in access_lines(portal) if line["path"] == path}
        assert len(served_by) == 2, "both workers should have served some of the requests"


def bucket_of(event: dict[str, object]) -> int:
    when = event["action_time"]
    moment = when if isinstance(when, datetime) else datetime.fromisoformat(str(when))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() // 300)


def access_lines(portal: LivePortal) -> list[dict[str, object]]:
    lines = []
    for line in portal.log_path.read_text().splitlines():
        _, marker, payload = line.partition("pacsportal.access: ")
        if marker:
            lines.append(json.loads(payload))
    return lines


def test_it_answers_garbage_audit_filters_with_400_and_keeps_every_row(live_portal: LivePortal) -> None:
    live_portal.add_user("otto", "auditor")
    session = live_portal.login("otto")
    before = len(live_portal.audit_events())
    garbage = [
        ("/audit/", {"start": "yesterday"}),
        ("/audit/", {"start": "2025-02-01", "end": "2025-01-01"}),
        ("/audit/", {"action": "drop table"}),
        ("/audit/", {"user": "x" * 200}),
        ("/audit/export.csv", {"end": "2025-13-45"}),
        ("/audit/export.csv", {"action": "\x00"}),
    ]
    for path, query in garbage:
        response = session.get(f"{live_portal.url}{path}", params=query, timeout=30)
        assert response.status_code == 400, (path, query, response.status_code)
    assert session.get(f"{live_portal.url}/audit/", params={"page": "zzz"}, timeout=30).status_code == 200
    export = session.get(f"{live_portal.url}/audit/export.csv", params={"user": "otto"}, timeout=30)
    assert export.status_code == 200
    assert export.headers["Content-Type"] == "text/csv; charset=utf-8"
    after = live_portal.audit_events()
    # Nothing removed; each page view recorded (a refused export shows no rows, so records none).
    assert len(after) == before + 4 + 2
    views = [
        event for event in after[before:] if event["username"] == "otto" and event["action"] == "audit-view"
    ]
    assert [event["status"] for event in views] == [400, 400, 400, 400, 200]
