"""The viewer's files and pages over real HTTP: who gets what, with which headers."""

from __future__ import annotations

import json
import re

import pytest
import requests

from orthanc import demo
from tests.services import LivePortal
from viewer import bundle

pytestmark = pytest.mark.live


@pytest.fixture(scope="module")
def app_bundle_url() -> str:
    if not bundle.is_installed():
        pytest.fail(
            "the OHIF bundle is not installed: run `.venv/bin/python -m viewer.bundle` (make test does)"
        )
    (name,) = [path.name for path in bundle.dist_dir().glob("app.bundle.*.js")]
    return f"/{name}"


def test_it_sends_anonymous_users_to_login(live_portal: LivePortal) -> None:
    for path in (
        "/",
        f"/viewer?StudyInstanceUIDs={demo.DEMO_CT_STUDY_UID}",
        "/app-config.js",
        "/segmentation",
    ):
        response = requests.get(f"{live_portal.url}{path}", allow_redirects=False, timeout=30)
        assert response.status_code == 302, path
        assert response.headers["Location"].startswith("/accounts/login/?next="), path


def test_it_serves_hashed_assets_to_anyone_forever_and_in_brotli(
    live_portal: LivePortal, app_bundle_url: str
) -> None:
    response = requests.get(
        f"{live_portal.url}{app_bundle_url}", headers={"Accept-Encoding": "br"}, timeout=60
    )
    assert response.status_code == 200
    assert response.headers["Cache-Control"] == "public, max-age=31536000, immutable"
    assert response.headers["Content-Encoding"] == "br"
    assert response.headers["Cross-Origin-Resource-Policy"] == "same-origin"
    assert "Access-Control-Allow-Origin" not in response.headers
    assert (
        int(response.headers["Content-Length"]) < (bundle.dist_dir() / app_bundle_url[1:]).stat().st_size / 4
    )


def test_it_keeps_private_files_of_the_build_unserved(live_portal: LivePortal) -> None:
    for path in ("/index.html", "/sw.js", "/serve.json"):
        response = requests.get(f"{live_portal.url}{path}", allow_redirects=False, timeout=30)
        assert response.status_code in (302, 404), path
        assert "serviceWorker" not in response.text


def test_it_serves_the_single_page_for_every_viewer_route(
    live_portal: LivePortal, app_bundle_url: str
) -> None:
    session = live_portal.login("alice")
    for path in (
        "/",
        f"/viewer?StudyInstanceUIDs={demo.DEMO_CT_STUDY_UID}",
        "/segmentation",
        "/viewer/dicomweb",
    ):
        response = session.get(f"{live_portal.url}{path}", timeout=30)
        assert response.status_code == 200, path
        assert app_bundle_url in response.text
        assert response.headers["Cross-Origin-Opener-Policy"] == "same-origin"
        assert response.headers["Cross-Origin-Embedder-Policy"] == "require-corp"
        assert "no-store" in response.headers["Cache-Control"]


def test_it_generates_the_app_config_for_each_user(live_portal: LivePortal) -> None:
    def data_source(username: str) -> dict[str, object]:
        response = live_portal.login(username).get(f"{live_portal.url}/app-config.js", timeout=30)
        assert response.status_code == 200
        assert "no-store" in response.headers["Cache-Control"]
        # The data, then viewer/portal.js's functions that read it.
        config = re.match(r"window\.config = (\{.*?\n\});\n", response.text, re.DOTALL)
        assert config is not None

        (source,) = json.loads(config.group(1))["dataSources"]
        return source["configuration"]

    clinician, uploader = data_source("alice"), data_source("bob")
    assert clinician["qidoRoot"] == clinician["wadoRoot"] == "/pacs/dicom-web"
    assert clinician["wadoUriRoot"] == "/pacs/wado"
    assert clinician["dicomUploadEnabled"] is False
    assert uploader["dicomUploadEnabled"] is True


def test_it_lists_recent_studies_on_the_home_page(live_portal: LivePortal) -> None:
    home = live_portal.login("alice").get(f"{live_portal.url}/portal/", timeout=30)
    assert home.status_code == 200
    assert f"/viewer?StudyInstanceUIDs={demo.DEMO_CT_STUDY_UID}" in home.text
    assert "Demo Phantom" in home.text
