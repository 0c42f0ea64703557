"""The decision, driven directly over its whole table of cases (the doors' tests drive it through HTTP).

Each case is a request as a door reads it (`Asked`) and the verdict expected;
subjects are resolved from the session's real Orthanc, which holds the demo CT.
"""

from __future__ import annotations

import dataclasses
from typing import Any
from urllib.parse import unquote_to_bytes

import pytest
from django.conf import settings
from django.contrib.auth.models import Group, User
from django.test import RequestFactory

from accounts.authentication import ANONYMOUS, Identity
from devstack.orthanc_server import OrthancServer
from orthanc import demo
from proxy import rules
from proxy.decision import Asked, Decision, as_held, decide
from shares.links import VISITOR_PERMISSIONS
from shares.models import Share

pytestmark = [pytest.mark.orthanc, pytest.mark.django_db]

STUDY = demo.DEMO_CT_STUDY_UID
SERIES = demo.DEMO_CT_SERIES_UID
PATIENT = "DEMO-CT-0001"
OTHER_STUDY = "1.2.826.0.1.3680043.8.498.1"
OWN_ORIGIN = "https://pacs.example.org"


@pytest.fixture
def user_in(django_user_model: Any) -> Any:
    def make(*groups: str) -> User:
        user = django_user_model.objects.create_user(f"user-{'-'.join(groups) or 'none'}", password=None)
        user.groups.set(Group.objects.filter(name__in=groups))
        return user

    return make


def asked(identity: Identity, path: str, method: str = "GET", query: str = "", **changes: Any) -> Asked:
    base = Asked(
        mount=rules.PACS,
        method=method,
        path=path,
        raw_uri=f"/pacs/{path}" + (f"?{query}" if query else ""),
        query_string=query,
        logged_path=f"/pacs/{path}",
        client="127.0.0.1",
        user_agent="test",
        sec_fetch_site=None,
        origin=None,
        own_origin=OWN_ORIGIN,
        identity=identity,
    )
    return dataclasses.replace(base, **changes)


def refused(decision: Decision) -> tuple[int, str]:
    return decision.status, decision.reason


@pytest.mark.parametrize(
    "status, problem, path",
    [
        # Ambiguous: nobody is named, whichever credential was meant.
        (400, "ambiguous credentials: x", "dicom-web/studies"),
        # Refused before the path is read: the trail names who tried a hostile path.
        (401, "invalid username or password", "dicom-web/../x"),
    ],
)
def test_it_refuses_credentials_the_door_refused_before_anything_else(
    orthanc: OrthancServer, status: int, problem: str, path: str
) -> None:
    decision = decide(asked(ANONYMOUS, path, credential_status=status, credential_problem=problem))
    assert refused(decision) == (status, problem)
    assert decision.identity is ANONYMOUS and decision.path == ""


def test_it_refuses_a_locked_out_client(orthanc: OrthancServer, user_in: Any) -> None:
    decision = decide(asked(Identity(user_in("clinician"), "basic"), "dicom-web/studies", locked_out=True))
    assert refused(decision) == (429, "too many failed logins; try again later")


def test_it_refuses_anonymous_requests(orthanc: OrthancServer) -> None:
    assert refused(decide(asked(ANONYMOUS, "dicom-web/studies"))) == (401, "authentication required")


@pytest.mark.parametrize(
    "path, query",
    [("dicom-web/studies/../../tools/reset", ""), ("dicom-web/studies", "PatientID=a&PatientID=b")],
)
def test_it_refuses_unsafe_paths_and_queries_with_400(
    orthanc: OrthancServer, user_in: Any, path: str, query: str
) -> None:
    decision = decide(asked(Identity(user_in("clinician"), "session"), path, query=query))
    assert decision.status == 400


@pytest.mark.parametrize(
    "groups, method, path, expected",
    [
        ((), "GET", "dicom-web/studies", 403),
        (("clinician",), "POST", "dicom-web/studies", 403),
        (("clinician",), "DELETE", "dicom-web/studies", 405),
        (("clinician",), "GET", "tools/reset", 404),
        (("auditor",), "GET", "dicom-web/studies", 403),
    ],
)
def test_it_applies_the_role_rules(
    orthanc: OrthancServer, user_in: Any, groups: tuple[str, ...], method: str, path: str, expected: int
) -> None:
    decision = decide(asked(Identity(user_in(*groups), "basic"), path, method=method))
    assert decision.status == expected
    if expected == 405:
        assert decision.allow == "GET, HEAD, POST"


def test_it_refuses_the_pacs_admin_mount_to_clinicians(orthanc: OrthancServer, user_in: Any) -> None:
    decision = decide(
        asked(Identity(user_in("clinician", "uploader"), "session"), "system", mount="pacs-admin")
    )
    assert refused(decision) == (403, "your account may not do this")


