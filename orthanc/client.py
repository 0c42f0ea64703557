"""The one module that knows how to talk to Orthanc.

Base URL, service credential, one pooled connection set sized for the worker's
threads, explicit connect and read timeouts. Settings are read at call time so
tests can point the portal at their own Orthanc.
"""

from __future__ import annotations

import email.parser
import functools
import http.client
import json
import secrets
from collections.abc import Iterable
from typing import Any

import urllib3
from django.conf import settings

# Large socket reads and writes: studies are hundreds of MB, and 16 KB blocks
# (urllib3's default) cost a Python round trip each.
BLOCK_SIZE = 1024 * 1024
STOW_CONTENT_TYPE = 'multipart/related; type="application/dicom"; boundary={boundary}'


def parse_headers_only(
    fp: Any, _class: type[http.client.HTTPMessage] = http.client.HTTPMessage
) -> http.client.HTTPMessage:
    """http.client.parse_headers, telling the email parser there is no body to look for.

    Without `headersonly`, a multipart Content-Type (every WADO-RS answer) makes
    the parser compile a regular expression from the response's boundary, a new
    one each time: 0.33 ms of CPU per frame (docs/performance.md). The headers
    parsed are the same.
    """
    lines = http.client._read_headers(fp)  # type: ignore[attr-defined]
    text = b"".join(lines).decode("iso-8859-1")
    return email.parser.Parser(_class=_class).parsestr(text, headersonly=True)


def install_header_parser() -> None:
    """Replace http.client.parse_headers for every client in this process.

    Called from gunicorn's post_worker_init hook only: management commands and
    tests keep the standard library's parser. http.client looks parse_headers
    up in its module at each response, so this is the one place it can be
    replaced; if a future Python drops the private `_read_headers` this relies
    on, the worker refuses to start rather than quietly parsing differently.
    """
    if not callable(getattr(http.client, "_read_headers", None)) or not callable(
        getattr(http.client, "parse_headers", None)
    ):
        raise RuntimeError(
            "http.client._read_headers is gone in this Python: remove the header-parser "
            "replacement (orthanc/client.py, docs/performance.md) or adapt it"
        )
    http.client.parse_headers = parse_headers_only  # type: ignore[assignment]


@functools.lru_cache(maxsize=4)
def _pool(base_url: str, size: int, connect: float, read: float) -> urllib3.HTTPConnectionPool:
    return urllib3.connection_from_url(
        base_url,
        maxsize=size,
        block=True,
        timeout=urllib3.Timeout(connect=connect, read=read),
        retries=False,
        blocksize=BLOCK_SIZE,
    )


def pool() -> urllib3.HTTPConnectionPool:
    return _pool(
        settings.ORTHANC_URL,
        settings.ORTHANC_POOL_SIZE,
        float(settings.ORTHANC_CONNECT_TIMEOUT),
        float(settings.ORTHANC_READ_TIMEOUT),
    )


def base_path() -> str:
    """The path prefix of ORTHANC_URL ('' unless Orthanc sits under a sub-path)."""
    return urllib3.util.parse_url(settings.ORTHANC_URL).path or ""


def service_headers() -> dict[str, str]:
    return urllib3.make_headers(basic_auth=f"{settings.ORTHANC_USER}:{settings.ORTHANC_PASSWORD}")


def request(
    method: str,
    path: str,
    *,
    body: Any = None,
    headers: dict[str, str] | None = None,
    stream: bool = False,
    timeout: urllib3.Timeout | None = None,
    retries: urllib3.Retry | bool = False,
) -> urllib3.BaseHTTPResponse:
    """Send one request to Orthanc with the service credential.

    A pool slot is waited for no longer than the connect timeout; the caller of
    a streamed request must close or fully read the response.
    """
    options: dict[str, Any] = {"timeout": timeout} if timeout else {}
    return pool().urlopen(
        method,
        base_path() + path,
        body=body,
        headers={**(headers or {}), **service_headers()},
        redirect=False,
        retries=retries,
        pool_timeout=float(settings.ORTHANC_CONNECT_TIMEOUT),
        preload_content=not stream,
        decode_content=not stream,
        **options,
    )


def json_body(response: urllib3.BaseHTTPResponse) -> Any:
    """A preloaded response's JSON body; raises ValueError if it is not JSON."""
    return json.loads(response.data)


def get_json(path: str) -> Any:
    response = request("GET", path, headers={"Accept": "application/json"})
    if response.status != 200:
        raise OrthancError(f"GET {path}: HTTP {response.status}")
    return json.loads(response.data)


def _value(study: dict[str, Any], tag: str) -> str:
    value = study.get(tag, {}).get("Value", [""])[0]
    return value.get("Alphabetic", "") if isinstance(value, dict) else str(value)


def recent_studies(count: int, scanned: int = 500) -> list[dict[str, str]]:
    """The `count` newest of up to `scanned` studies, by study date and time."""
    found = get_json(f"/dicom-web/studies?limit={scanned}")
    studies = [
        {
            "uid": _value(study, "0020000D"),
            "date": _value(study, "00080020"),
            "time": _value(study, "00080030"),
            "patient_name": _value(study, "00100010").replace("^", " ").strip(),
            "patient_id": _value(study, "00100020"),
            "description": _value(study, "00081030"),
            "modalities": _value(study, "00080061"),
        }
        for study in found
    ]
    studies.sort(key=lambda study: (study["date"], study["time"]), reverse=True)
    return studies[:count]


def is_up() -> bool:
    try:
        response = request("GET", "/system", timeout=urllib3.Timeout(connect=2, read=5))
    except urllib3.exceptions.HTTPError:
        return False
    return response.status == 200


def stow(instances: Iterable[bytes]) -> dict[str, Any]:
    """Store DICOM Part 10 files through STOW-RS in one multipart request."""
    boundary = secrets.token_hex(16)
    chunks: list[bytes] = []
    for data in instances:
        chunks.append(f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode())
        chunks.append(data)
        chunks.append(b"\r\n")
    chunks.append(f"--{boundary}--\r\n".encode())
    response = request(
        "POST",
        "/dicom-web/studies",
        body=b"".join(chunks),
        headers={
            "Content-Type": STOW_CONTENT_TYPE.format(boundary=boundary),
            "Accept": "application/dicom+json",
        },
    )
    if response.status != 200:
        raise OrthancError(f"STOW-RS: HTTP {response.status}: {response.data[:200]!r}")
    return json.loads(response.data)


class OrthancError(Exception):
    """Orthanc answered, but not as expected."""
