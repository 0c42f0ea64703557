"""The same account flows through real HTTP against gunicorn."""

from __future__ import annotations

import pytest
import requests

from tests.services import LivePortal

pytestmark = pytest.mark.live


def test_it_serves_the_login_page_and_refuses_anonymous_home(live_portal: LivePortal) -> None:
    response = requests.get(f"{live_portal.url}/portal/", allow_redirects=False, timeout=10)
    assert response.status_code == 302
    assert response.headers["Location"] == "/accounts/login/?next=/portal/"
    login = requests.get(f"{live_portal.url}/accounts/login/", timeout=10)
    assert login.status_code == 200
    assert 'name="username"' in login.text


def test_it_serves_static_files_through_whitenoise(live_portal: LivePortal) -> None:
    login = requests.get(f"{live_portal.url}/accounts/login/", timeout=10)
    css_path = login.text.split('rel="stylesheet" href="')[1].split('"')[0]
    css = requests.get(f"{live_portal.url}{css_path}", headers={"Accept-Encoding": "br"}, timeout=10)
    assert css.status_code == 200
    assert css.headers["Content-Encoding"] == "br"


def test_it_logs_in_shows_home_and_logs_out(live_portal: LivePortal) -> None:
    session = live_portal.login("alice")
    home = session.get(f"{live_portal.url}/portal/", timeout=10)
    assert home.status_code == 200
    assert "Welcome, alice" in home.text
    logout = session.post(
        f"{live_portal.url}/accounts/logout/",
        data={"csrfmiddlewaretoken": session.cookies["csrftoken"]},
        headers={"Referer": f"{live_portal.url}/portal/"},
        allow_redirects=False,
        timeout=10,
    )
    assert logout.status_code == 302
    assert session.get(f"{live_portal.url}/portal/", allow_redirects=False, timeout=10).status_code == 302


def test_it_answers_a_wrong_password_with_the_form(live_portal: LivePortal) -> None:
    session = requests.Session()
    login_url = f"{live_portal.url}/accounts/login/"
    session.get(login_url, timeout=10)
    response = session.post(
        login_url,
        data={"username": "bob", "password": "not-his", "csrfmiddlewaretoken": session.cookies["csrftoken"]},
        headers={"Referer": login_url},
        timeout=10,
    )
    assert response.status_code == 200
    assert "did not match" in response.text


@pytest.mark.parametrize(
    ("page", "says"),
    [("/accounts/login/", "did not match"), ("/admin/login/", "at most 150 characters")],
)
def test_it_answers_an_overlong_username_with_the_form(live_portal: LivePortal, page: str, says: str) -> None:
    # django-axes' column holds 255 characters: on PostgreSQL this was a 503.
    session = requests.Session()
    url = f"{live_portal.url}{page}"
    session.get(url, timeout=10)
    response = session.post(
        url,
        data={"username": "x" * 5000, "password": "x", "csrfmiddlewaretoken": session.cookies["csrftoken"]},
        headers={"Referer": url},
        timeout=10,
        allow_redirects=False,
    )
    assert response.status_code == 200
    assert says in response.text


def test_it_answers_an_overlong_basic_username_with_401(live_portal: LivePortal) -> None:
    response = requests.get(
        f"{live_portal.url}/pacs/dicom-web/studies", auth=("x" * 5000, "a password"), timeout=10
    )
    assert response.status_code == 401


def test_it_changes_a_password_over_http(live_portal: LivePortal) -> None:
    live_portal.add_user("gina", "clinician")
    session = live_portal.login("gina")
    url = f"{live_portal.url}/accounts/password_change/"
    session.get(url, timeout=10)
    new_password = "a brand new long password"
    response = session.post(
        url,
        data={
            "old_password": live_portal.passwords["gina"],
            "new_password1": new_password,
            "new_password2": new_password,
            "csrfmiddlewaretoken": session.cookies["csrftoken"],
        },
        headers={"Referer": url},
        allow_redirects=False,
        timeout=10,
    )
    assert response.status_code == 302
    live_portal.passwords["gina"] = new_password
    assert live_portal.login("gina").get(f"{live_portal.url}/portal/", timeout=10).status_code == 200


def test_it_reports_health_without_login(live_portal: LivePortal) -> None:
    response = requests.get(f"{live_portal.url}/healthz", timeout=10)
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "database": "ok", "orthanc": "ok"}
