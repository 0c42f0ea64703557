"""Which upstream paths a mount may reach, and how they are made safe.

The path arrives percent-decoded once (WSGI's PATH_INFO). Anything that could
climb out of the mount or be decoded differently upstream is refused rather
than normalized: dot segments, empty segments, backslashes, a `%` left after
decoding (double encoding), control or non-ASCII characters, and, in the raw
request line, encoded slashes, backslashes and dots.
"""

from __future__ import annotations

import itertools
import re
from urllib.parse import parse_qsl, quote

SAFE_CHARACTERS = re.compile(r"[A-Za-z0-9._,\-/]*")
SAFE_QUERY = re.compile(r"[\x21-\x7e]*")
RAW_FORBIDDEN = re.compile(r"%(?:2f|5c|2e|00|25)", re.IGNORECASE)
MAX_PATH_LENGTH = 2048
QUERY_SAFE = "/:,*.-_~^@!$'()[];"

# DICOMweb resources (QIDO-RS, WADO-RS, STOW-RS) and WADO-URI. The plugin's
# other routes (`servers`, `info`) configure and drive outbound transfers and
# stay behind /pacs-admin.
DICOMWEB = re.compile(r"dicom-web/(?:studies|series|instances)(?:/[^/]+)*")
WADO_URI = re.compile(r"wado")
STOW = re.compile(r"dicom-web/studies(?:/[^/]+)?")


class UnsafePath(ValueError):
    pass


def clean(path: str, raw_uri: str | None) -> str:
    """Return the path if it is safe to forward, else raise UnsafePath."""
    if raw_uri is not None and RAW_FORBIDDEN.search(raw_uri.split("?", 1)[0]):
        raise UnsafePath("encoded slashes, dots, backslashes or percent signs are not allowed in the path")
    if len(path) > MAX_PATH_LENGTH:
        raise UnsafePath("path too long")
    if not SAFE_CHARACTERS.fullmatch(path):
        raise UnsafePath("path holds characters that are not allowed")
    if path and any(segment in ("", ".", "..") for segment in path.rstrip("/").split("/")):
        raise UnsafePath("empty or dot path segments are not allowed")
    return path


def clean_query(query: str) -> str:
    """The query string, decoded and re-encoded as Orthanc reads it.

    Orthanc 1.10 does not percent-decode query values (`contentType=application%2Fdicom`
    is a 400, `PatientID=A%2DB` matches nothing), while browsers and HTTP
    libraries encode them: decode once, then quote only what would break the
    query's structure. (urllib3 still encodes characters outside RFC 3986's
    query set, such as `^` and `\\`, so PatientName=Doe^John cannot match
    through any standard client until Orthanc decodes queries.)
    """
    if len(query) > MAX_PATH_LENGTH * 4 or not SAFE_QUERY.fullmatch(query):
        raise UnsafePath("query string holds characters that are not allowed")
    try:
        pairs = parse_qsl(query, keep_blank_values=True, strict_parsing=False, errors="strict")
    except UnicodeDecodeError:
        raise UnsafePath("query string is not UTF-8") from None
    return "&".join(f"{quote(key, safe=QUERY_SAFE)}={quote(value, safe=QUERY_SAFE)}" for key, value in pairs)


def is_pacs_read(path: str) -> bool:
    return bool(DICOMWEB.fullmatch(path) or WADO_URI.fullmatch(path))


def is_stow(path: str) -> bool:
    return bool(STOW.fullmatch(path))


def quoted(path: str) -> str:
    return quote(path, safe="/,")


QIDO = re.compile(r"(?:.*/)?(?:studies|series|instances)/?")
UID_SEGMENTS = {"studies": "study_uid", "series": "series_uid", "instances": "sop_uid"}
UID_QUERY_KEYS = {
    "StudyInstanceUID": "study_uid",
    "0020000D": "study_uid",
    "studyUID": "study_uid",
    "SeriesInstanceUID": "series_uid",
    "0020000E": "series_uid",
    "seriesUID": "series_uid",
    "SOPInstanceUID": "sop_uid",
    "00080018": "sop_uid",
    "objectUID": "sop_uid",
    "PatientID": "patient_id",
    "00100020": "patient_id",
}


def is_qido(path: str) -> bool:
    return path.startswith("dicom-web/") and bool(QIDO.fullmatch(path))


def dicom_identifiers(path: str, query: str) -> dict[str, str]:
    """Study, series and SOP Instance UIDs (and a Patient ID) named by a DICOMweb or WADO-URI request."""
    found: dict[str, str] = {}
    segments = path.split("/")
    for name, value in itertools.pairwise(segments):
        if name in UID_SEGMENTS and value:
            found[UID_SEGMENTS[name]] = value
    for key, value in parse_qsl(query, keep_blank_values=False):
        field = UID_QUERY_KEYS.get(key)
        if field and field not in found:
            found[field] = value
    return found
