"""Share rules (shares/confinement.py), driven directly: pure functions, no database, no Orthanc."""

from __future__ import annotations

import pytest

from proxy import query
from proxy.rules import Refusal
from proxy.subjects import Subject
from shares.confinement import Confined, Scope, check_subject, confine

SHARED = "1.2.826.0.1.3680043.8.498.1"
OTHER = "1.2.826.0.1.3680043.8.498.2"
SCOPE = Scope(SHARED)


def confined(
    path: str, text: str = "", method: str = "GET", scope: Scope = SCOPE, mount: str = "pacs"
) -> Confined:
    found = confine(scope, mount, method, path, query.parse(text, path == "wado"))
    assert isinstance(found, Confined), found
    return found


def refused(
    path: str, text: str = "", method: str = "GET", scope: Scope = SCOPE, mount: str = "pacs"
) -> Refusal:
    found = confine(scope, mount, method, path, query.parse(text, path == "wado"))
    assert isinstance(found, Refusal), found
    return found


@pytest.mark.parametrize(
    "text",
    [
        "",
        "limit=101&offset=0",
        f"StudyInstanceUID={OTHER}",
        f"0020000D={OTHER}",
        f"0020,000d={OTHER}&limit=5",
    ],
)
def test_it_asks_any_study_query_for_the_shared_study(text: str) -> None:
    found = confined("dicom-web/studies", text)
    assert found.path == "dicom-web/studies"
    assert found.query.identifiers["study_uid"] == SHARED
    assert OTHER not in found.query.text
    assert found.query.text.count(SHARED) == 1


def test_it_keeps_the_other_filters_of_a_study_query() -> None:
    found = confined("dicom-web/studies", "PatientID=DEMO*&limit=5&includefield=00081030")
    assert found.query.text == f"PatientID=DEMO*&limit=5&includefield=00081030&StudyInstanceUID={SHARED}"


@pytest.mark.parametrize("level", ["series", "instances"])
def test_it_asks_series_and_instance_queries_under_the_shared_study(level: str) -> None:
    found = confined(f"dicom-web/{level}", f"StudyInstanceUID={OTHER}&Modality=CT")
    assert found.path == f"dicom-web/studies/{SHARED}/{level}"
    assert found.query.text == "Modality=CT"


@pytest.mark.parametrize(
    "path",
    [
        f"dicom-web/studies/{OTHER}/series",
        f"dicom-web/studies/{OTHER}/instances",
        f"dicom-web/studies/{OTHER}/metadata",
        f"dicom-web/studies/{OTHER}/series/1.2/instances/1.3/frames/1",
        f"dicom-web/studies/{OTHER}/rendered",
    ],
)
def test_it_refuses_a_path_naming_another_study(path: str) -> None:
    assert refused(path).status == 403


@pytest.mark.parametrize(
    "path",
    [
        f"dicom-web/studies/{SHARED}/metadata",
        f"dicom-web/studies/{SHARED}/series/1.2/metadata",
        f"dicom-web/studies/{SHARED}/series/1.2/instances/1.3/frames/1,2",
        f"dicom-web/studies/{SHARED}/series/1.2/instances/1.3/rendered",
        f"dicom-web/studies/{SHARED}/series/1.2/instances/1.3/thumbnail",
        f"dicom-web/studies/{SHARED}/series/1.2/instances/1.3/bulk/7fe00010",
    ],
)
def test_it_lets_the_viewer_read_the_shared_study(path: str) -> None:
    assert confined(path).path == path


@pytest.mark.parametrize(
    "path",
    [
        f"dicom-web/studies/{SHARED}",
        f"dicom-web/studies/{SHARED}/series/1.2",
        f"dicom-web/studies/{SHARED}/series/1.2/instances/1.3",
    ],
)
def test_it_refuses_whole_studies_series_and_instances_unless_the_share_allows_downloads(path: str) -> None:
    assert "download" in refused(path).reason
    assert confined(path, scope=Scope(SHARED, allow_download=True)).path == path


def test_it_refuses_wado_uri_dicom_files_unless_the_share_allows_downloads() -> None:
    text = f"requestType=WADO&studyUID={SHARED}&objectUID=1.3&contentType=application%2Fdicom"
    assert "download" in refused("wado", text).reason
    assert confined("wado", text, scope=Scope(SHARED, allow_download=True)).path == "wado"
    assert confined("wado", "requestType=WADO&objectUID=1.3").path == "wado"  # a rendered JPEG


def test_it_refuses_writes_and_the_pacs_admin() -> None:
    assert refused("dicom-web/studies", method="POST").reason == "a shared link is read-only"
    assert refused(f"dicom-web/studies/{SHARED}", method="DELETE").status == 403
    assert refused("system", mount="pacs-admin").status == 403
    assert refused("app/explorer.html", mount="pacs-admin").status == 403


def test_it_leaves_paths_outside_dicomweb_to_the_role_rules() -> None:
    assert confined("tools/find").path == "tools/find"


def test_it_refuses_a_subject_orthanc_files_under_another_study() -> None:
    assert check_subject(SCOPE, Subject("P1", SHARED, "1.2", "1.3")) is None
    refusal = check_subject(SCOPE, Subject("P2", OTHER, "1.4", "1.5"))
    assert refusal is not None and refusal.status == 403
    assert check_subject(SCOPE, Subject()) is not None
