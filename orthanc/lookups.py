"""Who owns a UID or an Orthanc id, from Orthanc's own index: the subject of an access.

The audit names what Orthanc serves, never what the client claims, so every
study, series and instance a request names is looked up here. Answers are
cached for LOOKUP_TTL seconds in a bounded cache; misses are not cached (a
study stored a second later must be found). An instance is found in its
series' listing, cached with the series: one deleted, or its study filed again
under another patient, within LOOKUP_TTL is still named as listed, as studies
and series already were (Orthanc itself then answers 404 for the deleted). A failed lookup raises
LookupFailed, and the caller refuses the read (503): nothing is served
unattributed.
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass
from typing import Any

import urllib3
from django.conf import settings
from django.db import DatabaseError

from core.ttlcache import TTLCache
from core.turns import OneAnswer
from orthanc import client, owners

LEVELS = ("patients", "studies", "series", "instances")
LOOKUP_TYPES = {"studies": "Study", "series": "Series", "instances": "Instance"}
MAX_CACHED = 100_000
LOOKUP_TIMEOUT = urllib3.Timeout(connect=5, read=10)


class LookupFailed(Exception):
    """Orthanc could not be asked (down, slow, or an unexpected answer)."""


@dataclass(frozen=True)
class Resource:
    """One resource in Orthanc's index and its ancestors' identifiers."""

    level: str
    orthanc_id: str
    parent_id: str = ""
    patient_id: str = ""
    study_uid: str = ""
    series_uid: str = ""
    sop_uid: str = ""


def lookup_ttl() -> float:
    """ORTHANC_LOOKUP_TTL, read as each answer is cached (settings are not read at import)."""
    return float(settings.ORTHANC_LOOKUP_TTL)


_by_id: TTLCache[Resource] = TTLCache(MAX_CACHED, lookup_ttl)
_by_uid: TTLCache[list[Resource]] = TTLCache(MAX_CACHED, lookup_ttl)
# (Orthanc URL, series id, SOP Instance UID) -> the instance, from the series' own listing.
_in_series: TTLCache[Resource] = TTLCache(MAX_CACHED, lookup_ttl)
# When a cached answer expires under a viewer's burst of requests, one thread asks
# Orthanc and the others take its answer: threads listing one series together
# slowed every decision while Orthanc streamed frames (docs/performance-history.md).
_looking_up = OneAnswer()


def _get(path: str) -> Any:
    """Orthanc's JSON for one resource, None if it has no such resource."""
    try:
        return client.json_request("GET", path, timeout=LOOKUP_TIMEOUT, absent_ok=True)
    except client.OrthancError as error:
        raise LookupFailed(str(error)) from None


def _tags(found: dict[str, Any], key: str = "MainDicomTags") -> dict[str, str]:
    tags = found.get(key)
    return tags if isinstance(tags, dict) else {}


def resource(level: str, orthanc_id: str) -> Resource | None:
    """The resource with this Orthanc id at this level (patients, studies, series, instances)."""
    key = (settings.ORTHANC_URL, level, orthanc_id)
    cached = _by_id.get(key)
    if cached is not None:
        return cached
    found = _get(f"/{level}/{orthanc_id}")
    if not isinstance(found, dict):
        return None
    made = _from_json(level, found)
    if made is not None:
        _by_id.set(key, made)
    return made


def _from_json(level: str, found: dict[str, Any]) -> Resource | None:
    orthanc_id = str(found.get("ID", ""))
    tags = _tags(found)
    if level == "patients":
        return Resource(level, orthanc_id, patient_id=tags.get("PatientID", ""))
    if level == "studies":
        return Resource(
            level,
            orthanc_id,
            parent_id=str(found.get("ParentPatient", "")),
            patient_id=_tags(found, "PatientMainDicomTags").get("PatientID", ""),
            study_uid=tags.get("StudyInstanceUID", ""),
        )
    parent_level = "studies" if level == "series" else "series"
    parent_key = "ParentStudy" if level == "series" else "ParentSeries"
    parent = resource(parent_level, str(found.get(parent_key, "")))
    if parent is None:
        return None  # deleted between the two lookups: treat as absent
    return Resource(
        level,
        orthanc_id,
        parent_id=parent.orthanc_id,
        patient_id=parent.patient_id,
        study_uid=parent.study_uid,
        series_uid=tags.get("SeriesInstanceUID", "") if level == "series" else parent.series_uid,
        sop_uid=tags.get("SOPInstanceUID", "") if level == "instances" else "",
    )


