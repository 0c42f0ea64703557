"""Hostile and malformed requests: always a 4xx, never a 5xx, never a path outside the mount."""

from __future__ import annotations

import base64
import re

import pytest

from tests import rawhttp
from tests.recorder import Recorder
from tests.services import LivePortal

pytestmark = pytest.mark.live
ALLOWED_UPSTREAM = re.compile(r"^/(?:dicom-web/(?:studies|series|instances)(?:[/?]|$)|wado(?:\?|$))")
STOW = "/pacs/dicom-web/studies"
MULTIPART = 'multipart/related; type="application/dicom"; boundary=x'

TRAVERSALS = [
    "/pacs/dicom-web/../../tools/reset",
    "/pacs/dicom-web/%2e%2e/%2e%2e/tools/reset",
    "/pacs/dicom-web/%2E%2E/%2E%2E/tools/reset",
    "/pacs/dicom-web/.%2e/.%2e/tools/reset",
    "/pacs/dicom-web/%252e%252e/%252e%252e/tools/reset",
    "/pacs/dicom-web%2f..%2f..%2ftools/reset",
    "/pacs/dicom-web%2F..%2Ftools%2Freset",
    "/pacs/dicom-web/studies%2f..%2f..%2fsystem",
    "/pacs/dicom-web/studies/..%5c..%5csystem",
    "/pacs/dicom-web\\..\\..\\system",
    "/pacs/dicom-web/studies/..\\..\\system",
    "/pacs//system",
    "/pacs/./system",
    "/pacs/dicom-web/./studies/../../system",
    "/pacs/dicom-web/studies/%00",
    "/pacs/%00/system",
    "/pacs/dicom-web/studies/%ff%fe",
    "/pacs/dicom-web/studies/%c3%a9",
    "/pacs/" + "a" * 5000,
    "/pacs/dicom-web/studies/" + "1." * 3000,
    "/pacs/tools/reset",
    "/pacs/system",
    "/pacs/dicom-web/servers",
    "/pacs/dicom-web/info",
    "/pacs/instances",
    "/pacs/wado/../tools/reset",
    "/pacs/wado/%2e%2e/tools/reset",
    "/pacs/dicom-web/studies?PatientName=%ff%fe",
    "/pacs/dicom-web/../../pacs-admin/system",
    "/pacs-admin/../../tools/reset",
    "/pacs-admin/%2e%2e/tools/reset",
]


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def header_cases(alice: str) -> list[tuple[str, bytes]]:
    qido = "/pacs/dicom-web/studies"
    return [
        ("not base64", rawhttp.request("GET", qido, {"Authorization": "Basic !!!not-base64"})),
        ("empty basic", rawhttp.request("GET", qido, {"Authorization": "Basic "})),
        ("bearer", rawhttp.request("GET", qido, {"Authorization": "Bearer abc.def"})),
        ("no colon", rawhttp.request("GET", qido, {"Authorization": "Basic " + b64(b"alice")})),
        ("empty user", rawhttp.request("GET", qido, {"Authorization": "Basic " + b64(b":password")})),
        ("non-utf8 user", rawhttp.request("GET", qido, {"Authorization": "Basic " + b64(b"\xff\xfe:pw")})),
        ("nul in user", rawhttp.request("GET", qido, {"Authorization": "Basic " + b64(b"ali\x00ce:pw")})),
        ("wrong password", rawhttp.request("GET", qido, {"Authorization": rawhttp.basic("eve", "wrong")})),
        ("huge authorization", rawhttp.request("GET", qido, {"Authorization": "Basic " + "A" * 100_000})),
        (
            "huge cookie",
            rawhttp.request("GET", qido, {"Authorization": alice, "Cookie": "a=" + "b" * 100_000}),
        ),
        ("too many headers", rawhttp.request("GET", qido, [(f"X-H{i}", "v") for i in range(300)])),
        (
            "disallowed host",
            b"GET "
            + qido.encode()
            + b" HTTP/1.1\r\nHost: evil.example\r\nAuthorization: "
            + alice.encode()
            + b"\r\nConnection: close\r\n\r\n",
        ),
        ("put", rawhttp.request("PUT", qido, {"Authorization": alice, "Content-Length": "0"})),
        ("delete", rawhttp.request("DELETE", qido, {"Authorization": alice})),
        ("trace", rawhttp.request("TRACE", qido, {"Authorization": alice})),
        (
            "post to a read resource",
            rawhttp.request("POST", qido + "/1.2.3/metadata", {"Authorization": alice}),
        ),
    ]


