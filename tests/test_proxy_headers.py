"""The proxy's header parser reads Orthanc's headers as http.client's own does."""

from __future__ import annotations

import email.parser
import http.client
import io

import pytest
from urllib3.util.response import assert_header_parsing

from orthanc.client import parse_headers_only

HEADER_BLOCKS = [
    b'Content-Type: multipart/related; type="application/octet-stream"; boundary=3d6b6a416f9b5\r\n'
    b"Content-Length: 524512\r\nConnection: keep-alive\r\n\r\n",
    b"Content-Type: application/dicom+json\r\nX-Repeated: one\r\nX-Repeated: two\r\n\r\n",
    b'Content-Type: text/plain\r\nX-Folded: first\r\n  second\r\nETag: "abc"\r\n\r\n',
    b"\r\n",
]


def stdlib_parse(block: bytes) -> http.client.HTTPMessage:
    lines = http.client._read_headers(io.BytesIO(block))  # type: ignore[attr-defined]
    text = b"".join(lines).decode("iso-8859-1")
    return email.parser.Parser(_class=http.client.HTTPMessage).parsestr(text)


@pytest.mark.parametrize("block", HEADER_BLOCKS)
def test_it_parses_the_same_headers_as_the_standard_library(block: bytes) -> None:
    ours = parse_headers_only(io.BytesIO(block))
    assert isinstance(ours, http.client.HTTPMessage)
    assert ours.items() == stdlib_parse(block).items()
    assert_header_parsing(ours)


def test_it_is_what_http_client_uses_in_the_portal() -> None:
    assert http.client.parse_headers is parse_headers_only
