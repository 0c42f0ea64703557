"""The proxy's header parser reads Orthanc's headers as http.client's own does."""

from __future__ import annotations

import email.parser
import http.client
import io
import runpy

import pytest
from urllib3.util.response import assert_header_parsing

from orthanc.client import install_header_parser, parse_headers_only
from tests.services import REPO

HEADER_BLOCKS = [
    b'Content-Type: multipart/related; type="application/octet-stream"; boundary=3d6b6a416f9b5\r\n'
    b"Content-Length: 524512\r\nConnection: keep-alive\r\n\r\n",
    b"Content-Type: application/dicom+json\r\nX-Repeated: one\r\nX-Repeated: two\r\n\r\n",
    b'Content-Type: text/plain\r\nX-Folded: first\r\n  second\r\nETag: "abc"\r\n\r\n',
    b"\r\n",
]


def stdlib_parse(block: bytes) -> http.client.HTTPMessage:
    lines = http.client._read_headers(io.BytesIO(block))  # type: ignore[attr-defined]  # private, as in orthanc/client.py
    text = b"".join(lines).decode("iso-8859-1")
    return email.parser.Parser(_class=http.client.HTTPMessage).parsestr(text)


@pytest.mark.parametrize("block", HEADER_BLOCKS)
def test_it_parses_the_same_headers_as_the_standard_library(block: bytes) -> None:
    ours = parse_headers_only(io.BytesIO(block))
    assert isinstance(ours, http.client.HTTPMessage)
    assert ours.items() == stdlib_parse(block).items()
    assert_header_parsing(ours)


def test_it_is_installed_by_gunicorn_workers_only(monkeypatch: pytest.MonkeyPatch) -> None:
    assert http.client.parse_headers is not parse_headers_only  # not in manage.py or tests
    monkeypatch.setattr(http.client, "parse_headers", http.client.parse_headers)
    hooks = runpy.run_path(str(REPO / "gunicorn.conf.py"))
    hooks["post_worker_init"](None)
    assert http.client.parse_headers is parse_headers_only


def test_it_refuses_to_install_on_a_python_without_its_hook(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(http.client, "parse_headers", http.client.parse_headers)
    monkeypatch.delattr(http.client, "_read_headers")
    with pytest.raises(RuntimeError, match="_read_headers is gone"):
        install_header_parser()
