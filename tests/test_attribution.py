"""Attribution: the audit row names what Orthanc served, whatever the request claims.

Each case is one request through real HTTP (gunicorn, a real Orthanc). Every
case comes from its own loopback address, so it writes its own bucketed row:
for an allowed case that row must name the patient and study that Orthanc's
own index (asked directly here) files the served data under, and, where the
answer is DICOM JSON, the answer itself must hold no other patient or study.
Ambiguous requests get 400 and serve nothing.
"""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass
from typing import Any

import pytest
import requests
import urllib3

from devstack.orthanc_server import OrthancServer
from orthanc import demo
from tests.dicom import unique_ct_instance
from tests.services import LivePortal

pytestmark = pytest.mark.live
STUDY = demo.DEMO_CT_STUDY_UID
SERIES = demo.DEMO_CT_SERIES_UID
FRAME_ACCEPT = "multipart/related; type=application/octet-stream"
DICOM_ACCEPT = 'multipart/related; type="application/dicom"'
_addresses = (f"127.0.{block}.{host}" for block, host in itertools.product(range(10, 250), range(2, 250)))


class Archive:
    """What Orthanc holds, asked directly: ids and owners of the data the cases name."""

    def __init__(self, orthanc: OrthancServer) -> None:
        self.orthanc = orthanc
        self.auth = (orthanc.user, orthanc.password)
        instances = self.get(f"/dicom-web/studies/{STUDY}/series/{SERIES}/instances")
        self.sop = instances[0]["00080018"]["Value"][0]
        other, self.other_study, self.other_sop = unique_ct_instance(label="attribution-b")
        self.store(other)
        self.other_series = self.get(f"/dicom-web/studies/{self.other_study}/series")[0]["0020000E"]["Value"][
            0
        ]
        first, self.collision, _ = unique_ct_instance(label="attribution-c1")
        second, _, _ = unique_ct_instance(study_uid=self.collision, label="attribution-c2")
        self.store(first)
        self.store(second)

    def get(self, path: str) -> Any:
        response = requests.get(f"{self.orthanc.url}{path}", auth=self.auth, timeout=30)
        assert response.status_code == 200, (path, response.status_code)
        return response.json()

    def store(self, data: bytes) -> None:
        response = requests.post(f"{self.orthanc.url}/instances", data=data, auth=self.auth, timeout=30)
        assert response.status_code == 200

    def orthanc_id(self, uid: str, kind: str) -> str:
        found = requests.post(f"{self.orthanc.url}/tools/lookup", data=uid, auth=self.auth, timeout=30).json()
        (match,) = [item["ID"] for item in found if item["Type"] == kind]
        return str(match)

    def owner(self, study_uid: str) -> tuple[str, str]:
        """(Patient ID, study UID) as Orthanc's index files the study."""
        study = self.get(f"/studies/{self.orthanc_id(study_uid, 'Study')}")
        return study["PatientMainDicomTags"]["PatientID"], study["MainDicomTags"]["StudyInstanceUID"]

    def patient_of(self, patient_orthanc_id: str) -> str:
        return str(self.get(f"/patients/{patient_orthanc_id}")["MainDicomTags"]["PatientID"])


@dataclass(frozen=True)
class Case:
    path: str  # with the query; {placeholders} filled from the archive
    status: int
    served: str = ""  # "A" demo CT, "B" the other patient's study, "PA"/"PB" patient only, "" nothing named
    method: str = "GET"
    body: Any = None
    accept: str = "application/dicom+json"
    user: str = "alice"


