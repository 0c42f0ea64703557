"""Shared links in process: the model, a visitor's session and where it may go, the pages' limits."""

from __future__ import annotations

import hashlib
import time
from datetime import timedelta

import pytest
from django.contrib.auth.models import Group, User
from django.test import Client
from django.utils import timezone

from accounts import permissions
from audit.models import Action, AuditEvent
from audit.templatetags.audit_labels import credential_label, via_share
from shares import links
from shares.models import Share

pytestmark = pytest.mark.django_db
STUDY = "1.2.826.0.1.3680043.8.498.1"
PASSWORD = "a long enough password"


def make_user(username: str, *groups: str, **extra: bool) -> User:
    user = User.objects.create_user(username, email=None, password=PASSWORD, **extra)
    user.groups.add(*Group.objects.filter(name__in=groups))
    return user


def visiting(client: Client, share: Share, minutes: float = 60) -> Client:
    """The client's session as /share/open/ leaves it: the share's id, and when the visit ends."""
    session = client.session
    session[links.SESSION_SHARE] = share.pk
    session[links.SESSION_UNTIL] = time.time() + minutes * 60
    session.save()
    assert session.session_key is not None  # saved, so it has one
    client.cookies["sessionid"] = session.session_key
    return client


def test_it_stores_only_the_digest_and_finds_a_share_by_its_secret() -> None:
    alice = make_user("alice", "clinician")
    share, secret = Share.objects.issue(alice, STUDY, 7)
    assert secret.startswith("pacsshare_") and len(secret) == len("pacsshare_") + 43
    assert share.digest == hashlib.sha256(secret.encode()).hexdigest()
    assert secret not in repr(Share.objects.filter(pk=share.pk).values().get())
    assert Share.objects.for_secret(secret) == share
    assert Share.objects.for_secret(secret[:-1] + ("A" if secret[-1] != "A" else "B")) is None
    assert Share.objects.for_secret(secret + "x") is None
    assert Share.objects.for_secret("pacs_" + secret[10:]) is None
    assert not share.allow_download
    assert timedelta(days=6, hours=23) < share.expires_at - timezone.now() <= timedelta(days=7)


def test_it_gives_sharing_to_clinicians_uploaders_and_pacs_admins_only() -> None:
    for group in ("clinician", "uploader", "pacs-admin"):
        assert links.can_share(make_user(f"u-{group}", group))
    assert not links.can_share(make_user("auditor", "auditor"))
    assert not links.can_share(make_user("nobody"))


@pytest.mark.parametrize(
    "page", ["/portal/", "/audit/", "/admin/", "/accounts/tokens/", "/shares/", "/shares/new/"]
)
def test_it_confines_a_visitor_to_the_viewer(client: Client, page: str) -> None:
    share, _ = Share.objects.issue(make_user("alice", "clinician"), STUDY, 7)
    response = visiting(client, share).get(page)
    assert response.status_code == 403
    assert b"opens one study in the viewer" in response.content


def test_it_gives_a_visitor_the_viewer_and_its_config(client: Client) -> None:
    share, _ = Share.objects.issue(make_user("alice", "clinician"), STUDY, 7)
    visiting(client, share)
    assert client.get(f"/viewer?StudyInstanceUIDs={STUDY}").status_code in (200, 503)  # 503: no bundle
    config = client.get("/app-config.js")
    assert config.status_code == 200
    assert b"Visitor of a shared link" in config.content
    assert f'"homeUrl": "/viewer?StudyInstanceUIDs={STUDY}"'.encode() in config.content


@pytest.mark.parametrize(
    ("end", "words"),
    [
        ("revoke", b"revoked"),
        ("expire", b"expired"),
        ("deactivate", b"no longer share"),
        ("ungroup", b"no longer share"),
        ("visit over", b"visit through this link has ended"),
    ],
)
def test_it_ends_a_visit_with_a_page_that_says_why(client: Client, end: str, words: bytes) -> None:
    alice = make_user("alice", "clinician")
    share, _ = Share.objects.issue(alice, STUDY, 7)
    visiting(client, share, minutes=-1 if end == "visit over" else 60)
    if end == "revoke":
        Share.objects.filter(pk=share.pk).update(revoked_at=timezone.now())
    elif end == "expire":
        Share.objects.filter(pk=share.pk).update(expires_at=timezone.now())
    elif end == "deactivate":
        User.objects.filter(pk=alice.pk).update(is_active=False)
    elif end == "ungroup":
        alice.groups.clear()
        permissions._permissions.clear()  # else the change lands within PERMISSION_TTL
    page = client.get(f"/viewer?StudyInstanceUIDs={STUDY}")
    assert page.status_code == 403 and words in page.content
    ended = client.get("/share/ended/")
    assert ended.status_code == 410 and words in ended.content
    pacs = client.get(f"/pacs/dicom-web/studies/{STUDY}/series", HTTP_ACCEPT="application/json")
    assert pacs.status_code == 401 and words.decode() in pacs.json()["error"]


def test_it_refuses_a_link_longer_than_the_maximum_and_limits_links_per_hour(
    client: Client, settings: object
) -> None:
    alice = make_user("alice", "clinician")
    client.force_login(alice)
    too_long = client.post("/shares/new/", {"study": STUDY, "days": "31"})
    assert too_long.status_code == 400
    for _ in range(20):
        Share.objects.issue(alice, STUDY, 1)
    limited = client.post("/shares/new/", {"study": STUDY, "days": "1"})
    assert limited.status_code == 429
    assert Share.objects.filter(owner=alice).count() == 20


def test_it_lets_only_sharing_roles_reach_the_share_pages(client: Client) -> None:
    client.force_login(make_user("dave", "auditor"))
    assert client.get("/shares/").status_code == 403
    assert client.get(f"/shares/new/?study={STUDY}").status_code == 403


def test_it_revokes_only_ones_own_shares_and_audits_it(client: Client) -> None:
    alice, bob = make_user("alice", "clinician"), make_user("bob", "clinician")
    share, _ = Share.objects.issue(alice, STUDY, 7)
    client.force_login(bob)
    assert client.post(f"/shares/{share.pk}/revoke/").status_code == 404
    client.force_login(alice)
    assert client.post(f"/shares/{share.pk}/revoke/").status_code == 302
    share.refresh_from_db()
    assert share.status == "revoked"
    (row,) = AuditEvent.objects.filter(action=Action.SHARE_REVOKED)
    assert row.username == "alice" and row.study_uid == STUDY and f"#{share.pk}" in row.detail


def test_it_lets_admins_revoke_any_share_in_django_admin(client: Client) -> None:
    share, _ = Share.objects.issue(make_user("alice", "clinician"), STUDY, 7)
    client.force_login(make_user("root", is_staff=True, is_superuser=True))
    listing = client.get("/admin/shares/share/")
    assert listing.status_code == 200 and STUDY.encode() in listing.content
    response = client.post(
        "/admin/shares/share/", {"action": "revoke", "_selected_action": [share.pk]}, follow=True
    )
    assert response.status_code == 200
    share.refresh_from_db()
    assert share.revoked_at is not None


def test_it_names_accesses_through_a_share_for_auditors() -> None:
    assert via_share("share:12") == "visitor of shared link #12"
    assert via_share("session") == ""
    assert credential_label("token:laptop") == "token:laptop"
    assert credential_label("share:3") == "visitor of shared link #3"
