"""Access tokens and remembered Basic passwords: the model, identify() and the token page, in process."""

from __future__ import annotations

import base64
import hashlib
import re
import threading
from datetime import timedelta
from typing import Any, cast
from unittest import mock

import pytest
from axes.models import AccessAttempt
from django.contrib.auth.models import AnonymousUser, Group, User
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.db import connections
from django.http import HttpRequest
from django.test import Client, RequestFactory
from django.utils import timezone
from pytest_django.fixtures import DjangoAssertNumQueries

from accounts import authentication, permissions
from accounts.authentication import BadCredentials, identify, remembered_passwords
from accounts.forms import TokenForm
from accounts.models import AccessToken, TokenScope, scopes_for
from audit.models import Action, AuditEvent
from core import roles

pytestmark = pytest.mark.django_db
PASSWORD = "a long enough password"
TOKEN_SHAPE = re.compile(r"pacs_[0-9A-Za-z]{43}")


@pytest.fixture(autouse=True)
def _forget_passwords() -> None:
    remembered_passwords.clear()


def make_user(username: str, *groups: str, **extra: bool) -> User:
    user = User.objects.create_user(username, email=None, password=PASSWORD, **extra)
    user.groups.add(*Group.objects.filter(name__in=groups))
    return user


def api_request(authorization: str, path: str = "/pacs/dicom-web/studies") -> HttpRequest:
    request = RequestFactory().get(path, HTTP_AUTHORIZATION=authorization)
    request.user = AnonymousUser()
    return request


