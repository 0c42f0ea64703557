"""A refusal at nginx's door: one call into Django, and the Django door's own answer.

nginx asks the decision, which records the refusal and words it as the Django door
does; nginx answers it from that one answer. Each case is sent through real nginx and
straight to the same gunicorn (the Django door, as nginx would pass it on), and the two
answers must be the same: status, body bytes and headers.
"""

from __future__ import annotations

import base64
import dataclasses
import http.client
import random
import re
import secrets
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests
from django.test import Client

from audit.models import AuditEvent
from devstack.orthanc_server import OrthancServer
from orthanc import demo
from proxy.nginx import ANSWERED_BY_NGINX
from tests.conftest import start_portal
from tests.dicom import stow_body, unique_ct_instance
from tests.recorder import Recorder
from tests.services import REPO, LivePortal, PostgresCluster, free_port

pytestmark = pytest.mark.live
STUDY = demo.DEMO_CT_STUDY_UID
# Sent by nginx and gunicorn on every answer, or by one of them only for its own reasons.
TRANSPORT = {"server", "date", "connection", "keep-alive", "transfer-encoding"}
# The decision is never_cache: its Cache-Control adds to the Django door's "no-store, private"
# (max-age=0, no-cache, must-revalidate), and it sends Expires, as the Django door's own page did.
NEVER_CACHE = {"no-store", "private", "max-age=0", "no-cache", "must-revalidate"}


class UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: Path) -> None:
        super().__init__("localhost", timeout=30)
        self.path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(30)
        self.sock.connect(str(self.path))


@dataclass(frozen=True)
class Answer:
    status: int
    headers: dict[str, str]  # lower-case names
    body: bytes


def through_nginx(portal: LivePortal, method: str, path: str, headers: dict[str, str], body: bytes) -> Answer:
    response = requests.request(method, f"{portal.url}{path}", headers=headers, data=body or None, timeout=30)
    return Answer(response.status_code, {k.lower(): v for k, v in response.headers.items()}, response.content)


def django_door(portal: LivePortal, method: str, path: str, headers: dict[str, str], body: bytes) -> Answer:
    """The same request straight to gunicorn, with the headers nginx adds when it passes one on."""
    connection = UnixConnection(portal.work_dir / "gunicorn.sock")
    forwarded = {
        "Host": f"127.0.0.1:{portal.port}",
        "X-Forwarded-For": "127.0.0.1",
        "X-Forwarded-Proto": "http",
    }
    try:
        connection.request(method, path, body=body or None, headers={**forwarded, **headers})
        response = connection.getresponse()
        return Answer(response.status, {k.lower(): v for k, v in response.getheaders()}, response.read())
    finally:
        connection.close()


@dataclass(frozen=True)
class Case:
    status: int
    path: str
    user: str = ""  # "" anonymous; else Basic with the user's password
    method: str = "GET"
    headers: dict[str, str] = field(default_factory=dict)
    stow: bool = False


HTML = {"Accept": "text/html"}
NAVIGATION = {"Accept": "text/html", "Sec-Fetch-Mode": "navigate", "Sec-Fetch-Site": "none"}
OHIF = {"Accept": "application/json", "Sec-Fetch-Mode": "cors", "Sec-Fetch-Site": "same-origin"}
CASES = {
    "400 dots": Case(400, f"/pacs/dicom-web/studies/.../{STUDY}/metadata", "alice"),
    "400 non-ascii query, html": Case(400, "/pacs/dicom-web/studies?%C3%A9t%C3%A9=1", "alice", headers=HTML),
    "400 non-ascii query, json": Case(400, "/pacs/dicom-web/studies?%C3%A9t%C3%A9=1", "alice"),
    "400 path not utf-8": Case(400, "/pacs/dicom-web/studies/%FF/metadata", "alice"),
    "400 line break in the path": Case(400, "/pacs/dicom-web/studies%0A", "alice"),
    "404 the mount alone": Case(404, "/pacs/", "alice"),
    "400 ambiguous credentials": Case(
        400, "/pacs/dicom-web/studies", headers={"Authorization": "Basic YTpi, Bearer x"}
    ),
    "401 api client": Case(401, "/pacs/dicom-web/studies"),
    "401 html": Case(401, "/pacs/dicom-web/studies", headers=HTML),
    "401 browser navigation": Case(401, "/pacs/dicom-web/studies", headers=NAVIGATION),
    "401 ohif": Case(401, "/pacs/dicom-web/studies", headers=OHIF),
    "401 unknown token": Case(401, "/pacs/dicom-web/studies", headers={"Authorization": "Bearer nope"}),
    "401 head": Case(401, "/pacs/dicom-web/studies", method="HEAD"),
    "401 anonymous stow": Case(401, "/pacs/dicom-web/studies", method="POST", stow=True),
    "403 no role": Case(403, "/pacs/dicom-web/studies", "eve"),
    "403 no role, html": Case(403, "/pacs/dicom-web/studies", "eve", headers=HTML),
    "403 stow without upload": Case(403, "/pacs/dicom-web/studies", "alice", method="POST", stow=True),
    "404 unknown study": Case(404, "/pacs/dicom-web/studies/1.2.3.4.5/metadata", "alice", headers=HTML),
    "404 not dicomweb": Case(404, "/pacs/tools/find", "alice"),
    "405 delete": Case(405, f"/pacs/dicom-web/studies/{STUDY}", "alice", method="DELETE"),
    "405 put, html": Case(405, "/pacs/dicom-web/studies", "alice", method="PUT", headers=HTML),
    "409 study under two patients": Case(409, "/pacs/dicom-web/studies/{collision}/metadata", "alice"),
}
# django-axes' middleware answers a locked-out account at the Django door with its own
# page; the decision at nginx's door keeps it from doing so (proxy/nginx.py) and words it.
LOCKED_OUT = b'{"error": "too many failed logins; try again later", "status": 429}'


