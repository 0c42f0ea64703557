"""nginx in front: Django decides, nginx streams the reads. Through real HTTP, nginx, gunicorn, Orthanc."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import requests
from playwright.sync_api import Browser

from accounts import permissions
from core import revocation_table
from devstack.orthanc_server import OrthancServer
from orthanc import demo
from tests.conftest import start_portal
from tests.dicom import stow_body, unique_ct_instance
from tests.services import LivePortal, PostgresCluster, require_binary
from tests.slowclients import HalfSentRequests, HealthWatch
from tests.test_live_tokens import create_token, revoke_on_the_page
from tests.test_viewer_tls import certificate  # noqa: F401  (the module's self-signed certificate)
from tests.viewer_load import frame_pixel_bytes, load_once

pytestmark = pytest.mark.live
STUDY = demo.DEMO_CT_STUDY_UID
SERIES = demo.DEMO_CT_SERIES_UID
FRAME_ACCEPT = "multipart/related; type=application/octet-stream"
BROWSER = {"Sec-Fetch-Site": "same-origin", "Sec-Fetch-Mode": "cors"}


@pytest.fixture(scope="module")
def fronted(orthanc: OrthancServer, postgres: PostgresCluster | None) -> Iterator[LivePortal]:
    portal = start_portal("fronted", orthanc.url, orthanc, postgres, front=True, WEB_WORKERS="2")
    yield portal
    portal.stop()


def sops(orthanc: OrthancServer) -> list[str]:
    instances = requests.get(
        f"{orthanc.url}/dicom-web/studies/{STUDY}/series/{SERIES}/instances",
        auth=(orthanc.user, orthanc.password),
        timeout=30,
    ).json()
    return [item["00080018"]["Value"][0] for item in instances]


def frame_url(portal: LivePortal, sop: str) -> str:
    return f"{portal.url}/pacs/dicom-web/studies/{STUDY}/series/{SERIES}/instances/{sop}/frames/1"


def decisions_asked(portal: LivePortal) -> int:
    return portal.log_path.read_text().count("/_front/decide/pacs")


def nginx_lines(portal: LivePortal) -> list[dict[str, object]]:
    path = portal.front.access_log_path  # type: ignore[attr-defined]  # set by tests/front.py
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_it_streams_frames_from_orthanc_after_one_decision_per_study(
    fronted: LivePortal, orthanc: OrthancServer
) -> None:
    session = fronted.login("alice")
    start, asked = fronted.last_audit_id(), decisions_asked(fronted)
    frames = sops(orthanc)[:20]
    for sop in frames:
        response = session.get(
            frame_url(fronted, sop), headers={**BROWSER, "Accept": FRAME_ACCEPT}, timeout=30
        )
        assert response.status_code == 200
        assert response.headers["Cache-Control"] == "no-store, private"
        assert response.headers["Server"] == "nginx"
        assert "Set-Cookie" not in response.headers
    # One decision for the study (two if a minute began meanwhile); Python moved no frame.
    assert decisions_asked(fronted) - asked <= 2
    # nginx writes a request's log line after its last byte: the client may read first.
    deadline = time.monotonic() + 5
    while True:
        served = [line for line in nginx_lines(fronted) if "/frames/1" in str(line["path"])]
        if len(served) >= 20 or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert len(served) >= 20
    assert {line["user"] for line in served[-20:]} == {"alice (session)"}
    rows = [row for row in fronted.audit_events(start) if row["action"] == "retrieve"]
    assert [(row["patient_id"], row["study_uid"], row["credential"]) for row in rows] == [
        ("DEMO-CT-0001", STUDY, "session")
    ]
    assert str(rows[0]["path"]).startswith(f"/pacs/dicom-web/studies/{STUDY}/series/")


def frame_payload(response: requests.Response) -> bytes:
    """A single-part frame answer's bytes, without the part's boundary and headers."""
    boundary = response.headers["Content-Type"].rsplit("boundary=", 1)[1].strip('"').encode()
    return response.content.split(b"\r\n\r\n", 1)[1].rsplit(b"\r\n--" + boundary, 1)[0]


@pytest.fixture(scope="module")
def gzipped(orthanc: OrthancServer, postgres: PostgresCluster | None) -> Iterator[LivePortal]:
    portal = start_portal("gzipped", orthanc.url, orthanc, postgres, front=True, NGINX_GZIP="true")
    yield portal
    portal.stop()


def direct_frame(orthanc: OrthancServer, sop: str) -> requests.Response:
    direct = requests.get(
        f"{orthanc.url}/dicom-web/studies/{STUDY}/series/{SERIES}/instances/{sop}/frames/1",
        auth=(orthanc.user, orthanc.password),
        headers={"Accept": FRAME_ACCEPT, "Accept-Encoding": "identity"},
        timeout=30,
    )
    assert direct.status_code == 200
    return direct


def reader(portal: LivePortal) -> Callable[[str, str, str], requests.Response]:
    """A GET under /pacs by a session of alice's, with Accept and Accept-Encoding."""
    session = portal.login("alice")

    def read(path: str, accept: str, encoding: str) -> requests.Response:
        headers = {**BROWSER, "Accept": accept, "Accept-Encoding": encoding}
        response = session.get(f"{portal.url}/pacs{path}", headers=headers, timeout=30, stream=True)
        assert response.status_code == 200, (path, response.status_code)
        return response

    return read


