from __future__ import annotations

import pytest
from django.test import Client
from pytest_django.fixtures import Settings

from devstack.orthanc_server import OrthancServer
from tests.services import free_port

pytestmark = pytest.mark.django_db


def test_it_reports_ok_without_login(client: Client, orthanc: OrthancServer) -> None:
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "database": "ok", "orthanc": "ok"}
    assert "no-cache" in response["Cache-Control"]


def test_it_names_orthanc_when_it_is_down(client: Client, settings: Settings) -> None:
    settings.ORTHANC_URL = f"http://127.0.0.1:{free_port()}"
    response = client.get("/healthz")
    assert response.status_code == 503
    assert response.json() == {"status": "down", "database": "ok", "orthanc": "down"}
