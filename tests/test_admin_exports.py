"""/pacs-admin reads that take patient data out name their patient before the first byte.

Archives and media (at once, or as a job whose download comes later),
tools/find in any key spelling, DICOMweb under /pacs-admin: each audit row
names the patient (and study) Orthanc's index files the data under, or the
request is refused with a reason. Through real HTTP and a real Orthanc.
"""

from __future__ import annotations

import io
import json
import time
import zipfile
from typing import Any

import pytest
import requests

from devstack.orthanc_server import OrthancServer
from orthanc import demo
from tests.services import LivePortal

pytestmark = pytest.mark.live
STUDY = demo.DEMO_CT_STUDY_UID
PATIENT = "DEMO-CT-0001"


def direct(orthanc: OrthancServer, method: str, path: str, **kwargs: Any) -> requests.Response:
    return requests.request(
        method, f"{orthanc.url}{path}", auth=(orthanc.user, orthanc.password), timeout=60, **kwargs
    )


def admin(portal: LivePortal, method: str, path: str, **kwargs: Any) -> requests.Response:
    auth = ("carol", portal.passwords["carol"])
    return requests.request(method, f"{portal.url}/pacs-admin/{path}", auth=auth, timeout=60, **kwargs)


def study_id(orthanc: OrthancServer, uid: str = STUDY) -> str:
    found = direct(orthanc, "POST", "/tools/lookup", data=uid).json()
    return str(next(item["ID"] for item in found if item["Type"] == "Study"))


def other_patients_study(orthanc: OrthancServer) -> str:
    for orthanc_id in direct(orthanc, "GET", "/studies").json():
        study = direct(orthanc, "GET", f"/studies/{orthanc_id}").json()
        if study["PatientMainDicomTags"].get("PatientID") != PATIENT:
            return str(orthanc_id)
    raise AssertionError("the demo data holds one patient only")


def rows_after(portal: LivePortal, start: int, action: str) -> list[dict[str, object]]:
    return [row for row in portal.audit_events(start) if row["action"] == action]


def instances_in(archive: bytes) -> int:
    with zipfile.ZipFile(io.BytesIO(archive)) as zipped:
        return sum(1 for name in zipped.namelist() if not name.endswith("/"))


def test_it_names_the_patient_of_an_archive_before_sending_it(
    live_portal: LivePortal, orthanc: OrthancServer
) -> None:
    start = live_portal.last_audit_id()
    response = admin(live_portal, "POST", "tools/create-archive", json={"Resources": [study_id(orthanc)]})
    assert response.status_code == 200 and instances_in(response.content) > 0
    rows = rows_after(live_portal, start, "admin-read")
    assert [(row["patient_id"], row["study_uid"]) for row in rows] == [(PATIENT, STUDY)]
    assert str(rows[0]["detail"]).startswith("export granted: ")


def test_it_refuses_an_export_of_two_patients_or_of_what_it_cannot_read(
    live_portal: LivePortal, orthanc: OrthancServer
) -> None:
    two = [study_id(orthanc), other_patients_study(orthanc)]
    for path, body in (
        ("tools/create-archive", json.dumps({"Resources": two})),
        ("tools/create-media", json.dumps(two)),
        ("tools/create-archive", study_id(orthanc)),  # Orthanc takes no plain id here; say so
        ("tools/create-archive", json.dumps({"Resources": ["not-an-id"]})),
        ("modalities/nowhere/store", json.dumps({"Resources": two})),
    ):
        response = admin(live_portal, "POST", path, data=body, headers={"Content-Type": "application/json"})
        assert response.status_code == 400, (path, body, response.text)


def test_it_attributes_a_jobs_download_to_the_patient_the_job_was_made_for(
    live_portal: LivePortal, orthanc: OrthancServer
) -> None:
    made = admin(
        live_portal,
        "POST",
        "tools/create-archive",
        json={"Resources": [study_id(orthanc)], "Asynchronous": True},
    )
    assert made.status_code == 200, made.text
    job = made.json()["ID"]
    deadline = time.monotonic() + 30
    while admin(live_portal, "GET", f"jobs/{job}").json()["State"] != "Success":
        assert time.monotonic() < deadline, "the archive job did not finish"
        time.sleep(0.2)
    start = live_portal.last_audit_id()
    download = admin(live_portal, "GET", f"jobs/{job}/archive")
    assert download.status_code == 200 and instances_in(download.content) > 0
    rows = rows_after(live_portal, start, "admin-read")
    assert [(row["patient_id"], row["study_uid"]) for row in rows] == [(PATIENT, STUDY)]


def test_it_refuses_the_download_of_a_job_made_behind_its_back(
    live_portal: LivePortal, orthanc: OrthancServer
) -> None:
    made = direct(
        orthanc,
        "POST",
        "/tools/create-archive",
        json={"Resources": [study_id(orthanc)], "Asynchronous": True},
    )
    job = made.json()["ID"]
    response = admin(live_portal, "GET", f"jobs/{job}/archive")
    assert response.status_code == 403
    assert "not created through the portal" in response.text


@pytest.mark.parametrize("spelling", ["StudyInstanceUID", "0020000D", "0020,000D", "0020-000D", "0020-000d"])
def test_it_names_the_patient_of_a_find_in_any_key_spelling(
    live_portal: LivePortal, orthanc: OrthancServer, spelling: str
) -> None:
    start = live_portal.last_audit_id()
    response = admin(
        live_portal, "POST", "tools/find", json={"Level": "Study", "Expand": True, "Query": {spelling: STUDY}}
    )
    assert response.status_code == 200, response.text
    assert [item["MainDicomTags"]["StudyInstanceUID"] for item in response.json()] == [STUDY]
    rows = rows_after(live_portal, start, "admin-write")
    assert [(row["patient_id"], row["study_uid"]) for row in rows] == [(PATIENT, STUDY)]


@pytest.mark.parametrize(
    "body",
    [
        '{"Level": "Study", "Query": {"StudyInstanceUID": "1.2.3", "0020-000D": "STUDY"}}',
        '{"Level": "Study", "Query": {"PatientID": "NOPE", "PatientID": "PATIENT"}}',
        '{"Level": "Study", "Query": {"studyinstanceuid ": "STUDY"}}',
        '{"Level": "Study", "Query": {"Foo": "*"}}',
    ],
)
def test_it_refuses_a_find_it_would_read_otherwise_than_orthanc(live_portal: LivePortal, body: str) -> None:
    response = admin(
        live_portal, "POST", "tools/find", data=body, headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 400, response.text


def test_it_names_the_patient_of_dicomweb_reads_under_pacs_admin(live_portal: LivePortal) -> None:
    # A user of its own: carol's reads of this study earlier in the bucket would cover this one.
    password = live_portal.add_user("ines", "pacs-admin")
    start = live_portal.last_audit_id()
    response = requests.get(
        f"{live_portal.url}/pacs-admin/dicom-web/studies/{STUDY}/metadata",
        auth=("ines", password),
        timeout=60,
    )
    assert response.status_code == 200
    rows = rows_after(live_portal, start, "admin-read")
    assert [(row["patient_id"], row["study_uid"]) for row in rows] == [(PATIENT, STUDY)]
