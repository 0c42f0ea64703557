"""The one module that knows how to talk to Orthanc.

Base URL, service credential, one pooled connection set sized for the worker's
threads, explicit connect and read timeouts. Settings are read at call time so
tests can point the portal at their own Orthanc.
"""

from __future__ import annotations

import datetime
import email.parser
import functools
import http.client
import json
import secrets
import threading
from collections.abc import Iterable
from typing import Any, cast

import urllib3
from django.conf import settings
from django.utils import timezone

from core.ttlcache import TTLCache

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
    one each time, for every frame (the cost: docs/departures.md). The headers
    parsed are the same.
    """
    lines = http.client._read_headers(fp)  # type: ignore[attr-defined]  # private: checked at install
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
    # typeshed's parse_headers is overloaded, generic over the message class; this one is not.
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
) -> urllib3.HTTPResponse:
    """Send one request to Orthanc with the service credential.

    A pool slot is waited for no longer than the connect timeout; the caller of
    a streamed request must close or fully read the response.
    """
    options: dict[str, Any] = {"timeout": timeout} if timeout else {}
    response = pool().urlopen(
        method,
        base_path() + path,
        body=body,
        headers={**(headers or {}), **service_headers()},
        redirect=False,
        retries=retries,
        pool_timeout=settings.ORTHANC_CONNECT_TIMEOUT,
        preload_content=not stream,
        decode_content=not stream,
        **options,
    )
    # A connection pool answers an HTTPResponse; urlopen's annotation names its base class.
    return cast(urllib3.HTTPResponse, response)


def json_request(
    method: str,
    path: str,
    body: bytes | None = None,
    timeout: urllib3.Timeout | None = None,
    absent_ok: bool = False,
) -> Any:
    """Orthanc's JSON answer; None for a 404 when `absent_ok`; OrthancError when it cannot be had."""
    try:
        response = request(method, path, body=body, headers={"Accept": "application/json"}, timeout=timeout)
    except urllib3.exceptions.HTTPError as error:
        raise OrthancError(f"{method} {path}: {error}") from None
    if absent_ok and response.status == 404:
        return None
    if response.status != 200:
        raise OrthancError(f"{method} {path}: HTTP {response.status}")
    try:
        return json.loads(response.data)
    except ValueError:
        raise OrthancError(f"{method} {path}: not JSON") from None


# --- The newest studies, for the portal home -----------------------------------
# Orthanc 1.12.5 added OrderBy to /tools/find, on database back-ends with
# "extended find", which /system reports as Capabilities.HasExtendedFind: the
# index sorts and returns `count` studies. Measured with 1.12.7: true on its
# SQLite index; false on Debian 13's PostgreSQL plugin 5.0, where OrderBy is a
# 500 ("The database backend doesn't support ordering"), so the version alone
# does not decide. Older Orthancs (Debian 12's 1.10) cannot sort, and a plain
# `limit` returns the oldest studies of the index, not the newest; they are
# asked for the studies of the last day, then week, month, year, decade and
# all time, each query bounded, until `count` are found, and the answer is
# reused for RECENT_FALLBACK_TTL seconds.
SORTED_FIND_VERSION = (1, 12, 5)
SYSTEM_TTL = 300.0
RECENT_FALLBACK_TTL = 60.0
RECENT_FALLBACK_WINDOWS = (1, 7, 31, 366, 3660, None)  # days back; None: every date
RECENT_FALLBACK_LIMIT = 200  # studies per window query
RECENT_TIMEOUT = urllib3.Timeout(connect=5, read=15)
STUDY_TAGS = {
    "uid": ("StudyInstanceUID", "0020000D"),
    "date": ("StudyDate", "00080020"),
    "time": ("StudyTime", "00080030"),
    "patient_name": ("PatientName", "00100010"),
    "patient_id": ("PatientID", "00100020"),
    "description": ("StudyDescription", "00081030"),
    "modalities": ("ModalitiesInStudy", "00080061"),
}
_recent_lock = threading.Lock()
# ("system", Orthanc URL, 0) -> /system for SYSTEM_TTL; ("recent", URL, count) -> the
# newest studies for RECENT_FALLBACK_TTL. A few keys per Orthanc the process talks to.
_recent_cache: TTLCache[Any] = TTLCache(16, SYSTEM_TTL)


def system_info() -> dict[str, Any]:
    """Orthanc's /system, trusted for SYSTEM_TTL seconds (an upgrade is seen within that time)."""
    key = ("system", settings.ORTHANC_URL, 0)
    found = _recent_cache.get(key)
    if found is None:
        found = json_request("GET", "/system", timeout=RECENT_TIMEOUT)
        _recent_cache.set(key, found)
    return dict(found)