@pytest.fixture(scope="module")
def fronted(orthanc: OrthancServer, postgres: PostgresCluster | None) -> Iterator[LivePortal]:
    portal = start_portal("refusals", orthanc.url, orthanc, postgres, front=True)
    portal.add_user("locked", "clinician")
    yield portal
    portal.stop()


@pytest.fixture(scope="module")
def collision(orthanc: OrthancServer) -> str:
    """A study filed under two patients in Orthanc's index."""
    first, study_uid, _ = unique_ct_instance(label="refusal-c1")
    second, _, _ = unique_ct_instance(study_uid=study_uid, label="refusal-c2")
    for data in (first, second):
        stored = requests.post(
            f"{orthanc.url}/instances", data=data, auth=(orthanc.user, orthanc.password), timeout=30
        )
        assert stored.status_code == 200
    return study_uid


def lock_out(portal: LivePortal, username: str) -> None:
    for _ in range(int(portal.env["AXES_FAILURE_LIMIT"])):
        requests.get(f"{portal.url}/pacs/dicom-web/studies", auth=(username, "wrong"), timeout=30)


def basic(portal: LivePortal, username: str) -> str:
    return "Basic " + base64.b64encode(f"{username}:{portal.passwords[username]}".encode()).decode()


def request_of(portal: LivePortal, case: Case) -> tuple[dict[str, str], bytes]:
    headers = dict(case.headers)
    if case.user:
        headers["Authorization"] = basic(portal, case.user)
    body = b""
    if case.stow:
        body, content_type = stow_body([unique_ct_instance(label="refusal-stow")[0]])
        headers["Content-Type"] = content_type
    return headers, body


def assert_same_answer(nginx: Answer, django: Answer) -> None:
    assert (nginx.status, nginx.body) == (django.status, django.body)
    assert nginx.headers.keys() - TRANSPORT - {"expires"} == django.headers.keys() - TRANSPORT
    for name in django.headers.keys() - TRANSPORT - {"cache-control"}:
        assert nginx.headers[name] == django.headers[name], name
    assert set(nginx.headers["cache-control"].split(", ")) == NEVER_CACHE
    assert set(django.headers["cache-control"].split(", ")) == {"no-store", "private"}
    assert "expires" in nginx.headers


@pytest.mark.parametrize("name", list(CASES))
def test_nginx_answers_each_refusal_as_the_django_door_does_and_records_it_once(
    fronted: LivePortal, collision: str, name: str
) -> None:
    case = CASES[name]
    path = case.path.format(collision=collision)
    headers, body = request_of(fronted, case)
    start = fronted.last_audit_id()
    nginx = through_nginx(fronted, case.method, path, headers, body)
    rows = fronted.audit_events(start)
    django = django_door(fronted, case.method, path, headers, body)
    assert nginx.status == case.status, nginx
    assert_same_answer(nginx, django)
    assert [row["status"] for row in rows] == [case.status]


def verbatim_through_nginx(portal: LivePortal, path: str, headers: dict[str, str]) -> Answer:
    """A GET with the path's bytes exactly as given (requests would decode %2E and the like)."""
    connection = http.client.HTTPConnection("127.0.0.1", portal.port, timeout=30)
    try:
        connection.request("GET", path, headers=headers)
        response = connection.getresponse()
        return Answer(response.status, {k.lower(): v for k, v in response.getheaders()}, response.read())
    finally:
        connection.close()


