"""One reading of queries: the audit names what Orthanc's answer holds, or the query is refused.

Orthanc reads a QIDO key as a keyword (exactly), `ggggeeee`, `gggg,eeee` or
`gggg-eeee`, takes the last of repeated keys and ignores keys it cannot place;
the portal rebuilds the query from its own reading, so the patient and study
the audit names are those Orthanc filtered on. Each request here comes from
a loopback address of its own, so that it gets an audit row of its own
(rows are kept per client address and time bucket). Through real HTTP and a
real Orthanc; `make test` runs them through both doors.
"""

from __future__ import annotations

import http.client
import io
import json
import random
from dataclasses import dataclass
from urllib.parse import quote

import pydicom
import pytest
import requests

from devstack.orthanc_server import OrthancServer
from tests.services import LivePortal

pytestmark = pytest.mark.live
VARIANTS = 200
SEED = 2929
PATIENT_ID, STUDY_UID = "00100020", "0020000D"
DEMO_PATIENT = "DEMO-CT-0001"
IDENTIFYING_FIELDS = f"includefield={PATIENT_ID},{STUDY_UID}"


@dataclass(frozen=True)
class Archive:
    """The demo studies as Orthanc holds them: (patient, study, series, instance) of each."""

    instances: tuple[tuple[str, str, str, str], ...]

    @property
    def patients(self) -> list[str]:
        return sorted({patient for patient, *_ in self.instances})

    @property
    def studies(self) -> list[str]:
        return sorted({study for _, study, *_ in self.instances})


def archive_of(orthanc: OrthancServer) -> Archive:
    auth = (orthanc.user, orthanc.password)
    found = requests.get(
        f"{orthanc.url}/dicom-web/instances?{IDENTIFYING_FIELDS},0020000E", auth=auth, timeout=30
    ).json()
    return Archive(
        tuple(
            (
                item.get(PATIENT_ID, {}).get("Value", [""])[0],
                item[STUDY_UID]["Value"][0],
                item["0020000E"]["Value"][0],
                item["00080018"]["Value"][0],
            )
            for item in found
        )
    )


class Sources:
    """A fresh loopback address per request: its own decision and its own audit row."""

    def __init__(self, start: int) -> None:
        self.next = start

    def take(self) -> str:
        self.next += 1
        return f"127.{29 + self.next // 62500}.{self.next // 250 % 250}.{self.next % 250 + 1}"


def get(portal: LivePortal, target: str, cookie: str, source: str) -> tuple[int, bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", portal.port, timeout=30, source_address=(source, 0))
    try:
        connection.request("GET", target, headers={"Cookie": cookie, "Accept": "*/*"})
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def answered(body: bytes, target: str) -> list[tuple[str, str]]:
    """(patient, study) of each answer entry: QIDO's JSON, or the DICOM file WADO-URI sent."""
    if target.startswith("/pacs/wado"):
        dataset = pydicom.dcmread(io.BytesIO(body), stop_before_pixels=True)
        return [(str(dataset.PatientID), str(dataset.StudyInstanceUID))]
    return [
        (item.get(PATIENT_ID, {}).get("Value", [""])[0], item.get(STUDY_UID, {}).get("Value", [""])[0])
        for item in json.loads(body or b"[]")
    ]


def row_of(portal: LivePortal, source: str, after: int) -> dict[str, object]:
    # str(): PostgreSQL's inet column comes back as an address object.
    rows = [row for row in portal.audit_events(after) if str(row["client_ip"]) == source]
    assert len(rows) == 1, (source, rows)
    return rows[0]


def assert_one_reading(portal: LivePortal, target: str, cookie: str, sources: Sources) -> tuple[int, str]:
    """Send `target`; if served, every answer entry is the audited patient's and study's."""
    source, after = sources.take(), portal.last_audit_id()
    status, body = get(portal, target, cookie, source)
    row = row_of(portal, source, after)
    assert row["status"] in (None, status), (target, row)
    if status == 200:
        for patient, study in answered(body, target):
            assert not row["patient_id"] or patient == row["patient_id"], (target, row, patient)
            assert not row["study_uid"] or study == row["study_uid"], (target, row, study)
    return status, str(row["patient_id"])


def test_it_refuses_a_patient_named_twice_in_two_spellings(
    live_portal: LivePortal, orthanc: OrthancServer
) -> None:
    other = next(patient for patient in archive_of(orthanc).patients if patient != DEMO_PATIENT)
    cookie = f"sessionid={live_portal.login('alice').cookies['sessionid']}"
    sources = Sources(0)
    for spelling in ("0010-0020", "0010,0020", "00100020", "patientid"):
        target = f"/pacs/dicom-web/studies?PatientID={DEMO_PATIENT}&{spelling}={other}"
        assert assert_one_reading(live_portal, target, cookie, sources)[0] == 400, spelling


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("patientid={patient}", 200),  # Orthanc ignored it and listed every patient
        ("0010-0020={patient}", 200),
        ("00100020%20={patient}", 400),  # Orthanc ignored it
        ("x00100020={patient}", 400),
        ("Limit=1&PatientID={patient}", 200),
        ("foo=1&PatientID={patient}", 400),
        ("00400275.00400009=1&PatientID={patient}", 400),
        ("limit=1&limit=2&PatientID={patient}", 400),
    ],
)
def test_it_gives_orthanc_only_keys_it_reads_as_the_portal_does(
    live_portal: LivePortal, orthanc: OrthancServer, query: str, expected: int
) -> None:
    cookie = f"sessionid={live_portal.login('alice').cookies['sessionid']}"
    target = f"/pacs/dicom-web/studies?{query.format(patient=DEMO_PATIENT)}&{IDENTIFYING_FIELDS}"
    status, audited = assert_one_reading(live_portal, target, cookie, Sources(1000 + hash(query) % 5000))
    assert status == expected
    assert status != 200 or audited == DEMO_PATIENT


