"""dicomweb-client through /pacs with Basic auth gives what it gets from Orthanc directly."""

from __future__ import annotations

import copy
import io
import re
from typing import Any

import pydicom
import pytest
import requests
from dicomweb_client.api import DICOMwebClient
from dicomweb_client.session_utils import create_session_from_auth
from requests.auth import HTTPBasicAuth

from devstack.orthanc_server import OrthancServer
from orthanc import demo
from tests.dicom import unique_ct_instance
from tests.services import LivePortal

pytestmark = pytest.mark.live
STUDY = demo.DEMO_CT_STUDY_UID
SERIES = demo.DEMO_CT_SERIES_UID


def portal_client(portal: LivePortal, username: str) -> DICOMwebClient:
    session = create_session_from_auth(HTTPBasicAuth(username, portal.passwords[username]))
    return DICOMwebClient(f"{portal.url}/pacs/dicom-web", session=session)


def direct_client(orthanc: OrthancServer) -> DICOMwebClient:
    session = create_session_from_auth(HTTPBasicAuth(orthanc.user, orthanc.password))
    return DICOMwebClient(f"{orthanc.url}/dicom-web", session=session)


def same_origin(value: Any, portal: LivePortal, orthanc: OrthancServer) -> str:
    """Orthanc writes absolute URLs; through the portal they point at the portal's /pacs."""
    text = repr(value)
    assert f"{portal.url}/dicom-web" not in text, "a URL bypasses the /pacs mount"
    return re.sub(r"https?://[^/'\"]+(?:/pacs)?/dicom-web", "BASE/dicom-web", text)


@pytest.fixture
def clients(live_portal: LivePortal, orthanc: OrthancServer) -> tuple[DICOMwebClient, DICOMwebClient]:
    return portal_client(live_portal, "alice"), direct_client(orthanc)


def test_it_searches_like_orthanc(
    clients: tuple[DICOMwebClient, DICOMwebClient], live_portal: LivePortal, orthanc: OrthancServer
) -> None:
    portal, direct = clients
    for search in (
        lambda c: c.search_for_studies(search_filters={"PatientID": "DEMO-CT-0001"}),
        lambda c: c.search_for_series(STUDY),
        lambda c: c.search_for_instances(STUDY, SERIES),
        lambda c: c.search_for_studies(search_filters={"ModalitiesInStudy": "CT"}),
    ):
        through_portal, from_orthanc = search(portal), search(direct)
        assert from_orthanc, "the demo study must be found"
        assert same_origin(through_portal, live_portal, orthanc) == same_origin(
            from_orthanc, live_portal, orthanc
        )


def test_it_decodes_query_values_that_orthanc_would_take_literally(
    clients: tuple[DICOMwebClient, DICOMwebClient],
) -> None:
    portal, direct = clients
    # dicomweb-client sends PatientName=Demo%2A; Orthanc 1.10 does not decode it.
    assert direct.search_for_studies(search_filters={"PatientName": "Demo*"}) == []
    assert len(portal.search_for_studies(search_filters={"PatientName": "Demo*"})) == 1


def test_it_retrieves_like_orthanc(clients: tuple[DICOMwebClient, DICOMwebClient]) -> None:
    portal, direct = clients
    series = portal.retrieve_series(STUDY, SERIES)
    assert [ds.SOPInstanceUID for ds in series] == [
        ds.SOPInstanceUID for ds in direct.retrieve_series(STUDY, SERIES)
    ]
    sop = series[0].SOPInstanceUID
    # Orthanc 1.10 refuses dicomweb-client's default Accept (type="*/*"): name the type.
    octets = ("application/octet-stream",)
    frames = portal.retrieve_instance_frames(STUDY, SERIES, sop, [1], media_types=octets)
    assert frames == direct.retrieve_instance_frames(STUDY, SERIES, sop, [1], media_types=octets)
    assert len(frames[0]) == 512 * 512 * 2
    assert portal.retrieve_instance(STUDY, SERIES, sop).PixelData == series[0].PixelData


def test_it_returns_metadata_whose_urls_resolve_through_the_portal(
    clients: tuple[DICOMwebClient, DICOMwebClient], live_portal: LivePortal, orthanc: OrthancServer
) -> None:
    portal, direct = clients
    sop = portal.search_for_instances(STUDY, SERIES)[0]["00080018"]["Value"][0]
    through_portal = portal.retrieve_instance_metadata(STUDY, SERIES, sop)
    from_orthanc = direct.retrieve_instance_metadata(STUDY, SERIES, sop)
    assert same_origin(through_portal, live_portal, orthanc) == same_origin(
        from_orthanc, live_portal, orthanc
    )


def test_it_writes_bulk_data_and_retrieve_urls_that_resolve_through_the_portal(
    live_portal: LivePortal,
) -> None:
    # Plain requests, as a browser would: dicomweb-client sends a Host header without the port.
    session = requests.Session()
    session.auth = ("alice", live_portal.passwords["alice"])
    base = f"{live_portal.url}/pacs/dicom-web"
    study = session.get(f"{base}/studies", params={"StudyInstanceUID": STUDY}, timeout=60).json()[0]
    retrieve_url = study["00081190"]["Value"][0]
    assert retrieve_url == f"{base}/studies/{STUDY}"

    metadata = session.get(f"{retrieve_url}/metadata", timeout=60)
    assert metadata.status_code == 200
    instances = metadata.json()
    assert len(instances) == len(session.get(f"{base}/studies/{STUDY}/instances", timeout=60).json())

    bulk_uri = instances[0]["7FE00010"]["BulkDataURI"]
    assert bulk_uri.startswith(f"{base}/studies/{STUDY}/series/")
    bulk = session.get(
        bulk_uri, headers={"Accept": "multipart/related; type=application/octet-stream"}, timeout=60
    )
    assert bulk.status_code == 200
    assert len(bulk.content) > 512 * 512 * 2  # the pixel data, in a multipart envelope


def test_it_stores_as_an_uploader_and_refuses_a_clinician(
    live_portal: LivePortal, orthanc: OrthancServer
) -> None:
    data, study_uid, sop_uid = unique_ct_instance(label="dicomweb-client")
    dataset = pydicom.dcmread(io.BytesIO(data))
    with pytest.raises(requests.HTTPError) as refused:
        portal_client(live_portal, "alice").store_instances([copy.deepcopy(dataset)])
    assert refused.value.response.status_code == 403
    assert direct_client(orthanc).search_for_studies(search_filters={"StudyInstanceUID": study_uid}) == []

    result = portal_client(live_portal, "bob").store_instances([dataset])
    assert result.ReferencedSOPSequence[0].ReferencedSOPInstanceUID == sop_uid
    stored = direct_client(orthanc).search_for_instances(study_uid)
    assert [item["00080018"]["Value"][0] for item in stored] == [sop_uid]
