"""Path rules: which upstream paths a mount may reach, and how they are made safe.

The path arrives percent-decoded once (WSGI's PATH_INFO). Anything that could
climb out of the mount or be read differently upstream is refused rather than
normalized: segments made only of dots (Orthanc silently drops them, so the
audit would name a segment Orthanc never read), backslashes, a `%` left after
decoding (double encoding), control or non-ASCII characters, and, in the raw
request line, encoded slashes, backslashes and dots. Repeated slashes are
collapsed instead: Orthanc ignores empty segments, and its own client tooling
sends them.
"""

from __future__ import annotations

import re
from urllib.parse import quote

SAFE_CHARACTERS = re.compile(r"[A-Za-z0-9._,\-/]*")
RAW_FORBIDDEN = re.compile(r"%(?:2f|5c|2e|00|25)", re.IGNORECASE)
REPEATED_SLASHES = re.compile(r"/{2,}")
DOTS_ONLY = re.compile(r"\.+")
MAX_PATH_LENGTH = 2048

# DICOMweb resources (QIDO-RS, WADO-RS, STOW-RS) and WADO-URI. The plugin's
# other routes (`servers`, `info`) configure and drive outbound transfers and
# stay behind /pacs-admin.
DICOMWEB = re.compile(r"dicom-web/(?:studies|series|instances)(?:/[^/]+)*")
WADO_URI = re.compile(r"wado")
STOW = re.compile(r"dicom-web/studies(?:/[^/]+)?")
QIDO = re.compile(
    r"dicom-web/(?:studies|series|instances"
    r"|studies/[^/]+/(?:series|instances)|studies/[^/]+/series/[^/]+/instances)"
)

# /pacs-admin requests that take patient data out: an archive or media (at once,
# or as a job), a bulk read, a send to another DICOM node or DICOMweb server.
EXPORT = re.compile(
    r"tools/(?:create-archive|create-media|create-media-extended|bulk-content)"
    r"|(?:modalities|peers)/[^/]+/store(?:-straight)?|dicom-web/servers/[^/]+/stow"
)
JOB_OUTPUT = re.compile(r"jobs/([0-9a-f-]{1,64})/[^/]+")


class UnsafePath(ValueError):
    pass


def clean(path: str, raw_uri: str | None) -> str:
    """The path as Orthanc will read it, if it is safe to forward; else raise UnsafePath."""
    if raw_uri is not None and RAW_FORBIDDEN.search(raw_uri.split("?", 1)[0]):
        raise UnsafePath("encoded slashes, dots, backslashes or percent signs are not allowed in the path")
    if len(path) > MAX_PATH_LENGTH:
        raise UnsafePath("path too long")
    if not SAFE_CHARACTERS.fullmatch(path):
        raise UnsafePath("path holds characters that are not allowed")
    path = REPEATED_SLASHES.sub("/", path).strip("/")
    if any(DOTS_ONLY.fullmatch(segment) for segment in path.split("/")):
        raise UnsafePath("path segments made only of dots are not allowed")
    return path


def is_pacs_read(path: str) -> bool:
    return bool(DICOMWEB.fullmatch(path) or WADO_URI.fullmatch(path))


def is_stow(path: str) -> bool:
    return bool(STOW.fullmatch(path))


def is_qido(path: str) -> bool:
    return bool(QIDO.fullmatch(path))


def is_export(path: str) -> bool:
    return bool(EXPORT.fullmatch(path))


def job_output(path: str) -> str:
    """The job whose output (an archive, media) `path` downloads; '' if it is no such path."""
    found = JOB_OUTPUT.fullmatch(path)
    return found.group(1) if found else ""


def is_wado_uri(path: str) -> bool:
    return bool(WADO_URI.fullmatch(path))


def quoted(path: str) -> str:
    return quote(path, safe="/,")
