"""The role matrix, through real HTTP against gunicorn and a real Orthanc."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import requests

from devstack.orthanc_server import OrthancServer
from orthanc import demo
from tests.dicom import stow_body, unique_ct_instance
from tests.services import LivePortal

pytestmark = pytest.mark.live
USERS = [
    "anonymous",
    "alice",
    "bob",
    "carol",
    "root",
]  # anonymous, clinician, uploader, pacs-admin, superuser
STUDY = demo.DEMO_CT_STUDY_UID
SERIES = demo.DEMO_CT_SERIES_UID


def orthanc_get(orthanc: OrthancServer, path: str) -> requests.Response:
    return requests.get(f"{orthanc.url}{path}", auth=(orthanc.user, orthanc.password), timeout=30)


def orthanc_study_id(orthanc: OrthancServer, study_uid: str) -> str | None:
    found = requests.post(
        f"{orthanc.url}/tools/lookup", data=study_uid, auth=(orthanc.user, orthanc.password), timeout=30
    ).json()
    return next((item["ID"] for item in found if item["Type"] == "Study"), None)


def store_directly(orthanc: OrthancServer, label: str) -> str:
    data, study_uid, _ = unique_ct_instance(label=label)
    response = requests.post(
        f"{orthanc.url}/instances", data=data, auth=(orthanc.user, orthanc.password), timeout=30
    )
    assert response.status_code == 200
    return study_uid


class Client:
    def __init__(self, portal: LivePortal, orthanc: OrthancServer, username: str) -> None:
        self.portal, self.orthanc, self.username = portal, orthanc, username
        self.auth = None if username == "anonymous" else (username, portal.passwords[username])

    def call(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        return requests.request(
            method, f"{self.portal.url}{path}", auth=self.auth, timeout=60, allow_redirects=False, **kwargs
        )

    def first_instance(self) -> str:
        instances = orthanc_get(self.orthanc, f"/dicom-web/studies/{STUDY}/series/{SERIES}/instances").json()
        return instances[0]["00080018"]["Value"][0]

    def qido(self) -> int:
        return self.call("GET", "/pacs/dicom-web/studies?PatientID=DEMO-CT-0001").status_code

    def frame(self) -> int:
        path = f"/pacs/dicom-web/studies/{STUDY}/series/{SERIES}/instances/{self.first_instance()}/frames/1"
        return self.call(
            "GET", path, headers={"Accept": "multipart/related; type=application/octet-stream"}
        ).status_code

    def wado_uri(self) -> int:
        query = {
            "requestType": "WADO",
            "studyUID": STUDY,
            "seriesUID": SERIES,
            "objectUID": self.first_instance(),
        }
        return self.call(
            "GET", "/pacs/wado", params={**query, "contentType": "application/dicom"}
        ).status_code

    def stow(self) -> int:
        data, study_uid, _ = unique_ct_instance(label=f"stow-{self.username}")
        body, content_type = stow_body([data])
        status = self.call(
            "POST", "/pacs/dicom-web/studies", data=body, headers={"Content-Type": content_type}
        ).status_code
        stored = orthanc_study_id(self.orthanc, study_uid) is not None
        assert stored == (status == 200), f"STOW answered {status} but stored={stored}"
        return status

    def admin_page(self) -> int:
        return self.call("GET", "/pacs-admin/app/explorer.html").status_code

    def admin_delete(self) -> int:
        study_uid = store_directly(self.orthanc, f"delete-{self.username}")
        status = self.call(
            "DELETE", f"/pacs-admin/studies/{orthanc_study_id(self.orthanc, study_uid)}"
        ).status_code
        still_there = orthanc_study_id(self.orthanc, study_uid) is not None
        assert still_there == (status != 200), f"DELETE answered {status} but still_there={still_there}"
        return status

    def system(self) -> int:
        return self.call("GET", "/pacs/system").status_code

    def reset(self) -> int:
        statuses = {
            self.call("GET", "/pacs/tools/reset").status_code,
            self.call("POST", "/pacs/tools/reset").status_code,
        }
        assert len(statuses) == 1, statuses
        return statuses.pop()


EXPECTED: dict[str, dict[str, int]] = {
    #               anonymous alice bob carol root
    "qido": dict(zip(USERS, [401, 200, 200, 200, 200], strict=True)),
    "frame": dict(zip(USERS, [401, 200, 200, 200, 200], strict=True)),
    "wado_uri": dict(zip(USERS, [401, 200, 200, 200, 200], strict=True)),
    "stow": dict(zip(USERS, [401, 403, 200, 200, 200], strict=True)),
    "admin_page": dict(zip(USERS, [401, 403, 403, 200, 200], strict=True)),
    "admin_delete": dict(zip(USERS, [401, 403, 403, 200, 200], strict=True)),
    "system": dict(zip(USERS, [401, 404, 404, 404, 404], strict=True)),
    "reset": dict(zip(USERS, [401, 404, 404, 404, 404], strict=True)),
}


@pytest.mark.parametrize("action", list(EXPECTED))
@pytest.mark.parametrize("username", USERS)
def test_it_answers_each_role_and_action_as_expected(
    live_portal: LivePortal, orthanc: OrthancServer, username: str, action: str
) -> None:
    client = Client(live_portal, orthanc, username)
    do: Callable[[], int] = getattr(client, action)
    assert do() == EXPECTED[action][username]


def test_it_never_let_a_reset_or_system_call_reach_orthanc(
    live_portal: LivePortal, orthanc: OrthancServer
) -> None:
    for username in USERS:
        Client(live_portal, orthanc, username).reset()
    assert "/tools/reset" not in orthanc.log_path.read_text()
    assert orthanc_get(orthanc, "/system").status_code == 200