CASES = {
    # QIDO-RS: filters in every spelling name the patient or study
    "qido patient id": Case("/pacs/dicom-web/studies?PatientID={patient}", 200, "PA"),
    "qido patient tag": Case("/pacs/dicom-web/studies?00100020={patient}", 200, "PA"),
    "qido patient tag with comma": Case("/pacs/dicom-web/studies?0010,0020={patient}", 200, "PA"),
    "qido study keyword": Case("/pacs/dicom-web/studies?StudyInstanceUID={study}", 200, "A"),
    "qido study tag": Case("/pacs/dicom-web/studies?0020000D={study}", 200, "A"),
    "qido study tag lower case": Case("/pacs/dicom-web/studies?0020000d={study}", 200, "A"),
    "qido study tag with comma": Case("/pacs/dicom-web/studies?0020,000D={study}", 200, "A"),
    "qido study and another patient": Case(
        "/pacs/dicom-web/studies?StudyInstanceUID={study}&PatientID={other_patient}", 200, "A"
    ),
    "qido series of a study": Case("/pacs/dicom-web/studies/{study}/series", 200, "A"),
    "qido one series of a study": Case(
        "/pacs/dicom-web/studies/{study}/series?SeriesInstanceUID={series}", 200, "A"
    ),
    "qido instances of a series": Case("/pacs/dicom-web/studies/{study}/series/{series}/instances", 200, "A"),
    "qido instances of a study": Case("/pacs/dicom-web/studies/{study}/instances", 200, "A"),
    "qido series by uid": Case("/pacs/dicom-web/series?SeriesInstanceUID={series}", 200, "A"),
    "qido series by tag": Case("/pacs/dicom-web/series?0020000E={series}", 200, "A"),
    "qido instance by uid": Case("/pacs/dicom-web/instances?SOPInstanceUID={sop}", 200, "A"),
    "qido instance by tag": Case("/pacs/dicom-web/instances?00080018={sop}", 200, "A"),
    "qido other study": Case("/pacs/dicom-web/studies?StudyInstanceUID={other_study}", 200, "B"),
    "qido other study's series": Case("/pacs/dicom-web/studies/{other_study}/series", 200, "B"),
    "qido wildcard patient": Case("/pacs/dicom-web/studies?PatientID=DEMO*", 200),
    "qido no filter": Case("/pacs/dicom-web/studies?limit=5", 200),
    "qido unknown study": Case("/pacs/dicom-web/studies?StudyInstanceUID=1.2.3.999", 200, "unknown"),
    "qido repeated patient": Case(
        "/pacs/dicom-web/studies?PatientID={patient}&PatientID={other_patient}", 400
    ),
    "qido patient in two spellings": Case(
        "/pacs/dicom-web/studies?PatientID={patient}&00100020={other_patient}", 400
    ),
    "qido study in two spellings": Case(
        "/pacs/dicom-web/studies?StudyInstanceUID={study}&0020000D={other_study}", 400
    ),
    "qido study twice, same value": Case("/pacs/dicom-web/studies?0020000D={study}&0020,000D={study}", 400),
    "qido study list": Case("/pacs/dicom-web/studies?StudyInstanceUID={study},{other_study}", 400),
    "qido study backslash list": Case(
        "/pacs/dicom-web/studies?StudyInstanceUID={study}%5C{other_study}", 400
    ),
    "qido filter contradicts path": Case(
        "/pacs/dicom-web/studies/{study}/series?StudyInstanceUID={other_study}", 400
    ),
    "qido study under two patients": Case("/pacs/dicom-web/studies?StudyInstanceUID={collision}", 409),
    "qido series of an unknown study": Case("/pacs/dicom-web/studies/1.2.3.999/series", 200, "unknown"),
    # WADO-RS: the path's study, checked against Orthanc's index; query words name nothing
    "study metadata": Case("/pacs/dicom-web/studies/{study}/metadata", 200, "A"),
    "series metadata": Case("/pacs/dicom-web/studies/{study}/series/{series}/metadata", 200, "A"),
    "instance metadata": Case(
        "/pacs/dicom-web/studies/{study}/series/{series}/instances/{sop}/metadata", 200, "A"
    ),
    "frame": Case(
        "/pacs/dicom-web/studies/{study}/series/{series}/instances/{sop}/frames/1",
        200,
        "A",
        accept=FRAME_ACCEPT,
    ),
    "instance": Case(
        "/pacs/dicom-web/studies/{study}/series/{series}/instances/{sop}", 200, "A", accept=DICOM_ACCEPT
    ),
    "metadata with another patient's id": Case(
        "/pacs/dicom-web/studies/{study}/metadata?PatientID={other_patient}", 200, "A"
    ),
    "metadata with another patient's tag": Case(
        "/pacs/dicom-web/studies/{study}/metadata?00100020={other_patient}", 200, "A"
    ),
    "metadata with another study in the query": Case(
        "/pacs/dicom-web/studies/{study}/series/{series}/metadata?StudyInstanceUID={other_study}", 200, "A"
    ),
    "other study's metadata": Case("/pacs/dicom-web/studies/{other_study}/metadata", 200, "B"),
    "repeated slashes": Case("/pacs/dicom-web/studies//{study}//metadata", 200, "A"),
    "leading repeated slash": Case("/pacs//dicom-web/studies/{study}/metadata", 200, "A"),
    "three dots before the study": Case("/pacs/dicom-web/studies/.../{study}/metadata", 400),
    "three dots after the study": Case("/pacs/dicom-web/studies/{study}/.../metadata", 400),
    "dot dot after a frame": Case(
        "/pacs/dicom-web/studies/{study}/series/{series}/instances/{sop}/frames/1/..",
        400,
        accept=FRAME_ACCEPT,
    ),
    "four dots as a segment": Case("/pacs/dicom-web/studies/{study}/..../metadata", 400),
    "series of another study": Case("/pacs/dicom-web/studies/{study}/series/{other_series}/metadata", 404),
    "instance of another study": Case(
        "/pacs/dicom-web/studies/{study}/series/{series}/instances/{other_sop}/metadata", 404
    ),
    "study of another series": Case("/pacs/dicom-web/studies/{other_study}/series/{series}/metadata", 404),
    "unknown study": Case("/pacs/dicom-web/studies/1.2.3.999/metadata", 404),
    "study under two patients": Case("/pacs/dicom-web/studies/{collision}/metadata", 409),
    "not a uid": Case("/pacs/dicom-web/studies/not-a-uid/metadata", 400),
    "repeated patient on a retrieve": Case(
        "/pacs/dicom-web/studies/{study}/metadata?PatientID=a&PatientID=b", 400
    ),
    # WADO-URI: resolved from objectUID
    "wado-uri by object": Case(
        "/pacs/wado?requestType=WADO&objectUID={sop}&contentType=application/dicom", 200, "A", accept="*/*"
    ),
    "wado-uri by all three": Case(
        "/pacs/wado?requestType=WADO&studyUID={study}&seriesUID={series}&objectUID={sop}"
        "&contentType=application%2Fdicom",
        200,
        "A",
        accept="*/*",
    ),
    "wado-uri other patient's object": Case(
        "/pacs/wado?requestType=WADO&objectUID={other_sop}&contentType=application/dicom",
        200,
        "B",
        accept="*/*",
    ),
    # Not a WADO-URI parameter: refused rather than passed to Orthanc unread.
    "wado-uri with another patient's id": Case(
        "/pacs/wado?requestType=WADO&objectUID={sop}&PatientID={other_patient}&contentType=application/dicom",
        400,
        accept="*/*",
    ),
    "wado-uri repeated object": Case(
        "/pacs/wado?requestType=WADO&objectUID=1.2.3&objectUID={sop}&contentType=application/dicom",
        400,
        accept="*/*",
    ),
    "wado-uri object in two cases": Case(
        "/pacs/wado?requestType=WADO&OBJECTUID=1.2.3&objectUID={sop}&contentType=application/dicom",
        400,
        accept="*/*",
    ),
    "wado-uri object of another study": Case(
        "/pacs/wado?requestType=WADO&studyUID={other_study}&objectUID={sop}&contentType=application/dicom",
        404,
        accept="*/*",
    ),
    "wado-uri without object": Case("/pacs/wado?requestType=WADO&studyUID={study}", 400, accept="*/*"),
    # /pacs-admin: Orthanc ids resolved to their owners
    "admin instance file": Case("/pacs-admin/instances/{sop_id}/file", 200, "A", accept="*/*", user="carol"),
    "admin instance tags": Case("/pacs-admin/instances/{sop_id}/simplified-tags", 200, "A", user="carol"),
    "admin instance file with another patient": Case(
        "/pacs-admin/instances/{sop_id}/file?PatientID={other_patient}", 200, "A", accept="*/*", user="carol"
    ),
    "admin series": Case("/pacs-admin/series/{series_id}", 200, "A", user="carol"),
    "admin study statistics": Case("/pacs-admin/studies/{study_id}/statistics", 200, "A", user="carol"),
    "admin patient": Case("/pacs-admin/patients/{patient_id}", 200, "PA", user="carol"),
    "admin patient's studies": Case("/pacs-admin/patients/{patient_id}/studies", 200, "PA", user="carol"),
    "admin other study": Case("/pacs-admin/studies/{other_study_id}", 200, "B", user="carol"),
    "admin other instance file": Case(
        "/pacs-admin/instances/{other_sop_id}/file", 200, "B", accept="*/*", user="carol"
    ),
    "admin dots between ids": Case("/pacs-admin/studies/{study_id}/../{other_study_id}", 400, user="carol"),
    "admin find by patient": Case(
        "/pacs-admin/tools/find",
        200,
        "PA",
        method="POST",
        body={"Level": "Study", "Query": {"PatientID": "{patient}"}},
        user="carol",
    ),
    "admin find by study": Case(
        "/pacs-admin/tools/find",
        200,
        "A",
        method="POST",
        body={"Level": "Study", "Query": {"StudyInstanceUID": "{study}"}},
        user="carol",
    ),
}


