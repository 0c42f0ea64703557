"""Shared links through real HTTP: a visitor with no account reaches one study and nothing else.

Run through both doors (gunicorn alone, and nginx in front: the Makefile's
FRONT_TESTS): nginx streams the visitor's reads after Django's decision, and
must never reuse a decision after the share has ended.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable

import pytest
import requests

from devstack.orthanc_server import OrthancServer
from orthanc import demo, owners
from tests.dicom import stow_body, unique_ct_instance
from tests.services import LivePortal

pytestmark = pytest.mark.live
STUDY = demo.DEMO_CT_STUDY_UID
SERIES = demo.DEMO_CT_SERIES_UID
JSON = {"Accept": "application/dicom+json"}
FRAME_ACCEPT = {"Accept": "multipart/related; type=application/octet-stream"}
SECRET_SHAPE = re.compile(r"/share/#(pacsshare_[0-9A-Za-z]{43})")


def create_share(
    portal: LivePortal, username: str, study_uid: str = STUDY, download: bool = False, note: str = ""
) -> tuple[int, str]:
    """A share made on the portal's page, as its owner would: (id, secret)."""
    session = portal.login(username)
    url = f"{portal.url}/shares/new/"
    form = session.get(f"{url}?study={study_uid}", timeout=10)
    assert form.status_code == 200 and study_uid in form.text
    data = {
        "study": study_uid,
        "days": "7",
        "note": note,
        "csrfmiddlewaretoken": session.cookies["csrftoken"],
    }
    if download:
        data["allow_download"] = "on"
    response = session.post(url, data=data, headers={"Referer": url}, timeout=30)
    assert response.status_code == 201, response.text
    found = SECRET_SHAPE.search(response.text)
    assert found is not None, response.text
    number = re.search(r"Shared link #(\d+) created", response.text)
    assert number is not None
    return int(number.group(1)), found.group(1)


def visit(portal: LivePortal, secret: str) -> requests.Session:
    """A browser-like visitor with no account: the landing page, then the secret posted once."""
    session = requests.Session()
    session.trust_env = False
    landing = session.get(f"{portal.url}/share/", timeout=10)
    assert landing.status_code == 200 and "/static/portal/share." in landing.text
    opened = session.post(
        f"{portal.url}/share/open/",
        data={"secret": secret, "csrfmiddlewaretoken": session.cookies["csrftoken"]},
        headers={"Referer": f"{portal.url}/share/"},
        allow_redirects=False,
        timeout=30,
    )
    assert opened.status_code == 302, opened.text
    assert (
        opened.headers["Location"] == f"/viewer?StudyInstanceUIDs={STUDY}"
        or "StudyInstanceUIDs=" in (opened.headers["Location"])
    )
    return session


def open_again(portal: LivePortal, secret: str) -> requests.Response:
    session = requests.Session()
    session.get(f"{portal.url}/share/", timeout=10)
    return session.post(
        f"{portal.url}/share/open/",
        data={"secret": secret, "csrfmiddlewaretoken": session.cookies["csrftoken"]},
        headers={"Referer": f"{portal.url}/share/"},
        allow_redirects=False,
        timeout=30,
    )


def studies_in(answer: requests.Response) -> set[str]:
    assert answer.status_code == 200, answer.text
    return {item["0020000D"]["Value"][0] for item in answer.json()}


@pytest.fixture(scope="module")
def other(orthanc: OrthancServer) -> dict[str, str]:
    """Another patient's study, stored straight into Orthanc: its study, series and instance UIDs."""
    data, study_uid, sop_uid = unique_ct_instance(label="share-other")
    auth = (orthanc.user, orthanc.password)
    assert requests.post(f"{orthanc.url}/instances", data=data, auth=auth, timeout=30).status_code == 200
    series = requests.get(f"{orthanc.url}/dicom-web/studies/{study_uid}/series", auth=auth, timeout=30).json()
    return {"study": study_uid, "series": series[0]["0020000E"]["Value"][0], "sop": sop_uid}


@pytest.fixture(scope="module")
def shared_sop(orthanc: OrthancServer) -> str:
    auth = (orthanc.user, orthanc.password)
    url = f"{orthanc.url}/dicom-web/studies/{STUDY}/series/{SERIES}/instances"
    return str(requests.get(url, auth=auth, timeout=30).json()[0]["00080018"]["Value"][0])


@pytest.fixture(scope="module")
def visitor(live_portal: LivePortal) -> requests.Session:
    _, secret = create_share(live_portal, "alice", note="Dr Who, referring")
    return visit(live_portal, secret)


