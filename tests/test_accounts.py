"""Login, logout, password change and the home page, through the test client."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Group, User
from django.test import Client

pytestmark = pytest.mark.django_db
PASSWORD = "a long enough password"


def make_user(username: str, *groups: str, **extra: bool) -> User:
    user = User.objects.create_user(username, email=None, password=PASSWORD, **extra)
    user.groups.add(*Group.objects.filter(name__in=groups))
    return user


def test_it_shows_the_login_form(client: Client) -> None:
    response = client.get("/accounts/login/")
    assert response.status_code == 200
    assert b'name="username"' in response.content
    assert b'name="password"' in response.content


def test_it_redirects_anonymous_users_to_login(client: Client) -> None:
    for url in ("/portal/", "/admin/", "/accounts/password_change/"):
        response = client.get(url)
        assert response.status_code == 302, url
        assert response["Location"].startswith("/accounts/login/") or "/admin/login/" in response["Location"]


def test_it_shows_the_form_again_on_a_wrong_password(client: Client) -> None:
    make_user("alice", "clinician")
    response = client.post("/accounts/login/", {"username": "alice", "password": "wrong"})
    assert response.status_code == 200
    assert b"did not match" in response.content
    assert "_auth_user_id" not in client.session


def test_it_logs_in_and_lands_on_home(client: Client) -> None:
    make_user("alice", "clinician")
    response = client.post("/accounts/login/", {"username": "alice", "password": PASSWORD})
    assert response.status_code == 302
    assert response["Location"] == "/portal/"
    home = client.get("/portal/")
    assert home.status_code == 200
    assert b"Welcome, alice" in home.content


def test_it_shows_links_by_role(client: Client) -> None:
    client.force_login(make_user("dave", "auditor"))
    content = client.get("/portal/").content
    assert b"Django admin" not in content
    client.force_login(make_user("staff", is_staff=True))
    assert b"Django admin" in client.get("/portal/").content


def test_it_tells_users_without_a_role_to_ask_for_one(client: Client) -> None:
    client.force_login(make_user("eve"))
    assert b"no role yet" in client.get("/portal/").content


def test_it_logs_out_by_post_only(client: Client) -> None:
    client.force_login(make_user("alice", "clinician"))
    assert client.get("/accounts/logout/").status_code == 405
    response = client.post("/accounts/logout/")
    assert response.status_code == 302
    assert client.get("/portal/").status_code == 302


def test_it_changes_the_password(client: Client) -> None:
    user = make_user("alice", "clinician")
    client.force_login(user)
    response = client.post(
        "/accounts/password_change/",
        {
            "old_password": PASSWORD,
            "new_password1": "another long password",
            "new_password2": "another long password",
        },
    )
    assert response.status_code == 302
    assert response["Location"] == "/accounts/password_change/done/"
    user.refresh_from_db()
    assert user.check_password("another long password")


def test_it_rejects_a_weak_new_password_with_a_message(client: Client) -> None:
    client.force_login(make_user("alice", "clinician"))
    response = client.post(
        "/accounts/password_change/",
        {"old_password": PASSWORD, "new_password1": "12345", "new_password2": "12345"},
    )
    assert response.status_code == 200
    assert b"too short" in response.content


def test_it_locks_out_after_repeated_failures(client: Client, settings: object) -> None:
    make_user("alice", "clinician")
    for _ in range(5):
        client.post("/accounts/login/", {"username": "alice", "password": "wrong"})
    response = client.post("/accounts/login/", {"username": "alice", "password": PASSWORD})
    assert response.status_code == 429
    assert b"Too many failed logins" in response.content
    assert "_auth_user_id" not in client.session


@pytest.mark.parametrize("page", ["/accounts/login/", "/admin/login/"])
def test_it_answers_bad_login_input_with_the_form_not_a_500(client: Client, page: str) -> None:
    long_name = client.post(page, {"username": "x" * 5000, "password": "x"})
    assert long_name.status_code == 200
    not_utf8 = client.post(
        page,
        b"username=%ff%fe&password=%c3%28",
        content_type="application/x-www-form-urlencoded",
    )
    assert not_utf8.status_code == 200
