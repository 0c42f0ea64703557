"""The portal home's recent studies: what each Orthanc generation is asked, and what the page shows.

Orthanc 1.12.5+ sorts itself (/tools/find with OrderBy and Limit); 1.10 is
asked for ever wider date ranges, each query bounded, and the answer is
reused for a minute. The stand-in answers as the real servers did (1.12.7 in a
Debian 13 root filesystem, 1.10.1 from Debian 12); the live tests run the
1.10 path against the session's real Orthanc.
"""

from __future__ import annotations

import datetime
import json
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from pytest_django.fixtures import Settings

from core import ttlcache
from orthanc import client, demo
from tests.services import LivePortal, free_port

SYSTEM_1_12 = {"Version": "1.12.7", "ApiVersion": 27, "Capabilities": {"HasExtendedFind": True}}
SYSTEM_1_10 = {"Version": "1.10.1", "ApiVersion": 17}
TODAY = datetime.date(2026, 1, 5)


def qido_study(uid: str, date: str, time: str = "120000", name: str = "Doe^Jane") -> dict[str, Any]:
    return {
        "0020000D": {"vr": "UI", "Value": [uid]},
        "00080020": {"vr": "DA", "Value": [date]},
        "00080030": {"vr": "TM", "Value": [time]},
        "00100010": {"vr": "PN", "Value": [{"Alphabetic": name}]},
        "00100020": {"vr": "LO", "Value": [f"ID-{uid}"]},
        "00081030": {"vr": "LO", "Value": [f"study {uid}"]},
        "00080061": {"vr": "CS", "Value": ["CT", "SEG"]},
    }


@dataclass
class StandIn:
    """An Orthanc stand-in: /system as configured, answers from `answer(method, path, body)`."""

    system: dict[str, Any]
    answer: Callable[[str, str, Any], Any]
    port: int = field(default_factory=free_port)
    asked: list[tuple[str, str, Any]] = field(default_factory=list)
    server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: object) -> None:
                return

            def reply(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length)) if length else None
                if self.path == "/system":
                    payload: Any = stand_in.system
                else:
                    stand_in.asked.append((self.command, self.path, body))
                    payload = stand_in.answer(self.command, self.path, body)
                data = json.dumps(payload).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = reply

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        assert self.server is not None
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def stand_in(settings: Settings) -> Iterator[Callable[..., StandIn]]:
    started: list[StandIn] = []

    def start(system: dict[str, Any], answer: Callable[[str, str, Any], Any]) -> StandIn:
        server = StandIn(system, answer)
        server.start()
        started.append(server)
        settings.ORTHANC_URL = server.url
        client._recent_cache.clear()
        return server

    yield start
    client._recent_cache.clear()
    for server in started:
        server.stop()


def test_it_lets_orthanc_1_12_sort_and_return_only_the_studies_listed(
    stand_in: Callable[..., StandIn],
) -> None:
    found = [
        {
            "ID": "a",
            "Type": "Study",
            "RequestedTags": {
                "StudyInstanceUID": "1.2.3",
                "StudyDate": "20260104",
                "StudyTime": "080000",
                "PatientName": "Doe^Jane",
                "PatientID": "P1",
                "StudyDescription": None,  # 1.12.7 answers null for an absent tag
                "ModalitiesInStudy": "CT\\SEG",
            },
        }
    ]
    orthanc = stand_in(SYSTEM_1_12, lambda method, path, body: found)

    studies = client.recent_studies(10)

    assert studies == [
        {
            "uid": "1.2.3",
            "date": "20260104",
            "time": "080000",
            "patient_name": "Doe Jane",
            "patient_id": "P1",
            "description": "",
            "modalities": "CT SEG",
        }
    ]
    ((method, path, body),) = orthanc.asked
    assert (method, path) == ("POST", "/tools/find")
    assert body["Level"] == "Study" and body["Query"] == {}
    assert body["Limit"] == 10
    assert body["OrderBy"] == [
        {"Type": "DicomTag", "Key": "StudyDate", "Direction": "DESC"},
        {"Type": "DicomTag", "Key": "StudyTime", "Direction": "DESC"},
    ]
    client.recent_studies(10)
    assert len(orthanc.asked) == 2, "a sorting Orthanc is asked each time: the answer is always fresh"


def date_window_answer(studies: list[dict[str, Any]]) -> Callable[[str, str, Any], Any]:
    """QIDO as Orthanc 1.10 answers it: StudyDate range matching, `limit` in index order."""

    def answer(method: str, path: str, body: Any) -> Any:
        query = parse_qs(urlsplit(path).query)
        since = query.get("StudyDate", ["-"])[0].rstrip("-")
        matching = [study for study in studies if study["00080020"]["Value"][0] >= since]
        return matching[: int(query["limit"][0])]

    return answer


def asked_windows(orthanc: StandIn) -> list[str]:
    return [parse_qs(urlsplit(path).query).get("StudyDate", ["(all)"])[0] for _, path, _ in orthanc.asked]