def test_it_answers_any_study_query_with_the_shared_study_only(
    live_portal: LivePortal, visitor: requests.Session, other: dict[str, str]
) -> None:
    base = f"{live_portal.url}/pacs/dicom-web"
    assert studies_in(visitor.get(f"{base}/studies", headers=JSON, timeout=30)) == {STUDY}
    assert studies_in(visitor.get(f"{base}/studies?limit=101&offset=0", headers=JSON, timeout=30)) == {STUDY}
    asked_for_other = visitor.get(
        f"{base}/studies?StudyInstanceUID={other['study']}", headers=JSON, timeout=30
    )
    assert studies_in(asked_for_other) == {STUDY}
    asked_by_tag = visitor.get(f"{base}/studies?0020000D={other['study']}", headers=JSON, timeout=30)
    assert studies_in(asked_by_tag) == {STUDY}
    # Series and instance queries are asked under the shared study.
    series = visitor.get(f"{base}/series", headers=JSON, timeout=30)
    assert series.status_code == 200
    assert {item["0020000D"]["Value"][0] for item in series.json()} == {STUDY}
    instances = visitor.get(f"{base}/instances?SOPInstanceUID={other['sop']}", headers=JSON, timeout=30)
    assert instances.status_code == 200
    assert instances.text.strip() in ("", "[]")
    for path in (f"studies/{other['study']}/series", f"studies/{other['study']}/instances"):
        refused = visitor.get(f"{base}/{path}", headers=JSON, timeout=30)
        assert refused.status_code in (403, 404), path
        assert other["study"] not in refused.text.replace(f"/{other['study']}/", "")


def test_it_serves_the_shared_study_to_the_viewer(
    live_portal: LivePortal, visitor: requests.Session, shared_sop: str
) -> None:
    base = f"{live_portal.url}/pacs/dicom-web/studies/{STUDY}/series/{SERIES}"
    metadata = visitor.get(f"{base}/metadata", headers=JSON, timeout=60)
    assert metadata.status_code == 200 and metadata.json()
    frame = visitor.get(f"{base}/instances/{shared_sop}/frames/1", headers=FRAME_ACCEPT, timeout=60)
    assert frame.status_code == 200 and len(frame.content) > 1000
    page = visitor.get(f"{live_portal.url}/viewer?StudyInstanceUIDs={STUDY}", timeout=30)
    assert page.status_code == 200 and "<script" in page.text
    config = visitor.get(f"{live_portal.url}/app-config.js", timeout=30)
    assert config.status_code == 200
    assert "Visitor of a shared link" in config.text
    assert '"dicomUploadEnabled": false' in config.text
    assert '"loginUrl": "/share/ended/"' in config.text


def refused_with_no_data(response: requests.Response) -> None:
    assert response.status_code in (403, 404), (response.url, response.status_code)
    assert len(response.content) < 2000, response.url
    assert b"DICM" not in response.content and b"\x00" not in response.content


def test_it_refuses_another_studys_data_by_its_uids_and_by_instance_uids(
    live_portal: LivePortal, visitor: requests.Session, other: dict[str, str]
) -> None:
    pacs = f"{live_portal.url}/pacs"
    o = other
    cases = {
        "metadata": (f"/dicom-web/studies/{o['study']}/metadata", JSON),
        "series metadata": (f"/dicom-web/studies/{o['study']}/series/{o['series']}/metadata", JSON),
        "frames": (
            f"/dicom-web/studies/{o['study']}/series/{o['series']}/instances/{o['sop']}/frames/1",
            FRAME_ACCEPT,
        ),
        "instance": (f"/dicom-web/studies/{o['study']}/series/{o['series']}/instances/{o['sop']}", {}),
        "rendered": (f"/dicom-web/studies/{o['study']}/rendered", {}),
        # The other study's series and instance under the shared study's UID.
        "series under the shared study": (f"/dicom-web/studies/{STUDY}/series/{o['series']}/metadata", JSON),
        "instance under the shared study": (
            f"/dicom-web/studies/{STUDY}/series/{SERIES}/instances/{o['sop']}/frames/1",
            FRAME_ACCEPT,
        ),
        "wado-uri": (
            f"/wado?requestType=WADO&studyUID={o['study']}&seriesUID={o['series']}&objectUID={o['sop']}",
            {},
        ),
        "wado-uri by instance only": (f"/wado?requestType=WADO&objectUID={o['sop']}", {}),
        "wado-uri claiming the shared study": (
            f"/wado?requestType=WADO&studyUID={STUDY}&objectUID={o['sop']}",
            {},
        ),
    }
    for name, (path, headers) in cases.items():
        response = visitor.get(pacs + path, headers=headers, timeout=30)
        refused_with_no_data(response)
        assert response.status_code in (403, 404), name