def basic(username: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()


def test_it_stores_only_the_digest_of_a_new_token() -> None:
    alice = make_user("alice", "clinician")
    token, secret = AccessToken.objects.issue(alice, "laptop", TokenScope.READ, 90)
    assert TOKEN_SHAPE.fullmatch(secret)
    assert token.digest == hashlib.sha256(secret.encode()).hexdigest()
    stored = AccessToken.objects.filter(pk=token.pk).values().get()
    assert not any(secret in str(value) for value in stored.values())
    assert abs(token.expires_at - timezone.now() - timedelta(days=90)) < timedelta(minutes=1)


def test_it_finds_a_token_by_its_secret_and_nothing_by_anything_else() -> None:
    alice = make_user("alice", "clinician")
    token, secret = AccessToken.objects.issue(alice, "laptop", TokenScope.READ, 90)
    assert AccessToken.objects.for_secret(secret) == token
    assert AccessToken.objects.for_secret(secret[:-1] + ("A" if secret[-1] != "A" else "B")) is None
    assert AccessToken.objects.for_secret(secret + "x") is None
    assert AccessToken.objects.for_secret(token.digest) is None


def test_it_identifies_a_token_as_bearer_and_as_the_basic_password_of_its_owner() -> None:
    alice = make_user("alice", "clinician")
    _, secret = AccessToken.objects.issue(alice, "laptop", TokenScope.READ, 90)
    for authorization in (f"Bearer {secret}", f"bearer  {secret} ", basic("alice", secret)):
        identity = identify(api_request(authorization))
        assert identity.user == alice
        assert identity.credential == "token:laptop"
        assert identity.can(roles.READ_STUDIES)


def test_it_refuses_a_token_sent_with_another_users_name() -> None:
    alice = make_user("alice", "clinician")
    make_user("bob", "uploader")
    _, secret = AccessToken.objects.issue(alice, "laptop", TokenScope.READ, 90)
    with pytest.raises(BadCredentials, match="owner"):
        identify(api_request(basic("bob", secret)))


@pytest.mark.parametrize("change", ["revoked", "expired", "owner deactivated", "owner deleted", "unknown"])
def test_it_refuses_a_token_that_is_no_longer_valid(change: str) -> None:
    alice = make_user("alice", "clinician")
    token, secret = AccessToken.objects.issue(alice, "laptop", TokenScope.READ, 90)
    if change == "revoked":
        AccessToken.objects.filter(pk=token.pk).update(revoked_at=timezone.now())
    elif change == "expired":
        AccessToken.objects.filter(pk=token.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    elif change == "owner deactivated":
        User.objects.filter(pk=alice.pk).update(is_active=False)
    elif change == "owner deleted":
        alice.delete()
    else:
        secret = "pacs_" + "A" * 43
    with pytest.raises(BadCredentials):
        identify(api_request(f"Bearer {secret}"))


def test_it_narrows_a_token_to_its_scope_whatever_the_owner_may_do() -> None:
    carol = make_user("carol", "pacs-admin")
    root = make_user("root", is_superuser=True)
    for owner in (carol, root):
        _, read_only = AccessToken.objects.issue(owner, "read", TokenScope.READ, 30)
        identity = identify(api_request(f"Bearer {read_only}"))
        assert identity.can(roles.READ_STUDIES)
        assert not identity.can(roles.STORE_STUDIES)
        assert not identity.can(roles.ADMINISTER_PACS)
        assert not identity.can(roles.READ_AUDIT)
        _, admin = AccessToken.objects.issue(owner, "admin", TokenScope.ADMIN, 30)
        assert identify(api_request(f"Bearer {admin}")).can(roles.ADMINISTER_PACS)


def test_it_narrows_a_token_to_what_its_owner_may_do_now() -> None:
    bob = make_user("bob", "uploader")
    _, secret = AccessToken.objects.issue(bob, "uploads", TokenScope.STORE, 30)
    assert identify(api_request(f"Bearer {secret}")).can(roles.STORE_STUDIES)
    bob.groups.set(Group.objects.filter(name="clinician"))
    permissions._permissions.clear()  # group changes reach a worker within PERMISSION_TTL
    identity = identify(api_request(f"Bearer {secret}"))
    assert identity.can(roles.READ_STUDIES)
    assert not identity.can(roles.STORE_STUDIES)


def test_it_offers_the_scopes_within_a_role() -> None:
    assert scopes_for(make_user("alice", "clinician")) == [TokenScope.READ]
    assert scopes_for(make_user("bob", "uploader")) == [TokenScope.READ, TokenScope.STORE]
    assert scopes_for(make_user("carol", "pacs-admin")) == [
        TokenScope.READ,
        TokenScope.STORE,
        TokenScope.ADMIN,
    ]
    assert scopes_for(make_user("dave", "auditor")) == []


def test_it_records_a_tokens_use_at_most_once_a_minute(
    django_assert_num_queries: DjangoAssertNumQueries,
) -> None:
    alice = make_user("alice", "clinician")
    token, secret = AccessToken.objects.issue(alice, "laptop", TokenScope.READ, 90)
    identify(api_request(f"Bearer {secret}"))
    token.refresh_from_db()
    assert token.last_used_at is not None
    assert token.last_used_ip == "127.0.0.1"
    with django_assert_num_queries(2):  # the token and its owner; no write
        identify(api_request(f"Bearer {secret}"))
    AccessToken.objects.filter(pk=token.pk).update(last_used_at=timezone.now() - timedelta(seconds=61))
    with django_assert_num_queries(3):
        identify(api_request(f"Bearer {secret}"))


def test_it_checks_a_basic_password_with_the_hasher_once_then_remembers_it(
    django_assert_num_queries: DjangoAssertNumQueries,
) -> None:
    alice = make_user("alice", "clinician")
    with mock.patch.object(authentication, "authenticate", wraps=authentication.authenticate) as checked:
        for _ in range(3):
            identity = identify(api_request(basic("alice", PASSWORD)))
            assert identity.user == alice
            assert identity.credential == "basic"
        assert checked.call_count == 1
        with django_assert_num_queries(2):  # the user, and django-axes' lockout check
            identify(api_request(basic("alice", PASSWORD)))
    # The cache's keys are Hashable to its class; these are digests, bytes.
    assert not any(PASSWORD.encode() in cast(bytes, key) for key in remembered_passwords.entries.entries)


@pytest.mark.django_db(transaction=True)  # the threads' own connections see the user
def identify_in_a_burst(authorization: str) -> tuple[list[Any], int]:
    """identify() in 8 threads at once: the users found, and how many full checks ran."""
    start = threading.Barrier(8)
    users: list[Any] = []
    # The test's own connection, in its transaction, as Django's live server threads
    # share it: the threads see the test's user, and the test still rolls back.
    shared = connections["default"]

    def ask() -> None:
        connections["default"] = shared
        start.wait()
        users.append(identify(api_request(authorization)).user)

    shared.inc_thread_sharing()
    try:
        with mock.patch.object(authentication, "authenticate", wraps=authentication.authenticate) as checked:
            threads = [threading.Thread(target=ask) for _ in range(8)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(60)
    finally:
        shared.dec_thread_sharing()
    return users, checked.call_count


def test_it_runs_the_hasher_once_for_a_burst_with_a_new_basic_password() -> None:
    alice = make_user("alice", "clinician")
    assert identify_in_a_burst(basic("alice", PASSWORD)) == ([alice] * 8, 1)


def test_it_checks_and_counts_every_wrong_password_of_a_burst(settings: Any) -> None:
    settings.AXES_FAILURE_LIMIT = 100
    make_user("alice", "clinician")
    users, checks = identify_in_a_burst(basic("alice", "wrong"))
    assert [user.is_authenticated for user in users] == [False] * 8
    assert checks == 8
    assert AccessAttempt.objects.get(username="alice").failures_since_start == 8


@pytest.mark.parametrize("change", ["password changed", "deactivated", "renamed"])
def test_it_forgets_a_remembered_password_when_the_user_changes(change: str) -> None:
    alice = make_user("alice", "clinician")
    assert identify(api_request(basic("alice", PASSWORD))).user == alice
    if change == "password changed":
        alice.set_password("another long password")
        alice.save()
    elif change == "deactivated":
        User.objects.filter(pk=alice.pk).update(is_active=False)
    else:
        User.objects.filter(pk=alice.pk).update(username="alicia")
    assert not identify(api_request(basic("alice", PASSWORD))).is_authenticated


def test_it_forgets_a_remembered_password_when_its_user_is_locked_out(settings: Any) -> None:
    settings.AXES_FAILURE_LIMIT = 3
    make_user("alice", "clinician")
    assert identify(api_request(basic("alice", PASSWORD))).is_authenticated
    for _ in range(3):
        assert not identify(api_request(basic("alice", "wrong"))).is_authenticated
    request = api_request(basic("alice", PASSWORD))
    assert not identify(request).is_authenticated
    assert request.axes_locked_out  # type: ignore[attr-defined]  # django-axes sets it on the request
    actions = list(AuditEvent.objects.order_by("id").values_list("action", flat=True))
    # The third failure locks out; the remembered password then fails like any other.
    failed, locked = Action.LOGIN_FAILED, Action.LOCKOUT
    assert actions == [failed, failed, locked, failed, locked, failed]


def test_it_asks_django_axes_only_when_it_holds_a_failed_attempt_for_the_username_or_address(
    settings: Any,
) -> None:
    settings.AXES_FAILURE_LIMIT = 100
    make_user("alice", "clinician")
    make_user("mallory", "clinician")
    identify(api_request(basic("alice", PASSWORD)))
    with mock.patch.object(
        authentication.AxesProxyHandler, "is_allowed", wraps=authentication.AxesProxyHandler.is_allowed
    ) as asked:
        identify(api_request(basic("alice", PASSWORD)))
        assert asked.call_count == 0
        elsewhere = api_request(basic("mallory", "wrong"))
        elsewhere.META["REMOTE_ADDR"] = "192.0.2.7"
        identify(elsewhere)  # another user's failure from another address: no bearing on alice here
        assert identify(api_request(basic("alice", PASSWORD))).is_authenticated
        assert asked.call_count == 1  # the failed attempt itself, in authenticate()
        identify(api_request(basic("mallory", "wrong")))  # a failure from alice's address
        assert identify(api_request(basic("alice", PASSWORD))).is_authenticated
        assert asked.call_count == 3


def test_it_always_asks_django_axes_when_it_counts_attempts_otherwise(settings: Any) -> None:
    settings.AXES_LOCKOUT_PARAMETERS = [["user_agent"]]
    make_user("alice", "clinician")
    identify(api_request(basic("alice", PASSWORD)))
    with mock.patch.object(authentication.AxesProxyHandler, "is_allowed", return_value=False) as asked:
        assert not identify(api_request(basic("alice", PASSWORD))).is_authenticated
        assert asked.call_count == 2  # the remembered pair's check, then authenticate()'s


def test_it_hashes_every_wrong_password(settings: Any) -> None:
    settings.AXES_FAILURE_LIMIT = 100
    make_user("alice", "clinician")
    with mock.patch.object(authentication, "authenticate", wraps=authentication.authenticate) as checked:
        for _ in range(4):
            assert not identify(api_request(basic("alice", "wrong"))).is_authenticated
        assert checked.call_count == 4


def test_it_remembers_nothing_when_the_cache_is_off(settings: Any) -> None:
    settings.BASIC_AUTH_CACHE_SECONDS = 0
    make_user("alice", "clinician")
    identify(api_request(basic("alice", PASSWORD)))
    assert len(remembered_passwords.entries) == 0


def test_it_refuses_an_overlong_basic_username_as_no_such_user() -> None:
    # django-axes' column holds 255 characters: PostgreSQL refused the failed attempt's row.
    identity = identify(api_request(basic("x" * 5000, PASSWORD)))
    assert not identity.is_authenticated


def test_it_refuses_other_schemes_and_malformed_headers() -> None:
    for authorization in ("Digest x", "Bearer", "Bearer ", "Basic !!!"):
        with pytest.raises(BadCredentials):
            identify(api_request(authorization))


def test_it_refuses_passwords_that_look_like_tokens() -> None:
    with pytest.raises(ValidationError, match="pacs_"):
        validate_password("pacs_a very long passphrase indeed")
    validate_password("a very long passphrase indeed")


def test_it_limits_names_and_expiry_in_the_form(settings: Any) -> None:
    settings.ACCESS_TOKEN_MAX_DAYS = 30
    alice = make_user("alice", "clinician")
    AccessToken.objects.issue(alice, "laptop", TokenScope.READ, 10)
    cases = {
        "laptop": {"name": ["You already have a token with this name; revoke it or pick another."]},
        "bad<name>": {"name": ["Use letters, digits, spaces and . @ + - _ only."]},
    }
    for name, errors in cases.items():
        form = TokenForm(alice, {"name": name, "scope": "read", "days": "10"})
        assert form.errors == errors
    too_long = TokenForm(alice, {"name": "new", "scope": "read", "days": "31"})
    assert "days" in too_long.errors
    too_wide = TokenForm(alice, {"name": "new", "scope": "store", "days": "10"})
    assert "scope" in too_wide.errors
    assert TokenForm(alice, {"name": "new one", "scope": "read", "days": "30"}).is_valid()


def test_it_creates_shows_once_lists_and_revokes_a_token_on_the_page(client: Client) -> None:
    alice = make_user("alice", "clinician")
    client.force_login(alice)
    page = client.get("/accounts/tokens/")
    assert page.status_code == 200
    assert page["Cache-Control"].startswith("max-age=0")
    created = client.post("/accounts/tokens/", {"name": "laptop", "scope": "read", "days": "90"})
    assert created.status_code == 201
    assert "no-store" in created["Cache-Control"]
    shown = TOKEN_SHAPE.search(created.content.decode())
    assert shown is not None, "the new token's secret is shown once"
    secret = shown.group(0)
    token = AccessToken.objects.get(user=alice)
    assert token.digest == hashlib.sha256(secret.encode()).hexdigest()
    listed = client.get("/accounts/tokens/").content.decode()
    assert "laptop" in listed
    assert "pacs_" not in listed.replace("<code>pacs_", "")
    assert secret not in listed
    revoked = client.post(f"/accounts/tokens/{token.pk}/revoke/")
    assert revoked.status_code == 302
    token.refresh_from_db()
    assert token.status == "revoked"
    events = list(AuditEvent.objects.order_by("id"))
    assert [event.action for event in events if event.action.startswith("token")] == [
        Action.TOKEN_CREATED,
        Action.TOKEN_REVOKED,
    ]
    assert all(secret not in str(vars(event)) for event in events)
    assert "token:laptop" in events[-1].detail


def test_it_keeps_the_token_page_to_roles_that_read_studies(client: Client) -> None:
    client.force_login(make_user("dave", "auditor"))
    assert client.get("/accounts/tokens/").status_code == 403
    assert client.post("/accounts/tokens/", {"name": "x", "scope": "read", "days": "1"}).status_code == 403
    assert AccessToken.objects.count() == 0


def test_it_revokes_only_the_users_own_tokens(client: Client) -> None:
    alice, bob = make_user("alice", "clinician"), make_user("bob", "uploader")
    token, _ = AccessToken.objects.issue(alice, "laptop", TokenScope.READ, 90)
    client.force_login(bob)
    assert client.post(f"/accounts/tokens/{token.pk}/revoke/").status_code == 404
    assert client.get(f"/accounts/tokens/{token.pk}/revoke/").status_code == 405
    token.refresh_from_db()
    assert token.revoked_at is None


def test_it_lets_admins_see_and_revoke_every_token_without_the_secret(client: Client) -> None:
    alice = make_user("alice", "clinician")
    token, secret = AccessToken.objects.issue(alice, "laptop", TokenScope.READ, 90)
    client.force_login(make_user("root", is_superuser=True, is_staff=True))
    listing = client.get("/admin/accounts/accesstoken/")
    assert listing.status_code == 200
    assert "laptop" in listing.content.decode()
    detail = client.get(f"/admin/accounts/accesstoken/{token.pk}/change/").content.decode()
    assert secret not in detail and token.digest not in detail
    assert client.get("/admin/accounts/accesstoken/add/").status_code == 403
    revoked = client.post(
        "/admin/accounts/accesstoken/", {"action": "revoke", "_selected_action": [token.pk]}
    )
    assert revoked.status_code == 302
    token.refresh_from_db()
    assert token.status == "revoked"
    event = AuditEvent.objects.get(action=Action.TOKEN_REVOKED)
    assert event.username == "root"
    assert event.detail.startswith("token:laptop of alice")


def test_it_never_accepts_a_token_for_the_portals_pages(client: Client) -> None:
    alice = make_user("alice", "clinician")
    _, secret = AccessToken.objects.issue(alice, "laptop", TokenScope.READ, 90)
    response = client.get("/accounts/tokens/", HTTP_AUTHORIZATION=f"Bearer {secret}")
    assert response.status_code == 302
