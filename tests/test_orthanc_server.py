"""The project's own Orthanc: loopback only, credential required, DICOMweb on, demo loaded."""

from __future__ import annotations

import json

import requests

from orthanc import demo
from orthanc.server import OrthancServer
from tests.conftest import DEMO_SLICES, TEST_DATABASE


def test_it_configures_orthanc_closed_by_default(orthanc: OrthancServer) -> None:
    config = json.loads(orthanc.config_path.read_text())
    assert config["RemoteAccessAllowed"] is False
    assert config["AuthenticationEnabled"] is True
    assert config["DicomServerEnabled"] is False
    assert config["ExecuteLuaEnabled"] is False
    assert orthanc.config_path.stat().st_mode & 0o077 == 0


def test_it_refuses_requests_without_the_service_credential(orthanc: OrthancServer) -> None:
    assert requests.get(f"{orthanc.url}/system", timeout=10).status_code == 401
    wrong = requests.get(f"{orthanc.url}/system", auth=(orthanc.user, "wrong"), timeout=10)
    assert wrong.status_code == 401


def test_it_has_the_demo_ct_through_dicomweb(orthanc: OrthancServer) -> None:
    response = requests.get(
        f"{orthanc.url}/dicom-web/studies/{demo.DEMO_CT_STUDY_UID}/series/{demo.DEMO_CT_SERIES_UID}/instances",
        auth=(orthanc.user, orthanc.password),
        timeout=30,
    )
    assert response.status_code == 200
    assert len(response.json()) == DEMO_SLICES


def test_it_uses_the_index_of_the_configured_database(orthanc: OrthancServer) -> None:
    system = requests.get(f"{orthanc.url}/system", auth=(orthanc.user, orthanc.password), timeout=10).json()
    if TEST_DATABASE == "postgresql":
        assert "libOrthancPostgreSQLIndex.so" in system["DatabaseBackendPlugin"]
    else:
        assert system["DatabaseBackendPlugin"] is None
