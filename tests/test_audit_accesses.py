"""The auditor's question, "who opened patient X", answered on one page, through real HTTP."""

from __future__ import annotations

import csv
import io

import pytest
import requests

from devstack.orthanc_server import OrthancServer
from orthanc import demo
from tests.dicom import unique_ct_instance
from tests.services import LivePortal

pytestmark = pytest.mark.live
STUDY = demo.DEMO_CT_STUDY_UID
SERIES = demo.DEMO_CT_SERIES_UID
PATIENT = "DEMO-CT-0001"


def orthanc_id(orthanc: OrthancServer, uid: str, kind: str) -> str:
    found = requests.post(
        f"{orthanc.url}/tools/lookup", data=uid, auth=(orthanc.user, orthanc.password), timeout=30
    ).json()
    return str(next(item["ID"] for item in found if item["Type"] == kind))


def test_an_auditor_finds_every_door_to_the_demo_patient_and_no_other_patient(
    live_portal: LivePortal, orthanc: OrthancServer
) -> None:
    live_portal.add_user("mallory", "clinician")
    other, other_study, _ = unique_ct_instance(label="accesses")
    assert requests.post(
        f"{orthanc.url}/instances", data=other, auth=(orthanc.user, orthanc.password), timeout=30
    ).ok
    instances = requests.get(
        f"{orthanc.url}/dicom-web/studies/{STUDY}/series/{SERIES}/instances",
        auth=(orthanc.user, orthanc.password),
        timeout=30,
    ).json()
    sop = instances[0]["00080018"]["Value"][0]
    mallory = ("mallory", live_portal.passwords["mallory"])
    carol = ("carol", live_portal.passwords["carol"])
    base = live_portal.url
    # Three doors to the demo patient; none of them names the patient in the request.
    assert requests.get(f"{base}/pacs/dicom-web/studies/{STUDY}/metadata", auth=mallory, timeout=30).ok
    wado = f"{base}/pacs/wado?requestType=WADO&objectUID={sop}&contentType=application/dicom"
    assert requests.get(wado, auth=mallory, timeout=30).ok
    admin_file = f"{base}/pacs-admin/instances/{orthanc_id(orthanc, sop, 'Instance')}/file"
    assert requests.get(admin_file, auth=carol, timeout=30).ok
    # And one to another patient, which must not show.
    assert requests.get(f"{base}/pacs/dicom-web/studies/{other_study}/metadata", auth=mallory, timeout=30).ok

    auditor = live_portal.login("dave")
    page = auditor.get(f"{base}/audit/accesses/", params={"patient_id": PATIENT}, timeout=30)
    assert page.status_code == 200
    assert "mallory" in page.text and "carol" in page.text
    assert other_study not in page.text

    export = auditor.get(
        f"{base}/audit/export.csv", params={"patient_id": PATIENT, "view": "accesses"}, timeout=30
    )
    assert export.status_code == 200
    lines = list(csv.DictReader(io.StringIO(export.content.decode("utf-8-sig"))))
    assert {line["patient_id"] for line in lines} == {PATIENT}
    doors = {(line["username"], line["action"]) for line in lines if line["username"] in ("mallory", "carol")}
    assert {("mallory", "retrieve"), ("carol", "admin-read")} <= doors  # carol may have more from other tests
    (mallory_line,) = [line for line in lines if line["username"] == "mallory"]
    # The metadata and the WADO-URI read fall in one bucket: one access line, one row.
    assert mallory_line["study_uid"] == STUDY
    assert int(mallory_line["rows"]) <= 2  # two only if a bucket ended between the two reads
