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

from core.uids import MAX_LENGTH as MAX_UID_LENGTH
from core.uids import is_stored_uid
from orthanc import lookups
from orthanc.lookups import Resource
from proxy import paths
from proxy.models import ExportJob
from proxy.query import Query, attribute_tag

WILDCARDS = re.compile(r"[*?\\]")
PATH_LEVELS = {"studies": "studies", "series": "series", "instances": "instances"}
ORTHANC_ID = re.compile(r"[0-9a-f]{8}(?:-[0-9a-f]{8}){4}")
MAX_EXPORTED = 1000
FIND_IDENTIFIERS = {
    "0020000D": "study_uid",
    "0020000E": "series_uid",
    "00080018": "sop_uid",
    "00100020": "patient_id",
}


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
    if not is_stored_uid(value):
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
    return of_filters(uids, ids)


def of_filters(uids: dict[str, str], ids: dict[str, str]) -> Subject:
    """A query's subject: the resource its exact UID filters (and path) name, else its patient."""
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


def of_admin(method: str, path: str, query: Query, body: Any) -> Subject:
    """/pacs-admin: what a request reads or changes, as Orthanc's index says.

    DICOMweb and WADO-URI as under /pacs; a resource by its Orthanc id; an
    export (an archive, media, a send to another node) by the resources its
    JSON body names, all of one patient; a job's download by the export it was
    created for (ExportJob); a tools/find query by its exact UIDs, else its patient.
    """
    if paths.is_pacs_read(path):
        return of_pacs(method, path, query)
    segments = path.split("/")
    if len(segments) >= 2 and segments[0] in lookups.LEVELS:
        found = lookups.resource(segments[0], segments[1])
        return of_resource(found) if found is not None else Subject()
    if paths.is_export(path) and method == "POST":
        return of_exported(body)
    job = paths.job_output(path)
    if job and method in ("GET", "HEAD"):
        return of_job(job)
    if path == "tools/find":
        return of_find(body)
    return Subject()


def of_exported(body: Any) -> Subject:
    """The one patient (and study, if one) whose resources an export's body names."""
    ids = body.get("Resources") if isinstance(body, dict) else body
    if not isinstance(ids, list) or not ids or not all(isinstance(item, str) for item in ids):
        raise Refused(400, 'name what to export as JSON: {"Resources": [Orthanc ids]}')
    if len(ids) > MAX_EXPORTED:
        raise Refused(400, f"an export names at most {MAX_EXPORTED} resources")
    found = [resource_by_id(orthanc_id) for orthanc_id in dict.fromkeys(ids)]
    patients = {item.patient_id for item in found}
    if len(patients) > 1:
        raise Refused(
            400,
            f"an export names one patient's resources; this one names {len(patients)}: send one per patient",
        )
    studies = {item.study_uid for item in found}
    return Subject(patient_id=patients.pop(), study_uid=studies.pop() if len(studies) == 1 else "")


def resource_by_id(orthanc_id: str) -> Resource:
    """A resource by its Orthanc id alone (Orthanc's ids do not say their level)."""
    if not ORTHANC_ID.fullmatch(orthanc_id):
        raise Refused(400, f"{orthanc_id[:64]!r} is not an Orthanc id")
    for level in lookups.LEVELS:
        found = lookups.resource(level, orthanc_id)
        if found is not None:
            return found
    raise Refused(404, f"no resource {orthanc_id} in the archive")


def of_job(job_id: str) -> Subject:
    found = ExportJob.objects.filter(job_id=job_id).first()
    if found is None:
        raise Refused(
            403,
            "this job was not created through the portal, so whose data it holds is unknown: export anew",
        )
    return Subject(patient_id=found.patient_id, study_uid=found.study_uid)


def of_find(body: Any) -> Subject:
    """A tools/find query's subject, its keys read as Orthanc reads them (any spelling, by tag)."""
    find_query = body.get("Query") if isinstance(body, dict) else None
    if not isinstance(find_query, dict):
        return Subject()
    by_tag: dict[str, Any] = {}
    for key, value in find_query.items():
        tag = attribute_tag(str(key))
        if tag is None:
            raise Refused(400, f"tools/find: {str(key)[:64]!r} is not a DICOM attribute")
        if tag in by_tag:
            raise Refused(400, f"tools/find: {tag} is given more than once (in one spelling or another)")
        by_tag[tag] = value
    ids = {
        name: value
        for tag, name in FIND_IDENTIFIERS.items()
        if isinstance(value := by_tag.get(tag), str) and (name == "patient_id" or not WILDCARDS.search(value))
    }
    return of_filters({}, ids)
