from __future__ import annotations

import pytest

from proxy import paths, query

SAFE = [
    "dicom-web/studies",
    "dicom-web/studies/1.2.3/series/4.5.6/instances/7.8.9/frames/1,2",
    "dicom-web/studies/1.2.3/metadata",
    "wado",
    "app/explorer.html",
]
UNSAFE = [
    "dicom-web/../../tools/reset",
    "../system",
    "dicom-web/./studies",
    "dicom-web/studies/.../1.2.3/metadata",
    "dicom-web/studies/1.2.3/....",
    "dicom-web\\..\\system",
    "dicom-web/studies/%2e%2e",
    "dicom-web/studies/\x00",
    "dicom-web/studies/\u00e9",
    "a" * 3000,
]


@pytest.mark.parametrize("path", SAFE)
def test_it_keeps_safe_paths(path: str) -> None:
    assert paths.clean(path, raw_uri=None) == path


@pytest.mark.parametrize(
    ("path", "clean"),
    [
        ("dicom-web//studies", "dicom-web/studies"),
        ("//system", "system"),
        ("dicom-web/studies/", "dicom-web/studies"),
    ],
)
def test_it_collapses_repeated_slashes_as_orthanc_does(path: str, clean: str) -> None:
    assert paths.clean(path, raw_uri=None) == clean


@pytest.mark.parametrize("path", UNSAFE)
def test_it_refuses_unsafe_paths(path: str) -> None:
    with pytest.raises(paths.UnsafePath):
        paths.clean(path, raw_uri=None)


@pytest.mark.parametrize(
    "raw", ["/pacs/dicom-web%2fstudies", "/pacs/%2E%2E/system", "/pacs/a%5cb", "/pacs/%252e"]
)
def test_it_refuses_encoded_separators_in_the_raw_uri(raw: str) -> None:
    with pytest.raises(paths.UnsafePath):
        paths.clean("dicom-web/studies", raw_uri=raw)


def test_it_allows_only_dicomweb_resources_and_wado_in_pacs() -> None:
    assert paths.is_pacs_read("dicom-web/series")
    assert paths.is_pacs_read("wado")
    assert not paths.is_pacs_read("dicom-web/servers")
    assert not paths.is_pacs_read("dicom-web/info")
    assert not paths.is_pacs_read("system")
    assert paths.is_stow("dicom-web/studies")
    assert paths.is_stow("dicom-web/studies/1.2.3")
    assert not paths.is_stow("dicom-web/studies/1.2.3/series")


def test_it_decodes_query_values_for_orthanc() -> None:
    assert query.parse("contentType=application%2Fdicom&PatientName=Demo%5E*").text == (
        "contentType=application/dicom&PatientName=Demo^*"
    )
    assert query.parse("a=1%262&b=%20").text == "a=1%262&b=%20"


def test_it_refuses_queries_that_are_not_utf8() -> None:
    with pytest.raises(query.UnsafeQuery):
        query.parse("PatientName=%ff%fe")


@pytest.mark.parametrize(
    "text",
    [
        "PatientID=A&PatientID=B",
        "StudyInstanceUID=1.2&0020000D=1.3",
        "studyinstanceuid=1.2&0020,000d=1.2",
        "00100020=A&patientid=A",
    ],
)
def test_it_refuses_an_identifying_attribute_named_twice_in_any_spelling(text: str) -> None:
    with pytest.raises(query.UnsafeQuery):
        query.parse(text)


def test_it_reads_every_spelling_of_an_identifying_attribute() -> None:
    assert query.parse(
        "0020000d=1.2.3&00100020=P1&limit=5&includefield=00081030&includefield=00080060"
    ).identifiers == {
        "study_uid": "1.2.3",
        "patient_id": "P1",
    }
    wado = query.parse("requestType=WADO&objectUID=1.2&objectUID=1.3", wado_uri=False)
    assert wado.identifiers == {}
    with pytest.raises(query.UnsafeQuery):
        query.parse("requestType=WADO&objectUID=1.2&objectUID=1.3", wado_uri=True)