def test_by_default_reads_go_plain_and_orthanc_is_never_asked_to_compress(
    fronted: LivePortal, orthanc: OrthancServer
) -> None:
    # Orthanc 1.10 gzips for a client that accepts it, and nginx would pass its gzip on.
    sop = sops(orthanc)[0]
    read = reader(fronted)
    frame = read(f"/dicom-web/studies/{STUDY}/series/{SERIES}/instances/{sop}/frames/1", FRAME_ACCEPT, "gzip")
    direct = direct_frame(orthanc, sop)
    assert "Content-Encoding" not in frame.headers
    assert int(frame.headers["Content-Length"]) > 512 * 1024  # plain; gzipped it is about 135 KB
    assert frame_payload(frame) == frame_payload(direct)
    qido = read(f"/dicom-web/studies/{STUDY}/series", "application/dicom+json", "gzip")
    assert "Content-Encoding" not in qido.headers
    assert [item["0020000E"]["Value"] for item in qido.json()] == [[SERIES]]


def test_with_nginx_gzip_nginx_compresses_what_orthanc_would_and_never_asks_orthanc_to(
    gzipped: LivePortal, orthanc: OrthancServer
) -> None:
    # Orthanc's gzip took 23 ms of its CPU per 512 KB frame; nginx's at level 1, 5 ms.
    sop = sops(orthanc)[0]
    series = f"/dicom-web/studies/{STUDY}/series/{SERIES}"
    direct = direct_frame(orthanc, sop)
    read = reader(gzipped)

    compressed = read(f"{series}/instances/{sop}/frames/1", FRAME_ACCEPT, "gzip, deflate, br")
    # Compressed by nginx as it streams: Orthanc's own gzip answer carries its length.
    assert compressed.headers["Content-Encoding"] == "gzip"
    assert "Content-Length" not in compressed.headers
    assert frame_payload(compressed) == frame_payload(direct)
    plain = read(f"{series}/instances/{sop}/frames/1", FRAME_ACCEPT, "identity")
    assert "Content-Encoding" not in plain.headers
    assert frame_payload(plain) == frame_payload(direct)
    qido = read(f"/dicom-web/studies/{STUDY}/series", "application/dicom+json", "gzip")
    assert qido.headers["Content-Encoding"] == "gzip" and "Content-Length" not in qido.headers
    assert [item["0020000E"]["Value"] for item in qido.json()] == [[SERIES]]
    # Streamed uncompressed by Orthanc whatever the client accepts, and so through nginx;
    # an image already JPEG is not compressed again.
    for path, accept in (
        (series, 'multipart/related; type="application/dicom"'),
        (f"{series}/instances/{sop}/rendered", "image/jpeg"),
    ):
        with read(path, accept, "gzip") as response:
            assert "Content-Encoding" not in response.headers, path