def body_cases(bob: str, alice: str) -> list[tuple[str, bytes, bool]]:
    headers = {"Authorization": bob, "Content-Type": MULTIPART}
    return [
        ("negative length", rawhttp.request("POST", STOW, {**headers, "Content-Length": "-1"}), False),
        ("non-numeric length", rawhttp.request("POST", STOW, {**headers, "Content-Length": "ten"}), False),
        (
            "two lengths",
            rawhttp.request(
                "POST", STOW, [*headers.items(), ("Content-Length", "5"), ("Content-Length", "6")], b"--x--"
            ),
            False,
        ),
        (
            "chunked",
            rawhttp.request(
                "POST", STOW, {**headers, "Transfer-Encoding": "chunked"}, b"5\r\n--x--\r\n0\r\n\r\n"
            ),
            False,
        ),
        (
            "chunked and length",
            rawhttp.request(
                "POST",
                STOW,
                {**headers, "Transfer-Encoding": "chunked", "Content-Length": "5"},
                b"5\r\n--x--\r\n0\r\n\r\n",
            ),
            False,
        ),
        (
            "length larger than body",
            rawhttp.request("POST", STOW, {**headers, "Content-Length": "100000"}, b"--x--"),
            True,
        ),
        (
            "clinician stow",
            rawhttp.request(
                "POST",
                STOW,
                {**headers, "Authorization": alice, "Content-Length": "5"},
                b"--x--",
            ),
            False,
        ),
    ]


def test_it_answers_every_hostile_request_with_a_4xx_and_keeps_orthanc_safe(
    recording_portal: LivePortal, recorder: Recorder
) -> None:
    alice = rawhttp.basic("alice", recording_portal.passwords["alice"])
    bob = rawhttp.basic("bob", recording_portal.passwords["bob"])
    cases: list[tuple[str, bytes, bool]] = [
        (target, rawhttp.request("GET", target, {"Authorization": alice}), False) for target in TRAVERSALS
    ]
    cases += [
        (
            f"{target} (admin)",
            rawhttp.request(
                "GET", target, {"Authorization": rawhttp.basic("carol", recording_portal.passwords["carol"])}
            ),
            False,
        )
        for target in TRAVERSALS
        if target.startswith("/pacs-admin")
    ]
    cases += [(name, raw, False) for name, raw in header_cases(alice)]
    cases += body_cases(bob, alice)
    assert len(cases) >= 40

    before = len(recorder.requests)
    answers = {
        name: rawhttp.send(recording_portal.port, raw, half_close=half_close)
        for name, raw, half_close in cases
    }
    if getattr(recording_portal, "front", None) is not None:
        # nginx does not answer a client that closes before sending the body it
        # announced (it logs 400, "client prematurely closed"); nothing reaches Django.
        answers["length larger than body"] = answers["length larger than body"] or 400
    wrong = {name: status for name, status in answers.items() if not 400 <= status < 500}
    assert wrong == {}, f"expected a 4xx for every case: {wrong}"

    reached = recorder.paths()[before:]
    outside = [path for path in reached if not ALLOWED_UPSTREAM.match(path)]
    assert outside == [], f"requests reached Orthanc outside the mount: {outside}"
    assert all(request.method == "GET" for request in recorder.requests[before:]), (
        "no write may have reached Orthanc"
    )
