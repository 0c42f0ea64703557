"""The generated app-config.js and the settings behind the portal around OHIF, through the test client."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import Group, User
from django.test import Client
from pytest_django.fixtures import Settings

from tests.services import REPO

pytestmark = pytest.mark.django_db
PORTAL_SCRIPT = REPO / "viewer" / "portal.js"
CONFIG = re.compile(r"window\.config = (\{.*?\n\});\n", re.DOTALL)


def clinician(username: str = "alice", **names: str) -> User:
    user = User.objects.create_user(username, password="a long enough password", **names)
    user.groups.add(Group.objects.get(name="clinician"))
    return user


def app_config(client: Client) -> tuple[dict[str, Any], str]:
    response = client.get("/app-config.js")
    assert response.status_code == 200
    text = response.content.decode()
    found = CONFIG.match(text)
    assert found is not None, text[:200]
    return json.loads(found.group(1)), text


def test_it_gives_the_viewer_the_portal_around_it(client: Client) -> None:
    client.force_login(clinician(first_name="Alice", last_name="Martin"))
    config, text = app_config(client)
    assert config["pacsportal"] == {
        "siteName": "PACS portal",
        "homeUrl": "/portal/",
        "studyListUrl": "/",
        "viewerUrl": "/viewer",
        "loginUrl": "/accounts/login/",
        "logoutUrl": "/accounts/logout/",
        "userName": "Alice Martin",
        "csrfToken": config["pacsportal"]["csrfToken"],
    }
    # The functions OHIF calls come after the data, from viewer/portal.js, in the same file.
    assert text.endswith(PORTAL_SCRIPT.read_text())
    for hook in ("config.httpErrorHandler =", "createLogoComponentFn: Brand", "preRegistration:"):
        assert hook in text


def test_it_names_the_user_by_username_without_a_full_name(client: Client) -> None:
    client.force_login(clinician("bob"))
    assert app_config(client)[0]["pacsportal"]["userName"] == "bob"


def test_it_turns_the_onboarding_tour_off_unless_the_setting_asks(client: Client, settings: Settings) -> None:
    client.force_login(clinician())
    assert app_config(client)[0]["customizationService"] == {"ohif.tours": {"$set": []}}
    settings.VIEWER_SHOW_TOUR = True
    assert app_config(client)[0]["customizationService"] == {}


def test_it_uses_the_site_name_in_the_viewer_and_on_every_page(client: Client, settings: Settings) -> None:
    settings.PORTAL_SITE_NAME = "St Elsewhere imaging"
    login = client.get("/accounts/login/").content.decode()
    assert "<title>Log in · St Elsewhere imaging</title>" in login
    assert '<a class="brand" href="/portal/">St Elsewhere imaging</a>' in login
    client.force_login(clinician())
    assert app_config(client)[0]["pacsportal"]["siteName"] == "St Elsewhere imaging"


def test_it_lets_no_other_site_load_the_config(client: Client) -> None:
    client.force_login(clinician())
    response = client.get("/app-config.js")
    assert response["Cross-Origin-Resource-Policy"] == "same-origin"
    assert "no-store" in response["Cache-Control"]


def test_it_logs_out_with_the_token_the_config_carries() -> None:
    client = Client(enforce_csrf_checks=True)
    client.force_login(clinician())
    config, _ = app_config(client)
    assert client.post("/accounts/logout/").status_code == 403, "a log-out without the token"
    response = client.post("/accounts/logout/", {"csrfmiddlewaretoken": config["pacsportal"]["csrfToken"]})
    assert response.status_code == 302
    assert response["Location"] == "/accounts/login/"
    assert "_auth_user_id" not in client.session


def manage_check(env: dict[str, str], var_dir: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "manage.py", "check"],
        cwd=REPO,
        env={"PATH": "/usr/bin:/bin", "PORTAL_VAR_DIR": str(var_dir), "DEBUG": "true", **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize(
    ("env", "error"),
    [
        ({"PORTAL_SITE_NAME": "x" * 61}, "PORTAL_SITE_NAME is longer than 60 characters"),
        ({"VIEWER_SHOW_TOUR": "maybe"}, "VIEWER_SHOW_TOUR='maybe' is not a boolean"),
    ],
)
def test_it_refuses_a_bad_viewer_setting(env: dict[str, str], error: str, tmp_path: Path) -> None:
    result = manage_check(env, tmp_path)
    assert result.returncode != 0
    assert error in result.stderr
