"""Share rules: what a shared link's visitor may ask of /pacs, as pure functions.

A share opens one study, read-only. The decision calls `confine` before its
role rules: QIDO is rewritten to the shared study whatever the query asks
(study-level queries get its StudyInstanceUID as their filter, series and
instance queries are asked under it), retrieves naming another study in
their path, writes, /pacs-admin and (unless the share allows downloads)
whole studies, series and instances are refused. After the subject is
resolved from Orthanc's index, `check_subject` refuses anything that index
files under another study (a series or instance UID of another study, a
WADO-URI objectUID).
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import parse_qsl, unquote

from proxy import paths, query
from proxy.origin import SAFE_METHODS
from proxy.query import Query
from proxy.rules import PACS, Refusal
from proxy.subjects import Subject

ONE_STUDY = "a shared link opens one study only"


@dataclass(frozen=True)
class Scope:
    study_uid: str
    allow_download: bool = False


@dataclass(frozen=True)
class Confined:
    path: str
    query: Query


def confine(scope: Scope, mount: str, method: str, path: str, asked: Query) -> Confined | Refusal:
    """The request as the share lets it reach Orthanc, or its refusal."""
    if mount != PACS:
        return Refusal(403, "a shared link opens the viewer only, not the PACS administration")
    if method not in SAFE_METHODS:
        return Refusal(403, "a shared link is read-only")
    if paths.is_wado_uri(path):
        if not scope.allow_download and asks_for_dicom(asked.text):
            return Refusal(403, "this shared link does not allow downloads")
        return Confined(path, asked)  # its study is checked once Orthanc says whose instance it is
    if not paths.is_pacs_read(path):
        return Confined(path, asked)  # the role rules answer it
    segments = path.split("/")[1:]  # after "dicom-web"
    named_study = segments[1] if segments[0] == "studies" and len(segments) > 1 else None
    if named_study is not None and named_study != scope.study_uid:
        return Refusal(403, ONE_STUDY)
    if paths.is_qido(path):
        if segments == ["studies"]:
            return Confined(path, with_study_filter(asked, scope.study_uid))
        if named_study is None:  # all series, all instances: those of the shared study
            return Confined(f"dicom-web/studies/{scope.study_uid}/{segments[0]}", without_study_filter(asked))
        return Confined(path, without_study_filter(asked))
    if not scope.allow_download and is_download(segments):
        return Refusal(403, "this shared link does not allow downloads")
    return Confined(path, asked)


def check_subject(scope: Scope, subject: Subject) -> Refusal | None:
    """Refuse what Orthanc's index files under any other study than the shared one."""
    if subject.study_uid != scope.study_uid:
        return Refusal(403, ONE_STUDY)
    return None


def is_download(segments: list[str]) -> bool:
    """A whole study, series or instance (path ends at its UID), rather than a view of it."""
    return len(segments) % 2 == 0 and segments[-2] in ("studies", "series", "instances")


def asks_for_dicom(text: str) -> bool:
    """WADO-URI asking for the DICOM file itself (its default is a rendered JPEG)."""
    return any(
        key.strip().lower() == "contenttype" and "dicom" in value.lower()
        for key, value in parse_qsl(text, keep_blank_values=True)
    )


def without_study_filter(asked: Query) -> Query:
    pairs = [
        pair
        for pair in asked.text.split("&")
        if pair and query.identifier_of(unquote(pair.partition("=")[0]), False) != "study_uid"
    ]
    return query.parse("&".join(pairs))


def with_study_filter(asked: Query, study_uid: str) -> Query:
    kept = without_study_filter(asked).text
    return query.parse("&".join(part for part in (kept, f"StudyInstanceUID={study_uid}") if part))
