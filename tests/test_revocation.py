"""What the portal removes from nginx's decision cache, and when API decisions may be reused.

Through real HTTP, the tests each row of the revocation table (core/revocation_table.py)
names (tests/test_front.py, tests/test_live_tokens.py and others, run through nginx by
make test) assert how long ended access can last.
"""

from __future__ import annotations

import ast
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from axes.signals import user_locked_out
from django.contrib.auth.models import Group, Permission, User
from django.test import Client

from accounts import revocation
from accounts.models import AccessToken, TokenScope
from accounts.revocation import forget_cached
from pacsportal.localenv import native_decision_cache
from tests.services import REPO
from tests.test_settings import COMPLETE


def test_it_removes_cached_decisions_and_leaves_nginx_temporary_files(tmp_path: Path) -> None:
    cached = [tmp_path / ("0" * 31 + "a"), tmp_path / ("f" * 32)]
    temporary = tmp_path / "0000000007"  # being written by nginx
    for path in [*cached, temporary]:
        path.write_bytes(b"KEY: ...")
    assert forget_cached(tmp_path) == 2
    assert not any(path.exists() for path in cached)
    assert temporary.exists()
    with pytest.raises(FileNotFoundError):
        forget_cached(tmp_path / "missing")


def django_setting(tmp_path: Path, name: str, **env: str) -> str:
    result = subprocess.run(
        [
            sys.executable,
            "manage.py",
            "shell",
            "-c",
            f"from django.conf import settings; print(repr(settings.{name}))",
        ],
        cwd=REPO,
        env={"PATH": "/usr/bin:/bin", "PORTAL_VAR_DIR": str(tmp_path), **COMPLETE, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return str(ast.literal_eval(result.stdout.splitlines()[-1]))


def api_decision_seconds(tmp_path: Path, **env: str) -> str:
    return django_setting(tmp_path, "NGINX_API_DECISION_SECONDS", **env)


def test_api_decisions_are_reused_by_default_only_where_the_portal_can_empty_the_cache(
    tmp_path: Path,
) -> None:
    assert api_decision_seconds(tmp_path) == "0"
    assert api_decision_seconds(tmp_path, NGINX_DECISION_CACHE_DIR=str(tmp_path)) == "5"
    assert api_decision_seconds(tmp_path, NGINX_DECISION_CACHE_DIR="/x", NGINX_DECISION_SECONDS="2") == "2"
    assert api_decision_seconds(tmp_path, NGINX_API_DECISION_SECONDS="3") == "3"


# --- Which changes empty the cache (in process; the sweep itself is forget_cached above) ---

CACHED = "c" * 32


@pytest.fixture
def cache_dir(tmp_path: Path, settings: Any) -> Iterator[Path]:
    settings.NGINX_DECISION_CACHE_DIR = str(tmp_path)
    revocation.lockouts_swept.clear()
    yield tmp_path
    pending = revocation.second_sweep
    with pending.lock:  # the second sweep would log after pytest stopped capturing
        if pending.timer is not None:
            pending.timer.cancel()
            pending.timer = None


def cached_after(cache_dir: Path, change: Callable[[], object], capture: Any) -> bool:
    """Whether a decision cached before `change` is still there once it has committed."""
    (cache_dir / CACHED).write_bytes(b"KEY: ...")
    with capture(execute=True):
        change()
    return (cache_dir / CACHED).exists()


def make_user(username: str = "rev-user") -> User:
    return User.objects.create_user(username, password="a long enough password")


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("change", "removed"),
    [
        ("password", True),
        ("deactivation", True),
        ("login", False),
        ("group added", True),
        ("group removed", True),
        ("permission given", True),
        ("role's permission taken", True),
        ("token deleted", True),
        ("user deleted", True),
    ],
)
def test_a_change_to_what_decisions_read_empties_the_cache(
    change: str, removed: bool, cache_dir: Path, django_capture_on_commit_callbacks: Any
) -> None:
    user = make_user()
    clinician = Group.objects.get(name="clinician")
    permission = Permission.objects.get(codename="read_studies")
    if change == "group removed":
        user.groups.add(clinician)
    token, _ = AccessToken.objects.issue(user, "t", TokenScope.READ, days=1)

    def password() -> None:
        user.set_password("another long password 42")
        user.save()

    def deactivation() -> None:
        user.is_active = False
        user.save(update_fields=["is_active"])

    changes: dict[str, Callable[[], object]] = {
        "password": password,
        "deactivation": deactivation,
        "login": lambda: user.save(update_fields=["last_login"]),
        "group added": lambda: user.groups.add(clinician),
        "group removed": lambda: user.groups.remove(clinician),
        "permission given": lambda: user.user_permissions.add(permission),
        "role's permission taken": lambda: clinician.permissions.remove(permission),
        "token deleted": token.delete,
        "user deleted": user.delete,
    }
    assert cached_after(cache_dir, changes[change], django_capture_on_commit_callbacks) is not removed


@pytest.mark.django_db
def test_a_new_user_leaves_the_cache(cache_dir: Path, django_capture_on_commit_callbacks: Any) -> None:
    assert cached_after(cache_dir, make_user, django_capture_on_commit_callbacks)


@pytest.mark.django_db
def test_a_logout_empties_the_cache_and_an_anonymous_one_does_not(
    cache_dir: Path, django_capture_on_commit_callbacks: Any
) -> None:
    client = Client()
    assert cached_after(
        cache_dir, lambda: client.post("/accounts/logout/"), django_capture_on_commit_callbacks
    )
    client.force_login(make_user())
    assert not cached_after(
        cache_dir, lambda: client.post("/accounts/logout/"), django_capture_on_commit_callbacks
    )


@pytest.mark.django_db
def test_a_lockout_empties_the_cache_once_however_often_it_is_announced(
    cache_dir: Path, django_capture_on_commit_callbacks: Any
) -> None:
    def announce(username: str) -> None:
        user_locked_out.send("axes", request=None, username=username, ip_address="192.0.2.7")

    assert not cached_after(cache_dir, lambda: announce("alice"), django_capture_on_commit_callbacks)
    assert cached_after(cache_dir, lambda: announce("alice"), django_capture_on_commit_callbacks)
    assert not cached_after(cache_dir, lambda: announce("bob"), django_capture_on_commit_callbacks)


def test_changes_in_a_row_share_one_second_sweep_after_the_last(tmp_path: Path) -> None:
    second = revocation.SecondSweep()
    second.schedule(tmp_path)
    first_timer = second.timer
    time.sleep(0.5)
    second.schedule(tmp_path)  # moves the sweep, starts no other timer
    assert second.timer is first_timer
    (tmp_path / CACHED).write_bytes(b"KEY: ...")  # decided meanwhile, from the old state
    time.sleep(0.7)  # past the first schedule's second, before the last's
    assert (tmp_path / CACHED).exists()
    deadline = time.monotonic() + 3  # due 1.5 s after the start; room for a loaded machine
    while (tmp_path / CACHED).exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not (tmp_path / CACHED).exists()
    assert second.timer is None


def test_a_missing_cache_directory_is_logged_as_an_error(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    revocation.sweep(tmp_path / "missing", again=False)
    assert "NGINX_DECISION_CACHE_DIR" in caplog.text
    assert any(record.levelname == "ERROR" for record in caplog.records)


def test_a_management_command_beside_serve_finds_serves_cache(tmp_path: Path) -> None:
    def cache_dir_setting(**env: str) -> str:
        return django_setting(tmp_path, "NGINX_DECISION_CACHE_DIR", **env)

    assert cache_dir_setting() == ""  # serve is not running: nothing to empty
    serves = native_decision_cache(tmp_path / "nginx")
    serves.mkdir()
    try:
        assert cache_dir_setting() == str(serves)
        assert cache_dir_setting(PORTAL_FRONT="none") == ""
        assert django_setting(tmp_path, "NGINX_API_DECISION_SECONDS") == "0"  # it decides nothing
    finally:
        serves.rmdir()