def test_it_answers_refusals_as_django_wrote_them_and_records_each_once(fronted: LivePortal) -> None:
    start = fronted.last_audit_id()
    anonymous = requests.get(f"{fronted.url}/pacs/dicom-web/studies", timeout=30)
    assert anonymous.status_code == 401
    assert anonymous.json() == {"error": "authentication required", "status": 401}
    assert anonymous.headers["WWW-Authenticate"].startswith("Basic")
    eve = requests.get(
        f"{fronted.url}/pacs/dicom-web/studies", auth=("eve", fronted.passwords["eve"]), timeout=30
    )
    assert (eve.status_code, eve.json()["error"]) == (403, "your account may not do this")
    dots = requests.get(
        f"{fronted.url}/pacs/dicom-web/studies/.../{STUDY}/metadata",
        auth=("alice", fronted.passwords["alice"]),
        timeout=30,
    )
    assert dots.status_code == 400 and "dots" in dots.json()["error"]
    unknown = requests.get(
        f"{fronted.url}/pacs/dicom-web/studies/1.2.3.4.5/metadata",
        auth=("alice", fronted.passwords["alice"]),
        headers={"Accept": "text/html"},
        timeout=30,
    )
    assert unknown.status_code == 404 and unknown.headers["Content-Type"].startswith("text/html")
    rows = [(row["username"], row["status"]) for row in fronted.audit_events(start)]
    assert rows == [("", 401), ("eve", 403), ("alice", 400), ("alice", 404)]
    # nginx's log names what was asked, not the page that worded the refusal.
    deadline = time.monotonic() + 5
    while not any(
        line["path"] == "/pacs/dicom-web/studies/1.2.3.4.5/metadata" for line in nginx_lines(fronted)
    ):
        assert time.monotonic() < deadline, "the refusal is not in nginx's access log under the path asked"
        time.sleep(0.1)
    assert not any("/_front/" in str(line["path"]) for line in nginx_lines(fronted))


def test_it_words_orthancs_own_errors_like_the_django_door(
    fronted: LivePortal, orthanc: OrthancServer
) -> None:
    sop = sops(orthanc)[0]
    url = frame_url(fronted, sop).replace("/frames/1", "/frames/999")
    alice = ("alice", fronted.passwords["alice"])
    answer = requests.get(url, auth=alice, headers={"Accept": FRAME_ACCEPT}, timeout=30)
    assert answer.status_code in (400, 404)
    assert answer.headers["Content-Type"] == "application/json"
    assert set(answer.json()) == {"error", "status"}
    assert "OrthancError" not in answer.text
    html = requests.get(url, auth=alice, headers={"Accept": "text/html"}, timeout=30)
    assert html.headers["Content-Type"].startswith("text/html")


def test_it_keeps_the_decision_endpoint_to_itself(fronted: LivePortal) -> None:
    probe = requests.get(
        f"{fronted.url}/_front/decide/pacs",
        headers={"X-Original-URI": f"/pacs/dicom-web/studies/{STUDY}/metadata", "X-Original-Method": "GET"},
        auth=("alice", fronted.passwords["alice"]),
        timeout=30,
    )
    assert probe.status_code == 404


def test_it_keeps_the_decision_cache_in_memory(fronted: LivePortal) -> None:
    cache = fronted.front.decision_cache  # type: ignore[attr-defined]  # set by tests/front.py
    assert cache.is_dir()
    mounts = {line.split()[1]: line.split()[2] for line in Path("/proc/mounts").read_text().splitlines()}
    assert mounts.get(str(cache.parent)) == "tmpfs"
    assert str(cache) in (fronted.work_dir / "nginx" / "pacsportal.conf").read_text()


def logout(portal: LivePortal, username: str, session: requests.Session) -> None:
    session.post(
        f"{portal.url}/accounts/logout/",
        data={"csrfmiddlewaretoken": session.cookies["csrftoken"]},
        headers={"Referer": f"{portal.url}/portal/"},
        timeout=10,
    )


USERS = "from django.contrib.auth.models import User; "


def deactivate(portal: LivePortal, username: str, session: requests.Session) -> None:
    portal.manage(
        "shell",
        "-c",
        USERS + f"u = User.objects.get(username='{username}'); u.is_active = False; u.save()",
    )


def deactivate_with_sql(portal: LivePortal, username: str, session: requests.Session) -> None:
    portal.manage(
        "shell",
        "-c",
        USERS + f"User.objects.filter(username='{username}').update(is_active=False)",
    )


def remove_groups(portal: LivePortal, username: str, session: requests.Session) -> None:
    portal.manage(
        "shell",
        "-c",
        USERS + f"User.objects.get(username='{username}').groups.clear()",
    )


def change_password(portal: LivePortal, username: str, session: requests.Session) -> None:
    portal.manage(
        "shell",
        "-c",
        "from django.contrib.auth.models import User; "
        f"u = User.objects.get(username='{username}'); u.set_password('another long password 42'); u.save()",
    )