@pytest.fixture(scope="module")
def archive(orthanc: OrthancServer, live_portal: LivePortal) -> Archive:
    return Archive(orthanc)


def placeholders(archive: Archive) -> dict[str, str]:
    patient, _ = archive.owner(STUDY)
    other_patient, _ = archive.owner(archive.other_study)
    study = archive.get(f"/studies/{archive.orthanc_id(STUDY, 'Study')}")
    return {
        "patient": patient,
        "other_patient": other_patient,
        "study": STUDY,
        "series": SERIES,
        "sop": archive.sop,
        "other_study": archive.other_study,
        "other_series": archive.other_series,
        "other_sop": archive.other_sop,
        "collision": archive.collision,
        "sop_id": archive.orthanc_id(archive.sop, "Instance"),
        "series_id": archive.orthanc_id(SERIES, "Series"),
        "study_id": study["ID"],
        "patient_id": study["ParentPatient"],
        "other_study_id": archive.orthanc_id(archive.other_study, "Study"),
        "other_sop_id": archive.orthanc_id(archive.other_sop, "Instance"),
    }


def expected_subject(case: Case, archive: Archive, values: dict[str, str]) -> tuple[str, str]:
    """(Patient ID, study UID) the row must name, from Orthanc's index."""
    if case.served == "A":
        return archive.owner(STUDY)
    if case.served == "B":
        return archive.owner(archive.other_study)
    if case.served == "PA":
        return archive.patient_of(values["patient_id"]), ""
    if case.served == "unknown":
        return "", "1.2.3.999"
    return "", ""


