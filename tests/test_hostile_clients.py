"""Hostile and awkward clients through real HTTP: challenge-response uploads, nested JSON,
and Orthanc's own errors translated."""

from __future__ import annotations

import json

import httplib2
import pytest
import requests

from devstack.orthanc_server import OrthancServer
from tests.dicom import stow_body, unique_ct_instance, write_large_stow_body
from tests.services import LivePortal

pytestmark = pytest.mark.live


def test_httplib2_uploads_3_mb_through_the_401_challenge_on_one_connection(
    live_portal: LivePortal, tmp_path_factory: pytest.TempPathFactory
) -> None:
    body_path = tmp_path_factory.mktemp("challenge") / "body.multipart"
    content_type, study_uid, _ = write_large_stow_body(body_path, 3)
    body = body_path.read_bytes()
    assert len(body) > 3_000_000
    http = httplib2.Http(timeout=60)
    http.add_credentials("bob", live_portal.passwords["bob"])
    # httplib2 sends without credentials first, reads the 401's challenge, and
    # retries on the same connection: the portal must have read the first body.
    response, content = http.request(
        f"{live_portal.url}/pacs/dicom-web/studies",
        "POST",
        body=body,
        headers={"Content-Type": content_type, "Accept": "application/dicom+json"},
    )
    assert response.status == 200, content[:300]
    stored = json.loads(content)["00081199"]["Value"]
    assert len(stored) == 6
    connections = {
        connection.sock.getsockname() for connection in http.connections.values() if connection.sock
    }
    assert len(connections) == 1, "httplib2 had to reconnect"
    found = requests.get(
        f"{live_portal.url}/pacs/dicom-web/studies?StudyInstanceUID={study_uid}",
        auth=("alice", live_portal.passwords["alice"]),
        timeout=30,
    )
    assert len(found.json()) == 1


def nested_json(depth: int) -> bytes:
    return b'{"Level": "Study", "Query": ' + b'{"a": ' * depth + b"1" + b"}" * depth + b"}"


@pytest.mark.parametrize("depth", [40, 500, 5000])
def test_it_refuses_deeply_nested_json_to_pacs_admin_and_orthanc_stays_up(
    depth: int, live_portal: LivePortal, orthanc: OrthancServer
) -> None:
    response = requests.post(
        f"{live_portal.url}/pacs-admin/tools/find",
        data=nested_json(depth),
        headers={"Content-Type": "application/json"},
        auth=("carol", live_portal.passwords["carol"]),
        timeout=30,
    )
    assert response.status_code == 400
    assert "nests" in response.json()["error"]
    assert requests.get(f"{orthanc.url}/system", auth=(orthanc.user, orthanc.password), timeout=10).ok


def test_it_refuses_a_json_body_over_the_limit(live_portal: LivePortal) -> None:
    response = requests.post(
        f"{live_portal.url}/pacs-admin/tools/find",
        data=b'{"Level": "Study", "Query": {}, "x": "' + b"a" * (2 * 1024 * 1024) + b'"}',
        headers={"Content-Type": "application/json"},
        auth=("carol", live_portal.passwords["carol"]),
        timeout=30,
    )
    assert response.status_code == 413


def test_it_still_forwards_ordinary_json_and_uploads_to_pacs_admin(live_portal: LivePortal) -> None:
    carol = ("carol", live_portal.passwords["carol"])
    find = requests.post(
        f"{live_portal.url}/pacs-admin/tools/find",
        json={"Level": "Study", "Query": {}},
        auth=carol,
        timeout=30,
    )
    assert find.status_code == 200 and isinstance(find.json(), list)
    data, _, _ = unique_ct_instance(label="admin-upload")
    upload = requests.post(f"{live_portal.url}/pacs-admin/instances", data=data, auth=carol, timeout=30)
    assert upload.status_code == 200 and upload.json()["Status"] == "Success"


def test_it_translates_orthancs_errors(live_portal: LivePortal) -> None:
    carol = ("carol", live_portal.passwords["carol"])
    missing = requests.get(f"{live_portal.url}/pacs-admin/studies/0000-not-there", auth=carol, timeout=30)
    assert missing.status_code == 404
    assert missing.headers["Content-Type"] == "application/json"
    answer = missing.json()
    assert set(answer) == {"error", "status"}
    assert answer["error"].startswith("not found in the archive")
    for internal in ("OrthancError", "OrthancStatus", "Details", "HttpError", "Uri", "Method"):
        assert internal not in missing.text
    html = requests.get(
        f"{live_portal.url}/pacs-admin/studies/0000-not-there",
        auth=carol,
        headers={"Accept": "text/html"},
        timeout=30,
    )
    assert html.status_code == 404 and html.headers["Content-Type"].startswith("text/html")
    bad = requests.post(
        f"{live_portal.url}/pacs-admin/instances", data=b"not dicom at all", auth=carol, timeout=30
    )
    assert bad.status_code == 400
    assert set(bad.json()) == {"error", "status"}


def test_a_chunked_stow_upload_is_checked_and_stored(live_portal: LivePortal) -> None:
    """Chunked uploads reach the STOW checks as they are sent (nginx passes them on unbuffered)."""
    good, _, sop_uid = unique_ct_instance(label="chunked")
    body, content_type = stow_body([good, b"not dicom"])
    response = requests.post(
        f"{live_portal.url}/pacs/dicom-web/studies",
        data=iter([body[: len(body) // 2], body[len(body) // 2 :]]),  # no length: sent chunked
        headers={"Content-Type": content_type, "Accept": "application/dicom+json"},
        auth=("bob", live_portal.passwords["bob"]),
        timeout=60,
    )
    assert response.status_code == 202, response.text[:300]
    stored = response.json()["00081199"]["Value"]
    assert [item["00081155"]["Value"][0] for item in stored] == [sop_uid]
    assert len(response.json()["00081198"]["Value"]) == 1