def test_it_asks_orthanc_1_10_for_ever_wider_date_ranges_until_it_has_enough(
    stand_in: Callable[..., StandIn], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(client.timezone, "localdate", lambda: TODAY)
    # Index order is oldest first, as in a real archive: a plain limit would miss the new ones.
    archive = [qido_study(f"1.{n}", f"2019{n % 12 + 1:02d}01") for n in range(300)]
    archive += [qido_study("2.1", "20251220"), qido_study("2.2", "20260104", "083000")]
    archive += [qido_study("2.3", "20260104", "170000"), qido_study("2.4", "20250301")]
    orthanc = stand_in(SYSTEM_1_10, date_window_answer(archive))

    studies = client.recent_studies(3)

    assert [study["uid"] for study in studies] == ["2.3", "2.2", "2.1"]
    assert studies[0]["patient_name"] == "Doe Jane"
    assert studies[0]["modalities"] == "CT SEG"
    assert asked_windows(orthanc) == ["20260104-", "20251229-", "20251205-"]
    for method, path, _ in orthanc.asked:
        assert method == "GET" and path.startswith("/dicom-web/studies?")
        assert parse_qs(urlsplit(path).query)["limit"] == [str(client.RECENT_FALLBACK_LIMIT)]


def test_it_reuses_the_1_10_answer_for_a_minute(
    stand_in: Callable[..., StandIn], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(client.timezone, "localdate", lambda: TODAY)
    orthanc = stand_in(SYSTEM_1_10, date_window_answer([qido_study("2.1", "20260105")]))
    first = client.recent_studies(10)
    asked = len(orthanc.asked)
    assert asked == len(client.RECENT_FALLBACK_WINDOWS), "one study: every window, up to all time"
    assert client.recent_studies(10) == first
    assert len(orthanc.asked) == asked

    now = ttlcache.time.monotonic()
    monkeypatch.setattr(ttlcache.time, "monotonic", lambda: now + client.RECENT_FALLBACK_TTL + 1)
    client.recent_studies(10)
    assert len(orthanc.asked) == 2 * asked


def test_it_falls_back_on_a_1_12_whose_database_cannot_sort(
    stand_in: Callable[..., StandIn], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Debian 13's Orthanc 1.12.7 on its PostgreSQL plugin 5.0 reports HasExtendedFind false
    (and answers OrderBy with a 500: "The database backend doesn't support ordering")."""
    monkeypatch.setattr(client.timezone, "localdate", lambda: TODAY)
    system = {**SYSTEM_1_12, "Capabilities": {"HasExtendedFind": False}}
    orthanc = stand_in(system, date_window_answer([qido_study("2.1", "20260105")]))
    assert [study["uid"] for study in client.recent_studies(10)] == ["2.1"]
    assert all(path.startswith("/dicom-web/studies?") for _, path, _ in orthanc.asked)


@pytest.mark.parametrize(
    ("system", "sorts"),
    [
        (SYSTEM_1_12, True),
        ({"Version": "1.12.4", "Capabilities": {"HasExtendedFind": True}}, False),
        ({"Version": "mainline", "Capabilities": {"HasExtendedFind": True}}, True),
        ({"Version": "1.12.7", "Capabilities": {"HasExtendedFind": False}}, False),
        (SYSTEM_1_10, False),
        ({}, False),
    ],
)
def test_it_decides_by_the_version_and_capabilities_orthanc_reports(
    system: dict[str, Any], sorts: bool
) -> None:
    assert client.sorts_studies(system) is sorts


@pytest.mark.live
def test_it_lists_the_newest_demo_studies_from_orthanc_1_10(live_portal: LivePortal) -> None:
    client._recent_cache.clear()
    studies = client.recent_studies(10)
    client._recent_cache.clear()
    assert studies, "the demo studies are in Orthanc"
    keys = [(study["date"], study["time"]) for study in studies]
    assert keys == sorted(keys, reverse=True)
    ct = next(study for study in studies if study["uid"] == demo.DEMO_CT_STUDY_UID)
    assert ct["patient_id"] == "DEMO-CT-0001"
    assert ct["description"] == "CT chest-abdomen (synthetic phantom)"
    assert ct["modalities"] == "CT"


@pytest.mark.live
def test_it_audits_each_study_the_home_page_lists(live_portal: LivePortal) -> None:
    live_portal.add_user("ruth", "clinician")  # her own audit buckets, untouched by other tests
    start = live_portal.last_audit_id()
    home = live_portal.login("ruth").get(f"{live_portal.url}/portal/", timeout=30)
    assert home.status_code == 200
    assert f"/viewer?StudyInstanceUIDs={demo.DEMO_CT_STUDY_UID}" in home.text
    rows = [
        row
        for row in live_portal.audit_events(start)
        if row["username"] == "ruth" and row["detail"] == "portal home: recent studies"
    ]
    assert rows, "the listed studies were not audited"
    assert {row["action"] for row in rows} == {"query"}
    listed = {row["study_uid"] for row in rows}
    assert demo.DEMO_CT_STUDY_UID in listed
    # One row per study listed: a UID filed under two patients (other tests store
    # such collisions) is two studies, one per patient.
    assert len(rows) == len({(row["patient_id"], row["study_uid"]) for row in rows}), (
        "one row per study listed"
    )
    assert all(uid in home.text for uid in listed)
