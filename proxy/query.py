"""Query rules: the query string as Orthanc will read it, and the identifiers it names.

Orthanc reads a DICOM attribute under several spellings (keyword, `ggggeeee`,
`gggg,eeee`, `gggg-eeee`), takes the last of repeated keys, and silently
ignores a key it cannot place (`patientid`, `Limit`, `00100020 `), while an
audit that read the request another way would name something Orthanc never
served. So a QIDO query is rebuilt from the portal's own reading: every
attribute under its tag (`0010,0020` becomes `00100020`), every DICOMweb
parameter in Orthanc's spelling, and a key the portal cannot place, or one
given twice, refused. WADO-URI's parameters are rebuilt the same way. Other
reads (a retrieve, rendered, thumbnail) take their UIDs from the path only;
their query passes as it came, an identifying attribute named twice refused.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, quote

from pydicom.datadict import keyword_dict

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
    for spelling in (keyword, tag, f"{tag[:4]},{tag[4:]}", f"{tag[:4]}-{tag[4:]}")
}
# QIDO-RS's own parameters (PS3.18 8.3.4), in Orthanc's spelling; only includefield may repeat.
QIDO_PARAMETERS = {name.lower(): name for name in ("limit", "offset", "fuzzymatching", "includefield")}
REPEATABLE = frozenset({"includefield"})
# WADO-URI's parameters (PS3.18 9.1.2), in the standard's spelling, which Orthanc reads.
WADO_URI_PARAMETERS = {
    name.lower(): name
    for name in (
        "requestType",
        "studyUID",
        "seriesUID",
        "objectUID",
        "contentType",
        "charset",
        "anonymize",
        "annotation",
        "rows",
        "columns",
        "region",
        "windowCenter",
        "windowWidth",
        "frameNumber",
        "imageQuality",
        "presentationUID",
        "presentationSeriesUID",
        "transferSyntax",
    )
}
TAG = re.compile(r"([0-9A-Fa-f]{4})[,-]?([0-9A-Fa-f]{4})")
TAG_OF_KEYWORD = {keyword.lower(): f"{tag:08X}" for keyword, tag in keyword_dict.items()}


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


def attribute_tag(key: str) -> str | None:
    """A DICOM attribute's tag (`00100020`) from any spelling Orthanc reads; None if it is none."""
    tag = TAG.fullmatch(key)
    if tag is not None:
        return (tag.group(1) + tag.group(2)).upper()
    return TAG_OF_KEYWORD.get(key.lower())


def canonical_key(key: str, qido: bool, wado_uri: bool) -> str:
    """The one spelling Orthanc gets for `key`; raises UnsafeQuery for a key it cannot place."""
    if wado_uri:
        if key.lower() in WADO_URI_PARAMETERS:
            return WADO_URI_PARAMETERS[key.lower()]
        raise UnsafeQuery(f"{key[:64]!r} is not a WADO-URI parameter")
    if not qido:
        return key
    if key.lower() in QIDO_PARAMETERS:
        return QIDO_PARAMETERS[key.lower()]
    tag = attribute_tag(key)
    if tag is not None:
        return tag
    raise UnsafeQuery(f"{key[:64]!r} is neither a QIDO-RS parameter nor a DICOM attribute")


def parse(query: str, wado_uri: bool = False, qido: bool = False) -> Query:
    """Decode once, re-encode only what would break the query's structure.

    Orthanc (1.10 and 1.12) does not percent-decode query values
    (`contentType=application%2Fdicom` is a 400, `PatientID=A%2DB` matches
    nothing), while browsers and HTTP libraries encode them. A QIDO or
    WADO-URI query's keys are rebuilt in their one spelling (canonical_key).
    """
    if len(query) > MAX_QUERY_LENGTH or not SAFE_QUERY.fullmatch(query):
        raise UnsafeQuery("query string holds characters that are not allowed")
    try:
        pairs = parse_qsl(query, keep_blank_values=True, strict_parsing=False, errors="strict")
    except UnicodeDecodeError:
        raise UnsafeQuery("query string is not UTF-8") from None
    if qido or wado_uri:
        pairs = [(canonical_key(key, qido, wado_uri), value) for key, value in pairs]
        given = [key for key, _ in pairs if key not in REPEATABLE]
        if len(set(given)) != len(given):
            repeated = next(key for key in given if given.count(key) > 1)
            raise UnsafeQuery(f"{repeated[:64]!r} is given more than once (in one spelling or another)")
    identifiers: dict[str, str] = {}
    for key, value in pairs:
        name = identifier_of(key, wado_uri)
        if name is None:
            continue
        if name in identifiers:
            raise UnsafeQuery(f"{key[:64]!r} is given more than once (in one spelling or another)")
        identifiers[name] = value
    text = "&".join(f"{quote(key, safe=QUERY_SAFE)}={quote(value, safe=QUERY_SAFE)}" for key, value in pairs)
    return Query(text, identifiers)
