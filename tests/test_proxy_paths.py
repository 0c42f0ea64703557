from __future__ import annotations

import pytest

from proxy import paths

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
    "dicom-web//studies",
    "/system",
    "dicom-web\\..\\system",
    "dicom-web/studies/%2e%2e",
    "dicom-web/studies/\x00",
    "dicom-web/studies/\u00e9",
    "a" * 3000,
]


@pytest.mark.parametrize("path", SAFE)
def test_it_keeps_safe_paths(path: str) -> None:
    assert paths.clean(path, raw_uri=None) == path


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
    assert paths.clean_query("contentType=application%2Fdicom&PatientName=Demo%5E*") == (
        "contentType=application/dicom&PatientName=Demo^*"
    )
    assert paths.clean_query("a=1%262&b=%20") == "a=1%262&b=%20"


def test_it_refuses_queries_that_are_not_utf8() -> None:
    with pytest.raises(paths.UnsafePath):
        paths.clean_query("PatientName=%ff%fe")