def version(system: dict[str, Any]) -> tuple[int, ...] | None:
    """The version Orthanc reports ("1.12.7"), or None for builds named otherwise ("mainline")."""
    parts = str(system.get("Version", "")).split(".")
    return tuple(int(part) for part in parts) if all(part.isdigit() for part in parts) else None


def sorts_studies(system: dict[str, Any]) -> bool:
    """Whether this Orthanc's /tools/find can return the newest studies itself."""
    capable = system.get("Capabilities", {}).get("HasExtendedFind") is True
    reported = version(system)
    return capable and (reported is None or reported >= SORTED_FIND_VERSION)


def recent_studies(count: int) -> list[dict[str, str]]:
    """The `count` newest studies by study date and time, newest first."""
    if sorts_studies(system_info()):
        return newest_sorted_by_orthanc(count)
    key = ("recent", settings.ORTHANC_URL, count)
    with _recent_lock:  # one worker thread asks Orthanc, the others wait for its answer
        found = _recent_cache.get(key)
        if found is None:
            found = newest_by_date_windows(count, timezone.localdate())
            _recent_cache.set(key, found, RECENT_FALLBACK_TTL)
    return list(found)


def newest_sorted_by_orthanc(count: int) -> list[dict[str, str]]:
    query = {
        "Level": "Study",
        "Query": {},
        "Limit": count,
        "OrderBy": [
            {"Type": "DicomTag", "Key": "StudyDate", "Direction": "DESC"},
            {"Type": "DicomTag", "Key": "StudyTime", "Direction": "DESC"},
        ],
        "RequestedTags": [keyword for keyword, _ in STUDY_TAGS.values()],
        "ResponseContent": ["RequestedTags"],
    }
    found = json_request("POST", "/tools/find", json.dumps(query).encode(), timeout=RECENT_TIMEOUT)
    return [
        {
            name: _text(study.get("RequestedTags", {}).get(keyword) or "")  # null when the tag is absent
            for name, (keyword, _) in STUDY_TAGS.items()
        }
        for study in found
    ]


def newest_by_date_windows(count: int, today: datetime.date) -> list[dict[str, str]]:
    """Orthanc 1.10: the newest studies from ever wider date ranges, each query bounded.

    Every window but the last held fewer than `count` studies, so it was read
    whole; the answer is exact unless the last window's band (beyond the one
    before it) holds more than RECENT_FALLBACK_LIMIT studies.
    """
    limit = max(RECENT_FALLBACK_LIMIT, count)
    found: dict[str, dict[str, str]] = {}
    for days in RECENT_FALLBACK_WINDOWS:
        query = f"limit={limit}&includefield=00081030"  # StudyDescription is not a default field
        if days is not None:
            query += f"&StudyDate={(today - datetime.timedelta(days=days)):%Y%m%d}-"
        for answer in json_request("GET", f"/dicom-web/studies?{query}", timeout=RECENT_TIMEOUT):
            study = {name: _text(_value(answer, tag)) for name, (_, tag) in STUDY_TAGS.items()}
            found.setdefault(study["uid"], study)
        if len(found) >= count:
            break
    newest = sorted(found.values(), key=lambda study: (study["date"], study["time"]), reverse=True)
    return newest[:count]


def _value(study: dict[str, Any], tag: str) -> str:
    """A DICOM JSON attribute as Orthanc writes values in its own JSON (multiple values joined by \\)."""
    values = study.get(tag, {}).get("Value", [])
    return "\\".join(
        value.get("Alphabetic", "") if isinstance(value, dict) else str(value) for value in values
    )


def _text(value: str) -> str:
    """A DICOM value as people read it: person-name and multi-value separators as spaces."""
    return value.replace("^", " ").replace("\\", " ").strip()


def is_up() -> bool:
    try:
        response = request("GET", "/system", timeout=urllib3.Timeout(connect=2, read=5))
    except urllib3.exceptions.HTTPError:
        return False
    return response.status == 200


def stow_part_head(boundary: str) -> bytes:
    """What opens one DICOM part of a STOW-RS body; the part's bytes and CRLF follow."""
    return f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode()


def stow_body_end(boundary: str) -> bytes:
    return f"--{boundary}--\r\n".encode()


def stow(instances: Iterable[bytes]) -> dict[str, Any]:
    """Store DICOM Part 10 files through STOW-RS in one multipart request."""
    boundary = secrets.token_hex(16)
    body = b"".join(stow_part_head(boundary) + data + b"\r\n" for data in instances) + stow_body_end(boundary)
    response = request(
        "POST",
        "/dicom-web/studies",
        body=body,
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