# The live portal's lifetimes: nginx's under manage.py serve, the workers' permission cache.
LIVE_LIFETIMES = {
    **revocation_table.DEFAULTS,
    revocation_table.PERMISSION_TTL: permissions.PERMISSION_TTL,
}


def time_limit(change: str) -> float:
    """Seconds after which a read must be refused: 0 (the next request) when the table says
    so, else its bound and half a second for the test's own requests."""
    bound = revocation_table.bound(change, LIVE_LIFETIMES)
    return bound + 0.5 if bound else 0.0


AROUND_THE_PORTAL = "a user, password or token changed around the portal (SQL by hand, `QuerySet.update`)"


# Each change as the revocation table (core/revocation_table.py) names it.
@pytest.mark.parametrize(
    ("revoke", "change"),
    [
        (logout, "logout"),
        (deactivate, "user deactivated (their sessions, tokens, Basic password, shared links)"),
        (change_password, "password changed"),
        (deactivate_with_sql, AROUND_THE_PORTAL),
        (remove_groups, "group or permission changed (a user's, or a role's)"),
    ],
    ids=["logout", "deactivate", "password-change", "deactivate-with-sql", "group-removal"],
)
def test_revocation_stops_reads_at_once_or_within_the_cache_lifetime(
    fronted: LivePortal,
    orthanc: OrthancServer,
    revoke: Callable[[LivePortal, str, requests.Session], None],
    change: str,
) -> None:
    limit = time_limit(change)
    username = f"rev-{revoke.__name__.replace('_', '-')}"
    fronted.add_user(username, "clinician")
    session = fronted.login(username)
    replay = requests.Session()
    replay.cookies.update(dict(session.cookies))
    url = frame_url(fronted, sops(orthanc)[0])
    headers = {**BROWSER, "Accept": FRAME_ACCEPT}
    assert replay.get(url, headers=headers, timeout=30).status_code == 200
    revoke(fronted, username, session)
    revoked_at = time.monotonic()
    while replay.get(url, headers=headers, timeout=30).status_code == 200:
        assert time.monotonic() - revoked_at < limit, f"still served {limit} s after the revocation"
        time.sleep(0.2)
    assert replay.get(url, headers=headers, timeout=30).status_code in (401, 403)


def test_a_study_deleted_in_orthanc_is_served_no_more_at_the_next_request(
    fronted: LivePortal, orthanc: OrthancServer
) -> None:
    """The look-ups keep naming a deleted study for ORTHANC_LOOKUP_TTL, and nginx may keep the
    decision, but Orthanc itself no longer serves it (core/revocation_table.py)."""
    data, study_uid, _ = unique_ct_instance(label="deleted-in-orthanc")
    auth = (orthanc.user, orthanc.password)
    stored = requests.post(f"{orthanc.url}/instances", data=data, auth=auth, timeout=30).json()
    session = fronted.login("alice")
    metadata = f"{fronted.url}/pacs/dicom-web/studies/{study_uid}/metadata"
    headers = {**BROWSER, "Accept": "application/dicom+json"}
    # Read twice: the subject is now cached by the worker, the decision perhaps by nginx.
    assert [session.get(metadata, headers=headers, timeout=30).status_code for _ in range(2)] == [200, 200]
    deleted = requests.delete(f"{orthanc.url}/studies/{stored['ParentStudy']}", auth=auth, timeout=30)
    assert deleted.status_code == 200
    assert session.get(metadata, headers=headers, timeout=30).status_code == 404


def frames_with(portal: LivePortal, orthanc: OrthancServer, http: requests.Session, count: int) -> int:
    """Decisions nginx asked Django for while `http` read `count` frames of one study."""
    asked = decisions_asked(portal)
    for sop in sops(orthanc)[:count]:
        response = http.get(frame_url(portal, sop), headers={**BROWSER, "Accept": FRAME_ACCEPT}, timeout=30)
        assert response.status_code == 200
    # gunicorn logs a decision after answering it: the last line may come after the frame.
    deadline, last = time.monotonic() + 2, -1
    while (now := decisions_asked(portal)) != last or (now - asked < count and time.monotonic() < deadline):
        last = now
        time.sleep(0.1)
    return last - asked


def token_session(portal: LivePortal, username: str = "alice") -> tuple[requests.Session, str]:
    name, secret = create_token(portal, username)
    http = requests.Session()
    http.headers["Authorization"] = f"Bearer {secret}"
    return http, name