class Generator:
    """Seeded QIDO and WADO-URI queries: spellings, case, repeats, decoys, wildcards, junk keys."""

    SPELLINGS = (
        lambda keyword, tag: keyword,
        lambda keyword, tag: keyword.lower(),
        lambda keyword, tag: keyword.upper(),
        lambda keyword, tag: tag,
        lambda keyword, tag: tag.lower(),
        lambda keyword, tag: f"{tag[:4]},{tag[4:]}",
        lambda keyword, tag: f"{tag[:4]}-{tag[4:]}",
        lambda keyword, tag: f"{tag[:4]}-{tag[4:]}".lower(),
        lambda keyword, tag: f"{keyword} ",
        lambda keyword, tag: f"{tag}.00080020",
    )
    EXTRAS = ("limit=1", "Limit=2", "offset=1", "fuzzymatching=true", "orderby=PatientID", "foo=1", "")

    def __init__(self, rng: random.Random, archive: Archive) -> None:
        self.rng, self.archive = rng, archive

    def spelled(self, keyword: str, tag: str) -> str:
        return quote(self.rng.choice(self.SPELLINGS)(keyword, tag), safe=",-.")

    def qido(self) -> str:
        rng = self.rng
        patient, study, series, _ = rng.choice(self.archive.instances)
        filters = []
        for _ in range(rng.randint(1, 3)):
            keyword, tag, values = rng.choice(
                (
                    (
                        "PatientID",
                        PATIENT_ID,
                        (patient, rng.choice(self.archive.patients), "DEMO*", "*", "NOPE"),
                    ),
                    ("StudyInstanceUID", STUDY_UID, (study, rng.choice(self.archive.studies), "1.2.3")),
                    ("SeriesInstanceUID", "0020000E", (series, "1.2.3")),
                    ("PatientName", "00100010", ("*", "Demo*")),
                )
            )
            filters.append(f"{self.spelled(keyword, tag)}={quote(rng.choice(values), safe='*')}")
        extra = rng.choice(self.EXTRAS)
        level = rng.choice(("studies", "studies", "series", "instances", f"studies/{study}/series"))
        return f"/pacs/dicom-web/{level}?" + "&".join(
            [*filters, IDENTIFYING_FIELDS] + ([extra] if extra else [])
        )

    def wado_uri(self) -> str:
        rng = self.rng
        _, study, series, sop = rng.choice(self.archive.instances)
        _, other_study, other_series, other_sop = rng.choice(self.archive.instances)
        pairs = [
            ("requestType", "WADO"),
            (rng.choice(("studyUID", "studyuid", "STUDYUID")), rng.choice((study, other_study))),
            ("seriesUID", rng.choice((series, other_series))),
            (rng.choice(("objectUID", "objectuid", "ObjectUID")), sop),
            ("contentType", "application/dicom"),
        ]
        if rng.random() < 0.3:
            pairs.append(
                (rng.choice(("objectUID", "objectuid", "studyUID")), rng.choice((other_sop, other_study)))
            )
        if rng.random() < 0.2:
            pairs.append(rng.choice((("foo", "1"), ("frameNumber", "1"), ("0020000D", other_study))))
        rng.shuffle(pairs)
        return "/pacs/wado?" + "&".join(f"{key}={quote(value, safe='/')}" for key, value in pairs)


def test_it_audits_what_orthanc_answered_over_200_generated_queries(
    live_portal: LivePortal, orthanc: OrthancServer
) -> None:
    archive = archive_of(orthanc)
    cookie = f"sessionid={live_portal.login('alice').cookies['sessionid']}"
    generator, sources = Generator(random.Random(SEED), archive), Sources(10_000)
    seen: set[str] = set()
    statuses: dict[int, int] = {}
    named = 0
    while len(seen) < VARIANTS:
        target = generator.wado_uri() if len(seen) % 5 == 4 else generator.qido()
        if target in seen:
            continue
        seen.add(target)
        status, patient = assert_one_reading(live_portal, target, cookie, sources)
        statuses[status] = statuses.get(status, 0) + 1
        named += status == 200 and bool(patient)
    # Both sides of the line are reached, and served answers name their patient often.
    assert statuses.get(200, 0) > VARIANTS // 5 and statuses.get(400, 0) > VARIANTS // 10, statuses
    assert named > VARIANTS // 10, (named, statuses)