@pytest.mark.parametrize(
    "sec_fetch_site, origin, credential, expected",
    [
        ("cross-site", None, "session", 403),
        (None, "https://evil.example", "session", 403),
        (None, None, "session", 403),
        ("same-origin", None, "session", 0),
        (None, OWN_ORIGIN, "session", 0),
        (None, None, "basic", 0),
    ],
)
def test_it_applies_the_same_origin_rule_to_writes(
    orthanc: OrthancServer,
    user_in: Any,
    sec_fetch_site: str | None,
    origin: str | None,
    credential: str,
    expected: int,
) -> None:
    identity = Identity(user_in("clinician", "uploader"), credential)
    decision = decide(
        asked(identity, "dicom-web/studies", method="POST", sec_fetch_site=sec_fetch_site, origin=origin)
    )
    if expected:
        assert refused(decision) == (expected, "cross-site request refused")
    else:
        assert decision.allowed and decision.action == rules.STORE


def test_it_resolves_the_subject_from_the_archive(orthanc: OrthancServer, user_in: Any) -> None:
    path = f"dicom-web/studies/{STUDY}/series/{SERIES}/metadata"
    decision = decide(asked(Identity(user_in("clinician"), "session"), path))
    assert decision.allowed and decision.action == rules.RETRIEVE
    assert (decision.subject.patient_id, decision.subject.study_uid) == (PATIENT, STUDY)
    assert decision.target == f"/{path}"


def test_it_rebuilds_the_query_orthanc_is_asked(orthanc: OrthancServer, user_in: Any) -> None:
    decision = decide(
        asked(Identity(user_in("clinician"), "session"), "dicom-web/studies", query="PatientID=DEMO-CT-0001")
    )
    assert decision.allowed and decision.action == rules.QUERY
    assert decision.subject.patient_id == PATIENT
    assert decision.query == "00100020=DEMO-CT-0001"  # as Orthanc reads it: one spelling


def test_it_refuses_a_study_the_archive_does_not_hold(orthanc: OrthancServer, user_in: Any) -> None:
    decision = decide(
        asked(Identity(user_in("clinician"), "session"), f"dicom-web/studies/{OTHER_STUDY}/metadata")
    )
    assert decision.status == 404


def test_it_refuses_with_503_when_the_archive_cannot_say_whose_data_it_is(
    orthanc: OrthancServer, user_in: Any
) -> None:
    identity = Identity(user_in("clinician"), "session")
    settings.ORTHANC_URL = "http://127.0.0.1:9"
    # A study no earlier case looked up: nothing of it is in the lookups' caches.
    decision = decide(asked(identity, "dicom-web/studies/1.2.826.0.1.3680043.8.498.2/metadata"))
    assert refused(decision) == (503, "the archive could not say whose data this is, so it was not served")


def share_of(owner: User, study_uid: str, allow_download: bool = False) -> Identity:
    share = Share(id=7, owner=owner, study_uid=study_uid, allow_download=allow_download)
    return Identity(owner, "share:7", VISITOR_PERMISSIONS, share=share)


def test_it_confines_a_shared_link_to_its_study(orthanc: OrthancServer, user_in: Any) -> None:
    identity = share_of(user_in("clinician"), STUDY)
    confined = decide(asked(identity, "dicom-web/studies"))
    assert confined.allowed and f"StudyInstanceUID={STUDY}" in confined.query
    assert decide(asked(identity, f"dicom-web/studies/{OTHER_STUDY}/metadata")).status == 403
    assert (
        decide(asked(identity, "dicom-web/studies", method="POST", sec_fetch_site="same-origin")).status
        == 403
    )


def test_it_refuses_a_shared_link_a_series_the_archive_files_under_another_study(
    orthanc: OrthancServer, user_in: Any
) -> None:
    identity = share_of(user_in("clinician"), OTHER_STUDY)
    decision = decide(asked(identity, f"dicom-web/studies/{OTHER_STUDY}/series/{SERIES}/metadata"))
    assert decision.status in (403, 404)
    assert not decision.allowed


def test_it_reads_the_request_nginx_holds_as_django_would_have_received_it() -> None:
    """The sub-request, held as the request nginx holds: what authentication, its signals and
    django-axes read from it is what Django reads from that request sent to it directly."""
    sub_request = RequestFactory().get("/_front/decide/pacs?sub=1")
    uri = "/pacs/dicom-web/studies%2Fx%C3%A9"
    held = as_held(sub_request, "HEAD", uri, "PatientID=X")
    direct = RequestFactory().head(f"{uri}?PatientID=X")
    for read in ("method", "path", "path_info", "get_full_path", "GET"):
        value = getattr(held, read)
        expected = getattr(direct, read)
        assert (value() if callable(value) else value) == (expected() if callable(expected) else expected), (
            read
        )
    # PATH_INFO as a WSGI server hands it on (PEP 3333: the bytes, as latin-1).
    assert held.META["PATH_INFO"].encode("latin-1") == unquote_to_bytes(uri)
    assert sub_request.GET.dict() == {"sub": "1"} and sub_request.method == "GET"
    # Bytes that are not UTF-8 stay percent-encoded, as Django's WSGI handler leaves them.
    assert as_held(sub_request, "GET", "/pacs/x%FF", "").path == "/pacs/x%FF"
