"""What the portal removes from nginx's decision cache, and when API decisions may be reused.

Through real HTTP, tests/test_front.py and tests/test_live_tokens.py (run through
nginx by make test) show revocations ending cached decisions at once.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from accounts.revocation import forget_cached
from tests.services import REPO
from tests.test_settings import COMPLETE


def test_it_removes_cached_decisions_and_leaves_nginx_temporary_files(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    cached = [tmp_path / "a" / ("0" * 31 + "a"), tmp_path / ("f" * 32)]
    temporary = tmp_path / "a" / "0000000007"  # being written by nginx
    for path in [*cached, temporary]:
        path.write_bytes(b"KEY: ...")
    assert forget_cached(tmp_path) == 2
    assert not any(path.exists() for path in cached)
    assert temporary.exists()
    assert forget_cached(tmp_path / "missing") == 0


def api_decision_seconds(tmp_path: Path, **env: str) -> str:
    result = subprocess.run(
        [
            sys.executable,
            "manage.py",
            "shell",
            "-c",
            "from django.conf import settings; print(settings.NGINX_API_DECISION_SECONDS)",
        ],
        cwd=REPO,
        env={"PATH": "/usr/bin:/bin", "PORTAL_VAR_DIR": str(tmp_path), **COMPLETE, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.split()[-1]


def test_api_decisions_are_reused_by_default_only_where_the_portal_can_empty_the_cache(
    tmp_path: Path,
) -> None:
    assert api_decision_seconds(tmp_path) == "0"
    assert api_decision_seconds(tmp_path, NGINX_DECISION_CACHE_DIR=str(tmp_path)) == "5"
    assert api_decision_seconds(tmp_path, NGINX_DECISION_CACHE_DIR="/x", NGINX_DECISION_SECONDS="2") == "2"
    assert api_decision_seconds(tmp_path, NGINX_API_DECISION_SECONDS="3") == "3"