def test_it_refuses_downloads_admin_portal_pages_and_stow(
    live_portal: LivePortal, visitor: requests.Session, shared_sop: str
) -> None:
    url = live_portal.url
    whole = visitor.get(f"{url}/pacs/dicom-web/studies/{STUDY}", timeout=30)
    refused_with_no_data(whole)
    dicom = visitor.get(
        f"{url}/pacs/wado?requestType=WADO&studyUID={STUDY}&objectUID={shared_sop}&contentType=application/dicom",
        timeout=30,
    )
    refused_with_no_data(dicom)
    assert visitor.get(f"{url}/pacs-admin/system", timeout=30).status_code == 403
    assert visitor.get(f"{url}/pacs-admin/", timeout=30).status_code == 403
    for page in ("/portal/", "/audit/", "/audit/accesses/", "/admin/", "/accounts/tokens/", "/shares/"):
        response = visitor.get(f"{url}{page}", allow_redirects=False, timeout=30)
        assert response.status_code == 403, page
        assert "opens one study in the viewer" in response.text, page
    data, _, _ = unique_ct_instance(label="share-stow")
    body, content_type = stow_body([data])
    stow = visitor.post(
        f"{url}/pacs/dicom-web/studies",
        data=body,
        headers={"Content-Type": content_type, "Accept": "application/dicom+json", "Origin": url},
        timeout=60,
    )
    assert stow.status_code == 403


def test_it_lets_a_share_that_allows_downloads_retrieve_its_instances(
    live_portal: LivePortal, shared_sop: str
) -> None:
    _, secret = create_share(live_portal, "bob", download=True)
    session = visit(live_portal, secret)
    url = f"{live_portal.url}/pacs/dicom-web/studies/{STUDY}/series/{SERIES}/instances/{shared_sop}"
    response = session.get(url, headers={"Accept": 'multipart/related; type="application/dicom"'}, timeout=60)
    assert response.status_code == 200 and b"DICM" in response.content


def shell(portal: LivePortal, code: str) -> None:
    portal.manage("shell", "-c", code)


def revoke_on_the_page(portal: LivePortal, owner: str, share_id: int) -> None:
    session = portal.login(owner)
    listing = session.get(f"{portal.url}/shares/", timeout=10)
    assert f"#{share_id}" in listing.text
    revoked = session.post(
        f"{portal.url}/shares/{share_id}/revoke/",
        data={"csrfmiddlewaretoken": session.cookies["csrftoken"]},
        headers={"Referer": f"{portal.url}/shares/"},
        allow_redirects=False,
        timeout=10,
    )
    assert revoked.status_code == 302


def expire(portal: LivePortal, owner: str, share_id: int) -> None:
    shell(
        portal,
        "from datetime import timedelta; from django.utils import timezone; "
        "from shares.models import Share; "
        f"Share.objects.filter(pk={share_id}).update(expires_at=timezone.now() - timedelta(seconds=1))",
    )


def deactivate_owner(portal: LivePortal, owner: str, share_id: int) -> None:
    shell(
        portal,
        "from django.contrib.auth.models import User; "
        f"User.objects.filter(username='{owner}').update(is_active=False)",
    )


ENDINGS: dict[Callable[[LivePortal, str, int], None], str] = {
    revoke_on_the_page: "revoked",
    expire: "expired",
    deactivate_owner: "no longer share",
}


@pytest.mark.parametrize("change", list(ENDINGS), ids=lambda change: change.__name__)
def test_it_ends_a_visit_at_the_next_request_with_a_clear_page(
    live_portal: LivePortal, change: Callable[[LivePortal, str, int], None]
) -> None:
    owner = f"share-{change.__name__.replace('_', '-')}"
    live_portal.add_user(owner, "clinician")
    share_id, secret = create_share(live_portal, owner)
    session = visit(live_portal, secret)
    qido = f"{live_portal.url}/pacs/dicom-web/studies/{STUDY}/series"
    # Asked twice before: a decision nginx could have kept must not outlive the share.
    assert [session.get(qido, headers=JSON, timeout=30).status_code for _ in range(2)] == [200, 200]
    change(live_portal, owner, share_id)
    refused = session.get(qido, headers=JSON, timeout=30)
    assert refused.status_code == 401, refused.text
    assert ENDINGS[change] in refused.json()["error"]
    page = session.get(f"{live_portal.url}/viewer?StudyInstanceUIDs={STUDY}", timeout=30)
    assert page.status_code == 403
    assert ENDINGS[change] in page.text and "Traceback" not in page.text
    ended = session.get(f"{live_portal.url}/share/ended/", timeout=30)
    assert ended.status_code == 410 and ENDINGS[change] in ended.text
    again = open_again(live_portal, secret)
    assert again.status_code == 410 and ENDINGS[change] in again.text