def hostile_requests(count: int, seed: int) -> list[tuple[str, dict[str, str]]]:
    """Seeded query keys and path segments of any byte, percent-encoded, each quoted back in
    the refusal's words: what the decision judged must reach the client as both doors word it."""
    rng = random.Random(seed)
    made = []
    for _ in range(count):
        raw = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 12)))
        encoded = "".join(f"%{byte:02X}" for byte in raw)
        # Bytes a key's spelling may be padded with (whitespace and control characters).
        padding = "".join(f"%{rng.randrange(0x21):02X}" for _ in range(rng.randrange(1, 4)))
        path = rng.choice(
            [
                f"/pacs/dicom-web/studies?x{encoded}=1",
                f"/pacs/dicom-web/studies/{encoded}/metadata",
                f"/pacs/dicom-web/studies?PatientID=a&{padding}PatientID=b",
                f"/pacs/dicom-web/studies/{STUDY}/metadata?StudyInstanceUID={STUDY}&{padding}StudyInstanceUID=1",
            ]
        )
        made.append((path, rng.choice([HTML, {"Accept": "application/json"}, {}])))
    return made


@pytest.mark.parametrize("seed", range(3))
def test_nginx_answers_generated_hostile_requests_as_the_django_door_does(
    fronted: LivePortal, seed: int
) -> None:
    for path, accept in hostile_requests(20, seed):
        headers = {**accept, "Authorization": basic(fronted, "alice")}
        start = fronted.last_audit_id()
        nginx = verbatim_through_nginx(fronted, path, headers)
        rows = [row["status"] for row in fronted.audit_events(start)]
        if nginx.status == 400 and not rows:  # nginx refused the request line before any decision
            continue
        django = django_door(fronted, "GET", path, headers, b"")
        assert nginx.status == django.status, path
        if rows and rows[0] is not None:  # the decision refused: one row, the same words
            assert (rows, nginx.body) == ([nginx.status], django.body), path
        else:  # served, or refused by Orthanc itself (worded by each door: test_nginx_words_orthancs_own_...)
            assert rows in ([], [None]), (path, rows)


def test_nginx_answers_a_locked_out_account_as_the_decision_words_it(fronted: LivePortal) -> None:
    lock_out(fronted, "locked")
    start = fronted.last_audit_id()
    headers = {"Authorization": basic(fronted, "locked")}
    nginx = through_nginx(fronted, "GET", "/pacs/dicom-web/studies", headers, b"")
    assert (nginx.status, nginx.body, nginx.headers["content-type"]) == (429, LOCKED_OUT, "application/json")
    # Besides django-axes' own rows (a failed login, the lockout): the refusal, once.
    rows = fronted.audit_events(start)
    assert [row["status"] for row in rows if row["action"] == "query"] == [429]
    django = django_door(fronted, "GET", "/pacs/dicom-web/studies", headers, b"")
    assert django.status == 429 and b"Too many failed logins" in django.body


def gunicorn_requests(portal: LivePortal, user_agent: str) -> list[str]:
    """The requests gunicorn logged for a client with this User-Agent (nginx's sub-request
    carries the client's): an earlier test's line may be logged late, after ours began."""
    lines = portal.log_path.read_text().splitlines()
    return [line for line in lines if " HTTP/1." in line and f'"{user_agent}"' in line]


def test_a_refused_read_costs_one_call_into_django(fronted: LivePortal) -> None:
    marked = f"refusal-count/{secrets.token_hex(4)}"
    eve = requests.get(
        f"{fronted.url}/pacs/dicom-web/studies/1.2.3/metadata",
        auth=("eve", fronted.passwords["eve"]),
        headers={**HTML, "User-Agent": marked},
        timeout=30,
    )
    assert eve.status_code == 403
    # gunicorn logs a request after answering it: give the last line a moment.
    deadline = time.monotonic() + 2
    while not gunicorn_requests(fronted, marked) and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.3)
    calls = gunicorn_requests(fronted, marked)
    assert len(calls) == 1 and "/_front/decide/pacs" in calls[0], calls


def test_a_read_whose_owner_the_archive_cannot_name_gets_the_same_503_at_both_doors(
    orthanc: OrthancServer, postgres: PostgresCluster | None
) -> None:
    """The archive cannot say whose study it is (503): the same answer at both doors."""
    dead = f"http://127.0.0.1:{free_port()}"
    portal = start_portal("refusals-503", dead, orthanc, postgres, front=True)
    try:
        path = f"/pacs/dicom-web/studies/{STUDY}/metadata"
        for accept in ("application/json", "text/html"):
            headers = {"Accept": accept, "Authorization": basic(portal, "alice")}
            start = portal.last_audit_id()
            nginx = through_nginx(portal, "GET", path, headers, b"")
            rows = portal.audit_events(start)
            assert nginx.status == 503, nginx
            assert_same_answer(nginx, django_door(portal, "GET", path, headers, b""))
            assert [row["status"] for row in rows] == [503]
    finally:
        portal.stop()


