"""An empty Expect header asks for nothing: the portal answers as without one.

The fix is in gunicorn's workers (pacsportal/gunicorn_expect.py).
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from gunicorn.config import Config
from gunicorn.http import message
from gunicorn.http.errors import ExpectationFailed
from gunicorn.http.unreader import IterUnreader

from pacsportal import gunicorn_expect
from tests import rawhttp
from tests.dicom import stow_body, unique_ct_instance
from tests.services import REPO, LivePortal, free_port

STOW = "/pacs/dicom-web/studies"


def parse(*headers: bytes, version: bytes = b"1.1") -> message.Request:
    """One request through gunicorn's own parser, as a worker reads it."""
    raw = b"POST / HTTP/" + version + b"\r\nHost: x\r\nContent-Length: 0\r\n" + b"".join(headers) + b"\r\n"
    return message.Request(Config(), IterUnreader([raw]), ("127.0.0.1", 40000))


@pytest.fixture
def patched(monkeypatch: pytest.MonkeyPatch) -> None:
    # Installed for this test only: the rest of the run keeps gunicorn as shipped.
    monkeypatch.setattr(
        message.HeaderPolicy, "_apply_header_policy", message.HeaderPolicy._apply_header_policy
    )
    gunicorn_expect.install()


def test_unpatched_gunicorn_still_answers_an_empty_expect_with_417() -> None:
    """When this fails, gunicorn accepts an empty Expect itself: remove pacsportal/gunicorn_expect.py."""
    with pytest.raises(ExpectationFailed):
        parse(b"Expect:\r\n")


@pytest.mark.parametrize("value", [b"", b" ", b"\t", b",", b" , ,"])
def test_it_accepts_an_empty_expect_list(patched: None, value: bytes) -> None:
    request = parse(b"Expect:" + value + b"\r\n")
    assert not request._expected_100_continue
    assert "EXPECT" not in dict(request.headers)


@pytest.mark.parametrize("value", [b"100-continue", b"100-Continue", b" 100-continue , "])
def test_it_keeps_100_continue(patched: None, value: bytes) -> None:
    request = parse(b"Expect: " + value + b"\r\n")
    assert request._expected_100_continue
    assert dict(request.headers)["EXPECT"].lower() == "100-continue"


def test_it_ignores_100_continue_from_http_1_0_as_gunicorn_does(patched: None) -> None:
    assert not parse(b"Expect: 100-continue\r\n", version=b"1.0")._expected_100_continue


@pytest.mark.parametrize("value", [b"foo", b"100-continue, foo", b", foo", b"100-continuex"])
def test_it_keeps_the_417_for_expectations_it_cannot_meet(patched: None, value: bytes) -> None:
    with pytest.raises(ExpectationFailed):
        parse(b"Expect: " + value + b"\r\n")


def test_it_installs_once(patched: None) -> None:
    installed = message.HeaderPolicy._apply_header_policy
    gunicorn_expect.install()
    assert message.HeaderPolicy._apply_header_policy is installed


def test_it_refuses_to_install_when_the_gunicorn_method_is_gone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delattr(message.HeaderPolicy, "_apply_header_policy")
    with pytest.raises(RuntimeError, match=r"remove or adapt pacsportal/gunicorn_expect\.py"):
        gunicorn_expect.install()


def test_it_refuses_to_install_when_the_gunicorn_method_changed(monkeypatch: pytest.MonkeyPatch) -> None:
    def changed(self: object, name: str, value: str, state: object) -> None:
        return None

    monkeypatch.setattr(message.HeaderPolicy, "_apply_header_policy", changed)
    with pytest.raises(RuntimeError, match="has changed"):
        gunicorn_expect.install()