def test_it_says_so_clearly_for_an_unknown_link_and_a_study_no_longer_in_the_archive(
    live_portal: LivePortal, orthanc: OrthancServer
) -> None:
    unknown = open_again(live_portal, "pacsshare_" + "x" * 43)
    assert unknown.status_code == 404 and "not valid" in unknown.text
    assert open_again(live_portal, "nonsense").status_code == 404
    data, study_uid, _ = unique_ct_instance(label="share-deleted")
    auth = (orthanc.user, orthanc.password)
    stored = requests.post(f"{orthanc.url}/instances", data=data, auth=auth, timeout=30).json()
    # Made in a process of its own, so the live portal has never looked the study up.
    out = live_portal.manage(
        "shell",
        "-c",
        "from django.contrib.auth.models import User; from shares.models import Share; "
        f"print(Share.objects.issue(User.objects.get(username='alice'), '{study_uid}', 1)[1])",
    )
    secret = out.strip().splitlines()[-1]
    study_id = stored["ParentStudy"]
    assert requests.delete(f"{orthanc.url}/studies/{study_id}", auth=auth, timeout=30).status_code == 200
    # The study map names a deleted study for at most MAX_LAG_SECONDS (core/revocation_table.py).
    deadline = time.monotonic() + owners.MAX_LAG_SECONDS + owners.FRESHNESS_CHECK_SECONDS + 5
    while (gone := open_again(live_portal, secret)).status_code != 404 and time.monotonic() < deadline:
        time.sleep(1)
    assert gone.status_code == 404 and "no longer in the archive" in gone.text


def test_it_audits_creating_opening_each_access_bucket_and_revoking(live_portal: LivePortal) -> None:
    live_portal.add_user("share-audited", "clinician")
    after = live_portal.last_audit_id()
    share_id, secret = create_share(live_portal, "share-audited", note="for the audit")
    session = visit(live_portal, secret)
    for _ in range(3):
        session.get(f"{live_portal.url}/pacs/dicom-web/studies/{STUDY}/series", headers=JSON, timeout=30)
    revoke_on_the_page(live_portal, "share-audited", share_id)
    rows = [row for row in live_portal.audit_events(after) if row["username"] == "share-audited"]
    by_action: dict[str, list[dict[str, object]]] = {}
    for row in rows:
        by_action.setdefault(str(row["action"]), []).append(row)
    (created,) = by_action["share-created"]
    assert created["study_uid"] == STUDY and created["patient_id"] == "DEMO-CT-0001"
    assert f"shared link #{share_id}, expires " in str(created["detail"]) and "viewer only" in str(
        created["detail"]
    )
    (opened,) = by_action["share-opened"]
    assert opened["credential"] == f"share:{share_id}" and str(opened["client_ip"]) == "127.0.0.1"
    assert "127.0.0.1" in str(opened["detail"])
    reads = by_action["query"]
    assert len(reads) == 1  # three requests, one bucket
    assert reads[0]["credential"] == f"share:{share_id}" and reads[0]["study_uid"] == STUDY
    (revoked,) = by_action["share-revoked"]
    assert f"#{share_id}" in str(revoked["detail"])
    assert secret not in json.dumps([repr(row) for row in live_portal.audit_events(after)])
    assert secret not in live_portal.log_path.read_text()

    auditor = live_portal.login("dave")
    page = auditor.get(f"{live_portal.url}/audit/accesses/?user=share-audited", timeout=30)
    assert page.status_code == 200
    assert f"visitor of shared link #{share_id}" in page.text
    events = auditor.get(f"{live_portal.url}/audit/?user=share-audited", timeout=30)
    assert f"visitor of shared link #{share_id}" in events.text


def test_it_limits_how_many_links_a_user_creates_per_hour(live_portal: LivePortal) -> None:
    live_portal.add_user("share-busy", "clinician")
    shell(
        live_portal,
        "from django.contrib.auth.models import User; from shares.models import Share; "
        "u = User.objects.get(username='share-busy'); "
        f"[Share.objects.issue(u, '{STUDY}', 1) for _ in range(20)]",
    )
    session = live_portal.login("share-busy")
    url = f"{live_portal.url}/shares/new/"
    session.get(url, timeout=10)
    response = session.post(
        url,
        data={"study": STUDY, "days": "1", "csrfmiddlewaretoken": session.cookies["csrftoken"]},
        headers={"Referer": url},
        timeout=30,
    )
    assert response.status_code == 429
    assert "pacsshare_" not in response.text