def first_frame(portal: LivePortal, orthanc: OrthancServer, http: requests.Session) -> int:
    return http.get(frame_url(portal, sops(orthanc)[0]), headers=BROWSER, timeout=30).status_code


def test_api_decisions_are_reused_and_revocation_through_the_portal_ends_them_at_once(
    fronted: LivePortal, orthanc: OrthancServer
) -> None:
    fronted.add_user("api-reuse", "clinician")
    assert frames_with(fronted, orthanc, fronted.login("api-reuse"), 10) <= 2  # a session: one per study
    http, name = token_session(fronted, "api-reuse")
    assert frames_with(fronted, orthanc, http, 10) <= 2
    basic = requests.Session()
    basic.auth = ("api-reuse", fronted.passwords["api-reuse"])
    assert frames_with(fronted, orthanc, basic, 10) <= 2
    # Both decisions are cached now; the portal empties nginx's cache as each change commits.
    revoke_on_the_page(fronted, "api-reuse", name)
    assert first_frame(fronted, orthanc, http) == 401
    assert first_frame(fronted, orthanc, basic) == 200
    change_password(fronted, "api-reuse", basic)
    assert first_frame(fronted, orthanc, basic) == 401


def test_api_decisions_changed_around_the_portal_end_with_the_cache_lifetime(
    fronted: LivePortal, orthanc: OrthancServer
) -> None:
    fronted.add_user("api-sql", "clinician")
    http, _ = token_session(fronted, "api-sql")
    assert first_frame(fronted, orthanc, http) == 200
    revoke_tokens(fronted, "api-sql")  # QuerySet.update: no signal reaches the portal
    revoked_at = time.monotonic()
    while True:
        sent_at = time.monotonic()  # before sending: a slow answer to an early request is no fault
        status = first_frame(fronted, orthanc, http)
        if status != 200:
            break
        limit = time_limit(AROUND_THE_PORTAL)
        assert sent_at - revoked_at < limit, "a revoked token served past NGINX_API_DECISION_SECONDS"
        time.sleep(0.2)
    assert status == 401


def revoke_tokens(portal: LivePortal, username: str) -> None:
    portal.manage(
        "shell",
        "-c",
        "from django.utils import timezone; from accounts.models import AccessToken; "
        f"AccessToken.objects.filter(user__username='{username}').update(revoked_at=timezone.now())",
    )


def test_api_decisions_are_made_for_every_request_when_set_to_0(
    orthanc: OrthancServer, postgres: PostgresCluster | None
) -> None:
    portal = start_portal("api-0", orthanc.url, orthanc, postgres, front=True, NGINX_API_DECISION_SECONDS="0")
    try:
        assert frames_with(portal, orthanc, portal.login("alice"), 10) <= 2
        http, _ = token_session(portal)
        assert frames_with(portal, orthanc, http, 10) == 10
        basic = requests.Session()
        basic.auth = ("alice", portal.passwords["alice"])
        assert frames_with(portal, orthanc, basic, 10) == 10
    finally:
        portal.stop()


def test_stow_goes_to_django_and_is_checked(fronted: LivePortal) -> None:
    data, _, _ = unique_ct_instance(label="front-stow")
    body, content_type = stow_body([data, b"not dicom"])
    response = requests.post(
        f"{fronted.url}/pacs/dicom-web/studies",
        data=body,
        headers={"Content-Type": content_type, "Accept": "application/dicom+json", "Expect": ""},
        auth=("bob", fronted.passwords["bob"]),
        timeout=60,
    )
    assert response.status_code == 202
    assert len(response.json()["00081198"]["Value"]) == 1


@pytest.mark.browser
def test_slow_clients_cost_nginx_not_gunicorn(
    fronted: LivePortal, orthanc: OrthancServer, browser: Browser
) -> None:
    """64 half-sent requests held for 30 s: /healthz stays quick, OHIF loads every frame of the demo CT."""
    instances = sops(orthanc)
    instance = f"/dicom-web/studies/{STUDY}/series/{SERIES}/instances/{instances[0]}"
    pixel_bytes = frame_pixel_bytes(orthanc.url, (orthanc.user, orthanc.password), instance)
    with HalfSentRequests(fronted.port, 64) as attack, HealthWatch(fronted.url) as health:
        started = time.monotonic()  # the 64 are held from here
        loaded = load_once(browser, fronted.url, fronted, len(instances), pixel_bytes, "under attack")
        time.sleep(max(0.0, 30 - (time.monotonic() - started)))
        held = time.monotonic() - started
    print(
        f"\n64 half-sent requests held for {held:.0f} s ({attack.ended_by_server} ended by nginx's"
        f" client_header_timeout and opened again): slowest /healthz {health.slowest * 1000:.0f} ms"
        f" of {health.answers}; the viewer had all {loaded['frames']} frames"
        f" after {loaded['all_frames_s']:.1f} s"
    )
    # nginx ends a half-sent request after 15 s: were they held, they were ended and opened again.
    assert attack.ended_by_server >= 64
    assert health.failures == []
    assert health.slowest < 1.0
    # Asked throughout: each ask takes under a second, after an interval's wait.
    assert health.answers >= held / (health.interval + 1.0)


