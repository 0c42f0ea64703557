"""Subject resolution: which patient, study, series and instance a request reaches,
as Orthanc's index says, never as the client's words say.

A retrieve's patient is the one Orthanc files the study under; a PatientID in
its query names nothing. A path whose study, series and instance do not
belong together is answered 404 here, and a UID that Orthanc holds under two
patients 409, since no audit row could say which one was served.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from orthanc import lookups
from orthanc.lookups import Resource
from proxy import paths
from proxy.query import Query

UID = re.compile(r"[0-9]+(?:\.[0-9]+)*")
MAX_UID_LENGTH = 64
WILDCARDS = re.compile(r"[*?\\]")
PATH_LEVELS = {"studies": "studies", "series": "series", "instances": "instances"}


@dataclass(frozen=True)
class Subject:
    patient_id: str = ""
    study_uid: str = ""
    series_uid: str = ""
    sop_uid: str = ""


class Refused(Exception):
    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status, self.reason = status, reason


def of_resource(found: Resource) -> Subject:
    return Subject(found.patient_id, found.study_uid, found.series_uid, found.sop_uid)


def checked_uid(value: str, what: str) -> str:
    if len(value) > MAX_UID_LENGTH or not UID.fullmatch(value):
        raise Refused(400, f"{what} must be one UID (digits and dots, at most 64 characters)")
    return value


def one(found: list[Resource], what: str, uid: str) -> Resource:
    if not found:
        raise Refused(404, f"no {what} {uid} in the archive")
    if len(found) > 1:
        raise Refused(409, f"{what} {uid} is filed under more than one patient; ask a PACS administrator")
    return found[0]


def path_uids(path: str) -> dict[str, str]:
    """The UIDs a DICOMweb path names, by level: studies/<uid>/series/<uid>/instances/<uid>."""
    segments = path.split("/")[1:]  # after "dicom-web"
    found: dict[str, str] = {}
    for name, value in zip(segments[::2], segments[1::2], strict=False):
        if name not in PATH_LEVELS or PATH_LEVELS[name] in found:
            break
        found[PATH_LEVELS[name]] = checked_uid(value, f"the {name} UID in the path")
    return found


def chain(uids: dict[str, str]) -> Resource | None:
    """Resolve studies/series/instances UIDs top-down; each must belong to the one above."""
    parent: Resource | None = None
    for level, what in (("studies", "study"), ("series", "series"), ("instances", "instance")):
        uid = uids.get(level)
        if uid is None:
            continue
        if level == "instances" and parent is not None and parent.level == "series":
            primed = lookups.instance_in_series(parent, uid)
            if primed is not None:  # under `parent` by Orthanc's own listing of it
                parent = primed
                continue
        found = lookups.by_uid(level, uid)
        if parent is not None:
            found = [item for item in found if under(item, parent)]
        parent = one(found, what, uid)
    return parent


def under(item: Resource, ancestor: Resource) -> bool:
    return item.parent_id == ancestor.orthanc_id


def of_pacs(method: str, path: str, query: Query) -> Subject:
    ids = query.identifiers
    if paths.is_wado_uri(path):
        return of_wado_uri(ids)
    uids = path_uids(path)
    if method == "POST":  # STOW: the study may not exist yet; what was stored is audited after
        return Subject(study_uid=uids.get("studies", ""))
    if not paths.is_qido(path):
        found = chain(uids)
        return of_resource(found) if found is not None else Subject()
    for level, name in (("studies", "study_uid"), ("series", "series_uid"), ("instances", "sop_uid")):
        if name not in ids:
            continue
        value = checked_uid(ids[name], f"the {name} filter")
        if level in uids and uids[level] != value:
            raise Refused(400, f"the {name} filter contradicts the path")
        uids.setdefault(level, value)
    try:
        found = chain(uids)
    except Refused as refused:
        if refused.status != 404:
            raise
        # A query for a UID the archive does not hold matches nothing; say whom it asked about.
        return Subject(
            patient_id=exact(ids.get("patient_id", "")),
            study_uid=uids.get("studies", ""),
            series_uid=uids.get("series", ""),
            sop_uid=uids.get("instances", ""),
        )
    if found is not None:
        return of_resource(found)
    return Subject(patient_id=exact(ids.get("patient_id", "")))


def exact(value: str) -> str:
    """A query value that names one patient, or '' for a wildcard or a list."""
    return "" if WILDCARDS.search(value) else value[:MAX_UID_LENGTH]


def of_wado_uri(ids: dict[str, str]) -> Subject:
    if "sop_uid" not in ids:
        raise Refused(400, "WADO-URI needs objectUID")
    sop = checked_uid(ids["sop_uid"], "objectUID")
    found = lookups.by_uid("instances", sop)
    if "series_uid" in ids:
        series = checked_uid(ids["series_uid"], "seriesUID")
        found = [item for item in found if item.series_uid == series]
    if "study_uid" in ids:
        study = checked_uid(ids["study_uid"], "studyUID")
        found = [item for item in found if item.study_uid == study]
    return of_resource(one(found, "instance", sop))


def of_admin(path: str, body: Any) -> Subject:
    """/pacs-admin: the resource an Orthanc id names, or a find request's query."""
    segments = path.split("/")
    if len(segments) >= 2 and segments[0] in lookups.LEVELS:
        found = lookups.resource(segments[0], segments[1])
        return of_resource(found) if found is not None else Subject()
    if isinstance(body, dict) and isinstance(body.get("Query"), dict):
        return of_find(body["Query"])
    return Subject()


def of_find(find_query: dict[str, Any]) -> Subject:
    """The subject of a /tools/find-style query: its study if it names one, else its patient."""
    keys = {str(key).lower(): value for key, value in find_query.items()}
    study = keys.get("studyinstanceuid") or keys.get("0020,000d") or keys.get("0020000d")
    if isinstance(study, str) and UID.fullmatch(study) and len(study) <= MAX_UID_LENGTH:
        found = lookups.by_uid("studies", study)
        if len(found) == 1:
            return of_resource(found[0])
        if len(found) > 1:
            raise Refused(409, f"study {study} is filed under more than one patient")
        return Subject(study_uid=study)
    patient = keys.get("patientid") or keys.get("0010,0020") or keys.get("00100020")
    return Subject(patient_id=exact(patient)) if isinstance(patient, str) else Subject()