def fill(value: Any, values: dict[str, str]) -> Any:
    if isinstance(value, str):
        return value.format(**values)
    if isinstance(value, dict):
        return {key: fill(item, values) for key, item in value.items()}
    return value


def send(portal: LivePortal, case: Case, values: dict[str, str], address: str) -> urllib3.BaseHTTPResponse:
    pool = urllib3.HTTPConnectionPool("127.0.0.1", portal.port, source_address=(address, 0), retries=False)
    headers = urllib3.make_headers(basic_auth=f"{case.user}:{portal.passwords[case.user]}")
    headers["Accept"] = case.accept
    body = None
    if case.body is not None:
        body = json.dumps(fill(case.body, values)).encode()
        headers["Content-Type"] = "application/json"
    return pool.request(case.method, fill(case.path, values), body=body, headers=headers, timeout=60)


def named_in_answer(answer: Any) -> set[tuple[str, str]]:
    """(Patient ID, study UID) pairs a DICOM JSON answer holds."""
    pairs = set()
    for item in answer if isinstance(answer, list) else []:
        patient = item.get("00100020", {}).get("Value", [""])[0]
        study = item.get("0020000D", {}).get("Value", [""])[0]
        pairs.add((patient, study))
    return pairs


@pytest.mark.parametrize("name", list(CASES))
def test_it_audits_what_orthanc_served(
    name: str, archive: Archive, live_portal: LivePortal, orthanc: OrthancServer
) -> None:
    case = CASES[name]
    values = placeholders(archive)
    start = live_portal.last_audit_id()
    response = send(live_portal, case, values, next(_addresses))
    assert response.status == case.status, (name, response.status, response.data[:300])
    rows = [row for row in live_portal.audit_events(start) if str(row["path"]).startswith("/pacs")]
    assert len(rows) == 1, rows
    (row,) = rows
    assert row["username"] == case.user
    if case.status >= 400:
        assert row["status"] == case.status
        assert b"DICM" not in response.data and b"00080018" not in response.data
        assert b"7FE00010" not in response.data.upper()
        return
    patient, study = expected_subject(case, archive, values)
    assert (row["patient_id"], row["study_uid"]) == (patient, study), name
    if response.headers.get("Content-Type", "").startswith("application/dicom+json"):
        for answer_patient, answer_study in named_in_answer(response.json()):
            assert answer_patient in ("", patient) or not patient, (name, answer_patient)
            assert answer_study in ("", study) or not study, (name, answer_study)


def test_it_has_at_least_sixty_cases() -> None:
    assert len(CASES) >= 60
