"""The portal refuses to start outside debug without its secrets."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.services import REPO

COMPLETE = {
    "SECRET_KEY": "k" * 50,
    "ALLOWED_HOSTS": "pacs.example.org",
    "ORTHANC_USER": "svc",
    "ORTHANC_PASSWORD": "pw",
}


def run_check(env: dict[str, str], var_dir: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "manage.py", "check"],
        cwd=REPO,
        env={"PATH": "/usr/bin:/bin", "PORTAL_VAR_DIR": str(var_dir), **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_it_starts_with_every_required_setting(tmp_path: Path) -> None:
    result = run_check(COMPLETE, tmp_path)
    assert result.returncode == 0, result.stderr


def test_it_refuses_to_start_without_each_required_setting(tmp_path: Path) -> None:
    for name in COMPLETE:
        env = {key: value for key, value in COMPLETE.items() if key != name}
        result = run_check(env, tmp_path)
        assert result.returncode != 0
        assert f"missing required setting(s): {name}" in result.stderr


def test_it_starts_in_debug_without_secrets(tmp_path: Path) -> None:
    result = run_check({"DEBUG": "true"}, tmp_path)
    assert result.returncode == 0, result.stderr


def test_it_refuses_a_malformed_flag(tmp_path: Path) -> None:
    result = run_check({**COMPLETE, "DEBUG": "maybe"}, tmp_path)
    assert result.returncode != 0
    assert "DEBUG='maybe' is not a boolean" in result.stderr


def test_it_refuses_a_site_proxy_that_is_no_address(tmp_path: Path) -> None:
    result = run_check({**COMPLETE, "SITE_PROXIES": "10.0.0.0/8, lb.example.org"}, tmp_path)
    assert result.returncode != 0
    assert "SITE_PROXIES: 'lb.example.org' does not appear to be an IPv4 or IPv6 network" in result.stderr


def test_it_reads_generated_secrets_from_the_var_dir(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "pacsportal.localenv"],
        cwd=REPO,
        env={"PATH": "/usr/bin:/bin", "PORTAL_VAR_DIR": str(tmp_path)},
        check=True,
        timeout=60,
    )
    assert (tmp_path / "local.env").stat().st_mode & 0o077 == 0
    result = run_check({}, tmp_path)
    assert result.returncode == 0, result.stderr