def _post(path: str, body: bytes, timeout: urllib3.Timeout | None = None) -> Any:
    """Orthanc's JSON answer to a POST; LookupFailed if it cannot be had."""
    try:
        return client.json_request("POST", path, body, timeout=timeout)
    except client.OrthancError as error:
        raise LookupFailed(str(error)) from None


def by_uid(level: str, uid: str) -> list[Resource]:
    """Every resource at this level whose DICOM UID is `uid` (more than one if the
    same UID was stored under several patients)."""
    key = (settings.ORTHANC_URL, level, uid)
    cached = _by_uid.get(key)
    if cached is not None:
        return cached
    mapped = _mapped(uid) if level == "studies" else None
    if mapped is not None and len(mapped) == 1:
        orthanc_id, patient_id, patient_orthanc_id = mapped[0]
        found = [Resource(level, orthanc_id, patient_orthanc_id, patient_id, uid)]
        _by_uid.set(key, found, owners.fresh_seconds())
        return found
    found = _looking_up.get(key, lambda: _look_up(key, level, uid))
    if mapped is not None and len(mapped) > 1:  # a collision, or a study filed again: Orthanc says which
        with contextlib.suppress(DatabaseError):  # the map is only a short cut: the answer stands
            owners.heal([row[0] for row in mapped], [resource.orthanc_id for resource in found])
    return found


def _mapped(uid: str) -> list[tuple[str, str, str]] | None:
    """The study map's rows for a study UID; None when it cannot say (stale, or the database
    busy or failing: Orthanc's look-up answers instead, as before the map)."""
    try:
        return owners.studies_of(uid)
    except DatabaseError:
        return None


def _look_up(key: tuple[str, str, str], level: str, uid: str) -> list[Resource]:
    matches = _post("/tools/lookup", uid.encode(), timeout=LOOKUP_TIMEOUT)
    wanted = LOOKUP_TYPES[level]
    found = [
        made
        for match in matches
        if isinstance(match, dict) and match.get("Type") == wanted
        for made in [resource(level, str(match.get("ID", "")))]
        if made is not None
    ]
    if level == "series":
        for series in found:
            _prime_instances(series)  # before the series is found cached
    if found:
        _by_uid.set(key, found)
    return found


def parent_series_of_instances(sop_uids: list[str]) -> dict[str, set[str]]:
    """For each SOP Instance UID Orthanc holds, the Orthanc ids of the series holding it:
    one /tools/find for the list (DICOM list matching), not one lookup per UID."""
    if not sop_uids:
        return {}
    query = {"Level": "Instance", "Query": {"SOPInstanceUID": "\\".join(sop_uids)}, "Expand": True}
    found = _post("/tools/find", json.dumps(query).encode())
    parents: dict[str, set[str]] = {}
    for instance in found if isinstance(found, list) else []:
        if isinstance(instance, dict):
            sop_uid = _tags(instance).get("SOPInstanceUID", "")
            parents.setdefault(sop_uid, set()).add(str(instance.get("ParentSeries", "")))
    return parents


def instance_in_series(series: Resource, sop_uid: str) -> Resource | None:
    """The instance `sop_uid` of this series, if the series' listing is cached (else None:
    ask `by_uid`). Without it each instance a viewer asks for costs a /tools/lookup while
    Orthanc streams frames (docs/performance.md)."""
    return _in_series.get((settings.ORTHANC_URL, series.orthanc_id, sop_uid))


def _prime_instances(series: Resource) -> None:
    """Cache every instance of a series in one request: a viewer asks for each in turn."""
    try:
        instances = _get(f"/series/{series.orthanc_id}/instances")
    except LookupFailed:
        return  # each instance is then looked up on its own
    for found in instances or []:
        if not isinstance(found, dict) or found.get("ParentSeries") != series.orthanc_id:
            continue
        made = Resource(
            "instances",
            str(found.get("ID", "")),
            parent_id=series.orthanc_id,
            patient_id=series.patient_id,
            study_uid=series.study_uid,
            series_uid=series.series_uid,
            sop_uid=_tags(found).get("SOPInstanceUID", ""),
        )
        _by_id.set((settings.ORTHANC_URL, "instances", made.orthanc_id), made)
        _in_series.set((settings.ORTHANC_URL, series.orthanc_id, made.sop_uid), made)


def clear() -> None:
    _by_id.clear()
    _by_uid.clear()
    _in_series.clear()
