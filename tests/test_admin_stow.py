"""STOW-RS and Orthanc's own refusals through /pacs-admin, through real HTTP and a real Orthanc.

/pacs-admin reads a small body whole to decide on it (a tools/find query names
its patient); the STOW it forwards must read on from there, not from a stream
the decision already consumed. Found running Orthanc's own DICOMweb suite
through the portal.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import pydicom
import pytest
import requests

from devstack.orthanc_server import OrthancServer
from tests.dicom import stow_body, unique_ct_instance, write_large_stow_body
from tests.services import LivePortal

pytestmark = pytest.mark.live
STOW_PATH = "/pacs-admin/dicom-web/studies"


def instances_of(orthanc: OrthancServer, study_uid: str) -> list[dict[str, object]]:
    response = requests.get(
        f"{orthanc.url}/dicom-web/studies/{study_uid}/instances",
        auth=(orthanc.user, orthanc.password),
        timeout=30,
    )
    return response.json() if response.status_code == 200 and response.content else []


def carol(portal: LivePortal) -> tuple[str, str]:
    return ("carol", portal.passwords["carol"])


def test_it_stores_a_small_stow_body_sent_through_pacs_admin(
    live_portal: LivePortal, orthanc: OrthancServer
) -> None:
    data, study_uid, sop_uid = unique_ct_instance(label="admin-stow")
    body, content_type = stow_body([data])
    start = live_portal.last_audit_id()
    response = requests.post(
        f"{live_portal.url}{STOW_PATH}",
        data=body,
        headers={"Content-Type": content_type, "Accept": "application/dicom+json"},
        auth=carol(live_portal),
        timeout=60,
    )
    assert response.status_code == 200, response.text
    stored = json.loads(response.content)["00081199"]["Value"]
    assert [item["00081155"]["Value"][0] for item in stored] == [sop_uid]
    assert len(instances_of(orthanc, study_uid)) == 1
    writes = [row for row in live_portal.audit_events(start) if row["action"] == "admin-write"]
    assert len(writes) == 1 and writes[0]["study_uid"] == study_uid and writes[0]["status"] == 200


def test_it_stores_a_stow_body_larger_than_what_pacs_admin_reads_whole(
    live_portal: LivePortal, orthanc: OrthancServer, tmp_path: Path
) -> None:
    path = tmp_path / "stow.bin"
    content_type, study_uid, _ = write_large_stow_body(path, 3)
    with path.open("rb") as stream:
        response = requests.post(
            f"{live_portal.url}{STOW_PATH}",
            data=stream,
            headers={
                "Content-Type": content_type,
                "Accept": "application/dicom+json",
                "Content-Length": str(path.stat().st_size),
            },
            auth=carol(live_portal),
            timeout=120,
        )
    assert response.status_code == 200, response.text
    assert len(json.loads(response.content)["00081199"]["Value"]) == 6
    assert len(instances_of(orthanc, study_uid)) == 6


def test_it_passes_on_the_allow_header_of_orthancs_405(
    live_portal: LivePortal, orthanc: OrthancServer
) -> None:
    direct = requests.delete(f"{orthanc.url}/system", auth=(orthanc.user, orthanc.password), timeout=30)
    assert direct.status_code == 405 and direct.headers.get("Allow")
    response = requests.delete(f"{live_portal.url}/pacs-admin/system", auth=carol(live_portal), timeout=30)
    assert response.status_code == 405
    assert response.headers.get("Allow") == direct.headers["Allow"]


# What httplib2 sends before its first 401 challenge (Orthanc's own DICOMweb suite uses it).
LIBRARY_ACCEPT = "image/webp, */*;q=0.8, text/html, application/xhtml+xml, application/xml;q=0.9"


def test_it_challenges_an_api_client_that_accepts_html_and_redirects_only_a_page_load(
    live_portal: LivePortal,
) -> None:
    url = f"{live_portal.url}/pacs-admin/system"
    client = requests.get(url, headers={"Accept": LIBRARY_ACCEPT}, allow_redirects=False, timeout=30)
    assert client.status_code == 401 and client.headers["WWW-Authenticate"].startswith("Basic")
    for page_load in ({"Sec-Fetch-Mode": "navigate"}, {"Upgrade-Insecure-Requests": "1"}):
        page = requests.get(
            url, headers={"Accept": "text/html", **page_load}, allow_redirects=False, timeout=30
        )
        assert page.status_code == 302 and "/accounts/login/" in page.headers["Location"], page_load
    challenged = requests.get(
        url, headers={"Accept": LIBRARY_ACCEPT}, auth=carol(live_portal), allow_redirects=False, timeout=30
    )
    assert challenged.status_code == 200


def test_its_own_stow_refusal_is_a_whole_store_instances_response(live_portal: LivePortal) -> None:
    data, _, sop_uid = unique_ct_instance(label="admin-stow-refused")
    body, content_type = stow_body([data])
    response = requests.post(
        f"{live_portal.url}{STOW_PATH}/1.2.3.4",  # not the part's study
        data=body,
        headers={"Content-Type": content_type, "Accept": "application/dicom+json"},
        auth=carol(live_portal),
        timeout=60,
    )
    assert response.status_code == 409
    answer = response.json()
    assert answer["00080005"] == {"vr": "CS", "Value": ["ISO_IR 192"]}
    assert answer["00081199"] == {"vr": "SQ"}
    assert [item["00081155"]["Value"][0] for item in answer["00081198"]["Value"]] == [sop_uid]


def test_it_names_a_refused_part_without_a_study_by_its_sop_instance(live_portal: LivePortal) -> None:
    data, _, sop_uid = unique_ct_instance(label="no-study")
    dataset = pydicom.dcmread(io.BytesIO(data))
    del dataset.StudyInstanceUID
    without = io.BytesIO()
    dataset.save_as(without, enforce_file_format=True)
    body, content_type = stow_body([without.getvalue()])
    response = requests.post(
        f"{live_portal.url}/pacs/dicom-web/studies",
        data=body,
        headers={"Content-Type": content_type, "Accept": "application/dicom+json"},
        auth=("bob", live_portal.passwords["bob"]),
        timeout=60,
    )
    assert response.status_code == 400
    assert [item["00081155"]["Value"][0] for item in response.json()["00081198"]["Value"]] == [sop_uid]
