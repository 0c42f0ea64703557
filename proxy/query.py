"""Query rules: the query string as Orthanc will read it, and the identifiers it names.

Orthanc reads a DICOM attribute under several spellings (keyword, `ggggeeee`,
`gggg,eeee`, in any case) and takes the last of repeated keys, while an audit
that took the first would name something Orthanc never served. So every
spelling is read, and a request naming an identifying attribute twice is
refused as ambiguous.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, quote

SAFE_QUERY = re.compile(r"[\x21-\x7e]*")
MAX_QUERY_LENGTH = 8192
QUERY_SAFE = "/:,*.-_~^@!$'()[];"

# Attribute (keyword, tag) -> the identifier it names.
IDENTIFYING = {
    ("studyinstanceuid", "0020000d"): "study_uid",
    ("seriesinstanceuid", "0020000e"): "series_uid",
    ("sopinstanceuid", "00080018"): "sop_uid",
    ("patientid", "00100020"): "patient_id",
    ("patientname", "00100010"): "patient_name",
    ("otherpatientids", "00101000"): "other_patient_ids",
}
# WADO-URI's own parameter names.
WADO_URI_KEYS = {"studyuid": "study_uid", "seriesuid": "series_uid", "objectuid": "sop_uid"}
SPELLINGS = {
    spelling: name
    for (keyword, tag), name in IDENTIFYING.items()
    for spelling in (keyword, tag, f"{tag[:4]},{tag[4:]}")
}


class UnsafeQuery(ValueError):
    pass


@dataclass(frozen=True)
class Query:
    """A cleaned query string and the identifying values it holds, by identifier."""

    text: str
    identifiers: dict[str, str] = field(default_factory=dict)


def identifier_of(key: str, wado_uri: bool) -> str | None:
    lowered = key.strip().lower()
    if wado_uri and lowered in WADO_URI_KEYS:
        return WADO_URI_KEYS[lowered]
    return SPELLINGS.get(lowered)


def parse(query: str, wado_uri: bool = False) -> Query:
    """Decode once, re-encode only what would break the query's structure.

    Orthanc (1.10 and 1.12) does not percent-decode query values
    (`contentType=application%2Fdicom` is a 400, `PatientID=A%2DB` matches
    nothing), while browsers and HTTP libraries encode them.
    """
    if len(query) > MAX_QUERY_LENGTH or not SAFE_QUERY.fullmatch(query):
        raise UnsafeQuery("query string holds characters that are not allowed")
    try:
        pairs = parse_qsl(query, keep_blank_values=True, strict_parsing=False, errors="strict")
    except UnicodeDecodeError:
        raise UnsafeQuery("query string is not UTF-8") from None
    identifiers: dict[str, str] = {}
    for key, value in pairs:
        name = identifier_of(key, wado_uri)
        if name is None:
            continue
        if name in identifiers:
            raise UnsafeQuery(f"{key} is given more than once (in one spelling or another)")
        identifiers[name] = value
    text = "&".join(f"{quote(key, safe=QUERY_SAFE)}={quote(value, safe=QUERY_SAFE)}" for key, value in pairs)
    return Query(text, identifiers)