@pytest.fixture(scope="module")
def tls_fronted(
    certificate: tuple[Path, Path],  # noqa: F811
    orthanc: OrthancServer,
    postgres: PostgresCluster | None,
) -> Iterator[LivePortal]:
    cert, key = certificate
    portal = start_portal(
        "tls_fronted",
        orthanc.url,
        orthanc,
        postgres,
        front=True,
        TLS_CERT_FILE=str(cert),
        TLS_KEY_FILE=str(key),
        PORTAL_HTTPS="true",
    )
    yield portal
    portal.stop()


def test_it_terminates_tls_and_speaks_http2(tls_fronted: LivePortal) -> None:
    assert tls_fronted.url.startswith("https://")
    result = subprocess.run(
        [
            require_binary("curl", "apt-get install curl"),
            "-s",
            "--http2",
            "--cacert",
            tls_fronted.env["TLS_CERT_FILE"],
            "-o",
            "/dev/null",
            "-w",
            "%{http_version} %{http_code}",
            f"{tls_fronted.url}/healthz",
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.stdout == "2 200", result
    secure = requests.get(
        f"{tls_fronted.url}/pacs/dicom-web/studies?PatientID=DEMO-CT-0001",
        auth=("alice", tls_fronted.passwords["alice"]),
        verify=tls_fronted.verify,
        timeout=30,
    )
    assert secure.status_code == 200
    retrieve_url = secure.json()[0]["00081190"]["Value"][0]
    assert retrieve_url.startswith(f"{tls_fronted.url}/pacs/dicom-web/studies/")


def test_a_refused_write_is_decided_by_nginx_and_recorded_once(fronted: LivePortal) -> None:
    """An anonymous upload is refused by the decision nginx asks for: its body never
    reaches a gunicorn thread (only an allowed write streams on), and one row says so."""
    data, _, sop_uid = unique_ct_instance(label="front-anonymous")
    body, content_type = stow_body([data])
    start = fronted.last_audit_id()
    response = requests.post(
        f"{fronted.url}/pacs/dicom-web/studies",
        data=body,
        headers={"Content-Type": content_type, "Accept": "application/json"},
        timeout=60,
    )
    assert response.status_code == 401
    assert response.headers["Content-Type"] == "application/json"
    assert "WWW-Authenticate" in response.headers
    rows = fronted.audit_events(start)
    assert [(row["action"], row["status"]) for row in rows] == [("store", 401)]
    assert not stored_anywhere(fronted, sop_uid)


def stored_anywhere(fronted: LivePortal, sop_uid: str) -> bool:
    found = requests.get(
        f"{fronted.url}/pacs/dicom-web/instances?SOPInstanceUID={sop_uid}",
        auth=("alice", fronted.passwords["alice"]),
        timeout=30,
    )
    return bool(found.content and found.json())


def test_a_chunked_upload_streams_through_and_is_checked(fronted: LivePortal) -> None:
    good, _, sop_uid = unique_ct_instance(label="front-chunked")
    body, content_type = stow_body([good, b"not dicom"])

    def chunks() -> Iterator[bytes]:
        for start in range(0, len(body), 4096):
            yield body[start : start + 4096]

    response = requests.post(
        f"{fronted.url}/pacs/dicom-web/studies",
        data=chunks(),  # no length: requests sends it chunked
        headers={"Content-Type": content_type, "Accept": "application/dicom+json"},
        auth=("bob", fronted.passwords["bob"]),
        timeout=60,
    )
    assert response.status_code == 202, response.text[:300]
    stored = response.json()["00081199"]["Value"]
    assert [item["00081155"]["Value"][0] for item in stored] == [sop_uid]
    assert len(response.json()["00081198"]["Value"]) == 1