def test_it_refuses_to_install_when_requests_no_longer_use_the_shared_policy(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    own = message.HeaderPolicy._apply_header_policy
    monkeypatch.setattr(message.Request, "_apply_header_policy", lambda *args: own(*args), raising=False)
    with pytest.raises(RuntimeError, match="has changed"):
        gunicorn_expect.install()


def test_gunicorn_refuses_to_start_when_the_patched_method_is_gone(tmp_path: Path) -> None:
    """The portal's own gunicorn.conf.py, in a gunicorn whose HeaderPolicy lost the method."""
    (tmp_path / "app.py").write_text(
        "def application(environ, start_response):\n    start_response('200 OK', [])\n    return [b'ok']\n"
    )
    (tmp_path / "conf.py").write_text(
        "from gunicorn.http import message\n"
        f"exec(open({str(REPO / 'gunicorn.conf.py')!r}).read())\n"
        "portal_post_worker_init = post_worker_init\n"
        "def post_worker_init(worker):\n"
        "    del message.HeaderPolicy._apply_header_policy\n"
        "    portal_post_worker_init(worker)\n"
    )
    result = subprocess.run(
        [sys.executable, "-m", "gunicorn", "-c", str(tmp_path / "conf.py"), "app:application"],
        cwd=tmp_path,
        env={
            "PATH": "/usr/bin:/bin",
            "PYTHONPATH": f"{tmp_path}:{REPO}",
            "PORT": str(free_port()),
            "WEB_WORKERS": "1",
        },
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 3, result.stderr  # gunicorn's "Worker failed to boot."
    assert "remove or adapt pacsportal/gunicorn_expect.py" in result.stdout + result.stderr


# Through real HTTP, against the portal under gunicorn.


def raw_request(method: str, target: str, headers: list[bytes], body: bytes = b"") -> bytes:
    """A request written byte by byte: `Expect:` exactly as sent, nothing after the colon."""
    lines = [f"{method} {target} HTTP/1.1".encode(), b"Host: 127.0.0.1", b"Connection: close", *headers]
    if body:
        lines.append(f"Content-Length: {len(body)}".encode())
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


def exchange(port: int, request: bytes, body_after_continue: bytes = b"") -> list[bytes]:
    """Send a request, return every response head (status line and headers) and the final body.

    With `body_after_continue`, the body is sent only after an interim 100 Continue,
    the way a client that sent `Expect: 100-continue` waits for it.
    """
    heads: list[bytes] = []
    with socket.create_connection(("127.0.0.1", port), timeout=60) as sock:
        sock.sendall(request)
        received = b""
        while True:
            while b"\r\n\r\n" not in received:
                chunk = sock.recv(65536)
                if not chunk:
                    raise AssertionError(f"connection closed after {heads!r} {received!r}")
                received += chunk
            head, received = received.split(b"\r\n\r\n", 1)
            heads.append(head)
            if not head.startswith(b"HTTP/1.1 100 "):
                break
            if body_after_continue:
                sock.sendall(body_after_continue)
                body_after_continue = b""
        while chunk := sock.recv(65536):
            received += chunk
    return [*heads, received]


def status(head: bytes) -> int:
    return int(head.split(b" ", 2)[1])


def stow(live_portal: LivePortal, label: str) -> tuple[bytes, list[bytes], str]:
    instance, _, sop_uid = unique_ct_instance(label=label)
    body, content_type = stow_body([instance])
    headers = [
        f"Content-Type: {content_type}".encode(),
        f"Authorization: {rawhttp.basic('bob', live_portal.passwords['bob'])}".encode(),
    ]
    return body, headers, sop_uid


def stored_by_bob(live_portal: LivePortal, start: int) -> list[str]:
    uids: list[str] = []
    for event in live_portal.audit_events(start):
        if event["action"] == "store" and event["username"] == "bob" and event["success"]:
            stored = event["stored_uids"]
            uids += json.loads(stored) if isinstance(stored, str) else stored
    return uids


@pytest.mark.live
def test_it_stores_a_stow_sent_with_an_empty_expect(live_portal: LivePortal) -> None:
    start = live_portal.last_audit_id()
    body, headers, sop_uid = stow(live_portal, "empty-expect")
    head, *_ = exchange(live_portal.port, raw_request("POST", STOW, [*headers, b"Expect:"], body))
    assert status(head) == 200, head
    assert stored_by_bob(live_portal, start) == [sop_uid]


@pytest.mark.live
@pytest.mark.parametrize(
    ("method", "target", "expected"),
    [("GET", "/accounts/login/", 200), ("GET", "/portal/", 302), ("POST", STOW, 401)],
)
def test_it_answers_an_anonymous_request_with_an_empty_expect_as_without_one(
    live_portal: LivePortal, method: str, target: str, expected: int
) -> None:
    without = exchange(live_portal.port, raw_request(method, target, []))[0]
    with_empty = exchange(live_portal.port, raw_request(method, target, [b"Expect:"]))[0]
    assert (status(without), status(with_empty)) == (expected, expected), with_empty


@pytest.mark.live
def test_it_still_sends_100_continue_before_a_stow_body(live_portal: LivePortal) -> None:
    start = live_portal.last_audit_id()
    body, headers, sop_uid = stow(live_portal, "expect-continue")
    head = raw_request(
        "POST", STOW, [*headers, b"Expect: 100-continue", f"Content-Length: {len(body)}".encode()]
    )
    interim, final, _ = exchange(live_portal.port, head, body_after_continue=body)
    assert status(interim) == 100
    assert status(final) == 200, final
    assert stored_by_bob(live_portal, start) == [sop_uid]


@pytest.mark.live
@pytest.mark.parametrize("expect", [b"Expect: something-else", b"Expect: 100-continue, something-else"])
def test_it_still_answers_an_expectation_it_cannot_meet_with_417(
    live_portal: LivePortal, expect: bytes
) -> None:
    assert rawhttp.send(live_portal.port, raw_request("GET", "/accounts/login/", [expect])) == 417