@pytest.fixture(scope="module")
def fronting_a_stand_in(
    recorder: Recorder, orthanc: OrthancServer, postgres: PostgresCluster | None
) -> Iterator[LivePortal]:
    """nginx in front of the recorder, which answers 401 or 403 for a path that names one."""
    stand_in = dataclasses.replace(orthanc, http_port=recorder.port)
    portal = start_portal("refusals-stand-in", recorder.url, stand_in, postgres, front=True)
    yield portal
    portal.stop()


@pytest.mark.parametrize("accept", ["application/json", "text/html"])
@pytest.mark.parametrize(("said", "status"), [("unauthorized", 502), ("forbidden", 403)])
def test_nginx_words_orthancs_own_401_and_403_as_the_django_door_does(
    fronting_a_stand_in: LivePortal, accept: str, said: str, status: int
) -> None:
    """In nginx's own fixed words, with its archive answers' headers (not Django's middlewares').

    An intercepted 401's WWW-Authenticate (Orthanc's realm) nginx passes on itself, as it
    did before: stock nginx has no way to drop it.
    """
    portal = fronting_a_stand_in
    path = f"/pacs/dicom-web/studies?PatientName={said}"
    headers = {"Accept": accept, "Authorization": basic(portal, "alice")}
    nginx = through_nginx(portal, "GET", path, headers, b"")
    django = django_door(portal, "GET", path, headers, b"")
    assert (nginx.status, nginx.body) == (django.status, django.body)
    assert nginx.status == status
    for name in ("content-type", "cache-control"):
        assert nginx.headers[name] == django.headers[name], name


# Every status a refusal can be made with: the decision's rules, the subject's, a share's,
# the credentials', and the nginx door's own 503s.
REFUSING = [
    "proxy/rules.py",
    "proxy/subjects.py",
    "proxy/decision.py",
    "shares/confinement.py",
    "proxy/nginx.py",
]
STATUS_LITERAL = re.compile(r"(?:Refusal|Refused|refuse\(\w+,|errors\.response\(request,)\(?\s*(\d{3})\b")


def test_nginx_has_a_location_for_every_status_a_refusal_can_have() -> None:
    statuses = {
        int(status) for name in REFUSING for status in STATUS_LITERAL.findall((REPO / name).read_text())
    }
    assert {400, 401, 403, 404, 405, 409, 429, 503} <= statuses  # the scan still finds them
    assert statuses <= ANSWERED_BY_NGINX
    template = (REPO / "deploy/nginx/pacsportal.conf.template").read_text()
    answered = re.findall(r"location = /_front/refused/(\d{3}) \{ return (\d{3}) ", template)
    assert sorted((int(a), int(b)) for a, b in answered) == [(s, s) for s in sorted(ANSWERED_BY_NGINX)]


@pytest.mark.django_db
def test_the_decision_cannot_be_asked_for_without_nginx_in_front(client: Client, settings: Any) -> None:
    settings.PORTAL_FRONT = "none"
    headers = {"X-Original-URI": "/pacs/dicom-web/studies", "X-Original-Method": "GET"}
    assert client.get("/_front/decide/pacs", headers=headers).status_code == 404
    assert not AuditEvent.objects.exists()


@pytest.mark.django_db
def test_a_status_nginx_cannot_answer_is_neither_recorded_nor_worded_by_the_decision(
    client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No refusal has such a status today; were one added, the decision would answer 500,
    which nginx takes for a decision not made: the Django door decides, records and answers."""
    monkeypatch.setattr("proxy.nginx.ANSWERED_BY_NGINX", frozenset({403}))
    headers = {"X-Original-URI": "/pacs/dicom-web/studies", "X-Original-Method": "GET"}
    answer = client.get("/_front/decide/pacs", headers=headers)
    assert (answer.status_code, answer.content, "X-Pacs-Status" in answer) == (500, b"", False)
    assert not AuditEvent.objects.exists()
    monkeypatch.setattr("proxy.nginx.ANSWERED_BY_NGINX", frozenset({401}))
    answer = client.get("/_front/decide/pacs", headers=headers)
    assert (answer.status_code, answer["X-Pacs-Status"]) == (401, "401")
    assert AuditEvent.objects.count() == 1


def test_a_decision_not_made_is_left_to_the_django_door(fronted: LivePortal) -> None:
    """A Host Django refuses: the decision fails (400, which auth_request takes for 500) and
    nginx hands the request to the Django door, as it would a status it cannot answer."""
    headers = {"Host": "elsewhere.example", "Accept": "application/json"}
    nginx = through_nginx(fronted, "GET", "/pacs/dicom-web/studies", headers, b"")
    django = django_door(fronted, "GET", "/pacs/dicom-web/studies", headers, b"")
    assert (nginx.status, nginx.body) == (django.status, django.body) == (400, django.body)
